//! The daemon: `simboxd run` captures live (or replays a file), runs the engine on worker
//! threads, serves the HTTP API and talks to systemd; `simboxd validate` checks a config.
//!
//! Contract: this is the only module that reads the wall clock, spawns threads or opens
//! sockets. Order at start: load config -> open capture -> bind API -> drop privileges ->
//! start threads -> READY=1. SIGHUP re-reads the config without touching the engines' state
//! (RELOADING=1 ... READY=1); SIGTERM/SIGINT stop the capture, let the workers drain, write
//! the last checkpoint and exit (STOPPING=1). Line profiles are checkpointed every
//! `checkpoint_interval_secs` and alert episodes as they change (`state`), so a crash loses at
//! most one interval of profile changes and no episode. Whatever is dropped anywhere is counted and exported in `/metrics`.

pub mod adapter;
pub mod correlate;
pub mod evidence;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod outputs;
pub mod pipeline;
pub mod privdrop;
pub mod runtime;
pub mod sensor;
pub mod state;
pub mod validate;

use crate::config::{key_position, Config, ConfigError};
use serde::{Deserialize, Serialize};
use simboxd_core::config::Invalid;
use std::path::{Path, PathBuf};

/// `[daemon]`: process settings of `simboxd run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// User to switch to once the capture is open (as root). Empty: keep the current user.
    pub user: String,
    /// Group to switch to; empty: the user's primary group.
    pub group: String,
    /// Engine threads; packets are sharded over them by line address. Sites and threats are
    /// formed over the lines of all of them. Default: one per core.
    pub workers: usize,
    /// Packets queued per worker before a live capture drops (counted as `queue_full`).
    pub queue_packets: usize,
    /// Seconds of packet time between housekeeping ticks (expiry, re-evaluation).
    pub tick_secs: f64,
    /// Log level when `RUST_LOG` is not set: error, warn, info, debug, trace.
    pub log_level: String,
    /// `text` (journald-friendly lines) or `json` (one object per line).
    pub log_format: String,
    /// Seconds between checkpoints of the line profiles that changed (to `state.redb` beside
    /// the outbox); open alert episodes are committed as they change, and everything at stop.
    pub checkpoint_interval_secs: u64,
}

/// One engine thread per core (the capture thread shares them: it costs far less per packet).
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS)
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            user: "simboxd".to_string(),
            group: "simboxd".to_string(),
            workers: default_workers(),
            queue_packets: 65536,
            tick_secs: 1.0,
            log_level: "info".to_string(),
            log_format: "text".to_string(),
            checkpoint_interval_secs: 30,
        }
    }
}

/// Most worker threads accepted.
pub const MAX_WORKERS: usize = 64;

impl DaemonConfig {
    /// Values that parse but cannot work.
    pub fn validate(&self) -> Result<(), Invalid> {
        let d = self;
        if d.workers == 0 || d.workers > MAX_WORKERS {
            return Err(Invalid::new(
                "workers",
                format!("daemon.workers must be between 1 and {MAX_WORKERS}"),
            ));
        }
        if d.queue_packets < pipeline::BATCH_PACKETS {
            return Err(Invalid::new(
                "queue_packets",
                format!(
                    "daemon.queue_packets must be at least {}",
                    pipeline::BATCH_PACKETS
                ),
            ));
        }
        if !(d.tick_secs.is_finite() && (0.05..=60.0).contains(&d.tick_secs)) {
            return Err(Invalid::new(
                "tick_secs",
                "daemon.tick_secs must be between 0.05 and 60".to_string(),
            ));
        }
        if !matches!(
            d.log_level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return Err(Invalid::new(
                "log_level",
                format!(
                    "daemon.log_level {:?} is not one of error, warn, info, debug, trace",
                    d.log_level
                ),
            ));
        }
        if !(1..=86_400).contains(&d.checkpoint_interval_secs) {
            return Err(Invalid::new(
                "checkpoint_interval_secs",
                "daemon.checkpoint_interval_secs must be between 1 and 86400".to_string(),
            ));
        }
        if !matches!(d.log_format.as_str(), "text" | "json") {
            return Err(Invalid::new(
                "log_format",
                format!("daemon.log_format {:?} is not text or json", d.log_format),
            ));
        }
        if d.group.is_empty() && d.user.is_empty() {
            // fine: no drop at all
        } else if d.user.is_empty() {
            return Err(Invalid::new(
                "group",
                "daemon.group needs daemon.user".to_string(),
            ));
        }
        Ok(())
    }
}

