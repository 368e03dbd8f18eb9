//! Hand-built event sequences for one line of each kind (gateways and hard negatives), as the
//! calls/media stage would emit them. Deterministic for a seed. Used by tests and benchmarks to
//! exercise signals without packets; the end-to-end evaluation uses real generated captures.

use crate::model::{
    CallRecord, Direction, Event, MediaFlowRecord, Outcome, Participation, RegOutcome,
    RegistrationRecord, Timestamp, Transport,
};
use std::net::{IpAddr, SocketAddr};

/// Small deterministic generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.range(0.0, 1.0) < p
    }
    /// Exponential with the given mean.
    pub(crate) fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.range(0.0, 1.0)).max(1e-12).ln()
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub(crate) fn pick(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Base capture time of synthetic sequences (2027-01-15 08:00 UTC).
pub const T0: f64 = 1_800_000_000.0;

/// Capture time `secs` seconds after [`T0`].
pub fn at(secs: f64) -> Timestamp {
    Timestamp::from_secs_f64(T0 + secs)
}

/// Accumulates events and returns them in capture order.
#[derive(Debug)]
pub struct Builder {
    /// The line whose events are built.
    pub line: IpAddr,
    /// The generator behind every random choice.
    pub(crate) rng: Rng,
    events: Vec<(Timestamp, u64, Event)>,
    seq: u64,
    next_port: u16,
    /// User-Agent put on the line's calls and registrations.
    pub user_agent: Option<String>,
}

/// One call as the tracker would report it.
#[derive(Clone, Debug)]
pub struct CallSpec {
    /// Which way the call goes relative to the line.
    pub direction: Direction,
    /// The remote signalling address.
    pub peer: SocketAddr,
    /// From user part.
    pub from: String,
    /// To user part (the called number).
    pub to: String,
    /// Start (INVITE), in seconds after [`T0`].
    pub start: f64,
    /// Seconds from the INVITE to the answer or the failure.
    pub ring: f64,
    /// Talk seconds when answered, else the failure outcome.
    pub talk: Option<f64>,
    /// How an unanswered call ends.
    pub fail: Outcome,
    /// Codec of the call record.
    pub codec: &'static str,
    /// Add a voice flow with the call id for answered calls.
    pub media: bool,
    /// Unanswered: the line sent early media while ringing (a gateway relaying the mobile
    /// network's ringback or announcement) instead of a bare rejection.
    pub early_media: bool,
}

impl Builder {
    /// An empty builder for `line`, random choices seeded by `seed`.
    pub fn new(line: IpAddr, seed: u64) -> Self {
        Builder {
            line,
            rng: Rng::new(seed),
            events: Vec::new(),
            seq: 0,
            next_port: 10000,
            user_agent: None,
        }
    }

    fn push(&mut self, ts: Timestamp, e: Event) {
        self.seq += 1;
        self.events.push((ts, self.seq, e));
    }

    /// Events sorted by time (ties in insertion order).
    pub fn finish(mut self) -> Vec<Event> {
        self.events.sort_by_key(|(t, s, _)| (*t, *s));
        self.events.into_iter().map(|(_, _, e)| e).collect()
    }

    /// Adds one call: its start, answer, media flow and end record.
    pub fn call(&mut self, c: &CallSpec) {
        self.seq += 1;
        let call_id = format!(
            "{}-{}@{}",
            self.seq,
            self.rng.next_u64() % 1_000_000,
            self.line
        );
        let start = at(c.start);
        self.push(
            start,
            Event::CallStarted {
                call_id: call_id.clone(),
                line: Some(self.line),
                direction: c.direction,
                peer: Some(c.peer),
                ts: start,
            },
        );
        let answer = c.talk.map(|_| at(c.start + c.ring));
        let end = at(c.start + c.ring + c.talk.unwrap_or(0.0));
        if let Some(a) = answer {
            self.push(
                a,
                Event::CallAnswered {
                    call_id: call_id.clone(),
                    line: Some(self.line),
                    direction: c.direction,
                    peer: Some(c.peer),
                    called: Some(c.to.clone()),
                    invited: start,
                    ts: a,
                },
            );
        }
        let local = SocketAddr::new(self.line, 5060);
        let mut rtp = Vec::new();
        if let (Some(a), true) = (answer, c.media) {
            self.next_port = self.next_port.wrapping_add(2).max(10000);
            let l = SocketAddr::new(self.line, self.next_port);
            let r = SocketAddr::new(c.peer.ip(), 20000 + (self.rng.pick(5000) as u16) * 2);
            self.push(
                a.plus_secs(1.0),
                Event::MediaStarted {
                    local: l,
                    remote: r,
                    line: Some(self.line),
                    call_id: Some(call_id.clone()),
                    ts: a.plus_secs(1.0),
                },
            );
            let pk = (c.talk.unwrap_or(0.0) * 50.0) as u64;
            self.push(
                end.plus_secs(0.5),
                Event::MediaEnded(Box::new(flow_record(
                    l,
                    r,
                    self.line,
                    Some(call_id.clone()),
                    a,
                    end,
                    pk,
                    214.0,
                    true,
                ))),
            );
            rtp.clear();
        }
        let (to, from) = (c.to.clone(), c.from.clone());
        let rec = CallRecord {
            call_id,
            line: Some(self.line),
            direction: c.direction,
            peer: Some(c.peer),
            from: Some(from),
            to: Some(to.clone()),
            request_uri: Some(to),
            user_agent: self.user_agent.clone(),
            server: None,
            allow: Some("INVITE, ACK, CANCEL, BYE, OPTIONS".into()),
            sdp_origin: Some("-".into()),
            sdp_session: Some("-".into()),
            transport: Transport::Udp,
            codec: Some(c.codec.into()),
            codecs: vec![c.codec.into()],
            ptime: Some(20),
            start,
            progress: Some(at(c.start + 0.2)),
            answer,
            end: Some(end),
            outcome: if c.talk.is_some() {
                Outcome::Answered
            } else {
                c.fail
            },
            status_code: Some(if c.talk.is_some() { 200 } else { 486 }),
            private_contact: false,
            rtp,
            participation: match (c.direction, c.talk.is_some(), c.media) {
                (Direction::Outbound | Direction::Internal, _, _) => Participation::Placed,
                (_, true, true) => Participation::TwoWayVoice,
                (_, true, false) => Participation::AnsweredNoMedia,
                (_, false, _) if c.early_media => Participation::EarlyMedia,
                (_, false, _) => Participation::Rejected,
            },
        };
        let _ = local;
        self.push(end, Event::CallEnded(Box::new(rec)));
    }

    /// A voice-shaped flow without readable SIP (or, with `voice = false`, a non-voice flow).
    pub(crate) fn flow(&mut self, remote: SocketAddr, start: f64, dur: f64, voice: bool) {
        self.next_port = self.next_port.wrapping_add(2).max(10000);
        let local = SocketAddr::new(self.line, self.next_port);
        let (s, e) = (at(start), at(start + dur));
        if voice {
            self.push(
                s.plus_secs(1.0),
                Event::MediaStarted {
                    local,
                    remote,
                    line: Some(self.line),
                    call_id: None,
                    ts: s.plus_secs(1.0),
                },
            );
        }
        let (pk, len) = if voice {
            ((dur * 50.0) as u64, 72.0)
        } else {
            ((dur * 400.0) as u64, 1100.0)
        };
        self.push(
            e.plus_secs(30.0),
            Event::MediaEnded(Box::new(flow_record(
                local, remote, self.line, None, s, e, pk, len, voice,
            ))),
        );
    }

    /// Adds one successful REGISTER of `account` at `registrar`, `t` seconds after [`T0`],
    /// granted `expires` seconds.
    pub fn register(&mut self, account: &str, registrar: SocketAddr, t: f64, expires: u32) {
        let r = RegistrationRecord {
            account: account.into(),
            registrar,
            source: SocketAddr::new(self.line, 5060),
            line: Some(self.line),
            contact: None,
            expires: Some(expires),
            outcome: RegOutcome::Registered,
            status_code: Some(200),
            user_agent: self.user_agent.clone(),
            time: at(t),
        };
        self.push(at(t), Event::Registration(Box::new(r)));
    }
}

#[allow(clippy::too_many_arguments)]
fn flow_record(
    local: SocketAddr,
    remote: SocketAddr,
    line: IpAddr,
    call_id: Option<String>,
    first: Timestamp,
    last: Timestamp,
    packets: u64,
    len: f64,
    voice: bool,
) -> MediaFlowRecord {
    MediaFlowRecord {
        local,
        remote,
        line: Some(line),
        call_id,
        first,
        last,
        packets_out: packets,
        packets_in: packets,
        bytes_out: packets * len as u64,
        bytes_in: packets * len as u64,
        mean_ip_len: len,
        rtp: voice,
        voice_like: voice,
        streams: Vec::new(),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([192, 0, 2, 1], 5060)))
}

