//! Wiring of the running daemon: threads, the tokio side (API, verdicts, signals, watchdog)
//! and the shared view the API reads.

use super::adapter::EngineWorker;
use super::evidence::store::{self as evidence_store, Store, StoreMsg};
use super::evidence::{ring, EvidenceStats, Tap};
use super::load_run_config;
use super::notify::{watchdog_interval, Notifier};
use super::pipeline::{self, PacketEngine, PipelineStats, Source};
use super::privdrop::{drop_privileges, Dropped};
use super::state::{load_legacy, StateStore};
use crate::alert::delivery::{targets_from_config, Backoff, Delivery};
use crate::alert::outbox::Outbox;
use crate::alert::{AlertManager, AlertState};
use crate::config::Config;
use crate::http::{Api, ApiSource, TokenCheck};
use crate::privacy::Pseudonymizer;
use anyhow::Context;
use simboxd_core::model::VerdictLevel;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Verdict changes queued from the workers to the alert side.
mod metrics;

const VERDICT_QUEUE: usize = 4096;
/// Longest wait for the workers and the alert side at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the API and the signal handlers share.
pub struct Shared<E: PacketEngine> {
    config_path: PathBuf,
    config: RwLock<Config>,
    engines: Vec<Arc<Mutex<E>>>,
    stats: Arc<PipelineStats>,
    /// Line profiles and alert episodes across restarts (checkpointed).
    state: StateStore,
    /// One checkpoint at a time.
    checkpointing: Mutex<()>,
    /// Lines removed whose removal could not be written yet (retried at the next checkpoint).
    unsaved_removals: Mutex<Vec<IpAddr>>,
    checkpoints_ok: AtomicU64,
    checkpoints_failed: AtomicU64,
    checkpoint_lines: AtomicU64,
    /// Sorted keys of every line for `/api/v1/lines`, rebuilt at most every `SNAPSHOT_MAX_AGE`.
    line_snapshot: Mutex<Option<(Instant, Arc<Vec<LineKey>>)>>,
    /// One snapshot build at a time (readers arriving meanwhile get the one it makes).
    snapshot_building: Mutex<()>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    started: Instant,
    live: bool,
    capture_desc: String,
    outbox: Arc<Outbox>,
    delivery: Mutex<Option<Delivery>>,
    /// Alerts made, by state (raised, updated, cleared).
    alerts_made: [AtomicU64; 3],
    alerts_open: AtomicU64,
    alert_evictions: AtomicU64,
    /// Alerts the outbox could not store.
    alert_store_errors: AtomicU64,
    /// What spans the workers' lines: threats and site candidates.
    correlator: Option<Arc<super::correlate::Correlator>>,
    /// The evidence writer (`[evidence] enabled`).
    evidence: Option<EvidenceSide>,
    /// The stream publisher (`[stream] url`), for `/metrics`.
    stream: std::sync::OnceLock<Arc<crate::stream::publisher::Publisher>>,
}

