//! Noise: what the internet sends to every public SIP address, each source labelled.
//!
//! Contract: `build` turns the scenario's `[[noise]]` entries into sources (one per attacker, or
//! one robocall campaign) and their first tasks; `Source::step` returns the exchanges one request
//! opens (the request, the target line's reply by its `unsolicited` posture, any media) and when
//! the source sends next. Every draw comes from the source's own ChaCha8 stream, so a line's own
//! traffic is drawn the same with or without noise. What each source sent is recorded for the
//! labels: `threats` (attacker address -> kind, targets, params) and `noise` in each hit line's
//! params.
//!
//! Shapes follow public descriptions of the tools and campaigns (SIPVicious svmap/svwar and
//! look-alikes, toll-fraud dialers cycling dial prefixes, INVITE/REGISTER floods, robocalls);
//! they are not tuned to what the detector does.

use crate::engine::{Exchange, Step, Stream, StreamKind};
use crate::numbers::{self as num, exponential, lognormal, uniform};
use crate::population::Line;
use crate::scenario::{Kind, NoiseKind, ProbeMethod, Scenario, Targets, Unsolicited};
use crate::sipmsg::{CodecSpec, Dialog, Msg, Party, G729, PCMA, PCMU};
use crate::{ThreatKind, ThreatLabel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Scanner User-Agents (sweeps and enumeration): SIPVicious, sipcli, VaxSIP, PortSIP, sipsak.
const SCANNER_UAS: [&str; 5] = [
    "friendly-scanner",
    "sipcli/v1.8",
    "VaxSIPUserAgent/3.1",
    "PortSIP VoIP SDK 11.2.1",
    "sipsak 0.9.7",
];
/// Toll-fraud dialers: a fake gateway string, scanners, or no User-Agent at all.
const FRAUD_UAS: [Option<&str>; 5] = [
    Some("Cisco-SIPGateway/IOS-12.x"),
    Some("friendly-scanner"),
    Some("sipcli/v1.8"),
    Some("VaxSIPUserAgent/3.1"),
    None,
];
const FLOOD_UAS: [Option<&str>; 3] = [None, Some("friendly-scanner"), Some("sipcli/v1.8")];
const FRAMING_UAS: [Option<&str>; 3] = [None, Some("VOS3000 V2.1.8.0"), Some("VOS3000 V2.1.6.0")];
/// User names enumeration tries before (or instead of) numeric extensions.
const NAMES: [&str; 12] = [
    "admin",
    "test",
    "office",
    "reception",
    "sales",
    "support",
    "fax",
    "guest",
    "user",
    "voip",
    "sip",
    "info",
];
/// Unanswered requests in a row after which a prober moves on from a target.
const GIVE_UP: u32 = 8;
/// Calls one compromised PBX relays at once for one attacker (its trunk channels).
const MAX_RELAYED: usize = 4;

/// Progress at one target of an enumeration or toll-fraud prober.
#[derive(Clone, Debug, Default)]
struct Probe {
    tried: u32,
    silent_streak: u32,
    done: bool,
    /// Toll fraud: the dial prefix that got through (the dialer keeps using it).
    open: Option<usize>,
}

/// Replies one line gave one source.
#[derive(Clone, Debug, Default)]
struct Tally {
    requests: u64,
    answered: u64,
    rejected: u64,
    /// Only a provisional response (an overloaded device's 100 Trying).
    provisional: u64,
    unanswered: u64,
}

/// How a line replies to one INVITE.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reply {
    None,
    /// 100 Trying and nothing more.
    Provisional,
    Reject {
        trying: bool,
        code: u16,
    },
    /// 200 OK but no voice back (cameras, intercoms).
    AnswerMute,
    /// 200 OK, two-way voice, and the call placed out through the trunk (compromised PBX).
    Relay,
}

/// One attacker (or robocall campaign) and what it has done so far.
pub struct Source {
    kind: NoiseKind,
    campaign: String,
    rng: ChaCha8Rng,
    addr4: Ipv4Addr,
    addr6: Ipv6Addr,
    port: u16,
    targets: Vec<u32>,
    ua: Option<String>,
    display: Option<String>,
    from_user: String,
    ttl: u8,
    rtt: i64,
    after_secs: u64,
    end: i64,
    rate: f64,
    attempts: u32,
    passes: u32,
    pass_gap: i64,
    method: ProbeMethod,
    spoofed: bool,
    burst_end: i64,
    burst_secs: u64,
    rtp: bool,
    channels: u32,
    calls_per_hour: f64,
    answer_ratio: f64,
    names_first: bool,
    retransmit: bool,
    numbers: Vec<String>,
    cursor: u64,
    probes: Vec<Probe>,
    relayed_until: Vec<i64>,
    /// Source address -> line -> requests.
    sent: BTreeMap<IpAddr, BTreeMap<u32, u64>>,
    tally: BTreeMap<u32, Tally>,
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

fn secs(x: f64) -> i64 {
    (x * 1e6) as i64
}

/// Address of the `n`-th attacker: hosting networks abroad, away from every simulated peer.
fn attacker_addr(n: u32) -> (Ipv4Addr, Ipv6Addr) {
    let host = 150 + n.min(99);
    (
        Ipv4Addr::new(192, 0, 2, host as u8),
        Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, n as u16 + 1),
    )
}

/// Targets of one `[[noise]]` entry as line indices, in address order.
fn resolve(sc: &Scenario, kind: NoiseKind, targets: &Targets, lines: &[Line]) -> Vec<u32> {
    lines
        .iter()
        .filter(|l| match targets {
            Targets::All(_) => {
                kind != NoiseKind::Robocall || matches!(l.kind, Kind::Household | Kind::ExpatVoip)
            }
            Targets::Named(names) => sc
                .populations
                .get(l.pop)
                .and_then(|p| p.name.as_ref())
                .is_some_and(|n| names.contains(n)),
        })
        .map(|l| l.idx)
        .collect()
}

