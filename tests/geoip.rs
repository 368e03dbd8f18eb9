//! `[network] geoip_db` + `home_country`: peers the country database places in the home country
//! count as domestic, with the same effect on detection as listing their prefixes.

mod common;

use simboxd::config::Config;
use std::process::Command;

#[test]
fn country_database_decides_domestic_peers() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("country.mmdb");
    common::write_country_mmdb(&db, &[("192.0.2.0/24", "DE"), ("203.0.113.0/24", "CN")]);
    let text = format!(
        "[network]\ngeoip_db = \"{}\"\nhome_country = \"DE\"\n",
        db.display()
    );
    let cfg = Config::parse(&text, "g.toml").expect("config with geoip");
    let n = &cfg.network;
    assert!(n.is_domestic("192.0.2.77".parse().unwrap()));
    assert!(!n.is_domestic("203.0.113.10".parse().unwrap()));
    assert!(
        !n.is_domestic("198.51.100.1".parse().unwrap()),
        "not in the database"
    );
    assert!(
        !n.is_domestic("2001:db8::1".parse().unwrap()),
        "IPv6 in an IPv4 database"
    );
    assert!(
        n.is_domestic("10.1.2.3".parse().unwrap()),
        "home networks stay domestic"
    );
}

#[test]
fn geoip_config_errors_are_located() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("none.mmdb");
    let text = format!(
        "[network]\nhome_country = \"DE\"\ngeoip_db = \"{}\"\n",
        missing.display()
    );
    let e = Config::parse(&text, "g.toml").unwrap_err().to_string();
    assert!(e.starts_with("g.toml:3:1: network.cannot open"), "{e}");
    let db = dir.path().join("c.mmdb");
    common::write_country_mmdb(&db, &[("192.0.2.0/24", "DE")]);
    let text = format!("[network]\ngeoip_db = \"{}\"\n", db.display());
    let e = Config::parse(&text, "g.toml").unwrap_err().to_string();
    assert_eq!(
        e,
        "g.toml:2:1: network.geoip_db needs home_country (ISO 3166-1 alpha-2)"
    );
    let text = format!(
        "[network]\ngeoip_db = \"{}\"\nhome_country = \"DEU\"\n",
        db.display()
    );
    let e = Config::parse(&text, "g.toml").unwrap_err().to_string();
    assert!(e.contains("not an ISO 3166-1 alpha-2 code"), "{e}");
}

/// On the simulated sample, a country database that places the simulator's domestic range in
/// the home country gives the same verdicts, and the same domestic/foreign split of peers in the
/// report, as `--domestic-net` for that range.
#[test]
fn geoip_and_domestic_prefixes_agree() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sample = root.join("captures/sample-site.pcap");
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("country.mmdb");
    common::write_country_mmdb(&db, &[("198.18.0.0/15", "XX"), ("203.0.113.0/24", "CN")]);
    let cfg = dir.path().join("geo.toml");
    std::fs::write(
        &cfg,
        format!(
            "[network]\ngeoip_db = \"{}\"\nhome_country = \"XX\"\n",
            db.display()
        ),
    )
    .expect("config");
    let run = |name: &str, args: &[&str]| -> (serde_json::Value, String) {
        let report = dir.path().join(format!("{name}.html"));
        let out = Command::new(env!("CARGO_BIN_EXE_simboxd"))
            .arg("analyze")
            .arg(&sample)
            .args(["--format", "json", "--quiet", "--report"])
            .arg(&report)
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let html = std::fs::read_to_string(&report).expect("report");
        let start = html.find("<h2>Peers</h2>").expect("peers section");
        let end = start + html[start..].find("</table>").expect("table end");
        (
            serde_json::from_slice(&out.stdout).expect("json"),
            html[start..end].to_string(),
        )
    };
    let verdicts = |v: &serde_json::Value| -> Vec<(String, String, String)> {
        v["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| {
                (
                    l["line"].to_string(),
                    l["verdict"].to_string(),
                    l["score"].to_string(),
                )
            })
            .collect()
    };
    let (by_prefix, peers_prefix) = run("prefix", &["--domestic-net", "198.18.0.0/15"]);
    let (by_geoip, peers_geoip) = run("geoip", &["--config", cfg.to_str().expect("utf-8")]);
    let (_, peers_none) = run("none", &[]);
    assert_eq!(verdicts(&by_prefix), verdicts(&by_geoip));
    assert_eq!(peers_prefix, peers_geoip);
    assert!(
        peers_geoip.contains("<td>yes</td>"),
        "some peers are domestic"
    );
    assert_ne!(
        peers_geoip, peers_none,
        "without either, no peer is domestic"
    );
}
