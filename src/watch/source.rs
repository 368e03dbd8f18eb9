//! The engine thread of `simboxd watch`: reads a capture (a file replayed in packet time, or a
//! live interface), runs `WatchEngine`, and publishes snapshots to the UI.
//!
//! Contract: the thread never waits for the UI. Snapshots go through a bounded channel of one
//! with `try_send` at most `PUBLISH_EVERY` apart; one the UI has not taken yet is replaced by
//! the next and counted (`Drops::snapshots`). Commands (pause, evidence, report) arrive on a
//! channel polled between packets; files are written on their own threads, which report back
//! on the notice channel. A live capture is spooled to a pcap (capped) so that evidence and
//! the report can be made from the packets seen so far.

use super::engine_view::{ReportInputs, WatchEngine};
use super::view::{Drops, RunState, Snapshot};
use crate::capture::{Capture, Next};
use crate::config::Config;
use simboxd_core::model::{LinkType, RawPacket, Timestamp};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Wall time between snapshots (the UI draws at most this often from the engine).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);
/// Longest sleep of a paced replay before commands are looked at again.
const PACE_SLICE: Duration = Duration::from_millis(50);

/// What the UI asks the source to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Pause or resume a replay.
    TogglePause,
    /// Write the evidence pcap + manifest of a line.
    Evidence(IpAddr),
    /// Write the HTML report of everything seen so far.
    Report,
}

/// Replay speed: a factor of packet time, or as fast as the engine goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    Factor(f64),
    Max,
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Speed, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 && f <= 1e6 => Ok(Speed::Factor(f)),
            _ => Err(format!(
                "speed {s:?} is neither a positive factor (1, 10, 0.5) nor max"
            )),
        }
    }
}

/// The channels between the UI and a source thread.
pub struct Link {
    pub snapshots: SyncSender<Snapshot>,
    pub commands: Receiver<Command>,
    pub notices: Sender<String>,
    /// The line whose detail the UI shows.
    pub focus: Arc<Mutex<Option<IpAddr>>>,
}

impl Link {
    pub fn focus(&self) -> Option<IpAddr> {
        self.focus.lock().map(|f| *f).unwrap_or(None)
    }
}

/// Where files go and what their manifests state.
#[derive(Clone, Debug)]
pub struct Outputs {
    pub dir: PathBuf,
    pub case: Option<String>,
    pub examiner: Option<String>,
}

/// Publishes snapshots at a bounded rate without ever blocking.
struct Publisher {
    last: Option<Instant>,
    /// What the last snapshot took to build: the next one waits at least four times that, so
    /// that building snapshots of many lines never takes more than a fifth of the engine's time.
    cost: Duration,
    last_packets: u64,
    skipped: u64,
    rate: f64,
}

impl Publisher {
    fn new() -> Self {
        Publisher {
            last: None,
            cost: Duration::ZERO,
            last_packets: 0,
            skipped: 0,
            rate: 0.0,
        }
    }

    fn due(&self) -> bool {
        self.last
            .is_none_or(|t| t.elapsed() >= PUBLISH_EVERY.max(self.cost.saturating_mul(4)))
    }

    fn publish_with(&mut self, link: &Link, build: impl FnOnce() -> Snapshot) -> bool {
        let t = Instant::now();
        let snap = build();
        self.cost = t.elapsed();
        self.publish(link, snap)
    }

