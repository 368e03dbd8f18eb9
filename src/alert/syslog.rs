//! Syslog output: RFC 5424 (with structured data) or RFC 3164 messages, sent over UDP, TCP with
//! RFC 6587 octet counting, TLS (RFC 5425, rustls) or RELP (rsyslog's `imrelp`, see `relp`).
//!
//! Contract: formatting is pure (`octet_frame` here, the message formats in [`super::format`]); a
//! [`SyslogSender`] keeps one connection, reconnects after any failure and reports success
//! once the message is written and flushed (UDP: once sent), or for RELP once the receiver
//! acknowledged it. Only RELP makes "delivered" mean "the receiver has it": over TCP/TLS a
//! message written into the socket buffer of a connection the receiver drops (restart, black
//! hole) is lost without an error.

pub use super::format::rfc5424::{escape_sd_value, format_rfc3164, format_rfc5424};
use super::format::Origin;
use super::Alert;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// `[syslog]` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SyslogConfig {
    /// `udp://host:514`, `tcp://host:601`, `tls://host:6514`, `relp://host:2514`, each optionally as
    /// `{ url = "...", format = "cef" }` to override `format` for that target.
    pub targets: Vec<SyslogTargetSpec>,
    /// Message format of targets that do not set their own.
    pub format: SyslogFormat,
    /// Private Enterprise Number in the RFC 5424 SD-ID `simboxd@<number>`.
    pub sd_enterprise: NonZeroU32,
    pub facility: Facility,
    /// HOSTNAME field; defaults to the system host name.
    pub hostname: Option<String>,
    /// PEM CA bundle for `tls://` targets; defaults to the system store.
    pub ca_file: Option<PathBuf>,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            targets: Vec::new(),
            format: SyslogFormat::default(),
            sd_enterprise: super::format::rfc5424::DEFAULT_SD_ENTERPRISE,
            facility: Facility::default(),
            hostname: None,
            ca_file: None,
        }
    }
}

/// What a syslog message carries after its header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// RFC 5424 with the alert in structured data and a one-line summary.
    #[default]
    Rfc5424,
    /// RFC 3164 (BSD) with the summary only.
    Rfc3164,
    /// RFC 5424 header, the MSG one ECS JSON document.
    Ecs,
    /// RFC 5424 header, the MSG one CEF record.
    Cef,
}

/// One `targets` entry: a URL, or a table with the URL and the target's own format.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyslogTargetSpec {
    pub target: SyslogTarget,
    /// Overrides `[syslog] format` for this target.
    pub format: Option<SyslogFormat>,
}