/// Builds every noise source of the scenario and its first tasks.
pub fn build(
    sc: &Scenario,
    seed: u64,
    start: i64,
    end: i64,
    lines: &[Line],
) -> (Vec<Source>, Vec<(i64, u32, u32)>) {
    let mut sources = Vec::new();
    let mut first = Vec::new();
    let mut attacker = 0u32;
    for (entry, n) in sc.noise.iter().enumerate() {
        let targets = resolve(sc, n.kind, &n.targets, lines);
        for k in 0..n.count {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            // Streams of their own, apart from every line's (which use the line index).
            rng.set_stream((2 << 40) | ((entry as u64) << 16) | u64::from(k));
            let (addr4, addr6) = attacker_addr(attacker);
            if n.kind != NoiseKind::Robocall {
                attacker += 1;
            }
            let duration = ((end - start) / 1_000_000).max(1) as f64;
            let after_secs = n
                .after
                .unwrap_or_else(|| uniform(&mut rng, 0.0, (duration / 3.0).min(90.0)) as u64);
            let t0 = start.saturating_add((after_secs as i64).saturating_mul(1_000_000));
            let mut s = Source {
                kind: n.kind,
                campaign: format!("{}-{}-{}", n.kind.as_str(), entry + 1, k + 1),
                addr4,
                addr6,
                port: if rng.random_bool(0.6) {
                    5060
                } else {
                    rng.random_range(5061..5100)
                },
                targets: targets.clone(),
                ua: None,
                display: None,
                from_user: String::new(),
                ttl: rng.random_range(40..56),
                rtt: rng.random_range(80_000..260_000),
                after_secs,
                end,
                rate: 1.0,
                attempts: 0,
                passes: 1,
                pass_gap: 0,
                method: ProbeMethod::Register,
                spoofed: false,
                burst_end: end,
                burst_secs: 0,
                rtp: false,
                channels: 1,
                calls_per_hour: 0.0,
                answer_ratio: 0.0,
                names_first: false,
                retransmit: false,
                numbers: Vec::new(),
                cursor: 0,
                probes: vec![Probe::default(); targets.len()],
                relayed_until: Vec::new(),
                sent: BTreeMap::new(),
                tally: BTreeMap::new(),
                rng,
            };
            s.draw(n);
            let slots = match n.kind {
                NoiseKind::Framing => s.channels,
                NoiseKind::Robocall => s.targets.len() as u32,
                _ => 1,
            };
            if n.kind.is_flood() {
                s.burst_end = t0.saturating_add(secs(s.burst_secs as f64));
            }
            let src = sources.len() as u32;
            for slot in 0..slots {
                let t = match n.kind {
                    NoiseKind::Framing => t0 + secs(uniform(&mut s.rng, 0.0, 5.0)),
                    NoiseKind::Robocall => {
                        // The first call comes early so short runs show it.
                        let mean = 3600.0 / s.calls_per_hour.max(0.01);
                        t0 + secs(uniform(&mut s.rng, 0.0, mean.min(60.0)))
                    }
                    _ => t0,
                };
                first.push((t, src, slot));
            }
            sources.push(s);
        }
    }
    (sources, first)
}

impl Source {
    /// Per-kind settings: the entry's values, or draws from what the tools do.
    fn draw(&mut self, n: &crate::scenario::Noise) {
        let r = &mut self.rng;
        let given_ua = n.ua.clone();
        match n.kind {
            NoiseKind::Sweep => {
                self.ua = Some(given_ua.unwrap_or_else(|| pick(r, &SCANNER_UAS).to_string()));
                self.rate = n.rate.unwrap_or_else(|| uniform(r, 2.0, 30.0));
                self.passes = n.passes.unwrap_or(if r.random_bool(0.35) { 2 } else { 1 });
                self.pass_gap = secs(uniform(r, 30.0, 240.0));
                self.from_user = "100".into();
            }
            NoiseKind::Enumeration => {
                self.ua = Some(given_ua.unwrap_or_else(|| pick(r, &SCANNER_UAS).to_string()));
                self.rate = n.rate.unwrap_or_else(|| uniform(r, 2.0, 15.0));
                self.attempts = n.attempts.unwrap_or_else(|| r.random_range(80..300));
                self.method = n.method.unwrap_or(if r.random_bool(0.7) {
                    ProbeMethod::Register
                } else {
                    ProbeMethod::Invite
                });
                self.names_first = r.random_bool(0.4);
            }
            NoiseKind::TollFraud => {
                self.ua = given_ua.or_else(|| pick(r, &FRAUD_UAS).map(str::to_string));
                self.rate = n.rate.unwrap_or_else(|| uniform(r, 0.1, 0.5));
                self.attempts = n.attempts.unwrap_or_else(|| r.random_range(15..40));
                self.from_user = pick(r, &["100", "1000", "anonymous", "101", "2000"]).to_string();
                self.numbers = (0..2).map(|_| num::premium_number(r)).collect();
            }
            NoiseKind::InviteFlood | NoiseKind::RegisterFlood => {
                self.ua = given_ua.or_else(|| pick(r, &FLOOD_UAS).map(str::to_string));
                self.rate = n.rate.unwrap_or_else(|| uniform(r, 80.0, 300.0));
                self.spoofed = n.spoofed.unwrap_or(false);
                self.burst_secs = n.burst.unwrap_or_else(|| r.random_range(5..15));
            }
            NoiseKind::Framing => {
                self.ua = given_ua.or_else(|| pick(r, &FRAMING_UAS).map(str::to_string));
                self.rtp = n.rtp.unwrap_or(false);
                self.channels = n.channels.unwrap_or(4);
                self.retransmit = r.random_bool(0.6);
            }
            NoiseKind::Robocall => {
                self.calls_per_hour = n.calls_per_hour.unwrap_or_else(|| uniform(r, 4.0, 12.0));
                self.answer_ratio = n.answer_ratio.unwrap_or_else(|| uniform(r, 0.3, 0.6));
            }
        }
        if self.ua.as_deref() == Some("friendly-scanner") {
            self.display = Some("sipvicious".into());
        }
    }

    /// The kind of threat this source is, `None` for robocalls (they come through the
    /// household's own provider; no attacker address reaches the line).
    pub fn threat_kind(&self) -> Option<ThreatKind> {
        Some(match self.kind {
            NoiseKind::Sweep => ThreatKind::Scan,
            NoiseKind::Enumeration => ThreatKind::Enumeration,
            NoiseKind::TollFraud => ThreatKind::TollFraudAttempt,
            NoiseKind::InviteFlood | NoiseKind::RegisterFlood => ThreatKind::Flood,
            NoiseKind::Framing => ThreatKind::Framing,
            NoiseKind::Robocall => return None,
        })
    }

    /// The next request (or, for framing and robocalls, attempt on `slot`) at `t`.
    pub fn step(&mut self, slot: u32, t: i64, lines: &[Line]) -> (Vec<Exchange>, Option<i64>) {
        if t >= self.end {
            return (Vec::new(), None);
        }
        match self.kind {
            NoiseKind::Sweep => self.sweep(t, lines),
            NoiseKind::Enumeration | NoiseKind::TollFraud => self.probe(t, lines),
            NoiseKind::InviteFlood | NoiseKind::RegisterFlood => self.flood(t, lines),
            NoiseKind::Framing => self.framing(t, lines),
            NoiseKind::Robocall => self.robocall(slot, t, lines),
        }
    }

