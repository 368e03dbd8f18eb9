//! Property: whatever others send a line — INVITE streams of any shape, rhythm and origin,
//! OPTIONS and REGISTER probes, one-way RTP aimed at it, answers forged by third parties — as
//! long as the line itself only rejects or ignores, its verdict stays `normal` from the first
//! packet to the last. A control case shows the same harness does flag a line that takes the
//! same stream with voice both ways.
//!
//! Packets are real Ethernet/IPv4/UDP frames run through the whole engine (decode, SIP/SDP/RTP,
//! calls, lines, detection).

use etherparse::PacketBuilder;
use proptest::prelude::*;
use simboxd_core::engine::Engine;
use simboxd_core::engine::EngineConfig;
use simboxd_core::model::{LinkType, RawPacket, Timestamp, VerdictLevel};
use std::net::Ipv4Addr;

const LINE: [u8; 4] = [100, 64, 7, 10];
const START_US: i64 = 1_800_000_000_000_000;

#[derive(Clone, Debug)]
enum Reaction {
    /// A final error response from the line (after ringing, when `ring`).
    Reject { code: u16, ring: bool },
    /// No response at all.
    Ignore,
    /// The caller gives up after the line rang (CANCEL, 487).
    CallerCancels,
    /// The line answers (200 with SDP) but sends no voice back: a camera or intercom.
    AnswerSilently,
}

#[derive(Clone, Debug)]
enum Probe {
    Invite {
        number: u64,
        reaction: Reaction,
        /// Voice-shaped RTP sent towards the line's (offered) port for this many seconds.
        one_way_rtp_secs: u8,
        /// A 200 OK for this INVITE sent by a third party (not the line).
        forged_answer: bool,
    },
    Options,
    Register {
        user: u16,
        code: Option<u16>,
    },
}

#[derive(Clone, Debug)]
struct Step {
    gap_ms: u32,
    peer: u8,
    probe: Probe,
}

fn reaction() -> impl Strategy<Value = Reaction> {
    prop_oneof![
        (
            prop::sample::select(vec![403u16, 404, 480, 486, 488, 500, 503, 603]),
            any::<bool>()
        )
            .prop_map(|(code, ring)| Reaction::Reject { code, ring }),
        Just(Reaction::Ignore),
        Just(Reaction::CallerCancels),
    ]
}

fn probe() -> impl Strategy<Value = Probe> {
    prop_oneof![
        6 => (0u64..100_000_000, reaction(), prop_oneof![3 => Just(0u8), 1 => 1u8..40], any::<bool>())
            .prop_map(|(number, reaction, one_way_rtp_secs, forged_answer)| Probe::Invite {
                number,
                reaction,
                one_way_rtp_secs,
                forged_answer,
            }),
        1 => Just(Probe::Options),
        1 => (100u16..1000, prop::option::of(prop::sample::select(vec![401u16, 403, 404])))
            .prop_map(|(user, code)| Probe::Register { user, code }),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            prop_oneof![3 => 0u32..2_000, 2 => 2_000u32..20_000, 1 => 20_000u32..120_000],
            0u8..4,
            probe(),
        )
            .prop_map(|(gap_ms, peer, probe)| Step {
                gap_ms,
                peer,
                probe,
            }),
        20..160,
    )
}

/// Foreign and domestic peers (the simulator's domestic range is not configured here: every
/// peer but the last counts as foreign).
fn peer_ip(k: u8) -> [u8; 4] {
    match k {
        0 => [185, 32, 203, 219],
        1 => [203, 0, 113, 10],
        2 => [45, 134, 26, 7],
        _ => [198, 18, 0, 5],
    }
}

struct Wire {
    frames: Vec<(i64, Vec<u8>)>,
}

impl Wire {
    fn udp(&mut self, t_us: i64, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, p: &[u8]) {
        let mut v = Vec::with_capacity(p.len() + 64);
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut v, p)
            .expect("frame");
        self.frames.push((t_us, v));
    }
}

