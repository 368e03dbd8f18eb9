//! Correlation across workers: what spans lines is formed over every line, whatever the worker
//! count.
//!
//! Contract: workers own disjoint sets of lines (sharded by line), but a site (the lines of one
//! premises) and a threat (one attacking peer) span lines of several workers. The [`Correlator`]
//! holds, shared by all workers: one threat table, fed the events of every worker (so a peer
//! scanning lines of two workers is one scan, with all its targets), and the site candidates each
//! worker published, which every worker groups together with its own
//! ([`LineTable::set_remote_candidates`](simboxd_core::detect::LineTable::set_remote_candidates)).
//! Workers publish and pick up candidates when they change (one atomic load per packet
//! otherwise). When a replay ends, each worker waits at [`Correlator::arrive_and_wait`] for the
//! others to finish, then re-forms its sites from the final candidates: the verdicts and sites
//! are those of `workers = 1`.

use crate::privacy::Pseudonymizer;
use simboxd_core::config::NetworkConfig;
use simboxd_core::detect::SiteCandidate;
use simboxd_core::model::{Event, Timestamp};
use simboxd_core::threats::{Threat, ThreatTable, ThreatsConfig};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a worker that finished its replay waits for the others before it re-forms sites
/// with what it has (a worker that died never arrives).
const FINISH_WAIT: Duration = Duration::from_secs(60);

pub struct Correlator {
    threats: Mutex<ThreatTable>,
    privacy: Pseudonymizer,
    /// Site candidates per worker.
    sites: Mutex<Vec<Vec<SiteCandidate>>>,
    /// Bumped on every change of `sites`.
    generation: AtomicU64,
    workers: usize,
    finished: AtomicUsize,
    /// Threat events waiting for the `[stream]` hand-over (`None`: not publishing).
    stream_events: Mutex<Option<StreamEvents>>,
}

/// Threat events held for the stream between two hand-overs: at most `cap`, of them at most
/// `per_peer` per attacking peer, the rest counted. The caps are checked before an event is
/// copied (and pseudonymised): a flood costs a counter, not a copy per request.
struct StreamEvents {
    events: Vec<crate::stream::ThreatEvent>,
    cap: usize,
    per_peer: usize,
    /// Events kept per attacking peer since the last hand-over (at most `cap` entries).
    kept_per_peer: std::collections::HashMap<std::net::IpAddr, usize>,
    dropped: u64,
    /// Events copied since the start (equals the events kept).
    copied: u64,
    network: NetworkConfig,
    toll_prefixes: Vec<String>,
}

impl StreamEvents {
    /// Whether an event of `peer` still fits this interval's caps (counted as dropped if not).
    fn admit(&mut self, peer: std::net::IpAddr) -> bool {
        if self.events.len() >= self.cap {
            self.dropped += 1;
            return false;
        }
        let n = self.kept_per_peer.entry(peer).or_default();
        if *n >= self.per_peer {
            self.dropped += 1;
            return false;
        }
        *n += 1;
        true
    }
}

impl Correlator {
    pub fn new(
        workers: usize,
        threats: &ThreatsConfig,
        network: &NetworkConfig,
        privacy: Pseudonymizer,
    ) -> Correlator {
        Correlator {
            threats: Mutex::new(ThreatTable::new(threats, network)),
            privacy,
            sites: Mutex::new(vec![Vec::new(); workers]),
            generation: AtomicU64::new(0),
            workers,
            finished: AtomicUsize::new(0),
            stream_events: Mutex::new(None),
        }
    }

    /// Keeps up to `cap` threat events per hand-over for `[stream]`, at most `per_peer` of one
    /// attacking peer (see [`take_stream_events`]).
    ///
    /// [`take_stream_events`]: Self::take_stream_events
    pub fn keep_stream_events(
        &self,
        cap: usize,
        per_peer: usize,
        threats: &ThreatsConfig,
        network: &NetworkConfig,
    ) {
        if let Ok(mut s) = self.stream_events.lock() {
            *s = Some(StreamEvents {
                events: Vec::new(),
                cap,
                per_peer,
                kept_per_peer: std::collections::HashMap::new(),
                dropped: 0,
                copied: 0,
                network: network.clone(),
                toll_prefixes: threats.toll_prefixes.clone(),
            });
        }
    }

