//! Operations (issue 16) with the real daemon: alert delivery across a target change (reload
//! and restart, every alert exactly once, failures and recovery logged), the live `/metrics`
//! checked by `promtool`, and the systemd unit analysed by `systemd-analyze security`.

mod daemon_common;

use daemon_common::{free_port, http_get, parse_prometheus, sample, Daemon, HttpReceiver, TOKEN};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn sample_capture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap")
}

fn api_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// A loopback URL where nothing listens (a port that was free a moment ago).
fn closed_url() -> String {
    format!("http://127.0.0.1:{}/hook", free_port())
}

fn write_config(dir: &Path, api: SocketAddr, webhook: &str, filter: &str) -> PathBuf {
    let p = dir.join("simboxd.toml");
    std::fs::write(
        &p,
        format!(
            "[capture]\nfile = {cap:?}\nfilter = {filter:?}\n\n[http]\nlisten = \"{api}\"\n\
             token = \"{TOKEN}\"\n\n[daemon]\nuser = \"\"\ngroup = \"\"\n\n\
             [alert]\nretry_initial_ms = 100\nretry_max_secs = 1\n\n\
             [webhook]\nurl = {webhook:?}\ntimeout_secs = 2\n\n\
             [storage]\npath = {st:?}\n",
            cap = sample_capture().display().to_string(),
            st = dir.join("state/alerts.redb").display().to_string(),
        ),
    )
    .unwrap();
    p
}

fn metrics(api: SocketAddr) -> Vec<(String, f64)> {
    let m = http_get(api, "/metrics", Some(TOKEN)).unwrap();
    assert_eq!(m.status, 200, "{}", m.body);
    parse_prometheus(&m.body).unwrap_or_else(|e| panic!("{e}\n{}", m.body))
}

