//! The webhook's three bodies (`[webhook] format`): simboxd's alert JSON, ECS and CEF, POSTed
//! through the outbox to a real HTTP receiver (axum, loopback) and read back by an independent
//! parser (tests/data/siem_parse.py): hostile text round-trips as each format documents, and the
//! peer, the sensor's name and the simboxd version are fields of their own.

#[path = "common/siem.rs"]
mod siem;
use siem::{
    cef_kept, hostile_alerts, parse_independently, sent, HOSTILE_SENSOR, HOSTILE_SITE, PYTHON,
};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use simboxd::alert::delivery::{targets_from_config, Backoff, Delivery};
use simboxd::alert::format::VERSION;
use simboxd::alert::outbox::Outbox;
use simboxd::alert::Alert;
use simboxd::config::Config;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One POST as received: path, content type, Idempotency-Key header, body.
type Received = Arc<Mutex<Vec<(String, String, String, Vec<u8>)>>>;

async fn hook(
    State(rx): State<Received>,
    UrlPath(which): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    rx.lock().unwrap().push((
        which,
        h("content-type"),
        h("idempotency-key"),
        body.to_vec(),
    ));
    StatusCode::OK
}

async fn deliver_all(outbox: &Arc<Outbox>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let b = outbox.backlog().unwrap();
        if b.values().all(|&n| n == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "not delivered in time: {b:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_bodies_in_json_ecs_and_cef_parse_independently() {
    if !Path::new(PYTHON).exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{PYTHON} is missing (CI=true); run scripts/setup.sh");
        }
        eprintln!("SKIP: {PYTHON} not installed (scripts/setup.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rx: Received = Arc::default();
    let app = Router::new()
        .route("/hook/{which}", post(hook))
        .with_state(rx.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let alerts = hostile_alerts();
    let formats = ["json", "ecs", "cef"];
    for f in formats {
        let text = format!(
            "[alert]\nsensor = {sensor}\n\n[webhook]\nurl = \"http://127.0.0.1:{port}/hook/{f}\"\n\
             format = \"{f}\"\ntimeout_secs = 2\n\n[storage]\npath = \"{db}\"\n",
            sensor = toml::Value::String(HOSTILE_SENSOR.into()),
            db = dir.path().join(format!("{f}.redb")).display(),
        );
        let cfg = Config::parse(&text, "webhook.toml").unwrap();
        let targets = targets_from_config(cfg.delivery(), Duration::from_secs(2)).unwrap();
        let names = targets.iter().map(|t| t.name()).collect();
        let outbox = Arc::new(Outbox::open(&cfg.storage, names).unwrap());
        let backoff = Backoff {
            initial: Duration::from_millis(40),
            max: Duration::from_millis(300),
            poll: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
            dead_letter_after: 5,
        };
        let delivery = Delivery::start(outbox.clone(), targets, backoff);
        for a in &alerts {
            assert!(delivery.submit(a).unwrap());
        }
        deliver_all(&outbox).await;
        delivery.shutdown(Duration::from_secs(2)).await;
    }
    server.abort();

    let got = rx.lock().unwrap().clone();
    assert_eq!(got.len(), 3 * alerts.len(), "one POST per alert and format");
    let mut parsed = std::collections::BTreeMap::new();
    for f in formats {
        let posts: Vec<_> = got.iter().filter(|p| p.0 == f).collect();
        let keys: Vec<&str> = posts.iter().map(|p| p.2.as_str()).collect();
        let want: Vec<&str> = alerts.iter().map(|a| a.idempotency_key.as_str()).collect();
        assert_eq!(keys, want, "{f}: Idempotency-Key headers, in order");
        let ct = if f == "cef" {
            "text/plain; charset=utf-8"
        } else {
            "application/json"
        };
        assert!(posts.iter().all(|p| p.1 == ct), "{f}: content type");
        // One body per line for the reader (no body holds a raw newline).
        let mut lines = Vec::new();
        for p in &posts {
            assert!(!p.3.contains(&b'\n'), "{f}: raw newline in a body");
            lines.extend_from_slice(&p.3);
            lines.push(b'\n');
        }
        let file = dir.path().join(format!("{f}.txt"));
        std::fs::write(&file, lines).unwrap();
        let kind = if f == "cef" { "cef" } else { "ecs" };
        parsed.insert(f, parse_independently(kind, &file));
        // simboxd's own JSON still reads back as the alert record (the API's contract).
        if f == "json" {
            for (p, a) in posts.iter().zip(&alerts) {
                let back: Alert = serde_json::from_slice(&p.3).unwrap();
                assert_eq!(&back, a);
            }
        }
    }

    for (i, a) in alerts.iter().enumerate() {
        let key = a.idempotency_key.as_str();
        let peer = a.peer.unwrap().to_string();
        let line_alert = a.threat.is_none();

        let j = &parsed["json"][i];
        assert_eq!(j["idempotency_key"], key);
        assert_eq!(j["sensor"], HOSTILE_SENSOR);
        assert_eq!(j["version"], VERSION);
        assert_eq!(j["peer"], peer.as_str());
        if line_alert {
            assert_eq!(
                j["site"],
                sent(HOSTILE_SITE).as_str(),
                "exact, control characters as escapes"
            );
        }

        let e = &parsed["ecs"][i];
        assert_eq!(e["event"]["kind"], "alert");
        assert_eq!(e["event"]["id"], key);
        assert_eq!(e["source"]["ip"], peer.as_str());
        assert_eq!(e["observer"]["name"], HOSTILE_SENSOR);
        assert_eq!(e["observer"]["version"], VERSION);
        assert_eq!(e["message"], a.summary(3).as_str());
        if line_alert {
            assert_eq!(e["destination"]["ip"], a.line.to_string());
            assert_eq!(e["simboxd"]["site"], sent(HOSTILE_SITE).as_str());
        } else {
            assert!(e.get("destination").is_none());
        }

        let c = &parsed["cef"][i];
        assert_eq!(c["header"][3], VERSION, "{c}");
        let x = &c["ext"];
        assert_eq!(x["externalId"], key, "{c}");
        assert_eq!(x["dvchost"], HOSTILE_SENSOR, "{c}");
        assert_eq!(x["msg"], a.summary(3).as_str(), "{c}");
        if line_alert {
            assert_eq!(x["src"], peer.as_str(), "{c}");
            assert_eq!(x["cs2"], cef_kept(&sent(HOSTILE_SITE)).as_str(), "{c}");
        } else {
            assert_eq!(x["c6a2"], peer.as_str(), "{c}");
        }
    }
}