    fn sock(&self, line: &Line) -> SocketAddr {
        match line.addr {
            IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(self.addr4), self.port),
            IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(self.addr6), self.port),
        }
    }

    /// A forged source: a random address abroad (and port) per request.
    fn spoofed_sock(&mut self, line: &Line) -> SocketAddr {
        // Ephemeral ports, as flood tools bind them (above 5060, so dissectors key on the SIP port).
        let port = self.rng.random_range(32768..61000);
        let ip = match line.addr {
            IpAddr::V4(_) => if self.rng.random_bool(0.75) {
                Ipv4Addr::new(198, 51, 100, self.rng.random_range(30..200))
            } else {
                Ipv4Addr::new(203, 0, 113, self.rng.random_range(140..200))
            }
            .into(),
            // A bounded pool, so the labels list at most a thousand forged addresses.
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0xbad,
                1,
                0,
                0,
                0,
                self.rng.random_range(0x100..0x4e8),
            )),
        };
        SocketAddr::new(ip, port)
    }

    fn party(&mut self, sock: SocketAddr, user: String, domain: String) -> Party {
        Party {
            sock,
            host: sock.ip().to_string(),
            port: sock.port(),
            user,
            display: self.display.clone(),
            domain,
            tag: num::hex_id(&mut self.rng, 4),
            ua: self.ua.clone(),
            allow: None,
            rtp_port: 2 * self.rng.random_range(5000..30000u16),
            sdp_user: "-".into(),
            sdp_session: "-".into(),
            sess_id: self.rng.random_range(1000..u32::MAX / 2),
        }
    }

    fn dialog(&mut self, caller: Party, callee: Party, ruri_user: String, tcp: bool) -> Dialog {
        let ruri_host = match callee.sock {
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            SocketAddr::V4(a) => a.to_string(),
        };
        Dialog {
            call_id: format!("{}@{}", num::hex_id(&mut self.rng, 10), caller.sock.ip()),
            caller,
            callee,
            ruri_user,
            ruri_host,
            branch: format!("z9hG4bK{}", num::hex_id(&mut self.rng, 8)),
            branch2: format!("z9hG4bK{}", num::hex_id(&mut self.rng, 8)),
            tcp,
            codec: G729,
            offer: vec![PCMU, PCMA, G729],
            ptime: 20,
            big: false,
            extra: Vec::new(),
            expires: 3600,
            nonce: num::hex_id(&mut self.rng, 8),
            max_forwards: 70,
        }
    }

    fn record(&mut self, from: IpAddr, line: u32) {
        *self.sent.entry(from).or_default().entry(line).or_default() += 1;
        self.tally.entry(line).or_default().requests += 1;
    }

    fn outcome(&mut self, line: u32, reply: Reply) {
        let t = self.tally.entry(line).or_default();
        match reply {
            Reply::None => t.unanswered += 1,
            Reply::Provisional => t.provisional += 1,
            Reply::Reject { .. } => t.rejected += 1,
            Reply::AnswerMute | Reply::Relay => t.answered += 1,
        }
    }

    fn exchange(&self, line: u32, d: Dialog, script: Vec<Step>, streams: Vec<Stream>) -> Exchange {
        Exchange {
            line,
            dialog: Some(Box::new(d)),
            line_is_caller: false,
            script,
            pos: 0,
            streams,
            counts_active: false,
            plain: true,
            peer_ttl: Some(self.ttl),
        }
    }

    /// Device processing time before it answers.
    fn turnaround(&mut self) -> i64 {
        self.rng.random_range(2_000..30_000)
    }

    fn rtp(&mut self, codec: CodecSpec, ptime: u32) -> StreamKind {
        StreamKind::Rtp {
            ssrc: self.rng.random(),
            seq: self.rng.random(),
            ts: self.rng.random(),
            ts_step: 8 * ptime,
            pt: codec.pt,
            payload: codec.bytes_per_10ms * (ptime / 10) as u16,
            marker: true,
        }
    }

    /// Voice from `src` to `dst` between `from` and `to`; `from_line` says which end sends.
    #[allow(clippy::too_many_arguments)]
    fn voice(
        &mut self,
        from_line: bool,
        src: SocketAddr,
        dst: SocketAddr,
        from: i64,
        to: i64,
        codec: CodecSpec,
        ptime: u32,
        jitter: i64,
    ) -> Stream {
        let kind = self.rtp(codec, ptime);
        let seed = self.rng.random();
        Stream::new(
            from_line,
            src,
            dst,
            from,
            to,
            i64::from(ptime) * 1000,
            jitter,
            kind,
            seed,
        )
    }

    // ----- sweeps -------------------------------------------------------------------------

    /// OPTIONS to the next line of the range; one pass after another.
    fn sweep(&mut self, t: i64, lines: &[Line]) -> (Vec<Exchange>, Option<i64>) {
        let n = self.targets.len() as u64;
        if n == 0 || self.cursor >= n * u64::from(self.passes) {
            return (Vec::new(), None);
        }
        let idx = self.targets[(self.cursor % n) as usize];
        self.cursor += 1;
        let next = if self.cursor % n == 0 {
            t + self.pass_gap
        } else {
            t + secs(uniform(&mut self.rng, 0.7, 1.3) / self.rate)
        };
        let Some(line) = lines.get(idx as usize) else {
            return (Vec::new(), Some(next));
        };
        let sock = self.sock(line);
        let host = line.addr.to_string();
        let user = self.from_user.clone();
        let domain = if self.display.is_some() {
            "1.1.1.1".to_string()
        } else {
            sock.ip().to_string()
        };
        let caller = self.party(sock, user.clone(), domain);
        let callee = line.device_party(&mut self.rng, user.clone(), host, 5060);
        let ruri_user = if self.ua.as_deref() == Some("sipcli/v1.8") {
            String::new()
        } else {
            user
        };
        let d = self.dialog(caller, callee, ruri_user, false);
        let mut script = vec![step(t, Msg::Options)];
        self.record(sock.ip(), idx);
        let reply = match line.unsolicited {
            Unsolicited::Ignore => Reply::None,
            // A PBX has no user 100 for a stranger; devices answer any OPTIONS.
            _ if line.kind.is_pbx() || matches!(line.kind, Kind::CallCentre | Kind::HelpDesk) => {
                Reply::Reject {
                    trying: false,
                    code: 404,
                }
            }
            _ => Reply::AnswerMute,
        };
        match reply {
            Reply::Reject { code, .. } => {
                script.push(step(t + self.turnaround(), Msg::OptionsResp(code)))
            }
            Reply::None => {}
            _ => script.push(step(t + self.turnaround(), Msg::OptionsResp(200))),
        }
        self.outcome(idx, reply);
        (vec![self.exchange(idx, d, script, Vec::new())], Some(next))
    }

    // ----- enumeration and toll fraud --------------------------------------------------------

    /// The `k`-th user name an enumeration tries: common names (sometimes first), then 100..999,
    /// then 1000 and up.
    fn extension(&self, k: u32) -> String {
        let mut k = k as usize;
        if self.names_first {
            if let Some(n) = NAMES.get(k) {
                return (*n).to_string();
            }
            k -= NAMES.len();
        }
        if k < 900 {
            (100 + k).to_string()
        } else {
            (1000 + k - 900).to_string()
        }
    }

    /// Round robin over the targets still being probed.
    fn probe(&mut self, t: i64, lines: &[Line]) -> (Vec<Exchange>, Option<i64>) {
        let n = self.targets.len();
        let Some(pos) = (0..n)
            .map(|i| (self.cursor as usize + i) % n.max(1))
            .find(|&i| self.probes.get(i).is_some_and(|p| !p.done))
        else {
            return (Vec::new(), None);
        };
        self.cursor = (pos + 1) as u64;
        let next = t + secs(uniform(&mut self.rng, 0.8, 1.25) / self.rate);
        let idx = self.targets[pos];
        let Some(line) = lines.get(idx as usize) else {
            if let Some(p) = self.probes.get_mut(pos) {
                p.done = true;
            }
            return (Vec::new(), Some(next));
        };
        let k = self.probes.get(pos).map_or(0, |p| p.tried);
        let (ex, reply) = if self.kind == NoiseKind::Enumeration {
            let ext = self.extension(k);
            match self.method {
                ProbeMethod::Register => self.register_probe(t, line, ext),
                ProbeMethod::Invite => {
                    let reply = self.invite_reply(line, &ext, None);
                    (self.invite_probe(t, line, ext, reply), reply)
                }
            }
        } else {
            let (dial, prefix) = self.dial_string(pos, k);
            let reply = self.invite_reply(line, &dial, Some((prefix, t)));
            if reply == Reply::Relay {
                if let Some(p) = self.probes.get_mut(pos) {
                    p.open = Some(prefix);
                }
            }
            (self.invite_probe(t, line, dial, reply), reply)
        };
        self.outcome(idx, reply);
        if let Some(p) = self.probes.get_mut(pos) {
            p.tried += 1;
            p.silent_streak = if reply == Reply::None {
                p.silent_streak + 1
            } else {
                0
            };
            p.done = p.tried >= self.attempts || p.silent_streak >= GIVE_UP;
        }
        (ex, Some(next))
    }

    /// Toll fraud's `k`-th dial string at target `pos`: every prefix in turn before each
    /// destination number, or, once one got through, that prefix with number after number.
    fn dial_string(&mut self, pos: usize, k: u32) -> (String, usize) {
        let np = num::TOLL_PREFIXES.len();
        let k = k as usize;
        let nn = self.numbers.len().max(1);
        let (prefix, i) = match self.probes.get(pos).and_then(|p| p.open) {
            Some(open) => (open, k % nn),
            None => (k % np, (k / np) % nn),
        };
        let number = self.numbers.get(i).cloned().unwrap_or_default();
        let head = num::TOLL_PREFIXES.get(prefix).copied().unwrap_or("00");
        (format!("{head}{number}"), prefix)
    }

    /// How `line` replies to an INVITE for `user` (toll fraud: with the dial prefix index and
    /// the time, for the compromised PBX's route and channels).
    fn invite_reply(&mut self, line: &Line, user: &str, fraud: Option<(usize, i64)>) -> Reply {
        let pbx = line.kind.is_pbx() || matches!(line.kind, Kind::CallCentre | Kind::HelpDesk);
        match line.unsolicited {
            Unsolicited::Ignore => Reply::None,
            Unsolicited::Answer if line.kind == Kind::Camera => Reply::AnswerMute,
            Unsolicited::Answer => match fraud {
                Some((prefix, t)) if line.open_prefix == Some(prefix) => {
                    self.relayed_until.retain(|&e| e > t);
                    if self.relayed_until.len() >= MAX_RELAYED {
                        Reply::Reject {
                            trying: true,
                            code: 503,
                        }
                    } else {
                        Reply::Relay
                    }
                }
                _ => Reply::Reject {
                    trying: true,
                    code: if line.has_extension(user) { 401 } else { 404 },
                },
            },
            Unsolicited::Reject if pbx => Reply::Reject {
                trying: true,
                code: if line.has_extension(user) {
                    401
                } else if fraud.is_some() {
                    [404, 403, 401][line.idx as usize % 3]
                } else {
                    404
                },
            },
            Unsolicited::Reject => Reply::Reject {
                trying: false,
                code: if line.idx % 2 == 0 { 403 } else { 404 },
            },
        }
    }

    /// REGISTER for extension `ext`: 401 where it exists on a PBX, 403/404 elsewhere.
    fn register_probe(&mut self, t: i64, line: &Line, ext: String) -> (Vec<Exchange>, Reply) {
        let sock = self.sock(line);
        let host = line.addr.to_string();
        let caller = self.party(sock, ext.clone(), host.clone());
        let callee = line.device_party(&mut self.rng, ext, host, 5060);
        let user = caller.user.clone();
        let d = self.dialog(caller, callee, String::new(), false);
        self.record(sock.ip(), line.idx);
        let mut script = vec![step(
            t,
            Msg::Register {
                cseq: 1,
                auth: false,
            },
        )];
        let at = t + self.turnaround();
        let reply = match line.unsolicited {
            Unsolicited::Ignore => Reply::None,
            _ if line.has_extension(&user) => {
                script.push(step(at, Msg::Unauthorized { cseq: 1 }));
                Reply::Reject {
                    trying: false,
                    code: 401,
                }
            }
            _ => {
                let code = if line.kind == Kind::Camera || line.idx % 2 == 0 {
                    403
                } else {
                    404
                };
                script.push(step(at, Msg::RegisterFail { cseq: 1, code }));
                Reply::Reject {
                    trying: false,
                    code,
                }
            }
        };
        (vec![self.exchange(line.idx, d, script, Vec::new())], reply)
    }

    /// One INVITE probe (enumeration or toll fraud) with full SDP, and what follows its reply.
    fn invite_probe(&mut self, t: i64, line: &Line, user: String, reply: Reply) -> Vec<Exchange> {
        let sock = self.sock(line);
        let host = line.addr.to_string();
        let from = self.from_user.clone();
        let from = if from.is_empty() { user.clone() } else { from };
        let caller = self.party(sock, from, host.clone());
        let callee = line.device_party(&mut self.rng, user.clone(), host, 5060);
        let mut d = self.dialog(caller, callee, user, false);
        let (codec, ptime) = line.codec();
        d.codec = codec;
        self.record(sock.ip(), line.idx);
        let rtt = self.rtt;
        let mut script = vec![step(t, Msg::Invite)];
        let mut streams = Vec::new();
        let mut extra = Vec::new();
        let at = t + self.turnaround();
        match reply {
            Reply::None => {}
            Reply::Provisional => script.push(step(at, Msg::Trying)),
            Reply::Reject { trying, code } => {
                let mut tf = at;
                if trying {
                    script.push(step(at, Msg::Trying));
                    tf = at + self.turnaround();
                }
                script.push(step(tf, Msg::Fail(code)));
                script.push(step(tf + rtt, Msg::AckFail(code)));
            }
            Reply::AnswerMute => {
                script.push(step(at, Msg::Trying));
                let ta = at + secs(uniform(&mut self.rng, 0.2, 1.5));
                script.push(step(ta, Msg::OkInvite));
                script.push(step(ta + rtt, Msg::AckOk));
                // Probes hang up at once; toll-fraud dialers play their audio into the call.
                let talk = if self.kind == NoiseKind::Enumeration {
                    uniform(&mut self.rng, 0.1, 1.0)
                } else {
                    lognormal(&mut self.rng, 20.0, 0.6).clamp(3.0, 90.0)
                };
                let te = ta + rtt + secs(talk);
                if self.kind == NoiseKind::TollFraud {
                    let src = SocketAddr::new(d.caller.sock.ip(), d.caller.rtp_port);
                    let dst = SocketAddr::new(line.addr, d.callee.rtp_port);
                    streams.push(self.voice(
                        false,
                        src,
                        dst,
                        ta + rtt + 1,
                        te,
                        codec,
                        ptime,
                        3_000,
                    ));
                }
                script.push(step(te, Msg::Bye { by_caller: true }));
                script.push(step(te + self.turnaround(), Msg::OkBye { by_caller: true }));
            }
            Reply::Relay => {
                extra = self.relay(at, line, &mut d, &mut script, &mut streams);
            }
        }
        let mut v = vec![self.exchange(line.idx, d, script, streams)];
        v.extend(extra);
        v
    }

    /// A compromised PBX takes the call, places it out through its trunk to the destination
    /// and bridges two-way voice on both legs. Returns the trunk leg.
    fn relay(
        &mut self,
        at: i64,
        line: &Line,
        d: &mut Dialog,
        script: &mut Vec<Step>,
        streams: &mut Vec<Stream>,
    ) -> Vec<Exchange> {
        let rtt = self.rtt;
        let (codec, ptime) = line.codec();
        let prov = line.provider();
        let prtt = prov.rtt_us;
        // The PBX's outbound route strips the scanner's prefix and dials 00 + number.
        let digits: String = d.ruri_user.trim_start_matches('+').to_string();
        let number = num::TOLL_PREFIXES
            .iter()
            .filter(|p| **p != "+")
            .filter_map(|p| digits.strip_prefix(p))
            .min_by_key(|r| r.len())
            .unwrap_or(&digits)
            .to_string();
        let dialled = format!("00{number}");
        let own = prov.user.clone();
        let lp = line.device_party(&mut self.rng, own, prov.domain.clone(), prov.port);
        let pp = line.provider_party(&mut self.rng, dialled.clone());
        let mut out = self.dialog(lp, pp, dialled, prov.tcp);
        out.ruri_host = prov.peer.to_string();
        out.codec = codec;
        out.offer = vec![codec, PCMU];
        script.push(step(at, Msg::Trying));
        let t_out = at + self.rng.random_range(5_000..20_000);
        let tr = t_out + prtt + secs(uniform(&mut self.rng, 1.0, 3.0));
        let ta = tr + secs(uniform(&mut self.rng, 3.0, 15.0));
        let talk = lognormal(&mut self.rng, 60.0, 0.7).clamp(10.0, 600.0);
        let te = ta + rtt + secs(talk);
        let mut o = vec![
            step(t_out, Msg::Invite),
            step(t_out + prtt, Msg::Trying),
            step(tr, Msg::Ringing),
            step(ta, Msg::OkInvite),
            step(ta + 1_000, Msg::AckOk),
        ];
        script.push(step(tr + 3_000, Msg::Ringing));
        script.push(step(ta + 3_000, Msg::OkInvite));
        script.push(step(ta + 3_000 + rtt, Msg::AckOk));
        script.push(step(te, Msg::Bye { by_caller: true }));
        let t_ok = te + self.turnaround();
        script.push(step(t_ok, Msg::OkBye { by_caller: true }));
        o.push(step(t_ok + 2_000, Msg::Bye { by_caller: true }));
        o.push(step(t_ok + 2_000 + prtt, Msg::OkBye { by_caller: true }));
        d.codec = codec;
        let atk = SocketAddr::new(d.caller.sock.ip(), d.caller.rtp_port);
        let pbx_in = SocketAddr::new(line.addr, d.callee.rtp_port);
        let pbx_out = SocketAddr::new(line.addr, out.caller.rtp_port);
        let trunk = SocketAddr::new(out.callee.sock.ip(), out.callee.rtp_port);
        streams.push(self.voice(true, pbx_in, atk, ta + 5_000, te, codec, ptime, 300));
        streams.push(self.voice(
            false,
            atk,
            pbx_in,
            ta + 3_000 + rtt,
            te,
            codec,
            ptime,
            3_000,
        ));
        let mut trunk_streams = vec![
            self.voice(true, pbx_out, trunk, ta + 2_000, te, codec, ptime, 300),
            self.voice(
                false,
                trunk,
                pbx_out,
                ta + prtt / 2,
                te,
                codec,
                ptime,
                1_000,
            ),
        ];
        trunk_streams.sort_by_key(|s| s.next);
        self.relayed_until.push(te);
        vec![Exchange {
            line: line.idx,
            dialog: Some(Box::new(out)),
            line_is_caller: true,
            script: o,
            pos: 0,
            streams: trunk_streams,
            counts_active: true,
            plain: true,
            peer_ttl: None,
        }]
    }

    // ----- floods ---------------------------------------------------------------------------

    /// One INVITE or REGISTER of a flood: random Call-ID, user and (spoofed) source; the flooder
    /// never completes a transaction.
    fn flood(&mut self, t: i64, lines: &[Line]) -> (Vec<Exchange>, Option<i64>) {
        let n = self.targets.len() as u64;
        if n == 0 || t >= self.burst_end {
            return (Vec::new(), None);
        }
        let idx = self.targets[(self.cursor % n) as usize];
        self.cursor += 1;
        let next = t + 1 + (exponential(&mut self.rng, 1.0 / self.rate) * 1e6) as i64;
        let Some(line) = lines.get(idx as usize) else {
            return (Vec::new(), Some(next));
        };
        let sock = if self.spoofed {
            self.spoofed_sock(line)
        } else {
            self.sock(line)
        };
        let host = line.addr.to_string();
        let user = self.rng.random_range(100..10_000u32).to_string();
        let to = if self.rng.random_bool(0.5) {
            num::mobile_national(&mut self.rng)
        } else {
            user.clone()
        };
        let caller = self.party(sock, user, host.clone());
        let callee = line.device_party(&mut self.rng, to.clone(), host, 5060);
        let d = self.dialog(caller, callee, to, false);
        self.record(sock.ip(), idx);
        let answers = line.unsolicited != Unsolicited::Ignore;
        let at = t + self.turnaround();
        let mut script = Vec::with_capacity(3);
        let mut reply = Reply::None;
        if self.kind == NoiseKind::InviteFlood {
            script.push(step(t, Msg::Invite));
            // An overloaded device answers some: 100 Trying, now and then a final refusal.
            if answers && self.rng.random_bool(0.35) {
                script.push(step(at, Msg::Trying));
                reply = Reply::Provisional;
                if self.rng.random_bool(0.25) {
                    let code = *pick(&mut self.rng, &[486u16, 503, 403]);
                    script.push(step(at + self.turnaround(), Msg::Fail(code)));
                    reply = Reply::Reject { trying: true, code };
                }
            }
        } else {
            let cseq = self.rng.random_range(1..100);
            script.push(step(t, Msg::Register { cseq, auth: false }));
            if answers && self.rng.random_bool(0.4) {
                let m = if line.kind.is_pbx() {
                    Msg::Unauthorized { cseq }
                } else {
                    Msg::RegisterFail { cseq, code: 403 }
                };
                script.push(step(at, m));
                reply = Reply::Reject {
                    trying: false,
                    code: 401,
                };
            }
        }
        self.outcome(idx, reply);
        (vec![self.exchange(idx, d, script, Vec::new())], Some(next))
    }

    // ----- framing --------------------------------------------------------------------------

    /// One attempt on a framing channel: a gateway-shaped INVITE (a new mobile number of the
    /// country, a foreign caller ID) that the line ignores or rejects, optionally with one-way
    /// voice-shaped RTP sent at the line anyway.
    fn framing(&mut self, t: i64, lines: &[Line]) -> (Vec<Exchange>, Option<i64>) {
        let n = self.targets.len() as u64;
        if n == 0 {
            return (Vec::new(), None);
        }
        let idx = self.targets[(self.cursor % n) as usize];
        self.cursor += 1;
        let Some(line) = lines.get(idx as usize) else {
            return (Vec::new(), None);
        };
        let sock = self.sock(line);
        let host = line.addr.to_string();
        let (_, dialled) = num::dialled_mobile(&mut self.rng);
        let cli = num::intl_cli(&mut self.rng);
        let caller = self.party(sock, cli, sock.ip().to_string());
        let callee = line.device_party(&mut self.rng, dialled.clone(), host, 5060);
        let mut d = self.dialog(caller, callee, dialled.clone(), false);
        d.offer = vec![G729, PCMA, PCMU];
        self.record(sock.ip(), idx);
        let reply = match line.unsolicited {
            Unsolicited::Ignore => Reply::None,
            Unsolicited::Answer if line.kind == Kind::Camera => Reply::AnswerMute,
            _ if line.kind.is_pbx() => Reply::Reject {
                trying: true,
                code: 404,
            },
            _ => {
                let u: f64 = self.rng.random();
                Reply::Reject {
                    trying: false,
                    code: if u < 0.4 {
                        403
                    } else if u < 0.75 {
                        486
                    } else {
                        404
                    },
                }
            }
        };
        self.outcome(idx, reply);
        let rtt = self.rtt;
        let mut script = vec![step(t, Msg::Invite)];
        let at = t + self.turnaround();
        let sig_end = match reply {
            Reply::None => {
                // RFC 3261 timer A: retransmit at 0.5 s, doubling, until the attempt is given up.
                let hold = uniform(&mut self.rng, 8.0, 32.0);
                if self.retransmit {
                    let mut gap = 0.5;
                    let mut at = 0.5;
                    while at < hold {
                        script.push(step(t + secs(at), Msg::Invite));
                        gap *= 2.0;
                        at += gap;
                    }
                }
                t + secs(hold)
            }
            Reply::Reject { trying, code } => {
                let mut tf = at;
                if trying {
                    script.push(step(at, Msg::Trying));
                    tf += self.turnaround();
                }
                script.push(step(tf, Msg::Fail(code)));
                script.push(step(tf + rtt, Msg::AckFail(code)));
                tf + rtt
            }
            _ => {
                script.push(step(at, Msg::Trying));
                let ta = at + secs(uniform(&mut self.rng, 0.2, 1.5));
                script.push(step(ta, Msg::OkInvite));
                script.push(step(ta + rtt, Msg::AckOk));
                let te = ta + rtt + secs(lognormal(&mut self.rng, 40.0, 0.6).clamp(5.0, 150.0));
                script.push(step(te, Msg::Bye { by_caller: true }));
                script.push(step(te + self.turnaround(), Msg::OkBye { by_caller: true }));
                te
            }
        };
        let mut streams = Vec::new();
        let mut media_end = sig_end;
        if self.rtp || reply == Reply::AnswerMute {
            // Voice-shaped G.729 at 20 ms towards the port a gateway would have answered with.
            let from = t + secs(uniform(&mut self.rng, 0.3, 2.0));
            let to = from + secs(lognormal(&mut self.rng, 45.0, 0.6).clamp(8.0, 180.0));
            let to = if reply == Reply::AnswerMute {
                sig_end
            } else {
                to
            };
            let src = SocketAddr::new(d.caller.sock.ip(), d.caller.rtp_port);
            let dst = SocketAddr::new(line.addr, d.callee.rtp_port);
            streams.push(self.voice(false, src, dst, from, to, G729, 20, 3_000));
            media_end = media_end.max(to);
        }
        let gap = secs(uniform(&mut self.rng, 1.0, 15.0));
        (
            vec![self.exchange(idx, d, script, streams)],
            Some(media_end + gap),
        )
    }

    // ----- robocalls ------------------------------------------------------------------------

    /// A spam call into household `slot` through its provider: answered briefly, rejected, or
    /// left ringing until the provider cancels.
    fn robocall(&mut self, slot: u32, t: i64, lines: &[Line]) -> (Vec<Exchange>, Option<i64>) {
        let Some(&idx) = self.targets.get(slot as usize) else {
            return (Vec::new(), None);
        };
        let next = t
            + 1
            + secs(exponential(
                &mut self.rng,
                3600.0 / self.calls_per_hour.max(0.01),
            ));
        let Some(line) = lines.get(idx as usize) else {
            return (Vec::new(), None);
        };
        // A busy household's provider answers busy itself and nothing reaches the line; the
        // dialer retries busy numbers a little later.
        if line.active > 0 {
            return (
                Vec::new(),
                Some(t + secs(uniform(&mut self.rng, 30.0, 120.0))),
            );
        }
        let prov = line.provider();
        let prtt = prov.rtt_us;
        // Neighbour spoofing (a number like the household's own), any mobile, or one abroad.
        let u: f64 = self.rng.random();
        let cli = if u < 0.45 {
            let own = prov.user.trim_start_matches('+');
            let head = own.get(..own.len().saturating_sub(4)).unwrap_or(own);
            format!("+{head}{:04}", self.rng.random_range(0..10_000u32))
        } else if u < 0.8 {
            format!("+{}{}", num::HOME_CC, num::mobile_national(&mut self.rng))
        } else {
            num::intl_cli(&mut self.rng)
        };
        let pp = line.provider_party(&mut self.rng, cli);
        let lp = line.device_party(
            &mut self.rng,
            prov.user.clone(),
            prov.domain.clone(),
            prov.port,
        );
        let mut d = self.dialog(pp, lp, prov.user.clone(), prov.tcp);
        d.ruri_host = SocketAddr::new(line.addr, prov.port).to_string();
        let (codec, ptime) = line.codec();
        d.codec = codec;
        d.offer = vec![codec, G729];
        self.record(prov.peer.ip(), idx);
        let mut script = vec![step(t, Msg::Invite)];
        let at = t + self.turnaround();
        script.push(step(at, Msg::Trying));
        let tr = at + self.rng.random_range(50_000..300_000);
        script.push(step(tr, Msg::Ringing));
        let mut streams = Vec::new();
        let v: f64 = self.rng.random();
        let reply = if v < self.answer_ratio {
            let ta = tr + secs(uniform(&mut self.rng, 2.0, 12.0));
            script.push(step(ta, Msg::OkInvite));
            script.push(step(ta + prtt, Msg::AckOk));
            let te = ta + secs(lognormal(&mut self.rng, 6.0, 0.7).clamp(1.0, 40.0));
            let by_caller = self.rng.random_bool(0.2);
            script.push(step(te, Msg::Bye { by_caller }));
            let ok = if by_caller { self.turnaround() } else { prtt };
            script.push(step(te + ok, Msg::OkBye { by_caller }));
            let line_media = SocketAddr::new(line.addr, d.callee.rtp_port);
            let peer_media = SocketAddr::new(d.caller.sock.ip(), d.caller.rtp_port);
            streams.push(self.voice(true, line_media, peer_media, ta + 1, te, codec, ptime, 300));
            streams.push(self.voice(
                false,
                peer_media,
                line_media,
                ta + prtt,
                te,
                codec,
                ptime,
                1_000,
            ));
            Reply::AnswerMute
        } else if v < self.answer_ratio + (1.0 - self.answer_ratio) * 0.6 {
            let tf = tr + secs(uniform(&mut self.rng, 1.0, 8.0));
            let code = if self.rng.random_bool(0.5) { 486 } else { 603 };
            script.push(step(tf, Msg::Fail(code)));
            script.push(step(tf + prtt, Msg::AckFail(code)));
            Reply::Reject { trying: true, code }
        } else {
            let tc = tr + secs(uniform(&mut self.rng, 15.0, 30.0));
            script.push(step(tc, Msg::Cancel));
            let tok = tc + self.turnaround();
            script.push(Step {
                t: tok,
                msg: Msg::OkCancel,
                coalesce: true,
            });
            script.push(step(tok + 500, Msg::Fail(487)));
            script.push(step(tok + 500 + prtt, Msg::AckFail(487)));
            Reply::None
        };
        self.outcome(idx, reply);
        let mut ex = self.exchange(idx, d, script, streams);
        ex.counts_active = true;
        ex.peer_ttl = None;
        (vec![ex], Some(next))
    }

    // ----- labels ---------------------------------------------------------------------------

    /// What this source was, per address it sent from (several when spoofed or on IPv4 and
    /// IPv6 lines); nothing for robocalls or a source that never sent.
    pub fn threats(&self, lines: &[Line]) -> Vec<(String, ThreatLabel)> {
        let Some(kind) = self.threat_kind() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (addr, hits) in &self.sent {
            let targets: Vec<String> = hits
                .keys()
                .filter_map(|&i| lines.get(i as usize))
                .map(|l| l.addr.to_string())
                .collect();
            let requests: u64 = hits.values().sum();
            let mut p = Map::new();
            p.insert("noise".into(), json!(self.kind.as_str()));
            p.insert("campaign".into(), json!(self.campaign));
            p.insert("requests".into(), json!(requests));
            p.insert("ua".into(), json!(self.ua));
            p.insert("after_secs".into(), json!(self.after_secs));
            match self.kind {
                NoiseKind::Sweep => {
                    p.insert("rate_per_sec".into(), json!(round2(self.rate)));
                    p.insert("passes".into(), json!(self.passes));
                    p.insert("method".into(), json!("OPTIONS"));
                }
                NoiseKind::Enumeration => {
                    p.insert("rate_per_sec".into(), json!(round2(self.rate)));
                    p.insert("method".into(), json!(self.method));
                    p.insert("attempts_per_target".into(), json!(self.attempts));
                }
                NoiseKind::TollFraud => {
                    p.insert("rate_per_sec".into(), json!(round2(self.rate)));
                    p.insert("attempts_per_target".into(), json!(self.attempts));
                    p.insert("numbers".into(), json!(self.numbers));
                    let accepted: Vec<String> = self
                        .tally
                        .iter()
                        .filter(|(_, t)| t.answered > 0)
                        .filter_map(|(&i, _)| lines.get(i as usize))
                        .map(|l| l.addr.to_string())
                        .collect();
                    p.insert("answered_by".into(), json!(accepted));
                }
                NoiseKind::InviteFlood | NoiseKind::RegisterFlood => {
                    p.insert("rate_per_sec".into(), json!(round2(self.rate)));
                    p.insert("burst_secs".into(), json!(self.burst_secs));
                    p.insert("spoofed".into(), json!(self.spoofed));
                    p.insert(
                        "method".into(),
                        json!(if self.kind == NoiseKind::InviteFlood {
                            "INVITE"
                        } else {
                            "REGISTER"
                        }),
                    );
                }
                NoiseKind::Framing => {
                    p.insert("channels".into(), json!(self.channels));
                    p.insert("rtp".into(), json!(self.rtp));
                    p.insert("retransmits".into(), json!(self.retransmit));
                }
                NoiseKind::Robocall => {}
            }
            out.push((
                addr.to_string(),
                ThreatLabel {
                    kind,
                    targets,
                    params: Value::Object(p),
                },
            ));
        }
        out
    }

    /// Per hit line: one entry for its params' `noise` list.
    pub fn line_notes(&self) -> Vec<(u32, Value)> {
        self.tally
            .iter()
            .filter(|(_, t)| t.requests > 0)
            .map(|(&line, t)| {
                let from: Vec<String> = self
                    .sent
                    .iter()
                    .filter(|(_, hits)| hits.contains_key(&line))
                    .map(|(a, _)| a.to_string())
                    .collect();
                let from = if self.spoofed {
                    json!("spoofed")
                } else if from.len() == 1 {
                    json!(from[0])
                } else {
                    json!(from)
                };
                let kind = self.threat_kind().map_or("robocall", ThreatKind::as_str);
                let mut note = json!({
                    "kind": kind,
                    "noise": self.kind.as_str(),
                    "campaign": self.campaign,
                    "from": from,
                    "requests": t.requests,
                    "answered": t.answered,
                    "rejected": t.rejected,
                    "provisional_only": t.provisional,
                    "unanswered": t.unanswered,
                });
                if self.kind == NoiseKind::Framing {
                    note["rtp"] = json!(self.rtp);
                }
                (line, note)
            })
            .collect()
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn step(t: i64, msg: Msg) -> Step {
    Step {
        t,
        msg,
        coalesce: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(text: &str) -> (Vec<Source>, Vec<Line>) {
        let sc = Scenario::from_toml(text, "t.toml").unwrap();
        let start = sc.start.micros();
        let end = start + sc.duration_secs as i64 * 1_000_000;
        let (lines, _) = crate::population::build(&sc, 1, start, end);
        let (s, _) = build(&sc, 1, start, end, &lines);
        (s, lines)
    }

    const PBX: &str = "[[population]]\nkind = \"office-pbx\"\nname = \"p\"\n";

    #[test]
    fn enumeration_tries_names_then_three_then_four_digit_extensions() {
        let (mut s, _) = sources(&format!(
            "{PBX}[[noise]]\nkind = \"enumeration\"\ntargets = [\"p\"]\n"
        ));
        let e = &mut s[0];
        e.names_first = false;
        assert_eq!(e.extension(0), "100");
        assert_eq!(e.extension(899), "999");
        assert_eq!(e.extension(900), "1000");
        e.names_first = true;
        assert_eq!(e.extension(0), "admin");
        assert_eq!(e.extension(NAMES.len() as u32), "100");
    }

    #[test]
    fn toll_fraud_cycles_every_prefix_then_keeps_the_one_that_worked() {
        let (mut s, _) = sources(&format!(
            "{PBX}[[noise]]\nkind = \"toll-fraud\"\ntargets = [\"p\"]\n"
        ));
        let f = &mut s[0];
        let n = num::TOLL_PREFIXES.len() as u32;
        let first: Vec<(String, usize)> = (0..n).map(|k| f.dial_string(0, k)).collect();
        let used: BTreeMap<usize, ()> = first.iter().map(|(_, p)| (*p, ())).collect();
        assert_eq!(used.len(), num::TOLL_PREFIXES.len(), "every prefix once");
        for (dial, p) in &first {
            assert_eq!(
                dial.strip_prefix(num::TOLL_PREFIXES[*p]),
                Some(f.numbers[0].as_str())
            );
        }
        f.probes[0].open = Some(3);
        for k in n..n + 5 {
            let (dial, p) = f.dial_string(0, k);
            assert_eq!(p, 3);
            assert!(dial.starts_with(num::TOLL_PREFIXES[3]));
        }
    }

    #[test]
    fn attackers_get_distinct_addresses_and_robocalls_none() {
        let (s, lines) = sources(&format!(
            "{PBX}[[population]]\nkind = \"household\"\nname = \"h\"\n\
             [[noise]]\nkind = \"sweep\"\ntargets = \"all\"\ncount = 3\n\
             [[noise]]\nkind = \"robocall\"\ntargets = \"all\"\n\
             [[noise]]\nkind = \"framing\"\ntargets = [\"h\"]\n"
        ));
        assert_eq!(s.len(), 5);
        let addrs: BTreeMap<Ipv4Addr, ()> = s.iter().map(|x| (x.addr4, ())).collect();
        assert_eq!(
            addrs.len(),
            4,
            "the robocall campaign shares no attacker slot"
        );
        assert_eq!(s[4].addr4, Ipv4Addr::new(192, 0, 2, 153));
        // "all" means every line for attackers, the households for robocalls.
        assert_eq!(s[0].targets.len(), lines.len());
        let rc = s.iter().find(|x| x.kind == NoiseKind::Robocall).unwrap();
        assert_eq!(rc.targets.len(), 1);
        assert_eq!(rc.threat_kind(), None);
        // A source that never sent labels nothing.
        assert!(s[0].threats(&lines).is_empty() && s[0].line_notes().is_empty());
    }
}
