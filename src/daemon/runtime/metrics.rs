//! The daemon's `/metrics` as data: tables of metric descriptors (name, type, help, and how
//! to read the samples), rendered in table order, instead of one long function of calls.
//!
//! Contract: one scrape takes a [`Frame`] (the daemon, plus what is costly to read twice:
//! the alert store's disk figures, delivery status, verdict counts over the engines), then
//! renders `HEAD`, the engines' merged figures (one family per stats key, `engine_family`),
//! `ALERTS` (alerts, outbox, delivery), the evidence table when `[evidence]` is on, and `HTTP`
//! (server, reloads). Families and their order are those of the exposition before the table;
//! a new metric is one row.

use super::Shared;
use crate::alert::delivery::TargetStatus;
use crate::alert::outbox::OutboxFigures;
use crate::daemon::evidence::EvidenceStats;
use crate::daemon::pipeline::PacketEngine;
use crate::http::server::SERVER_STATS;
use crate::metrics::{Kind, Sample, Snapshot as Exposition};
use simboxd_core::model::VerdictLevel;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// How a row reads its samples from `T`.
pub(super) enum Read<T> {
    /// One sample without labels.
    One(fn(&T) -> f64),
    /// Samples by one label: the label's name, then (label value, value) pairs.
    By(&'static str, fn(&T) -> Vec<(String, f64)>),
}

/// One metric family: its name (a counter's ends in `_total`), type, help and reader.
pub(super) struct Metric<T> {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub read: Read<T>,
}

const fn one<T>(name: &'static str, kind: Kind, help: &'static str, f: fn(&T) -> f64) -> Metric<T> {
    Metric {
        name,
        kind,
        help,
        read: Read::One(f),
    }
}

const fn by<T>(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    label: &'static str,
    f: fn(&T) -> Vec<(String, f64)>,
) -> Metric<T> {
    Metric {
        name,
        kind,
        help,
        read: Read::By(label, f),
    }
}

use Kind::{Counter, Gauge};

/// What one scrape reads.
pub(super) struct Frame<'a, E: PacketEngine> {
    d: &'a Shared<E>,
    /// The alert store's disk figures.
    disk: OutboxFigures,
    /// Delivery status by target.
    delivery: Vec<TargetStatus>,
    /// Lines with a verdict by verdict name (every verdict present), and verdicts evicted.
    verdicts: (BTreeMap<&'static str, f64>, u64),
}

fn load(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

fn pairs<const N: usize>(xs: [(&str, f64); N]) -> Vec<(String, f64)> {
    xs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn per_target<E: PacketEngine>(
    f: &Frame<'_, E>,
    get: fn(&TargetStatus) -> f64,
) -> Vec<(String, f64)> {
    f.delivery
        .iter()
        .map(|t| (crate::metrics::target_label(&t.target), get(t)))
        .collect()
}

/// The capture, the queues and the workers (before the engines' own figures).
fn head<'a, E: PacketEngine>() -> Vec<Metric<Frame<'a, E>>> {
    vec![
        one("simboxd_up", Gauge, "1 while the daemon runs.", |_| 1.0),
        one(
            "simboxd_uptime_seconds",
            Gauge,
            "Seconds since start.",
            |f| f.d.started.elapsed().as_secs_f64(),
        ),
        one(
            "simboxd_capture_running",
            Gauge,
            "1 while the capture thread reads packets.",
            |f| f64::from(u8::from(f.d.stats.capture_running.load(Ordering::Relaxed))),
        ),
        one(
            "simboxd_workers_running",
            Gauge,
            "Engine threads running (a replay's thread until its final verdicts are alerts).",
            |f| load(&f.d.stats.workers_running),
        ),
        one(
            "simboxd_packets_captured_total",
            Counter,
            "Packets read from the capture.",
            |f| load(&f.d.stats.captured_packets),
        ),
        one(
            "simboxd_bytes_captured_total",
            Counter,
            "Bytes read from the capture (captured length).",
            |f| load(&f.d.stats.captured_bytes),
        ),
        one(
            "simboxd_packets_processed_total",
            Counter,
            "Packets run through an engine.",
            |f| load(&f.d.stats.processed_packets),
        ),
        one(
            "simboxd_queue_packets",
            Gauge,
            "Packets waiting in the worker queues.",
            |f| load(&f.d.stats.queued_packets),
        ),
        by(
            "simboxd_packets_dropped_total",
            Counter,
            "Packets lost before an engine saw them, by reason.",
            "reason",
            |f| {
                let s = &f.d.stats;
                pairs([
                    ("queue_full", load(&s.dropped_queue_full)),
                    ("worker_gone", load(&s.dropped_worker_gone)),
                    ("kernel", load(&s.kernel_dropped)),
                    ("interface", load(&s.interface_dropped)),
                ])
            },
        ),
        one(
            "simboxd_capture_errors_total",
            Counter,
            "Capture read errors.",
            |f| load(&f.d.stats.capture_errors),
        ),
        one(
            "simboxd_verdicts_dropped_total",
            Counter,
            "Verdict changes the alert side could not take.",
            |f| load(&f.d.stats.dropped_verdicts),
        ),
    ]
}

/// Lines, checkpoints, alerts, the outbox and delivery (after the engines' own figures).
fn alerts<'a, E: PacketEngine>() -> Vec<Metric<Frame<'a, E>>> {
    vec![
        one(
            "simboxd_last_packet_timestamp_seconds",
            Gauge,
            "Packet time of the newest packet read (Unix seconds; 0 before the first).",
            |f| f.d.stats.last_packet_us.load(Ordering::Relaxed) as f64 / 1e6,
        ),
        by(
            "simboxd_lines",
            Gauge,
            "Lines with a verdict, by verdict.",
            "verdict",
            |f| {
                f.verdicts
                    .0
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect()
            },
        ),
        one(
            "simboxd_verdicts_evicted_total",
            Counter,
            "Line verdicts forgotten with their line, evicted from a full line table.",
            |f| f.verdicts.1 as f64,
        ),
        by(
            "simboxd_checkpoints_total",
            Counter,
            "State checkpoints (line profiles, alert episodes), by result.",
            "result",
            |f| {
                pairs([
                    ("ok", load(&f.d.checkpoints_ok)),
                    ("failed", load(&f.d.checkpoints_failed)),
                ])
            },
        ),
        one(
            "simboxd_checkpoint_lines_total",
            Counter,
            "Line profiles written by checkpoints.",
            |f| load(&f.d.checkpoint_lines),
        ),
        by(
            "simboxd_alerts_total",
            Counter,
            "Alert records made, by state.",
            "state",
            |f| {
                let made = |i: usize| f.d.alerts_made.get(i).map_or(0.0, load);
                pairs([
                    ("raised", made(0)),
                    ("updated", made(1)),
                    ("cleared", made(2)),
                ])
            },
        ),
        one(
            "simboxd_alerts_open",
            Gauge,
            "Lines with an open (raised, not cleared) alert.",
            |f| load(&f.d.alerts_open),
        ),
        one(
            "simboxd_alert_evictions_total",
            Counter,
            "Open alert episodes evicted because [alert] max_open was reached.",
            |f| load(&f.d.alert_evictions),
        ),
        one(
            "simboxd_alert_store_errors_total",
            Counter,
            "Alerts the outbox could not store.",
            |f| load(&f.d.alert_store_errors),
        ),
        one(
            "simboxd_outbox_alerts",
            Gauge,
            "Alert records in the outbox.",
            |f| f.d.outbox.len().unwrap_or(0) as f64,
        ),
        one(
            "simboxd_outbox_writable",
            Gauge,
            "1 while the alert store can be written; 0 during a disk fault (full or read-only).",
            |f| f64::from(u8::from(f.disk.writable)),
        ),
        one(
            "simboxd_outbox_write_errors_total",
            Counter,
            "Failed writes to the alert store (every attempt).",
            |f| f.disk.write_errors as f64,
        ),
        one(
            "simboxd_outbox_fault_episodes_total",
            Counter,
            "Times the alert store went from writable to failing.",
            |f| f.disk.fault_episodes as f64,
        ),
        one(
            "simboxd_outbox_held_alerts",
            Gauge,
            "Alerts held in memory because the store could not be written.",
            |f| f.disk.held_alerts as f64,
        ),
        one(
            "simboxd_outbox_held_marks",
            Gauge,
            "Delivered marks held in memory because the store could not be written.",
            |f| f.disk.held_marks as f64,
        ),
        one(
            "simboxd_outbox_held_dropped_total",
            Counter,
            "Alerts lost because [storage] max_memory_alerts were already held during a disk fault.",
            |f| f.disk.dropped_alerts as f64,
        ),
        one(
            "simboxd_outbox_dropped_pending_total",
            Counter,
            "Undelivered alerts dropped from the outbox to stay within [storage] max_alerts.",
            |f| f.d.outbox.dropped_pending().unwrap_or(0) as f64,
        ),
        by(
            "simboxd_delivery_backlog",
            Gauge,
            "Alerts not yet accepted by a target, by target.",
            "target",
            |f| per_target(f, |t| t.pending as f64),
        ),
        by(
            "simboxd_delivery_delivered_total",
            Counter,
            "Alerts accepted by a target, by target.",
            "target",
            |f| per_target(f, |t| t.delivered as f64),
        ),
        by(
            "simboxd_delivery_failures_total",
            Counter,
            "Failed delivery attempts, by target.",
            "target",
            |f| per_target(f, |t| t.failures as f64),
        ),
        by(
            "simboxd_delivery_refused_total",
            Counter,
            "Delivery attempts a target refused (4xx, untrusted certificate, RELP error), by target.",
            "target",
            |f| per_target(f, |t| t.refused as f64),
        ),
        by(
            "simboxd_delivery_dead_lettered_total",
            Counter,
            "Alerts moved to a target's dead-letter list after [alert] dead_letter_after refusals, by target.",
            "target",
            |f| per_target(f, |t| t.dead_lettered as f64),
        ),
        by(
            "simboxd_delivery_dead_letter",
            Gauge,
            "Alerts in a target's dead-letter list now, by target.",
            "target",
            |f| per_target(f, |t| t.dead_letter as f64),
        ),
        by(
            "simboxd_delivery_up",
            Gauge,
            "1 when the last delivery attempt to a target succeeded.",
            "target",
            |f| per_target(f, |t| f64::from(u8::from(t.up))),
        ),
    ]
}

/// The API server and config reloads (last).
fn http<'a, E: PacketEngine>() -> Vec<Metric<Frame<'a, E>>> {
    vec![
        by(
            "simboxd_http_connections_total",
            Counter,
            "API connections: accepted, closed to make room (idle or slow), refused (all busy).",
            "result",
            |_| {
                let hs = &SERVER_STATS;
                pairs([
                    ("accepted", load(&hs.accepted)),
                    ("evicted", load(&hs.evicted)),
                    ("refused", load(&hs.refused)),
                    ("tls_failed", load(&hs.tls_failed)),
                ])
            },
        ),
        one(
            "simboxd_http_connections_open",
            Gauge,
            "Open API connections.",
            |_| load(&SERVER_STATS.open),
        ),
        by(
            "simboxd_http_requests_refused_total",
            Counter,
            "API requests not served, by reason.",
            "reason",
            |_| {
                pairs([
                    ("client_limit", load(&SERVER_STATS.over_client_limit)),
                    ("timeout", load(&SERVER_STATS.timed_out)),
                ])
            },
        ),
        by(
            "simboxd_config_reloads_total",
            Counter,
            "Config reloads (SIGHUP), by result.",
            "result",
            |f| {
                pairs([
                    ("ok", load(&f.d.reloads_ok)),
                    ("failed", load(&f.d.reloads_failed)),
                ])
            },
        ),
    ]
}

/// The evidence writer (`[evidence] enabled`).
const EVIDENCE: &[Metric<EvidenceStats>] = &[
    one(
        "simboxd_evidence_bytes",
        Gauge,
        "Pcap bytes on disk under the evidence folder ([evidence] max_bytes caps it).",
        |s| EvidenceStats::load(&s.bytes_on_disk),
    ),
    one(
        "simboxd_evidence_files",
        Gauge,
        "Evidence pcap files on disk.",
        |s| EvidenceStats::load(&s.files),
    ),
    by(
        "simboxd_evidence_alerts",
        Gauge,
        "Alerts with an evidence folder, by state.",
        "state",
        |s| {
            pairs([
                ("open", EvidenceStats::load(&s.alerts_open)),
                ("closed", EvidenceStats::load(&s.alerts_closed)),
            ])
        },
    ),
    one(
        "simboxd_evidence_packets_written_total",
        Counter,
        "Packets written to evidence pcaps.",
        |s| EvidenceStats::load(&s.packets_written),
    ),
    one(
        "simboxd_evidence_pre_alert_packets_written_total",
        Counter,
        "Packets written to evidence pcaps from a line's pre-alert ring.",
        |s| EvidenceStats::load(&s.pre_alert_packets),
    ),
    by(
        "simboxd_evidence_packets_dropped_total",
        Counter,
        "Packets of recorded lines not written, by reason.",
        "reason",
        |s| {
            pairs([
                ("cap", EvidenceStats::load(&s.dropped_cap)),
                ("alert_cap", EvidenceStats::load(&s.dropped_alert_cap)),
                ("queue_full", EvidenceStats::load(&s.dropped_queue_full)),
                ("write_error", EvidenceStats::load(&s.dropped_write_error)),
            ])
        },
    ),
    one(
        "simboxd_evidence_deleted_alerts_total",
        Counter,
        "Closed alerts whose evidence was deleted to stay within [evidence] max_bytes.",
        |s| EvidenceStats::load(&s.deleted_alerts),
    ),
];

/// Renders `table`'s rows from `src`, in order.
fn emit<T>(m: &mut Exposition, table: &[Metric<T>], src: &T) {
    for row in table {
        match &row.read {
            Read::One(f) => m.single(row.name, row.kind, row.help, f(src)),
            Read::By(label, f) => {
                let samples: Vec<Sample> = f(src)
                    .into_iter()
                    .map(|(v, x)| (vec![(*label, v)], x))
                    .collect();
                m.family(row.name, row.kind, row.help, samples)
            }
        }
    }
}

impl<E: PacketEngine> Shared<E> {
    /// The engines' figures summed over workers, by (family, label name, label value); the
    /// metrics edge walks each worker's typed figures as JSON (numbers, maps of numbers).
    fn merged_engine_stats(&self) -> BTreeMap<(String, String, String), f64> {
        // (family, label name, label value) -> summed value over workers
        let mut out = BTreeMap::new();
        for e in &self.engines {
            let Ok(eng) = e.lock() else { continue };
            // The metrics edge: the worker's typed figures walked as JSON (numbers, maps).
            let v = serde_json::to_value(eng.stats()).unwrap_or_default();
            let Some(obj) = v.as_object() else { continue };
            for (k, val) in obj {
                match val {
                    serde_json::Value::Number(n) => {
                        let key = (k.clone(), String::new(), String::new());
                        *out.entry(key).or_insert(0.0) += n.as_f64().unwrap_or(0.0);
                    }
                    serde_json::Value::Object(m) => {
                        for (name, x) in m {
                            if let Some(f) = x.as_f64() {
                                let key = (k.clone(), "name".to_string(), name.clone());
                                *out.entry(key).or_insert(0.0) += f;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        // The threat table the workers share: its evictions and sizes.
        if let Some((evictions, sizes)) = self.correlator.as_ref().and_then(|c| c.threat_stats()) {
            let evictions = evictions
                .0
                .into_iter()
                .map(|(k, v)| ("evictions", k, v as f64));
            let sizes = sizes.into_iter().map(|(k, v)| ("tables", k, v as f64));
            for (family, name, v) in evictions.chain(sizes) {
                let key = (family.to_string(), "name".to_string(), name);
                *out.entry(key).or_insert(0.0) += v;
            }
        }
        out
    }

    /// The exposition text of `/metrics`.
    pub(super) fn render_metrics(&self) -> String {
        let mut by_level: BTreeMap<&'static str, f64> =
            VerdictLevel::ALL.iter().map(|l| (l.name(), 0.0)).collect();
        let mut lines_evicted = 0u64;
        for e in &self.engines {
            let Ok(eng) = e.lock() else { continue };
            let (counts, evicted) = eng.verdict_counts();
            lines_evicted += evicted;
            for (l, n) in VerdictLevel::ALL.iter().zip(counts) {
                *by_level.entry(l.name()).or_insert(0.0) += n as f64;
            }
        }
        let frame = Frame {
            d: self,
            disk: self.outbox.figures(),
            delivery: self
                .delivery
                .lock()
                .ok()
                .and_then(|d| d.as_ref().map(|d| d.status()))
                .unwrap_or_default(),
            verdicts: (by_level, lines_evicted),
        };
        let mut m = Exposition::new();
        emit(&mut m, &head(), &frame);
        engine_families(&mut m, &self.merged_engine_stats());
        emit(&mut m, &alerts(), &frame);
        // The stream publisher's own figures (`[stream] url`).
        if let Some(p) = self.stream.get() {
            p.metrics(&mut m);
        }
        if let Some(ev) = &self.evidence {
            emit(&mut m, EVIDENCE, &*ev.stats);
        }
        emit(&mut m, &http(), &frame);
        m.finish()
    }
}

/// The engines' merged figures: one family per stats key (see `engine_family`); the keyed
/// families exist even while empty, so dashboards and alerts find them.
fn engine_families(m: &mut Exposition, merged: &BTreeMap<(String, String, String), f64>) {
    let mut families: BTreeMap<String, (Kind, String, Vec<Sample>)> = BTreeMap::new();
    // The keyed families exist even while empty, so dashboards and alerts find them.
    for k in [
        "decode_errors",
        "decode_skipped",
        "evictions",
        "tables",
        "events",
    ] {
        if let Some((name, kind, help, _)) = engine_family(k, "", true) {
            families.insert(name, (kind, help, Vec::new()));
        }
    }
    for ((k, _, label), v) in merged {
        let Some((name, kind, help, label_name)) = engine_family(k, label, !label.is_empty())
        else {
            continue;
        };
        let labels = if label_name.is_empty() {
            Vec::new()
        } else {
            vec![(label_name, label.clone())]
        };
        families
            .entry(name)
            .or_insert_with(|| (kind, help, Vec::new()))
            .2
            .push((labels, *v));
    }
    for (name, (kind, help, samples)) in families {
        m.family(&name, kind, &help, samples);
    }
}

/// Metric family for an engine stats key (and, for keyed figures, one of its labels): name,
/// kind, help and label name; `None` for figures exported elsewhere (`packets` is
/// `simboxd_packets_processed_total`, `lines.lines_evicted` is `evictions_total{table="lines"}`)
/// or that are not counts (`first`).
fn engine_family(
    key: &str,
    label: &str,
    labelled: bool,
) -> Option<(String, Kind, String, &'static str)> {
    let known = |name: &str, kind, help: &str, label| {
        Some((name.to_string(), kind, help.to_string(), label))
    };
    match key {
        "packets" | "first" | "last" => None,
        "bytes" => known(
            "simboxd_bytes_processed_total",
            Kind::Counter,
            "Bytes (captured length) run through an engine.",
            "",
        ),
        "decode_errors" => known(
            "simboxd_decode_errors_total",
            Kind::Counter,
            "Malformed or truncated input: decode and parse stops, by layer and reason.",
            "reason",
        ),
        "decode_skipped" => known(
            "simboxd_decode_skipped_total",
            Kind::Counter,
            "Well-formed frames of protocols simboxd does not analyse (ARP, STP, ICMP, ...), by kind.",
            "kind",
        ),
        "evictions" => known(
            "simboxd_evictions_total",
            Kind::Counter,
            "Entries evicted from full tables, by table.",
            "table",
        ),
        "tables" if label.ends_with("bytes") => known(
            "simboxd_table_bytes",
            Kind::Gauge,
            "Bytes currently held, by table.",
            "table",
        ),
        "tables" => known(
            "simboxd_table_entries",
            Kind::Gauge,
            "Current entries, by table.",
            "table",
        ),
        "events" => known(
            "simboxd_events_total",
            Kind::Counter,
            "Pipeline events, by kind.",
            "kind",
        ),
        "evidence_ring" => known(
            "simboxd_evidence_ring_packets_total",
            Kind::Counter,
            "Pre-alert ring packets by outcome (kept, media_sampled_out, ring_overflow, recording_refused).",
            "kind",
        ),
        "lines" if label == "lines_evicted" => None,
        "lines" => known(
            "simboxd_line_table_events_total",
            Kind::Counter,
            "Line table events (idle lines removed, events for no line), by kind.",
            "kind",
        ),
        other if !labelled => Some((
            format!("simboxd_engine_{other}_total"),
            Kind::Counter,
            format!("Engine total `{other}`."),
            "",
        )),
        other => Some((
            format!("simboxd_engine_{other}_total"),
            Kind::Counter,
            format!("Engine count `{other}`, by name."),
            "name",
        )),
    }
}
