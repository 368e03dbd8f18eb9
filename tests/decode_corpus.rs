//! Decodes the public capture corpus: every libpcap-readable file must decode without a panic,
//! and several files must yield the SIP messages tshark finds in them.

use simboxd::capture::Capture;
use simboxd_core::config::LimitsConfig;
use simboxd_core::decode::{starts_like_sip, Decoder};
use simboxd_core::model::{Counters, Transport};
use std::path::Path;

#[derive(Debug, Default)]
struct Tally {
    packets: u64,
    datagrams: u64,
    sip_udp: u64,
    sip_tcp: u64,
    /// SIP over SCTP or WebSocket (none in the corpus so far).
    sip_other: u64,
    errors: Counters,
}

/// Decodes a whole file with `limits`; `None` when libpcap cannot open it.
fn run_with(path: &Path, limits: &LimitsConfig) -> Option<Tally> {
    let mut cap = Capture::open_file(path).ok()?;
    let mut dec = Decoder::new(limits);
    let mut t = Tally::default();
    let mut last = None;
    while let Some(pkt) = cap.next_packet().expect("read error") {
        t.packets += 1;
        last = Some(pkt.ts);
        dec.decode(&pkt, &mut |d| {
            t.datagrams += 1;
            if d.transport == Transport::Udp {
                assert!(
                    d.ip_len as usize >= d.payload.len() + 8,
                    "{}",
                    path.display()
                );
            }
            if starts_like_sip(d.payload) {
                match d.transport {
                    Transport::Udp => t.sip_udp += 1,
                    Transport::Tcp => t.sip_tcp += 1,
                    Transport::Sctp | Transport::Ws => t.sip_other += 1,
                }
            }
        });
    }
    if let Some(ts) = last {
        // Everything left in the tables goes once idle long enough.
        dec.expire(ts.plus_secs(3600.0));
        assert!(
            dec.table_sizes().iter().all(|(_, n)| *n == 0),
            "{}",
            path.display()
        );
    }
    assert_eq!(cap.bytes_consumed(), cap.file_size().unwrap_or(0));
    t.errors = dec.errors().clone();
    Some(t)
}

fn run(path: &Path) -> Option<Tally> {
    run_with(path, &LimitsConfig::default())
}

/// (file, SIP messages over UDP, over TCP), each checked against tshark 4.0:
/// UDP: `tshark -r F -Y 'sip && !tcp' -T fields -e frame.number | wc -l`
/// TCP: `tshark -r F -Y 'sip && tcp' -T fields -e frame.number | wc -l`
/// (tshark counts frames; in these files no frame carries two messages).
const EXPECTED: &[(&str, u64, u64)] = &[
    // Linux SLL, IPv6 with Fragment headers: 32 SIP frames, some reassembled from fragments.
    ("sngrep/ipv6frag.pcap", 32, 0),
    // One 100 Trying inside PPTP GRE (PPP) behind an 802.1Q tag.
    ("nDPI/gre.pcapng", 1, 0),
    // LINKTYPE_RAW.
    ("heplify/ipip0.pcap", 8, 0),
    // Linux SLL, GTP-U carrying IPv6 with SIP over UDP (4) and TCP (13).
    ("arkime/gtp-iphone.pcap", 4, 13),
    // PPPoE sessions.
    ("PcapPlusPlus/sip_reqs.pcap", 4, 0),
    ("sipnab/pcap-samples/DTMFsipinfo.pcap", 32, 0),
    // A full call over TCP.
    ("sipnab/pcap-samples/sip-over-tcp.pcap", 0, 7),
    // SIP over TCP on port 5090, partly inside IP-in-IP.
    ("sngrep/ipip.pcap", 0, 4),
    ("suricata-verify/sip-tcp-method/sip-tcp.pcap", 0, 2),
    // LINKTYPE_IPV4.
    ("zeek/sip-long-request-response-paths.pcap", 2, 0),
    // 802.1Q/802.1ad frames among many other protocols.
    ("arkime/arkime_synthetic.pcap", 1, 3),
    // BSD NULL loopback.
    ("sipnab/pcap-samples/h263-over-rtp.pcap", 4, 0),
    // Plain Ethernet, many calls.
    ("sngrep/aaa.pcap", 81, 0),
    ("sipnab/pcap-samples/sipp-branch-scenario.pcapng", 8989, 0),
    // Negatives: SSDP `NOTIFY * HTTP/1.1` (tshark: 0) and HTTP on TCP 5060 (tshark's SIP
    // dissector claims 2 frames by port, but they hold HTTP: `GET /` and `HTTP/1.1 200`).
    ("suricata-verify/sip-ssdp-pm/ssdp.pcap", 0, 0),
    ("nDPI/http_on_sip_port.pcap", 0, 0),
];

