//! Hand-built lines of every kind through `LineTable`: gateways flagged quickly, hard negatives
//! stay normal.

use simboxd_core::config::NetworkConfig;
use simboxd_core::detect::synth::{self, at, GatewaySpec};
use simboxd_core::detect::{DetectionConfig, LineTable};
use simboxd_core::model::{Event, LineVerdict, Timestamp, VerdictLevel};
use std::net::IpAddr;

fn net() -> NetworkConfig {
    NetworkConfig {
        domestic: vec![synth::DOMESTIC.parse().unwrap()],
        ..Default::default()
    }
}

fn event_ts(e: &Event) -> Timestamp {
    match e {
        Event::CallStarted { ts, .. }
        | Event::CallAnswered { ts, .. }
        | Event::MediaStarted { ts, .. } => *ts,
        Event::CallEnded(r) => r.end.unwrap_or(r.start),
        Event::Registration(r) => r.time,
        Event::MediaEnded(r) => r.last,
        Event::Probe(p) => p.time,
    }
}

/// Feeds events as the engine would: evaluating every 5 s of packet time and at the end.
pub fn run(events: &[Event]) -> (LineTable, Vec<LineVerdict>) {
    let mut t = LineTable::new(&DetectionConfig::default(), &net());
    let mut next = None;
    let mut last = Timestamp::default();
    for e in events {
        let ts = event_ts(e);
        let n = *next.get_or_insert(ts.plus_secs(5.0));
        if ts >= n {
            t.evaluate(ts);
            next = Some(ts.plus_secs(5.0));
        }
        t.on_event(e);
        last = last.max(ts);
    }
    t.evaluate(last);
    let v = t.verdicts();
    (t, v)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn show(v: &LineVerdict) -> String {
    let mut s = format!("{} {:?} {:.2}", v.line, v.verdict, v.score);
    for r in &v.reasons {
        s += &format!(
            "\n  {} {:.2} ({:.2}): {}",
            r.signal, r.strength, r.value, r.detail
        );
    }
    s
}

fn one(events: Vec<Event>) -> LineVerdict {
    let (_, v) = run(&events);
    assert_eq!(v.len(), 1);
    v.into_iter().next().unwrap()
}

fn assert_gateway_fast(v: &LineVerdict, first: f64, max_secs: f64) {
    assert_eq!(v.verdict, VerdictLevel::Gateway, "{}", show(v));
    let f = v.flagged_at.expect("flagged_at");
    let ttd = f.secs_since(at(first));
    assert!(ttd <= max_secs, "detected after {ttd:.0} s\n{}", show(v));
}

fn assert_normal(v: &LineVerdict) {
    assert_eq!(v.verdict, VerdictLevel::Normal, "{}", show(v));
    assert!(v.flagged_at.is_none());
}

#[test]
fn sip_gateway_is_flagged_within_two_minutes() {
    for seed in 1..=5 {
        let v = one(synth::gateway(
            ip("10.1.0.1"),
            seed,
            0.0,
            1800.0,
            &GatewaySpec::default(),
        ));
        assert_gateway_fast(&v, 0.0, 120.0);
        assert!(
            v.reasons.iter().any(|r| r.signal == "distinct_called"),
            "{}",
            show(&v)
        );
    }
}

#[test]
fn small_gateway_with_four_channels_is_flagged() {
    let g = GatewaySpec {
        channels: 4,
        ..Default::default()
    };
    let v = one(synth::gateway(ip("10.1.0.2"), 7, 0.0, 1800.0, &g));
    assert_gateway_fast(&v, 0.0, 300.0);
}

#[test]
fn gateway_with_domestic_softswitch_is_flagged() {
    let g = GatewaySpec {
        peer: synth::PROVIDER.parse().unwrap(),
        ..Default::default()
    };
    let v = one(synth::gateway(ip("10.1.0.3"), 8, 0.0, 1800.0, &g));
    assert_gateway_fast(&v, 0.0, 300.0);
}

#[test]
fn opaque_gateway_is_flagged_from_media_alone() {
    for seed in 1..=3 {
        let g = GatewaySpec {
            opaque: true,
            ..Default::default()
        };
        let v = one(synth::gateway(ip("10.1.0.4"), seed, 0.0, 1800.0, &g));
        assert_gateway_fast(&v, 0.0, 300.0);
        assert!(
            v.reasons.iter().any(|r| r.signal == "opaque_media"),
            "{}",
            show(&v)
        );
    }
}

#[test]
fn household_stays_normal() {
    for seed in 1..=5 {
        assert_normal(&one(synth::household(
            ip("10.2.0.1"),
            seed,
            0.0,
            4.0 * 3600.0,
        )));
    }
}

#[test]
fn office_pbx_stays_normal() {
    for seed in 1..=5 {
        assert_normal(&one(synth::office_pbx(
            ip("10.2.0.2"),
            seed,
            0.0,
            3.0 * 3600.0,
        )));
    }
}

#[test]
fn outbound_dialer_stays_normal() {
    for seed in 1..=5 {
        assert_normal(&one(synth::dialer(ip("10.2.0.3"), seed, 0.0, 3600.0)));
    }
}

#[test]
fn help_desk_stays_normal() {
    for seed in 1..=5 {
        assert_normal(&one(synth::help_desk(
            ip("10.2.0.4"),
            seed,
            0.0,
            3.0 * 3600.0,
        )));
    }
}

#[test]
fn expat_on_foreign_provider_stays_normal() {
    for seed in 1..=5 {
        assert_normal(&one(synth::expat(ip("10.2.0.5"), seed, 0.0, 4.0 * 3600.0)));
    }
}

#[test]
fn app_calls_and_gaming_stay_normal() {
    for seed in 1..=5 {
        assert_normal(&one(synth::app_calls(
            ip("10.2.0.6"),
            seed,
            0.0,
            4.0 * 3600.0,
        )));
        assert_normal(&one(synth::gaming(ip("10.2.0.7"), seed, 0.0, 4.0 * 3600.0)));
    }
}

#[test]
#[ignore = "diagnostic: prints every synthetic kind's verdict and reasons"]
fn print_all() {
    let kinds: Vec<(&str, Vec<Event>)> = vec![
        (
            "gateway",
            synth::gateway(ip("10.1.0.1"), 1, 0.0, 1800.0, &GatewaySpec::default()),
        ),
        (
            "gw4",
            synth::gateway(
                ip("10.1.0.2"),
                7,
                0.0,
                1800.0,
                &GatewaySpec {
                    channels: 4,
                    ..Default::default()
                },
            ),
        ),
        (
            "opaque",
            synth::gateway(
                ip("10.1.0.4"),
                1,
                0.0,
                1800.0,
                &GatewaySpec {
                    opaque: true,
                    ..Default::default()
                },
            ),
        ),
        (
            "household",
            synth::household(ip("10.2.0.1"), 1, 0.0, 14400.0),
        ),
        ("pbx", synth::office_pbx(ip("10.2.0.2"), 1, 0.0, 10800.0)),
        ("dialer", synth::dialer(ip("10.2.0.3"), 1, 0.0, 3600.0)),
        (
            "helpdesk",
            synth::help_desk(ip("10.2.0.4"), 1, 0.0, 10800.0),
        ),
        ("expat", synth::expat(ip("10.2.0.5"), 1, 0.0, 14400.0)),
        ("app", synth::app_calls(ip("10.2.0.6"), 1, 0.0, 14400.0)),
        ("gaming", synth::gaming(ip("10.2.0.7"), 1, 0.0, 14400.0)),
    ];
    for (k, ev) in kinds {
        let (t, v) = run(&ev);
        let v = &v[0];
        println!(
            "== {k}: {} flagged {:?} calls {} maxc {}",
            show(v),
            v.flagged_at.map(|f| f.secs_since(at(0.0))),
            v.calls,
            v.max_concurrent_calls
        );
        println!(
            "{}",
            serde_json::to_string(&t.line_summary(v.line)).unwrap()
        );
    }
}
