//! Webhook output: each alert is POSTed with an `Idempotency-Key` header, as simboxd's alert
//! JSON (with `sensor` and `version`), an ECS document or a CEF record (`format`).
//!
//! Contract: a send succeeds only on a 2xx answer; anything else is an error: refused
//! connections, timeouts and 5xx are outages the delivery worker retries with backoff, a 4xx
//! (but 408/429) or an untrusted certificate refuses that alert (dead-letter list after
//! `[alert] dead_letter_after` attempts, see `SendError::is_refusal`). HTTP/1.1 over hyper, HTTPS via rustls.

use super::format::Origin;
use super::syslog::{split_host_port, SendError};
use super::Alert;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// `[webhook]` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL alerts are POSTed to; no webhook when absent.
    pub url: Option<WebhookUrl>,
    /// Extra header sent with every POST, `Name: value` (e.g. `Authorization: Bearer ...`).
    pub auth_header: Option<AuthHeader>,
    /// PEM CA bundle for `https://`; defaults to the system store.
    pub ca_file: Option<PathBuf>,
    /// Connect + request timeout.
    pub timeout_secs: u32,
    /// Body of each POST.
    pub format: WebhookFormat,
}

/// What a webhook POST carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The alert record as the HTTP API serves it, plus `sensor` and `version`.
    #[default]
    Json,
    /// One ECS document (`application/json`).
    Ecs,
    /// One CEF record (`text/plain`).
    Cef,
}

/// The `json` body: the alert record and who made it.
#[derive(Serialize)]
struct JsonBody<'a> {
    #[serde(flatten)]
    alert: &'a Alert,
    sensor: &'a str,
    version: &'a str,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: None,
            auth_header: None,
            ca_file: None,
            timeout_secs: 10,
            format: WebhookFormat::default(),
        }
    }
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<(), simboxd_core::config::Invalid> {
        if self.timeout_secs == 0 || self.timeout_secs > 300 {
            return Err(simboxd_core::config::Invalid::new(
                "timeout_secs",
                "webhook.timeout_secs must be in 1..=300".into(),
            ));
        }
        Ok(())
    }
}

/// A parsed webhook URL.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{host}:{}{}", self.port, self.path)
    }
}

impl WebhookUrl {
    /// The `Host` header value.
    pub fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl From<WebhookUrl> for String {
    fn from(u: WebhookUrl) -> String {
        u.to_string()
    }
}

impl TryFrom<String> for WebhookUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for WebhookUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("webhook url {s:?} is not an http:// or https:// URL"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "webhook url {s:?}: scheme {other:?} is not http or https"
                ))
            }
        };
        let (auth, path) = match rest.find('/') {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
            None => (rest, "/"),
        };
        if auth.contains('@') {
            return Err(format!(
                "webhook url {s:?}: put credentials in auth_header, not the URL"
            ));
        }
        let (host, port) =
            split_host_port(auth).ok_or_else(|| format!("webhook url {s:?}: bad host or port"))?;
        if host.is_empty() || host.contains([' ', '?', '#']) {
            return Err(format!("webhook url {s:?}: bad host"));
        }
        if path.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!("webhook url {s:?}: bad path"));
        }
        let path = path.split('#').next().unwrap_or("/").to_string();
        Ok(WebhookUrl {
            https,
            host: host.to_string(),
            port: port.unwrap_or(if https { 443 } else { 80 }),
            path,
        })
    }
}

/// `Name: value` header, checked when the config is loaded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AuthHeader {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for AuthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value is a secret.
        write!(f, "{}: ***", self.name)
    }
}

impl From<AuthHeader> for String {
    fn from(h: AuthHeader) -> String {
        format!("{}: {}", h.name, h.value)
    }
}

impl TryFrom<String> for AuthHeader {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (n, v) = s
            .split_once(':')
            .ok_or_else(|| "auth_header must look like \"Name: value\"".to_string())?;
        let (n, v) = (n.trim(), v.trim());
        if hyper::header::HeaderName::from_bytes(n.as_bytes()).is_err() || n.is_empty() {
            return Err(format!("auth_header: {n:?} is not a valid header name"));
        }
        if hyper::header::HeaderValue::from_str(v).is_err() {
            return Err("auth_header: the value has characters not allowed in a header".into());
        }
        Ok(AuthHeader {
            name: n.to_string(),
            value: v.to_string(),
        })
    }
}

/// Posts alerts to one webhook URL, a fresh connection per alert.
pub struct WebhookSender {
    url: WebhookUrl,
    auth: Option<AuthHeader>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    format: WebhookFormat,
    origin: Origin,
}

