//! One set of figures: the same capture through `simboxd analyze` (JSON, text, report) and
//! through the daemon (`simboxd run` replaying it with `[capture] file`, queried over its API)
//! gives the same verdicts, scores, sites and headline figures for every line; the text and the
//! report's lines table state exactly the JSON's figures; the daemon's last alert of each line
//! names the site the final verdict names.
//!
//! The daemon runs with `workers = 1`: with several workers a site spanning lines of different
//! workers is not formed (cross-worker sites are another issue's work).
//! Runs on the shipped sample and on a capture simulated in the test (2 min of the built-in mix).

mod daemon_common;

use daemon_common::{http_get, parse_prometheus, Daemon, TOKEN};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_simboxd")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free port on a loopback address of this test's own (not 127.0.0.1).
fn api_addr() -> SocketAddr {
    let host = format!("127.{}.{}.{}", 61, std::process::id() % 250 + 1, 29);
    let l = TcpListener::bind(format!("{host}:0")).expect("bind a loopback port");
    l.local_addr().expect("addr")
}

fn domestic(labels: &Path) -> Vec<String> {
    let v: Value = serde_json::from_slice(&std::fs::read(labels).expect("labels")).expect("JSON");
    v["network"]["domestic"]
        .as_array()
        .expect("domestic")
        .iter()
        .map(|x| format!("{:?}", x.as_str().expect("cidr")))
        .collect()
}

fn write_config(dir: &Path, capture: &Path, labels: &Path, api: SocketAddr) -> PathBuf {
    let p = dir.join("simboxd.toml");
    std::fs::write(
        &p,
        format!(
            "[capture]\nfile = {:?}\n\n[network]\ndomestic = [{}]\n\n[http]\nlisten = \"{api}\"\ntoken = \"{TOKEN}\"\n\n\
             [daemon]\nuser = \"\"\ngroup = \"\"\nworkers = 1\n\n[storage]\npath = {:?}\n",
            capture.display().to_string(),
            domestic(labels).join(", "),
            dir.join("state/alerts.redb").display().to_string()
        ),
    )
    .expect("write config");
    p
}

