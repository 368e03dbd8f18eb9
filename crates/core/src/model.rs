//! Plain data handed from one pipeline stage to the next.
//!
//! Contract: these types carry no behaviour beyond small conversions; every stage owns its own
//! state and communicates only through them. Times are capture (packet) time, never the wall clock.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Hash map for the per-packet tables (flows, streams, fragments, dialogs, lines): aHash is several
/// times cheaper than SipHash on small keys such as socket addresses and, keyed at random per
/// process, still resists crafted collisions (HashDoS) from hostile traffic.
pub type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Capture time in microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_micros(us: i64) -> Self {
        Timestamp(us)
    }
    pub fn from_secs_f64(s: f64) -> Self {
        Timestamp((s * 1e6).round() as i64)
    }
    pub const fn micros(self) -> i64 {
        self.0
    }
    pub fn secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    /// Seconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0 - earlier.0) as f64 / 1e6
    }
    pub fn plus_secs(self, s: f64) -> Self {
        Timestamp(self.0.saturating_add((s * 1e6).round() as i64))
    }
    /// RFC 3339 in UTC with microseconds, e.g. `2026-11-29T19:37:13.000123Z`.
    pub fn to_rfc3339(self) -> String {
        let secs = self.0.div_euclid(1_000_000);
        let us = self.0.rem_euclid(1_000_000) as u32;
        match chrono::DateTime::from_timestamp(secs, us * 1000) {
            Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            None => format!("@{}us", self.0),
        }
    }
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let dt = chrono::DateTime::parse_from_rfc3339(s).ok()?;
        Some(Timestamp(dt.timestamp_micros()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    /// RFC 3339 text in JSON and other human-readable formats; microseconds in binary ones
    /// (the daemon's state store), where formatting a million times would be the cost.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_rfc3339())
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return i64::deserialize(d).map(Timestamp);
        }
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s}")))
    }
}

/// libpcap link-layer type (DLT/LINKTYPE number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkType(pub i32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const RAW: LinkType = LinkType(101);
    pub(crate) const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// One packet as read from a capture (file or live).
#[derive(Clone, Copy, Debug)]
pub struct RawPacket<'a> {
    pub ts: Timestamp,
    pub link: LinkType,
    pub data: &'a [u8],
    /// Length on the wire (may exceed `data.len()` when the snaplen cut it).
    pub wire_len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    /// SIP in SCTP DATA chunks (RFC 4168).
    Sctp,
    /// SIP in WebSocket frames on TCP (RFC 7118).
    Ws,
}

/// A transport payload with its addresses: one UDP datagram (after IP reassembly) or one framed
/// message taken from a TCP stream. `payload` borrows the packet or a reassembly buffer.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub ts: Timestamp,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    pub payload: &'a [u8],
    /// Length of the (reassembled) IP packet carrying the payload, for media-shape figures.
    pub ip_len: u32,
}

/// Direction of a call relative to its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The INVITE came into the line from outside the home networks.
    Inbound,
    /// The line sent the INVITE to a peer outside the home networks.
    Outbound,
    /// Both ends are inside the home networks (the caller's side is taken as the line).
    Internal,
    /// Neither end is inside the home networks: no line.
    Transit,
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Answered,
    Busy,
    NoAnswer,
    Cancelled,
    Failed,
    /// No final answer seen (capture ended, or the dialog timed out before one).
    Incomplete,
}

/// Figures for one RTP stream (one SSRC in one direction), RFC 3550 loss and jitter.
/// What the line itself did in a call: the only ground for a verdict about the line. What others
/// send a line (INVITEs it rejects, ignores or answers without relaying voice) is evidence about
/// them, never about the line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Participation {
    /// The line placed the call (it sent the INVITE).
    Placed,
    /// The line answered (a 2xx from its own address) and voice flowed both ways.
    TwoWayVoice,
    /// The line answered and the tap carried no media of the call in either direction (a
    /// SIP-only mirror): whether that counts is the line profile's decision.
    AnsweredNoMedia,
    /// The line did not answer but sent early media (RTP from its address while ringing).
    EarlyMedia,
    /// The line answered but voice did not flow both ways (it sent none back, or got none).
    AnsweredOneWay,
    /// The line refused the call with a final error response from its own address.
    Rejected,
    /// No answer from the line: it ignored the INVITE or the caller gave up.
    #[default]
    Ignored,
}

