//! Lines: what each population draws (channels, user agent, codec, shift, rates...) and how it
//! plans calls, registrations and media sessions. The drawn values go into the labels' `params`.

use super::engine::{Exchange, Step, Stream, StreamKind, Task};
use super::numbers::{self as num, exponential, lognormal, uniform};
use super::scenario::{
    parse_shift, CodecName, Kind, Population, RegMode, Scenario, UaMode, Unsolicited,
};
use super::sipmsg::{CodecSpec, Dialog, Msg, Party, G729, PCMA, PCMU};
use super::wire::L2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const GATEWAY_UAS: [(&str, &str); 8] = [
    ("DBL GoIP", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"),
    (
        "GoIP-8 GST1610.1.48",
        "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO",
    ),
    (
        "Dinstar UC2000-VE 2.61",
        "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK",
    ),
    (
        "OpenVox VS-GW1202-4G 2.2",
        "INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO",
    ),
    ("H", "INVITE, ACK, BYE, CANCEL"),
    ("W", "INVITE, ACK, BYE, CANCEL"),
    (
        "DAG1000-4S 2.0.1",
        "INVITE, ACK, OPTIONS, CANCEL, BYE, INFO",
    ),
    ("Ejoin EIM-GW 1.5", "INVITE, ACK, BYE, CANCEL, OPTIONS"),
];
const SOFTPHONE_UAS: [&str; 5] = [
    "Zoiper rv2.10.20.6",
    "Linphone/5.2.0 (belle-sip/5.2.0)",
    "MicroSIP/3.21.3",
    "X-Lite release 5.8.3 stamp 102651",
    "Bria 6 release 6.5.3",
];
const ATA_UAS: [&str; 5] = [
    "Grandstream HT801 1.0.43.11",
    "Cisco/SPA112-1.4.1(SR5)",
    "AVM FRITZ!Box 7590 154.07.57",
    "Linksys/PAP2T-5.1.6(LS)",
    "Yealink SIP-T46S 66.86.0.15",
];
const PBX_UAS: [&str; 4] = [
    "Asterisk PBX 18.12.0",
    "FPBX-16.0.40(18.13.0)",
    "3CXPhoneSystem 18.0.9.20",
    "Yeastar P-Series 37.13.0.26",
];
const CAMERA_UAS: [&str; 5] = [
    "Hikvision DS-KV6113-WPE1 V2.2.53",
    "2N IP Verso 2.34.1.42.7",
    "Akuvox R20A 220.30.2.124",
    "DoorBird D2101V 000132",
    "AXIS A8105-E 1.65.4",
];
const CAMERA_ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY";
const SOFTPHONE_ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE, UPDATE";
const PBX_ALLOW: &str =
    "INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE";

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

fn new_line(idx: u32, p: &Population, site_no: u8, mut rng: ChaCha8Rng, duration: u64) -> Line {
    let v6 = p.ipv6.unwrap_or(false);
    let addr = line_addr(idx, v6);
    let vlan = if rng.random_bool(p.vlan_share.unwrap_or(0.2)) {
        Some(100 + (idx % 50) as u16)
    } else {
        None
    };
    let l2 = L2 {
        line_mac: [
            0x02,
            0x5b,
            0,
            (idx >> 16) as u8,
            (idx >> 8) as u8,
            idx as u8,
        ],
        router_mac: [0x00, 0x1b, 0x21, 0x3a, 0x00, 0x01],
        vlan,
    };
    let mut params = Map::new();
    params.insert("ipv6".into(), json!(v6));
    params.insert("vlan".into(), json!(vlan));
    let codec_pick = |rng: &mut ChaCha8Rng, default: &[CodecSpec]| -> CodecSpec {
        p.codec.map(codec_of).unwrap_or_else(|| *pick(rng, default))
    };
    let ptime = p.ptime.unwrap_or(20);
    let mut cfg = Cfg {
        channels: 1,
        sig_port: 5060,
        port_per_channel: false,
        peer: v4(198, 18, 0, 10, 5060),
        peers: Vec::new(),
        nat_host: None,
        ua: None,
        allow: None,
        peer_ua: None,
        codec: PCMA,
        offer: vec![PCMA, PCMU],
        peer_offer: vec![PCMA, PCMU, G729],
        ptime,
        accounts: Vec::new(),
        reg_interval: 1800,
        reg_challenge: 0.2,
        shift: None,
        shift_phase: 0,
        answer_ratio: 0.7,
        early_media: 0.2,
        calls_per_hour: 3.0,
        max_active: 1,
        talk_median: 120.0,
        talk_sigma: 1.0,
        inbound_share: 0.5,
        own_numbers: Vec::new(),
        big_share: p.big_invite_share.unwrap_or(0.05),
        gap: (1.0, 10.0),
        sdp_user: "-".into(),
        sdp_session: "-".into(),
        peer_sdp: ("-".into(), "SIP Call".into()),
        domain: String::new(),
        rtt_us: 20_000,
        peer_ttl: 58,
        tcp_split_share: 0.25,
        next_rtp: 10000 + 2 * rng.random_range(0..2000u16),
        session_median: 180.0,
        srtp_like: false,
    };
    let mut media = MediaMode::Rtp;
    let mut scramble = None;
    let nat = |rng: &mut ChaCha8Rng| {
        format!(
            "192.168.{}.{}",
            rng.random_range(0..3u8),
            rng.random_range(2..250u8)
        )
    };
    match p.kind {
        Kind::Gateway | Kind::GatewayScrambled | Kind::GatewayOpaque => {
            cfg.channels = p.channels.unwrap_or_else(|| {
                let c = [1u32, 4, 4, 8, 8, 8, 16, 16, 32];
                *pick(&mut rng, &c)
            });
            let ss_port = if p.kind == Kind::Gateway {
                5060
            } else {
                10000 + 2 * rng.random_range(0..10000u16) + 1
            };
            cfg.peer = if v6 {
                sock6(5, u16::from(site_no) + 10, ss_port)
            } else if site_no % 2 == 0 {
                v4(203, 0, 113, 10 + site_no / 2, ss_port)
            } else {
                v4(192, 0, 2, 10 + site_no / 2, ss_port)
            };
            cfg.peer_ttl = 47;
            cfg.rtt_us = rng.random_range(120_000..260_000);
            cfg.sig_port = if p.kind == Kind::Gateway {
                rng.random_range(5060..6060)
            } else {
                // "odd" signalling ports away from 5060.
                rng.random_range(20000..30000) | 1
            };
            cfg.port_per_channel = p.kind == Kind::Gateway && rng.random_bool(0.4);
            cfg.nat_host = if rng.random_bool(0.8) {
                Some(nat(&mut rng))
            } else {
                None
            };
            let ua_mode = p.ua.unwrap_or_else(|| {
                let u: f64 = rng.random();
                if u < 0.6 {
                    UaMode::Vendor
                } else if u < 0.8 {
                    UaMode::Softphone
                } else {
                    UaMode::None
                }
            });
            let (ua, allow) = match ua_mode {
                UaMode::Vendor => {
                    let (u, a) = *pick(&mut rng, &GATEWAY_UAS);
                    (Some(u.to_string()), Some(a))
                }
                UaMode::Softphone => (
                    Some(pick(&mut rng, &SOFTPHONE_UAS).to_string()),
                    Some(SOFTPHONE_ALLOW),
                ),
                UaMode::None => (None, None),
            };
            cfg.ua = ua;
            cfg.allow = allow;
            cfg.peer_ua = if rng.random_bool(0.5) {
                Some("VOS3000 V2.1.8.0".into())
            } else {
                None
            };
            cfg.peer_sdp = ("VOS3000".into(), "VOS3000".into());
            let (su, ss) = match cfg.ua.as_deref() {
                Some(u) if u.contains("GoIP") || u.contains("DBL") => ("GoIP", "SIP Call"),
                Some(u) if u.contains("Dinstar") => ("Dinstar", "SIP Call"),
                Some("H") | Some("W") => ("root", "session"),
                _ => ("-", "-"),
            };
            cfg.sdp_user = su.into();
            cfg.sdp_session = ss.into();
            cfg.codec = codec_pick(&mut rng, &[G729, G729, G729, PCMA]);
            cfg.offer = vec![cfg.codec];
            cfg.peer_offer = if cfg.codec == G729 {
                vec![G729, PCMA, PCMU]
            } else {
                vec![cfg.codec, G729]
            };
            let reg = p.registration.unwrap_or_else(|| {
                if rng.random_bool(0.6) {
                    RegMode::PerPort
                } else {
                    RegMode::Trunk
                }
            });
            if reg == RegMode::PerPort {
                let style = rng.random_range(0..3u8);
                let base = rng.random_range(100..900u32) * 10;
                for ch in 0..cfg.channels {
                    let user = match style {
                        0 => format!("goip{}", ch + 1),
                        1 => format!("{}", base + ch),
                        _ => format!("sim{:02}", ch + 1),
                    };
                    let port =
                        cfg.sig_port
                            .wrapping_add(if cfg.port_per_channel { ch as u16 } else { 0 });
                    cfg.accounts.push(Account {
                        user,
                        call_id: String::new(),
                        cseq: 0,
                        port,
                    });
                }
                cfg.reg_interval = *pick(&mut rng, &[30u32, 60, 60, 120, 300]);
                cfg.reg_challenge = 0.3;
            }
            cfg.shift = p
                .shift
                .as_deref()
                .and_then(|s| parse_shift(s).ok().flatten());
            if let Some((on, off)) = cfg.shift {
                // Put a shift start inside the first half of the run so on and off both show.
                let starts_in = rng.random_range(0..(duration / 2).max(1));
                cfg.shift_phase = (on + off) - starts_in.min(on + off);
                params.insert(
                    "shift".into(),
                    json!({"on_secs": on, "off_secs": off, "starts_after_secs": starts_in}),
                );
            } else {
                params.insert("shift".into(), json!("always"));
            }
            cfg.answer_ratio = p
                .answer_ratio
                .unwrap_or_else(|| uniform(&mut rng, 0.25, 0.5));
            cfg.early_media = uniform(&mut rng, 0.4, 0.9);
            cfg.talk_median = uniform(&mut rng, 35.0, 75.0);
            cfg.talk_sigma = 0.9;
            cfg.gap = (1.0, uniform(&mut rng, 4.0, 15.0));
            cfg.ptime = p.ptime.unwrap_or(20);
            cfg.big_share = p.big_invite_share.unwrap_or(0.0);
            match p.kind {
                Kind::GatewayScrambled => {
                    media = MediaMode::RtpScrambled;
                    scramble = Some(rng.random());
                }
                Kind::GatewayOpaque => {
                    media = MediaMode::Opaque;
                    scramble = Some(rng.random());
                }
                _ => {}
            }
            params.insert("channels".into(), json!(cfg.channels));
            params.insert("ua_mode".into(), json!(ua_mode));
            params.insert("ua".into(), json!(cfg.ua));
            params.insert("registration".into(), json!(reg));
            params.insert("accounts".into(), json!(cfg.accounts.len()));
            params.insert(
                "reg_interval_secs".into(),
                json!(if reg == RegMode::PerPort {
                    Some(cfg.reg_interval)
                } else {
                    None
                }),
            );
            params.insert("softswitch".into(), json!(cfg.peer.to_string()));
            params.insert("sip_port".into(), json!(cfg.sig_port));
            params.insert("port_per_channel".into(), json!(cfg.port_per_channel));
            params.insert("private_contact".into(), json!(cfg.nat_host));
        }
        Kind::Household | Kind::ExpatVoip => {
            let expat = p.kind == Kind::ExpatVoip;
            cfg.peer = if expat {
                if v6 {
                    sock6(0x50, 10, 5060)
                } else {
                    v4(192, 0, 2, 50 + rng.random_range(0..5u8), 5060)
                }
            } else if v6 {
                // Households are IPv4 towards the domestic provider; IPv6 falls back to a foreign one.
                sock6(0x51, 10, 5060)
            } else {
                v4(198, 18, 0, 10 + rng.random_range(0..4u8), 5060)
            };
            cfg.peer_ttl = if expat { 49 } else { 60 };
            cfg.rtt_us = if expat {
                rng.random_range(90_000..200_000)
            } else {
                rng.random_range(8_000..30_000)
            };
            cfg.domain = if expat {
                "sip.example-voip.net".into()
            } else {
                "voip.example-isp.cn".into()
            };
            cfg.sig_port = if rng.random_bool(0.5) {
                5060
            } else {
                rng.random_range(5060..65000)
            };
            cfg.nat_host = if rng.random_bool(0.7) {
                Some(nat(&mut rng))
            } else {
                None
            };
            let softphone = rng.random_bool(0.4);
            cfg.ua = Some(
                if softphone {
                    pick(&mut rng, &SOFTPHONE_UAS)
                } else {
                    pick(&mut rng, &ATA_UAS)
                }
                .to_string(),
            );
            cfg.allow = Some(SOFTPHONE_ALLOW);
            cfg.peer_ua = Some(
                if expat {
                    "Sonus SBC"
                } else {
                    "Kamailio (5.6.4 (x86_64/linux))"
                }
                .into(),
            );
            cfg.peer_sdp = ("SBC".into(), "SBC Session".into());
            cfg.codec = codec_pick(&mut rng, &[PCMA, PCMU, PCMA]);
            cfg.offer = vec![cfg.codec, G729];
            let own = if expat {
                {
                    let cc = *pick(&mut rng, &["44", "49", "1"]);
                    num::foreign_e164(&mut rng, cc)
                }
            } else {
                format!(
                    "+{}{}",
                    num::HOME_CC,
                    num::landline_e164(&mut rng).get(3..).unwrap_or("")
                )
            };
            cfg.own_numbers = vec![own.clone()];
            cfg.accounts.push(Account {
                user: own.trim_start_matches('+').to_string(),
                call_id: String::new(),
                cseq: 0,
                port: cfg.sig_port,
            });
            cfg.reg_interval = *pick(&mut rng, &[300u32, 600, 1800]);
            cfg.calls_per_hour = p
                .calls_per_hour
                .unwrap_or_else(|| uniform(&mut rng, 1.0, 5.0));
            cfg.answer_ratio = p
                .answer_ratio
                .unwrap_or_else(|| uniform(&mut rng, 0.6, 0.85));
            cfg.talk_median = uniform(&mut rng, 90.0, 240.0);
            cfg.talk_sigma = 1.0;
            cfg.inbound_share = 0.45;
            cfg.max_active = 1;
            cfg.early_media = 0.1;
            if rng.random_bool(p.tcp_share.unwrap_or(0.1)) {
                cfg.sig_port = rng.random_range(40000..60000);
                cfg.accounts.iter_mut().for_each(|a| a.port = cfg.sig_port);
            }
            params.insert("ua".into(), json!(cfg.ua));
            params.insert("own_number".into(), json!(own));
            params.insert("provider".into(), json!(cfg.peer.to_string()));
            params.insert("reg_interval_secs".into(), json!(cfg.reg_interval));
            params.insert("private_contact".into(), json!(cfg.nat_host));
        }
        Kind::Camera => {
            cfg.peer = v4(198, 18, 0, 10 + rng.random_range(0..4u8), 5060);
            cfg.peer_ttl = 60;
            cfg.rtt_us = rng.random_range(8_000..30_000);
            cfg.domain = "voip.example-isp.cn".into();
            cfg.nat_host = if rng.random_bool(0.5) {
                Some(nat(&mut rng))
            } else {
                None
            };
            cfg.ua = Some(pick(&mut rng, &CAMERA_UAS).to_string());
            cfg.allow = Some(CAMERA_ALLOW);
            cfg.peer_ua = Some("Kamailio (5.6.4 (x86_64/linux))".into());
            cfg.peer_sdp = ("SBC".into(), "SBC Session".into());
            cfg.codec = codec_pick(&mut rng, &[PCMU, PCMA]);
            cfg.offer = vec![cfg.codec];
            let own = format!(
                "+{}{}",
                num::HOME_CC,
                num::landline_e164(&mut rng).get(3..).unwrap_or("")
            );
            cfg.own_numbers = vec![own.clone()];
            cfg.accounts.push(Account {
                user: own.trim_start_matches('+').to_string(),
                call_id: String::new(),
                cseq: 0,
                port: 5060,
            });
            cfg.reg_interval = *pick(&mut rng, &[600u32, 1800, 3600]);
            // A door station calls the resident when someone rings; it is never called.
            cfg.calls_per_hour = p
                .calls_per_hour
                .unwrap_or_else(|| uniform(&mut rng, 0.2, 1.0));
            cfg.answer_ratio = p
                .answer_ratio
                .unwrap_or_else(|| uniform(&mut rng, 0.6, 0.9));
            cfg.talk_median = uniform(&mut rng, 15.0, 40.0);
            cfg.talk_sigma = 0.6;
            cfg.inbound_share = 0.0;
            cfg.max_active = 1;
            cfg.early_media = 0.0;
            params.insert("ua".into(), json!(cfg.ua));
            params.insert("own_number".into(), json!(own));
            params.insert("provider".into(), json!(cfg.peer.to_string()));
            params.insert("reg_interval_secs".into(), json!(cfg.reg_interval));
        }
        Kind::OfficePbx | Kind::CompromisedPbx => {
            cfg.peer = v4(198, 18, 1, 10 + rng.random_range(0..5u8), 5060);
            cfg.peer_ttl = 59;
            cfg.rtt_us = rng.random_range(5_000..25_000);
            cfg.domain = "trunk.example-isp.cn".into();
            cfg.channels = p.channels.unwrap_or_else(|| rng.random_range(6..24));
            cfg.max_active = cfg.channels;
            cfg.ua = Some(pick(&mut rng, &PBX_UAS).to_string());
            cfg.allow = Some(PBX_ALLOW);
            cfg.peer_ua = Some("Sonus SBC".into());
            cfg.sdp_user = "root".into();
            cfg.sdp_session = "Asterisk PBX".into();
            cfg.codec = codec_pick(&mut rng, &[PCMA, PCMA, G729]);
            cfg.offer = vec![cfg.codec, PCMU, G729];
            let base = num::landline_e164(&mut rng);
            let block: String = base.get(..base.len() - 2).unwrap_or(&base).to_string();
            let n = [10u32, 20, 50][rng.random_range(0..3)];
            cfg.own_numbers = (0..n).map(|i| format!("{block}{i:02}")).collect();
            cfg.calls_per_hour = p
                .calls_per_hour
                .unwrap_or_else(|| cfg.channels as f64 * uniform(&mut rng, 4.0, 8.0));
            cfg.answer_ratio = p
                .answer_ratio
                .unwrap_or_else(|| uniform(&mut rng, 0.7, 0.9));
            cfg.talk_median = uniform(&mut rng, 150.0, 300.0);
            cfg.talk_sigma = 1.0;
            cfg.inbound_share = uniform(&mut rng, 0.4, 0.6);
            cfg.big_share = p.big_invite_share.unwrap_or(0.2);
            if rng.random_bool(0.5) {
                cfg.accounts.push(Account {
                    user: format!("pbx{}", rng.random_range(1000..9999u32)),
                    call_id: String::new(),
                    cseq: 0,
                    port: 5060,
                });
                cfg.reg_interval = 600;
            }
            if rng.random_bool(p.tcp_share.unwrap_or(0.3)) {
                cfg.sig_port = rng.random_range(40000..60000);
                cfg.accounts.iter_mut().for_each(|a| a.port = cfg.sig_port);
            }
            params.insert("channels".into(), json!(cfg.channels));
            params.insert(
                "did_block".into(),
                json!(format!("{block}00-{block}{:02}", n - 1)),
            );
            params.insert("ua".into(), json!(cfg.ua));
            params.insert("trunk".into(), json!(cfg.peer.to_string()));
            params.insert(
                "registration".into(),
                json!(if cfg.accounts.is_empty() {
                    "ip-auth"
                } else {
                    "register"
                }),
            );
        }
        Kind::CallCentre => {
            cfg.peer = v4(198, 18, 2, 10 + rng.random_range(0..5u8), 5060);
            cfg.peer_ttl = 59;
            cfg.rtt_us = rng.random_range(5_000..25_000);
            cfg.domain = "trunk.example-isp.cn".into();
            cfg.channels = p.channels.unwrap_or_else(|| rng.random_range(8..20));
            cfg.ua = Some("VICIdial Asterisk 16.30.1".into());
            cfg.allow = Some(PBX_ALLOW);
            cfg.sdp_user = "root".into();
            cfg.sdp_session = "Asterisk PBX 16.30.1".into();
            cfg.codec = codec_pick(&mut rng, &[PCMA, G729]);
            cfg.offer = vec![cfg.codec, PCMU];
            cfg.own_numbers = (0..4).map(|_| num::landline_e164(&mut rng)).collect();
            cfg.answer_ratio = p
                .answer_ratio
                .unwrap_or_else(|| uniform(&mut rng, 0.2, 0.4));
            cfg.talk_median = uniform(&mut rng, 60.0, 120.0);
            cfg.talk_sigma = 0.8;
            cfg.gap = (0.5, 4.0);
            cfg.early_media = 0.5;
            params.insert("channels".into(), json!(cfg.channels));
            params.insert("ua".into(), json!(cfg.ua));
            params.insert("trunk".into(), json!(cfg.peer.to_string()));
            params.insert("caller_ids".into(), json!(cfg.own_numbers));
        }
        Kind::HelpDesk => {
            cfg.peers = vec![
                v4(198, 19, 0, 10 + rng.random_range(0..5u8), 5060),
                v4(198, 19, 1, 10 + rng.random_range(0..5u8), 5060),
                v4(198, 51, 100, 20 + rng.random_range(0..5u8), 5060),
                v4(203, 0, 113, 60 + rng.random_range(0..5u8), 5060),
            ];
            cfg.peer = cfg.peers[0];
            cfg.channels = p.channels.unwrap_or_else(|| rng.random_range(6..16));
            cfg.max_active = cfg.channels;
            cfg.ua = Some(pick(&mut rng, &PBX_UAS).to_string());
            cfg.allow = Some(PBX_ALLOW);
            cfg.peer_ua = Some("Carrier SBC".into());
            cfg.codec = codec_pick(&mut rng, &[PCMA, G729]);
            cfg.offer = vec![cfg.codec];
            cfg.own_numbers = (0..3)
                .map(|i| format!("+{}400800{:04}", num::HOME_CC, 1000 + i * 111))
                .collect();
            cfg.calls_per_hour = p
                .calls_per_hour
                .unwrap_or_else(|| cfg.channels as f64 * uniform(&mut rng, 4.0, 7.0));
            cfg.answer_ratio = p.answer_ratio.unwrap_or(0.9);
            cfg.talk_median = uniform(&mut rng, 300.0, 480.0);
            cfg.talk_sigma = 0.7;
            cfg.inbound_share = 1.0;
            params.insert("channels".into(), json!(cfg.channels));
            params.insert("service_numbers".into(), json!(cfg.own_numbers));
            params.insert(
                "carriers".into(),
                json!(cfg.peers.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
            );
        }
        Kind::AppCalls => {
            cfg.peers = (0..4u16)
                .map(|i| {
                    if v6 {
                        sock6(0xa99, 0x10 + i, rng.random_range(50000..59999))
                    } else {
                        v4(203, 0, 113, 200 + i as u8, rng.random_range(50000..59999))
                    }
                })
                .collect();
            cfg.calls_per_hour = p
                .calls_per_hour
                .unwrap_or_else(|| uniform(&mut rng, 1.0, 4.0));
            cfg.max_active = 2;
            cfg.session_median = uniform(&mut rng, 120.0, 400.0);
            cfg.srtp_like = rng.random_bool(0.5);
            params.insert("calls_per_hour".into(), json!(cfg.calls_per_hour));
            params.insert("srtp_like".into(), json!(cfg.srtp_like));
        }
        Kind::Gaming => {
            cfg.peers = (0..3u16)
                .map(|i| {
                    if v6 {
                        sock6(0x9a, 0x20 + i, 30000 + i)
                    } else {
                        v4(198, 51, 100, 200 + i as u8, 30000 + i)
                    }
                })
                .collect();
            cfg.calls_per_hour = p.calls_per_hour.unwrap_or(1.5);
            cfg.max_active = 1;
            cfg.session_median = uniform(&mut rng, 1200.0, 2700.0);
            params.insert("tick_hz".into(), json!(64));
        }
        Kind::Video => {
            cfg.peers = (0..3u16)
                .map(|i| {
                    if v6 {
                        sock6(0xcd, 0x30 + i, 9000 + i)
                    } else {
                        v4(198, 18, 200, 10 + i as u8, 9000 + i)
                    }
                })
                .collect();
            cfg.calls_per_hour = p.calls_per_hour.unwrap_or(1.0);
            cfg.max_active = 1;
            cfg.session_median = uniform(&mut rng, 900.0, 2400.0);
        }
    }
    if let Some(c) = p.calls_per_hour {
        cfg.calls_per_hour = c;
    }
    params.insert("codec".into(), json!(cfg.codec.name));
    params.insert("ptime".into(), json!(cfg.ptime));
    params.insert(
        "answer_ratio".into(),
        json!((cfg.answer_ratio * 1000.0).round() / 1000.0),
    );
    params.insert("talk_median_secs".into(), json!(cfg.talk_median.round()));
    if !matches!(p.kind, Kind::AppCalls | Kind::Gaming | Kind::Video)
        && !p.kind.is_gateway()
        && p.kind != Kind::CallCentre
    {
        params.insert(
            "calls_per_hour".into(),
            json!((cfg.calls_per_hour * 10.0).round() / 10.0),
        );
    }
    if matches!(p.kind, Kind::AppCalls | Kind::Gaming | Kind::Video) {
        for k in ["codec", "ptime", "answer_ratio", "talk_median_secs"] {
            params.remove(k);
        }
        params.insert(
            "servers".into(),
            json!(cfg.peers.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
        );
        params.insert(
            "session_median_secs".into(),
            json!(cfg.session_median.round()),
        );
    }
    // SIP over TCP when the line's port was moved to an ephemeral one above.
    let tcp = if cfg.sig_port >= 40000
        && (matches!(p.kind, Kind::Household | Kind::ExpatVoip) || p.kind.is_pbx())
    {
        Some(TcpConn {
            line: SocketAddr::new(addr, cfg.sig_port),
            peer: cfg.peer,
            line_seq: rng.random(),
            peer_seq: rng.random(),
            up: false,
        })
    } else {
        None
    };
    if !matches!(p.kind, Kind::AppCalls | Kind::Gaming | Kind::Video) {
        params.insert(
            "transport".into(),
            json!(if tcp.is_some() { "tcp" } else { "udp" }),
        );
    }
    for a in cfg.accounts.iter_mut() {
        a.call_id = format!(
            "{}@{}",
            num::hex_id(&mut rng, 12),
            cfg.nat_host.clone().unwrap_or_else(|| host_str(addr))
        );
        a.cseq = rng.random_range(1..50);
    }
    Line {
        idx,
        addr,
        kind: p.kind,
        site: p.site.clone(),
        rng,
        l2,
        ip_id: (idx as u16).wrapping_mul(7919),
        peer_ip_id: (idx as u16).wrapping_mul(104_729u32 as u16),
        active: 0,
        calls: 0,
        scramble,
        tcp,
        media,
        params,
        pop: 0,
        unsolicited: Unsolicited::Ignore,
        open_prefix: None,
        cfg,
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

    /// Next call on a gateway or dialer channel.
    pub fn plan_channel_call(&mut self, ch: u32, t: i64) -> Plan {
        let peer = self.cfg.peer;
        if self.kind == Kind::CallCentre {
            let from = pick(&mut self.rng, &self.cfg.own_numbers).clone();
            let to = num::domestic_dialled(&mut self.rng);
            let lp = self.line_party(from, self.cfg.domain.clone(), 5060);
            let pp = self.peer_party(peer, to.clone(), self.cfg.domain.clone());
            return self.plan_call(t, lp, pp, true, to);
        }
        let port = self
            .cfg
            .accounts
            .get(ch as usize)
            .map(|a| a.port)
            .unwrap_or(
                self.cfg
                    .sig_port
                    .wrapping_add(if self.cfg.port_per_channel {
                        ch as u16
                    } else {
                        0
                    }),
            );
        let (_, dialled) = num::dialled_mobile(&mut self.rng);
        let cli = num::intl_cli(&mut self.rng);
        let lp = self.line_party(dialled.clone(), host_str(self.addr), port);
        let pp = self.peer_party(peer, cli, host_str(peer.ip()));
        self.plan_call(t, lp, pp, false, dialled)
    }

    /// A random arrival on a line with Poisson traffic.
    pub fn arrival(&mut self, t: i64, _start: i64) -> Shape {
        if self.active >= self.cfg.max_active {
            return Shape::None;
        }
        match self.kind {
            Kind::AppCalls | Kind::Gaming | Kind::Video => Shape::Flow(self.plan_flow(t)),
            Kind::HelpDesk => {
                let peer = *pick(&mut self.rng, &self.cfg.peers);
                let to = pick(&mut self.rng, &self.cfg.own_numbers).clone();
                let foreign = !matches!(peer.ip(), IpAddr::V4(a) if a.octets()[0] == 198 && a.octets()[1] < 20);
                let from = if foreign {
                    num::intl_cli(&mut self.rng)
                } else {
                    num::domestic_cli(&mut self.rng)
                };
                self.cfg.rtt_us = if foreign { 180_000 } else { 15_000 };
                self.cfg.peer_ttl = if foreign { 48 } else { 59 };
                let lp = self.line_party(to.clone(), host_str(self.addr), 5060);
                let pp = self.peer_party(peer, from, host_str(peer.ip()));
                Shape::Call(Box::new(self.plan_call(t, lp, pp, false, to)))
            }
            _ => {
                let inbound = self.rng.random_bool(self.cfg.inbound_share);
                let own = pick(&mut self.rng, &self.cfg.own_numbers).clone();
                let peer = self.cfg.peer;
                let domain = self.cfg.domain.clone();
                let account = self.cfg.accounts.first().map(|a| a.user.clone());
                let port = self
                    .cfg
                    .accounts
                    .first()
                    .map(|a| a.port)
                    .unwrap_or(self.cfg.sig_port);
                if inbound {
                    let from = if self.kind == Kind::ExpatVoip && self.rng.random_bool(0.6) {
                        num::foreign_e164(&mut self.rng, "44")
                    } else {
                        num::domestic_cli(&mut self.rng)
                    };
                    let user = if self.kind.is_pbx() {
                        own
                    } else {
                        account.unwrap_or_else(|| own.trim_start_matches('+').to_string())
                    };
                    let lp = self.line_party(user.clone(), domain.clone(), port);
                    let pp = self.peer_party(peer, from, domain);
                    Shape::Call(Box::new(self.plan_call(t, lp, pp, false, user)))
                } else {
                    let to = if self.kind == Kind::ExpatVoip && self.rng.random_bool(0.5) {
                        num::foreign_e164(&mut self.rng, "44")
                    } else {
                        num::domestic_dialled(&mut self.rng)
                    };
                    let from = if self.kind.is_pbx() {
                        own
                    } else {
                        account.unwrap_or(own)
                    };
                    let lp = self.line_party(from, domain.clone(), port);
                    let pp = self.peer_party(peer, to.clone(), domain);
                    Shape::Call(Box::new(self.plan_call(t, lp, pp, true, to)))
                }
            }
        }
    }

    pub fn next_arrival_us(&mut self, t: i64, start: i64) -> i64 {
        let mut rate = self.cfg.calls_per_hour.max(0.01);
        if self.kind.is_pbx() {
            // Office hours 08-18 UTC at full rate, a trickle otherwise.
            let hour = ((t / 1_000_000).rem_euclid(86400)) / 3600;
            if !(8..18).contains(&hour) {
                rate *= 0.05;
            }
        }
        let _ = start;
        t + (exponential(&mut self.rng, 3600.0 / rate) * 1e6) as i64 + 1
    }

    fn media_kind(&mut self, codec: CodecSpec, ptime: u32) -> StreamKind {
        let payload = codec.bytes_per_10ms * (ptime / 10) as u16;
        match self.media {
            MediaMode::Rtp | MediaMode::RtpScrambled => StreamKind::Rtp {
                ssrc: self.rng.random(),
                seq: self.rng.random(),
                ts: self.rng.random(),
                ts_step: 8 * ptime,
                pt: codec.pt,
                payload,
                marker: true,
            },
            MediaMode::Opaque => StreamKind::Opaque {
                min: 12 + payload,
                max: 12 + payload,
            },
        }
    }

    /// Plans one INVITE dialog between the line party and the peer party from time `t`.
    fn plan_call(
        &mut self,
        t: i64,
        lp: Party,
        pp: Party,
        line_is_caller: bool,
        dialled: String,
    ) -> Plan {
        let rtt = self.cfg.rtt_us.max(2_000);
        let big = self.rng.random_bool(self.cfg.big_share.clamp(0.0, 1.0));
        let (caller, callee) = if line_is_caller { (lp, pp) } else { (pp, lp) };
        let ruri_host = if callee.sock.is_ipv6() {
            format!("[{}]:{}", callee.sock.ip(), callee.sock.port())
        } else {
            callee.sock.to_string()
        };
        let offer = if line_is_caller {
            self.cfg.offer.clone()
        } else {
            self.cfg.peer_offer.clone()
        };
        let codec = if offer.contains(&self.cfg.codec) {
            self.cfg.codec
        } else {
            offer.first().copied().unwrap_or(PCMA)
        };
        let ptime = self.cfg.ptime;
        let tcp =
            self.tcp.is_some() && (caller.sock == self.cfg.peer || callee.sock == self.cfg.peer);
        let call_host = caller.host.clone();
        let d = Dialog {
            call_id: format!("{}@{}", num::hex_id(&mut self.rng, 10), call_host),
            caller,
            callee,
            ruri_user: dialled,
            ruri_host,
            branch: format!("z9hG4bK{}", num::hex_id(&mut self.rng, 8)),
            branch2: format!("z9hG4bK{}", num::hex_id(&mut self.rng, 8)),
            tcp,
            codec,
            offer,
            ptime,
            big,
            extra: Vec::new(),
            expires: 0,
            nonce: String::new(),
            max_forwards: 70,
        };
        // Delay until the far side's answer to a message reaches the tap.
        let resp_from_peer = rtt;
        let resp_from_line = self.rng.random_range(2_000..40_000);
        let (callee_delay, caller_delay) = if line_is_caller {
            (resp_from_peer, resp_from_line)
        } else {
            (resp_from_line, resp_from_peer)
        };
        let mut s: Vec<Step> = Vec::with_capacity(8);
        let step = |t: i64, msg: Msg| Step {
            t,
            msg,
            coalesce: false,
        };
        s.push(step(t, Msg::Invite));
        s.push(step(t + callee_delay, Msg::Trying));
        let u: f64 = self.rng.random();
        let gw = self.kind.is_gateway() || self.kind == Kind::CallCentre;
        let early = self.rng.random_bool(self.cfg.early_media.clamp(0.0, 1.0));
        // Over TCP a provider often sends 100 and 180/183 back to back in one segment.
        let back_to_back = d.tcp && self.rng.random_bool(0.4);
        let tp = if back_to_back {
            if let Some(first) = s.last_mut() {
                first.coalesce = true;
            }
            t + callee_delay
        } else {
            t + callee_delay + (uniform(&mut self.rng, 0.3, 2.5) * 1e6) as i64
        };
        let mut early_from = None;
        let end;
        let mut streams = Vec::new();
        let callee_media = SocketAddr::new(d.callee.sock.ip(), d.callee.rtp_port);
        let caller_media = SocketAddr::new(d.caller.sock.ip(), d.caller.rtp_port);
        let jit_line = 300i64;
        let jit_peer = if rtt > 80_000 { 3_000 } else { 1_000 };
        let (jit_callee, jit_caller) = if line_is_caller {
            (jit_peer, jit_line)
        } else {
            (jit_line, jit_peer)
        };
        let interval = i64::from(ptime) * 1000;
        let mut outcome = "answered";
        let mut code = 200u16;
        if u < self.cfg.answer_ratio {
            if early {
                s.push(step(tp, Msg::Progress));
                early_from = Some(tp + 20_000);
            } else {
                s.push(step(tp, Msg::Ringing));
            }
            let ring = lognormal(&mut self.rng, 7.0, 0.5).clamp(1.0, 45.0);
            let ta = tp + (ring * 1e6) as i64;
            s.push(step(ta, Msg::OkInvite));
            s.push(step(ta + caller_delay, Msg::AckOk));
            let max_talk = if gw { 1800.0 } else { 5400.0 };
            let talk = lognormal(&mut self.rng, self.cfg.talk_median, self.cfg.talk_sigma)
                .clamp(2.0, max_talk);
            let te = ta + (talk * 1e6) as i64;
            let by_caller = self.rng.random_bool(0.5);
            s.push(step(te, Msg::Bye { by_caller }));
            let d_ok = if by_caller {
                callee_delay
            } else {
                caller_delay
            };
            s.push(step(te + d_ok, Msg::OkBye { by_caller }));
            end = te + d_ok;
            let kind = self.media_kind(codec, ptime);
            let seed = self.rng.random();
            streams.push(Stream::new(
                !line_is_caller,
                callee_media,
                caller_media,
                early_from.unwrap_or(ta + 1),
                te,
                interval,
                jit_callee,
                kind,
                seed,
            ));
            let kind = self.media_kind(codec, ptime);
            let seed = self.rng.random();
            streams.push(Stream::new(
                line_is_caller,
                caller_media,
                callee_media,
                ta + caller_delay + 1,
                te,
                interval,
                jit_caller,
                kind,
                seed,
            ));
        } else {
            let v: f64 = self.rng.random();
            let (fail, at) = if v < 0.3 {
                (
                    Some(486),
                    tp + (uniform(&mut self.rng, 1.0, 8.0) * 1e6) as i64,
                )
            } else if v < 0.5 {
                (
                    Some(480),
                    tp + (uniform(&mut self.rng, 5.0, 25.0) * 1e6) as i64,
                )
            } else if v < 0.6 {
                (
                    Some(404),
                    t + callee_delay + (uniform(&mut self.rng, 0.1, 0.6) * 1e6) as i64,
                )
            } else if v < 0.7 {
                (
                    Some(503),
                    t + callee_delay + (uniform(&mut self.rng, 0.05, 0.4) * 1e6) as i64,
                )
            } else {
                (None, tp + (uniform(&mut self.rng, 8.0, 40.0) * 1e6) as i64)
            };
            if at > tp {
                if early {
                    s.push(step(tp, Msg::Progress));
                    early_from = Some(tp + 20_000);
                } else {
                    s.push(step(tp, Msg::Ringing));
                }
            }
            match fail {
                Some(c) => {
                    code = c;
                    outcome = match c {
                        486 => "busy",
                        480 => "no-answer",
                        _ => "failed",
                    };
                    s.push(step(at, Msg::Fail(c)));
                    s.push(step(at + caller_delay, Msg::AckFail(c)));
                    end = at + caller_delay;
                }
                None => {
                    code = 487;
                    outcome = "cancelled";
                    s.push(step(at, Msg::Cancel));
                    s.push(Step {
                        t: at + callee_delay,
                        msg: Msg::OkCancel,
                        coalesce: true,
                    });
                    s.push(step(at + callee_delay + 500, Msg::Fail(487)));
                    s.push(step(
                        at + callee_delay + 500 + caller_delay,
                        Msg::AckFail(487),
                    ));
                    end = at + callee_delay + 500 + caller_delay;
                }
            }
            if let Some(ef) = early_from {
                let stop = s
                    .iter()
                    .find(|x| matches!(x.msg, Msg::Fail(_) | Msg::Cancel))
                    .map(|x| x.t)
                    .unwrap_or(ef);
                if stop > ef {
                    let kind = self.media_kind(codec, ptime);
                    let seed = self.rng.random();
                    streams.push(Stream::new(
                        !line_is_caller,
                        callee_media,
                        caller_media,
                        ef,
                        stop,
                        interval,
                        jit_callee,
                        kind,
                        seed,
                    ));
                }
            }
        }
        let _ = (outcome, code);
        // Keep the script in time order whatever the draws were.
        for i in 1..s.len() {
            let prev = s.get(i - 1).map(|x| x.t).unwrap_or(t);
            if let Some(x) = s.get_mut(i) {
                if x.t < prev {
                    x.t = prev;
                }
            }
        }
        let end = end.max(s.last().map(|x| x.t).unwrap_or(t));
        Plan {
            dialog: Box::new(d),
            line_is_caller,
            script: s,
            streams,
            end,
        }
    }

    /// One REGISTER transaction of `account` at `t` and when to refresh.
    pub fn register(&mut self, line: u32, account: u32, t: i64) -> (Exchange, i64) {
        let interval = i64::from(self.cfg.reg_interval) * 1_000_000;
        let challenge = self.rng.random_bool(self.cfg.reg_challenge);
        let registrar = self.cfg.peer;
        let domain = if self.cfg.domain.is_empty() {
            host_str(registrar.ip())
        } else {
            self.cfg.domain.clone()
        };
        let Some(acc) = self.cfg.accounts.get(account as usize).cloned() else {
            return (empty_exchange(line), i64::MAX);
        };
        let mut lp = self.line_party(acc.user.clone(), domain.clone(), acc.port);
        lp.rtp_port = 0;
        let pp = self.peer_party(registrar, acc.user.clone(), domain);
        let rtt = self.cfg.rtt_us.max(2_000);
        let nonce = num::hex_id(&mut self.rng, 8);
        let branch = format!("z9hG4bK{}", num::hex_id(&mut self.rng, 6));
        let tcp = self.tcp.is_some();
        let cseq = acc.cseq;
        let d = Dialog {
            call_id: acc.call_id.clone(),
            caller: lp,
            callee: pp,
            ruri_user: String::new(),
            ruri_host: String::new(),
            branch,
            branch2: String::new(),
            tcp,
            codec: PCMA,
            offer: Vec::new(),
            ptime: 20,
            big: false,
            extra: Vec::new(),
            expires: self.cfg.reg_interval.saturating_mul(2).min(3600),
            nonce,
            max_forwards: 70,
        };
        let step = |t: i64, msg: Msg| Step {
            t,
            msg,
            coalesce: false,
        };
        let mut script = Vec::new();
        let mut c = cseq;
        if challenge {
            script.push(step(
                t,
                Msg::Register {
                    cseq: c,
                    auth: false,
                },
            ));
            script.push(step(t + rtt, Msg::Unauthorized { cseq: c }));
            c += 1;
            script.push(step(
                t + rtt + 3_000,
                Msg::Register {
                    cseq: c,
                    auth: true,
                },
            ));
            script.push(step(t + 2 * rtt + 3_000, Msg::OkRegister { cseq: c }));
        } else {
            script.push(step(
                t,
                Msg::Register {
                    cseq: c,
                    auth: true,
                },
            ));
            script.push(step(t + rtt, Msg::OkRegister { cseq: c }));
        }
        if let Some(a) = self.cfg.accounts.get_mut(account as usize) {
            a.cseq = c + 1;
        }
        let ex = Exchange {
            line,
            dialog: Some(Box::new(d)),
            line_is_caller: true,
            script,
            pos: 0,
            streams: Vec::new(),
            counts_active: false,
            plain: false,
            peer_ttl: None,
        };
        let next = t + (interval as f64 * uniform(&mut self.rng, 0.97, 1.0)) as i64;
        (ex, next)
    }

    /// Streams of one app call, game session or video session.
    fn plan_flow(&mut self, t: i64) -> Vec<Stream> {
        let server = *pick(&mut self.rng, &self.cfg.peers);
        let local = SocketAddr::new(self.addr, self.rng.random_range(40000..65000));
        let dur = lognormal(&mut self.rng, self.cfg.session_median, 0.6).clamp(20.0, 4.0 * 3600.0);
        let end = t + (dur * 1e6) as i64;
        let s1 = self.rng.random();
        let s2 = self.rng.random();
        match self.kind {
            Kind::AppCalls => {
                let ptime = if self.rng.random_bool(0.7) { 20 } else { 60 };
                let kind = |rng: &mut ChaCha8Rng, srtp: bool, len: u16| {
                    if srtp {
                        StreamKind::Rtp {
                            ssrc: rng.random(),
                            seq: rng.random(),
                            ts: rng.random(),
                            ts_step: 48 * ptime,
                            pt: 111,
                            payload: len,
                            marker: true,
                        }
                    } else {
                        StreamKind::Opaque {
                            min: len - 20,
                            max: len + 40,
                        }
                    }
                };
                let k1 = kind(&mut self.rng, self.cfg.srtp_like, 90);
                let k2 = kind(&mut self.rng, self.cfg.srtp_like, 100);
                let iv = i64::from(ptime) * 1000;
                vec![
                    Stream::new(true, local, server, t, end, iv, 2_000, k1, s1),
                    Stream::new(false, server, local, t + 150_000, end, iv, 8_000, k2, s2),
                ]
            }
            Kind::Gaming => vec![
                Stream::new(
                    true,
                    local,
                    server,
                    t,
                    end,
                    33_333,
                    4_000,
                    StreamKind::Opaque { min: 60, max: 140 },
                    s1,
                ),
                Stream::new(
                    false,
                    server,
                    local,
                    t + 40_000,
                    end,
                    15_625,
                    3_000,
                    StreamKind::Opaque { min: 100, max: 520 },
                    s2,
                ),
            ],
            _ => vec![
                Stream::new(
                    true,
                    local,
                    server,
                    t,
                    end,
                    40_000,
                    10_000,
                    StreamKind::Opaque { min: 60, max: 90 },
                    s1,
                ),
                Stream::new(
                    false,
                    server,
                    local,
                    t + 30_000,
                    end,
                    6_000,
                    2_500,
                    StreamKind::Opaque {
                        min: 1100,
                        max: 1350,
                    },
                    s2,
                ),
            ],
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