    fn publish(&mut self, link: &Link, snap: Snapshot) -> bool {
        let now = Instant::now();
        if let Some(t) = self.last {
            let dt = now.duration_since(t).as_secs_f64();
            if dt > 0.0 {
                self.rate = snap.packets.saturating_sub(self.last_packets) as f64 / dt;
            }
        }
        self.last = Some(now);
        self.last_packets = snap.packets;
        let mut snap = snap;
        snap.packets_per_sec = self.rate;
        snap.drops.snapshots = self.skipped;
        match link.snapshots.try_send(snap) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.skipped += 1;
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// A copy of the live capture so far, capped in size.
struct Spool {
    save: pcap::Savefile,
    path: PathBuf,
    bytes: u64,
    cap: u64,
    dropped: u64,
}

impl Spool {
    fn open(path: &Path, link: LinkType, cap_bytes: u64) -> anyhow::Result<Spool> {
        let dead = pcap::Capture::dead(pcap::Linktype(link.0))?;
        let save = dead.savefile(path)?;
        Ok(Spool {
            save,
            path: path.to_path_buf(),
            bytes: 24,
            cap: cap_bytes,
            dropped: 0,
        })
    }

    fn write(&mut self, pkt: &RawPacket<'_>) {
        let rec = 16 + pkt.data.len() as u64;
        if self.bytes + rec > self.cap {
            self.dropped += 1;
            return;
        }
        let us = pkt.ts.micros();
        let header = pcap::PacketHeader {
            ts: libc::timeval {
                tv_sec: us.div_euclid(1_000_000) as libc::time_t,
                tv_usec: us.rem_euclid(1_000_000) as libc::suseconds_t,
            },
            caplen: pkt.data.len() as u32,
            len: pkt.wire_len,
        };
        self.save.write(&pcap::Packet::new(&header, pkt.data));
        self.bytes += rec;
    }
}

/// What files are made from: the replayed file, or a copy of the live spool's first `len`
/// bytes (whole records only: the spool is flushed first).
#[derive(Clone, Debug)]
enum Origin {
    File(PathBuf),
    Spool { path: PathBuf, len: u64 },
}

fn stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// A fresh path `dir/name-STAMP[-n]suffix` that does not exist yet.
fn fresh(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    let s = stamp();
    let mut p = dir.join(format!("{name}-{s}{suffix}"));
    let mut n = 2;
    while p.exists() && n < 1000 {
        p = dir.join(format!("{name}-{s}-{n}{suffix}"));
        n += 1;
    }
    p
}

/// The capture file the outputs are made from (a copy of the spool so far, for live).
fn materialise(origin: &Origin, dir: &Path) -> anyhow::Result<PathBuf> {
    match origin {
        Origin::File(p) => Ok(p.clone()),
        Origin::Spool { path, len } => {
            use std::io::{Read, Write};
            let copy = fresh(dir, "capture", ".pcap");
            let mut src = std::fs::File::open(path)?.take(*len);
            let mut dst = std::fs::File::create(&copy)?;
            std::io::copy(&mut src, &mut dst)?;
            dst.flush()?;
            Ok(copy)
        }
    }
}

fn run_info(out: &Outputs, report: Option<crate::evidence::ReportRef>) -> crate::evidence::RunInfo {
    crate::evidence::RunInfo {
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command_line: crate::report::provenance::command_line(),
        case: out.case.clone(),
        examiner: out.examiner.clone(),
        report,
    }
}

fn write_evidence(
    origin: &Origin,
    cfg: &Config,
    out: &Outputs,
    line: IpAddr,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(&out.dir)?;
    let source = materialise(origin, &out.dir)?;
    let sha = crate::analyze::sha256_file(&source)?;
    let dir = fresh(
        &out.dir,
        &format!("evidence-{}", line.to_string().replace(':', "_")),
        "",
    );
    let m = crate::evidence::export_run(
        &source,
        &sha,
        &cfg.limits,
        &[line],
        &dir,
        &run_info(out, None),
    )?;
    let files = m.files.len();
    Ok(if files == 0 {
        format!(
            "evidence {line}: no packet of the line yet; manifest in {}",
            dir.display()
        )
    } else {
        format!("evidence {line}: {} (pcap + manifest.json)", dir.display())
    })
}

fn write_report(
    origin: &Origin,
    cfg: &Config,
    out: &Outputs,
    inputs: ReportInputs,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(&out.dir)?;
    let source = materialise(origin, &out.dir)?;
    let sha = crate::analyze::sha256_file(&source)?;
    let size = std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0);
    let a = crate::analyze::analysis_of_records(
        &source,
        sha,
        size,
        inputs.stats,
        inputs.records,
        &inputs.verdicts,
        cfg,
    )?;
    let prov = crate::report::Provenance::of_run(
        cfg.used_sections(),
        out.case.clone(),
        out.examiner.clone(),
        crate::report::Clock::default(),
    );
    let html = crate::report::render(&a, &prov);
    let path = fresh(&out.dir, "report", ".html");
    let sha = crate::report::provenance::write_with_sha256(&path, html.as_bytes())?;
    Ok(format!(
        "report: {} (sha256 {})",
        path.display(),
        sha.get(..16).unwrap_or("")
    ))
}

/// Runs `job` on its own thread and sends its outcome as a notice.
fn spawn_job(
    notices: &Sender<String>,
    what: &str,
    job: impl FnOnce() -> anyhow::Result<String> + Send + 'static,
) {
    let tx = notices.clone();
    let name = format!("watch-{what}");
    let label = what.to_string();
    let _ = tx.send(format!("{what}: writing..."));
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let msg = match job() {
            Ok(m) => m,
            Err(e) => format!("{label} failed: {}", crate::error_chain(&e)),
        };
        let _ = tx.send(msg);
    });
    if let Err(e) = spawned {
        let _ = notices.send(format!("{what} failed: cannot start a thread: {e}"));
    }
}

