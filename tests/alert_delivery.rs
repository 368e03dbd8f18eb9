//! Webhook delivery through the persistent outbox against a real HTTP receiver (axum, loopback):
//! receiver down at first then up, receiver failing with 500, a receiver refusing one alert
//! with 400 (dead-lettered, the rest still arrive), and a delivery process killed with SIGKILL
//! mid-way and restarted on the same redb file. Every alert must arrive, none twice.

mod common;
#[path = "common/episodes.rs"]
mod episodes;
use common::make_certs;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use simboxd::alert::delivery::{targets_from_config, Backoff, Delivery};
use simboxd::alert::outbox::Outbox;
use simboxd::alert::{Alert, AlertManager};
use simboxd::config::Config;
use simboxd_core::model::{LineVerdict, Reason, Timestamp, VerdictLevel};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Rx {
    /// Answer 500 to this many requests first.
    fail_first: u32,
    /// Accept only this many distinct alerts, then answer 500 (None: accept all).
    accept_limit: Option<usize>,
    requests: u32,
    /// Answer 400 to these idempotency keys (a receiver that refuses one alert).
    refuse: std::collections::BTreeSet<String>,
    /// Requests per idempotency key, whatever the answer.
    tries: BTreeMap<String, u32>,
    /// 2xx answers per idempotency key.
    accepted: BTreeMap<String, u32>,
    bodies: Vec<Alert>,
    bad_requests: Vec<String>,
}

type Shared = Arc<Mutex<Rx>>;

async fn hook(State(rx): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let mut rx = rx.lock().unwrap();
    rx.requests += 1;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let alert: Alert = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            rx.bad_requests.push(format!("body: {e}"));
            return StatusCode::BAD_REQUEST;
        }
    };
    if key != alert.idempotency_key {
        rx.bad_requests.push(format!(
            "header key {key:?} != body key {:?}",
            alert.idempotency_key
        ));
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0ken") {
        rx.bad_requests.push("missing auth header".into());
        return StatusCode::UNAUTHORIZED;
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        rx.bad_requests.push("content type".into());
    }
    *rx.tries.entry(key.clone()).or_insert(0) += 1;
    if rx.refuse.contains(&key) {
        return StatusCode::BAD_REQUEST;
    }
    if rx.fail_first > 0 {
        rx.fail_first -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let Some(limit) = rx.accept_limit {
        if rx.accepted.len() >= limit && !rx.accepted.contains_key(&key) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    *rx.accepted.entry(key).or_insert(0) += 1;
    rx.bodies.push(alert);
    StatusCode::OK
}

/// Serves the receiver on `listener` until the task is aborted.
fn serve(listener: tokio::net::TcpListener, rx: Shared) -> tokio::task::JoinHandle<()> {
    let app = Router::new().route("/hook", post(hook)).with_state(rx);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(40),
        max: Duration::from_millis(300),
        poll: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
        dead_letter_after: 5,
    }
}

/// Config as a user writes it: the webhook and the outbox path.
fn config(port: u16, db: &Path) -> Config {
    let text = format!(
        "[webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\nauth_header = \"Authorization: Bearer t0ken\"\n\
         timeout_secs = 2\n\n[storage]\npath = \"{}\"\n",
        db.display()
    );
    Config::parse(&text, "test.toml").unwrap()
}

fn open(cfg: &Config) -> (Arc<Outbox>, Delivery) {
    let targets = targets_from_config(cfg.delivery(), Duration::from_secs(2)).unwrap();
    let names = targets.iter().map(|t| t.name()).collect();
    let outbox = Arc::new(Outbox::open(&cfg.storage, names).unwrap());
    let d = Delivery::start(outbox.clone(), targets, backoff());
    (outbox, d)
}
/// `n` alerts from `n / 3` lines, each raised, updated, cleared.
fn alerts(n: usize) -> Vec<Alert> {
    episodes::episode_alerts(n, |s, i| format!("{s} for line {i}"))
}