impl Participation {
    /// The line relayed the call: voice both ways, early media it sent, or a call it placed.
    /// [`Participation::AnsweredNoMedia`] is left to the caller (it depends on the tap).
    pub fn relayed(self) -> bool {
        matches!(
            self,
            Participation::Placed | Participation::TwoWayVoice | Participation::EarlyMedia
        )
    }
    pub fn label(self) -> &'static str {
        match self {
            Participation::Placed => "placed",
            Participation::TwoWayVoice => "two_way_voice",
            Participation::AnsweredNoMedia => "answered_no_media",
            Participation::EarlyMedia => "early_media",
            Participation::AnsweredOneWay => "answered_one_way",
            Participation::Rejected => "rejected",
            Participation::Ignored => "ignored",
        }
    }
}

/// RTP packets a line must send (and receive) on a call for it to count as voice: half a second
/// at the usual 20 ms packetisation.
pub const VOICE_MIN_PACKETS: u64 = 25;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RtpStreamStats {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ssrc: u32,
    pub payload_type: u8,
    pub packets: u64,
    pub bytes: u64,
    /// Expected minus received packets (RFC 3550 A.3); negative with duplicates.
    pub lost: i64,
    /// Interarrival jitter in milliseconds (RFC 3550 A.8).
    pub jitter_ms: f64,
    pub first: Timestamp,
    pub last: Timestamp,
}

/// One INVITE dialog, as handed to the line profiles when it ends (or when the capture ends).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    /// The endpoint inside the home networks, if any.
    pub line: Option<IpAddr>,
    pub direction: Direction,
    /// The remote signalling address the line talks to for this call.
    pub peer: Option<SocketAddr>,
    /// From/To/Request-URI user parts (phone numbers: personal data).
    pub from: Option<String>,
    pub to: Option<String>,
    pub request_uri: Option<String>,
    pub user_agent: Option<String>,
    pub server: Option<String>,
    /// `Allow` header of the line's side, for fingerprints.
    pub allow: Option<String>,
    /// SDP `o=` username and `s=` of the line's side, for fingerprints.
    pub sdp_origin: Option<String>,
    pub sdp_session: Option<String>,
    pub transport: Transport,
    /// Negotiated codec name (first common rtpmap/static payload), e.g. "PCMA", "G729".
    pub codec: Option<String>,
    pub codecs: Vec<String>,
    /// Packetisation time from SDP (ms), when given.
    pub ptime: Option<u32>,
    pub start: Timestamp,
    pub progress: Option<Timestamp>,
    pub answer: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub outcome: Outcome,
    pub status_code: Option<u16>,
    /// Whether the line's Contact/Via carried a private address (behind NAT).
    pub private_contact: bool,
    pub rtp: Vec<RtpStreamStats>,
    /// What the line did in this call (see [`Participation`]).
    #[serde(default)]
    pub participation: Participation,
}

impl CallRecord {
    /// A call with only its id, direction and start known (nothing answered, no party, no
    /// media): the base the calls stage and tests fill in.
    pub fn new(call_id: String, direction: Direction, start: Timestamp) -> CallRecord {
        CallRecord {
            call_id,
            line: None,
            direction,
            peer: None,
            from: None,
            to: None,
            request_uri: None,
            user_agent: None,
            server: None,
            allow: None,
            sdp_origin: None,
            sdp_session: None,
            transport: Transport::Udp,
            codec: None,
            codecs: Vec::new(),
            ptime: None,
            start,
            progress: None,
            answer: None,
            end: None,
            outcome: Outcome::Incomplete,
            status_code: None,
            private_contact: false,
            rtp: Vec::new(),
            participation: Participation::Ignored,
        }
    }

    /// Talk time in seconds (answer to end), when answered and ended.
    pub fn talk_secs(&self) -> Option<f64> {
        Some(self.end?.secs_since(self.answer?))
    }

    /// RTP packets the line sent and received on this call's streams.
    pub fn line_voice_packets(&self) -> (u64, u64) {
        let Some(line) = self.line else {
            return (0, 0);
        };
        let mut out = (0u64, 0u64);
        for s in &self.rtp {
            if s.src.ip() == line {
                out.0 = out.0.saturating_add(s.packets);
            } else if s.dst.ip() == line {
                out.1 = out.1.saturating_add(s.packets);
            }
        }
        out
    }

