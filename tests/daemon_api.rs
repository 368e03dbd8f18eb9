//! `simboxd run` replaying a real capture, queried over its HTTP API on a free loopback port:
//! token checks, JSON routes and Prometheus metrics.

mod daemon_common;

use daemon_common::{free_port, http_get, http_request, parse_prometheus, sample, Daemon, TOKEN};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const CAPTURE: &str = "sipnab/pcap-samples/sipp-branch-scenario.pcapng";

fn packets_in(path: &std::path::Path) -> u64 {
    let mut cap = pcap::Capture::from_file(path).expect("open capture");
    let mut n = 0;
    while cap.next_packet().is_ok() {
        n += 1;
    }
    n
}

fn start(dir: &std::path::Path, capture: &std::path::Path) -> (Daemon, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = dir.join("simboxd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[capture]\nfile = {:?}\n\n[http]\nlisten = \"{addr}\"\ntoken = \"{TOKEN}\"\n\n\
             [daemon]\nuser = \"\"\ngroup = \"\"\nworkers = 2\n\n[storage]\npath = {:?}\n",
            capture.display().to_string(),
            dir.join("state/alerts.redb").display().to_string()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&cfg, &dir.join("simboxd.log"));
    d.wait_healthy(addr, Duration::from_secs(20));
    (d, addr)
}

#[test]
fn api_requires_the_token_and_serves_json_and_metrics() {
    let Some(corpus) = simboxd::corpus::corpus_dir() else {
        return;
    };
    let capture = corpus.join(CAPTURE);
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, addr) = start(dir.path(), &capture);

    // Open route.
    let h = http_get(addr, "/healthz", None).unwrap();
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));

    // Every protected route: 401 without a token, with a wrong one, with another scheme.
    let protected = [
        "/api/v1/alerts",
        "/api/v1/lines",
        "/api/v1/lines/10.1.2.3",
        "/metrics",
    ];
    for path in protected {
        let none = http_get(addr, path, None).unwrap();
        assert_eq!(none.status, 401, "{path} without token: {}", none.body);
        assert_eq!(
            none.header("www-authenticate"),
            Some("Bearer realm=\"simboxd\"")
        );
        let wrong = http_get(addr, path, Some("test-token-0123456789abcdeX")).unwrap();
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        let prefix = http_get(addr, path, Some(&TOKEN[..TOKEN.len() - 1])).unwrap();
        assert_eq!(prefix.status, 401, "{path} with a prefix of the token");
        let basic = http_request(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {TOKEN}\r\nConnection: close\r\n\r\n"),
        )
        .unwrap();
        assert_eq!(basic.status, 401, "{path} with Basic auth");
    }

    // With the token.
    let alerts = http_get(addr, "/api/v1/alerts", Some(TOKEN)).unwrap();
    assert_eq!(alerts.status, 200, "{}", alerts.body);
    assert!(alerts.json()["alerts"].is_array(), "{}", alerts.body);
    let lines = http_get(addr, "/api/v1/lines?limit=5", Some(TOKEN)).unwrap();
    assert_eq!(lines.status, 200, "{}", lines.body);
    let lines = lines.json();
    assert!(
        lines["lines"].as_array().is_some_and(|l| l.len() <= 5),
        "{lines}"
    );
    let bad = http_get(addr, "/api/v1/lines/not-an-ip", Some(TOKEN)).unwrap();
    assert_eq!(bad.status, 400, "{}", bad.body);
    let unknown = http_get(addr, "/api/v1/lines/192.0.2.77", Some(TOKEN)).unwrap();
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.json()["error"], "no such line");

    // Metrics: valid exposition, and once the replay is done every packet is accounted for.
    let want = packets_in(&capture);
    assert!(want > 1000, "capture has {want} packets");
    let t0 = Instant::now();
    let samples = loop {
        let m = http_get(addr, "/metrics", Some(TOKEN)).unwrap();
        assert_eq!(m.status, 200);
        assert!(
            m.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
            "{:?}",
            m.headers
        );
        let samples = parse_prometheus(&m.body).unwrap_or_else(|e| panic!("{e}\n{}", m.body));
        if sample(&samples, "simboxd_packets_processed_total") == Some(want as f64)
            || t0.elapsed() > Duration::from_secs(20)
        {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(sample(&samples, "simboxd_up"), Some(1.0));
    assert_eq!(
        sample(&samples, "simboxd_packets_captured_total"),
        Some(want as f64)
    );
    assert_eq!(
        sample(&samples, "simboxd_packets_processed_total"),
        Some(want as f64)
    );
    // The engines' own packet count is that family, not a second one.
    assert_eq!(sample(&samples, "simboxd_engine_packets_total"), None);
    assert_eq!(
        sample(
            &samples,
            "simboxd_packets_dropped_total{reason=\"queue_full\"}"
        ),
        Some(0.0),
        "a file replay waits instead of dropping"
    );
    assert_eq!(sample(&samples, "simboxd_queue_packets"), Some(0.0));
    for family in [
        "simboxd_evictions_total",
        "simboxd_table_entries",
        "simboxd_lines",
    ] {
        let m = http_get(addr, "/metrics", Some(TOKEN)).unwrap();
        assert!(
            m.body.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }

    // Still serving after the replay ended, and a clean SIGTERM exit.
    assert_eq!(http_get(addr, "/healthz", None).unwrap().status, 200);
    let status = daemon
        .stop(Duration::from_secs(15))
        .expect("stops on SIGTERM");
    assert!(status.success(), "exit {status}:\n{}", daemon.log_text());
    assert!(daemon.log_text().contains("SIGTERM: stopping"));
}

#[test]
fn api_without_configured_token_is_closed() {
    let Some(corpus) = simboxd::corpus::corpus_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = dir.path().join("simboxd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[capture]\nfile = {:?}\n[http]\nlisten = \"{addr}\"\n[daemon]\nuser = \"\"\ngroup = \"\"\n\
             [storage]\npath = {:?}\n",
            corpus.join(CAPTURE).display().to_string(),
            dir.path().join("alerts.redb").display().to_string()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&cfg, &dir.path().join("log"));
    d.wait_healthy(addr, Duration::from_secs(20));
    for token in [None, Some(""), Some(TOKEN)] {
        let r = http_get(addr, "/metrics", token).unwrap();
        assert_eq!(r.status, 401, "token {token:?}");
    }
    assert!(d.log_text().contains("no [http] token configured"));
}
