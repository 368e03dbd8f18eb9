//! Acceptance: real SIP traffic from sipp on loopback, captured live by `simboxd run` on `lo`.
//!
//! A softswitch (sipp UAC on 127.0.0.1) pushes many short calls, each to a different number, at
//! a fixed concurrency of 8 into a gateway line (sipp UAS on 127.0.0.10); a normal line
//! (127.0.0.20) makes two calls to a domestic provider (sipp UAS on 127.0.0.30). The gateway
//! line's alert must reach a real rsyslogd (started here, writing to a file), an HTTP receiver and
//! the HTTP API; the normal line must raise none. The daemon drops to `nobody` after opening the
//! capture. Needs root (live capture) plus sipp and rsyslogd: skipped with a message otherwise,
//! failed under CI=true. Everything started here is stopped when the test ends.

mod daemon_common;

use daemon_common::{free_port, http_get, parse_prometheus, sample, Daemon, HttpReceiver, TOKEN};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GATEWAY: &str = "127.0.0.10";
const NORMAL: &str = "127.0.0.20";
const DOMESTIC_PROVIDER: &str = "127.0.0.30";
const SOFTSWITCH: &str = "127.0.0.1";
const GATEWAY_CALLS: usize = 64;
const HOOK_AUTH: &str = "Bearer hook-secret-42";

