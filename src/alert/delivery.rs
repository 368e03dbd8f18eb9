//! Delivery workers: one tokio task per target reads the outbox, sends, and marks an alert
//! delivered only after the receiver accepted it.
//!
//! Contract: a target that is down (refused connection, timeout, 5xx) retries with capped,
//! jittered exponential backoff and never blocks the other targets or the caller
//! (`Delivery::submit` only commits to the outbox and wakes the workers). Alerts go out in
//! outbox order per target. An alert the target refuses (4xx, a certificate it presents that is
//! not trusted, a RELP error answer) never blocks the alerts behind it: it is retried with
//! backoff beside them and, after `dead_letter_after` attempts, moved to the target's
//! dead-letter list (logged, counted, retried on request). Every retry loop backs off: sends,
//! outbox reads and reopening a store whose disk failed. Dropping a [`Delivery`] aborts the
//! workers without any bookkeeping (what a crash does); nothing is lost because pending marks
//! live in the outbox.

use super::outbox::{Outbox, OutboxError, StorageConfig};
use super::syslog::{
    SendError, SyslogConfig, SyslogFormatter, SyslogProto, SyslogSender, SyslogTarget,
};
use super::webhook::{WebhookConfig, WebhookSender};
use super::{Alert, AlertConfig, AlertManager};
use crate::privacy::Pseudonymizer;
use crate::stream::publisher::{AlertSendError, AlertSender};
use crate::stream::{StreamConfig, StreamError};
use rand::Rng;
use serde::Serialize;
use simboxd_core::model::{LineVerdict, Timestamp};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// Retry timing of the workers.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// How often an idle worker looks at the outbox even without a wake-up.
    pub poll: Duration,
    /// Per attempt: connect + send.
    pub timeout: Duration,
    /// Attempts an alert the target refuses gets before it goes to the dead-letter list.
    pub dead_letter_after: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            poll: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            dead_letter_after: 5,
        }
    }
}

impl Backoff {
    /// Retry timing from `[alert]` (`retry_initial_ms`, `retry_max_secs`).
    pub fn from_config(cfg: &super::AlertConfig) -> Backoff {
        Backoff {
            initial: Duration::from_millis(u64::from(cfg.retry_initial_ms)),
            max: Duration::from_secs(u64::from(cfg.retry_max_secs)),
            dead_letter_after: cfg.dead_letter_after,
            ..Backoff::default()
        }
    }

    /// Delay before retry number `attempt` (0-based): doubling, capped, with +-25 % jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        let jitter = rand::rng().random_range(0.75..1.25);
        base.mul_f64(jitter).min(self.max)
    }
}

/// What one worker delivers to.
pub enum Target {
    Syslog(SyslogSender),
    Webhook(WebhookSender),
    /// NATS JetStream (`[stream] url`), for a central correlator.
    Stream(Box<AlertSender>),
}

impl Target {
    /// The outbox name of the target: its URL.
    pub fn name(&self) -> String {
        match self {
            Target::Syslog(s) => s.target().to_string(),
            Target::Webhook(w) => w.url().to_string(),
            Target::Stream(n) => n.name(),
        }
    }

    async fn send(&mut self, alert: &Alert) -> Result<(), SendError> {
        match self {
            Target::Syslog(s) => s.send(alert).await,
            Target::Webhook(w) => w.send(alert).await,
            Target::Stream(n) => {
                let payload = serde_json::to_vec(alert).unwrap_or_default();
                n.send(&alert.idempotency_key, payload)
                    .await
                    .map_err(|e| match e {
                        AlertSendError::Connect(e) => SendError::Connect(n.name(), e.to_string()),
                        AlertSendError::Publish(StreamError::Timeout(s)) => SendError::Timeout(s),
                        AlertSendError::Publish(e) => SendError::Io(n.name(), e.to_string()),
                    })
            }
        }
    }
}

