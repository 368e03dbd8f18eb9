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
    /// The time `us` microseconds after the Unix epoch.
    pub const fn from_micros(us: i64) -> Self {
        Timestamp(us)
    }
    /// The time `s` seconds after the Unix epoch, rounded to the microsecond.
    pub fn from_secs_f64(s: f64) -> Self {
        Timestamp((s * 1e6).round() as i64)
    }
    /// Microseconds since the Unix epoch.
    pub const fn micros(self) -> i64 {
        self.0
    }
    /// Seconds since the Unix epoch.
    pub fn secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    /// Seconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0 - earlier.0) as f64 / 1e6
    }
    /// This time moved by `s` seconds (negative: earlier), rounded to the microsecond; saturates.
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
    /// `to_rfc3339` appended to `out` as bytes, without a String or chrono's formatter for the
    /// years 0000-9999 (call records write several times each, a flood a million); other
    /// times go through `to_rfc3339`.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        let secs = self.0.div_euclid(1_000_000);
        let us = self.0.rem_euclid(1_000_000);
        let (y, m, d) = civil_date(secs.div_euclid(86_400));
        if !(0..=9999).contains(&y) {
            out.extend_from_slice(self.to_rfc3339().as_bytes());
            return;
        }
        let sod = secs.rem_euclid(86_400);
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        for (at, width, v) in [
            (0, 4, y),
            (5, 2, m),
            (8, 2, d),
            (11, 2, sod / 3600),
            (14, 2, sod / 60 % 60),
            (17, 2, sod % 60),
            (20, 6, us),
        ] {
            let mut v = v;
            for slot in b.iter_mut().skip(at).take(width).rev() {
                *slot = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        out.extend_from_slice(&b);
    }
    /// The time an RFC 3339 text names (any offset, kept to the microsecond); `None` when it is not one.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let dt = chrono::DateTime::parse_from_rfc3339(s).ok()?;
        Some(Timestamp(dt.timestamp_micros()))
    }
}

/// (year, month, day) of the proleptic Gregorian calendar `days` after 1970-01-01: counted in
/// 400-year eras from 0000-03-01, so the leap day ends each counted year.
fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (era * 400 + yoe + i64::from(m <= 2), m, d)
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
    /// BSD loopback (4-byte address family header).
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II, with or without VLAN tags.
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP, no link header (version from the first nibble).
    pub const RAW: LinkType = LinkType(101);
    pub(crate) const LOOP: LinkType = LinkType(108);
    /// Linux "cooked" capture v1 (`any` interface).
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux "cooked" capture v2.
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// One packet as read from a capture (file or live).
#[derive(Clone, Copy, Debug)]
pub struct RawPacket<'a> {
    /// Capture time.
    pub ts: Timestamp,
    /// Link-layer type of `data`.
    pub link: LinkType,
    /// The captured bytes from the link header on (at most the snaplen).
    pub data: &'a [u8],
    /// Length on the wire (may exceed `data.len()` when the snaplen cut it).
    pub wire_len: u32,
}

/// Transport a SIP message or payload arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP (one message per datagram).
    Udp,
    /// TCP (messages framed from the reassembled stream).
    Tcp,
    /// SIP in SCTP DATA chunks (RFC 4168).
    Sctp,
    /// SIP in WebSocket frames on TCP (RFC 7118).
    Ws,
}

impl Transport {
    /// Every variant, in declaration order.
    pub const ALL: [Transport; 4] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Sctp,
        Transport::Ws,
    ];

    /// The name in JSON and reports (serde's, `rename_all = "lowercase"`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Sctp => "sctp",
            Transport::Ws => "ws",
        }
    }
}

/// A transport payload with its addresses: one UDP datagram (after IP reassembly) or one framed
/// message taken from a TCP stream. `payload` borrows the packet or a reassembly buffer.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    /// Capture time of the packet that completed the payload.
    pub ts: Timestamp,
    /// Sender's address and port.
    pub src: SocketAddr,
    /// Receiver's address and port.
    pub dst: SocketAddr,
    /// Transport the payload came on.
    pub transport: Transport,
    /// The transport payload (one datagram, or one framed message of a stream).
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

impl Direction {
    /// Every variant, in declaration order.
    pub const ALL: [Direction; 4] = [
        Direction::Inbound,
        Direction::Outbound,
        Direction::Internal,
        Direction::Transit,
    ];