fn analyze(capture: &Path, config: &Path, dir: &Path, format: &str) -> Vec<u8> {
    let out = Command::new(bin())
        .arg("analyze")
        .arg(capture)
        .args(["--quiet", "--format", format, "--config"])
        .arg(config)
        .args(if format == "json" {
            vec![
                "--report".to_string(),
                dir.join("r.html").display().to_string(),
            ]
        } else {
            vec![]
        })
        .output()
        .expect("run analyze");
    assert!(
        out.status.success(),
        "analyze: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Replays the capture through the daemon and returns (lines, line details, alerts) once it has
/// finished.
fn daemon_view(dir: &Path, config: &Path, api: SocketAddr) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let mut d = Daemon::start(config, &dir.join("simboxd.log"));
    d.wait_healthy(api, Duration::from_secs(60));
    let t0 = Instant::now();
    loop {
        let m = http_get(api, "/metrics", Some(TOKEN)).expect("metrics");
        let s = parse_prometheus(&m.body).unwrap_or_else(|e| panic!("{e}"));
        let workers = daemon_common::sample(&s, "simboxd_workers_running");
        let backlog = daemon_common::sample(&s, "simboxd_delivery_backlog").unwrap_or(0.0);
        // A replay's worker finishes the engine at the end of the file and stops.
        if workers == Some(0.0) && backlog == 0.0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "replay did not finish:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let lines = http_get(api, "/api/v1/lines?limit=100000", Some(TOKEN)).expect("lines");
    assert_eq!(lines.status, 200, "{}", lines.body);
    let alerts = http_get(api, "/api/v1/alerts", Some(TOKEN)).expect("alerts");
    assert_eq!(alerts.status, 200, "{}", alerts.body);
    let lines = lines.json()["lines"].as_array().expect("lines").clone();
    let details = lines
        .iter()
        .map(|l| {
            let ip = l["line"].as_str().expect("line");
            let r = http_get(api, &format!("/api/v1/lines/{ip}"), Some(TOKEN)).expect("line");
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()
        })
        .collect();
    let st = d.stop(Duration::from_secs(20)).expect("stops on SIGTERM");
    assert!(st.success(), "{}", d.log_text());
    (
        lines,
        details,
        alerts.json()["alerts"].as_array().expect("alerts").clone(),
    )
}

const FIGURES: [&str; 7] = [
    "calls",
    "inbound_calls",
    "outbound_calls",
    "answered_calls",
    "max_concurrent_calls",
    "distinct_called_numbers",
    "median_talk_secs_inbound",
];

fn check(capture: &Path, labels: &Path) {
    let dir = tempfile::tempdir().expect("tmp");
    let api = api_addr();
    let config = write_config(dir.path(), capture, labels, api);
    let json: Value =
        serde_json::from_slice(&analyze(capture, &config, dir.path(), "json")).expect("JSON");
    let text = String::from_utf8(analyze(capture, &config, dir.path(), "text")).expect("utf-8");
    let html = std::fs::read_to_string(dir.path().join("r.html")).expect("report");
    let lines = json["lines"].as_array().expect("lines");
    assert!(
        lines.iter().any(|l| l["verdict"] == "gateway"),
        "a gateway to compare"
    );

    // Text and report state the JSON's figures.
    for l in lines {
        let ip = l["line"].as_str().expect("line");
        let median = l["median_talk_secs_inbound"]
            .as_f64()
            .map_or("-".to_string(), |m| format!("{m:.1}"));
        let t = format!(
            "{ip:<40} calls {:>5} (in {}, the line took part in {} / out {}, answered {}), max concurrent {}, {} distinct called ({} on calls it took part in), median talk {}",
            l["calls"].as_u64().expect("calls"), l["inbound_calls"], l["inbound_calls_taken"], l["outbound_calls"], l["answered_calls"],
            l["max_concurrent_calls"], l["distinct_called_numbers"], l["distinct_called_numbers_taken"],
            if median == "-" { median.clone() } else { format!("{median} s") }
        );
        assert!(text.contains(&t), "text lacks {t:?}");
        let row = format!(
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            l["calls"],
            l["inbound_calls"],
            l["outbound_calls"],
            l["answered_calls"],
            l["max_concurrent_calls"],
            l["distinct_called_numbers"],
            median
        );
        let start = html
            .find(&format!("<td class=\"mono\">{ip}</td>"))
            .unwrap_or_else(|| panic!("report row of {ip}"));
        let end = html[start..].find("</tr>").expect("row end") + start;
        assert!(
            html[start..end].contains(&row),
            "report row of {ip}: {}",
            &html[start..end]
        );
        // Distinct numbers are counted among inbound calls: never more than them.
        assert!(l["distinct_called_numbers"].as_u64() <= l["inbound_calls"].as_u64());
    }

    // The daemon, replaying the same file with the same config.
    let (dlines, details, alerts) = daemon_view(dir.path(), &config, api);
    let by: BTreeMap<&str, &Value> = dlines
        .iter()
        .map(|l| (l["line"].as_str().expect("line"), l))
        .collect();
    let mut compared = 0;
    for l in lines.iter().filter(|l| !l["verdict"].is_null()) {
        let ip = l["line"].as_str().expect("line");
        let d = by
            .get(ip)
            .unwrap_or_else(|| panic!("daemon has no line {ip}"));
        assert_eq!(l["verdict"], d["verdict"], "verdict of {ip}");
        assert_eq!(l["site"], d["site"], "site of {ip}");
        assert_eq!(l["flagged_at"], d["flagged_at"], "flagged_at of {ip}");
        let (a, b) = (
            l["score"].as_f64().expect("score"),
            d["score"].as_f64().expect("score"),
        );
        assert!((a - b).abs() < 1e-9, "score of {ip}: {a} vs {b}");
        let f = &d["figures"];
        for k in FIGURES {
            assert_eq!(l[k], f[k], "{k} of {ip}: analyze {} daemon {}", l[k], f[k]);
        }
        assert_eq!(f["estimated"], serde_json::json!({}), "{ip}: all exact");
        assert_eq!(d["calls"], l["calls"], "verdict calls of {ip}");
        assert_eq!(
            d["max_concurrent_calls"], l["max_concurrent_calls"],
            "verdict max_concurrent_calls of {ip}"
        );
        compared += 1;
    }
    assert_eq!(compared, dlines.len(), "the same lines were scored");
    // Each line's detail agrees with the list, its profile's headline counters included.
    for (l, d) in dlines.iter().zip(&details) {
        assert_eq!(l["figures"], d["figures"], "{}", l["line"]);
        assert_eq!(
            d["verdict"]["max_concurrent_calls"],
            l["max_concurrent_calls"]
        );
        assert_eq!(
            d["profile"]["max_concurrent_calls"],
            d["figures"]["max_concurrent_calls"]
        );
        assert!(
            d["profile"]["distinct_called_estimate"].as_f64()
                <= d["figures"]["inbound_calls"].as_f64(),
            "{}",
            d["profile"]
        );
    }

    // Alerts: every alerted line is flagged by analyze, and its latest alert names the site the
    // final verdict names.
    let mut last: BTreeMap<&str, &Value> = BTreeMap::new();
    for a in &alerts {
        let ip = a["line"].as_str().expect("line");
        if last
            .get(ip)
            .is_none_or(|p| p["seq"].as_u64() < a["seq"].as_u64())
        {
            last.insert(ip, a);
        }
    }
    assert!(!last.is_empty(), "the gateways were alerted");
    for (ip, a) in last {
        let l = lines
            .iter()
            .find(|l| l["line"] == ip)
            .unwrap_or_else(|| panic!("alerted line {ip} not in analyze"));
        assert_ne!(
            l["verdict"], "normal",
            "{ip} alerted but analyze says normal"
        );
        assert_eq!(a["site"], l["site"], "site in the last alert of {ip}");
    }
}

#[test]
fn sample_figures_agree_everywhere() {
    check(
        &root().join("captures/sample-site.pcap"),
        &root().join("captures/sample-site.labels.json"),
    );
}

#[test]
fn simulated_capture_figures_agree_everywhere() {
    let dir = tempfile::tempdir().expect("tmp");
    let pcap = dir.path().join("mix.pcap");
    let out = Command::new(bin())
        .args([
            "simulate",
            "--seed",
            "23",
            "--duration",
            "2m",
            "--scale",
            "0.1",
            "--out",
        ])
        .arg(&pcap)
        .output()
        .expect("simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(&pcap, &dir.path().join("mix.labels.json"));
}