/// A child process killed (by its pid) when dropped.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc { child, name }
    }
    fn wait_for(&mut self, limit: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!("{} still running after {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `None` (after saying why) when the test cannot run here; panics under CI=true.
fn preconditions() -> Option<()> {
    let mut missing = Vec::new();
    if !nix::unistd::Uid::effective().is_root() {
        missing.push("root (live capture on lo)".to_string());
    }
    for cmd in ["sipp", "rsyslogd"] {
        if !have(cmd) {
            missing.push(cmd.to_string());
        }
    }
    if missing.is_empty() {
        return Some(());
    }
    let msg = format!("daemon_e2e needs {}", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (CI=true)");
    }
    eprintln!("SKIP: {msg}");
    None
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral UDP port")
}

/// rsyslogd with its own config, pid file and work directory, writing everything it receives
/// on UDP to `log`. Returns once a probe message has come through.
fn start_rsyslog(dir: &Path, port: u16, log: &Path) -> Proc {
    let work = dir.join("rsyslog");
    std::fs::create_dir_all(&work).unwrap();
    let conf = work.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{w}\")\n\
             module(load=\"imudp\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\")\n\
             *.* action(type=\"omfile\" file=\"{log}\")\n",
            w = work.display(),
            log = log.display()
        ),
    )
    .unwrap();
    let p = Proc::spawn(
        "rsyslogd",
        Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(work.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        let _ = probe.send_to(b"<14>1 - - e2e - - - rsyslog-probe", ("127.0.0.1", port));
        std::thread::sleep(Duration::from_millis(200));
        if std::fs::read_to_string(log).is_ok_and(|t| t.contains("rsyslog-probe")) {
            return p;
        }
    }
    panic!("rsyslogd did not come up on udp port {port}");
}

/// A sipp UAS on `addr`: sipp's own `uas` scenario (answers at once), or the scenario file
/// `sf` (the gateway line's, which rings before it answers).
fn sipp_uas(addr: &str, dir: &Path, name: &'static str, sf: Option<&Path>) -> Proc {
    let scenario = match sf {
        Some(f) => vec!["-sf".to_string(), f.display().to_string()],
        None => vec!["-sn".to_string(), "uas".to_string()],
    };
    Proc::spawn(
        name,
        Command::new("sipp")
            .args(&scenario)
            .args(["-i", addr, "-p", "5060", "-nostdin"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// Runs a sipp UAC to completion; returns its successful call count.
fn sipp_uac(dir: &Path, name: &'static str, args: &[&str]) -> u64 {
    let out = dir.join(format!("{name}.out"));
    let mut p = Proc::spawn(
        name,
        Command::new("sipp")
            .args(args)
            .args(["-nostdin", "-timeout", "120s"])
            .current_dir(dir)
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::null()),
    );
    let st = p.wait_for(Duration::from_secs(130));
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(st.success(), "{name} failed ({st}):\n{text}");
    // "  Successful call        |        0                  |       64   "
    text.lines()
        .filter(|l| l.trim_start().starts_with("Successful call"))
        .filter_map(|l| l.rsplit('|').next()?.trim().parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn config(dir: &Path, api: SocketAddr, syslog_port: u16, hook: SocketAddr) -> PathBuf {
    let p = dir.join("simboxd.toml");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    // As installed: the daemon, once it is `nobody`, owns its state directory.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    nix::unistd::chown(&state, Some(nobody.uid), Some(nobody.gid)).unwrap();
    std::fs::write(
        &p,
        format!(
            r#"[capture]
interface = "lo"
filter = "udp and (port 5060 or port 5070 or port 5080)"
buffer_mib = 8

[network]
home = ["{GATEWAY}/32", "{NORMAL}/32"]
domestic = ["{DOMESTIC_PROVIDER}/32"]

[detection]
evaluate_every_secs = 1

[syslog]
targets = ["udp://127.0.0.1:{syslog_port}"]

[webhook]
url = "http://{hook}/simboxd/alerts"
auth_header = "Authorization: {HOOK_AUTH}"
timeout_secs = 5

[storage]
path = "{state}/alerts.redb"

[http]
listen = "{api}"
token = "{TOKEN}"

[daemon]
user = "nobody"
group = "nogroup"
tick_secs = 0.5
"#,
            state = state.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn gateway_line_alert_reaches_syslog_webhook_and_api_normal_line_stays_quiet() {
    if preconditions().is_none() {
        return;
    }
    let t_start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let syslog_port = free_udp_port();
    let syslog_log = d.join("syslog-received.log");
    let _rsyslog = start_rsyslog(d, syslog_port, &syslog_log);
    let hook = HttpReceiver::start();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = config(d, api, syslog_port, hook.addr);

    let mut daemon = Daemon::start(&cfg, &d.join("simboxd.log"));
    daemon.wait_healthy(api, Duration::from_secs(20));
    assert!(
        daemon.log_text().contains("dropped privileges"),
        "{}",
        daemon.log_text()
    );

    // The two lines' far ends.
    // The tap carries no media here (sipp sends none): the gateway line's answers count as its
    // own because they last and come after it has rung, as a relayed call's do.
    let gw_scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sipp_gateway_uas.xml");
    let _uas_gateway = sipp_uas(GATEWAY, d, "sipp uas (gateway line)", Some(&gw_scenario));
    let _uas_domestic = sipp_uas(DOMESTIC_PROVIDER, d, "sipp uas (domestic provider)", None);
    std::thread::sleep(Duration::from_millis(500));

    // Normal line: two calls out to its domestic provider, one at a time, 3 s each.
    let normal_ok = sipp_uac(
        d,
        "sipp-normal",
        &[
            &format!("{DOMESTIC_PROVIDER}:5060"),
            "-sn",
            "uac",
            "-i",
            NORMAL,
            "-p",
            "5070",
            "-m",
            "2",
            "-l",
            "1",
            "-r",
            "1",
            "-d",
            "3000",
        ],
    );
    assert_eq!(normal_ok, 2, "normal line calls");

    // Gateway line: a softswitch abroad dials a different number on every call, 8 at a time.
    let csv = d.join("numbers.csv");
    let mut rows = String::from("SEQUENTIAL\n");
    // Mobile numbers spread over many ranges (not a DID block), as a softswitch dials them.
    let mut x: u64 = 0x2545_f491;
    for i in 0..GATEWAY_CALLS {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let prefix = [138, 139, 135, 186, 152][i % 5];
        let number = (x >> 33) % 100_000_000;
        rows.push_str(&format!("{prefix}{number:08};86{:09}\n", 139_000_000 + i));
    }
    std::fs::write(&csv, rows).unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sipp_feed_uac.xml");
    let gw_ok = sipp_uac(
        d,
        "sipp-switch",
        &[
            &format!("{GATEWAY}:5060"),
            "-sf",
            &scenario.display().to_string(),
            "-inf",
            &csv.display().to_string(),
            "-i",
            SOFTSWITCH,
            "-p",
            "5080",
            "-m",
            &GATEWAY_CALLS.to_string(),
            "-l",
            "8",
            "-r",
            "8",
            "-d",
            "6000",
        ],
    );
    assert_eq!(gw_ok, GATEWAY_CALLS as u64, "gateway line calls");

    // Wait for the alert to arrive everywhere.
    let gateway_in = |s: &str| s.contains(GATEWAY);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let hooked = hook.received().iter().any(|r| gateway_in(&r.body));
        let logged = std::fs::read_to_string(&syslog_log).is_ok_and(|t| gateway_in(&t));
        if (hooked && logged) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    // The API: the gateway line first and flagged, the normal line normal.
    let lines = http_get(api, "/api/v1/lines", Some(TOKEN)).unwrap().json();
    let list = lines["lines"].as_array().cloned().unwrap_or_default();
    let verdict_of = |ip: &str| {
        list.iter()
            .find(|l| l["line"] == ip)
            .and_then(|l| l["verdict"].as_str().map(str::to_string))
    };
    let diag = format!(
        "lines: {lines}\nmetrics:\n{}\nlog:\n{}",
        http_get(api, "/metrics", Some(TOKEN))
            .map(|r| r.body)
            .unwrap_or_default(),
        daemon.log_text()
    );
    assert_eq!(
        list.first().map(|l| l["line"].clone()),
        Some(serde_json::json!(GATEWAY)),
        "gateway line listed first\n{diag}"
    );
    let gw_verdict = verdict_of(GATEWAY);
    if let Some(gw) = list.iter().find(|l| l["line"] == GATEWAY) {
        let signals: Vec<String> = gw["reasons"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|x| {
                        format!(
                            "{} {:.2}",
                            x["signal"].as_str().unwrap_or("?"),
                            x["strength"].as_f64().unwrap_or(0.0)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        eprintln!(
            "gateway line: verdict {} score {:.2} after {:?}; signals: {}",
            gw["verdict"],
            gw["score"].as_f64().unwrap_or(0.0),
            t_start.elapsed(),
            signals.join(", ")
        );
    }
    assert_eq!(
        gw_verdict.as_deref(),
        Some("gateway"),
        "gateway line verdict\n{diag}"
    );
    let gw_signals: Vec<&str> = list
        .iter()
        .find(|l| l["line"] == GATEWAY)
        .and_then(|l| l["reasons"].as_array())
        .map(|r| r.iter().filter_map(|x| x["signal"].as_str()).collect())
        .unwrap_or_default();
    for want in ["foreign_inbound", "distinct_called"] {
        assert!(
            gw_signals.contains(&want),
            "{want} missing from {gw_signals:?}"
        );
    }
    assert_eq!(verdict_of(NORMAL).as_deref(), Some("normal"), "{diag}");

    let detail = http_get(api, &format!("/api/v1/lines/{GATEWAY}"), Some(TOKEN)).unwrap();
    assert_eq!(detail.status, 200, "{}", detail.body);
    let detail = detail.json();
    let recent = detail["recent_calls"].as_array().map_or(0, |a| a.len());
    assert!(recent > 0, "recent calls of the gateway line: {detail}");
    assert!(
        detail["profile"]["distinct_called_estimate"]
            .as_f64()
            .is_some_and(|n| n > 20.0),
        "{detail}"
    );

    let alerts = http_get(api, "/api/v1/alerts", Some(TOKEN)).unwrap().json();
    let alert_lines: Vec<String> = alerts["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["line"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        alert_lines.iter().any(|l| l == GATEWAY),
        "API alerts: {alerts}\n{diag}"
    );
    assert!(
        !alert_lines.iter().any(|l| l == NORMAL),
        "normal line alerted: {alerts}"
    );

    // The HTTP receiver: JSON alert for the gateway line, with the configured auth header.
    let got = hook.received();
    let for_gateway: Vec<_> = got.iter().filter(|r| gateway_in(&r.body)).collect();
    assert!(!for_gateway.is_empty(), "webhook got {got:?}\n{diag}");
    let first = for_gateway[0];
    assert!(
        first.request_line.starts_with("POST /simboxd/alerts "),
        "{}",
        first.request_line
    );
    assert!(
        first
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && v == HOOK_AUTH),
        "{:?}",
        first.headers
    );
    let body: serde_json::Value = serde_json::from_str(&first.body).expect("webhook body is JSON");
    assert_eq!(body["line"], GATEWAY);
    assert_eq!(body["state"], "raised");
    // The peer (the softswitch feeding the line), the sensor and the version: fields of their own.
    assert_eq!(body["peer"], SOFTSWITCH, "{body}");
    assert!(
        body["sensor"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"), "{body}");
    assert!(
        !got.iter().any(|r| r.body.contains(NORMAL)),
        "normal line reached the webhook"
    );

    // rsyslog: the alert line in its file, nothing about the normal line.
    let syslog_text = std::fs::read_to_string(&syslog_log).unwrap_or_default();
    assert!(
        syslog_text
            .lines()
            .any(|l| l.contains(GATEWAY) && l.contains("raised")),
        "rsyslog file:\n{syslog_text}\n{diag}"
    );
    assert!(
        !syslog_text.contains(NORMAL),
        "normal line reached syslog:\n{syslog_text}"
    );

    // Metrics: packets captured live, nothing left to deliver.
    let m = http_get(api, "/metrics", Some(TOKEN)).unwrap();
    let samples = parse_prometheus(&m.body).unwrap();
    assert!(sample(&samples, "simboxd_packets_captured_total").unwrap_or(0.0) > 100.0);
    assert!(sample(&samples, "simboxd_alerts_total{state=\"raised\"}").unwrap_or(0.0) >= 1.0);
    for (series, v) in &samples {
        if series.starts_with("simboxd_delivery_backlog{") {
            assert_eq!(*v, 0.0, "{series}");
        }
    }

    // Evidence captured live: the gateway line's folder is listed with its packets (pre-alert
    // ring and later), and its manifest hashes the pcap the API serves.
    let t_ev = Instant::now();
    let evidence = loop {
        let list = http_get(api, "/api/v1/evidence", Some(TOKEN))
            .unwrap()
            .json();
        let found = list["evidence"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["line"] == GATEWAY).cloned());
        match found {
            Some(e) if e["packets"].as_u64() > Some(0) => break e,
            _ if t_ev.elapsed() > Duration::from_secs(10) => {
                panic!("no evidence for {GATEWAY}: {list}\n{diag}")
            }
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    };
    let ev_id = evidence["alert_id"].as_str().unwrap().to_string();
    let manifest = http_get(api, &format!("/api/v1/evidence/{ev_id}"), Some(TOKEN))
        .unwrap()
        .json();
    assert!(
        manifest["files"][0]["sip_packets"].as_u64() > Some(0),
        "{manifest}"
    );
    assert!(
        manifest["pre_alert_packets"].as_u64() > Some(0),
        "{manifest}"
    );

    // Graceful stop saves the profiles, as `nobody`, into its state directory.
    let st = daemon
        .stop(Duration::from_secs(20))
        .expect("simboxd stops on SIGTERM");
    assert!(st.success(), "exit {st}\n{}", daemon.log_text());
    use std::os::unix::fs::MetadataExt;
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let ev_dir = format!("state/evidence/{ev_id}");
    let ev_manifest = format!("{ev_dir}/manifest.json");
    for f in [
        "state/alerts.redb",
        "state/state.redb",
        ev_dir.as_str(),
        ev_manifest.as_str(),
    ] {
        let owner = std::fs::metadata(d.join(f)).unwrap().uid();
        assert_eq!(
            owner,
            nobody.uid.as_raw(),
            "{f} belongs to uid {owner}, not nobody"
        );
    }
    // Lines are stored under their address as text.
    let saved = std::fs::read(d.join("state/state.redb")).unwrap();
    assert!(
        saved
            .windows(GATEWAY.len())
            .any(|w| w == GATEWAY.as_bytes()),
        "state.redb lacks the gateway line"
    );
    assert!(
        t_start.elapsed() < Duration::from_secs(180),
        "took {:?}",
        t_start.elapsed()
    );
}
