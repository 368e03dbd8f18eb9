//! `simboxd simulate`: a labelled pcap of a population of subscriber lines.
//!
//! Contract: `generate(&Scenario, seed, out)` writes a classic pcap (Ethernet, microsecond
//! timestamps) and returns the `Labels` (line address -> label, kind, site and drawn params).
//! Output is a pure function of scenario and seed. Lines schedule calls, calls emit SIP and
//! media; a binary heap merges every active source by time (see `engine`), so memory follows the
//! number of concurrent calls, not the duration.

mod engine;
mod numbers;
mod population;
pub mod scenario;
mod sipmsg;
mod wire;

pub use scenario::{parse_duration, Kind, Population, Scenario};

use crate::model::Timestamp;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

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
    /// `gateway` or `normal`.
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
    let buffered = std::io::BufWriter::with_capacity(1 << 20, out);
    let writer = wire::PcapWriter::new(buffered)?;
    let mut eng = engine::Engine::new(writer, lines, start, end);
    for (t, task) in tasks {
        eng.schedule(t, task);
    }
    let packets = eng.run()?;
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
    })
}

/// `simboxd simulate`.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Output pcap file.
    #[arg(long)]
    pub out: PathBuf,
    /// Labels JSON (default: the pcap's name with `.labels.json`).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated time: `90s`, `30m`, `2h` (overrides the scenario).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<u64>,
    /// Multiplies every population's line count (overrides the scenario).
    #[arg(long)]
    pub scale: Option<f64>,
    /// Scenario TOML (default: the built-in mix with every population).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Start time, RFC 3339 (default 2026-01-05T08:00:00Z).
    #[arg(long)]
    pub start: Option<String>,
}

/// `F.pcap` -> `F.labels.json`.
pub fn default_labels_path(pcap: &std::path::Path) -> PathBuf {
    let stem = pcap
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "capture".to_string());
    pcap.with_file_name(format!("{stem}.labels.json"))
}

/// The scenario a command asked for: a TOML file or the built-in mix, with `--duration` and
/// `--scale` applied on top.
pub fn load_scenario(
    file: Option<&std::path::Path>,
    duration: Option<u64>,
    scale: Option<f64>,
) -> anyhow::Result<Scenario> {
    let mut sc = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading scenario {}", p.display()))?;
            Scenario::from_toml(&text, &p.display().to_string())?
        }
        None => Scenario::builtin(),
    };
    if let Some(d) = duration {
        sc.duration_secs = d;
    }
    if let Some(s) = scale {
        sc.scale = s;
    }
    Ok(sc)
}

pub fn cli_main(args: SimulateArgs) -> anyhow::Result<()> {
    let mut sc = load_scenario(args.scenario.as_deref(), args.duration, args.scale)?;
    if let Some(s) = &args.start {
        sc.start = Timestamp::parse_rfc3339(s)
            .with_context(|| format!("--start {s:?} is not an RFC 3339 time"))?;
    }
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut file = std::io::BufWriter::new(file);
    let labels = generate(&sc, args.seed, &mut file)?;
    file.flush()?;
    let lpath = args
        .labels
        .clone()
        .unwrap_or_else(|| default_labels_path(&args.out));
    let json = serde_json::to_string_pretty(&labels)?;
    std::fs::write(&lpath, json + "\n").with_context(|| format!("writing {}", lpath.display()))?;
    let gw = labels
        .lines
        .values()
        .filter(|l| l.label == "gateway")
        .count();
    eprintln!(
        "wrote {} packets, {} lines ({} gateways) to {} and {}",
        labels.packets,
        labels.lines.len(),
        gw,
        args.out.display(),
        lpath.display()
    );
    Ok(())
}
