//! The evidence writer: one thread that owns `<state dir>/evidence`. Per alert a folder
//! `<alert-id>/` with numbered pcaps (`line-<addr>-<n>.pcap`, a new part each time recording
//! (re)starts or the link type changes) and `manifest.json` (files, sizes, SHA-256, packets,
//! creation time, build, sensor, line, alert id). The API reads these folders (`list`,
//! `manifest`, `file`).
//!
//! Contract: the SHA-256 of a part follows its bytes as they are written, so the manifest can be
//! rewritten (at most every `MANIFEST_EVERY`, and at open, close and stop) without re-reading
//! the file; a manifest is written after its parts are flushed and replaced by rename, so it
//! never lists more bytes than the files hold (the API serves exactly the listed bytes). Disk
//! use: `per_alert_max_bytes` per alert, `max_bytes` in all (oldest closed alerts deleted first;
//! with none left the packet is dropped); every drop is counted and the first of a run logged.

use super::ring::KeptPacket;
use super::{EvidenceConfig, EvidenceStats};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use simboxd_core::model::{LinkType, Timestamp};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an open alert's manifest is rewritten while packets arrive.
pub const MANIFEST_EVERY: Duration = Duration::from_secs(1);
/// Messages queued to the writer.
pub const QUEUE: usize = 1024;
/// Bytes of a pcap file header and of a record header.
const FILE_HEADER: u64 = 24;
const RECORD_HEADER: u64 = 16;
/// Snap length written in part headers (what the capture can deliver at most).
const SNAPLEN: u32 = 262_144;
/// Alert folders listed by the API at most (newest first).
pub const MAX_LISTED: usize = 10_000;

/// What the writer is told.
pub enum StoreMsg {
    /// A line's alert opened (or an alert restored after a restart is recorded again).
    Open {
        id: String,
        line: IpAddr,
        verdict: String,
        first_seen: Timestamp,
    },
    /// Packets of recorded lines, by alert id, in arrival order.
    Packets(Vec<(Arc<str>, KeptPacket)>),
    /// The alert cleared: its evidence is complete.
    Close { id: String },
    /// Finish every file and manifest and end the thread.
    Stop,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    pub packets: u64,
    pub sip_packets: u64,
    pub media_packets: u64,
    /// Packets taken from the pre-alert ring (seen before the alert was raised).
    pub pre_alert_packets: u64,
    /// libpcap link type of the file.
    pub link_type: i32,
    pub first_packet: Option<Timestamp>,
    pub last_packet: Option<Timestamp>,
}

/// How the packets were chosen.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub ring_packets: usize,
    pub ring_bytes: usize,
    pub media_first: u32,
    pub media_every: u32,
    pub per_alert_max_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub alert_id: String,
    pub line: String,
    /// Verdict when the alert opened.
    pub verdict: String,
    /// Host name of the sensor that captured the packets.
    pub sensor: String,
    /// Version and git commit of the build.
    pub build: String,
    pub simboxd_version: String,
    /// Wall-clock times (RFC 3339 UTC): folder made, manifest last written, alert closed.
    pub created: String,
    pub updated: String,
    pub closed: Option<String>,
    /// `open` while packets are appended, `closed` once the alert cleared (or the daemon stopped).
    pub state: String,
    /// Capture time of the alert's first flagged verdict.
    pub alert_first_seen: Timestamp,
    pub files: Vec<ManifestFile>,
    /// Totals over `files`.
    pub bytes: u64,
    pub packets: u64,
    pub pre_alert_packets: u64,
    /// Packets not written because a disk cap was reached (`capped` says which was hit).
    pub packets_dropped_by_cap: u64,
    pub capped: Option<String>,
    pub sampling: Sampling,
}

struct Part {
    out: BufWriter<File>,
    hash: Sha256,
    link: LinkType,
}

struct AlertFiles {
    dir: PathBuf,
    m: Manifest,
    part: Option<Part>,
    dirty: bool,
    written_at: Instant,
    /// Position among closed alerts (deletion order); `None` while open.
    closed_seq: Option<u64>,
}