/// Waits for `cond` on the metrics (or panics with the daemon's log after `limit`).
fn wait_metrics(
    d: &Daemon,
    api: SocketAddr,
    limit: Duration,
    what: &str,
    cond: impl Fn(&[(String, f64)]) -> bool,
) {
    let t0 = Instant::now();
    loop {
        let s = metrics(api);
        if cond(&s) {
            return;
        }
        assert!(
            t0.elapsed() < limit,
            "{what} not reached in {limit:?}\n{}\n{}",
            s.iter()
                .filter(|(k, _)| k.contains("delivery") || k.contains("alert"))
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Idempotency keys of every alert in the outbox (the API lists them).
fn outbox_keys(api: SocketAddr) -> Vec<String> {
    let r = http_get(api, "/api/v1/alerts?limit=1000", Some(TOKEN)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["idempotency_key"].as_str().unwrap().to_string())
        .collect()
}

/// Idempotency keys received by a webhook receiver, with how often each came.
fn received_keys(r: &HttpReceiver) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for got in r.received() {
        let v: serde_json::Value = serde_json::from_str(&got.body).expect("webhook body is JSON");
        let key = v["idempotency_key"]
            .as_str()
            .expect("idempotency_key")
            .to_string();
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

fn hup(d: &Daemon) {
    let pid = nix::unistd::Pid::from_raw(d.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
}

fn backlog(s: &[(String, f64)], url: &str) -> Option<f64> {
    let label = url.trim_end_matches("/hook");
    sample(
        s,
        &format!("simboxd_delivery_backlog{{target=\"{label}\"}}"),
    )
}

/// Regression: a webhook URL changed while alerts were pending left them owed to the old URL
/// forever, and 35 s of failures logged nothing.
#[test]
fn changed_webhook_url_gets_every_pending_alert_exactly_once_on_reload_and_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_addr();
    let dead = closed_url();
    let cfg = write_config(dir.path(), api, &dead, "");
    let mut d = Daemon::start(&cfg, &dir.path().join("log1"));
    d.wait_healthy(api, Duration::from_secs(20));

    // The replay raises alerts; the closed port refuses them and says so in the log.
    wait_metrics(&d, api, Duration::from_secs(30), "pending alerts", |s| {
        sample(s, "simboxd_capture_running") == Some(0.0)
            && sample(s, "simboxd_queue_packets") == Some(0.0)
            && backlog(s, &dead).unwrap_or(0.0) >= 1.0
    });
    let t0 = Instant::now();
    while !d.log_text().contains("alert delivery failed") {
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("alert delivery failed"))
        .unwrap();
    assert!(
        line.contains("WARN")
            && line.contains(dead.trim_end_matches("/hook"))
            && line.contains("error="),
        "{line}"
    );
    assert!(
        !log.contains("/hook\""),
        "a URL path reached the log: {log}"
    );
    // Rate-limited: a handful of lines, not one per retry (~10 retries per second here).
    std::thread::sleep(Duration::from_secs(2));
    let failed_lines = d.log_text().matches("alert delivery failed").count();
    assert!(failed_lines <= 2, "{failed_lines} failure lines");

    // Reload with the new URL: what was owed to the old one goes to the new one, once.
    let a = HttpReceiver::start();
    let a_url = format!("http://{}/hook", a.addr);
    write_config(dir.path(), api, &a_url, "");
    hup(&d);
    let keys = outbox_keys(api);
    assert!(!keys.is_empty());
    wait_metrics(
        &d,
        api,
        Duration::from_secs(20),
        "delivery to the new URL",
        |s| backlog(s, &a_url) == Some(0.0) && received_keys(&a).len() >= keys.len(),
    );
    let log = d.log_text();
    assert!(log.contains("alert targets changed"), "{log}");
    assert!(!log.contains("need a restart to apply"), "{log}");
    let keys = outbox_keys(api);
    let got = received_keys(&a);
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), sorted(&keys));
    assert!(got.values().all(|&n| n == 1), "duplicates: {got:?}");

    // Back to a dead URL; stop with nothing pending, change the URL while stopped: nothing is
    // re-sent (every alert was accepted once already).
    let dead2 = closed_url();
    write_config(dir.path(), api, &dead2, "");
    hup(&d);
    wait_metrics(
        &d,
        api,
        Duration::from_secs(10),
        "reload to the second dead URL",
        |s| backlog(s, &dead2).is_some(),
    );
    let st = d.stop(Duration::from_secs(20)).expect("stops on SIGTERM");
    assert!(st.success(), "{}", d.log_text());

    // Restart on receiver B with a filter matching nothing (no new alerts from the replay).
    let b = HttpReceiver::start();
    let b_url = format!("http://{}/hook", b.addr);
    let api2 = api_addr();
    write_config(dir.path(), api2, &b_url, "udp port 1");
    let mut d2 = Daemon::start(&cfg, &dir.path().join("log2"));
    d2.wait_healthy(api2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    assert!(b.received().is_empty(), "B got alerts A had accepted");
    assert_eq!(received_keys(&a), got, "A got more after the restart");
    d2.stop(Duration::from_secs(20));
}

#[test]
fn alerts_pending_at_stop_go_to_the_new_url_after_restart_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_addr();
    let dead = closed_url();
    let cfg = write_config(dir.path(), api, &dead, "");
    let mut d = Daemon::start(&cfg, &dir.path().join("log1"));
    d.wait_healthy(api, Duration::from_secs(20));
    wait_metrics(&d, api, Duration::from_secs(30), "pending alerts", |s| {
        sample(s, "simboxd_capture_running") == Some(0.0)
            && sample(s, "simboxd_queue_packets") == Some(0.0)
            && backlog(s, &dead).unwrap_or(0.0) >= 1.0
    });
    let keys = outbox_keys(api);
    let st = d.stop(Duration::from_secs(20)).expect("stops on SIGTERM");
    assert!(st.success(), "{}", d.log_text());

    let b = HttpReceiver::start();
    let b_url = format!("http://{}/hook", b.addr);
    let api2 = api_addr();
    write_config(dir.path(), api2, &b_url, "udp port 1");
    let mut d2 = Daemon::start(&cfg, &dir.path().join("log2"));
    d2.wait_healthy(api2, Duration::from_secs(20));
    wait_metrics(
        &d2,
        api2,
        Duration::from_secs(20),
        "delivery after restart",
        |s| backlog(s, &b_url) == Some(0.0) && received_keys(&b).len() >= keys.len(),
    );
    assert!(
        d2.log_text().contains("re-queued to the current targets"),
        "{}",
        d2.log_text()
    );
    // The old URL's backlog is gone, not stranded.
    let s = metrics(api2);
    assert_eq!(backlog(&s, &dead), None);
    std::thread::sleep(Duration::from_secs(1));
    let got = received_keys(&b);
    // Alerts can still change between the snapshot and SIGTERM (lines age out on the daemon's
    // clock), so the store the new daemon opened is the full list: B gets exactly that list, which
    // holds every key pending at the snapshot.
    let stored = sorted(&outbox_keys(api2));
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), stored);
    for k in &keys {
        assert!(
            got.contains_key(k),
            "{k} pending at stop never reached B: {got:?}"
        );
    }
    assert!(got.values().all(|&n| n == 1), "duplicates: {got:?}");
    // And a delivery latency was observed for the new target.
    let b_label = b_url.trim_end_matches("/hook");
    let n = sample(
        &s,
        &format!("simboxd_alert_delivery_duration_seconds_count{{target=\"{b_label}\"}}"),
    )
    .unwrap_or(0.0);
    assert!(n >= 1.0, "no delivery latency for {b_label}");
    d2.stop(Duration::from_secs(20));
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn required(tool: &str) -> bool {
    if have(tool) {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{tool} missing under CI=true (scripts/setup.sh installs it)"
    );
    eprintln!("SKIP: {tool} not installed");
    false
}

#[test]
fn live_metrics_pass_promtool_and_follow_the_conventions() {
    if !required("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let api = api_addr();
    // A token in the webhook's path and query must not reach a label.
    let hook = HttpReceiver::start();
    let url = format!("http://{}/hooks/s3cr3t?token=t", hook.addr);
    let cfg = write_config(dir.path(), api, &url, "");
    let mut d = Daemon::start(&cfg, &dir.path().join("log"));
    d.wait_healthy(api, Duration::from_secs(20));
    let label = format!("http://{}", hook.addr);
    wait_metrics(
        &d,
        api,
        Duration::from_secs(30),
        "replay done, alerts delivered",
        |s| {
            sample(s, "simboxd_capture_running") == Some(0.0)
                && sample(s, "simboxd_queue_packets") == Some(0.0)
                && sample(
                    s,
                    &format!("simboxd_delivery_backlog{{target=\"{label}\"}}"),
                ) == Some(0.0)
                && !hook.received().is_empty()
        },
    );
    let body = http_get(api, "/metrics", Some(TOKEN)).unwrap().body;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{body}"
    );

    // Conventions promtool does not check: every counter ends in _total, one TYPE per family,
    // the process and build families, both histograms, no credentials in labels.
    let mut types = BTreeMap::new();
    for l in body.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap();
            assert!(
                types.insert(name.to_string(), ty.to_string()).is_none(),
                "{name} twice"
            );
            if ty == "counter" {
                assert!(name.ends_with("_total"), "counter {name}");
            }
        }
    }
    for (name, ty) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("simboxd_build_info", "gauge"),
        ("simboxd_engine_packet_duration_seconds", "histogram"),
        ("simboxd_alert_delivery_duration_seconds", "histogram"),
        ("simboxd_decode_errors_total", "counter"),
        ("simboxd_decode_skipped_total", "counter"),
        ("simboxd_table_entries", "gauge"),
        ("simboxd_table_bytes", "gauge"),
    ] {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some(ty),
            "{name}\n{body}"
        );
    }
    let s = parse_prometheus(&body).unwrap();
    // Engine packets were timed (1 in 64 of the sample capture's packets).
    let timed = sample(&s, "simboxd_engine_packet_duration_seconds_count").unwrap();
    let processed = sample(&s, "simboxd_packets_processed_total").unwrap();
    assert!(
        timed >= (processed / 64.0).floor() && timed > 0.0,
        "{timed} of {processed}"
    );
    assert!(
        !body.contains("s3cr3t") && !body.contains("token=t"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "simboxd_alert_delivery_duration_seconds_count{{target=\"{label}\"}}"
        )),
        "{body}"
    );
    // Byte figures are not mixed into the entry counts.
    assert!(!body.contains("simboxd_table_entries{table=\"fragment_bytes\"}"));
    assert!(body.contains("simboxd_table_bytes{table=\"fragment_bytes\"}"));
    d.stop(Duration::from_secs(20));
}

