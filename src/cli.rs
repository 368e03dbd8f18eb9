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
    /// Correlate many sensors: consume their alerts and line evidence from NATS JetStream.
    Central(crate::central::CentralArgs),
    /// Live terminal view of lines, verdicts, calls and evidence (a file, an interface or a daemon).
    Watch(crate::watch::WatchArgs),
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(a) => {
            let code = crate::analyze::cli_main(a)?;
            if code != 0 {
                // Output is written and flushed: only the exit code is left to say.
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Simulate(a) => crate::simulate_cmd::cli_main(a),
        Command::Eval(a) => crate::eval::cli_main(a),
        Command::Run(a) => crate::daemon::run_main(a),
        Command::Validate(a) => crate::daemon::validate_main(a),
        Command::Watch(a) => crate::watch::cli_main(a),
        Command::Central(a) => crate::central::central_main(a),
    }
}

pub use crate::error_chain;

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_printed_once() {
        let pcap = pcap::Error::PcapError("eth9: No such device exists".into());
        let e = anyhow::Error::new(crate::capture::CaptureError::OpenLive {
            interface: "eth9".into(),
            source: pcap,
        })
        .context("opening the capture");
        assert_eq!(
            super::error_chain(&e),
            "opening the capture: eth9: cannot open interface: libpcap error: eth9: No such device exists"
        );
        assert_eq!(format!("{e:#}").matches("No such device").count(), 2);
        let plain = anyhow::anyhow!("root").context("middle").context("top");
        assert_eq!(super::error_chain(&plain), "top: middle: root");
    }
}