impl WebhookSender {
    pub fn new(
        url: WebhookUrl,
        auth: Option<AuthHeader>,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Self {
        WebhookSender {
            url,
            auth,
            tls,
            timeout,
            format: WebhookFormat::Json,
            origin: Origin::new(super::syslog::system_hostname()),
        }
    }

    /// The same sender posting `format`, naming `origin` as the sensor.
    pub fn with_format(self, format: WebhookFormat, origin: Origin) -> Self {
        WebhookSender {
            format,
            origin,
            ..self
        }
    }

    /// The body and its content type.
    pub fn body(&self, alert: &Alert) -> Result<(Vec<u8>, &'static str), serde_json::Error> {
        Ok(match self.format {
            WebhookFormat::Json => (
                serde_json::to_vec(&JsonBody {
                    alert,
                    sensor: &self.origin.sensor,
                    version: &self.origin.version,
                })?,
                "application/json",
            ),
            WebhookFormat::Ecs => (
                super::format::ecs::format_ecs(alert, &self.origin, usize::MAX).into_bytes(),
                "application/json",
            ),
            WebhookFormat::Cef => (
                super::format::cef::format_cef(alert, &self.origin).into_bytes(),
                "text/plain; charset=utf-8",
            ),
        })
    }

    pub fn url(&self) -> &WebhookUrl {
        &self.url
    }

    pub async fn send(&mut self, alert: &Alert) -> Result<(), SendError> {
        let name = self.url.to_string();
        let (body, content_type) = self
            .body(alert)
            .map_err(|e| SendError::Io(name.clone(), e.to_string()))?;
        let post = self.post(body, content_type, &alert.idempotency_key);
        match tokio::time::timeout(self.timeout, post).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout(name)),
        }
    }

    async fn post(&self, body: Vec<u8>, content_type: &str, key: &str) -> Result<(), SendError> {
        let name = self.url.to_string();
        let tcp = TcpStream::connect((self.url.host.as_str(), self.url.port))
            .await
            .map_err(|e| SendError::Connect(name.clone(), e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn super::syslog::Stream> = if self.url.https {
            let tls = self
                .tls
                .clone()
                .ok_or_else(|| SendError::Tls(name.clone(), "no TLS settings".into()))?;
            Box::new(super::delivery::tls_connect_target(tls, &self.url.host, tcp, &name).await?)
        } else {
            Box::new(tcp)
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Io(name.clone(), e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::post(self.url.path.as_str())
            .header(hyper::header::HOST, self.url.authority())
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(
                hyper::header::USER_AGENT,
                concat!("simboxd/", env!("CARGO_PKG_VERSION")),
            )
            .header("Idempotency-Key", key);
        if let Some(a) = &self.auth {
            req = req.header(a.name.as_str(), a.value.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError::Io(name.clone(), e.to_string()))?;
        let result = sender.send_request(req).await;
        let out = match result {
            Ok(resp) => {
                let status = resp.status();
                // Read (and bound) the answer so the connection ends cleanly.
                let _ = http_body_util::Limited::new(resp.into_body(), 64 << 10)
                    .collect()
                    .await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(SendError::Status(name, status.as_u16()))
                }
            }
            Err(e) => Err(SendError::Io(name, e.to_string())),
        };
        drop(sender);
        driver.abort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u: WebhookUrl = "https://hooks.example.net/a/b?x=1".parse().unwrap();
        assert!(u.https);
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("hooks.example.net", 443, "/a/b?x=1")
        );
        assert_eq!(u.authority(), "hooks.example.net");
        let u: WebhookUrl = "http://127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.authority()),
            (8080, "/", "127.0.0.1:8080".to_string())
        );
        let u: WebhookUrl = "http://[::1]:9/x".parse().unwrap();
        assert_eq!(u.to_string(), "http://[::1]:9/x");
        for bad in [
            "ftp://h/",
            "h:80/x",
            "http://user:pw@h/",
            "http://:80/",
            "http://h:0/",
        ] {
            assert!(bad.parse::<WebhookUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn auth_header_checked_and_hidden() {
        let h = AuthHeader::try_from("Authorization: Bearer s3cret".to_string()).unwrap();
        assert_eq!(
            (h.name.as_str(), h.value.as_str()),
            ("Authorization", "Bearer s3cret")
        );
        assert!(!format!("{h:?}").contains("s3cret"));
        assert!(AuthHeader::try_from("no colon".to_string()).is_err());
        assert!(AuthHeader::try_from("bad name: x".to_string()).is_err());
        assert!(AuthHeader::try_from("X-Key: a\u{7}b".to_string()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn url_parsers_never_panic(s in ".{0,80}") {
            let _ = s.parse::<WebhookUrl>();
            let _ = s.parse::<crate::alert::syslog::SyslogTarget>();
            let _ = AuthHeader::try_from(s.clone());
        }

        #[test]
        fn parsed_urls_print_and_parse_back(host in "[a-z][a-z0-9.-]{0,20}", port in 1u16.., path in "(/[a-z0-9]{0,8}){0,3}") {
            let u: WebhookUrl = format!("https://{host}:{port}{path}").parse().unwrap();
            let back: WebhookUrl = u.to_string().parse().unwrap();
            proptest::prop_assert_eq!(back, u);
        }
    }
}
