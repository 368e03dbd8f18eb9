//! Tracker throughput and bounded memory under floods. Prints figures; no assertions on speed.
//!
//! `cargo bench --bench calls` (release). Scenarios:
//! - `calls`: 100 concurrent answered calls, 30 s of two-way G.729 RTP each (300k datagrams);
//! - `flow flood`: 400k distinct unannounced RTP-looking flows into a 50k-flow table;
//! - `invite flood`: 200k INVITEs with distinct Call-IDs into a 20k-dialog table.

use simboxd::config::Config;
use simboxd_core::calls::Tracker;
use simboxd_core::model::{Datagram, Timestamp, Transport};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

struct Pkt {
    us: i64,
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

fn sock(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

fn sip(start: &str, call: usize, cseq: &str, to_tag: bool, body: &str) -> Vec<u8> {
    let tag = if to_tag { ";tag=b" } else { "" };
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{start}\r\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK{call}{cseq}\r\n\
         From: <sip:0086{call}@203.0.113.10>;tag=a{call}\r\nTo: <sip:138{call:08}@10.1.0.1>{tag}\r\n\
         Call-ID: bench-{call}\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 18 101\r\n\
         a=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
    )
}

fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut v = vec![0x80, 18];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(&[0x55; 20]);
    v
}

fn call_traffic(calls: usize, secs: i64) -> Vec<Pkt> {
    let switch = sock(203, 0, 113, 10, 5060);
    let mut out = Vec::new();
    for c in 0..calls {
        let line = sock(10, 1, (c / 250) as u8, (c % 250) as u8 + 1, 5060);
        let t0 = c as i64 * 10_000;
        let sw_rtp = sock(203, 0, 113, 10, 20_000 + 2 * c as u16);
        let ln_rtp = SocketAddr::new(line.ip(), 40_000);
        let ruri = format!("INVITE sip:138{c:08}@{line} SIP/2.0");
        let offer = sdp("203.0.113.10", sw_rtp.port());
        let answer = sdp(&line.ip().to_string(), 40_000);
        out.push(Pkt {
            us: t0,
            src: switch,
            dst: line,
            payload: sip(&ruri, c, "1 INVITE", false, &offer),
        });
        out.push(Pkt {
            us: t0 + 100_000,
            src: line,
            dst: switch,
            payload: sip("SIP/2.0 200 OK", c, "1 INVITE", true, &answer),
        });
        out.push(Pkt {
            us: t0 + 150_000,
            src: switch,
            dst: line,
            payload: sip(&ruri.replace("INVITE", "ACK"), c, "1 ACK", true, ""),
        });
        for i in 0..secs * 50 {
            let at = t0 + 200_000 + i * 20_000;
            out.push(Pkt {
                us: at,
                src: sw_rtp,
                dst: ln_rtp,
                payload: rtp(i as u16, i as u32 * 160, c as u32),
            });
            out.push(Pkt {
                us: at + 2_000,
                src: ln_rtp,
                dst: sw_rtp,
                payload: rtp(i as u16, i as u32 * 160, !(c as u32)),
            });
        }
        let bye_at = t0 + 200_000 + secs * 1_000_000;
        out.push(Pkt {
            us: bye_at,
            src: switch,
            dst: line,
            payload: sip(&ruri.replace("INVITE", "BYE"), c, "2 BYE", true, ""),
        });
    }
    out.sort_by_key(|p| p.us);
    out
}

fn feed(t: &mut Tracker, pkts: &[Pkt]) -> (f64, usize) {
    let mut ev = Vec::new();
    let mut events = 0usize;
    let start = Instant::now();
    for p in pkts {
        let d = Datagram {
            ts: Timestamp(p.us),
            src: p.src,
            dst: p.dst,
            transport: Transport::Udp,
            payload: &p.payload,
            ip_len: p.payload.len() as u32 + 28,
        };
        t.on_datagram(&d, &mut ev);
        events += ev.len();
        ev.clear();
    }
    let last = pkts.last().map_or(0, |p| p.us);
    t.finish(Timestamp(last + 1), &mut ev);
    events += ev.len();
    (start.elapsed().as_secs_f64(), events)
}

fn report(name: &str, t: &Tracker, n: usize, secs: f64, events: usize) {
    println!(
        "{name}: {n} datagrams in {secs:.3} s = {:.0} datagrams/s; {events} events; evictions {:?}; stats {:?}",
        n as f64 / secs,
        t.evictions().0,
        t.stats()
    );
}

fn main() {
    let cfg = Config::default();

    let pkts = call_traffic(100, 30);
    let e = cfg.engine();
    let mut t = Tracker::new(&e.network, &e.limits);
    let (secs, events) = feed(&mut t, &pkts);
    report("calls", &t, pkts.len(), secs, events);

    let mut cfg_small = Config::default();
    cfg_small.limits.media_flows = 50_000;
    let flood: Vec<Pkt> = (0..400_000u32)
        .map(|i| Pkt {
            us: i64::from(i) * 10,
            src: sock(
                10,
                2,
                (i >> 16) as u8,
                (i >> 8) as u8,
                1024 + (i & 0xff) as u16,
            ),
            dst: sock(198, 51, 100, 1, 40_000),
            payload: rtp(i as u16, i, i),
        })
        .collect();
    let e = cfg_small.engine();
    let mut t = Tracker::new(&e.network, &e.limits);
    let (secs, events) = feed(&mut t, &flood);
    report("flow flood", &t, flood.len(), secs, events);

    let mut cfg_small = Config::default();
    cfg_small.limits.dialogs = 20_000;
    let invites: Vec<Pkt> = (0..200_000usize)
        .map(|c| Pkt {
            us: c as i64 * 50,
            src: sock(203, 0, 113, 10, 5060),
            dst: sock(10, 1, 0, 1, 5060),
            payload: sip("INVITE sip:1@10.1.0.1 SIP/2.0", c, "1 INVITE", false, ""),
        })
        .collect();
    let e = cfg_small.engine();
    let mut t = Tracker::new(&e.network, &e.limits);
    let (secs, events) = feed(&mut t, &invites);
    report("invite flood", &t, invites.len(), secs, events);
}
