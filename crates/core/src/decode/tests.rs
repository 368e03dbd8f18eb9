//! Decoder tests: frames built by hand (or with etherparse's `PacketBuilder`) for every link
//! type, tag and tunnel, fragment reassembly and SIP over TCP.

use super::*;
use crate::model::LinkType;
use etherparse::PacketBuilder;

const SRC4: [u8; 4] = [192, 0, 2, 1];
const DST4: [u8; 4] = [198, 51, 100, 7];
const SIP: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n";

#[derive(Debug, PartialEq)]
struct Got {
    src: SocketAddr,
    dst: SocketAddr,
    transport: Transport,
    payload: Vec<u8>,
    ip_len: u32,
}

impl Got {
    fn of(dg: &Datagram<'_>) -> Got {
        Got {
            src: dg.src,
            dst: dg.dst,
            transport: dg.transport,
            payload: dg.payload.to_vec(),
            ip_len: dg.ip_len,
        }
    }
}

fn limits() -> LimitsConfig {
    LimitsConfig::default()
}

fn feed(d: &mut Decoder, link: LinkType, frame: &[u8], ts_s: i64) -> Vec<Got> {
    let mut got = Vec::new();
    let pkt = RawPacket {
        ts: Timestamp::from_micros(ts_s * 1_000_000),
        link,
        data: frame,
        wire_len: frame.len() as u32,
    };
    d.decode(&pkt, &mut |dg| {
        assert_eq!(dg.ts, pkt.ts);
        got.push(Got::of(dg))
    });
    got
}

fn decode_one(link: LinkType, frame: &[u8]) -> (Vec<Got>, Counters) {
    let mut d = Decoder::new(&limits());
    let got = feed(&mut d, link, frame, 1);
    (got, d.errors().clone())
}

/// Raw IPv4/UDP packet.
fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn udp6(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(v6(1), v6(2), 64)
        .udp(sport, dport)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[2] = 0x0d;
    a[3] = 0xb8;
    a[15] = last;
    a
}

fn eth(ethertype: u16, inner: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(inner);
    f
}

/// IPv4 header (no options, checksum left 0: the decoder does not verify it) plus payload.
fn ipv4_raw(proto: u8, id: u16, mf: bool, offset8: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let fo = (u16::from(mf) << 13) | offset8;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&fo.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&SRC4);
    h.extend_from_slice(&DST4);
    h.extend_from_slice(payload);
    h
}

/// UDP header + payload (checksum 0).
fn udp_raw(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn sa(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn assert_sip_udp4(got: &[Got]) {
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].src, sa(SRC4, 5060));
    assert_eq!(got[0].dst, sa(DST4, 5080));
    assert_eq!(got[0].transport, Transport::Udp);
    assert_eq!(got[0].payload, SIP);
    assert_eq!(got[0].ip_len as usize, 28 + SIP.len());
}

#[test]
fn every_link_type() {
    let ip = udp4(SRC4, DST4, 5060, 5080, SIP);
    let mut cases: Vec<(LinkType, Vec<u8>)> = vec![
        (LinkType::ETHERNET, eth(0x0800, &ip)),
        (LinkType::RAW, ip.clone()),
        (LinkType(12), ip.clone()),
        (LinkType(14), ip.clone()),
        (LinkType::IPV4, ip.clone()),
        (LinkType::NULL, [&[2u8, 0, 0, 0][..], &ip].concat()),
        (LinkType::LOOP, [&[0u8, 0, 0, 2][..], &ip].concat()),
    ];
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&ip);
    cases.push((LinkType::LINUX_SLL, sll));
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
    ];
    sll2.extend_from_slice(&ip);
    cases.push((LinkType::LINUX_SLL2, sll2));
    let mut built = Vec::new();
    PacketBuilder::linux_sll(
        etherparse::LinuxSllPacketType::OUTGOING,
        6,
        [2, 0, 0, 0, 0, 1, 0, 0],
    )
    .ipv4(SRC4, DST4, 64)
    .udp(5060, 5080)
    .write(&mut built, SIP)
    .unwrap();
    cases.push((LinkType::LINUX_SLL, built));
    for (link, frame) in cases {
        let (got, errs) = decode_one(link, &frame);
        assert_sip_udp4(&got);
        assert_eq!(errs, Counters::default(), "{link:?}");
    }
    // IPv6 over LINKTYPE_IPV6 and BSD NULL with a BSD AF_INET6 value
    let ip6 = udp6(5060, 5062, SIP);
    for (link, frame) in [
        (LinkType::IPV6, ip6.clone()),
        (LinkType::NULL, [&[30u8, 0, 0, 0][..], &ip6].concat()),
        (LinkType::ETHERNET, eth(0x86DD, &ip6)),
    ] {
        let (got, _) = decode_one(link, &frame);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].src, SocketAddr::from((v6(1), 5060)));
        assert_eq!(got[0].dst, SocketAddr::from((v6(2), 5062)));
        assert_eq!(got[0].ip_len as usize, 48 + SIP.len());
    }
    // unsupported link type: counted
    let (got, errs) = decode_one(LinkType(147), &ip);
    assert!(got.is_empty());
    assert_eq!(errs.get("link_type"), 1);
}

