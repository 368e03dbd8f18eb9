//! Lines: what each population draws (channels, user agent, codec, shift, rates...) and how it
//! plans calls, registrations and media sessions. The drawn values go into the labels' `params`.
//!
//! Contract: `build` makes every line of the scenario (`kinds`: one function per population
//! family) and their first tasks; a `Line` plans its calls, registrations and flows (`plan`).
//! Every draw comes from the line's own ChaCha8 stream, in a fixed order.

mod kinds;
mod plan;

use crate::engine::{Exchange, Step, Stream, Task};
use crate::numbers::{self as num, uniform};
use crate::scenario::{CodecName, Kind, Scenario, Unsolicited};
use crate::sipmsg::{CodecSpec, Dialog, Party, G729, PCMA, PCMU};
use crate::wire::L2;
use kinds::new_line;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What media of a line's calls looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaMode {
    Rtp,
    /// Unreadable signalling, RTP headers intact over random payload.
    RtpScrambled,
    /// Unreadable signalling and media without an RTP header.
    Opaque,
}

/// The line's persistent SIP-over-TCP connection to its provider.
#[derive(Clone, Copy, Debug)]
pub struct TcpConn {
    pub line: SocketAddr,
    pub peer: SocketAddr,
    pub line_seq: u32,
    pub peer_seq: u32,
    pub up: bool,
}

#[derive(Clone, Debug)]
struct Account {
    user: String,
    call_id: String,
    cseq: u32,
    port: u16,
}

/// Everything drawn for one line.
#[derive(Clone, Debug)]
struct Cfg {
    channels: u32,
    sig_port: u16,
    port_per_channel: bool,
    peer: SocketAddr,
    peers: Vec<SocketAddr>,
    nat_host: Option<String>,
    ua: Option<String>,
    allow: Option<&'static str>,
    peer_ua: Option<String>,
    codec: CodecSpec,
    offer: Vec<CodecSpec>,
    peer_offer: Vec<CodecSpec>,
    ptime: u32,
    accounts: Vec<Account>,
    reg_interval: u32,
    reg_challenge: f64,
    shift: Option<(u64, u64)>,
    shift_phase: u64,
    answer_ratio: f64,
    early_media: f64,
    calls_per_hour: f64,
    max_active: u32,
    talk_median: f64,
    talk_sigma: f64,
    inbound_share: f64,
    own_numbers: Vec<String>,
    big_share: f64,
    gap: (f64, f64),
    sdp_user: String,
    sdp_session: String,
    peer_sdp: (String, String),
    domain: String,
    rtt_us: i64,
    peer_ttl: u8,
    tcp_split_share: f64,
    next_rtp: u16,
    session_median: f64,
    srtp_like: bool,
}

pub struct Line {
    pub idx: u32,
    pub addr: IpAddr,
    pub kind: Kind,
    pub site: Option<String>,
    pub rng: ChaCha8Rng,
    pub l2: L2,
    pub ip_id: u16,
    pub peer_ip_id: u16,
    pub active: u32,
    pub calls: u64,
    pub scramble: Option<u64>,
    pub tcp: Option<TcpConn>,
    pub media: MediaMode,
    pub params: Map<String, Value>,
    /// Index of the population the line belongs to.
    pub pop: usize,
    /// How the line treats requests it did not ask for.
    pub unsolicited: Unsolicited,
    /// A compromised PBX: the dial prefix (index in `TOLL_PREFIXES`) its open route accepts.
    pub open_prefix: Option<usize>,
    cfg: Cfg,
}

/// The line's account at its provider or trunk, for calls that come in through it.
#[derive(Clone, Debug)]
pub struct Provider {
    pub peer: SocketAddr,
    pub domain: String,
    pub user: String,
    pub port: u16,
    pub tcp: bool,
    pub rtt_us: i64,
}

/// A call ready to run.
pub struct Plan {
    pub dialog: Box<Dialog>,
    pub line_is_caller: bool,
    pub script: Vec<Step>,
    pub streams: Vec<Stream>,
    pub end: i64,
}

