//! Service lifecycle of `simboxd run` on the shipped sample capture (`captures/sample-site.pcap`,
//! a simulated SIM-box site among ordinary lines): sd_notify messages, SIGHUP reload without
//! losing profiles, SIGTERM save and restore on start, and the same verdicts whatever the
//! number of engine threads.

mod daemon_common;

use daemon_common::{free_port, http_get, parse_prometheus, sample, Daemon, TOKEN};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OTHER_TOKEN: &str = "second-token-abcdefghijklmnop";

fn sample_capture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap")
}

fn write_config(dir: &Path, api: SocketAddr, token: &str, workers: usize, filter: &str) -> PathBuf {
    write_config_for(dir, api, token, workers, filter, &sample_capture())
}

fn write_config_for(
    dir: &Path,
    api: SocketAddr,
    token: &str,
    workers: usize,
    filter: &str,
    capture: &Path,
) -> PathBuf {
    let p = dir.join("simboxd.toml");
    std::fs::write(
        &p,
        format!(
            "[capture]\nfile = {cap:?}\nfilter = {filter:?}\n\n[http]\nlisten = \"{api}\"\n\
             token = \"{token}\"\n\n[daemon]\nuser = \"\"\ngroup = \"\"\nworkers = {workers}\n\n\
             [storage]\npath = {st:?}\n",
            cap = capture.display().to_string(),
            st = dir.join("state/alerts.redb").display().to_string(),
        ),
    )
    .unwrap();
    p
}

fn api_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// Lines listed by the API once the replay is processed (same list twice in a row).
fn settled_lines(api: SocketAddr, token: &str) -> Vec<serde_json::Value> {
    let t0 = Instant::now();
    let mut last = String::new();
    loop {
        let r = http_get(api, "/api/v1/lines", Some(token)).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let m = http_get(api, "/metrics", Some(token)).unwrap();
        let s = parse_prometheus(&m.body).unwrap();
        let done = sample(&s, "simboxd_capture_running") == Some(0.0)
            && sample(&s, "simboxd_queue_packets") == Some(0.0);
        if done && r.body == last && !r.body.contains("\"lines\":[]") {
            return r.json()["lines"].as_array().cloned().unwrap_or_default();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "lines never settled: {}",
            r.body
        );
        last = r.body;
        // The API lists lines from a snapshot rebuilt at most once a second: two equal
        // answers further apart than that are the settled state.
        std::thread::sleep(Duration::from_millis(1100));
    }
}

/// Line, verdict, site, score (to 0.01) and reason codes of every line.
fn verdicts(lines: &[serde_json::Value]) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            let reasons: Vec<String> = l["reasons"]
                .as_array()
                .map(|r| r.iter().map(|x| x["signal"].to_string()).collect())
                .unwrap_or_default();
            (
                l["line"].as_str().unwrap_or("").to_string(),
                l["verdict"].as_str().unwrap_or("").to_string(),
                format!(
                    "site={} score={:.2} reasons={reasons:?}",
                    l["site"],
                    l["score"].as_f64().unwrap_or(-1.0)
                ),
            )
        })
        .collect();
    v.sort();
    v
}

fn signal(d: &Daemon, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(d.child.id() as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
}

#[test]
fn sample_site_is_flagged_the_same_with_one_or_three_workers() {
    let mut seen = Vec::new();
    for workers in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let api = api_addr();
        let cfg = write_config(dir.path(), api, TOKEN, workers, "");
        let mut d = Daemon::start(&cfg, &dir.path().join("log"));
        d.wait_healthy(api, Duration::from_secs(20));
        let lines = settled_lines(api, TOKEN);
        let flagged = lines.iter().filter(|l| l["verdict"] != "normal").count();
        assert!(flagged >= 2, "workers={workers}: {lines:?}");
        // Flagged first.
        let ranks: Vec<u8> = lines
            .iter()
            .map(|l| match l["verdict"].as_str() {
                Some("gateway") => 2,
                Some("suspect") => 1,
                _ => 0,
            })
            .collect();
        assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "{ranks:?}");
        seen.push(verdicts(&lines));
        d.stop(Duration::from_secs(15));
    }
    assert_eq!(
        seen[0], seen[1],
        "sharding over 3 workers changed the verdicts"
    );
}

