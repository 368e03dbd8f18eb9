//! Decoder throughput on real captures (loaded into memory first), one line per file:
//! packets/s, MB/s and ns/packet. Run with `cargo bench --bench decode`; needs the corpus
//! (`SIMBOXD_CORPUS`). Target: well over 1 M packets/s per core on plain UDP SIP/RTP.

use simboxd::capture::Capture;
use simboxd_core::config::LimitsConfig;
use simboxd_core::decode::Decoder;
use simboxd_core::model::{LinkType, RawPacket, Timestamp};
use std::time::{Duration, Instant};

const FILES: [&str; 5] = [
    "sipnab/pcap-samples/sipp-branch-scenario.pcapng",
    "sipnab/pcap-samples/sip-rtp-g711.pcap",
    "sngrep/ipv6frag.pcap",
    "arkime/gtp-iphone.pcap",
    "sipnab/pcap-samples/sip-over-tcp.pcap",
];

fn main() {
    let Some(dir) = simboxd::corpus::corpus_dir() else {
        return;
    };
    for file in FILES {
        let Ok(mut cap) = Capture::open_file(&dir.join(file)) else {
            println!("{file}: cannot open");
            continue;
        };
        let mut frames: Vec<(Timestamp, LinkType, Vec<u8>)> = Vec::new();
        while let Ok(Some(p)) = cap.next_packet() {
            frames.push((p.ts, p.link, p.data.to_vec()));
        }
        let bytes: usize = frames.iter().map(|f| f.2.len()).sum();
        let mut packets = 0u64;
        let mut emitted = 0u64;
        let mut rounds = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(1) {
            // A fresh decoder per round so fragments and TCP streams are reassembled again.
            let mut dec = Decoder::new(&LimitsConfig::default());
            for (ts, link, data) in &frames {
                let pkt = RawPacket {
                    ts: *ts,
                    link: *link,
                    data,
                    wire_len: data.len() as u32,
                };
                dec.decode(&pkt, &mut |_| emitted += 1);
            }
            packets += frames.len() as u64;
            rounds += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{file}: {} pkts x {rounds}: {:.2} Mpkt/s, {:.0} MB/s, {:.0} ns/pkt, {} datagrams/round",
            frames.len(),
            packets as f64 / secs / 1e6,
            (bytes as f64 * rounds as f64) / secs / 1e6,
            secs * 1e9 / packets.max(1) as f64,
            emitted / rounds.max(1),
        );
    }
}
