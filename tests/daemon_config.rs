//! `simboxd validate` on good and bad config files: exit codes and exact `FILE:LINE:COL: reason`.

mod daemon_common;

use daemon_common::bin;
use std::path::{Path, PathBuf};
use std::process::Command;

fn validate(path: &Path) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(["validate", "--config"])
        .arg(path)
        .output()
        .expect("run simboxd validate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}

/// Asserts that `text` fails with exactly `FILE:<suffix>` on stderr and exit code 1.
fn assert_rejected(text: &str, suffix: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "simboxd.toml", text);
    let (code, stdout, stderr) = validate(&p);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stderr.trim_end(), format!("{}:{suffix}", p.display()));
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn example_config_validates_once_adapted_to_the_host() {
    // The shipped file names eth1, user simboxd and /var/lib/simboxd; on this host use lo, the
    // current user and a temporary state directory (validate_host.rs covers the refusals).
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/simboxd.toml"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = text
        .replace("interface = \"eth1\"", "interface = \"lo\"")
        .replace("user = \"simboxd\"", "user = \"\"")
        .replace("group = \"simboxd\"", "group = \"\"")
        .replace(
            "path = \"/var/lib/simboxd/alerts.redb\"",
            &format!(
                "path = {:?}",
                dir.path().join("alerts.redb").display().to_string()
            ),
        );
    let p = write(dir.path(), "simboxd.toml", &text);
    let (code, stdout, stderr) = validate(&p);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim_end(), format!("{}: ok", p.display()));
}

#[test]
fn example_config_shows_every_key_of_its_sections() {
    // Every key the daemon accepts in the sections it owns appears (set or commented) in the
    // example, so the example really documents every key.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/simboxd.toml"))
            .unwrap();
    let cfg = simboxd::config::Config::default();
    let sections = serde_json::to_value(&cfg).unwrap();
    for (section, keys) in sections.as_object().unwrap() {
        assert!(
            text.contains(&format!("[{section}]")),
            "section [{section}] missing from the example"
        );
        for (key, value) in keys.as_object().unwrap() {
            if let Some(sub) = value.as_object() {
                assert!(
                    text.contains(&format!("[{section}.{key}]")),
                    "table [{section}.{key}] missing from the example"
                );
                for k in sub.keys() {
                    assert!(
                        text.contains(&format!("\n{k} = ")),
                        "{section}.{key}.{k} missing"
                    );
                }
                continue;
            }
            let set = format!("\n{key} = ");
            let commented = format!("\n# {key} = ");
            assert!(
                text.contains(&set) || text.contains(&commented),
                "key {section}.{key} missing from the example"
            );
        }
    }
}

#[test]
fn minimal_file_config_validates() {
    let dir = tempfile::tempdir().unwrap();
    // An empty pcap (global header only, Ethernet): run would replay it.
    let cap = dir.path().join("x.pcap");
    let mut header = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&65535u32.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    std::fs::write(&cap, header).unwrap();
    let p = write(
        dir.path(),
        "ok.toml",
        &format!(
            "[capture]\nfile = {:?}\n[daemon]\nuser = \"\"\ngroup = \"\"\n[storage]\npath = {:?}\n",
            cap.display().to_string(),
            dir.path().join("a.redb").display().to_string()
        ),
    );
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn unknown_key_is_rejected_with_position() {
    assert_rejected(
        "[capture]\ninterface = \"lo\"\n[http]\nlisten = \"127.0.0.1:8080\"\nbogus = 1\n",
        "5:1: unknown field `bogus`, expected one of `enabled`, `listen`, `token`, `token_file`, `max_list`, `tls_cert`, `tls_key`, `max_connections`, `header_timeout_secs`, `request_timeout_secs`, `max_requests_per_client`",
    );
}

#[test]
fn unknown_section_is_rejected_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "s.toml",
        "[capture]\ninterface = \"lo\"\n\n[htttp]\nlisten = 1\n",
    );
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!("{}:4:2: unknown field `htttp`", p.display())),
        "{stderr}"
    );
}

#[test]
fn bad_cidr_is_rejected_with_position() {
    assert_rejected(
        "[capture]\ninterface = \"lo\"\n[network]\nhome = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n",
        "4:23: invalid IP address syntax",
    );
}

#[test]
fn bad_listen_address_is_rejected_with_position() {
    assert_rejected(
        "[capture]\ninterface = \"lo\"\n[http]\nlisten = \"localhost:80\"\n",
        "4:10: invalid socket address syntax",
    );
}

