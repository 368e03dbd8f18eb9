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

mod flood;
mod labels;
mod probe;
mod robocall;

use crate::engine::{Exchange, Step, Stream, StreamKind};
use crate::numbers::{self as num, uniform};
use crate::population::Line;
use crate::scenario::{Kind, NoiseKind, ProbeMethod, Scenario, Targets};
use crate::sipmsg::{CodecSpec, Dialog, Msg, Party, G729, PCMA, PCMU};
use crate::ThreatKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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
