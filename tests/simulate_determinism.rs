//! `simulate`: same seed -> same bytes; different seed -> different traffic; the labels file
//! keeps its contract; the shipped sample is what its documented command produces.

use simboxd_sim::{generate, Labels, Scenario};

fn site_scenario() -> Scenario {
    let text = include_str!("../config/scenario-site.toml");
    Scenario::from_toml(text, "config/scenario-site.toml").expect("scenario parses")
}

fn run(sc: &Scenario, seed: u64) -> (Vec<u8>, Labels) {
    let mut out = Vec::new();
    let labels = generate(sc, seed, &mut out).expect("generate");
    (out, labels)
}

#[test]
fn same_seed_gives_identical_bytes_and_labels() {
    let mut sc = site_scenario();
    sc.duration_secs = 40;
    let (a, la) = run(&sc, 7);
    let (b, lb) = run(&sc, 7);
    assert!(a.len() > 100_000, "a real capture, got {} bytes", a.len());
    assert!(a == b, "same seed must give the same bytes");
    assert_eq!(la, lb);
    assert_eq!(la.packets, lb.packets);
}

#[test]
fn different_seed_gives_different_traffic() {
    let mut sc = site_scenario();
    sc.duration_secs = 40;
    let (a, la) = run(&sc, 7);
    let (b, lb) = run(&sc, 8);
    assert!(a != b);
    // Same lines (addresses and kinds come from the scenario), different draws.
    assert_eq!(
        la.lines.keys().collect::<Vec<_>>(),
        lb.lines.keys().collect::<Vec<_>>()
    );
    let pa: Vec<_> = la.lines.values().map(|l| l.params.clone()).collect();
    let pb: Vec<_> = lb.lines.values().map(|l| l.params.clone()).collect();
    assert_ne!(pa, pb);
}

#[test]
fn one_line_does_not_change_when_another_population_is_added() {
    // Per-line sub-seeds: adding a population after the others leaves earlier lines' draws alone.
    let sc = site_scenario();
    let mut more = sc.clone();
    more.populations.push(more.populations[0].clone());
    let (_, la) = run(
        &Scenario {
            duration_secs: 10,
            ..sc
        },
        3,
    );
    let (_, lb) = run(
        &Scenario {
            duration_secs: 10,
            ..more
        },
        3,
    );
    for (addr, l) in &la.lines {
        assert_eq!(Some(l), lb.lines.get(addr), "{addr}");
    }
    assert_eq!(lb.lines.len(), la.lines.len() + 1);
}

#[test]
fn labels_json_has_the_contract_names() {
    let mut sc = site_scenario();
    sc.duration_secs = 20;
    let (_, labels) = run(&sc, 1);
    let v = serde_json::to_value(&labels).unwrap();
    for key in [
        "seed",
        "start",
        "end",
        "duration_secs",
        "scale",
        "packets",
        "network",
        "lines",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["start"], "2026-01-05T09:00:00.000000Z");
    assert_eq!(v["end"], "2026-01-05T09:00:20.000000Z");
    assert_eq!(
        v["network"]["domestic"],
        serde_json::json!(["198.18.0.0/15"])
    );
    let lines = v["lines"].as_object().unwrap();
    let kinds: std::collections::BTreeSet<&str> = lines
        .values()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains("gateway") && kinds.contains("gateway-scrambled"));
    assert!(kinds.contains("household") && kinds.contains("office-pbx"));
    for l in lines.values() {
        let label = l["label"].as_str().unwrap();
        let kind = l["kind"].as_str().unwrap();
        assert_eq!(label == "gateway", kind.starts_with("gateway"), "{kind}");
        assert!(l["params"].is_object());
    }
    let gw = &lines["100.64.1.10"];
    assert_eq!(gw["site"], "site-1");
    assert_eq!(gw["params"]["channels"], 4);
    // Round trip through serde.
    let back: Labels = serde_json::from_value(v).unwrap();
    assert_eq!(back, labels);
}

#[test]
fn shipped_samples_match_their_documented_commands() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["site", "negatives"] {
        let text =
            std::fs::read_to_string(root.join(format!("config/scenario-{name}.toml"))).unwrap();
        let sc = Scenario::from_toml(&text, name).unwrap();
        let pcap = root.join(format!("captures/sample-{name}.pcap"));
        let shipped = std::fs::read(&pcap).expect("shipped sample");
        assert!(
            shipped.len() < 5 << 20,
            "samples stay under 5 MB: {}",
            pcap.display()
        );
        let (fresh, labels) = run(&sc, 1);
        assert!(
            fresh == shipped,
            "regenerate {} with the command in captures/README.md",
            pcap.display()
        );
        let text =
            std::fs::read_to_string(root.join(format!("captures/sample-{name}.labels.json")))
                .unwrap();
        let shipped_labels: Labels = serde_json::from_str(&text).unwrap();
        assert_eq!(shipped_labels, labels);
    }
}

#[test]
fn builtin_mix_is_the_shipped_builtin_scenario_file() {
    let text = include_str!("../config/scenario-builtin.toml");
    let file = Scenario::from_toml(text, "builtin").unwrap();
    let b = Scenario::builtin();
    assert_eq!(b.populations.len(), file.populations.len());
    assert_eq!(b.duration_secs, 1800);
    assert!(b.populations.len() >= 11);
}
