//! simboxd, the application: capture, configuration, alerts, the daemon, offline analysis,
//! the report and evidence, and the command line, around the I/O-free engine in
//! `simboxd-core` and the simulator in `simboxd-sim`.
//!
//! The pipeline reads top to bottom: `capture` -> (core: decode -> sip/sdp/rtp -> calls ->
//! lines -> detect) -> `alert`.

pub mod alert;
pub mod analysis;
pub mod analyze;
pub mod capture;
pub mod central;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod daemon;
pub mod eval;
pub mod evidence;
pub mod figures;
pub mod geoip;
pub mod input;
pub mod metrics;
pub mod pcapng_out;
pub mod privacy;
pub mod report;
pub mod simulate_cmd;
pub mod stream;
pub mod text;
pub mod watch;

/// An error and its causes on one line, `outer: cause: root`, each text once: a cause whose
/// text the previous one already shows (`thiserror` messages that interpolate their `source`)
/// is not repeated. Regression: every libpcap error was printed twice.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !last.is_empty() && last.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        last = text;
    }
    out
}
