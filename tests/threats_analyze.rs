//! Threats end to end: a crafted capture with one attack of each kind (an OPTIONS sweep, REGISTER
//! guessing at one line, INVITEs to an international number with a PBX that calls it out
//! through its trunk, an OPTIONS flood, a gateway-shaped INVITE stream a line rejects) is
//! analysed by the real binary (`analyze --format json` and text) and replayed by `simboxd run`,
//! whose API serves the same threats and whose outbox holds their alerts. A real capture of an
//! internet-facing PBX being probed is analysed too.

mod daemon_common;
#[path = "common/sip_pcap.rs"]
mod sip_pcap;

use daemon_common::{free_port, http_get, Daemon, TOKEN};
use sip_pcap::{request, response, Pcap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SCANNER: &str = "203.0.113.10";
const ENUMERATOR: &str = "203.0.113.20";
const TOLL: &str = "203.0.113.30";
const FLOODER: &str = "203.0.113.40";
const FRAMER: &str = "203.0.113.50";
const PBX: &str = "10.1.3.9";
const TRUNK: &str = "198.51.100.1";
const PREMIUM: &str = "011972599123456";

/// One attack of each kind on lines in 10.1.0.0/16.
fn crafted_capture(path: &Path) {
    let mut p = Pcap::new();
    // Scan: OPTIONS to 14 lines, three answer 200.
    for i in 1..=14 {
        let line = format!("10.1.0.{i}");
        let id = format!("scan{i}");
        let t = f64::from(i) * 0.5;
        p.udp(
            t,
            SCANNER,
            &line,
            &request("OPTIONS", SCANNER, &line, "100", &id, "friendly-scanner"),
        );
        if i <= 3 {
            p.udp(
                t + 0.01,
                &line,
                SCANNER,
                &response(200, "OPTIONS", SCANNER, &line, "100", &id),
            );
        }
    }
    // Enumeration: REGISTER for 12 extensions at one line, each refused 404.
    for i in 0..12 {
        let line = "10.1.1.1";
        let user = format!("{}", 100 + i);
        let id = format!("enum{i}");
        let t = 20.0 + f64::from(i) * 0.3;
        p.udp(
            t,
            ENUMERATOR,
            line,
            &request("REGISTER", ENUMERATOR, line, &user, &id, "sipcli/v1.8"),
        );
        p.udp(
            t + 0.01,
            line,
            ENUMERATOR,
            &response(404, "REGISTER", ENUMERATOR, line, &user, &id),
        );
    }
    // Toll-fraud attempts: four lines refuse; the PBX takes the call and dials it out.
    for i in 1..=4 {
        let line = format!("10.1.2.{i}");
        let id = format!("toll{i}");
        let t = 40.0 + f64::from(i);
        p.udp(
            t,
            TOLL,
            &line,
            &request("INVITE", TOLL, &line, PREMIUM, &id, "Cisco-SIPGateway"),
        );
        p.udp(
            t + 0.05,
            &line,
            TOLL,
            &response(403, "INVITE", TOLL, &line, PREMIUM, &id),
        );
    }
    p.udp(
        50.0,
        TOLL,
        PBX,
        &request("INVITE", TOLL, PBX, PREMIUM, "tollpbx", "Cisco-SIPGateway"),
    );
    p.udp(
        50.2,
        PBX,
        TOLL,
        &response(200, "INVITE", TOLL, PBX, PREMIUM, "tollpbx"),
    );
    p.udp(
        51.0,
        PBX,
        TRUNK,
        &request("INVITE", PBX, TRUNK, PREMIUM, "pbxout", "Asterisk PBX"),
    );
    p.udp(
        51.5,
        TRUNK,
        PBX,
        &response(200, "INVITE", PBX, TRUNK, PREMIUM, "pbxout"),
    );
    // Flood: 600 OPTIONS in 3 s at one line.
    for i in 0..600 {
        let id = format!("flood{i}");
        let t = 60.0 + f64::from(i) * 0.005;
        p.udp(
            t,
            FLOODER,
            "10.1.4.1",
            &request("OPTIONS", FLOODER, "10.1.4.1", "1", &id, "sipsak"),
        );
    }
    // Framing: 12 INVITEs to distinct mobile numbers over 66 s (a stream, not a burst), every
    // one refused busy.
    for i in 0..12 {
        let line = "10.1.5.1";
        let n = format!("138001380{i:02}");
        let id = format!("frame{i}");
        let t = 70.0 + f64::from(i) * 6.0;
        p.udp(
            t,
            FRAMER,
            line,
            &request("INVITE", FRAMER, line, &n, &id, "VOS3000"),
        );
        p.udp(
            t + 0.1,
            line,
            FRAMER,
            &response(486, "INVITE", FRAMER, line, &n, &id),
        );
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&p.out))
        .unwrap();
}

