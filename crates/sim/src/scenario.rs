//! Scenarios: which populations of lines to simulate, for how long, from when.
//!
//! TOML with `deny_unknown_fields`; errors name the file, line and column. Every per-population
//! key except `kind` is optional: what is not given is drawn per line from realistic ranges (and
//! recorded in the labels' `params`).
//!
//! ```toml
//! duration = "30m"                  # 90s, 30m, 2h, or seconds
//! scale = 1.0                       # multiplies every count (at least 1 line per group)
//! start = "2026-01-05T08:00:00Z"
//! [[population]]
//! kind = "gateway"                  # gateway, gateway-scrambled, gateway-opaque, household,
//!                                   # office-pbx, call-centre, help-desk, expat-voip,
//!                                   # app-calls, gaming, video, camera, compromised-pbx
//! name = "probed-gw"                # what [[noise]] targets refer to
//! count = 1
//! site = "site-1"                   # lines of one site share a softswitch
//! channels = 8                      # gateways 1/4/8/16/32; trunk size for PBX/dialer/help desk
//! registration = "per-port"         # or "trunk" (gateways)
//! ua = "vendor"                     # or "softphone" (spoofed) or "none" (gateways)
//! codec = "G729"                    # or "PCMU", "PCMA"
//! ptime = 20                        # or 30
//! shift = "8h/16h"                  # or "always"
//! answer_ratio = 0.35
//! calls_per_hour = 4.0              # lines with random arrivals (not gateways/dialers)
//! ipv6 = false
//! tcp_share = 0.2                   # share of lines with SIP over TCP (household/expat/office)
//! vlan_share = 0.2                  # share of lines whose frames carry an 802.1Q tag
//! big_invite_share = 0.05           # share of INVITEs padded past the MTU (IP-fragmented)
//! unsolicited = "reject"            # or "ignore", "answer" (camera, compromised-pbx)
//! [[noise]]                         # what the internet sends (see `noise`); not scaled
//! kind = "sweep"                    # sweep, enumeration, toll-fraud, invite-flood,
//!                                   # register-flood, framing, robocall
//! targets = "all"                   # or ["probed-gw", ...]
//! count = 1                         # attackers, each from its own address
//! after = "20s"                     # first request after the capture start
//! rate = 10.0                       # requests/s (sweep, enumeration, toll-fraud, floods)
//! attempts = 200                    # per target (enumeration, toll-fraud)
//! passes = 2                        # sweep; method = "INVITE" (enumeration);
//!                                   # spoofed/burst (floods); rtp/channels (framing);
//!                                   # calls_per_hour/answer_ratio (robocall)
//! ```

use super::SimError;
use serde::{Deserialize, Serialize};
use simboxd_core::model::Timestamp;

/// Most lines in one run (addresses are drawn from one /10 without reuse).
pub const MAX_LINES: u64 = 50_000;

/// Default capture start: a Monday morning.
pub const DEFAULT_START: &str = "2026-01-05T08:00:00Z";

/// What a simulated line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Gateway,
    GatewayScrambled,
    GatewayOpaque,
    Household,
    OfficePbx,
    CallCentre,
    HelpDesk,
    ExpatVoip,
    AppCalls,
    Gaming,
    Video,
    /// IP camera or door intercom with a SIP account: auto-answers INVITEs, sends no voice.
    Camera,
    /// An office PBX that relays toll-fraud calls (IRSF): fraud of another kind, not a gateway.
    CompromisedPbx,
}

impl Kind {
    pub fn is_gateway(self) -> bool {
        matches!(
            self,
            Kind::Gateway | Kind::GatewayScrambled | Kind::GatewayOpaque
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gateway => "gateway",
            Kind::GatewayScrambled => "gateway-scrambled",
            Kind::GatewayOpaque => "gateway-opaque",
            Kind::Household => "household",
            Kind::OfficePbx => "office-pbx",
            Kind::CallCentre => "call-centre",
            Kind::HelpDesk => "help-desk",
            Kind::ExpatVoip => "expat-voip",
            Kind::AppCalls => "app-calls",
            Kind::Gaming => "gaming",
            Kind::Video => "video",
            Kind::Camera => "camera",
            Kind::CompromisedPbx => "compromised-pbx",
        }
    }
    /// An IP PBX on a SIP trunk (office hours, DID block).
    pub fn is_pbx(self) -> bool {
        matches!(self, Kind::OfficePbx | Kind::CompromisedPbx)
    }
    /// Lines with a plain SIP stack that unsolicited requests can reach.
    pub fn has_sip(self) -> bool {
        !matches!(
            self,
            Kind::GatewayScrambled
                | Kind::GatewayOpaque
                | Kind::AppCalls
                | Kind::Gaming
                | Kind::Video
        )
    }
}

