//! Disk faults under the alert store (issue 17): a small tmpfs mounted here holds the outbox;
//! it is filled to the last byte (and later remounted read-only) while alerts are raised, then
//! space comes back. Alerts are held in memory and still delivered meanwhile, every alert
//! reaches the webhook exactly once, the store works again by itself, and the daemon's
//! `/healthz` answers 503 with the reason while the store cannot be written.
//! Needs root for `mount` (CI runs as root); elsewhere it skips with a message.

mod daemon_common;
#[path = "common/episodes.rs"]
mod episodes;

use daemon_common::{
    free_port, http_get, http_request, parse_prometheus, sample, Daemon, HttpReceiver, Received,
    TOKEN,
};
use simboxd::alert::delivery::{targets_from_config, Backoff, Delivery};
use simboxd::alert::outbox::Outbox;
use simboxd::alert::Alert;
use simboxd::config::Config;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `None` (after saying why) where mounting is impossible; panics under CI=true.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs {
                dir: dir.to_path_buf(),
            }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("cannot mount a tmpfs (CI=true): {why}");
                }
                eprintln!("SKIP: cannot mount a tmpfs here ({why}); run as root");
                None
            }
        }
    }

    fn remount(&self, opt: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(st.success(), "remount {opt}");
    }

    /// Writes a file until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        let p = self.dir.join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
/// `n` alerts from `n / 3` lines, each raised, updated, cleared; bulky reasons, so that the
/// store needs new pages for every few alerts.
fn alerts(n: usize) -> Vec<Alert> {
    episodes::episode_alerts(n, |s, i| {
        format!("{s} for line {i}: {}", "figures ".repeat(60))
    })
}

