//! Streaming analysis (issue 10, point 3): `--format ndjson` and `--records FILE` give the same
//! records, per-line figures and verdicts as `--format json`, and the hostile capture (floods,
//! fragments, TCP streams, media, malformed packets) is analysed without error with its drops
//! and evictions counted.

#[path = "../benches/hostile/gen.rs"]
mod gen;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn analyze(capture: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .arg("analyze")
        .args(args)
        .arg("--quiet")
        .arg(capture)
        .output()
        .expect("run simboxd");
    assert!(
        out.status.success(),
        "analyze {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn ndjson(bytes: &[u8]) -> Vec<Value> {
    std::str::from_utf8(bytes)
        .expect("utf-8")
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("line {}: {e}: {l}", i + 1))
        })
        .collect()
}

/// The object without its `type` tag.
fn untagged(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("type");
    }
    v
}

/// Records of one kind as sorted JSON texts (streamed records come in the order they end).
fn sorted(vals: impl Iterator<Item = Value>) -> Vec<String> {
    let mut v: Vec<String> = vals.map(|x| x.to_string()).collect();
    v.sort();
    v
}

fn sample(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

#[test]
fn ndjson_has_every_record_type_and_the_json_lines_and_verdicts() {
    for name in ["sample-site.pcap", "sample-negatives.pcap"] {
        let cap = sample(name);
        let doc: Value = serde_json::from_slice(&analyze(&cap, &["--format", "json"])).unwrap();
        let objs = ndjson(&analyze(&cap, &["--format", "ndjson"]));
        let of = |t: &'static str| objs.iter().filter(move |o| o["type"] == t);
        for (t, arr) in [
            ("call", "calls"),
            ("registration", "registrations"),
            ("media_flow", "media_flows"),
        ] {
            let json = doc[arr].as_array().unwrap();
            assert_eq!(
                sorted(of(t).map(untagged)),
                sorted(json.iter().cloned()),
                "{name}: {t} records"
            );
        }
        if name == "sample-site.pcap" {
            for t in ["call", "registration", "media_flow"] {
                assert!(of(t).count() > 0, "{name}: no {t} record");
            }
        }
        // Lines: every field of the JSON document's `lines`, exact (nothing estimated here).
        let json_lines = doc["lines"].as_array().unwrap();
        let lines: Vec<&Value> = of("line").collect();
        assert_eq!(lines.len(), json_lines.len(), "{name}: line count");
        for (want, got) in json_lines.iter().zip(&lines) {
            assert_eq!(got["estimated"], serde_json::json!({}), "{name}");
            for (k, v) in want.as_object().unwrap() {
                assert_eq!(&got[k], v, "{name}: line {} field {k}", want["line"]);
            }
        }
        assert!(
            json_lines.iter().any(|l| l["verdict"].is_string()),
            "{name}: no verdict at all"
        );
        // The summary comes last, with the document's capture and stats.
        let last = objs.last().unwrap();
        assert_eq!(last["type"], "summary");
        assert_eq!(last["capture"], doc["capture"]);
        assert_eq!(last["stats"], doc["stats"]);
        assert_eq!(last["network"], doc["network"]);
        assert_eq!(of("summary").count(), 1);
    }
}

#[test]
fn records_file_holds_the_json_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let cap = sample("sample-site.pcap");
    for fmt in ["json", "text"] {
        let rec = dir.path().join(format!("{fmt}.ndjson"));
        let out = analyze(&cap, &["--format", fmt, "--records", rec.to_str().unwrap()]);
        let doc: Value = if fmt == "json" {
            serde_json::from_slice(&out).unwrap()
        } else {
            serde_json::from_slice(&analyze(&cap, &["--format", "json"])).unwrap()
        };
        let objs = ndjson(&std::fs::read(&rec).unwrap());
        assert!(!objs.is_empty());
        for (t, arr) in [
            ("call", "calls"),
            ("registration", "registrations"),
            ("media_flow", "media_flows"),
        ] {
            assert_eq!(
                sorted(objs.iter().filter(|o| o["type"] == t).map(untagged)),
                sorted(doc[arr].as_array().unwrap().iter().cloned()),
                "--format {fmt} --records: {t}"
            );
        }
        assert!(
            objs.iter()
                .all(|o| ["call", "registration", "media_flow"]
                    .contains(&o["type"].as_str().unwrap())),
            "only records in the records file"
        );
    }
}

