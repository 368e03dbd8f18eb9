//! A burst of new lines beyond the line table's cap (issue 17 point 1): the sample site's
//! capture with 1,000 new lines registering in the middle of it, replayed by a daemon whose
//! table holds 50 lines. The new lines are shed and counted (each once), the lines already
//! watched keep being tracked: the known gateway is still flagged, every packet is processed,
//! nothing is dropped, no line is evicted, and the shed counter is exactly the lines that tried
//! to get a profile and did not (the sample's own lines counted by an engine of its own).

mod daemon_common;

use daemon_common::{free_port, http_get, parse_prometheus, sample, Daemon, TOKEN};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

const BURST: u32 = 1000;
const CAP: usize = 50;
const GATEWAY: &str = "100.64.1.10";

/// (seconds, microseconds, captured bytes, wire length) of every record of a classic pcap.
fn records(b: &[u8]) -> Vec<(u32, u32, Vec<u8>, u32)> {
    assert_eq!(
        &b[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian microsecond pcap"
    );
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let u = |o: usize| u32::from_le_bytes(b[at + o..at + o + 4].try_into().unwrap());
        let (s, us, cap, wire) = (u(0), u(4), u(8) as usize, u(12));
        out.push((s, us, b[at + 16..at + 16 + cap].to_vec(), wire));
        at += 16 + cap;
    }
    out
}

/// An Ethernet/IPv4/UDP frame on port 5060.
fn frame(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![
        0, 0x1b, 0x21, 1, 2, 3, 0, 0x1b, 0x21, 0x0a, 0x0b, 0x0c, 8, 0,
    ];
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&5060u16.to_be_bytes());
    f.extend_from_slice(&5060u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// REGISTER and its 200 OK for new line `i` (a home address the sample does not use).
fn registration(i: u32) -> (Ipv4Addr, Vec<u8>, Vec<u8>) {
    let ip = Ipv4Addr::from(0x6470_0000u32 + i + 1); // 100.112.0.1 on
    let registrar = Ipv4Addr::new(192, 0, 2, 10);
    let user = 4_930_000_000u64 + u64::from(i);
    let head = format!(
        "Via: SIP/2.0/UDP {ip}:5060;branch=z9hG4bK{i:x}\r\nFrom: <sip:{user}@voip.example>;tag=f{i:x}\r\n\
         To: <sip:{user}@voip.example>\r\nCall-ID: burst{i:x}@{ip}\r\nCSeq: 1 REGISTER\r\n"
    );
    let reg = format!(
        "REGISTER sip:voip.example SIP/2.0\r\n{head}Max-Forwards: 70\r\nContact: <sip:{user}@{ip}:5060>\r\n\
         Expires: 3600\r\nContent-Length: 0\r\n\r\n"
    );
    let ok = format!(
        "SIP/2.0 200 OK\r\n{head}Contact: <sip:{user}@{ip}:5060>;expires=3600\r\nContent-Length: 0\r\n\r\n"
    );
    (
        ip,
        frame(ip, registrar, reg.as_bytes()),
        frame(registrar, ip, ok.as_bytes()),
    )
}

#[test]
fn a_burst_of_new_lines_is_shed_and_counted_while_known_lines_keep_flowing() {
    let site =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap"))
            .unwrap();
    let mut recs = records(&site);
    // The sample's own lines: what an engine with room for every line gives a profile.
    let mut engine = simboxd_core::engine::Engine::new(&Default::default());
    for (s, us, data, wire) in &recs {
        engine.process(&simboxd_core::model::RawPacket {
            ts: simboxd_core::model::Timestamp(i64::from(*s) * 1_000_000 + i64::from(*us)),
            link: simboxd_core::model::LinkType::ETHERNET,
            data,
            wire_len: *wire,
        });
    }
    engine.finish();
    let own = engine.lines().len();
    assert!(
        (1..CAP).contains(&own),
        "the sample's {own} lines fit the table"
    );
    let gw: IpAddr = GATEWAY.parse().unwrap();
    assert!(engine.lines().entry(gw).is_some());

    // 1,000 new lines registering 20 to 30 s into the 75 s capture (100 per second).
    let (s0, us0) = (recs[0].0, recs[0].1);
    for i in 0..BURST {
        let t = u64::from(s0) * 1_000_000 + u64::from(us0) + 20_000_000 + u64::from(i) * 10_000;
        let (_, reg, ok) = registration(i);
        for (dt, f) in [(0, reg), (15_000, ok)] {
            let t = t + dt;
            let wire = f.len() as u32;
            recs.push(((t / 1_000_000) as u32, (t % 1_000_000) as u32, f, wire));
        }
    }
    recs.sort_by_key(|r| (r.0, r.1));
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("burst.pcap");
    let mut out = site[..24].to_vec();
    for (s, us, data, wire) in &recs {
        for v in [*s, *us, data.len() as u32, *wire] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(data);
    }
    std::fs::write(&cap, out).unwrap();

    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.path().join("simboxd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[capture]\nfile = {cap:?}\n\n[http]\nlisten = \"{api}\"\ntoken = \"{TOKEN}\"\n\n\
             [daemon]\nuser = \"\"\ngroup = \"\"\nworkers = 1\n\n[detection]\nmax_lines = {CAP}\n\n\
             [storage]\npath = {st:?}\n",
            cap = cap.display().to_string(),
            st = dir.path().join("state/alerts.redb").display().to_string(),
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&cfg, &dir.path().join("log"));
    d.wait_healthy(api, Duration::from_secs(30));
    // Until the replay is done and the engine idle.
    let t0 = Instant::now();
    let m = loop {
        let text = http_get(api, "/metrics", Some(TOKEN)).unwrap().body;
        let m = parse_prometheus(&text).unwrap();
        if sample(&m, "simboxd_capture_running") == Some(0.0)
            && sample(&m, "simboxd_queue_packets") == Some(0.0)
            && sample(&m, "simboxd_packets_processed_total") == Some(recs.len() as f64)
        {
            break m;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "replay not done: {text}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let get = |s: &str| sample(&m, s).unwrap_or(0.0);
    // Every packet processed, none dropped.
    assert_eq!(get("simboxd_packets_dropped_total"), 0.0);
    let held: f64 = ["normal", "suspect", "gateway"]
        .iter()
        .map(|v| get(&format!("simboxd_lines{{verdict=\"{v}\"}}")))
        .sum();
    let shed = get("simboxd_line_table_events_total{kind=\"lines_shed_table_full\"}");
    assert_eq!(held, CAP as f64, "the table is full");
    assert_eq!(get("simboxd_evictions_total{table=\"lines\"}"), 0.0);
    // Every line that wanted a profile has one or was shed, counted once.
    assert_eq!(
        shed,
        (own as u32 + BURST) as f64 - held,
        "shed lines counted once each"
    );
    assert!(
        d.log_text().contains("shedding new lines"),
        "the shedding episode is logged: {}",
        d.log_text()
    );
    // The known gateway is still watched and flagged.
    let r = http_get(api, &format!("/api/v1/lines/{GATEWAY}"), Some(TOKEN)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["verdict"]["verdict"], "gateway", "{}", r.body);
    assert!(d.stop(Duration::from_secs(20)).expect("stops").success());
}