/// The sections delivery is built from: `[alert]`, `[syslog]`, `[webhook]`, `[storage]` and,
/// for the JetStream target, `[stream]` (`None`: no stream target, as for `simboxd central`,
/// whose alerts must not go back into the stream it reads).
#[derive(Clone, Copy)]
pub struct DeliverySections<'a> {
    pub alert: &'a AlertConfig,
    pub syslog: &'a SyslogConfig,
    pub webhook: &'a WebhookConfig,
    pub storage: &'a StorageConfig,
    pub stream: Option<&'a StreamConfig>,
}

/// Builds the targets configured in `[syslog]`, `[webhook]` and `[stream]` (reads CA files).
pub fn targets_from_config(
    cfg: DeliverySections<'_>,
    timeout: Duration,
) -> Result<Vec<Target>, DeliveryError> {
    let mut out = Vec::new();
    let origin = super::format::Origin::from_config(cfg.alert);
    let formatter = SyslogFormatter::from_config(cfg.syslog, origin.clone());
    let needs_tls = cfg
        .syslog
        .targets
        .iter()
        .any(|t| t.target.proto == SyslogProto::Tls);
    let syslog_tls = if needs_tls {
        Some(tls_client_config(cfg.syslog.ca_file.as_deref())?)
    } else {
        None
    };
    for t in &cfg.syslog.targets {
        let format = t.format.unwrap_or(cfg.syslog.format);
        out.push(Target::Syslog(SyslogSender::new(
            t.target.clone(),
            Arc::new(formatter.with_format(format)),
            syslog_tls.clone(),
            timeout,
        )));
    }
    if let Some(url) = &cfg.webhook.url {
        let tls = if url.https {
            Some(tls_client_config(cfg.webhook.ca_file.as_deref())?)
        } else {
            None
        };
        let t = Duration::from_secs(u64::from(cfg.webhook.timeout_secs))
            .min(timeout.max(Duration::from_secs(1)));
        out.push(Target::Webhook(
            WebhookSender::new(url.clone(), cfg.webhook.auth_header.clone(), tls, t)
                .with_format(cfg.webhook.format, origin.clone()),
        ));
    }
    if let Some(n) = cfg.stream.and_then(|s| AlertSender::new(s, timeout)) {
        out.push(Target::Stream(Box::new(n)));
    }
    Ok(out)
}