/// How a line treats SIP requests it did not ask for (scans, probes, fraud attempts, floods).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unsolicited {
    /// No response at all.
    Ignore,
    /// Error responses (403/404/486, 401 challenges to REGISTER), 200 to OPTIONS.
    Reject,
    /// Answers INVITEs with 200 (cameras: no voice back; a compromised PBX relays the call).
    Answer,
}

/// A source of unsolicited traffic (see `noise`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseKind {
    /// OPTIONS to every target, about one per line per pass (SIPVicious svmap and the like).
    Sweep,
    /// REGISTER or INVITE for extension after extension at each target (svwar).
    Enumeration,
    /// INVITEs with SDP to international/premium numbers through every dial prefix.
    TollFraud,
    InviteFlood,
    RegisterFlood,
    /// Gateway-shaped INVITE stream (distinct mobile numbers, N at a time) at an innocent line.
    Framing,
    /// Short spam calls into households through their own provider.
    Robocall,
}

impl NoiseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoiseKind::Sweep => "sweep",
            NoiseKind::Enumeration => "enumeration",
            NoiseKind::TollFraud => "toll-fraud",
            NoiseKind::InviteFlood => "invite-flood",
            NoiseKind::RegisterFlood => "register-flood",
            NoiseKind::Framing => "framing",
            NoiseKind::Robocall => "robocall",
        }
    }
    pub fn is_flood(self) -> bool {
        matches!(self, NoiseKind::InviteFlood | NoiseKind::RegisterFlood)
    }
}

/// `targets = "all"` or a list of population names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Targets {
    All(String),
    Named(Vec<String>),
}

/// Method an enumeration probes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProbeMethod {
    Register,
    Invite,
}

/// One group of attackers (or one robocall campaign) and the lines they hit.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    pub kind: NoiseKind,
    /// Population names, or "all" (robocall: every household and expatriate line).
    pub targets: Targets,
    /// Attackers in this group, each from its own address (not scaled).
    #[serde(default = "one")]
    pub count: u32,
    /// When the first request goes out, after the capture start (default: drawn early in the run).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub after: Option<u64>,
    /// User-Agent of the tool (default: drawn from tools seen in the wild for this kind).
    #[serde(default)]
    pub ua: Option<String>,
    /// Requests per second (sweep, enumeration, floods) or seconds between attempts (toll-fraud:
    /// `rate` still per second, e.g. 0.2).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Requests per target (enumeration, toll-fraud).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Times over the target list (sweep).
    #[serde(default)]
    pub passes: Option<u32>,
    /// REGISTER or INVITE (enumeration).
    #[serde(default)]
    pub method: Option<ProbeMethod>,
    /// A random source address per request (floods).
    #[serde(default)]
    pub spoofed: Option<bool>,
    /// Length of the burst (floods).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub burst: Option<u64>,
    /// One-way voice-shaped RTP towards the line with every attempt (framing).
    #[serde(default)]
    pub rtp: Option<bool>,
    /// Attempts in progress at once (framing).
    #[serde(default)]
    pub channels: Option<u32>,
    /// Calls per hour into each target (robocall).
    #[serde(default)]
    pub calls_per_hour: Option<f64>,
    /// Share of robocalls the household answers (briefly).
    #[serde(default)]
    pub answer_ratio: Option<f64>,
}

/// How a gateway's SIM ports reach the softswitch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegMode {
    /// One REGISTER account per SIM port.
    PerPort,
    /// No registration: the softswitch sends to the box's address.
    Trunk,
}

/// Which User-Agent/Server string a line shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UaMode {
    Vendor,
    Softphone,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CodecName {
    G729,
    Pcmu,
    Pcma,
}