#[test]
fn vlan_qinq_mpls_pppoe() {
    let ip = udp4(SRC4, DST4, 5060, 5080, SIP);
    // 802.1Q
    let mut built = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(etherparse::VlanId::try_new(142).unwrap())
        .ipv4(SRC4, DST4, 64)
        .udp(5060, 5080)
        .write(&mut built, SIP)
        .unwrap();
    assert_sip_udp4(&decode_one(LinkType::ETHERNET, &built).0);
    // QinQ by hand: 802.1ad outer, 802.1Q inner
    let qinq = eth(
        0x88A8,
        &[&[0, 10, 0x81, 0x00, 0, 20, 0x08, 0x00][..], &ip].concat(),
    );
    assert_sip_udp4(&decode_one(LinkType::ETHERNET, &qinq).0);
    // MPLS: two labels then IPv4
    let mpls = eth(
        0x8847,
        &[&[0, 0x10, 0x00, 0x40, 0, 0x20, 0x01, 0x40][..], &ip].concat(),
    );
    assert_sip_udp4(&decode_one(LinkType::ETHERNET, &mpls).0);
    // MPLS pseudowire with control word, carrying a whole Ethernet frame with a VLAN tag
    let inner = eth(0x8100, &[&[0, 5, 0x08, 0x00][..], &ip].concat());
    let pw = eth(
        0x8847,
        &[&[0, 0x10, 0x01, 0x40, 0, 0, 0, 0][..], &inner].concat(),
    );
    assert_sip_udp4(&decode_one(LinkType::ETHERNET, &pw).0);
    // PPPoE session, PPP IPv4
    let len = (ip.len() + 2) as u16;
    let mut pppoe = vec![0x11, 0x00, 0x00, 0x2A];
    pppoe.extend_from_slice(&len.to_be_bytes());
    pppoe.extend_from_slice(&[0x00, 0x21]);
    pppoe.extend_from_slice(&ip);
    assert_sip_udp4(&decode_one(LinkType::ETHERNET, &eth(0x8864, &pppoe)).0);
    // PPP IPv6 over PPPoE
    let ip6 = udp6(1, 2, b"x");
    let mut p6 = vec![0x11, 0x00, 0x00, 0x2A];
    p6.extend_from_slice(&((ip6.len() + 2) as u16).to_be_bytes());
    p6.extend_from_slice(&[0x00, 0x57]);
    p6.extend_from_slice(&ip6);
    assert_eq!(decode_one(LinkType::ETHERNET, &eth(0x8864, &p6)).0.len(), 1);
    // PPP LCP: not IP
    let lcp = eth(
        0x8864,
        &[0x11, 0x00, 0x00, 0x2A, 0x00, 0x06, 0xC0, 0x21, 1, 1, 0, 4],
    );
    let (got, errs) = decode_one(LinkType::ETHERNET, &lcp);
    assert!(got.is_empty());
    assert_eq!(errs, Counters::default(), "PPP control is not an error");
}

#[test]
fn ethernet_padding_is_trimmed_and_snaplen_cut_is_lax() {
    let ip = udp4(SRC4, DST4, 5060, 5080, b"hi");
    let mut frame = eth(0x0800, &ip);
    frame.resize(60, 0);
    let (got, errs) = decode_one(LinkType::ETHERNET, &frame);
    assert_eq!(got[0].payload, b"hi");
    assert_eq!(got[0].ip_len, 30);
    assert_eq!(errs, Counters::default());
    // IPv4 total length left 0 by segmentation offload: the captured length is used
    let mut tso = udp4(SRC4, DST4, 5060, 5080, SIP);
    tso[2] = 0;
    tso[3] = 0;
    let (got, errs) = decode_one(LinkType::RAW, &tso);
    assert_sip_udp4(&got);
    assert_eq!(errs, Counters::default());
    // RTP-sized packet cut by a 64-byte snap length: emitted with what is there
    let rtp = [0x80u8; 172];
    let ip = udp4(SRC4, DST4, 4000, 4002, &rtp);
    let cut = &eth(0x0800, &ip)[..64];
    let (got, errs) = decode_one(LinkType::ETHERNET, cut);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload.len(), 64 - 14 - 28);
    assert_eq!(got[0].ip_len, 200);
    assert_eq!(errs.get("truncated"), 1);
}

