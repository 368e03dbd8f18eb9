//! The API over TLS (issue 16, point 9), end to end: a certificate made here by openssl, the
//! daemon serving `/healthz` and the token-protected API over HTTPS (checked by curl against
//! that CA), plain HTTP refused on the same port, and the warning when the API listens beyond
//! loopback without TLS.

mod daemon_common;

use daemon_common::{free_port, http_get, Daemon, TOKEN};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn config(dir: &Path, listen: &str, tls: Option<(&Path, &Path)>) -> std::path::PathBuf {
    let p = dir.join("simboxd.toml");
    let tls = tls.map_or(String::new(), |(c, k)| {
        format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            c.display().to_string(),
            k.display().to_string()
        )
    });
    std::fs::write(
        &p,
        format!(
            "[capture]\nfile = {cap:?}\n\n[http]\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\n{tls}\n\
             [daemon]\nuser = \"\"\ngroup = \"\"\n\n[storage]\npath = {st:?}\n",
            cap = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("captures/sample-site.pcap")
                .display()
                .to_string(),
            st = dir.join("state/alerts.redb").display().to_string(),
        ),
    )
    .unwrap();
    p
}

fn curl(args: &[&str]) -> (i32, String) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let code = out
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (code, out + &String::from_utf8_lossy(&o.stderr))
}

#[test]
fn api_serves_https_with_the_configured_certificate_and_refuses_plain_http() {
    if !have("openssl") || !have("curl") {
        assert!(
            std::env::var("CI").is_err(),
            "openssl and curl are needed under CI"
        );
        eprintln!("SKIP: openssl or curl missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("api.pem"), dir.path().join("api.key"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=simboxd-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let port = free_port();
    let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = config(dir.path(), &api.to_string(), Some((&cert, &key)));
    let mut d = Daemon::start(&cfg, &dir.path().join("log"));
    let base = format!("https://127.0.0.1:{port}");
    let ca = cert.display().to_string();
    let t0 = Instant::now();
    loop {
        let (code, _) = curl(&["--cacert", &ca, &format!("{base}/healthz")]);
        if code == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no HTTPS /healthz\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The token-protected API over TLS, verified against the CA.
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (code, body) = curl(&[
        "--cacert",
        &ca,
        "-H",
        &auth,
        &format!("{base}/api/v1/lines"),
    ]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"line\""), "{body}");
    let (code, _) = curl(&["--cacert", &ca, &format!("{base}/api/v1/lines")]);
    assert_eq!(code, 401, "no token, no lines");
    // A client that does not trust the certificate is refused by curl itself.
    let (code, _) = curl(&[&format!("{base}/healthz")]);
    assert_eq!(code, 0, "an unknown CA must fail verification");
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(
        http_get(api, "/healthz", None).map_or(true, |r| r.status != 200),
        "plain HTTP answered on the TLS port"
    );
    assert!(
        d.log_text().contains("\"tls\":true") || d.log_text().contains("tls=true"),
        "the listen log says TLS\n{}",
        d.log_text()
    );
    d.stop(Duration::from_secs(20));
}

#[test]
fn listening_beyond_loopback_without_tls_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), &format!("0.0.0.0:{port}"), None);
    let mut d = Daemon::start(&cfg, &dir.path().join("log"));
    d.wait_healthy(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(20),
    );
    let log = d.log_text();
    assert!(
        log.contains("beyond loopback without TLS") && log.contains("WARN"),
        "{log}"
    );
    d.stop(Duration::from_secs(20));
}
