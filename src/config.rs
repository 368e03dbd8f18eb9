//! Configuration: TOML with every section optional and every key defaulted.
//!
//! Contract: unknown keys and bad values are errors naming the file, line, column and reason
//! (`ConfigError::Invalid`); a loaded `Config` is valid, so later stages never re-check it.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub capture: CaptureConfig,
    pub network: NetworkConfig,
    pub limits: LimitsConfig,
    pub alert: crate::alert::AlertConfig,
    pub syslog: crate::alert::syslog::SyslogConfig,
    pub webhook: crate::alert::webhook::WebhookConfig,
    pub storage: crate::alert::outbox::StorageConfig,
    pub privacy: crate::privacy::PrivacyConfig,
    /// Line profiles, signal weights and verdict thresholds (see `detect::DetectionConfig`).
    pub detection: crate::detect::DetectionConfig,
    pub daemon: crate::daemon::DaemonConfig,
    pub http: crate::daemon::http::HttpConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Live interface to capture from (`any`: all of them, as Linux cooked frames).
    pub interface: Option<String>,
    /// More live interfaces, each captured by its own thread (a tap often has one port per
    /// direction). Used together with `interface` (or alone); not with `file`.
    pub interfaces: Vec<String>,
    /// Capture file to replay instead of an interface.
    pub file: Option<PathBuf>,
    /// BPF filter; the default keeps IP fragments (non-first fragments carry no ports).
    pub filter: String,
    pub snaplen: u32,
    pub buffer_mib: u32,
    pub promiscuous: bool,
    pub immediate: bool,
}

/// Keeps all UDP/TCP plus IPv4 and IPv6 fragments, MPLS, PPPoE and VLAN-tagged frames.
/// `vlan` comes last and MPLS/PPPoE are matched by ethertype: libpcap's `vlan`, `mpls` and
/// `pppoes` keywords shift the offsets of everything after them ("unsupported protocol over
/// mpls"). Ethernet-only: files with other link types are replayed unfiltered by the daemon.
pub const DEFAULT_FILTER: &str =
    "udp or tcp or (ip[6:2] & 0x1fff != 0) or ip6 or ether proto 0x8847 or ether proto 0x8864 or vlan";

/// What the default filter becomes on a link type that is not Ethernet (`any` gives Linux cooked
/// frames, tunnels raw IP): libpcap has no `vlan` there ("no VLAN support for Linux cooked v1")
/// and the kernel has already removed VLAN tags, MPLS and PPPoE headers are Ethernet-only.
pub const DEFAULT_FILTER_NOT_ETHERNET: &str = "udp or tcp or (ip[6:2] & 0x1fff != 0) or ip6";

/// The filter to compile on a capture of link type `link`: the configured one, except that the
/// default filter is narrowed to what libpcap supports on non-Ethernet links.
pub fn filter_for_link(filter: &str, link: crate::model::LinkType) -> &str {
    if filter == DEFAULT_FILTER && link != crate::model::LinkType::ETHERNET {
        DEFAULT_FILTER_NOT_ETHERNET
    } else {
        filter
    }
}

impl CaptureConfig {
    /// Every live interface configured: `interface` first, then `interfaces`, without repeats.
    pub fn interface_list(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for name in self.interface.iter().chain(self.interfaces.iter()) {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interface: None,
            interfaces: Vec::new(),
            file: None,
            filter: DEFAULT_FILTER.to_string(),
            snaplen: 65535,
            buffer_mib: 64,
            promiscuous: true,
            immediate: true,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Subscriber prefixes: an address inside them is a line.
    pub home: Vec<IpNet>,
    /// Prefixes counted as domestic peers (national providers).
    pub domestic: Vec<IpNet>,
    /// MaxMind-format country database (GeoLite2-Country or GeoIP2-Country `.mmdb`). With
    /// `home_country`, a peer the database places in that country counts as domestic too.
    pub geoip_db: Option<PathBuf>,
    /// ISO 3166-1 alpha-2 code of the home country (e.g. "DE"), used with `geoip_db`.
    pub home_country: Option<String>,
    /// The opened `geoip_db` (loaded by `Config::parse` or `NetworkConfig::open_geoip`).
    #[serde(skip)]
    pub geoip: Option<std::sync::Arc<GeoIp>>,
}

/// A country database opened once and shared (lookups are read-only).
pub struct GeoIp(maxminddb::Reader<Vec<u8>>);

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeoIp")
    }
}