/// The daemon's handle on the evidence writer thread.
pub struct EvidenceSide {
    tx: std::sync::mpsc::SyncSender<StoreMsg>,
    stats: Arc<EvidenceStats>,
    root: PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Sort key of a line in listings: verdict rank, score, address.
type LineKey = (u8, f64, IpAddr);
/// Oldest line snapshot a listing is served from.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(1);
/// Lines read per hold of an engine's lock (listing, checkpoint): a few milliseconds.
const LOCK_STEP: usize = 16_384;
/// Changed lines from which a checkpoint starts before its interval is over.
const CHECKPOINT_EARLY_LINES: usize = 4 * LOCK_STEP;

impl<E: PacketEngine> Shared<E> {
    /// Every line's sort key, sorted (flagged first, then by score, then by address). Built
    /// from the engines in steps of `LOCK_STEP` lines, so capture never waits long for a
    /// reader; shared by the readers of the next `SNAPSHOT_MAX_AGE`.
    fn line_snapshot(&self) -> Arc<Vec<LineKey>> {
        let fresh = |c: &Option<(Instant, Arc<Vec<LineKey>>)>| {
            c.as_ref()
                .filter(|(t, _)| t.elapsed() < SNAPSHOT_MAX_AGE)
                .map(|(_, s)| s.clone())
        };
        if let Some(s) = self.line_snapshot.lock().ok().and_then(|c| fresh(&c)) {
            return s;
        }
        let _one = self.snapshot_building.lock();
        if let Some(s) = self.line_snapshot.lock().ok().and_then(|c| fresh(&c)) {
            return s;
        }
        let mut all: Vec<LineKey> = Vec::new();
        for e in &self.engines {
            let mut from = Some(0);
            while let Some(f) = from {
                let Ok(eng) = e.lock() else { break };
                let (keys, next) = eng.line_keys(f, LOCK_STEP);
                drop(eng);
                all.extend(keys);
                from = next;
            }
        }
        all.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)));
        let snap = Arc::new(all);
        if let Ok(mut c) = self.line_snapshot.lock() {
            *c = Some((Instant::now(), snap.clone()));
        }
        snap
    }

    /// `f` on the engine that holds `line`: the one its packets go to, else any (a line whose
    /// events named another end than its packets' shard key).
    fn with_line<T>(&self, line: IpAddr, f: impl Fn(&E) -> Option<T>) -> Option<T> {
        let home = pipeline::shard_of_line(line, self.engines.len());
        let first = self.engines.get(home).into_iter();
        let rest = self
            .engines
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != home)
            .map(|(_, e)| e);
        first
            .chain(rest)
            .find_map(|e| e.lock().ok().and_then(|eng| f(&eng)))
    }

    /// Writes what changed since the last checkpoint: the lines of each engine in chunks of
    /// `LOCK_STEP` (one transaction each, the engine lock held only to take and encode a
    /// chunk), then the table counters and, when given, the open alert episodes. A failed
    /// write puts its lines back as changed, so the next checkpoint retries them. Returns the
    /// lines written.
    fn checkpoint(&self, alerts: Option<&AlertManager>) -> Result<usize, String> {
        let alerts = match alerts.map(serde_json::to_vec).transpose() {
            Ok(a) => a,
            Err(e) => return Err(e.to_string()),
        };
        let _one = self.checkpointing.lock();
        let res = self.checkpoint_lines().and_then(|n| {
            let counters: Vec<Vec<u8>> = self
                .engines
                .iter()
                .filter_map(|e| e.lock().ok().map(|eng| eng.counters()))
                .collect();
            self.state
                .write_meta(alerts.as_deref(), Some(&counters))
                .map(|()| n)
        });
        match &res {
            Ok(n) => {
                self.checkpoints_ok.fetch_add(1, Ordering::Relaxed);
                self.checkpoint_lines
                    .fetch_add(*n as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.checkpoints_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        res
    }

    fn checkpoint_lines(&self) -> Result<usize, String> {
        let mut written = 0;
        let retry = self
            .unsaved_removals
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        if let Err(why) = self.state.write_lines(&[], &retry) {
            self.keep_removals(retry);
            return Err(why);
        }
        let mut resynced = false;
        let mut i = 0;
        while let Some(e) = self.engines.get(i) {
            let ch = match e.lock() {
                Ok(mut eng) => eng.take_changes(LOCK_STEP),
                Err(_) => {
                    i += 1;
                    continue;
                }
            };
            if ch.resync && !resynced {
                // Removals overflowed their list: rewrite every line of every engine.
                resynced = true;
                self.state.clear_lines()?;
                for e in &self.engines {
                    if let Ok(mut eng) = e.lock() {
                        eng.mark_all_unsaved();
                    }
                }
                i = 0;
                continue;
            }
            if let Err(why) = self.state.write_lines(&ch.lines, &ch.removed) {
                let ips: Vec<IpAddr> = ch.lines.iter().map(|(ip, _)| *ip).collect();
                if let Ok(mut eng) = e.lock() {
                    eng.mark_unsaved(&ips);
                }
                self.keep_removals(ch.removed);
                return Err(why);
            }
            written += ch.lines.len();
            if !ch.more {
                i += 1;
            }
        }
        Ok(written)
    }

    fn keep_removals(&self, mut removed: Vec<IpAddr>) {
        if let Ok(mut r) = self.unsaved_removals.lock() {
            // Bounded: beyond a million, stale rows stay until the line table overflows its
            // own removal list and the store is rewritten.
            let room = 1_000_000usize.saturating_sub(r.len());
            removed.truncate(room);
            r.extend(removed);
        }
    }
}

impl<E: PacketEngine> ApiSource for Shared<E> {
    fn alerts(&self, limit: usize, offset: usize, state: Option<&str>) -> serde_json::Value {
        crate::http::alert_listing(&self.outbox, limit, offset, state)
    }

    fn lines(&self, limit: usize, offset: usize) -> serde_json::Value {
        let snap = self.line_snapshot();
        let total = snap.len();
        let page = snap.get(offset.min(total)..).unwrap_or(&[]);
        let lines: Vec<serde_json::Value> = page
            .iter()
            .take(limit)
            .filter_map(|&(_, _, ip)| self.with_line(ip, |e| e.line_listed(ip)))
            .filter_map(|l| serde_json::to_value(l).ok())
            .collect();
        serde_json::json!({ "lines": lines, "total": total, "offset": offset })
    }

    fn line(&self, addr: IpAddr) -> Option<serde_json::Value> {
        self.with_line(addr, |e| e.line_detail(addr))
            .and_then(|d| serde_json::to_value(d).ok())
    }

    fn threats(&self, limit: usize, offset: usize) -> serde_json::Value {
        let mut all = Vec::new();
        for e in &self.engines {
            if let Ok(eng) = e.lock() {
                all.extend(eng.threats());
            }
        }
        if let Some(c) = &self.correlator {
            all.extend(c.threats());
        }
        let merged = simboxd_core::threats::merge(all);
        let total = merged.len();
        let page: Vec<_> = merged.into_iter().skip(offset).take(limit).collect();
        serde_json::json!({ "threats": page, "total": total, "offset": offset })
    }

    fn metrics(&self) -> String {
        self.render_metrics()
    }

    fn evidence_list(&self, limit: usize) -> Option<serde_json::Value> {
        let ev = self.evidence.as_ref()?;
        Some(evidence_store::list(&ev.root, limit))
    }

    fn evidence_manifest(&self, id: &str) -> Option<serde_json::Value> {
        let ev = self.evidence.as_ref()?;
        serde_json::to_value(evidence_store::manifest(&ev.root, id)?).ok()
    }

    fn evidence_file(&self, id: &str, name: &str) -> Option<(PathBuf, u64)> {
        let ev = self.evidence.as_ref()?;
        evidence_store::file(&ev.root, id, name)
    }

    fn health(&self) -> Result<(), String> {
        let s = &self.stats;
        let capture_ok = s.capture_running.load(Ordering::Relaxed)
            || (!self.live && s.capture_done.load(Ordering::Relaxed));
        if !capture_ok {
            return Err(format!("capture on {} is not running", self.capture_desc));
        }
        let expected = self.engines.len() as u64;
        let running = s.workers_running.load(Ordering::Relaxed);
        if self.live && running < expected {
            return Err(format!("{running} of {expected} engine threads running"));
        }
        self.outbox.health()
    }

    fn dead_letters(&self, limit: usize) -> serde_json::Value {
        match self.outbox.dead_letters(limit) {
            Ok(list) => {
                let total = self
                    .outbox
                    .dead_letter_counts()
                    .map_or(0, |c| c.values().sum::<u64>());
                serde_json::json!({ "dead_letters": list, "total": total })
            }
            Err(e) => serde_json::json!({ "dead_letters": [], "error": e.to_string() }),
        }
    }

    fn retry_dead_letters(
        &self,
        target: Option<&str>,
        key: Option<&str>,
    ) -> Result<serde_json::Value, String> {
        let n = self
            .outbox
            .retry_dead_letters(target, key)
            .map_err(|e| e.to_string())?;
        tracing::info!(
            requeued = n,
            target = target.unwrap_or("*"),
            key = key.unwrap_or("*"),
            "dead-lettered alerts re-queued on request"
        );
        if let Ok(d) = self.delivery.lock() {
            if let Some(d) = d.as_ref() {
                d.wake();
            }
        }
        Ok(serde_json::json!({ "requeued": n }))
    }
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(config_path: PathBuf, cfg: Config) -> anyhow::Result<()> {
    let token = cfg
        .http
        .resolve_token()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if token.is_none() && cfg.http.enabled {
        tracing::warn!(
            "no [http] token configured: the API answers 401 to everything but /healthz"
        );
    }
    let privacy = Pseudonymizer::from_config(&cfg.privacy).context("[privacy]")?;

    // What needs root happens before the drop: the capture and a privileged API port.
    let sources = Source::open_all(&cfg.capture)?;
    let live = sources.iter().any(Source::is_live);
    let capture_desc = sources
        .iter()
        .map(Source::describe)
        .collect::<Vec<_>>()
        .join(", ");
    let listener = if cfg.http.enabled {
        let l = std::net::TcpListener::bind(cfg.http.listen)
            .with_context(|| format!("binding the API to {}", cfg.http.listen))?;
        l.set_nonblocking(true)?;
        Some(l)
    } else {
        None
    };
    let targets = targets_from_config(cfg.delivery(), Duration::from_secs(10))
        .context("setting up [syslog]/[webhook] targets")?;
    let names: Vec<String> = targets.iter().map(|t| t.name()).collect();
    match drop_privileges(&cfg.daemon.user, &cfg.daemon.group)? {
        Dropped::To { uid, gid } => {
            tracing::info!(uid, gid, user = %cfg.daemon.user, "dropped privileges")
        }
        Dropped::NotRoot { uid } => {
            tracing::info!(uid, "not running as root: keeping the current user")
        }
        Dropped::Disabled => tracing::info!("daemon.user is empty: keeping the current user"),
    }
    // Storage is opened as the daemon user, so that its files belong to it (the unit gives root
    // no CAP_DAC_OVERRIDE: root could not write into the simboxd-owned state directory anyway).
    // A full or read-only state directory does not stop the daemon: alerts are held in
    // memory, `/healthz` says why, and the store is retried until it can be written.
    let outbox = Arc::new(Outbox::open_or_hold(&cfg.storage, names.clone()));
    // Alerts owed to targets removed (or renamed) while stopped go to the current targets.
    // (Not while the store cannot be opened: that was logged, and the next start does it.)
    match outbox.requeue_removed_targets() {
        Ok(0) | Err(crate::alert::outbox::OutboxError::Closed) => {}
        Ok(n) => tracing::info!(
            requeued = n,
            "alerts owed to targets no longer configured re-queued to the current targets"
        ),
        Err(e) => tracing::error!(error = %e, "re-queueing alerts of removed targets failed"),
    }
    let workers = cfg.daemon.workers.max(1);
    let correlator = Arc::new(super::correlate::Correlator::new(
        workers,
        &cfg.threats,
        &cfg.network,
        privacy.clone(),
    ));
    let evidence = start_evidence(&cfg)?;
    let engines: Vec<Arc<Mutex<EngineWorker>>> = (0..workers)
        .map(|i| {
            let mut w = EngineWorker::new(&cfg, privacy.clone()).correlated(correlator.clone(), i);
            if let Some(ev) = &evidence {
                let rings = ring::LineRings::new(
                    ring::RingLimits::from_config(&cfg.evidence, workers),
                    cfg.network.clone(),
                );
                w.attach_evidence(Tap::new(rings, ev.tx.clone(), live, ev.stats.clone()));
            }
            Arc::new(Mutex::new(w))
        })
        .collect();
    for e in &engines {
        if let Ok(mut eng) = e.lock() {
            eng.track_changes();
        }
    }
    let t_restore = Instant::now();
    let state = open_state_store(&cfg)?;
    let legacy = StateStore::legacy_path_for(&cfg.storage.path);
    let mut manager = AlertManager::new(cfg.alert.clone());
    let migrated = match migrate_legacy(&legacy, &engines, &cfg) {
        Some(m) => {
            if let Some(m) = m {
                manager = m;
            }
            true
        }
        None => {
            if let Some(m) = restore_state(&state, &engines, &cfg) {
                manager = m;
            }
            false
        }
    };
    let stats = Arc::new(PipelineStats::default());
    let shared = Arc::new(Shared {
        config_path,
        config: RwLock::new(cfg.clone()),
        engines,
        stats: stats.clone(),
        state,
        checkpointing: Mutex::new(()),
        unsaved_removals: Mutex::new(Vec::new()),
        checkpoints_ok: AtomicU64::new(0),
        checkpoints_failed: AtomicU64::new(0),
        checkpoint_lines: AtomicU64::new(0),
        line_snapshot: Mutex::new(None),
        snapshot_building: Mutex::new(()),
        reloads_ok: AtomicU64::new(0),
        reloads_failed: AtomicU64::new(0),
        started: Instant::now(),
        live,
        capture_desc: capture_desc.clone(),
        outbox: outbox.clone(),
        delivery: Mutex::new(None),
        alerts_made: Default::default(),
        alerts_open: AtomicU64::new(manager.open_count() as u64),
        alert_evictions: AtomicU64::new(0),
        alert_store_errors: AtomicU64::new(0),
        correlator: Some(correlator),
        evidence,
        stream: std::sync::OnceLock::new(),
    });

    if migrated {
        // Stored here before the JSON file goes, so a crash now loses nothing.
        match shared.checkpoint(Some(&manager)) {
            Ok(n) => {
                let to = legacy.with_extension("json.migrated");
                if let Err(e) = std::fs::rename(&legacy, &to) {
                    tracing::warn!(error = %e, file = %legacy.display(), "could not rename the migrated state file");
                }
                tracing::info!(lines = n, from = %legacy.display(), to = %shared.state.path().display(), "migrated saved state")
            }
            Err(why) => {
                tracing::error!(%why, "migrating the saved state failed: profiles.json kept")
            }
        }
    }
    tracing::info!(secs = t_restore.elapsed().as_secs_f64(), "state loaded");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("simboxd-io")
        .build()?;
    let parts = Parts {
        sources,
        listener,
        token,
        targets,
        manager,
        privacy,
    };
    rt.block_on(serve(shared, cfg, parts))
}

/// Opens `<state dir>/evidence` (as the daemon user) and starts its writer thread.
fn start_evidence(cfg: &Config) -> anyhow::Result<Option<EvidenceSide>> {
    if !cfg.evidence.enabled {
        return Ok(None);
    }
    let root = cfg.storage.path.with_file_name("evidence");
    let stats = Arc::new(EvidenceStats::default());
    let store = Store::open(&root, cfg.evidence.clone(), stats.clone())
        .with_context(|| format!("opening the evidence folder {}", root.display()))?;
    let (tx, rx) = std::sync::mpsc::sync_channel(evidence_store::QUEUE);
    let thread = std::thread::Builder::new()
        .name("simboxd-evidence".into())
        .spawn(move || evidence_store::run(store, rx))?;
    tracing::info!(folder = %root.display(), max_bytes = cfg.evidence.max_bytes, "evidence of flagged lines kept");
    Ok(Some(EvidenceSide {
        tx,
        stats,
        root,
        thread: Mutex::new(Some(thread)),
    }))
}

/// Starts and stops evidence recording as line alerts open and close: a raised (or, after a
/// restart, updated) alert sends the line's pre-alert ring to the writer and records the line
/// from then on; a cleared alert, or one the manager no longer holds (evicted), stops it.
async fn evidence_on_alerts<E: PacketEngine>(
    shared: &Arc<Shared<E>>,
    recording: &mut BTreeMap<IpAddr, String>,
    manager: &AlertManager,
    alerts: &[crate::alert::Alert],
) {
    if shared.evidence.is_none() {
        return;
    }
    let mut start = Vec::new();
    let mut stop = Vec::new();
    for a in alerts {
        if a.kind != crate::alert::AlertKind::Line {
            continue;
        }
        match a.state {
            AlertState::Raised | AlertState::Updated => {
                if recording.get(&a.line) != Some(&a.id) {
                    if let Some(old) = recording.insert(a.line, a.id.clone()) {
                        stop.push((a.line, old));
                    }
                    let verdict = crate::alert::verdict_str(a.verdict).to_string();
                    start.push((a.line, a.id.clone(), verdict, a.first_seen));
                }
            }
            AlertState::Cleared => {
                if recording.get(&a.line) == Some(&a.id) {
                    recording.remove(&a.line);
                    stop.push((a.line, a.id.clone()));
                }
            }
        }
    }
    let gone: Vec<IpAddr> = recording
        .iter()
        .filter(|(line, id)| manager.open_id(**line) != Some(id.as_str()))
        .map(|(line, _)| *line)
        .collect();
    for line in gone {
        if let Some(id) = recording.remove(&line) {
            stop.push((line, id));
        }
    }
    if start.is_empty() && stop.is_empty() {
        return;
    }
    let shared = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let Some(ev) = shared.evidence.as_ref() else {
            return;
        };
        for (line, id) in stop {
            for e in &shared.engines {
                if let Ok(mut eng) = e.lock() {
                    eng.evidence_stop(line);
                }
            }
            let _ = ev.tx.send(StoreMsg::Close { id });
        }
        for (line, id, verdict, first_seen) in start {
            let open = StoreMsg::Open {
                id: id.clone(),
                line,
                verdict,
                first_seen,
            };
            if ev.tx.send(open).is_err() {
                continue;
            }
            // Under the engine's lock: the ring goes out before any packet the worker keeps next.
            for e in &shared.engines {
                if let Ok(mut eng) = e.lock() {
                    eng.evidence_start(line, &id);
                }
            }
        }
    })
    .await;
}

/// Ends the evidence writer after the engines and the alert side: every manifest is final.
async fn stop_evidence<E: PacketEngine>(shared: &Arc<Shared<E>>) {
    let Some(ev) = shared.evidence.as_ref() else {
        return;
    };
    let _ = ev.tx.send(StoreMsg::Stop);
    let thread = ev.thread.lock().ok().and_then(|mut t| t.take());
    if let Some(t) = thread {
        let joined = tokio::task::spawn_blocking(move || t.join());
        if tokio::time::timeout(SHUTDOWN_GRACE, joined).await.is_err() {
            tracing::warn!("evidence writer did not stop in time");
        }
    }
}

/// Opens `state.redb`; one that cannot be opened (corrupt, another version) is moved aside
/// and the daemon starts with an empty one rather than not at all. Where the disk cannot be
/// written (full, read-only) nothing is moved: the daemon keeps its state in memory until a
/// restart, and says so.
fn open_state_store(cfg: &Config) -> anyhow::Result<StateStore> {
    let path = StateStore::path_for(&cfg.storage.path);
    match StateStore::open(&path) {
        Ok(s) => Ok(s),
        Err(why @ super::state::OpenError::Io(_)) => {
            tracing::error!(%why, file = %path.display(), "state store cannot be written: line profiles and alert episodes kept in memory only until a restart");
            StateStore::in_memory(&path).map_err(|e| anyhow::anyhow!("state in memory: {e}"))
        }
        Err(why) => {
            let aside = path.with_extension(format!("redb.broken-{}", std::process::id()));
            tracing::error!(%why, file = %path.display(), moved_to = %aside.display(), "state store unreadable: starting empty");
            std::fs::rename(&path, &aside)
                .with_context(|| format!("moving {} aside", path.display()))?;
            StateStore::open(&path).map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))
        }
    }
}

