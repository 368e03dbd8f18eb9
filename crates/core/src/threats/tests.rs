//! Tests of the threat table, through its public API.

use super::*;
use crate::config::NetworkConfig;
use crate::model::{
    CallRecord, Direction, Event, Participation, ProbeMethod, ProbeRecord, RegistrationRecord,
};
use crate::model::{Outcome, RegOutcome, Transport};
use std::net::SocketAddr;

const SCANNER: &str = "185.32.203.219:5070";
const SOFTSWITCH: &str = "203.0.113.10:5060";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
fn line(i: u32) -> IpAddr {
    IpAddr::from([10, 0, (i >> 8) as u8, i as u8])
}
fn at(secs: f64) -> Timestamp {
    Timestamp::from_secs_f64(1_700_000_000.0 + secs)
}

fn probe(peer: &str, to: IpAddr, method: ProbeMethod, user: &str, t: f64) -> Event {
    Event::Probe(Box::new(ProbeRecord {
        peer: sa(peer),
        line: to,
        method,
        request_user: Some(user.to_string()),
        to_user: Some(user.to_string()),
        user_agent: Some("friendly-scanner".into()),
        time: at(t),
        status: None,
    }))
}

fn answer(peer: &str, from: IpAddr, code: u16, t: f64) -> Event {
    Event::Probe(Box::new(ProbeRecord {
        peer: sa(peer),
        line: from,
        method: ProbeMethod::Options,
        request_user: None,
        to_user: None,
        user_agent: None,
        time: at(t),
        status: Some(code),
    }))
}

fn call(
    peer: &str,
    to: IpAddr,
    dir: Direction,
    number: &str,
    t: f64,
    part: Participation,
) -> Event {
    Event::CallEnded(Box::new(CallRecord {
        call_id: format!("{peer}-{to}-{number}-{t}"),
        line: Some(to),
        direction: dir,
        peer: Some(sa(peer)),
        from: Some("100".into()),
        to: Some(number.into()),
        request_uri: Some(number.into()),
        user_agent: None,
        server: None,
        allow: None,
        sdp_origin: None,
        sdp_session: None,
        transport: Transport::Udp,
        codec: None,
        codecs: Vec::new(),
        ptime: None,
        start: at(t),
        progress: None,
        answer: None,
        end: Some(at(t + 5.0)),
        outcome: Outcome::Failed,
        status_code: Some(403),
        private_contact: false,
        rtp: Vec::new(),
        participation: part,
    }))
}

/// An INVITE from outside as the calls stage reports it: the probe, then the record.
fn invite(t: &mut ThreatTable, peer: &str, to: IpAddr, number: &str, s: f64, p: Participation) {
    t.on_event(&probe(peer, to, ProbeMethod::Invite, number, s));
    t.on_event(&call(peer, to, Direction::Inbound, number, s, p));
}

fn table() -> ThreatTable {
    ThreatTable::new(&ThreatsConfig::default(), &NetworkConfig::default())
}

fn kinds(t: &ThreatTable) -> Vec<(IpAddr, ThreatKind)> {
    t.threats().iter().map(|x| (x.peer, x.kind)).collect()
}

fn find(t: &ThreatTable, kind: ThreatKind) -> Threat {
    t.threats()
        .into_iter()
        .find(|x| x.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} in {:?}", kinds(t)))
}

#[test]
fn threats_options_sweep_is_a_scan_with_what_the_lines_answered() {
    let mut t = table();
    for i in 0..212 {
        t.on_event(&probe(
            SCANNER,
            line(i),
            ProbeMethod::Options,
            "100",
            f64::from(i),
        ));
        if i < 3 {
            t.on_event(&answer(SCANNER, line(i), 200, f64::from(i) + 0.01));
        } else if i < 15 {
            t.on_event(&answer(SCANNER, line(i), 404, f64::from(i) + 0.01));
        }
    }
    let s = find(&t, ThreatKind::Scan);
    assert_eq!(s.severity, ThreatSeverity::Low);
    assert_eq!(s.requests, 212);
    // Beyond the 128 kept targets the total is estimated (linear counting, a few % off).
    assert!((200..=225).contains(&s.lines_total), "{}", s.lines_total);
    assert_eq!(s.lines.len(), 128);
    assert_eq!(s.answers.get("200"), Some(&3));
    assert_eq!(s.answers.get("404"), Some(&12));
    assert_eq!(s.answers.get("none"), Some(&197));
    assert_eq!(s.user_agents, vec!["friendly-scanner".to_string()]);
    let d = &s.reasons[0].detail;
    assert!(d.contains("OPTIONS x 212 to"), "{d}");
    assert!(d.contains("User-Agent friendly-scanner"), "{d}");
    assert!(d.contains("none x 197, 404 x 12, 200 x 3"), "{d}");
    // One user name at each line and one packet per line: nothing else.
    assert_eq!(kinds(&t), vec![(sa(SCANNER).ip(), ThreatKind::Scan)]);
    assert_eq!(t.take_changes().len(), 1);
}

