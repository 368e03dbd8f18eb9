//! Throughput of the daemon's pipeline: dispatcher (batching, sharding by line) -> bounded
//! queues -> engine threads (engine + line table + detection), for 1 and 2 engine threads.
//!
//! Packets are read into memory first, so the figure excludes libpcap's read. Replay mode (the
//! dispatcher waits for the engines) measures what the engines sustain; live mode (the dispatcher
//! never waits, queue of `queue_packets`) shows how many packets a burst at memory speed drops,
//! all of them counted. Run: `cargo bench --bench daemon_pipeline`. The capture is
//! `SIMBOXD_BENCH_PCAP`, else `target/bench/mixed.pcap` (made by `cargo bench --bench analyze`),
//! else a 10-minute simulation of the built-in scenario written to `target/bench/daemon.pcap`.
//! Under `cargo test` (no `--bench` argument) it only smoke-runs on `captures/sample-site.pcap`.
//! The "with evidence rings" line is the same replay with `[evidence]`'s pre-alert rings kept
//! in the worker (default limits), i.e. the cost of the rings on the engine thread; the "rings
//! alone" line times the rings by themselves, fed by a second walk over each frame (`peek`, as
//! before) and by the engine's own decode (`Engine::innermost`, as now).

use simboxd::capture::Capture;
use simboxd::config::Config;
use simboxd::daemon::adapter::EngineWorker;
use simboxd::daemon::evidence::{ring, Tap};
use simboxd::daemon::pipeline::{worker_loop, Dispatcher, PipelineStats, BATCH_PACKETS};
use simboxd::privacy::Pseudonymizer;
use simboxd_core::model::{LinkType, Timestamp};
use simboxd_sim::{generate, Scenario};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn bench_file() -> PathBuf {
    if let Some(p) = std::env::var_os("SIMBOXD_BENCH_PCAP") {
        return PathBuf::from(p);
    }
    // `cargo test --all-targets` runs this without `--bench`: a quick smoke run on the shipped
    // sample instead of generating a large capture.
    if !std::env::args().any(|a| a == "--bench") {
        return PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap");
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let mixed = dir.join("mixed.pcap");
    if mixed.exists() {
        return mixed;
    }
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join("daemon.pcap");
    if !path.exists() {
        let mut sc = Scenario::builtin();
        sc.duration_secs = 600;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        generate(&sc, 11, &mut f).expect("generate");
    }
    path
}

struct Loaded {
    link: LinkType,
    packets: Vec<(Timestamp, u32, Vec<u8>)>,
}

fn load(path: &std::path::Path) -> Loaded {
    let mut cap = Capture::open_file(path).expect("open");
    let mut packets = Vec::new();
    let mut link = LinkType::ETHERNET;
    while let Some(p) = cap.next_packet().expect("read") {
        link = p.link;
        packets.push((p.ts, p.wire_len, p.data.to_vec()));
    }
    Loaded { link, packets }
}

/// Runs every packet through `workers` engine threads (with evidence rings when `rings`);
/// returns (seconds, dropped, verdicts).
fn run(data: &Loaded, cfg: &Config, workers: usize, live: bool, rings: bool) -> (f64, u64, u64) {
    let stats = Arc::new(PipelineStats::default());
    let (vtx, mut vrx) = tokio::sync::mpsc::channel(4096);
    let verdicts = std::thread::spawn(move || {
        let mut n = 0u64;
        while vrx.blocking_recv().is_some() {
            n += 1;
        }
        n
    });
    let mut senders = Vec::new();
    let mut threads = Vec::new();
    let per_worker = (cfg.daemon.queue_packets / BATCH_PACKETS).max(1);
    for _ in 0..workers {
        let (tx, rx) = std::sync::mpsc::sync_channel(per_worker);
        senders.push(tx);
        let mut w = EngineWorker::new(cfg, Pseudonymizer::disabled());
        if rings {
            let (etx, erx) = std::sync::mpsc::sync_channel(1024);
            std::thread::spawn(move || while erx.recv().is_ok() {});
            let limits = ring::RingLimits::from_config(&cfg.evidence, workers);
            let r = ring::LineRings::new(limits, cfg.network.clone());
            w.attach_evidence(Tap::new(r, etx, live, Default::default()));
        }
        let eng = Arc::new(Mutex::new(w));
        let (vtx, stats) = (vtx.clone(), stats.clone());
        threads.push(std::thread::spawn(move || {
            worker_loop(eng, rx, vtx, stats, false, 1.0)
        }));
    }
    drop(vtx);
    let t = Instant::now();
    let mut d = Dispatcher::new(data.link, live, cfg.network.clone(), senders, stats.clone());
    for (ts, len, bytes) in &data.packets {
        d.push(*ts, *len, bytes);
    }
    d.flush_all();
    drop(d);
    for th in threads {
        th.join().expect("worker");
    }
    let dt = t.elapsed().as_secs_f64();
    let n = verdicts.join().expect("verdicts");
    (dt, stats.dropped_queue_full.load(Ordering::Relaxed), n)
}

/// The rings' own cost per packet, two ways: walking each frame again (`decode::peek`, what the
/// worker did before) and taking the engine's decode of it (`Engine::innermost`, what it does
/// now; the decode itself is not timed, the engine does it anyway).
fn rings_alone(data: &Loaded, cfg: &Config) {
    let limits = ring::RingLimits::from_config(&cfg.evidence, 1);
    fn raw(link: LinkType, p: &(Timestamp, u32, Vec<u8>)) -> simboxd_core::model::RawPacket<'_> {
        simboxd_core::model::RawPacket {
            ts: p.0,
            link,
            data: &p.2,
            wire_len: p.1,
        }
    }
    let mut dec = simboxd_core::decode::Decoder::new(&cfg.limits);
    dec.keep_innermost(true);
    let seen: Vec<_> = data
        .packets
        .iter()
        .map(|p| {
            dec.decode(&raw(data.link, p), &mut |_| {});
            dec.innermost().copied()
        })
        .collect();
    let mut r = ring::LineRings::new(limits.clone(), cfg.network.clone());
    let t = Instant::now();
    for p in &data.packets {
        r.on_packet(&raw(data.link, p));
    }
    let peek_s = t.elapsed().as_secs_f64();
    let kept_peek = r.counters().kept;
    let mut r = ring::LineRings::new(limits, cfg.network.clone());
    let t = Instant::now();
    for (p, s) in data.packets.iter().zip(&seen) {
        r.on_decoded(&raw(data.link, p), s.as_ref());
    }
    let decoded_s = t.elapsed().as_secs_f64();
    let n = data.packets.len() as f64;
    println!(
        "  evidence rings alone: walking each frame again (peek) {:.0} ns/packet, from the engine's decode {:.0} ns/packet ({} / {} packets kept)",
        peek_s / n * 1e9,
        decoded_s / n * 1e9,
        kept_peek,
        r.counters().kept
    );
}

fn main() {
    let path = bench_file();
    let data = load(&path);
    let n = data.packets.len() as f64;
    println!(
        "daemon pipeline on {} ({} packets in memory)",
        path.display(),
        n
    );
    let mut cfg = Config::default();
    cfg.network.domestic = vec!["198.18.0.0/15".parse().expect("cidr")];
    for workers in [1usize, 2] {
        let (dt, dropped, verdicts) = run(&data, &cfg, workers, false, false);
        println!(
            "  replay, {workers} engine thread(s): {:>10.0} packets/s ({dt:.2} s), {dropped} dropped, {verdicts} verdict changes",
            n / dt
        );
    }
    let (dt, _, _) = run(&data, &cfg, 1, false, true);
    println!(
        "  replay, 1 engine thread with evidence rings: {:>10.0} packets/s ({dt:.2} s)",
        n / dt
    );
    rings_alone(&data, &cfg);
    let (dt, dropped, _) = run(&data, &cfg, 1, true, false);
    println!(
        "  live burst, 1 engine thread, queue {} packets: {:.2} s, {dropped} dropped and counted ({:.1} %)",
        cfg.daemon.queue_packets,
        dt,
        100.0 * dropped as f64 / n
    );
}