    /// What the line did in the call, from who answered and which way voice flowed.
    /// `answered_by_line` is whether the 2xx came from the line's own address.
    pub(crate) fn judge_participation(&self, answered_by_line: bool) -> Participation {
        if self.direction != Direction::Inbound {
            return if self.line.is_some() {
                Participation::Placed
            } else {
                Participation::Ignored
            };
        }
        let (out, inn) = self.line_voice_packets();
        if self.answer.is_some() && answered_by_line {
            return if out >= VOICE_MIN_PACKETS && inn >= VOICE_MIN_PACKETS {
                Participation::TwoWayVoice
            } else if out == 0 && inn == 0 {
                Participation::AnsweredNoMedia
            } else {
                Participation::AnsweredOneWay
            };
        }
        // Early media: RTP the line sent before any answer (ringback relayed by a gateway).
        let early: u64 = self
            .rtp
            .iter()
            .filter(|s| self.line.is_some_and(|l| s.src.ip() == l))
            .filter(|s| self.answer.is_none_or(|a| s.first < a))
            .map(|s| s.packets)
            .sum();
        if early >= VOICE_MIN_PACKETS {
            Participation::EarlyMedia
        } else if self.status_code.is_some_and(|c| c >= 300) {
            Participation::Rejected
        } else {
            Participation::Ignored
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegOutcome {
    Registered,
    /// 401/407 seen and no later success in this transaction.
    Challenged,
    Failed,
    NoResponse,
    /// REGISTER with Expires: 0 accepted.
    Unregistered,
}

/// One REGISTER transaction (final response or timeout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegistrationRecord {
    /// Address-of-record, `user@host` from To.
    pub account: String,
    pub registrar: SocketAddr,
    pub source: SocketAddr,
    /// The side inside the home networks (normally the source).
    pub line: Option<IpAddr>,
    pub contact: Option<String>,
    pub expires: Option<u32>,
    pub outcome: RegOutcome,
    pub status_code: Option<u16>,
    pub user_agent: Option<String>,
    pub time: Timestamp,
}

/// The request method of a [`ProbeRecord`]: what an outside peer sent a line outside any dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProbeMethod {
    Options,
    Subscribe,
    Message,
    Notify,
    /// The first INVITE of a dialog from outside: recorded so that the sender's User-Agent is
    /// known (the call record keeps the line's side).
    Invite,
    Other,
}

impl ProbeMethod {
    pub fn label(self) -> &'static str {
        match self {
            ProbeMethod::Options => "OPTIONS",
            ProbeMethod::Subscribe => "SUBSCRIBE",
            ProbeMethod::Message => "MESSAGE",
            ProbeMethod::Notify => "NOTIFY",
            ProbeMethod::Invite => "INVITE",
            ProbeMethod::Other => "other",
        }
    }
}

/// A request from outside the home networks to a line outside any dialog (an OPTIONS ping or
/// sweep above all), or the line's response to one (`status` set). Evidence about the peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// The outside sender of the request.
    pub peer: SocketAddr,
    /// The line the request was sent to.
    pub line: IpAddr,
    pub method: ProbeMethod,
    /// Request-URI and To user parts (may be phone numbers: personal data).
    pub request_user: Option<String>,
    pub to_user: Option<String>,
    pub user_agent: Option<String>,
    pub time: Timestamp,
    /// `None` for the request; the line's status code when this is its response.
    pub status: Option<u16>,
}

/// A bidirectional UDP media flow (RTP-shaped or voice-shaped), reported when it goes idle or
/// the capture ends. `call_id` is set when SDP announced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaFlowRecord {
    /// The end inside the home networks when there is one, else the lower address.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub line: Option<IpAddr>,
    pub call_id: Option<String>,
    pub first: Timestamp,
    pub last: Timestamp,
    pub(crate) packets_out: u64,
    pub packets_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) bytes_in: u64,
    /// Mean IP packet length over both directions.
    pub mean_ip_len: f64,
    /// Whether a valid RTP header (v2, steady SSRC/sequence) was seen.
    pub rtp: bool,
    /// Voice-shaped: both directions at ~25-60 pps with small packets for long enough.
    pub voice_like: bool,
    pub streams: Vec<RtpStreamStats>,
}