    /// The threat events kept since the last call, in the order the workers handed them over,
    /// and how many did not fit.
    pub fn take_stream_events(&self) -> (Vec<crate::stream::ThreatEvent>, u64) {
        let Ok(mut s) = self.stream_events.lock() else {
            return (Vec::new(), 0);
        };
        match s.as_mut() {
            Some(s) => {
                s.kept_per_peer.clear();
                (
                    std::mem::take(&mut s.events),
                    std::mem::take(&mut s.dropped),
                )
            }
            None => (Vec::new(), 0),
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Feeds one worker's events to the shared threat table (those it reads: probes,
    /// registrations, ended calls).
    pub fn on_events(&self, events: &[Event]) {
        let mut relevant = events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Probe(_) | Event::Registration(_) | Event::CallEnded(_)
                )
            })
            .peekable();
        if relevant.peek().is_none() {
            return;
        }
        let mut keep = self.stream_events.lock().ok();
        let mut keep = keep.as_mut().and_then(|k| k.as_mut());
        if let Ok(mut t) = self.threats.lock() {
            for e in relevant {
                t.on_event(e);
                let Some(k) = keep.as_mut() else { continue };
                let Some(peer) =
                    crate::stream::ThreatEvent::attacker(e, &k.network, &k.toll_prefixes)
                else {
                    continue;
                };
                if !k.admit(peer) {
                    continue;
                }
                if let Some(te) = crate::stream::ThreatEvent::publishable(e, &self.privacy, &t) {
                    k.copied += 1;
                    k.events.push(te);
                }
            }
        }
    }

    /// Forgets idle peers as of a worker's packet time (an earlier time than another worker's
    /// expires nothing more).
    pub fn expire(&self, now: Timestamp) {
        if let Ok(mut t) = self.threats.lock() {
            t.expire(now);
        }
    }

    /// Every threat found so far, numbers as the output shows them.
    pub fn threats(&self) -> Vec<Threat> {
        let mut all = self.threats.lock().map(|t| t.threats()).unwrap_or_default();
        for t in &mut all {
            self.privacy.threat(t);
        }
        all
    }

    /// Threats found or grown since the last call, for alerting (pseudonymised by the alert side).
    pub fn take_threat_changes(&self) -> Vec<Threat> {
        self.threats
            .lock()
            .map(|mut t| t.take_changes())
            .unwrap_or_default()
    }

    pub fn reload(&self, threats: &ThreatsConfig, network: &NetworkConfig) {
        if let Ok(mut t) = self.threats.lock() {
            t.set_config(threats, network);
        }
    }

    /// Figures for the metrics: the shared threat table's evictions and sizes.
    pub fn threat_stats(&self) -> Option<(simboxd_core::model::Counters, Vec<(String, usize)>)> {
        let t = self.threats.lock().ok()?;
        let sizes = t
            .table_sizes()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        Some((t.evictions().clone(), sizes))
    }

    /// Replaces worker `worker`'s site candidates.
    pub fn publish_sites(&self, worker: usize, candidates: Vec<SiteCandidate>) {
        if let Ok(mut s) = self.sites.lock() {
            if let Some(slot) = s.get_mut(worker) {
                *slot = candidates;
                self.generation.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// The generation of the published candidates (changes whenever any worker publishes).
    pub fn sites_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Candidates every worker but `worker` published.
    pub fn remote_sites(&self, worker: usize) -> Vec<SiteCandidate> {
        let Ok(s) = self.sites.lock() else {
            return Vec::new();
        };
        s.iter()
            .enumerate()
            .filter(|(i, _)| *i != worker)
            .flat_map(|(_, c)| c.iter().copied())
            .collect()
    }

    /// A worker whose replay ended waits here until every worker has (or `FINISH_WAIT` passed).
    pub fn arrive_and_wait(&self) {
        self.finished.fetch_add(1, Ordering::AcqRel);
        let until = Instant::now() + FINISH_WAIT;
        while self.finished.load(Ordering::Acquire) < self.workers && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(line: &str, peer: &str) -> SiteCandidate {
        serde_json::from_value(serde_json::json!({
            "line": line, "peer": peer, "rhythm": {"median": 30.0, "asr": 0.9}
        }))
        .unwrap()
    }

    fn probe(peer: std::net::IpAddr, i: u32, user: &str) -> Event {
        Event::Probe(Box::new(simboxd_core::model::ProbeRecord {
            peer: std::net::SocketAddr::new(peer, 5060),
            line: std::net::IpAddr::from([10, 1, (i >> 8) as u8, i as u8]),
            method: simboxd_core::model::ProbeMethod::Invite,
            request_user: Some(user.to_string()),
            to_user: Some(user.to_string()),
            user_agent: Some("sipsak".into()),
            time: Timestamp::from_secs_f64(1_700_000_000.0 + f64::from(i) * 0.001),
            status: None,
        }))
    }

    #[test]
    fn a_flood_over_the_caps_is_counted_not_copied() {
        let c = Correlator::new(
            1,
            &ThreatsConfig::default(),
            &NetworkConfig::default(),
            Pseudonymizer::disabled(),
        );
        c.keep_stream_events(
            1000,
            300,
            &ThreatsConfig::default(),
            &NetworkConfig::default(),
        );
        let flooder = std::net::IpAddr::from([203, 0, 113, 40]);
        let flood: Vec<Event> = (0..5000).map(|i| probe(flooder, i, "100")).collect();
        c.on_events(&flood);
        let other: Vec<Event> = (0..10)
            .map(|i| probe(std::net::IpAddr::from([203, 0, 113, 41]), i, "100"))
            .collect();
        c.on_events(&other);
        let copied = |c: &Correlator| {
            c.stream_events
                .lock()
                .unwrap()
                .as_ref()
                .map_or(0, |s| s.copied)
        };
        assert_eq!(
            copied(&c),
            310,
            "only the events within the caps are copied"
        );
        let (kept, dropped) = c.take_stream_events();
        assert_eq!((kept.len(), dropped), (310, 4700));
        // A new interval: the per-peer count starts again; many peers meet the interval cap.
        let many: Vec<Event> = (0..2000)
            .map(|i| {
                probe(
                    std::net::IpAddr::from([198, 51, (i >> 8) as u8, i as u8]),
                    i,
                    "1",
                )
            })
            .collect();
        c.on_events(&many);
        let (kept, dropped) = c.take_stream_events();
        assert_eq!((kept.len(), dropped), (1000, 1000));
        assert_eq!(copied(&c), 1310);
    }

    #[test]
    fn pseudonymised_threat_events_carry_classes_and_pseudonyms_not_numbers() {
        let privacy = Pseudonymizer::with_key(b"0123456789abcdef-key").unwrap();
        let c = Correlator::new(
            1,
            &ThreatsConfig::default(),
            &NetworkConfig::default(),
            privacy.clone(),
        );
        c.keep_stream_events(
            100,
            100,
            &ThreatsConfig::default(),
            &NetworkConfig::default(),
        );
        let peer = std::net::IpAddr::from([203, 0, 113, 30]);
        c.on_events(&[
            probe(peer, 1, "011972599123456"),
            probe(peer, 2, "13800138000"),
            probe(peer, 3, "admin"),
        ]);
        let (kept, _) = c.take_stream_events();
        let users: Vec<String> = kept
            .iter()
            .map(|e| match e {
                crate::stream::ThreatEvent::Probe(p) => p.request_user.clone().unwrap(),
                _ => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(
            users,
            [
                format!("{};toll=011", privacy.exact("972599123456")),
                format!("{};number", privacy.exact("13800138000")),
                format!("{};name", privacy.exact("admin")),
            ]
        );
        let json = serde_json::to_string(&kept).unwrap();
        for raw in ["972599123456", "13800138000", "admin"] {
            assert!(!json.contains(raw), "{raw} in {json}");
        }
    }

    #[test]
    fn remote_sites_are_the_other_workers_and_generation_moves() {
        let c = Correlator::new(
            3,
            &ThreatsConfig::default(),
            &NetworkConfig::default(),
            Pseudonymizer::disabled(),
        );
        let g0 = c.sites_generation();
        c.publish_sites(0, vec![cand("10.0.0.1", "203.0.113.9")]);
        c.publish_sites(2, vec![cand("10.0.0.3", "203.0.113.9")]);
        assert!(c.sites_generation() > g0);
        let r: Vec<String> = c
            .remote_sites(0)
            .iter()
            .map(|x| x.line.to_string())
            .collect();
        assert_eq!(r, ["10.0.0.3"]);
        assert_eq!(c.remote_sites(1).len(), 2);
        // An unknown worker changes nothing.
        let g = c.sites_generation();
        c.publish_sites(7, vec![]);
        assert_eq!(c.sites_generation(), g);
    }
}