/// One group of lines of the same kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    pub kind: Kind,
    /// Lines in this group (multiplied by the scenario's scale, at least 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Site name: lines of one site share a softswitch (gateways).
    #[serde(default)]
    pub site: Option<String>,
    /// Gateway channels (1, 4, 8, 16, 32) or PBX/dialer/help-desk trunk channels.
    #[serde(default)]
    pub channels: Option<u32>,
    #[serde(default)]
    pub ua: Option<UaMode>,
    #[serde(default)]
    pub registration: Option<RegMode>,
    #[serde(default)]
    pub codec: Option<CodecName>,
    /// Packetisation time in ms (20 or 30).
    #[serde(default)]
    pub ptime: Option<u32>,
    /// Shift pattern: "always" or "ON/OFF" durations, e.g. "8h/16h".
    #[serde(default)]
    pub shift: Option<String>,
    /// Share of answered attempts (0..1).
    #[serde(default)]
    pub answer_ratio: Option<f64>,
    /// Call (or session) attempts per hour for lines with random arrivals.
    #[serde(default)]
    pub calls_per_hour: Option<f64>,
    /// IPv6 line (fd00::/8) talking to IPv6 peers.
    #[serde(default)]
    pub ipv6: Option<bool>,
    /// Share of lines of this group whose SIP goes over TCP.
    #[serde(default)]
    pub tcp_share: Option<f64>,
    /// Share of lines of this group whose frames carry an 802.1Q tag.
    #[serde(default)]
    pub vlan_share: Option<f64>,
    /// Share of INVITEs that are large (and so IP-fragmented over UDP/IPv4).
    #[serde(default)]
    pub big_invite_share: Option<f64>,
    /// Name that `[[noise]]` targets refer to (unique).
    #[serde(default)]
    pub name: Option<String>,
    /// How the lines treat unsolicited SIP (default by kind; households drawn).
    #[serde(default)]
    pub unsolicited: Option<Unsolicited>,
}

fn one() -> u32 {
    1
}

fn default_scale() -> f64 {
    1.0
}

fn default_duration() -> u64 {
    1800
}

fn default_start() -> Timestamp {
    Timestamp::parse_rfc3339(DEFAULT_START).unwrap_or_default()
}

/// A simulation: duration, scale, start and populations.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Simulated seconds (TOML `duration = "30m"`: `90s`, `30m`, `2h` or plain seconds).
    #[serde(
        rename = "duration",
        default = "default_duration",
        deserialize_with = "de_duration"
    )]
    pub duration_secs: u64,
    /// Multiplies every population's line count.
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// Capture start (RFC 3339, quoted or as a TOML datetime).
    #[serde(default = "default_start", deserialize_with = "de_start")]
    pub start: Timestamp,
    #[serde(default, rename = "population")]
    pub populations: Vec<Population>,
    #[serde(default, rename = "noise")]
    pub noise: Vec<Noise>,
}

/// Where a validation error is: the top level, a `[[population]]` or a `[[noise]]` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    Top,
    Population(usize),
    Noise(usize),
}

/// Most attackers in one run (each has its own address).
pub const MAX_ATTACKERS: u32 = 100;

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Dur {
        Secs(u64),
        Text(String),
    }
    match Dur::deserialize(d)? {
        Dur::Secs(s) => Ok(s),
        Dur::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

fn de_opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_duration(d).map(Some)
}

fn de_start<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Start {
        Text(String),
        Toml(toml::value::Datetime),
    }
    let text = match Start::deserialize(d)? {
        Start::Text(t) => t,
        Start::Toml(t) => t.to_string(),
    };
    Timestamp::parse_rfc3339(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "start must be an RFC 3339 time with offset, not {text:?}"
        ))
    })
}

/// Parses `90s`, `30m`, `2h`, `1d` or plain seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (s.get(..i).unwrap_or(""), 1),
        Some((i, 'm')) => (s.get(..i).unwrap_or(""), 60),
        Some((i, 'h')) => (s.get(..i).unwrap_or(""), 3600),
        Some((i, 'd')) => (s.get(..i).unwrap_or(""), 86400),
        _ => (s, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (use e.g. 90s, 30m, 2h)"))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(format!("not a duration: {s:?}"));
    }
    Ok((n * mult as f64).round() as u64)
}

