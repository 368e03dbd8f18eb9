//! Throughput of `analyze` against libpcap's own read speed.
//!
//! Generates (once) a mixed SIP+RTP capture of at least 1 M packets with the simulator under
//! `target/bench/`, then prints packets/s for:
//! - the engine alone, single-threaded (decode -> SIP/RTP -> calls -> lines -> detection),
//! - the whole `analyze_file` (SHA-256 of the file + engine + records),
//! - reading alone: libpcap (`capture::Capture`, live capture's reader) and `input::Inputs`
//!   (analyze's reader: pcap-parser, hashing on a second thread), and `Inputs` on the same file
//!   gzip-compressed (written once beside it),
//! - `tcpdump -r F -w /dev/null` on the same file (the reference read time),
//! - the `simboxd analyze` command itself (ndjson to /dev/null: nothing held per call),
//! - `tshark -r F -Y sip -T fields -e sip.Call-ID -e sip.Method -e sip.Status-Code` (one run).
//!
//! Targets (issue 11): `simboxd analyze` wall time <= 1.5x tcpdump's read time, and >= 100x
//! faster than tshark's SIP field extraction. Run: `cargo bench --bench analyze`.
//! `SIMBOXD_BENCH_PCAP=F` benchmarks another file instead.

use simboxd::capture::Capture;
use simboxd::config::Config;
use simboxd_core::engine::Engine;
use simboxd_sim::{generate, Scenario};
use std::path::PathBuf;
use std::time::Instant;

const MIN_PACKETS: u64 = 2_000_000;