/// What the calls/media stage tells the line stage, in capture order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// First INVITE of a new dialog.
    CallStarted {
        call_id: String,
        line: Option<IpAddr>,
        direction: Direction,
        peer: Option<SocketAddr>,
        ts: Timestamp,
    },
    /// 200 OK to the INVITE.
    /// A 2xx to the INVITE from the callee (on an inbound call: the line itself).
    CallAnswered {
        call_id: String,
        line: Option<IpAddr>,
        direction: Direction,
        /// When the INVITE came (the call held a channel from then on).
        invited: Timestamp,
        ts: Timestamp,
    },
    CallEnded(Box<CallRecord>),
    Registration(Box<RegistrationRecord>),
    /// A voice-like media flow started (enough packets both ways to be sure).
    MediaStarted {
        local: SocketAddr,
        remote: SocketAddr,
        line: Option<IpAddr>,
        call_id: Option<String>,
        ts: Timestamp,
    },
    MediaEnded(Box<MediaFlowRecord>),
    /// A request from outside to a line outside any dialog, or the line's answer to it.
    Probe(Box<ProbeRecord>),
}

/// Verdict on a line (or site), from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictLevel {
    Normal,
    Suspect,
    Gateway,
}

impl VerdictLevel {
    /// Every level, lowest first.
    pub const ALL: [VerdictLevel; 3] = [
        VerdictLevel::Normal,
        VerdictLevel::Suspect,
        VerdictLevel::Gateway,
    ];

    /// The level's name as every output writes it (`normal`, `suspect`, `gateway`; the serde
    /// name). The one place the names are spelled.
    pub const fn name(self) -> &'static str {
        match self {
            VerdictLevel::Normal => "normal",
            VerdictLevel::Suspect => "suspect",
            VerdictLevel::Gateway => "gateway",
        }
    }

    /// The level of a name written by `name` (case-insensitive).
    pub fn from_name(s: &str) -> Option<VerdictLevel> {
        Self::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s))
    }
}

/// One piece of evidence behind a verdict: the signal, its value and the figures a person needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub signal: String,
    /// The signal's value (its unit depends on the signal; see `detail`).
    pub value: f64,
    /// Strength 0..1 with which this signal points at a gateway.
    pub strength: f64,
    /// Human text with the figures, e.g. "212 inbound calls from 203.0.113.10 (foreign) to 198
    /// distinct numbers in 40 min".
    pub detail: String,
}

/// The detection stage's current view of one line, handed to alerting and output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineVerdict {
    pub line: IpAddr,
    pub verdict: VerdictLevel,
    /// 0..1.
    pub score: f64,
    /// Capture time when the verdict first became `gateway`.
    pub flagged_at: Option<Timestamp>,
    pub site: Option<String>,
    pub reasons: Vec<Reason>,
    /// Capture time of this evaluation.
    pub updated: Timestamp,
    pub calls: u64,
    pub max_concurrent_calls: u32,
    /// The remote peer that sent the line most of its inbound calls and opaque media flows (for
    /// a SIM-box line: the softswitch or carrier trunk feeding it); none before any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<IpAddr>,
}

/// Counted stops and evictions. Keys are stable names used in JSON and metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters(pub std::collections::BTreeMap<String, u64>);

impl Counters {
    pub fn add(&mut self, key: &str, n: u64) {
        if let Some(v) = self.0.get_mut(key) {
            *v += n;
        } else {
            self.0.insert(key.to_string(), n);
        }
    }
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
    pub fn merge(&mut self, other: &Counters) {
        for (k, v) in &other.0 {
            self.add(k, *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_rfc3339_round_trip() {
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        let s = t.to_rfc3339();
        assert_eq!(s, "2023-11-14T22:13:20.123456Z");
        assert_eq!(Timestamp::parse_rfc3339(&s), Some(t));
    }

    #[test]
    fn counters_add_and_merge() {
        let mut a = Counters::default();
        a.add("ip", 2);
        let mut b = Counters::default();
        b.add("ip", 3);
        b.add("tcp", 1);
        a.merge(&b);
        assert_eq!(a.get("ip"), 5);
        assert_eq!(a.get("tcp"), 1);
        assert_eq!(a.get("none"), 0);
    }
}
