//! The running correlator: standby until the state file is ours, then consume, apply, commit,
//! acknowledge; alerts through the outbox and delivery workers; the HTTP API.

use super::correlate::{Correlator, Site, SiteAlerts};
use super::store::{Changes, Store, StoreError};
use crate::alert::delivery::{targets_from_config, Backoff, Delivery, DeliverySections};
use crate::alert::outbox::Outbox;
use crate::alert::{Alert, AlertManager};
use crate::config::Config;
use crate::http::{Api, ApiSource, TokenCheck};
use crate::metrics::{Kind, Snapshot as Exposition};
use crate::stream::{parse_subject, Kind as Subject, LineEvidenceMsg, ThreatEventsMsg};
use anyhow::Context;
use futures_util::StreamExt;
use simboxd_core::model::{LineVerdict, Timestamp, VerdictLevel};
use simboxd_core::threats::ThreatTable;
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Sensor alerts kept for the API (newest last).
const SENSOR_ALERTS_KEPT: usize = 1000;

struct State {
    correlator: Correlator,
    verdicts: BTreeMap<IpAddr, LineVerdict>,
    sites: Vec<Site>,
    manager: AlertManager,
    site_alerts: SiteAlerts,
    /// Packet time: the newest evaluation any sensor reported.
    now: Timestamp,
    sensor_alerts: VecDeque<(String, Alert)>,
    /// Every sensor's threat events, in the order consumed (rebuilt from the state file).
    threats: ThreatTable,
}

/// Subject kinds in the order of `Stats::messages`.
const KINDS: [Subject; 4] = [
    Subject::Alerts,
    Subject::Lines,
    Subject::Calls,
    Subject::Threats,
];

#[derive(Default)]
struct Stats {
    messages: [AtomicU64; 4],
    sensor_alerts_new: AtomicU64,
    sensor_alerts_duplicate: AtomicU64,
    threat_chunks_duplicate: AtomicU64,
    malformed: AtomicU64,
    batches: AtomicU64,
    /// Alerts made, by kind (`AlertKind` order: line, site, threat, compromised_pbx).
    alerts_made: [AtomicU64; 4],
    store_errors: AtomicU64,
    acked: AtomicU64,
    ack_errors: AtomicU64,
    /// Messages delivered more than once (after a crash, an ack lost or ack_wait passed).
    redelivered: AtomicU64,
    /// Messages the server still holds for the consumer after the last batch, and how old the
    /// last one consumed was (publish to consume, milliseconds).
    lag_messages: AtomicU64,
    lag_millis: AtomicU64,
}

pub struct Central {
    cfg: Config,
    state: Mutex<State>,
    store: Store,
    outbox: Arc<Outbox>,
    delivery: Mutex<Option<Delivery>>,
    stats: Stats,
    connected: AtomicBool,
    started: Instant,
    privacy: crate::privacy::Pseudonymizer,
}