/// Reads the line profiles and open alert episodes of the store into the engines (each line
/// into the engine its packets go to). Returns the saved alert episodes.
fn restore_state<E: PacketEngine>(
    state: &StateStore,
    engines: &[Arc<Mutex<E>>],
    cfg: &Config,
) -> Option<AlertManager> {
    // One read transaction in this thread; each engine decodes and inserts its own lines in
    // a thread of its own (batches under one lock hold), so decoding runs on every core.
    const BATCH: usize = 4096;
    let stored = state.line_count().unwrap_or(0) as usize;
    let per_engine = stored / engines.len().max(1) + stored / 16;
    let failed = AtomicU64::new(0);
    let res = std::thread::scope(|scope| {
        // A batch is the lines' bytes end to end and where each ends; emptied batches go
        // back to the reader (no allocation per line).
        type Batch = (Vec<u8>, Vec<usize>);
        let mut txs = Vec::with_capacity(engines.len());
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Batch>();
        for e in engines {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(4);
            txs.push(tx);
            let (failed, back_tx) = (&failed, back_tx.clone());
            scope.spawn(move || {
                if let Ok(mut eng) = e.lock() {
                    eng.reserve_lines(per_engine);
                }
                for (mut bytes, mut ends) in rx {
                    if let Ok(mut eng) = e.lock() {
                        let mut start = 0;
                        for &end in &ends {
                            let ok = bytes
                                .get(start..end)
                                .is_some_and(|b| eng.restore_line(b).is_ok());
                            if !ok {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            start = end;
                        }
                    }
                    bytes.clear();
                    ends.clear();
                    let _ = back_tx.send((bytes, ends));
                }
            });
        }
        drop(back_tx);
        let new_batch = || -> Batch {
            back_rx
                .try_recv()
                .unwrap_or_else(|_| (Vec::with_capacity(BATCH << 10), Vec::with_capacity(BATCH)))
        };
        let mut batches: Vec<Batch> = (0..engines.len()).map(|_| new_batch()).collect();
        let res = state.for_each_line(|ip, bytes| {
            let i = pipeline::shard_of_line(ip, engines.len());
            if let Some(b) = batches.get_mut(i) {
                b.0.extend_from_slice(bytes);
                b.1.push(b.0.len());
                if b.1.len() >= BATCH {
                    if let Some(tx) = txs.get(i) {
                        let _ = tx.send(std::mem::replace(b, new_batch()));
                    }
                }
            }
        });
        for (tx, b) in txs.into_iter().zip(batches) {
            if !b.1.is_empty() {
                let _ = tx.send(b);
            }
        }
        res
    });
    let failed = failed.into_inner();
    for e in engines {
        if let Ok(mut eng) = e.lock() {
            eng.finish_restore();
        }
    }
    match state.counters() {
        Ok(c) => {
            for (i, c) in c.iter().enumerate() {
                if let Some(Ok(mut eng)) = engines.get(i % engines.len().max(1)).map(|e| e.lock()) {
                    eng.restore_counters(c);
                }
            }
        }
        Err(why) => tracing::warn!(%why, "stored table counters ignored"),
    }
    let manager = match state.alerts() {
        Ok(m) => m.map(|mut m| {
            m.set_config(cfg.alert.clone());
            m
        }),
        Err(why) => {
            tracing::warn!(%why, "stored alert episodes ignored");
            None
        }
    };
    match res {
        Ok(lines) => tracing::info!(
            lines,
            unreadable = failed,
            open_alerts = manager.as_ref().map_or(0, |m| m.open_count()),
            file = %state.path().display(),
            "restored saved state"
        ),
        Err(why) => {
            tracing::warn!(%why, file = %state.path().display(), "stored line profiles not restored")
        }
    }
    manager
}

/// Reads `profiles.json` of an earlier version into the engines. `None` when there is none
/// (or it is unreadable: logged); else the episodes it held.
fn migrate_legacy<E: PacketEngine>(
    path: &std::path::Path,
    engines: &[Arc<Mutex<E>>],
    cfg: &Config,
) -> Option<Option<AlertManager>> {
    let saved = match load_legacy(path) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(why) => {
            tracing::warn!(%why, file = %path.display(), "old state file ignored");
            return None;
        }
    };
    let mut lines = 0;
    if saved.workers.len() == engines.len() {
        for (eng, st) in engines.iter().zip(saved.workers) {
            if let Ok(mut e) = eng.lock() {
                match e.restore_state(st) {
                    Ok(n) => lines += n,
                    Err(why) => tracing::warn!(%why, "line profiles not restored"),
                }
            }
        }
    } else {
        tracing::warn!(
            saved = saved.workers.len(),
            now = engines.len(),
            "worker count changed: line profiles of the old state file start empty"
        );
    }
    tracing::info!(lines, file = %path.display(), "restored saved state from the old state file");
    Some(saved.alerts.map(|mut m| {
        m.set_config(cfg.alert.clone());
        m
    }))
}

