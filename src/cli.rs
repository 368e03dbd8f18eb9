//! The binary's edge: subcommands parse arguments here and call into the library.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "simboxd",
    version,
    about = "SIM-box detection from SIP/RTP traffic"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Analyse a capture file and print calls, lines and verdicts.
    Analyze(crate::analyze::AnalyzeArgs),
    /// Write a labelled pcap of simulated subscriber lines.
    Simulate(crate::simulate_cmd::SimulateArgs),
    /// Detection quality on simulated populations (precision, recall, time to detect).
    Eval(crate::eval::EvalArgs),
    /// Capture live (or replay a file), detect, alert and serve the HTTP API until stopped.
    Run(crate::daemon::RunArgs),
    /// Check a daemon config file; exit 1 with `FILE:LINE:COL: reason` on error.
    Validate(crate::daemon::ValidateArgs),
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(a) => crate::analyze::cli_main(a),
        Command::Simulate(a) => crate::simulate_cmd::cli_main(a),
        Command::Eval(a) => crate::eval::cli_main(a),
        Command::Run(a) => crate::daemon::run_main(a),
        Command::Validate(a) => crate::daemon::validate_main(a),
    }
}