/// A foreign softswitch.
pub const SOFTSWITCH: &str = "203.0.113.10:5060";
/// A domestic SIP provider / trunk (inside the `DOMESTIC` prefix).
pub const PROVIDER: &str = "198.51.100.20:5060";
/// The domestic network prefix of the synthetic sequences (CIDR).
pub const DOMESTIC: &str = "198.51.100.0/24";

/// Random mobile number in one of several formats.
pub fn mobile(rng: &mut Rng) -> String {
    let n = 138_0000_0000u64 + rng.next_u64() % 1_0000_0000;
    match rng.pick(3) {
        0 => n.to_string(),
        1 => format!("+86{n}"),
        _ => format!("0086{n}"),
    }
}

/// Gateway shape: SIM channels, answer ratio, talk-time range and how signalling looks.
#[derive(Clone, Debug)]
pub struct GatewaySpec {
    /// SIM channels: calls running side by side, one after another per channel.
    pub channels: usize,
    /// Share of calls answered (0..1).
    pub asr: f64,
    /// Talk time range in seconds (uniform).
    pub talk: (f64, f64),
    /// Idle time range in seconds between one call and the next on a channel (uniform).
    pub gap: (f64, f64),
    /// The peer feeding the calls (the softswitch).
    pub peer: SocketAddr,
    /// No readable SIP: only voice flows without call ids.
    pub opaque: bool,
    /// User-Agent on the calls and registrations.
    pub user_agent: Option<String>,
    /// Register one account per channel.
    pub register: bool,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        GatewaySpec {
            channels: 8,
            asr: 0.4,
            talk: (15.0, 110.0),
            gap: (1.0, 6.0),
            peer: sa(SOFTSWITCH),
            opaque: false,
            user_agent: None,
            register: false,
        }
    }
}

