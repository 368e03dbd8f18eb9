//! The `simboxd simulate` command line: flags, default labels path, overrides, bad scenarios.

use std::process::Command;

fn simboxd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_simboxd"))
}

#[test]
fn writes_pcap_and_default_labels_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("neg.pcap");
    let scen = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/scenario-negatives.toml"
    );
    let st = simboxd()
        .args([
            "simulate",
            "--scenario",
            scen,
            "--seed",
            "5",
            "--duration",
            "30s",
        ])
        .args(["--start", "2026-02-02T12:00:00Z", "--scale", "0.5", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let pcap = std::fs::read(&out).unwrap();
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    let labels: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("neg.labels.json")).unwrap())
            .unwrap();
    assert_eq!(labels["seed"], 5);
    assert_eq!(labels["duration_secs"], 30);
    assert_eq!(labels["scale"], 0.5);
    assert_eq!(labels["start"], "2026-02-02T12:00:00.000000Z");
    assert_eq!(labels["end"], "2026-02-02T12:00:30.000000Z");
    // Scale 0.5 of 4 households gives 2; groups of 1 stay at 1.
    let lines = labels["lines"].as_object().unwrap();
    let households = lines.values().filter(|l| l["kind"] == "household").count();
    assert_eq!(households, 2);
    assert!(lines.values().all(|l| l["label"] == "normal"));
    // First packet at or after the start time.
    let secs = u32::from_le_bytes(pcap[24..28].try_into().unwrap());
    assert!(i64::from(secs) >= 1_770_033_600, "{secs}");
}

#[test]
fn explicit_labels_path_and_builtin_mix() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mix.pcap");
    let lab = dir.path().join("truth.json");
    let st = simboxd()
        .args(["simulate", "--duration", "5s", "--out"])
        .arg(&out)
        .arg("--labels")
        .arg(&lab)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let labels: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lab).unwrap()).unwrap();
    let kinds: std::collections::BTreeSet<&str> = labels["lines"]
        .as_object()
        .unwrap()
        .values()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.len(),
        11,
        "the built-in mix has every population: {kinds:?}"
    );
    assert_eq!(labels["start"], "2026-01-05T08:00:00.000000Z");
}

#[test]
fn bad_scenario_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let scen = dir.path().join("bad.toml");
    std::fs::write(
        &scen,
        "duration = \"1m\"\n[[population]]\nkind = \"gateway\"\nchanels = 4\n",
    )
    .unwrap();
    let st = simboxd()
        .args(["simulate", "--out"])
        .arg(dir.path().join("x.pcap"))
        .arg("--scenario")
        .arg(&scen)
        .output()
        .unwrap();
    assert!(!st.status.success());
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(
        err.contains("bad.toml:4:1:") && err.contains("chanels"),
        "{err}"
    );
    let st = simboxd()
        .args([
            "simulate",
            "--duration",
            "ten minutes",
            "--out",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert!(!st.status.success());
}

#[test]
fn noise_scenario_through_simulate_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("noise.pcap");
    let scen = concat!(env!("CARGO_MANIFEST_DIR"), "/config/scenario-noise.toml");
    let st = simboxd()
        .args(["simulate", "--scenario", scen, "--duration", "90s", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(st.status.success(), "{err}");
    assert!(err.contains("attacker addresses"), "{err}");
    let labels: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("noise.labels.json")).unwrap(),
    )
    .unwrap();
    let kinds: std::collections::BTreeSet<&str> = labels["threats"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "enumeration",
            "flood",
            "framing",
            "scan",
            "toll_fraud_attempt"
        ]
        .into_iter()
        .collect()
    );
    // eval reads the capture back with its labels and counts the compromised PBX apart.
    let ev = simboxd()
        .args(["eval", "--format", "json", "--pcap"])
        .arg(&out)
        .arg("--labels")
        .arg(dir.path().join("noise.labels.json"))
        .output()
        .unwrap();
    assert!(
        ev.status.success(),
        "{}",
        String::from_utf8_lossy(&ev.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&ev.stdout).unwrap();
    assert_eq!(r["compromised_pbx_lines"], 1);
    assert_eq!(r["threats"].as_array().unwrap().len(), 5);
    // The engine's findings are scored against the labels.
    assert!(r["threats"][0]["findings"].is_u64(), "{}", r["threats"]);
}
