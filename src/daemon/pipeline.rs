//! Live pipeline: one capture thread feeding `workers` engine threads over bounded queues.
//!
//! Contract: packets travel in batches (one buffer per batch); a packet goes to the worker chosen
//! by a hash of its line address (the end inside the home networks), so one line's calls and media
//! meet in one engine. A live capture never waits for the engines: a batch that does not fit in
//! a full queue is dropped and counted (`queue_full`); a file replay waits instead, so replays are
//! deterministic. Packet time drives the engines; only an idle live capture ticks them with the
//! wall clock, which is packet time's clock there.

use crate::capture::CaptureConfig;
use crate::capture::{Capture, CaptureError, Next};
use simboxd_core::config::NetworkConfig;
use simboxd_core::model::{LineVerdict, LinkType, RawPacket, Timestamp};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Packets per batch handed to a worker.
pub use crate::config::daemon::BATCH_PACKETS;
/// A partly filled batch waits at most this long before it is sent.
const FLUSH_AFTER: Duration = Duration::from_millis(50);

/// What an engine thread hands the alert stage.
#[derive(Debug)]
pub enum ToAlerts {
    /// A line's verdict changed.
    Verdict(LineVerdict),
    /// The end of a replay: answered once every verdict handed before it (and every threat
    /// found so far) is an alert in the outbox. An engine thread counts as running until then,
    /// so `simboxd_workers_running` at 0 means the replay's alerts are all out.
    Settled(SyncSender<()>),
}

/// What the daemon needs from one single-threaded engine.
pub trait PacketEngine: Send + 'static {
    fn process(&mut self, pkt: &RawPacket<'_>);
    /// Expires idle state and re-evaluates lines at packet time `now`.
    fn tick(&mut self, now: Timestamp);
    /// End of input: closes what is still open.
    fn finish(&mut self);
    /// Verdicts that changed since the last call.
    fn take_verdict_changes(&mut self) -> Vec<LineVerdict>;
    /// Figures for `/metrics` (numbers, and maps of numbers by name, once serialised).
    fn stats(&self) -> super::outputs::WorkerStats;
    /// One line's profile, signals and recent calls.
    fn line_detail(&self, addr: IpAddr) -> Option<super::outputs::LineDetail>;
    /// Line profiles as the JSON state file of earlier versions held them (`None`: nothing).
    fn save_state(&self) -> Option<serde_json::Value>;
    /// Restores what `save_state` returned (the migration of `profiles.json`); returns how
    /// many lines came back. The lines count as changed, so the next checkpoint stores them.
    fn restore_state(&mut self, state: serde_json::Value) -> Result<usize, String>;
    /// From now on, remember changed and removed lines for `take_changes`.
    fn track_changes(&mut self) {}
    /// Lines changed since the last call (at most `max`, encoded for the state store) and the
    /// lines removed.
    fn take_changes(&mut self, max: usize) -> SavedChanges {
        let _ = max;
        SavedChanges::default()
    }
    /// Lines changed since they were last taken by `take_changes`.
    fn unsaved_lines(&self) -> usize {
        0
    }
    /// Every line counts as changed (the next checkpoint stores them all).
    fn mark_all_unsaved(&mut self) {}
    /// Adds one stored line (as `take_changes` encoded it).
    fn restore_line(&mut self, bytes: &[u8]) -> Result<(), String> {
        let _ = bytes;
        Ok(())
    }
    /// Room for about `n` more lines (before restoring them).
    fn reserve_lines(&mut self, n: usize) {
        let _ = n;
    }
    /// After the last `restore_line`: order the lines by activity again.
    fn finish_restore(&mut self) {}
    /// Table counters to store beside the lines (encoded), and restoring them.
    fn counters(&self) -> Vec<u8> {
        Vec::new()
    }
    fn restore_counters(&mut self, bytes: &[u8]) {
        let _ = bytes;
    }
    /// Sort keys (verdict rank, score, line) of up to `max` lines from position `from`, and
    /// where to continue (`None`: done): listing in short steps, never one long hold.
    fn line_keys(&self, from: usize, max: usize) -> (Vec<(u8, f64, IpAddr)>, Option<usize>) {
        let _ = (from, max);
        (Vec::new(), None)
    }
    /// Lines by verdict (normal, suspect, gateway) and lines evicted from the full table.
    fn verdict_counts(&self) -> ([u64; 3], u64) {
        ([0; 3], 0)
    }
    /// These lines count as changed again (their write failed).
    fn mark_unsaved(&mut self, lines: &[IpAddr]) {
        let _ = lines;
    }
    /// One line as `/api/v1/lines` lists it.
    fn line_listed(&self, addr: IpAddr) -> Option<super::outputs::LineListed> {
        let _ = addr;
        None
    }
    /// Applies a reloaded config where that is possible without losing state.
    fn reload(&mut self, cfg: &crate::config::Config);
    /// Every threat this engine found (attacks on its lines), numbers as the output shows them.
    fn threats(&self) -> Vec<simboxd_core::threats::Threat> {
        Vec::new()
    }
    /// Threats found or grown since the last call, for alerting.
    fn take_threat_changes(&mut self) -> Vec<simboxd_core::threats::Threat> {
        Vec::new()
    }
    /// Where workers correlate (sites across workers), the point at which a worker whose
    /// replay ended waits for the others before [`resync`](Self::resync).
    fn finish_gate(&self) -> Option<Arc<super::correlate::Correlator>> {
        None
    }
    /// Picks up the other workers' final site candidates and re-forms sites now.
    fn resync(&mut self) {}
    /// Evidence of the lines re-scored after `since`, for `[stream]` (numbers pseudonymised).
    fn evidence_since(
        &self,
        _since: Timestamp,
        _limit: usize,
    ) -> Vec<simboxd_core::detect::LineEvidence> {
        Vec::new()
    }
    /// Call records ended since the last call (numbers pseudonymised), when `[stream]
    /// publish_calls` is on.
    fn take_calls(&mut self) -> Vec<simboxd_core::model::CallRecord> {
        Vec::new()
    }
    /// Starts recording `line`'s evidence for alert `id`: its pre-alert ring goes to the
    /// evidence writer now, its later packets as they come. False when nothing was started here.
    fn evidence_start(&mut self, line: IpAddr, id: &str) -> bool {
        let _ = (line, id);
        false
    }
    /// Stops recording `line` (its alert cleared).
    fn evidence_stop(&mut self, line: IpAddr) {
        let _ = line;
    }
    /// Hands the packets kept for recorded lines to the evidence writer (after every batch).
    fn evidence_flush(&mut self) {}
}

