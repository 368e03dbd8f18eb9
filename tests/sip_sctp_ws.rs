//! SIP over SCTP (RFC 4168) and over WebSocket (RFC 7118) through `simboxd analyze`: a capture
//! written here with real-shaped packets (an SCTP trunk bundling a SACK with DATA chunks, a
//! WebRTC client's Upgrade, masked frames and a message split over two frames and TCP
//! segments) is read as calls on the right lines, and tshark finds the same INVITEs.
//!
//! The public corpus (`SOURCES.md`) holds no SIP over SCTP or WebSocket capture yet (its SCTP
//! and WebSocket packets carry other protocols), so there is no corpus test for them.

use etherparse::{IpNumber, Ipv4Header, PacketBuilder};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

const LINE_SCTP: [u8; 4] = [100, 64, 7, 10];
const TRUNK: [u8; 4] = [203, 0, 113, 60];
const LINE_WS: [u8; 4] = [100, 64, 7, 11];
const EDGE: [u8; 4] = [203, 0, 113, 61];

struct Pcap {
    bytes: Vec<u8>,
    t: u64,
}

impl Pcap {
    fn new() -> Pcap {
        let mut b = Vec::new();
        b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65535u32.to_le_bytes());
        b.extend_from_slice(&101u32.to_le_bytes()); // raw IP
        Pcap {
            bytes: b,
            t: 1_767_600_000_000_000,
        }
    }

    fn packet(&mut self, ip: &[u8], gap_ms: u64) {
        self.t += gap_ms * 1000;
        let b = &mut self.bytes;
        b.extend_from_slice(&((self.t / 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&((self.t % 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        b.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        b.extend_from_slice(ip);
    }

    fn sctp(&mut self, src: [u8; 4], dst: [u8; 4], chunks: &[Vec<u8>], gap_ms: u64) {
        let mut body = Vec::new();
        body.extend_from_slice(&5060u16.to_be_bytes());
        body.extend_from_slice(&5060u16.to_be_bytes());
        body.extend_from_slice(&0x5eed_0001u32.to_be_bytes());
        body.extend_from_slice(&0u32.to_be_bytes());
        for c in chunks {
            body.extend_from_slice(c);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let h = Ipv4Header::new(body.len() as u16, 64, IpNumber(132), src, dst).unwrap();
        let mut ip = Vec::new();
        h.write(&mut ip).unwrap();
        ip.extend_from_slice(&body);
        self.packet(&ip, gap_ms);
    }

    fn tcp(&mut self, src: ([u8; 4], u16), dst: ([u8; 4], u16), seq: u32, data: &[u8]) {
        let mut ip = Vec::new();
        PacketBuilder::ipv4(src.0, dst.0, 64)
            .tcp(src.1, dst.1, seq, 64240)
            .ack(1)
            .write(&mut ip, data)
            .unwrap();
        self.packet(&ip, 20);
    }
}

fn data_chunk(tsn: u32, msg: &str) -> Vec<u8> {
    let mut c = vec![0u8, 0x03];
    c.extend_from_slice(&((16 + msg.len()) as u16).to_be_bytes());
    c.extend_from_slice(&tsn.to_be_bytes());
    c.extend_from_slice(&0u16.to_be_bytes());
    c.extend_from_slice(&(tsn as u16).to_be_bytes());
    c.extend_from_slice(&0u32.to_be_bytes()); // PPID 0: unspecified, as SIP trunks send
    c.extend_from_slice(msg.as_bytes());
    c
}

fn sack() -> Vec<u8> {
    let mut c = vec![3u8, 0, 0, 16];
    c.extend_from_slice(&1u32.to_be_bytes());
    c.extend_from_slice(&65535u32.to_be_bytes());
    c.extend_from_slice(&[0, 0, 0, 0]);
    c
}

fn ws_frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | op];
    let m = if mask.is_some() { 0x80 } else { 0 };
    if payload.len() < 126 {
        f.push(m | payload.len() as u8);
    } else {
        f.push(m | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().zip(k.iter().cycle()).map(|(b, k)| b ^ k));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

fn ip(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

fn invite(call_id: &str, from: Ipv4Addr, to: Ipv4Addr, transport: &str, number: &str) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {from}\r\ns=-\r\nc=IN IP4 {from}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    );
    format!(
        "INVITE sip:{number}@{to} SIP/2.0\r\nVia: SIP/2.0/{transport} {from};branch=z9hG4bK-{call_id}\r\nFrom: <sip:+447700900123@{from}>;tag=a1\r\nTo: <sip:{number}@{to}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:gw@{from};transport={}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        transport.to_lowercase(),
        sdp.len()
    )
}

fn response(code: &str, call_id: &str, from: Ipv4Addr, transport: &str, method: &str) -> String {
    format!(
        "SIP/2.0 {code}\r\nVia: SIP/2.0/{transport} {from};branch=z9hG4bK-{call_id}\r\nFrom: <sip:+447700900123@{from}>;tag=a1\r\nTo: <sip:x@y>;tag=b2\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn bye(call_id: &str, from: Ipv4Addr, transport: &str) -> String {
    format!(
        "BYE sip:x@{from} SIP/2.0\r\nVia: SIP/2.0/{transport} {from};branch=z9hG4bK-bye-{call_id}\r\nFrom: <sip:+447700900123@{from}>;tag=a1\r\nTo: <sip:x@y>;tag=b2\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Two inbound calls over SCTP (one DATA chunk per message, the 180 and 200 bundled in one
/// packet with a SACK) and two over WebSocket.
fn capture() -> Vec<u8> {
    let mut p = Pcap::new();
    let mut tsn = 1;
    for n in 0..2 {
        let id = format!("sctp-{n}@trunk");
        let inv = invite(
            &id,
            ip(TRUNK),
            ip(LINE_SCTP),
            "SCTP",
            &format!("+4930555{n}"),
        );
        p.sctp(TRUNK, LINE_SCTP, &[data_chunk(tsn, &inv)], 500);
        tsn += 1;
        let ringing = response("180 Ringing", &id, ip(TRUNK), "SCTP", "INVITE");
        let ok = response("200 OK", &id, ip(TRUNK), "SCTP", "INVITE");
        p.sctp(
            LINE_SCTP,
            TRUNK,
            &[sack(), data_chunk(tsn, &ringing), data_chunk(tsn + 1, &ok)],
            100,
        );
        tsn += 2;
        p.sctp(
            TRUNK,
            LINE_SCTP,
            &[data_chunk(tsn, &bye(&id, ip(TRUNK), "SCTP"))],
            8000,
        );
        p.sctp(
            LINE_SCTP,
            TRUNK,
            &[data_chunk(
                tsn + 1,
                &response("200 OK", &id, ip(TRUNK), "SCTP", "BYE"),
            )],
            50,
        );
        tsn += 2;
    }
    // WebSocket: the browser on the line connects out to the edge proxy (RFC 7118 section 4).
    let client = (LINE_WS, 51000u16);
    let server = (EDGE, 443u16);
    let up = "GET / HTTP/1.1\r\nHost: edge.example.net\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://app.example.net\r\nSec-WebSocket-Protocol: sip\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let sw = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: sip\r\n\r\n";
    let (mut cseq, mut sseq) = (1000u32, 9000u32);
    p.tcp(client, server, cseq, up.as_bytes());
    cseq += up.len() as u32;
    p.tcp(server, client, sseq, sw.as_bytes());
    sseq += sw.len() as u32;
    let key = [0x3d, 0x21, 0xfa, 0x37];
    for n in 0..2 {
        let id = format!("ws-{n}@edge");
        let inv = invite(&id, ip(EDGE), ip(LINE_WS), "WSS", &format!("+4930777{n}"));
        // The server's INVITE in two frames (a fragmented message), over two TCP segments.
        let b = inv.as_bytes();
        let mut frames = ws_frame(false, 1, &b[..200], None);
        frames.extend(ws_frame(true, 0, &b[200..], None));
        let cut = frames.len() / 2;
        p.tcp(server, client, sseq, &frames[..cut]);
        p.tcp(server, client, sseq + cut as u32, &frames[cut..]);
        sseq += frames.len() as u32;
        // The browser answers with masked frames: 180 and 200 in one segment.
        let mut answer = ws_frame(
            true,
            1,
            response("180 Ringing", &id, ip(EDGE), "WSS", "INVITE").as_bytes(),
            Some(key),
        );
        answer.extend(ws_frame(
            true,
            1,
            response("200 OK", &id, ip(EDGE), "WSS", "INVITE").as_bytes(),
            Some(key),
        ));
        p.tcp(client, server, cseq, &answer);
        cseq += answer.len() as u32;
        let b = ws_frame(true, 1, bye(&id, ip(EDGE), "WSS").as_bytes(), None);
        p.tcp(server, client, sseq, &b);
        sseq += b.len() as u32;
        let ok = ws_frame(
            true,
            1,
            response("200 OK", &id, ip(EDGE), "WSS", "BYE").as_bytes(),
            Some(key),
        );
        p.tcp(client, server, cseq, &ok);
        cseq += ok.len() as u32;
    }
    p.bytes
}

#[test]
fn calls_over_sctp_and_websocket_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sctp-ws.pcap");
    std::fs::write(&f, capture()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .args(["analyze", "--format", "json", "--quiet"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["stats"]["calls"], 4, "{}", j["stats"]);
    let errors = &j["stats"]["decode_errors"];
    assert!(errors.as_object().is_none_or(|o| o.is_empty()), "{errors}");
    let calls = j["calls"].as_array().unwrap();
    let on = |line: [u8; 4], transport: &str| {
        calls
            .iter()
            .filter(|c| {
                c["line"] == ip(line).to_string()
                    && c["transport"] == transport
                    && c["outcome"] == "answered"
                    && c["direction"] == "inbound"
            })
            .count()
    };
    assert_eq!(on(LINE_SCTP, "sctp"), 2, "{calls:#?}");
    assert_eq!(on(LINE_WS, "ws"), 2, "{calls:#?}");
    tshark_agrees(&f, 4);
}

/// tshark (Wireshark's dissectors) reads the same INVITEs from the file.
fn tshark_agrees(f: &Path, invites: usize) {
    let ok = Command::new("tshark").arg("-v").output().is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tshark missing"
        );
        eprintln!("skipped: tshark not installed");
        return;
    }
    let o = Command::new("tshark")
        .arg("-r")
        .arg(f)
        .args([
            "-Y",
            "sip.Method == \"INVITE\"",
            "-T",
            "fields",
            "-e",
            "sip.Call-ID",
        ])
        .output()
        .unwrap();
    let ids: std::collections::BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), invites, "tshark found {ids:?}");
}
