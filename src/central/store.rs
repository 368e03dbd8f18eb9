//! The central's state file (redb): line views per sensor, the sensor alerts and threat-event
//! chunks received (by key, with how often each arrived), the threat events themselves (the
//! threat table is rebuilt from them at start; the newest `max_threat_events` are kept) and the
//! alert episodes. One transaction per fetched batch, committed before the batch is
//! acknowledged.

use super::correlate::{Correlator, LineViews, SiteAlerts};
use crate::alert::AlertManager;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// Line address -> `LineViews` (JSON).
const LINES: TableDefinition<&str, &[u8]> = TableDefinition::new("lines");
/// Sensor alert idempotency key -> times received (1 unless redelivered).
const RECEIVED: TableDefinition<&str, u64> = TableDefinition::new("received");
/// `manager`, `sites` (JSON).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Threat-event chunk key (`<sensor>:threats:<hash>`) -> times received.
const CHUNKS: TableDefinition<&str, u64> = TableDefinition::new("threat_chunks");
/// Sequence -> one threat event (`stream::ThreatEvent` as JSON), in the order applied.
const THREAT_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("threat_events");
/// `next_threat_event`, `threat_events_dropped`, `next_received`, `next_chunk`,
/// `dedup_keys_dropped`.
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("counts");
/// Arrival sequence -> sensor alert key, oldest first: `RECEIVED` keeps the newest
/// `max_dedup_keys` keys.
const RECEIVED_ORDER: TableDefinition<u64, &str> = TableDefinition::new("received_order");
/// Arrival sequence -> threat-event chunk key, oldest first (as `RECEIVED_ORDER`).
const CHUNKS_ORDER: TableDefinition<u64, &str> = TableDefinition::new("threat_chunks_order");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("central state: {0}")]
    Db(#[from] redb::Error),
    #[error("central state directory {0}: {1}")]
    Dir(String, std::io::Error),
    /// Another instance holds the state file.
    #[error("central state {0} is in use by another instance")]
    InUse(String),
}

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

pub struct Store {
    db: Database,
}

/// What a batch changed, written in one transaction.
#[derive(Default)]
pub struct Changes {
    pub lines: BTreeMap<IpAddr, Option<LineViews>>,
    pub received: BTreeMap<String, u64>,
    /// Threat-event chunk keys and how often each arrived.
    pub chunks: BTreeMap<String, u64>,
    pub manager: Option<Vec<u8>>,
    pub sites: Option<Vec<u8>>,
    /// Threat events applied (JSON), appended in order.
    pub threat_events: Vec<Vec<u8>>,
    /// Threat events kept at most (the oldest go first).
    pub max_threat_events: u64,
    /// Sensor alert keys and threat-chunk keys remembered at most, each (the oldest go first).
    pub max_dedup_keys: u64,
}