/// A pcap of a healthy office mirror's background: ARP, STP, LLDP, CDP (SNAP), ICMP, IGMP,
/// OSPF, ICMPv6 and one SIP OPTIONS.
fn office_background_pcap(path: &Path) -> usize {
    use etherparse::{IpNumber, PacketBuilder};
    let mac_a = [2, 0, 0, 0, 0, 1];
    let mac_b = [2, 0, 0, 0, 0, 2];
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let eth = |dst: [u8; 6], ty_or_len: u16, payload: &[u8]| {
        let mut f = dst.to_vec();
        f.extend_from_slice(&mac_a);
        f.extend_from_slice(&ty_or_len.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    // ARP request.
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&mac_a);
    arp.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    frames.push(eth([0xff; 6], 0x0806, &arp));
    // STP configuration BPDU (802.3 + LLC 42 42 03).
    let mut bpdu = vec![0x42, 0x42, 0x03, 0, 0, 0, 0];
    bpdu.resize(38, 0);
    frames.push(eth([1, 0x80, 0xc2, 0, 0, 0], bpdu.len() as u16, &bpdu));
    // CDP over SNAP.
    let mut cdp = vec![0xAA, 0xAA, 0x03, 0x00, 0x00, 0x0C, 0x20, 0x00, 2, 180, 0, 0];
    cdp.resize(40, 0);
    frames.push(eth([1, 0, 0x0c, 0xcc, 0xcc, 0xcc], cdp.len() as u16, &cdp));
    // LLDP (chassis, port, TTL, end).
    let lldp = [
        2, 7, 4, 2, 0, 0, 0, 0, 1, 4, 3, 5, b'p', b'1', 6, 2, 0, 120, 0, 0,
    ];
    frames.push(eth([1, 0x80, 0xc2, 0, 0, 0x0e], 0x88cc, &lldp));
    let ip4 = |proto: u8, payload: &[u8]| {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(mac_a, mac_b)
            .ipv4([10, 0, 0, 1], [224, 0, 0, 5], 1)
            .write(&mut out, IpNumber(proto), payload)
            .unwrap();
        out
    };
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(mac_a, mac_b)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut icmp, b"ping")
        .unwrap();
    frames.push(icmp);
    frames.push(ip4(2, &[0x16, 0, 0, 0, 239, 1, 1, 1]));
    frames.push(ip4(89, &[2, 1, 0, 44, 10, 0, 0, 1, 0, 0, 0, 0]));
    let mut icmp6 = Vec::new();
    PacketBuilder::ethernet2(mac_a, mac_b)
        .ipv6(
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            255,
        )
        .icmpv6_echo_request(1, 1)
        .write(&mut icmp6, b"x")
        .unwrap();
    frames.push(icmp6);
    let mut sip = Vec::new();
    PacketBuilder::ethernet2(mac_a, mac_b)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(5060, 5060)
        .write(
            &mut sip,
            b"OPTIONS sip:a@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:b@10.0.0.1>;tag=1\r\nTo: <sip:a@10.0.0.2>\r\nCall-ID: c1@10.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
    frames.push(sip);

    let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        pcap.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        pcap.extend_from_slice(&0u32.to_le_bytes());
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(f);
    }
    std::fs::write(path, pcap).unwrap();
    frames.len()
}

