//! Helpers shared by the daemon tests: the real binary as a child process, a minimal HTTP/1.1
//! client and server over std sockets, and a Prometheus text checker.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_simboxd")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// `simboxd run` as a child; stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, log: &Path) -> Daemon {
        let out = std::fs::File::create(log).expect("create daemon log");
        let err = out.try_clone().expect("clone log handle");
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn simboxd run");
        Daemon {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/healthz` answers 200 (or the child exits, or `limit` passes).
    pub fn wait_healthy(&mut self, addr: SocketAddr, limit: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("simboxd exited early ({st}):\n{}", self.log_text());
            }
            if let Ok(r) = http_get(addr, "/healthz", None) {
                if r.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("simboxd not healthy after {limit:?}:\n{}", self.log_text());
    }

    /// SIGTERM and wait; returns the exit status (SIGKILL after `limit`).
    pub fn stop(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop(Duration::from_secs(5));
        }
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// GET with an optional bearer token, `Connection: close`, body read to the end.
pub fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> std::io::Result<Response> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"),
    )
}

pub fn http_request(addr: SocketAddr, raw: &str) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(raw.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// One request received by `HttpReceiver`.
#[derive(Clone, Debug)]
pub struct Received {
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A tiny HTTP/1.1 server answering 200 to every request and recording it (webhook target).
pub struct HttpReceiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Received>>>,
}

/// Decides the status a receiver answers to one request.
pub type Answer = Arc<dyn Fn(&Received) -> u16 + Send + Sync>;

impl HttpReceiver {
    pub fn start() -> HttpReceiver {
        Self::start_with(Arc::new(|_| 200))
    }

    /// A receiver answering each request with the status `answer` gives it; only requests
    /// answered 2xx are recorded (what a receiver accepted).
    pub fn start_with(answer: Answer) -> HttpReceiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = l.local_addr().expect("receiver addr");
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { continue };
                let (g, answer) = (g.clone(), answer.clone());
                std::thread::spawn(move || serve_conn(conn, g, answer));
            }
        });
        HttpReceiver { addr, got }
    }
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

fn serve_conn(conn: TcpStream, got: Arc<Mutex<Vec<Received>>>, answer: Answer) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let request_line = line.trim_end().to_string();
        if request_line.is_empty() {
            continue;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len.min(1 << 20)];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let r = Received {
            request_line,
            headers,
            body: String::from_utf8_lossy(&body).to_string(),
        };
        let status = answer(&r);
        if (200..300).contains(&status) {
            if let Ok(mut g) = got.lock() {
                g.push(r);
            }
        }
        let head = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        if w.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

/// Checks Prometheus text exposition 0.0.4 line by line: HELP/TYPE comments, sample syntax,
/// label quoting and values. Returns the samples as (name with labels, value).
pub fn parse_prometheus(text: &str) -> Result<Vec<(String, f64)>, String> {
    let valid_name = |n: &str| {
        let mut c = n.chars();
        matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
    };
    let mut typed = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(n), _) if valid_name(n) => {}
                (Some("TYPE"), Some(n), Some(t)) if valid_name(n) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(at("unknown type"));
                    }
                    if !typed.insert(n.to_string()) {
                        return Err(at("second TYPE for a family"));
                    }
                }
                _ => return Err(at("bad comment")),
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value"))?;
        let name = series.split('{').next().unwrap_or("");
        if !valid_name(name) {
            return Err(at("bad metric name"));
        }
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .ok_or_else(|| at("bad label braces"))?;
            check_labels(inner).map_err(|e| at(&e))?;
        }
        let v = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            x => x.parse::<f64>().map_err(|_| at("bad value"))?,
        };
        out.push((series.to_string(), v));
    }
    Ok(out)
}

fn check_labels(mut s: &str) -> Result<(), String> {
    while !s.is_empty() {
        let (k, rest) = s.split_once("=\"").ok_or("label without =\"")?;
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {k:?}"));
        }
        let mut chars = rest.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or("unterminated label value")?;
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
    Ok(())
}

/// The value of one series (`name` or `name{labels}` exactly as written).
pub fn sample(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}