#[test]
fn sip_messages_match_tshark() {
    let Some(dir) = simboxd::corpus::corpus_dir() else {
        return;
    };
    for (file, udp, tcp) in EXPECTED {
        let t = run(&dir.join(file)).unwrap_or_else(|| panic!("{file}: cannot open"));
        assert_eq!((t.sip_udp, t.sip_tcp), (*udp, *tcp), "{file}: {t:?}");
    }
}

#[test]
fn ipv6_fragments_are_reassembled() {
    let Some(dir) = simboxd::corpus::corpus_dir() else {
        return;
    };
    // 34 frames; `tshark -r sngrep/ipv6frag.pcap -Y ipv6.fragments -T fields -e frame.number`
    // gives frames 2 and 5: two SIP messages reassembled from frames 1+2 and 4+5. So 32
    // datagrams, all SIP, two of them only visible through reassembly.
    let t = run(&dir.join("sngrep/ipv6frag.pcap")).unwrap();
    assert_eq!(t.packets, 34);
    assert_eq!(t.datagrams, 32);
    assert_eq!(t.errors, Counters::default());
}

#[test]
fn tcp_body_over_several_segments() {
    let Some(dir) = simboxd::corpus::corpus_dir() else {
        return;
    };
    // An INVITE with Content-Length 65536 (65793 bytes in all) over five segments, then a
    // 100 Trying: `tshark -r F -Y 'sip && tcp' -T fields -e frame.number` gives frames 9, 11.
    let f = dir.join("suricata-verify/sip-body-large/sip-body-large.pcap");
    let roomy = LimitsConfig {
        tcp_stream_bytes: 128 << 10,
        ..LimitsConfig::default()
    };
    let t = run_with(&f, &roomy).unwrap();
    assert_eq!((t.sip_udp, t.sip_tcp), (0, 2), "{t:?}");
    assert_eq!(t.errors, Counters::default());
    // The default (256 KiB per stream) takes it too.
    let t = run(&f).unwrap();
    assert_eq!((t.sip_udp, t.sip_tcp), (0, 2), "{t:?}");
    // With 64 KiB per stream the INVITE is too large: dropped and counted.
    let tight = LimitsConfig {
        tcp_stream_bytes: 64 << 10,
        ..LimitsConfig::default()
    };
    let t = run_with(&f, &tight).unwrap();
    assert_eq!((t.sip_udp, t.sip_tcp), (0, 1), "{t:?}");
    assert_eq!(t.errors.get("tcp_oversize"), 1);
}

/// Every file libpcap can open (whatever its name) decodes without a panic and with every table
/// empty after the idle timeouts; text vectors are skipped by extension.
#[test]
fn whole_corpus_decodes() {
    let Some(dir) = simboxd::corpus::corpus_dir() else {
        return;
    };
    let mut opened = 0;
    let mut sip = 0;
    let mut unreadable = Vec::new();
    for f in simboxd::corpus::files_under(&dir) {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(
            ext,
            "dat" | "sip" | "md" | "out" | "test" | "yaml" | "rules" | "txt" | "json"
        ) {
            continue;
        }
        match run(&f) {
            Some(t) => {
                opened += 1;
                sip += t.sip_udp + t.sip_tcp;
            }
            None if matches!(ext, "pcap" | "pcapng" | "cap") => {
                unreadable.push(f.strip_prefix(&dir).unwrap_or(&f).display().to_string())
            }
            None => {}
        }
    }
    // Only the two Microsoft NetMon files are not libpcap-readable.
    assert_eq!(
        unreadable,
        [
            "sipnab/pcap-samples/c07-sip-r2.cap",
            "sipnab/pcap-samples/rtsp-packets.cap"
        ]
    );
    assert_eq!(opened, 83, "files opened");
    assert!(sip > 9000, "{sip}");
}
