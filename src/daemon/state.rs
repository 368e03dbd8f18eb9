//! Line profiles and open alert episodes kept across restarts and crashes: `state.redb` beside
//! the outbox in `[storage] path`'s directory.
//!
//! Contract: lines are stored one record per line (key: the address as text; value: the
//! profile in postcard, see `PacketEngine::take_changes`), so a checkpoint writes only what
//! changed since the last one. Every write is a redb transaction (durable when `commit`
//! returns): a crash, `kill -9` or a full disk leaves the last committed state, never a torn
//! file. A checkpoint is committed in chunks of lines (each line whole) and then its meta
//! (table counters, open alert episodes), which the alert side also commits on its own as soon
//! as an episode opens or closes. `profiles.json` of earlier versions is read once on start
//! (`load_legacy`) and renamed away once its content is stored here.

use crate::alert::AlertManager;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Format version of the store.
pub const STATE_VERSION: u32 = 5;

const LINES: TableDefinition<&str, &[u8]> = TableDefinition::new("lines");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Page cache of the store.
const STORE_CACHE_BYTES: usize = 32 << 20;

/// Meta keys.
const KEY_VERSION: &str = "version";
const KEY_ALERTS: &str = "alerts";
const KEY_COUNTERS: &str = "counters";

/// The JSON state file of earlier versions (read for migration only).
#[derive(Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    /// One entry per engine worker (its line profiles), in worker order.
    pub workers: Vec<serde_json::Value>,
    /// Open alert episodes.
    pub alerts: Option<AlertManager>,
}

pub struct StateStore {
    db: Database,
    path: PathBuf,
}

fn db<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Why the store could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Its file or directory cannot be read or written (a full or read-only disk, missing
    /// permissions): the store itself may be fine.
    Io(std::io::Error),
    /// The store is unusable: corrupt, or of another format version.
    Unusable(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "I/O error: {e}"),
            OpenError::Unusable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for OpenError {}

fn open_err<E: Into<redb::Error>>(e: E) -> OpenError {
    match e.into() {
        // A file too short or malformed to be a store reads as an I/O error too.
        redb::Error::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ) =>
        {
            OpenError::Unusable(e.to_string())
        }
        redb::Error::Io(e) => OpenError::Io(e),
        redb::Error::PreviousIo => OpenError::Io(std::io::Error::other("an earlier write failed")),
        other => OpenError::Unusable(other.to_string()),
    }
}

impl StateStore {
    /// The store for an outbox at `storage_path`.
    pub fn path_for(storage_path: &Path) -> PathBuf {
        storage_path.with_file_name("state.redb")
    }

    /// The JSON state file of earlier versions beside it.
    pub fn legacy_path_for(storage_path: &Path) -> PathBuf {
        storage_path.with_file_name("profiles.json")
    }

    pub fn open(path: &Path) -> Result<StateStore, OpenError> {
        use std::os::unix::fs::OpenOptionsExt;
        // Created with the daemon's mode first; redb opens the existing (empty) file.
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o640)
                .open(path)
                .map_err(OpenError::Io)?;
        }
        // redb caches up to 1 GiB by default: resident memory a million-line daemon cannot
        // spare (the profiles themselves are in the engines already).
        let database = redb::Builder::new()
            .set_cache_size(STORE_CACHE_BYTES)
            .create(path)
            .map_err(open_err)?;
        Self::init(database, path)
    }

    /// A store in memory, for a daemon whose state directory cannot be written (a full or
    /// read-only disk): it runs, and what it would have saved is lost at its stop.
    pub fn in_memory(path: &Path) -> Result<StateStore, String> {
        let database = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db)?;
        Self::init(database, path).map_err(|e| e.to_string())
    }

    fn init(database: Database, path: &Path) -> Result<StateStore, OpenError> {
        let txn = database.begin_write().map_err(open_err)?;
        {
            txn.open_table(LINES).map_err(open_err)?;
            let mut meta = txn.open_table(META).map_err(open_err)?;
            let version = meta
                .get(KEY_VERSION)
                .map_err(open_err)?
                .map(|v| v.value().to_vec());
            match version {
                None => {
                    meta.insert(KEY_VERSION, STATE_VERSION.to_le_bytes().as_slice())
                        .map_err(open_err)?;
                }
                Some(v) if v.as_slice() == STATE_VERSION.to_le_bytes() => {}
                Some(v) => {
                    return Err(OpenError::Unusable(format!(
                        "state store version {v:?} is not {STATE_VERSION}"
                    )))
                }
            }
        }
        txn.commit().map_err(open_err)?;
        Ok(StateStore {
            db: database,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores changed lines and forgets removed ones, in one transaction.
    pub fn write_lines(
        &self,
        lines: &[(IpAddr, Vec<u8>)],
        removed: &[IpAddr],
    ) -> Result<(), String> {
        if lines.is_empty() && removed.is_empty() {
            return Ok(());
        }
        // In key order: B-tree inserts then touch each page once.
        let mut keyed: Vec<(String, &[u8])> = lines
            .iter()
            .map(|(ip, b)| (ip.to_string(), b.as_slice()))
            .collect();
        keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut t = txn.open_table(LINES).map_err(db)?;
            for ip in removed {
                t.remove(ip.to_string().as_str()).map_err(db)?;
            }
            for (k, bytes) in keyed {
                t.insert(k.as_str(), bytes).map_err(db)?;
            }
        }
        txn.commit().map_err(db)
    }

    /// Forgets every line (before a full rewrite).
    pub fn clear_lines(&self) -> Result<(), String> {
        let txn = self.db.begin_write().map_err(db)?;
        txn.delete_table(LINES).map_err(db)?;
        txn.open_table(LINES).map_err(db)?;
        txn.commit().map_err(db)
    }

    /// Stores, when given, the open alert episodes (`AlertManager` as JSON: a few hundred at
    /// most) and the table counters of every worker.
    pub fn write_meta(
        &self,
        alerts: Option<&[u8]>,
        counters: Option<&[Vec<u8>]>,
    ) -> Result<(), String> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            if let Some(bytes) = alerts {
                meta.insert(KEY_ALERTS, bytes).map_err(db)?;
            }
            if let Some(c) = counters {
                let bytes = postcard::to_stdvec(c).map_err(db)?;
                meta.insert(KEY_COUNTERS, bytes.as_slice()).map_err(db)?;
            }
        }
        txn.commit().map_err(db)
    }

    /// The stored open alert episodes.
    pub fn alerts(&self) -> Result<Option<AlertManager>, String> {
        let txn = self.db.begin_read().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        let Some(v) = meta.get(KEY_ALERTS).map_err(db)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value()).map(Some).map_err(db)
    }

    /// The stored table counters (one entry per worker that saved them).
    pub fn counters(&self) -> Result<Vec<Vec<u8>>, String> {
        let txn = self.db.begin_read().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        let Some(v) = meta.get(KEY_COUNTERS).map_err(db)? else {
            return Ok(Vec::new());
        };
        postcard::from_bytes(v.value()).map_err(db)
    }

    /// Calls `each` with every stored line (address, encoded profile); returns how many.
    /// A key that is not an address is skipped.
    pub fn for_each_line(&self, mut each: impl FnMut(IpAddr, &[u8])) -> Result<usize, String> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(LINES).map_err(db)?;
        let mut n = 0;
        for row in t.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            if let Ok(ip) = k.value().parse::<IpAddr>() {
                each(ip, v.value());
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn line_count(&self) -> Result<u64, String> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(LINES).map_err(db)?;
        t.len().map_err(db)
    }
}