/// What an arrival produces.
pub enum Shape {
    None,
    Call(Box<Plan>),
    Flow(Vec<Stream>),
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

fn codec_of(c: CodecName) -> CodecSpec {
    match c {
        CodecName::G729 => G729,
        CodecName::Pcmu => PCMU,
        CodecName::Pcma => PCMA,
    }
}

pub fn line_addr(i: u32, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0x64,
            0,
            (i / 200 + 1) as u16,
            0,
            0,
            0,
            (10 + i % 200) as u16,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(
            100,
            64,
            (1 + i / 200) as u8,
            (10 + i % 200) as u8,
        ))
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

fn sock6(group: u16, host: u16, port: u16) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, group, 0, 0, 0, 0, host)),
        port,
    )
}

fn host_str(ip: IpAddr) -> String {
    ip.to_string()
}

/// Builds every line of the scenario and their first tasks.
pub fn build(sc: &Scenario, seed: u64, start: i64, end: i64) -> (Vec<Line>, Vec<(i64, Task)>) {
    let mut lines = Vec::new();
    let mut tasks = Vec::new();
    let mut sites: BTreeMap<String, u8> = BTreeMap::new();
    let mut lone = 0u8;
    let mut idx = 0u32;
    for (pop, p) in sc.populations.iter().enumerate() {
        for _ in 0..sc.scaled_count(p) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(u64::from(idx));
            let site_no = match &p.site {
                Some(s) => {
                    let n = sites.len() as u8;
                    *sites.entry(s.clone()).or_insert(n)
                }
                None => {
                    lone = lone.wrapping_add(1);
                    100u8.wrapping_add(lone)
                }
            };
            let mut line = new_line(idx, p, site_no, rng, sc.duration_secs);
            line.pop = pop;
            if let Some(name) = &p.name {
                line.params.insert("population".into(), json!(name));
            }
            // Drawn from a stream of its own so existing lines' draws do not move.
            let mut prng = ChaCha8Rng::seed_from_u64(seed);
            prng.set_stream((1 << 40) | u64::from(idx));
            line.unsolicited = p
                .unsolicited
                .unwrap_or_else(|| default_unsolicited(p.kind, &mut prng));
            if p.kind == Kind::CompromisedPbx {
                let i = prng.random_range(0..num::TOLL_PREFIXES.len());
                line.open_prefix = Some(i);
                line.params
                    .insert("open_dial_prefix".into(), json!(num::TOLL_PREFIXES[i]));
            }
            for t in line.initial_tasks(start, end) {
                tasks.push(t);
            }
            lines.push(line);
            idx += 1;
        }
    }
    (lines, tasks)
}

/// What a line of `kind` does with unsolicited SIP when the scenario does not say.
fn default_unsolicited(kind: Kind, rng: &mut ChaCha8Rng) -> Unsolicited {
    match kind {
        Kind::Camera | Kind::CompromisedPbx => Unsolicited::Answer,
        Kind::Household | Kind::ExpatVoip => {
            if rng.random_bool(0.5) {
                Unsolicited::Ignore
            } else {
                Unsolicited::Reject
            }
        }
        k if !k.has_sip() => Unsolicited::Ignore,
        _ => Unsolicited::Reject,
    }
}

