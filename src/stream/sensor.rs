//! The sensor's side: every `evidence_interval_secs` the engines hand over the evidence of the
//! lines they re-scored (and, with `publish_calls`, the calls that ended) to the stream outbox.

use super::outbox::StreamOutbox;
use super::publisher::Publisher;
use crate::config::Config;
use crate::daemon::pipeline::PacketEngine;
use simboxd_core::model::Timestamp;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines of one engine handed over per interval (the rest follow at the next one).
const EVIDENCE_PER_ROUND: usize = 65536;

pub struct SensorStream<E: PacketEngine> {
    publisher: Arc<Publisher>,
    engines: Vec<Arc<Mutex<E>>>,
    since: Arc<Mutex<Vec<Timestamp>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<E: PacketEngine> SensorStream<E> {
    /// Opens the stream outbox and starts publishing; `None` without `[stream] url`.
    pub fn start(cfg: &Config, engines: Vec<Arc<Mutex<E>>>) -> anyhow::Result<Option<Self>> {
        if cfg.stream.url.is_none() {
            return Ok(None);
        }
        let path = super::outbox_path(&cfg.storage.path);
        let outbox = Arc::new(StreamOutbox::open(&path, cfg.stream.max_pending)?);
        let publisher = Arc::new(Publisher::start(&cfg.stream, outbox));
        let since = Arc::new(Mutex::new(vec![Timestamp::default(); engines.len()]));
        let every = Duration::from_secs(u64::from(cfg.stream.evidence_interval_secs));
        let (p, e, s) = (publisher.clone(), engines.clone(), since.clone());
        let task = tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.tick().await;
            loop {
                t.tick().await;
                hand_over(&p, &e, &s).await;
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
            task,
        }))
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// At shutdown: hands over what the engines concluded last and gives the publisher `grace`.
    pub async fn finish(self, grace: Duration) {
        self.task.abort();
        hand_over(&self.publisher, &self.engines, &self.since).await;
        self.publisher.finish(grace).await;
    }
}

async fn hand_over<E: PacketEngine>(
    publisher: &Arc<Publisher>,
    engines: &[Arc<Mutex<E>>],
    since: &Arc<Mutex<Vec<Timestamp>>>,
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
    if evidence.is_empty() && calls.is_empty() {
        return;
    }
    let p = publisher.clone();
    let n = (evidence.len(), calls.len());
    match tokio::task::spawn_blocking(move || p.enqueue(&evidence, &calls)).await {
        Ok(Ok(())) => tracing::debug!(lines = n.0, calls = n.1, "evidence queued for the stream"),
        Ok(Err(e)) => tracing::error!(error = %e, "stream outbox write failed"),
        Err(e) => tracing::error!(error = %e, "stream outbox task failed"),
    }
}