fn ip(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

fn invite(id: &str, from: [u8; 4], number: u64, rtp_port: u16) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {f}\r\ns=-\r\nc=IN IP4 {f}\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        f = ip(from)
    );
    format!(
        "INVITE sip:+8613{number:09}@{l} SIP/2.0\r\nVia: SIP/2.0/UDP {f}:5060;branch=z9hG4bK{id}\r\nFrom: <sip:4420{number}@{f}>;tag=a{id}\r\nTo: <sip:+8613{number:09}@{l}>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:x@{f}:5060>\r\nMax-Forwards: 70\r\nUser-Agent: friendly-scanner\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len(),
        f = ip(from),
        l = ip(LINE)
    )
}

#[allow(clippy::too_many_arguments)]
fn response(
    code: u16,
    id: &str,
    from: [u8; 4],
    sdp_port: Option<u16>,
    method: &str,
    cseq: u32,
) -> String {
    let (body, ctype) = match sdp_port {
        Some(p) => (
            format!(
                "v=0\r\no=- 2 2 IN IP4 {l}\r\ns=-\r\nc=IN IP4 {l}\r\nt=0 0\r\nm=audio {p} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n",
                l = ip(LINE)
            ),
            "Content-Type: application/sdp\r\n",
        ),
        None => (String::new(), ""),
    };
    format!(
        "SIP/2.0 {code} {reason}\r\nVia: SIP/2.0/UDP {f}:5060;branch=z9hG4bK{id}\r\nFrom: <sip:c@{f}>;tag=a{id}\r\nTo: <sip:d@{l}>{tt}\r\nCall-ID: {id}\r\nCSeq: {cseq} {method}\r\nServer: Home-Phone/1.0\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len(),
        f = ip(from),
        l = ip(LINE),
        tt = ";tag=l1",
        reason = if code < 300 { "OK" } else { "Rejected" }
    )
}

