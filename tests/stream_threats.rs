//! Threats across sensors (issue 12), with a real `nats-server -js`: one scanner sweeps 14 lines
//! with OPTIONS, seven behind each of two sensors. With `scan_min_lines = 10` neither sensor
//! alone sees a scan; both publish the threat events they read, and `simboxd central` feeds
//! them to one threat table: one `scan` threat with all 14 targets, raised as one threat alert.
//! After a restart the central rebuilds the table from its state file and raises nothing again.

mod daemon_common;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/sip_pcap.rs"]
mod sip_pcap;

use daemon_common::{free_port, http_get, parse_prometheus, sample, Daemon, TOKEN};
use nats::{available, NatsServer};
use sip_pcap::{request, response, Pcap};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SCANNER: &str = "203.0.113.10";

/// OPTIONS from the scanner to lines `10.1.0.<from..=to>`; the first two answer 200.
fn sweep(path: &Path, from: u32, to: u32) {
    let mut p = Pcap::new();
    for i in from..=to {
        let line = format!("10.1.0.{i}");
        let id = format!("scan{i}");
        let t = f64::from(i) * 0.5;
        p.udp(
            t,
            SCANNER,
            &line,
            &request("OPTIONS", SCANNER, &line, "100", &id, "friendly-scanner"),
        );
        if i < from + 2 {
            p.udp(
                t + 0.01,
                &line,
                SCANNER,
                &response(200, "OPTIONS", SCANNER, &line, "100", &id),
            );
        }
    }
    std::fs::write(path, &p.out).unwrap();
}

fn sensor_config(dir: &Path, pcap: &Path, api: SocketAddr, nats: &str, sensor: &str) -> PathBuf {
    let threats = "[threats]\nscan_min_lines = 10\n";
    nats::sensor_config(dir, pcap, api, TOKEN, nats, sensor, threats, "")
}

