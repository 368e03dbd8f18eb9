//! `simboxd simulate`: a labelled pcap of a population of subscriber lines.
//!
//! Contract: `generate(&Scenario, seed, out)` writes a classic pcap (Ethernet, microsecond
//! timestamps) and returns the `Labels` (line address -> label, kind, site and drawn params;
//! attacker address -> threat kind, targets and params when the scenario has `[[noise]]`).
//! Output is a pure function of scenario and seed. Lines schedule calls, calls emit SIP and
//! media; a binary heap merges every active source by time (see `engine`), so memory follows the
//! number of concurrent calls, not the duration.

mod engine;
mod noise;
mod numbers;
mod population;
pub mod scenario;
mod sipmsg;
mod wire;

/// Country calling code of the simulated subscribers (their home country).
pub use numbers::HOME_CC as HOME_CALLING_CODE;
pub use scenario::{parse_duration, Kind, Noise, NoiseKind, Population, Scenario};
/// Frame and pcap writing, for tests that craft captures by hand.
pub use wire::{PcapWriter, L2};

use serde::{Deserialize, Serialize};
use simboxd_core::model::Timestamp;
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{file}:{line}:{column}: {message}")]
    Scenario {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("invalid scenario: {0}")]
    Invalid(String),
    #[error("writing the capture: {0}")]
    Io(#[from] std::io::Error),
}

/// Address ranges the simulator uses, for configuring detection from the labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkLabels {
    pub home: Vec<String>,
    pub domestic: Vec<String>,
}

/// Ground truth for one line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineLabel {
    /// `gateway`, `normal` or `compromised-pbx` (fraud of another kind: never a gateway).
    pub label: String,
    pub kind: Kind,
    pub site: Option<String>,
    pub params: serde_json::Value,
}

/// The labels file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    pub seed: u64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub duration_secs: u64,
    pub scale: f64,
    pub packets: u64,
    pub network: NetworkLabels,
    pub lines: BTreeMap<String, LineLabel>,
    /// Attacker address -> what it did (absent in labels of captures without noise).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub threats: BTreeMap<String, ThreatLabel>,
}

/// What a source of unsolicited traffic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreatKind {
    Scan,
    Enumeration,
    TollFraudAttempt,
    Flood,
    Framing,
}

impl ThreatKind {
    pub const ALL: [ThreatKind; 5] = [
        ThreatKind::Scan,
        ThreatKind::Enumeration,
        ThreatKind::TollFraudAttempt,
        ThreatKind::Flood,
        ThreatKind::Framing,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ThreatKind::Scan => "scan",
            ThreatKind::Enumeration => "enumeration",
            ThreatKind::TollFraudAttempt => "toll_fraud_attempt",
            ThreatKind::Flood => "flood",
            ThreatKind::Framing => "framing",
        }
    }
    pub fn parse(s: &str) -> Option<ThreatKind> {
        ThreatKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Ground truth for one attacker address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreatLabel {
    pub kind: ThreatKind,
    /// Line addresses it sent to.
    pub targets: Vec<String>,
    /// Tool, rate, requests, `campaign` (addresses of one spoofed flood share it), ...
    pub params: serde_json::Value,
}

/// Prefixes the subscriber lines are drawn from.
pub const HOME_PREFIXES: [&str; 2] = ["100.64.0.0/10", "fd00::/8"];
/// Prefixes of domestic providers and trunks.
pub const DOMESTIC_PREFIXES: [&str; 1] = ["198.18.0.0/15"];

/// Writes the scenario's pcap to `out` and returns its labels.
pub fn generate<W: Write>(sc: &Scenario, seed: u64, out: &mut W) -> Result<Labels, SimError> {
    sc.validate().map_err(|(_, m)| SimError::Invalid(m))?;
    let start = sc.start.micros();
    let end = start.saturating_add((sc.duration_secs as i64).saturating_mul(1_000_000));
    let (lines, tasks) = population::build(sc, seed, start, end);
    let (sources, noise_tasks) = noise::build(sc, seed, start, end, &lines);
    let buffered = std::io::BufWriter::with_capacity(1 << 20, out);
    let writer = wire::PcapWriter::new(buffered)?;
    let mut eng = engine::Engine::new(writer, lines, sources, start, end);
    for (t, task) in tasks {
        eng.schedule(t, task);
    }
    for (t, src, slot) in noise_tasks {
        eng.schedule(t, engine::Task::Noise { src, slot });
    }
    let packets = eng.run()?;
    let mut threats: BTreeMap<String, ThreatLabel> = BTreeMap::new();
    for s in &eng.noise {
        for (addr, t) in s.threats(&eng.lines) {
            // Two spoofed floods may forge the same address: one entry, every target.
            match threats.get_mut(&addr) {
                Some(old) if old.kind == t.kind => {
                    for x in t.targets {
                        if !old.targets.contains(&x) {
                            old.targets.push(x);
                        }
                    }
                    old.targets.sort();
                }
                Some(_) => {}
                None => {
                    threats.insert(addr, t);
                }
            }
        }
        for (line, note) in s.line_notes() {
            if let Some(l) = eng.lines.get_mut(line as usize) {
                let posture = serde_json::to_value(l.unsolicited).unwrap_or_default();
                l.params.insert("unsolicited".into(), posture);
                if let Some(serde_json::Value::Array(v)) = l.params.get_mut("noise") {
                    v.push(note);
                } else {
                    l.params
                        .insert("noise".into(), serde_json::Value::Array(vec![note]));
                }
            }
        }
    }
    let lines = eng
        .lines
        .iter()
        .map(|l| {
            (
                l.addr.to_string(),
                LineLabel {
                    label: l.label().to_string(),
                    kind: l.kind,
                    site: l.site.clone(),
                    params: serde_json::Value::Object(l.params.clone()),
                },
            )
        })
        .collect();
    Ok(Labels {
        seed,
        start: sc.start,
        end: Timestamp::from_micros(end),
        duration_secs: sc.duration_secs,
        scale: sc.scale,
        packets,
        network: NetworkLabels {
            home: HOME_PREFIXES.iter().map(|s| s.to_string()).collect(),
            domestic: DOMESTIC_PREFIXES.iter().map(|s| s.to_string()).collect(),
        },
        lines,
        threats,
    })
}
