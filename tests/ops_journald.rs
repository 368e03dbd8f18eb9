//! Logs under journald (issue 16): when stderr is the journal stream systemd names in
//! `$JOURNAL_STREAM`, the daemon sends every event to the journal socket in journald's native
//! protocol, with its priority (warn 4, info 6) and its fields as journal fields
//! (`DELIVERY_TARGET=`, `ERROR=`), not as text on stderr.
//!
//! The test plays journald: it binds the datagram socket at `/run/systemd/journal/socket` and
//! reads what arrives. It needs root and a host without a running journald (a CI container);
//! elsewhere it says so and skips.

mod daemon_common;

use daemon_common::{bin, free_port, http_get, TOKEN};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SOCKET: &str = "/run/systemd/journal/socket";

/// Stops the daemon with SIGTERM while reading the journal socket, as journald does: a journal
/// that stops reading would block the daemon's log writes once the socket's queue is full.
fn stop_while_draining(sock: &UnixDatagram, child: &mut std::process::Child) {
    let draining = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let drain = {
        let sock = sock.try_clone().unwrap();
        let draining = draining.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while draining.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = sock.recv(&mut buf);
            }
        })
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    draining.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = drain.join();
}

/// One journal entry in the native protocol: `KEY=value\n`, or `KEY\n` + 64-bit LE length +
/// bytes + `\n` for values with newlines.
fn parse_entry(mut b: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while !b.is_empty() {
        let nl = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
        let line = &b[..nl];
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            out.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            b = b.get(nl + 1..).unwrap_or(&[]);
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = b.get(nl + 1..).unwrap_or(&[]);
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            let val = &rest[8..8 + len];
            out.insert(key, String::from_utf8_lossy(val).into_owned());
            b = rest.get(8 + len + 1..).unwrap_or(&[]);
        }
    }
    out
}

/// One fake journald at a time (both tests bind the same socket).
static JOURNAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn under_journald_events_carry_priorities_and_fields() {
    let _one = JOURNAL.lock().unwrap_or_else(|e| e.into_inner());
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIP: binding the journal socket needs root");
        return;
    }
    if Path::new(SOCKET).exists() {
        eprintln!(
            "SKIP: a journald is running here ({SOCKET} exists); this test plays journald itself"
        );
        return;
    }
    std::fs::create_dir_all("/run/systemd/journal").unwrap();
    let sock = UnixDatagram::bind(SOCKET).expect("bind the journal socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(SOCKET);
        }
    }
    let _cleanup = Cleanup;

    let dir = tempfile::tempdir().unwrap();
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    let cfg = dir.path().join("simboxd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[capture]\nfile = {cap:?}\n\n[http]\nlisten = \"{api}\"\ntoken = \"{TOKEN}\"\n\n\
             [daemon]\nuser = \"\"\ngroup = \"\"\n\n[alert]\nretry_initial_ms = 100\nretry_max_secs = 1\n\n\
             [webhook]\nurl = {dead:?}\ntimeout_secs = 2\n\n[storage]\npath = {st:?}\n",
            cap = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("captures/sample-site.pcap")
                .display()
                .to_string(),
            st = dir.path().join("state/alerts.redb").display().to_string(),
        ),
    )
    .unwrap();
    // stderr is "the journal stream": a file whose device:inode goes into $JOURNAL_STREAM.
    let log = dir.path().join("stderr");
    let out = std::fs::File::create(&log).unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(Stdio::null())
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();

    let mut entries: Vec<BTreeMap<String, String>> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let t0 = Instant::now();
    let host_port = dead
        .trim_start_matches("http://")
        .trim_end_matches("/hook")
        .to_string();
    let warned = |e: &[BTreeMap<String, String>]| {
        e.iter().any(|x| {
            x.get("PRIORITY").map(String::as_str) == Some("4")
                && x.values().any(|v| v.contains(&host_port))
        })
    };
    while t0.elapsed() < Duration::from_secs(40) && !warned(&entries) {
        // (tracing-journald sends an empty datagram first, to check the socket.)
        if let Ok(n @ 1..) = sock.recv(&mut buf) {
            entries.push(parse_entry(&buf[..n]));
        }
    }
    // The API still answers (the daemon is up, not stuck on logging).
    let h = http_get(api, "/healthz", None);
    stop_while_draining(&sock, &mut child);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let dump = entries
        .iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(h.is_ok(), "healthz unreachable");
    assert!(
        !entries.is_empty(),
        "nothing reached the journal\nstderr:\n{stderr}"
    );
    for e in &entries {
        assert_eq!(
            e.get("SYSLOG_IDENTIFIER").map(String::as_str),
            Some("simboxd"),
            "{e:?}"
        );
        assert!(
            e.contains_key("MESSAGE") && e.contains_key("PRIORITY"),
            "{e:?}"
        );
    }
    // Start-up is information (6), a delivery failure a warning (4) naming its target in a
    // field of its own, not only in the message text.
    assert!(
        entries
            .iter()
            .any(|e| e.get("PRIORITY").map(String::as_str) == Some("6")),
        "no info entry\n{dump}"
    );
    let failure = entries
        .iter()
        .find(|e| {
            e.get("PRIORITY").map(String::as_str) == Some("4")
                && e.iter()
                    .any(|(k, v)| k != "MESSAGE" && v.contains(&host_port))
        })
        .unwrap_or_else(|| {
            panic!("no warning with the target as a field\n{dump}\nstderr:\n{stderr}")
        });
    assert!(
        failure.contains_key("DELIVERY_TARGET") && failure.contains_key("ERROR"),
        "the failure carries its target and error as fields: {failure:?}"
    );
    // Events went to the journal, not as text to stderr.
    assert!(
        !stderr.contains(&host_port),
        "delivery failures were printed on stderr too:\n{stderr}"
    );
}

