//! simboxd, the application: capture, configuration, alerts, the daemon, offline analysis,
//! the report and evidence, and the command line, around the I/O-free engine in
//! `simboxd-core` and the simulator in `simboxd-sim`.
//!
//! The pipeline reads top to bottom: `capture` -> (core: decode -> sip/sdp/rtp -> calls ->
//! lines -> detect) -> `alert`.

// The library's public modules: what the binary (`cli`), the integration tests and the
// benchmarks use. Their `pub` items are the tested surface; nothing else is exported.
pub mod alert;
pub mod analyze;
pub mod capture;
pub mod central;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod daemon;
pub mod eval;
pub mod input;
pub mod privacy;
pub mod report;
pub mod text;
pub mod watch;

// The binary's own modules: reachable only through the public ones (types they hand out).
pub(crate) mod analysis;
pub(crate) mod evidence;
pub(crate) mod figures;
pub(crate) mod geoip;
pub(crate) mod http;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod pcapng_out;
pub(crate) mod simulate_cmd;
pub(crate) mod stream;

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