impl GeoIp {
    pub fn open(path: &Path) -> Result<GeoIp, String> {
        maxminddb::Reader::open_readfile(path)
            .map(GeoIp)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    }

    /// Whether the database places `ip` in country `iso` (ISO 3166-1 alpha-2).
    pub fn in_country(&self, ip: std::net::IpAddr, iso: &str) -> bool {
        let Ok(found) = self.0.lookup(ip) else {
            return false;
        };
        matches!(
            found.decode::<maxminddb::geoip2::Country>(),
            Ok(Some(c)) if c.country.iso_code.is_some_and(|c| c.eq_ignore_ascii_case(iso))
        )
    }
}

pub fn default_home_nets() -> Vec<IpNet> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            home: default_home_nets(),
            domestic: Vec::new(),
            geoip_db: None,
            home_country: None,
            geoip: None,
        }
    }
}

impl NetworkConfig {
    pub fn is_home(&self, ip: std::net::IpAddr) -> bool {
        self.home.iter().any(|n| n.contains(&ip))
    }
    pub fn is_domestic(&self, ip: std::net::IpAddr) -> bool {
        self.is_home(ip)
            || self.domestic.iter().any(|n| n.contains(&ip))
            || match (&self.geoip, &self.home_country) {
                (Some(g), Some(home)) => g.in_country(ip, home),
                _ => false,
            }
    }

    /// Opens `geoip_db` (checking `home_country`); a message saying what is wrong otherwise.
    pub fn open_geoip(&mut self) -> Result<(), String> {
        let Some(path) = &self.geoip_db else {
            return Ok(());
        };
        match &self.home_country {
            Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {}
            Some(c) => {
                return Err(format!(
                    "home_country {c:?} is not an ISO 3166-1 alpha-2 code"
                ))
            }
            None => return Err("geoip_db needs home_country (ISO 3166-1 alpha-2)".into()),
        }
        self.geoip = Some(std::sync::Arc::new(GeoIp::open(path)?));
        Ok(())
    }
}

/// Capacities and idle timeouts of every table. Each table evicts when full and counts it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// IP fragment reassemblies in progress.
    pub fragments: usize,
    /// Bytes held by all fragment reassemblies together.
    pub fragment_bytes: usize,
    pub fragment_timeout_secs: u32,
    /// TCP streams carrying SIP that are being framed.
    pub tcp_streams: usize,
    /// Bytes buffered per TCP stream (a message larger than this is dropped and counted).
    pub tcp_stream_bytes: usize,
    /// Bytes buffered across all TCP streams.
    pub tcp_total_bytes: usize,
    pub tcp_timeout_secs: u32,
    /// INVITE dialogs tracked at once.
    pub dialogs: usize,
    /// A dialog with no final response after this long is closed as incomplete.
    pub dialog_setup_timeout_secs: u32,
    /// An established dialog with no BYE after this long is closed.
    pub dialog_timeout_secs: u32,
    /// UDP media flows tracked at once.
    pub media_flows: usize,
    /// A media flow idle this long is reported and removed.
    pub media_timeout_secs: u32,
    /// REGISTER transactions awaiting a final response.
    pub registrations: usize,
    pub registration_timeout_secs: u32,
    /// Largest SIP message accepted (bytes).
    pub max_sip_message: usize,
    /// Most headers parsed in one SIP message.
    pub max_sip_headers: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            fragments: 4096,
            fragment_bytes: 16 << 20,
            fragment_timeout_secs: 30,
            tcp_streams: 8192,
            tcp_stream_bytes: 256 << 10,
            tcp_total_bytes: 64 << 20,
            tcp_timeout_secs: 600,
            dialogs: 200_000,
            dialog_setup_timeout_secs: 300,
            dialog_timeout_secs: 4 * 3600,
            media_flows: 200_000,
            media_timeout_secs: 30,
            registrations: 100_000,
            registration_timeout_secs: 64,
            max_sip_message: 256 << 10,
            max_sip_headers: 96,
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        Config::parse(&text, &file)
    }

    /// Parses config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Invalid {
                file: file.to_string(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        cfg.validate(text, file)?;
        let mut cfg = cfg;
        cfg.network.open_geoip().map_err(|message| {
            let (line, column) = key_position(text, "network", "geoip_db");
            ConfigError::Invalid {
                file: file.to_string(),
                line,
                column,
                message: format!("network.{message}"),
            }
        })?;
        Ok(cfg)
    }

    fn validate(&self, text: &str, file: &str) -> Result<(), ConfigError> {
        let l = &self.limits;
        let checks: [(&str, bool); 8] = [
            ("fragments", l.fragments > 0),
            ("tcp_streams", l.tcp_streams > 0),
            ("tcp_stream_bytes", l.tcp_stream_bytes >= 1024),
            ("dialogs", l.dialogs > 0),
            ("media_flows", l.media_flows > 0),
            ("registrations", l.registrations > 0),
            ("max_sip_message", l.max_sip_message >= 512),
            ("max_sip_headers", l.max_sip_headers >= 8),
        ];
        for (key, ok) in checks {
            if !ok {
                let (line, column) = key_position(text, "limits", key);
                return Err(ConfigError::Invalid {
                    file: file.to_string(),
                    line,
                    column,
                    message: format!("limits.{key} is too small"),
                });
            }
        }
        let sections = [
            ("alert", self.alert.validate()),
            ("webhook", self.webhook.validate()),
            ("storage", self.storage.validate()),
            ("privacy", self.privacy.validate()),
        ];
        for (section, r) in sections {
            if let Err((key, message)) = r {
                let (line, column) = key_position(text, section, key);
                return Err(ConfigError::Invalid {
                    file: file.to_string(),
                    line,
                    column,
                    message,
                });
            }
        }
        if let Err((key, message)) = self.detection.validate() {
            let last = key.rsplit('.').next().unwrap_or(&key);
            let section = match key.rsplit_once('.') {
                Some((sub, _)) => format!("detection.{sub}"),
                None => "detection".to_string(),
            };
            let (line, column) = key_position(text, &section, last);
            return Err(ConfigError::Invalid {
                file: file.to_string(),
                line,
                column,
                message: format!("detection.{key}: {message}"),
            });
        }
        if let Some((section, key, message)) = crate::daemon::check_sections(self) {
            let (line, column) = key_position(text, section, key);
            return Err(ConfigError::Invalid {
                file: file.to_string(),
                line,
                column,
                message,
            });
        }
        Ok(())
    }
}

