//! Prometheus text exposition (format 0.0.4): families with HELP/TYPE and labelled samples.
//!
//! Contract: every family is written once, whole; names are sanitised to `[a-zA-Z_:][a-zA-Z0-9_:]*`
//! and label values escaped, so whatever counter names the stages use the output stays parseable.

use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One sample: label pairs and a value.
pub type Sample = (Vec<(&'static str, String)>, f64);

#[derive(Default)]
pub struct Exposition {
    out: String,
    families: std::collections::BTreeSet<String>,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one family. A family name already written is skipped (first one wins).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str, samples: Vec<Sample>) {
        let name = sanitize_name(name);
        if !self.families.insert(name.clone()) {
            return;
        }
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.out.push_str(&name);
            if !labels.is_empty() {
                self.out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    let _ = write!(self.out, "{}=\"{}\"", sanitize_label(k), escape_value(v));
                }
                self.out.push('}');
            }
            let _ = writeln!(self.out, " {}", format_value(value));
        }
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help, vec![(Vec::new(), value)]);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn sanitize_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn sanitize_label(s: &str) -> String {
    sanitize_name(s).replace(':', "_")
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_help_type_and_escaped_labels() {
        let mut e = Exposition::new();
        e.family(
            "simboxd_drops_total",
            Kind::Counter,
            "Packets dropped, by reason.",
            vec![
                (vec![("reason", "queue_full".into())], 3.0),
                (vec![("reason", "we\"ird\\\n".into())], 0.5),
            ],
        );
        e.single("simboxd_up", Kind::Gauge, "1", 1.0);
        e.single("simboxd_up", Kind::Gauge, "dup", 2.0);
        e.single("9bad-name", Kind::Gauge, "x", f64::INFINITY);
        assert_eq!(
            e.finish(),
            "# HELP simboxd_drops_total Packets dropped, by reason.\n\
             # TYPE simboxd_drops_total counter\n\
             simboxd_drops_total{reason=\"queue_full\"} 3\n\
             simboxd_drops_total{reason=\"we\\\"ird\\\\\\n\"} 0.5\n\
             # HELP simboxd_up 1\n# TYPE simboxd_up gauge\nsimboxd_up 1\n\
             # HELP _9bad_name x\n# TYPE _9bad_name gauge\n_9bad_name +Inf\n"
        );
    }
}
