//! Publishing to JetStream: alerts as a delivery target of the alert outbox, evidence and call
//! records from the stream outbox by a background task.
//!
//! Contract: a message counts as sent only when JetStream acknowledged it; until then it stays in
//! its outbox and is retried (capped backoff) with the same `Nats-Msg-Id`. Nothing here blocks
//! the engines: they hand evidence over under their lock, the outbox write and the network run on
//! the tokio side.

use super::outbox::StreamOutbox;
use super::{connect, ensure_stream, subject, Kind, LineEvidenceMsg, StreamConfig, StreamError};
use async_nats::jetstream::message::PublishMessage as Publish;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Messages published before their acks are awaited.
const PUBLISH_BATCH: usize = 256;

/// A JetStream context, connected on first use and kept (the client reconnects by itself).
struct Lazy {
    cfg: StreamConfig,
    name: String,
    timeout: Duration,
    js: Option<async_nats::jetstream::Context>,
    /// The client's connection figures (connects counts the first one and every reconnect).
    client_stats: Option<Arc<async_nats::Statistics>>,
}

impl Lazy {
    async fn get(&mut self) -> Result<async_nats::jetstream::Context, StreamError> {
        if let Some(js) = &self.js {
            return Ok(js.clone());
        }
        let client = connect(&self.cfg, &self.name, self.timeout).await?;
        self.client_stats = Some(client.statistics());
        let js = async_nats::jetstream::new(client);
        ensure_stream(&js, &self.cfg).await?;
        self.js = Some(js.clone());
        Ok(js)
    }
}

/// Publishes one message and waits for JetStream's ack.
async fn publish_acked(
    js: &async_nats::jetstream::Context,
    subject: String,
    msg_id: &str,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<(), StreamError> {
    let fut = async {
        let ack = js
            .send_publish(
                subject.clone(),
                Publish::build().payload(payload.into()).message_id(msg_id),
            )
            .await
            .map_err(|e| StreamError::Publish(subject.clone(), e.to_string()))?;
        ack.await
            .map_err(|e| StreamError::Publish(subject.clone(), e.to_string()))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(StreamError::Timeout(format!("publish {subject}"))),
    }
}

/// The alert outbox's target for JetStream: `simboxd.<sensor>.alerts`, message id = the
/// alert's idempotency key. It publishes the JSON delivery hands it (alert types stay in
/// `alert`).
pub struct AlertSender {
    url: String,
    subject: String,
    timeout: Duration,
    conn: tokio::sync::Mutex<Lazy>,
}

impl AlertSender {
    pub fn new(cfg: &StreamConfig, timeout: Duration) -> Option<AlertSender> {
        let url = cfg.url.clone()?;
        let sensor = cfg.sensor_name();
        Some(AlertSender {
            url,
            subject: subject(&sensor, Kind::Alerts),
            timeout,
            conn: tokio::sync::Mutex::new(Lazy {
                cfg: cfg.clone(),
                name: format!("simboxd-sensor-{sensor}-alerts"),
                timeout,
                js: None,
                client_stats: None,
            }),
        })
    }

    /// The outbox name of the target.
    pub fn name(&self) -> String {
        self.url.clone()
    }

    /// Publishes one alert (`payload`, its JSON) with `msg_id` and waits for the ack.
    pub async fn send(&self, msg_id: &str, payload: Vec<u8>) -> Result<(), AlertSendError> {
        let js = {
            let mut c = self.conn.lock().await;
            c.get().await.map_err(AlertSendError::Connect)?
        };
        publish_acked(&js, self.subject.clone(), msg_id, payload, self.timeout)
            .await
            .map_err(AlertSendError::Publish)
    }
}

/// Why an alert was not published: the connection (or the stream) could not be set up, or the
/// publish was not acknowledged.
#[derive(Debug)]
pub enum AlertSendError {
    Connect(StreamError),
    Publish(StreamError),
}

/// Counters of the publisher for `/metrics`.
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// Messages JetStream acknowledged.
    pub published: AtomicU64,
    /// Publish rounds that failed (connect, publish or ack).
    pub failures: AtomicU64,
    /// Times the client connected again after losing the server.
    pub reconnects: AtomicU64,
    /// Threat events handed over, and those over the per-interval or per-peer cap.
    pub threat_events: AtomicU64,
    pub threat_events_dropped: AtomicU64,
    pub up: AtomicBool,
}