/// What `run` opened before dropping privileges, handed to the async side.
struct Parts {
    sources: Vec<Source>,
    listener: Option<std::net::TcpListener>,
    token: Option<String>,
    targets: Vec<crate::alert::delivery::Target>,
    manager: AlertManager,
    privacy: Pseudonymizer,
}

/// Packet time "now" for alert expiry: the newest packet, or the wall clock on a quiet live tap.
fn packet_now(stats: &PipelineStats, live: bool) -> Option<simboxd_core::model::Timestamp> {
    let last = stats.last_packet_us.load(Ordering::Relaxed);
    let last = (last > 0).then(|| simboxd_core::model::Timestamp::from_micros(last as i64));
    if live {
        let wall = pipeline::wall_clock();
        Some(last.map_or(wall, |t| t.max(wall)))
    } else {
        last
    }
}

/// Verdicts -> alert lifecycle -> outbox -> delivery workers. Returns the manager at the end so
/// its open episodes can be saved.
async fn alert_loop<E: PacketEngine>(
    shared: Arc<Shared<E>>,
    mut vrx: tokio::sync::mpsc::Receiver<pipeline::ToAlerts>,
    mut manager: AlertManager,
    privacy: Pseudonymizer,
    tick_secs: f64,
) -> AlertManager {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(tick_secs.max(0.05)));
    let mut last_purge = Instant::now();
    let mut alert_cfg = shared
        .config
        .read()
        .map(|c| c.alert.clone())
        .unwrap_or_default();
    // Lines whose evidence is being recorded -> alert id.
    let mut recording: BTreeMap<IpAddr, String> = BTreeMap::new();
    loop {
        let alerts = tokio::select! {
            v = vrx.recv() => {
                let Some(v) = v else {
                    // The workers are done: what they found last still becomes alerts.
                    let alerts = threat_alerts(&shared, &mut manager, &privacy);
                    record_and_store(&shared, &manager, alerts).await;
                    break;
                };
                match v {
                    pipeline::ToAlerts::Verdict(v) => {
                        if v.verdict >= VerdictLevel::Suspect {
                            tracing::info!(line = %v.line, verdict = v.verdict.name(), score = v.score, "line verdict");
                        }
                        manager.on_verdict_with(&v, &privacy)
                    }
                    pipeline::ToAlerts::Settled(done) => {
                        // Everything handed before is alerted (this loop is sequential); the
                        // threats the engines found last too, then the engine thread may end.
                        let alerts = threat_alerts(&shared, &mut manager, &privacy);
                        evidence_on_alerts(&shared, &mut recording, &manager, &alerts).await;
                        let changed = !alerts.is_empty();
                        record_and_store(&shared, &manager, alerts).await;
                        if changed {
                            save_episodes(&shared, &manager).await;
                        }
                        let _ = done.try_send(());
                        Vec::new()
                    }
                }
            }
            _ = tick.tick() => {
                // A reload may have changed [alert]; the episodes stay.
                if let Ok(c) = shared.config.read() {
                    if c.alert != alert_cfg {
                        alert_cfg = c.alert.clone();
                        manager.set_config(alert_cfg.clone());
                    }
                }
                if last_purge.elapsed() >= Duration::from_secs(3600) {
                    last_purge = Instant::now();
                    if let Some(now) = packet_now(&shared.stats, shared.live) {
                        let ob = shared.outbox.clone();
                        let _ = tokio::task::spawn_blocking(move || ob.purge(now)).await;
                    }
                }
                if shared.outbox.is_broken() {
                    // Reopen and store what is held (the outbox backs off by itself).
                    let ob = shared.outbox.clone();
                    if let Ok(true) = tokio::task::spawn_blocking(move || ob.maintain()).await {
                        if let Ok(d) = shared.delivery.lock() {
                            if let Some(d) = d.as_ref() {
                                d.wake();
                            }
                        }
                    }
                }
                let mut alerts = threat_alerts(&shared, &mut manager, &privacy);
                if let Some(now) = packet_now(&shared.stats, shared.live) {
                    alerts.extend(manager.expire(now));
                }
                alerts
            }
        };
        evidence_on_alerts(&shared, &mut recording, &manager, &alerts).await;
        let changed = !alerts.is_empty();
        record_and_store(&shared, &manager, alerts).await;
        if changed {
            save_episodes(&shared, &manager).await;
        }
    }
    manager
}