/// Loads `path` as a config for `run`: `Config::load` plus what only a running daemon needs
/// (a capture source, a readable token file). Errors read `FILE:LINE:COL: reason`.
pub fn load_run_config(path: &Path) -> Result<Config, ConfigError> {
    let cfg = Config::load(path)?;
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let invalid = |section: &str, key: &str, message: String| {
        let (line, column) = key_position(&text, section, key);
        ConfigError::Invalid {
            file: file.clone(),
            line,
            column,
            message,
        }
    };
    let interfaces = cfg.capture.interface_list();
    match (interfaces.first(), &cfg.capture.file) {
        (None, None) => {
            return Err(invalid(
                "capture",
                "interface",
                "capture.interface or capture.file is required".to_string(),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                "capture",
                "file",
                "capture.interface and capture.file are mutually exclusive".to_string(),
            ))
        }
        _ => {}
    }
    if let Some(f) = &cfg.capture.file {
        if !f.is_file() {
            return Err(invalid(
                "capture",
                "file",
                format!("capture.file {} does not exist", f.display()),
            ));
        }
    }
    if let Err(why) = cfg.http.resolve_token() {
        return Err(invalid("http", "token_file", why));
    }
    if let (Some(cert), Some(key)) = (&cfg.http.tls_cert, &cfg.http.tls_key) {
        if let Err(why) = crate::http::tls::server_config(cert, key) {
            return Err(invalid("http", "tls_cert", why));
        }
    }
    if let Err(e) = crate::privacy::Pseudonymizer::from_config(&cfg.privacy) {
        return Err(invalid("privacy", "key_file", e.to_string()));
    }
    if let Err((key, why)) = cfg.stream.check_files() {
        return Err(invalid("stream", key, why));
    }
    // CA files are read here, so an unreadable one fails `validate`, not the start.
    if let Err(e) = crate::alert::delivery::targets_from_config(
        cfg.delivery(),
        std::time::Duration::from_secs(1),
    ) {
        let webhook_ca = cfg
            .webhook
            .ca_file
            .as_ref()
            .map(|p| p.display().to_string());
        let section = match &e {
            crate::alert::delivery::DeliveryError::CaFile { path, .. }
                if Some(path) == webhook_ca.as_ref() =>
            {
                "webhook"
            }
            _ => "syslog",
        };
        return Err(invalid(section, "ca_file", e.to_string()));
    }
    Ok(cfg)
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Config file (TOML).
    #[arg(long, short, default_value = "/etc/simboxd/simboxd.toml")]
    pub config: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Config file (TOML).
    #[arg(long, short, default_value = "/etc/simboxd/simboxd.toml")]
    pub config: PathBuf,
}

/// Prints the host findings of `cfg` (`FILE:LINE:COL: reason`, warnings prefixed `warning: `)
/// on stderr; true when there is an error among them.
fn report_findings(path: &Path, cfg: &Config) -> bool {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let findings = validate::check_host(cfg);
    for f in &findings {
        let (line, column) = key_position(&text, f.section, f.key);
        let level = match f.level {
            validate::Level::Error => "",
            validate::Level::Warning => "warning: ",
        };
        eprintln!("{}:{line}:{column}: {level}{}", path.display(), f.message);
    }
    findings.iter().any(|f| f.level == validate::Level::Error)
}

/// `simboxd validate`: the config (`load_run_config`) and what this host would refuse at start
/// (`validate::check_host`). Prints `FILE: ok` and exits 0, or each error (`FILE:LINE:COL:
/// reason`) on stderr and exits 1. Warnings go to stderr and do not fail.
pub fn validate_main(args: ValidateArgs) -> anyhow::Result<()> {
    match load_run_config(&args.config) {
        Ok(cfg) => {
            if report_findings(&args.config, &cfg) {
                std::process::exit(1);
            }
            println!("{}: ok", args.config.display());
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// `simboxd run`: refuses to start on what `validate` finds; then runs until stopped.
pub fn run_main(args: RunArgs) -> anyhow::Result<()> {
    let cfg = match load_run_config(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    if report_findings(&args.config, &cfg) {
        std::process::exit(1);
    }
    logging::init(&cfg.daemon);
    // No transparent huge pages in the daemon: the allocator asks for them, and then every page
    // it returns to the kernel and takes again costs zeroing 2 MiB, and a sparsely used 2 MiB
    // page counts whole in the resident size. Measured at 300 k lines: more than half of the
    // start-up spent zeroing huge pages. (Best effort: kernels without it keep THP.)
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    runtime::run(args.config, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_and_http_defaults_are_valid() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.daemon.user, "simboxd");
        assert_eq!(c.daemon.validate(), Ok(()));
        assert_eq!(c.http.validate(), Ok(()));
    }

    #[test]
    fn zero_workers_is_located() {
        let e = Config::parse("[daemon]\nworkers = 0\n", "d.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "d.toml:2:1: daemon.workers must be between 1 and 64"
        );
    }

    #[test]
    fn short_token_is_located() {
        let e = Config::parse("[http]\n\n token = \"abc\"\n", "h.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "h.toml:3:2: http.token must be at least 16 characters"
        );
    }
}