/// The engine side of the view for one capture.
pub struct EngineSource {
    pub cfg: Config,
    pub outputs: Outputs,
    pub source_desc: String,
}

impl EngineSource {
    fn handle(
        &self,
        cmd: Command,
        eng: &WatchEngine,
        origin: Option<&Origin>,
        link: &Link,
        paused: &mut bool,
    ) {
        match cmd {
            Command::TogglePause => *paused = !*paused,
            Command::Evidence(line) => {
                let Some(origin) = origin.cloned() else {
                    let _ = link
                        .notices
                        .send("evidence: no capture spool (--spool-mib 0)".into());
                    return;
                };
                let cfg = self.cfg.clone();
                let out = self.outputs.clone();
                spawn_job(&link.notices, "evidence", move || {
                    write_evidence(&origin, &cfg, &out, line)
                });
            }
            Command::Report => {
                let Some(origin) = origin.cloned() else {
                    let _ = link
                        .notices
                        .send("report: no capture spool (--spool-mib 0)".into());
                    return;
                };
                let inputs = eng.report_inputs();
                let cfg = self.cfg.clone();
                let out = self.outputs.clone();
                spawn_job(&link.notices, "report", move || {
                    write_report(&origin, &cfg, &out, inputs)
                });
            }
        }
    }

    fn snapshot(&self, eng: &WatchEngine, link: &Link, state: RunState, drops: Drops) -> Snapshot {
        let base = Snapshot {
            state,
            packets: eng.stats().packets,
            drops,
            can_export: true,
            ..Snapshot::empty(self.source_desc.clone())
        };
        eng.snapshot(link.focus(), base)
    }