#[test]
fn threats_register_guessing_at_one_line_is_enumeration_not_the_lines_registration() {
    let mut t = table();
    for u in 100..140 {
        let r = RegistrationRecord {
            account: format!("{u}@10.0.0.9"),
            registrar: sa("10.0.0.9:5060"),
            source: sa(SCANNER),
            line: Some(line(9)),
            contact: None,
            expires: Some(3600),
            outcome: RegOutcome::Failed,
            status_code: Some(404),
            user_agent: Some("sipcli/v1.8".into()),
            time: at(f64::from(u)),
        };
        t.on_event(&Event::Registration(Box::new(r)));
    }
    // The line's own registration to its provider is no probe.
    let own = RegistrationRecord {
        account: "line9@voip.example".into(),
        registrar: sa("198.51.100.1:5060"),
        source: sa("10.0.0.9:5060"),
        line: Some(line(9)),
        contact: None,
        expires: Some(600),
        outcome: RegOutcome::Registered,
        status_code: Some(200),
        user_agent: None,
        time: at(1.0),
    };
    t.on_event(&Event::Registration(Box::new(own)));
    let e = find(&t, ThreatKind::Enumeration);
    assert_eq!(e.requests, 40);
    assert_eq!(e.lines_total, 1);
    assert_eq!(e.lines[0].answers.get("404"), Some(&40));
    assert_eq!(e.user_agents, vec!["sipcli/v1.8".to_string()]);
    assert!(e.reasons[0]
        .detail
        .starts_with("40 user names tried at 10.0.0.9"));
    assert_eq!(kinds(&t).len(), 1, "{:?}", kinds(&t));
}

#[test]
fn threats_premium_invites_rejected_are_a_toll_fraud_attempt_and_a_camera_only_a_target() {
    let mut t = table();
    let numbers = ["011972599123456", "9011972599123456", "00972599123456"];
    for i in 0..6u32 {
        for (k, n) in numbers.iter().enumerate() {
            let s = f64::from(i * 10) + k as f64;
            invite(&mut t, SCANNER, line(i), n, s, Participation::Rejected);
        }
    }
    // A camera answers but sends no voice back: a target, not a finding.
    for k in 0..24 {
        let n = numbers[k % 2];
        invite(
            &mut t,
            SCANNER,
            line(50),
            n,
            100.0 + k as f64,
            Participation::AnsweredOneWay,
        );
    }
    let f = find(&t, ThreatKind::TollFraudAttempt);
    assert_eq!(f.severity, ThreatSeverity::Medium);
    assert_eq!(f.lines_total, 7);
    let cam = f.lines.iter().find(|l| l.line == line(50)).unwrap();
    assert_eq!(cam.answers.get("answered_one_way"), Some(&24));
    assert_eq!(f.answers.get("rejected"), Some(&18));
    assert_eq!(f.numbers.len(), 3);
    // Prefix variants of one number are one number.
    assert!(
        f.reasons[0]
            .detail
            .contains("42 INVITEs to international/premium numbers (1 distinct: 011972599123456, 9011972599123456, 00972599123456)"),
        "{}",
        f.reasons[0].detail
    );
    assert!(t
        .threats()
        .iter()
        .all(|x| x.kind != ThreatKind::CompromisedPbx));
    // Numbers dialled are neither user names (enumeration) nor a gateway feed (framing).
    assert_eq!(kinds(&t).len(), 1, "{:?}", kinds(&t));
}

#[test]
fn threats_a_line_relaying_toll_fraud_is_a_compromised_pbx() {
    let mut t = table();
    for i in 0..8u32 {
        invite(
            &mut t,
            SCANNER,
            line(i),
            "011972599123456",
            f64::from(i),
            Participation::Rejected,
        );
    }
    invite(
        &mut t,
        SCANNER,
        line(77),
        "011972599123456",
        20.0,
        Participation::TwoWayVoice,
    );
    let p = find(&t, ThreatKind::CompromisedPbx);
    assert_eq!(p.severity, ThreatSeverity::High);
    assert_eq!(p.peer, sa(SCANNER).ip());
    assert_eq!(p.lines.len(), 1);
    assert_eq!(p.lines[0].line, line(77));
    assert!(p.reasons[0]
        .detail
        .contains("relayed 1 international/premium calls"));
    assert!(p.reasons[0].detail.contains("not a SIM box"));
    let changes = t.take_changes();
    assert!(changes.iter().any(|c| c.kind == ThreatKind::CompromisedPbx));
}

