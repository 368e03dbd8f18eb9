//! A real `nats-server -js` for the stream tests (plain, or from a config with TLS and
//! authorization), and a reader of what a JetStream stream holds.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `nats-server -js` on loopback with its store in `dir`; stopped (SIGTERM) when dropped.
pub struct NatsServer {
    pub port: u16,
    pub dir: PathBuf,
    /// Extra configuration (`tls { ... }`, `authorization { ... }`); empty: plain `-js`.
    conf: String,
    child: Option<Child>,
}

/// Whether `nats-server` is installed (scripts/setup.sh installs it); a message when not.
pub fn available() -> bool {
    let ok = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "nats-server missing under CI (scripts/setup.sh installs it)"
        );
        eprintln!("skipped: nats-server is not installed");
    }
    ok
}

impl NatsServer {
    pub fn start(dir: &Path, port: u16) -> NatsServer {
        Self::start_with(dir, port, "")
    }

    /// Started from a configuration file with `conf` added (TLS, authorization blocks).
    pub fn start_with(dir: &Path, port: u16, conf: &str) -> NatsServer {
        let mut s = NatsServer {
            port,
            dir: dir.to_path_buf(),
            conf: conf.to_string(),
            child: None,
        };
        s.resume();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and store.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::File::create(self.dir.join("nats.log")).unwrap();
        let mut cmd = Command::new("nats-server");
        if self.conf.is_empty() {
            cmd.args(["-js", "-sd"]).arg(&self.dir).args([
                "-p",
                &self.port.to_string(),
                "-a",
                "127.0.0.1",
            ]);
        } else {
            let file = self.dir.join("nats.conf");
            std::fs::write(
                &file,
                format!(
                    "listen: \"127.0.0.1:{}\"\njetstream {{ store_dir: \"{}\" }}\n{}\n",
                    self.port,
                    self.dir.join("js").display(),
                    self.conf
                ),
            )
            .unwrap();
            cmd.arg("-c").arg(file);
        }
        let child = cmd
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL), keeping its store.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One message of the stream: subject, `Nats-Msg-Id`, payload as JSON.
#[derive(Debug, Clone)]
pub struct Held {
    pub subject: String,
    pub msg_id: String,
    pub json: serde_json::Value,
}

/// Every message the stream `name` holds on subjects matching `filter`, read with an ephemeral
/// consumer (nothing acknowledged for anyone else); empty while the stream does not exist.
pub fn read_stream(url: &str, name: &str, filter: &str) -> Vec<Held> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
        use futures_util::StreamExt;
        let client = async_nats::connect(url).await.expect("connect to nats");
        let js = async_nats::jetstream::new(client);
        // Not there yet (no publisher has reached the server): nothing held.
        let Ok(mut stream) = js.get_stream(name).await else {
            return Vec::new();
        };
        let total = stream.info().await.expect("stream info").state.messages;
        let consumer = stream
            .create_consumer(pull::Config {
                ack_policy: AckPolicy::None,
                deliver_policy: DeliverPolicy::All,
                filter_subject: filter.to_string(),
                ..Default::default()
            })
            .await
            .expect("ephemeral consumer");
        let mut out = Vec::new();
        let mut empty = 0;
        while empty < 2 && (out.len() as u64) < total {
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .expect("fetch");
            let mut got = 0;
            while let Some(Ok(m)) = batch.next().await {
                got += 1;
                let msg_id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                out.push(Held {
                    subject: m.subject.to_string(),
                    msg_id,
                    json: serde_json::from_slice(&m.payload).unwrap_or_default(),
                });
            }
            if got == 0 {
                empty += 1;
            }
        }
        out
    })
}

/// Writes `<dir>/<sensor>.toml`: a sensor reading `capture`, its alert store under
/// `<dir>/<sensor>-state`, its API at `api` with `token`, publishing to `url` every second.
/// `sections` (whole sections, e.g. `[network]` or `[detection]`) come before `[storage]`;
/// `stream_keys` are more lines of `[stream]`.
#[allow(clippy::too_many_arguments)] // each is one fact of the config; a struct would only name them again
pub fn sensor_config(
    dir: &Path,
    capture: &Path,
    api: std::net::SocketAddr,
    token: &str,
    url: &str,
    sensor: &str,
    sections: &str,
    stream_keys: &str,
) -> PathBuf {
    let p = dir.join(format!("{sensor}.toml"));
    std::fs::write(
        &p,
        format!(
            r#"[capture]
file = "{capture}"

{sections}
[storage]
path = "{state}/alerts.redb"

[http]
listen = "{api}"
token = "{token}"

[daemon]
user = ""
group = ""
tick_secs = 0.2

[stream]
url = "{url}"
sensor = "{sensor}"
evidence_interval_secs = 1
{stream_keys}"#,
            capture = capture.display(),
            state = dir.join(format!("{sensor}-state")).display(),
        ),
    )
    .unwrap();
    p
}