/// Four gateways of one premises into one softswitch, four households: simulated (4 minutes).
fn site_capture(dir: &Path) -> PathBuf {
    let scenario = dir.join("site.toml");
    std::fs::write(
        &scenario,
        "duration = \"4m\"\nscale = 1.0\nstart = \"2026-01-05T09:00:00Z\"\n\n\
         [[population]]\nkind = \"gateway\"\nsite = \"site-1\"\ncount = 4\nchannels = 4\n\
         registration = \"per-port\"\nua = \"vendor\"\ncodec = \"G729\"\n\n\
         [[population]]\nkind = \"household\"\ncount = 4\ncalls_per_hour = 20.0\ncodec = \"G729\"\n",
    )
    .unwrap();
    let out = dir.join("site.pcap");
    let st = Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .args(["simulate", "--seed", "5", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    out
}

#[test]
fn a_site_spanning_workers_is_formed_as_with_one_worker() {
    let data = tempfile::tempdir().unwrap();
    let cap = site_capture(data.path());
    let mut seen = Vec::new();
    let mut site_lines = Vec::new();
    for workers in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let api = api_addr();
        let cfg = write_config_for(dir.path(), api, TOKEN, workers, "", &cap);
        let mut d = Daemon::start(&cfg, &dir.path().join("log"));
        d.wait_healthy(api, Duration::from_secs(20));
        let lines = settled_lines(api, TOKEN);
        if workers == 1 {
            site_lines = lines
                .iter()
                .filter(|l| l["site"].is_string())
                .filter_map(|l| l["line"].as_str()?.parse::<std::net::IpAddr>().ok())
                .collect();
        }
        seen.push(verdicts(&lines));
        d.stop(Duration::from_secs(15));
    }
    assert!(site_lines.len() >= 2, "no site formed: {seen:?}");
    // Only correlation across workers can form this site with three: its lines are on
    // different workers.
    let shards: std::collections::BTreeSet<usize> = site_lines
        .iter()
        .map(|ip| simboxd::daemon::pipeline::shard_of_line(*ip, 3))
        .collect();
    assert!(
        shards.len() >= 2,
        "the site's lines are on one worker: {site_lines:?}"
    );
    assert_eq!(
        seen[0], seen[1],
        "sharding over 3 workers changed the verdicts or sites"
    );
}

#[test]
fn sighup_reloads_the_token_and_keeps_profiles_bad_reload_keeps_running_config() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_addr();
    let cfg = write_config(dir.path(), api, TOKEN, 1, "");
    let mut d = Daemon::start(&cfg, &dir.path().join("log"));
    d.wait_healthy(api, Duration::from_secs(20));
    let before = verdicts(&settled_lines(api, TOKEN));

    // A new token takes effect on SIGHUP; the profiles stay.
    write_config(dir.path(), api, OTHER_TOKEN, 1, "");
    signal(&d, nix::sys::signal::Signal::SIGHUP);
    let t0 = Instant::now();
    while http_get(api, "/api/v1/lines", Some(OTHER_TOKEN))
        .unwrap()
        .status
        != 200
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "new token never accepted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        http_get(api, "/api/v1/lines", Some(TOKEN)).unwrap().status,
        401
    );
    let after = http_get(api, "/api/v1/lines", Some(OTHER_TOKEN))
        .unwrap()
        .json();
    let after = verdicts(after["lines"].as_array().unwrap());
    assert_eq!(before, after, "reload lost or changed line profiles");

    // A broken config is refused: the running one (and its token) stays.
    std::fs::write(&cfg, "[http]\nbogus = 1\n").unwrap();
    signal(&d, nix::sys::signal::Signal::SIGHUP);
    let t0 = Instant::now();
    loop {
        let m = http_get(api, "/metrics", Some(OTHER_TOKEN)).unwrap();
        assert_eq!(m.status, 200, "token lost after a failed reload");
        let s = parse_prometheus(&m.body).unwrap();
        if sample(&s, "simboxd_config_reloads_total{result=\"failed\"}") == Some(1.0) {
            assert_eq!(
                sample(&s, "simboxd_config_reloads_total{result=\"ok\"}"),
                Some(1.0)
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "failed reload not counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d
        .log_text()
        .contains("reload failed: keeping the running config"));
    assert!(d.log_text().contains("unknown field `bogus`"));
}

#[test]
fn sigterm_saves_profiles_and_open_alerts_and_start_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_addr();
    let cfg = write_config(dir.path(), api, TOKEN, 2, "");
    let mut d = Daemon::start(&cfg, &dir.path().join("log1"));
    d.wait_healthy(api, Duration::from_secs(20));
    let first = verdicts(&settled_lines(api, TOKEN));
    let open_before = {
        let m = http_get(api, "/metrics", Some(TOKEN)).unwrap();
        sample(&parse_prometheus(&m.body).unwrap(), "simboxd_alerts_open").unwrap()
    };
    assert!(open_before >= 1.0);
    let st = d.stop(Duration::from_secs(15)).expect("stops on SIGTERM");
    assert!(st.success(), "{}", d.log_text());
    assert!(d.log_text().contains("saved line profiles and open alerts"));

    // Second start reads nothing from the capture (the filter matches no packet): whatever the
    // API shows now came from the saved state.
    let api2 = api_addr();
    let cfg = write_config(dir.path(), api2, TOKEN, 2, "udp port 1");
    let mut d2 = Daemon::start(&cfg, &dir.path().join("log2"));
    d2.wait_healthy(api2, Duration::from_secs(20));
    let m = http_get(api2, "/metrics", Some(TOKEN)).unwrap();
    let s = parse_prometheus(&m.body).unwrap();
    assert_eq!(sample(&s, "simboxd_packets_captured_total"), Some(0.0));
    assert_eq!(sample(&s, "simboxd_alerts_open"), Some(open_before));
    let restored = http_get(api2, "/api/v1/lines", Some(TOKEN)).unwrap().json();
    let restored = verdicts(restored["lines"].as_array().unwrap());
    assert_eq!(first, restored, "restored lines differ");
    assert!(
        d2.log_text().contains("restored saved state"),
        "{}",
        d2.log_text()
    );
    // Alerts delivered or not, the outbox keeps them across the restart.
    let alerts = http_get(api2, "/api/v1/alerts", Some(TOKEN))
        .unwrap()
        .json();
    assert!(alerts["total"].as_u64().unwrap_or(0) >= 1, "{alerts}");
}

#[test]
fn systemd_notify_ready_reloading_stopping_and_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let api = api_addr();
    let cfg = write_config(dir.path(), api, TOKEN, 1, "");
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new(daemon_common::bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut got: Vec<String> = Vec::new();
    let recv_until = |want: &str, got: &mut Vec<String>| {
        let mut buf = [0u8; 512];
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            let Ok(n) = sock.recv(&mut buf) else { break };
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            got.push(msg.clone());
            if msg.lines().any(|l| l == want) {
                return true;
            }
        }
        false
    };
    let ready = recv_until("READY=1", &mut got);
    let watchdog = recv_until("WATCHDOG=1", &mut got);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let reloading = recv_until("RELOADING=1", &mut got);
    let ready_again = recv_until("READY=1", &mut got);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping = recv_until("STOPPING=1", &mut got);
    let st = child.wait().unwrap();
    assert!(
        ready && watchdog && reloading && ready_again && stopping,
        "{got:?}"
    );
    assert!(st.success());
    let first_ready = got.iter().find(|m| m.starts_with("READY=1")).unwrap();
    assert!(
        first_ready.contains("STATUS=capturing from file"),
        "{first_ready}"
    );
}