fn central_config(dir: &Path, api: SocketAddr, nats: &str) -> PathBuf {
    let p = dir.join("central.toml");
    std::fs::write(
        &p,
        format!(
            r#"[threats]
scan_min_lines = 10

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

fn scans(api: SocketAddr) -> Vec<serde_json::Value> {
    get(api, "/api/v1/threats?limit=100")["threats"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "scan")
        .cloned()
        .collect()
}

fn threat_alerts(api: SocketAddr) -> Vec<serde_json::Value> {
    get(api, "/api/v1/alerts?limit=1000")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "threat")
        .cloned()
        .collect()
}

#[test]
fn central_joins_a_sweep_split_over_two_sensors_into_one_scan() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a_pcap, b_pcap) = (d.join("a.pcap"), d.join("b.pcap"));
    sweep(&a_pcap, 1, 7);
    sweep(&b_pcap, 8, 14);

    let mut nats = NatsServer::start(&d.join("nats"), free_port());
    let url = nats.url();
    let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    let (c_api, a_api, b_api) = (addr(free_port()), addr(free_port()), addr(free_port()));
    let c_cfg = central_config(d, c_api, &url);
    let mut central = start_central(&c_cfg, &d.join("central.log"));
    central.wait_healthy(c_api, Duration::from_secs(30));
    let mut a = Daemon::start(
        &sensor_config(d, &a_pcap, a_api, &url, "tap-a"),
        &d.join("a.log"),
    );
    let mut b = Daemon::start(
        &sensor_config(d, &b_pcap, b_api, &url, "tap-b"),
        &d.join("b.log"),
    );
    a.wait_healthy(a_api, Duration::from_secs(30));
    b.wait_healthy(b_api, Duration::from_secs(30));

    let scan = wait_for(Duration::from_secs(60), || {
        let s = scans(c_api);
        (s.first()?["lines_total"] == 14).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "no scan of 14 lines at the central: {}\n{}",
            get(c_api, "/api/v1/threats?limit=100"),
            central.log_text()
        )
    });
    assert_eq!(scan.len(), 1, "one scan threat: {scan:?}");
    let s = &scan[0];
    assert_eq!(s["peer"], SCANNER);
    assert_eq!(s["requests"], 14);
    assert_eq!(s["answers"]["200"], 4, "{s}");
    assert_eq!(s["answers"]["none"], 10, "{s}");
    let targets: BTreeSet<String> = s["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["line"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = (1..=14).map(|i| format!("10.1.0.{i}")).collect();
    assert_eq!(targets, want);

    // Neither sensor alone saw a scan (seven lines each, below scan_min_lines).
    for (name, api, log) in [("tap-a", a_api, &a), ("tap-b", b_api, &b)] {
        assert!(
            scans(api).is_empty(),
            "{name} found a scan alone\n{}",
            log.log_text()
        );
        assert!(threat_alerts(api).is_empty(), "{name} alerted a threat");
        let m = parse_prometheus(&http_get(api, "/metrics", Some(TOKEN)).unwrap().body).unwrap();
        let queued = sample(&m, "simboxd_stream_threat_events_total{result=\"queued\"}");
        assert_eq!(queued, Some(9.0), "{name}: 7 requests and 2 answers");
        assert_eq!(sample(&m, "simboxd_stream_pending"), Some(0.0), "{name}");
        assert!(sample(&m, "simboxd_stream_published_total").unwrap_or(0.0) >= 1.0);
    }

    // One threat alert at the central, about the scanner, with its targets.
    let alerts = wait_for(Duration::from_secs(20), || {
        let a = threat_alerts(c_api);
        (!a.is_empty()).then_some(a)
    })
    .unwrap_or_else(|| panic!("no threat alert\n{}", central.log_text()));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["line"], SCANNER);
    assert_eq!(alerts[0]["threat"]["kind"], "scan");
    let m = parse_prometheus(&http_get(c_api, "/metrics", Some(TOKEN)).unwrap().body).unwrap();
    assert!(
        sample(&m, "simboxd_central_messages_total{kind=\"threats\"}").unwrap_or(0.0) >= 2.0,
        "threat chunks from both sensors"
    );
    assert_eq!(
        sample(&m, "simboxd_alerts_made_total{type=\"threat\"}"),
        Some(1.0)
    );
    let acked = sample(&m, "simboxd_central_acked_total").unwrap_or(0.0);
    let consumed: f64 = ["alerts", "lines", "calls", "threats"]
        .iter()
        .filter_map(|k| {
            sample(
                &m,
                &format!("simboxd_central_messages_total{{kind=\"{k}\"}}"),
            )
        })
        .sum();
    assert!(acked >= 2.0 && acked <= consumed, "{acked} of {consumed}");
    assert!(sample(&m, "simboxd_central_lag_messages").is_some());

    // A restart rebuilds the threat table from the state file: the same scan, no new alert.
    central.stop(Duration::from_secs(20));
    let mut central = start_central(&c_cfg, &d.join("central-2.log"));
    central.wait_healthy(c_api, Duration::from_secs(30));
    let again = scans(c_api);
    assert_eq!(again.len(), 1, "{again:?}\n{}", central.log_text());
    assert_eq!(again[0]["lines_total"], 14);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(threat_alerts(c_api).len(), 1, "no second alert");

    a.stop(Duration::from_secs(20));
    b.stop(Duration::from_secs(20));
    central.stop(Duration::from_secs(20));
    nats.stop();
}

const ENUMERATOR: &str = "203.0.113.20";
const TOLL: &str = "203.0.113.30";
const FRAMER: &str = "203.0.113.50";
const PBX: &str = "10.1.3.9";
const TRUNK: &str = "198.51.100.1";
/// Dialled with three prefixes: the digits after them are one number.
const PREMIUM: [&str; 3] = ["011972599123456", "9011972599123456", "00972599123456"];