/// What one engine changed since its last checkpoint.
#[derive(Debug, Default)]
pub struct SavedChanges {
    /// Changed lines and their stored form.
    pub lines: Vec<(IpAddr, Vec<u8>)>,
    pub removed: Vec<IpAddr>,
    /// The engine lost track of removals: the store must be rewritten whole.
    pub resync: bool,
    /// More changed lines wait (call again).
    pub more: bool,
}

/// An opened packet source (`capture::Capture`, live or file). Opened before privileges are
/// dropped.
pub struct Source {
    cap: Capture,
    desc: String,
    /// Kernel counters already added to the shared stats (several sources add into them).
    seen: crate::capture::CaptureStats,
}

impl Source {
    pub fn open(cfg: &CaptureConfig) -> Result<Source, CaptureError> {
        if let Some(path) = &cfg.file {
            let mut cap = Capture::open_file(path)?;
            if !cfg.filter.trim().is_empty() {
                if let Err(e) = cap.set_filter(&cfg.filter) {
                    // The default filter is Ethernet-only; a file needs no filter to be read whole.
                    if cfg.filter != crate::capture::DEFAULT_FILTER {
                        return Err(e);
                    }
                    tracing::info!(error = %e, "default filter does not fit this file: replaying unfiltered");
                }
            }
            return Ok(Source {
                cap,
                desc: format!("file {}", path.display()),
                seen: Default::default(),
            });
        }
        let cap = Capture::open_live(cfg)?;
        let desc = format!("interface {}", cap.name());
        Ok(Source {
            cap,
            desc,
            seen: Default::default(),
        })
    }

