//! Fuzzes the stream-carrying transports through `Decoder::decode`: TCP segments of one
//! connection in both directions (SIP framing, and WebSocket after an Upgrade or met
//! mid-stream) and SCTP packets (chunk walking), on raw IPv4 with small tables.
//!
//! Input: records of [kind (1), length (1), bytes]. Kind bits 0-1: 0 client->server TCP,
//! 1 server->client TCP, 2 SCTP, 3 SCTP the other way; bit 2: a gap before the segment (its
//! sequence number skips ahead); bit 3: FIN; bit 4: the first client segment is the WebSocket
//! Upgrade (so the frames behind it are reached without the fuzzer finding the handshake).
#![no_main]

use libfuzzer_sys::fuzz_target;
use simboxd_core::config::LimitsConfig;
use simboxd_core::decode::Decoder;
use simboxd_core::model::{LinkType, RawPacket, Timestamp};

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: sip\r\n\r\n";

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], body: &[u8]) -> Vec<u8> {
    let total = (20 + body.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(body);
    p
}

fn tcp(sport: u16, dport: u16, seq: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + data.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&1u32.to_be_bytes());
    t.push(0x50);
    t.push(if fin { 0x11 } else { 0x10 });
    t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(data);
    t
}

fuzz_target!(|data: &[u8]| {
    let limits = LimitsConfig {
        tcp_streams: 4,
        tcp_stream_bytes: 2048,
        tcp_total_bytes: 4096,
        tcp_timeout_secs: 5,
        ..LimitsConfig::default()
    };
    let mut dec = Decoder::new(&limits);
    let (a, b) = ([100, 64, 0, 1], [203, 0, 113, 1]);
    let mut seq = [1000u32, 5000u32];
    let mut ts = Timestamp::from_micros(1_700_000_000_000_000);
    let mut rest = data;
    let mut first = true;
    while rest.len() >= 2 {
        let (kind, len) = (rest[0], usize::from(rest[1]));
        let body = &rest[2..];
        let chunk = &body[..len.min(body.len())];
        rest = &body[chunk.len()..];
        ts = ts.plus_secs(0.01);
        let dir = usize::from(kind & 1);
        let pkt = if kind & 2 == 0 {
            let mut payload = chunk.to_vec();
            if first && dir == 0 && kind & 0x10 != 0 {
                payload = [UPGRADE, chunk].concat();
            }
            first = false;
            if kind & 4 != 0 {
                seq[dir] = seq[dir].wrapping_add(1 + u32::from(kind >> 5) * 100);
            }
            let (src, dst, sp, dp) = if dir == 0 { (a, b, 51000, 443) } else { (b, a, 443, 51000) };
            let t = tcp(sp, dp, seq[dir], kind & 8 != 0, &payload);
            seq[dir] = seq[dir].wrapping_add(payload.len() as u32);
            ipv4(6, src, dst, &t)
        } else {
            let (src, dst) = if dir == 0 { (a, b) } else { (b, a) };
            ipv4(132, src, dst, chunk)
        };
        let raw = RawPacket {
            ts,
            link: LinkType::RAW,
            data: &pkt,
            wire_len: pkt.len() as u32,
        };
        dec.decode(&raw, &mut |d| {
            assert!(d.payload.len() <= 65535);
        });
    }
    let sizes = dec.table_sizes();
    assert!(sizes.iter().all(|(name, n)| match *name {
        "tcp_streams" => *n <= 4,
        "tcp_bytes" => *n <= 4096 + 2048,
        _ => true,
    }));
});
