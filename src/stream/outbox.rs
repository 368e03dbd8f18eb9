//! The stream outbox: evidence summaries and call records waiting for JetStream, in redb (the
//! alert outbox's pattern), so that an outage or a restart loses none of them.
//!
//! Contract: a message stays until `remove` after JetStream acknowledged it, with the same
//! message id on every retry. A line's newer evidence replaces its older one still waiting (the
//! latest figures are what a central needs), so evidence is bounded by the lines; call records
//! queue in order. Beyond `max_pending` messages the oldest call records are dropped first, then
//! the oldest evidence, and counted.

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Key (`l/<line>` evidence, `c/<seq>` calls) -> [`Pending`] as JSON.
const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("pending");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_CALL: &str = "next_call";
const DROPPED: &str = "dropped";

/// One message waiting for JetStream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub key: String,
    pub subject: String,
    pub msg_id: String,
    pub payload: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamOutboxError {
    #[error("stream outbox: {0}")]
    Db(#[from] redb::Error),
    #[error("stream outbox directory {0}: {1}")]
    Dir(String, std::io::Error),
}

fn db<E: Into<redb::Error>>(e: E) -> StreamOutboxError {
    StreamOutboxError::Db(e.into())
}

pub struct StreamOutbox {
    db: Database,
    max_pending: u64,
}

impl StreamOutbox {
    pub fn open(path: &Path, max_pending: u64) -> Result<Self, StreamOutboxError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StreamOutboxError::Dir(dir.display().to_string(), e))?;
        }
        let database = Database::create(path).map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        {
            txn.open_table(PENDING).map_err(db)?;
            txn.open_table(META).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(StreamOutbox {
            db: database,
            max_pending: max_pending.max(1),
        })
    }

    /// Stores evidence of `line` (replacing any still waiting) and call records, in one
    /// transaction: `(line, subject, msg_id, payload)` and `(subject, msg_id, payload)`.
    pub fn enqueue(
        &self,
        evidence: &[(String, String, String, String)],
        calls: &[(String, String, String)],
    ) -> Result<(), StreamOutboxError> {
        if evidence.is_empty() && calls.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut t = txn.open_table(PENDING).map_err(db)?;
            let mut meta = txn.open_table(META).map_err(db)?;
            let put =
                |t: &mut redb::Table<&str, &[u8]>, p: &Pending| -> Result<(), StreamOutboxError> {
                    let json = serde_json::to_vec(p).unwrap_or_default();
                    t.insert(p.key.as_str(), json.as_slice()).map_err(db)?;
                    Ok(())
                };
            for (line, subject, msg_id, payload) in evidence {
                let p = Pending {
                    key: format!("l/{line}"),
                    subject: subject.clone(),
                    msg_id: msg_id.clone(),
                    payload: payload.clone(),
                };
                put(&mut t, &p)?;
            }
            let mut next = meta.get(NEXT_CALL).map_err(db)?.map_or(0, |g| g.value());
            for (subject, msg_id, payload) in calls {
                let p = Pending {
                    key: format!("c/{next:020}"),
                    subject: subject.clone(),
                    msg_id: msg_id.clone(),
                    payload: payload.clone(),
                };
                next += 1;
                put(&mut t, &p)?;
            }
            meta.insert(NEXT_CALL, next).map_err(db)?;
            let mut dropped = 0u64;
            while t.len().map_err(db)? > self.max_pending {
                // "c/..." sorts before "l/...": the oldest call record goes first.
                if t.pop_first().map_err(db)?.is_none() {
                    break;
                }
                dropped += 1;
            }
            if dropped > 0 {
                let before = meta.get(DROPPED).map_err(db)?.map_or(0, |g| g.value());
                meta.insert(DROPPED, before + dropped).map_err(db)?;
            }
        }
        txn.commit().map_err(db)?;
        Ok(())
    }

    /// Up to `limit` waiting messages (call records in order, then evidence).
    pub fn peek(&self, limit: usize) -> Result<Vec<Pending>, StreamOutboxError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(PENDING).map_err(db)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db)? {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item.map_err(db)?;
            if let Ok(p) = serde_json::from_slice::<Pending>(v.value()) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Removes acknowledged messages: each key only if it still holds the same message id
    /// (newer evidence that replaced it meanwhile stays).
    pub fn remove(&self, acked: &[(String, String)]) -> Result<(), StreamOutboxError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut t = txn.open_table(PENDING).map_err(db)?;
            for (key, msg_id) in acked {
                let same = t
                    .get(key.as_str())
                    .map_err(db)?
                    .and_then(|v| serde_json::from_slice::<Pending>(v.value()).ok())
                    .is_some_and(|p| &p.msg_id == msg_id);
                if same {
                    t.remove(key.as_str()).map_err(db)?;
                }
            }
        }
        txn.commit().map_err(db)?;
        Ok(())
    }

    pub fn len(&self) -> Result<u64, StreamOutboxError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(PENDING).map_err(db)?;
        t.len().map_err(db)
    }

    /// Messages dropped by the bound.
    pub fn dropped(&self) -> Result<u64, StreamOutboxError> {
        let txn = self.db.begin_read().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        Ok(meta.get(DROPPED).map_err(db)?.map_or(0, |g| g.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(line: &str, id: &str) -> (String, String, String, String) {
        (
            line.into(),
            "simboxd.s.lines".into(),
            id.into(),
            "{}".into(),
        )
    }

    #[test]
    fn evidence_coalesces_calls_queue_and_bound_drops_calls_first() {
        let dir = tempfile::tempdir().unwrap();
        let ob = StreamOutbox::open(&dir.path().join("s.redb"), 4).unwrap();
        ob.enqueue(&[ev("10.0.0.1", "a1"), ev("10.0.0.2", "b1")], &[])
            .unwrap();
        ob.enqueue(&[ev("10.0.0.1", "a2")], &[]).unwrap();
        assert_eq!(ob.len().unwrap(), 2);
        let p = ob.peek(10).unwrap();
        assert_eq!(p[0].msg_id, "a2");
        // An ack of the replaced message leaves the newer one.
        ob.remove(&[("l/10.0.0.1".into(), "a1".into())]).unwrap();
        assert_eq!(ob.len().unwrap(), 2);
        let call = |id: &str| {
            (
                "simboxd.s.calls".to_string(),
                id.to_string(),
                "{}".to_string(),
            )
        };
        ob.enqueue(&[], &[call("c1"), call("c2"), call("c3")])
            .unwrap();
        assert_eq!(ob.len().unwrap(), 4);
        assert_eq!(ob.dropped().unwrap(), 1);
        let p = ob.peek(10).unwrap();
        assert_eq!(p[0].msg_id, "c2");
        ob.remove(&[(p[0].key.clone(), "c2".into())]).unwrap();
        assert_eq!(ob.len().unwrap(), 3);
    }
}