    /// The name in JSON and reports (serde's, `rename_all = "lowercase"`).
    pub fn name(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Internal => "internal",
            Direction::Transit => "transit",
        }
    }
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Answered with a 2xx.
    Answered,
    /// Refused busy (486 or 600).
    Busy,
    /// Not answered: 408 or 480, or ringing until the dialog timed out.
    NoAnswer,
    /// Cancelled by the caller (487, CANCEL or BYE before an answer).
    Cancelled,
    /// Any other final error response (3xx and up).
    Failed,
    /// No final answer seen (capture ended, or the dialog timed out before one).
    Incomplete,
}

impl Outcome {
    /// Every variant, in declaration order.
    pub const ALL: [Outcome; 6] = [
        Outcome::Answered,
        Outcome::Busy,
        Outcome::NoAnswer,
        Outcome::Cancelled,
        Outcome::Failed,
        Outcome::Incomplete,
    ];

    /// The name in JSON and reports (serde's, `rename_all = "kebab-case"`).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no-answer",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
            Outcome::Incomplete => "incomplete",
        }
    }
}

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

/// When an inbound call the line answered without any media counts as the line's own, where the
/// tap carries no media at all (a SIP-only mirror): the answer must have lasted, and it must
/// have come as late as a relayed call's does.
///
/// A relayed call is answered by a person at the far end after that phone has rung: mobile call
/// setup alone takes seconds before the ring starts. A device answering on its own (a camera,
/// an intercom, an auto-attendant) answers within a second or so of the INVITE, and the probes
/// and toll-fraud dialers that reach it may then hold the call open for as long as they like.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SipOnlyAnswers {
    /// Talk time (answer to end, seconds) from which such an answer counts.
    pub min_talk_secs: f64,
    /// Time from the INVITE to the answer (seconds) from which such an answer counts.
    pub min_ring_secs: f64,
}

impl Default for SipOnlyAnswers {
    fn default() -> Self {
        SipOnlyAnswers {
            min_talk_secs: 5.0,
            min_ring_secs: 2.0,
        }
    }
}

impl SipOnlyAnswers {
    /// Whether `c`, answered without media, passes both bounds (whether the tap carries media
    /// is the caller's to know). `now`: when the record was reported, the end of a call that
    /// had not ended then (still open at the end of the capture): such a call lasted until
    /// `now`, and detection counts it once `due` has passed while it runs.
    pub fn count(&self, c: &CallRecord, now: Timestamp) -> bool {
        c.participation == Participation::AnsweredNoMedia
            && c.answer.is_some_and(|a| {
                self.rang_long_enough(c.start, a)
                    && c.end.unwrap_or(now).secs_since(a) >= self.min_talk_secs
            })
    }
    /// Whether an answer at `answer` to an INVITE at `invited` came late enough to count.
    pub fn rang_long_enough(&self, invited: Timestamp, answer: Timestamp) -> bool {
        answer.secs_since(invited) >= self.min_ring_secs
    }
    /// When an answer at `answer` has lasted long enough to count, if the call still runs.
    pub fn due(&self, answer: Timestamp) -> Timestamp {
        answer.plus_secs(self.min_talk_secs)
    }
}

impl Participation {
    /// Every variant, in declaration order.
    pub const ALL: [Participation; 7] = [
        Participation::Placed,
        Participation::TwoWayVoice,
        Participation::AnsweredNoMedia,
        Participation::EarlyMedia,
        Participation::AnsweredOneWay,
        Participation::Rejected,
        Participation::Ignored,
    ];

    /// The line relayed the call: voice both ways, early media it sent, or a call it placed.
    /// [`Participation::AnsweredNoMedia`] is left to the caller (it depends on the tap).
    pub(crate) fn relayed(self) -> bool {
        matches!(
            self,
            Participation::Placed | Participation::TwoWayVoice | Participation::EarlyMedia
        )
    }
    /// The participation's name in JSON and reports (`placed`, `two_way_voice`, ...).
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

/// Figures for one RTP stream (one SSRC in one direction), RFC 3550 loss and jitter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RtpStreamStats {
    /// Sender's address and port.
    pub src: SocketAddr,
    /// Receiver's address and port.
    pub dst: SocketAddr,
    /// RTP synchronisation source identifier.
    pub ssrc: u32,
    /// RTP payload type of the stream's first packet (0 PCMU, 8 PCMA, 18 G729, ...).
    pub payload_type: u8,
    /// RTP packets seen.
    pub packets: u64,
    /// RTP bytes seen (RTP header and payload).
    pub bytes: u64,
    /// Expected minus received packets (RFC 3550 A.3); negative with duplicates.
    pub lost: i64,
    /// Interarrival jitter in milliseconds (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Capture time of the first packet.
    pub first: Timestamp,
    /// Capture time of the last packet.
    pub last: Timestamp,
}

