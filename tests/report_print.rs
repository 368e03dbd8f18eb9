//! The report as a court will see it: printed to PDF by headless Chromium, read back with
//! `pdftotext` (poppler-utils): every call row, the provenance fields and the method section are
//! in the printed text; no secret of the configuration given to `analyze` is anywhere in the
//! report; the report's SHA-256 sidecar checks with `sha256sum -c`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(paths: &[&'static str]) -> Option<&'static str> {
    paths.iter().copied().find(|p| Path::new(p).exists())
}

/// Present, or skipped with a message (a failure under CI, where setup.sh installs it).
fn required(name: &str, found: Option<&'static str>) -> Option<&'static str> {
    if found.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{name} is required under CI (scripts/setup.sh installs it)"
        );
        eprintln!("SKIP: {name} not installed");
    }
    found
}

/// Secrets a real deployment's config holds; none may reach the report.
const SECRETS: [&str; 5] = [
    "webhook-token-SECRET",
    "hooks.example.invalid",
    "bearer-SECRET-42",
    "syslog-secret.example.invalid",
    "api-token-SECRET-0123456789",
];

fn secret_config(dir: &Path) -> PathBuf {
    let p = dir.join("site.toml");
    std::fs::write(
        &p,
        "[network]\ndomestic = [\"198.18.0.0/15\"]\n\n\
         [http]\ntoken = \"api-token-SECRET-0123456789\"\n\n\
         [syslog]\ntargets = [\"tls://syslog-secret.example.invalid:6514\"]\n\n\
         [webhook]\nurl = \"https://hooks.example.invalid/simboxd?token=webhook-token-SECRET\"\n\
         auth_header = \"Authorization: Bearer bearer-SECRET-42\"\n",
    )
    .expect("write config");
    p
}

#[test]
fn printed_report_keeps_every_call_row_and_no_secret() {
    let Some(chromium) = required(
        "chromium",
        tool(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]),
    ) else {
        return;
    };
    let Some(pdftotext) = required("pdftotext", tool(&["/usr/bin/pdftotext"])) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = secret_config(dir.path());
    let report = dir.path().join("case report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .arg("analyze")
        .arg(root().join("captures/sample-site.pcap"))
        .args(["--format", "json", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--report")
        .arg(&report)
        .args([
            "--case",
            "CASE-2026-0042",
            "--examiner",
            "Officer Jane Roe",
            "--timezone",
            "Asia/Manila",
        ])
        .output()
        .expect("run simboxd");
    assert!(
        out.status.success(),
        "analyze failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let html = std::fs::read_to_string(&report).expect("report");

    // The sidecar holds the report's hash in sha256sum format and checks.
    let side = dir.path().join("case report.html.sha256");
    let side_text = std::fs::read_to_string(&side).expect("sidecar written");
    assert!(
        side_text.ends_with("  case report.html\n"),
        "sha256sum format: {side_text:?}"
    );
    let check = Command::new("sha256sum")
        .args(["-c", "case report.html.sha256"])
        .current_dir(dir.path())
        .output()
        .expect("sha256sum");
    assert!(
        check.status.success(),
        "sha256sum -c: {}",
        String::from_utf8_lossy(&check.stdout)
    );

    // Print it as a reader would.
    let pdf = dir.path().join("report.pdf");
    let profile = tempfile::tempdir().expect("profile");
    let st = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", report.display()))
        .output()
        .expect("run chromium");
    assert!(st.status.success(), "print-to-pdf failed");
    let text = Command::new(pdftotext)
        .arg(&pdf)
        .arg("-")
        .output()
        .expect("pdftotext");
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout).to_string();

    // Every call row is in print: its UTC start (milliseconds) appears once per call.
    let calls = json["calls"].as_array().expect("calls");
    assert!(calls.len() >= 20, "the sample has {} calls", calls.len());
    for c in calls {
        let start = c["start"].as_str().expect("start");
        let t = simboxd_core::model::Timestamp::parse_rfc3339(start).expect("rfc3339");
        let shown = simboxd::report::utc_short(t);
        assert!(
            text.contains(&shown),
            "call row starting {shown} not in the printed report"
        );
    }
    // Charts survive printing (their axis titles are text in the PDF).
    assert!(
        text.contains("calls in progress"),
        "concurrency chart printed"
    );
    assert!(text.contains("channel row"), "call timeline printed");
    // Provenance and method are printed.
    for want in [
        "CASE-2026-0042",
        "Officer Jane Roe",
        json["capture"]["sha256"].as_str().expect("sha"),
        "Method and limitations",
        "Calls come in from abroad",
        "Asia/Manila",
        "sample-site.pcap",
    ] {
        assert!(
            text.contains(want),
            "{want:?} missing from the printed report"
        );
    }
    let commit = html
        .split("(commit ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("build commit in the report");
    assert!(
        commit == "unknown" || commit.trim_end_matches("-dirty").len() == 40,
        "commit {commit:?}"
    );
    assert!(html.contains("--examiner"), "command line in provenance");
    // The local zone is shown beside UTC (Manila is UTC+8: 09:00 UTC is 17:00 local).
    assert!(
        html.contains("2026-01-05 17:00:00.072"),
        "local first-packet time"
    );
    // The configuration is pretty-printed (one key per line), with only analysis's sections.
    assert!(html.contains("[detection]\n"), "pretty TOML");
    assert!(!html.contains("[webhook]") && !html.contains("[syslog]") && !html.contains("[http]"));
    for s in SECRETS {
        assert!(!html.contains(s), "secret {s:?} in the report HTML");
        assert!(!text.contains(s), "secret {s:?} in the printed report");
    }
    // No collapsed sections that print would hide.
    assert!(
        !html.contains("<details"),
        "collapsed section in the report"
    );
}
