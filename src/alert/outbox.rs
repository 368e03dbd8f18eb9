//! The persistent outbox: every alert is committed to redb, with a pending mark for every
//! configured target, before any delivery attempt; a worker marks it delivered per target only
//! after the receiver accepted it.
//!
//! Contract: a committed alert survives a crash or `kill -9` (redb commits are durable when
//! `commit` returns); an alert is re-sent to a target only if that target's mark was not yet
//! committed, and each alert carries its idempotency key so a receiver can drop that rare repeat.
//! Enqueueing the same idempotency key twice is a no-op. The outbox holds at most `max_alerts`
//! records (oldest dropped first, counted) and `purge` deletes delivered alerts older than
//! `retention_days`.
//!
//! Disk faults (a full or read-only state directory): a write that fails starts a fault
//! episode, logged once, shown by [`Outbox::health`] and [`Outbox::figures`]. Meanwhile alerts
//! that could not be stored are held in memory (at most `max_memory_alerts`, the rest counted
//! as dropped) and are still delivered; a delivered mark that could not be stored is held too,
//! so nothing is sent twice. [`Outbox::maintain`] (called by the delivery workers and the
//! daemon's tick) reopens the database with capped backoff and stores what was held, in order,
//! when writes work again. A refused alert can be moved to a target's dead-letter list and back.

use super::Alert;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use simboxd_core::model::Timestamp;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// `[storage]` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The outbox database file (created with its directory when missing).
    pub path: PathBuf,
    /// Delivered alerts older than this are deleted by `purge`.
    pub retention_days: u32,
    /// Most alert records kept; the oldest are dropped (and counted) beyond it.
    pub max_alerts: u64,
    /// Alerts held in memory while the database cannot be written (full or read-only disk);
    /// beyond it new alerts are dropped and counted.
    pub max_memory_alerts: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("/var/lib/simboxd/alerts.redb"),
            retention_days: 30,
            max_alerts: 100_000,
            max_memory_alerts: 10_000,
        }
    }
}

impl StorageConfig {
    pub fn validate(&self) -> Result<(), simboxd_core::config::Invalid> {
        if self.path.as_os_str().is_empty() {
            return Err(simboxd_core::config::Invalid::new(
                "path",
                "storage.path must not be empty".into(),
            ));
        }
        if self.retention_days == 0 {
            return Err(simboxd_core::config::Invalid::new(
                "retention_days",
                "storage.retention_days must be > 0".into(),
            ));
        }
        if self.max_alerts < 10 {
            return Err(simboxd_core::config::Invalid::new(
                "max_alerts",
                "storage.max_alerts must be at least 10".into(),
            ));
        }
        if self.max_memory_alerts == 0 {
            return Err(simboxd_core::config::Invalid::new(
                "max_memory_alerts",
                "storage.max_memory_alerts must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database: {0}")]
    Db(#[from] redb::Error),
    #[error("outbox directory {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("outbox record {0} is corrupt: {1}")]
    Corrupt(u64, String),
    #[error("outbox database is not open (reopening after a write failure)")]
    Closed,
    #[error(
        "alert store full: {0} alerts already held in memory while the disk cannot be written"
    )]
    MemoryFull(usize),
}

fn db<E: Into<redb::Error>>(e: E) -> OutboxError {
    OutboxError::Db(e.into())
}

/// Insertion number -> stored record (JSON).
const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
/// Idempotency key -> insertion number.
const KEYS: TableDefinition<&str, u64> = TableDefinition::new("keys");
/// (target, insertion number) for every delivery still owed.
const PENDING: TableDefinition<(&str, u64), ()> = TableDefinition::new("pending");
/// (target, insertion number) -> [`DeadMark`] (JSON) for every alert a target refused.
const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letter");
/// Counters and the next insertion number.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const NEXT: &str = "next";
const DROPPED_PENDING: &str = "dropped_pending";

/// One stored alert with the targets it is still owed to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Insertion number (monotonic).
    pub number: u64,
    pub alert: Alert,
    pub pending: Vec<String>,
    /// Targets that accepted it (absent in records written before it was kept).
    #[serde(default)]
    pub delivered: Vec<String>,
    /// Targets that refused it and hold it in their dead-letter list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dead_letter: Vec<String>,
}

/// Why and when a target refused an alert for good.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadMark {
    /// Attempts made before it was given up.
    pub attempts: u32,
    /// The last refusal (e.g. `http://h:80/hook: HTTP status 400`).
    pub error: String,
    /// Wall-clock time it was dead-lettered (Unix milliseconds).
    pub at_ms: u64,
}

/// One entry of a dead-letter list, with its alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadLetter {
    pub target: String,
    pub number: u64,
    #[serde(flatten)]
    pub mark: DeadMark,
    pub alert: Alert,
}

/// What the outbox reports about its disk (for `/healthz` and `/metrics`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OutboxFigures {
    /// False while writes fail.
    pub writable: bool,
    /// Failed writes (each one, not each episode).
    pub write_errors: u64,
    /// Times the store went from writable to failing.
    pub fault_episodes: u64,
    /// Alerts held in memory, waiting to be stored.
    pub held_alerts: usize,
    /// Delivered marks held in memory, waiting to be stored.
    pub held_marks: usize,
    /// Alerts lost because the memory bound was reached while the disk failed.
    pub dropped_alerts: u64,
}

