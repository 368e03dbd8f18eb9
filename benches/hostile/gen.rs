//! The hostile capture: what a public SIP address range receives on a bad day, and what a tap
//! sees of broken frames, written as a classic pcap (Ethernet), deterministic by seed.
//!
//! Mix (shares of the packets): INVITE floods with random Call-IDs from one peer and from random
//! sources to random lines, a few rejections from the lines, REGISTER floods (enumeration), IP
//! fragment floods that never complete, TCP SIP streams that never finish a message (many
//! connections), a media flood (one-way RTP-looking UDP flows), and malformed packets at every
//! layer (Ethernet, VLAN, IPv4/IPv6, UDP, TCP, SIP headers, Content-Length, SDP). Used by
//! `benches/hostile.rs` and `tests/hostile_capture.rs` (`#[path]` include: not in `crates/sim`,
//! which models subscriber lines, not attacks).

#![allow(dead_code)]

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{self, Write};
use std::net::Ipv4Addr;

/// Packets per second of capture time (sets the span: 400 k packets = 400 s).
pub const RATE_PPS: u64 = 1000;
/// 2026-01-05T08:00:00Z.
const START_SECS: u64 = 1_767_600_000;
/// The lines attacked: a /16 inside the default home networks.
const LINES_BASE: u32 = 0x0a14_0000; // 10.20.0.0
const FLOOD_PEER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
const ENUM_PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const TCP_PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// Call-IDs remembered for the lines' rejections and stream states for continued TCP data.
const RECENT: usize = 1024;
/// Media flows of the flood (each sends several packets).
const MEDIA_FLOWS: u32 = 60_000;

/// Writes the pcap global header (microsecond stamps, Ethernet).
pub fn pcap_header<W: Write>(out: &mut W) -> io::Result<()> {
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0i32.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&65535u32.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes())
}

fn pcap_record<W: Write>(out: &mut W, micros: u64, frame: &[u8]) -> io::Result<()> {
    out.write_all(&((micros / 1_000_000) as u32).to_le_bytes())?;
    out.write_all(&((micros % 1_000_000) as u32).to_le_bytes())?;
    let n = frame.len() as u32;
    out.write_all(&n.to_le_bytes())?;
    out.write_all(&n.to_le_bytes())?;
    out.write_all(frame)
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&[0x00, 0x1b, 0x21, 0x01, 0x02, 0x03]);
    f.extend_from_slice(&[0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// IPv4 header (checksum 0: the decoder does not verify it) + payload.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, id: u16, frag: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()).min(65535) as u16;
    let mut p = Vec::with_capacity(20 + payload.len());
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()).min(65535) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&[0x50, flags]);
    t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

fn udp_frame(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    eth(
        0x0800,
        &ipv4(src, dst, 17, 0, 0x4000, &udp(sport, dport, payload)),
    )
}

struct Gen {
    rng: ChaCha8Rng,
    recent_calls: Vec<(Ipv4Addr, Ipv4Addr, String)>,
    tcp_streams: Vec<(Ipv4Addr, u16, Ipv4Addr, u32)>,
    media_seq: Vec<u16>,
}

fn hex(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16usize)]))
        .collect()
}

impl Gen {
    fn line(&mut self) -> Ipv4Addr {
        Ipv4Addr::from(LINES_BASE + self.rng.random_range(1..65535u32))
    }

    fn public(&mut self) -> Ipv4Addr {
        // Random sources outside the home networks (45.0.0.0/8 .. 95.0.0.0/8).
        Ipv4Addr::from((self.rng.random_range(45..96u32) << 24) | self.rng.random_range(0..1 << 24))
    }

    fn remember_call(&mut self, src: Ipv4Addr, dst: Ipv4Addr, cid: &str) {
        let item = (src, dst, cid.to_string());
        if self.recent_calls.len() < RECENT {
            self.recent_calls.push(item);
        } else {
            let i = self.rng.random_range(0..RECENT);
            self.recent_calls[i] = item;
        }
    }

