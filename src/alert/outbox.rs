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

use super::Alert;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use simboxd_core::model::Timestamp;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("/var/lib/simboxd/alerts.redb"),
            retention_days: 30,
            max_alerts: 100_000,
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
}

pub struct Outbox {
    db: Database,
    /// Swapped by `set_targets` when a reload changes `[syslog]`/`[webhook]`.
    targets: std::sync::RwLock<Vec<String>>,
    config: StorageConfig,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.config.path)
            .field("targets", &self.targets())
            .finish()
    }
}

impl Outbox {
    /// Opens (or creates) the outbox at `config.path`; `targets` are the names every new alert is
    /// owed to. Pending marks for targets no longer configured stay and show in `backlog`.
    pub fn open(config: &StorageConfig, targets: Vec<String>) -> Result<Outbox, OutboxError> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OutboxError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let database = Database::create(&config.path).map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        {
            txn.open_table(ALERTS).map_err(db)?;
            txn.open_table(KEYS).map_err(db)?;
            txn.open_table(PENDING).map_err(db)?;
            txn.open_table(META).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(Outbox {
            db: database,
            targets: std::sync::RwLock::new(targets),
            config: config.clone(),
        })
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

    /// Durably stores `alert` with a pending mark for every target, in one transaction. Returns
    /// `false` when an alert with the same idempotency key is already stored.
    pub fn enqueue(&self, alert: &Alert) -> Result<bool, OutboxError> {
        let targets = self.targets();
        let txn = self.db.begin_write().map_err(db)?;
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
            let entry = OutboxEntry {
                number,
                alert: alert.clone(),
                pending: targets.clone(),
                delivered: Vec::new(),
            };
            let json = serde_json::to_vec(&entry)
                .map_err(|e| OutboxError::Corrupt(number, e.to_string()))?;
            let mut alerts = txn.open_table(ALERTS).map_err(db)?;
            alerts.insert(number, json.as_slice()).map_err(db)?;
            keys.insert(alert.idempotency_key.as_str(), number)
                .map_err(db)?;
            let mut pending = txn.open_table(PENDING).map_err(db)?;
            for t in &targets {
                pending.insert((t.as_str(), number), ()).map_err(db)?;
            }
            // Bound the size: drop the oldest records, counting those still owed somewhere.
            let mut dropped = 0u64;
            while alerts.len().map_err(db)? > self.config.max_alerts {
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
        txn.commit().map_err(db)?;
        Ok(true)
    }

    /// Up to `limit` alerts still owed to `target`, oldest first.
    pub fn pending(&self, target: &str, limit: usize) -> Result<Vec<Alert>, OutboxError> {
        let txn = self.db.begin_read().map_err(db)?;
        let pending = txn.open_table(PENDING).map_err(db)?;
        let alerts = txn.open_table(ALERTS).map_err(db)?;
        let mut out = Vec::new();
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
                out.push(e.alert);
            }
        }
        Ok(out)
    }

    /// Records that `target` accepted the alert with idempotency key `key`. Returns whether a
    /// pending mark was removed (false: unknown key or already delivered).
    pub fn mark_delivered(&self, target: &str, key: &str) -> Result<bool, OutboxError> {
        let txn = self.db.begin_write().map_err(db)?;
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

    /// Pending deliveries per target (configured targets always appear, possibly with 0).
    pub fn backlog(&self) -> Result<BTreeMap<String, u64>, OutboxError> {
        let mut out: BTreeMap<String, u64> = self.targets().into_iter().map(|t| (t, 0)).collect();
        let txn = self.db.begin_read().map_err(db)?;
        let pending = txn.open_table(PENDING).map_err(db)?;
        for item in pending.iter().map_err(db)? {
            let (k, _) = item.map_err(db)?;
            let (t, _) = k.value();
            *out.entry(t.to_string()).or_insert(0) += 1;
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
        let txn = self.db.begin_write().map_err(db)?;
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
                let json =
                    serde_json::to_vec(&e).map_err(|x| OutboxError::Corrupt(n, x.to_string()))?;
                alerts.insert(n, json.as_slice()).map_err(db)?;
                requeued += 1;
            }
        }
        txn.commit().map_err(db)?;
        Ok(requeued)
    }

    /// The most recent alerts, newest first, at most `limit` (capped at 1000).
    pub fn list(&self, limit: usize) -> Result<Vec<OutboxEntry>, OutboxError> {
        let limit = limit.min(1000);
        let txn = self.db.begin_read().map_err(db)?;
        let alerts = txn.open_table(ALERTS).map_err(db)?;
        let mut out = Vec::with_capacity(limit.min(64));
        for item in alerts.iter().map_err(db)?.rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(db)?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// The stored alert with idempotency key `key`.
    pub fn get(&self, key: &str) -> Result<Option<OutboxEntry>, OutboxError> {
        let txn = self.db.begin_read().map_err(db)?;
        let keys = txn.open_table(KEYS).map_err(db)?;
        let Some(n) = keys.get(key).map_err(db)?.map(|g| g.value()) else {
            return Ok(None);
        };
        let alerts = txn.open_table(ALERTS).map_err(db)?;
        match alerts.get(n).map_err(db)? {
            Some(v) => Ok(Some(decode(n, v.value())?)),
            None => Ok(None),
        }
    }

    /// Number of alert records held.
    pub fn len(&self) -> Result<u64, OutboxError> {
        let txn = self.db.begin_read().map_err(db)?;
        let alerts = txn.open_table(ALERTS).map_err(db)?;
        alerts.len().map_err(db)
    }

    pub fn is_empty(&self) -> Result<bool, OutboxError> {
        Ok(self.len()? == 0)
    }

    /// Alerts dropped by the size bound while still owed to a target.
    pub fn dropped_pending(&self) -> Result<u64, OutboxError> {
        let txn = self.db.begin_read().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        Ok(meta
            .get(DROPPED_PENDING)
            .map_err(db)?
            .map(|g| g.value())
            .unwrap_or(0))
    }

    /// Deletes fully delivered alerts created more than `retention_days` before `now`; returns
    /// how many were deleted.
    pub fn purge(&self, now: Timestamp) -> Result<usize, OutboxError> {
        let cutoff = now
            .micros()
            .saturating_sub(i64::from(self.config.retention_days).saturating_mul(86_400_000_000));
        let txn = self.db.begin_write().map_err(db)?;
        let mut deleted = 0;
        {
            let mut alerts = txn.open_table(ALERTS).map_err(db)?;
            let mut keys = txn.open_table(KEYS).map_err(db)?;
            let mut doomed: Vec<(u64, String)> = Vec::new();
            for item in alerts.iter().map_err(db)? {
                let (k, v) = item.map_err(db)?;
                let n = k.value();
                match serde_json::from_slice::<OutboxEntry>(v.value()) {
                    Ok(e) if e.pending.is_empty() && e.alert.created.micros() < cutoff => {
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
            created: Timestamp(created),
        }
    }

    fn cfg(dir: &Path) -> StorageConfig {
        StorageConfig {
            path: dir.join("sub").join("outbox.redb"),
            retention_days: 1,
            max_alerts: 10,
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
