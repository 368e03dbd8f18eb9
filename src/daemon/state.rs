//! Line profiles and open alert episodes kept across restarts (`profiles.json` beside the
//! outbox in `[storage] path`'s directory).
//!
//! Contract: the file is opened (created) at start, as the daemon user, and kept open; SIGTERM
//! rewrites it through that handle. A file that does not parse is logged and ignored (the daemon
//! starts empty rather than not at all).

use crate::alert::AlertManager;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Format version of the state file.
pub const STATE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    /// One entry per engine worker (its line profiles), in worker order.
    pub workers: Vec<serde_json::Value>,
    /// Open alert episodes.
    pub alerts: Option<AlertManager>,
}

pub struct StateFile {
    path: PathBuf,
    file: File,
}

impl StateFile {
    /// The state file for an outbox at `storage_path`.
    pub fn path_for(storage_path: &Path) -> PathBuf {
        storage_path.with_file_name("profiles.json")
    }

    pub fn open(path: &Path) -> std::io::Result<StateFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(path)?;
        Ok(StateFile {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, `Ok(None)` when the file is empty.
    pub fn load(&mut self) -> Result<Option<SavedState>, String> {
        let mut text = String::new();
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.read_to_string(&mut text))
            .map_err(|e| e.to_string())?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        let s: SavedState = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if s.version != STATE_VERSION {
            return Err(format!(
                "state version {} is not {STATE_VERSION}",
                s.version
            ));
        }
        Ok(Some(s))
    }

    pub fn save(&mut self, state: &SavedState) -> Result<u64, String> {
        let bytes = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.write_all(&bytes))
            .and_then(|_| self.file.set_len(bytes.len() as u64))
            .and_then(|_| self.file.sync_all())
            .map_err(|e| e.to_string())?;
        Ok(bytes.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let p = StateFile::path_for(&dir.path().join("alerts.redb"));
        assert_eq!(p, dir.path().join("profiles.json"));
        let mut f = StateFile::open(&p).unwrap();
        assert!(f.load().unwrap().is_none());
        let big = SavedState {
            version: STATE_VERSION,
            workers: vec![serde_json::json!({ "lines": vec!["x"; 100] })],
            alerts: Some(AlertManager::default()),
        };
        f.save(&big).unwrap();
        let small = SavedState {
            version: STATE_VERSION,
            workers: vec![serde_json::json!({"lines": []})],
            alerts: None,
        };
        let n = f.save(&small).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), n);
        let mut again = StateFile::open(&p).unwrap();
        let got = again.load().unwrap().unwrap();
        assert_eq!(got.workers, small.workers);
        assert!(got.alerts.is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("profiles.json");
        std::fs::write(&p, b"{\"version\": 1, \"workers\": [").unwrap();
        assert!(StateFile::open(&p).unwrap().load().is_err());
        std::fs::write(&p, b"{\"version\": 9, \"workers\": [], \"alerts\": null}").unwrap();
        assert!(StateFile::open(&p).unwrap().load().is_err());
    }
}