#[test]
fn non_ip_and_other_protocols_are_counted_as_skipped_not_errors() {
    let mut d = Decoder::new(&LimitsConfig::default());
    fn pkt(link: LinkType, data: &[u8]) -> RawPacket<'_> {
        RawPacket {
            ts: Timestamp::from_micros(0),
            link,
            data,
            wire_len: data.len() as u32,
        }
    }
    let arp = eth(0x0806, &[0u8; 28]);
    d.decode(&pkt(LinkType::ETHERNET, &arp), &mut |_| {
        panic!("ARP emitted")
    });
    assert_eq!(d.skipped().get("arp"), 1);
    assert_eq!(d.errors(), &Counters::default());
    let (got, errs) = decode_one(LinkType::ETHERNET, &arp);
    assert!(got.is_empty());
    assert_eq!(errs, Counters::default());
    let mut icmp = Vec::new();
    PacketBuilder::ipv4(SRC4, DST4, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, b"ping")
        .unwrap();
    let (got, errs) = decode_one(LinkType::RAW, &icmp);
    assert!(got.is_empty());
    assert_eq!(errs, Counters::default());
    d.decode(&pkt(LinkType::RAW, &icmp), &mut |_| panic!("ICMP emitted"));
    assert_eq!(d.skipped().get("icmp"), 1);
    let (_, errs) = decode_one(LinkType::RAW, &[0x45, 0, 0]);
    assert_eq!(errs.get("ipv4"), 1);
    let (_, errs) = decode_one(LinkType::RAW, &[0x60, 0, 0]);
    assert_eq!(errs.get("ipv6"), 1);
    let (_, errs) = decode_one(LinkType::RAW, &[0x10, 0, 0]);
    assert_eq!(errs.get("ip"), 1);
    // UDP length shorter than its header
    let mut bad = udp4(SRC4, DST4, 1, 2, b"abc");
    bad[24] = 0;
    bad[25] = 4;
    let (got, errs) = decode_one(LinkType::RAW, &bad);
    assert!(got.is_empty());
    assert_eq!(errs.get("udp"), 1);
}

fn gre_hdr(flags: u16, proto: u16, extra: &[u8]) -> Vec<u8> {
    let mut g = flags.to_be_bytes().to_vec();
    g.extend_from_slice(&proto.to_be_bytes());
    g.extend_from_slice(extra);
    g
}

/// The outer IPv4 packet (203.0.113.1 -> 203.0.113.2) carrying `proto`.
fn outer(proto: u8, inner: &[u8]) -> Vec<u8> {
    let mut p = ipv4_raw(proto, 1, false, 0, inner);
    p[12..16].copy_from_slice(&[203, 0, 113, 1]);
    p[16..20].copy_from_slice(&[203, 0, 113, 2]);
    p
}

#[test]
fn gre_erspan_pptp() {
    let ip = udp4(SRC4, DST4, 5060, 5080, SIP);
    let inner_eth = eth(0x0800, &ip);
    let cases: Vec<Vec<u8>> = vec![
        // plain GRE, IPv4
        gre_hdr(0, 0x0800, &ip),
        // key + sequence, transparent Ethernet bridging
        gre_hdr(
            0x3000,
            0x6558,
            &[&[0, 0, 0, 9, 0, 0, 0, 1][..], &inner_eth].concat(),
        ),
        // ERSPAN type I
        gre_hdr(0, 0x88BE, &inner_eth),
        // ERSPAN type II
        gre_hdr(
            0x1000,
            0x88BE,
            &[
                &[0, 0, 0, 1, 0x10, 0x64, 0, 0x01, 0, 0, 0, 0][..],
                &inner_eth,
            ]
            .concat(),
        ),
        // ERSPAN type III with the platform-specific subheader
        gre_hdr(
            0x1000,
            0x22EB,
            &[
                &[0, 0, 0, 1, 0x20, 0x64, 0, 0x01, 1, 2, 3, 4, 0, 0, 0, 0x01][..],
                &[0; 8],
                &inner_eth,
            ]
            .concat(),
        ),
        // PPTP enhanced GRE with sequence and ack, PPP with address/control
        {
            let ppp = [&[0xFF, 0x03, 0x00, 0x21][..], &ip].concat();
            let mut ext = (ppp.len() as u16).to_be_bytes().to_vec();
            ext.extend_from_slice(&[0, 7, 0, 0, 0, 1, 0, 0, 0, 0]);
            ext.extend_from_slice(&ppp);
            gre_hdr(0x3081, 0x880B, &ext)
        },
    ];
    for (i, g) in cases.iter().enumerate() {
        let (got, errs) = decode_one(LinkType::ETHERNET, &eth(0x0800, &outer(47, g)));
        assert_eq!(errs, Counters::default(), "case {i}");
        assert_sip_udp4(&got);
    }
}