/// Everything loaded at start.
pub struct Loaded {
    pub correlator: Correlator,
    pub received: u64,
    pub manager: Option<AlertManager>,
    pub sites: Option<SiteAlerts>,
    /// Threat events kept, oldest first.
    pub threat_events: Vec<crate::stream::ThreatEvent>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Dir(dir.display().to_string(), e))?;
        }
        let database = match Database::create(path) {
            Ok(d) => d,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse(path.display().to_string()))
            }
            Err(e) => return Err(db(e)),
        };
        let txn = database.begin_write().map_err(db)?;
        {
            txn.open_table(LINES).map_err(db)?;
            txn.open_table(RECEIVED).map_err(db)?;
            txn.open_table(META).map_err(db)?;
            txn.open_table(THREAT_EVENTS).map_err(db)?;
            txn.open_table(CHUNKS).map_err(db)?;
            txn.open_table(COUNTS).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(Store { db: database })
    }

    pub fn load(&self) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let lines = txn.open_table(LINES).map_err(db)?;
        let mut correlator = Correlator::default();
        for item in lines.iter().map_err(db)? {
            let (k, v) = item.map_err(db)?;
            let (Ok(ip), Ok(views)) = (
                k.value().parse::<IpAddr>(),
                serde_json::from_slice::<LineViews>(v.value()),
            ) else {
                continue;
            };
            correlator.lines.insert(ip, views);
        }
        let received = txn.open_table(RECEIVED).map_err(db)?.len().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        let manager = meta
            .get("manager")
            .map_err(db)?
            .and_then(|v| serde_json::from_slice(v.value()).ok());
        let sites = meta
            .get("sites")
            .map_err(db)?
            .and_then(|v| serde_json::from_slice(v.value()).ok());
        let mut threat_events = Vec::new();
        for item in txn
            .open_table(THREAT_EVENTS)
            .map_err(db)?
            .iter()
            .map_err(db)?
        {
            let (_, v) = item.map_err(db)?;
            if let Ok(e) = serde_json::from_slice(v.value()) {
                threat_events.push(e);
            }
        }
        Ok(Loaded {
            correlator,
            received,
            manager,
            sites,
            threat_events,
        })
    }

    /// How often each sensor alert key was received before (0: new). Read-only.
    pub fn received_counts(&self, keys: &[String]) -> Result<Vec<u64>, StoreError> {
        self.counts(RECEIVED, keys)
    }

    /// How often each threat-event chunk key was received before (0: new). Read-only.
    pub fn chunk_counts(&self, keys: &[String]) -> Result<Vec<u64>, StoreError> {
        self.counts(CHUNKS, keys)
    }

    fn counts(
        &self,
        table: TableDefinition<&str, u64>,
        keys: &[String],
    ) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(table).map_err(db)?;
        keys.iter()
            .map(|k| Ok(t.get(k.as_str()).map_err(db)?.map_or(0, |g| g.value())))
            .collect()
    }

    /// Every sensor alert key received with its count (for the API and tests).
    pub fn received(&self, limit: usize) -> Result<Vec<(String, u64)>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(RECEIVED).map_err(db)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(db)?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }

    pub fn commit(&self, c: &Changes) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut lines = txn.open_table(LINES).map_err(db)?;
            for (ip, views) in &c.lines {
                let key = ip.to_string();
                match views {
                    Some(v) => {
                        let json = serde_json::to_vec(v).unwrap_or_default();
                        lines.insert(key.as_str(), json.as_slice()).map_err(db)?;
                    }
                    None => {
                        lines.remove(key.as_str()).map_err(db)?;
                    }
                }
            }
            let mut counts = txn.open_table(COUNTS).map_err(db)?;
            // 0: not set, nothing forgotten.
            let keep = if c.max_dedup_keys == 0 {
                u64::MAX
            } else {
                c.max_dedup_keys
            };
            let mut dropped = remember(
                &mut txn.open_table(RECEIVED).map_err(db)?,
                &mut txn.open_table(RECEIVED_ORDER).map_err(db)?,
                &mut counts,
                "next_received",
                &c.received,
                keep,
            )?;
            dropped += remember(
                &mut txn.open_table(CHUNKS).map_err(db)?,
                &mut txn.open_table(CHUNKS_ORDER).map_err(db)?,
                &mut counts,
                "next_chunk",
                &c.chunks,
                keep,
            )?;
            if dropped > 0 {
                let before = counts
                    .get("dedup_keys_dropped")
                    .map_err(db)?
                    .map_or(0, |g| g.value());
                counts
                    .insert("dedup_keys_dropped", before + dropped)
                    .map_err(db)?;
            }
            drop(counts);
            let mut meta = txn.open_table(META).map_err(db)?;
            if let Some(m) = &c.manager {
                meta.insert("manager", m.as_slice()).map_err(db)?;
            }
            if let Some(s) = &c.sites {
                meta.insert("sites", s.as_slice()).map_err(db)?;
            }
            if !c.threat_events.is_empty() {
                let mut events = txn.open_table(THREAT_EVENTS).map_err(db)?;
                let mut counts = txn.open_table(COUNTS).map_err(db)?;
                let get = |t: &redb::Table<&str, u64>, k: &str| -> Result<u64, StoreError> {
                    Ok(t.get(k).map_err(db)?.map_or(0, |g| g.value()))
                };
                let mut next = get(&counts, "next_threat_event")?;
                for e in &c.threat_events {
                    events.insert(next, e.as_slice()).map_err(db)?;
                    next += 1;
                }
                counts.insert("next_threat_event", next).map_err(db)?;
                let mut dropped = 0u64;
                while events.len().map_err(db)? > c.max_threat_events.max(1) {
                    if events.pop_first().map_err(db)?.is_none() {
                        break;
                    }
                    dropped += 1;
                }
                if dropped > 0 {
                    let before = get(&counts, "threat_events_dropped")?;
                    counts
                        .insert("threat_events_dropped", before + dropped)
                        .map_err(db)?;
                }
            }
        }
        txn.commit().map_err(db)?;
        Ok(())
    }
}