/// Waits for the state file (another instance holding it: stand by), or `None` when stopped.
async fn acquire(path: &std::path::Path, stop: &AtomicBool) -> anyhow::Result<Option<Store>> {
    let mut told = false;
    loop {
        match Store::open(path) {
            Ok(s) => return Ok(Some(s)),
            Err(StoreError::InUse(p)) => {
                if !told {
                    tracing::info!(state = %p, "another central instance is active: standing by");
                    told = true;
                }
            }
            Err(e) => return Err(e.into()),
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stopping");
            stop.store(true, Ordering::SeqCst);
        });
    }
    let Some(store) = acquire(&cfg.central.state_path, &stop).await? else {
        return Ok(());
    };
    let loaded = store.load()?;
    tracing::info!(
        lines = loaded.correlator.lines.len(),
        sensor_alerts = loaded.received,
        state = %cfg.central.state_path.display(),
        "active: state loaded"
    );
    // The central's own alerts go to [syslog]/[webhook], never back into the stream it reads.
    let sections = DeliverySections {
        stream: None,
        ..cfg.delivery()
    };
    let targets = targets_from_config(sections, Duration::from_secs(10))
        .context("setting up [syslog]/[webhook] targets")?;
    let names: Vec<String> = targets.iter().map(|t| t.name()).collect();
    let outbox = Arc::new(
        Outbox::open(&cfg.storage, names)
            .with_context(|| format!("opening the outbox {}", cfg.storage.path.display()))?,
    );
    let mut manager = loaded
        .manager
        .unwrap_or_else(|| AlertManager::new(cfg.alert.clone()));
    manager.set_config(cfg.alert.clone());
    let privacy =
        crate::privacy::Pseudonymizer::from_config(&cfg.privacy).context("[privacy] key")?;
    // The threat table from the events kept: what it found then was alerted then (the alert
    // episodes are in the manager), so the findings of the replay are not alerted again.
    let mut threats = ThreatTable::new(&cfg.threats, &cfg.network);
    let replayed = loaded.threat_events.len();
    for e in loaded.threat_events {
        threats.on_event(&e.into_event());
    }
    let _ = threats.take_changes();
    let mut correlator = loaded.correlator;
    // Every line once; later batches re-evaluate only what changed.
    let verdicts: BTreeMap<IpAddr, LineVerdict> = correlator
        .evaluate_changed(&cfg.detection)
        .verdicts
        .into_iter()
        .map(|v| (v.line, v))
        .collect();
    let sites = correlator.sites();
    let now = verdicts
        .values()
        .map(|v| v.updated)
        .max()
        .unwrap_or_default();
    let central = Arc::new(Central {
        state: Mutex::new(State {
            correlator,
            verdicts,
            sites,
            manager,
            site_alerts: loaded.sites.unwrap_or_default(),
            now,
            sensor_alerts: VecDeque::new(),
            threats,
        }),
        store,
        outbox: outbox.clone(),
        delivery: Mutex::new(Some(Delivery::start(
            outbox,
            targets,
            Backoff::from_config(&cfg.alert),
        ))),
        stats: Stats::default(),
        connected: AtomicBool::new(false),
        started: Instant::now(),
        privacy,
        cfg: cfg.clone(),
    });
    tracing::info!(threat_events = replayed, "threat table rebuilt");

    let http_stop = Arc::new(tokio::sync::Notify::new());
    let http_task = if cfg.http.enabled {
        let token = cfg
            .http
            .resolve_token()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let l = tokio::net::TcpListener::bind(cfg.http.listen)
            .await
            .with_context(|| format!("binding the API to {}", cfg.http.listen))?;
        let api = Arc::new(Api {
            token: RwLock::new(TokenCheck::new(token.as_deref())),
            max_list: cfg.http.max_list,
            source: central.clone(),
        });
        let app = crate::http::router(api);
        let s = http_stop.clone();
        tracing::info!(listen = %cfg.http.listen, "HTTP API listening");
        Some(tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async move { s.notified().await })
                .await;
        }))
    } else {
        None
    };

    consume(&central, &stop).await;

    let delivery = central.delivery.lock().ok().and_then(|mut d| d.take());
    if let Some(d) = delivery {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3)
            && d.status().iter().any(|t| t.pending > 0 && t.up)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d.shutdown(Duration::from_secs(2)).await;
    }
    http_stop.notify_waiters();
    if let Some(t) = http_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Connects (retrying), then fetches, applies and acknowledges batches until `stop`.