/// One INVITE dialog, as handed to the line profiles when it ends (or when the capture ends).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// SIP Call-ID of the dialog.
    pub call_id: String,
    /// The endpoint inside the home networks, if any.
    pub line: Option<IpAddr>,
    /// Which way the call went relative to the line.
    pub direction: Direction,
    /// The remote signalling address the line talks to for this call.
    pub peer: Option<SocketAddr>,
    /// From/To/Request-URI user parts (phone numbers: personal data).
    pub from: Option<String>,
    /// To user part.
    pub to: Option<String>,
    /// Request-URI user part.
    pub request_uri: Option<String>,
    /// First `User-Agent` header seen in the dialog.
    pub user_agent: Option<String>,
    /// First `Server` header seen in the dialog.
    pub server: Option<String>,
    /// `Allow` header of the line's side, for fingerprints.
    pub allow: Option<String>,
    /// SDP `o=` username and `s=` of the line's side, for fingerprints.
    pub sdp_origin: Option<String>,
    /// SDP `s=` session name of the line's side.
    pub sdp_session: Option<String>,
    /// Transport the INVITE came on.
    pub transport: Transport,
    /// Negotiated codec name (first common rtpmap/static payload), e.g. "PCMA", "G729".
    pub codec: Option<String>,
    /// Codec names of the negotiated SDP (the answer, else the offer), in its order.
    pub codecs: Vec<String>,
    /// Packetisation time from SDP (ms), when given.
    pub ptime: Option<u32>,
    /// Capture time of the first INVITE.
    pub start: Timestamp,
    /// Capture time of the first 18x ringing/progress response.
    pub progress: Option<Timestamp>,
    /// Capture time of the 2xx answer.
    pub answer: Option<Timestamp>,
    /// Capture time the call ended (BYE, final error response or timeout).
    pub end: Option<Timestamp>,
    /// How the call ended.
    pub outcome: Outcome,
    /// Final status code (the 2xx, or the error response before any answer).
    pub status_code: Option<u16>,
    /// Whether the line's Contact/Via carried a private address (behind NAT).
    pub private_contact: bool,
    /// RTP streams of the call (SDP-announced), ordered by first packet; capped per call.
    pub rtp: Vec<RtpStreamStats>,
    /// What the line did in this call (see [`Participation`]).
    #[serde(default)]
    pub participation: Participation,
}

/// The number a call was for, as detection keys it: the Request-URI user, else the To user
/// (one rule for a dialog still running and for its record).
pub fn called_user<'a>(request_uri: Option<&'a str>, to: Option<&'a str>) -> Option<&'a str> {
    request_uri.filter(|s| !s.is_empty()).or(to)
}

impl CallRecord {
    /// The number the call was for: [`called_user`] of its Request-URI and To.
    pub fn called(&self) -> Option<&str> {
        called_user(self.request_uri.as_deref(), self.to.as_deref())
    }

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

/// How a REGISTER transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegOutcome {
    /// 2xx with a non-zero expiry.
    Registered,
    /// 401/407 seen and no later success in this transaction.
    Challenged,
    /// Final error response other than a challenge.
    Failed,
    /// No final response before the transaction timed out.
    NoResponse,
    /// REGISTER with Expires: 0 accepted.
    Unregistered,
}

impl RegOutcome {
    /// Every variant, in declaration order.
    pub const ALL: [RegOutcome; 5] = [
        RegOutcome::Registered,
        RegOutcome::Challenged,
        RegOutcome::Failed,
        RegOutcome::NoResponse,
        RegOutcome::Unregistered,
    ];

    /// The name in JSON and reports (serde's, `rename_all = "kebab-case"`).
    pub fn name(self) -> &'static str {
        match self {
            RegOutcome::Registered => "registered",
            RegOutcome::Challenged => "challenged",
            RegOutcome::Failed => "failed",
            RegOutcome::NoResponse => "no-response",
            RegOutcome::Unregistered => "unregistered",
        }
    }
}

/// One REGISTER transaction (final response or timeout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegistrationRecord {
    /// Address-of-record, `user@host` from To.
    pub account: String,
    /// Where the REGISTER went (registrar address and port).
    pub registrar: SocketAddr,
    /// Where the REGISTER came from.
    pub source: SocketAddr,
    /// The side inside the home networks (normally the source).
    pub line: Option<IpAddr>,
    /// Contact URI of the registration.
    pub contact: Option<String>,
    /// Granted expiry in seconds (from the 2xx's Contact or Expires), else the requested one.
    pub expires: Option<u32>,
    /// How the transaction ended.
    pub outcome: RegOutcome,
    /// Final status code, if any.
    pub status_code: Option<u16>,
    /// `User-Agent` header of the REGISTER.
    pub user_agent: Option<String>,
    /// Capture time of the REGISTER that opened the transaction.
    pub time: Timestamp,
}

