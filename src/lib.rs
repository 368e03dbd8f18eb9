//! simboxd, the application: capture, configuration, alerts, the daemon, offline analysis,
//! the report and evidence, and the command line, around the I/O-free engine in
//! `simboxd-core` and the simulator in `simboxd-sim`.
//!
//! The pipeline reads top to bottom: `capture` -> (core: decode -> sip/sdp/rtp -> calls ->
//! lines -> detect) -> `alert`.

pub mod alert;
pub mod analyze;
pub mod capture;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod daemon;
pub mod eval;
pub mod evidence;
pub mod figures;
pub mod geoip;
pub mod metrics;
pub mod privacy;
pub mod report;
pub mod simulate_cmd;
pub mod watch;
