//! Evidence folders that cannot mislead: `analyze --evidence` refuses a folder that already holds
//! files, `--evidence-line` needs `--evidence`, a requested line without traffic is warned about
//! and recorded (no empty pcap), and the manifest records the run (creation time, command line,
//! build, capture and report hashes).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap")
}

fn analyze(args: &[&std::ffi::OsStr], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .arg("analyze")
        .arg(sample())
        .args([
            "--format",
            "json",
            "--quiet",
            "--domestic-net",
            "198.18.0.0/15",
        ])
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run simboxd")
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

#[test]
fn a_folder_with_files_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    let ev = dir.path().join("ev");
    std::fs::create_dir(&ev).expect("mkdir");
    std::fs::write(ev.join("line-100.64.1.10.pcap"), b"from an earlier run").expect("old file");
    let out = analyze(&[os("--evidence"), ev.as_os_str()], dir.path());
    assert!(
        !out.status.success(),
        "a non-empty evidence folder must be refused"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not empty"), "clear error: {err}");
    assert_eq!(
        std::fs::read(ev.join("line-100.64.1.10.pcap")).expect("old file kept"),
        b"from an earlier run"
    );
    assert!(!ev.join("manifest.json").exists(), "nothing written");
    // An existing empty folder is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let ok = analyze(&[os("--evidence"), empty.as_os_str()], dir.path());
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(empty.join("manifest.json").exists());
}

#[test]
fn evidence_line_without_evidence_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = analyze(&[os("--evidence-line"), os("100.64.1.12")], dir.path());
    assert!(
        !out.status.success(),
        "--evidence-line alone must be refused"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--evidence"),
        "names the missing option: {err}"
    );
    assert!(out.stdout.is_empty(), "no analysis printed");
}

#[test]
fn a_requested_line_without_traffic_is_warned_and_recorded_and_the_run_is_in_the_manifest() {
    let dir = tempfile::tempdir().expect("tmp");
    let ev = dir.path().join("ev");
    let report = dir.path().join("r.html");
    let out = analyze(
        &[
            os("--evidence"),
            ev.as_os_str(),
            os("--evidence-line"),
            os("10.250.0.77"),
            os("--evidence-line"),
            os("100.64.1.12"),
            os("--report"),
            report.as_os_str(),
            os("--case"),
            os("C-17"),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("10.250.0.77") && err.contains("no packet"),
        "warning on stderr: {err}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ev.join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    assert_eq!(
        m["lines_without_traffic"],
        serde_json::json!(["10.250.0.77"])
    );
    assert!(!ev.join("line-10.250.0.77.pcap").exists(), "no empty pcap");
    // The requested line with traffic (the scrambled-signalling gateway) has its file.
    let files = m["files"].as_array().expect("files");
    assert!(files.iter().any(|f| f["line"] == "100.64.1.12"), "{m}");
    // Every file in the folder is listed in the manifest, and nothing else is there.
    let mut on_disk: Vec<String> = std::fs::read_dir(&ev)
        .expect("read ev")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "manifest.json")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = files
        .iter()
        .map(|f| f["file"].as_str().expect("file").to_string())
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    // The run's facts.
    assert_eq!(m["source_sha256"], json["capture"]["sha256"]);
    let created = m["created"].as_str().expect("created");
    assert!(
        simboxd_core::model::Timestamp::parse_rfc3339(created).is_some(),
        "{created}"
    );
    let cmd: Vec<&str> = m["command_line"]
        .as_array()
        .expect("command line")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        cmd.contains(&"analyze") && cmd.contains(&"--evidence-line"),
        "{cmd:?}"
    );
    assert_eq!(m["case"], "C-17");
    assert!(
        m["build"].as_str().expect("build").contains("(commit "),
        "{}",
        m["build"]
    );
    assert_eq!(
        m["report"]["sha256"].as_str().expect("report hash"),
        simboxd::analyze::sha256_file(&report).expect("hash report")
    );
}