impl From<SyslogTarget> for SyslogTargetSpec {
    fn from(target: SyslogTarget) -> Self {
        SyslogTargetSpec {
            target,
            format: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecTable {
    url: SyslogTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<SyslogFormat>,
}

impl Serialize for SyslogTargetSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.format {
            None => self.target.serialize(s),
            Some(_) => SpecTable {
                url: self.target.clone(),
                format: self.format,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for SyslogTargetSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SyslogTargetSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a URL like \"udp://host:514\" or { url = \"...\", format = \"...\" }")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                s.parse::<SyslogTarget>()
                    .map(SyslogTargetSpec::from)
                    .map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<Self::Value, A::Error> {
                let t = SpecTable::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                Ok(SyslogTargetSpec {
                    target: t.url,
                    format: t.format,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProto {
    Udp,
    Tcp,
    Tls,
    /// RELP: each message acknowledged by the receiver (rsyslog `imrelp`).
    Relp,
}

/// One syslog receiver, written as a URL in the config.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SyslogTarget {
    pub proto: SyslogProto,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.proto {
            SyslogProto::Udp => "udp",
            SyslogProto::Tcp => "tcp",
            SyslogProto::Tls => "tls",
            SyslogProto::Relp => "relp",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl From<SyslogTarget> for String {
    fn from(t: SyslogTarget) -> String {
        t.to_string()
    }
}

impl TryFrom<String> for SyslogTarget {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for SyslogTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("syslog target {s:?} is not a URL like udp://host:514"))?;
        let (proto, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "udp" => (SyslogProto::Udp, 514),
            "tcp" => (SyslogProto::Tcp, 601),
            "tls" => (SyslogProto::Tls, 6514),
            "relp" => (SyslogProto::Relp, 2514),
            other => {
                return Err(format!(
                    "syslog target {s:?}: scheme {other:?} is not udp, tcp, tls or relp"
                ))
            }
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = split_host_port(rest)
            .ok_or_else(|| format!("syslog target {s:?}: bad host or port"))?;
        if host.is_empty() || host.contains(['/', '@', ' ', '?', '#']) {
            return Err(format!("syslog target {s:?}: bad host"));
        }
        Ok(SyslogTarget {
            proto,
            host: host.to_string(),
            port: port.unwrap_or(default_port),
        })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(r) = s.strip_prefix('[') {
        let (h, tail) = r.split_once(']')?;
        if tail.is_empty() {
            return Some((h, None));
        }
        let p = tail.strip_prefix(':')?.parse::<u16>().ok()?;
        return (p != 0).then_some((h, Some(p)));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let p = p.parse::<u16>().ok()?;
            (p != 0).then_some((h, Some(p)))
        }
        Some(_) => None,
        None => Some((s, None)),
    }
}

/// Syslog facility by name (RFC 5424 table 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    #[default]
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    pub fn code(self) -> u8 {
        use Facility::*;
        match self {
            Kern => 0,
            User => 1,
            Mail => 2,
            Daemon => 3,
            Auth => 4,
            Syslog => 5,
            Lpr => 6,
            News => 7,
            Uucp => 8,
            Cron => 9,
            Authpriv => 10,
            Ftp => 11,
            Local0 => 16,
            Local1 => 17,
            Local2 => 18,
            Local3 => 19,
            Local4 => 20,
            Local5 => 21,
            Local6 => 22,
            Local7 => 23,
        }
    }
}

/// Longest message sent (rsyslog's default maxMessageSize is 8 KiB).
pub const MAX_MESSAGE: usize = 8000;
/// Reasons named in the message text.
pub const TEXT_REASONS: usize = 3;

/// Settings shared by the messages to one target.
#[derive(Clone, Debug)]
pub struct SyslogFormatter {
    pub format: SyslogFormat,
    pub facility: Facility,
    pub hostname: String,
    pub procid: u32,
    /// Enterprise number of the RFC 5424 SD-ID.
    pub sd_enterprise: NonZeroU32,
    /// Sensor name and simboxd version, carried in every format.
    pub origin: Origin,
}

impl SyslogFormatter {
    /// The `[syslog]` settings with `format`; `origin` names this sensor.
    pub fn from_config(cfg: &SyslogConfig, origin: Origin) -> Self {
        SyslogFormatter {
            format: cfg.format,
            facility: cfg.facility,
            hostname: cfg.hostname.clone().unwrap_or_else(system_hostname),
            procid: std::process::id(),
            sd_enterprise: cfg.sd_enterprise,
            origin,
        }
    }

    /// The same settings in another format (a target's own `format`).
    pub fn with_format(&self, format: SyslogFormat) -> Self {
        SyslogFormatter {
            format,
            ..self.clone()
        }
    }

    pub fn format(&self, alert: &Alert) -> String {
        use super::format::{cef, ecs, rfc5424};
        let s = match self.format {
            SyslogFormat::Rfc5424 => format_rfc5424(alert, self),
            SyslogFormat::Rfc3164 => format_rfc3164(alert, self),
            SyslogFormat::Ecs => {
                let head = rfc5424::header(alert, self);
                // The JSON is shrunk to fit (never cut, which would leave it unparsable).
                let body = ecs::format_ecs(alert, &self.origin, MAX_MESSAGE - head.len() - 3);
                format!("{head} - {body}")
            }
            SyslogFormat::Cef => format!(
                "{} - {}",
                rfc5424::header(alert, self),
                cef::format_cef(alert, &self.origin)
            ),
        };
        truncate(s, MAX_MESSAGE)
    }
}

/// The kernel's host name, or `-` (the RFC 5424 NILVALUE).
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".to_string())
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// RFC 6587 octet counting: `LEN SP MSG`.
pub fn octet_frame(msg: &str) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("resolve {0}: {1}")]
    Resolve(String, String),
    #[error("connect {0}: {1}")]
    Connect(String, String),
    #[error("TLS with {0}: {1}")]
    Tls(String, String),
    #[error("send to {0}: {1}")]
    Io(String, String),
    #[error("{0}: timed out")]
    Timeout(String),
    #[error("{0}: HTTP status {1}")]
    Status(String, u16),
    #[error("TLS with {0} refused: {1}")]
    TlsRefused(String, String),
    #[error("{0}: RELP answered {1}")]
    Relp(String, String),
}

impl SendError {
    /// Whether the receiver refused this alert (a 4xx other than 408/429, a certificate that
    /// is not trusted, a RELP error answer) rather than being down or slow (connect, timeout,
    /// 5xx, a broken connection): refusals go to the dead-letter list after some attempts,
    /// outages are retried with backoff for as long as they last.
    pub fn is_refusal(&self) -> bool {
        match self {
            SendError::Status(_, c) => (400..500).contains(c) && *c != 408 && *c != 429,
            SendError::TlsRefused(..) | SendError::Relp(..) => true,
            _ => false,
        }
    }

    /// Whether the receiver itself answered (it is up, only this alert failed).
    pub fn reached_receiver(&self) -> bool {
        matches!(self, SendError::Status(..) | SendError::Relp(..))
    }
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

enum Conn {
    Udp(UdpSocket),
    Stream(Box<dyn Stream>),
    Relp(super::relp::Session),
}

/// One syslog receiver with its (re)connecting connection.
pub struct SyslogSender {
    target: SyslogTarget,
    formatter: Arc<SyslogFormatter>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    conn: Option<Conn>,
}

impl SyslogSender {
    pub fn new(
        target: SyslogTarget,
        formatter: Arc<SyslogFormatter>,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Self {
        SyslogSender {
            target,
            formatter,
            tls,
            timeout,
            conn: None,
        }
    }

    pub fn target(&self) -> &SyslogTarget {
        &self.target
    }

    /// Sends one alert; on any failure the connection is dropped and the next call reconnects.
    pub async fn send(&mut self, alert: &Alert) -> Result<(), SendError> {
        let msg = self.formatter.format(alert);
        let name = self.target.to_string();
        if let Some(Conn::Stream(s)) = &mut self.conn {
            if peer_closed(s.as_mut()).await {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            let c = tokio::time::timeout(self.timeout, self.connect())
                .await
                .map_err(|_| SendError::Timeout(name.clone()))??;
            self.conn = Some(c);
        }
        let result = match &mut self.conn {
            Some(Conn::Udp(sock)) => sock.send(msg.as_bytes()).await.map(|_| ()),
            Some(Conn::Relp(session)) => {
                use super::relp::RelpError;
                match tokio::time::timeout(self.timeout, session.syslog(msg.as_bytes())).await {
                    Ok(Ok(())) => Ok(()),
                    // The receiver is up and said no to this message: keep the session.
                    Ok(Err(RelpError::Refused(code, why))) => {
                        return Err(SendError::Relp(name, format!("{code} {why}")))
                    }
                    Ok(Err(RelpError::Broken(why))) => {
                        Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, why))
                    }
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no RELP answer in time",
                    )),
                }
            }
            Some(Conn::Stream(s)) => {
                let frame = octet_frame(&msg);
                match tokio::time::timeout(self.timeout, async {
                    s.write_all(&frame).await?;
                    s.flush().await
                })
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "write timed out",
                    )),
                }
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "no connection",
            )),
        };
        if let Err(e) = result {
            self.conn = None;
            return Err(SendError::Io(name, e.to_string()));
        }
        Ok(())
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let name = self.target.to_string();
        let addrs: Vec<std::net::SocketAddr> =
            tokio::net::lookup_host((self.target.host.as_str(), self.target.port))
                .await
                .map_err(|e| SendError::Resolve(name.clone(), e.to_string()))?
                .collect();
        let mut last = String::from("no address");
        for addr in addrs {
            match self.target.proto {
                SyslogProto::Udp => {
                    let bind: std::net::SocketAddr = if addr.is_ipv4() {
                        ([0, 0, 0, 0], 0).into()
                    } else {
                        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                    };
                    let r = async {
                        let s = UdpSocket::bind(bind).await?;
                        s.connect(addr).await?;
                        Ok::<_, std::io::Error>(s)
                    }
                    .await;
                    match r {
                        Ok(s) => return Ok(Conn::Udp(s)),
                        Err(e) => last = e.to_string(),
                    }
                }
                SyslogProto::Tcp | SyslogProto::Tls | SyslogProto::Relp => {
                    match TcpStream::connect(addr).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            if self.target.proto == SyslogProto::Tcp {
                                return Ok(Conn::Stream(Box::new(s)));
                            }
                            if self.target.proto == SyslogProto::Relp {
                                return match super::relp::Session::open(Box::new(s)).await {
                                    Ok(session) => Ok(Conn::Relp(session)),
                                    Err(super::relp::RelpError::Broken(why)) => {
                                        Err(SendError::Connect(name, format!("RELP open: {why}")))
                                    }
                                    Err(super::relp::RelpError::Refused(code, why)) => {
                                        Err(SendError::Relp(
                                            name,
                                            format!("open refused: {code} {why}"),
                                        ))
                                    }
                                };
                            }
                            let tls = self.tls.clone().ok_or_else(|| {
                                SendError::Tls(name.clone(), "no TLS settings".into())
                            })?;
                            let s = super::delivery::tls_connect_target(
                                tls,
                                &self.target.host,
                                s,
                                &name,
                            )
                            .await?;
                            return Ok(Conn::Stream(Box::new(s)));
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
            }
        }
        Err(SendError::Connect(name, last))
    }
}