#[test]
fn threats_a_pbx_calling_out_to_the_number_it_was_just_sent_is_compromised() {
    let mut t = table();
    let pbx = line(5);
    // Single target that takes every call: not enough for an attempt by itself...
    invite(
        &mut t,
        SCANNER,
        pbx,
        "00972599123456",
        0.0,
        Participation::TwoWayVoice,
    );
    assert!(t.threats().is_empty());
    // ... but the PBX places the same number out through its trunk seconds later.
    t.on_event(&call(
        "198.51.100.1:5060",
        pbx,
        Direction::Outbound,
        "00972599123456",
        3.0,
        Participation::Placed,
    ));
    let p = find(&t, ThreatKind::CompromisedPbx);
    assert_eq!(p.lines[0].line, pbx);
    assert!(
        p.reasons[0].detail.contains("placed 1 calls out"),
        "{}",
        p.reasons[0].detail
    );
    // Too late: no finding.
    let mut t = table();
    invite(
        &mut t,
        SCANNER,
        pbx,
        "00972599123456",
        0.0,
        Participation::TwoWayVoice,
    );
    t.on_event(&call(
        "198.51.100.1:5060",
        pbx,
        Direction::Outbound,
        "00972599123456",
        500.0,
        Participation::Placed,
    ));
    assert!(t.threats().is_empty());
}

#[test]
fn threats_request_rate_is_a_flood() {
    let mut t = table();
    for i in 0..800 {
        t.on_event(&probe(
            SCANNER,
            line(1),
            ProbeMethod::Options,
            "1",
            f64::from(i) * 0.01,
        ));
    }
    let f = find(&t, ThreatKind::Flood);
    assert_eq!(f.requests, 800);
    assert!(
        f.reasons[0].detail.starts_with("800 requests within 10 s"),
        "{}",
        f.reasons[0].detail
    );
    // Slow and steady is no flood.
    let mut t = table();
    for i in 0..800 {
        t.on_event(&probe(
            SCANNER,
            line(1),
            ProbeMethod::Options,
            "1",
            f64::from(i),
        ));
    }
    assert!(t.threats().is_empty(), "{:?}", kinds(&t));
}

#[test]
fn threats_a_short_burst_at_a_floods_rate_is_a_flood() {
    // 494 INVITEs in 6 s (82/s) from one peer: short of 500 in a 10 s window, a flood's rate
    // over 2 s bursts.
    let mut t = table();
    for i in 0..494u32 {
        let n = format!("1380013{:04}", i);
        t.on_event(&probe(
            SCANNER,
            line(1),
            ProbeMethod::Invite,
            &n,
            f64::from(i) * 6.0 / 494.0,
        ));
    }
    let f = find(&t, ThreatKind::Flood);
    assert_eq!(f.requests, 494);
    let d = &f.reasons[0].detail;
    assert!(d.contains("requests within 2 s (peak 8"), "{d}");
    assert!(f.reasons[0].value > 50.0, "{}", f.reasons[0].value);
    // The same burst from forged sources is a flood at the line.
    let mut t = table();
    for i in 0..494u32 {
        let n = format!("1380013{:04}", i);
        invite(
            &mut t,
            &forged(i, 200),
            line(2),
            &n,
            f64::from(i) * 6.0 / 494.0,
            Participation::Ignored,
        );
    }
    let all = t.threats();
    assert_eq!(all.len(), 1, "{:?}", kinds(&t));
    assert_eq!(all[0].kind, ThreatKind::Flood);
    assert_eq!(all[0].lines[0].line, line(2));
    let d = &all[0].reasons[0].detail;
    assert!(d.contains("494 in all over 6 s (INVITE x 494)"), "{d}");
    // Sixty in 1.5 s from forged sources: a burst at the many-source rate.
    let mut t = table();
    for i in 0..60u32 {
        invite(
            &mut t,
            &forged(i, 200),
            line(2),
            &format!("1380013{:04}", i),
            f64::from(i) * 1.5 / 60.0,
            Participation::Ignored,
        );
    }
    let f = find(&t, ThreatKind::Flood);
    let d = &f.reasons[0].detail;
    assert!(d.contains("source addresses within 2 s"), "{d}");
    assert!(d.contains("60 in all"), "{d}");
    // A fast search (30 user names a second for a minute) is below a flood's rate over any
    // burst: an enumeration, not a flood.
    let mut t = table();
    for i in 0..1800u32 {
        t.on_event(&probe(
            SCANNER,
            line(3),
            ProbeMethod::Options,
            &format!("{}", 100 + i),
            f64::from(i) / 30.0,
        ));
    }
    let k: Vec<ThreatKind> = kinds(&t).into_iter().map(|(_, k)| k).collect();
    assert_eq!(k, vec![ThreatKind::Enumeration]);
}