fn analyze(capture: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .arg("analyze")
        .arg(capture)
        .args(extra)
        .output()
        .expect("run simboxd analyze")
}

fn find<'a>(threats: &'a [serde_json::Value], peer: &str, kind: &str) -> &'a serde_json::Value {
    threats
        .iter()
        .find(|t| t["peer"] == peer && t["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} from {peer} in {threats:#?}"))
}

fn check_threats(threats: &[serde_json::Value]) {
    let scan = find(threats, SCANNER, "scan");
    assert_eq!(scan["severity"], "low");
    assert_eq!(scan["lines_total"], 14);
    assert_eq!(scan["requests"], 14);
    assert_eq!(scan["answers"]["200"], 3);
    assert_eq!(scan["answers"]["none"], 11);
    assert_eq!(scan["user_agents"][0], "friendly-scanner");
    for key in [
        "peer",
        "kind",
        "severity",
        "lines",
        "lines_total",
        "requests",
        "first_seen",
        "last_seen",
        "user_agents",
        "answers",
        "reasons",
    ] {
        assert!(scan.get(key).is_some(), "threat without {key}: {scan}");
    }
    let e = find(threats, ENUMERATOR, "enumeration");
    assert_eq!(e["lines"][0]["line"], "10.1.1.1");
    assert_eq!(e["lines"][0]["answers"]["404"], 12);
    let t = find(threats, TOLL, "toll_fraud_attempt");
    assert_eq!(t["severity"], "medium");
    assert_eq!(t["lines_total"], 5);
    assert_eq!(t["answers"]["rejected"], 4);
    assert_eq!(t["user_agents"][0], "Cisco-SIPGateway");
    let pbx = find(threats, TOLL, "compromised_pbx");
    assert_eq!(pbx["severity"], "high");
    assert_eq!(pbx["lines"][0]["line"], PBX);
    let why = pbx["reasons"][0]["detail"].as_str().unwrap();
    assert!(why.contains("placed 1 calls out"), "{why}");
    let f = find(threats, FLOODER, "flood");
    assert_eq!(f["requests"], 600);
    let fr = find(threats, FRAMER, "framing");
    assert_eq!(fr["lines"][0]["line"], "10.1.5.1");
    assert_eq!(fr["lines"][0]["answers"]["rejected"], 12);
    // Attackers are the findings: no other kind was made up.
    assert_eq!(threats.len(), 6, "{threats:#?}");
}

