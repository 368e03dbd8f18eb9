//! `[privacy] pseudonymize = true`: no phone number of the capture appears in `analyze`'s JSON or
//! in the report, the same number always maps to the same pseudonym, and the key is not shown.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const KEY: &str = "test-key-0123456789abcdef";

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap")
}

fn analyze(dir: &Path, config: Option<&Path>, report: &Path) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_simboxd"));
    cmd.arg("analyze")
        .arg(sample())
        .args([
            "--format",
            "json",
            "--quiet",
            "--domestic-net",
            "198.18.0.0/15",
        ])
        .arg("--report")
        .arg(report)
        .current_dir(dir);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().expect("run simboxd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn numbers(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for c in v["calls"].as_array().expect("calls") {
        for k in ["from", "to"] {
            if let Some(n) = c[k].as_str() {
                out.push(n.to_string());
            }
        }
    }
    out
}

#[test]
fn pseudonymised_output_holds_no_phone_number() {
    let dir = tempfile::tempdir().expect("tmp");
    let plain = analyze(dir.path(), None, &dir.path().join("plain.html"));
    let clear: BTreeSet<String> = numbers(&plain)
        .into_iter()
        .filter(|n| n.chars().filter(char::is_ascii_digit).count() >= 6)
        .collect();
    assert!(clear.len() >= 10, "the sample has numbers: {clear:?}");

    let cfg = dir.path().join("privacy.toml");
    std::fs::write(
        &cfg,
        format!("[privacy]\npseudonymize = true\nkey = \"{KEY}\"\n"),
    )
    .expect("write config");
    let report = dir.path().join("private.html");
    let private = analyze(dir.path(), Some(&cfg), &report);
    let json = private.to_string();
    let html = std::fs::read_to_string(&report).expect("report");
    for n in &clear {
        assert!(!json.contains(n.as_str()), "JSON leaks {n}");
        assert!(!html.contains(n.as_str()), "report leaks {n}");
    }
    assert!(!html.contains(KEY), "report shows the privacy key");
    let pseudo = numbers(&private);
    assert_eq!(pseudo.len(), numbers(&plain).len());
    assert!(pseudo.iter().all(|n| n.starts_with("p:")), "{pseudo:?}");
    // Stable: the same clear number gets the same pseudonym.
    let pairs: BTreeSet<(String, String)> = numbers(&plain).into_iter().zip(pseudo).collect();
    let firsts: BTreeSet<&String> = pairs.iter().map(|(a, _)| a).collect();
    assert_eq!(firsts.len(), pairs.len(), "one pseudonym per number");
    // Detection is unchanged by pseudonymisation.
    let verdicts = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| (l["line"].to_string(), l["verdict"].to_string()))
            .collect()
    };
    assert_eq!(verdicts(&plain), verdicts(&private));
}