    /// Replays `path` in packet time scaled by `speed`, then keeps serving commands until the
    /// UI goes away.
    pub fn run_file(&self, path: &Path, speed: Speed, link: &Link) -> anyhow::Result<()> {
        let mut eng = WatchEngine::new(&self.cfg)?;
        let mut pubr = Publisher::new();
        let origin = Origin::File(path.to_path_buf());
        let mut cap = match Capture::open_file(path) {
            Ok(c) => c,
            Err(e) => {
                let snap = Snapshot {
                    state: RunState::Failed(e.to_string()),
                    ..Snapshot::empty(self.source_desc.clone())
                };
                pubr.publish(link, snap);
                return Err(e.into());
            }
        };
        let mut paused = false;
        // Packet time of the first packet and the wall time it was played at.
        let mut anchor: Option<(Timestamp, Instant)> = None;
        let mut failure: Option<String> = None;
        loop {
            if !self.poll_commands(&eng, Some(&origin), link, &mut paused) {
                return Ok(());
            }
            if paused {
                let t = Instant::now();
                std::thread::sleep(PACE_SLICE);
                if let Some(a) = &mut anchor {
                    a.1 += t.elapsed();
                }
                if pubr.due()
                    && !pubr.publish_with(link, || {
                        self.snapshot(&eng, link, RunState::Paused, Drops::default())
                    })
                {
                    return Ok(());
                }
                continue;
            }
            let pkt = match cap.read() {
                Ok(Next::Packet(p)) => p,
                Ok(Next::Timeout) => continue,
                Ok(Next::End) => break,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            };
            if let Speed::Factor(f) = speed {
                let t0 = anchor.get_or_insert((pkt.ts, Instant::now())).0;
                let at = Duration::from_secs_f64((pkt.ts.secs_since(t0) / f).clamp(0.0, 1e9));
                // Wait for the packet's time in slices, so that pause, commands and snapshots
                // keep flowing; a pause moves the anchor by the time held.
                loop {
                    if !self.poll_commands(&eng, Some(&origin), link, &mut paused) {
                        return Ok(());
                    }
                    let Some(a) = anchor.as_mut() else { break };
                    let state = if paused {
                        let t = Instant::now();
                        std::thread::sleep(PACE_SLICE);
                        a.1 += t.elapsed();
                        RunState::Paused
                    } else {
                        let now = Instant::now();
                        let due = a.1 + at;
                        if now >= due {
                            break;
                        }
                        std::thread::sleep(due.saturating_duration_since(now).min(PACE_SLICE));
                        RunState::Running
                    };
                    if pubr.due()
                        && !pubr.publish_with(link, || {
                            self.snapshot(&eng, link, state, Drops::default())
                        })
                    {
                        return Ok(());
                    }
                }
            }
            eng.process(&pkt);
            if pubr.due()
                && !pubr.publish_with(link, || {
                    self.snapshot(&eng, link, RunState::Running, Drops::default())
                })
            {
                return Ok(());
            }
        }
        eng.finish();
        let end_state = failure.map_or(RunState::Ended, RunState::Failed);
        // The replay is over: keep answering commands (evidence, report) until the UI quits.
        loop {
            if !pubr.publish_with(link, || {
                self.snapshot(&eng, link, end_state.clone(), Drops::default())
            }) {
                return Ok(());
            }
            match link.commands.recv_timeout(PUBLISH_EVERY) {
                Ok(Command::TogglePause) => {}
                Ok(cmd) => {
                    let mut p = false;
                    self.handle(cmd, &eng, Some(&origin), link, &mut p);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    /// Handles waiting commands; false when the UI has gone.
    fn poll_commands(
        &self,
        eng: &WatchEngine,
        origin: Option<&Origin>,
        link: &Link,
        paused: &mut bool,
    ) -> bool {
        loop {
            match link.commands.try_recv() {
                Ok(cmd) => self.handle(cmd, eng, origin, link, paused),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Captures live from `interface` until the UI goes away, spooling up to `spool_bytes`.
    pub fn run_live(&self, interface: &str, spool_bytes: u64, link: &Link) -> anyhow::Result<()> {
        let mut eng = WatchEngine::new(&self.cfg)?;
        let mut pubr = Publisher::new();
        let mut cap = match Capture::open_live_on(&self.cfg.capture, interface) {
            Ok(c) => c,
            Err(e) => {
                let snap = Snapshot {
                    state: RunState::Failed(e.to_string()),
                    ..Snapshot::empty(self.source_desc.clone())
                };
                pubr.publish(link, snap);
                return Err(e.into());
            }
        };
        let mut spool = if spool_bytes > 0 {
            std::fs::create_dir_all(&self.outputs.dir)?;
            let path = fresh(
                &self.outputs.dir,
                &format!("spool-{}", interface.replace('/', "_")),
                ".pcap",
            );
            Some(Spool::open(&path, cap.link_type(), spool_bytes)?)
        } else {
            None
        };
        let mut frozen = false;
        let mut frozen_sent = false;
        let mut drops = Drops::default();
        loop {
            loop {
                match link.commands.try_recv() {
                    Ok(cmd) => {
                        // Only what is flushed is copied: whole records.
                        let origin = spool.as_mut().map(|s| {
                            let _ = s.save.flush();
                            Origin::Spool {
                                path: s.path.clone(),
                                len: s.bytes,
                            }
                        });
                        self.handle(cmd, &eng, origin.as_ref(), link, &mut frozen);
                        frozen_sent = false;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Ok(()),
                }
            }
            match cap.read() {
                Ok(Next::Packet(p)) => {
                    if let Some(s) = &mut spool {
                        s.write(&p);
                    }
                    eng.process(&p);
                }
                Ok(Next::Timeout) => {
                    let now = chrono::Utc::now().timestamp_micros();
                    eng.tick(Timestamp::from_micros(now));
                }
                Ok(Next::End) => break,
                Err(e) => {
                    let snap =
                        self.snapshot(&eng, link, RunState::Failed(e.to_string()), drops.clone());
                    pubr.publish(link, snap);
                    return Err(e.into());
                }
            }
            // `p` on a live capture freezes the view; capture and engine go on.
            if pubr.due() && !(frozen && frozen_sent) {
                if let Ok(st) = cap.stats() {
                    drops.kernel = st.dropped;
                    drops.interface = st.if_dropped;
                }
                drops.spool = spool.as_ref().map_or(0, |s| s.dropped);
                let state = if frozen {
                    RunState::Paused
                } else {
                    RunState::Running
                };
                frozen_sent = frozen;
                if !pubr.publish_with(link, || self.snapshot(&eng, link, state, drops.clone())) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Replays a whole file as fast as possible and returns the final snapshot with `focus`'s
/// detail (the screens' tests, and a check of what the view will show).
pub fn replay_to_end(path: &Path, cfg: &Config, focus: Option<IpAddr>) -> anyhow::Result<Snapshot> {
    let mut eng = WatchEngine::new(cfg)?;
    let mut cap = Capture::open_file(path)?;
    while let Some(p) = cap.next_packet()? {
        eng.process(&p);
    }
    eng.finish();
    let source = format!("file {} (speed max)", path.display());
    Ok(eng.snapshot_of(&source, focus, RunState::Ended))
}
