//! Live capture on the loopback interface: packets sent through a real UDP socket come back
//! through libpcap (BPF filter, immediate mode, read timeouts) and decode into the same datagram.
//! Skips with a message when the process may not capture (no CAP_NET_RAW).

use simboxd::capture::CaptureConfig;
use simboxd::capture::{Capture, Next};
use simboxd_core::config::LimitsConfig;
use simboxd_core::decode::Decoder;
use simboxd_core::model::{LinkType, Transport};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

#[test]
fn loopback_udp_round_trip() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    let cfg = CaptureConfig {
        interface: Some("lo".into()),
        filter: format!("udp and dst port {port}"),
        snaplen: 65535,
        buffer_mib: 2,
        promiscuous: false,
        immediate: true,
        file: None,
    };
    let mut cap = match Capture::open_live(&cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIP: cannot capture on lo: {e}");
            return;
        }
    };
    assert!(cap.is_live());
    assert_eq!(cap.link_type(), LinkType::ETHERNET);
    assert_eq!(cap.file_size(), None);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let msg = b"OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    let mut dec = Decoder::new(&LimitsConfig::default());
    let mut seen = Vec::new();
    let mut timeouts = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    while seen.len() < 3 && Instant::now() < deadline {
        if sent < 3 {
            tx.send_to(msg, ("127.0.0.1", port)).unwrap();
            sent += 1;
        }
        match cap.read().unwrap() {
            Next::Packet(p) => dec.decode(&p, &mut |d| {
                seen.push((d.src, d.dst, d.transport, d.payload.to_vec()));
            }),
            Next::Timeout => timeouts += 1,
            Next::End => panic!("a live capture never ends"),
        }
    }
    assert_eq!(seen.len(), 3, "after {timeouts} read timeouts");
    for (src, dst, t, payload) in &seen {
        assert_eq!(*src, tx.local_addr().unwrap());
        assert_eq!(dst.port(), port);
        assert_eq!(*t, Transport::Udp);
        assert_eq!(payload.as_slice(), msg);
    }
    // Nothing more is sent: the read returns on its timeout instead of blocking.
    let start = Instant::now();
    assert!(matches!(cap.read().unwrap(), Next::Timeout));
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    let stats = cap.stats().unwrap();
    assert!(stats.received >= 3, "{stats:?}");
}