/// Half of the sweep, and attacks whose SIP user parts are personal data: on `a` REGISTER
/// guessing of 12 user names at one line and INVITEs to an international number (in prefix
/// variants) at four lines; on `b` the same attacker's INVITE to a PBX that dials the number out
/// through its trunk, and a gateway-shaped stream of INVITEs to 12 mobile numbers.
fn attacks(a: &Path, b: &Path) {
    let mut p = Pcap::new();
    for i in 1..=7 {
        let line = format!("10.1.0.{i}");
        let id = format!("scan{i}");
        let r = request("OPTIONS", SCANNER, &line, "100", &id, "friendly-scanner");
        p.udp(f64::from(i) * 0.5, SCANNER, &line, &r);
    }
    for i in 0..12 {
        let (line, user, id) = ("10.1.1.1", format!("ext{}", 4100 + i), format!("enum{i}"));
        let t = 20.0 + f64::from(i) * 0.3;
        let r = request("REGISTER", ENUMERATOR, line, &user, &id, "sipcli/v1.8");
        p.udp(t, ENUMERATOR, line, &r);
        let r = response(404, "REGISTER", ENUMERATOR, line, &user, &id);
        p.udp(t + 0.01, line, ENUMERATOR, &r);
    }
    for i in 1..=4u32 {
        let (line, id) = (format!("10.1.2.{i}"), format!("toll{i}"));
        let n = PREMIUM[i as usize % 3];
        let t = 40.0 + f64::from(i);
        let r = request("INVITE", TOLL, &line, n, &id, "Cisco-SIPGateway");
        p.udp(t, TOLL, &line, &r);
        let r = response(403, "INVITE", TOLL, &line, n, &id);
        p.udp(t + 0.05, &line, TOLL, &r);
    }
    std::fs::write(a, &p.out).unwrap();

    let mut p = Pcap::new();
    for i in 8..=14 {
        let line = format!("10.1.0.{i}");
        let id = format!("scan{i}");
        let r = request("OPTIONS", SCANNER, &line, "100", &id, "friendly-scanner");
        p.udp(f64::from(i) * 0.5, SCANNER, &line, &r);
    }
    let n = PREMIUM[0];
    // The toll-fraud INVITE answered by the PBX, then relayed out through its trunk.
    let mut answered = |t: f64, from: &str, to: &str, id: &str, ua: &str| {
        p.udp(t, from, to, &request("INVITE", from, to, n, id, ua));
        p.udp(t + 0.2, to, from, &response(200, "INVITE", from, to, n, id));
    };
    answered(50.0, TOLL, PBX, "tollpbx", "Cisco-SIPGateway");
    answered(51.0, PBX, TRUNK, "pbxout", "Asterisk PBX");
    for i in 0..12 {
        let (line, n, id) = ("10.1.5.1", format!("138001380{i:02}"), format!("frame{i}"));
        let t = 70.0 + f64::from(i) * 6.0;
        p.udp(
            t,
            FRAMER,
            line,
            &request("INVITE", FRAMER, line, &n, &id, "VOS3000"),
        );
        let r = response(486, "INVITE", FRAMER, line, &n, &id);
        p.udp(t + 0.1, line, FRAMER, &r);
    }
    std::fs::write(b, &p.out).unwrap();
}

