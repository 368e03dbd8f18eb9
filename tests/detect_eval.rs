//! Detection end to end on generated captures: the committed sample capture through the file
//! reader and the pcap stream reader, and a small generated population through `eval`'s pipe.

use simboxd::config::Config;
use simboxd::eval::{self, LineOutcome};
use simboxd_core::model::VerdictLevel;
use simboxd_sim::{Labels, Scenario};
use std::path::PathBuf;

mod simulate_support;

fn sample() -> (PathBuf, Labels) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures");
    let labels: Labels = serde_json::from_str(
        &std::fs::read_to_string(dir.join("sample-site.labels.json")).unwrap(),
    )
    .unwrap();
    (dir.join("sample-site.pcap"), labels)
}

fn cfg() -> Config {
    Config {
        network: eval::sim_network(),
        ..Default::default()
    }
}

/// Every gateway line `gateway`, every other line (compromised PBXs included) `normal`.
fn assert_gateways_only(seed: u64, out: &[LineOutcome]) {
    for o in out {
        let want = if o.label == "gateway" {
            VerdictLevel::Gateway
        } else {
            VerdictLevel::Normal
        };
        assert_eq!(o.verdict, want, "seed {seed}: {o:?}");
    }
}

fn by_line<'a>(o: &'a [LineOutcome], line: &str) -> &'a LineOutcome {
    o.iter().find(|x| x.line == line).unwrap()
}

#[test]
fn sample_site_sip_gateways_flagged_within_a_minute_and_normals_stay_normal() {
    let (pcap, labels) = sample();
    let table = eval::detect_capture(&pcap, &cfg()).unwrap();
    let out = eval::score_seed(1, &labels, &table);
    // The 4-channel box took part in enough calls (voice both ways, early media) in 75 s to be
    // a gateway. The 2-channel box was offered 7 calls and took part in only 4 (early media,
    // none answered): on the line's own share that is `suspect` so far, not yet `gateway`.
    for (line, level) in [
        ("100.64.1.10", VerdictLevel::Gateway),
        ("100.64.1.11", VerdictLevel::Suspect),
    ] {
        let o = by_line(&out, line);
        assert!(o.verdict >= level, "{o:?}");
        if level == VerdictLevel::Gateway {
            assert!(o.ttd_secs.unwrap() <= 75.0, "{o:?}");
        }
        assert!(
            o.reasons.iter().any(|r| r.starts_with("distinct_called")),
            "{o:?}"
        );
        assert!(
            o.reasons
                .iter()
                .any(|r| r.contains("the line took part in")),
            "reasons state the line's own share: {o:?}"
        );
    }
    for o in out.iter().filter(|o| o.label == "normal") {
        assert_eq!(o.verdict, VerdictLevel::Normal, "{o:?}");
    }
}

#[test]
fn stream_reader_matches_libpcap_reader() {
    let (pcap, _) = sample();
    let a = eval::detect_capture(&pcap, &cfg()).unwrap().verdicts();
    let f = std::fs::File::open(&pcap).unwrap();
    let b = eval::detect_pcap_stream(f, &cfg()).unwrap().verdicts();
    assert_eq!(a, b);
    assert!(a.len() >= 8);
}

#[test]
fn stream_reader_rejects_garbage_without_panicking() {
    let junk = b"not a pcap file at all, just words".to_vec();
    assert!(eval::detect_pcap_stream(&junk[..], &cfg()).is_err());
    // A valid header followed by a truncated record.
    let mut v = vec![
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
    ];
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 100, 0, 0, 0, 1, 2, 3]);
    assert!(eval::detect_pcap_stream(&v[..], &cfg()).is_err());
    // A record claiming a huge length is refused, not allocated.
    let mut v2 = v[..24].to_vec();
    v2.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
    assert!(eval::detect_pcap_stream(&v2[..], &cfg()).is_err());
}