#[test]
fn text_streams_the_same_lines_as_the_held_analysis() {
    // `--report` makes analyze hold every record; without it text streams. Same text either way
    // on a capture whose lines fit the tallies.
    let dir = tempfile::tempdir().unwrap();
    let cap = sample("sample-site.pcap");
    let streamed = analyze(&cap, &["--format", "text"]);
    let report = dir.path().join("r.html");
    let held = analyze(
        &cap,
        &["--format", "text", "--report", report.to_str().unwrap()],
    );
    assert_eq!(
        String::from_utf8_lossy(&streamed),
        String::from_utf8_lossy(&held)
    );
}

#[test]
fn hostile_capture_is_analysed_with_its_drops_and_evictions_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("hostile.pcap");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&cap).unwrap());
    gen::write_hostile(&mut f, 3, 30_000).unwrap();
    drop(f);
    // Small tables so that the flood overflows every one of them.
    let cfg = dir.path().join("small.toml");
    std::fs::write(
        &cfg,
        "[limits]\ndialogs = 500\nmedia_flows = 500\nregistrations = 200\nfragments = 64\ntcp_streams = 64\ntcp_total_bytes = 65536\n",
    )
    .unwrap();
    let objs = ndjson(&analyze(
        &cap,
        &["--format", "ndjson", "--config", cfg.to_str().unwrap()],
    ));
    let summary = objs.last().unwrap();
    assert_eq!(summary["type"], "summary");
    let stats = &summary["stats"];
    assert_eq!(stats["packets"], 30_000);
    for key in [
        "dialogs",
        "media_flows",
        "registrations",
        "fragments",
        "tcp_streams",
    ] {
        assert!(
            stats["evictions"][key].as_u64().unwrap_or(0) > 0,
            "no `{key}` eviction counted: {}",
            stats["evictions"]
        );
    }
    for key in ["link", "vlan", "ipv4", "udp", "tcp", "depth"] {
        assert!(
            stats["decode_errors"][key].as_u64().unwrap_or(0) > 0,
            "no `{key}` decode error counted: {}",
            stats["decode_errors"]
        );
    }
    assert!(
        stats["decode_errors"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("sip.")),
        "no SIP parse error counted: {}",
        stats["decode_errors"]
    );
    let calls = objs.iter().filter(|o| o["type"] == "call").count();
    assert!(calls > 1000, "{calls} call records");
    // The flood is INVITEs the lines never took part in: nobody is flagged for it.
    for l in objs.iter().filter(|o| o["type"] == "line") {
        assert!(
            l["verdict"].is_null() || l["verdict"] == "normal",
            "flooded line flagged: {l}"
        );
    }
    // At default caps too, and in the other formats.
    for fmt in ["json", "text"] {
        let out = analyze(&cap, &["--format", fmt]);
        assert!(!out.is_empty());
    }
}

/// The records are written on another thread than the engine's: a writer that fails (a full
/// disk) still ends the run at once with the error, in every format, and no output is taken
/// for a complete one.
#[test]
fn a_failed_record_write_ends_the_run_with_its_error() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full on this system");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let capture = dir.path().join("hostile.pcap");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&capture).expect("create"));
    gen::write_hostile(&mut f, 3, 20_000).expect("write capture");
    drop(f);
    for (args, stdout_full) in [
        (vec!["--format", "ndjson"], true),
        (vec!["--format", "json", "--records", "/dev/full"], false),
        (vec!["--format", "text", "--records", "/dev/full"], false),
    ] {
        let stdout = if stdout_full {
            std::fs::File::create("/dev/full").map(std::process::Stdio::from)
        } else {
            Ok(std::process::Stdio::null())
        }
        .expect("open /dev/full");
        let out = Command::new(env!("CARGO_BIN_EXE_simboxd"))
            .arg("analyze")
            .args(&args)
            .arg("--quiet")
            .arg(&capture)
            .stdout(stdout)
            .output()
            .expect("run simboxd");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("writing records") && err.contains("No space left"),
            "{args:?}: {err}"
        );
    }
}