/// A SIM box: every channel takes a call from the softswitch, rings, talks or fails, pauses
/// a few seconds and takes the next.
pub fn gateway(line: IpAddr, seed: u64, start: f64, dur: f64, g: &GatewaySpec) -> Vec<Event> {
    let mut b = Builder::new(line, seed);
    b.user_agent = g.user_agent.clone();
    if g.register {
        for ch in 0..g.channels {
            b.register(
                &format!("sim{ch}@{}", g.peer.ip()),
                g.peer,
                start + ch as f64 * 0.3,
                120,
            );
        }
    }
    for ch in 0..g.channels {
        let mut t = start + b.rng.range(0.0, 5.0) + ch as f64 * 0.5;
        while t < start + dur {
            let answered = b.rng.chance(g.asr);
            let ring = b.rng.range(3.0, if answered { 12.0 } else { 30.0 });
            let talk = answered.then(|| b.rng.range(g.talk.0, g.talk.1));
            let len = ring + talk.unwrap_or(0.0);
            if g.opaque {
                if let Some(talk) = talk {
                    let r = SocketAddr::new(g.peer.ip(), 30000 + (b.rng.pick(8000) as u16) * 2);
                    b.flow(r, t + ring, talk, true);
                }
            } else {
                let to = mobile(&mut b.rng);
                let from = format!("+4420{}", 70000000 + b.rng.pick(9999999));
                let spec = CallSpec {
                    direction: Direction::Inbound,
                    peer: g.peer,
                    from,
                    to,
                    start: t,
                    ring,
                    talk,
                    fail: if b.rng.chance(0.5) {
                        Outcome::NoAnswer
                    } else {
                        Outcome::Busy
                    },
                    codec: "G729",
                    media: true,
                    early_media: true,
                };
                b.call(&spec);
            }
            t += len + b.rng.range(g.gap.0, g.gap.1);
        }
    }
    b.finish()
}