/// The request method of a [`ProbeRecord`]: what an outside peer sent a line outside any dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProbeMethod {
    /// OPTIONS (keep-alive ping or scan).
    Options,
    /// SUBSCRIBE.
    Subscribe,
    /// MESSAGE.
    Message,
    /// NOTIFY.
    Notify,
    /// The first INVITE of a dialog from outside: recorded so that the sender's User-Agent is
    /// known (the call record keeps the line's side).
    Invite,
    /// Any other method.
    Other,
}

impl ProbeMethod {}

/// A request from outside the home networks to a line outside any dialog (an OPTIONS ping or
/// sweep above all), or the line's response to one (`status` set). Evidence about the peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// The outside sender of the request.
    pub peer: SocketAddr,
    /// The line the request was sent to.
    pub line: IpAddr,
    /// The request's method.
    pub method: ProbeMethod,
    /// Request-URI and To user parts (may be phone numbers: personal data).
    pub request_user: Option<String>,
    /// To user part.
    pub to_user: Option<String>,
    /// `User-Agent` header of the request.
    pub user_agent: Option<String>,
    /// Capture time of the request (or of the response).
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
    /// The other end of the flow.
    pub remote: SocketAddr,
    /// The line, when one end is inside the home networks.
    pub line: Option<IpAddr>,
    /// Call-ID of the call whose SDP announced the flow.
    pub call_id: Option<String>,
    /// Capture time of the first packet.
    pub first: Timestamp,
    /// Capture time of the last packet.
    pub last: Timestamp,
    pub(crate) packets_out: u64,
    /// Packets from `remote` to `local`.
    pub packets_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) bytes_in: u64,
    /// Mean IP packet length over both directions.
    pub mean_ip_len: f64,
    /// Whether a valid RTP header (v2, steady SSRC/sequence) was seen.
    pub rtp: bool,
    /// Voice-shaped: both directions at ~25-60 pps with small packets for long enough.
    pub voice_like: bool,
    /// RTP streams seen in the flow (per SSRC and direction), capped per flow.
    pub streams: Vec<RtpStreamStats>,
}

/// What the calls/media stage tells the line stage, in capture order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// First INVITE of a new dialog.
    CallStarted {
        /// SIP Call-ID of the dialog.
        call_id: String,
        /// The line, when one end is inside the home networks.
        line: Option<IpAddr>,
        /// Which way the call goes relative to the line.
        direction: Direction,
        /// The remote signalling address the line talks to.
        peer: Option<SocketAddr>,
        /// Capture time of the INVITE.
        ts: Timestamp,
    },
    /// A 2xx to the INVITE from the callee (on an inbound call: the line itself).
    CallAnswered {
        /// SIP Call-ID of the dialog.
        call_id: String,
        /// The line, when one end is inside the home networks.
        line: Option<IpAddr>,
        /// Which way the call goes relative to the line.
        direction: Direction,
        /// The remote signalling address the line talks to (as in `CallStarted`).
        peer: Option<SocketAddr>,
        /// The number the call is for: the Request-URI user, else the To user (what the
        /// call's record carries in `request_uri` and `to`).
        called: Option<String>,
        /// When the INVITE came (the call held a channel from then on).
        invited: Timestamp,
        /// Capture time of the 2xx.
        ts: Timestamp,
    },
    /// A dialog ended (or timed out, or the capture ended): the whole call.
    CallEnded(Box<CallRecord>),
    /// A REGISTER transaction ended.
    Registration(Box<RegistrationRecord>),
    /// A voice-like media flow started (enough packets both ways to be sure).
    MediaStarted {
        /// The end inside the home networks, else the lower address.
        local: SocketAddr,
        /// The other end.
        remote: SocketAddr,
        /// The line, when one end is inside the home networks.
        line: Option<IpAddr>,
        /// Call-ID of the call whose SDP announced the flow.
        call_id: Option<String>,
        /// Capture time the flow became voice-like.
        ts: Timestamp,
    },
    /// A media flow went idle (or the capture ended).
    MediaEnded(Box<MediaFlowRecord>),
    /// A request from outside to a line outside any dialog, or the line's answer to it.
    Probe(Box<ProbeRecord>),
}