/// The writer's state; `run` is its thread.
pub struct Store {
    root: PathBuf,
    cfg: EvidenceConfig,
    sensor: String,
    stats: Arc<EvidenceStats>,
    alerts: BTreeMap<String, AlertFiles>,
    closed: BTreeMap<u64, String>,
    next_closed: u64,
    total: u64,
    files: u64,
    /// The global cap is being hit (logged once per run of drops).
    capped_logged: bool,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `sbx-` and 16 lower-case hex digits: the only folder names the store makes or the API opens.
pub fn valid_id(id: &str) -> bool {
    id.len() == 20
        && id.starts_with("sbx-")
        && id
            .bytes()
            .skip(4)
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn part_name(line: &str, n: usize) -> String {
    format!("line-{}-{n:03}.pcap", line.replace(':', "_"))
}

/// Flushes `part` and records its SHA-256 as the last file's (the part being written).
fn record_hash(part: &mut Part, m: &mut Manifest) {
    if let Err(e) = part.out.flush() {
        tracing::error!(error = %e, alert = %m.alert_id, "evidence flush failed");
    }
    if let Some(f) = m.files.last_mut() {
        f.sha256 = hex::encode(part.hash.clone().finalize());
    }
}

/// Ends a part: its final hash goes into the manifest and the file is closed.
fn seal_part(part: Option<Part>, m: &mut Manifest) {
    if let Some(mut p) = part {
        record_hash(&mut p, m);
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn create_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(path)
}

impl Store {
    /// Opens (creates) `root` and takes stock of what earlier runs left: their alerts count as
    /// closed, and the oldest are deleted at once when they exceed `max_bytes`.
    pub fn open(
        root: &Path,
        cfg: EvidenceConfig,
        stats: Arc<EvidenceStats>,
    ) -> std::io::Result<Store> {
        create_dir(root)?;
        let mut s = Store {
            root: root.to_path_buf(),
            cfg,
            sensor: crate::report::provenance::host(),
            stats,
            alerts: BTreeMap::new(),
            closed: BTreeMap::new(),
            next_closed: 0,
            total: 0,
            files: 0,
            capped_logged: false,
        };
        let mut found: Vec<(String, Manifest)> = Vec::new();
        for entry in std::fs::read_dir(root)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !valid_id(&name) {
                continue;
            }
            let text = std::fs::read(entry.path().join("manifest.json")).unwrap_or_default();
            match serde_json::from_slice::<Manifest>(&text) {
                Ok(m) if m.alert_id == name => found.push((name, m)),
                _ => {
                    tracing::warn!(folder = %entry.path().display(), "evidence folder without a readable manifest: left alone, not counted")
                }
            }
        }
        // Oldest first, so that they are deleted first.
        found.sort_by(|a, b| a.1.created.cmp(&b.1.created));
        for (id, mut m) in found {
            if m.state != "closed" {
                m.state = "closed".into();
                m.closed = Some(now_rfc3339());
            }
            s.total += m.bytes;
            s.files += m.files.len() as u64;
            let seq = s.next_closed;
            s.next_closed += 1;
            s.closed.insert(seq, id.clone());
            let mut a = AlertFiles {
                dir: root.join(&id),
                m,
                part: None,
                dirty: true,
                written_at: Instant::now(),
                closed_seq: Some(seq),
            };
            s.write_manifest(&mut a);
            s.alerts.insert(id, a);
        }
        while s.total > s.cfg.max_bytes && s.delete_oldest_closed(None) {}
        s.publish();
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn publish(&self) {
        let st = &self.stats;
        st.bytes_on_disk.store(self.total, Ordering::Relaxed);
        st.files.store(self.files, Ordering::Relaxed);
        let closed = self.closed.len() as u64;
        st.alerts_closed.store(closed, Ordering::Relaxed);
        st.alerts_open.store(
            (self.alerts.len() as u64).saturating_sub(closed),
            Ordering::Relaxed,
        );
    }

    /// Handles one message; false after `Stop`.
    pub fn handle(&mut self, msg: StoreMsg) -> bool {
        match msg {
            StoreMsg::Open {
                id,
                line,
                verdict,
                first_seen,
            } => self.open_alert(&id, line, &verdict, first_seen),
            StoreMsg::Packets(pkts) => {
                for (id, p) in pkts {
                    self.write_packet(&id, &p);
                }
            }
            StoreMsg::Close { id } => self.close_alert(&id, "closed"),
            StoreMsg::Stop => {
                let open: Vec<String> = self
                    .alerts
                    .iter()
                    .filter(|(_, a)| a.closed_seq.is_none())
                    .map(|(k, _)| k.clone())
                    .collect();
                for id in open {
                    self.close_alert(&id, "closed");
                }
                self.publish();
                return false;
            }
        }
        self.publish();
        true
    }

    /// Rewrites the manifests of open alerts that changed at least `MANIFEST_EVERY` ago.
    pub fn flush_due(&mut self) {
        let ids: Vec<String> = self
            .alerts
            .iter()
            .filter(|(_, a)| a.dirty && a.written_at.elapsed() >= MANIFEST_EVERY)
            .map(|(k, _)| k.clone())
            .collect();
        for id in ids {
            if let Some(mut a) = self.alerts.remove(&id) {
                self.write_manifest(&mut a);
                self.alerts.insert(id, a);
            }
        }
    }

    fn open_alert(&mut self, id: &str, line: IpAddr, verdict: &str, first_seen: Timestamp) {
        if !valid_id(id) {
            return;
        }
        if let Some(a) = self.alerts.get_mut(id) {
            // Recorded again (a restored alert after a restart): a new part on the next packet.
            if let Some(seq) = a.closed_seq.take() {
                self.closed.remove(&seq);
            }
            a.m.state = "open".into();
            a.m.closed = None;
            a.dirty = true;
            return;
        }
        let dir = self.root.join(id);
        if let Err(e) = create_dir(&dir) {
            tracing::error!(error = %e, dir = %dir.display(), "evidence folder not created");
            return;
        }
        let now = now_rfc3339();
        let c = &self.cfg;
        let m = Manifest {
            alert_id: id.to_string(),
            line: line.to_string(),
            verdict: verdict.to_string(),
            sensor: self.sensor.clone(),
            build: crate::report::provenance::build(),
            simboxd_version: env!("CARGO_PKG_VERSION").to_string(),
            created: now.clone(),
            updated: now,
            closed: None,
            state: "open".into(),
            alert_first_seen: first_seen,
            sampling: Sampling {
                ring_packets: c.ring_packets,
                ring_bytes: c.ring_bytes,
                media_first: c.media_first,
                media_every: c.media_every,
                per_alert_max_bytes: c.per_alert_max_bytes,
            },
            ..Default::default()
        };
        let mut a = AlertFiles {
            dir,
            m,
            part: None,
            dirty: true,
            written_at: Instant::now(),
            closed_seq: None,
        };
        self.write_manifest(&mut a);
        tracing::info!(id, line = %line, folder = %a.dir.display(), "evidence recording started");
        self.alerts.insert(id.to_string(), a);
    }

    fn close_alert(&mut self, id: &str, state: &str) {
        let Some(mut a) = self.alerts.remove(id) else {
            return;
        };
        if a.closed_seq.is_none() {
            seal_part(a.part.take(), &mut a.m);
            a.m.state = state.into();
            a.m.closed = Some(now_rfc3339());
            let seq = self.next_closed;
            self.next_closed += 1;
            self.closed.insert(seq, id.to_string());
            a.closed_seq = Some(seq);
            a.dirty = true;
        }
        // Dropping the part flushed it; `write_manifest` flushes what is still open.
        self.write_manifest(&mut a);
        tracing::info!(
            id,
            bytes = a.m.bytes,
            packets = a.m.packets,
            "evidence recording closed"
        );
        self.alerts.insert(id.to_string(), a);
    }

    /// Deletes the evidence of the oldest closed alert other than `keep`; false when none.
    fn delete_oldest_closed(&mut self, keep: Option<&str>) -> bool {
        let victim = self
            .closed
            .iter()
            .find(|(_, id)| Some(id.as_str()) != keep)
            .map(|(seq, id)| (*seq, id.clone()));
        let Some((seq, id)) = victim else {
            return false;
        };
        self.closed.remove(&seq);
        if let Some(a) = self.alerts.remove(&id) {
            if let Err(e) = std::fs::remove_dir_all(&a.dir) {
                tracing::error!(error = %e, dir = %a.dir.display(), "deleting old evidence failed");
            }
            self.total = self.total.saturating_sub(a.m.bytes);
            self.files = self.files.saturating_sub(a.m.files.len() as u64);
            self.stats.deleted_alerts.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                id,
                bytes = a.m.bytes,
                "evidence of the oldest closed alert deleted to stay within [evidence] max_bytes"
            );
        }
        true
    }

    fn write_packet(&mut self, id: &str, p: &KeptPacket) {
        // Packets of an alert whose folder could not be made, or that closed, have no file to go
        // to (counted with write errors).
        if self.alerts.get(id).is_none_or(|a| a.closed_seq.is_some()) {
            self.stats
                .dropped_write_error
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(mut a) = self.alerts.remove(id) else {
            return;
        };
        let new_part = a.part.as_ref().is_none_or(|x| x.link != p.link);
        let need = RECORD_HEADER + p.data.len() as u64 + if new_part { FILE_HEADER } else { 0 };
        if a.m.bytes + need > self.cfg.per_alert_max_bytes {
            self.stats.dropped_alert_cap.fetch_add(1, Ordering::Relaxed);
            a.m.packets_dropped_by_cap += 1;
            if a.m.capped.is_none() {
                tracing::warn!(id, cap = self.cfg.per_alert_max_bytes, "evidence cap reached: [evidence] per_alert_max_bytes, further packets of this alert are dropped (counted in simboxd_evidence_packets_dropped_total{{reason=\"alert_cap\"}})");
                a.m.capped = Some("per_alert_max_bytes".into());
            }
            a.dirty = true;
            self.alerts.insert(id.to_string(), a);
            return;
        }
        while self.total + need > self.cfg.max_bytes {
            if !self.delete_oldest_closed(Some(id)) {
                break;
            }
        }
        if self.total + need > self.cfg.max_bytes {
            self.stats.dropped_cap.fetch_add(1, Ordering::Relaxed);
            a.m.packets_dropped_by_cap += 1;
            if a.m.capped.is_none() {
                a.m.capped = Some("max_bytes".into());
            }
            if !self.capped_logged {
                self.capped_logged = true;
                tracing::warn!(cap = self.cfg.max_bytes, "evidence cap reached: [evidence] max_bytes is used by open alerts, packets are dropped until space frees (counted in simboxd_evidence_packets_dropped_total{{reason=\"cap\"}})");
            }
            a.dirty = true;
            self.alerts.insert(id.to_string(), a);
            return;
        }
        self.capped_logged = false;
        match self.append(&mut a, p, new_part) {
            Ok(()) => {
                self.total += need;
                self.stats.packets_written.fetch_add(1, Ordering::Relaxed);
                if p.pre_alert {
                    self.stats.pre_alert_packets.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                self.stats
                    .dropped_write_error
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(id, error = %e, "evidence packet not written");
                seal_part(a.part.take(), &mut a.m);
            }
        }
        a.dirty = true;
        if a.written_at.elapsed() >= MANIFEST_EVERY {
            self.write_manifest(&mut a);
        }
        self.alerts.insert(id.to_string(), a);
    }

    fn append(
        &mut self,
        a: &mut AlertFiles,
        p: &KeptPacket,
        new_part: bool,
    ) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if new_part {
            seal_part(a.part.take(), &mut a.m);
            let name = part_name(&a.m.line, a.m.files.len() + 1);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(a.dir.join(&name))?;
            let mut part = Part {
                out: BufWriter::new(file),
                hash: Sha256::new(),
                link: p.link,
            };
            // Classic pcap, microsecond stamps, written here rather than through libpcap so that
            // the SHA-256 follows the bytes as they go out.
            let mut h = Vec::with_capacity(FILE_HEADER as usize);
            h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
            h.extend_from_slice(&2u16.to_le_bytes());
            h.extend_from_slice(&4u16.to_le_bytes());
            h.extend_from_slice(&0i32.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&SNAPLEN.to_le_bytes());
            h.extend_from_slice(&(p.link.0 as u32).to_le_bytes());
            part.out.write_all(&h)?;
            part.hash.update(&h);
            a.m.files.push(ManifestFile {
                file: name,
                bytes: FILE_HEADER,
                link_type: p.link.0,
                ..Default::default()
            });
            a.m.bytes += FILE_HEADER;
            self.files += 1;
            a.part = Some(part);
        }
        let (Some(part), Some(f)) = (a.part.as_mut(), a.m.files.last_mut()) else {
            return Err(std::io::Error::other("no open part"));
        };
        let us = p.ts.micros();
        let secs = us.div_euclid(1_000_000).clamp(0, i64::from(u32::MAX)) as u32;
        let frac = us.rem_euclid(1_000_000) as u32;
        let mut h = [0u8; RECORD_HEADER as usize];
        h[..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&(p.data.len() as u32).to_le_bytes());
        h[12..].copy_from_slice(&p.wire_len.max(p.data.len() as u32).to_le_bytes());
        part.out.write_all(&h)?;
        part.out.write_all(&p.data)?;
        part.hash.update(h);
        part.hash.update(&p.data);
        let n = RECORD_HEADER + p.data.len() as u64;
        f.bytes += n;
        f.packets += 1;
        if p.sip {
            f.sip_packets += 1;
        } else {
            f.media_packets += 1;
        }
        if p.pre_alert {
            f.pre_alert_packets += 1;
            a.m.pre_alert_packets += 1;
        }
        f.first_packet = Some(f.first_packet.map_or(p.ts, |t| t.min(p.ts)));
        f.last_packet = Some(f.last_packet.map_or(p.ts, |t| t.max(p.ts)));
        a.m.bytes += n;
        a.m.packets += 1;
        Ok(())
    }

    fn write_manifest(&mut self, a: &mut AlertFiles) {
        if let Some(part) = a.part.as_mut() {
            record_hash(part, &mut a.m);
        }
        a.m.updated = now_rfc3339();
        let bytes = match serde_json::to_vec_pretty(&a.m) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "evidence manifest not serialised");
                return;
            }
        };
        if let Err(e) = write_atomically(&a.dir.join("manifest.json"), &bytes) {
            tracing::error!(error = %e, dir = %a.dir.display(), "evidence manifest not written");
            return;
        }
        a.dirty = false;
        a.written_at = Instant::now();
    }
}