    fn invite(&mut self, src: Ipv4Addr, dst: Ipv4Addr, ua: &str) -> Vec<u8> {
        let cid = hex(&mut self.rng, 32);
        let number = format!(
            "00972{}",
            self.rng.random_range(100_000_000..999_999_999u64)
        );
        let tag = hex(&mut self.rng, 8);
        let branch = hex(&mut self.rng, 12);
        let sdp = format!(
            "v=0\r\no=- {n} {n} IN IP4 {src}\r\ns=-\r\nc=IN IP4 {src}\r\nt=0 0\r\nm=audio {port} RTP/AVP 18 0 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n",
            n = self.rng.random_range(1..1_000_000u32),
            port = 10_000 + 2 * self.rng.random_range(0..5000u16)
        );
        let msg = format!(
            "INVITE sip:{number}@{dst} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5060;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\nFrom: \"{number}\" <sip:100@{src}>;tag={tag}\r\nTo: <sip:{number}@{dst}>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{src}:5060>\r\nUser-Agent: {ua}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        self.remember_call(src, dst, &cid);
        udp_frame(src, 5060, dst, 5060, msg.as_bytes())
    }

    fn rejection(&mut self) -> Option<Vec<u8>> {
        if self.recent_calls.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.recent_calls.len());
        let (src, dst, cid) = self.recent_calls.swap_remove(i);
        let code = [
            ("486", "Busy Here"),
            ("404", "Not Found"),
            ("403", "Forbidden"),
        ][self.rng.random_range(0..3usize)];
        let msg = format!(
            "SIP/2.0 {} {}\r\nVia: SIP/2.0/UDP {src}:5060;branch=z9hG4bK1\r\nFrom: <sip:100@{src}>;tag=a\r\nTo: <sip:x@{dst}>;tag={}\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            code.0,
            code.1,
            hex(&mut self.rng, 6)
        );
        Some(udp_frame(dst, 5060, src, 5060, msg.as_bytes()))
    }

    fn register(&mut self) -> Vec<u8> {
        let dst = self.line();
        let user = self.rng.random_range(100..10_000u32);
        let msg = format!(
            "REGISTER sip:{dst} SIP/2.0\r\nVia: SIP/2.0/UDP {ENUM_PEER}:5070;branch=z9hG4bK{}\r\nFrom: <sip:{user}@{dst}>;tag={}\r\nTo: <sip:{user}@{dst}>\r\nCall-ID: {}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{ENUM_PEER}:5070>\r\nExpires: 3600\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n",
            hex(&mut self.rng, 10),
            hex(&mut self.rng, 8),
            hex(&mut self.rng, 24)
        );
        udp_frame(ENUM_PEER, 5070, dst, 5060, msg.as_bytes())
    }

    /// A fragment of a datagram that never completes: a first fragment (UDP header + start of
    /// an INVITE, more-fragments set) or a later one at a random offset.
    fn fragment(&mut self) -> Vec<u8> {
        let src = self.public();
        let dst = self.line();
        let id: u16 = self.rng.random();
        if self.rng.random_bool(0.5) {
            let mut body = b"INVITE sip:1@10.20.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n".to_vec();
            body.resize(1472, b'a');
            let u = udp(5060, 5060, &body);
            let mut ip = ipv4(src, dst, 17, id, 0x2000, &u[..1480]);
            ip[2..4].copy_from_slice(&1500u16.to_be_bytes());
            eth(0x0800, &ip)
        } else {
            let off: u16 = self.rng.random_range(1..8000);
            let more = if self.rng.random_bool(0.5) { 0x2000 } else { 0 };
            let data = vec![b'z'; 8 * self.rng.random_range(1..150usize)];
            eth(0x0800, &ipv4(src, dst, 17, id, more | off, &data))
        }
    }

