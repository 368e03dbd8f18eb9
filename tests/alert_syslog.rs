//! Alerts delivered to a real rsyslogd (started here with its own config, listeners on loopback
//! ports and an omfile action into a temp file): UDP and TCP (octet counting) in RFC 5424 and
//! RFC 3164, TLS (RFC 5425) against rsyslog's gtls driver with a CA made here by openssl, a
//! TCP reconnect after rsyslog restarts, and RELP to `imrelp` restarted mid-stream.

mod common;
#[path = "common/episodes.rs"]
mod episodes;
use common::make_certs;
#[path = "common/siem.rs"]
mod siem;
use siem::{
    cef_kept, hostile_alerts, parse_independently, sent, HOSTILE_DETAIL, HOSTILE_SENSOR,
    HOSTILE_SITE, PYTHON,
};

use simboxd::alert::delivery::{syslog_target, Backoff, Delivery};
use simboxd::alert::format::{Origin, VERSION};
use simboxd::alert::outbox::{Outbox, StorageConfig};
use simboxd::alert::syslog::{Facility, SyslogConfig, SyslogFormat, SyslogFormatter, SyslogTarget};
use simboxd::alert::{Alert, AlertConfig, AlertManager};
use simboxd_core::model::{LineVerdict, Reason, Timestamp, VerdictLevel};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const GTLS: &str = "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so";
const IMRELP: &str = "/usr/lib/x86_64-linux-gnu/rsyslog/imrelp.so";

/// Whether a tool the test needs exists; absent outside CI: skip with a message.
fn have(path: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{path} is missing (CI=true); run scripts/setup.sh");
    }
    eprintln!("SKIP: {path} not installed (scripts/setup.sh installs it)");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child rsyslogd writing every message as `pri|host|app|procid|msgid|sd|msg` into `out`.
struct Rsyslog {
    child: Child,
    dir: PathBuf,
    out: PathBuf,
}

