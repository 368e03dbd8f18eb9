//! Issue 12 acceptance, with a real `nats-server -js`: one premises' four gateway lines split
//! over two sensors (two lines each, made with the simulator and split by line address with
//! tcpdump); with `site_min_lines = 3` neither sensor alone forms the site; `simboxd central`
//! raises one site alert with all four lines. NATS is stopped for a while mid-run: every sensor
//! alert still reaches the central, and the stream holds each exactly once.

mod daemon_common;
#[path = "common/nats.rs"]
mod nats;

use daemon_common::{free_port, http_get, parse_prometheus, sample, Daemon, TOKEN};
use nats::{available, read_stream, NatsServer};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DETECTION: &str = "[detection]\nsite_min_lines = 3\nevaluate_every_secs = 5\n";

fn sensor_config(dir: &Path, pcap: &Path, api: SocketAddr, nats: &str, sensor: &str) -> PathBuf {
    let sections = format!(
        "{}\n{DETECTION}",
        "[network]\ndomestic = [\"198.18.0.0/15\"]\n"
    );
    nats::sensor_config(dir, pcap, api, TOKEN, nats, sensor, &sections, "")
}

fn central_config(dir: &Path, api: SocketAddr, nats: &str) -> PathBuf {
    let p = dir.join("central.toml");
    std::fs::write(
        &p,
        format!(
            r#"[network]
domestic = ["198.18.0.0/15"]

{DETECTION}
[storage]
path = "{state}/alerts.redb"

[http]
listen = "{api}"
token = "{TOKEN}"

[stream]
url = "{nats}"

[central]
state_path = "{state}/central.redb"
batch = 64
"#,
            state = dir.join("central-state").display(),
        ),
    )
    .unwrap();
    p
}

