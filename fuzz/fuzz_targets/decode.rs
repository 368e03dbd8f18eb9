//! Fuzzes `Decoder::decode` with every supported link type and a sequence of packets, so the
//! fragment and TCP tables (kept small to exercise eviction) carry state between packets.
//!
//! Input: byte 0 picks the link type; then records of [gap seconds (1), length (2, BE), bytes].
#![no_main]

use libfuzzer_sys::fuzz_target;
use simboxd_core::config::LimitsConfig;
use simboxd_core::decode::Decoder;
use simboxd_core::model::{LinkType, RawPacket, Timestamp};

const LINKS: [i32; 11] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let link = LinkType(LINKS[usize::from(sel) % LINKS.len()]);
    let limits = LimitsConfig {
        fragments: 4,
        fragment_bytes: 8192,
        fragment_timeout_secs: 5,
        tcp_streams: 4,
        tcp_stream_bytes: 1024,
        tcp_total_bytes: 3000,
        tcp_timeout_secs: 5,
        ..LimitsConfig::default()
    };
    let mut dec = Decoder::new(&limits);
    let mut ts = Timestamp::from_micros(1_700_000_000_000_000);
    while rest.len() >= 3 {
        let gap = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let body = &rest[3..];
        let pkt = &body[..len.min(body.len())];
        rest = &body[pkt.len()..];
        ts = ts.plus_secs(f64::from(gap % 8));
        let raw = RawPacket {
            ts,
            link,
            data: pkt,
            wire_len: pkt.len() as u32,
        };
        dec.decode(&raw, &mut |d| {
            assert!(d.payload.len() <= 65535 + 1024);
        });
        if gap & 0x80 != 0 {
            dec.expire(ts);
        }
    }
    // A single whole-input packet as well, for inputs without the record framing.
    let raw = RawPacket {
        ts,
        link,
        data,
        wire_len: data.len() as u32,
    };
    dec.decode(&raw, &mut |_| {});
    let sizes = dec.table_sizes();
    assert!(sizes.iter().all(|(name, n)| match *name {
        "fragments" | "tcp_streams" => *n <= 4,
        "fragment_bytes" => *n <= 8192,
        _ => true,
    }));
});
