//! What each source sent, for the labels: `threats` per attacker address and `noise` notes in
//! each hit line's params.

use super::Source;
use crate::population::Line;
use crate::scenario::NoiseKind;
use crate::{ThreatKind, ThreatLabel};
use serde_json::{json, Map, Value};

impl Source {
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