#[test]
fn analyze_lists_each_kind_of_attack_as_a_threat() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("attacks.pcap");
    crafted_capture(&cap);
    let out = analyze(&cap, &["--format", "json", "--quiet"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let threats = a["threats"].as_array().expect("a threats list");
    check_threats(threats);
    // The compromised PBX comes first (highest severity).
    assert_eq!(threats[0]["kind"], "compromised_pbx");

    let text = analyze(&cap, &["--quiet"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("threats (6):"), "{text}");
    assert!(text.contains("COMPROMISED_PBX (high)"), "{text}");
    assert!(
        text.contains("SCAN (low), 14 requests to 14 lines"),
        "{text}"
    );
}

#[test]
fn threats_numbers_are_pseudonymised_like_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("attacks.pcap");
    crafted_capture(&cap);
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[privacy]\npseudonymize = true\nkey = \"0123456789abcdef0123\"\n",
    )
    .unwrap();
    let out = analyze(&cap, &["--format", "json", "--quiet", "--config"]);
    assert!(!out.status.success(), "--config needs its value");
    let out = Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .arg("analyze")
        .arg(&cap)
        .args(["--format", "json", "--quiet", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let a: serde_json::Value = serde_json::from_str(&text).unwrap();
    let t = find(a["threats"].as_array().unwrap(), TOLL, "toll_fraud_attempt");
    assert!(t["numbers"][0].as_str().unwrap().starts_with("p:"), "{t}");
    let threats_text = serde_json::to_string(&a["threats"]).unwrap();
    assert!(!threats_text.contains("972599123456"), "{threats_text}");
}

#[test]
fn real_capture_of_a_probed_pbx_shows_a_toll_fraud_attempt() {
    let Some(corpus) = simboxd::corpus::corpus_dir() else {
        return;
    };
    // heplify's ipip0.pcap: a scanner (User-Agent SonicSIP) sends an INVITE for an Italian
    // number (+39...) to an internet-facing PBX in 157.161.10.0/24 (Switzerland); a second
    // peer tries REGISTERs for extension 1154. One INVITE is all the file holds, so the
    // threshold is lowered to it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[network]\nhome = [\"157.161.10.0/24\"]\n[threats]\ntoll_min_invites = 1\nhome_calling_codes = [\"41\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .arg("analyze")
        .arg(corpus.join("heplify/ipip0.pcap"))
        .args(["--format", "json", "--quiet", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let threats = a["threats"].as_array().unwrap();
    let t = find(threats, "179.43.150.26", "toll_fraud_attempt");
    assert_eq!(t["user_agents"][0], "SonicSIP");
    assert_eq!(t["numbers"][0], "+3908351673002");
    assert_eq!(t["lines"][0]["line"], "157.161.10.72");
    // The PBX's 403 came from another address (157.161.10.73): not the line's answer.
    assert_eq!(t["lines"][0]["answers"]["ignored"], 1);
    assert_eq!(threats.len(), 1, "{threats:#?}");
}

#[test]
fn the_daemon_serves_threats_and_alerts_them() {
    // Lines are sharded over the workers, an attacker's targets with them: one worker or three,
    // the daemon finds the same threats (one table shared by the workers).
    let one = daemon_threats(1);
    let three = daemon_threats(3);
    let key = |t: &serde_json::Value| format!("{} {}", t["peer"], t["kind"]);
    let sorted = |mut v: Vec<serde_json::Value>| {
        v.sort_by_key(key);
        v
    };
    assert_eq!(sorted(one), sorted(three), "threats differ with 3 workers");
}

/// Replays the crafted capture through the daemon with `workers`; checks its threats and their
/// alerts; returns the threats.
fn daemon_threats(workers: usize) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("attacks.pcap");
    crafted_capture(&cap);
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = dir.path().join("simboxd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[capture]\nfile = {:?}\n\n[http]\nlisten = \"{addr}\"\ntoken = \"{TOKEN}\"\n\n\
             [daemon]\nuser = \"\"\ngroup = \"\"\nworkers = {workers}\n\n[storage]\npath = {:?}\n",
            cap.display().to_string(),
            dir.path().join("state/alerts.redb").display().to_string()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&cfg, &dir.path().join("simboxd.log"));
    d.wait_healthy(addr, Duration::from_secs(20));
    assert_eq!(http_get(addr, "/api/v1/threats", None).unwrap().status, 401);
    // The replay ends quickly; its findings (and their alerts) follow.
    let t0 = Instant::now();
    let (threats, alerts) = loop {
        let th = http_get(addr, "/api/v1/threats", Some(TOKEN)).unwrap();
        assert_eq!(th.status, 200, "{}", th.body);
        let al = http_get(addr, "/api/v1/alerts", Some(TOKEN))
            .unwrap()
            .json();
        let th = th.json();
        let n_alerts = al["alerts"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|x| x["type"] != "line").count());
        if (th["total"] == 6 && n_alerts >= 6) || t0.elapsed() > Duration::from_secs(30) {
            break (th, al);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    check_threats(threats["threats"].as_array().unwrap());
    let alerts = alerts["alerts"].as_array().unwrap();
    let of = |ty: &str, sev: &str| {
        alerts
            .iter()
            .filter(|a| a["type"] == ty && a["severity"] == sev)
            .count()
    };
    assert_eq!(of("compromised_pbx", "critical"), 1, "{alerts:#?}");
    assert_eq!(of("threat", "notice"), 2, "{alerts:#?}");
    assert_eq!(of("threat", "warning"), 3, "{alerts:#?}");
    let pbx = alerts
        .iter()
        .find(|a| a["type"] == "compromised_pbx")
        .unwrap();
    assert_eq!(pbx["line"], PBX);
    assert_eq!(pbx["verdict"], "normal");
    assert_eq!(pbx["threat"]["kind"], "compromised_pbx");
    d.stop(Duration::from_secs(10));
    threats["threats"].as_array().cloned().unwrap_or_default()
}