/// Verdict on a line (or site), from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictLevel {
    /// Nothing points at a gateway.
    Normal,
    /// Some signals point at a gateway; not yet enough to flag it.
    Suspect,
    /// Flagged as a SIM-box (gateway) line.
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
    /// The signal's name (e.g. `foreign_inbound`, `site`).
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
    /// The line's address.
    pub line: IpAddr,
    /// The line's level.
    pub verdict: VerdictLevel,
    /// 0..1.
    pub score: f64,
    /// Capture time when the verdict first became `gateway`.
    pub flagged_at: Option<Timestamp>,
    /// Id of the site (group of suspect lines sharing a peer and a rhythm) the line belongs to.
    pub site: Option<String>,
    /// The signals behind the score, strongest first.
    pub reasons: Vec<Reason>,
    /// Capture time of this evaluation.
    pub updated: Timestamp,
    /// Calls the line took part in: SIP calls plus opaque (signalling-less) media sessions.
    pub calls: u64,
    /// Most calls the line held at once.
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
    /// Adds `n` to the counter `key` (created at 0).
    pub fn add(&mut self, key: &str, n: u64) {
        if let Some(v) = self.0.get_mut(key) {
            *v += n;
        } else {
            self.0.insert(key.to_string(), n);
        }
    }
    /// The counter `key`; 0 when never counted.
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
    /// Adds every counter of `other` to this one.
    pub(crate) fn merge(&mut self, other: &Counters) {
        for (k, v) in &other.0 {
            self.add(k, *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_only_answers_count_when_late_and_lasting() {
        let rule = SipOnlyAnswers::default();
        const T0: Timestamp = Timestamp(0);
        let call = |ring: f64, talk: f64, p: Participation| {
            let mut c = CallRecord::new("c".into(), Direction::Inbound, Timestamp(0));
            let answer = Timestamp((ring * 1e6) as i64);
            c.answer = Some(answer);
            c.end = Some(answer.plus_secs(talk));
            c.participation = p;
            c
        };
        assert!(rule.count(&call(6.0, 30.0, Participation::AnsweredNoMedia), T0));
        assert!(rule.count(&call(2.0, 5.0, Participation::AnsweredNoMedia), T0));
        // At once (a device answering on its own), too short, or not a media-less answer.
        assert!(!rule.count(&call(0.8, 300.0, Participation::AnsweredNoMedia), T0));
        assert!(!rule.count(&call(6.0, 4.0, Participation::AnsweredNoMedia), T0));
        assert!(!rule.count(&call(6.0, 30.0, Participation::AnsweredOneWay), T0));
        let mut open = call(6.0, 30.0, Participation::AnsweredNoMedia);
        open.end = None;
        // Not ended when reported (open at the end of the capture): it lasted until then.
        let answered = Timestamp(6_000_000);
        assert!(!rule.count(&open, answered.plus_secs(4.0)));
        assert!(rule.count(&open, answered.plus_secs(5.0)));
        assert_eq!(rule.due(answered), answered.plus_secs(5.0));
    }

    #[test]
    fn timestamp_rfc3339_round_trip() {
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        let s = t.to_rfc3339();
        assert_eq!(s, "2023-11-14T22:13:20.123456Z");
        assert_eq!(Timestamp::parse_rfc3339(&s), Some(t));
    }

    fn written(t: Timestamp) -> String {
        let mut v = Vec::new();
        t.write_rfc3339(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn written_rfc3339_is_chronos_at_the_edges() {
        for us in [
            0,
            -1,
            1,
            i64::MIN,
            i64::MAX,
            -62_167_219_200_000_000, // 0000-01-01
            -62_167_219_200_000_001,
            253_402_300_799_999_999, // 9999-12-31T23:59:59.999999
            253_402_300_800_000_000,
            951_782_400_000_000,   // 2000-02-29
            4_107_542_400_000_000, // 2100-03-01
        ] {
            let t = Timestamp(us);
            assert_eq!(written(t), t.to_rfc3339(), "{us}");
        }
    }

    proptest::proptest! {
        #[test]
        fn written_rfc3339_is_chronos(
            us in -70_000_000_000_000_000i64..260_000_000_000_000_000,
            any in proptest::prelude::any::<i64>(),
        ) {
            proptest::prop_assert_eq!(written(Timestamp(us)), Timestamp(us).to_rfc3339());
            proptest::prop_assert_eq!(written(Timestamp(any)), Timestamp(any).to_rfc3339());
        }
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