/// The writer thread: handles messages until `Stop` (or every sender is gone), rewriting due
/// manifests as it goes.
pub fn run(mut store: Store, rx: Receiver<StoreMsg>) {
    loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(msg) => {
                if !store.handle(msg) {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                store.handle(StoreMsg::Stop);
                break;
            }
        }
        store.flush_due();
    }
    tracing::info!(folder = %store.root().display(), "evidence writer stopped");
}

fn read_manifest(root: &Path, id: &str) -> Option<Manifest> {
    if !valid_id(id) {
        return None;
    }
    let text = std::fs::read(root.join(id).join("manifest.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The evidence folders, newest first (at most `limit`): per alert its id, line, state, times,
/// totals and file names.
pub fn list(root: &Path, limit: usize) -> serde_json::Value {
    let mut all: Vec<Manifest> = std::fs::read_dir(root)
        .map(|it| {
            it.flatten()
                .filter_map(|e| read_manifest(root, &e.file_name().to_string_lossy()))
                .take(MAX_LISTED)
                .collect()
        })
        .unwrap_or_default();
    all.sort_by(|a, b| b.created.cmp(&a.created).then(a.alert_id.cmp(&b.alert_id)));
    let total = all.len();
    let evidence: Vec<serde_json::Value> = all
        .into_iter()
        .take(limit)
        .map(|m| {
            serde_json::json!({
                "alert_id": m.alert_id,
                "line": m.line,
                "state": m.state,
                "created": m.created,
                "updated": m.updated,
                "closed": m.closed,
                "bytes": m.bytes,
                "packets": m.packets,
                "capped": m.capped,
                "files": m.files.iter().map(|f| f.file.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "evidence": evidence, "total": total })
}

/// One alert's manifest; `None` for an id that is not one or has no evidence.
pub fn manifest(root: &Path, id: &str) -> Option<Manifest> {
    read_manifest(root, id)
}

/// The path of a file the manifest of `id` lists, with the bytes it lists (the file may have
/// grown since: serve exactly these). `None` for anything not listed.
pub fn file(root: &Path, id: &str, name: &str) -> Option<(PathBuf, u64)> {
    let m = read_manifest(root, id)?;
    let f = m.files.iter().find(|f| f.file == name)?;
    // Names are the store's own (`line-<addr>-<n>.pcap`): refuse anything else outright.
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with('.');
    plain.then(|| (root.join(id).join(name), f.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(ts: i64, len: usize, pre: bool) -> KeptPacket {
        KeptPacket {
            ts: Timestamp(ts),
            link: LinkType::RAW,
            wire_len: len as u32,
            data: vec![0x45; len].into(),
            sip: true,
            pre_alert: pre,
        }
    }

    fn cfg(max: u64, per: u64) -> EvidenceConfig {
        EvidenceConfig {
            max_bytes: max,
            per_alert_max_bytes: per,
            ..Default::default()
        }
    }

    const A: &str = "sbx-00000000000000aa";
    const B: &str = "sbx-00000000000000bb";

    fn open(s: &mut Store, id: &str) {
        s.handle(StoreMsg::Open {
            id: id.into(),
            line: "100.64.0.1".parse().unwrap(),
            verdict: "gateway".into(),
            first_seen: Timestamp(1),
        });
    }

    fn send(s: &mut Store, id: &str, p: KeptPacket) {
        s.handle(StoreMsg::Packets(vec![(Arc::from(id), p)]));
    }

    #[test]
    fn manifest_hash_and_size_match_the_file_while_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(EvidenceStats::default());
        let mut s = Store::open(dir.path(), cfg(1 << 20, 1 << 20), stats.clone()).unwrap();
        open(&mut s, A);
        send(&mut s, A, pkt(1_000_000, 100, true));
        send(&mut s, A, pkt(2_000_000, 60, false));
        s.handle(StoreMsg::Close { id: A.into() });
        let m = manifest(dir.path(), A).unwrap();
        assert_eq!(m.state, "closed");
        assert_eq!(m.files.len(), 1);
        let f = &m.files[0];
        let path = dir.path().join(A).join(&f.file);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, f.bytes);
        assert_eq!(f.bytes, 24 + 16 + 100 + 16 + 60);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), f.sha256);
        assert_eq!((f.packets, f.pre_alert_packets), (2, 1));
        // libpcap reads it back.
        let mut cap = pcap::Capture::from_file(&path).unwrap();
        let first = cap.next_packet().unwrap();
        assert_eq!(first.header.ts.tv_sec, 1);
        assert_eq!(first.data.len(), 100);
        assert_eq!(stats.packets_written.load(Ordering::Relaxed), 2);
        assert_eq!(file(dir.path(), A, &f.file), Some((path, f.bytes)));
        // A packet for a closed alert goes nowhere (counted), the folder stays as it was.
        send(&mut s, A, pkt(2_500_000, 10, false));
        assert_eq!(manifest(dir.path(), A).unwrap().packets, 2);
        assert_eq!(stats.dropped_write_error.load(Ordering::Relaxed), 1);
        // Reopened (a restored alert): a second part.
        open(&mut s, A);
        send(&mut s, A, pkt(3_000_000, 10, false));
        s.handle(StoreMsg::Stop);
        let m = manifest(dir.path(), A).unwrap();
        assert_eq!(m.files.len(), 2);
        assert_eq!(m.packets, 3);
    }

    #[test]
    fn caps_drop_and_delete_the_oldest_closed_alert_first() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(EvidenceStats::default());
        let mut s = Store::open(dir.path(), cfg(8192, 6144), stats.clone()).unwrap();
        open(&mut s, A);
        for i in 0..10 {
            send(&mut s, A, pkt(i, 1000, false));
        }
        // 24 + 6 x 1016 = 6120 fits; the rest is over the per-alert cap.
        let m = manifest(dir.path(), A);
        s.handle(StoreMsg::Close { id: A.into() });
        let m2 = manifest(dir.path(), A).unwrap();
        assert!(m.is_some());
        assert_eq!(m2.packets, 6);
        assert_eq!(m2.packets_dropped_by_cap, 4);
        assert_eq!(m2.capped.as_deref(), Some("per_alert_max_bytes"));
        assert_eq!(stats.dropped_alert_cap.load(Ordering::Relaxed), 4);
        // B fills the rest of max_bytes: A (closed) is deleted to make room.
        open(&mut s, B);
        for i in 0..5 {
            send(&mut s, B, pkt(i, 1000, false));
        }
        assert!(!dir.path().join(A).exists(), "the closed alert made room");
        assert_eq!(stats.deleted_alerts.load(Ordering::Relaxed), 1);
        assert!(stats.bytes_on_disk.load(Ordering::Relaxed) <= 8192);
        let listed = list(dir.path(), 10);
        assert_eq!(listed["total"], 1);
        assert_eq!(listed["evidence"][0]["alert_id"], B);
        // Never an open alert deleted: with only open alerts, drops are counted.
        let c = "sbx-00000000000000cc";
        open(&mut s, c);
        for i in 0..8 {
            send(&mut s, c, pkt(i, 1000, false));
        }
        assert!(stats.dropped_cap.load(Ordering::Relaxed) > 0);
        assert!(stats.bytes_on_disk.load(Ordering::Relaxed) <= 8192);
        assert!(dir.path().join(B).exists());
    }

    #[test]
    fn the_api_helpers_refuse_what_the_store_did_not_make() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), cfg(1 << 20, 1 << 20), Default::default()).unwrap();
        open(&mut s, A);
        send(&mut s, A, pkt(1, 10, false));
        s.handle(StoreMsg::Stop);
        std::fs::write(dir.path().join("secret.txt"), "x").unwrap();
        for bad in [
            "..",
            "../x",
            "sbx-00000000000000AA",
            "sbx-0",
            "",
            "sbx-00000000000000aa/..",
        ] {
            assert!(manifest(dir.path(), bad).is_none(), "{bad}");
        }
        for bad in [
            "../secret.txt",
            "manifest.json",
            "..",
            "/etc/passwd",
            "line-x.pcap",
        ] {
            assert!(file(dir.path(), A, bad).is_none(), "{bad}");
        }
        // A restart takes stock of the earlier run's evidence.
        let stats = Arc::new(EvidenceStats::default());
        let _again = Store::open(dir.path(), cfg(1 << 20, 1 << 20), stats.clone()).unwrap();
        assert_eq!(stats.alerts_closed.load(Ordering::Relaxed), 1);
        assert_eq!(stats.files.load(Ordering::Relaxed), 1);
        assert_eq!(stats.bytes_on_disk.load(Ordering::Relaxed), 24 + 16 + 10);
    }
}