/// Every threat at the central by what must not depend on pseudonymising: peer, kind,
/// requests, lines, answers and how many numbers it quotes.
fn shape(threats: &[serde_json::Value]) -> Vec<String> {
    let mut v: Vec<String> = threats
        .iter()
        .map(|t| {
            let lines: Vec<&str> = t["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["line"].as_str().unwrap())
                .collect();
            format!(
                "{} {} requests={} lines_total={} lines={lines:?} answers={} numbers={}",
                t["peer"],
                t["kind"],
                t["requests"],
                t["lines_total"],
                t["answers"],
                t["numbers"].as_array().map_or(0, Vec::len)
            )
        })
        .collect();
    v.sort();
    v
}

/// The attacks split over two sensors (with `privacy` in their configs) and one central: the
/// central's threats once every sensor has published everything, and every message the stream
/// holds.
fn run_split(d: &Path, privacy: &str) -> (Vec<serde_json::Value>, Vec<nats::Held>) {
    std::fs::create_dir_all(d).unwrap();
    let (a_pcap, b_pcap) = (d.join("a.pcap"), d.join("b.pcap"));
    attacks(&a_pcap, &b_pcap);
    let mut nats = NatsServer::start(&d.join("nats"), free_port());
    let url = nats.url();
    let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    let (c_api, a_api, b_api) = (addr(free_port()), addr(free_port()), addr(free_port()));
    let mut central = start_central(&central_config(d, c_api, &url), &d.join("central.log"));
    central.wait_healthy(c_api, Duration::from_secs(30));
    let sections = format!("[threats]\nscan_min_lines = 10\n\n{privacy}\n");
    let config = |pcap: &Path, api: SocketAddr, name: &str| {
        nats::sensor_config(d, pcap, api, TOKEN, &url, name, &sections, "")
    };
    let mut a = Daemon::start(&config(&a_pcap, a_api, "tap-a"), &d.join("a.log"));
    let mut b = Daemon::start(&config(&b_pcap, b_api, "tap-b"), &d.join("b.log"));
    a.wait_healthy(a_api, Duration::from_secs(30));
    b.wait_healthy(b_api, Duration::from_secs(30));
    let want = [
        "scan",
        "enumeration",
        "toll_fraud_attempt",
        "compromised_pbx",
        "framing",
    ];
    let threats = || get(c_api, "/api/v1/threats?limit=100")["threats"].clone();
    wait_for(Duration::from_secs(60), || {
        let t = threats();
        let t = t.as_array()?;
        let all = want.iter().all(|k| t.iter().any(|x| x["kind"] == *k))
            && t.iter()
                .any(|x| x["kind"] == "scan" && x["lines_total"] == 14);
        all.then_some(())
    })
    .unwrap_or_else(|| panic!("not every threat at the central: {}", threats()));
    // Everything published and consumed before the picture is taken.
    let settled = |api: SocketAddr, series: &str| {
        let m = parse_prometheus(&http_get(api, "/metrics", Some(TOKEN)).unwrap().body).unwrap();
        sample(&m, series) == Some(0.0)
    };
    wait_for(Duration::from_secs(30), || {
        (settled(a_api, "simboxd_stream_pending")
            && settled(b_api, "simboxd_stream_pending")
            && settled(c_api, "simboxd_central_lag_messages"))
        .then_some(())
    })
    .expect("sensors and central settle");
    std::thread::sleep(Duration::from_secs(3));
    let out = threats().as_array().unwrap().clone();
    let held = nats::read_stream(&url, "SIMBOXD", "simboxd.>");
    a.stop(Duration::from_secs(20));
    b.stop(Duration::from_secs(20));
    central.stop(Duration::from_secs(20));
    nats.stop();
    (out, held)
}

#[test]
fn pseudonymised_threat_events_give_the_central_the_same_threats_without_numbers() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (plain, _) = run_split(&dir.path().join("plain"), "");
    let privacy = "[privacy]\npseudonymize = true\nkey = \"stream-test-key-0123456789\"\n";
    let (pseudo, held) = run_split(&dir.path().join("pseudo"), privacy);
    assert_eq!(shape(&pseudo), shape(&plain), "same threats either way");
    let toll = pseudo
        .iter()
        .find(|t| t["kind"] == "toll_fraud_attempt")
        .unwrap();
    assert_eq!(toll["lines_total"], 5, "{toll}");
    assert!(
        toll["reasons"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("(1 distinct: "),
        "prefix variants are one number: {toll}"
    );
    // No dialled number or user name of the capture anywhere on the stream (threat events,
    // alerts, line summaries) nor in what the central shows.
    let raw = ["972599123456", "13800138", "ext41"];
    let threat_msgs = held
        .iter()
        .filter(|h| h.subject.ends_with(".threats"))
        .count();
    assert!(threat_msgs >= 2, "threat events from both sensors");
    for h in &held {
        let text = h.json.to_string();
        for r in raw {
            assert!(
                !text.contains(r),
                "{r} on the stream in {}: {text}",
                h.subject
            );
        }
    }
    let shown = serde_json::Value::from(pseudo.clone()).to_string();
    for r in raw {
        assert!(!shown.contains(r), "{r} at the central: {shown}");
    }
    // The user parts the threat table reads travel as pseudonym and class.
    let mut classes = BTreeSet::new();
    for h in held.iter().filter(|h| h.subject.ends_with(".threats")) {
        for e in h.json["events"].as_array().unwrap() {
            let users = [
                &e["probe"]["request_user"],
                &e["probe"]["to_user"],
                &e["call"]["request_uri"],
                &e["call"]["to"],
            ];
            for u in users.into_iter().filter_map(|u| u.as_str()) {
                let (p, class) = u.split_once(';').unwrap_or_else(|| panic!("{u} in {e}"));
                assert!(p.starts_with("p:"), "{u}");
                classes.insert(class.to_string());
            }
        }
    }
    for c in ["toll=011", "toll=9011", "toll=00", "number", "name"] {
        assert!(classes.contains(c), "{c} in {classes:?}");
    }
}
