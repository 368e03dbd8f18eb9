//! `simboxd central`: consumes every sensor's alerts, line evidence and threat events from NATS
//! JetStream through one durable pull consumer, merges the evidence of a line seen by several
//! sensors, forms sites across sensors with the core's site rule, feeds every sensor's threat
//! events to one threat table (so a peer sweeping lines behind two taps is one scan with all its
//! targets) and raises alerts through the same pipeline as a sensor (outbox, syslog, webhook,
//! the HTTP API).
//!
//! Contract: a message is acknowledged only after what it changed is committed to the state
//! file (`[central] state_path`, redb) and the alerts it caused to the outbox; a crash before
//! the ack makes JetStream redeliver it, and redelivered evidence (same evaluation time) and
//! sensor alerts (same idempotency key, remembered) change nothing. High availability: one
//! instance is active; a second one started on the same durable consumer stands by (it waits for
//! the state file's lock, so it must share the state path: same host or a shared volume) and
//! takes over when the active one stops.

pub mod correlate;
pub mod run;
pub mod store;

use serde::{Deserialize, Serialize};
use simboxd_core::config::Invalid;
use std::path::PathBuf;

/// `[central]`: the correlator (only `simboxd central` reads it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CentralConfig {
    /// Durable JetStream consumer name shared by central instances.
    pub durable: String,
    /// State file (redb): line evidence per sensor, sensor alerts received, open episodes.
    pub state_path: PathBuf,
    /// Lines held; beyond it the line updated longest ago is dropped (counted).
    pub max_lines: usize,
    /// A sensor's view of a line not refreshed for this long (packet time) is dropped.
    pub line_idle_secs: u32,
    /// Messages fetched, applied and committed together before their acks.
    pub batch: usize,
    /// Seconds JetStream waits for an ack before redelivering a message.
    pub ack_wait_secs: u32,
    /// Threat events of all sensors kept in the state file (the threat table is rebuilt from
    /// them at start); beyond it the oldest go (counted).
    pub max_threat_events: u64,
    /// Sensor alert keys and threat-event chunk keys remembered (each) to drop redeliveries;
    /// beyond it the oldest are forgotten (counted).
    pub max_dedup_keys: u64,
    /// Packet seconds a site must stay dissolved before its alert is cleared (a site missing a
    /// member between two sensors' summaries stays the same episode).
    pub site_clear_secs: u32,
}

impl Default for CentralConfig {
    fn default() -> Self {
        CentralConfig {
            durable: "simboxd-central".into(),
            state_path: PathBuf::from("/var/lib/simboxd/central.redb"),
            max_lines: 1_000_000,
            line_idle_secs: 7 * 86_400,
            batch: 512,
            ack_wait_secs: 30,
            max_threat_events: 200_000,
            max_dedup_keys: 1_000_000,
            site_clear_secs: correlate::SITE_CLEAR_SECS as u32,
        }
    }
}

impl CentralConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.durable.is_empty()
            || !self
                .durable
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Invalid::new(
                "durable",
                format!(
                    "central.durable {:?}: letters, digits, '-' or '_'",
                    self.durable
                ),
            ));
        }
        if self.state_path.as_os_str().is_empty() {
            return Err(Invalid::new(
                "state_path",
                "central.state_path must not be empty".into(),
            ));
        }
        if self.max_lines == 0 {
            return Err(Invalid::new(
                "max_lines",
                "central.max_lines must be at least 1".into(),
            ));
        }
        if !(1..=10_000).contains(&self.batch) {
            return Err(Invalid::new(
                "batch",
                "central.batch must be between 1 and 10000".into(),
            ));
        }
        if !(1..=3600).contains(&self.ack_wait_secs) {
            return Err(Invalid::new(
                "ack_wait_secs",
                "central.ack_wait_secs must be between 1 and 3600".into(),
            ));
        }
        if !(1_000..=100_000_000).contains(&self.max_threat_events) {
            return Err(Invalid::new(
                "max_threat_events",
                "central.max_threat_events must be between 1000 and 100000000".into(),
            ));
        }
        if !(1_000..=100_000_000).contains(&self.max_dedup_keys) {
            return Err(Invalid::new(
                "max_dedup_keys",
                "central.max_dedup_keys must be between 1000 and 100000000".into(),
            ));
        }
        if !(1..=86_400).contains(&self.site_clear_secs) {
            return Err(Invalid::new(
                "site_clear_secs",
                "central.site_clear_secs must be between 1 and 86400".into(),
            ));
        }
        if self.line_idle_secs < 60 {
            return Err(Invalid::new(
                "line_idle_secs",
                "central.line_idle_secs must be at least 60".into(),
            ));
        }
        Ok(())
    }
}

#[derive(clap::Args, Debug)]
pub struct CentralArgs {
    /// Config file (TOML): `[stream]`, `[central]`, `[detection]`, `[alert]`, `[syslog]`,
    /// `[webhook]`, `[storage]`, `[http]`.
    #[arg(long, short, default_value = "/etc/simboxd/simboxd.toml")]
    pub config: PathBuf,
}

/// `simboxd central`: runs until SIGTERM/SIGINT.
pub fn central_main(args: CentralArgs) -> anyhow::Result<()> {
    let cfg = match crate::config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    if cfg.stream.url.is_none() {
        let text = std::fs::read_to_string(&args.config).unwrap_or_default();
        let (line, col) = crate::config::key_position(&text, "stream", "url");
        eprintln!(
            "{}:{line}:{col}: simboxd central needs stream.url",
            args.config.display()
        );
        std::process::exit(1);
    }
    if let Err((key, why)) = cfg.stream.check_files() {
        let text = std::fs::read_to_string(&args.config).unwrap_or_default();
        let (line, col) = crate::config::key_position(&text, "stream", key);
        eprintln!("{}:{line}:{col}: {why}", args.config.display());
        std::process::exit(1);
    }
    crate::daemon::logging::init(&cfg.daemon);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("simboxd-central")
        .build()?;
    rt.block_on(run::run(cfg))
}
