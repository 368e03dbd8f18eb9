//! Generation speed of `simulate::generate`: packets per second written to `io::sink()` and to a
//! temporary file. Target: >= 1 M packets/s in release (`cargo bench --bench simulate`).

use simboxd_sim::{generate, Scenario};
use std::time::Instant;

fn main() {
    let mut sc = Scenario::builtin();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, in
    // debug: then a short smoke run keeps the test suite fast.
    let full = std::env::args().any(|a| a == "--bench");
    sc.duration_secs = std::env::var("SIM_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 300 } else { 5 });
    let seed = 42;

    // Warm-up (page cache, allocator).
    let mut warm = sc.clone();
    warm.duration_secs = 10;
    let _ = generate(&warm, seed, &mut std::io::sink());

    let t = Instant::now();
    let labels = generate(&sc, seed, &mut std::io::sink()).expect("generate");
    let dt = t.elapsed().as_secs_f64();
    println!(
        "simulate -> sink: {} packets ({} s simulated, {} lines) in {:.2} s = {:.2} M packets/s",
        labels.packets,
        sc.duration_secs,
        labels.lines.len(),
        dt,
        labels.packets as f64 / dt / 1e6
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.pcap");
    file_run("builtin mix", &sc, seed, &path);

    // A gateway-heavy mix (mostly 90-byte G.729 frames), 4x the sample site for 5 minutes.
    let mut site = Scenario::from_toml(
        include_str!("../config/scenario-site.toml"),
        "config/scenario-site.toml",
    )
    .expect("site scenario");
    site.scale = 4.0;
    site.duration_secs = sc.duration_secs;
    file_run("site x4", &site, seed, &path);
}

fn file_run(name: &str, sc: &Scenario, seed: u64, path: &std::path::Path) {
    let t = Instant::now();
    let mut f = std::fs::File::create(path).expect("create");
    let labels = generate(sc, seed, &mut f).expect("generate");
    drop(f);
    let dt = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!(
        "simulate {name} -> file: {} packets, {:.1} MB in {:.2} s = {:.2} M packets/s, {:.0} MB/s",
        labels.packets,
        bytes as f64 / 1e6,
        dt,
        labels.packets as f64 / dt / 1e6,
        bytes as f64 / 1e6 / dt
    );
}
