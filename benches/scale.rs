//! Scale: 100 k / 300 k / 1 M subscriber lines in one capture (each line registers one SIP
//! account: REGISTER and its 200 OK, the least that gives a line a profile). For each size it
//! prints
//! - `analyze`: wall time and peak RSS of `simboxd analyze FILE --format json`,
//! - the daemon replaying the file: time to process it, peak and final RSS of the whole
//!   process (VmHWM/VmRSS), lines it holds,
//! - stop: SIGTERM to exit (the last checkpoint of `state.redb` included),
//! - start: spawn to `/healthz` 200 with the stored state loaded (a second daemon whose filter
//!   matches no packet, so every line it shows came from the store), lines restored.
//!
//! `cargo bench --bench scale [-- SIZES...]` (sizes in lines; default 100000 300000 1000000).
//! Captures and state go under `$SCALE_DIR` (default: a temp dir; about 450 bytes per line).
//! `SCALE_SKIP_ANALYZE=1` measures only the daemon (replay, stop, start).

use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token-0123456789abcdef";
/// Lines registering per second of capture time.
const LINES_PER_SEC: u64 = 2000;
/// 2026-01-05T08:00:00Z.
const START_US: u64 = 1_767_600_000_000_000;
const REGISTRAR: [u8; 4] = [192, 0, 2, 10];

fn line_addr(i: u64) -> [u8; 4] {
    let a = 0x0a40_0000u32 + i as u32 + 1; // 10.64.0.1 on (inside the default home networks)
    a.to_be_bytes()
}

fn frame(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&[
        0x00, 0x1b, 0x21, 0x01, 0x02, 0x03, 0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c,
    ]);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&5060u16.to_be_bytes());
    f.extend_from_slice(&5060u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn record<W: Write>(out: &mut W, us: u64, f: &[u8]) -> std::io::Result<()> {
    out.write_all(&((us / 1_000_000) as u32).to_le_bytes())?;
    out.write_all(&((us % 1_000_000) as u32).to_le_bytes())?;
    out.write_all(&(f.len() as u32).to_le_bytes())?;
    out.write_all(&(f.len() as u32).to_le_bytes())?;
    out.write_all(f)
}

/// Writes the capture of `n` lines; returns its path (reused when already there).
fn capture(dir: &Path, n: u64) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("scale-{n}.pcap"));
    if path.exists() {
        return Ok(path);
    }
    let tmp = path.with_extension("tmp");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&[0u8; 8])?;
    out.write_all(&65535u32.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes())?;
    for i in 0..n {
        let line = line_addr(i);
        let ip = std::net::Ipv4Addr::from(line);
        let user = 4_930_000_000u64 + i;
        let t = START_US + i * 1_000_000 / LINES_PER_SEC;
        let head = format!(
            "Via: SIP/2.0/UDP {ip}:5060;branch=z9hG4bK{i:x}\r\nFrom: <sip:{user}@voip.example>;tag=f{i:x}\r\n\
             To: <sip:{user}@voip.example>\r\nCall-ID: reg{i:x}@{ip}\r\nCSeq: 1 REGISTER\r\n"
        );
        let reg = format!(
            "REGISTER sip:voip.example SIP/2.0\r\n{head}Max-Forwards: 70\r\nContact: <sip:{user}@{ip}:5060>\r\n\
             Expires: 3600\r\nUser-Agent: Linksys/SPA-2102\r\nContent-Length: 0\r\n\r\n"
        );
        let ok = format!(
            "SIP/2.0 200 OK\r\n{head}Contact: <sip:{user}@{ip}:5060>;expires=3600\r\nContent-Length: 0\r\n\r\n"
        );
        record(&mut out, t, &frame(line, REGISTRAR, reg.as_bytes()))?;
        record(&mut out, t + 20_000, &frame(REGISTRAR, line, ok.as_bytes()))?;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Waits for a child; returns its exit and peak RSS (KiB) from `wait4`.
fn wait_rss(child: &mut Child) -> (bool, u64) {
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child's pid, with valid out-pointers.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    (
        r > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        ru.ru_maxrss as u64,
    )
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|x| x.1.to_string())?;
    Some((status, body))
}

fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l.as_bytes().get(series.len()) == Some(&b' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn config(dir: &Path, cap: &Path, api: SocketAddr, filter: &str) -> PathBuf {
    let p = dir.join("simboxd.toml");
    std::fs::write(
        &p,
        format!(
            "[capture]\nfile = {cap:?}\nfilter = {filter:?}\n\n[http]\nlisten = \"{api}\"\n\
             token = \"{TOKEN}\"\nmax_list = 10\n\n[daemon]\nuser = \"\"\ngroup = \"\"\nworkers = 2\n\
             log_level = \"warn\"\n\n[storage]\npath = {st:?}\n",
            cap = cap.display().to_string(),
            st = dir.join("state/alerts.redb").display().to_string(),
        ),
    )
    .expect("write config");
    p
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn spawn(cfg: &Path, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log");
    Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .args(["run", "--config"])
        .arg(cfg)
        .stdout(Stdio::from(out.try_clone().expect("log")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("spawn simboxd run")
}

fn wait_healthy(child: &mut Child, api: SocketAddr, log: &Path) -> Duration {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "simboxd exited ({st}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if matches!(get(api, "/healthz"), Some((200, _))) {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "never healthy");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm_and_wait(child: &mut Child) -> Duration {
    let t0 = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    t0.elapsed()
}

fn lines_held(body: &str) -> f64 {
    ["normal", "suspect", "gateway"]
        .iter()
        .filter_map(|v| metric(body, &format!("simboxd_lines{{verdict=\"{v}\"}}")))
        .sum()
}

fn run(dir: &Path, n: u64) {
    let t0 = Instant::now();
    let cap = capture(dir, n).expect("write capture");
    let gen_s = t0.elapsed().as_secs_f64();
    let mb = std::fs::metadata(&cap).map_or(0, |m| m.len()) / 1_000_000;

    // analyze (`SCALE_SKIP_ANALYZE=1`: only the daemon's figures)
    let (ok, analyze_rss, analyze_s) = if std::env::var_os("SCALE_SKIP_ANALYZE").is_some() {
        (true, 0, 0.0)
    } else {
        let t0 = Instant::now();
        let mut a = Command::new(env!("CARGO_BIN_EXE_simboxd"))
            .arg("analyze")
            .arg(&cap)
            .args(["--format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn analyze");
        let (ok, rss) = wait_rss(&mut a);
        (ok, rss, t0.elapsed().as_secs_f64())
    };

    // daemon replay
    let run_dir = dir.join(format!("run-{n}"));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(run_dir.join("state")).expect("state dir");
    let api = free_addr();
    let cfg = config(&run_dir, &cap, api, "");
    let log = run_dir.join("daemon1.log");
    let t0 = Instant::now();
    let mut d = spawn(&cfg, &log);
    let pid = d.id();
    wait_healthy(&mut d, api, &log);
    let mut held = 0.0;
    loop {
        if let Some((200, m)) = get(api, "/metrics") {
            let done = metric(&m, "simboxd_capture_running") == Some(0.0)
                && metric(&m, "simboxd_queue_packets") == Some(0.0);
            let now = lines_held(&m);
            if done && now == held && now > 0.0 {
                break;
            }
            held = now;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1800),
            "replay never ended"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let replay_s = t0.elapsed().as_secs_f64();
    // One listing while it holds every line (served from a snapshot, paginated).
    let t1 = Instant::now();
    let listed = get(api, "/api/v1/lines?limit=1").map(|(s, _)| s);
    let list_s = t1.elapsed().as_secs_f64();
    let rss = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    let stop_s = sigterm_and_wait(&mut d).as_secs_f64();
    let store_mb =
        std::fs::metadata(run_dir.join("state/state.redb")).map_or(0, |m| m.len()) / 1_000_000;

    // restart on the stored state (no packets)
    let api2 = free_addr();
    let cfg = config(&run_dir, &cap, api2, "udp port 1");
    let log2 = run_dir.join("daemon2.log");
    let mut d2 = spawn(&cfg, &log2);
    let start_s = wait_healthy(&mut d2, api2, &log2).as_secs_f64();
    let restored = get(api2, "/metrics").map_or(0.0, |(_, m)| lines_held(&m));
    let rss2 = status_kib(d2.id(), "VmHWM:");
    let stop2_s = sigterm_and_wait(&mut d2).as_secs_f64();

    println!(
        "{n:>8} lines ({mb} MB pcap, written in {gen_s:.1} s)\n\
         \x20 analyze:  {analyze_s:7.2} s  peak RSS {:6.0} MiB  (exit ok: {ok})\n\
         \x20 daemon:   replay {replay_s:7.2} s, lines held {held:.0}, peak RSS {:6.0} MiB, RSS at end {:6.0} MiB ({:.0} B/line)\n\
         \x20           /api/v1/lines?limit=1 {list_s:.3} s (status {listed:?})\n\
         \x20 stop:     {stop_s:7.2} s (SIGTERM to exit, last checkpoint included; state.redb {store_mb} MB)\n\
         \x20 start:    {start_s:7.2} s (spawn to /healthz 200, state loaded), lines restored {restored:.0}, peak RSS {:6.0} MiB, stop again {stop2_s:.2} s",
        analyze_rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0,
        rss as f64 * 1024.0 / n as f64,
        rss2 as f64 / 1024.0,
    );
}

fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    // `cargo test --all-targets` runs bench binaries without `--bench`: a small smoke run then.
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = match (sizes.is_empty(), full) {
        (false, _) => sizes,
        (true, true) => vec![100_000, 300_000, 1_000_000],
        (true, false) => vec![2_000],
    };
    let tmp;
    let dir = match std::env::var_os("SCALE_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().expect("temp dir");
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir).expect("scale dir");
    for n in sizes {
        run(&dir, n);
    }
}