/// Stores `keys` (key -> times received) in `table`; a key new to the table is appended to
/// `order` under the next arrival number (`counts[next]`), and the oldest keys beyond `keep`
/// are forgotten from both. Returns how many were forgotten. Deduplication needs only recent
/// keys: JetStream drops a sensor's republished message within its duplicate window, and
/// redelivers only what the central has not acknowledged (acks follow the commit).
fn remember(
    table: &mut redb::Table<&str, u64>,
    order: &mut redb::Table<u64, &str>,
    counts: &mut redb::Table<&str, u64>,
    next: &str,
    keys: &BTreeMap<String, u64>,
    keep: u64,
) -> Result<u64, StoreError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let mut seq = counts.get(next).map_err(db)?.map_or(0, |g| g.value());
    for (k, n) in keys {
        if table.insert(k.as_str(), *n).map_err(db)?.is_none() {
            order.insert(seq, k.as_str()).map_err(db)?;
            seq += 1;
        }
    }
    counts.insert(next, seq).map_err(db)?;
    let mut dropped = 0;
    while order.len().map_err(db)? > keep {
        let Some((_, oldest)) = order.pop_first().map_err(db)? else {
            break;
        };
        table.remove(oldest.value()).map_err(db)?;
        dropped += 1;
    }
    Ok(dropped)
}

impl Store {
    /// Threat events dropped from the state file to stay within `max_threat_events`.
    pub fn threat_events_dropped(&self) -> u64 {
        self.count("threat_events_dropped")
    }

    /// Sensor alert and threat-chunk keys forgotten to stay within `max_dedup_keys`.
    pub fn dedup_keys_dropped(&self) -> u64 {
        self.count("dedup_keys_dropped")
    }

    fn count(&self, name: &str) -> u64 {
        let read = || -> Result<u64, StoreError> {
            let txn = self.db.begin_read().map_err(db)?;
            let t = txn.open_table(COUNTS).map_err(db)?;
            Ok(t.get(name).map_err(db)?.map_or(0, |g| g.value()))
        };
        read().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ks: &[&str], n: u64) -> BTreeMap<String, u64> {
        ks.iter().map(|k| (k.to_string(), n)).collect()
    }

    #[test]
    fn dedup_keys_keep_the_newest_and_count_the_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("central.redb")).unwrap();
        let commit = |received: &[&str], n: u64, chunks: &[&str]| {
            let c = Changes {
                received: keys(received, n),
                chunks: keys(chunks, 1),
                max_dedup_keys: 3,
                ..Default::default()
            };
            store.commit(&c).unwrap();
        };
        commit(&["a1", "a2"], 1, &["c1"]);
        // A redelivery of a key already kept: its count moves, no new arrival.
        commit(&["a1"], 2, &[]);
        commit(&["a3", "a4", "a5"], 1, &["c2", "c3", "c4", "c5"]);
        let all = ["a1", "a2", "a3", "a4", "a5"].map(String::from);
        assert_eq!(store.received_counts(&all).unwrap(), vec![0, 0, 1, 1, 1]);
        let all = ["c1", "c2", "c3", "c4", "c5"].map(String::from);
        assert_eq!(store.chunk_counts(&all).unwrap(), vec![0, 0, 1, 1, 1]);
        assert_eq!(store.dedup_keys_dropped(), 4);
        assert_eq!(store.load().unwrap().received, 3);
        // Unset (0): nothing is forgotten.
        let c = Changes {
            received: keys(&["a6", "a7"], 1),
            ..Default::default()
        };
        store.commit(&c).unwrap();
        assert_eq!(store.load().unwrap().received, 5);
    }
}
