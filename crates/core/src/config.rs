//! Configuration sections owned by the core stages: `[network]` (which addresses are lines,
//! which peers are domestic), `[limits]` (capacity and idle timeout of every table) and, in
//! `detect`, `[detection]`. The application aggregates them with its own sections and maps
//! [`Invalid`] to `file:line:column`.
//!
//! Contract: every section deserialises with defaults for missing keys and rejects unknown ones;
//! `validate` is the one validation style, returning the offending key (dotted, relative to the
//! section) and a message.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A configuration value that deserialised but is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The key, relative to its section; dotted for subsections (`weights.site`).
    pub key: String,
    /// What is wrong with it, for a person.
    pub message: String,
}

impl Invalid {
    /// An error about `key` with `message`.
    pub fn new(key: impl Into<String>, message: String) -> Invalid {
        Invalid {
            key: key.into(),
            message,
        }
    }
}

/// A country lookup (the application opens a MaxMind database and hands it in).
pub trait CountryDb: std::fmt::Debug + Send + Sync {
    /// Whether the database places `ip` in country `iso` (ISO 3166-1 alpha-2).
    fn in_country(&self, ip: std::net::IpAddr, iso: &str) -> bool;
}

/// Which addresses are lines (home) and which peers are domestic (the `[network]` section).
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
    /// The opened `geoip_db`, set by the application (the core never opens files).
    #[serde(skip)]
    pub geoip: Option<std::sync::Arc<dyn CountryDb>>,
}

pub(crate) fn default_home_nets() -> Vec<IpNet> {
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

/// `net.contains(&ip)` as one masked compare: asked for both ends of every packet and event,
/// against every home network (`IpNet::contains` builds the network and broadcast addresses
/// on each call). An address of the other family is never inside.
fn net_contains(net: &IpNet, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match (net, ip) {
        (IpNet::V4(n), IpAddr::V4(a)) => {
            (u32::from(a) ^ u32::from(n.addr())) & u32::from(n.netmask()) == 0
        }
        (IpNet::V6(n), IpAddr::V6(a)) => {
            (u128::from(a) ^ u128::from(n.addr())) & u128::from(n.netmask()) == 0
        }
        _ => false,
    }
}

/// Which end of a packet, flow or call is the subscriber line, and the direction that makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LineEnd {
    pub line: std::net::IpAddr,
    /// `Inbound` (the line receives), `Outbound` (the line sends to outside the home networks)
    /// or `Internal` (both ends are lines; the sender is taken).
    pub direction: crate::model::Direction,
}

impl NetworkConfig {
    /// Whether `ip` is inside the home networks (a line).
    pub fn is_home(&self, ip: std::net::IpAddr) -> bool {
        self.home.iter().any(|n| net_contains(n, ip))
    }

