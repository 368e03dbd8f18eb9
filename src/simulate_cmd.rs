//! `simboxd simulate`: arguments, scenario loading and writing the pcap and labels.

use anyhow::Context as _;
use simboxd_core::model::Timestamp;
use simboxd_sim::{generate, parse_duration, Scenario};
use std::io::Write;
use std::path::PathBuf;

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
    let threats = if labels.threats.is_empty() {
        String::new()
    } else {
        format!(", {} attacker addresses", labels.threats.len())
    };
    eprintln!(
        "wrote {} packets, {} lines ({} gateways){threats} to {} and {}",
        labels.packets,
        labels.lines.len(),
        gw,
        args.out.display(),
        lpath.display()
    );
    Ok(())
}
