//! Simulated traffic through the real pipeline (Capture -> Decoder -> Tracker): the call records
//! and media flows it reports agree with the simulator's labels.

use simboxd::capture::Capture;
use simboxd::config::Config;
use simboxd_core::calls::Tracker;
use simboxd_core::decode::Decoder;
use simboxd_core::model::{CallRecord, Direction, Event, MediaFlowRecord, Outcome, Timestamp};
use simboxd_sim::{generate, Labels, Scenario};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

struct Run {
    labels: Labels,
    calls: Vec<CallRecord>,
    media: Vec<MediaFlowRecord>,
    regs: u64,
    decode_errors: simboxd_core::model::Counters,
}

fn run(scenario: &str, seed: u64) -> Run {
    let sc = Scenario::from_toml(scenario, "pipeline.toml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pcap");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let labels = generate(&sc, seed, &mut f).unwrap();
    drop(f);

    let mut cfg = Config::default();
    cfg.network.domestic = labels
        .network
        .domestic
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let mut dec = Decoder::new(&cfg.limits);
    let e = cfg.engine();
    let mut tracker = Tracker::new(&e.network, &e.limits);
    let mut cap = Capture::open_file(&path).expect("capture opens");
    let mut events = Vec::new();
    let mut last = Timestamp(0);
    let mut n = 0u64;
    while let Some(p) = cap.next_packet().expect("capture reads") {
        n += 1;
        last = last.max(p.ts);
        dec.decode(&p, &mut |d| tracker.on_datagram(d, &mut events));
    }
    assert_eq!(n, labels.packets);
    tracker.finish(last, &mut events);
    let mut calls = Vec::new();
    let mut media = Vec::new();
    let mut regs = 0;
    for e in events {
        match e {
            Event::CallEnded(c) => calls.push(*c),
            Event::MediaEnded(m) => media.push(*m),
            Event::Registration(_) => regs += 1,
            _ => {}
        }
    }
    Run {
        labels,
        calls,
        media,
        regs,
        decode_errors: dec.errors().clone(),
    }
}

const SCENARIO: &str = r#"
duration = "3m"
[[population]]
kind = "gateway"
site = "s"
channels = 4
registration = "per-port"
[[population]]
kind = "gateway-scrambled"
site = "s"
channels = 2
[[population]]
kind = "household"
count = 3
calls_per_hour = 60.0
tcp_share = 0.5
vlan_share = 0.5
[[population]]
kind = "office-pbx"
channels = 3
calls_per_hour = 120.0
big_invite_share = 1.0
tcp_share = 0.0
[[population]]
kind = "call-centre"
channels = 2
[[population]]
kind = "app-calls"
calls_per_hour = 60.0
"#;

fn kind_of(labels: &Labels, ip: IpAddr) -> Option<&str> {
    labels.lines.get(&ip.to_string()).map(|l| l.kind.as_str())
}

#[test]
fn pipeline_sees_the_labelled_calls_and_shapes() {
    let r = run(SCENARIO, 4);
    assert_eq!(
        r.decode_errors.0.values().sum::<u64>(),
        0,
        "{:?}",
        r.decode_errors
    );
    assert!(r.regs > 0);
    let mut per_kind: BTreeMap<&str, Vec<&CallRecord>> = BTreeMap::new();
    for c in &r.calls {
        let line = c.line.expect("every call has a line");
        let kind = kind_of(&r.labels, line).expect("the call's line is labelled");
        per_kind.entry(kind).or_default().push(c);
    }
    // No readable calls from the scrambled box or from app calls.
    assert!(!per_kind.contains_key("gateway-scrambled"));
    assert!(!per_kind.contains_key("app-calls"));

    let gw = &per_kind["gateway"];
    assert!(gw.len() >= 5);
    let called: BTreeSet<_> = gw.iter().filter_map(|c| c.to.clone()).collect();
    for c in gw {
        assert_eq!(c.direction, Direction::Inbound, "{}", c.call_id);
    }
    assert!(called.len() * 10 >= gw.len() * 9);
    assert!(gw.iter().any(|c| c.outcome == Outcome::Answered));
    assert!(gw
        .iter()
        .any(|c| c.outcome != Outcome::Answered && c.outcome != Outcome::Incomplete));
    assert!(
        gw.iter().any(|c| c.private_contact),
        "gateways sit behind NAT"
    );

    for c in &per_kind["call-centre"] {
        assert_eq!(c.direction, Direction::Outbound);
    }
    let office = &per_kind["office-pbx"];
    assert!(office.iter().any(|c| c.direction == Direction::Inbound));
    assert!(office.iter().any(|c| c.direction == Direction::Outbound));
    // Answered calls carry RTP with no loss (sequence numbers are continuous).
    let answered: Vec<_> = r
        .calls
        .iter()
        .filter(|c| c.outcome == Outcome::Answered)
        .collect();
    assert!(!answered.is_empty());
    for c in &answered {
        for s in &c.rtp {
            assert_eq!(s.lost, 0, "{} {:?}", c.call_id, s);
        }
    }

    // The scrambled box still shows voice-shaped RTP media flows to its softswitch.
    let scrambled: Vec<_> = r
        .media
        .iter()
        .filter(|m| m.line.and_then(|l| kind_of(&r.labels, l)) == Some("gateway-scrambled"))
        .collect();
    assert!(!scrambled.is_empty());
    assert!(
        scrambled.iter().any(|m| m.rtp && m.voice_like),
        "{scrambled:?}"
    );
}