/// An alert not stored yet, with the targets that already accepted it.
struct Held {
    alert: Alert,
    delivered: Vec<String>,
}

/// The disk-fault side of the outbox.
struct Fault {
    /// Since when writes fail, and the last error; `None` while writable.
    broken: Option<(Instant, String)>,
    held: VecDeque<Held>,
    /// (target, idempotency key) accepted but not yet marked in the database.
    marks: BTreeSet<(String, String)>,
    next_try: Option<Instant>,
    attempt: u32,
    write_errors: u64,
    episodes: u64,
    dropped: u64,
}

/// First and longest wait between two attempts to write again after a disk fault.
const RECOVER_FIRST: Duration = Duration::from_millis(500);
const RECOVER_MAX: Duration = Duration::from_secs(10);

pub struct Outbox {
    /// `None` after a failed reopen; swapped by a reopen after a disk fault.
    db: RwLock<Option<Database>>,
    /// Swapped by `set_targets` when a reload changes `[syslog]`/`[webhook]`.
    targets: RwLock<Vec<String>>,
    config: StorageConfig,
    fault: Mutex<Fault>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.config.path)
            .field("targets", &self.targets())
            .finish()
    }
}

fn create(config: &StorageConfig) -> Result<Database, OutboxError> {
    if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| OutboxError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    // A file this call creates and cannot finish (full disk) would stay half-written, and redb
    // refuses a file that is neither empty nor a database: remove it, it holds nothing.
    let fresh = std::fs::metadata(&config.path).map_or(true, |m| m.len() == 0);
    let made = (|| {
        let database = Database::create(&config.path).map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        {
            txn.open_table(ALERTS).map_err(db)?;
            txn.open_table(KEYS).map_err(db)?;
            txn.open_table(PENDING).map_err(db)?;
            txn.open_table(DEAD).map_err(db)?;
            txn.open_table(META).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(database)
    })();
    if made.is_err() && fresh {
        let _ = std::fs::remove_file(&config.path);
    }
    made
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Outbox {
    /// Opens (or creates) the outbox at `config.path`; `targets` are the names every new alert is
    /// owed to. Pending marks for targets no longer configured stay and show in `backlog`.
    pub fn open(config: &StorageConfig, targets: Vec<String>) -> Result<Outbox, OutboxError> {
        let database = create(config)?;
        Ok(Outbox::with(Some(database), config, targets, None))
    }

    /// As `open`, but a store that cannot be opened now (full or read-only disk) gives an
    /// outbox that holds alerts in memory and keeps trying (`maintain`), unhealthy meanwhile.
    pub fn open_or_hold(config: &StorageConfig, targets: Vec<String>) -> Outbox {
        match create(config) {
            Ok(d) => Outbox::with(Some(d), config, targets, None),
            Err(e) => {
                tracing::error!(target: "simboxd::alert", path = %config.path.display(), error = %e,
                    "alert store cannot be opened: holding alerts in memory until it can");
                Outbox::with(None, config, targets, Some(e.to_string()))
            }
        }
    }

    fn with(
        database: Option<Database>,
        config: &StorageConfig,
        targets: Vec<String>,
        broken: Option<String>,
    ) -> Outbox {
        let episodes = u64::from(broken.is_some());
        Outbox {
            db: RwLock::new(database),
            targets: RwLock::new(targets),
            config: config.clone(),
            fault: Mutex::new(Fault {
                next_try: broken.as_ref().map(|_| Instant::now() + RECOVER_FIRST),
                broken: broken.map(|e| (Instant::now(), e)),
                held: VecDeque::new(),
                marks: BTreeSet::new(),
                attempt: 0,
                write_errors: episodes,
                episodes,
                dropped: 0,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.config.path
    }

    pub fn targets(&self) -> Vec<String> {
        self.targets.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// Makes `targets` the ones new alerts are owed to (a reload changed them).
    pub fn set_targets(&self, targets: Vec<String>) {
        if let Ok(mut t) = self.targets.write() {
            *t = targets;
        }
    }

    /// Runs `f` on the open database.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let guard = self.db.read().map_err(|_| OutboxError::Closed)?;
        match guard.as_ref() {
            Some(d) => f(d),
            None => Err(OutboxError::Closed),
        }
    }

    fn fault(&self) -> std::sync::MutexGuard<'_, Fault> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A write failed: starts (and logs, once) a fault episode, or counts one more failure.
    fn write_failed(&self, e: &OutboxError) {
        let mut f = self.fault();
        f.write_errors += 1;
        if f.broken.is_none() {
            f.episodes += 1;
            f.attempt = 0;
            f.next_try = Some(Instant::now() + RECOVER_FIRST);
            tracing::error!(target: "simboxd::alert", path = %self.config.path.display(), error = %e,
                "alert store cannot be written: holding alerts in memory and retrying");
            f.broken = Some((Instant::now(), e.to_string()));
        } else if let Some(b) = f.broken.as_mut() {
            b.1 = e.to_string();
        }
    }

    /// Whether writes are failing now.
    pub fn is_broken(&self) -> bool {
        self.fault().broken.is_some()
    }

    /// `Err(reason)` while the store cannot be written.
    pub fn health(&self) -> Result<(), String> {
        let f = self.fault();
        match &f.broken {
            None => Ok(()),
            Some((since, why)) => Err(format!(
                "alert store {} not writable for {:.0} s ({why}); {} alerts held in memory",
                self.config.path.display(),
                since.elapsed().as_secs_f64(),
                f.held.len()
            )),
        }
    }

    pub fn figures(&self) -> OutboxFigures {
        let f = self.fault();
        OutboxFigures {
            writable: f.broken.is_none(),
            write_errors: f.write_errors,
            fault_episodes: f.episodes,
            held_alerts: f.held.len(),
            held_marks: f.marks.len(),
            dropped_alerts: f.dropped,
        }
    }

    /// While writes fail: once the backoff allows, reopens the database and stores what was
    /// held in memory (alerts in order, then delivered marks). Cheap when healthy. Returns
    /// whether the store is writable afterwards.
    pub fn maintain(&self) -> bool {
        {
            let mut f = self.fault();
            if f.broken.is_none() {
                return true;
            }
            if f.next_try.is_some_and(|t| Instant::now() < t) {
                return false;
            }
            // Claim this attempt; the next one waits (doubling, capped, jittered).
            let exp = RECOVER_FIRST
                .saturating_mul(1u32 << f.attempt.min(8))
                .min(RECOVER_MAX);
            let jitter = rand::Rng::random_range(&mut rand::rng(), 0.75..1.25);
            f.next_try = Some(Instant::now() + exp.mul_f64(jitter));
            f.attempt = f.attempt.saturating_add(1);
        }
        match self.recover() {
            Ok(stored) => {
                let mut f = self.fault();
                if let Some((since, _)) = f.broken.take() {
                    tracing::info!(target: "simboxd::alert", path = %self.config.path.display(),
                        down_secs = since.elapsed().as_secs_f64(), stored,
                        failed_writes = f.write_errors, "alert store writable again");
                }
                f.attempt = 0;
                f.next_try = None;
                true
            }
            Err(e) => {
                let mut f = self.fault();
                f.write_errors += 1;
                if let Some(b) = f.broken.as_mut() {
                    b.1 = e.to_string();
                }
                false
            }
        }
    }

    /// Reopens the database (redb refuses every write after an I/O error until reopened) and
    /// stores what is held. Returns the alerts stored.
    fn recover(&self) -> Result<usize, OutboxError> {
        {
            let mut guard = self.db.write().map_err(|_| OutboxError::Closed)?;
            // The old handle holds the file lock: close it before opening again.
            drop(guard.take());
            *guard = Some(create(&self.config)?);
        }
        let mut stored = 0;
        loop {
            let next = {
                let f = self.fault();
                f.held
                    .front()
                    .map(|h| (h.alert.clone(), h.delivered.clone()))
            };
            let Some((alert, delivered)) = next else {
                break;
            };
            let targets = self.targets();
            self.with_db(|d| Self::store(d, &self.config, &alert, &targets, &delivered))?;
            let mut f = self.fault();
            if f.held
                .front()
                .is_some_and(|h| h.alert.idempotency_key == alert.idempotency_key)
            {
                f.held.pop_front();
            }
            stored += 1;
        }
        let marks: Vec<(String, String)> = self.fault().marks.iter().cloned().collect();
        for (t, k) in marks {
            self.with_db(|d| Self::mark(d, &t, &k))?;
            self.fault().marks.remove(&(t, k));
        }
        Ok(stored)
    }

    /// Stores `alert` with a pending mark for every target, in one transaction; when the disk
    /// cannot be written, holds it in memory (delivered from there, stored later). Returns
    /// `false` when an alert with the same idempotency key is already stored or held.
    pub fn enqueue(&self, alert: &Alert) -> Result<bool, OutboxError> {
        if self.is_broken() && !self.maintain() {
            return self.hold(alert);
        }
        let targets = self.targets();
        match self.with_db(|d| Self::store(d, &self.config, alert, &targets, &[])) {
            Ok(fresh) => Ok(fresh),
            Err(e @ (OutboxError::Db(_) | OutboxError::Closed)) => {
                self.write_failed(&e);
                self.hold(alert)
            }
            Err(e) => Err(e),
        }
    }

    fn hold(&self, alert: &Alert) -> Result<bool, OutboxError> {
        let key = alert.idempotency_key.as_str();
        if self
            .with_db(|d| Self::number_of(d, key))
            .ok()
            .flatten()
            .is_some()
        {
            return Ok(false);
        }
        let mut f = self.fault();
        if f.held.iter().any(|h| h.alert.idempotency_key == key) {
            return Ok(false);
        }
        if f.held.len() >= self.config.max_memory_alerts {
            f.dropped += 1;
            return Err(OutboxError::MemoryFull(f.held.len()));
        }
        f.held.push_back(Held {
            alert: alert.clone(),
            delivered: Vec::new(),
        });
        Ok(true)
    }

    fn number_of(d: &Database, key: &str) -> Result<Option<u64>, OutboxError> {
        let txn = d.begin_read().map_err(db)?;
        let keys = txn.open_table(KEYS).map_err(db)?;
        Ok(keys.get(key).map_err(db)?.map(|g| g.value()))
    }

    fn store(
        d: &Database,
        config: &StorageConfig,
        alert: &Alert,
        targets: &[String],
        delivered: &[String],
    ) -> Result<bool, OutboxError> {
        let txn = d.begin_write().map_err(db)?;
        let fresh = Self::store_in(&txn, config, alert, targets, delivered)?;
        if fresh {
            txn.commit().map_err(db)?;
        }
        Ok(fresh)
    }

    /// Stores `alerts` (pending for every target) in one transaction: one disk sync for a batch
    /// (the central's). Returns how many were new; on a write failure every one is held in
    /// memory as `enqueue` holds one.
    pub fn enqueue_batch(&self, alerts: &[Alert]) -> Result<usize, OutboxError> {
        if alerts.is_empty() {
            return Ok(0);
        }
        let held = || -> Result<usize, OutboxError> {
            let mut n = 0;
            for a in alerts {
                n += usize::from(self.hold(a)?);
            }
            Ok(n)
        };
        if self.is_broken() && !self.maintain() {
            return held();
        }
        let targets = self.targets();
        let stored = self.with_db(|d| {
            let txn = d.begin_write().map_err(db)?;
            let mut n = 0;
            for a in alerts {
                n += usize::from(Self::store_in(&txn, &self.config, a, &targets, &[])?);
            }
            txn.commit().map_err(db)?;
            Ok(n)
        });
        match stored {
            Err(e @ (OutboxError::Db(_) | OutboxError::Closed)) => {
                self.write_failed(&e);
                held()
            }
            other => other,
        }
    }

    fn store_in(
        txn: &redb::WriteTransaction,
        config: &StorageConfig,
        alert: &Alert,
        targets: &[String],
        delivered: &[String],
    ) -> Result<bool, OutboxError> {
        {
            let mut keys = txn.open_table(KEYS).map_err(db)?;
            if keys
                .get(alert.idempotency_key.as_str())
                .map_err(db)?
                .is_some()
            {
                return Ok(false);
            }
            let mut meta = txn.open_table(META).map_err(db)?;
            let number = meta.get(NEXT).map_err(db)?.map(|g| g.value()).unwrap_or(1);
            meta.insert(NEXT, number.saturating_add(1)).map_err(db)?;
            let owed: Vec<String> = targets
                .iter()
                .filter(|t| !delivered.contains(t))
                .cloned()
                .collect();
            let entry = OutboxEntry {
                number,
                alert: alert.clone(),
                pending: owed.clone(),
                delivered: delivered.to_vec(),
                dead_letter: Vec::new(),
            };
            let json = serde_json::to_vec(&entry)
                .map_err(|e| OutboxError::Corrupt(number, e.to_string()))?;
            let mut alerts = txn.open_table(ALERTS).map_err(db)?;
            alerts.insert(number, json.as_slice()).map_err(db)?;
            keys.insert(alert.idempotency_key.as_str(), number)
                .map_err(db)?;
            let mut pending = txn.open_table(PENDING).map_err(db)?;
            for t in &owed {
                pending.insert((t.as_str(), number), ()).map_err(db)?;
            }
            let mut dead = txn.open_table(DEAD).map_err(db)?;
            // Bound the size: drop the oldest records, counting those still owed somewhere.
            let mut dropped = 0u64;
            while alerts.len().map_err(db)? > config.max_alerts {
                let Some((n, bytes)) = alerts.pop_first().map_err(db)? else {
                    break;
                };
                let n = n.value();
                let old: Option<OutboxEntry> = serde_json::from_slice(bytes.value()).ok();
                drop(bytes);
                if let Some(old) = old {
                    keys.remove(old.alert.idempotency_key.as_str())
                        .map_err(db)?;
                    for t in &old.pending {
                        pending.remove((t.as_str(), n)).map_err(db)?;
                    }
                    for t in &old.dead_letter {
                        dead.remove((t.as_str(), n)).map_err(db)?;
                    }
                    if !old.pending.is_empty() {
                        dropped += 1;
                    }
                }
            }
            if dropped > 0 {
                let before = meta
                    .get(DROPPED_PENDING)
                    .map_err(db)?
                    .map(|g| g.value())
                    .unwrap_or(0);
                meta.insert(DROPPED_PENDING, before.saturating_add(dropped))
                    .map_err(db)?;
            }
        }
        Ok(true)
    }

    /// Up to `limit` alerts still owed to `target`, oldest first: stored ones, then those held
    /// in memory. Keys in `skip` are passed over (alerts the worker is backing off from).
    pub fn pending_except(
        &self,
        target: &str,
        limit: usize,
        skip: &BTreeSet<String>,
    ) -> Result<Vec<Alert>, OutboxError> {
        let marks: BTreeSet<String> = self
            .fault()
            .marks
            .iter()
            .filter(|(t, _)| t == target)
            .map(|(_, k)| k.clone())
            .collect();
        let mut out = Vec::new();
        let stored = self.with_db(|d| {
            let txn = d.begin_read().map_err(db)?;
            let pending = txn.open_table(PENDING).map_err(db)?;
            let alerts = txn.open_table(ALERTS).map_err(db)?;
            for item in pending
                .range((target, 0u64)..=(target, u64::MAX))
                .map_err(db)?
            {
                if out.len() >= limit {
                    break;
                }
                let (k, _) = item.map_err(db)?;
                let (_, n) = k.value();
                if let Some(bytes) = alerts.get(n).map_err(db)? {
                    let e = decode(n, bytes.value())?;
                    let key = &e.alert.idempotency_key;
                    if !marks.contains(key) && !skip.contains(key) {
                        out.push(e.alert);
                    }
                }
            }
            Ok(())
        });
        // During a disk fault (redb refuses reads too after a failed write, until reopened)
        // what is held in memory still goes out; what was stored waits for the reopen.
        match stored {
            Ok(()) => {}
            Err(_) if self.is_broken() => {}
            Err(e) => return Err(e),
        }
        let targets = self.targets();
        if targets.iter().any(|t| t == target) {
            let f = self.fault();
            for h in &f.held {
                if out.len() >= limit {
                    break;
                }
                if !h.delivered.iter().any(|t| t == target)
                    && !skip.contains(&h.alert.idempotency_key)
                {
                    out.push(h.alert.clone());
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` alerts still owed to `target`, oldest first.
    pub fn pending(&self, target: &str, limit: usize) -> Result<Vec<Alert>, OutboxError> {
        self.pending_except(target, limit, &BTreeSet::new())
    }

    /// Records that `target` accepted the alert with idempotency key `key`. Returns whether a
    /// pending mark was removed (false: unknown key or already delivered). When the disk cannot
    /// be written the mark is held in memory (and the alert not offered again) until it can.
    pub fn mark_delivered(&self, target: &str, key: &str) -> Result<bool, OutboxError> {
        {
            let mut f = self.fault();
            if let Some(h) = f.held.iter_mut().find(|h| h.alert.idempotency_key == key) {
                if h.delivered.iter().any(|t| t == target) {
                    return Ok(false);
                }
                h.delivered.push(target.to_string());
                return Ok(true);
            }
        }
        if self.is_broken() && !self.maintain() {
            return Ok(self
                .fault()
                .marks
                .insert((target.to_string(), key.to_string())));
        }
        match self.with_db(|d| Self::mark(d, target, key)) {
            Ok(removed) => Ok(removed),
            Err(e @ (OutboxError::Db(_) | OutboxError::Closed)) => {
                self.write_failed(&e);
                Ok(self
                    .fault()
                    .marks
                    .insert((target.to_string(), key.to_string())))
            }
            Err(e) => Err(e),
        }
    }

    fn mark(d: &Database, target: &str, key: &str) -> Result<bool, OutboxError> {
        let txn = d.begin_write().map_err(db)?;
        let removed;
        {
            let keys = txn.open_table(KEYS).map_err(db)?;
            let Some(n) = keys.get(key).map_err(db)?.map(|g| g.value()) else {
                return Ok(false);
            };
            let mut pending = txn.open_table(PENDING).map_err(db)?;
            removed = pending.remove((target, n)).map_err(db)?.is_some();
            if removed {
                let mut alerts = txn.open_table(ALERTS).map_err(db)?;
                let entry = match alerts.get(n).map_err(db)? {
                    Some(bytes) => Some(decode(n, bytes.value())?),
                    None => None,
                };
                if let Some(mut e) = entry {
                    e.pending.retain(|t| t != target);
                    if !e.delivered.iter().any(|t| t == target) {
                        e.delivered.push(target.to_string());
                    }
                    let json = serde_json::to_vec(&e)
                        .map_err(|x| OutboxError::Corrupt(n, x.to_string()))?;
                    alerts.insert(n, json.as_slice()).map_err(db)?;
                }
            }
        }
        txn.commit().map_err(db)?;
        Ok(removed)
    }

    /// Moves the alert `key` owed to `target` to that target's dead-letter list (the target
    /// refused it `attempts` times, last with `error`). Returns false when it is not stored and
    /// pending there (e.g. still held in memory: it stays owed).
    pub fn dead_letter(
        &self,
        target: &str,
        key: &str,
        attempts: u32,
        error: &str,
    ) -> Result<bool, OutboxError> {
        let mark = DeadMark {
            attempts,
            error: error.to_string(),
            at_ms: now_ms(),
        };
        let mark = serde_json::to_vec(&mark).map_err(|e| OutboxError::Corrupt(0, e.to_string()))?;
        let r = self.with_db(|d| {
            let txn = d.begin_write().map_err(db)?;
            {
                let keys = txn.open_table(KEYS).map_err(db)?;
                let Some(n) = keys.get(key).map_err(db)?.map(|g| g.value()) else {
                    return Ok(false);
                };
                let mut pending = txn.open_table(PENDING).map_err(db)?;
                if pending.remove((target, n)).map_err(db)?.is_none() {
                    return Ok(false);
                }
                let mut dead = txn.open_table(DEAD).map_err(db)?;
                dead.insert((target, n), mark.as_slice()).map_err(db)?;
                let mut alerts = txn.open_table(ALERTS).map_err(db)?;
                let entry = match alerts.get(n).map_err(db)? {
                    Some(bytes) => Some(decode(n, bytes.value())?),
                    None => None,
                };
                if let Some(mut e) = entry {
                    e.pending.retain(|t| t != target);
                    if !e.dead_letter.iter().any(|t| t == target) {
                        e.dead_letter.push(target.to_string());
                    }
                    let json = serde_json::to_vec(&e)
                        .map_err(|x| OutboxError::Corrupt(n, x.to_string()))?;
                    alerts.insert(n, json.as_slice()).map_err(db)?;
                }
            }
            txn.commit().map_err(db)?;
            Ok(true)
        });
        if let Err(e @ OutboxError::Db(_)) = &r {
            self.write_failed(e);
        }
        r
    }

    /// The dead-letter lists, oldest first, at most `limit` (capped at 1000).
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, OutboxError> {
        let limit = limit.min(1000);
        self.with_db(|d| {
            let txn = d.begin_read().map_err(db)?;
            let dead = txn.open_table(DEAD).map_err(db)?;
            let alerts = txn.open_table(ALERTS).map_err(db)?;
            let mut out = Vec::new();
            for item in dead.iter().map_err(db)? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = item.map_err(db)?;
                let (t, n) = k.value();
                let mark: DeadMark = serde_json::from_slice(v.value())
                    .map_err(|e| OutboxError::Corrupt(n, e.to_string()))?;
                if let Some(bytes) = alerts.get(n).map_err(db)? {
                    out.push(DeadLetter {
                        target: t.to_string(),
                        number: n,
                        mark,
                        alert: decode(n, bytes.value())?.alert,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Dead-lettered alerts per target (configured targets always appear, possibly with 0).
    pub fn dead_letter_counts(&self) -> Result<BTreeMap<String, u64>, OutboxError> {
        let mut out: BTreeMap<String, u64> = self.targets().into_iter().map(|t| (t, 0)).collect();
        self.with_db(|d| {
            let txn = d.begin_read().map_err(db)?;
            let dead = txn.open_table(DEAD).map_err(db)?;
            for item in dead.iter().map_err(db)? {
                let (k, _) = item.map_err(db)?;
                *out.entry(k.value().0.to_string()).or_insert(0) += 1;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Puts dead-lettered alerts back in their target's queue (an operator asked to retry):
    /// all of them, or only those of `target` and/or with idempotency key `key`. Returns how
    /// many were re-queued.
    pub fn retry_dead_letters(
        &self,
        target: Option<&str>,
        key: Option<&str>,
    ) -> Result<u64, OutboxError> {
        let r = self.with_db(|d| {
            let txn = d.begin_write().map_err(db)?;
            let mut n_requeued = 0u64;
            {
                let mut dead = txn.open_table(DEAD).map_err(db)?;
                let mut pending = txn.open_table(PENDING).map_err(db)?;
                let mut alerts = txn.open_table(ALERTS).map_err(db)?;
                let mut chosen: Vec<(String, u64)> = Vec::new();
                for item in dead.iter().map_err(db)? {
                    let (k, _) = item.map_err(db)?;
                    let (t, n) = k.value();
                    if target.is_some_and(|w| w != t) {
                        continue;
                    }
                    chosen.push((t.to_string(), n));
                }
                for (t, n) in chosen {
                    let entry = match alerts.get(n).map_err(db)? {
                        Some(bytes) => Some(decode(n, bytes.value())?),
                        None => None,
                    };
                    if let (Some(want), Some(e)) = (key, &entry) {
                        if e.alert.idempotency_key != want {
                            continue;
                        }
                    }
                    dead.remove((t.as_str(), n)).map_err(db)?;
                    pending.insert((t.as_str(), n), ()).map_err(db)?;
                    if let Some(mut e) = entry {
                        e.dead_letter.retain(|x| x != &t);
                        if !e.pending.contains(&t) {
                            e.pending.push(t.clone());
                        }
                        let json = serde_json::to_vec(&e)
                            .map_err(|x| OutboxError::Corrupt(n, x.to_string()))?;
                        alerts.insert(n, json.as_slice()).map_err(db)?;
                    }
                    n_requeued += 1;
                }
            }
            txn.commit().map_err(db)?;
            Ok(n_requeued)
        });
        if let Err(e @ OutboxError::Db(_)) = &r {
            self.write_failed(e);
        }
        r
    }

    /// Pending deliveries per target (configured targets always appear, possibly with 0),
    /// alerts held in memory included.
    pub fn backlog(&self) -> Result<BTreeMap<String, u64>, OutboxError> {
        let targets = self.targets();
        let mut out: BTreeMap<String, u64> = targets.iter().map(|t| (t.clone(), 0)).collect();
        let stored = self.with_db(|d| {
            let txn = d.begin_read().map_err(db)?;
            let pending = txn.open_table(PENDING).map_err(db)?;
            for item in pending.iter().map_err(db)? {
                let (k, _) = item.map_err(db)?;
                let (t, _) = k.value();
                *out.entry(t.to_string()).or_insert(0) += 1;
            }
            Ok(())
        });
        match stored {
            Ok(()) => {}
            Err(_) if self.is_broken() => {}
            Err(e) => return Err(e),
        }
        let f = self.fault();
        for (t, _) in &f.marks {
            if let Some(n) = out.get_mut(t) {
                *n = n.saturating_sub(1);
            }
        }
        for h in &f.held {
            for t in &targets {
                if !h.delivered.contains(t) {
                    *out.entry(t.clone()).or_insert(0) += 1;
                }
            }
        }
        Ok(out)
    }

    /// Re-queues what is owed to targets no longer configured (removed, or renamed by a changed
    /// URL). Rule: such an alert becomes owed to every configured target that neither already
    /// accepted it nor is already owed it; the removed target's mark goes. An alert written
    /// before accepted targets were recorded goes to every configured target it is not owed to
    /// (a receiver may then see its idempotency key twice). Returns the alerts re-queued.
    pub fn requeue_removed_targets(&self) -> Result<u64, OutboxError> {
        let current = self.targets();
        self.with_db(|d| {
            let txn = d.begin_write().map_err(db)?;
            let mut requeued = 0u64;
            {
                let mut pending = txn.open_table(PENDING).map_err(db)?;
                let mut orphans: Vec<(String, u64)> = Vec::new();
                for item in pending.iter().map_err(db)? {
                    let (k, _) = item.map_err(db)?;
                    let (t, n) = k.value();
                    if !current.iter().any(|c| c == t) {
                        orphans.push((t.to_string(), n));
                    }
                }
                let mut alerts = txn.open_table(ALERTS).map_err(db)?;
                let mut numbers: Vec<u64> = orphans.iter().map(|(_, n)| *n).collect();
                numbers.sort_unstable();
                numbers.dedup();
                for (t, n) in &orphans {
                    pending.remove((t.as_str(), *n)).map_err(db)?;
                }
                for n in numbers {
                    let entry = match alerts.get(n).map_err(db)? {
                        Some(bytes) => decode(n, bytes.value())?,
                        None => continue,
                    };
                    let mut e = entry;
                    e.pending.retain(|t| current.contains(t));
                    for c in &current {
                        if !e.pending.contains(c) && !e.delivered.contains(c) {
                            e.pending.push(c.clone());
                            pending.insert((c.as_str(), n), ()).map_err(db)?;
                        }
                    }
                    let json = serde_json::to_vec(&e)
                        .map_err(|x| OutboxError::Corrupt(n, x.to_string()))?;
                    alerts.insert(n, json.as_slice()).map_err(db)?;
                    requeued += 1;
                }
            }
            txn.commit().map_err(db)?;
            Ok(requeued)
        })
    }

    /// The most recent alerts, newest first, at most `limit` (capped at 1000); alerts held in
    /// memory (number 0) come first.
    pub fn list(&self, limit: usize) -> Result<Vec<OutboxEntry>, OutboxError> {
        let limit = limit.min(1000);
        let targets = self.targets();
        let mut out: Vec<OutboxEntry> = {
            let f = self.fault();
            f.held
                .iter()
                .rev()
                .take(limit)
                .map(|h| OutboxEntry {
                    number: 0,
                    alert: h.alert.clone(),
                    pending: targets
                        .iter()
                        .filter(|t| !h.delivered.contains(t))
                        .cloned()
                        .collect(),
                    delivered: h.delivered.clone(),
                    dead_letter: Vec::new(),
                })
                .collect()
        };
        let stored = self.with_db(|d| {
            let txn = d.begin_read().map_err(db)?;
            let alerts = txn.open_table(ALERTS).map_err(db)?;
            for item in alerts.iter().map_err(db)?.rev() {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = item.map_err(db)?;
                out.push(decode(k.value(), v.value())?);
            }
            Ok(())
        });
        match stored {
            Ok(()) => Ok(out),
            Err(_) if self.is_broken() => Ok(out),
            Err(e) => Err(e),
        }
    }

    /// The stored alert with idempotency key `key`.
    pub fn get(&self, key: &str) -> Result<Option<OutboxEntry>, OutboxError> {
        self.with_db(|d| {
            let txn = d.begin_read().map_err(db)?;
            let keys = txn.open_table(KEYS).map_err(db)?;
            let Some(n) = keys.get(key).map_err(db)?.map(|g| g.value()) else {
                return Ok(None);
            };
            let alerts = txn.open_table(ALERTS).map_err(db)?;
            match alerts.get(n).map_err(db)? {
                Some(v) => Ok(Some(decode(n, v.value())?)),
                None => Ok(None),
            }
        })
    }

    /// Number of alert records stored (not counting those held in memory).
    pub fn len(&self) -> Result<u64, OutboxError> {
        self.with_db(|d| {
            let txn = d.begin_read().map_err(db)?;
            let alerts = txn.open_table(ALERTS).map_err(db)?;
            alerts.len().map_err(db)
        })
    }

    pub fn is_empty(&self) -> Result<bool, OutboxError> {
        Ok(self.len()? == 0)
    }

    /// Alerts dropped by the size bound while still owed to a target.
    pub fn dropped_pending(&self) -> Result<u64, OutboxError> {
        self.with_db(|d| {
            let txn = d.begin_read().map_err(db)?;
            let meta = txn.open_table(META).map_err(db)?;
            Ok(meta
                .get(DROPPED_PENDING)
                .map_err(db)?
                .map(|g| g.value())
                .unwrap_or(0))
        })
    }

    /// Deletes fully delivered alerts created more than `retention_days` before `now`; returns
    /// how many were deleted. Dead-lettered alerts stay until retried (or the size bound).
    pub fn purge(&self, now: Timestamp) -> Result<usize, OutboxError> {
        let cutoff = now
            .micros()
            .saturating_sub(i64::from(self.config.retention_days).saturating_mul(86_400_000_000));
        let r = self.with_db(|d| {
            let txn = d.begin_write().map_err(db)?;
            let mut deleted = 0;
            {
                let mut alerts = txn.open_table(ALERTS).map_err(db)?;
                let mut keys = txn.open_table(KEYS).map_err(db)?;
                let mut doomed: Vec<(u64, String)> = Vec::new();
                for item in alerts.iter().map_err(db)? {
                    let (k, v) = item.map_err(db)?;
                    let n = k.value();
                    match serde_json::from_slice::<OutboxEntry>(v.value()) {
                        Ok(e)
                            if e.pending.is_empty()
                                && e.dead_letter.is_empty()
                                && e.alert.created.micros() < cutoff =>
                        {
                            doomed.push((n, e.alert.idempotency_key));
                        }
                        Ok(_) => {}
                        // An unreadable record can never be delivered: drop it.
                        Err(_) => doomed.push((n, String::new())),
                    }
                }
                for (n, key) in doomed {
                    alerts.remove(n).map_err(db)?;
                    if !key.is_empty() {
                        keys.remove(key.as_str()).map_err(db)?;
                    }
                    deleted += 1;
                }
            }
            txn.commit().map_err(db)?;
            Ok(deleted)
        });
        if let Err(e @ OutboxError::Db(_)) = &r {
            self.write_failed(e);
        }
        r
    }
}

fn decode(n: u64, bytes: &[u8]) -> Result<OutboxEntry, OutboxError> {
    serde_json::from_slice(bytes).map_err(|e| OutboxError::Corrupt(n, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertState, Severity};
    use simboxd_core::model::VerdictLevel;

    pub(crate) fn sample(i: u32, created: i64) -> Alert {
        Alert {
            id: format!("sbx-{i:016x}"),
            seq: 0,
            idempotency_key: format!("sbx-{i:016x}:0"),
            state: AlertState::Raised,
            severity: Severity::Critical,
            line: "10.0.0.9".parse().unwrap(),
            peer: None,
            site: None,
            verdict: VerdictLevel::Gateway,
            score: 0.9,
            reasons: Vec::new(),
            first_seen: Timestamp(created),
            last_seen: Timestamp(created),
            flagged_at: Some(Timestamp(created)),
            kind: crate::alert::AlertKind::Line,
            threat: None,
            lines: Vec::new(),
            created: Timestamp(created),
        }
    }

    fn cfg(dir: &Path) -> StorageConfig {
        StorageConfig {
            path: dir.join("sub").join("outbox.redb"),
            retention_days: 1,
            max_alerts: 10,
            ..Default::default()
        }
    }

    #[test]
    fn enqueue_pending_mark_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(
            &cfg(dir.path()),
            vec!["udp://a:514".into(), "http://h/".into()],
        )
        .unwrap();
        for i in 0..3 {
            assert!(ob.enqueue(&sample(i, 1_000_000)).unwrap());
        }
        assert!(
            !ob.enqueue(&sample(1, 1_000_000)).unwrap(),
            "duplicate key is a no-op"
        );
        let p = ob.pending("udp://a:514", 2).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].idempotency_key, sample(0, 0).idempotency_key);
        assert!(ob
            .mark_delivered("udp://a:514", &p[0].idempotency_key)
            .unwrap());
        assert!(!ob
            .mark_delivered("udp://a:514", &p[0].idempotency_key)
            .unwrap());
        assert!(!ob.mark_delivered("udp://a:514", "nope").unwrap());
        let b = ob.backlog().unwrap();
        assert_eq!(b["udp://a:514"], 2);
        assert_eq!(b["http://h/"], 3);
        let l = ob.list(10).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].alert.idempotency_key, sample(2, 0).idempotency_key);
        assert_eq!(l[2].pending, vec!["http://h/".to_string()]);
        assert_eq!(
            ob.pending("udp://a:514", 10).unwrap()[0].idempotency_key,
            sample(1, 0).idempotency_key
        );
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        {
            let ob = Outbox::open(&c, vec!["t".into()]).unwrap();
            ob.enqueue(&sample(1, 0)).unwrap();
            ob.enqueue(&sample(2, 0)).unwrap();
            ob.mark_delivered("t", &sample(1, 0).idempotency_key)
                .unwrap();
        }
        let ob = Outbox::open(&c, vec!["t".into()]).unwrap();
        let p = ob.pending("t", 10).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].idempotency_key, sample(2, 0).idempotency_key);
        assert!(ob.enqueue(&sample(3, 0)).unwrap());
        assert_eq!(ob.list(1).unwrap()[0].number, 3);
    }

    #[test]
    fn size_bound_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&cfg(dir.path()), vec!["t".into()]).unwrap();
        for i in 0..12 {
            ob.enqueue(&sample(i, 0)).unwrap();
        }
        assert_eq!(ob.len().unwrap(), 10);
        assert_eq!(ob.dropped_pending().unwrap(), 2);
        assert_eq!(ob.backlog().unwrap()["t"], 10);
        assert!(ob.get(&sample(0, 0).idempotency_key).unwrap().is_none());
        assert!(ob.get(&sample(11, 0).idempotency_key).unwrap().is_some());
    }

    #[test]
    fn purge_keeps_pending_and_recent() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&cfg(dir.path()), vec!["t".into()]).unwrap();
        let day = 86_400_000_000i64;
        ob.enqueue(&sample(1, 0)).unwrap(); // old, delivered
        ob.enqueue(&sample(2, 0)).unwrap(); // old, pending
        ob.enqueue(&sample(3, 5 * day)).unwrap(); // recent, delivered
        ob.mark_delivered("t", &sample(1, 0).idempotency_key)
            .unwrap();
        ob.mark_delivered("t", &sample(3, 0).idempotency_key)
            .unwrap();
        assert_eq!(ob.purge(Timestamp(5 * day)).unwrap(), 1);
        assert_eq!(ob.len().unwrap(), 2);
        assert!(ob.get(&sample(1, 0).idempotency_key).unwrap().is_none());
    }
}
