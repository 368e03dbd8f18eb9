//! ECS JSON: one alert as an Elastic Common Schema 8.x document.
//!
//! Contract: `source.ip` is the peer (the softswitch or trunk that sends a SIM-box line its
//! calls, or a threat's attacker: where the traffic comes from), `destination.ip` the subscriber
//! line it reaches (absent for a `threat`, whose targets are in `related.ip` and
//! `simboxd.threat.lines`), `observer.*` the sensor, and everything simboxd-specific sits under
//! `simboxd.*`. The document is serialised by serde_json (every string escaped per RFC 8259);
//! [`format_ecs`] drops detail, never syntax, to fit a size limit.

use super::super::syslog::TEXT_REASONS;
use super::super::{verdict_str, Alert, AlertKind};
use super::{level, line_is_target, prefix, signature, Level, Origin};
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// `event.severity`: low 21, medium 47, high 73 (the scale of Elastic's detection rules).
pub fn event_severity(l: Level) -> u8 {
    match l {
        Level::Low => 21,
        Level::Medium => 47,
        Level::High => 73,
    }
}

/// The alert as an ECS document.
pub fn ecs_value(alert: &Alert, origin: &Origin) -> Value {
    let (rule_id, rule_name) = signature(alert);
    let mut related: Vec<IpAddr> = Vec::new();
    let mut relate = |ip: IpAddr| {
        if !related.contains(&ip) {
            related.push(ip);
        }
    };
    if let Some(p) = alert.peer {
        relate(p);
    }
    relate(alert.line);
    if let Some(t) = &alert.threat {
        for target in &t.lines {
            relate(target.line);
        }
    }
    let mut doc = json!({
        "@timestamp": alert.created.to_rfc3339(),
        "ecs": { "version": ECS_VERSION },
        "message": alert.summary(TEXT_REASONS),
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection", "network"],
            "type": ["info"],
            "action": alert.state.as_str(),
            "severity": event_severity(level(alert)),
            "id": alert.idempotency_key,
            "start": alert.first_seen.to_rfc3339(),
            "end": alert.last_seen.to_rfc3339(),
            "dataset": "simboxd.alert",
            "module": "simboxd",
            "provider": "simboxd",
        },
        "log": { "level": alert.severity.as_str() },
        "rule": {
            "id": rule_id,
            "name": rule_name,
            "category": alert.kind.as_str(),
            "ruleset": "simboxd",
        },
        "related": { "ip": related },
        "observer": {
            "name": origin.sensor,
            "type": "ids",
            "vendor": "simboxd",
            "product": "simboxd",
            "version": origin.version,
        },
        "agent": {
            "name": origin.sensor,
            "type": "simboxd",
            "version": origin.version,
        },
        "simboxd": {
            "alert_id": alert.id,
            "seq": alert.seq,
            "idempotency_key": alert.idempotency_key,
            "state": alert.state.as_str(),
            "severity": alert.severity.as_str(),
            "type": alert.kind.as_str(),
            "line": alert.line,
            "verdict": verdict_str(alert.verdict),
            "score": alert.score,
            "reasons": alert.reasons,
            "first_seen": alert.first_seen.to_rfc3339(),
            "last_seen": alert.last_seen.to_rfc3339(),
            "sensor": origin.sensor,
            "version": origin.version,
        },
    });
    let o = doc.as_object_mut();
    if let Some(o) = o {
        if let Some(p) = alert.peer {
            o.insert("source".into(), json!({ "ip": p }));
        }
        if line_is_target(alert) {
            o.insert("destination".into(), json!({ "ip": alert.line }));
        }
        if alert.kind == AlertKind::Line {
            // The line's score (0..1) on the 0..100 scale of `event.risk_score`.
            let risk = (alert.score.clamp(0.0, 1.0) * 1000.0).round() / 10.0;
            if let Some(Value::Object(e)) = o.get_mut("event") {
                e.insert("risk_score".into(), json!(risk));
            }
        }
        if let Some(Value::Object(s)) = o.get_mut("simboxd") {
            let mut put = |k: &str, v: Value| {
                s.insert(k.to_string(), v);
            };
            if let Some(p) = alert.peer {
                put("peer", json!(p));
            }
            if let Some(site) = &alert.site {
                put("site", json!(site));
            }
            if let Some(f) = alert.flagged_at {
                put("flagged_at", json!(f.to_rfc3339()));
            }
            if let Some(t) = &alert.threat {
                put("threat_kind", json!(t.kind.label()));
                put(
                    "threat",
                    serde_json::to_value(t).unwrap_or_else(|_| Value::Object(Map::new())),
                );
            }
        }
    }
    doc
}

