//! Evidence from the daemon: `simboxd run` replays the shipped sample (captures/sample-site.pcap)
//! and flags its gateway line 100.64.1.10; the evidence writer keeps that line's pre-alert ring
//! and later packets as a pcap with a hashed manifest under the state directory. Checked over the
//! real HTTP API: the listing, the manifest, the download (its SHA-256 is the manifest's, libpcap
//! and tshark open it, it holds the line's SIP), no path traversal, the metrics; and with a tiny
//! `[evidence]` cap, that the cap holds, is counted and logged.

mod daemon_common;

use daemon_common::{free_port, http_get, parse_prometheus, sample, Daemon, TOKEN};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const GATEWAY: &str = "100.64.1.10";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn start(dir: &Path, evidence: &str) -> (Daemon, SocketAddr) {
    let capture = root().join("captures/sample-site.pcap");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = dir.join("simboxd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[capture]\nfile = {:?}\n\n[network]\ndomestic = [\"198.18.0.0/15\"]\n\n\
             [http]\nlisten = \"{addr}\"\ntoken = \"{TOKEN}\"\n\n\
             [daemon]\nuser = \"\"\ngroup = \"\"\nworkers = 2\n\n[storage]\npath = {:?}\n\n\
             [evidence]\n{evidence}\n",
            capture.display().to_string(),
            dir.join("state/alerts.redb").display().to_string()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&cfg, &dir.join("simboxd.log"));
    d.wait_healthy(addr, Duration::from_secs(30));
    (d, addr)
}

fn metrics(addr: SocketAddr) -> Vec<(String, f64)> {
    let m = http_get(addr, "/metrics", Some(TOKEN)).unwrap();
    assert_eq!(m.status, 200);
    parse_prometheus(&m.body).unwrap_or_else(|e| panic!("{e}\n{}", m.body))
}

/// Waits until the replay is done and the evidence of `GATEWAY` is listed with a manifest that
/// no longer changes (the writer rewrites it at most a second after the last packet).
fn settled_manifest(d: &Daemon, addr: SocketAddr) -> (String, Value) {
    let t0 = Instant::now();
    let mut last: Option<Value> = None;
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "no settled evidence for {GATEWAY}:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(700));
        let s = metrics(addr);
        if sample(&s, "simboxd_workers_running") != Some(0.0) {
            continue;
        }
        let list = http_get(addr, "/api/v1/evidence", Some(TOKEN)).unwrap();
        assert_eq!(list.status, 200, "{}", list.body);
        let list = list.json();
        let Some(entry) = list["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["line"] == GATEWAY)
            .cloned()
        else {
            continue;
        };
        let id = entry["alert_id"].as_str().unwrap().to_string();
        let m = http_get(addr, &format!("/api/v1/evidence/{id}"), Some(TOKEN)).unwrap();
        assert_eq!(m.status, 200, "{}", m.body);
        let m = m.json();
        let mut cmp = m.clone();
        cmp["updated"] = Value::Null;
        if last.as_ref() == Some(&cmp) && m["packets"].as_u64() > Some(0) {
            return (id, m);
        }
        last = Some(cmp);
    }
}

/// GET returning the raw body bytes (the shared client decodes text).
fn get_bytes(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let body = buf[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")),
        "a file body is sent with its length"
    );
    (status, headers, body)
}

/// IPv4/IPv6 source and destination of an Ethernet (optionally VLAN-tagged) or raw-IP frame.
fn addrs(link: pcap::Linktype, data: &[u8]) -> Option<(IpAddr, IpAddr, &[u8])> {
    let mut ip = match link.0 {
        1 => {
            let mut off = 12;
            let mut et = u16::from_be_bytes([*data.get(off)?, *data.get(off + 1)?]);
            while et == 0x8100 || et == 0x88a8 {
                off += 4;
                et = u16::from_be_bytes([*data.get(off)?, *data.get(off + 1)?]);
            }
            data.get(off + 2..)?
        }
        _ => data,
    };
    match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            let body = ip.get(ihl..)?;
            ip = body;
            Some((IpAddr::from(s), IpAddr::from(d), ip))
        }
        6 => {
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d), ip.get(40..)?))
        }
        _ => None,
    }
}