#[test]
fn generated_population_through_the_pipe() {
    let sc = Scenario::from_toml(
        r#"
duration = "4m"
[[population]]
kind = "gateway"
channels = 8
[[population]]
kind = "gateway-opaque"
channels = 8
[[population]]
kind = "household"
count = 3
[[population]]
kind = "app-calls"
count = 2
[[population]]
kind = "office-pbx"
"#,
        "test.toml",
    )
    .unwrap();
    let (labels, table) = eval::simulate_and_detect(&sc, 11, &cfg()).unwrap();
    let out = eval::score_seed(11, &labels, &table);
    let report = eval::summarize(&[11], &out, true);
    let text = {
        let mut b = Vec::new();
        eval::write_text(&mut b, &report).unwrap();
        String::from_utf8(b).unwrap()
    };
    assert_eq!(report.false_positives, 0, "{text}");
    let gw: Vec<_> = out.iter().filter(|o| o.kind == "gateway").collect();
    assert!(
        gw.iter().all(|o| o.verdict == VerdictLevel::Gateway),
        "{text}"
    );
    let sip_ttd = gw[0].ttd_secs.unwrap();
    assert!(sip_ttd <= 120.0, "{text}");
    let opaque = out.iter().find(|o| o.kind == "gateway-opaque").unwrap();
    assert!(opaque.verdict >= VerdictLevel::Suspect, "{text}");
    assert!(
        opaque.reasons.iter().any(|r| r.starts_with("opaque_media")),
        "{text}"
    );
}

#[test]
fn analyze_text_lists_flagged_lines_first_with_reasons() {
    let (pcap, _) = sample();
    let a = simboxd::analyze::analyze_file(&pcap, &cfg(), false).unwrap();
    let flagged = a
        .lines
        .iter()
        .filter(|l| l.verdict >= Some(VerdictLevel::Suspect))
        .count();
    assert!(flagged >= 2);
    assert!(a
        .lines
        .iter()
        .any(|l| l.verdict == Some(VerdictLevel::Gateway)));
    let mut buf = Vec::new();
    simboxd::analyze::write_text(&mut buf, &a).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let section: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("lines ("))
        .skip(1)
        .collect();
    assert!(section[0].contains("GATEWAY score"), "{text}");
    assert!(
        section[1].trim_start().starts_with("foreign_inbound")
            || section[1].contains("distinct_called"),
        "{text}"
    );
    // The first addresses listed are the gateway lines, each followed by its reasons.
    let mut seen: Vec<&str> = Vec::new();
    for l in &section {
        if let Some(addr) = l
            .strip_prefix("  ")
            .and_then(|r| r.split_whitespace().next())
        {
            if !l.starts_with("      ") && !seen.contains(&addr) {
                seen.push(addr);
            }
        }
    }
    let gateways: Vec<String> = a
        .lines
        .iter()
        .filter(|l| l.verdict == Some(VerdictLevel::Gateway))
        .filter_map(|l| l.line.map(|ip| ip.to_string()))
        .collect();
    let gateway_count = gateways.len();
    for addr in &seen[..gateway_count] {
        assert!(
            gateways.iter().any(|g| g == addr),
            "{addr} listed before a gateway\n{text}"
        );
    }
}

#[test]
fn example_config_documents_the_detection_defaults() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/simboxd.toml");
    let c = Config::load(&p).unwrap();
    assert_eq!(
        c.detection,
        simboxd_core::detect::DetectionConfig::default()
    );
}

