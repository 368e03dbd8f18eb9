//! A sensor publishing to a real `nats-server -js` (issue 12, point 1): alerts with their
//! idempotency key as `Nats-Msg-Id`, line evidence and call records; started while NATS is down,
//! everything waits in the outboxes and reaches the stream once NATS is up, nothing twice, also
//! in the order the outboxes hold them.

mod daemon_common;
#[path = "common/nats.rs"]
mod nats;

use daemon_common::{free_port, http_get, Daemon, TOKEN};
use nats::{available, read_stream, NatsServer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

fn sensor_config(dir: &Path, api: SocketAddr, nats: &str, sensor: &str) -> std::path::PathBuf {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap");
    let network = "[network]\ndomestic = [\"198.18.0.0/15\"]\n";
    nats::sensor_config(
        dir,
        &sample,
        api,
        TOKEN,
        nats,
        sensor,
        network,
        "publish_calls = true\n",
    )
}

fn alert_keys(api: SocketAddr) -> Vec<String> {
    let r = http_get(api, "/api/v1/alerts?limit=1000", Some(TOKEN)).unwrap();
    r.json()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["idempotency_key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sensor_publishes_after_an_outage_nothing_lost_nothing_doubled() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = sensor_config(d, api, &url, "tap-a");

    // NATS is down while the sensor replays the capture and raises its alerts.
    let mut sensor = Daemon::start(&cfg, &d.join("sensor.log"));
    sensor.wait_healthy(api, Duration::from_secs(30));
    let t0 = Instant::now();
    let mut keys = Vec::new();
    while t0.elapsed() < Duration::from_secs(30) {
        keys = alert_keys(api);
        if keys.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        keys.len() >= 2,
        "sensor raised {keys:?}\n{}",
        sensor.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));

    let mut nats = NatsServer::start(&d.join("nats"), port);
    // Wait until the stream holds every alert and the evidence of the gateway line.
    let t0 = Instant::now();
    let mut held = Vec::new();
    while t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
        held = read_stream(&url, "SIMBOXD", "simboxd.>");
        let alerts = held
            .iter()
            .filter(|m| m.subject == "simboxd.tap-a.alerts")
            .count();
        let gw = held
            .iter()
            .any(|m| m.subject == "simboxd.tap-a.lines" && m.json["line"] == "100.64.1.10");
        if alerts >= keys.len() && gw {
            break;
        }
    }
    let keys_now = alert_keys(api);
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for m in held.iter().filter(|m| m.subject == "simboxd.tap-a.alerts") {
        assert_eq!(
            m.json["idempotency_key"],
            m.msg_id.as_str(),
            "Nats-Msg-Id is the key"
        );
        *by_id.entry(m.msg_id.clone()).or_default() += 1;
    }
    let mut want = keys_now.clone();
    want.sort();
    assert_eq!(
        by_id.keys().cloned().collect::<Vec<_>>(),
        want,
        "every alert in the stream\n{}",
        sensor.log_text()
    );
    assert!(
        by_id.values().all(|&n| n == 1),
        "an alert stored twice: {by_id:?}"
    );
    let gw = held
        .iter()
        .rev()
        .find(|m| m.subject == "simboxd.tap-a.lines" && m.json["line"] == "100.64.1.10")
        .expect("evidence of the gateway line");
    assert_eq!(gw.json["sensor"], "tap-a");
    assert_eq!(gw.json["verdict"], "gateway");
    assert_eq!(gw.json["peer"], "203.0.113.10");
    assert!(gw.json["rhythm"]["median"].is_number());
    assert!(gw.json["summary"]["calls"].as_u64().unwrap() > 0);
    let calls = held
        .iter()
        .filter(|m| m.subject == "simboxd.tap-a.calls")
        .count();
    assert!(calls > 0, "call records published");
    let ids: std::collections::BTreeSet<&str> = held.iter().map(|m| m.msg_id.as_str()).collect();
    assert_eq!(ids.len(), held.len(), "every message id once in the stream");

    eprintln!(
        "stream held {} messages ({} alerts, {calls} calls) after the outage",
        held.len(),
        by_id.len()
    );
    sensor.stop(Duration::from_secs(20));
    nats.stop();
}