/// Field values reach the journal escaped like the text output (`crate::text::escape`): a
/// value with a newline, a carriage return, a terminal escape and a bidi override (here the
/// state directory's name, which the daemon logs as a field at start) arrives as one line of
/// visible escapes, and cannot forge a field (`PRIORITY=0`) of its entry.
#[test]
fn under_journald_field_values_are_escaped() {
    let _one = JOURNAL.lock().unwrap_or_else(|e| e.into_inner());
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIP: binding the journal socket needs root");
        return;
    }
    if Path::new(SOCKET).exists() {
        eprintln!("SKIP: a journald is running here ({SOCKET} exists)");
        return;
    }
    std::fs::create_dir_all("/run/systemd/journal").unwrap();
    let sock = UnixDatagram::bind(SOCKET).expect("bind the journal socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(SOCKET);
        }
    }
    let _cleanup = Cleanup;

    let dir = tempfile::tempdir().unwrap();
    let forged = "st\nPRIORITY=0\r\x1b]0;owned\x07\u{202e}x";
    let state = dir.path().join(forged);
    std::fs::create_dir_all(&state).unwrap();
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.path().join("simboxd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[capture]\nfile = {cap:?}\nfilter = \"udp port 1\"\n\n[http]\nlisten = \"{api}\"\n\
             token = \"{TOKEN}\"\n\n[daemon]\nuser = \"\"\ngroup = \"\"\n\n[storage]\npath = {st}\n",
            cap = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("captures/sample-site.pcap")
                .display()
                .to_string(),
            // (A TOML string: its escapes are not Rust's.)
            st = toml::Value::String(state.join("alerts.redb").display().to_string()),
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr");
    let out = std::fs::File::create(&log).unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(Stdio::null())
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let mut raw: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let t0 = Instant::now();
    let seen = |raw: &[Vec<u8>]| {
        raw.iter()
            .any(|d| String::from_utf8_lossy(d).contains("restored saved state"))
    };
    while t0.elapsed() < Duration::from_secs(30) && !seen(&raw) {
        if let Ok(n @ 1..) = sock.recv(&mut buf) {
            raw.push(buf[..n].to_vec());
        }
    }
    stop_while_draining(&sock, &mut child);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let entry = raw
        .iter()
        .find(|d| String::from_utf8_lossy(d).contains("restored saved state"))
        .unwrap_or_else(|| panic!("no start-up entry in the journal\nstderr:\n{stderr}"));
    let text = String::from_utf8(entry.clone()).expect("UTF-8 entry");
    // Every line is KEY=value (no length-prefixed binary values, no raw control character).
    for line in text.lines() {
        assert!(line.contains('='), "{line:?} in {text:?}");
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "raw control character in {line:?}"
        );
    }
    let e = parse_entry(entry);
    assert_eq!(e.get("PRIORITY").map(String::as_str), Some("6"), "{e:?}");
    let file = e
        .get("FILE")
        .unwrap_or_else(|| panic!("no FILE field: {e:?}"));
    assert!(
        file.contains("st\\nPRIORITY=0\\r\\x1b]0;owned\\x07\\u{202e}x"),
        "{file}"
    );
}