    /// SIP over TCP that never completes: a new connection with half a message, or more
    /// partial data on a recent one (sometimes with a gap).
    fn tcp_partial(&mut self) -> Vec<u8> {
        let continue_old = !self.tcp_streams.is_empty() && self.rng.random_bool(0.4);
        let (src, sport, dst, seq) = if continue_old {
            let i = self.rng.random_range(0..self.tcp_streams.len());
            self.tcp_streams[i]
        } else {
            let src = if self.rng.random_bool(0.5) {
                TCP_PEER
            } else {
                self.public()
            };
            (
                src,
                self.rng.random_range(1024..65535u16),
                self.line(),
                self.rng.random(),
            )
        };
        let payload = if continue_old {
            let n = self.rng.random_range(20..400usize);
            let mut p = format!("X-Filler-{}: ", hex(&mut self.rng, 4)).into_bytes();
            p.resize(n, b'b');
            p.extend_from_slice(b"\r\n");
            p
        } else {
            let cl = if self.rng.random_bool(0.3) {
                "999999999"
            } else {
                "300"
            };
            format!(
                "INVITE sip:1234@{dst} SIP/2.0\r\nVia: SIP/2.0/TCP {src}:{sport};branch=z9hG4bK{}\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nContent-Length: {cl}\r\nFrom: <sip:a@{src}>;tag=1\r\n",
                hex(&mut self.rng, 8),
                hex(&mut self.rng, 20)
            )
            .into_bytes()
        };
        let gap = if self.rng.random_bool(0.1) { 5000 } else { 0 };
        let next = seq.wrapping_add(payload.len() as u32).wrapping_add(gap);
        let state = (src, sport, dst, next);
        if continue_old {
            if let Some(s) = self
                .tcp_streams
                .iter_mut()
                .find(|s| s.0 == src && s.1 == sport)
            {
                *s = state;
            }
        } else if self.tcp_streams.len() < RECENT {
            self.tcp_streams.push(state);
        } else {
            let i = self.rng.random_range(0..RECENT);
            self.tcp_streams[i] = state;
        }
        eth(
            0x0800,
            &ipv4(
                src,
                dst,
                6,
                0,
                0x4000,
                &tcp(sport, 5060, seq, 0x18, &payload),
            ),
        )
    }