/// Whether the receiver has closed the stream, checked without waiting: a syslog receiver never
/// sends data, so a readable end-of-stream (or error) means the next write would be lost.
pub(crate) async fn peer_closed(s: &mut dyn Stream) -> bool {
    let mut buf = [0u8; 256];
    tokio::select! {
        biased;
        r = s.read(&mut buf) => !matches!(r, Ok(n) if n > 0),
        _ = std::future::ready(()) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{one_line, AlertState, Severity};
    use simboxd_core::model::{Reason, Timestamp, VerdictLevel};

    fn alert() -> Alert {
        Alert {
            id: "sbx-0011223344556677".into(),
            seq: 2,
            idempotency_key: "sbx-0011223344556677:2".into(),
            state: AlertState::Updated,
            severity: Severity::Critical,
            line: "10.0.0.7".parse().unwrap(),
            peer: Some("203.0.113.10".parse().unwrap()),
            site: Some("cottage \"A\" [x]\\y".into()),
            verdict: VerdictLevel::Gateway,
            score: 0.9234,
            reasons: vec![Reason {
                signal: "inbound_many_numbers".into(),
                value: 198.0,
                strength: 0.9,
                detail: "212 calls\nto 198 numbers".into(),
            }],
            first_seen: Timestamp(1_700_000_000_000_000),
            last_seen: Timestamp(1_700_000_060_000_000),
            flagged_at: Some(Timestamp(1_700_000_030_000_000)),
            created: Timestamp(1_700_000_060_500_000),
            kind: crate::alert::AlertKind::Line,
            threat: None,
            lines: Vec::new(),
        }
    }

    fn fmt(format: SyslogFormat, facility: Facility, host: &str, procid: u32) -> SyslogFormatter {
        SyslogFormatter {
            format,
            facility,
            hostname: host.into(),
            procid,
            sd_enterprise: SyslogConfig::default().sd_enterprise,
            origin: Origin::new("tap \"1\" [x]"),
        }
    }

    fn f5424(a: &Alert, facility: Facility, host: &str, procid: u32) -> String {
        format_rfc5424(a, &fmt(SyslogFormat::Rfc5424, facility, host, procid))
    }

    fn f3164(a: &Alert, facility: Facility, host: &str, procid: u32) -> String {
        format_rfc3164(a, &fmt(SyslogFormat::Rfc3164, facility, host, procid))
    }

    #[test]
    fn rfc5424_layout_and_escaping() {
        let m = f5424(&alert(), Facility::Local0, "probe 1", 42);
        // local0 (16) * 8 + critical (2) = 130.
        assert!(
            m.starts_with("<130>1 2023-11-14T22:14:20.500000Z probe1 simboxd 42 updated [simboxd@32473 id=\"sbx-0011223344556677\" seq=\"2\" key=\"sbx-0011223344556677:2\""),
            "{m}"
        );
        assert!(m.contains(r#" site="cottage \"A\" [x\]\\y""#), "{m}");
        assert!(m.contains(r#" score="0.923""#), "{m}");
        assert!(
            m.contains(r#" type="line" line="10.0.0.7" peer="203.0.113.10" site="#),
            "{m}"
        );
        assert!(
            m.contains(&format!(
                r#" signals="inbound_many_numbers" sensor="tap \"1\" [x\]" version="{}"]"#,
                crate::alert::format::VERSION
            )),
            "{m}"
        );
        assert!(m.ends_with("] updated line 10.0.0.7 gateway score 0.92 site cottage \"A\" [x]\\y: inbound_many_numbers (212 calls\\nto 198 numbers)"), "{m}");
        assert!(!m.contains('\n'));
        // Regression (found by the property test): a CR/LF inside an SD value broke the line.
        assert_eq!(escape_sd_value("a\r\n\"]"), "a\\\\r\\\\n\\\"\\]");
    }

    #[test]
    fn rfc3164_layout() {
        let mut a = alert();
        a.state = AlertState::Cleared;
        a.created = Timestamp(1_699_000_000_000_000); // 2023-11-03 08:26:40 UTC
        let m = f3164(&a, Facility::Daemon, "", 7);
        // daemon (3) * 8 + notice (5) = 29; day padded with a space.
        assert!(m.starts_with("<29>Nov  3 08:26:40 - simboxd[7]: [sbx-0011223344556677 key=sbx-0011223344556677:2 severity=critical peer="), "{m}");
        assert!(m.contains("] cleared line 10.0.0.7"), "{m}");
        assert!(
            m.contains(" severity=critical peer=203.0.113.10 sensor=tap\"1\"[x_ version="),
            "{m}"
        );
    }

    #[test]
    fn octet_counting_frames_bytes() {
        assert_eq!(octet_frame("abc"), b"3 abc".to_vec());
        assert_eq!(octet_frame("é"), b"2 \xc3\xa9".to_vec());
        assert_eq!(octet_frame(""), b"0 ".to_vec());
    }

    #[test]
    fn targets_parse_and_print() {
        let t: SyslogTarget = "udp://10.0.0.1".parse().unwrap();
        assert_eq!((t.proto, t.port), (SyslogProto::Udp, 514));
        let t: SyslogTarget = "TLS://logs.example.net:10514".parse().unwrap();
        assert_eq!(t.to_string(), "tls://logs.example.net:10514");
        let t: SyslogTarget = "tcp://[::1]:601".parse().unwrap();
        assert_eq!(
            (t.host.as_str(), t.to_string().as_str()),
            ("::1", "tcp://[::1]:601")
        );
        for bad in [
            "10.0.0.1:514",
            "http://h:1",
            "udp://h:0",
            "udp://h:99999",
            "udp://",
            "tcp://::1:5",
        ] {
            assert!(bad.parse::<SyslogTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ecs_and_cef_fit_a_syslog_message_and_stay_parsable() {
        let mut a = alert();
        a.reasons[0].detail = "é=|\\".repeat(4000);
        a.site = Some("s".repeat(5000));
        let f = fmt(SyslogFormat::Ecs, Facility::Local0, "h", 1);
        let m = f.format(&a);
        assert!(m.len() <= MAX_MESSAGE, "{}", m.len());
        let (head, body) = m.split_once(" - ").unwrap();
        assert!(
            head.starts_with("<130>1 ") && head.ends_with(" updated"),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["simboxd"]["truncated"], true);
        let m = f.with_format(SyslogFormat::Cef).format(&a);
        assert!(m.len() <= MAX_MESSAGE, "{}", m.len());
        assert!(!m.ends_with('\\'), "no escape cut in half");
        assert!(m.contains(" - CEF:0|simboxd|simboxd|"), "{m}");
    }

    #[test]
    fn long_messages_truncated_on_char_boundary() {
        let s = "é".repeat(5000);
        let t = truncate(s, MAX_MESSAGE);
        assert!(t.len() <= MAX_MESSAGE && t.is_char_boundary(t.len()));
    }

    /// Reads the value of SD-PARAM `name` back, undoing RFC 5424 escaping.
    fn sd_param(msg: &str, name: &str) -> Option<String> {
        let start = msg.find(&format!(" {name}=\""))? + name.len() + 3;
        let mut out = String::new();
        let mut chars = msg.get(start..)?.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return Some(out),
                ']' => return None, // an unescaped ']' inside a value would end the SD early
                c => out.push(c),
            }
        }
        None
    }

    proptest::proptest! {
        #[test]
        fn sd_values_round_trip_and_messages_stay_one_line(site in ".{0,60}", detail in ".{0,120}", host in ".{0,40}") {
            let mut a = alert();
            a.site = Some(site.clone());
            a.reasons[0].detail = detail;
            for m in [
                f5424(&a, Facility::Local7, &host, 1),
                f3164(&a, Facility::Local7, &host, 1),
            ] {
                proptest::prop_assert!(!m.contains('\n') && !m.contains('\r'));
            }
            let m = f5424(&a, Facility::Local7, &host, 1);
            proptest::prop_assert_eq!(sd_param(&m, "site"), Some(one_line(&site)));
            proptest::prop_assert_eq!(sd_param(&m, "line"), Some("10.0.0.7".to_string()));
            // HOSTNAME stays one printable token.
            let host_field = m.split(' ').nth(2).unwrap_or("");
            proptest::prop_assert!(!host_field.is_empty() && host_field.chars().all(|c| c.is_ascii_graphic()));
        }
    }
}