/// The alert as one line of ECS JSON of at most `max` bytes where that can be had by leaving
/// out detail: first the threat's figures, then the reasons' texts, then most of the message.
pub fn format_ecs(alert: &Alert, origin: &Origin, max: usize) -> String {
    let mut doc = ecs_value(alert, origin);
    let mut text = doc.to_string();
    if text.len() <= max {
        return text;
    }
    let simboxd = |doc: &mut Value| -> Option<Map<String, Value>> {
        doc.get_mut("simboxd")?.as_object_mut().map(std::mem::take)
    };
    let put_back = |doc: &mut Value, m: Map<String, Value>| {
        if let Some(o) = doc.as_object_mut() {
            o.insert("simboxd".into(), Value::Object(m));
        }
    };
    let steps: [&dyn Fn(&mut Value); 3] = [
        &|doc| {
            if let Some(mut s) = simboxd(doc) {
                s.remove("threat");
                s.insert("truncated".into(), json!(true));
                put_back(doc, s);
            }
        },
        &|doc| {
            if let Some(mut s) = simboxd(doc) {
                if let Some(Value::Array(rs)) = s.get_mut("reasons") {
                    for r in rs.iter_mut().filter_map(Value::as_object_mut) {
                        r.remove("detail");
                    }
                }
                put_back(doc, s);
            }
        },
        &|doc| {
            let msg = alert.summary(TEXT_REASONS);
            if let Some(o) = doc.as_object_mut() {
                o.insert("message".into(), json!(prefix(&msg, 512)));
            }
        },
    ];
    for step in steps {
        step(&mut doc);
        text = doc.to_string();
        if text.len() <= max {
            break;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::format::tests::hostile;

    #[test]
    fn fields_and_escaping() {
        let a = hostile();
        let o = Origin::new("tap|01 \"east\"\n");
        let text = format_ecs(&a, &o, usize::MAX);
        assert!(!text.contains('\n'));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event"]["kind"], "alert");
        assert_eq!(v["event"]["severity"], 73);
        assert_eq!(v["event"]["id"], "sbx-0011223344556677:2");
        assert_eq!(v["source"]["ip"], "2001:db8::5");
        assert_eq!(v["destination"]["ip"], "100.64.7.9");
        assert_eq!(v["observer"]["name"], "tap|01 \"east\"\n");
        assert_eq!(v["simboxd"]["site"], a.site.clone().unwrap());
        assert_eq!(v["rule"]["name"], "SIM-box gateway line");
        assert_eq!(v["related"]["ip"], json!(["2001:db8::5", "100.64.7.9"]));
    }

    #[test]
    fn shrinks_to_fit_without_breaking_json() {
        let mut a = hostile();
        a.reasons[0].detail = "é".repeat(3000);
        let full = format_ecs(&a, &Origin::new("s"), usize::MAX);
        let small = format_ecs(&a, &Origin::new("s"), 3000);
        assert!(full.len() > 3000 && small.len() <= 3000, "{}", small.len());
        let v: Value = serde_json::from_str(&small).unwrap();
        assert_eq!(v["simboxd"]["reasons"][0]["signal"], "inbound_many_numbers");
        assert!(v["simboxd"]["reasons"][0].get("detail").is_none());
    }
}