impl Line {
    pub fn label(&self) -> &'static str {
        if self.kind.is_gateway() {
            "gateway"
        } else if self.kind == Kind::CompromisedPbx {
            "compromised-pbx"
        } else {
            "normal"
        }
    }

    /// The line's SIP device as one end of a dialog that noise opens; draws come from `rng`
    /// (the noise source's), so the line's own traffic is the same with or without noise.
    pub fn device_party(
        &self,
        rng: &mut ChaCha8Rng,
        user: String,
        domain: String,
        port: u16,
    ) -> Party {
        Party {
            sock: SocketAddr::new(self.addr, port),
            host: self
                .cfg
                .nat_host
                .clone()
                .unwrap_or_else(|| host_str(self.addr)),
            port,
            user,
            display: None,
            domain,
            tag: num::hex_id(rng, 4),
            ua: self.cfg.ua.clone(),
            allow: self.cfg.allow,
            rtp_port: 2 * rng.random_range(5000..10000u16),
            sdp_user: self.cfg.sdp_user.clone(),
            sdp_session: self.cfg.sdp_session.clone(),
            sess_id: rng.random_range(1000..u32::MAX / 2),
        }
    }

    /// The line's provider or trunk as one end of a dialog (draws from `rng`).
    pub fn provider_party(&self, rng: &mut ChaCha8Rng, user: String) -> Party {
        let peer = self.cfg.peer;
        Party {
            sock: peer,
            host: host_str(peer.ip()),
            port: peer.port(),
            user,
            display: None,
            domain: self.cfg.domain.clone(),
            tag: num::hex_id(rng, 5),
            ua: self.cfg.peer_ua.clone(),
            allow: Some("INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE"),
            rtp_port: 2 * rng.random_range(10000..30000u16),
            sdp_user: self.cfg.peer_sdp.0.clone(),
            sdp_session: self.cfg.peer_sdp.1.clone(),
            sess_id: rng.random_range(1000..u32::MAX / 2),
        }
    }

    /// Where calls through the line's provider or trunk go, and as whom.
    pub fn provider(&self) -> Provider {
        let account = self.cfg.accounts.first();
        let user = account.map(|a| a.user.clone()).unwrap_or_else(|| {
            self.cfg
                .own_numbers
                .first()
                .map(|n| n.trim_start_matches('+').to_string())
                .unwrap_or_default()
        });
        let port = self
            .tcp
            .map(|c| c.line.port())
            .or(account.map(|a| a.port))
            .unwrap_or(self.cfg.sig_port);
        Provider {
            peer: self.cfg.peer,
            domain: if self.cfg.domain.is_empty() {
                host_str(self.cfg.peer.ip())
            } else {
                self.cfg.domain.clone()
            },
            user,
            port,
            tcp: self.tcp.is_some(),
            rtt_us: self.cfg.rtt_us.max(2_000),
        }
    }

    /// Codec and packetisation of the line's calls.
    pub fn codec(&self) -> (CodecSpec, u32) {
        (self.cfg.codec, self.cfg.ptime)
    }

    /// Whether a PBX line has internal extension `ext` (100, 101, ... one per DID), which
    /// probes that guess extensions find by its 401 challenge instead of a 404.
    pub fn has_extension(&self, ext: &str) -> bool {
        let n = self.cfg.own_numbers.len() as u32;
        self.kind.is_pbx()
            && ext
                .parse::<u32>()
                .is_ok_and(|e| (100..100 + n).contains(&e))
    }

    fn initial_tasks(&self, start: i64, _end: i64) -> Vec<(i64, Task)> {
        let mut v = Vec::new();
        let mut r = self.rng.clone();
        r.set_word_pos(1 << 40);
        let line = self.idx;
        match self.kind {
            Kind::Gateway | Kind::GatewayScrambled | Kind::GatewayOpaque | Kind::CallCentre => {
                for ch in 0..self.cfg.channels {
                    let t = start + (uniform(&mut r, 0.0, 20.0) * 1e6) as i64;
                    v.push((t, Task::Channel { line, ch }));
                }
            }
            _ => {
                // The first arrival comes early so every population shows even in short runs.
                let mean_gap = 3600.0 / self.cfg.calls_per_hour.max(0.01);
                let t = start + (uniform(&mut r, 0.0, mean_gap.min(120.0)) * 1e6) as i64;
                v.push((t, Task::Arrivals { line }));
            }
        }
        for (i, _) in self.cfg.accounts.iter().enumerate() {
            let t = start
                + (uniform(&mut r, 0.0, f64::from(self.cfg.reg_interval).min(60.0)) * 1e6) as i64;
            v.push((
                t,
                Task::Register {
                    line,
                    account: i as u32,
                },
            ));
        }
        v
    }

    /// IP id and TTL for the next packet in one direction.
    pub fn ip_id_ttl(&mut self, from_line: bool) -> (u16, u8) {
        if from_line {
            self.ip_id = self.ip_id.wrapping_add(1);
            (self.ip_id, 64)
        } else {
            self.peer_ip_id = self.peer_ip_id.wrapping_add(1);
            (self.peer_ip_id, self.cfg.peer_ttl)
        }
    }

    /// Where to split a TCP message of `len` bytes in two segments, sometimes.
    pub fn tcp_split(&mut self, len: usize) -> Option<usize> {
        if len > 200 && self.rng.random_bool(self.cfg.tcp_split_share) {
            Some(self.rng.random_range(50..len - 50))
        } else {
            None
        }
    }

    /// `Some(next on-time)` when the line's shift is off at `t`.
    pub fn off_shift_until(&self, t: i64, start: i64) -> Option<i64> {
        let (on, off) = self.cfg.shift?;
        let period = ((on + off) * 1_000_000) as i64;
        let on_us = (on * 1_000_000) as i64;
        let pos = (t - start + (self.cfg.shift_phase * 1_000_000) as i64).rem_euclid(period);
        if pos < on_us {
            None
        } else {
            Some(t + (period - pos) + self.rng_free_jitter())
        }
    }

    fn rng_free_jitter(&self) -> i64 {
        // A few seconds' spread so channels do not all start in the same microsecond.
        i64::from((self.idx % 7) * 1_300_000)
    }

    pub fn channel_gap_us(&mut self) -> i64 {
        (uniform(&mut self.rng, self.cfg.gap.0, self.cfg.gap.1) * 1e6) as i64
    }

    fn alloc_rtp(&mut self) -> u16 {
        let p = self.cfg.next_rtp;
        self.cfg.next_rtp = if p >= 19990 { 10000 } else { p + 2 };
        p
    }

    fn line_party(&mut self, user: String, domain: String, port: u16) -> Party {
        let port = self.tcp.map(|c| c.line.port()).unwrap_or(port);
        let rtp = self.alloc_rtp();
        let tag = num::hex_id(&mut self.rng, 4);
        Party {
            sock: SocketAddr::new(self.addr, port),
            host: self
                .cfg
                .nat_host
                .clone()
                .unwrap_or_else(|| host_str(self.addr)),
            port,
            user,
            display: None,
            domain,
            tag,
            ua: self.cfg.ua.clone(),
            allow: self.cfg.allow,
            rtp_port: rtp,
            sdp_user: self.cfg.sdp_user.clone(),
            sdp_session: self.cfg.sdp_session.clone(),
            sess_id: self.rng.random_range(1000..u32::MAX / 2),
        }
    }

    fn peer_party(&mut self, peer: SocketAddr, user: String, domain: String) -> Party {
        let tag = num::hex_id(&mut self.rng, 5);
        Party {
            sock: peer,
            host: host_str(peer.ip()),
            port: peer.port(),
            user,
            display: None,
            domain,
            tag,
            ua: self.cfg.peer_ua.clone(),
            allow: Some("INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE"),
            rtp_port: 2 * self.rng.random_range(10000..30000u16),
            sdp_user: self.cfg.peer_sdp.0.clone(),
            sdp_session: self.cfg.peer_sdp.1.clone(),
            sess_id: self.rng.random_range(1000..u32::MAX / 2),
        }
    }
}

fn empty_exchange(line: u32) -> Exchange {
    Exchange {
        line,
        dialog: None,
        line_is_caller: true,
        script: Vec::new(),
        pos: 0,
        streams: Vec::new(),
        counts_active: false,
        plain: false,
        peer_ttl: None,
    }
}