#[test]
fn the_sample_gateway_evidence_is_listed_served_and_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, addr) = start(dir.path(), "enabled = true");

    // Same bearer auth as the rest of the API.
    for path in ["/api/v1/evidence", "/api/v1/evidence/sbx-0000000000000000"] {
        assert_eq!(http_get(addr, path, None).unwrap().status, 401, "{path}");
    }

    let (id, m) = settled_manifest(&d, addr);
    // The alert the evidence belongs to is the gateway line's.
    let alerts = http_get(addr, "/api/v1/alerts", Some(TOKEN))
        .unwrap()
        .json();
    let alert = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap_or_else(|| panic!("no alert {id}: {alerts}"));
    assert_eq!(alert["line"], GATEWAY);
    assert!(
        ["gateway", "suspect"].contains(&alert["verdict"].as_str().unwrap()),
        "{alert}"
    );
    for key in ["sensor", "build", "created", "simboxd_version"] {
        assert!(m[key].as_str().is_some_and(|s| !s.is_empty()), "{key}: {m}");
    }
    assert_eq!(m["alert_id"], id.as_str());
    assert_eq!(m["line"], GATEWAY);
    assert!(m["pre_alert_packets"].as_u64().unwrap() > 0, "{m}");
    assert!(!m.to_string().contains(TOKEN), "no secret in a manifest");

    let files = m["files"].as_array().unwrap();
    assert!(!files.is_empty(), "{m}");
    let mut sip_seen = 0u64;
    let mut total_bytes = 0u64;
    for f in files {
        let name = f["file"].as_str().unwrap();
        let (status, headers, body) = get_bytes(addr, &format!("/api/v1/evidence/{id}/{name}"));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/vnd.tcpdump.pcap"));
        assert_eq!(body.len() as u64, f["bytes"].as_u64().unwrap());
        let length = f["bytes"].as_u64().unwrap().to_string();
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "content-length" && *v == length),
            "{headers:?}"
        );
        total_bytes += body.len() as u64;
        let digest = hex::encode(Sha256::digest(&body));
        assert_eq!(
            digest,
            f["sha256"].as_str().unwrap(),
            "download vs manifest"
        );
        // The file on disk, under the state directory, is the same one.
        let on_disk = dir.path().join("state/evidence").join(&id).join(name);
        let disk = std::fs::read(&on_disk).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&disk)),
            digest,
            "disk vs manifest"
        );

        // libpcap opens it: every packet is the line's, and its SIP is there.
        let local = dir.path().join(name);
        std::fs::write(&local, &body).unwrap();
        let mut cap = pcap::Capture::from_file(&local).expect("libpcap opens the evidence");
        let link = cap.get_datalink();
        let line: IpAddr = GATEWAY.parse().unwrap();
        let mut n = 0u64;
        while let Ok(p) = cap.next_packet() {
            n += 1;
            let (s, t, l4) = addrs(link, p.data).expect("an IP packet");
            assert!(s == line || t == line, "packet {n} is {s} -> {t}");
            let payload = l4.get(8..).unwrap_or(&[]);
            if payload.starts_with(b"SIP/2.0 ")
                || [
                    &b"INVITE "[..],
                    b"ACK ",
                    b"BYE ",
                    b"CANCEL ",
                    b"REGISTER ",
                    b"OPTIONS ",
                ]
                .iter()
                .any(|m| payload.starts_with(m))
            {
                sip_seen += 1;
            }
        }
        assert_eq!(n, f["packets"].as_u64().unwrap(), "{name}");

        // tshark (Wireshark's reader) opens it too and counts the same packets.
        let out = std::process::Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&local)
            .args(["-T", "fields", "-e", "frame.number"])
            .output();
        match out {
            Ok(o) => {
                assert!(
                    o.status.success(),
                    "tshark: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                let frames = String::from_utf8_lossy(&o.stdout).lines().count() as u64;
                assert_eq!(frames, n, "tshark frames in {name}");
            }
            Err(e) => {
                assert!(
                    !std::env::var("CI").is_ok_and(|v| v == "true"),
                    "tshark missing under CI: {e}"
                );
                eprintln!("tshark not run: {e}");
            }
        }
    }
    assert!(
        sip_seen > 10,
        "the line's SIP is in the evidence ({sip_seen})"
    );

    // Only what the manifest lists, inside the alert's folder.
    std::fs::write(dir.path().join("state/secret.txt"), "x").unwrap();
    for bad in [
        format!("/api/v1/evidence/{id}/manifest.json"),
        format!("/api/v1/evidence/{id}/..%2F..%2Fsecret.txt"),
        format!("/api/v1/evidence/{id}/%2e%2e"),
        "/api/v1/evidence/..%2Fsecret.txt".to_string(),
        "/api/v1/evidence/..".to_string(),
        format!("/api/v1/evidence/{}", id.to_uppercase()),
        "/api/v1/evidence/sbx-0000000000000000".to_string(),
    ] {
        let (status, _, body) = get_bytes(addr, &bad);
        assert!(
            status == 404 || status == 400,
            "{bad}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            !String::from_utf8_lossy(&body).contains("\"files\""),
            "{bad}"
        );
    }

    // Metrics count what is on disk.
    let s = metrics(addr);
    let listed: u64 = http_get(addr, "/api/v1/evidence", Some(TOKEN))
        .unwrap()
        .json()["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["bytes"].as_u64().unwrap())
        .sum();
    assert!(listed >= total_bytes);
    assert_eq!(sample(&s, "simboxd_evidence_bytes"), Some(listed as f64));
    assert!(sample(&s, "simboxd_evidence_files").unwrap() >= files.len() as f64);
    assert!(sample(&s, "simboxd_evidence_packets_written_total").unwrap() > 0.0);
    let m_text = http_get(addr, "/metrics", Some(TOKEN)).unwrap().body;
    assert!(!m_text.contains(TOKEN));

    // Stopping closes the folders: their manifests say so and still match the files.
    assert!(d.stop(Duration::from_secs(20)).is_some_and(|s| s.success()));
    let text = std::fs::read(
        dir.path()
            .join("state/evidence")
            .join(&id)
            .join("manifest.json"),
    )
    .unwrap();
    let closed: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(closed["state"], "closed");
    for f in closed["files"].as_array().unwrap() {
        let p = dir
            .path()
            .join("state/evidence")
            .join(&id)
            .join(f["file"].as_str().unwrap());
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(bytes.len() as u64, f["bytes"].as_u64().unwrap());
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            f["sha256"].as_str().unwrap()
        );
    }
}