#[test]
fn threats_a_search_during_a_forged_flood_is_not_one_of_its_sources() {
    // A user-name search at two lines, one of them hit meanwhile by a flood from forged
    // sources: the searcher is an enumeration of its own (found at the other line; the
    // flooded line's names do not count), not named among the flood's sources.
    let mut t = table();
    for i in 0..1200u32 {
        let ts = 100.0 + f64::from(i) / 150.0;
        if i % 20 == 0 {
            for l in [line(5), line(6)] {
                t.on_event(&probe(
                    SCANNER,
                    l,
                    ProbeMethod::Options,
                    &format!("{}", 100 + i),
                    ts,
                ));
            }
        }
        invite(
            &mut t,
            &forged(i, 230),
            line(5),
            &format!("1380013{:04}", i),
            ts,
            Participation::Ignored,
        );
    }
    let scanner = sa(SCANNER).ip();
    let flood = find(&t, ThreatKind::Flood);
    assert!(!flood.sources.is_empty());
    assert!(!flood.sources.contains(&scanner), "{:?}", flood.sources);
    assert_ne!(flood.peer, scanner);
    assert_eq!(find(&t, ThreatKind::Enumeration).peer, scanner);
}

#[test]
fn threats_gateway_shaped_invites_a_line_rejects_are_framing_and_a_relayed_feed_is_not() {
    let mut t = table();
    let framer = "203.0.113.66:5060";
    for i in 0..40u32 {
        let n = format!("1380013{:04}", i);
        let p = if i % 3 == 0 {
            Participation::Ignored
        } else {
            Participation::Rejected
        };
        invite(&mut t, framer, line(3), &n, f64::from(i) * 20.0, p);
    }
    let f = find(&t, ThreatKind::Framing);
    assert_eq!(f.severity, ThreatSeverity::Medium);
    assert!(f.reasons[0]
        .detail
        .starts_with("40 INVITEs to 40 distinct numbers at 1 lines"));
    assert!(f.reasons[0].detail.contains("the lines relayed 0"));
    assert_eq!(kinds(&t).len(), 1, "{:?}", kinds(&t));
    // A softswitch feeding a gateway that relays a third of its calls (numbers written
    // `+86...`/`0086...`): the line's business, no threat at all.
    let mut t = table();
    for i in 0..60u32 {
        let n = if i % 2 == 0 {
            format!("+86138{:08}", i)
        } else {
            format!("0086139{:08}", i)
        };
        let p = if i % 3 == 0 {
            Participation::TwoWayVoice
        } else {
            Participation::Ignored
        };
        invite(&mut t, framer, line(4), &n, f64::from(i) * 20.0, p);
    }
    assert!(t.threats().is_empty(), "{:?}", kinds(&t));
}

#[test]
fn threats_home_calling_codes_make_home_numbers_domestic() {
    let cfg = ThreatsConfig {
        home_calling_codes: vec!["972".into()],
        ..ThreatsConfig::default()
    };
    let mut t = ThreatTable::new(&cfg, &NetworkConfig::default());
    for i in 0..10u32 {
        invite(
            &mut t,
            SCANNER,
            line(i),
            "00972599123456",
            f64::from(i),
            Participation::Rejected,
        );
    }
    assert!(t.threats().is_empty());
    // Distinct foreign numbers count once the home codes are known.
    let mut t = ThreatTable::new(&cfg, &NetworkConfig::default());
    for i in 0..10u32 {
        let n = format!("0044207946{:04}", i);
        invite(
            &mut t,
            SCANNER,
            line(i),
            &n,
            f64::from(i),
            Participation::Rejected,
        );
    }
    assert_eq!(
        kinds(&t),
        vec![(sa(SCANNER).ip(), ThreatKind::TollFraudAttempt)]
    );
}