#[test]
fn vxlan_ipip_gtp() {
    let ip = udp4(SRC4, DST4, 5060, 5080, SIP);
    // VXLAN: outer UDP to 4789 carrying an Ethernet frame
    let vx = [&[0x08, 0, 0, 0, 0, 0, 0x2A, 0][..], &eth(0x0800, &ip)].concat();
    let frame = outer(17, &udp_raw(49152, 4789, &vx));
    assert_sip_udp4(&decode_one(LinkType::RAW, &frame).0);
    // A datagram to 4789 without the VXLAN flag: counted, passed on as plain UDP
    let frame = outer(17, &udp_raw(49152, 4789, SIP));
    let (got, errs) = decode_one(LinkType::RAW, &frame);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, SIP);
    assert_eq!(errs.get("vxlan"), 1);
    // IPv4 in IPv4
    assert_sip_udp4(&decode_one(LinkType::RAW, &outer(4, &ip)).0);
    // IPv6 in IPv4 (protocol 41)
    let ip6 = udp6(5060, 5062, SIP);
    let (got, _) = decode_one(LinkType::RAW, &outer(41, &ip6));
    assert_eq!(got[0].src, SocketAddr::from((v6(1), 5060)));
    // GTP-U with sequence number and a PDU session container extension
    let mut gtp = vec![0x34, 0xFF];
    gtp.extend_from_slice(&((ip.len() + 8) as u16).to_be_bytes());
    gtp.extend_from_slice(&[0, 0, 0, 7, 0, 1, 0, 0x85, 1, 0x10, 0x05, 0]);
    gtp.extend_from_slice(&ip);
    let frame = outer(17, &udp_raw(2152, 2152, &gtp));
    let (got, errs) = decode_one(LinkType::RAW, &frame);
    assert_eq!(errs, Counters::default());
    assert_sip_udp4(&got);
    // Something on port 2152 that is not GTP is plain UDP
    let frame = outer(17, &udp_raw(5060, 2152, SIP));
    let (got, _) = decode_one(LinkType::RAW, &frame);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, SIP);
    assert_eq!(got[0].dst.port(), 2152);
}

#[test]
fn nesting_depth_is_capped() {
    let ip = udp4(SRC4, DST4, 5060, 5080, SIP);
    let mut pkt = ip.clone();
    for _ in 0..MAX_DEPTH {
        pkt = outer(4, &pkt);
    }
    let (got, errs) = decode_one(LinkType::RAW, &pkt);
    assert_sip_udp4(&got);
    assert_eq!(errs.get("depth"), 0);
    let pkt = outer(4, &pkt);
    let (got, errs) = decode_one(LinkType::RAW, &pkt);
    assert!(got.is_empty());
    assert_eq!(errs.get("depth"), 1);
    // endless VLAN tags
    let mut tags = Vec::new();
    for _ in 0..20 {
        tags.extend_from_slice(&[0, 1, 0x81, 0x00]);
    }
    let (_, errs) = decode_one(LinkType::ETHERNET, &eth(0x8100, &tags));
    assert_eq!(errs.get("depth"), 1);
}

/// A SIP message large enough to need three IPv4 fragments at a 1500-byte MTU.
fn big_sip() -> Vec<u8> {
    let body = "a=x-filler:0123456789abcdef0123456789abcdef\r\n".repeat(70);
    format!(
        "INVITE sip:1@b SIP/2.0\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        body
    )
    .into_bytes()
}

/// IPv4 fragments of a UDP datagram, pieces of `step` bytes (a multiple of 8).
fn v4_fragments(id: u16, udp: &[u8], step: usize) -> Vec<Vec<u8>> {
    udp.chunks(step)
        .enumerate()
        .map(|(i, c)| {
            let last = (i + 1) * step >= udp.len();
            eth(0x0800, &ipv4_raw(17, id, !last, (i * step / 8) as u16, c))
        })
        .collect()
}

