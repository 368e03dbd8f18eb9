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

pub(crate) mod correlate;
pub mod run;
pub mod store;

use std::path::PathBuf;

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
    crate::logging::init(&cfg.daemon);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("simboxd-central")
        .build()?;
    rt.block_on(run::run(cfg))
}
