//! End to end in a real terminal: `simboxd watch --file captures/sample-site.pcap --speed max`
//! inside a detached tmux session (80x24 as over SSH, and 200x50), driven with `send-keys` and
//! read with `capture-pane`: the gateway line and its verdict, a reason, the evidence files with
//! the manifest's hashes, the report, and the terminal given back on `q` and on SIGTERM.
//!
//! Skipped with a message when tmux is absent; under CI=true a missing tmux fails.

mod daemon_common;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap")
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

fn have_tmux() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("tmux is required under CI (scripts/setup.sh installs it)");
        }
        eprintln!("skipping: tmux is not installed (scripts/setup.sh installs it)");
    }
    ok
}

/// A tmux server of its own (private socket), killed on drop.
struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Tmux {
        let dir = tempfile::tempdir().expect("tmp");
        Tmux {
            socket: dir.path().join("tmux.sock"),
            _dir: dir,
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "watch"])
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.run(&["send-keys", "-t", "watch", k]);
            // Separate presses: an Esc followed at once by a key reads as Alt+key.
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn wait_screen(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                t.elapsed() < WAIT,
                "waited {WAIT:?} for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pane(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", "watch", format])
            .trim()
            .to_string()
    }

    fn start(&self, w: u16, h: u16, out: &Path) {
        let file = sample();
        self.start_with(
            w,
            h,
            &[
                "--file",
                file.to_str().expect("utf-8 path"),
                "--speed",
                "max",
                "--out",
                out.to_str().expect("utf-8 path"),
                "--case",
                "tmux-test",
            ],
        );
    }

    /// `simboxd watch ARGS` in a new detached session of `w`x`h`.
    fn start_with(&self, w: u16, h: u16, args: &[&str]) {
        let bin = env!("CARGO_BIN_EXE_simboxd");
        let (w, h) = (w.to_string(), h.to_string());
        // A shell runs the view and records its exit status: tmux may not reap a pane's
        // process (its exit status then never shows in #{pane_dead_status}).
        let quoted: Vec<String> = std::iter::once(bin)
            .chain(std::iter::once("watch"))
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let status = self.status_file();
        let script = format!(
            "TERM=xterm-256color {}; echo $? > '{}.tmp'; mv '{}.tmp' '{}'",
            quoted.join(" "),
            status.display(),
            status.display(),
            status.display()
        );
        self.run(&[
            "new-session",
            "-d",
            "-s",
            "watch",
            "-x",
            &w,
            "-y",
            &h,
            "sh",
            "-c",
            &script,
        ]);
        self.run(&["set-option", "-t", "watch", "remain-on-exit", "on"]);
    }

    fn status_file(&self) -> PathBuf {
        self.socket.with_file_name("exit-status")
    }

    /// The pid of `simboxd watch` (the child of the pane's shell).
    fn watch_pid(&self) -> String {
        let sh = self.pane("#{pane_pid}");
        let children = format!("/proc/{sh}/task/{sh}/children");
        std::fs::read_to_string(&children)
            .unwrap_or_else(|e| panic!("{children}: {e}"))
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no child of the pane's shell {sh}"))
            .to_string()
    }

    /// Waits for the view to exit; `"EXIT_STATUS ALTERNATE_SCREEN"` (`"0 0"`: success, and the
    /// terminal back on its normal screen).
    fn wait_exit(&self) -> String {
        let t = Instant::now();
        let file = self.status_file();
        loop {
            if let Ok(code) = std::fs::read_to_string(&file) {
                return format!("{} {}", code.trim(), self.pane("#{alternate_on}"));
            }
            assert!(
                t.elapsed() < WAIT,
                "simboxd watch did not exit:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// The one entry of `dir` whose name starts with `prefix` (waits for it).
fn wait_entry(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let t = Instant::now();
    loop {
        let found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|it| {
                it.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let [one] = found.as_slice() {
            return one.clone();
        }
        assert!(found.len() < 2, "several {prefix}*: {found:?}");
        assert!(
            t.elapsed() < WAIT,
            "no {prefix}*{suffix} in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check_evidence(out: &Path) {
    let ev = wait_entry(out, "evidence-100.64.1.10-", "");
    let manifest_path = ev.join("manifest.json");
    let t = Instant::now();
    while !manifest_path.exists() {
        assert!(t.elapsed() < WAIT, "no manifest in {}", ev.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("json");
    assert_eq!(m["source_sha256"], sha256(&sample()), "{m}");
    assert_eq!(m["case"], "tmux-test");
    let files = m["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{m}");
    assert_eq!(files[0]["line"], "100.64.1.10");
    assert!(files[0]["sip_packets"].as_u64().unwrap_or(0) > 0, "{m}");
    let pcap = ev.join(files[0]["file"].as_str().expect("file name"));
    assert_eq!(
        files[0]["sha256"],
        sha256(&pcap),
        "the manifest's hash of {}",
        pcap.display()
    );
    // Every file in the folder is listed (and nothing else is there).
    let n = std::fs::read_dir(&ev).expect("evidence dir").count();
    assert_eq!(n, 2, "pcap + manifest.json only");
}

fn check_report(out: &Path) {
    let report = wait_entry(out, "report-", ".html");
    let sidecar = PathBuf::from(format!("{}.sha256", report.display()));
    let t = Instant::now();
    while !sidecar.exists() {
        assert!(t.elapsed() < WAIT, "no {}", sidecar.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let html = std::fs::read_to_string(&report).expect("report");
    assert!(
        html.contains("100.64.1.10") && html.contains("tmux-test"),
        "report content"
    );
    let side = std::fs::read_to_string(&sidecar).expect("sidecar");
    assert!(
        side.starts_with(&sha256(&report)),
        "sidecar {side} matches the report"
    );
}

fn session(w: u16, h: u16) {
    let tmux = Tmux::new();
    let out = tempfile::tempdir().expect("tmp");
    tmux.start(w, h, out.path());
    let s = tmux.wait_screen("the end of the replay", |s| {
        s.contains("replay ended") && s.contains("100.64.1.10")
    });
    assert!(s.contains("40270 pkts"), "{s}");
    let row = s
        .lines()
        .find(|l| l.contains("100.64.1.10 "))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(
        row.contains("!! GATEWAY"),
        "the gateway line's verdict: {row}"
    );
    // Select the gateway line through the filter, then open its detail.
    tmux.keys(&["/", "gateway", "Enter"]);
    let s = tmux.wait_screen("the filtered list", |s| s.contains("filter \"gateway\""));
    assert!(
        !s.contains("100.64.1.11"),
        "only the gateway is listed:\n{s}"
    );
    let selected = s
        .lines()
        .find(|l| l.starts_with('>'))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(selected.contains("100.64.1.10"), "{selected}");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_screen("the detail screen", |s| s.contains("Reasons"));
    let title = s
        .lines()
        .find(|l| l.starts_with("100.64.1.10"))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(
        title.contains("!! GATEWAY") && title.contains("score 0.94"),
        "{title}"
    );
    assert!(s.contains("Calls come in from abroad"), "a reason:\n{s}");
    let flat: String = s.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("came in from 203.0.113.10 (foreign)"),
        "its figures:\n{s}"
    );
    tmux.keys(&["e"]);
    tmux.wait_screen("the evidence notice", |s| {
        s.contains("evidence 100.64.1.10:")
    });
    check_evidence(out.path());
    tmux.keys(&["r"]);
    tmux.wait_screen("the report notice", |s| s.contains("report: "));
    check_report(out.path());
    tmux.keys(&["q"]);
    let dead = tmux.wait_exit();
    assert_eq!(dead, "0 0", "exit status 0 and the normal screen back");
}

#[test]
fn watch_in_tmux_80x24() {
    if have_tmux() {
        session(80, 24);
    }
}

#[test]
fn watch_in_tmux_200x50() {
    if have_tmux() {
        session(200, 50);
    }
}

#[test]
fn sigterm_gives_the_terminal_back() {
    if !have_tmux() {
        return;
    }
    let tmux = Tmux::new();
    let out = tempfile::tempdir().expect("tmp");
    tmux.start(80, 24, out.path());
    tmux.wait_screen("the lines screen", |s| s.contains("replay ended"));
    assert_eq!(
        tmux.pane("#{alternate_on}"),
        "1",
        "the view uses the alternate screen"
    );
    let pid = tmux.watch_pid();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let dead = tmux.wait_exit();
    assert_eq!(dead, "0 0", "exit status 0 and the normal screen back");
}

#[test]
fn connect_shows_a_daemons_lines_and_detail() {
    if !have_tmux() {
        return;
    }
    use daemon_common::{free_port, Daemon, TOKEN};
    let dir = tempfile::tempdir().expect("tmp");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.path().join("simboxd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[capture]\nfile = {:?}\n\n[http]\nlisten = \"{addr}\"\ntoken = \"{TOKEN}\"\n\n\
             [daemon]\nuser = \"\"\ngroup = \"\"\n\n[storage]\npath = {:?}\n",
            sample().display().to_string(),
            dir.path().join("state/alerts.redb").display().to_string()
        ),
    )
    .expect("config");
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token file");
    let mut daemon = Daemon::start(&cfg, &dir.path().join("simboxd.log"));
    daemon.wait_healthy(addr, Duration::from_secs(30));
    let tmux = Tmux::new();
    let url = format!("http://{addr}");
    tmux.start_with(
        80,
        24,
        &[
            "--connect",
            &url,
            "--token-file",
            token.to_str().expect("utf-8"),
        ],
    );
    let s = tmux.wait_screen("the daemon's lines", |s| {
        s.lines()
            .any(|l| l.contains("100.64.1.10 ") && l.contains("GATEWAY"))
    });
    assert!(
        s.contains(&format!("daemon {url}")) || s.contains("daemon http://"),
        "{s}"
    );
    tmux.keys(&["Enter"]);
    let s = tmux.wait_screen("the line's detail from the API", |s| s.contains("Reasons"));
    let flat: String = s.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    assert!(flat.contains("came in from 203.0.113.10 (foreign)"), "{s}");
    assert!(s.contains("Latest calls"), "{s}");
    tmux.keys(&["e"]);
    tmux.wait_screen("the note that evidence is made on the daemon's host", |s| {
        s.contains("evidence and reports are written on the daemon")
    });
    tmux.keys(&["3"]);
    tmux.wait_screen("the threats screen with the daemon's alerts", |s| {
        s.contains("no threats tracked") && s.contains("Daemon alerts")
    });
    tmux.keys(&["q"]);
    assert_eq!(tmux.wait_exit(), "0 0");
    daemon.stop(Duration::from_secs(20));
}

/// Puts the sample capture's frames onto `lo` (its link type is Ethernet, as `lo`'s is), so a
/// live capture there sees the sample's lines.
fn inject_sample_on_lo() -> Result<u64, String> {
    let mut out = pcap::Capture::from_device("lo")
        .and_then(|c| c.open())
        .map_err(|e| e.to_string())?;
    let mut src = pcap::Capture::from_file(sample()).map_err(|e| e.to_string())?;
    let mut n = 0;
    while let Ok(p) = src.next_packet() {
        out.sendpacket(p.data).map_err(|e| e.to_string())?;
        n += 1;
        if n % 200 == 0 {
            // Stay below what the kernel buffer holds.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(n)
}

#[test]
fn live_interface_spools_the_capture_for_evidence() {
    if !have_tmux() {
        return;
    }
    if let Err(e) = pcap::Capture::from_device("lo").and_then(|c| c.open()) {
        eprintln!("skipping: cannot capture on lo: {e}");
        return;
    }
    let tmux = Tmux::new();
    let out = tempfile::tempdir().expect("tmp");
    tmux.start_with(
        200,
        50,
        &[
            "--interface",
            "lo",
            "--out",
            out.path().to_str().expect("utf-8"),
        ],
    );
    tmux.wait_screen("the live view", |s| {
        s.contains("interface lo") && s.contains("running")
    });
    let n = inject_sample_on_lo().expect("inject the sample on lo");
    assert_eq!(n, 40270);
    tmux.wait_screen("the sample's gateway line, live", |s| {
        s.lines().any(|l| l.contains("100.64.1.10 "))
    });
    tmux.keys(&["/", "100.64.1.10", "Enter"]);
    tmux.wait_screen("the filter", |s| s.contains("filter \"100.64.1.10\""));
    tmux.keys(&["e"]);
    tmux.wait_screen("the evidence notice", |s| {
        s.contains("evidence 100.64.1.10:")
    });
    let ev = wait_entry(out.path(), "evidence-100.64.1.10-", "");
    let manifest = ev.join("manifest.json");
    let t = Instant::now();
    while !manifest.exists() {
        assert!(t.elapsed() < WAIT, "no manifest");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    // The source is the copy of the spool made for this export, with its hash.
    let source = PathBuf::from(m["source"].as_str().expect("source"));
    assert!(source.starts_with(out.path()), "{m}");
    assert_eq!(m["source_sha256"], sha256(&source), "{m}");
    let files = m["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{m}");
    assert!(files[0]["sip_packets"].as_u64().unwrap_or(0) > 0, "{m}");
    assert_eq!(
        files[0]["sha256"],
        sha256(&ev.join(files[0]["file"].as_str().unwrap()))
    );
    wait_entry(out.path(), "spool-lo-", ".pcap");
    tmux.keys(&["q"]);
    assert_eq!(tmux.wait_exit(), "0 0");
}
