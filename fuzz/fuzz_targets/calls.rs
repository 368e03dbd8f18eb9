//! The call tracker on arbitrary datagrams: no panic, tables empty after `finish`.
//! Input: records of [selector byte, length byte, payload...]; the selector picks addresses,
//! transport and a time step, so SIP and media between the same endpoints interleave.
#![no_main]

use libfuzzer_sys::fuzz_target;
use simboxd_core::calls::Tracker;
use simboxd_core::engine::EngineConfig as Config;
use simboxd_core::model::{Datagram, Timestamp, Transport};
use std::net::SocketAddr;

fuzz_target!(|data: &[u8]| {
    let mut cfg = Config::default();
    cfg.limits.dialogs = 4;
    cfg.limits.media_flows = 4;
    cfg.limits.registrations = 2;
    let mut t = Tracker::new(&cfg.network, &cfg.limits);
    let ends: [SocketAddr; 4] = [
        "192.168.1.10:5060".parse().unwrap(),
        "203.0.113.5:5060".parse().unwrap(),
        "192.168.1.10:40000".parse().unwrap(),
        "203.0.113.5:30000".parse().unwrap(),
    ];
    let mut ev = Vec::new();
    let mut now = 0i64;
    let mut rest = data;
    while let [sel, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        now += i64::from(sel >> 4) * 250_000;
        let src = ends[usize::from(sel & 3)];
        let dst = ends[usize::from((sel >> 2) & 3)];
        let d = Datagram {
            ts: Timestamp(now),
            src,
            dst,
            transport: if sel & 0x80 != 0 {
                Transport::Tcp
            } else {
                Transport::Udp
            },
            payload,
            ip_len: n as u32 + 28,
        };
        t.on_datagram(&d, &mut ev);
        ev.clear();
    }
    t.finish(Timestamp(now + 1), &mut ev);
    assert!(t.table_sizes().iter().all(|(_, n)| *n == 0));
});