/// Commits the open alert episodes to the state store right away (after their alerts are in
/// the outbox): after a crash the episodes continue under their ids and sequence numbers.
async fn save_episodes<E: PacketEngine>(shared: &Arc<Shared<E>>, manager: &AlertManager) {
    let bytes = match serde_json::to_vec(manager) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "alert episodes not encoded");
            return;
        }
    };
    let sh = shared.clone();
    let res = tokio::task::spawn_blocking(move || sh.state.write_meta(Some(&bytes), None)).await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(why)) => tracing::error!(%why, "saving alert episodes failed"),
        Err(e) => tracing::error!(error = %e, "saving alert episodes failed"),
    }
}

/// Threat findings the engines made since the last call, as alerts (raised, then updated).
fn threat_alerts<E: PacketEngine>(
    shared: &Shared<E>,
    manager: &mut AlertManager,
    privacy: &Pseudonymizer,
) -> Vec<crate::alert::Alert> {
    let mut out = Vec::new();
    let shared_changes = shared
        .correlator
        .as_ref()
        .map(|c| c.take_threat_changes())
        .unwrap_or_default();
    let per_engine = shared.engines.iter().filter_map(|e| match e.lock() {
        Ok(mut eng) => Some(eng.take_threat_changes()),
        Err(_) => None,
    });
    for changes in std::iter::once(shared_changes).chain(per_engine) {
        for t in changes {
            tracing::info!(peer = %t.peer, kind = t.kind.label(), severity = t.severity.label(), "threat");
            // A closed episode is cleared at the packet time it closed.
            out.extend(manager.on_threat(&t, t.ended.unwrap_or(t.last_seen), privacy));
        }
    }
    out
}