/// Reads a JSON state file of an earlier version (`profiles.json`); `Ok(None)` when absent or
/// empty.
pub fn load_legacy(path: &Path) -> Result<Option<SavedState>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let s: SavedState = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if s.version != 1 {
        return Err(format!("state file version {} is not 1", s.version));
    }
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_removed_and_cleared_in_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let p = StateStore::path_for(&dir.path().join("alerts.redb"));
        assert_eq!(p, dir.path().join("state.redb"));
        let s = StateStore::open(&p).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "2001:db8::7".parse().unwrap();
        s.write_lines(&[(a, vec![1, 2]), (b, vec![3])], &[])
            .unwrap();
        s.write_lines(&[(b, vec![4, 5])], &[a]).unwrap();
        let mut got = Vec::new();
        assert_eq!(
            s.for_each_line(|ip, v| got.push((ip, v.to_vec()))).unwrap(),
            1
        );
        assert_eq!(got, vec![(b, vec![4, 5])]);
        let m = serde_json::to_vec(&AlertManager::default()).unwrap();
        s.write_meta(Some(&m), Some(&[vec![9]])).unwrap();
        drop(s);
        let s = StateStore::open(&p).unwrap();
        assert_eq!(s.line_count().unwrap(), 1);
        assert!(s.alerts().unwrap().is_some());
        assert_eq!(s.counters().unwrap(), vec![vec![9]]);
        s.clear_lines().unwrap();
        assert_eq!(s.line_count().unwrap(), 0);
    }

    #[test]
    fn open_tells_a_disk_that_cannot_be_written_from_a_broken_store() {
        let dir = tempfile::tempdir().unwrap();
        // No such directory: the disk side (the daemon keeps its state in memory).
        let p = dir.path().join("missing/state.redb");
        assert!(matches!(StateStore::open(&p), Err(OpenError::Io(_))));
        // Garbage, short or long: the store side (moved aside).
        let p = dir.path().join("state.redb");
        std::fs::write(&p, b"not a store").unwrap();
        assert!(matches!(StateStore::open(&p), Err(OpenError::Unusable(_))));
        std::fs::write(&p, vec![0x5a; 1 << 16]).unwrap();
        assert!(matches!(StateStore::open(&p), Err(OpenError::Unusable(_))));
    }

    #[test]
    fn legacy_garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("profiles.json");
        assert!(load_legacy(&p).unwrap().is_none());
        std::fs::write(&p, b"{\"version\": 1, \"workers\": [").unwrap();
        assert!(load_legacy(&p).is_err());
        std::fs::write(&p, b"{\"version\": 9, \"workers\": [], \"alerts\": null}").unwrap();
        assert!(load_legacy(&p).is_err());
        std::fs::write(&p, b"{\"version\": 1, \"workers\": [], \"alerts\": null}").unwrap();
        assert!(load_legacy(&p).unwrap().is_some());
    }
}
