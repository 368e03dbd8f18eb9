//! Prometheus metrics of the daemon, encoded by `prometheus-client` (text format 0.0.4).
//!
//! Contract: counters are exposed with `_total` (the encoder adds it), units are in the names
//! (`_seconds`, `_bytes`), every family appears once with one type, and label values never hold
//! a credential: targets are shown as `scheme://host:port` (`target_label`). Figures kept
//! elsewhere (atomics, engine stats) are snapshotted per scrape into [`Snapshot`]; the two
//! latency histograms live here, process-wide, because the engine workers and the delivery
//! tasks observe into them directly.

pub mod process;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::LazyLock;

/// Label pairs of one sample.
pub type Labels = Vec<(&'static str, String)>;

/// One sample: its labels and value.
pub type Sample = (Labels, f64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family with its current samples.
#[derive(Clone, Debug)]
pub struct Fam {
    /// Full name; a counter's ends in `_total`.
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<(Labels, f64)>,
}

/// The figures of one scrape, handed to `prometheus-client` as a collector.
#[derive(Debug, Default)]
pub struct Snapshot {
    fams: Vec<Fam>,
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    /// Adds a family; a name seen before merges its samples into the first (one family each).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str, samples: Vec<(Labels, f64)>) {
        if let Some(f) = self.fams.iter_mut().find(|f| f.name == name) {
            f.samples.extend(samples);
            return;
        }
        self.fams.push(Fam {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            samples,
        });
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help, vec![(Vec::new(), value)]);
    }

    /// The exposition text (`encode`).
    pub fn finish(self) -> String {
        self.encode()
    }

    /// The exposition: these families, the process figures, build info and the histograms.
    pub fn encode(mut self) -> String {
        process::collect(&mut self);
        self.single(
            "simboxd_build_info",
            Kind::Gauge,
            "Build of the running daemon (always 1).",
            1.0,
        );
        if let Some(f) = self.fams.last_mut() {
            f.samples[0].0 = vec![
                ("version", env!("CARGO_PKG_VERSION").into()),
                (
                    "commit",
                    option_env!("SIMBOXD_COMMIT").unwrap_or("unknown").into(),
                ),
            ];
        }
        let mut registry = Registry::default();
        registry.register(
            "simboxd_engine_packet_duration_seconds",
            "Time an engine takes for one packet (decode to detection), sampled 1 in 64 packets",
            HISTOGRAMS.engine_packet.clone(),
        );
        registry.register(
            "simboxd_alert_delivery_duration_seconds",
            "Time from a delivery worker taking an alert to the target accepting it, retries included, by target",
            HISTOGRAMS.delivery.clone(),
        );
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.fams {
            let (name, ty) = match f.kind {
                // The encoder appends `_total` to counters.
                Kind::Counter => (
                    f.name.strip_suffix("_total").unwrap_or(&f.name),
                    MetricType::Counter,
                ),
                Kind::Gauge => (f.name.as_str(), MetricType::Gauge),
            };
            let mut me = encoder.encode_descriptor(name, &f.help, None, ty)?;
            for (labels, v) in &f.samples {
                let fe = me.encode_family(labels)?;
                // Whole numbers print as integers (`3`, not `3.0`).
                let whole = v.fract() == 0.0 && v.abs() < 9.0e15;
                match (f.kind, whole) {
                    (Kind::Counter, true) => ConstCounter::new(v.max(0.0) as u64).encode(fe)?,
                    (Kind::Counter, false) => ConstCounter::new(v.max(0.0)).encode(fe)?,
                    (Kind::Gauge, true) => ConstGauge::new(*v as i64).encode(fe)?,
                    (Kind::Gauge, false) => ConstGauge::new(*v).encode(fe)?,
                }
            }
        }
        Ok(())
    }
}

/// The process-wide latency histograms.
pub struct Histograms {
    pub engine_packet: Histogram,
    pub delivery: Family<Labels, Histogram>,
}

fn delivery_histogram() -> Histogram {
    // 1 ms .. ~9 min: a quick accept up to a long outage retried with backoff.
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

pub static HISTOGRAMS: LazyLock<Histograms> = LazyLock::new(|| Histograms {
    // 100 ns .. ~0.4 ms per packet.
    engine_packet: Histogram::new(exponential_buckets(1e-7, 2.0, 12)),
    delivery: Family::new_with_constructor(delivery_histogram),
});

/// Engine packets timed: one in this many.
pub const ENGINE_SAMPLE_EVERY: u64 = 64;

/// Records one alert's delivery time to `target` (a target name; credentials are removed).
pub fn observe_delivery(target: &str, seconds: f64) {
    HISTOGRAMS
        .delivery
        .get_or_create(&vec![("target", target_label(target))])
        .observe(seconds);
}

/// `scheme://host:port` of a target URL: no user, password, path or query (a webhook URL may
/// carry a token in any of them).
pub fn target_label(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return "unknown".to_string(),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{hostport}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_labels_carry_no_credentials() {
        assert_eq!(
            target_label("https://user:secret@soc.example:8443/hook/abc?token=x"),
            "https://soc.example:8443"
        );
        assert_eq!(target_label("udp://127.0.0.1:514"), "udp://127.0.0.1:514");
        assert_eq!(target_label("http://[::1]:80/x"), "http://[::1]:80");
        assert_eq!(target_label("garbage"), "unknown");
    }

    #[test]
    fn counters_get_total_once_and_families_are_unique() {
        let mut s = Snapshot::new();
        s.single("simboxd_x_total", Kind::Counter, "X.", 3.0);
        s.family(
            "simboxd_y_bytes",
            Kind::Gauge,
            "Y.",
            vec![(vec![("table", "a\"b".into())], 1.5)],
        );
        s.family(
            "simboxd_y_bytes",
            Kind::Gauge,
            "again",
            vec![(vec![("table", "c".into())], 2.0)],
        );
        let text = s.encode();
        assert!(
            text.contains("# TYPE simboxd_x_total counter\nsimboxd_x_total 3\n"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE simboxd_y_bytes gauge").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("simboxd_y_bytes{table=\"a\\\"b\"} 1.5"),
            "{text}"
        );
        assert!(text.contains("simboxd_y_bytes{table=\"c\"} 2"), "{text}");
        assert!(
            text.contains("# TYPE simboxd_engine_packet_duration_seconds histogram"),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("simboxd_build_info{version=\""), "{text}");
    }
}