/// Regression: ARP, STP, ICMP, IGMP, OSPF... on a healthy office mirror counted as decode
/// errors (125 on a 6.6 k-packet capture); they are skipped traffic, counted by kind.
#[test]
fn other_protocols_are_skipped_by_kind_not_decode_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("office-background.pcap");
    let n = office_background_pcap(&cap);
    let out = Command::new(daemon_common::bin())
        .args(["analyze", "--format", "json"])
        .arg(&cap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stats = &v["stats"];
    assert_eq!(stats["packets"], n as u64);
    assert_eq!(stats["decode_errors"], serde_json::json!({}), "{stats}");
    assert_eq!(stats["sip_messages"], 1);
    let skipped = &stats["decode_skipped"];
    for (kind, count) in [
        ("arp", 1),
        ("stp", 1),
        ("snap", 1),
        ("lldp", 1),
        ("icmp", 1),
        ("igmp", 1),
        ("ospf", 1),
        ("icmpv6", 1),
    ] {
        assert_eq!(skipped[kind], count, "{kind}: {skipped}");
    }
}

/// The unit's way of running, without systemd: the unprivileged user with only the ambient
/// capabilities CAP_NET_RAW/CAP_NET_ADMIN (`setpriv`, as `User=` + `AmbientCapabilities=`), the
/// token as a credential (`$CREDENTIALS_DIRECTORY/api-token`, as `LoadCredential=`), a state
/// directory owned by that user (as `StateDirectory=`) and `UMask=0077`: validate passes, the
/// live capture on loopback works, the API takes the credential's token, the outbox and saved
/// profiles land in the state directory private to the user, and reload works.
#[test]
fn daemon_works_as_the_unit_runs_it_unprivileged_with_ambient_capabilities() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !nix::unistd::Uid::effective().is_root() || !have("setpriv") {
        eprintln!("SKIP: needs root and setpriv to start as user nobody with ambient capabilities");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o750)).unwrap();
    nix::unistd::chown(&state, Some(nobody.uid), Some(nobody.gid)).unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    let token = "credential-token-0123456789";
    std::fs::write(creds.join("api-token"), format!("{token}\n")).unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("simboxd");
    std::fs::copy(daemon_common::bin(), &bin).unwrap();
    let api = api_addr();
    let sip_port = free_port();
    let cfg = dir.path().join("simboxd.toml");
    // [daemon] user stays the shipped "simboxd": not root, so it is not used (a warning).
    std::fs::write(
        &cfg,
        format!(
            "[capture]\ninterface = \"lo\"\nfilter = \"udp port {sip_port}\"\npromiscuous = false\nbuffer_mib = 2\n\n\
             [http]\nlisten = \"{api}\"\n\n[storage]\npath = {:?}\n",
            state.join("alerts.redb").display().to_string()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let unit_like = |args: &[&str]| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(
                "umask 077; exec setpriv --reuid=\"$U\" --regid=\"$G\" --clear-groups \
                 --inh-caps=-all,+net_raw,+net_admin --ambient-caps=-all,+net_raw,+net_admin \
                 --bounding-set=-all,+net_raw,+net_admin --no-new-privs \"$@\"",
            )
            .arg("sh")
            .arg(&bin)
            .args(args)
            .env("U", nobody.uid.to_string())
            .env("G", nobody.gid.to_string())
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env("RUST_LOG", "info");
        c
    };
    let out = unit_like(&["validate", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "validate: {stderr}");
    assert!(stderr.contains("ignored: not running as root"), "{stderr}");

    let log = dir.path().join("log");
    let f = std::fs::File::create(&log).unwrap();
    let mut child = unit_like(&["run", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::from(f.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(f))
        .spawn()
        .unwrap();
    let logtext = || std::fs::read_to_string(&log).unwrap_or_default();
    let t0 = Instant::now();
    while http_get(api, "/healthz", None).map(|r| r.status).ok() != Some(200) {
        assert!(child.try_wait().unwrap().is_none(), "exited: {}", logtext());
        assert!(t0.elapsed() < Duration::from_secs(20), "{}", logtext());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        http_get(api, "/api/v1/lines", Some(TOKEN)).unwrap().status,
        401
    );
    assert_eq!(
        http_get(api, "/api/v1/lines", Some(token)).unwrap().status,
        200
    );
    // Live capture as nobody: SIP datagrams on loopback are seen.
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let msg = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\nFrom: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: unit@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let t0 = Instant::now();
    loop {
        tx.send_to(msg, ("127.0.0.1", sip_port)).unwrap();
        let m = http_get(api, "/metrics", Some(token)).unwrap();
        let s = parse_prometheus(&m.body).unwrap();
        if sample(&s, "simboxd_packets_processed_total").unwrap_or(0.0) >= 3.0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no packets captured\n{}",
            logtext()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Reload.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let t0 = Instant::now();
    loop {
        let m = http_get(api, "/metrics", Some(token)).unwrap();
        let s = parse_prometheus(&m.body).unwrap();
        if sample(&s, "simboxd_config_reloads_total{result=\"ok\"}") == Some(1.0) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", logtext());
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "{}", logtext());
    for f in ["alerts.redb", "state.redb"] {
        let m =
            std::fs::metadata(state.join(f)).unwrap_or_else(|e| panic!("{f}: {e}\n{}", logtext()));
        assert_eq!(m.uid(), nobody.uid.as_raw(), "{f} owner");
        assert_eq!(m.mode() & 0o077, 0, "{f} mode {:o}", m.mode());
    }
    assert!(!logtext().contains("dropped privileges"), "{}", logtext());
}