/// `simboxd central` as a child (the same wrapper as a daemon: SIGTERM when dropped).
fn start_central(config: &Path, log: &Path) -> Daemon {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let child = Command::new(daemon_common::bin())
        .args(["central", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn simboxd central");
    Daemon {
        child,
        log: log.to_path_buf(),
    }
}

fn get(api: SocketAddr, path: &str) -> serde_json::Value {
    http_get(api, path, Some(TOKEN)).unwrap().json()
}

/// The capture and its four gateway lines of `site-1`.
fn capture(dir: &Path) -> (PathBuf, Vec<String>) {
    let pcap = dir.join("split-site.pcap");
    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scenario-split-site.toml");
    let st = Command::new(daemon_common::bin())
        .args(["simulate", "--seed", "12", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(&pcap)
        .status()
        .unwrap();
    assert!(st.success());
    let labels: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pcap.with_extension("labels.json")).unwrap())
            .unwrap();
    let mut gw: Vec<String> = labels["lines"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, l)| l["label"] == "gateway" && l["site"] == "site-1")
        .map(|(ip, _)| ip.clone())
        .collect();
    gw.sort();
    assert_eq!(gw.len(), 4, "{labels}");
    (pcap, gw)
}

/// The packets of `lines` (with `rest`: of every address but the other gateway lines) into
/// `out`, VLAN-tagged or not.
fn split(pcap: &Path, out: &Path, lines: &[String], all: &[String], rest: bool) {
    let hosts = |ls: Vec<&String>| {
        let f = ls
            .iter()
            .map(|l| format!("host {l}"))
            .collect::<Vec<_>>()
            .join(" or ");
        format!("({f}) or (vlan and ({f}))")
    };
    let filter = if rest {
        format!(
            "not ({})",
            hosts(all.iter().filter(|l| !lines.contains(l)).collect())
        )
    } else {
        hosts(lines.iter().collect())
    };
    let st = Command::new("tcpdump")
        .args(["-r"])
        .arg(pcap)
        .arg("-w")
        .arg(out)
        .arg(&filter)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "tcpdump {filter}");
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(x) = f() {
            return Some(x);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    None
}

fn alert_keys(api: SocketAddr) -> BTreeSet<String> {
    get(api, "/api/v1/alerts?limit=1000")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["idempotency_key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn central_joins_a_site_split_over_two_sensors_through_an_outage() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (pcap, gw) = capture(d);
    // Sensor A: two gateway lines and every ordinary line; sensor B: the other two.
    let (a_pcap, b_pcap) = (d.join("a.pcap"), d.join("b.pcap"));
    split(&pcap, &a_pcap, &gw[..2], &gw, true);
    split(&pcap, &b_pcap, &gw[2..], &gw, false);

    let port = free_port();
    let mut nats = NatsServer::start(&d.join("nats"), port);
    let url = nats.url();
    let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    let (c_api, a_api, b_api) = (addr(free_port()), addr(free_port()), addr(free_port()));
    let mut central = start_central(&central_config(d, c_api, &url), &d.join("central.log"));
    central.wait_healthy(c_api, Duration::from_secs(30));

    // Sensor A replays its half with NATS up; then NATS goes down and sensor B replays its half.
    let mut a = Daemon::start(
        &sensor_config(d, &a_pcap, a_api, &url, "tap-a"),
        &d.join("a.log"),
    );
    a.wait_healthy(a_api, Duration::from_secs(30));
    wait_for(Duration::from_secs(60), || {
        let j = get(c_api, "/api/v1/lines?limit=100");
        (j["total"].as_u64()? >= 2).then_some(())
    })
    .unwrap_or_else(|| panic!("central got nothing from tap-a\n{}", central.log_text()));
    nats.stop();
    let t_down = Instant::now();
    let mut b = Daemon::start(
        &sensor_config(d, &b_pcap, b_api, &url, "tap-b"),
        &d.join("b.log"),
    );
    b.wait_healthy(b_api, Duration::from_secs(30));
    wait_for(Duration::from_secs(60), || {
        (alert_keys(b_api).len() >= 2).then_some(())
    })
    .unwrap_or_else(|| panic!("tap-b raised nothing\n{}", b.log_text()));
    std::thread::sleep(Duration::from_secs(3));
    nats.resume();
    let down = t_down.elapsed();

    // The central forms the site of all four lines.
    let site = wait_for(Duration::from_secs(90), || {
        let j = get(c_api, "/api/v1/alerts?limit=1000");
        let sites: Vec<serde_json::Value> = j["alerts"]
            .as_array()?
            .iter()
            .filter(|x| x["type"] == "site")
            .cloned()
            .collect();
        let newest = sites.first()?;
        (newest["lines"].as_array()?.len() == 4).then(|| sites.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "no site alert with four lines\ncentral lines: {}\n{}",
            get(c_api, "/api/v1/lines?limit=100"),
            central.log_text()
        )
    });
    let ids: BTreeSet<&str> = site.iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one site alert (one episode): {site:?}");
    let lines: BTreeSet<String> = site[0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines, gw.iter().cloned().collect::<BTreeSet<_>>());
    assert!(site.iter().any(|x| x["state"] == "raised"));
    let reasons = site[0]["reasons"].to_string();
    assert!(
        reasons.contains("tap-a") && reasons.contains("tap-b"),
        "{reasons}"
    );

    // Neither sensor alone formed a site: no site on any of their lines or alerts.
    for (name, api) in [("tap-a", a_api), ("tap-b", b_api)] {
        let j = get(api, "/api/v1/lines?limit=1000");
        for l in j["lines"].as_array().unwrap() {
            assert!(l["site"].is_null(), "{name} formed a site: {l}");
        }
        let al = get(api, "/api/v1/alerts?limit=1000");
        for x in al["alerts"].as_array().unwrap() {
            assert!(x["site"].is_null(), "{name} alerted a site: {x}");
        }
    }

    // Every sensor alert reached the central; the stream holds each exactly once.
    let want: BTreeSet<String> = alert_keys(a_api)
        .union(&alert_keys(b_api))
        .cloned()
        .collect();
    let held = wait_for(Duration::from_secs(60), || {
        let held = read_stream(&url, "SIMBOXD", "simboxd.*.alerts");
        let got: BTreeSet<String> = held.iter().map(|m| m.msg_id.clone()).collect();
        (got == want).then_some(held)
    })
    .unwrap_or_else(|| panic!("stream alerts differ from the sensors' {want:?}"));
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &held {
        *per_id.entry(m.msg_id.as_str()).or_default() += 1;
    }
    assert!(per_id.values().all(|&n| n == 1), "stored twice: {per_id:?}");
    let m = wait_for(Duration::from_secs(30), || {
        let text = http_get(c_api, "/metrics", Some(TOKEN)).ok()?.body;
        let m = parse_prometheus(&text).ok()?;
        let new = sample(&m, "simboxd_central_sensor_alerts_total{result=\"new\"}")?;
        (new as usize == want.len()).then_some(m)
    })
    .unwrap_or_else(|| {
        panic!(
            "central did not apply all {} alerts\n{}",
            want.len(),
            central.log_text()
        )
    });
    let dup = sample(
        &m,
        "simboxd_central_sensor_alerts_total{result=\"duplicate\"}",
    )
    .unwrap_or(0.0);
    eprintln!(
        "NATS down {:.1} s; {} sensor alerts, each once in the stream and applied once by the \
         central ({dup} redeliveries dropped); site alert {:?} with {} lines",
        down.as_secs_f64(),
        want.len(),
        ids,
        lines.len()
    );

    a.stop(Duration::from_secs(20));
    b.stop(Duration::from_secs(20));
    central.stop(Duration::from_secs(20));
    // After the stop the state file is free: every key applied exactly once.
    let store =
        simboxd::central::store::Store::open(&d.join("central-state/central.redb")).unwrap();
    let received: BTreeMap<String, u64> = store.received(10_000).unwrap().into_iter().collect();
    assert_eq!(received.keys().cloned().collect::<BTreeSet<_>>(), want);
    nats.stop();
}

/// The HA choice: a second central on the same durable consumer and state path stands by
/// (no API, no consuming) until the active one stops, then takes over with its state.
#[test]
fn a_second_central_stands_by_and_takes_over_with_the_state() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut nats = NatsServer::start(&d.join("nats"), free_port());
    let url = nats.url();
    let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    let (c_api, a_api) = (addr(free_port()), addr(free_port()));
    let cfg = central_config(d, c_api, &url);
    let mut first = start_central(&cfg, &d.join("central-1.log"));
    first.wait_healthy(c_api, Duration::from_secs(30));
    let mut second = start_central(&cfg, &d.join("central-2.log"));
    wait_for(Duration::from_secs(20), || {
        second.log_text().contains("standing by").then_some(())
    })
    .unwrap_or_else(|| panic!("second central did not stand by\n{}", second.log_text()));

    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap");
    let mut a = Daemon::start(
        &sensor_config(d, &sample, a_api, &url, "tap-a"),
        &d.join("a.log"),
    );
    a.wait_healthy(a_api, Duration::from_secs(30));
    let flagged = |api: SocketAddr| -> Option<()> {
        let j = get(api, "/api/v1/lines?limit=100");
        j["lines"]
            .as_array()?
            .iter()
            .any(|l| l["line"] == "100.64.1.10" && l["verdict"] == "gateway")
            .then_some(())
    };
    wait_for(Duration::from_secs(60), || flagged(c_api))
        .unwrap_or_else(|| panic!("active central saw nothing\n{}", first.log_text()));
    assert!(
        !second.log_text().contains("consuming"),
        "the standby consumed:\n{}",
        second.log_text()
    );
    let raised_before = get(c_api, "/api/v1/alerts?limit=1000")["total"]
        .as_u64()
        .unwrap();

    first.stop(Duration::from_secs(20));
    second.wait_healthy(c_api, Duration::from_secs(30));
    wait_for(Duration::from_secs(20), || flagged(c_api))
        .unwrap_or_else(|| panic!("takeover lost the state\n{}", second.log_text()));
    // Same outbox: what the first one raised is there, nothing raised again.
    std::thread::sleep(Duration::from_secs(2));
    let after = get(c_api, "/api/v1/alerts?limit=1000")["total"]
        .as_u64()
        .unwrap();
    assert_eq!(
        after, raised_before,
        "alerts raised again after the takeover"
    );
    a.stop(Duration::from_secs(20));
    second.stop(Duration::from_secs(20));
    nats.stop();
}
