//! `simboxd analyze` over every libpcap-readable capture of the public corpus: no panic, no
//! error exit, valid JSON, and as many INVITE dialogs as tshark finds (figures recorded once in
//! `tests/data/invite_dialogs.tsv`, with the command that produced them).

use std::path::Path;
use std::process::Command;

fn expected() -> Vec<(String, u64)> {
    let text = include_str!("data/invite_dialogs.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (p, n) = l.split_once('\t').expect("tsv row has a tab");
            (p.to_string(), n.trim().parse().expect("count is a number"))
        })
        .collect()
}

fn is_capture(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    if f.read_exact(&mut magic).is_err() {
        return false;
    }
    matches!(
        magic,
        [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x0a, 0x0d, 0x0d, 0x0a]
    )
}

#[test]
fn every_capture_is_listed_with_its_tshark_count() {
    let Some(dir) = simboxd::corpus::corpus_dir() else {
        return;
    };
    let listed: std::collections::BTreeSet<String> =
        expected().into_iter().map(|(p, _)| p).collect();
    for f in simboxd::corpus::files_under(&dir) {
        if is_capture(&f) {
            let rel = f.strip_prefix(&dir).unwrap().to_string_lossy().to_string();
            assert!(
                listed.contains(&rel),
                "{rel} is a capture but has no expected count in tests/data/invite_dialogs.tsv"
            );
        }
    }
}

#[test]
fn analyze_matches_tshark_invite_dialogs_on_every_capture() {
    let Some(dir) = simboxd::corpus::corpus_dir() else {
        return;
    };
    let exe = env!("CARGO_BIN_EXE_simboxd");
    let mut mismatches = Vec::new();
    let mut total = 0u64;
    for (rel, want) in expected() {
        let path = dir.join(&rel);
        let out = Command::new(exe)
            .args(["analyze", "--format", "json", "--quiet"])
            .arg(&path)
            .output()
            .expect("run simboxd");
        assert!(
            out.status.success(),
            "{rel}: exit {:?}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{rel}: output is not JSON: {e}"));
        for key in ["capture", "stats", "calls", "lines"] {
            assert!(v.get(key).is_some(), "{rel}: JSON lacks `{key}`");
        }
        assert_eq!(
            v["capture"]["sha256"].as_str().map(str::len),
            Some(64),
            "{rel}: sha256"
        );
        let got = v["stats"]["calls"].as_u64().expect("stats.calls");
        total += got;
        if got != want {
            mismatches.push(format!("{rel}: simboxd {got}, tshark {want}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "INVITE dialog counts differ from tshark:\n{}",
        mismatches.join("\n")
    );
    assert!(total > 1000, "total INVITE dialogs {total}");
}