/// Idempotency keys the receiver accepted, with how often.
fn accepted(r: &HttpReceiver) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for got in r.received() {
        let v: serde_json::Value = serde_json::from_str(&got.body).expect("JSON body");
        *out.entry(v["idempotency_key"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    out
}

fn wait(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "{what} not reached in {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_read_only_store_holds_alerts_and_delivers_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("state"), "2m") else {
        return;
    };
    let hook = HttpReceiver::start();
    let text = format!(
        "[webhook]\nurl = \"http://{}/hook\"\ntimeout_secs = 2\n[storage]\npath = \"{}\"\n",
        hook.addr,
        fs.dir.join("alerts.redb").display()
    );
    let cfg = Config::parse(&text, "disk.toml").unwrap();
    let targets = targets_from_config(cfg.delivery(), Duration::from_secs(2)).unwrap();
    let outbox = Arc::new(Outbox::open(&cfg.storage, vec![targets[0].name()]).unwrap());
    let backoff = Backoff {
        initial: Duration::from_millis(40),
        max: Duration::from_millis(300),
        poll: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
        dead_letter_after: 5,
    };
    let delivery = Delivery::start(outbox.clone(), targets, backoff);
    let sent = alerts(120);
    let owed = |ob: &Outbox| ob.backlog().unwrap().values().sum::<u64>();

    // Space: the first alerts are stored and delivered.
    for a in &sent[..10] {
        assert!(delivery.submit(a).unwrap());
    }
    wait(Duration::from_secs(10), "first delivery", || {
        owed(&outbox) == 0
    });
    assert_eq!(outbox.len().unwrap(), 10);

    // The disk fills up while alerts keep coming: none is lost, all are delivered from memory.
    let filler = fs.fill();
    for a in &sent[10..100] {
        assert!(delivery.submit(a).unwrap(), "{} kept", a.idempotency_key);
    }
    assert!(outbox.is_broken(), "{:?}", outbox.figures());
    let why = outbox.health().unwrap_err();
    assert!(
        why.contains("not writable") && why.contains("alerts.redb"),
        "{why}"
    );
    let f = outbox.figures();
    assert!(
        !f.writable && f.held_alerts > 0 && f.write_errors > 0,
        "{f:?}"
    );
    assert_eq!(f.fault_episodes, 1);
    // Those held in memory go out now; those stored just before the fault wait for the reopen
    // (redb reads nothing more from a file whose write failed).
    let stored_while_full = 100 - f.held_alerts;
    assert!(
        stored_while_full < 100,
        "{stored_while_full} stored on a full disk"
    );
    let held_keys: Vec<String> = sent[stored_while_full..100]
        .iter()
        .map(|a| a.idempotency_key.clone())
        .collect();
    wait(Duration::from_secs(15), "delivery from memory", || {
        let got = accepted(&hook);
        held_keys.iter().all(|k| got.contains_key(k))
    });
    // Retries back off: a few reopen attempts, not thousands, in a second of fault.
    let errors_before = outbox.figures().write_errors;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let retries = outbox.figures().write_errors - errors_before;
    assert!(retries <= 6, "{retries} store retries in 1 s");
    eprintln!(
        "full disk: {stored_while_full} of 100 stored, {} held, {retries} retries in 1 s",
        f.held_alerts
    );

    // Space returns: the store reopens by itself and takes what was held, marks included.
    std::fs::remove_file(&filler).unwrap();
    wait(Duration::from_secs(20), "store writable again", || {
        !outbox.is_broken()
    });
    assert!(outbox.health().is_ok());
    assert_eq!(outbox.len().unwrap(), 100);
    assert_eq!(outbox.figures().held_alerts, 0);
    let held = outbox.get(&sent[99].idempotency_key).unwrap().unwrap();
    assert!(
        held.pending.is_empty() && held.delivered.len() == 1,
        "{held:?}"
    );

    wait(Duration::from_secs(10), "the rest after the reopen", || {
        owed(&outbox) == 0 && hook.received().len() >= 100
    });
    // A read-only state directory (remounted while simboxd is stopped, since a file open for
    // writing keeps it busy): the store cannot even be opened; the same, then writable again.
    delivery.shutdown(Duration::from_secs(2)).await;
    drop(outbox);
    fs.remount("ro");
    let targets = targets_from_config(cfg.delivery(), Duration::from_secs(2)).unwrap();
    let outbox = Arc::new(Outbox::open_or_hold(&cfg.storage, vec![targets[0].name()]));
    assert!(outbox.is_broken());
    let delivery = Delivery::start(outbox.clone(), targets, backoff);
    for a in &sent[100..] {
        assert!(delivery.submit(a).unwrap());
    }
    assert!(outbox.is_broken());
    let why = outbox.health().unwrap_err();
    assert!(
        why.contains("not writable") && why.contains("Read-only"),
        "{why}"
    );
    wait(Duration::from_secs(15), "delivery while read-only", || {
        hook.received().len() >= 120
    });
    fs.remount("rw");
    wait(
        Duration::from_secs(20),
        "store writable after remount",
        || !outbox.is_broken(),
    );
    assert_eq!(outbox.len().unwrap(), 120);
    assert_eq!(outbox.figures().fault_episodes, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Every alert reached the webhook exactly once, over both faults.
    let got = accepted(&hook);
    assert_eq!(got.len(), 120);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    for a in &sent {
        assert_eq!(
            got.get(&a.idempotency_key),
            Some(&1),
            "{}",
            a.idempotency_key
        );
    }
    delivery.shutdown(Duration::from_secs(2)).await;
    drop(outbox);
}

fn metrics(api: SocketAddr) -> Vec<(String, f64)> {
    let m = http_get(api, "/metrics", Some(TOKEN)).unwrap();
    assert_eq!(m.status, 200, "{}", m.body);
    parse_prometheus(&m.body).unwrap_or_else(|e| panic!("{e}\n{}", m.body))
}

fn key_of(r: &Received) -> String {
    serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["idempotency_key"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The daemon on a full state disk: `/healthz` 503 with the reason, alerts delivered from
/// memory, one of them refused by the webhook (400) and dead-lettered once it is stored;
/// space freed: healthy again, everything stored, the dead letter shown in the API and
/// delivered on request. Every alert reaches the webhook exactly once.
#[test]
fn daemon_on_a_full_disk_is_unhealthy_then_recovers_and_delivers_each_alert_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("state"), "1m") else {
        return;
    };
    // The webhook refuses the first alert it is offered (400) until told otherwise.
    let refused: Arc<Mutex<Option<String>>> = Arc::default();
    let refusing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (r2, on) = (refused.clone(), refusing.clone());
    let posts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p2 = posts.clone();
    let hook = HttpReceiver::start_with(Arc::new(move |req: &Received| {
        p2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let key = key_of(req);
        let mut r = r2.lock().unwrap();
        let first = r.get_or_insert_with(|| key.clone());
        if *first == key && on.load(std::sync::atomic::Ordering::SeqCst) {
            400
        } else {
            200
        }
    }));
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap");
    let conf = dir.path().join("simboxd.toml");
    std::fs::write(
        &conf,
        format!(
            "[capture]\nfile = {cap:?}\n\n[http]\nlisten = \"{api}\"\ntoken = \"{TOKEN}\"\n\n\
             [daemon]\nuser = \"\"\ngroup = \"\"\ntick_secs = 0.2\n\n\
             [alert]\nretry_initial_ms = 100\nretry_max_secs = 1\ndead_letter_after = 2\n\n\
             [webhook]\nurl = \"http://{hook}/hook\"\ntimeout_secs = 2\n\n\
             [storage]\npath = {st:?}\n",
            cap = cap.display().to_string(),
            hook = hook.addr,
            st = fs.dir.join("alerts.redb").display().to_string(),
        ),
    )
    .unwrap();
    // Full before the daemon starts: not even the store file can be made.
    let filler = fs.fill();
    let mut d = Daemon::start(&conf, &dir.path().join("daemon.log"));

    let t0 = Instant::now();
    let unhealthy = loop {
        if let Ok(Some(st)) = d.child.try_wait() {
            panic!("simboxd exited ({st}):\n{}", d.log_text());
        }
        // (Until the capture thread runs, that is the reason given.)
        if let Ok(r) = http_get(api, "/healthz", None) {
            if r.status != 0 && !r.body.contains("capture") {
                break r;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(unhealthy.status, 503, "{}", unhealthy.body);
    assert!(unhealthy.body.contains("alert store"), "{}", unhealthy.body);

    // The replay raises alerts; they go out from memory while the disk is full.
    let made = |s: &[(String, f64)]| -> f64 {
        ["raised", "updated", "cleared"]
            .iter()
            .filter_map(|st| sample(s, &format!("simboxd_alerts_total{{state=\"{st}\"}}")))
            .sum()
    };
    // Wait for the replay's last alert: the count stays put for 2 s, all but the refused one in.
    let (mut total, mut since) = (0.0, Instant::now());
    wait(
        Duration::from_secs(60),
        "alerts delivered from memory",
        || {
            let now = made(&metrics(api));
            if now != total {
                (total, since) = (now, Instant::now());
            }
            total > 0.0
                && since.elapsed() > Duration::from_secs(2)
                && accepted(&hook).len() as f64 == total - 1.0
        },
    );
    let s = metrics(api);
    assert_eq!(sample(&s, "simboxd_outbox_writable"), Some(0.0));
    assert_eq!(sample(&s, "simboxd_outbox_held_alerts"), Some(total));
    assert!(sample(&s, "simboxd_outbox_write_errors_total").unwrap_or(0.0) >= 1.0);
    assert_eq!(http_get(api, "/healthz", None).unwrap().status, 503);
    // The refused alert cannot be dead-lettered before it is stored: it stays owed.
    let dl = http_get(api, "/api/v1/alerts/dead-letter", Some(TOKEN)).unwrap();
    assert_eq!(dl.status, 200, "{}", dl.body);
    let log = d.log_text();
    assert_eq!(
        log.matches("alert store cannot be").count(),
        1,
        "the fault is logged once:\n{log}"
    );

    // Space returns: healthy again by itself, everything stored, the refused one dead-lettered.
    std::fs::remove_file(&filler).unwrap();
    let t_free = Instant::now();
    while !http_get(api, "/healthz", None).is_ok_and(|r| r.status == 200) {
        assert!(
            t_free.elapsed() < Duration::from_secs(30),
            "not healthy 30 s after space returned: {}\n{}",
            http_get(api, "/healthz", None).map_or(String::new(), |r| r.body),
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let recovered_in = t_free.elapsed();
    let t1 = Instant::now();
    loop {
        let s = metrics(api);
        if sample(&s, "simboxd_outbox_alerts") == Some(total)
            && s.iter()
                .any(|(k, v)| k.starts_with("simboxd_delivery_dead_letter{") && *v == 1.0)
        {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(20),
            "no dead letter after 20 s ({total} alerts):\n{}\n{}",
            s.iter()
                .filter(|(k, _)| k.contains("outbox") || k.contains("delivery_"))
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = metrics(api);
    assert_eq!(sample(&s, "simboxd_outbox_writable"), Some(1.0));
    assert_eq!(sample(&s, "simboxd_outbox_held_alerts"), Some(0.0));
    let dl = http_get(api, "/api/v1/alerts/dead-letter", Some(TOKEN))
        .unwrap()
        .json();
    let first = refused.lock().unwrap().clone().unwrap();
    assert_eq!(dl["total"], 1, "{dl}");
    assert_eq!(
        dl["dead_letters"][0]["alert"]["idempotency_key"],
        first.as_str()
    );
    // At least `dead_letter_after` (2): more when the refusals came while it was only in memory.
    assert!(
        dl["dead_letters"][0]["attempts"].as_u64().unwrap() >= 2,
        "{dl}"
    );
    assert!(
        dl["dead_letters"][0]["error"]
            .as_str()
            .unwrap()
            .contains("400"),
        "{dl}"
    );
    assert!(d.log_text().contains("moved to its dead-letter list"));

    // The operator retries it once the receiver takes it.
    refusing.store(false, std::sync::atomic::Ordering::SeqCst);
    let r = http_request(
        api,
        &format!(
            "POST /api/v1/alerts/dead-letter/retry HTTP/1.1\r\nHost: {api}\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["requeued"], 1);
    wait(
        Duration::from_secs(15),
        "retried dead letter delivered",
        || accepted(&hook).len() as f64 == total,
    );
    std::thread::sleep(Duration::from_millis(500));
    let got = accepted(&hook);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    let listed = http_get(api, "/api/v1/alerts?limit=1000", Some(TOKEN))
        .unwrap()
        .json();
    let mut keys: Vec<String> = listed["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["idempotency_key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    assert_eq!(keys, got.keys().cloned().collect::<Vec<_>>());
    // Every retry backed off: a handful of POSTs beyond one per alert, not hundreds a second.
    let posts = posts.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        posts as f64 <= total + 15.0,
        "{posts} POSTs for {total} alerts"
    );
    eprintln!(
        "daemon: {total} alerts, {posts} POSTs, healthy {recovered_in:?} after space returned, each delivered once"
    );
    d.stop(Duration::from_secs(15));
    drop(fs);
}