#[test]
fn eval_on_the_noise_scenario_counts_compromised_pbx_apart_and_lists_labelled_threats() {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/scenario-noise.toml"),
    )
    .unwrap();
    let mut sc = Scenario::from_toml(&text, "scenario-noise.toml").unwrap();
    sc.duration_secs = 100;
    let mut c = cfg();
    c.threats.home_calling_codes = vec![simboxd_sim::HOME_CALLING_CODE.to_string()];
    let (labels, table, found) = eval::simulate_and_detect_all(&sc, 17, &c).unwrap();
    let out = eval::score_seed(17, &labels, &table);
    let threats = eval::score_threats(&labels, eval::engine_threats(&found).as_deref());
    let report = eval::summarize_with_threats(&[17], &out, vec![threats], false);
    assert_eq!(report.compromised_pbx_lines, 1);
    let row = report
        .kinds
        .iter()
        .find(|k| k.label == "compromised-pbx")
        .expect("own row");
    assert_eq!((row.kind.as_str(), row.lines), ("compromised-pbx", 1));
    assert!(report
        .targets
        .iter()
        .any(|t| t.name == "no compromised PBX gateway"));
    // Attacked lines are normal lines of their own kinds.
    for kind in ["camera", "office-pbx", "household"] {
        assert!(
            report
                .kinds
                .iter()
                .any(|k| k.kind == kind && k.label == "normal"),
            "{kind}"
        );
    }
    // Every threat kind is labelled and scored against the engine's findings.
    assert_eq!(report.threats.len(), 5);
    for r in &report.threats {
        assert!(r.labelled_peers >= 1 && r.labelled_campaigns >= 1, "{r:?}");
        assert!(r.findings.is_some(), "{r:?}");
    }
    for kind in ["scan", "flood", "framing"] {
        let r = report.threats.iter().find(|r| r.kind == kind).unwrap();
        assert!(r.found_campaigns.unwrap_or(0) >= 1, "{kind} found: {r:?}");
    }
    let flood = report.threats.iter().find(|r| r.kind == "flood").unwrap();
    assert!(
        flood.labelled_peers > flood.labelled_campaigns,
        "forged sources"
    );
    let mut buf = Vec::new();
    eval::write_text(&mut buf, &report).unwrap();
    let text = String::from_utf8(buf).unwrap();
    assert!(text.contains("threats"), "{text}");
    assert!(text.contains("toll_fraud_attempt"), "{text}");
}

/// Shapes the noise scenario does not have: a flood from forged sources spread over a range
/// (each line gets a fraction of its rate), and expatriates whose provider abroad brings them
/// robocalls they answer briefly (short calls from a foreign peer, all for their own number).
const VARIANT: &str = r#"
duration = "8m"
[[population]]
kind = "gateway"
channels = 8
[[population]]
kind = "household"
name = "homes"
count = 6
[[population]]
kind = "expat-voip"
name = "expat"
count = 3
[[noise]]
kind = "invite-flood"
targets = ["homes"]
spoofed = true
rate = 240.0
burst = 8
after = "60s"
[[noise]]
kind = "robocall"
targets = ["expat"]
calls_per_hour = 60.0
answer_ratio = 0.9
"#;

#[test]
fn a_forged_flood_over_a_range_is_found_and_expatriates_called_on_their_own_number_stay_normal() {
    let sc = Scenario::from_toml(VARIANT, "variant.toml").unwrap();
    for seed in [3u64, 29] {
        let (labels, table, found) = eval::simulate_and_detect_all(&sc, seed, &cfg()).unwrap();
        let out = eval::score_seed(seed, &labels, &table);
        assert_gateways_only(seed, &out);
        // 240 INVITEs/s over six lines is 40/s at each: below one peer's flood rate, a flood
        // from many sources at every line it hit.
        let flooded: std::collections::BTreeSet<String> = found
            .iter()
            .filter(|t| t.sources_total > 0)
            .flat_map(|t| t.lines.iter().map(|l| l.line.to_string()))
            .collect();
        let homes: Vec<&String> = labels
            .lines
            .iter()
            .filter(|(_, l)| l.params["population"] == "homes")
            .map(|(a, _)| a)
            .collect();
        assert_eq!(homes.len(), 6);
        for h in homes {
            assert!(
                flooded.contains(h),
                "seed {seed}: {h} not flooded: {flooded:?}"
            );
        }
    }
}

