//! `analyze --format json` spools its records to disk (issue 10, point 3: memory must not grow
//! with the calls whatever the format): the document it writes is byte for byte the one the
//! held `Analysis` gives (`serde_json::to_writer_pretty`), on the samples, a simulated capture,
//! a hostile one (several sorted runs of calls merged) and with `[privacy]` on.

#[path = "../benches/hostile/gen.rs"]
mod gen;

use simboxd::analyze::{analyze_file_with, analyze_spooled, spool::CHUNK_CALLS};
use simboxd::config::Config;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

fn held(path: &Path, cfg: &Config) -> Vec<u8> {
    let a = analyze_file_with(&[path.to_path_buf()], cfg, false, &mut []).expect("analyze");
    let mut out = Vec::new();
    serde_json::to_writer_pretty(&mut out, &a).unwrap();
    out
}

fn spooled(path: &Path, cfg: &Config) -> Vec<u8> {
    let (a, sp) = analyze_spooled(&[path.to_path_buf()], cfg, false, &mut []).expect("analyze");
    assert!(a.calls.is_empty() && a.registrations.is_empty() && a.media_flows.is_empty());
    let privacy = simboxd::privacy::Pseudonymizer::from_config(&cfg.privacy).unwrap();
    let mut out = Vec::new();
    sp.write_document(&mut out, &a, &privacy).unwrap();
    out
}

fn same(path: &Path, cfg: &Config) {
    let (h, s) = (held(path, cfg), spooled(path, cfg));
    if h != s {
        let at = h.iter().zip(&s).position(|(a, b)| a != b).unwrap_or(0);
        let lo = at.saturating_sub(300);
        panic!(
            "{}: documents differ at byte {at} (held {} bytes, spooled {}):\nheld:    {}\nspooled: {}",
            path.display(),
            h.len(),
            s.len(),
            String::from_utf8_lossy(&h[lo..(at + 300).min(h.len())]),
            String::from_utf8_lossy(&s[lo..(at + 300).min(s.len())]),
        );
    }
    // And it is a JSON document with the arrays filled.
    let v: serde_json::Value = serde_json::from_slice(&s).unwrap();
    assert!(v["lines"].is_array());
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

#[test]
fn json_spool_is_byte_identical_on_the_samples_and_with_privacy() {
    let cfg = Config::default();
    for name in ["sample-site.pcap", "sample-negatives.pcap"] {
        same(&sample(name), &cfg);
    }
    let mut private = Config::default();
    private.privacy.pseudonymize = true;
    private.privacy.key = Some("test-key-0123456789abcdef".into());
    same(&sample("sample-site.pcap"), &private);
}

#[test]
fn json_spool_is_byte_identical_on_a_simulated_capture() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("sim.pcap");
    let mut sc = simboxd_sim::Scenario::builtin();
    sc.duration_secs = 300;
    let mut f = BufWriter::new(std::fs::File::create(&cap).unwrap());
    simboxd_sim::generate(&sc, 5, &mut f).unwrap();
    f.flush().unwrap();
    drop(f);
    same(&cap, &Config::default());
}

#[test]
fn json_spool_is_byte_identical_on_a_hostile_capture_of_several_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("hostile.pcap");
    let mut f = BufWriter::new(std::fs::File::create(&cap).unwrap());
    gen::write_hostile(&mut f, 7, 40_000).unwrap();
    f.flush().unwrap();
    drop(f);
    let (a, _) = analyze_spooled(
        std::slice::from_ref(&cap),
        &Config::default(),
        false,
        &mut [],
    )
    .unwrap();
    assert!(
        a.stats.calls as usize > CHUNK_CALLS,
        "{} calls: too few for several sorted runs",
        a.stats.calls
    );
    same(&cap, &Config::default());
}