/// Counts alerts, logs them and writes them to the outbox (then wakes delivery).
async fn record_and_store<E: PacketEngine>(
    shared: &Arc<Shared<E>>,
    manager: &AlertManager,
    alerts: Vec<crate::alert::Alert>,
) {
    shared
        .alerts_open
        .store(manager.open_count() as u64, Ordering::Relaxed);
    shared
        .alert_evictions
        .store(manager.evictions(), Ordering::Relaxed);
    for a in alerts {
        let idx = match a.state {
            AlertState::Raised => 0,
            AlertState::Updated => 1,
            AlertState::Cleared => 2,
        };
        if let Some(c) = shared.alerts_made.get(idx) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(
            id = %a.id,
            state = a.state.as_str(),
            severity = a.severity.as_str(),
            kind = a.kind.as_str(),
            line = %a.line,
            score = a.score,
            "alert"
        );
        let ob = shared.outbox.clone();
        let stored = tokio::task::spawn_blocking(move || ob.enqueue(&a)).await;
        match stored {
            Ok(Ok(_)) => {
                if let Ok(d) = shared.delivery.lock() {
                    if let Some(d) = d.as_ref() {
                        d.wake();
                    }
                }
            }
            Ok(Err(e)) => {
                // Logged once per run of failures (the outbox logs the disk fault itself).
                if shared.alert_store_errors.fetch_add(1, Ordering::Relaxed) == 0
                    || !shared.outbox.is_broken()
                {
                    tracing::error!(error = %e, "alert not stored");
                }
            }
            Err(e) => {
                shared.alert_store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "alert store task failed");
            }
        }
    }
}