#[test]
fn threats_flood_from_random_sources_stays_within_the_caps() {
    let cfg = ThreatsConfig {
        max_peers: 500,
        ..ThreatsConfig::default()
    };
    let mut t = ThreatTable::new(&cfg, &NetworkConfig::default());
    // A scanner found early is kept while 150 k one-shot senders come and go.
    for i in 0..20 {
        t.on_event(&probe(
            SCANNER,
            line(i),
            ProbeMethod::Options,
            "100",
            f64::from(i),
        ));
    }
    for i in 0..150_000u32 {
        let peer = format!(
            "{}.{}.{}.{}:5060",
            150 + (i >> 16) % 50,
            (i >> 8) & 255,
            i & 255,
            7
        );
        let s = 100.0 + f64::from(i) * 0.0001;
        invite(
            &mut t,
            &peer,
            line(i % 4000),
            &format!("138{i:08}"),
            s,
            Participation::Ignored,
        );
        if i % 10_000 == 0 {
            t.expire(at(s));
        }
    }
    let sizes = t.table_sizes();
    assert!(sizes[0].1 <= 500, "{sizes:?}");
    assert!(
        t.evictions().get("threat_peers") >= 149_000,
        "{:?}",
        t.evictions()
    );
    assert_eq!(kinds(&t), vec![(sa(SCANNER).ip(), ThreatKind::Scan)]);
}

#[test]
fn threats_idle_peers_leave_and_their_findings_stay() {
    let mut t = table();
    for i in 0..12 {
        t.on_event(&probe(
            SCANNER,
            line(i),
            ProbeMethod::Options,
            "100",
            f64::from(i),
        ));
    }
    t.expire(at(1_000_000.0));
    assert_eq!(t.table_sizes()[0].1, 0);
    assert_eq!(kinds(&t), vec![(sa(SCANNER).ip(), ThreatKind::Scan)]);
}

#[test]
fn threats_of_several_engines_merge_per_peer_and_kind() {
    // Two workers each saw half of a sweep.
    let mut a = table();
    let mut b = table();
    for i in 0..24 {
        let t = if i % 2 == 0 { &mut a } else { &mut b };
        t.on_event(&probe(
            SCANNER,
            line(i),
            ProbeMethod::Options,
            "100",
            f64::from(i),
        ));
    }
    let merged = merge(a.threats().into_iter().chain(b.threats()).collect());
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].lines_total, 24);
    assert_eq!(merged[0].requests, 24);
    assert_eq!(merged[0].lines.len(), 24);
    assert_eq!(merged[0].first_seen, at(0.0));
    assert_eq!(merged[0].last_seen, at(23.0));
    assert_eq!(merged[0].answers.get("none"), Some(&24));
}

#[test]
fn threats_config_is_validated() {
    assert_eq!(ThreatsConfig::default().validate(), Ok(()));
    let bad = ThreatsConfig {
        max_peers: 0,
        ..ThreatsConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().key, "max_peers");
    let bad = ThreatsConfig {
        toll_prefixes: vec!["0x".into()],
        ..ThreatsConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().key, "toll_prefixes");
    let bad = ThreatsConfig {
        framing_max_relayed_share: 1.5,
        ..ThreatsConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().key, "framing_max_relayed_share");
    let parsed: ThreatsConfig = toml::from_str("scan_min_lines = 5").unwrap();
    assert_eq!(parsed.scan_min_lines, 5);
    assert!(toml::from_str::<ThreatsConfig>("bogus = 1").is_err());
}

/// A forged source address per request, from a pool of `pool` addresses.
fn forged(i: u32, pool: u32) -> String {
    let h = i.wrapping_mul(2_654_435_761) % pool;
    format!("198.51.{}.{}:{}", 100 + h / 250, h % 250, 32768 + i % 20000)
}