async fn consume(central: &Arc<Central>, stop: &AtomicBool) {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    let cfg = &central.cfg;
    let mut failures = 0u32;
    'connect: while !stop.load(Ordering::SeqCst) {
        let setup = async {
            let client =
                crate::stream::connect(&cfg.stream, "simboxd-central", Duration::from_secs(5))
                    .await?;
            let js = async_nats::jetstream::new(client);
            crate::stream::ensure_stream(&js, &cfg.stream).await?;
            let stream = js.get_stream(&cfg.stream.stream).await.map_err(|e| {
                crate::stream::StreamError::Stream(cfg.stream.stream.clone(), e.to_string())
            })?;
            stream
                .get_or_create_consumer(
                    &cfg.central.durable,
                    pull::Config {
                        durable_name: Some(cfg.central.durable.clone()),
                        ack_policy: AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(u64::from(cfg.central.ack_wait_secs)),
                        max_ack_pending: (cfg.central.batch * 4) as i64,
                        filter_subject: format!("{}.>", crate::stream::SUBJECT_ROOT),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| {
                    crate::stream::StreamError::Stream(cfg.central.durable.clone(), e.to_string())
                })
        };
        let consumer: async_nats::jetstream::consumer::Consumer<pull::Config> = match setup.await {
            Ok(c) => c,
            Err(e) => {
                if failures == 0 {
                    if matches!(e, crate::stream::StreamError::Auth(..)) {
                        tracing::error!(error = %e, "NATS refused the central: retrying");
                    } else {
                        tracing::warn!(error = %e, "NATS not reachable: retrying");
                    }
                }
                failures += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(durable = %cfg.central.durable, "consuming");
        failures = 0;
        while !stop.load(Ordering::SeqCst) {
            let batch = consumer
                .batch()
                .max_messages(cfg.central.batch)
                .expires(Duration::from_secs(1))
                .messages()
                .await;
            let mut msgs = match batch {
                Ok(m) => m,
                Err(e) => {
                    central.connected.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, "fetch failed: retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue 'connect;
                }
            };
            let mut got = Vec::new();
            while let Some(m) = msgs.next().await {
                match m {
                    Ok(m) => got.push(m),
                    Err(e) => {
                        tracing::debug!(error = %e, "batch ended");
                        break;
                    }
                }
            }
            central.connected.store(true, Ordering::Relaxed);
            if got.is_empty() {
                continue;
            }
            for m in &got {
                if m.info().is_ok_and(|i| i.delivered > 1) {
                    central.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some(i) = got.last().and_then(|m| m.info().ok()) {
                let st = &central.stats;
                st.lag_messages.store(i.pending, Ordering::Relaxed);
                let now_ns = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i128);
                let age_ns = now_ns - i.published.unix_timestamp_nanos();
                st.lag_millis
                    .store((age_ns.max(0) / 1_000_000) as u64, Ordering::Relaxed);
            }
            let parsed: Vec<(String, Subject, Vec<u8>)> = got
                .iter()
                .filter_map(|m| {
                    let (sensor, kind) = parse_subject(m.subject.as_str())?;
                    Some((sensor.to_string(), kind, m.payload.to_vec()))
                })
                .collect();
            let malformed_subjects = got.len() - parsed.len();
            central
                .stats
                .malformed
                .fetch_add(malformed_subjects as u64, Ordering::Relaxed);
            let c = central.clone();
            let applied = tokio::task::spawn_blocking(move || c.apply(parsed)).await;
            match applied {
                Ok(Ok(())) => {
                    // Committed: acknowledge the batch (a lost ack is a redelivery, applied as
                    // a duplicate that changes nothing).
                    let mut failed = 0u64;
                    for m in &got {
                        if let Err(e) = m.ack().await {
                            if failed == 0 {
                                tracing::warn!(error = %e, "ack failed: the message will be redelivered");
                            }
                            failed += 1;
                        }
                    }
                    let st = &central.stats;
                    st.acked
                        .fetch_add(got.len() as u64 - failed, Ordering::Relaxed);
                    st.ack_errors.fetch_add(failed, Ordering::Relaxed);
                    central.stats.batches.fetch_add(1, Ordering::Relaxed);
                    if let Ok(d) = central.delivery.lock() {
                        if let Some(d) = d.as_ref() {
                            d.wake();
                        }
                    }
                }
                Ok(Err(e)) => {
                    // Not acknowledged: JetStream redelivers after ack_wait.
                    central.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "state not committed: batch left unacknowledged");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => tracing::error!(error = %e, "apply task failed"),
            }
        }
    }
}

impl Central {
    /// Applies one batch, evaluates, stores the alerts and commits the state (blocking).
    fn apply(&self, batch: Vec<(String, Subject, Vec<u8>)>) -> anyhow::Result<()> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("state lock poisoned"))?;
        let mut changes = Changes::default();
        // Sensor alerts: new keys only (redeliveries and replays are counted, not applied).
        let mut alerts_in: Vec<(String, Alert)> = Vec::new();
        let mut evidence_changed = false;
        // Threat-event chunks: (key, sensor, events); applied below once their keys are
        // known to be new.
        let mut chunks: Vec<(String, ThreatEventsMsg)> = Vec::new();
        for (sensor, kind, payload) in &batch {
            if let Some(c) = KINDS
                .iter()
                .position(|k| k == kind)
                .and_then(|i| self.stats.messages.get(i))
            {
                c.fetch_add(1, Ordering::Relaxed);
            }
            match kind {
                Subject::Alerts => match serde_json::from_slice::<Alert>(payload) {
                    Ok(a) => alerts_in.push((sensor.clone(), a)),
                    Err(_) => {
                        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Subject::Lines => match serde_json::from_slice::<LineEvidenceMsg>(payload) {
                    Ok(m) if m.sensor == *sensor => {
                        let line = m.evidence.line;
                        st.now = st.now.max(m.evidence.updated);
                        if st
                            .correlator
                            .on_evidence(sensor, m.evidence, self.cfg.central.max_lines)
                        {
                            evidence_changed = true;
                            changes
                                .lines
                                .insert(line, st.correlator.lines.get(&line).cloned());
                        }
                    }
                    _ => {
                        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Subject::Threats => match serde_json::from_slice::<ThreatEventsMsg>(payload) {
                    Ok(m) if m.sensor == *sensor => {
                        let key = format!("{sensor}:threats:{}", hash_hex(payload));
                        chunks.push((key, m));
                    }
                    _ => {
                        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                },
                // Call records are for other consumers of the stream; the central counts them.
                Subject::Calls => {}
            }
        }
        let chunk_keys: Vec<String> = chunks.iter().map(|(k, _)| k.clone()).collect();
        let chunk_counts = self.store.chunk_counts(&chunk_keys)?;
        let mut threat_now = Timestamp::default();
        for ((key, m), before) in chunks.into_iter().zip(chunk_counts) {
            let n = changes.chunks.get(&key).copied().unwrap_or(before);
            changes.chunks.insert(key, n + 1);
            if n > 0 {
                self.stats
                    .threat_chunks_duplicate
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            for e in m.events {
                changes
                    .threat_events
                    .push(serde_json::to_vec(&e).unwrap_or_default());
                let ev = e.into_event();
                threat_now = threat_now.max(event_time(&ev));
                st.threats.on_event(&ev);
            }
        }
        changes.max_threat_events = self.cfg.central.max_threat_events;
        changes.max_dedup_keys = self.cfg.central.max_dedup_keys;
        let keys: Vec<String> = alerts_in
            .iter()
            .map(|(_, a)| a.idempotency_key.clone())
            .collect();
        let counts = self.store.received_counts(&keys)?;
        for ((sensor, a), before) in alerts_in.into_iter().zip(counts) {
            let n = changes
                .received
                .get(&a.idempotency_key)
                .copied()
                .unwrap_or(before);
            changes.received.insert(a.idempotency_key.clone(), n + 1);
            if n == 0 {
                self.stats.sensor_alerts_new.fetch_add(1, Ordering::Relaxed);
                if st.sensor_alerts.len() >= SENSOR_ALERTS_KEPT {
                    st.sensor_alerts.pop_front();
                }
                st.sensor_alerts.push_back((sensor, a));
            } else {
                self.stats
                    .sensor_alerts_duplicate
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut alerts = Vec::new();
        if evidence_changed {
            let now = st.now;
            let st = &mut *st;
            st.correlator.expire(now, self.cfg.central.line_idle_secs);
            // Only the lines whose evidence changed, and the members of their peers' sites.
            let update = st.correlator.evaluate_changed(&self.cfg.detection);
            for ip in update.removed {
                st.verdicts.remove(&ip);
                changes.lines.insert(ip, None);
            }
            for v in update.verdicts {
                if st.verdicts.get(&v.line).is_none_or(|old| changed(old, &v)) {
                    alerts.extend(st.manager.on_verdict(&v));
                }
                st.verdicts.insert(v.line, v);
            }
            if update.sites_changed {
                st.sites = st.correlator.sites();
            }
            let clear = f64::from(self.cfg.central.site_clear_secs);
            alerts.extend(st.site_alerts.update(&st.sites, &st.verdicts, now, clear));
        }
        if !changes.threat_events.is_empty() {
            st.now = st.now.max(threat_now);
        }
        let now = st.now;
        st.threats.expire(now);
        for t in st.threats.take_changes() {
            alerts.extend(st.manager.on_threat(&t, now, &self.privacy));
        }
        alerts.extend(st.manager.expire(now));
        for a in &alerts {
            tracing::warn!(
                id = %a.id,
                state = a.state.as_str(),
                kind = a.kind.as_str(),
                line = %a.line,
                site = a.site.as_deref().unwrap_or(""),
                score = a.score,
                "alert"
            );
            if let Some(c) = self.stats.alerts_made.get(kind_index(a.kind)) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        // One transaction for the batch's alerts, then one for the state; acks follow.
        self.outbox.enqueue_batch(&alerts)?;
        if !alerts.is_empty() || evidence_changed {
            changes.manager = serde_json::to_vec(&st.manager).ok();
            changes.sites = serde_json::to_vec(&st.site_alerts).ok();
        }
        self.store.commit(&changes)?;
        Ok(())
    }

    /// Sensor alert keys received and how often each arrived.
    pub fn received(&self, limit: usize) -> Vec<(String, u64)> {
        self.store.received(limit).unwrap_or_default()
    }
}

fn kind_index(k: crate::alert::AlertKind) -> usize {
    use crate::alert::AlertKind;
    match k {
        AlertKind::Line => 0,
        AlertKind::Site => 1,
        AlertKind::Threat => 2,
        AlertKind::CompromisedPbx => 3,
    }
}

/// 16 hex digits of SHA-256: the key a threat-event chunk is remembered by.
fn hash_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(b).get(..8).unwrap_or(&[]))
}

/// Packet time of a threat event.
fn event_time(e: &simboxd_core::model::Event) -> Timestamp {
    use simboxd_core::model::Event;
    match e {
        Event::Probe(p) => p.time,
        Event::Registration(r) => r.time,
        Event::CallEnded(c) => c.end.unwrap_or(c.start),
        _ => Timestamp::default(),
    }
}

fn changed(a: &LineVerdict, b: &LineVerdict) -> bool {
    a.verdict != b.verdict
        || (a.score - b.score).abs() >= 0.05
        || a.site != b.site
        || a.reasons.len() != b.reasons.len()
        || a.calls != b.calls
}

fn rank(v: &LineVerdict) -> (VerdictLevel, f64) {
    (v.verdict, v.score)
}

impl ApiSource for Central {
    fn alerts(&self, limit: usize, offset: usize, state: Option<&str>) -> serde_json::Value {
        crate::http::alert_listing(&self.outbox, limit, offset, state)
    }

    fn lines(&self, limit: usize, offset: usize) -> serde_json::Value {
        let Ok(st) = self.state.lock() else {
            return serde_json::json!({ "lines": [], "total": 0 });
        };
        let mut all: Vec<&LineVerdict> = st.verdicts.values().collect();
        all.sort_by(|a, b| {
            let (la, sa) = rank(a);
            let (lb, sb) = rank(b);
            lb.cmp(&la).then(sb.total_cmp(&sa))
        });
        let lines: Vec<serde_json::Value> = all
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|v| {
                let mut j = serde_json::to_value(v).unwrap_or_default();
                let sensors: Vec<&String> = st
                    .correlator
                    .lines
                    .get(&v.line)
                    .map(|x| x.sensors.keys().collect())
                    .unwrap_or_default();
                if let Some(o) = j.as_object_mut() {
                    o.insert("sensors".into(), serde_json::json!(sensors));
                }
                j
            })
            .collect();
        serde_json::json!({
            "lines": lines,
            "total": st.verdicts.len(),
            "sites": st.sites,
        })
    }

    fn line(&self, addr: IpAddr) -> Option<serde_json::Value> {
        let st = self.state.lock().ok()?;
        let views = st.correlator.lines.get(&addr)?;
        Some(serde_json::json!({
            "line": addr,
            "verdict": st.verdicts.get(&addr),
            "sensors": views.sensors,
        }))
    }

    fn threats(&self, limit: usize, offset: usize) -> serde_json::Value {
        let Ok(st) = self.state.lock() else {
            return serde_json::json!({ "threats": [], "total": 0 });
        };
        let mut all = st.threats.threats();
        drop(st);
        for t in &mut all {
            self.privacy.threat(t);
        }
        let total = all.len();
        let page: Vec<_> = all.into_iter().skip(offset).take(limit).collect();
        serde_json::json!({ "threats": page, "total": total, "offset": offset })
    }

    fn metrics(&self) -> String {
        let s = &self.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut m = Exposition::new();
        m.single("simboxd_up", Kind::Gauge, "1 while the central runs.", 1.0);
        m.single(
            "simboxd_uptime_seconds",
            Kind::Gauge,
            "Seconds since start.",
            self.started.elapsed().as_secs_f64(),
        );
        m.single(
            "simboxd_central_connected",
            Kind::Gauge,
            "1 while the last fetch from JetStream succeeded.",
            f64::from(u8::from(self.connected.load(Ordering::Relaxed))),
        );
        let msg = |i: usize| s.messages.get(i).map_or(0.0, load);
        m.family(
            "simboxd_central_messages_total",
            Kind::Counter,
            "Messages consumed, by subject kind.",
            vec![
                (vec![("kind", "alerts".into())], msg(0)),
                (vec![("kind", "lines".into())], msg(1)),
                (vec![("kind", "calls".into())], msg(2)),
                (vec![("kind", "threats".into())], msg(3)),
            ],
        );
        m.single(
            "simboxd_central_acked_total",
            Kind::Counter,
            "Messages acknowledged after their batch was committed.",
            load(&s.acked),
        );
        m.single(
            "simboxd_central_ack_errors_total",
            Kind::Counter,
            "Acks that could not be sent (the message is redelivered and applied as a duplicate).",
            load(&s.ack_errors),
        );
        m.single(
            "simboxd_central_redelivered_total",
            Kind::Counter,
            "Messages JetStream delivered more than once.",
            load(&s.redelivered),
        );
        m.single(
            "simboxd_central_lag_messages",
            Kind::Gauge,
            "Messages the server still held for the durable consumer after the last batch.",
            load(&s.lag_messages),
        );
        m.single(
            "simboxd_central_lag_seconds",
            Kind::Gauge,
            "Age of the last message consumed (from its arrival at the server).",
            load(&s.lag_millis) / 1000.0,
        );
        m.single(
            "simboxd_central_threat_chunks_duplicate_total",
            Kind::Counter,
            "Threat-event chunks received again after being applied (dropped).",
            load(&s.threat_chunks_duplicate),
        );
        m.single(
            "simboxd_central_threat_events_dropped_total",
            Kind::Counter,
            "Threat events dropped from the state file to stay within [central] max_threat_events.",
            self.store.threat_events_dropped() as f64,
        );
        m.single(
            "simboxd_central_dedup_keys_dropped_total",
            Kind::Counter,
            "Sensor alert and threat-chunk keys forgotten to stay within [central] max_dedup_keys.",
            self.store.dedup_keys_dropped() as f64,
        );
        m.family(
            "simboxd_central_sensor_alerts_total",
            Kind::Counter,
            "Sensor alerts received: new, or a redelivery of a key already applied.",
            vec![
                (vec![("result", "new".into())], load(&s.sensor_alerts_new)),
                (
                    vec![("result", "duplicate".into())],
                    load(&s.sensor_alerts_duplicate),
                ),
            ],
        );
        m.single(
            "simboxd_central_malformed_total",
            Kind::Counter,
            "Messages with an unknown subject or an unreadable payload (acknowledged, dropped).",
            load(&s.malformed),
        );
        m.single(
            "simboxd_central_batches_total",
            Kind::Counter,
            "Batches committed and acknowledged.",
            load(&s.batches),
        );
        m.single(
            "simboxd_central_store_errors_total",
            Kind::Counter,
            "Batches whose state could not be committed (left unacknowledged).",
            load(&s.store_errors),
        );
        let made = |i: usize| s.alerts_made.get(i).map_or(0.0, load);
        m.family(
            "simboxd_alerts_made_total",
            Kind::Counter,
            "Alert records the central made (raised, updated, cleared), by alert type.",
            ["line", "site", "threat", "compromised_pbx"]
                .iter()
                .enumerate()
                .map(|(i, k)| (vec![("type", (*k).into())], made(i)))
                .collect(),
        );
        if let Ok(st) = self.state.lock() {
            m.single(
                "simboxd_central_lines",
                Kind::Gauge,
                "Lines with evidence from at least one sensor.",
                st.correlator.lines.len() as f64,
            );
            m.single(
                "simboxd_central_sites",
                Kind::Gauge,
                "Sites formed across sensors.",
                st.sites.len() as f64,
            );
            let (peers, findings) = {
                let sizes = st.threats.table_sizes();
                (sizes[0].1, sizes[1].1)
            };
            m.single(
                "simboxd_central_threat_peers",
                Kind::Gauge,
                "Attacking peers the central's threat table tracks (all sensors).",
                peers as f64,
            );
            m.single(
                "simboxd_central_threat_findings",
                Kind::Gauge,
                "Findings of peers no longer tracked, kept for the API.",
                findings as f64,
            );
            m.single(
                "simboxd_central_line_evictions_total",
                Kind::Counter,
                "Lines dropped to stay within [central] max_lines.",
                st.correlator.evictions as f64,
            );
        }
        m.single(
            "simboxd_outbox_alerts",
            Kind::Gauge,
            "Alert records in the outbox.",
            self.outbox.len().unwrap_or(0) as f64,
        );
        m.finish()
    }

    fn health(&self) -> Result<(), String> {
        if self.connected.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("not connected to NATS JetStream".into())
        }
    }
}
