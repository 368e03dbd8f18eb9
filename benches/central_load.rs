//! Load figure of `simboxd central` (issue 12): line evidence and sensor alerts per second one
//! central instance consumes, applies, commits and acknowledges from a real `nats-server -js`.
//!
//! `cargo bench --bench central_load [-- LINES]` (default 20 000 line summaries from 4 sensors
//! plus 5 000 sensor alerts; uses the bench profile's `simboxd`). The messages are published to
//! the stream first, then the central is started and timed until its metrics count them all.
//! Without `--bench` (`cargo test --all-targets`) it is a smoke run on a few hundred messages.

#[path = "../tests/common/nats.rs"]
mod nats;

use simboxd_core::config::NetworkConfig;
use simboxd_core::detect::synth::{self, GatewaySpec};
use simboxd_core::detect::{DetectionConfig, LineEvidence, LineTable};
use simboxd_core::model::{Event, Timestamp};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One real line's evidence (a synthetic 4-channel gateway through the line table).
fn template() -> LineEvidence {
    let net = NetworkConfig {
        domestic: vec![synth::DOMESTIC.parse().unwrap()],
        ..Default::default()
    };
    let mut t = LineTable::new(&DetectionConfig::default(), &net);
    let line: IpAddr = "10.0.0.1".parse().unwrap();
    let g = GatewaySpec {
        channels: 4,
        ..Default::default()
    };
    let mut last = Timestamp::default();
    for e in synth::gateway(line, 3, 0.0, 1800.0, &g) {
        let ts = match &e {
            Event::CallEnded(r) => r.end.unwrap_or(r.start),
            Event::CallStarted { ts, .. } | Event::CallAnswered { ts, .. } => *ts,
            _ => last,
        };
        if ts.secs_since(last) >= 5.0 {
            t.evaluate(ts);
            last = ts;
        }
        t.on_event(&e);
    }
    t.evaluate(last);
    t.evidence(line).expect("evidence")
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let lines: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if full { 20_000 } else { 200 });
    let alerts = lines / 4;
    let sensors = 4;
    if !nats::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut nats = nats::NatsServer::start(&dir.path().join("nats"), free_port());
    let url = nats.url();

    // Publish: evidence of `lines` lines (4 per premises sharing a peer), over `sensors`
    // sensors, and `alerts` sensor alerts.
    let tpl = template();
    let alert_tpl = serde_json::json!({
        "id": "sbx-0", "seq": 0, "idempotency_key": "", "state": "raised",
        "severity": "critical", "line": "10.0.0.1", "site": null, "verdict": "gateway",
        "score": 0.9, "reasons": [], "first_seen": "2026-01-05T09:00:00Z",
        "last_seen": "2026-01-05T09:00:00Z", "flagged_at": null,
        "created": "2026-01-05T09:00:00Z", "type": "line"
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t_pub = Instant::now();
    rt.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "SIMBOXD".into(),
            subjects: vec!["simboxd.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let mut acks = Vec::new();
        for i in 0..lines {
            let sensor = format!("tap-{}", i % sensors);
            let mut e = tpl.clone();
            e.line = IpAddr::V4(Ipv4Addr::from(0x0A00_0000u32 + i as u32));
            e.peer = Some(IpAddr::V4(Ipv4Addr::from(0xCB00_7100u32 + (i / 4) as u32)));
            let mut msg = serde_json::to_value(&e).unwrap();
            msg["sensor"] = sensor.clone().into();
            let subject = format!("simboxd.{sensor}.lines");
            acks.push(
                js.publish(subject, serde_json::to_vec(&msg).unwrap().into())
                    .await
                    .unwrap(),
            );
            // The client bounds the acks in flight: await them in chunks.
            if acks.len() >= 1000 {
                for a in acks.drain(..) {
                    a.await.unwrap();
                }
            }
        }
        for i in 0..alerts {
            let mut a = alert_tpl.clone();
            a["idempotency_key"] = format!("sbx-{i:016x}:0").into();
            a["id"] = format!("sbx-{i:016x}").into();
            let subject = format!("simboxd.tap-{}.alerts", i % sensors);
            acks.push(
                js.publish(subject, serde_json::to_vec(&a).unwrap().into())
                    .await
                    .unwrap(),
            );
            if acks.len() >= 1000 {
                for a in acks.drain(..) {
                    a.await.unwrap();
                }
            }
        }
        for a in acks {
            a.await.unwrap();
        }
    });
    let published = t_pub.elapsed();

    let api = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("central.toml");
    std::fs::write(
        &cfg,
        format!(
            "[stream]\nurl = \"{url}\"\n[central]\nstate_path = \"{s}/central.redb\"\n\
             [storage]\npath = \"{s}/alerts.redb\"\nmax_alerts = 1000000\n[http]\nlisten = \"{api}\"\n\
             token = \"bench-token-0123456789\"\n",
            s = dir.path().display()
        ),
    )
    .unwrap();
    let t0 = Instant::now();
    let mut central = Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .args(["central", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let total = (lines + alerts) as f64;
    let consumed = || -> Option<f64> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&api).ok()?;
        s.write_all(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bench-token-0123456789\r\nConnection: close\r\n\r\n".as_bytes(),
        )
        .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(
            body.lines()
                .filter(|l| l.starts_with("simboxd_central_messages_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    };
    let mut first = None;
    loop {
        let n = consumed().unwrap_or(0.0);
        if n > 0.0 && first.is_none() {
            first = Some(t0.elapsed());
        }
        if n >= total || t0.elapsed() > Duration::from_secs(600) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let all = t0.elapsed();
    let first = first.unwrap_or(all);
    let busy = (all - first).as_secs_f64().max(1e-3);
    // CPU time of the central process (user + system), from start: on a loaded machine the
    // wall-clock rate moves with the other load, the CPU time per message much less.
    let cpu = cpu_secs(central.id()).unwrap_or(f64::NAN);
    println!(
        "central_load: {lines} line summaries ({sensors} sensors) + {alerts} sensor alerts \
         (published in {:.2} s); central consumed, committed and acked them in {:.2} s after the \
         first: {:.0} messages/s ({:.0} summaries/s, {:.0} alerts/s at that mix); start to first \
         message {:.2} s",
        published.as_secs_f64(),
        busy,
        total / busy,
        lines as f64 / busy,
        alerts as f64 / busy,
        first.as_secs_f64()
    );
    println!(
        "central_load: central CPU time (user + system, from start) {cpu:.2} s = {:.0} µs per message",
        cpu / total * 1e6
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(central.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = central.wait();
    nats.stop();
}

/// User + system CPU seconds of process `pid` so far (`/proc/PID/stat`, fields 14 and 15).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Some(ticks / hz)
}
