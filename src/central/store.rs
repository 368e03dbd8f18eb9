//! The central's state file (redb): line views per sensor, the sensor alerts received (by
//! idempotency key, with how often each arrived) and the alert episodes. One transaction per
//! fetched batch, committed before the batch is acknowledged.

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
    pub manager: Option<Vec<u8>>,
    pub sites: Option<Vec<u8>>,
}

/// Everything loaded at start.
pub struct Loaded {
    pub correlator: Correlator,
    pub received: u64,
    pub manager: Option<AlertManager>,
    pub sites: Option<SiteAlerts>,
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
        Ok(Loaded {
            correlator,
            received,
            manager,
            sites,
        })
    }

    /// How often each key was received before (0: new). Read-only.
    pub fn received_counts(&self, keys: &[String]) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(RECEIVED).map_err(db)?;
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
            let mut rec = txn.open_table(RECEIVED).map_err(db)?;
            for (k, n) in &c.received {
                rec.insert(k.as_str(), *n).map_err(db)?;
            }
            let mut meta = txn.open_table(META).map_err(db)?;
            if let Some(m) = &c.manager {
                meta.insert("manager", m.as_slice()).map_err(db)?;
            }
            if let Some(s) = &c.sites {
                meta.insert("sites", s.as_slice()).map_err(db)?;
            }
        }
        txn.commit().map_err(db)?;
        Ok(())
    }
}
