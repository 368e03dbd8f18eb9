//! The shipped `config/simboxd.toml` against the code's defaults, key by key, both ways: every
//! key the file sets has the default's value (apart from the few documented examples below), and
//! every key the defaults have is set in the file or shown commented out.
//! Regression: the file once said `max_sip_message = 65535` and `tcp_stream_bytes = 65536`
//! while the code defaulted to 262144, so installing it silently lowered both.

use std::path::Path;

/// Keys whose value in the shipped file is an example to edit, not the default: the capture
/// interface (the default is "unset", which the daemon refuses: a capture source is required) and
/// the worker count (the default follows the host's cores).
const EXAMPLES: &[&str] = &["capture.interface", "daemon.workers"];

fn shipped() -> (String, toml::Table) {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/simboxd.toml"))
            .expect("read config/simboxd.toml");
    let table: toml::Table = toml::from_str(&text).expect("parse config/simboxd.toml");
    (text, table)
}

fn defaults() -> toml::Table {
    match toml::Value::try_from(simboxd::config::Config::default()).expect("serialise defaults") {
        toml::Value::Table(t) => t,
        other => panic!("defaults serialise to {other:?}"),
    }
}

/// Flattens nested tables to `a.b.c` -> value.
fn flatten(prefix: &str, t: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(sub) => flatten(&key, sub, out),
            other => out.push((key, other.clone())),
        }
    }
}

fn same(a: &toml::Value, b: &toml::Value) -> bool {
    match (a, b) {
        (toml::Value::Integer(x), toml::Value::Float(y))
        | (toml::Value::Float(y), toml::Value::Integer(x)) => (*x as f64 - y).abs() < 1e-12,
        (toml::Value::Float(x), toml::Value::Float(y)) => (x - y).abs() < 1e-12,
        _ => a == b,
    }
}

fn lookup<'a>(t: &'a toml::Table, dotted: &str) -> Option<&'a toml::Value> {
    let mut parts = dotted.split('.').peekable();
    let mut cur = t;
    while let Some(p) = parts.next() {
        let v = cur.get(p)?;
        if parts.peek().is_none() {
            return Some(v);
        }
        cur = v.as_table()?;
    }
    None
}

#[test]
fn every_key_set_in_the_shipped_file_has_the_default_value() {
    let (_, file) = shipped();
    let defaults = defaults();
    let mut keys = Vec::new();
    flatten("", &file, &mut keys);
    assert!(
        keys.len() > 50,
        "only {} keys in the shipped file",
        keys.len()
    );
    let mut wrong = Vec::new();
    for (key, value) in &keys {
        if EXAMPLES.contains(&key.as_str()) {
            continue;
        }
        match lookup(&defaults, key) {
            Some(d) if same(d, value) => {}
            Some(d) => wrong.push(format!("{key}: file {value}, code {d}")),
            None => wrong.push(format!("{key}: set in the file, unset (None) in the code")),
        }
    }
    assert!(
        wrong.is_empty(),
        "shipped config differs:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_default_key_is_in_the_shipped_file() {
    let (text, file) = shipped();
    let mut keys = Vec::new();
    flatten("", &defaults(), &mut keys);
    let mut missing = Vec::new();
    for (key, _) in &keys {
        if lookup(&file, key).is_none() {
            missing.push(key.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "keys with a default missing from the file: {missing:?}"
    );
    // Keys without a default (None) are shown commented out in their section.
    for key in EXAMPLES {
        assert!(lookup(&file, key).is_some(), "{key}");
    }
    for optional in [
        "capture.file",
        "network.geoip_db",
        "network.home_country",
        "http.token",
        "http.token_file",
        "webhook.url",
        "syslog.hostname",
        "alert.sensor",
    ] {
        let (section, key) = optional.rsplit_once('.').unwrap();
        let start = text
            .find(&format!("\n[{section}]\n"))
            .unwrap_or_else(|| panic!("[{section}] missing"));
        let end = text[start + 1..]
            .find("\n[")
            .map_or(text.len(), |e| start + 1 + e);
        assert!(
            text[start..end].contains(&format!("\n# {key} = ")),
            "{optional} is not shown (commented) in [{section}]"
        );
    }
}