/// The sensor's side of evidence and calls: the outbox and the task draining it.
pub struct Publisher {
    pub outbox: Arc<StreamOutbox>,
    pub stats: Arc<PublisherStats>,
    sensor: String,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    /// Opens the outbox and starts the draining task (connecting in the background).
    pub fn start(cfg: &StreamConfig, outbox: Arc<StreamOutbox>) -> Publisher {
        let stats = Arc::new(PublisherStats::default());
        let wake = Arc::new(Notify::new());
        let sensor = cfg.sensor_name();
        let lazy = Lazy {
            cfg: cfg.clone(),
            name: format!("simboxd-sensor-{sensor}"),
            timeout: Duration::from_secs(5),
            js: None,
            client_stats: None,
        };
        let task = tokio::spawn(drain(lazy, outbox.clone(), stats.clone(), wake.clone()));
        Publisher {
            outbox,
            stats,
            sensor,
            wake,
            task,
        }
    }

    /// Queues evidence summaries and call records (JSON, with their message ids) and wakes the
    /// task. Blocking (redb): call from a blocking context.
    pub fn enqueue(
        &self,
        evidence: &[simboxd_core::detect::LineEvidence],
        threats: &[super::ThreatEventsMsg],
        calls: &[serde_json::Value],
    ) -> Result<(), super::outbox::StreamOutboxError> {
        let lines_subject = subject(&self.sensor, Kind::Lines);
        let calls_subject = subject(&self.sensor, Kind::Calls);
        let threats_subject = subject(&self.sensor, Kind::Threats);
        let ev: Vec<(String, String, String, String)> = evidence
            .iter()
            .map(|e| {
                let msg = LineEvidenceMsg {
                    sensor: self.sensor.clone(),
                    evidence: e.clone(),
                };
                (
                    e.line.to_string(),
                    lines_subject.clone(),
                    format!("{}:line:{}:{}", self.sensor, e.line, e.updated.micros()),
                    serde_json::to_string(&msg).unwrap_or_default(),
                )
            })
            .collect();
        // Threat chunks queue in order with the call records (their id: a hash of the chunk,
        // which carries its events' times, so a retry has the same id).
        let mut cs: Vec<(String, String, String)> = threats
            .iter()
            .map(|m| {
                let payload = serde_json::to_string(m).unwrap_or_default();
                (
                    threats_subject.clone(),
                    format!("{}:threats:{}", self.sensor, short_hash(&payload)),
                    payload,
                )
            })
            .collect();
        cs.extend(calls.iter().map(|c| {
            let id = c.get("call_id").and_then(|x| x.as_str()).unwrap_or("");
            let start = c.get("start").map(|x| x.to_string()).unwrap_or_default();
            let line = c.get("line").map(|x| x.to_string()).unwrap_or_default();
            let key = short_hash(&format!("{id}|{start}|{line}"));
            (
                calls_subject.clone(),
                format!("{}:call:{key}", self.sensor),
                c.to_string(),
            )
        }));
        self.outbox.enqueue(&ev, &cs)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Waits up to `grace` for the outbox to empty, then stops the task.
    pub async fn finish(&self, grace: Duration) {
        self.wake.notify_one();
        let t0 = std::time::Instant::now();
        while t0.elapsed() < grace && self.outbox.len().unwrap_or(0) > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.task.abort();
    }
}

async fn drain(
    mut lazy: Lazy,
    outbox: Arc<StreamOutbox>,
    stats: Arc<PublisherStats>,
    wake: Arc<Notify>,
) {
    let mut failures: u32 = 0;
    loop {
        let ob = outbox.clone();
        let batch = tokio::task::spawn_blocking(move || ob.peek(PUBLISH_BATCH))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if batch.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        let result = async {
            let js = lazy.get().await?;
            // Send the batch, then await the acks in order: one round trip per batch.
            let mut futures = Vec::with_capacity(batch.len());
            for p in &batch {
                let f = js
                    .send_publish(
                        p.subject.clone(),
                        Publish::build()
                            .payload(p.payload.clone().into_bytes().into())
                            .message_id(p.msg_id.as_str()),
                    )
                    .await
                    .map_err(|e| StreamError::Publish(p.subject.clone(), e.to_string()));
                futures.push(f);
            }
            let mut acked = Vec::new();
            let mut first_err = None;
            for (p, f) in batch.iter().zip(futures) {
                let r = match f {
                    Ok(f) => match tokio::time::timeout(lazy.timeout, f).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(StreamError::Publish(p.subject.clone(), e.to_string())),
                        Err(_) => Err(StreamError::Timeout(format!("ack of {}", p.subject))),
                    },
                    Err(e) => Err(e),
                };
                match r {
                    Ok(()) => acked.push((p.key.clone(), p.msg_id.clone())),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            Ok::<_, StreamError>((acked, first_err))
        }
        .await;
        if let Some(c) = &lazy.client_stats {
            let n = c.connects.load(Ordering::Relaxed);
            stats
                .reconnects
                .store(n.saturating_sub(1), Ordering::Relaxed);
        }
        match result {
            Ok((acked, err)) => {
                let n = acked.len() as u64;
                let ob = outbox.clone();
                let _ = tokio::task::spawn_blocking(move || ob.remove(&acked)).await;
                stats.published.fetch_add(n, Ordering::Relaxed);
                match err {
                    None => {
                        stats.up.store(true, Ordering::Relaxed);
                        failures = 0;
                    }
                    Some(e) => {
                        stats.up.store(false, Ordering::Relaxed);
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "stream publish failed: retrying");
                        failures = failures.saturating_add(1);
                        tokio::time::sleep(backoff(failures)).await;
                    }
                }
            }
            Err(e) => {
                stats.up.store(false, Ordering::Relaxed);
                stats.failures.fetch_add(1, Ordering::Relaxed);
                if failures == 0 {
                    if matches!(e, StreamError::Auth(..)) {
                        tracing::error!(error = %e, "NATS refused the sensor: evidence waits in the stream outbox");
                    } else {
                        tracing::warn!(error = %e, "NATS unreachable: evidence waits in the stream outbox");
                    }
                }
                failures = failures.saturating_add(1);
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(10))
}

/// 16 hex digits of SHA-256: a stable message id part for a call record.
fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(s.as_bytes());
    hex::encode(d.get(..8).unwrap_or(&[]))
}

impl Publisher {
    /// The stream families of a sensor's `/metrics`: the outbox and the publishing task.
    pub fn metrics(&self, m: &mut crate::metrics::Snapshot) {
        use crate::metrics::Kind;
        let s = &self.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        m.single(
            "simboxd_stream_connected",
            Kind::Gauge,
            "1 while the last publish round to JetStream succeeded.",
            f64::from(u8::from(s.up.load(Ordering::Relaxed))),
        );
        m.single(
            "simboxd_stream_pending",
            Kind::Gauge,
            "Evidence summaries, threat-event chunks and call records waiting in the stream outbox.",
            self.outbox.len().unwrap_or(0) as f64,
        );
        m.single(
            "simboxd_stream_published_total",
            Kind::Counter,
            "Messages JetStream acknowledged (alerts go through the alert outbox's target).",
            load(&s.published),
        );
        m.single(
            "simboxd_stream_publish_errors_total",
            Kind::Counter,
            "Publish rounds that failed (connect, publish or ack); retried with backoff.",
            load(&s.failures),
        );
        m.single(
            "simboxd_stream_reconnects_total",
            Kind::Counter,
            "Times the NATS client connected again after losing the server.",
            load(&s.reconnects),
        );
        m.single(
            "simboxd_stream_outbox_dropped_total",
            Kind::Counter,
            "Messages dropped from the stream outbox to stay within [stream] max_pending.",
            self.outbox.dropped().unwrap_or(0) as f64,
        );
        m.family(
            "simboxd_stream_threat_events_total",
            Kind::Counter,
            "Threat events handed to the stream, or left out by the per-interval/per-peer caps.",
            vec![
                (vec![("result", "queued".into())], load(&s.threat_events)),
                (
                    vec![("result", "dropped".into())],
                    load(&s.threat_events_dropped),
                ),
            ],
        );
    }
}