/// A shift pattern in seconds: on for `on`, off for `off`, repeating.
pub fn parse_shift(s: &str) -> Result<Option<(u64, u64)>, String> {
    if s.trim() == "always" {
        return Ok(None);
    }
    let (on, off) = s.split_once('/').ok_or_else(|| {
        format!("shift must be \"always\" or \"ON/OFF\" (e.g. \"8h/16h\"), not {s:?}")
    })?;
    let on = parse_duration(on)?;
    let off = parse_duration(off)?;
    if on == 0 {
        return Err("shift on-time must be > 0".to_string());
    }
    Ok(Some((on, off)))
}

impl Scenario {
    /// The built-in mix with every population.
    pub fn builtin() -> Scenario {
        let text = include_str!("../../../config/scenario-builtin.toml");
        // The built-in text is tested to parse; fall back to an empty mix rather than panic.
        Scenario::from_toml(text, "builtin.toml").unwrap_or(Scenario {
            duration_secs: default_duration(),
            scale: 1.0,
            start: default_start(),
            populations: Vec::new(),
            noise: Vec::new(),
        })
    }

    /// Parses and validates scenario text; `file` names it in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Scenario, SimError> {
        let sc: Scenario = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| simboxd_core::config::line_col(text, s.start))
                .unwrap_or((1, 1));
            SimError::Scenario {
                file: file.to_string(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        sc.validate().map_err(|(at, message)| {
            let (line, column) = match at {
                At::Top => (1, 1),
                At::Population(i) => header_position(text, "[[population]]", i),
                At::Noise(i) => header_position(text, "[[noise]]", i),
            };
            SimError::Scenario {
                file: file.to_string(),
                line,
                column,
                message,
            }
        })?;
        Ok(sc)
    }

    /// Checks ranges and references; the error says where.
    pub fn validate(&self) -> Result<(), (At, String)> {
        if !(self.scale.is_finite() && self.scale > 0.0 && self.scale <= 1000.0) {
            return Err((
                At::Top,
                format!("scale must be in (0, 1000], not {}", self.scale),
            ));
        }
        if self.duration_secs == 0 || self.duration_secs > 31 * 86400 {
            return Err((At::Top, "duration must be between 1s and 31d".to_string()));
        }
        // pcap seconds are u32: keep the whole run inside 1970..2106.
        let end = self.start.micros() / 1_000_000 + self.duration_secs as i64;
        if self.start.micros() < 0 || end > i64::from(u32::MAX) {
            return Err((At::Top, "start must be between 1970 and 2106".to_string()));
        }
        let lines: u64 = self
            .populations
            .iter()
            .map(|p| u64::from(self.scaled_count(p)))
            .sum();
        if lines > MAX_LINES {
            return Err((
                At::Top,
                format!("{lines} lines after scaling; at most {MAX_LINES}"),
            ));
        }
        for (i, p) in self.populations.iter().enumerate() {
            let at = At::Population(i);
            if p.count > 10_000 {
                return Err((at, "count must be <= 10000".to_string()));
            }
            if let Some(c) = p.channels {
                if c == 0 || c > 256 {
                    return Err((at, "channels must be 1..=256".to_string()));
                }
            }
            for (name, v) in [
                ("answer_ratio", p.answer_ratio),
                ("tcp_share", p.tcp_share),
                ("vlan_share", p.vlan_share),
                ("big_invite_share", p.big_invite_share),
            ] {
                if let Some(v) = v {
                    if !(0.0..=1.0).contains(&v) {
                        return Err((at, format!("{name} must be in 0..=1")));
                    }
                }
            }
            if let Some(r) = p.calls_per_hour {
                if !(r.is_finite() && r > 0.0 && r <= 100_000.0) {
                    return Err((at, "calls_per_hour must be in (0, 100000]".to_string()));
                }
            }
            if let Some(pt) = p.ptime {
                if pt != 20 && pt != 30 {
                    return Err((at, "ptime must be 20 or 30".to_string()));
                }
            }
            if let Some(s) = &p.shift {
                parse_shift(s).map_err(|e| (at, e))?;
            }
            if let Some(name) = &p.name {
                if name.trim().is_empty() || name.eq_ignore_ascii_case("all") {
                    return Err((
                        at,
                        format!("name must be a word other than \"all\", not {name:?}"),
                    ));
                }
                if self.populations[..i]
                    .iter()
                    .any(|q| q.name.as_ref() == Some(name))
                {
                    return Err((at, format!("name {name:?} is used twice")));
                }
            }
            match p.unsolicited {
                Some(Unsolicited::Answer)
                    if !matches!(p.kind, Kind::Camera | Kind::CompromisedPbx) =>
                {
                    return Err((
                        at,
                        "unsolicited = \"answer\" is for camera and compromised-pbx lines"
                            .to_string(),
                    ));
                }
                Some(u) if u != Unsolicited::Ignore && !p.kind.has_sip() => {
                    return Err((
                        at,
                        format!(
                            "{} lines have no plain SIP stack: unsolicited must be \"ignore\"",
                            p.kind.as_str()
                        ),
                    ));
                }
                _ => {}
            }
        }
        let attackers: u32 = self
            .noise
            .iter()
            .filter(|n| n.kind != NoiseKind::Robocall)
            .map(|n| n.count)
            .fold(0u32, u32::saturating_add);
        if attackers > MAX_ATTACKERS {
            return Err((
                At::Top,
                format!("{attackers} attackers in [[noise]]; at most {MAX_ATTACKERS}"),
            ));
        }
        for (i, n) in self.noise.iter().enumerate() {
            self.validate_noise(n).map_err(|m| (At::Noise(i), m))?;
        }
        Ok(())
    }

    fn validate_noise(&self, n: &Noise) -> Result<(), String> {
        let k = n.kind;
        match &n.targets {
            Targets::All(s) if s == "all" => {}
            Targets::All(s) => {
                return Err(format!(
                    "targets must be \"all\" or a list of population names, not {s:?}"
                ))
            }
            Targets::Named(names) => {
                if names.is_empty() {
                    return Err("targets is empty".to_string());
                }
                for name in names {
                    let Some(p) = self
                        .populations
                        .iter()
                        .find(|p| p.name.as_ref() == Some(name))
                    else {
                        return Err(format!("targets: no population is named {name:?}"));
                    };
                    if k == NoiseKind::Robocall
                        && !matches!(p.kind, Kind::Household | Kind::ExpatVoip)
                    {
                        return Err(format!(
                            "robocall targets are household or expat-voip lines, {name:?} is {}",
                            p.kind.as_str()
                        ));
                    }
                }
            }
        }
        if n.count == 0 || n.count > MAX_ATTACKERS {
            return Err(format!("count must be 1..={MAX_ATTACKERS}"));
        }
        // Keys that only mean something for some kinds.
        let only = |set: bool, key: &str, kinds: &[NoiseKind]| -> Result<(), String> {
            if set && !kinds.contains(&k) {
                let names: Vec<&str> = kinds.iter().map(|x| x.as_str()).collect();
                return Err(format!(
                    "{key} applies to {} noise, not {}",
                    names.join("/"),
                    k.as_str()
                ));
            }
            Ok(())
        };
        use NoiseKind::*;
        only(
            n.ua.is_some(),
            "ua",
            &[
                Sweep,
                Enumeration,
                TollFraud,
                InviteFlood,
                RegisterFlood,
                Framing,
            ],
        )?;
        only(
            n.rate.is_some(),
            "rate",
            &[Sweep, Enumeration, TollFraud, InviteFlood, RegisterFlood],
        )?;
        only(n.attempts.is_some(), "attempts", &[Enumeration, TollFraud])?;
        only(n.passes.is_some(), "passes", &[Sweep])?;
        only(n.method.is_some(), "method", &[Enumeration])?;
        only(
            n.spoofed.is_some(),
            "spoofed",
            &[InviteFlood, RegisterFlood],
        )?;
        only(n.burst.is_some(), "burst", &[InviteFlood, RegisterFlood])?;
        only(n.rtp.is_some(), "rtp", &[Framing])?;
        only(n.channels.is_some(), "channels", &[Framing])?;
        only(n.calls_per_hour.is_some(), "calls_per_hour", &[Robocall])?;
        only(n.answer_ratio.is_some(), "answer_ratio", &[Robocall])?;
        if k == Robocall && n.count != 1 {
            return Err(
                "robocall noise comes through each target's provider: count must be 1".to_string(),
            );
        }
        if let Some(r) = n.rate {
            if !(0.01..=5000.0).contains(&r) {
                return Err("rate must be in [0.01, 5000] requests per second".to_string());
            }
        }
        if let Some(a) = n.attempts {
            if a == 0 || a > 100_000 {
                return Err("attempts must be 1..=100000".to_string());
            }
        }
        if let Some(p) = n.passes {
            if p == 0 || p > 10 {
                return Err("passes must be 1..=10".to_string());
            }
        }
        if let Some(b) = n.burst {
            if b == 0 || b > 3600 {
                return Err("burst must be between 1s and 1h".to_string());
            }
        }
        if let Some(c) = n.channels {
            if c == 0 || c > 64 {
                return Err("channels must be 1..=64".to_string());
            }
        }
        if let Some(c) = n.calls_per_hour {
            if !(c.is_finite() && c > 0.0 && c <= 600.0) {
                return Err("calls_per_hour must be in (0, 600]".to_string());
            }
        }
        if let Some(a) = n.answer_ratio {
            if !(0.0..=1.0).contains(&a) {
                return Err("answer_ratio must be in 0..=1".to_string());
            }
        }
        if let Some(ua) = &n.ua {
            if ua.is_empty() || ua.len() > 200 || ua.chars().any(|c| c.is_control()) {
                return Err("ua must be 1..=200 printable characters".to_string());
            }
        }
        if let Some(a) = n.after {
            if a > 31 * 86400 {
                return Err("after must be at most 31d".to_string());
            }
        }
        Ok(())
    }

    /// Line count of population `p` after scaling.
    pub fn scaled_count(&self, p: &Population) -> u32 {
        if p.count == 0 {
            return 0;
        }
        let n = (f64::from(p.count) * self.scale).round();
        (n.min(f64::from(u32::MAX)) as u32).max(1)
    }
}