    /// Opens every source `cfg` names: the file, or each live interface (one capture thread
    /// each). Fails on the first that cannot be opened.
    pub fn open_all(cfg: &CaptureConfig) -> Result<Vec<Source>, CaptureError> {
        if cfg.file.is_some() {
            return Ok(vec![Source::open(cfg)?]);
        }
        let names = cfg.interface_list();
        if names.is_empty() {
            return Err(CaptureError::NoInterface {
                interface: String::new(),
            });
        }
        names
            .iter()
            .map(|name| {
                let cap = Capture::open_live_on(cfg, name)?;
                Ok(Source {
                    desc: format!("interface {}", cap.name()),
                    cap,
                    seen: Default::default(),
                })
            })
            .collect()
    }

    pub fn describe(&self) -> String {
        self.desc.clone()
    }

    pub fn is_live(&self) -> bool {
        self.cap.is_live()
    }

    fn link(&self) -> LinkType {
        self.cap.link_type()
    }

    /// Kernel/libpcap counters (received, dropped, dropped by the interface), live only.
    fn kernel_stats(&mut self) -> Option<crate::capture::CaptureStats> {
        if !self.cap.is_live() {
            return None;
        }
        self.cap.stats().ok()
    }
}

/// Packets of one capture, copied into one buffer.
pub struct PacketBatch {
    link: LinkType,
    data: Vec<u8>,
    meta: Vec<(Timestamp, u32, usize, usize)>,
}

impl PacketBatch {
    fn new(link: LinkType) -> Self {
        PacketBatch {
            link,
            data: Vec::new(),
            meta: Vec::with_capacity(BATCH_PACKETS),
        }
    }
    fn push(&mut self, ts: Timestamp, wire_len: u32, bytes: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        self.meta.push((ts, wire_len, start, self.data.len()));
    }
    pub fn len(&self) -> usize {
        self.meta.len()
    }
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }
    pub fn packets(&self) -> impl Iterator<Item = RawPacket<'_>> {
        self.meta.iter().map(|&(ts, wire_len, a, b)| RawPacket {
            ts,
            link: self.link,
            data: self.data.get(a..b).unwrap_or(&[]),
            wire_len,
        })
    }
}

/// Counters shared by the pipeline threads and read by the API.
#[derive(Default)]
pub struct PipelineStats {
    pub captured_packets: AtomicU64,
    pub captured_bytes: AtomicU64,
    pub processed_packets: AtomicU64,
    /// Packets dropped because a worker queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Packets dropped because a worker had stopped.
    pub dropped_worker_gone: AtomicU64,
    /// libpcap's `ps_drop` and `ps_ifdrop` (live only; absolute values).
    pub kernel_dropped: AtomicU64,
    pub interface_dropped: AtomicU64,
    pub capture_errors: AtomicU64,
    /// Verdict changes the alert side could not take.
    pub dropped_verdicts: AtomicU64,
    /// Packets in flight in the worker queues.
    pub queued_packets: AtomicU64,
    pub capture_running: AtomicBool,
    /// The file replay reached its end.
    pub capture_done: AtomicBool,
    pub workers_running: AtomicU64,
    /// Packet time of the newest packet processed (µs), for the API.
    pub last_packet_us: AtomicU64,
}

/// Worker index for a packet: hash of its line address (or of the lower address when no end, or
/// both ends, are inside the home networks). Packets whose addresses cannot be found go to worker 0.
pub fn shard_for(link: LinkType, data: &[u8], home: &NetworkConfig, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    // The engine's own decoder peels tags and tunnels and applies the engine's rule for the
    // line end: a line's SIP, RTP and tunnelled traffic all land on one worker.
    let Some(key) = simboxd_core::decode::line_key(link, data, home) else {
        return 0;
    };
    shard_of_line(key, workers)
}

/// Worker index of a line address (the same for its packets, its stored profile and the API).
pub fn shard_of_line(key: IpAddr, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let h = match key {
        IpAddr::V4(v) => u64::from(u32::from(v)),
        IpAddr::V6(v) => {
            let x = u128::from(v);
            (x as u64) ^ ((x >> 64) as u64)
        }
    };
    // Fibonacci hashing spreads consecutive subscriber addresses.
    let mixed = h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    (mixed % workers as u64) as usize
}

/// Batches packets per worker and hands full (or stale) batches over. A live dispatcher never
/// waits: a batch that does not fit in a full queue is dropped and counted; a replay waits.
pub struct Dispatcher {
    link: LinkType,
    live: bool,
    home: NetworkConfig,
    senders: Vec<SyncSender<PacketBatch>>,
    pending: Vec<PacketBatch>,
    stats: Arc<PipelineStats>,
}