#[test]
fn ipv4_fragments_in_order_reversed_overlap() {
    let msg = big_sip();
    let udp = udp_raw(5060, 5080, &msg);
    let frags = v4_fragments(77, &udp, 1480);
    assert_eq!(frags.len(), 3);
    for order in [vec![0, 1, 2], vec![2, 1, 0], vec![1, 2, 0]] {
        let mut d = Decoder::new(&limits());
        let mut all = Vec::new();
        for i in order {
            all.extend(feed(&mut d, LinkType::ETHERNET, &frags[i], 1));
        }
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].payload, msg);
        assert_eq!(all[0].ip_len as usize, 20 + udp.len());
        assert_eq!(all[0].src, sa(SRC4, 5060));
        assert_eq!(d.table_sizes()[0], ("fragments", 0));
        assert_eq!(d.errors(), &Counters::default());
    }
    // overlap with different bytes: dropped and counted
    let mut d = Decoder::new(&limits());
    feed(&mut d, LinkType::ETHERNET, &frags[0], 1);
    let evil = eth(0x0800, &ipv4_raw(17, 77, true, 8, &[0x41; 1480]));
    feed(&mut d, LinkType::ETHERNET, &evil, 1);
    let mut all = Vec::new();
    for f in &frags[1..] {
        all.extend(feed(&mut d, LinkType::ETHERNET, f, 1));
    }
    assert!(all.is_empty());
    assert_eq!(d.errors().get("fragment"), 1);
    // duplicated fragment: still one datagram
    let mut d = Decoder::new(&limits());
    let mut all = Vec::new();
    for i in [0, 1, 1, 2, 2] {
        all.extend(feed(&mut d, LinkType::ETHERNET, &frags[i], 1));
    }
    assert_eq!(all.len(), 1);
}

#[test]
fn fragment_timeout_and_caps() {
    let msg = big_sip();
    let udp = udp_raw(5060, 5080, &msg);
    let frags = v4_fragments(5, &udp, 1480);
    let mut d = Decoder::new(&limits());
    feed(&mut d, LinkType::ETHERNET, &frags[0], 0);
    feed(&mut d, LinkType::ETHERNET, &frags[1], 1);
    assert_eq!(d.table_sizes()[0], ("fragments", 1));
    assert!(d.table_sizes()[1].1 >= 2960);
    d.expire(Timestamp::from_micros(31_000_000));
    assert_eq!(d.table_sizes()[0], ("fragments", 0));
    assert_eq!(d.table_sizes()[1], ("fragment_bytes", 0));
    assert_eq!(d.errors().get("fragment_timeout"), 1);
    assert!(feed(&mut d, LinkType::ETHERNET, &frags[2], 32).is_empty());
    // table of one: a second datagram evicts the first
    let lim = LimitsConfig {
        fragments: 1,
        ..limits()
    };
    let mut d = Decoder::new(&lim);
    let other = v4_fragments(6, &udp, 1480);
    feed(&mut d, LinkType::ETHERNET, &frags[0], 0);
    feed(&mut d, LinkType::ETHERNET, &other[0], 0);
    assert_eq!(d.evictions().get("fragments"), 1);
    let mut all = Vec::new();
    for f in &other[1..] {
        all.extend(feed(&mut d, LinkType::ETHERNET, f, 0));
    }
    for f in &frags[1..] {
        all.extend(feed(&mut d, LinkType::ETHERNET, f, 0));
    }
    assert_eq!(all.len(), 1);
    // byte budget smaller than the datagram: refused, counted
    let lim = LimitsConfig {
        fragment_bytes: 2000,
        ..limits()
    };
    let mut d = Decoder::new(&lim);
    let mut all = Vec::new();
    for f in &frags {
        all.extend(feed(&mut d, LinkType::ETHERNET, f, 0));
    }
    assert!(all.is_empty());
    assert!(d.errors().get("fragment") >= 1);
    assert!(d.table_sizes()[1].1 <= 2000);
}

/// IPv6 fragments of `upper` (a UDP datagram), with a destination-options header in front of
/// the Fragment header to check the unfragmentable part is handled.
fn v6_fragments(id: u32, upper: &[u8], step: usize) -> Vec<Vec<u8>> {
    upper
        .chunks(step)
        .enumerate()
        .map(|(i, c)| {
            let last = (i + 1) * step >= upper.len();
            let off = (i * step) as u16;
            let mut ext = vec![44, 0, 1, 4, 0, 0, 0, 0]; // dest options (8 bytes, PadN) -> frag
            ext.extend_from_slice(&[17, 0]);
            ext.extend_from_slice(&(off | u16::from(!last)).to_be_bytes());
            ext.extend_from_slice(&id.to_be_bytes());
            ext.extend_from_slice(c);
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(ext.len() as u16).to_be_bytes());
            h.extend_from_slice(&[60, 64]);
            h.extend_from_slice(&v6(1));
            h.extend_from_slice(&v6(2));
            h.extend_from_slice(&ext);
            h
        })
        .collect()
}