async fn serve<E: PacketEngine>(
    shared: Arc<Shared<E>>,
    cfg: Config,
    parts: Parts,
) -> anyhow::Result<()> {
    let Parts {
        sources,
        listener,
        token,
        targets,
        manager,
        privacy,
    } = parts;
    let notifier = Arc::new(Notifier::from_env());
    let stop = Arc::new(AtomicBool::new(false));
    let live = shared.live;
    let stats = shared.stats.clone();

    // Alert delivery first, so that nothing raised waits for it.
    if let Ok(mut d) = shared.delivery.lock() {
        *d = Some(Delivery::start(
            shared.outbox.clone(),
            targets,
            Backoff::from_config(&cfg.alert),
        ));
    }

    // Evidence (and calls) to NATS JetStream when `[stream] url` is set.
    let sections = super::sensor::SensorSections {
        stream: &cfg.stream,
        storage: &cfg.storage.path,
        threats: &cfg.threats,
        network: &cfg.network,
    };
    let stream = super::sensor::SensorStream::start(
        sections,
        shared.engines.clone(),
        shared.correlator.clone(),
    )?;
    if let Some(s) = &stream {
        let _ = shared.stream.set(s.publisher().clone());
    }

    // Engines and capture.
    let (vtx, vrx) = tokio::sync::mpsc::channel::<pipeline::ToAlerts>(VERDICT_QUEUE);
    let per_worker = (cfg.daemon.queue_packets / pipeline::BATCH_PACKETS).max(1);
    let mut senders = Vec::new();
    let mut worker_threads = Vec::new();
    for (i, eng) in shared.engines.iter().enumerate() {
        let (tx, rx) = std::sync::mpsc::sync_channel(per_worker);
        senders.push(tx);
        let (eng, vtx, stats) = (eng.clone(), vtx.clone(), stats.clone());
        let tick = cfg.daemon.tick_secs;
        worker_threads.push(
            std::thread::Builder::new()
                .name(format!("simboxd-engine-{i}"))
                .spawn(move || pipeline::worker_loop(eng, rx, vtx, stats, live, tick))?,
        );
    }
    drop(vtx);
    let mut capture_threads = Vec::new();
    for (i, source) in sources.into_iter().enumerate() {
        let (home, stats, stop) = (cfg.network.clone(), stats.clone(), stop.clone());
        let senders = senders.clone();
        capture_threads.push(
            std::thread::Builder::new()
                .name(format!("simboxd-capture-{i}"))
                .spawn(move || pipeline::capture_loop(source, senders, home, stats, stop))?,
        );
    }
    drop(senders);

    let alert_task = tokio::spawn(alert_loop(
        shared.clone(),
        vrx,
        manager,
        privacy,
        cfg.daemon.tick_secs,
    ));

    // HTTP API.
    let api = Arc::new(Api {
        token: RwLock::new(TokenCheck::new(token.as_deref())),
        max_list: cfg.http.max_list,
        source: shared.clone(),
    });
    let http_stop = Arc::new(tokio::sync::Notify::new());
    let http_task = match listener {
        Some(l) => {
            let l = tokio::net::TcpListener::from_std(l)?;
            let addr = l.local_addr()?;
            let app = crate::http::router(api.clone());
            let stop = http_stop.clone();
            let tls = match (&cfg.http.tls_cert, &cfg.http.tls_key) {
                (Some(c), Some(k)) => {
                    Some(crate::http::tls::server_config(c, k).map_err(anyhow::Error::msg)?)
                }
                _ => None,
            };
            if let Some(w) = crate::http::tls::exposure_warning(&cfg.http) {
                tracing::warn!("{w}");
            }
            tracing::info!(listen = %addr, tls = tls.is_some(), "HTTP API listening");
            let limits = crate::http::server::Limits::from_config(&cfg.http);
            Some(tokio::spawn(crate::http::server::serve(
                l, app, tls, limits, stop,
            )))
        }
        None => None,
    };

    // Periodic checkpoints of what changed (line profiles, counters); episodes are committed
    // by the alert side as they change.
    let checkpoint_task = {
        let shared = shared.clone();
        let every = Duration::from_secs(cfg.daemon.checkpoint_interval_secs.max(1));
        tokio::spawn(async move {
            // Every `every`, and sooner once many lines wait (a burst of new lines): what a
            // stop must write stays small.
            let mut t = tokio::time::interval(Duration::from_secs(1).min(every));
            t.tick().await;
            let mut last = Instant::now();
            loop {
                t.tick().await;
                let waiting: usize = shared
                    .engines
                    .iter()
                    .filter_map(|e| e.lock().ok().map(|eng| eng.unsaved_lines()))
                    .sum();
                if last.elapsed() < every && waiting < CHECKPOINT_EARLY_LINES {
                    continue;
                }
                last = Instant::now();
                let sh = shared.clone();
                let t0 = Instant::now();
                match tokio::task::spawn_blocking(move || sh.checkpoint(None)).await {
                    Ok(Ok(n)) => {
                        tracing::debug!(lines = n, secs = t0.elapsed().as_secs_f64(), "checkpoint")
                    }
                    Ok(Err(why)) => {
                        tracing::error!(%why, "checkpoint failed: retried at the next one")
                    }
                    Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
                }
            }
        })
    };

    // Signals, before anything tells systemd (or a test) that we are up: a SIGHUP that
    // arrived before the handlers would kill the process (default action).
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;

    // Watchdog: only a healthy daemon pets it, so systemd restarts a wedged one.
    if let Some(every) = watchdog_interval() {
        let (shared, notifier) = (shared.clone(), notifier.clone());
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            loop {
                t.tick().await;
                match shared.health() {
                    Ok(()) => notifier.watchdog(),
                    Err(why) => tracing::warn!(%why, "unhealthy: not petting the watchdog"),
                }
            }
        });
    }

    let status = format!(
        "capturing from {} with {} engine thread(s)",
        shared.capture_desc,
        shared.engines.len()
    );
    tracing::info!(%status, "ready");
    notifier.ready(&status);

    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hup.recv() => {
                notifier.reloading();
                reload(&shared, &api).await;
                notifier.ready(&status);
            }
        }
    }

    // Shutdown: stop reading, let the engines drain, raise what they concluded, give delivery
    // a moment, save profiles, close the API.
    notifier.stopping();
    stop.store(true, Ordering::SeqCst);
    let joined = tokio::task::spawn_blocking(move || {
        for t in capture_threads {
            let _ = t.join();
        }
        for t in worker_threads {
            let _ = t.join();
        }
    });
    if tokio::time::timeout(SHUTDOWN_GRACE, joined).await.is_err() {
        tracing::warn!("engine threads did not stop in time");
    }
    let manager = match tokio::time::timeout(SHUTDOWN_GRACE, alert_task).await {
        Ok(Ok(m)) => Some(m),
        _ => {
            tracing::warn!("alert side did not stop in time: open alerts as last committed");
            None
        }
    };
    stop_evidence(&shared).await;
    let delivery = shared.delivery.lock().ok().and_then(|mut d| d.take());
    if let Some(d) = delivery {
        let t0 = Instant::now();
        while t0.elapsed() < DELIVERY_GRACE && d.status().iter().any(|t| t.pending > 0 && t.up) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d.shutdown(Duration::from_secs(2)).await;
    }
    if let Some(s) = stream {
        s.finish(DELIVERY_GRACE).await;
    }
    checkpoint_task.abort();
    let t0 = Instant::now();
    let sh = shared.clone();
    let saved = tokio::task::spawn_blocking(move || sh.checkpoint(manager.as_ref())).await;
    match saved {
        Ok(Ok(lines)) => tracing::info!(
            lines,
            secs = t0.elapsed().as_secs_f64(),
            file = %shared.state.path().display(),
            "saved line profiles and open alerts"
        ),
        Ok(Err(why)) => tracing::error!(%why, "saving state failed"),
        Err(e) => tracing::error!(error = %e, "saving state failed"),
    }
    http_stop.notify_waiters();
    if let Some(t) = http_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    tracing::info!(
        packets = stats.captured_packets.load(Ordering::Relaxed),
        "stopped"
    );
    Ok(())
}

