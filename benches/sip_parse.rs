//! SIP/SDP parser throughput: `cargo bench --bench sip_parse`. Prints messages/s and MB/s for a
//! typical INVITE with SDP, a 200 OK and a REGISTER, and the SDP parser alone.

use simboxd_core::{sdp, sip};
use std::hint::black_box;
use std::time::Instant;

/// INVITE headers; Content-Length and the SDP are appended in `main`.
const INVITE_HEAD: &str = "INVITE sip:+8613812345678@198.51.100.7:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:+8613812345678@198.51.100.7>\r\n\
From: \"8613900000000\" <sip:8613900000000@203.0.113.10>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@203.0.113.10\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:8613900000000@203.0.113.10:5060>\r\n\
User-Agent: VOS3000\r\n\
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE\r\n\
Content-Type: application/sdp\r\n";

const SDP: &str = "v=0\r\n\
o=VOS3000 1 1 IN IP4 203.0.113.10\r\n\
s=SIP Call\r\n\
c=IN IP4 203.0.113.10\r\n\
t=0 0\r\n\
m=audio 10000 RTP/AVP 18 8 0 101\r\n\
a=rtpmap:18 G729/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n";

const OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK776asdhds;rport=5060;received=203.0.113.10\r\n\
To: <sip:+8613812345678@198.51.100.7>;tag=as1234\r\n\
From: <sip:8613900000000@203.0.113.10>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@203.0.113.10\r\n\
CSeq: 1 INVITE\r\n\
Server: DBL\r\n\
Content-Length: 0\r\n\r\n";

const REGISTER: &[u8] = b"REGISTER sip:registrar.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.2.3:5066;branch=z9hG4bK-1;rport\r\n\
From: <sip:1001@registrar.example.com>;tag=a1\r\n\
To: <sip:1001@registrar.example.com>\r\n\
Call-ID: reg-1@10.1.2.3\r\n\
CSeq: 20 REGISTER\r\n\
Contact: <sip:1001@10.1.2.3:5066>;expires=60\r\n\
Expires: 60\r\n\
User-Agent: GoIP\r\n\
Content-Length: 0\r\n\r\n";

fn run(name: &str, msg: &[u8], iters: u32, f: impl Fn(&[u8]) -> usize) {
    let t = Instant::now();
    let mut acc = 0usize;
    for _ in 0..iters {
        acc = acc.wrapping_add(f(black_box(msg)));
    }
    let secs = t.elapsed().as_secs_f64();
    black_box(acc);
    let per = secs / f64::from(iters);
    println!(
        "{name:<28} {:>8.0} ns/msg {:>10.0} msg/s {:>8.1} MB/s",
        per * 1e9,
        1.0 / per,
        msg.len() as f64 / per / 1e6
    );
}

fn main() {
    let lim = sip::Limits::default();
    let iters = 200_000;
    let invite = format!("{INVITE_HEAD}Content-Length: {}\r\n\r\n{SDP}", SDP.len());
    let invite = invite.as_bytes();
    // Every message must parse, or the figures would time the error path.
    for m in [invite, OK, REGISTER] {
        let parsed = sip::parse(m, &lim);
        assert!(parsed.is_ok_and(|m| m.trailing == 0 && m.call_id().is_some()));
    }
    let full = |b: &[u8]| -> usize {
        let Ok(m) = sip::parse(b, &lim) else { return 0 };
        let mut n = m.call_id().map_or(0, str::len);
        n += m.cseq().map_or(0, |c| c.0 as usize);
        n += m.from().and_then(|f| f.tag).map_or(0, str::len);
        n += m.to().and_then(|t| t.user).map_or(0, str::len);
        n += m.top_via().and_then(|v| v.branch).map_or(0, str::len);
        n += m.request_uri().map_or(0, |u| u.host.len());
        if m.has_sdp() {
            if let Ok(s) = sdp::parse(m.body) {
                n += s.audio().map_or(0, |a| a.codec_names().count());
            }
        }
        n
    };
    run("looks_like_sip INVITE", invite, iters, |b| {
        usize::from(sip::looks_like_sip(b))
    });
    run("parse INVITE", invite, iters, |b| {
        sip::parse(b, &lim).map_or(0, |m| m.headers.len())
    });
    run("parse+accessors+SDP INVITE", invite, iters, full);
    run("parse+accessors 200 OK", OK, iters, full);
    run("parse+accessors REGISTER", REGISTER, iters, full);
    run("sdp::parse", SDP.as_bytes(), iters, |b| {
        sdp::parse(b).map_or(0, |s| s.media.len())
    });
}