    /// One packet of a one-way RTP-looking flow (G.711, 20 ms) from abroad to a line.
    fn media(&mut self) -> Vec<u8> {
        let flow = self.rng.random_range(0..MEDIA_FLOWS);
        if self.media_seq.is_empty() {
            self.media_seq = vec![0; MEDIA_FLOWS as usize];
        }
        let seq = self.media_seq[flow as usize];
        self.media_seq[flow as usize] = seq.wrapping_add(1);
        let src = Ipv4Addr::from(0x5b00_0000 | (flow.wrapping_mul(2_654_435_761) & 0x00ff_ffff));
        let dst = Ipv4Addr::from(LINES_BASE + 1 + flow % 65534);
        let sport = 20_000 + (flow % 20_000) as u16 * 2;
        let dport = 30_000 + (flow % 15_000) as u16 * 2;
        let mut p = Vec::with_capacity(172);
        p.extend_from_slice(&[0x80, 0x00]);
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&flow.to_be_bytes());
        let mut voice = [0u8; 160];
        self.rng.fill_bytes(&mut voice);
        p.extend_from_slice(&voice);
        udp_frame(src, sport, dst, dport, &p)
    }

    /// Broken at one layer or another.
    fn malformed(&mut self) -> Vec<u8> {
        let src = self.public();
        let dst = self.line();
        match self.rng.random_range(0..14u32) {
            // Ethernet cut short.
            0 => {
                let n = self.rng.random_range(0..14usize);
                eth(0x0800, &[])[..n].to_vec()
            }
            // VLAN tag cut short; a tower of QinQ tags.
            1 => eth(0x8100, &[0x00]),
            2 => {
                let mut p = Vec::new();
                for _ in 0..30 {
                    p.extend_from_slice(&[0x00, 0x0a, 0x88, 0xa8]);
                }
                eth(0x88a8, &p)
            }
            // IPv4: bad header length, total length beyond the frame, bad version.
            3 => {
                let mut ip = ipv4(src, dst, 17, 1, 0, &udp(5060, 5060, b"OPTIONS"));
                ip[0] = 0x43;
                eth(0x0800, &ip)
            }
            4 => {
                let mut ip = ipv4(src, dst, 17, 1, 0, &udp(5060, 5060, b"INVITE"));
                ip[2..4].copy_from_slice(&9000u16.to_be_bytes());
                eth(0x0800, &ip)
            }
            5 => eth(0x0800, &[0x75, 0, 0, 20, 0, 0]),
            // IPv6 header cut short.
            6 => eth(0x86dd, &[0x60, 0, 0, 0, 0, 40, 17, 64, 0x20, 0x01]),
            // UDP length below 8 / beyond the packet.
            7 => {
                let mut u = udp(5060, 5060, b"SIP/2.0 200 OK\r\n");
                let bad: u16 = if self.rng.random_bool(0.5) { 3 } else { 4000 };
                u[4..6].copy_from_slice(&bad.to_be_bytes());
                eth(0x0800, &ipv4(src, dst, 17, 0, 0, &u))
            }
            // TCP data offset below 5.
            8 => {
                let mut t = tcp(5060, 5060, 1, 0x18, b"INVITE sip:x SIP/2.0\r\n");
                t[12] = 0x20;
                eth(0x0800, &ipv4(src, dst, 6, 0, 0, &t))
            }
            // SIP with absurd headers: a huge value, hundreds of headers.
            9 => {
                let mut m = format!(
                    "INVITE sip:1@{dst} SIP/2.0\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:1@{dst}>\r\nUser-Agent: ",
                    hex(&mut self.rng, 16)
                );
                m.push_str(&"A".repeat(self.rng.random_range(2000..9000usize)));
                m.push_str("\r\n");
                for i in 0..self.rng.random_range(50..400u32) {
                    m.push_str(&format!("X-H{i}: v\r\n"));
                }
                m.push_str("Content-Length: 0\r\n\r\n");
                udp_frame(src, 5060, dst, 5060, m.as_bytes())
            }
            // Content-Length absurdly large or not a number.
            10 => {
                let cl = ["99999999999999999999999", "-5", "0x10", "4294967296"]
                    [self.rng.random_range(0..4usize)];
                let m = format!(
                    "INVITE sip:1@{dst} SIP/2.0\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:1@{dst}>\r\nContent-Type: application/sdp\r\nContent-Length: {cl}\r\n\r\nv=0\r\n",
                    hex(&mut self.rng, 16)
                );
                udp_frame(src, 5060, dst, 5060, m.as_bytes())
            }
            // SDP garbage.
            11 => {
                let mut body = vec![0u8; self.rng.random_range(10..600usize)];
                self.rng.fill_bytes(&mut body);
                let mut m = format!(
                    "INVITE sip:1@{dst} SIP/2.0\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:1@{dst}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
                    hex(&mut self.rng, 16),
                    body.len()
                )
                .into_bytes();
                m.extend_from_slice(&body);
                udp_frame(src, 5060, dst, 5060, &m)
            }
            // Random bytes after a SIP-looking start line.
            12 => {
                let mut m = b"INVITE sip:".to_vec();
                let mut junk = vec![0u8; self.rng.random_range(1..300usize)];
                self.rng.fill_bytes(&mut junk);
                m.extend_from_slice(&junk);
                udp_frame(src, 5060, dst, 5060, &m)
            }
            // VXLAN with a truncated inner frame; GRE cut short.
            _ => {
                if self.rng.random_bool(0.5) {
                    let mut v = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
                    v.extend_from_slice(&[0x00, 0x11, 0x22]);
                    udp_frame(src, 40000, dst, 4789, &v)
                } else {
                    eth(0x0800, &ipv4(src, dst, 47, 0, 0, &[0x00, 0x00, 0x88]))
                }
            }
        }
    }
}

/// Writes `packets` hostile frames (pcap header included); returns the frames written.
pub fn write_hostile<W: Write>(out: &mut W, seed: u64, packets: u64) -> io::Result<u64> {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(seed),
        recent_calls: Vec::new(),
        tcp_streams: Vec::new(),
        media_seq: Vec::new(),
    };
    pcap_header(out)?;
    let step = 1_000_000 / RATE_PPS;
    for i in 0..packets {
        let micros = START_SECS * 1_000_000 + i * step + g.rng.random_range(0..step);
        let kind = g.rng.random_range(0..100u32);
        let frame = match kind {
            0..22 => {
                let d = g.line();
                g.invite(FLOOD_PEER, d, "friendly-scanner")
            }
            22..32 => {
                let (s, d) = (g.public(), g.line());
                g.invite(s, d, "PortSIP VoIP SDK")
            }
            32..34 => match g.rejection() {
                Some(f) => f,
                None => g.invite(FLOOD_PEER, Ipv4Addr::from(LINES_BASE + 1), "sipcli/v1.8"),
            },
            34..44 => g.register(),
            44..54 => g.fragment(),
            54..64 => g.tcp_partial(),
            64..84 => g.media(),
            _ => g.malformed(),
        };
        pcap_record(out, micros, &frame)?;
    }
    Ok(packets)
}