fn bench_file() -> PathBuf {
    if let Some(p) = std::env::var_os("SIMBOXD_BENCH_PCAP") {
        return PathBuf::from(p);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join("mixed.pcap");
    let ok = path.exists()
        && Capture::open_file(&path).is_ok()
        && std::fs::metadata(dir.join("mixed.packets"))
            .ok()
            .and_then(|_| std::fs::read_to_string(dir.join("mixed.packets")).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|n| n >= MIN_PACKETS);
    if !ok {
        // SIP and RTP as a tap at an ISP sees them: the site mix (gateways, households, office,
        // call centre, app calls), scaled up, without the bulk video of the built-in mix.
        let text = include_str!("../config/scenario-site.toml");
        let mut sc = Scenario::from_toml(text, "config/scenario-site.toml").expect("scenario");
        sc.scale = 4.0;
        sc.duration_secs = 600;
        loop {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
            let labels = generate(&sc, 7, &mut f).expect("generate");
            drop(f);
            if labels.packets >= MIN_PACKETS {
                std::fs::write(dir.join("mixed.packets"), labels.packets.to_string())
                    .expect("write count");
                break;
            }
            sc.duration_secs *= 2;
        }
    }
    path
}

fn engine_only(path: &std::path::Path, cfg: &Config) -> (u64, f64) {
    let mut cap = Capture::open_file(path).expect("open");
    let mut engine = Engine::new(&cfg.engine());
    let t = Instant::now();
    let mut events = 0u64;
    while let Some(pkt) = cap.next_packet().expect("read") {
        engine.process(&pkt);
        events += engine.drain_events().count() as u64;
    }
    engine.finish();
    events += engine.drain_events().count() as u64;
    let dt = t.elapsed().as_secs_f64();
    std::hint::black_box(events);
    (engine.stats().packets, dt)
}

/// Reads every packet with libpcap; returns (packets, seconds).
fn read_libpcap(path: &std::path::Path) -> (u64, f64) {
    let mut cap = Capture::open_file(path).expect("open");
    let t = Instant::now();
    let mut n = 0u64;
    let mut bytes = 0usize;
    while let Some(pkt) = cap.next_packet().expect("read") {
        n += 1;
        bytes += pkt.data.len();
    }
    std::hint::black_box(bytes);
    (n, t.elapsed().as_secs_f64())
}

/// Reads every packet with analyze's reader (hashing included); returns (packets, seconds).
fn read_inputs(path: &std::path::Path) -> (u64, f64) {
    let t = Instant::now();
    let mut inputs = simboxd::input::Inputs::open(&[path.to_path_buf()]).expect("open");
    let mut n = 0u64;
    let mut bytes = 0usize;
    while let Some(pkt) = inputs.next_packet().expect("read") {
        n += 1;
        bytes += pkt.data.len();
    }
    let info = inputs.finish();
    std::hint::black_box((bytes, info));
    (n, t.elapsed().as_secs_f64())
}

fn best_of<F: FnMut() -> f64>(n: usize, mut f: F) -> f64 {
    (0..n).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: a quick smoke run on the
    // shipped sample instead of the full benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap");
        let (n, dt) = engine_only(&sample, &Config::default());
        println!("smoke: {n} packets in {dt:.3} s (run `cargo bench --bench analyze` for figures)");
        assert!(n > 0);
        return;
    }
    let path = bench_file();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut cfg = Config::default();
    cfg.network.domestic = vec!["198.18.0.0/15".parse().expect("cidr")];

    // Warm the page cache.
    let _ = engine_only(&path, &cfg);

    let mut packets = 0;
    let engine_s = best_of(3, || {
        let (n, dt) = engine_only(&path, &cfg);
        packets = n;
        dt
    });
    let analyze_s = best_of(3, || {
        let t = Instant::now();
        let a = simboxd::analyze::analyze_file(&path, &cfg, false).expect("analyze");
        std::hint::black_box(a.calls.len());
        t.elapsed().as_secs_f64()
    });
    let libpcap_s = best_of(3, || read_libpcap(&path).1);
    let inputs_s = best_of(3, || read_inputs(&path).1);
    let gz = path.with_extension("pcap.gz");
    if !gz.exists() {
        let out = std::process::Command::new("gzip")
            .args(["-c", "-1"])
            .arg(&path)
            .output();
        if let Ok(o) = out {
            if o.status.success() {
                std::fs::write(&gz, o.stdout).expect("write gz");
            }
        }
    }
    let gz_s = if gz.exists() {
        best_of(3, || read_inputs(&gz).1)
    } else {
        f64::NAN
    };
    let tcpdump_s = best_of(3, || {
        let t = Instant::now();
        let st = std::process::Command::new("tcpdump")
            .args(["-q", "-r"])
            .arg(&path)
            .args(["-w", "/dev/null"])
            .stderr(std::process::Stdio::null())
            .status();
        match st {
            Ok(s) if s.success() => t.elapsed().as_secs_f64(),
            _ => f64::NAN,
        }
    });
    let exe = env!("CARGO_BIN_EXE_simboxd");
    let command_s = best_of(3, || {
        let t = Instant::now();
        let st = std::process::Command::new(exe)
            .args(["analyze", "--quiet", "--format", "ndjson"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .status();
        match st {
            Ok(s) if s.success() => t.elapsed().as_secs_f64(),
            _ => f64::NAN,
        }
    });
    // One run: tshark takes minutes on this file.
    let tshark_s = {
        let t = Instant::now();
        let st = std::process::Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args(["-Y", "sip", "-T", "fields"])
            .args([
                "-e",
                "sip.Call-ID",
                "-e",
                "sip.Method",
                "-e",
                "sip.Status-Code",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        match st {
            Ok(s) if s.success() => t.elapsed().as_secs_f64(),
            _ => f64::NAN,
        }
    };
    println!(
        "file: {} ({} packets, {:.1} MB)",
        path.display(),
        packets,
        size as f64 / 1e6
    );
    let pps = |s: f64| packets as f64 / s / 1e6;
    println!(
        "engine (single thread): {engine_s:.3} s = {:.2} M packets/s",
        pps(engine_s)
    );
    println!(
        "analyze_file (sha256 + engine + records): {analyze_s:.3} s = {:.2} M packets/s",
        pps(analyze_s)
    );
    println!(
        "read only: libpcap {libpcap_s:.3} s = {:.2} M packets/s; analyze's reader (pcap-parser + SHA-256 thread) {inputs_s:.3} s = {:.2} M packets/s; same, gzip -1 file {gz_s:.3} s = {:.2} M packets/s",
        pps(libpcap_s),
        pps(inputs_s),
        pps(gz_s)
    );
    println!(
        "tcpdump -r F -w /dev/null: {tcpdump_s:.3} s = {:.2} M packets/s",
        pps(tcpdump_s)
    );
    println!(
        "simboxd analyze --format ndjson F: {command_s:.3} s = {:.2} M packets/s",
        pps(command_s)
    );
    println!("tshark -Y sip -T fields (Call-ID, Method, Status-Code): {tshark_s:.3} s");
    println!(
        "ratio engine/tcpdump: {:.2}; analyze_file/tcpdump: {:.2}; simboxd analyze/tcpdump: {:.2} \
         (target <= 1.5)",
        engine_s / tcpdump_s,
        analyze_s / tcpdump_s,
        command_s / tcpdump_s
    );
    println!(
        "tshark/simboxd analyze: {:.0}x (target >= 100x)",
        tshark_s / command_s
    );
}