/// Position of the `idx`-th `header` line (`[[population]]`, `[[noise]]`; 1-based, column 1).
fn header_position(text: &str, header: &str, idx: usize) -> (usize, usize) {
    let mut n = 0;
    for (i, l) in text.lines().enumerate() {
        if l.trim().starts_with(header) {
            if n == idx {
                return (i + 1, 1);
            }
            n += 1;
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_fails_cleanly(text in "\\PC{0,200}") {
            let _ = Scenario::from_toml(&text, "p.toml");
            let _ = parse_duration(&text);
            let _ = parse_shift(&text);
        }

        #[test]
        fn scenario_like_text_never_panics(
            dur in "[0-9]{0,6}[smhdx]?",
            kind in "(gateway|household|video|sheep)",
            ch in 0u32..400,
            ratio in -1.0f64..2.0,
        ) {
            let t = format!(
                "duration = \"{dur}\"\n[[population]]\nkind = \"{kind}\"\nchannels = {ch}\nanswer_ratio = {ratio}\n"
            );
            if let Ok(sc) = Scenario::from_toml(&t, "p.toml") {
                proptest::prop_assert!(sc.validate().is_ok());
                proptest::prop_assert!(sc.duration_secs > 0);
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("45"), Ok(45));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-3m").is_err());
        assert_eq!(parse_shift("8h/16h"), Ok(Some((28800, 57600))));
        assert_eq!(parse_shift("always"), Ok(None));
        assert!(parse_shift("8h").is_err());
    }

    #[test]
    fn builtin_parses_and_has_every_kind() {
        let text = include_str!("../../../config/scenario-builtin.toml");
        let sc = Scenario::from_toml(text, "builtin.toml").unwrap();
        for k in [
            Kind::Gateway,
            Kind::GatewayScrambled,
            Kind::GatewayOpaque,
            Kind::Household,
            Kind::OfficePbx,
            Kind::CallCentre,
            Kind::HelpDesk,
            Kind::ExpatVoip,
            Kind::AppCalls,
            Kind::Gaming,
            Kind::Video,
        ] {
            assert!(sc.populations.iter().any(|p| p.kind == k), "{k:?}");
        }
        assert_eq!(sc.duration_secs, 1800);
    }

    #[test]
    fn too_many_lines_or_times_out_of_range_are_rejected() {
        let t = "scale = 100.0\n[[population]]\nkind = \"household\"\ncount = 1000\n";
        let e = Scenario::from_toml(t, "s.toml").unwrap_err().to_string();
        assert!(e.contains("100000 lines"), "{e}");
        let t = "start = \"1960-01-01T00:00:00Z\"\n";
        assert!(Scenario::from_toml(t, "s.toml").is_err());
        let mut sc = Scenario::builtin();
        sc.scale = 0.0;
        assert!(crate::generate(&sc, 1, &mut std::io::sink()).is_err());
    }

    #[test]
    fn start_accepts_quoted_and_toml_datetimes() {
        let a = Scenario::from_toml("start = \"2026-03-01T10:00:00Z\"\n", "s").unwrap();
        let b = Scenario::from_toml("start = 2026-03-01T10:00:00Z\n", "s").unwrap();
        assert_eq!(a.start, b.start);
        assert_eq!(a.start.to_rfc3339(), "2026-03-01T10:00:00.000000Z");
        let e = Scenario::from_toml("\nstart = 2026-03-01\n", "s")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s:2:"), "{e}");
    }

    #[test]
    fn unknown_key_is_located() {
        let t = "duration = \"5m\"\n[[population]]\nkind = \"household\"\ncolour = 3\n";
        let e = Scenario::from_toml(t, "s.toml").unwrap_err().to_string();
        assert!(e.starts_with("s.toml:4:1: "), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn bad_values_are_located() {
        let t = "[[population]]\nkind = \"gateway\"\n[[population]]\nkind = \"gateway\"\nanswer_ratio = 3.0\n";
        let e = Scenario::from_toml(t, "s.toml").unwrap_err().to_string();
        assert!(e.starts_with("s.toml:3:1: answer_ratio"), "{e}");
        let e = Scenario::from_toml("[[population]]\nkind = \"sheep\"\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.toml:2:"), "{e}");
    }

    #[test]
    fn noise_scenario_parses_with_every_class() {
        let text = include_str!("../../../config/scenario-noise.toml");
        let sc = Scenario::from_toml(text, "noise.toml").unwrap();
        for k in [
            NoiseKind::Sweep,
            NoiseKind::Enumeration,
            NoiseKind::TollFraud,
            NoiseKind::InviteFlood,
            NoiseKind::RegisterFlood,
            NoiseKind::Framing,
            NoiseKind::Robocall,
        ] {
            assert!(sc.noise.iter().any(|n| n.kind == k), "{k:?}");
        }
        assert!(sc.populations.iter().any(|p| p.kind == Kind::Camera));
        assert!(sc
            .populations
            .iter()
            .any(|p| p.kind == Kind::CompromisedPbx));
        assert!(sc.noise.iter().any(|n| n.spoofed == Some(true)));
        assert!(sc.noise.iter().any(|n| n.rtp == Some(true)));
    }

    fn err(t: &str) -> String {
        Scenario::from_toml(t, "n.toml").unwrap_err().to_string()
    }

    #[test]
    fn noise_errors_are_located_at_their_entry() {
        let base = "[[population]]\nkind = \"household\"\nname = \"h\"\n";
        // Unknown target name, on the second [[noise]] (line 7).
        let t = format!(
            "{base}[[noise]]\nkind = \"sweep\"\ntargets = \"all\"\n[[noise]]\nkind = \"framing\"\ntargets = [\"x\"]\n"
        );
        let e = err(&t);
        assert!(
            e.starts_with("n.toml:7:1: targets: no population is named \"x\""),
            "{e}"
        );
        // A key that does not apply to the kind.
        let e = err(&format!(
            "{base}[[noise]]\nkind = \"sweep\"\ntargets = \"all\"\nrtp = true\n"
        ));
        assert!(
            e.starts_with("n.toml:4:1: rtp applies to framing noise"),
            "{e}"
        );
        // Out-of-range values.
        for (k, v) in [
            ("rate", "0.0"),
            ("rate", "1e9"),
            ("burst", "\"0s\""),
            ("burst", "\"2h\""),
        ] {
            let e = err(&format!(
                "{base}[[noise]]\nkind = \"invite-flood\"\ntargets = [\"h\"]\n{k} = {v}\n"
            ));
            assert!(e.starts_with("n.toml:4:1: "), "{k}={v}: {e}");
        }
        let e = err(&format!(
            "{base}[[noise]]\nkind = \"framing\"\ntargets = [\"h\"]\nchannels = 0\n"
        ));
        assert!(e.contains("channels must be 1..=64"), "{e}");
        // Unknown kind and unknown key: toml's own position.
        let e = err(&format!(
            "{base}[[noise]]\nkind = \"spam\"\ntargets = \"all\"\n"
        ));
        assert!(e.starts_with("n.toml:5:"), "{e}");
        let e = err(&format!(
            "{base}[[noise]]\nkind = \"sweep\"\ntargets = \"all\"\nloudness = 3\n"
        ));
        assert!(e.starts_with("n.toml:7:") && e.contains("loudness"), "{e}");
        let e = err(&format!(
            "{base}[[noise]]\nkind = \"sweep\"\ntargets = \"some\"\n"
        ));
        assert!(e.contains("\"all\" or a list"), "{e}");
        // Robocalls only into households (and expatriates).
        let e = err(
            "[[population]]\nkind = \"office-pbx\"\nname = \"p\"\n[[noise]]\nkind = \"robocall\"\ntargets = [\"p\"]\n",
        );
        assert!(e.contains("robocall targets are household"), "{e}");
        // Too many attackers.
        let e = err(&format!(
            "{base}[[noise]]\nkind = \"sweep\"\ntargets = \"all\"\ncount = 60\n[[noise]]\nkind = \"sweep\"\ntargets = \"all\"\ncount = 60\n"
        ));
        assert!(e.contains("120 attackers"), "{e}");
    }

    #[test]
    fn population_names_and_postures_are_checked() {
        let e = err("[[population]]\nkind = \"household\"\nname = \"a\"\n[[population]]\nkind = \"gaming\"\nname = \"a\"\n");
        assert!(e.starts_with("n.toml:4:1: name \"a\" is used twice"), "{e}");
        let e = err("[[population]]\nkind = \"household\"\nname = \"all\"\n");
        assert!(e.contains("other than \"all\""), "{e}");
        let e = err("[[population]]\nkind = \"household\"\nunsolicited = \"answer\"\n");
        assert!(e.contains("camera and compromised-pbx"), "{e}");
        let e = err("[[population]]\nkind = \"video\"\nunsolicited = \"reject\"\n");
        assert!(e.contains("no plain SIP stack"), "{e}");
        assert!(Scenario::from_toml(
            "[[population]]\nkind = \"camera\"\nunsolicited = \"reject\"\n",
            "ok"
        )
        .is_ok());
    }

    proptest::proptest! {
        #[test]
        fn noise_like_text_never_panics_and_generates(
            kind in "(sweep|enumeration|toll-fraud|invite-flood|register-flood|framing|robocall|x)",
            target in "(all|h|p|c|zz)",
            rate in -1.0f64..6000.0,
            attempts in 0u32..5,
            channels in 0u32..6,
            posture in "(ignore|reject|answer)",
        ) {
            let list = if target == "all" { "\"all\"".to_string() } else { format!("[\"{target}\"]") };
            let mut t = format!(
                "duration = \"20s\"\n[[population]]\nkind = \"household\"\nname = \"h\"\nunsolicited = \"{posture}\"\n[[population]]\nkind = \"compromised-pbx\"\nname = \"p\"\n[[population]]\nkind = \"camera\"\nname = \"c\"\n[[noise]]\nkind = \"{kind}\"\ntargets = {list}\nafter = \"1s\"\n"
            );
            match kind.as_str() {
                "framing" => t.push_str(&format!("channels = {channels}\nrtp = true\n")),
                "robocall" => {}
                "enumeration" | "toll-fraud" => t.push_str(&format!("rate = {rate}\nattempts = {attempts}\n")),
                _ => t.push_str(&format!("rate = {}\n", rate.min(50.0))),
            }
            if let Ok(sc) = Scenario::from_toml(&t, "p.toml") {
                let labels = crate::generate(&sc, 3, &mut std::io::sink()).unwrap();
                for th in labels.threats.values() {
                    proptest::prop_assert!(!th.targets.is_empty());
                }
            }
        }
    }
}