/// A household with a VoIP adapter: one account at a domestic provider, a few calls each way,
/// inbound always to its own number.
pub fn household(line: IpAddr, seed: u64, start: f64, dur: f64) -> Vec<Event> {
    let mut b = Builder::new(line, seed);
    b.user_agent = Some("Grandstream HT802 1.0.43.11".into());
    let own = format!("+3120{}", 5_000_000 + b.rng.pick(999_999));
    let provider = sa(PROVIDER);
    let mut t = start;
    while t < start + dur {
        b.register(&format!("{own}@voip.example.nl"), provider, t, 3600);
        t += 3000.0;
    }
    let mut t = start + b.rng.exp(900.0);
    while t < start + dur {
        let inbound = b.rng.chance(0.5);
        let answered = b.rng.chance(0.8);
        let spec = CallSpec {
            direction: if inbound {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            peer: provider,
            from: if inbound {
                format!("+316{}", 10_000_000 + b.rng.pick(9_999_999))
            } else {
                own.clone()
            },
            to: if inbound {
                own.clone()
            } else {
                format!("+316{}", 10_000_000 + b.rng.pick(9_999_999))
            },
            start: t,
            ring: b.rng.range(3.0, 15.0),
            talk: answered.then(|| b.rng.exp(240.0)),
            fail: Outcome::NoAnswer,
            codec: "PCMA",
            media: true,
            early_media: false,
        };
        b.call(&spec);
        t += b.rng.exp(1200.0) + 60.0;
    }
    b.finish()
}

/// An office IP PBX on a domestic SIP trunk: many concurrent calls both ways, inbound to a DID
/// block, calls of a few minutes, Poisson arrivals.
pub fn office_pbx(line: IpAddr, seed: u64, start: f64, dur: f64) -> Vec<Event> {
    let mut b = Builder::new(line, seed);
    b.user_agent = Some("Asterisk PBX 18.20.0".into());
    let trunk = sa(PROVIDER);
    b.register("trunk1@sip.example.nl", trunk, start, 600);
    let mut t = start + b.rng.exp(20.0);
    while t < start + dur {
        let inbound = b.rng.chance(0.5);
        let did = format!("+312055501{:02}", b.rng.pick(100));
        let ext = format!("+316{}", 10_000_000 + b.rng.pick(9_999_999));
        let answered = b.rng.chance(0.85);
        let spec = CallSpec {
            direction: if inbound {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            peer: trunk,
            from: if inbound { ext.clone() } else { did.clone() },
            to: if inbound { did } else { ext },
            start: t,
            ring: b.rng.range(2.0, 12.0),
            talk: answered.then(|| 60.0 + b.rng.exp(240.0)),
            fail: Outcome::NoAnswer,
            codec: "PCMA",
            media: true,
            early_media: false,
        };
        b.call(&spec);
        t += b.rng.exp(25.0);
    }
    b.finish()
}

/// An outbound predictive dialer: many short, mostly unanswered calls to many numbers, pinned at
/// its line count, but outbound to a domestic trunk.
pub fn dialer(line: IpAddr, seed: u64, start: f64, dur: f64) -> Vec<Event> {
    let mut b = Builder::new(line, seed);
    let trunk = sa(PROVIDER);
    for ch in 0..16 {
        let mut t = start + ch as f64 * 0.7;
        while t < start + dur {
            let answered = b.rng.chance(0.3);
            let ring = b.rng.range(3.0, 25.0);
            let talk = answered.then(|| b.rng.range(10.0, 120.0));
            let spec = CallSpec {
                direction: Direction::Outbound,
                peer: trunk,
                from: "+31205559000".into(),
                to: format!("+316{}", 10_000_000 + b.rng.pick(9_999_999)),
                start: t,
                ring,
                talk,
                fail: Outcome::NoAnswer,
                codec: "PCMA",
                media: true,
                early_media: false,
            };
            b.call(&spec);
            t += ring + talk.unwrap_or(0.0) + b.rng.range(1.0, 4.0);
        }
    }
    b.finish()
}

/// An inbound help desk: calls from carriers (some abroad) to two service numbers, long
/// conversations, Poisson arrivals.
pub fn help_desk(line: IpAddr, seed: u64, start: f64, dur: f64) -> Vec<Event> {
    let mut b = Builder::new(line, seed);
    let carriers = [sa(PROVIDER), sa("203.0.113.77:5060"), sa("192.0.2.40:5060")];
    let mut t = start + b.rng.exp(40.0);
    while t < start + dur {
        let peer = carriers[b.rng.pick(carriers.len())];
        let to = if b.rng.chance(0.7) {
            "+31800123456"
        } else {
            "+31800123457"
        };
        let spec = CallSpec {
            direction: Direction::Inbound,
            peer,
            from: format!("+44{}", 7_000_000_000u64 + b.rng.next_u64() % 999_999_999),
            to: to.into(),
            start: t,
            ring: b.rng.range(1.0, 5.0),
            talk: b.rng.chance(0.95).then(|| 120.0 + b.rng.exp(420.0)),
            fail: Outcome::Cancelled,
            codec: "PCMA",
            media: true,
            early_media: false,
        };
        b.call(&spec);
        t += b.rng.exp(60.0);
    }
    b.finish()
}

/// An expatriate on a foreign VoIP provider: calls to and from their own number abroad.
pub fn expat(line: IpAddr, seed: u64, start: f64, dur: f64) -> Vec<Event> {
    let mut b = Builder::new(line, seed);
    b.user_agent = Some("Linphone/5.2.0".into());
    let provider = sa("203.0.113.200:5060");
    let own = "+447700900123".to_string();
    b.register(&format!("{own}@voip.example.co.uk"), provider, start, 600);
    let mut t = start + b.rng.exp(300.0);
    while t < start + dur {
        let inbound = b.rng.chance(0.6);
        let spec = CallSpec {
            direction: if inbound {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            peer: provider,
            from: if inbound {
                format!("+4479{}", 10_000_000 + b.rng.pick(9_999_999))
            } else {
                own.clone()
            },
            to: if inbound {
                own.clone()
            } else {
                format!("+4479{}", 10_000_000 + b.rng.pick(9_999_999))
            },
            start: t,
            ring: b.rng.range(3.0, 15.0),
            talk: b.rng.chance(0.7).then(|| b.rng.exp(300.0)),
            fail: Outcome::NoAnswer,
            codec: "opus",
            media: true,
            early_media: false,
        };
        b.call(&spec);
        t += b.rng.exp(600.0) + 30.0;
    }
    b.finish()
}

/// A household calling over a messaging app: one, sometimes two, encrypted voice flows at a
/// time to a relay abroad, no SIP.
pub fn app_calls(line: IpAddr, seed: u64, start: f64, dur: f64) -> Vec<Event> {
    let mut b = Builder::new(line, seed);
    let relay: IpAddr = IpAddr::from([203, 0, 113, 150]);
    let mut t = start + b.rng.exp(120.0);
    while t < start + dur {
        let len = 30.0 + b.rng.exp(400.0);
        b.flow(SocketAddr::new(relay, 3478), t, len, true);
        if b.rng.chance(0.3) {
            // A second person in the household on a call at the same time.
            let (s2, l2) = (t + b.rng.range(5.0, len), b.rng.exp(300.0) + 20.0);
            b.flow(SocketAddr::new(relay, 3479), s2, l2, true);
        }
        t += len + b.rng.exp(600.0);
    }
    b.finish()
}

/// Games or video: steady UDP that is not voice-shaped.
pub fn gaming(line: IpAddr, seed: u64, start: f64, dur: f64) -> Vec<Event> {
    let mut b = Builder::new(line, seed);
    let server: IpAddr = IpAddr::from([192, 0, 2, 99]);
    let mut t = start;
    while t < start + dur {
        let len = 300.0 + b.rng.exp(1200.0);
        b.flow(SocketAddr::new(server, 27015), t, len, false);
        t += len + b.rng.exp(300.0);
    }
    b.finish()
}