#[test]
fn ipv6_fragments() {
    let msg = big_sip();
    let udp = udp_raw(5060, 5060, &msg);
    let frags = v6_fragments(0xABCD, &udp, 1232);
    assert!(frags.len() >= 3);
    for rev in [false, true] {
        let mut d = Decoder::new(&limits());
        let mut all = Vec::new();
        let mut order: Vec<usize> = (0..frags.len()).collect();
        if rev {
            order.reverse();
        }
        for i in order {
            all.extend(feed(&mut d, LinkType::IPV6, &frags[i], 1));
        }
        assert_eq!(all.len(), 1, "reversed={rev}");
        assert_eq!(all[0].payload, msg);
        assert_eq!(all[0].src, SocketAddr::from((v6(1), 5060)));
        assert_eq!(all[0].ip_len as usize, 40 + 8 + udp.len());
        assert_eq!(d.errors(), &Counters::default());
    }
    // an atomic fragment (offset 0, no more fragments) is an ordinary packet
    let atomic = v6_fragments(1, &udp_raw(1, 2, b"tiny"), 1232);
    assert_eq!(decode_one(LinkType::IPV6, &atomic[0]).0.len(), 1);
}

fn tcp4(seq: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(SRC4, DST4, 64)
        .tcp(40000, 5060, seq, 1024);
    let b = if flags.contains('F') { b.fin() } else { b };
    let b = if flags.contains('R') { b.rst() } else { b };
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

#[test]
fn sip_over_tcp_through_the_decoder() {
    let a: &[u8] = b"REGISTER sip:r SIP/2.0\r\nContent-Length: 5\r\n\r\nhello";
    let b: &[u8] = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    let mut d = Decoder::new(&limits());
    // two messages in one segment
    let both = [a, b].concat();
    let got = feed(&mut d, LinkType::ETHERNET, &tcp4(1, "", &both), 1);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].payload, a);
    assert_eq!(got[1].payload, b);
    assert_eq!(got[0].transport, Transport::Tcp);
    assert_eq!(got[0].src, sa(SRC4, 40000));
    assert_eq!(got[0].dst, sa(DST4, 5060));
    // one message over three segments, the body split
    let mut seq = 1 + both.len() as u32;
    let mut all = Vec::new();
    for part in [&a[..10], &a[10..a.len() - 2], &a[a.len() - 2..]] {
        all.extend(feed(&mut d, LinkType::ETHERNET, &tcp4(seq, "", part), 2));
        seq += part.len() as u32;
    }
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].payload, a);
    // retransmission of the last segment is not emitted again
    assert!(feed(
        &mut d,
        LinkType::ETHERNET,
        &tcp4(seq - 2, "", &a[a.len() - 2..]),
        3
    )
    .is_empty());
    assert_eq!(d.table_sizes()[2], ("tcp_streams", 1));
    // a partial message, then FIN removes the stream
    feed(&mut d, LinkType::ETHERNET, &tcp4(seq, "", &a[..5]), 4);
    assert_eq!(d.table_sizes()[3], ("tcp_bytes", 5));
    feed(&mut d, LinkType::ETHERNET, &tcp4(seq + 5, "F", b""), 5);
    assert_eq!(d.table_sizes()[2], ("tcp_streams", 0));
    assert_eq!(d.table_sizes()[3], ("tcp_bytes", 0));
    // non-SIP TCP is not tracked
    feed(
        &mut d,
        LinkType::ETHERNET,
        &tcp4(9, "", b"GET / HTTP/1.1\r\n\r\n"),
        6,
    );
    assert_eq!(d.table_sizes()[2], ("tcp_streams", 0));
    // idle streams expire
    feed(&mut d, LinkType::ETHERNET, &tcp4(100, "", &a[..5]), 10);
    d.expire(Timestamp::from_micros(10_000_000 + 601_000_000));
    assert_eq!(d.table_sizes()[2], ("tcp_streams", 0));
}