/// A syslog target from a URL with explicit settings (tests, tools).
pub fn syslog_target(
    target: SyslogTarget,
    formatter: SyslogFormatter,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<Target, DeliveryError> {
    let tls = if target.proto == SyslogProto::Tls {
        Some(tls_client_config(ca_file)?)
    } else {
        None
    };
    Ok(Target::Syslog(SyslogSender::new(
        target,
        Arc::new(formatter),
        tls,
        timeout,
    )))
}

const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// rustls client settings trusting `ca_file`, or the system CA bundle when `None`.
pub fn tls_client_config(
    ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, DeliveryError> {
    let path = match ca_file {
        Some(p) => p.to_path_buf(),
        None => SYSTEM_CA_FILES
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .map(Path::to_path_buf)
            .ok_or_else(|| DeliveryError::CaFile {
                path: SYSTEM_CA_FILES.join(", "),
                reason: "no system CA bundle found; set ca_file".into(),
            })?,
    };
    let shown = path.display().to_string();
    let pem = std::fs::read(&path).map_err(|e| DeliveryError::CaFile {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| DeliveryError::CaFile {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        // Skip certificates rustls cannot use instead of failing on a whole system bundle.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(DeliveryError::CaFile {
            path: shown,
            reason: "no usable certificate".into(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DeliveryError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// `tls_connect` for a delivery target: a handshake the receiver or its certificate fails
/// (untrusted or wrong name: rustls reports `InvalidData`) is a refusal; a reset or a closed
/// connection is an outage.
pub(crate) async fn tls_connect_target(
    cfg: Arc<rustls::ClientConfig>,
    host: &str,
    tcp: tokio::net::TcpStream,
    name: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, SendError> {
    let server = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| SendError::TlsRefused(name.to_string(), e.to_string()))?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(server, tcp)
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                SendError::TlsRefused(name.to_string(), e.to_string())
            } else {
                SendError::Tls(name.to_string(), e.to_string())
            }
        })
}

pub(crate) async fn tls_connect(
    cfg: Arc<rustls::ClientConfig>,
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let name =
        rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// Figures of one worker, for the API and metrics.
#[derive(Debug, Default)]
pub struct TargetStats {
    pub delivered: AtomicU64,
    pub failures: AtomicU64,
    /// Refusals (each attempt) and alerts moved to the dead-letter list.
    pub refused: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub up: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TargetStatus {
    pub target: String,
    pub delivered: u64,
    pub failures: u64,
    pub up: bool,
    pub last_error: Option<String>,
    pub pending: u64,
    /// Refused attempts so far (this process).
    pub refused: u64,
    /// Alerts this process moved to the dead-letter list.
    pub dead_lettered: u64,
    /// Alerts in the target's dead-letter list now.
    pub dead_letter: u64,
}

struct Worker {
    name: String,
    stats: Arc<TargetStats>,
    wake: Arc<Notify>,
    handle: JoinHandle<()>,
}

/// The running delivery workers.
pub struct Delivery {
    outbox: Arc<Outbox>,
    workers: Vec<Worker>,
    stop: watch::Sender<bool>,
}

const BATCH: usize = 64;
/// Refused alerts one worker tracks for retry at once (beyond it one's count starts over).
const MAX_REFUSED: usize = 4096;

impl Delivery {
    /// Starts one worker per target on the current tokio runtime. The outbox must have been opened
    /// with the targets' names (`Target::name`).
    pub fn start(outbox: Arc<Outbox>, targets: Vec<Target>, backoff: Backoff) -> Delivery {
        let (stop, stop_rx) = watch::channel(false);
        let mut workers = Vec::with_capacity(targets.len());
        for target in targets {
            let name = target.name();
            let stats = Arc::new(TargetStats::default());
            let wake = Arc::new(Notify::new());
            let handle = tokio::spawn(run_worker(
                target,
                name.clone(),
                outbox.clone(),
                stats.clone(),
                wake.clone(),
                stop_rx.clone(),
                backoff,
            ));
            workers.push(Worker {
                name,
                stats,
                wake,
                handle,
            });
        }
        Delivery {
            outbox,
            workers,
            stop,
        }
    }

    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Commits `alert` to the outbox, then wakes the workers. Returns false for a duplicate.
    /// Blocking (one redb commit); from async code prefer `submit_async`.
    pub fn submit(&self, alert: &Alert) -> Result<bool, OutboxError> {
        let fresh = self.outbox.enqueue(alert)?;
        self.wake();
        Ok(fresh)
    }

    /// As `submit`, on the blocking pool.
    pub async fn submit_async(&self, alert: Alert) -> Result<bool, OutboxError> {
        let ob = self.outbox.clone();
        let fresh = tokio::task::spawn_blocking(move || ob.enqueue(&alert))
            .await
            .unwrap_or_else(|e| Err(OutboxError::Corrupt(0, format!("enqueue task: {e}"))))?;
        self.wake();
        Ok(fresh)
    }

    /// Makes every worker look at the outbox now.
    pub fn wake(&self) {
        for w in &self.workers {
            w.wake.notify_one();
        }
    }

    pub fn status(&self) -> Vec<TargetStatus> {
        let backlog = self.outbox.backlog().unwrap_or_default();
        let dead = self.outbox.dead_letter_counts().unwrap_or_default();
        self.workers
            .iter()
            .map(|w| TargetStatus {
                target: w.name.clone(),
                delivered: w.stats.delivered.load(Ordering::Relaxed),
                failures: w.stats.failures.load(Ordering::Relaxed),
                up: w.stats.up.load(Ordering::Relaxed),
                last_error: w.stats.last_error.lock().ok().and_then(|g| g.clone()),
                pending: backlog.get(&w.name).copied().unwrap_or(0),
                refused: w.stats.refused.load(Ordering::Relaxed),
                dead_lettered: w.stats.dead_lettered.load(Ordering::Relaxed),
                dead_letter: dead.get(&w.name).copied().unwrap_or(0),
            })
            .collect()
    }

    /// Stops the workers after their current attempt (bounded by `grace`).
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let workers = std::mem::take(&mut self.workers);
        for w in workers {
            let abort = w.handle.abort_handle();
            if tokio::time::timeout(grace, w.handle).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Delivery {
    /// Opens the outbox at `[storage] path` and starts a worker for every configured target.
    /// Needs a tokio runtime.
    pub fn from_config(cfg: DeliverySections<'_>) -> Result<Delivery, DeliveryError> {
        let backoff = Backoff::from_config(cfg.alert);
        let targets = targets_from_config(cfg, backoff.timeout)?;
        let names = targets.iter().map(Target::name).collect();
        let outbox = Arc::new(Outbox::open(cfg.storage, names)?);
        Ok(Delivery::start(outbox, targets, backoff))
    }
}

/// What the daemon feeds verdicts into: the lifecycle manager, the pseudonymizer and delivery.
/// Every alert it returns is already committed to the outbox.
pub struct AlertSink {
    pub manager: AlertManager,
    privacy: Pseudonymizer,
    delivery: Arc<Delivery>,
}

impl AlertSink {
    pub fn new(manager: AlertManager, privacy: Pseudonymizer, delivery: Arc<Delivery>) -> Self {
        AlertSink {
            manager,
            privacy,
            delivery,
        }
    }

    pub fn delivery(&self) -> &Arc<Delivery> {
        &self.delivery
    }

    /// Feeds one verdict; commits and returns the alerts it causes. Blocking (redb commit).
    pub fn on_verdict(&mut self, v: &LineVerdict) -> Result<Vec<Alert>, OutboxError> {
        let alerts = self.manager.on_verdict_with(v, &self.privacy);
        for a in &alerts {
            self.delivery.submit(a)?;
        }
        Ok(alerts)
    }

    /// Clears quiet lines as of packet time `now`; commits and returns the clears.
    pub fn tick(&mut self, now: Timestamp) -> Result<Vec<Alert>, OutboxError> {
        let alerts = self.manager.expire(now);
        for a in &alerts {
            self.delivery.submit(a)?;
        }
        Ok(alerts)
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        for w in &self.workers {
            w.handle.abort();
        }
    }
}

async fn blocking<T: Send + 'static>(
    ob: &Arc<Outbox>,
    f: impl FnOnce(&Outbox) -> Result<T, OutboxError> + Send + 'static,
) -> Result<T, OutboxError> {
    let ob = ob.clone();
    tokio::task::spawn_blocking(move || f(&ob))
        .await
        .unwrap_or_else(|e| Err(OutboxError::Corrupt(0, format!("outbox task: {e}"))))
}

/// Sleeps `d` unless told to stop; returns true when stopping.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>, wake: Option<&Notify>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = async { match wake { Some(w) => w.notified().await, None => std::future::pending().await } } => false,
        r = stop.changed() => r.is_err() || *stop.borrow(),
    }
}

async fn run_worker(
    mut target: Target,
    name: String,
    outbox: Arc<Outbox>,
    stats: Arc<TargetStats>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    backoff: Backoff,
) {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Instant;
    let label = crate::metrics::target_label(&name);
    // Outages of the target in a row, and of the outbox.
    let mut attempt: u32 = 0;
    let mut read_failures: u32 = 0;
    let mut log = super::delivery_log::DeliveryLog::new(&name);
    // Alerts this target refused: idempotency key -> (attempts, next attempt). Bounded by the
    // alerts owed to the target; each leaves on acceptance or to the dead-letter list.
    let mut refused: BTreeMap<String, (u32, Instant)> = BTreeMap::new();
    loop {
        if *stop.borrow() {
            return;
        }
        // A store whose disk failed is reopened (with its own backoff) from here too.
        let _ = blocking(&outbox, |ob| Ok(ob.maintain())).await;
        let now = Instant::now();
        let skip: BTreeSet<String> = refused
            .iter()
            .filter(|(_, (_, at))| *at > now)
            .map(|(k, _)| k.clone())
            .collect();
        let n = name.clone();
        let batch = match blocking(&outbox, move |ob| ob.pending_except(&n, BATCH, &skip)).await {
            Ok(b) => {
                read_failures = 0;
                b
            }
            Err(e) => {
                if read_failures == 0 {
                    tracing::warn!(target: "simboxd::alert", delivery_target = %label, error = %e, "outbox read failed");
                }
                let d = backoff.delay(read_failures);
                read_failures = read_failures.saturating_add(1);
                if pause(d, &mut stop, None).await {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            // Idle: until woken, the poll period, or the next refused alert is due.
            let due = refused
                .values()
                .map(|(_, at)| at.saturating_duration_since(now))
                .min()
                .map_or(backoff.poll, |d| d.min(backoff.poll));
            if pause(due.max(Duration::from_millis(5)), &mut stop, Some(&wake)).await {
                return;
            }
            continue;
        }
        for alert in batch {
            if *stop.borrow() {
                return;
            }
            let taken = Instant::now();
            let key = alert.idempotency_key.clone();
            match target.send(&alert.sanitized()).await {
                Ok(()) => {
                    stats.up.store(true, Ordering::Relaxed);
                    attempt = 0;
                    refused.remove(&key);
                    log.delivered(Instant::now());
                    crate::metrics::observe_delivery(&name, taken.elapsed().as_secs_f64());
                    let n = name.clone();
                    match blocking(&outbox, move |ob| ob.mark_delivered(&n, &key)).await {
                        Ok(_) => {
                            stats.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            // The receiver has it; a re-send carries the same idempotency key.
                            tracing::warn!(target: "simboxd::alert", delivery_target = %label, error = %e, "cannot mark delivered");
                        }
                    }
                }
                Err(e) if e.is_refusal() => {
                    // The receiver answered but will not take this alert: try the others.
                    stats.up.store(e.reached_receiver(), Ordering::Relaxed);
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut g) = stats.last_error.lock() {
                        *g = Some(e.to_string());
                    }
                    let now = Instant::now();
                    let tries = refused.get(&key).map_or(1, |(n, _)| n.saturating_add(1));
                    let retry_in = backoff.delay(tries - 1);
                    refused.insert(key.clone(), (tries, now + retry_in));
                    // Alerts dropped from the outbox (size bound) while refused would linger.
                    if refused.len() > MAX_REFUSED {
                        if let Some(oldest) = refused.keys().next().cloned() {
                            refused.remove(&oldest);
                        }
                    }
                    if tries < backoff.dead_letter_after {
                        log.failed(now, &e, retry_in);
                        continue;
                    }
                    let (n, k, why) = (name.clone(), key.clone(), e.to_string());
                    match blocking(&outbox, move |ob| ob.dead_letter(&n, &k, tries, &why)).await {
                        Ok(true) => {
                            refused.remove(&key);
                            stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(target: "simboxd::alert", delivery_target = %label,
                                id = %alert.id, key = %key, attempts = tries, error = %e,
                                "alert refused by the target: moved to its dead-letter list");
                        }
                        // Not stored yet (held in memory) or a store failure: try again later.
                        Ok(false) | Err(_) => {
                            log.failed(now, &e, retry_in);
                        }
                    }
                }
                Err(e) => {
                    stats.up.store(false, Ordering::Relaxed);
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut g) = stats.last_error.lock() {
                        *g = Some(e.to_string());
                    }
                    let d = backoff.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    log.failed(Instant::now(), &e, d);
                    if pause(d, &mut stop, None).await {
                        return;
                    }
                    // The target is down: start over from the oldest owed alert (order).
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            ..Default::default()
        };
        assert_eq!(b.dead_letter_after, 5);
        for _ in 0..50 {
            let d0 = b.delay(0);
            assert!(
                d0 >= Duration::from_millis(75) && d0 <= Duration::from_millis(125),
                "{d0:?}"
            );
            let d3 = b.delay(3);
            assert!(
                d3 >= Duration::from_millis(600) && d3 <= Duration::from_millis(1000),
                "{d3:?}"
            );
            assert!(b.delay(40) <= Duration::from_secs(2));
        }
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("empty.pem");
        std::fs::write(&f, "not a cert").unwrap();
        let e = tls_client_config(Some(&f)).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no usable certificate"),
            "{e}"
        );
        let e = tls_client_config(Some(&dir.path().join("missing.pem")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