fn rtp(w: &mut Wire, t0: i64, secs: u32, src: ([u8; 4], u16), dst: ([u8; 4], u16), ssrc: u32) {
    for i in 0..secs * 50 {
        let mut p = vec![0u8; 172];
        p[0] = 0x80;
        p[1] = 8;
        p[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        p[4..8].copy_from_slice(&(i * 160).to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        w.udp(t0 + i64::from(i) * 20_000, src.0, src.1, dst.0, dst.1, &p);
    }
}

/// Builds the capture. With `take`, the line answers every INVITE and voice flows both ways
/// (the control case).
fn capture(steps: &[Step], take: bool) -> Vec<(i64, Vec<u8>)> {
    let mut w = Wire { frames: Vec::new() };
    let mut t = START_US;
    for (n, s) in steps.iter().enumerate() {
        t += i64::from(s.gap_ms) * 1000;
        let from = peer_ip(s.peer);
        let id = format!("p{n}x{}", s.peer);
        match &s.probe {
            Probe::Options => {
                let m = format!(
                    "OPTIONS sip:100@{l} SIP/2.0\r\nVia: SIP/2.0/UDP {f}:5070;branch=z9hG4bKo{id}\r\nFrom: <sip:100@{f}>;tag=o{id}\r\nTo: <sip:100@{l}>\r\nCall-ID: {id}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: sipcli/v1.8\r\nContent-Length: 0\r\n\r\n",
                    f = ip(from),
                    l = ip(LINE)
                );
                w.udp(t, from, 5070, LINE, 5060, m.as_bytes());
            }
            Probe::Register { user, code } => {
                let m = format!(
                    "REGISTER sip:{l} SIP/2.0\r\nVia: SIP/2.0/UDP {f}:5070;branch=z9hG4bKr{id}\r\nFrom: <sip:{user}@{l}>;tag=r{id}\r\nTo: <sip:{user}@{l}>\r\nCall-ID: {id}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{f}:5070>\r\nExpires: 3600\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n",
                    f = ip(from),
                    l = ip(LINE)
                );
                w.udp(t, from, 5070, LINE, 5060, m.as_bytes());
                if let Some(c) = code {
                    let r = response(*c, &id, from, None, "REGISTER", 1);
                    w.udp(t + 30_000, LINE, 5060, from, 5070, r.as_bytes());
                }
            }
            Probe::Invite {
                number,
                reaction,
                one_way_rtp_secs,
                forged_answer,
            } => {
                let rtp_port = 30_000 + (n as u16 % 1000) * 2;
                let line_port = 40_000 + (n as u16 % 1000) * 2;
                w.udp(
                    t,
                    from,
                    5060,
                    LINE,
                    5060,
                    invite(&id, from, *number, rtp_port).as_bytes(),
                );
                if take {
                    let r = response(180, &id, from, None, "INVITE", 1);
                    w.udp(t + 100_000, LINE, 5060, from, 5060, r.as_bytes());
                    let r = response(200, &id, from, Some(line_port), "INVITE", 1);
                    w.udp(t + 3_000_000, LINE, 5060, from, 5060, r.as_bytes());
                    rtp(
                        &mut w,
                        t + 3_100_000,
                        20,
                        (from, rtp_port),
                        (LINE, line_port),
                        n as u32,
                    );
                    rtp(
                        &mut w,
                        t + 3_110_000,
                        20,
                        (LINE, line_port),
                        (from, rtp_port),
                        !(n as u32),
                    );
                    let bye = format!(
                        "BYE sip:d@{l} SIP/2.0\r\nVia: SIP/2.0/UDP {f}:5060;branch=z9hG4bKb{id}\r\nFrom: <sip:c@{f}>;tag=a{id}\r\nTo: <sip:d@{l}>;tag=l1\r\nCall-ID: {id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
                        f = ip(from),
                        l = ip(LINE)
                    );
                    w.udp(t + 23_200_000, from, 5060, LINE, 5060, bye.as_bytes());
                    let ok = response(200, &id, from, None, "BYE", 2);
                    w.udp(t + 23_250_000, LINE, 5060, from, 5060, ok.as_bytes());
                    continue;
                }
                if *forged_answer {
                    // A third party "answers" for the line, SDP and all.
                    let r = response(200, &id, from, Some(line_port), "INVITE", 1);
                    w.udp(
                        t + 1_500_000,
                        [185, 32, 203, 220],
                        5060,
                        from,
                        5060,
                        r.as_bytes(),
                    );
                }
                if *one_way_rtp_secs > 0 {
                    rtp(
                        &mut w,
                        t + 200_000,
                        u32::from(*one_way_rtp_secs),
                        (from, rtp_port),
                        (LINE, line_port),
                        n as u32,
                    );
                }
                match reaction {
                    Reaction::Reject { code, ring } => {
                        let mut at = t + 50_000;
                        if *ring {
                            let r = response(180, &id, from, None, "INVITE", 1);
                            w.udp(at, LINE, 5060, from, 5060, r.as_bytes());
                            at += 4_000_000;
                        }
                        let r = response(*code, &id, from, None, "INVITE", 1);
                        w.udp(at, LINE, 5060, from, 5060, r.as_bytes());
                    }
                    Reaction::Ignore => {}
                    Reaction::AnswerSilently => {
                        let r = response(200, &id, from, Some(line_port), "INVITE", 1);
                        w.udp(t + 1_000_000, LINE, 5060, from, 5060, r.as_bytes());
                    }
                    Reaction::CallerCancels => {
                        let r = response(180, &id, from, None, "INVITE", 1);
                        w.udp(t + 50_000, LINE, 5060, from, 5060, r.as_bytes());
                        let c = format!(
                            "CANCEL sip:+8613{number:09}@{l} SIP/2.0\r\nVia: SIP/2.0/UDP {f}:5060;branch=z9hG4bK{id}\r\nFrom: <sip:4420{number}@{f}>;tag=a{id}\r\nTo: <sip:+8613{number:09}@{l}>\r\nCall-ID: {id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
                            f = ip(from),
                            l = ip(LINE)
                        );
                        w.udp(t + 6_000_000, from, 5060, LINE, 5060, c.as_bytes());
                        let r = response(487, &id, from, None, "INVITE", 1);
                        w.udp(t + 6_050_000, LINE, 5060, from, 5060, r.as_bytes());
                    }
                }
            }
        }
    }
    w.frames.sort_by_key(|(t, _)| *t);
    w.frames
}

/// Runs the capture through the engine; returns the worst level the line ever had.
fn worst_level(frames: &[(i64, Vec<u8>)]) -> (VerdictLevel, String) {
    let mut cfg = EngineConfig::default();
    cfg.network.home = vec!["100.64.0.0/10".parse().unwrap()];
    cfg.network.domestic = vec!["198.18.0.0/15".parse().unwrap()];
    let mut e = Engine::new(&cfg);
    let mut worst = (VerdictLevel::Normal, String::new());
    let note = |changes: Vec<simboxd_core::model::LineVerdict>,
                worst: &mut (VerdictLevel, String)| {
        for v in changes {
            if v.line == std::net::IpAddr::from(LINE) && v.verdict > worst.0 {
                *worst = (v.verdict, format!("{:?}", v.reasons));
            }
        }
    };
    for (t, f) in frames {
        e.process(&RawPacket {
            ts: Timestamp::from_micros(*t),
            link: LinkType::ETHERNET,
            data: f,
            wire_len: f.len() as u32,
        });
        let _ = e.drain_events().count();
        let ch = e.take_verdict_changes();
        note(ch, &mut worst);
    }
    e.finish();
    let ch = e.take_verdict_changes();
    note(ch, &mut worst);
    for v in e.lines().verdicts() {
        if v.line == std::net::IpAddr::from(LINE) && v.verdict > worst.0 {
            worst = (v.verdict, format!("{:?}", v.reasons));
        }
    }
    worst
}

/// A gateway-shaped stream: four at a time, back to back, distinct mobile numbers, from abroad.
fn gateway_shaped(n: usize) -> Vec<Step> {
    (0..n)
        .map(|i| Step {
            gap_ms: if i % 4 == 0 { 24_000 } else { 300 },
            peer: 0,
            probe: Probe::Invite {
                number: 10_000_000 + (i as u64) * 7919,
                reaction: Reaction::Reject {
                    code: 486,
                    ring: false,
                },
                one_way_rtp_secs: 0,
                forged_answer: false,
            },
        })
        .collect()
}

#[test]
fn control_the_same_stream_taken_with_voice_both_ways_is_a_gateway() {
    let (level, why) = worst_level(&capture(&gateway_shaped(160), true));
    assert_eq!(level, VerdictLevel::Gateway, "{why}");
}

/// A device that answers every INVITE but relays nothing (a camera, an intercom), while the
/// caller streams voice at it: answering alone is not a gateway's participation.
#[test]
fn a_line_that_answers_without_sending_voice_stays_normal() {
    let steps: Vec<Step> = gateway_shaped(160)
        .into_iter()
        .map(|mut s| {
            if let Probe::Invite {
                reaction,
                one_way_rtp_secs,
                ..
            } = &mut s.probe
            {
                *reaction = Reaction::AnswerSilently;
                *one_way_rtp_secs = 20;
            }
            s
        })
        .collect();
    let (level, why) = worst_level(&capture(&steps, false));
    assert_eq!(level, VerdictLevel::Normal, "{why}");
}

#[test]
fn a_gateway_shaped_stream_the_line_rejects_leaves_it_normal() {
    let (level, why) = worst_level(&capture(&gateway_shaped(160), false));
    assert_eq!(level, VerdictLevel::Normal, "{why}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn whatever_others_send_a_line_that_rejects_or_ignores_stays_normal(steps in steps()) {
        let (level, why) = worst_level(&capture(&steps, false));
        prop_assert_eq!(level, VerdictLevel::Normal, "{}", why);
    }
}