/// Decodes `frame` (Ethernet) twice, through `decode` (which takes the IPv4/UDP fast path when
/// it can) and layer by layer only, with the innermost header kept: the datagrams, errors,
/// skips and innermost header must agree.
/// `frame` with the bytes at `flips` (positions wrap) replaced and `cut` bytes cut off its end:
/// the fast path and the layered decoder agree on it.
fn mutated_agree(mut frame: Vec<u8>, flips: &[(usize, u8)], cut: usize) -> Result<(), String> {
    for &(at, v) in flips {
        let n = frame.len();
        frame[at % n] = v;
    }
    frame.truncate(frame.len() - cut);
    fast_and_layered_agree(&frame)
}

fn fast_and_layered_agree(frame: &[u8]) -> Result<(), String> {
    let pkt = RawPacket {
        ts: Timestamp::from_micros(1_000_000),
        link: LinkType::ETHERNET,
        data: frame,
        wire_len: frame.len() as u32,
    };
    let run = |layered: bool| {
        let mut d = Decoder::new(&limits());
        d.keep_innermost(true);
        let mut got = Vec::new();
        let mut take = |dg: &Datagram<'_>| got.push(Got::of(dg));
        if layered {
            d.layers(pkt.ts, link::link(pkt.link, pkt.data), 0, &mut take);
        } else {
            d.decode(&pkt, &mut take);
        }
        let inner = format!("{:?}", d.innermost());
        (got, d.errors().clone(), d.skipped().clone(), inner)
    };
    let (fast, layered) = (run(false), run(true));
    if fast == layered {
        Ok(())
    } else {
        Err(format!("fast {fast:?} != layered {layered:?}"))
    }
}

#[test]
fn fast_path_decodes_as_the_layers_do() {
    let ip = udp4(SRC4, DST4, 5060, 5080, SIP);
    let mut cases = vec![eth(0x0800, &ip)];
    // Ethernet padding after a short packet.
    cases.push(
        [
            eth(0x0800, &udp4(SRC4, DST4, 4000, 4002, b"x")),
            vec![0; 20],
        ]
        .concat(),
    );
    // Cut by the snap length.
    let whole = eth(0x0800, &ip);
    cases.push(whole[..whole.len() - 5].to_vec());
    // UDP length 0, 3, shorter than the IP payload, longer than it.
    for ulen in [0u16, 3, 20, 2000] {
        let mut f = eth(0x0800, &ip);
        f[14 + 24..14 + 26].copy_from_slice(&ulen.to_be_bytes());
        cases.push(f);
    }
    // IP total length 0, below the header, beyond the frame.
    for total in [0u16, 12, 4000] {
        let mut f = eth(0x0800, &ip);
        f[14 + 2..14 + 4].copy_from_slice(&total.to_be_bytes());
        cases.push(f);
    }
    // DF set; reserved bit set; MF set; an offset.
    for (b6, b7) in [(0x40u8, 0u8), (0x80, 0), (0x20, 0), (0, 1)] {
        let mut f = eth(0x0800, &ip);
        f[14 + 6] = b6;
        f[14 + 7] = b7;
        cases.push(f);
    }
    // Options (IHL 6), version 6 nibble, TCP, VXLAN and GTP-U ports, a VLAN tag, ARP.
    let mut opt = eth(0x0800, &ip);
    opt[14] = 0x46;
    cases.push(opt);
    let mut ver = eth(0x0800, &ip);
    ver[14] = 0x65;
    cases.push(ver);
    cases.push(eth(0x0800, &ipv4_raw(6, 1, false, 0, &udp_raw(1, 2, SIP))));
    cases.push(eth(0x0800, &udp4(SRC4, DST4, 1, VXLAN_PORT, &[0; 30])));
    cases.push(eth(0x0800, &udp4(SRC4, DST4, 1, GTPU_PORT, &[0; 30])));
    cases.push(eth(0x8100, &[&[0, 1][..], &[0x08, 0x00], &ip].concat()));
    cases.push(eth(0x0806, &[0; 28]));
    // Tag stacks: QinQ of each outer type, three tags (the long way), a tag carrying IPv6 or
    // ARP, a tag cut short.
    for outer in [0x8100u16, 0x88A8, 0x9100, 0x9200] {
        cases.push(eth(
            outer,
            &[&[0, 7][..], &[0x81, 0x00, 0, 9, 0x08, 0x00], &ip].concat(),
        ));
    }
    cases.push(eth(
        0x88A8,
        &[
            &[0, 7, 0x88, 0xA8, 0, 8][..],
            &[0x81, 0x00, 0, 9, 0x08, 0x00],
            &ip,
        ]
        .concat(),
    ));
    cases.push(eth(0x8100, &[&[0, 1][..], &[0x86, 0xDD], &ip].concat()));
    cases.push(eth(
        0x8100,
        &[&[0, 1][..], &[0x08, 0x06], &[0; 28]].concat(),
    ));
    for n in [0, 1, 3] {
        cases.push(eth(0x8100, &[0, 1, 0x08, 0x00][..n]));
    }
    // Shorter than an Ethernet header, an IP header, a UDP header.
    let full = eth(0x0800, &ip);
    for n in [0, 13, 14, 20, 33, 34, 41, 42] {
        cases.push(full[..n].to_vec());
    }
    for (i, f) in cases.iter().enumerate() {
        if let Err(e) = fast_and_layered_agree(f) {
            panic!("case {i}: {e}");
        }
    }
    // The common frames do take the fast path: untagged, one tag, QinQ.
    assert!(fast::ether_ipv4_udp(&eth(0x0800, &ip)).is_some());
    let tagged = eth(0x8100, &[&[0, 1][..], &[0x08, 0x00], &ip].concat());
    assert!(fast::ether_ipv4_udp(&tagged).is_some());
    let qinq = eth(
        0x88A8,
        &[&[0, 7][..], &[0x81, 0x00, 0, 9, 0x08, 0x00], &ip].concat(),
    );
    assert!(fast::ether_ipv4_udp(&qinq).is_some());
}