impl Rsyslog {
    fn start(dir: &Path, inputs: &str, global_extra: &str, wait_tcp: &[u16]) -> Rsyslog {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let out = dir.join("messages.log");
        let conf = format!(
            "global(workDirectory=\"{work}\" {global_extra})\n{inputs}\n\
             template(name=\"fields\" type=\"string\" \
             string=\"%pri%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n\")\n\
             action(type=\"omfile\" file=\"{out}\" template=\"fields\")\n",
            work = work.display(),
            out = out.display(),
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let r = Rsyslog {
            child,
            dir: dir.to_path_buf(),
            out,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        for &p in wait_tcp {
            while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
                assert!(Instant::now() < deadline, "rsyslogd did not listen on {p}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // imudp comes up with imtcp; give it a moment since UDP cannot be probed.
        std::thread::sleep(Duration::from_millis(300));
        r
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until `n` lines satisfy `pred`, returns them.
    fn wait_lines(&self, n: usize, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got: Vec<String> = self.lines().into_iter().filter(|l| pred(l)).collect();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A clean stop (SIGTERM): rsyslog writes out what it has taken, then exits.
    fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.dir.join("rsyslogd.pid"));
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
        poll: Duration::from_millis(100),
        timeout: Duration::from_secs(3),
        dead_letter_after: 5,
    }
}

/// The alerts of one gateway episode: raised (suspect), updated (gateway), cleared.
fn gateway_episode() -> Vec<Alert> {
    let t0 = 1_764_400_000_000_000i64;
    let reasons = |n: usize| -> Vec<Reason> {
        [
            (
                "inbound_many_numbers",
                "212 inbound calls from 203.0.113.10 to 198 distinct numbers",
            ),
            ("channel_ceiling", "concurrency at 8 for 35 min"),
            ("short_calls", "median call 41 s, answer ratio 0.31"),
        ]
        .iter()
        .take(n)
        .map(|(s, d)| Reason {
            signal: s.to_string(),
            value: 1.0,
            strength: 0.8,
            detail: d.to_string(),
        })
        .collect()
    };
    let v = |level, score, secs: i64, calls, n| LineVerdict {
        line: "100.64.7.9".parse().unwrap(),
        verdict: level,
        score,
        flagged_at: None,
        site: Some("cottage \"A\" [east]".into()),
        reasons: reasons(n),
        updated: Timestamp(t0 + secs * 1_000_000),
        calls,
        max_concurrent_calls: 8,
        peer: Some("203.0.113.10".parse().unwrap()),
    };
    let mut m = AlertManager::new(AlertConfig {
        clear_after_secs: 600,
        ..Default::default()
    });
    let mut out = m.on_verdict(&v(VerdictLevel::Suspect, 0.55, 0, 40, 1));
    out.extend(m.on_verdict(&v(VerdictLevel::Gateway, 0.91, 300, 120, 3)));
    out.extend(m.expire(Timestamp(t0 + 1200 * 1_000_000)));
    assert_eq!(out.len(), 3);
    out
}

fn formatter(format: SyslogFormat, host: &str) -> SyslogFormatter {
    SyslogFormatter {
        format,
        facility: Facility::Local0,
        hostname: host.to_string(),
        procid: 4242,
        sd_enterprise: SyslogConfig::default().sd_enterprise,
        origin: Origin::new("tap-01"),
    }
}

async fn deliver_all(outbox: &Arc<Outbox>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let b = outbox.backlog().unwrap();
        if b.values().all(|&n| n == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "not delivered in time: {b:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_tcp_in_5424_and_3164_reach_rsyslog() {
    if !have(RSYSLOGD) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (u1, u2, t1, t2) = (free_udp_port(), free_udp_port(), free_port(), free_port());
    let inputs = format!(
        "module(load=\"imudp\")\nmodule(load=\"imtcp\")\n\
         input(type=\"imudp\" address=\"127.0.0.1\" port=\"{u1}\")\n\
         input(type=\"imudp\" address=\"127.0.0.1\" port=\"{u2}\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{t1}\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{t2}\")"
    );
    let rs = Rsyslog::start(dir.path(), &inputs, "", &[t1, t2]);

    let specs = [
        (
            format!("udp://127.0.0.1:{u1}"),
            SyslogFormat::Rfc5424,
            "u5424",
        ),
        (
            format!("tcp://127.0.0.1:{t1}"),
            SyslogFormat::Rfc5424,
            "t5424",
        ),
        (
            format!("udp://127.0.0.1:{u2}"),
            SyslogFormat::Rfc3164,
            "u3164",
        ),
        (
            format!("tcp://127.0.0.1:{t2}"),
            SyslogFormat::Rfc3164,
            "t3164",
        ),
    ];
    let targets: Vec<_> = specs
        .iter()
        .map(|(url, f, host)| {
            let t: SyslogTarget = url.parse().unwrap();
            syslog_target(t, formatter(*f, host), None, Duration::from_secs(3)).unwrap()
        })
        .collect();
    let names: Vec<String> = targets.iter().map(|t| t.name()).collect();
    assert_eq!(names[0], specs[0].0);
    let storage = StorageConfig {
        path: dir.path().join("outbox.redb"),
        ..Default::default()
    };
    let outbox = Arc::new(Outbox::open(&storage, names).unwrap());
    let delivery = Delivery::start(outbox.clone(), targets, backoff());
    let alerts = gateway_episode();
    for a in &alerts {
        assert!(delivery.submit(a).unwrap());
    }
    deliver_all(&outbox, Duration::from_secs(15)).await;

    let id = &alerts[0].id;
    // RFC 5424 over UDP and over octet-counted TCP: every header field and the SD parsed.
    for host in ["u5424", "t5424"] {
        let got = rs.wait_lines(3, |l| l.contains(&format!("|{host}|")));
        assert_eq!(got.len(), 3, "{host}: {:#?}", rs.lines());
        let states = ["raised", "updated", "cleared"];
        // local0: warning 132, critical 130, notice (clear) 133.
        let pris = ["132", "130", "133"];
        for (i, l) in got.iter().enumerate() {
            let f: Vec<&str> = l.splitn(7, '|').collect();
            assert_eq!(f[0], pris[i], "{l}");
            assert_eq!(&f[1..5], &[host, "simboxd", "4242", states[i]], "{l}");
            assert!(
                f[5].starts_with(&format!(
                    "[simboxd@32473 id=\"{id}\" seq=\"{i}\" key=\"{id}:{i}\""
                )),
                "{l}"
            );
            assert!(
                f[5].contains(r#"line="100.64.7.9" peer="203.0.113.10""#),
                "{l}"
            );
            assert!(
                f[5].ends_with(&format!(r#" sensor="tap-01" version="{VERSION}"]"#)),
                "{l}"
            );
            assert!(f[5].contains(r#"site="cottage \"A\" [east\]""#), "{l}");
            assert!(f[6].contains("line 100.64.7.9"), "{l}");
        }
        assert!(
            got[1].contains(r#"verdict="gateway" score="0.910""#),
            "{}",
            got[1]
        );
        assert!(
            got[1].contains("channel_ceiling (concurrency at 8 for 35 min)"),
            "{}",
            got[1]
        );
    }
    // RFC 3164: rsyslog parses host, tag and pid; the id and key travel in the text.
    for host in ["u3164", "t3164"] {
        let got = rs.wait_lines(3, |l| l.contains(&format!("|{host}|")));
        assert_eq!(got.len(), 3, "{host}: {:#?}", rs.lines());
        for (i, l) in got.iter().enumerate() {
            let f: Vec<&str> = l.splitn(7, '|').collect();
            assert_eq!(&f[1..4], &[host, "simboxd", "4242"], "{l}");
            assert!(
                f[6].contains(&format!("[{id} key={id}:{i} severity=")),
                "{l}"
            );
        }
        assert!(
            got[1].contains("updated line 100.64.7.9 gateway score 0.91"),
            "{}",
            got[1]
        );
    }
    // Exactly 3 per target: nothing sent twice.
    assert_eq!(rs.lines().len(), 12, "{:#?}", rs.lines());
    let st = delivery.status();
    assert!(
        st.iter().all(|s| s.delivered == 3 && s.pending == 0),
        "{st:?}"
    );
    delivery.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_reconnects_after_rsyslog_restart() {
    if !have(RSYSLOGD) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let inputs = format!(
        "module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")"
    );
    let mut rs = Rsyslog::start(dir.path(), &inputs, "", &[port]);
    let t: SyslogTarget = format!("tcp://127.0.0.1:{port}").parse().unwrap();
    let target = syslog_target(
        t,
        formatter(SyslogFormat::Rfc5424, "re"),
        None,
        Duration::from_secs(2),
    )
    .unwrap();
    let storage = StorageConfig {
        path: dir.path().join("outbox.redb"),
        ..Default::default()
    };
    let outbox = Arc::new(Outbox::open(&storage, vec![target.name()]).unwrap());
    let delivery = Delivery::start(outbox.clone(), vec![target], backoff());
    let alerts = gateway_episode();
    delivery.submit(&alerts[0]).unwrap();
    deliver_all(&outbox, Duration::from_secs(10)).await;
    assert_eq!(rs.wait_lines(1, |l| l.contains("|re|")).len(), 1);

    // Receiver goes away; the alert raised meanwhile waits in the outbox.
    rs.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    delivery.submit(&alerts[1]).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(outbox.backlog().unwrap().values().sum::<u64>(), 1);

    // Back on the same port: the worker reconnects and delivers it.
    let rs2 = Rsyslog::start(dir.path(), &inputs, "", &[port]);
    deliver_all(&outbox, Duration::from_secs(15)).await;
    let got = rs2.wait_lines(2, |l| l.contains("|re|"));
    let keys: Vec<bool> = alerts[..2]
        .iter()
        .map(|a| {
            got.iter()
                .any(|l| l.contains(&format!("key=\"{}\"", a.idempotency_key)))
        })
        .collect();
    assert_eq!(keys, vec![true, true], "{got:#?}");
    assert_eq!(got.len(), 2, "{got:#?}");
    delivery.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_reaches_rsyslog_gtls_and_checks_the_certificate() {
    if !have(RSYSLOGD) || !have(GTLS) || !have("/usr/bin/openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    // A second CA that did not sign the server: delivery must refuse to talk.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    make_certs(&other);

    let port = free_port();
    let global = format!(
        "DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{c}/ca.pem\" \
         DefaultNetstreamDriverCertFile=\"{c}/srv.pem\" DefaultNetstreamDriverKeyFile=\"{c}/srv.key\"",
        c = certs.display()
    );
    let inputs = format!(
        "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")"
    );
    let rs = Rsyslog::start(dir.path(), &inputs, &global, &[port]);
    let url = format!("tls://127.0.0.1:{port}");

    // Untrusted CA: nothing delivered; a certificate the target presents that is not trusted
    // refuses the alert, which goes to the dead-letter list after `dead_letter_after` (5)
    // attempts, with backoff between them.
    {
        let t: SyslogTarget = url.parse().unwrap();
        let target = syslog_target(
            t,
            formatter(SyslogFormat::Rfc5424, "badca"),
            Some(&other.join("ca.pem")),
            Duration::from_secs(2),
        )
        .unwrap();
        let storage = StorageConfig {
            path: dir.path().join("bad.redb"),
            ..Default::default()
        };
        let outbox = Arc::new(Outbox::open(&storage, vec![url.clone()]).unwrap());
        let delivery = Delivery::start(outbox.clone(), vec![target], backoff());
        delivery.submit(&gateway_episode()[0]).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let st = delivery.status();
        assert!(
            st[0].failures == 5 && st[0].refused == 5 && st[0].delivered == 0,
            "{st:?}"
        );
        assert!(
            st[0].pending == 0 && st[0].dead_letter == 1 && st[0].dead_lettered == 1,
            "{st:?}"
        );
        let dl = outbox.dead_letters(10).unwrap();
        assert!(dl[0].mark.error.contains("refused"), "{dl:?}");
        assert!(
            st[0].last_error.as_deref().unwrap_or("").contains("TLS"),
            "{st:?}"
        );
        delivery.shutdown(Duration::from_secs(2)).await;
    }

    let t: SyslogTarget = url.parse().unwrap();
    let target = syslog_target(
        t,
        formatter(SyslogFormat::Rfc5424, "tls5424"),
        Some(&certs.join("ca.pem")),
        Duration::from_secs(3),
    )
    .unwrap();
    let storage = StorageConfig {
        path: dir.path().join("outbox.redb"),
        ..Default::default()
    };
    let outbox = Arc::new(Outbox::open(&storage, vec![url.clone()]).unwrap());
    let delivery = Delivery::start(outbox.clone(), vec![target], backoff());
    let alerts = gateway_episode();
    for a in &alerts {
        delivery.submit(a).unwrap();
    }
    deliver_all(&outbox, Duration::from_secs(15)).await;
    let got = rs.wait_lines(3, |l| l.contains("|tls5424|"));
    assert_eq!(got.len(), 3, "{:#?}", rs.lines());
    assert!(
        got[1].starts_with("130|tls5424|simboxd|4242|updated|[simboxd@32473 "),
        "{}",
        got[1]
    );
    assert!(got.iter().all(|l| !l.contains("badca")));
    delivery.shutdown(Duration::from_secs(2)).await;
}
/// `n` distinct alerts (raised, updated, cleared over `n / 3` lines).
fn many_alerts(n: usize) -> Vec<Alert> {
    episodes::episode_alerts(n, |s, i| format!("{s} on line {i}"))
}

/// RELP: every message is acknowledged by `imrelp`, so an rsyslog restarted in the middle of
/// a stream loses nothing: what was not acknowledged is sent again on a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_to_imrelp_restarted_mid_stream_loses_nothing() {
    if !have(RSYSLOGD) || !have(IMRELP) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let inputs = format!(
        "module(load=\"imrelp\")\ninput(type=\"imrelp\" address=\"127.0.0.1\" port=\"{port}\")"
    );
    let mut rs = Rsyslog::start(dir.path(), &inputs, "", &[port]);
    let t: SyslogTarget = format!("relp://127.0.0.1:{port}").parse().unwrap();
    let target = syslog_target(
        t,
        formatter(SyslogFormat::Rfc5424, "relp"),
        None,
        Duration::from_secs(3),
    )
    .unwrap();
    assert_eq!(target.name(), format!("relp://127.0.0.1:{port}"));
    let storage = StorageConfig {
        path: dir.path().join("outbox.redb"),
        ..Default::default()
    };
    let outbox = Arc::new(Outbox::open(&storage, vec![target.name()]).unwrap());
    let delivery = Delivery::start(outbox.clone(), vec![target], backoff());
    const N: usize = 60;
    let alerts = many_alerts(N);
    let owed = |ob: &Outbox| ob.backlog().unwrap().values().sum::<u64>();

    // A stream of alerts; rsyslog is stopped and started again after the first 20 were sent.
    for (k, a) in alerts.iter().enumerate() {
        assert!(delivery.submit(a).unwrap());
        tokio::time::sleep(Duration::from_millis(15)).await;
        if k == 20 {
            rs.terminate();
        }
        if k == 35 {
            rs = Rsyslog::start(dir.path(), &inputs, "", &[port]);
        }
    }
    deliver_all(&outbox, Duration::from_secs(30)).await;
    assert_eq!(owed(&outbox), 0);
    // Acknowledged means written: every key is in rsyslog's output file, in order of first
    // arrival; a message acknowledged just before the stop may come twice, never zero times.
    let got = rs.wait_lines(N, |l| l.contains("|relp|"));
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    for l in &got {
        if let Some(k) = alerts
            .iter()
            .map(|a| a.idempotency_key.as_str())
            .find(|k| l.contains(&format!("key=\"{k}\"")))
        {
            *seen.entry(k.to_string()).or_insert(0) += 1;
        }
    }
    let missing: Vec<&str> = alerts
        .iter()
        .map(|a| a.idempotency_key.as_str())
        .filter(|k| !seen.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "lost over RELP: {missing:?}");
    let dups = seen.values().filter(|&&n| n > 1).count();
    let st = delivery.status();
    assert!(st[0].failures >= 1, "the restart was noticed: {st:?}");
    assert_eq!(st[0].delivered, N as u64, "{st:?}");
    eprintln!(
        "RELP: {N} alerts, {} lines written, {dups} sent twice, {} failed attempts during the restart",
        got.len(),
        st[0].failures
    );
    delivery.shutdown(Duration::from_secs(2)).await;
}

/// Waits until `path` has `n` lines.
fn wait_file_lines(path: &Path, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count();
        if got >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// RFC 5424 (SD parsed by rsyslog's mmpstrucdata), ECS and CEF targets configured as a user
/// writes them (per-target `format`, `[alert] sensor`, `[syslog] sd_enterprise`), delivered to
/// rsyslog over TCP and read back by independent parsers: every hostile value round-trips as
/// each format documents, and the peer, sensor and version are fields of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_cef_and_5424_reach_rsyslog_and_parse_independently() {
    if !have(RSYSLOGD) || !have(PYTHON) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let names = ["r5424", "recs", "rcef"];
    let file = |n: &str| dir.path().join(format!("{n}.log"));
    let mut inputs = String::from(
        "module(load=\"imtcp\")\nmodule(load=\"mmpstrucdata\")\n\
         template(name=\"tsv\" type=\"string\" \
         string=\"%msgid%\\t%hostname%\\t%app-name%\\t%procid%\\t%$!rfc5424-sd%\\t%msg%\\n\")\n",
    );
    for (port, name) in ports.iter().zip(names) {
        inputs.push_str(&format!(
            "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"{name}\")\n\
             ruleset(name=\"{name}\") {{ action(type=\"mmpstrucdata\") \
             action(type=\"omfile\" file=\"{}\" template=\"tsv\") stop }}\n",
            file(name).display()
        ));
    }
    let _rs = Rsyslog::start(dir.path(), &inputs, "", &ports);

    let text = format!(
        "[alert]\nsensor = {sensor}\n\n[syslog]\nhostname = \"fmt\"\nsd_enterprise = 99999\n\
         targets = [\"tcp://127.0.0.1:{p0}\", {{ url = \"tcp://127.0.0.1:{p1}\", format = \"ecs\" }},\n\
         {{ url = \"tcp://127.0.0.1:{p2}\", format = \"cef\" }}]\n\n[storage]\npath = \"{db}\"\n",
        sensor = toml::Value::String(HOSTILE_SENSOR.into()),
        p0 = ports[0],
        p1 = ports[1],
        p2 = ports[2],
        db = dir.path().join("outbox.redb").display(),
    );
    let cfg = simboxd::config::Config::parse(&text, "formats.toml").unwrap();
    let targets =
        simboxd::alert::delivery::targets_from_config(cfg.delivery(), Duration::from_secs(3))
            .unwrap();
    let target_names: Vec<String> = targets.iter().map(|t| t.name()).collect();
    let outbox = Arc::new(Outbox::open(&cfg.storage, target_names).unwrap());
    let delivery = Delivery::start(outbox.clone(), targets, backoff());
    let alerts = hostile_alerts();
    for a in &alerts {
        assert!(delivery.submit(a).unwrap());
    }
    deliver_all(&outbox, Duration::from_secs(15)).await;
    for n in names {
        assert_eq!(wait_file_lines(&file(n), alerts.len()), alerts.len(), "{n}");
    }
    delivery.shutdown(Duration::from_secs(2)).await;

    let sd = parse_independently("tsv", &file("r5424"));
    let ecs = parse_independently("tsv", &file("recs"));
    let cef = parse_independently("tsv", &file("rcef"));
    let one_line = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    for (i, a) in alerts.iter().enumerate() {
        let key = a.idempotency_key.as_str();
        let peer = a.peer.unwrap().to_string();
        let is_threat = a.threat.is_some();
        let site = a.site.as_deref();

        // RFC 5424: rsyslog parsed the header and the structured data.
        let r = &sd[i];
        assert_eq!(r[0], a.state.as_str(), "{r}");
        assert_eq!((&r[1], &r[2]), (&"fmt".into(), &"simboxd".into()), "{r}");
        let p = &r[4]["simboxd@99999"];
        assert_eq!(p["key"], key, "{r}");
        assert_eq!(p["line"], a.line.to_string(), "{r}");
        assert_eq!(p["peer"], peer.as_str(), "{r}");
        assert_eq!(p["sensor"], HOSTILE_SENSOR, "{r}");
        assert_eq!(p["version"], VERSION, "{r}");
        assert_eq!(p["type"], a.kind.as_str(), "{r}");
        match site {
            Some(s) => assert_eq!(p["site"], one_line(s).as_str(), "{r}"),
            None => assert!(p.get("site").is_none(), "{r}"),
        }
        assert_eq!(r[5], a.summary(3).as_str(), "{r}");

        // ECS: Python's json module read the MSG.
        let d = &ecs[i][5];
        assert_eq!(ecs[i][4], "", "ECS carries no structured data");
        assert_eq!(d["@timestamp"], a.created.to_rfc3339());
        assert_eq!(d["event"]["kind"], "alert");
        assert_eq!(d["event"]["id"], key);
        assert_eq!(d["event"]["action"], a.state.as_str());
        assert!(d["event"]["severity"].is_u64(), "{d}");
        assert_eq!(d["source"]["ip"], peer.as_str());
        assert_eq!(d["observer"]["name"], HOSTILE_SENSOR);
        assert_eq!(d["observer"]["version"], VERSION);
        assert_eq!(d["agent"]["version"], VERSION);
        assert_eq!(d["message"], a.summary(3).as_str());
        assert_eq!(
            d["simboxd"]["reasons"][0]["detail"],
            sent(HOSTILE_DETAIL).as_str()
        );
        assert!(d["related"]["ip"]
            .as_array()
            .unwrap()
            .contains(&peer.as_str().into()));
        if is_threat {
            assert!(d.get("destination").is_none(), "{d}");
            assert_eq!(d["rule"]["id"], "threat-scan");
            assert_eq!(
                d["simboxd"]["threat"]["user_agents"][0],
                "friendly|scanner=1"
            );
            assert_eq!(d["related"]["ip"].as_array().unwrap().len(), 4, "{d}");
        } else {
            assert_eq!(d["destination"]["ip"], a.line.to_string());
            assert_eq!(
                d["simboxd"]["site"],
                sent(HOSTILE_SITE).as_str(),
                "exact, NUL and newline included"
            );
        }

        // CEF: read by the test's own CEF parser.
        let c = &cef[i][5];
        let h: Vec<&str> = c["header"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(&h[..4], &["CEF:0", "simboxd", "simboxd", VERSION], "{c}");
        let x = &c["ext"];
        assert_eq!(x["externalId"], key, "{c}");
        assert_eq!(x["dvchost"], HOSTILE_SENSOR, "{c}");
        assert_eq!(x["cs6"], VERSION, "{c}");
        assert_eq!(x["act"], a.state.as_str(), "{c}");
        assert_eq!(x["msg"], a.summary(3).as_str(), "{c}");
        assert_eq!(x["rt"], (a.created.micros() / 1000).to_string(), "{c}");
        if is_threat {
            assert_eq!(h[4], "threat-scan");
            assert_eq!(x["c6a2"], peer.as_str(), "IPv6 peer: {c}");
            assert!(x.get("dst").is_none() && x.get("src").is_none(), "{c}");
        } else {
            assert_eq!(x["src"], peer.as_str(), "{c}");
            assert_eq!(x["dst"], a.line.to_string(), "{c}");
            assert_eq!(x["cs2"], cef_kept(&sent(HOSTILE_SITE)).as_str(), "{c}");
            assert_eq!(x["cs2Label"], "site", "{c}");
        }
    }
    // The levels: raised suspect (medium), updated gateway (high), cleared (low), scan (low).
    let sev: Vec<&str> = cef
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[5]["header"][6].as_str().unwrap())
        .collect();
    assert_eq!(sev, ["6", "9", "3", "3"]);
}
