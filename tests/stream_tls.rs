//! NATS with TLS and authorization (issue 12): a real `nats-server` with a certificate made by
//! openssl for 127.0.0.1 (our own CA) and token or user/password authorization. A sensor and the
//! central connect over `tls://` with `ca_file` and their credentials from files; the central
//! sees the sensor's gateway line. A sensor and a central with wrong credentials say so clearly
//! in their logs (and the sensor's metrics count the failures). No secret appears in any log,
//! `/metrics` or API answer.

mod common;
mod daemon_common;
#[path = "common/nats.rs"]
mod nats;

use daemon_common::{free_port, http_get, parse_prometheus, sample, Daemon, TOKEN};
use nats::{available, NatsServer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How a client proves who it is: the `[stream]` keys, and the file they name.
enum Auth {
    Token(&'static str),
    User(&'static str, &'static str),
}

impl Auth {
    /// `[stream]` keys with the secret written to a file in `dir` under `name`.
    fn keys(&self, dir: &Path, name: &str) -> String {
        match self {
            Auth::Token(t) => {
                let f = dir.join(format!("{name}.token"));
                std::fs::write(&f, format!("{t}\n")).unwrap();
                format!("token_file = \"{}\"\n", f.display())
            }
            Auth::User(u, p) => {
                let f = dir.join(format!("{name}.password"));
                std::fs::write(&f, format!("{p}\n")).unwrap();
                format!("user = \"{u}\"\npassword_file = \"{}\"\n", f.display())
            }
        }
    }
}

fn sensor_config(dir: &Path, api: SocketAddr, url: &str, name: &str, auth: &Auth) -> PathBuf {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap");
    let stream_keys = format!(
        "ca_file = \"{}\"\n{}",
        dir.join("ca.pem").display(),
        auth.keys(dir, name)
    );
    let network = "[network]\ndomestic = [\"198.18.0.0/15\"]\n";
    nats::sensor_config(dir, &sample, api, TOKEN, url, name, network, &stream_keys)
}

fn central_config(dir: &Path, api: SocketAddr, url: &str, name: &str, auth: &Auth) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            r#"[network]
domestic = ["198.18.0.0/15"]

[storage]
path = "{state}/alerts.redb"

[http]
listen = "{api}"
token = "{TOKEN}"

[central]
state_path = "{state}/central.redb"

[stream]
url = "{url}"
ca_file = "{ca}"
{keys}"#,
            state = dir.join(format!("{name}-state")).display(),
            ca = dir.join("ca.pem").display(),
            keys = auth.keys(dir, name),
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
        .env("RUST_LOG", "debug")
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn simboxd central");
    Daemon {
        child,
        log: log.to_path_buf(),
    }
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

fn body(api: SocketAddr, path: &str) -> String {
    http_get(api, path, Some(TOKEN)).unwrap().body
}

/// Sensor and central over TLS with `good`; another pair with `bad` is refused, clearly.
fn tls_with(good: Auth, bad: Auth, server_auth: &str, secrets: &[&str]) {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::make_certs(d);
    let port = free_port();
    let conf = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n{server_auth}\n",
        d.join("srv.pem").display(),
        d.join("srv.key").display()
    );
    let mut server = NatsServer::start_with(&d.join("nats"), port, &conf);
    let url = format!("tls://127.0.0.1:{port}");
    let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    let (c_api, s_api, bc_api, bs_api) = (
        addr(free_port()),
        addr(free_port()),
        addr(free_port()),
        addr(free_port()),
    );
    let mut central = start_central(
        &central_config(d, c_api, &url, "central", &good),
        &d.join("central.log"),
    );
    let mut sensor = Daemon::start(
        &sensor_config(d, s_api, &url, "tap-a", &good),
        &d.join("sensor.log"),
    );
    let mut bad_central = start_central(
        &central_config(d, bc_api, &url, "bad-central", &bad),
        &d.join("bad-central.log"),
    );
    let mut bad_sensor = Daemon::start(
        &sensor_config(d, bs_api, &url, "bad-tap", &bad),
        &d.join("bad-sensor.log"),
    );
    central.wait_healthy(c_api, Duration::from_secs(30));
    sensor.wait_healthy(s_api, Duration::from_secs(30));
    bad_sensor.wait_healthy(bs_api, Duration::from_secs(30));

    // Over TLS with the right credentials: the central judges the sensor's gateway line.
    wait_for(Duration::from_secs(60), || {
        let j: serde_json::Value =
            serde_json::from_str(&body(c_api, "/api/v1/lines?limit=100")).ok()?;
        j["lines"]
            .as_array()?
            .iter()
            .any(|l| l["line"] == "100.64.1.10" && l["verdict"] == "gateway")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "central saw nothing over TLS\n{}\n{}",
            central.log_text(),
            sensor.log_text()
        )
    });

    // Wrong credentials: a clear error in both logs, failures counted, nothing published.
    let refused = |log: &Daemon| log.log_text().contains("refused the credentials");
    wait_for(Duration::from_secs(30), || {
        (refused(&bad_sensor) && refused(&bad_central)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no clear credential error\n--- sensor\n{}\n--- central\n{}",
            bad_sensor.log_text(),
            bad_central.log_text()
        )
    });
    // The refusal may first be logged by the alert path; the evidence publisher counts its
    // failed round when it next has something to send.
    let m = wait_for(Duration::from_secs(30), || {
        let m = parse_prometheus(&body(bs_api, "/metrics")).ok()?;
        (sample(&m, "simboxd_stream_publish_errors_total").unwrap_or(0.0) >= 1.0).then_some(m)
    })
    .unwrap_or_else(|| panic!("no failed publish round counted\n{}", bad_sensor.log_text()));
    assert_eq!(sample(&m, "simboxd_stream_connected"), Some(0.0));
    assert_eq!(sample(&m, "simboxd_stream_published_total"), Some(0.0));
    let m = parse_prometheus(&body(bc_api, "/metrics")).unwrap();
    assert_eq!(sample(&m, "simboxd_central_connected"), Some(0.0));
    let m = parse_prometheus(&body(s_api, "/metrics")).unwrap();
    assert_eq!(sample(&m, "simboxd_stream_connected"), Some(1.0));
    assert!(sample(&m, "simboxd_stream_published_total").unwrap_or(0.0) >= 1.0);

    // No secret anywhere we write or serve.
    let mut seen = vec![
        ("central log", central.log_text()),
        ("sensor log", sensor.log_text()),
        ("refused central log", bad_central.log_text()),
        ("refused sensor log", bad_sensor.log_text()),
        ("central metrics", body(c_api, "/metrics")),
        ("sensor metrics", body(s_api, "/metrics")),
        ("refused sensor metrics", body(bs_api, "/metrics")),
        ("refused central metrics", body(bc_api, "/metrics")),
        ("central alerts", body(c_api, "/api/v1/alerts?limit=1000")),
        ("sensor alerts", body(s_api, "/api/v1/alerts?limit=1000")),
    ];
    seen.push(("central lines", body(c_api, "/api/v1/lines?limit=100")));
    for (what, text) in &seen {
        assert!(!text.is_empty(), "{what} is empty");
        for s in secrets {
            assert!(!text.contains(s), "{what} shows the secret {s:?}:\n{text}");
        }
    }
    for d in [&mut bad_sensor, &mut sensor] {
        d.stop(Duration::from_secs(20));
    }
    central.stop(Duration::from_secs(20));
    bad_central.stop(Duration::from_secs(20));
    server.stop();
}

#[test]
fn token_over_tls_and_a_wrong_token_is_refused_clearly() {
    tls_with(
        Auth::Token("nats-token-6f1c9e2ab4d7"),
        Auth::Token("wrong-token-93b1d0c4e8aa"),
        "authorization {\n  token: \"nats-token-6f1c9e2ab4d7\"\n}",
        &["nats-token-6f1c9e2ab4d7", "wrong-token-93b1d0c4e8aa"],
    );
}

#[test]
fn user_and_password_over_tls_and_a_wrong_password_is_refused_clearly() {
    tls_with(
        Auth::User("simboxd", "pw-5e0a7c3d19f2"),
        Auth::User("simboxd", "pw-wrong-a8c2e6f01b3d"),
        "authorization {\n  users = [ { user: \"simboxd\", password: \"pw-5e0a7c3d19f2\" } ]\n}",
        &["pw-5e0a7c3d19f2", "pw-wrong-a8c2e6f01b3d"],
    );
}