/// Regression corpus for inputs the fuzzer or review found troublesome.
#[test]
fn hostile_inputs_do_not_panic() {
    let cases: [&[u8]; 6] = [
        b"",
        &[0x45],
        &[0x60, 0, 0, 0, 0xFF, 0xFF, 44, 0],
        // IPv6 with a Fragment header cut short
        &[
            0x60, 0, 0, 0, 0, 4, 44, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 1,
        ],
        // IPv4 total length below the header length
        &[
            0x45, 0, 0, 4, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
        ],
        // IPv4 with options length beyond the data
        &[
            0x4F, 0, 0, 60, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
        ],
    ];
    for link in [0, 1, 101, 108, 113, 228, 229, 276] {
        let mut d = Decoder::new(&limits());
        for c in cases {
            feed(&mut d, LinkType(link), c, 0);
        }
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        link in proptest::sample::select(vec![0i32, 1, 12, 14, 101, 108, 113, 228, 229, 276]),
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
    ) {
        let mut d = Decoder::new(&limits());
        feed(&mut d, LinkType(link), &data, 0);
    }

    /// Flipping bytes of a valid tunnelled frame never panics and never emits a datagram
    /// longer than the frame.
    #[test]
    fn mutated_frames_never_panic(flips in proptest::collection::vec((0usize..200, proptest::prelude::any::<u8>()), 1..6)) {
        let ip = udp4(SRC4, DST4, 5060, 5080, SIP);
        let g = gre_hdr(0x3000, 0x6558, &[&[0, 0, 0, 9, 0, 0, 0, 1][..], &eth(0x0800, &ip)].concat());
        let mut frame = eth(0x0800, &outer(47, &g));
        for (at, v) in flips {
            let n = frame.len();
            frame[at % n] = v;
        }
        let mut d = Decoder::new(&limits());
        for g in feed(&mut d, LinkType::ETHERNET, &frame, 0) {
            proptest::prop_assert!(g.payload.len() <= frame.len());
        }
    }

    /// Flipping bytes of a plain Ethernet/IPv4/UDP frame (the fast path's own) never makes the
    /// fast path disagree with the layered decoder.
    #[test]
    fn mutated_plain_frames_decode_as_the_layers_do(
        flips in proptest::collection::vec((0usize..80, proptest::prelude::any::<u8>()), 1..4),
        cut in 0usize..8,
    ) {
        let frame = eth(0x0800, &udp4(SRC4, DST4, 5060, 5080, SIP));
        if let Err(e) = mutated_agree(frame, &flips, cut) {
            return Err(proptest::test_runner::TestCaseError::fail(e));
        }
    }

    /// The same for a frame with one VLAN tag: flips reach the tag's type, the carried
    /// EtherType and the headers behind them.
    #[test]
    fn mutated_tagged_frames_decode_as_the_layers_do(
        flips in proptest::collection::vec((0usize..84, proptest::prelude::any::<u8>()), 1..4),
        cut in 0usize..8,
    ) {
        let ip = udp4(SRC4, DST4, 5060, 5080, SIP);
        let frame = eth(0x8100, &[&[0, 1][..], &[0x08, 0x00], &ip].concat());
        if let Err(e) = mutated_agree(frame, &flips, cut) {
            return Err(proptest::test_runner::TestCaseError::fail(e));
        }
    }
}
