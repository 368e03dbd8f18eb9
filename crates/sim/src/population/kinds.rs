//! One function per population family: what a line of each kind draws (channels, user agent,
//! codec, shift, rates...) into its `Cfg` and the labels' `params`. `new_line` draws what every
//! line has, calls its family, then the shared tail, all from the line's own stream in order.

use super::{
    codec_of, host_str, line_addr, pick, sock6, v4, Account, Cfg, Line, MediaMode, TcpConn,
};
use crate::numbers::{self as num, uniform};
use crate::scenario::{parse_shift, Kind, Population, RegMode, UaMode, Unsolicited};
use crate::sipmsg::{CodecSpec, G729, PCMA, PCMU};
use crate::wire::L2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;

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

pub(super) fn new_line(
    idx: u32,
    p: &Population,
    site_no: u8,
    mut rng: ChaCha8Rng,
    duration: u64,
) -> Line {
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

    // One function per population family; each draws from the line's stream in the same order.
    let (media, scramble) = match p.kind {
        Kind::Gateway | Kind::GatewayScrambled | Kind::GatewayOpaque => {
            gateway(p, &mut rng, &mut cfg, &mut params, v6, site_no, duration)
        }
        Kind::Household | Kind::ExpatVoip => {
            household(p, &mut rng, &mut cfg, &mut params, v6);
            PLAIN
        }
        Kind::Camera => {
            camera(p, &mut rng, &mut cfg, &mut params, v6);
            PLAIN
        }
        Kind::OfficePbx | Kind::CompromisedPbx => {
            pbx(p, &mut rng, &mut cfg, &mut params, v6);
            PLAIN
        }
        Kind::CallCentre => {
            call_centre(p, &mut rng, &mut cfg, &mut params, v6);
            PLAIN
        }
        Kind::HelpDesk => {
            help_desk(p, &mut rng, &mut cfg, &mut params, v6);
            PLAIN
        }
        Kind::AppCalls => {
            app_calls(p, &mut rng, &mut cfg, &mut params, v6);
            PLAIN
        }
        Kind::Gaming => {
            gaming(p, &mut rng, &mut cfg, &mut params, v6);
            PLAIN
        }
        Kind::Video => {
            video(p, &mut rng, &mut cfg, &mut params, v6);
            PLAIN
        }
    };
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

/// Media of every family but the gateways: plain RTP, no scramble key.
const PLAIN: (MediaMode, Option<u64>) = (MediaMode::Rtp, None);

/// The population's codec, or one drawn from the family's `default`s.
fn codec_pick(p: &Population, rng: &mut ChaCha8Rng, default: &[CodecSpec]) -> CodecSpec {
    p.codec.map(codec_of).unwrap_or_else(|| *pick(rng, default))
}

/// A private (NAT) contact host.
fn nat(rng: &mut ChaCha8Rng) -> String {
    format!(
        "192.168.{}.{}",
        rng.random_range(0..3u8),
        rng.random_range(2..250u8)
    )
}

/// A SIM-box gateway (plain, scrambled or opaque): channels, softswitch abroad, vendor UA,
/// per-port or trunk registration, an optional on/off shift. Returns the media mode and scramble key.
fn gateway(
    p: &Population,
    rng: &mut ChaCha8Rng,
    cfg: &mut Cfg,
    params: &mut Map<String, Value>,
    v6: bool,
    site_no: u8,
    duration: u64,
) -> (MediaMode, Option<u64>) {
    let mut media = MediaMode::Rtp;
    let mut scramble = None;
    cfg.channels = p.channels.unwrap_or_else(|| {
        let c = [1u32, 4, 4, 8, 8, 8, 16, 16, 32];
        *pick(rng, &c)
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
        Some(nat(rng))
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
            let (u, a) = *pick(rng, &GATEWAY_UAS);
            (Some(u.to_string()), Some(a))
        }
        UaMode::Softphone => (
            Some(pick(rng, &SOFTPHONE_UAS).to_string()),
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
    cfg.codec = codec_pick(p, rng, &[G729, G729, G729, PCMA]);
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
            let port = cfg
                .sig_port
                .wrapping_add(if cfg.port_per_channel { ch as u16 } else { 0 });
            cfg.accounts.push(Account {
                user,
                call_id: String::new(),
                cseq: 0,
                port,
            });
        }
        cfg.reg_interval = *pick(rng, &[30u32, 60, 60, 120, 300]);
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
    cfg.answer_ratio = p.answer_ratio.unwrap_or_else(|| uniform(rng, 0.25, 0.5));
    cfg.early_media = uniform(rng, 0.4, 0.9);
    cfg.talk_median = uniform(rng, 35.0, 75.0);
    cfg.talk_sigma = 0.9;
    cfg.gap = (1.0, uniform(rng, 4.0, 15.0));
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
    (media, scramble)
}

/// A household ATA or softphone at the domestic provider, or an expat's foreign VoIP account.
fn household(
    p: &Population,
    rng: &mut ChaCha8Rng,
    cfg: &mut Cfg,
    params: &mut Map<String, Value>,
    v6: bool,
) {
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
        Some(nat(rng))
    } else {
        None
    };
    let softphone = rng.random_bool(0.4);
    cfg.ua = Some(
        if softphone {
            pick(rng, &SOFTPHONE_UAS)
        } else {
            pick(rng, &ATA_UAS)
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
    cfg.codec = codec_pick(p, rng, &[PCMA, PCMU, PCMA]);
    cfg.offer = vec![cfg.codec, G729];
    let own = if expat {
        {
            let cc = *pick(rng, &["44", "49", "1"]);
            num::foreign_e164(rng, cc)
        }
    } else {
        format!(
            "+{}{}",
            num::HOME_CC,
            num::landline_e164(rng).get(3..).unwrap_or("")
        )
    };
    cfg.own_numbers = vec![own.clone()];
    cfg.accounts.push(Account {
        user: own.trim_start_matches('+').to_string(),
        call_id: String::new(),
        cseq: 0,
        port: cfg.sig_port,
    });
    cfg.reg_interval = *pick(rng, &[300u32, 600, 1800]);
    cfg.calls_per_hour = p.calls_per_hour.unwrap_or_else(|| uniform(rng, 1.0, 5.0));
    cfg.answer_ratio = p.answer_ratio.unwrap_or_else(|| uniform(rng, 0.6, 0.85));
    cfg.talk_median = uniform(rng, 90.0, 240.0);
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

/// A door station / camera that calls the resident and is never called.
fn camera(
    p: &Population,
    rng: &mut ChaCha8Rng,
    cfg: &mut Cfg,
    params: &mut Map<String, Value>,
    _v6: bool,
) {
    cfg.peer = v4(198, 18, 0, 10 + rng.random_range(0..4u8), 5060);
    cfg.peer_ttl = 60;
    cfg.rtt_us = rng.random_range(8_000..30_000);
    cfg.domain = "voip.example-isp.cn".into();
    cfg.nat_host = if rng.random_bool(0.5) {
        Some(nat(rng))
    } else {
        None
    };
    cfg.ua = Some(pick(rng, &CAMERA_UAS).to_string());
    cfg.allow = Some(CAMERA_ALLOW);
    cfg.peer_ua = Some("Kamailio (5.6.4 (x86_64/linux))".into());
    cfg.peer_sdp = ("SBC".into(), "SBC Session".into());
    cfg.codec = codec_pick(p, rng, &[PCMU, PCMA]);
    cfg.offer = vec![cfg.codec];
    let own = format!(
        "+{}{}",
        num::HOME_CC,
        num::landline_e164(rng).get(3..).unwrap_or("")
    );
    cfg.own_numbers = vec![own.clone()];
    cfg.accounts.push(Account {
        user: own.trim_start_matches('+').to_string(),
        call_id: String::new(),
        cseq: 0,
        port: 5060,
    });
    cfg.reg_interval = *pick(rng, &[600u32, 1800, 3600]);
    // A door station calls the resident when someone rings; it is never called.
    cfg.calls_per_hour = p.calls_per_hour.unwrap_or_else(|| uniform(rng, 0.2, 1.0));
    cfg.answer_ratio = p.answer_ratio.unwrap_or_else(|| uniform(rng, 0.6, 0.9));
    cfg.talk_median = uniform(rng, 15.0, 40.0);
    cfg.talk_sigma = 0.6;
    cfg.inbound_share = 0.0;
    cfg.max_active = 1;
    cfg.early_media = 0.0;
    params.insert("ua".into(), json!(cfg.ua));
    params.insert("own_number".into(), json!(own));
    params.insert("provider".into(), json!(cfg.peer.to_string()));
    params.insert("reg_interval_secs".into(), json!(cfg.reg_interval));
}

/// An office PBX (or a compromised one) on a SIP trunk with a DID block.
fn pbx(
    p: &Population,
    rng: &mut ChaCha8Rng,
    cfg: &mut Cfg,
    params: &mut Map<String, Value>,
    _v6: bool,
) {
    cfg.peer = v4(198, 18, 1, 10 + rng.random_range(0..5u8), 5060);
    cfg.peer_ttl = 59;
    cfg.rtt_us = rng.random_range(5_000..25_000);
    cfg.domain = "trunk.example-isp.cn".into();
    cfg.channels = p.channels.unwrap_or_else(|| rng.random_range(6..24));
    cfg.max_active = cfg.channels;
    cfg.ua = Some(pick(rng, &PBX_UAS).to_string());
    cfg.allow = Some(PBX_ALLOW);
    cfg.peer_ua = Some("Sonus SBC".into());
    cfg.sdp_user = "root".into();
    cfg.sdp_session = "Asterisk PBX".into();
    cfg.codec = codec_pick(p, rng, &[PCMA, PCMA, G729]);
    cfg.offer = vec![cfg.codec, PCMU, G729];
    let base = num::landline_e164(rng);
    let block: String = base.get(..base.len() - 2).unwrap_or(&base).to_string();
    let n = [10u32, 20, 50][rng.random_range(0..3)];
    cfg.own_numbers = (0..n).map(|i| format!("{block}{i:02}")).collect();
    cfg.calls_per_hour = p
        .calls_per_hour
        .unwrap_or_else(|| cfg.channels as f64 * uniform(rng, 4.0, 8.0));
    cfg.answer_ratio = p.answer_ratio.unwrap_or_else(|| uniform(rng, 0.7, 0.9));
    cfg.talk_median = uniform(rng, 150.0, 300.0);
    cfg.talk_sigma = 1.0;
    cfg.inbound_share = uniform(rng, 0.4, 0.6);
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

/// A call centre dialer on a trunk, few caller IDs, low answer ratio.
fn call_centre(
    p: &Population,
    rng: &mut ChaCha8Rng,
    cfg: &mut Cfg,
    params: &mut Map<String, Value>,
    _v6: bool,
) {
    cfg.peer = v4(198, 18, 2, 10 + rng.random_range(0..5u8), 5060);
    cfg.peer_ttl = 59;
    cfg.rtt_us = rng.random_range(5_000..25_000);
    cfg.domain = "trunk.example-isp.cn".into();
    cfg.channels = p.channels.unwrap_or_else(|| rng.random_range(8..20));
    cfg.ua = Some("VICIdial Asterisk 16.30.1".into());
    cfg.allow = Some(PBX_ALLOW);
    cfg.sdp_user = "root".into();
    cfg.sdp_session = "Asterisk PBX 16.30.1".into();
    cfg.codec = codec_pick(p, rng, &[PCMA, G729]);
    cfg.offer = vec![cfg.codec, PCMU];
    cfg.own_numbers = (0..4).map(|_| num::landline_e164(rng)).collect();
    cfg.answer_ratio = p.answer_ratio.unwrap_or_else(|| uniform(rng, 0.2, 0.4));
    cfg.talk_median = uniform(rng, 60.0, 120.0);
    cfg.talk_sigma = 0.8;
    cfg.gap = (0.5, 4.0);
    cfg.early_media = 0.5;
    params.insert("channels".into(), json!(cfg.channels));
    params.insert("ua".into(), json!(cfg.ua));
    params.insert("trunk".into(), json!(cfg.peer.to_string()));
    params.insert("caller_ids".into(), json!(cfg.own_numbers));
}

/// A help desk taking calls to service numbers from several carriers.
fn help_desk(
    p: &Population,
    rng: &mut ChaCha8Rng,
    cfg: &mut Cfg,
    params: &mut Map<String, Value>,
    _v6: bool,
) {
    cfg.peers = vec![
        v4(198, 19, 0, 10 + rng.random_range(0..5u8), 5060),
        v4(198, 19, 1, 10 + rng.random_range(0..5u8), 5060),
        v4(198, 51, 100, 20 + rng.random_range(0..5u8), 5060),
        v4(203, 0, 113, 60 + rng.random_range(0..5u8), 5060),
    ];
    cfg.peer = cfg.peers[0];
    cfg.channels = p.channels.unwrap_or_else(|| rng.random_range(6..16));
    cfg.max_active = cfg.channels;
    cfg.ua = Some(pick(rng, &PBX_UAS).to_string());
    cfg.allow = Some(PBX_ALLOW);
    cfg.peer_ua = Some("Carrier SBC".into());
    cfg.codec = codec_pick(p, rng, &[PCMA, G729]);
    cfg.offer = vec![cfg.codec];
    cfg.own_numbers = (0..3)
        .map(|i| format!("+{}400800{:04}", num::HOME_CC, 1000 + i * 111))
        .collect();
    cfg.calls_per_hour = p
        .calls_per_hour
        .unwrap_or_else(|| cfg.channels as f64 * uniform(rng, 4.0, 7.0));
    cfg.answer_ratio = p.answer_ratio.unwrap_or(0.9);
    cfg.talk_median = uniform(rng, 300.0, 480.0);
    cfg.talk_sigma = 0.7;
    cfg.inbound_share = 1.0;
    params.insert("channels".into(), json!(cfg.channels));
    params.insert("service_numbers".into(), json!(cfg.own_numbers));
    params.insert(
        "carriers".into(),
        json!(cfg.peers.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
    );
}

/// App-to-app calls (non-SIP media sessions to app servers).
fn app_calls(
    p: &Population,
    rng: &mut ChaCha8Rng,
    cfg: &mut Cfg,
    params: &mut Map<String, Value>,
    v6: bool,
) {
    cfg.peers = (0..4u16)
        .map(|i| {
            if v6 {
                sock6(0xa99, 0x10 + i, rng.random_range(50000..59999))
            } else {
                v4(203, 0, 113, 200 + i as u8, rng.random_range(50000..59999))
            }
        })
        .collect();
    cfg.calls_per_hour = p.calls_per_hour.unwrap_or_else(|| uniform(rng, 1.0, 4.0));
    cfg.max_active = 2;
    cfg.session_median = uniform(rng, 120.0, 400.0);
    cfg.srtp_like = rng.random_bool(0.5);
    params.insert("calls_per_hour".into(), json!(cfg.calls_per_hour));
    params.insert("srtp_like".into(), json!(cfg.srtp_like));
}

/// Three servers at consecutive hosts and ports from `first` (IPv6: group and host; IPv4: the
/// address), as game and video services are reached.
fn three_servers(v6: bool, first6: (u16, u16), first4: [u8; 4], port: u16) -> Vec<SocketAddr> {
    (0..3u16)
        .map(|i| {
            if v6 {
                sock6(first6.0, first6.1 + i, port + i)
            } else {
                let [a, b, c, d] = first4;
                v4(a, b, c, d + i as u8, port + i)
            }
        })
        .collect()
}

/// Game sessions: steady small UDP to game servers.
fn gaming(
    p: &Population,
    rng: &mut ChaCha8Rng,
    cfg: &mut Cfg,
    params: &mut Map<String, Value>,
    v6: bool,
) {
    cfg.peers = three_servers(v6, (0x9a, 0x20), [198, 51, 100, 200], 30000);
    cfg.calls_per_hour = p.calls_per_hour.unwrap_or(1.5);
    cfg.max_active = 1;
    cfg.session_median = uniform(rng, 1200.0, 2700.0);
    params.insert("tick_hz".into(), json!(64));
}

/// Video streaming sessions.
fn video(
    p: &Population,
    rng: &mut ChaCha8Rng,
    cfg: &mut Cfg,
    _params: &mut Map<String, Value>,
    v6: bool,
) {
    cfg.peers = three_servers(v6, (0xcd, 0x30), [198, 18, 200, 10], 9000);
    cfg.calls_per_hour = p.calls_per_hour.unwrap_or(1.0);
    cfg.max_active = 1;
    cfg.session_median = uniform(rng, 900.0, 2400.0);
}
