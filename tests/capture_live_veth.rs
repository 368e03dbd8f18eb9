//! Live capture on a real link: the daemon captures one end of a veth pair in a network namespace
//! of our own while tcpreplay sends the shipped sample onto the other end as fast as it can. With
//! a tiny worker queue the daemon must drop, and count what it dropped where: the queue drops
//! (`queue_full`) apart from the kernel's and the interface's, and every packet it captured either
//! processed or counted as dropped.
//!
//! Needs root, iproute2 and tcpreplay (scripts/setup.sh installs them); skipped with a message
//! where they are missing, a failure under CI.

mod daemon_common;

use daemon_common::{bin, free_port, parse_prometheus, sample, TOKEN};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Netns(String);

impl Netns {
    fn create() -> Result<Netns, String> {
        let name = format!("simboxd-live-{}", std::process::id());
        let run = |args: &[&str]| -> Result<(), String> {
            let o = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if o.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr)
                ))
            }
        };
        run(&["netns", "add", &name])?;
        let ns = Netns(name);
        run(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        run(&[
            "-n", &ns.0, "link", "add", "vsend", "type", "veth", "peer", "name", "vcap",
        ])?;
        run(&["-n", &ns.0, "link", "set", "vsend", "up"])?;
        run(&["-n", &ns.0, "link", "set", "vcap", "up"])?;
        Ok(ns)
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    /// GET over the namespace's loopback (curl runs inside it).
    fn get(&self, port: u16, path: &str) -> Option<String> {
        let o = self
            .cmd("curl")
            .args(["-sf", "--max-time", "5", "-H"])
            .arg(format!("Authorization: Bearer {TOKEN}"))
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "live capture test cannot run under CI: {why}"
    );
    eprintln!("SKIP: {why}");
}

#[test]
fn a_tiny_queue_drops_and_counts_each_kind_of_drop_apart() {
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root for a network namespace");
    }
    for p in ["ip", "tcpreplay", "curl"] {
        if !have(p) {
            return skip(&format!("{p} is not installed (scripts/setup.sh)"));
        }
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => return skip(&e),
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("simboxd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[capture]\ninterface = \"vcap\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             token = \"{TOKEN}\"\n\n[daemon]\nuser = \"\"\ngroup = \"\"\nworkers = 1\n\
             queue_packets = 256\n\n[storage]\npath = {:?}\n",
            dir.path().join("alerts.redb").display().to_string()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let _daemon = Killed(
        ns.cmd(bin())
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while ns.get(port, "/healthz").is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "daemon not healthy: {}",
            std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sample_cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap");
    let out = ns
        .cmd("tcpreplay")
        .args([
            "-i",
            "vsend",
            "--topspeed",
            "--preload-pcap",
            "--loop",
            "20",
        ])
        .arg(&sample_cap)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: f64 = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Actual: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {report}"));
    // Wait until everything captured is processed or counted as dropped.
    let t0 = Instant::now();
    let mut last = Vec::new();
    let s = loop {
        std::thread::sleep(Duration::from_millis(500));
        let body = ns.get(port, "/metrics").expect("metrics");
        let s = parse_prometheus(&body).unwrap();
        let now = vec![
            sample(&s, "simboxd_packets_captured_total"),
            sample(&s, "simboxd_packets_processed_total"),
        ];
        if now == last && sample(&s, "simboxd_queue_packets") == Some(0.0) {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "never settled");
        last = now;
    };
    let get = |series: &str| sample(&s, series).unwrap_or(0.0);
    let captured = get("simboxd_packets_captured_total");
    let processed = get("simboxd_packets_processed_total");
    let queue = get("simboxd_packets_dropped_total{reason=\"queue_full\"}");
    let kernel = get("simboxd_packets_dropped_total{reason=\"kernel\"}");
    let interface = get("simboxd_packets_dropped_total{reason=\"interface\"}");
    eprintln!(
        "sent {sent}, captured {captured}, processed {processed}, dropped: queue {queue}, \
         kernel {kernel}, interface {interface}"
    );
    assert!(captured > 0.0 && processed > 0.0);
    // The engine cannot keep up with a replay at top speed through 256 queued packets.
    assert!(queue > 0.0, "no queue drop counted");
    // Every packet captured was either processed or dropped at the queue.
    assert_eq!(captured, processed + queue);
    // Nothing is counted twice: what the kernel dropped was never captured.
    assert!(captured + kernel <= sent + 1000.0, "more than was sent");
    // Each kind of drop has its own series.
    for reason in ["queue_full", "kernel", "interface", "worker_gone"] {
        assert!(
            sample(
                &s,
                &format!("simboxd_packets_dropped_total{{reason=\"{reason}\"}}")
            )
            .is_some(),
            "no {reason} series"
        );
    }
}
