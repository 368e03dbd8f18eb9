//! The sensor's side: every `evidence_interval_secs` the engines hand over the evidence of the
//! lines they re-scored, the threat events the workers' shared threat table read (with
//! `publish_threats`; capped per interval and per peer) and, with `publish_calls`, the calls that
//! ended, to the stream outbox.

use super::correlate::Correlator;
use super::pipeline::PacketEngine;
use crate::stream::outbox::StreamOutbox;
use crate::stream::publisher::{Publisher, PublisherStats};
use crate::stream::StreamConfig;
use crate::stream::ThreatEventsMsg;
use simboxd_core::config::NetworkConfig;
use simboxd_core::model::Timestamp;
use simboxd_core::threats::ThreatsConfig;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines of one engine handed over per interval (the rest follow at the next one).
const EVIDENCE_PER_ROUND: usize = 65536;
/// Threat events per message (a JetStream message stays well below the 1 MiB default limit).
const THREAT_EVENTS_PER_MSG: usize = 500;

/// The sections the sensor side reads: `[stream]`, `[storage] path` (the stream outbox sits
/// beside the alert outbox) and, for the threat events, `[threats]` and `[network]`.
#[derive(Clone, Copy)]
pub struct SensorSections<'a> {
    pub stream: &'a StreamConfig,
    pub storage: &'a Path,
    pub threats: &'a ThreatsConfig,
    pub network: &'a NetworkConfig,
}

/// Where the threat events come from (the correlator applies the caps as it keeps them).
#[derive(Clone)]
struct ThreatFeed {
    correlator: Arc<Correlator>,
    sensor: String,
}

pub struct SensorStream<E: PacketEngine> {
    publisher: Arc<Publisher>,
    engines: Vec<Arc<Mutex<E>>>,
    since: Arc<Mutex<Vec<Timestamp>>>,
    threats: Option<ThreatFeed>,
    task: tokio::task::JoinHandle<()>,
}

impl<E: PacketEngine> SensorStream<E> {
    /// Opens the stream outbox and starts publishing; `None` without `[stream] url`. The threat
    /// events come from `correlator` (the workers' shared threat table).
    pub fn start(
        cfg: SensorSections<'_>,
        engines: Vec<Arc<Mutex<E>>>,
        correlator: Option<Arc<Correlator>>,
    ) -> anyhow::Result<Option<Self>> {
        if cfg.stream.url.is_none() {
            return Ok(None);
        }
        let path = crate::stream::outbox_path(cfg.storage);
        let outbox = Arc::new(StreamOutbox::open(&path, cfg.stream.max_pending)?);
        let publisher = Arc::new(Publisher::start(cfg.stream, outbox));
        let since = Arc::new(Mutex::new(vec![Timestamp::default(); engines.len()]));
        let every = Duration::from_secs(u64::from(cfg.stream.evidence_interval_secs));
        let threats = correlator.filter(|_| cfg.stream.publish_threats).map(|c| {
            c.keep_stream_events(
                cfg.stream.threat_events_per_interval as usize,
                cfg.stream.threat_events_per_peer as usize,
                cfg.threats,
                cfg.network,
            );
            ThreatFeed {
                correlator: c,
                sensor: cfg.stream.sensor_name(),
            }
        });
        let (p, e, s, th) = (
            publisher.clone(),
            engines.clone(),
            since.clone(),
            threats.clone(),
        );
        let task = tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.tick().await;
            loop {
                t.tick().await;
                hand_over(&p, &e, &s, th.as_ref()).await;
            }
        });
        tracing::info!(
            sensor = %cfg.stream.sensor_name(),
            outbox = %path.display(),
            "publishing to NATS JetStream"
        );
        Ok(Some(SensorStream {
            publisher,
            engines,
            since,
            threats,
            task,
        }))
    }

    pub fn publisher(&self) -> &Arc<Publisher> {
        &self.publisher
    }

    /// At shutdown: hands over what the engines concluded last and gives the publisher `grace`.
    pub async fn finish(self, grace: Duration) {
        self.task.abort();
        hand_over(
            &self.publisher,
            &self.engines,
            &self.since,
            self.threats.as_ref(),
        )
        .await;
        self.publisher.finish(grace).await;
    }
}

async fn hand_over<E: PacketEngine>(
    publisher: &Arc<Publisher>,
    engines: &[Arc<Mutex<E>>],
    since: &Arc<Mutex<Vec<Timestamp>>>,
    threats: Option<&ThreatFeed>,
) {
    let mut evidence = Vec::new();
    let mut calls = Vec::new();
    for (i, e) in engines.iter().enumerate() {
        let Ok(mut eng) = e.lock() else { continue };
        let Ok(mut s) = since.lock() else { continue };
        let Some(from) = s.get_mut(i) else { continue };
        let ev = eng.evidence_since(*from, EVIDENCE_PER_ROUND);
        if let Some(newest) = ev.iter().map(|x| x.updated).max() {
            *from = (*from).max(newest);
        }
        evidence.extend(ev);
        // The stream edge: call records become JSON here.
        calls.extend(
            eng.take_calls()
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok()),
        );
    }
    let chunks = threats
        .map(|f| threat_chunks(f, &publisher.stats))
        .unwrap_or_default();
    if evidence.is_empty() && calls.is_empty() && chunks.is_empty() {
        return;
    }
    let p = publisher.clone();
    let n = (evidence.len(), calls.len(), chunks.len());
    match tokio::task::spawn_blocking(move || p.enqueue(&evidence, &chunks, &calls)).await {
        Ok(Ok(())) => tracing::debug!(
            lines = n.0,
            calls = n.1,
            threat_chunks = n.2,
            "evidence queued for the stream"
        ),
        Ok(Err(e)) => tracing::error!(error = %e, "stream outbox write failed"),
        Err(e) => tracing::error!(error = %e, "stream outbox task failed"),
    }
}

/// The threat events kept since the last hand-over (within the caps, already applied by the
/// correlator), in messages of `THREAT_EVENTS_PER_MSG`; what was left out is counted.
fn threat_chunks(feed: &ThreatFeed, stats: &PublisherStats) -> Vec<ThreatEventsMsg> {
    use std::sync::atomic::Ordering;
    let (kept, dropped) = feed.correlator.take_stream_events();
    stats
        .threat_events
        .fetch_add(kept.len() as u64, Ordering::Relaxed);
    stats
        .threat_events_dropped
        .fetch_add(dropped, Ordering::Relaxed);
    let mut out = Vec::new();
    let mut it = kept.into_iter().peekable();
    while it.peek().is_some() {
        out.push(ThreatEventsMsg {
            sensor: feed.sensor.clone(),
            events: it.by_ref().take(THREAT_EVENTS_PER_MSG).collect(),
        });
    }
    out
}
