//! The field-officer report and the evidence export, end to end through the binary, on the
//! simulated sample capture shipped in `captures/` (gateway and normal lines).
//! The report is rendered in headless Chromium: it must load without console messages, show its
//! charts, and leave a screenshot in `target/report-screenshot.png` (not in git).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample() -> PathBuf {
    root().join("captures/sample-site.pcap")
}

fn domestic_args() -> Vec<String> {
    // The simulator's labels name the domestic prefixes it used.
    let labels: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("captures/sample-site.labels.json")).expect("labels"),
    )
    .expect("labels JSON");
    let mut args = Vec::new();
    for n in labels["network"]["domestic"]
        .as_array()
        .expect("domestic list")
    {
        args.push("--domestic-net".to_string());
        args.push(n.as_str().expect("cidr").to_string());
    }
    args
}

fn analyze(extra: &[&str], out_dir: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .arg("analyze")
        .arg(sample())
        .args(["--format", "json", "--quiet"])
        .args(domestic_args())
        .args(extra)
        .current_dir(out_dir)
        .output()
        .expect("run simboxd");
    assert!(
        out.status.success(),
        "analyze failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

fn headless(args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile dir");
    Command::new(chromium().expect("chromium"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("run chromium")
}

#[test]
fn report_renders_in_chromium_without_console_errors() {
    if chromium().is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "chromium is required under CI (scripts/setup.sh installs it)"
        );
        eprintln!("SKIP: chromium not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let report = dir.path().join("report.html");
    let json = analyze(
        &["--report", report.to_str().expect("utf-8 path")],
        dir.path(),
    );
    let html = std::fs::read_to_string(&report).expect("report written");
    assert!(html.len() < 5 << 20, "report is {} bytes", html.len());
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "report must not load anything"
    );
    // The verdict section names every gateway line the JSON flagged.
    let lines = json["lines"].as_array().expect("lines");
    let gateways: Vec<&str> = lines
        .iter()
        .filter(|l| l["verdict"] == "gateway")
        .filter_map(|l| l["line"].as_str())
        .collect();
    assert!(!gateways.is_empty(), "the sample has gateway lines");
    for g in &gateways {
        assert!(
            html.contains(&format!("<b>Line {g}</b>")),
            "verdict for {g} in report"
        );
    }
    assert!(html.contains(json["capture"]["sha256"].as_str().expect("sha")));

    let url = format!("file://{}", report.display());
    let dom = headless(&["--dump-dom".into(), url.clone()]);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let dumped = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dumped.matches("<svg").count() >= 4,
        "charts present after load: {} svg",
        dumped.matches("<svg").count()
    );
    assert!(dumped.contains("Calls in progress on line"));
    assert!(dumped.contains("Call timeline of line"));
    assert!(dumped.contains("Calls started per"));
    assert!(dumped.contains("Talk time of the"));
    assert!(dumped.contains("Calls started by hour of day"));

    let shot = root().join("target/report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let s = headless(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,2400".into(),
        url,
    ]);
    assert!(s.status.success(), "screenshot run failed");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot {} bytes",
        png.len()
    );
}

#[test]
fn evidence_pcaps_are_valid_and_match_the_manifest() {
    let dir = tempfile::tempdir().expect("tmp");
    let ev = dir.path().join("evidence");
    let json = analyze(
        &["--evidence", ev.to_str().expect("utf-8 path")],
        dir.path(),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ev.join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    assert_eq!(manifest["source_sha256"], json["capture"]["sha256"]);
    let files = manifest["files"].as_array().expect("files");
    let flagged = json["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["verdict"] == "gateway" || l["verdict"] == "suspect")
        .count();
    assert_eq!(files.len(), flagged, "one evidence file per flagged line");
    assert!(flagged > 0);
    for f in files {
        let path = ev.join(f["file"].as_str().expect("file"));
        assert_eq!(
            simboxd::analyze::sha256_file(&path).expect("hash"),
            f["sha256"].as_str().expect("sha256"),
            "{}",
            path.display()
        );
        assert!(f["sip_packets"].as_u64().expect("sip") > 0, "{f}");
        // tshark reads it and sees SIP from/to the line.
        let line = f["line"].as_str().expect("line");
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args([
                "-Y",
                "sip",
                "-T",
                "fields",
                "-e",
                "ip.addr",
                "-e",
                "ipv6.addr",
            ])
            .output()
            .expect("tshark");
        assert!(
            out.status.success(),
            "tshark cannot read {}",
            path.display()
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.lines().count() as u64 >= 1);
        assert!(
            text.lines().all(|l| l.contains(line)),
            "{path:?} has packets of other lines"
        );
    }
}

/// An IP-fragmented INVITE is exported whole: every fragment, so tshark reassembles the message
/// from the evidence pcap alone.
#[test]
fn evidence_keeps_every_fragment_of_a_fragmented_invite() {
    let dir = tempfile::tempdir().expect("tmp");
    let ev = dir.path().join("ev");
    // In the negatives sample the call centre (100.64.1.15) sends one INVITE in two fragments.
    let sample = root().join("captures/sample-negatives.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .arg("analyze")
        .arg(&sample)
        .args([
            "--format",
            "json",
            "--quiet",
            "--evidence-line",
            "100.64.1.15",
            "--evidence",
        ])
        .arg(&ev)
        .output()
        .expect("run simboxd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pcap = ev.join("line-100.64.1.15.pcap");
    let count = |filter: &str| -> usize {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args(["-Y", filter])
            .output()
            .expect("tshark");
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    let fragments = count("ip.flags.mf == 1 || ip.frag_offset > 0");
    assert_eq!(fragments, 2, "both fragments of the INVITE");
    let in_source = {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(&sample)
            .args(["-Y", "ip.src == 100.64.1.15 && sip.Method == \"INVITE\""])
            .output()
            .expect("tshark");
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    assert_eq!(
        count("sip.Method == \"INVITE\""),
        in_source,
        "every INVITE of the line"
    );
}