#[test]
fn a_tiny_evidence_cap_is_honoured_counted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 8192u64;
    let (mut d, addr) = start(
        dir.path(),
        &format!("max_bytes = {cap}\nper_alert_max_bytes = 4096"),
    );
    let (_id, m) = settled_manifest(&d, addr);
    assert!(m["bytes"].as_u64().unwrap() <= 4096, "{m}");
    assert!(m["packets_dropped_by_cap"].as_u64().unwrap() > 0, "{m}");
    assert!(m["capped"].is_string(), "{m}");
    let s = metrics(addr);
    let dropped: f64 = ["cap", "alert_cap"]
        .iter()
        .filter_map(|r| {
            sample(
                &s,
                &format!("simboxd_evidence_packets_dropped_total{{reason=\"{r}\"}}"),
            )
        })
        .sum();
    assert!(dropped > 0.0, "drops are counted");
    assert!(sample(&s, "simboxd_evidence_bytes").unwrap() <= cap as f64);
    // What is on disk (pcaps) stays within the cap.
    let mut on_disk = 0;
    for e in std::fs::read_dir(dir.path().join("state/evidence")).unwrap() {
        for f in std::fs::read_dir(e.unwrap().path()).unwrap() {
            let f = f.unwrap();
            if f.file_name().to_string_lossy().ends_with(".pcap") {
                on_disk += f.metadata().unwrap().len();
            }
        }
    }
    assert!(on_disk <= cap, "{on_disk} bytes of pcap on disk");
    assert!(
        d.log_text().contains("evidence cap reached"),
        "{}",
        d.log_text()
    );
    d.stop(Duration::from_secs(20));
}