#[test]
fn short_token_is_rejected_with_position() {
    assert_rejected(
        "[capture]\ninterface = \"lo\"\n[http]\n  token = \"secret\"\n",
        "4:3: http.token must be at least 16 characters",
    );
}

#[test]
fn bad_worker_count_is_rejected_with_position() {
    assert_rejected(
        "[capture]\ninterface = \"lo\"\n[daemon]\nworkers = 0\n",
        "4:1: daemon.workers must be between 1 and 64",
    );
}

#[test]
fn wrong_type_is_rejected_with_position() {
    assert_rejected(
        "[capture]\ninterface = \"lo\"\nsnaplen = \"big\"\n",
        "3:11: invalid type: string \"big\", expected u32",
    );
}

#[test]
fn capture_source_is_required() {
    assert_rejected(
        "[network]\nhome = [\"10.0.0.0/8\"]\n",
        "1:1: capture.interface or capture.file is required",
    );
    assert_rejected(
        "[capture]\ninterface = \"lo\"\nfile = \"/x.pcap\"\n",
        "3:1: capture.interface and capture.file are mutually exclusive",
    );
}

#[test]
fn missing_replay_file_is_rejected() {
    assert_rejected(
        "[capture]\n file = \"/nonexistent/simboxd-test.pcap\"\n",
        "2:2: capture.file /nonexistent/simboxd-test.pcap does not exist",
    );
}

#[test]
fn missing_config_file_fails() {
    let (code, _, stderr) = validate(Path::new("/nonexistent/simboxd.toml"));
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        "/nonexistent/simboxd.toml: cannot read: No such file or directory (os error 2)"
    );
}

#[test]
fn bad_webhook_url_is_rejected_with_position() {
    assert_rejected(
        "[capture]\ninterface = \"lo\"\n[webhook]\nurl = \"ftp://soc.example/x\"\n",
        "4:7: webhook url \"ftp://soc.example/x\": scheme \"ftp\" is not http or https",
    );
    assert_rejected(
        "[capture]\ninterface = \"lo\"\n[webhook]\nurl = \"http//soc\"\n",
        "4:7: webhook url \"http//soc\" is not an http:// or https:// URL",
    );
}

#[test]
fn bad_syslog_target_is_rejected_with_position() {
    // The bad entry itself is located (column 12), not the array's bracket.
    assert_rejected(
        "[capture]\ninterface = \"lo\"\n[syslog]\ntargets = [\"udp://127.0.0.1:99999\"]\n",
        "4:12: syslog target \"udp://127.0.0.1:99999\": bad host or port",
    );
    // A target with its own format: a bad format is located at its value.
    assert_rejected(
        "[capture]\ninterface = \"lo\"\n[syslog]\ntargets = [{ url = \"udp://h\", format = \"leef\" }]\n",
        "4:40: unknown variant `leef`, expected one of `rfc5424`, `rfc3164`, `ecs`, `cef`",
    );
}

#[test]
fn unreadable_ca_and_key_files_fail_validate() {
    assert_rejected(
        "[capture]\ninterface = \"lo\"\n[webhook]\nurl = \"https://x.example/h\"\nca_file = \"/nonexistent/ca.pem\"\n",
        "5:1: CA file /nonexistent/ca.pem: No such file or directory (os error 2)",
    );
    assert_rejected(
        "[capture]\ninterface = \"lo\"\n[privacy]\npseudonymize = true\nkey_file = \"/nonexistent/k\"\n",
        "5:1: cannot read privacy key file /nonexistent/k: No such file or directory (os error 2)",
    );
}

#[test]
fn token_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let tok = write(dir.path(), "token", "short\n");
    let p = write(
        dir.path(),
        "t.toml",
        &format!(
            "[capture]\ninterface = \"lo\"\n[http]\ntoken_file = {:?}\n[daemon]\nuser = \"\"\ngroup = \"\"\n[storage]\npath = {:?}\n",
            tok.display().to_string(),
            dir.path().join("a.redb").display().to_string()
        ),
    );
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{}:4:1: {}: token must be at least 16 characters",
            p.display(),
            tok.display()
        )
    );
    std::fs::write(&tok, "0123456789abcdefXYZ\n").unwrap();
    assert_eq!(validate(&p).0, 0);
}