#[test]
fn threats_flood_from_forged_sources_is_one_finding_at_the_line() {
    let mut t = table();
    // 150 INVITEs/s for 8 s at one line, every one from a forged source: no source comes near
    // the per-peer rate, the line's rate is a flood.
    for i in 0..1200u32 {
        let src = forged(i, 230);
        let n = format!("1380013{:04}", i);
        invite(
            &mut t,
            &src,
            line(5),
            &n,
            100.0 + f64::from(i) / 150.0,
            Participation::Ignored,
        );
    }
    let all = t.threats();
    assert_eq!(all.len(), 1, "{:?}", kinds(&t));
    let f = &all[0];
    assert_eq!(f.kind, ThreatKind::Flood);
    assert_eq!(f.lines.len(), 1);
    assert_eq!(f.lines[0].line, line(5));
    assert!(f.requests >= 1000, "{}", f.requests);
    assert!(!f.sources.is_empty() && f.sources.contains(&f.peer));
    assert!(f.sources_total >= 150, "{}", f.sources_total);
    assert!(
        f.reasons[0].detail.contains("source addresses"),
        "{}",
        f.reasons[0].detail
    );
    // One change for the finding (not one per forged source).
    let ch = t.take_changes();
    assert_eq!(ch.len(), 1, "{ch:?}");
    // Busy but not a flood: 90 requests in 10 s from 50 sources; 400 in 10 s from 12.
    for (n, pool) in [(90u32, 50u32), (400, 12)] {
        let mut t = table();
        for i in 0..n {
            let src = forged(i, pool);
            t.on_event(&probe(
                &src,
                line(6),
                ProbeMethod::Options,
                "1",
                f64::from(i) * 10.0 / f64::from(n),
            ));
        }
        assert!(t.threats().is_empty(), "{n}/{pool}: {:?}", kinds(&t));
    }
    // One source at the flood rate is a flood of that peer, not one "from many sources".
    let mut t = table();
    for i in 0..800 {
        t.on_event(&probe(
            SCANNER,
            line(7),
            ProbeMethod::Options,
            "1",
            f64::from(i) * 0.01,
        ));
    }
    let f = find(&t, ThreatKind::Flood);
    assert_eq!((f.peer, f.sources_total), (sa(SCANNER).ip(), 0));
    assert_eq!(t.threats().len(), 1);
}

#[test]
fn threats_a_forged_flood_over_a_range_is_a_flood_at_each_line() {
    // 280 INVITEs/s for 6 s from forged sources, spread over eight lines: 35/s at each line,
    // far below one peer's flood rate, but no legitimate traffic reaches a line from that many
    // addresses at that rate.
    let mut t = table();
    for i in 0..1680u32 {
        invite(
            &mut t,
            &forged(i, 230),
            line(10 + i % 8),
            &format!("1380013{:04}", i),
            50.0 + f64::from(i) / 280.0,
            Participation::Ignored,
        );
    }
    let all = t.threats();
    assert_eq!(all.len(), 8, "{:?}", kinds(&t));
    for f in &all {
        assert_eq!(f.kind, ThreatKind::Flood);
        assert_eq!(f.lines.len(), 1);
        assert!(f.requests >= 150, "{}", f.requests);
        let d = &f.reasons[0].detail;
        assert!(d.contains("source addresses within"), "{d}");
    }
}

#[test]
fn threats_framing_split_over_two_lines_is_one_peers_stream() {
    let mut t = table();
    let framer = "203.0.113.66:5060";
    // Four channels over two lines, 50 s per attempt (one-way RTP keeps them open): six
    // attempts per line in five minutes, below the per-line thresholds.
    for i in 0..12u32 {
        let n = format!("1380013{:04}", i);
        let to = line(10 + i % 2);
        invite(
            &mut t,
            framer,
            to,
            &n,
            f64::from(i / 2) * 50.0,
            Participation::Rejected,
        );
    }
    let f = find(&t, ThreatKind::Framing);
    assert_eq!(f.lines_total, 2);
    assert!(
        f.reasons[0]
            .detail
            .starts_with("12 INVITEs to 12 distinct numbers at 2 lines"),
        "{}",
        f.reasons[0].detail
    );
    // A provider's calls to two households, each called on its own number and not answered
    // for a while: no stream of distinct numbers, no threat.
    let mut t = table();
    for i in 0..12u32 {
        let to = line(20 + i % 2);
        let n = format!("3021000{:04}", 20 + i % 2);
        invite(
            &mut t,
            framer,
            to,
            &n,
            f64::from(i) * 50.0,
            Participation::Ignored,
        );
    }
    assert!(t.threats().is_empty(), "{:?}", kinds(&t));
}

#[test]
fn threats_episodes_close_after_the_quiet_period_and_reopen() {
    let cfg = ThreatsConfig {
        clear_after_secs: 600,
        ..ThreatsConfig::default()
    };
    let mut t = ThreatTable::new(&cfg, &NetworkConfig::default());
    for i in 0..12 {
        t.on_event(&probe(
            SCANNER,
            line(i),
            ProbeMethod::Options,
            "100",
            f64::from(i),
        ));
    }
    let raised = t.take_changes();
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].ended, None);
    // Not quiet long enough yet.
    t.expire(at(11.0 + 590.0));
    assert!(t.take_changes().is_empty());
    t.expire(at(11.0 + 605.0));
    let closed = t.take_changes();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(
        (closed[0].kind, closed[0].ended),
        (ThreatKind::Scan, Some(at(616.0)))
    );
    assert_eq!(t.threats()[0].ended, Some(at(616.0)));
    // Closed once only.
    t.expire(at(2000.0));
    assert!(t.take_changes().is_empty());
    // At it again: a new episode.
    t.on_event(&probe(
        SCANNER,
        line(1),
        ProbeMethod::Options,
        "100",
        2100.0,
    ));
    let again = t.take_changes();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].kind, again[0].ended), (ThreatKind::Scan, None));
    // A flood from many sources closes too.
    for i in 0..1200u32 {
        t.on_event(&probe(
            &forged(i, 230),
            line(40),
            ProbeMethod::Invite,
            "1",
            3000.0 + f64::from(i) / 150.0,
        ));
    }
    assert_eq!(t.take_changes().len(), 1);
    t.expire(at(3000.0 + 8.0 + 601.0));
    let closed: Vec<Threat> = t.take_changes();
    assert!(
        closed
            .iter()
            .any(|c| c.kind == ThreatKind::Flood && c.sources_total > 0 && c.ended.is_some()),
        "{closed:?}"
    );
}