/// Longest wait at shutdown for targets that are up to take what is pending.
const DELIVERY_GRACE: Duration = Duration::from_secs(3);

/// Replaces the delivery workers with ones for `new`'s targets: the old workers finish their
/// current attempt, the outbox owes new alerts to the new targets, and what was owed to a
/// target that is gone is re-queued to the current ones.
async fn restart_delivery<E: PacketEngine>(shared: &Shared<E>, new: &Config) -> anyhow::Result<()> {
    let targets = targets_from_config(new.delivery(), Duration::from_secs(10))?;
    let names: Vec<String> = targets.iter().map(|t| t.name()).collect();
    let old = shared.delivery.lock().ok().and_then(|mut d| d.take());
    if let Some(d) = old {
        d.shutdown(Duration::from_secs(2)).await;
    }
    shared.outbox.set_targets(names.clone());
    let ob = shared.outbox.clone();
    let requeued = tokio::task::spawn_blocking(move || ob.requeue_removed_targets()).await??;
    if let Ok(mut d) = shared.delivery.lock() {
        *d = Some(Delivery::start(
            shared.outbox.clone(),
            targets,
            Backoff::from_config(&new.alert),
        ));
    }
    let shown: Vec<String> = names
        .iter()
        .map(|n| crate::metrics::target_label(n))
        .collect();
    tracing::info!(targets = %shown.join(", "), requeued, "alert targets changed");
    Ok(())
}

/// SIGHUP: re-read the config; apply what can change without a restart, keep the rest.
/// `[syslog]`/`[webhook]` changes restart the delivery workers on the new targets, and what was
/// owed to a removed target is re-queued to the current ones (`Outbox::requeue_removed_targets`).
async fn reload<E: PacketEngine>(shared: &Shared<E>, api: &Api) {
    let new = match load_run_config(&shared.config_path) {
        Ok(c) => c,
        Err(e) => {
            shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "reload failed: keeping the running config");
            return;
        }
    };
    let token = match new.http.resolve_token() {
        Ok(t) => t,
        Err(e) => {
            shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "reload failed: keeping the running config");
            return;
        }
    };
    if let Ok(mut t) = api.token.write() {
        *t = TokenCheck::new(token.as_deref());
    }
    let targets_changed = shared
        .config
        .read()
        .map(|c| c.syslog != new.syslog || c.webhook != new.webhook || c.alert != new.alert)
        .unwrap_or(false);
    if targets_changed {
        if let Err(e) = restart_delivery(shared, &new).await {
            shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "reload failed: keeping the running config");
            return;
        }
    }
    for e in &shared.engines {
        if let Ok(mut eng) = e.lock() {
            eng.reload(&new);
        }
    }
    if let Some(c) = &shared.correlator {
        c.reload(&new.threats, &new.network);
    }
    if let Ok(mut cur) = shared.config.write() {
        let mut restart = Vec::new();
        if serde_json::to_value(&cur.capture).ok() != serde_json::to_value(&new.capture).ok() {
            restart.push("[capture]");
        }
        if cur.daemon != new.daemon {
            restart.push("[daemon]");
        }
        if cur.http.listen != new.http.listen
            || cur.http.enabled != new.http.enabled
            || cur.http.tls_cert != new.http.tls_cert
            || cur.http.tls_key != new.http.tls_key
        {
            restart.push("[http] listen/enabled/tls_cert/tls_key");
        }
        if cur.storage != new.storage {
            restart.push("[storage]");
        }
        if cur.evidence != new.evidence {
            restart.push("[evidence]");
        }
        if serde_json::to_value(&cur.privacy).ok() != serde_json::to_value(&new.privacy).ok() {
            restart.push("[privacy]");
        }
        if !restart.is_empty() {
            tracing::warn!(sections = %restart.join(", "), "changed settings need a restart to apply");
        }
        *cur = new;
    }
    shared.reloads_ok.fetch_add(1, Ordering::Relaxed);
    tracing::info!(config = %shared.config_path.display(), "config reloaded");
}