impl Dispatcher {
    pub fn new(
        link: LinkType,
        live: bool,
        home: NetworkConfig,
        senders: Vec<SyncSender<PacketBatch>>,
        stats: Arc<PipelineStats>,
    ) -> Self {
        let pending = (0..senders.len().max(1))
            .map(|_| PacketBatch::new(link))
            .collect();
        Dispatcher {
            link,
            live,
            home,
            senders,
            pending,
            stats,
        }
    }

    /// Adds one packet to its worker's batch, sending the batch when it is full.
    pub fn push(&mut self, ts: Timestamp, wire_len: u32, data: &[u8]) {
        let i = shard_for(self.link, data, &self.home, self.pending.len());
        let Some(b) = self.pending.get_mut(i) else {
            return;
        };
        b.push(ts, wire_len, data);
        self.stats.captured_packets.fetch_add(1, Ordering::Relaxed);
        self.stats
            .captured_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if b.len() >= BATCH_PACKETS {
            self.flush(i);
        }
    }

    /// Sends every non-empty batch.
    pub fn flush_all(&mut self) {
        for i in 0..self.pending.len() {
            self.flush(i);
        }
    }

    fn flush(&mut self, i: usize) {
        let Some(slot) = self.pending.get_mut(i) else {
            return;
        };
        if slot.is_empty() {
            return;
        }
        let batch = std::mem::replace(slot, PacketBatch::new(self.link));
        let n = batch.len() as u64;
        let stats = &self.stats;
        let Some(tx) = self.senders.get(i) else {
            stats.dropped_worker_gone.fetch_add(n, Ordering::Relaxed);
            return;
        };
        stats.queued_packets.fetch_add(n, Ordering::Relaxed);
        let res = if self.live {
            tx.try_send(batch)
        } else {
            tx.send(batch).map_err(|e| TrySendError::Disconnected(e.0))
        };
        match res {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                stats.queued_packets.fetch_sub(n, Ordering::Relaxed);
                stats.dropped_queue_full.fetch_add(n, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                stats.queued_packets.fetch_sub(n, Ordering::Relaxed);
                stats.dropped_worker_gone.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// Runs the capture loop on the current thread until `stop` is set or the file ends.
/// Dropping the senders at the end tells the workers that input is over.
pub fn capture_loop(
    mut src: Source,
    senders: Vec<SyncSender<PacketBatch>>,
    home: NetworkConfig,
    stats: Arc<PipelineStats>,
    stop: Arc<AtomicBool>,
) {
    let live = src.is_live();
    let mut out = Dispatcher::new(src.link(), live, home, senders, stats.clone());
    let mut last_flush = Instant::now();
    let mut last_stats = Instant::now();
    let mut consecutive_errors = 0u32;
    stats.capture_running.store(true, Ordering::SeqCst);
    let _running = CaptureRunning(stats.clone());

    while !stop.load(Ordering::Relaxed) {
        match src.cap.read() {
            Ok(Next::Packet(p)) => {
                consecutive_errors = 0;
                out.push(p.ts, p.wire_len, p.data);
            }
            // Live and quiet: `read` already waited (poll) up to its timeout.
            Ok(Next::Timeout) => consecutive_errors = 0,
            Ok(Next::End) => break,
            Err(e) => {
                stats.capture_errors.fetch_add(1, Ordering::Relaxed);
                consecutive_errors += 1;
                if consecutive_errors == 1 {
                    tracing::warn!(error = %e, "capture read failed");
                }
                if !live || consecutive_errors > 100 {
                    tracing::error!(error = %e, "capture stopped after repeated read errors");
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if last_flush.elapsed() >= FLUSH_AFTER {
            out.flush_all();
            last_flush = Instant::now();
        }
        if live && last_stats.elapsed() >= Duration::from_secs(1) {
            store_kernel_stats(&mut src, &stats);
            last_stats = Instant::now();
        }
    }
    out.flush_all();
    drop(out);
    store_kernel_stats(&mut src, &stats);
    if !live {
        stats.capture_done.store(true, Ordering::SeqCst);
    }
    tracing::info!(
        packets = stats.captured_packets.load(Ordering::Relaxed),
        source = %src.describe(),
        "capture ended"
    );
}

/// Adds what the kernel counted since the last call (several captures share the counters).
fn store_kernel_stats(src: &mut Source, stats: &PipelineStats) {
    if let Some(s) = src.kernel_stats() {
        stats.kernel_dropped.fetch_add(
            s.dropped.saturating_sub(src.seen.dropped),
            Ordering::Relaxed,
        );
        stats.interface_dropped.fetch_add(
            s.if_dropped.saturating_sub(src.seen.if_dropped),
            Ordering::Relaxed,
        );
        src.seen = s;
    }
}

/// Runs one engine until its queue closes. Verdict changes go to `verdicts` (blocking: they are
/// few and must not be lost). When the input ended (file replay) the engine is finished, so that
/// open calls are closed and the final verdicts are out, and the thread ends only once the alert
/// stage has made alerts of them ([`ToAlerts::Settled`]).
pub fn worker_loop<E: PacketEngine>(
    engine: Arc<Mutex<E>>,
    rx: Receiver<PacketBatch>,
    verdicts: tokio::sync::mpsc::Sender<ToAlerts>,
    stats: Arc<PipelineStats>,
    live: bool,
    tick_secs: f64,
) {
    stats.workers_running.fetch_add(1, Ordering::SeqCst);
    // Decrements on every exit, a panic in a stage included, so `/healthz` and the watchdog
    // see a dead engine thread.
    let _running = WorkerRunning(stats.clone());
    let mut last_ts: Option<Timestamp> = None;
    let mut next_tick: Option<Timestamp> = None;
    let mut idle_since = Instant::now();
    let send = |changes: Vec<LineVerdict>| {
        for v in changes {
            if verdicts.blocking_send(ToAlerts::Verdict(v)).is_err() {
                stats.dropped_verdicts.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    // Per-packet latency, sampled: timing every packet would cost more than some packets take.
    let mut sample_countdown = 0u64;
    let finished_by_eof = loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(batch) => {
                let n = batch.len() as u64;
                let changes = {
                    let Ok(mut eng) = engine.lock() else {
                        break false;
                    };
                    for p in batch.packets() {
                        if sample_countdown == 0 {
                            sample_countdown = crate::metrics::ENGINE_SAMPLE_EVERY;
                            let t0 = Instant::now();
                            eng.process(&p);
                            crate::metrics::HISTOGRAMS
                                .engine_packet
                                .observe(t0.elapsed().as_secs_f64());
                        } else {
                            eng.process(&p);
                        }
                        sample_countdown -= 1;
                        last_ts = Some(last_ts.map_or(p.ts, |t| t.max(p.ts)));
                        if let Some(now) = last_ts {
                            if next_tick.is_none_or(|t| now >= t) {
                                eng.tick(now);
                                next_tick = Some(now.plus_secs(tick_secs));
                            }
                        }
                    }
                    eng.evidence_flush();
                    eng.take_verdict_changes()
                };
                stats.queued_packets.fetch_sub(n, Ordering::Relaxed);
                stats.processed_packets.fetch_add(n, Ordering::Relaxed);
                if let Some(t) = last_ts {
                    stats
                        .last_packet_us
                        .fetch_max(t.micros().max(0) as u64, Ordering::Relaxed);
                }
                send(changes);
                idle_since = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {
                // Live: time passes on the wire even when nothing arrives, so calls still expire.
                if live && idle_since.elapsed().as_secs_f64() >= tick_secs {
                    let now = wall_clock();
                    let now = last_ts.map_or(now, |t| t.max(now));
                    let changes = {
                        let Ok(mut eng) = engine.lock() else {
                            break false;
                        };
                        eng.tick(now);
                        eng.take_verdict_changes()
                    };
                    send(changes);
                    idle_since = Instant::now();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break !live,
        }
    };
    if finished_by_eof {
        let changes = match engine.lock() {
            Ok(mut eng) => {
                if let Some(t) = last_ts {
                    eng.tick(t);
                }
                eng.finish();
                eng.evidence_flush();
                eng.take_verdict_changes()
            }
            Err(_) => Vec::new(),
        };
        send(changes);
        // Sites span workers: once every worker has finished, re-form them from the final
        // candidates of all, so the verdicts are those of one worker.
        let gate = engine.lock().ok().and_then(|e| e.finish_gate());
        if let Some(gate) = gate {
            gate.arrive_and_wait();
            let changes = match engine.lock() {
                Ok(mut eng) => {
                    eng.resync();
                    eng.take_verdict_changes()
                }
                Err(_) => Vec::new(),
            };
            send(changes);
        }
        // The replay is over for this thread once its last verdicts are alerts: whoever watches
        // `workers_running` fall to 0 then reads every alert the replay made. An alert stage
        // that is gone (dropped sender) ends the wait.
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        if verdicts.blocking_send(ToAlerts::Settled(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }
}

/// Clears `capture_running` however the capture thread ends.
struct CaptureRunning(Arc<PipelineStats>);

impl Drop for CaptureRunning {
    fn drop(&mut self) {
        self.0.capture_running.store(false, Ordering::SeqCst);
    }
}

struct WorkerRunning(Arc<PipelineStats>);

impl Drop for WorkerRunning {
    fn drop(&mut self) {
        self.0.workers_running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The wall clock as packet time (the daemon is the only place that reads it).
pub fn wall_clock() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth_ipv4(src: [u8; 4], dst: [u8; 4], vlan: bool) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        f.extend_from_slice(&ip);
        f
    }

    #[test]
    fn both_directions_of_a_line_share_a_worker() {
        let home = NetworkConfig {
            home: vec!["10.0.0.0/8".parse().unwrap()],
            domestic: vec![],
            ..Default::default()
        };
        let mut seen = std::collections::BTreeSet::new();
        for last in 1..=64u8 {
            let line = [10, 1, 2, last];
            let peer = [203, 0, 113, last.wrapping_mul(7)];
            let out = shard_for(LinkType::ETHERNET, &eth_ipv4(line, peer, false), &home, 4);
            let back = shard_for(LinkType::ETHERNET, &eth_ipv4(peer, line, true), &home, 4);
            let other = shard_for(
                LinkType::ETHERNET,
                &eth_ipv4(line, [8, 8, 8, 8], false),
                &home,
                4,
            );
            assert_eq!(out, back);
            assert_eq!(out, other, "the peer must not change the worker");
            assert!(out < 4);
            seen.insert(out);
        }
        assert_eq!(seen.len(), 4, "64 lines should spread over all 4 workers");
    }

    #[test]
    fn truncated_or_odd_frames_go_to_worker_zero() {
        let home = NetworkConfig::default();
        for len in 0..34 {
            let f = eth_ipv4([10, 0, 0, 1], [1, 1, 1, 1], false);
            let cut = f.get(..len).unwrap();
            assert!(shard_for(LinkType::ETHERNET, cut, &home, 3) < 3);
        }
        assert_eq!(shard_for(LinkType(147), &[0x45; 40], &home, 3), 0);
        assert_eq!(shard_for(LinkType::RAW, &[0x75; 40], &home, 3), 0);
    }

    fn raw_ipv4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        ip.extend_from_slice(&[0u8; 8]);
        ip
    }

    #[test]
    fn live_dispatch_drops_and_counts_when_a_queue_is_full() {
        let stats = Arc::new(PipelineStats::default());
        // One batch of room, and nobody draining it.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let home = NetworkConfig {
            home: vec!["10.0.0.0/8".parse().unwrap()],
            domestic: vec![],
            ..Default::default()
        };
        let mut d = Dispatcher::new(LinkType::RAW, true, home, vec![tx], stats.clone());
        let pkt = raw_ipv4([10, 0, 0, 1], [192, 0, 2, 1]);
        let total = BATCH_PACKETS * 3 + 10;
        for i in 0..total {
            d.push(Timestamp(i as i64), 28, &pkt);
        }
        d.flush_all();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(load(&stats.captured_packets), total as u64);
        let first = rx.try_recv().expect("the first batch fits");
        assert_eq!(first.len(), BATCH_PACKETS);
        assert!(rx.try_recv().is_err(), "nothing else fitted");
        assert_eq!(
            load(&stats.dropped_queue_full),
            (total - BATCH_PACKETS) as u64
        );
        assert_eq!(load(&stats.queued_packets), BATCH_PACKETS as u64);
        // A worker that went away: counted separately.
        drop(rx);
        d.push(Timestamp(0), 28, &pkt);
        d.flush_all();
        assert_eq!(load(&stats.dropped_worker_gone), 1);
    }

    #[test]
    fn replay_dispatch_waits_instead_of_dropping_and_shards_by_line() {
        let stats = Arc::new(PipelineStats::default());
        let home = NetworkConfig {
            home: vec!["10.0.0.0/8".parse().unwrap()],
            domestic: vec![],
            ..Default::default()
        };
        let mut txs = Vec::new();
        let mut rxs = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = std::sync::mpsc::sync_channel::<PacketBatch>(1);
            txs.push(tx);
            rxs.push(rx);
        }
        let counter = std::thread::spawn(move || {
            // Drain slowly: the dispatcher must wait, not drop.
            let mut per_line: Vec<std::collections::BTreeMap<Vec<u8>, usize>> =
                vec![Default::default(); 3];
            let mut open: Vec<bool> = vec![true; 3];
            while open.iter().any(|o| *o) {
                for (w, rx) in rxs.iter().enumerate() {
                    match rx.recv_timeout(Duration::from_millis(5)) {
                        Ok(b) => {
                            for p in b.packets() {
                                let line = p.data.get(12..16).unwrap().to_vec();
                                *per_line[w].entry(line).or_default() += 1;
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => open[w] = false,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                }
            }
            per_line
        });
        let mut d = Dispatcher::new(LinkType::RAW, false, home, txs, stats.clone());
        for i in 0..4000u32 {
            let line = [10, 0, (i % 50) as u8, 1];
            let pkt = raw_ipv4(line, [198, 51, 100, 7]);
            d.push(Timestamp(i64::from(i)), 28, &pkt);
        }
        d.flush_all();
        drop(d);
        let per_line = counter.join().unwrap();
        assert_eq!(stats.dropped_queue_full.load(Ordering::Relaxed), 0);
        let got: usize = per_line.iter().flat_map(|m| m.values()).sum();
        assert_eq!(got, 4000);
        // Each line went to exactly one worker.
        let mut owners = std::collections::BTreeMap::new();
        for (w, m) in per_line.iter().enumerate() {
            for line in m.keys() {
                assert!(
                    owners.insert(line.clone(), w).is_none(),
                    "line split over workers"
                );
            }
        }
        assert_eq!(owners.len(), 50);
    }

    /// An engine whose stage panics on the first packet (a bug in some stage).
    struct PanickingEngine;

    impl PacketEngine for PanickingEngine {
        fn process(&mut self, _pkt: &RawPacket<'_>) {
            panic!("stage bug"); // ok: test double for the running-flag guard
        }
        fn tick(&mut self, _now: Timestamp) {}
        fn finish(&mut self) {}
        fn take_verdict_changes(&mut self) -> Vec<LineVerdict> {
            Vec::new()
        }
        fn stats(&self) -> crate::daemon::outputs::WorkerStats {
            Default::default()
        }
        fn line_detail(&self, _addr: IpAddr) -> Option<crate::daemon::outputs::LineDetail> {
            None
        }
        fn save_state(&self) -> Option<serde_json::Value> {
            None
        }
        fn restore_state(&mut self, _state: serde_json::Value) -> Result<usize, String> {
            Ok(0)
        }
        fn reload(&mut self, _cfg: &crate::config::Config) {}
    }

    #[test]
    fn a_panicking_engine_thread_no_longer_counts_as_running() {
        let stats = Arc::new(PipelineStats::default());
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let (vtx, _vrx) = tokio::sync::mpsc::channel(4);
        let eng = Arc::new(Mutex::new(PanickingEngine));
        let st = stats.clone();
        let t = std::thread::spawn(move || worker_loop(eng, rx, vtx, st, true, 1.0));
        let t0 = Instant::now();
        while stats.workers_running.load(Ordering::SeqCst) == 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "worker never started"
            );
            std::thread::yield_now();
        }
        let mut b = PacketBatch::new(LinkType::RAW);
        b.push(Timestamp(1), 20, &[0x45; 20]);
        tx.send(b).unwrap();
        assert!(t.join().is_err(), "the stage panic ends the thread");
        assert_eq!(stats.workers_running.load(Ordering::SeqCst), 0);
    }

    /// An engine whose last verdict comes out when it is finished (a site that dissolved at
    /// the end of a replay, say).
    struct LastWordEngine(Vec<LineVerdict>);

    impl PacketEngine for LastWordEngine {
        fn process(&mut self, _pkt: &RawPacket<'_>) {}
        fn tick(&mut self, _now: Timestamp) {}
        fn finish(&mut self) {
            self.0.push(LineVerdict {
                line: "100.64.1.11".parse().unwrap(),
                verdict: simboxd_core::model::VerdictLevel::Gateway,
                score: 0.9,
                flagged_at: Some(Timestamp(1)),
                site: None,
                reasons: Vec::new(),
                updated: Timestamp(2),
                calls: 40,
                max_concurrent_calls: 8,
                peer: None,
            });
        }
        fn take_verdict_changes(&mut self) -> Vec<LineVerdict> {
            std::mem::take(&mut self.0)
        }
        fn stats(&self) -> crate::daemon::outputs::WorkerStats {
            Default::default()
        }
        fn line_detail(&self, _addr: IpAddr) -> Option<crate::daemon::outputs::LineDetail> {
            None
        }
        fn save_state(&self) -> Option<serde_json::Value> {
            None
        }
        fn restore_state(&mut self, _state: serde_json::Value) -> Result<usize, String> {
            Ok(0)
        }
        fn reload(&mut self, _cfg: &crate::config::Config) {}
    }

    /// Regression: a replay's engine thread stopped counting as running before the alert stage
    /// had made alerts of its final verdicts, so a reader that waited for
    /// `simboxd_workers_running` 0 read alerts that still named a site the line had left
    /// (figures_consistency, 100.64.1.11).
    #[test]
    fn a_replay_engine_runs_until_its_final_verdicts_are_alerted() {
        let stats = Arc::new(PipelineStats::default());
        let (tx, rx) = std::sync::mpsc::sync_channel::<PacketBatch>(4);
        let (vtx, mut vrx) = tokio::sync::mpsc::channel(4);
        let eng = Arc::new(Mutex::new(LastWordEngine(Vec::new())));
        let st = stats.clone();
        let t = std::thread::spawn(move || worker_loop(eng, rx, vtx, st, false, 1.0));
        drop(tx); // end of the file
        let Some(ToAlerts::Verdict(v)) = vrx.blocking_recv() else {
            panic!("the final verdict first");
        };
        assert_eq!(v.site, None);
        let Some(ToAlerts::Settled(done)) = vrx.blocking_recv() else {
            panic!("then the request to be told it is alerted");
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!t.is_finished(), "waits for the alert stage");
        assert_eq!(stats.workers_running.load(Ordering::SeqCst), 1);
        done.send(()).unwrap();
        t.join().unwrap();
        assert_eq!(stats.workers_running.load(Ordering::SeqCst), 0);
        assert!(vrx.blocking_recv().is_none(), "nothing after it");
    }

    #[test]
    fn a_replay_engine_does_not_wait_for_an_alert_stage_that_is_gone() {
        let stats = Arc::new(PipelineStats::default());
        let (tx, rx) = std::sync::mpsc::sync_channel::<PacketBatch>(4);
        let (vtx, vrx) = tokio::sync::mpsc::channel(4);
        drop(vrx);
        let eng = Arc::new(Mutex::new(LastWordEngine(Vec::new())));
        let st = stats.clone();
        let t = std::thread::spawn(move || worker_loop(eng, rx, vtx, st, false, 1.0));
        drop(tx);
        t.join().unwrap();
        assert_eq!(stats.workers_running.load(Ordering::SeqCst), 0);
        assert_eq!(stats.dropped_verdicts.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn batch_keeps_packets_apart() {
        let mut b = PacketBatch::new(LinkType::RAW);
        b.push(Timestamp(1), 10, b"abc");
        b.push(Timestamp(2), 2, b"");
        b.push(Timestamp(3), 4, b"defg");
        let got: Vec<_> = b
            .packets()
            .map(|p| (p.ts.0, p.wire_len, p.data.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 10, b"abc".to_vec()),
                (2, 2, vec![]),
                (3, 4, b"defg".to_vec())
            ]
        );
    }
}