/// Gateways, cameras that answer anything, a PBX that relays toll fraud and households; toll-fraud
/// dialers probe the cameras and the PBX, and a framer sends the cameras a gateway-shaped stream
/// (a new mobile number on every call, four at a time) and holds every call they answer: on a
/// SIP-only mirror only the ring time tells those answers from a relay's.
const CAMERAS: &str = r#"
duration = "20m"
[[population]]
kind = "gateway"
channels = 4
[[population]]
kind = "gateway"
channels = 8
registration = "trunk"
[[population]]
kind = "camera"
name = "cams"
count = 3
[[population]]
kind = "compromised-pbx"
name = "pbx"
[[population]]
kind = "household"
count = 3
[[noise]]
kind = "toll-fraud"
targets = ["cams", "pbx"]
count = 2
[[noise]]
kind = "framing"
targets = ["cams"]
channels = 4
"#;

#[test]
fn on_a_sip_only_mirror_gateways_stay_found_and_cameras_held_open_by_dialers_stay_normal() {
    let sc = Scenario::from_toml(CAMERAS, "cameras.toml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sip-only.pcap");
    let strict = cfg();
    let mut lax = cfg();
    lax.detection.sip_only_min_ring_secs = 0.0;
    let mut lax_flagged = 0;
    for seed in [5u64, 17] {
        let mut full = Vec::new();
        let labels = simboxd_sim::generate(&sc, seed, &mut full).unwrap();
        let cut = simulate_support::sip_only(&full);
        assert!(
            cut.len() * 3 < full.len(),
            "media dropped: {} of {}",
            cut.len(),
            full.len()
        );
        std::fs::write(&path, &cut).unwrap();
        let out = eval::score_seed(
            seed,
            &labels,
            &eval::detect_capture(&path, &strict).unwrap(),
        );
        assert_gateways_only(seed, &out);
        // Counting the cameras' instant answers as their own is what made them look like relays.
        let out = eval::score_seed(seed, &labels, &eval::detect_capture(&path, &lax).unwrap());
        lax_flagged += out
            .iter()
            .filter(|o| o.kind == "camera" && o.verdict > VerdictLevel::Normal)
            .count();
    }
    assert!(lax_flagged > 0, "the test's capture exercises the rule");
}

/// "...; the line took part in N, M answered" of a line's reasons, when one states it.
fn share_in_reasons(l: &simboxd::analyze::LineEntry) -> Option<(u64, u64)> {
    l.reasons.iter().find_map(|r| {
        let rest = r.detail.split("; the line took part in ").nth(1)?;
        let (n, rest) = rest.split_once(", ")?;
        let (m, _) = rest.split_once(' ')?;
        Some((n.parse().ok()?, m.parse().ok()?))
    })
}

#[test]
fn on_a_sip_only_mirror_answers_counted_while_running_agree_with_the_lines_figures() {
    // 20 minutes of gateways and cameras: calls still run when the capture ends, and answers
    // count once they have lasted, before the calls end. The reasons (detection's counters),
    // the lines' figures from the records and the streaming tallies count the same calls.
    let sc = Scenario::from_toml(CAMERAS, "cameras.toml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sip-only.pcap");
    let mut full = Vec::new();
    simboxd_sim::generate(&sc, 5, &mut full).unwrap();
    std::fs::write(&path, simulate_support::sip_only(&full)).unwrap();
    let c = cfg();
    let a = simboxd::analyze::analyze_file(&path, &c, false).unwrap();
    let s = simboxd::analyze::analyze_streaming(std::slice::from_ref(&path), &c, false, &mut [], 0)
        .unwrap();
    let mut stated = 0;
    for l in &a.lines {
        let taken = (l.inbound_calls_taken, l.inbound_calls_taken_answered);
        if let Some(share) = share_in_reasons(l) {
            assert_eq!(share, taken, "{:?}", l.line);
            stated += 1;
        }
        let streamed = s.analysis.lines.iter().find(|x| x.line == l.line).unwrap();
        assert_eq!(
            (
                streamed.inbound_calls_taken,
                streamed.inbound_calls_taken_answered
            ),
            taken,
            "{:?}",
            l.line
        );
    }
    assert!(stated >= 2, "the gateways' reasons state their share");
    assert!(
        a.lines.iter().any(|l| l.open_calls_at_end > 0),
        "calls run at the end"
    );
}