async fn wait_backlog_zero(outbox: &Arc<Outbox>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let b = outbox.backlog().unwrap();
        if b.values().all(|&n| n == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "not delivered in time: {b:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_exactly_once(rx: &Rx, sent: &[Alert]) {
    assert!(rx.bad_requests.is_empty(), "{:?}", rx.bad_requests);
    for a in sent {
        assert_eq!(
            rx.accepted.get(&a.idempotency_key),
            Some(&1),
            "{} accepted once",
            a.idempotency_key
        );
    }
    assert_eq!(rx.accepted.len(), sent.len());
    // The body is the alert as stored, field for field.
    for a in sent {
        let got = rx
            .bodies
            .iter()
            .find(|b| b.idempotency_key == a.idempotency_key)
            .unwrap();
        assert_eq!(got, a);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_then_up_gets_every_alert_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(port, &dir.path().join("outbox.redb"));
    let (outbox, delivery) = open(&cfg);
    let sent = alerts(9);
    for a in &sent {
        assert!(delivery.submit(a).unwrap());
    }
    // Re-submitting an alert is a no-op (dedup by idempotency key).
    assert!(!delivery.submit(&sent[0]).unwrap());

    tokio::time::sleep(Duration::from_millis(800)).await;
    let st = delivery.status();
    assert_eq!((st[0].delivered, st[0].pending), (0, 9), "{st:?}");
    assert!(st[0].failures >= 2 && !st[0].up, "{st:?}");
    assert!(
        st[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("connect"),
        "{st:?}"
    );

    let rx: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let server = serve(listener, rx.clone());
    wait_backlog_zero(&outbox, Duration::from_secs(10)).await;
    // Let any stray duplicate arrive before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once(&rx.lock().unwrap(), &sent);
    // Order per target is outbox order.
    let order: Vec<String> = rx
        .lock()
        .unwrap()
        .bodies
        .iter()
        .map(|a| a.idempotency_key.clone())
        .collect();
    let want: Vec<String> = sent.iter().map(|a| a.idempotency_key.clone()).collect();
    assert_eq!(order, want);
    assert_eq!(delivery.status()[0].delivered, 9);
    delivery.shutdown(Duration::from_secs(2)).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_failing_with_500_is_retried_until_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rx: Shared = Arc::new(Mutex::new(Rx {
        fail_first: 4,
        ..Default::default()
    }));
    let server = serve(listener, rx.clone());
    let cfg = config(port, &dir.path().join("outbox.redb"));
    let (outbox, delivery) = open(&cfg);
    let sent = alerts(5);
    for a in &sent {
        delivery.submit(a).unwrap();
    }
    wait_backlog_zero(&outbox, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rx = rx.lock().unwrap();
    assert_exactly_once(&rx, &sent);
    assert_eq!(
        rx.requests,
        4 + 5,
        "four refusals, then one accepted POST per alert"
    );
    let st = delivery.status();
    assert_eq!((st[0].failures, st[0].delivered), (4, 5), "{st:?}");
    assert!(
        st[0].last_error.as_deref().unwrap_or("").contains("500"),
        "{st:?}"
    );
    drop(rx);
    // The outbox keeps the delivered alerts for the API, newest first.
    let listed = outbox.list(100).unwrap();
    assert_eq!(listed.len(), 5);
    assert_eq!(listed[0].alert, sent[4]);
    assert!(listed.iter().all(|e| e.pending.is_empty()));
    server.abort();
}

/// Helper run as a child process by `sigkill_mid_delivery_then_restart_loses_nothing`: opens
/// the outbox, submits the alerts and delivers until killed, printing the backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of sigkill_mid_delivery_then_restart_loses_nothing"]
async fn helper_delivery_process() {
    let (Ok(port), Ok(db), Ok(n)) = (
        std::env::var("ALERT_CHILD_PORT"),
        std::env::var("ALERT_CHILD_DB"),
        std::env::var("ALERT_CHILD_N"),
    ) else {
        panic!("run by sigkill_mid_delivery_then_restart_loses_nothing only");
    };
    let cfg = config(port.parse().unwrap(), Path::new(&db));
    let (outbox, delivery) = open(&cfg);
    for a in alerts(n.parse().unwrap()) {
        delivery.submit(&a).unwrap();
    }
    println!("CHILD enqueued");
    loop {
        let b: u64 = outbox.backlog().unwrap().values().sum();
        println!("CHILD backlog {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_then_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.redb");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // The receiver takes the first 3 alerts, then is "down" (503) for the rest.
    let rx: Shared = Arc::new(Mutex::new(Rx {
        accept_limit: Some(3),
        ..Default::default()
    }));
    let server = serve(listener, rx.clone());
    const N: usize = 10;

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "helper_delivery_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ALERT_CHILD_PORT", port.to_string())
        .env("ALERT_CHILD_DB", &db)
        .env("ALERT_CHILD_N", N.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, seen) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait until the child has committed 3 delivered marks (backlog N - 3), then kill -9 it.
    let want = format!("CHILD backlog {}", N - 3);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = seen
            .recv_timeout(Duration::from_secs(20))
            .expect("child output");
        if line == want {
            break;
        }
        assert!(Instant::now() < deadline, "child never reached {want:?}");
    }
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush, no destructor.
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(rx.lock().unwrap().accepted.len(), 3);

    // Receiver fully up; a new process (here: this one) opens the same file.
    rx.lock().unwrap().accept_limit = None;
    let cfg = config(port, &db);
    let (outbox, delivery) = open(&cfg);
    assert_eq!(
        outbox.len().unwrap(),
        N as u64,
        "every enqueued alert survived the kill"
    );
    assert_eq!(
        outbox.backlog().unwrap().values().sum::<u64>(),
        (N - 3) as u64
    );
    wait_backlog_zero(&outbox, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once(&rx.lock().unwrap(), &alerts(N));
    assert_eq!(delivery.status()[0].delivered, (N - 3) as u64);
    delivery.shutdown(Duration::from_secs(2)).await;
    server.abort();
}

/// The receiver behind a rustls server (HTTPS on loopback).
fn serve_tls(
    listener: tokio::net::TcpListener,
    rx: Shared,
    certs: &Path,
) -> tokio::task::JoinHandle<()> {
    let pem = std::fs::read(certs.join("srv.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.unwrap())
        .collect();
    let key_pem = std::fs::read(certs.join("srv.key")).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let app = Router::new().route("/hook", post(hook)).with_state(rx);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhook_with_configured_ca_and_refusal_without_it() {
    if !Path::new("/usr/bin/openssl").exists() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "openssl missing under CI"
        );
        eprintln!("SKIP: openssl not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rx: Shared = Arc::default();
    let server = serve_tls(listener, rx.clone(), &certs);
    let sent = alerts(3);

    let https_config = |db: &str, ca: Option<&Path>| {
        let ca = ca.map_or(String::new(), |p| {
            format!("ca_file = \"{}\"\n", p.display())
        });
        let text = format!(
            "[webhook]\nurl = \"https://127.0.0.1:{port}/hook\"\n\
             auth_header = \"Authorization: Bearer t0ken\"\n{ca}\
             [storage]\npath = \"{}\"\n",
            dir.path().join(db).display()
        );
        Config::parse(&text, "https.toml").unwrap()
    };

    // System trust store only: the test CA is unknown, so nothing is sent.
    let cfg = https_config("a.redb", None);
    if let Ok(targets) = targets_from_config(cfg.delivery(), Duration::from_secs(2)) {
        let names = targets.iter().map(|t| t.name()).collect();
        let outbox = Arc::new(Outbox::open(&cfg.storage, names).unwrap());
        let d = Delivery::start(outbox.clone(), targets, backoff());
        d.submit(&sent[0]).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let st = d.status();
        // An untrusted certificate refuses the alert: dead-lettered after 5 attempts.
        assert!(
            st[0].delivered == 0 && st[0].pending == 0 && st[0].dead_letter == 1,
            "{st:?}"
        );
        assert!(
            st[0].last_error.as_deref().unwrap_or("").contains("TLS"),
            "{st:?}"
        );
        d.shutdown(Duration::from_secs(1)).await;
    }
    assert!(rx.lock().unwrap().accepted.is_empty());

    // With ca_file: delivered over HTTPS, exactly once each.
    let cfg = https_config("b.redb", Some(&certs.join("ca.pem")));
    let (outbox, d) = open(&cfg);
    for a in &sent {
        d.submit(a).unwrap();
    }
    wait_backlog_zero(&outbox, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_exactly_once(&rx.lock().unwrap(), &sent);
    d.shutdown(Duration::from_secs(1)).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_from_config_raises_for_the_gateway_line_with_numbers_pseudonymised() {
    use simboxd::alert::delivery::AlertSink;
    use simboxd::privacy::Pseudonymizer;
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rx: Shared = Arc::default();
    let server = serve(listener, rx.clone());
    let text = format!(
        "[webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\nauth_header = \"Authorization: Bearer t0ken\"\n\
         [storage]\npath = \"{}\"\n[privacy]\npseudonymize = true\nkey = \"test-key-0123456789\"\n\
         [alert]\nclear_after_secs = 60\nretry_initial_ms = 20\nretry_max_secs = 1\n",
        dir.path().join("o.redb").display()
    );
    let cfg = Config::parse(&text, "sink.toml").unwrap();
    let privacy = Pseudonymizer::from_config(&cfg.privacy).unwrap();
    let delivery = Arc::new(Delivery::from_config(cfg.delivery()).unwrap());
    let mut sink = AlertSink::new(
        AlertManager::new(cfg.alert.clone()),
        privacy.clone(),
        delivery.clone(),
    );
    let t0 = 1_764_400_000_000_000i64;
    let verdict = |level, secs: i64, calls| LineVerdict {
        line: "100.64.9.9".parse().unwrap(),
        verdict: level,
        score: 0.95,
        flagged_at: None,
        site: None,
        reasons: vec![Reason {
            signal: "inbound_many_numbers".into(),
            value: 198.0,
            strength: 0.9,
            detail: "198 distinct numbers, e.g. +8613800001111 and 13900002222".into(),
        }],
        updated: Timestamp(t0 + secs * 1_000_000),
        calls,
        max_concurrent_calls: 8,
        peer: None,
    };
    let raised = sink
        .on_verdict(&verdict(VerdictLevel::Gateway, 0, 50))
        .unwrap();
    assert_eq!(raised.len(), 1);
    assert!(sink
        .on_verdict(&verdict(VerdictLevel::Gateway, 30, 50))
        .unwrap()
        .is_empty());
    assert!(sink.tick(Timestamp(t0 + 59_000_000)).unwrap().is_empty());
    let cleared = sink.tick(Timestamp(t0 + 61_000_000)).unwrap();
    assert_eq!(cleared.len(), 1);
    let outbox = delivery.outbox().clone();
    wait_backlog_zero(&outbox, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rx = rx.lock().unwrap();
    assert_exactly_once(&rx, &[raised[0].clone(), cleared[0].clone()]);
    let body = serde_json::to_string(&rx.bodies).unwrap();
    assert!(
        !body.contains("13800001111") && !body.contains("13900002222"),
        "{body}"
    );
    assert!(body.contains(&privacy.number("+8613800001111")), "{body}");
    assert_eq!(rx.bodies[0].state, simboxd::alert::AlertState::Raised);
    assert_eq!(rx.bodies[1].state, simboxd::alert::AlertState::Cleared);
    drop(rx);
    server.abort();
}

/// Regression (issue 17): one alert a webhook refused (400) blocked every later alert to it
/// forever, re-sent with no backoff. Now the rest arrive in order, the refused one is tried
/// `dead_letter_after` times with backoff, then sits in the dead-letter list until retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_refusing_one_alert_dead_letters_it_and_the_rest_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = alerts(9);
    let bad = sent[2].idempotency_key.clone();
    let rx: Shared = Arc::new(Mutex::new(Rx {
        refuse: [bad.clone()].into(),
        ..Default::default()
    }));
    let server = serve(listener, rx.clone());
    let cfg = config(port, &dir.path().join("outbox.redb"));
    let (outbox, delivery) = open(&cfg);
    let t0 = Instant::now();
    for a in &sent {
        delivery.submit(a).unwrap();
    }
    // The 8 others arrive without waiting for the refused one's retries.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.lock().unwrap().accepted.len() < 8 {
        assert!(Instant::now() < deadline, "the others did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let others_in = t0.elapsed();
    wait_backlog_zero(&outbox, Duration::from_secs(10)).await;
    let all_out = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        let rx = rx.lock().unwrap();
        let want: Vec<Alert> = sent
            .iter()
            .filter(|a| a.idempotency_key != bad)
            .cloned()
            .collect();
        assert_exactly_once(&rx, &want);
        let order: Vec<&str> = rx
            .bodies
            .iter()
            .map(|a| a.idempotency_key.as_str())
            .collect();
        let want_order: Vec<&str> = want.iter().map(|a| a.idempotency_key.as_str()).collect();
        assert_eq!(order, want_order, "the rest in outbox order");
        assert_eq!(
            rx.tries[&bad], 5,
            "tried dead_letter_after times, then left alone"
        );
    }
    let st = delivery.status();
    assert_eq!(
        (
            st[0].delivered,
            st[0].refused,
            st[0].dead_lettered,
            st[0].dead_letter,
            st[0].pending
        ),
        (8, 5, 1, 1, 0),
        "{st:?}"
    );
    assert!(st[0].up, "a receiver that answers is up: {st:?}");
    let dl = outbox.dead_letters(10).unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].alert, sent[2]);
    assert_eq!(dl[0].mark.attempts, 5);
    assert!(dl[0].mark.error.contains("HTTP status 400"), "{dl:?}");
    assert_eq!(
        outbox.get(&bad).unwrap().unwrap().dead_letter,
        vec![dl[0].target.clone()]
    );
    // Four backoff pauses (40, 80, 160, 300 ms +-25 %) between the five tries: no hot loop.
    assert!(all_out >= Duration::from_millis(400), "{all_out:?}");
    eprintln!("others delivered in {others_in:?}, refused one dead-lettered after {all_out:?}");

    // The operator fixes the receiver and asks for a retry: delivered once, list empty.
    rx.lock().unwrap().refuse.clear();
    assert_eq!(outbox.retry_dead_letters(None, Some("nope")).unwrap(), 0);
    assert_eq!(outbox.retry_dead_letters(None, Some(&bad)).unwrap(), 1);
    delivery.wake();
    wait_backlog_zero(&outbox, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_exactly_once(&rx.lock().unwrap(), &sent);
    assert!(outbox.dead_letters(10).unwrap().is_empty());
    assert_eq!(delivery.status()[0].dead_letter, 0);
    delivery.shutdown(Duration::from_secs(2)).await;
    server.abort();
}
