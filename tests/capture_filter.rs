//! The default capture filter keeps what the engine needs, IP fragments first among them: a
//! non-first fragment carries no UDP header, so a port filter would drop it and lose the SIP
//! message it belongs to (DOMAIN.md). Checked with libpcap's own BPF on a simulated capture.

use simboxd::capture::Capture;
use simboxd::capture::DEFAULT_FILTER;
use std::path::PathBuf;

/// (all packets, non-first IPv4 fragments) in `f`, optionally through a BPF filter.
fn count(f: &std::path::Path, filter: Option<&str>) -> (u64, u64) {
    let mut cap = Capture::open_file(f).expect("open");
    if let Some(flt) = filter {
        cap.set_filter(flt).expect("filter compiles");
    }
    let (mut all, mut frags) = (0, 0);
    while let Some(p) = cap.next_packet().expect("read") {
        all += 1;
        // Ethernet, optional 802.1Q tag, IPv4 fragment offset != 0.
        let mut off = 12;
        if p.data.get(off..off + 2) == Some(&[0x81, 0x00]) {
            off += 4;
        }
        if p.data.get(off..off + 2) == Some(&[0x08, 0x00]) {
            let fo = p
                .data
                .get(off + 8..off + 10)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            if fo & 0x1fff != 0 {
                frags += 1;
            }
        }
    }
    (all, frags)
}

#[test]
fn default_filter_keeps_every_packet_and_the_fragments() {
    let f = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures/sample-negatives.pcap");
    let (all, frags) = count(&f, None);
    assert!(frags >= 1, "the sample has a fragmented INVITE");
    assert_eq!(count(&f, Some(DEFAULT_FILTER)), (all, frags));
    // A port filter, by contrast, loses the non-first fragments.
    let (_, port_frags) = count(&f, Some("udp port 5060"));
    assert_eq!(port_frags, 0);
}