#[test]
fn threats_sketches_made_at_overflow_hold_every_line_as_if_fed_from_the_start() {
    // The per-peer sketches are made only when a line cannot be kept as a target; made from
    // the kept targets then, they must hold what feeding them every request would have.
    let mut t = table();
    let (mut all, mut probed) = (peer::Sketch::new(), peer::Sketch::new());
    for i in 0..300u32 {
        let l = line(i);
        // Every third line is probed (OPTIONS), the rest only invited.
        let method = if i % 3 == 0 {
            ProbeMethod::Options
        } else {
            ProbeMethod::Invite
        };
        t.on_event(&probe(SCANNER, l, method, "100", f64::from(i)));
        let h = t.hasher.hash_one(l);
        all.insert(h);
        if method == ProbeMethod::Options {
            probed.insert(h);
        }
        let p = t.peers.get(&sa(SCANNER).ip()).unwrap();
        let kept = i < ThreatsConfig::default().max_lines_per_peer as u32;
        assert_eq!(p.sketches.is_none(), kept, "line {i}");
        if let Some(s) = &p.sketches {
            assert_eq!(s.lines.0, all.0, "line {i}");
            assert_eq!(s.probed.0, probed.0, "line {i}");
        }
        // Targets beyond a few are found through the index, and the same ones as by a scan.
        assert_eq!(
            p.target_index(l),
            p.targets.iter().position(|x| x.line == l)
        );
    }
    let p = t.peers.get(&sa(SCANNER).ip()).unwrap();
    assert!(p.overflowed());
    assert_eq!(p.targets.len(), 128);
    assert!(
        (280..=320).contains(&p.lines_total()),
        "{}",
        p.lines_total()
    );
    assert!(
        (90..=110).contains(&p.probed_total()),
        "{}",
        p.probed_total()
    );
}

/// An answered INVITE from outside, as the calls stage reports it: the probe, the answer at
/// `s + 2`, and the record when it ends `talk` seconds later (no media on the tap).
fn answered_call(t: &mut ThreatTable, peer: &str, to: IpAddr, number: &str, s: f64, talk: f64) {
    t.on_event(&probe(peer, to, ProbeMethod::Invite, number, s));
    t.on_event(&Event::CallAnswered {
        call_id: format!("{peer}-{to}-{number}-{s}"),
        line: Some(to),
        direction: Direction::Inbound,
        peer: Some(sa(peer)),
        called: Some(number.to_string()),
        invited: at(s),
        ts: at(s + 2.0),
    });
    if let Event::CallEnded(mut r) = call(
        peer,
        to,
        Direction::Inbound,
        number,
        s,
        Participation::AnsweredNoMedia,
    ) {
        r.answer = Some(at(s + 2.0));
        r.end = Some(at(s + 2.0 + talk));
        r.outcome = Outcome::Answered;
        r.status_code = Some(200);
        t.on_event(&Event::CallEnded(r));
    }
}

