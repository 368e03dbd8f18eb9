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
pub(crate) mod correlate;
pub mod evidence;
pub(crate) mod notify;
pub(crate) mod outputs;
pub mod pipeline;
pub(crate) mod privdrop;
pub(crate) mod runtime;
pub(crate) mod sensor;
pub(crate) mod state;
pub(crate) mod validate;

use crate::config::{key_position, Config, ConfigError};
use std::path::{Path, PathBuf};

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
    crate::logging::init(&cfg.daemon);
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
