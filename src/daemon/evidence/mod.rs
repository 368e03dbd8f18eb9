//! Evidence kept by the daemon: a bounded pre-alert ring of packets per line in each engine
//! worker (`ring`), and a writer thread (`store`) that turns a flagged line's ring into a pcap
//! under `<state dir>/evidence/<alert-id>/` with a hashed `manifest.json`, keeps appending the
//! line's packets while its alert is open, and holds the folder to `[evidence]`'s disk caps.
//!
//! Contract: the ring keys and classifies packets with the engine's own peeler and line rule
//! (`decode::peek`, `NetworkConfig::line_end`); workers never touch the disk (they hand packets
//! to the writer over a bounded queue: a live capture drops and counts when it is full, a replay
//! waits); every drop is counted in `EvidenceStats` and exported in `/metrics`. Manifests are
//! replaced atomically (temp file + rename) and hold no secret (no token, key or target URL).

pub mod ring;
pub mod store;

use crate::config::evidence::EvidenceConfig;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters and gauges of the evidence side, shared by the workers, the writer and `/metrics`.
#[derive(Debug, Default)]
pub struct EvidenceStats {
    /// Pcap bytes on disk under the evidence folder.
    pub bytes_on_disk: AtomicU64,
    /// Pcap files on disk.
    pub files: AtomicU64,
    /// Alert folders whose alert is open / closed.
    pub alerts_open: AtomicU64,
    pub alerts_closed: AtomicU64,
    /// Packets written to pcaps (of them, taken from a pre-alert ring).
    pub packets_written: AtomicU64,
    pub pre_alert_packets: AtomicU64,
    /// Packets not written: `max_bytes` with no closed alert left to delete, `per_alert_max_bytes`,
    /// the writer's queue full (live), a write error.
    pub dropped_cap: AtomicU64,
    pub dropped_alert_cap: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_write_error: AtomicU64,
    /// Alert folders deleted to stay within `max_bytes`.
    pub deleted_alerts: AtomicU64,
}

impl EvidenceStats {
    pub fn load(a: &AtomicU64) -> f64 {
        a.load(Ordering::Relaxed) as f64
    }
}

/// One worker's side of the evidence: its rings and its queue to the writer.
pub struct Tap {
    pub rings: ring::LineRings,
    tx: std::sync::mpsc::SyncSender<store::StoreMsg>,
    /// A live capture never waits for the writer (drops and counts); a replay waits.
    live: bool,
    stats: std::sync::Arc<EvidenceStats>,
}

impl Tap {
    pub fn new(
        rings: ring::LineRings,
        tx: std::sync::mpsc::SyncSender<store::StoreMsg>,
        live: bool,
        stats: std::sync::Arc<EvidenceStats>,
    ) -> Self {
        Tap {
            rings,
            tx,
            live,
            stats,
        }
    }

    fn send(&self, pkts: Vec<(std::sync::Arc<str>, ring::KeptPacket)>, wait: bool) {
        if pkts.is_empty() {
            return;
        }
        let n = pkts.len() as u64;
        let msg = store::StoreMsg::Packets(pkts);
        let lost = if wait || !self.live {
            self.tx.send(msg).is_err()
        } else {
            self.tx.try_send(msg).is_err()
        };
        if lost {
            self.stats
                .dropped_queue_full
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Sends `line`'s ring to the writer (waiting for room: it is the evidence before the alert)
    /// and records the line from now on.
    pub fn start(&mut self, line: std::net::IpAddr, id: &str) -> bool {
        let Some(ring) = self.rings.start(line, id) else {
            return false;
        };
        let id: std::sync::Arc<str> = std::sync::Arc::from(id);
        self.send(ring.into_iter().map(|p| (id.clone(), p)).collect(), true);
        true
    }

    pub fn stop(&mut self, line: std::net::IpAddr) {
        self.rings.stop(line);
    }

    /// Sends what recorded lines kept since the last call.
    pub fn flush(&mut self) {
        let pkts = self.rings.take_recorded();
        self.send(pkts, false);
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn evidence_defaults_are_valid_and_bad_values_are_located() {
        let c = Config::parse("", "t.toml").unwrap();
        assert!(c.evidence.enabled);
        assert_eq!(c.evidence.validate(), Ok(()));
        let e = Config::parse(
            "[evidence]\nmax_bytes = 10000\n\n  per_alert_max_bytes = 100\n",
            "e.toml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "e.toml:4:3: evidence.per_alert_max_bytes must be at least 4096"
        );
        let e = Config::parse(
            "[evidence]\nmax_bytes = 5000\nper_alert_max_bytes = 8192\n",
            "e.toml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "e.toml:2:1: evidence.max_bytes must be at least evidence.per_alert_max_bytes"
        );
        let e = Config::parse("[evidence]\nmedia_every = 0\n", "e.toml").unwrap_err();
        assert!(e.to_string().starts_with("e.toml:2:1: "), "{e}");
        let e = Config::parse("[evidence]\nring_bytes = 1\n", "e.toml").unwrap_err();
        assert!(e.to_string().starts_with("e.toml:2:1: "), "{e}");
        let e = Config::parse("[evidence]\nbogus = 1\n", "e.toml").unwrap_err();
        assert!(e.to_string().starts_with("e.toml:2:1: "), "{e}");
    }
}