/// 1-based line and column of byte offset `pos` in `text`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text.as_bytes()[..pos];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = pos
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, col)
}

/// Best-effort position of `key` inside `[section]` for errors found after parsing.
pub fn key_position(text: &str, section: &str, key: &str) -> (usize, usize) {
    let mut in_section = false;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.starts_with('[') {
            in_section = l.trim_matches(|c| c == '[' || c == ']').trim() == section;
            continue;
        }
        if in_section {
            if let Some(rest) = l.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return (i + 1, raw.len() - raw.trim_start().len() + 1);
                }
            }
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_all_defaults() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.limits.dialogs, LimitsConfig::default().dialogs);
        assert!(c.network.is_home("192.168.1.2".parse().unwrap()));
        assert!(!c.network.is_home("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn unknown_key_names_file_line_column() {
        let err = Config::parse("[limits]\ndialogs = 10\nbogus = 1\n", "x.toml").unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("x.toml:3:1: "), "{s}");
        assert!(s.contains("bogus"), "{s}");
    }

    #[test]
    fn bad_cidr_is_located() {
        let err = Config::parse("[network]\nhome = [\"10.0.0.0/33\"]\n", "n.toml").unwrap_err();
        assert!(err.to_string().starts_with("n.toml:2:"), "{err}");
    }

    #[test]
    fn detection_section_is_parsed_and_validated() {
        let c = Config::parse(
            "[detection]\nmax_lines = 10\n[detection.weights]\nsite = 0.2\n",
            "d.toml",
        )
        .unwrap();
        assert_eq!(c.detection.max_lines, 10);
        assert_eq!(c.detection.weights.site, 0.2);
        let err = Config::parse("[detection.weights]\n\nsite = 2.0\n", "d.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "d.toml:3:1: detection.weights.site: must be within 0..1"
        );
    }

    #[test]
    fn zero_capacity_is_rejected_with_position() {
        let err = Config::parse("[limits]\n\n  dialogs = 0\n", "z.toml").unwrap_err();
        assert_eq!(err.to_string(), "z.toml:3:3: limits.dialogs is too small");
    }
}