#[test]
fn threats_a_gateway_feed_on_a_sip_only_tap_is_never_framing() {
    // A softswitch's feed into a gateway, seen without media: 60 % of the attempts fail
    // within seconds (busy, no answer), the rest are answered and end two and a half minutes
    // later.
    // Failed attempts end first; the answered calls still running are the line's share.
    let mut t = table();
    let mut events: Vec<(f64, u32)> = Vec::new();
    for i in 0..120u32 {
        events.push((f64::from(i) * 6.0, i));
    }
    // Feed in time order: answers (begin) interleaved with ends, as the engine would.
    let mut pending: Vec<(f64, u32)> = Vec::new();
    for (s, i) in events {
        let n = format!("8613{:09}", 100_000 + i * 7);
        if i % 5 < 2 {
            // answered: the probe and answer now, the record when it ends
            t.on_event(&probe(SOFTSWITCH, line(3), ProbeMethod::Invite, &n, s));
            t.on_event(&Event::CallAnswered {
                call_id: format!("{SOFTSWITCH}-{}-{n}-{s}", line(3)),
                line: Some(line(3)),
                direction: Direction::Inbound,
                peer: Some(sa(SOFTSWITCH)),
                called: Some(n.clone()),
                invited: at(s),
                ts: at(s + 2.0),
            });
            pending.push((s, i));
        } else {
            invite(&mut t, SOFTSWITCH, line(3), &n, s, Participation::Rejected);
        }
        // Answered calls end 150 s after they began.
        while let Some(&(ps, pi)) = pending.first() {
            if ps + 150.0 > s {
                break;
            }
            pending.remove(0);
            let pn = format!("8613{:09}", 100_000 + pi * 7);
            if let Event::CallEnded(mut r) = call(
                SOFTSWITCH,
                line(3),
                Direction::Inbound,
                &pn,
                ps,
                Participation::AnsweredNoMedia,
            ) {
                r.answer = Some(at(ps + 2.0));
                r.end = Some(at(ps + 150.0));
                r.outcome = Outcome::Answered;
                t.on_event(&Event::CallEnded(r));
            }
        }
    }
    let framing: Vec<Threat> = t
        .take_changes()
        .into_iter()
        .filter(|x| x.kind == ThreatKind::Framing)
        .collect();
    assert!(framing.is_empty(), "{framing:?}");
    assert!(kinds(&t).is_empty(), "{:?}", kinds(&t));
}

#[test]
fn threats_framing_is_withdrawn_when_the_line_takes_part_in_the_stream() {
    // Twenty INVITEs to distinct numbers over two minutes, all rejected: framing. Then the line
    // answers the next thirty (calls that last): the stream is its business after all.
    let mut t = table();
    for i in 0..20u32 {
        let n = format!("8613{:09}", 200_000 + i);
        invite(
            &mut t,
            SOFTSWITCH,
            line(4),
            &n,
            f64::from(i) * 6.0,
            Participation::Rejected,
        );
    }
    assert_eq!(kinds(&t), vec![(sa(SOFTSWITCH).ip(), ThreatKind::Framing)]);
    let _ = t.take_changes();
    for i in 20..50u32 {
        let n = format!("8613{:09}", 200_000 + i);
        answered_call(&mut t, SOFTSWITCH, line(4), &n, f64::from(i) * 6.0, 40.0);
    }
    assert!(kinds(&t).is_empty(), "{:?}", kinds(&t));
    let ch = t.take_changes();
    let ended: Vec<&Threat> = ch
        .iter()
        .filter(|x| x.kind == ThreatKind::Framing && x.ended.is_some())
        .collect();
    assert_eq!(ended.len(), 1, "{ch:?}");
    let d = &ended[0].reasons[0].detail;
    assert!(
        d.starts_with("no longer framing: the lines took part in"),
        "{d}"
    );
}

#[test]
fn threats_a_stream_of_internationally_written_numbers_is_framing() {
    // A gateway-shaped stream whose numbers are written `+86...` / `0086...` (the home
    // country's, which only `home_calling_codes` would tell): every INVITE rejected.
    let mut t = table();
    for i in 0..24u32 {
        let n = if i % 2 == 0 {
            format!("+86138{:08}", 1000 + i * 7919)
        } else {
            format!("0086139{:08}", 1000 + i * 7919)
        };
        invite(
            &mut t,
            SOFTSWITCH,
            line(8),
            &n,
            f64::from(i) * 5.0,
            Participation::Rejected,
        );
    }
    let f = find(&t, ThreatKind::Framing);
    let d = &f.reasons[0].detail;
    assert!(
        d.starts_with("24 INVITEs to 24 distinct numbers at 1 lines"),
        "{d}"
    );
    // A few premium numbers dialled again and again in prefix variants: a toll-fraud attempt,
    // not a stream.
    let mut t = table();
    for i in 0..30u32 {
        let n = ["00972599123456", "011972599123456", "9011972599123456"][i as usize % 3];
        invite(
            &mut t,
            SCANNER,
            line(9),
            n,
            f64::from(i) * 4.0,
            Participation::Rejected,
        );
    }
    let k: Vec<ThreatKind> = kinds(&t).into_iter().map(|(_, k)| k).collect();
    assert_eq!(k, vec![ThreatKind::TollFraudAttempt]);
}