    /// The one rule for which end is the line, used by calls, registrations, media and the
    /// daemon's sharding: the home end; of two home ends, the sender `src`; none when neither
    /// end is home (transit). Callers that need the same answer for both directions of a flow
    /// (media, sharding) pass the two ends in a fixed order (lower address first).
    pub(crate) fn line_end(&self, src: std::net::IpAddr, dst: std::net::IpAddr) -> Option<LineEnd> {
        use crate::model::Direction;
        match (self.is_home(src), self.is_home(dst)) {
            (true, false) => Some(LineEnd {
                line: src,
                direction: Direction::Outbound,
            }),
            (false, true) => Some(LineEnd {
                line: dst,
                direction: Direction::Inbound,
            }),
            (true, true) => Some(LineEnd {
                line: src,
                direction: Direction::Internal,
            }),
            (false, false) => None,
        }
    }
    /// Whether `ip` is home, inside the domestic prefixes, or placed in `home_country` by the
    /// country database.
    pub fn is_domestic(&self, ip: std::net::IpAddr) -> bool {
        self.is_home(ip)
            || self.domestic.iter().any(|n| net_contains(n, ip))
            || match (&self.geoip, &self.home_country) {
                (Some(g), Some(home)) => g.in_country(ip, home),
                _ => false,
            }
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
    /// An IP fragment reassembly not completed after this long is dropped.
    pub fragment_timeout_secs: u32,
    /// TCP streams carrying SIP that are being framed.
    pub tcp_streams: usize,
    /// Bytes buffered per TCP stream (a message larger than this is dropped and counted).
    pub tcp_stream_bytes: usize,
    /// Bytes buffered across all TCP streams.
    pub tcp_total_bytes: usize,
    /// A TCP stream idle this long is forgotten.
    pub tcp_timeout_secs: u32,
    /// INVITE dialogs tracked at once.
    pub dialogs: usize,
    /// A dialog with no final response after this long is closed as incomplete.
    pub dialog_setup_timeout_secs: u32,
    /// A dialog that has seen nothing but its INVITE (no provisional or final response, no
    /// other request) is closed as incomplete after this long: RFC 3261 Timer B (64*T1 = 32 s)
    /// is when the caller itself gives up. Keeps a flood of unanswered INVITEs cheap.
    pub dialog_no_response_timeout_secs: u32,
    /// An established dialog with no BYE after this long is closed.
    pub dialog_timeout_secs: u32,
    /// UDP media flows tracked at once.
    pub media_flows: usize,
    /// A media flow idle this long is reported and removed.
    pub media_timeout_secs: u32,
    /// REGISTER transactions awaiting a final response.
    pub registrations: usize,
    /// A REGISTER with no final response after this long is reported as `no-response`.
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
            dialog_no_response_timeout_secs: 32,
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

impl LimitsConfig {
    /// Capacities that cannot work are refused.
    pub fn validate(&self) -> Result<(), Invalid> {
        let checks: [(&str, bool); 8] = [
            ("fragments", self.fragments > 0),
            ("tcp_streams", self.tcp_streams > 0),
            ("tcp_stream_bytes", self.tcp_stream_bytes >= 1024),
            ("dialogs", self.dialogs > 0),
            ("media_flows", self.media_flows > 0),
            ("registrations", self.registrations > 0),
            ("max_sip_message", self.max_sip_message >= 512),
            ("max_sip_headers", self.max_sip_headers >= 8),
        ];
        match checks.iter().find(|(_, ok)| !ok) {
            Some((key, _)) => Err(Invalid::new(*key, format!("limits.{key} is too small"))),
            None => Ok(()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    proptest::proptest! {
        #[test]
        fn net_contains_is_ipnet_contains(
            net in proptest::prelude::any::<u128>(),
            addr in proptest::prelude::any::<u128>(),
            len in 0u8..=128,
            v4_net in proptest::prelude::any::<bool>(),
            v4_addr in proptest::prelude::any::<bool>(),
            near in proptest::prelude::any::<bool>(),
        ) {
            // `near`: the address shares the network's high bits (a hit more often than not).
            let addr = if near { net ^ (addr >> len.min(127)) } else { addr };
            let n: IpNet = if v4_net {
                IpNet::new(IpAddr::V4(Ipv4Addr::from(net as u32)), len % 33)
            } else {
                IpNet::new(IpAddr::V6(Ipv6Addr::from(net)), len)
            }
            .unwrap();
            let a = if v4_addr {
                let shift = if v4_net { 0 } else { 96 };
                IpAddr::V4(Ipv4Addr::from((addr >> shift) as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(addr))
            };
            proptest::prop_assert_eq!(net_contains(&n, a), n.contains(&a));
        }
    }

    #[test]
    fn home_networks_by_mask() {
        let n = NetworkConfig::default();
        assert!(n.is_home("10.1.2.3".parse().unwrap()));
        assert!(n.is_home("100.127.255.255".parse().unwrap()));
        assert!(!n.is_home("100.128.0.0".parse().unwrap()));
        assert!(n.is_home("fd00::1".parse().unwrap()));
        assert!(!n.is_home("8.8.8.8".parse().unwrap()));
        assert!(!n.is_home("2001:db8::1".parse().unwrap()));
    }
}
