//! Floods are cheap (issue 10, point 3): `simboxd analyze` on the hostile capture next to
//! normal traffic, in every output format, as a child process. Prints wall time, packets/s and
//! the child's peak RSS (`wait4` rusage). Targets on the hostile capture at default caps:
//! >= 1 M packets/s and peak RSS <= 256 MiB.
//!
//! `cargo bench --bench hostile [-- PACKETS]` (default 400 000 packets per capture; uses the
//! bench profile's `simboxd`). Without `--bench` (`cargo test --all-targets`) it is a smoke run
//! on a few thousand packets. `SIMBOXD_BENCH_DIR=D` writes the captures to D and keeps them.

#[path = "hostile/gen.rs"]
mod gen;

use simboxd_sim::{generate, Scenario};
use std::io::BufWriter;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const TARGET_PPS: f64 = 1e6;
const TARGET_RSS_MIB: f64 = 256.0;

/// The built-in simulated mix, its duration stretched until it holds about `packets`.
fn normal_capture(path: &Path, packets: u64) -> u64 {
    let mut sc = Scenario::builtin();
    // The built-in mix makes some 4 k packets a second.
    sc.duration_secs = (packets / 4000).clamp(5, 60);
    loop {
        let mut f = BufWriter::new(std::fs::File::create(path).expect("create normal capture"));
        let labels = generate(&sc, 11, &mut f).expect("simulate");
        drop(f);
        if labels.packets * 10 >= packets * 8 || sc.duration_secs >= 6 * 3600 {
            return labels.packets;
        }
        let grow = (packets as f64 / labels.packets.max(1) as f64).clamp(1.2, 20.0);
        sc.duration_secs = (sc.duration_secs as f64 * grow).ceil() as u64;
    }
}

struct Run {
    ok: bool,
    secs: f64,
    /// User + system CPU time of the child (both threads: engine and file hash).
    cpu_secs: f64,
    max_rss_mib: f64,
}

/// Runs `simboxd analyze` with `args`, stdout to /dev/null; peak RSS from `wait4`.
// The child is reaped by `wait4` (which also gives its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run(exe: &str, capture: &Path, args: &[&str]) -> Run {
    let null = std::fs::File::create("/dev/null").expect("/dev/null");
    let t = Instant::now();
    let child = Command::new(exe)
        .arg("analyze")
        .args(args)
        .arg("--quiet")
        .arg(capture)
        .stdout(Stdio::from(null))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn simboxd");
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    let secs = t.elapsed().as_secs_f64();
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Run {
        ok: r > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        secs,
        cpu_secs: tv(ru.ru_utime) + tv(ru.ru_stime),
        // Linux reports ru_maxrss in KiB.
        max_rss_mib: ru.ru_maxrss as f64 / 1024.0,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let packets: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if full { 400_000 } else { 4_000 });
    let exe = env!("CARGO_BIN_EXE_simboxd");
    let tmp = tempfile::tempdir().expect("temp dir");
    // SIMBOXD_BENCH_DIR=D keeps the captures in D (for profiling them).
    let dir =
        std::env::var_os("SIMBOXD_BENCH_DIR").map_or_else(|| tmp.path().to_path_buf(), Into::into);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let hostile = dir.join("hostile.pcap");
    let normal = dir.join("normal.pcap");
    let mut f = BufWriter::new(std::fs::File::create(&hostile).expect("create"));
    let n_hostile = gen::write_hostile(&mut f, 1, packets).expect("write hostile capture");
    drop(f);
    let n_normal = normal_capture(&normal, packets);
    let records = dir.join("records.ndjson");
    let records_arg = records.display().to_string();
    let formats: [(&str, Vec<&str>); 5] = [
        ("json", vec!["--format", "json"]),
        ("ndjson", vec!["--format", "ndjson"]),
        ("text", vec!["--format", "text"]),
        (
            "json --records",
            vec!["--format", "json", "--records", &records_arg],
        ),
        (
            "text --records",
            vec!["--format", "text", "--records", &records_arg],
        ),
    ];
    println!("simboxd analyze, default caps, {exe}");
    // Packets/s are given per wall second and per CPU second (the machine may be shared; the
    // target is judged on wall time).
    println!(
        "{:<10} {:>9} {:<16} {:>8} {:>10} {:>8} {:>11} {:>12}  target",
        "capture", "packets", "format", "wall s", "M pkt/s", "cpu s", "M pkt/cpu-s", "peak RSS MiB"
    );
    let mut hostile_ok = true;
    for (name, path, n) in [
        ("normal", &normal, n_normal),
        ("hostile", &hostile, n_hostile),
    ] {
        for (fmt, args) in &formats {
            let r = run(exe, path, args);
            let pps = n as f64 / r.secs;
            let met = r.ok && pps >= TARGET_PPS && r.max_rss_mib <= TARGET_RSS_MIB;
            if name == "hostile" && !met {
                hostile_ok = false;
            }
            println!(
                "{name:<10} {n:>9} {fmt:<16} {:>8.3} {:>10.2} {:>8.3} {:>11.2} {:>12.1}  {}",
                r.secs,
                pps / 1e6,
                r.cpu_secs,
                n as f64 / r.cpu_secs.max(1e-9) / 1e6,
                r.max_rss_mib,
                if !r.ok {
                    "FAILED (exit status)"
                } else if name == "normal" {
                    "-"
                } else if met {
                    "met"
                } else {
                    "MISSED"
                }
            );
            if !full {
                assert!(r.ok, "{name} {fmt}: simboxd analyze failed");
            }
        }
    }
    println!(
        "hostile capture: >= {:.0} M packets/s and <= {TARGET_RSS_MIB:.0} MiB in every format: {}",
        TARGET_PPS / 1e6,
        if hostile_ok { "met" } else { "MISSED" }
    );
}
