//! `simulate` noise (config/scenario-noise.toml): every class is on the wire with its shape, read
//! back with the independent reader in `simulate_support`, for two seeds (`SIMBOXD_NOISE_SEEDS`
//! = "a,b" runs others); every attacker is labelled with its kind and exactly the lines it sent
//! to; the same seed gives the same bytes.

mod simulate_support;

use simboxd_sim::{generate, Labels, Scenario, ThreatKind};
use simulate_support::{looks_like_sip, parse_sip, read, rtp_header, Capture, Pkt, Sip};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::OnceLock;

const SCENARIO: &str = include_str!("../config/scenario-noise.toml");

struct World {
    seed: u64,
    labels: Labels,
    cap: Capture,
}

fn seeds() -> Vec<u64> {
    std::env::var("SIMBOXD_NOISE_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![5, 1234])
}

fn scenario() -> Scenario {
    Scenario::from_toml(SCENARIO, "config/scenario-noise.toml").expect("scenario parses")
}

fn worlds() -> &'static [World] {
    static W: OnceLock<Vec<World>> = OnceLock::new();
    W.get_or_init(|| {
        let sc = scenario();
        seeds()
            .into_iter()
            .map(|seed| {
                let mut out = Vec::new();
                let labels = generate(&sc, seed, &mut out).unwrap();
                let cap = read(&out);
                assert_eq!(cap.frames, labels.packets);
                World { seed, labels, cap }
            })
            .collect()
    })
}

impl World {
    /// Addresses of the lines of a named population.
    fn lines_named(&self, name: &str) -> Vec<IpAddr> {
        let v: Vec<IpAddr> = self
            .labels
            .lines
            .iter()
            .filter(|(_, l)| l.params["population"] == name)
            .map(|(a, _)| a.parse().unwrap())
            .collect();
        assert!(!v.is_empty(), "seed {}: no lines named {name}", self.seed);
        v
    }

    /// Attackers of one threat kind whose `noise` param (the scenario's kind) is `noise`.
    fn attackers(&self, kind: ThreatKind, noise: &str) -> Vec<(IpAddr, &simboxd_sim::ThreatLabel)> {
        self.labels
            .threats
            .iter()
            .filter(|(_, t)| t.kind == kind && t.params["noise"] == noise)
            .map(|(a, t)| (a.parse().unwrap(), t))
            .collect()
    }

    /// The one attacker of `kind` that targets `line`.
    fn attacker_of(&self, kind: ThreatKind, noise: &str, line: IpAddr) -> IpAddr {
        let v: Vec<IpAddr> = self
            .attackers(kind, noise)
            .into_iter()
            .filter(|(_, t)| t.targets.contains(&line.to_string()))
            .map(|(a, _)| a)
            .collect();
        assert_eq!(v.len(), 1, "seed {}: {noise} at {line}: {v:?}", self.seed);
        v[0]
    }

    fn between(&self, a: IpAddr, b: IpAddr) -> Vec<&Pkt> {
        self.cap
            .pkts
            .iter()
            .filter(|p| {
                (p.src.ip() == a && p.dst.ip() == b) || (p.src.ip() == b && p.dst.ip() == a)
            })
            .collect()
    }

    fn sip(&self, from: IpAddr, to: IpAddr) -> Vec<(&Pkt, Sip)> {
        self.cap
            .pkts
            .iter()
            .filter(|p| p.src.ip() == from && p.dst.ip() == to && looks_like_sip(&p.payload))
            .map(|p| (p, parse_sip(&p.payload).expect("valid SIP")))
            .collect()
    }
}

fn is_home(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.octets()[0] == 100 && (64..128).contains(&a.octets()[1]),
        IpAddr::V6(a) => a.octets()[0] == 0xfd,
    }
}

fn is_domestic(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(a) if a.octets()[0] == 198 && (18..20).contains(&a.octets()[1]))
}

/// The address ranges the simulator gives attackers (fixed and forged).
fn attacker_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            (o[..3] == [192, 0, 2] && o[3] >= 150)
                || (o[..3] == [198, 51, 100] && (30..200).contains(&o[3]))
                || (o[..3] == [203, 0, 113] && (140..200).contains(&o[3]))
        }
        IpAddr::V6(a) => a.segments()[..3] == [0x2001, 0xdb8, 0xbad],
    }
}

fn requests<'a>(v: &'a [(&Pkt, Sip)], method: &str) -> Vec<&'a Sip> {
    v.iter()
        .filter(|(_, s)| s.method.as_deref() == Some(method))
        .map(|(_, s)| s)
        .collect()
}

fn statuses(v: &[(&Pkt, Sip)]) -> Vec<u16> {
    v.iter().filter_map(|(_, s)| s.status).collect()
}

/// RTP packets (v2 header, not SIP) in a set of packets.
fn rtp_count(v: &[&Pkt]) -> usize {
    v.iter()
        .filter(|p| !looks_like_sip(&p.payload) && rtp_header(&p.payload).is_some())
        .count()
}

#[test]
fn labels_name_every_attacker_with_its_kind_and_exactly_the_lines_it_sent_to() {
    for w in worlds() {
        let kinds: BTreeSet<ThreatKind> = w.labels.threats.values().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            ThreatKind::ALL.into_iter().collect(),
            "seed {}: every threat kind",
            w.seed
        );
        // What the capture shows: attacker address -> lines it sent packets to.
        let mut seen: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
        for p in &w.cap.pkts {
            if attacker_range(p.src.ip()) {
                assert!(is_home(p.dst.ip()), "attackers only send to lines");
                seen.entry(p.src.ip())
                    .or_default()
                    .insert(p.dst.ip().to_string());
            }
        }
        let labelled: BTreeMap<IpAddr, BTreeSet<String>> = w
            .labels
            .threats
            .iter()
            .map(|(a, t)| (a.parse().unwrap(), t.targets.iter().cloned().collect()))
            .collect();
        assert_eq!(seen, labelled, "seed {}", w.seed);
        for (a, t) in &w.labels.threats {
            assert!(t.params["requests"].as_u64().unwrap() >= 1, "{a}");
            assert!(t.params["campaign"].is_string(), "{a}");
            for target in &t.targets {
                let l = &w.labels.lines[target];
                let notes = l.params["noise"].as_array().expect("hit lines list noise");
                assert!(
                    notes.iter().any(|n| n["kind"] == t.kind.as_str()),
                    "seed {}: {target} does not list {a}'s {:?}",
                    w.seed,
                    t.kind
                );
                assert!(l.params["unsolicited"].is_string());
            }
        }
    }
}

#[test]
fn targets_are_normal_lines_named_for_what_they_are_and_the_compromised_pbx_is_its_own_label() {
    for w in worlds() {
        let by_kind = |k: &str| -> Vec<&simboxd_sim::LineLabel> {
            w.labels
                .lines
                .values()
                .filter(|l| l.kind.as_str() == k)
                .collect()
        };
        for l in by_kind("camera")
            .into_iter()
            .chain(by_kind("household"))
            .chain(by_kind("office-pbx"))
        {
            assert_eq!(l.label, "normal");
        }
        let cp = by_kind("compromised-pbx");
        assert_eq!(cp.len(), 1);
        assert_eq!(cp[0].label, "compromised-pbx");
        assert!(cp[0].params["open_dial_prefix"].is_string());
        let gateways = w
            .labels
            .lines
            .values()
            .filter(|l| l.label == "gateway")
            .count();
        assert_eq!(gateways, 4, "seed {}", w.seed);
        // The labels file keeps its old fields and adds `threats`.
        let v = serde_json::to_value(&w.labels).unwrap();
        for key in [
            "seed",
            "start",
            "end",
            "duration_secs",
            "scale",
            "packets",
            "network",
            "lines",
            "threats",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let back: Labels = serde_json::from_value(v).unwrap();
        assert_eq!(&back, &w.labels);
    }
}

#[test]
fn sweep_hits_every_line_from_one_source_with_a_scanner_user_agent() {
    for w in worlds() {
        let scans = w.attackers(ThreatKind::Scan, "sweep");
        assert_eq!(scans.len(), 1);
        let (src, t) = &scans[0];
        let passes = t.params["passes"].as_u64().unwrap() as usize;
        let mut per_line: BTreeMap<IpAddr, usize> = BTreeMap::new();
        let mut uas = BTreeSet::new();
        for p in w.cap.pkts.iter().filter(|p| p.src.ip() == *src) {
            let s = parse_sip(&p.payload).expect("sweeps are plain SIP");
            assert_eq!(s.method.as_deref(), Some("OPTIONS"));
            *per_line.entry(p.dst.ip()).or_default() += 1;
            uas.insert(s.user_agent.clone().unwrap());
        }
        assert_eq!(
            per_line.len(),
            w.labels.lines.len(),
            "seed {}: every line",
            w.seed
        );
        assert!(
            per_line.values().all(|&n| n <= passes),
            "about one per line per pass"
        );
        assert_eq!(uas.len(), 1);
        let ua = uas.into_iter().next().unwrap();
        assert!(
            [
                "friendly-scanner",
                "sipcli/",
                "VaxSIPUserAgent",
                "PortSIP",
                "sipsak"
            ]
            .iter()
            .any(|x| ua.contains(x)),
            "{ua}"
        );
        // Lines answer 200/404 or nothing; lines without a SIP stack never answer.
        let mut answered = 0;
        for (line, l) in &w.labels.lines {
            let line: IpAddr = line.parse().unwrap();
            let back = w.sip(line, *src);
            assert!(
                statuses(&back).iter().all(|c| *c == 200 || *c == 404),
                "{line}"
            );
            if ["gaming", "app-calls", "gateway-scrambled", "gateway-opaque"]
                .contains(&l.kind.as_str())
            {
                assert!(
                    w.between(line, *src).iter().all(|p| p.src.ip() != line),
                    "{line}"
                );
            }
            answered += usize::from(!back.is_empty());
        }
        assert!(answered >= 5, "some lines answer: {answered}");
    }
}

#[test]
fn enumeration_walks_user_names_and_lines_answer_401_403_404() {
    for w in worlds() {
        let gw = w.lines_named("probed-gw")[0];
        let pbx = w.lines_named("pbx")[0];
        for (line, method) in [(gw, "REGISTER"), (pbx, "REGISTER"), (gw, "INVITE")] {
            let atk = w
                .attackers(ThreatKind::Enumeration, "enumeration")
                .into_iter()
                .find(|(_, t)| {
                    t.params["method"] == method && t.targets.contains(&line.to_string())
                })
                .map(|(a, _)| a)
                .unwrap();
            let sent = w.sip(atk, line);
            let reqs = requests(&sent, method);
            let users: BTreeSet<&str> = reqs.iter().map(|s| s.to_user.as_str()).collect();
            assert!(
                users.len() >= 30,
                "seed {} {method} at {line}: {} users",
                w.seed,
                users.len()
            );
            assert!(
                users.contains("100") || users.contains("admin"),
                "{users:?}"
            );
            let codes: BTreeSet<u16> = statuses(&w.sip(line, atk)).into_iter().collect();
            let finals: BTreeSet<u16> = codes.iter().copied().filter(|c| *c >= 200).collect();
            assert!(!finals.is_empty());
            assert!(
                finals.iter().all(|c| [401, 403, 404].contains(c)),
                "{method} at {line}: {codes:?}"
            );
            if line == pbx {
                // The PBX's own extensions draw 401 challenges, the rest 404.
                assert!(finals.contains(&401) && finals.contains(&404), "{codes:?}");
            }
        }
        // The gateway kept working while it was probed: calls from its softswitch.
        let ss: IpAddr = w.labels.lines[&gw.to_string()].params["softswitch"]
            .as_str()
            .unwrap()
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .ip();
        assert!(
            requests(&w.sip(ss, gw), "INVITE").len() >= 5,
            "seed {}",
            w.seed
        );
    }
}

fn is_premium_dial(user: &str) -> bool {
    let prefixes = ["9011", "0011", "011", "900", "000", "00", "+"];
    prefixes.iter().any(|p| {
        user.strip_prefix(p).is_some_and(|rest| {
            rest.len() >= 10 && rest.chars().all(|c| c.is_ascii_digit()) && !rest.starts_with("86")
        })
    })
}

#[test]
fn toll_fraud_is_rejected_by_the_pbx_answered_mute_by_the_camera_and_relayed_by_the_compromised_pbx(
) {
    for w in worlds() {
        let pbx = w.lines_named("pbx")[0];
        let open = w.lines_named("open-pbx")[0];
        let cam = w.lines_named("camera")[0];
        let atk = w.attacker_of(ThreatKind::TollFraudAttempt, "toll-fraud", pbx);
        for line in [pbx, open, cam] {
            let invites: Vec<_> = requests(&w.sip(atk, line), "INVITE")
                .into_iter()
                .cloned()
                .collect();
            assert!(invites.len() >= 5, "seed {}: {line}", w.seed);
            let mut prefixes = BTreeSet::new();
            for i in &invites {
                let user = i.ruri_user.clone().unwrap();
                assert!(is_premium_dial(&user), "{user}");
                assert!(i.body.contains("m=audio "), "full SDP");
                prefixes.insert(user.chars().take(3).collect::<String>());
            }
            // Until a prefix gets through, the dialer cycles them (the compromised PBX may take
            // the first one tried).
            if line != open {
                assert!(
                    prefixes.len() >= 2,
                    "the dialer cycles prefixes: {prefixes:?}"
                );
            }
        }
        // The office PBX only rejects.
        let codes = statuses(&w.sip(pbx, atk));
        assert!(codes.iter().all(|c| *c == 100 || *c >= 400), "{codes:?}");
        assert!(codes.iter().any(|c| *c >= 400));
        // The camera answers 200 and never sends media: every packet from it is SIP.
        assert!(statuses(&w.sip(cam, atk)).contains(&200));
        let cam_pk = w.between(cam, atk);
        assert!(cam_pk
            .iter()
            .filter(|p| p.src.ip() == cam)
            .all(|p| looks_like_sip(&p.payload)));
        assert!(
            rtp_count(&cam_pk) > 50,
            "voice flows only towards the camera"
        );
        // The compromised PBX answers some with 200, sends voice back, and calls out.
        let open_pk = w.between(open, atk);
        assert!(
            statuses(&w.sip(open, atk)).contains(&200),
            "seed {}",
            w.seed
        );
        let back: Vec<&Pkt> = open_pk
            .iter()
            .copied()
            .filter(|p| p.src.ip() == open)
            .collect();
        assert!(rtp_count(&back) > 100, "two-way voice with the attacker");
        let out: Vec<String> = w
            .cap
            .pkts
            .iter()
            .filter(|p| p.src.ip() == open && is_domestic(p.dst.ip()))
            .filter_map(|p| parse_sip(&p.payload))
            .filter(|s| s.method.as_deref() == Some("INVITE"))
            .filter_map(|s| s.ruri_user)
            .collect();
        let numbers = w.labels.threats[&atk.to_string()].params["numbers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| format!("00{}", n.as_str().unwrap()))
            .collect::<Vec<_>>();
        assert!(
            out.iter().any(|u| numbers.contains(u)),
            "seed {}: outbound {out:?} vs {numbers:?}",
            w.seed
        );
        let answered_by = &w.labels.threats[&atk.to_string()].params["answered_by"];
        assert!(answered_by
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(open.to_string())));
    }
}

#[test]
fn floods_are_many_uncompleted_transactions_with_random_call_ids() {
    for w in worlds() {
        let home = w.lines_named("flooded")[0];
        let pbx = w.lines_named("pbx")[0];
        let atk = w.attacker_of(ThreatKind::Flood, "invite-flood", home);
        let sent = w.sip(atk, home);
        let invites = requests(&sent, "INVITE");
        let ids: BTreeSet<&str> = invites.iter().map(|s| s.call_id.as_str()).collect();
        assert!(invites.len() >= 300, "seed {}: {}", w.seed, invites.len());
        assert_eq!(ids.len(), invites.len(), "a new Call-ID every time");
        assert!(requests(&sent, "ACK").is_empty(), "never completed");
        let finals = statuses(&w.sip(home, atk))
            .into_iter()
            .filter(|c| *c >= 200)
            .count();
        assert!(
            finals * 2 < invites.len(),
            "most dialogs see no final response"
        );
        let rate = w.labels.threats[&atk.to_string()].params["rate_per_sec"]
            .as_f64()
            .unwrap();
        let first = sent.first().unwrap().0.ts;
        let last = sent.last().unwrap().0.ts;
        assert!(invites.len() as f64 / ((last - first) as f64 / 1e6) > 20.0 && rate > 20.0);

        // Forged sources at the PBX: many addresses, each labelled a flood.
        let spoofed: BTreeSet<IpAddr> = w
            .cap
            .pkts
            .iter()
            .filter(|p| p.dst.ip() == pbx && attacker_range(p.src.ip()))
            .filter(|p| p.payload.starts_with(b"INVITE "))
            .map(|p| p.src.ip())
            .filter(|a| w.labels.threats[&a.to_string()].params["spoofed"] == true)
            .collect();
        assert!(
            spoofed.len() >= 50,
            "seed {}: {} forged sources",
            w.seed,
            spoofed.len()
        );
        let campaigns: BTreeSet<String> = spoofed
            .iter()
            .map(|a| w.labels.threats[&a.to_string()].params["campaign"].to_string())
            .collect();
        assert_eq!(campaigns.len(), 1, "one spoofed flood, one campaign");

        let reg = w.attacker_of(ThreatKind::Flood, "register-flood", pbx);
        let regs = requests(&w.sip(reg, pbx), "REGISTER").len();
        let ids: BTreeSet<String> = requests(&w.sip(reg, pbx), "REGISTER")
            .iter()
            .map(|s| s.call_id.clone())
            .collect();
        assert!(
            regs >= 300 && ids.len() == regs,
            "seed {}: {regs} REGISTERs",
            w.seed
        );
    }
}

/// National mobile numbers of the home country in the formats softswitches send.
fn is_home_mobile(user: &str) -> bool {
    let n = ["+86", "0086", "17951", "86"]
        .iter()
        .find_map(|p| user.strip_prefix(p))
        .unwrap_or(user);
    n.len() == 11 && n.starts_with('1') && n.chars().all(|c| c.is_ascii_digit())
}

/// INVITE dialogs from `atk` at `line`: Call-ID -> (first, last message time).
fn spans(w: &World, atk: IpAddr, line: IpAddr) -> BTreeMap<String, (i64, i64)> {
    let mut span: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for p in w.between(atk, line) {
        if let Some(s) = looks_like_sip(&p.payload)
            .then(|| parse_sip(&p.payload))
            .flatten()
        {
            let e = span.entry(s.call_id).or_insert((p.ts, p.ts));
            e.1 = p.ts;
        }
    }
    span
}

/// Most dialogs in progress at one instant (a start counts before an end at the same time).
fn max_open(span: &BTreeMap<String, (i64, i64)>) -> usize {
    // Starts are -1 so they sort before ends at the same time.
    let mut ev: Vec<(i64, i32)> = span
        .values()
        .flat_map(|(a, b)| [(*a, -1), (*b, 1)])
        .collect();
    ev.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in ev {
        cur -= d;
        max = max.max(cur);
    }
    max as usize
}

/// Most dialogs started within any `window_us`.
fn max_starts_within(span: &BTreeMap<String, (i64, i64)>, window_us: i64) -> usize {
    let mut starts: Vec<i64> = span.values().map(|(a, _)| *a).collect();
    starts.sort();
    let mut best = 0;
    for (i, t) in starts.iter().enumerate() {
        let n = starts[i..]
            .iter()
            .take_while(|x| **x < t + window_us)
            .count();
        best = best.max(n);
    }
    best
}

#[test]
fn framing_sends_gateway_shaped_invites_that_the_line_ignores_or_rejects() {
    for w in worlds() {
        let silent = w.lines_named("framed-silent")[0];
        let reject = w.lines_named("framed-reject")[0];
        for line in [silent, reject] {
            let atk = w.attacker_of(ThreatKind::Framing, "framing", line);
            assert!(!is_domestic(atk) && !is_home(atk));
            let sent = w.sip(atk, line);
            let invites = requests(&sent, "INVITE");
            let dialogs: BTreeMap<&str, &Sip> =
                invites.iter().map(|s| (s.call_id.as_str(), *s)).collect();
            assert!(
                dialogs.len() >= 12,
                "seed {}: {} attempts at {line}",
                w.seed,
                dialogs.len()
            );
            let called: BTreeSet<&str> = dialogs.values().map(|s| s.to_user.as_str()).collect();
            assert!(called.len() * 10 >= dialogs.len() * 9, "distinct numbers");
            assert!(called.iter().all(|u| is_home_mobile(u)), "{called:?}");
            // Four channels: never more than four attempts in progress, and attempts start
            // back to back (four within seconds at least once).
            let sp = spans(w, atk, line);
            let open = max_open(&sp);
            assert!(
                (1..=4).contains(&open),
                "seed {}: {open} at once at {line}",
                w.seed
            );
            let burst = max_starts_within(&sp, 10_000_000);
            assert!(
                burst >= 3,
                "seed {}: {burst} attempts within 10 s at {line}",
                w.seed
            );
        }
        // (a) The silent line never sends the framer anything.
        let atk = w.attacker_of(ThreatKind::Framing, "framing", silent);
        assert!(
            w.between(silent, atk).iter().all(|p| p.src.ip() != silent),
            "seed {}",
            w.seed
        );
        // (b) The rejecting line only sends final responses >= 400, one per attempt.
        let atk = w.attacker_of(ThreatKind::Framing, "framing", reject);
        let from_line = w.sip(reject, atk);
        assert!(!from_line.is_empty());
        assert!(
            from_line
                .iter()
                .all(|(_, s)| s.status.is_some_and(|c| c >= 400)),
            "seed {}",
            w.seed
        );
        assert_eq!(
            w.between(reject, atk)
                .iter()
                .filter(|p| p.src.ip() == reject)
                .count(),
            from_line.len()
        );
        // (c) One-way voice-shaped RTP flows towards the line, never from it.
        for line in w.lines_named("framed-rtp") {
            let atk = w.attacker_of(ThreatKind::Framing, "framing", line);
            let pk = w.between(atk, line);
            let towards: Vec<&Pkt> = pk.iter().copied().filter(|p| p.dst.ip() == line).collect();
            let media = rtp_count(&towards);
            assert!(
                media > 500,
                "seed {}: {media} RTP packets at {line}",
                w.seed
            );
            assert_eq!(rtp_count(&pk) - media, 0, "nothing flows back");
            let from_line = w.sip(line, atk);
            assert!(from_line
                .iter()
                .all(|(_, s)| s.status.is_some_and(|c| c >= 400)));
            assert_eq!(
                pk.iter().filter(|p| p.src.ip() == line).count(),
                from_line.len()
            );
            assert_eq!(w.labels.threats[&atk.to_string()].params["rtp"], true);
        }
    }
}

#[test]
fn robocalls_come_into_households_through_their_provider_not_from_an_attacker() {
    for w in worlds() {
        let mut calls = 0;
        for line in w.lines_named("homes") {
            let l = &w.labels.lines[&line.to_string()];
            let Some(note) = l.params["noise"]
                .as_array()
                .and_then(|v| v.iter().find(|n| n["kind"] == "robocall"))
            else {
                continue;
            };
            let n = note["requests"].as_u64().unwrap();
            calls += n;
            let from = note["from"].as_str().unwrap();
            let provider = l.params["provider"].as_str().unwrap();
            assert!(
                provider.starts_with(&format!("{from}:")),
                "{from} vs {provider}"
            );
            // Robocalls do not name an attacker: the provider is no threat.
            assert!(!w.labels.threats.contains_key(from));
            let own = l.params["own_number"]
                .as_str()
                .unwrap()
                .trim_start_matches('+');
            let inbound = w
                .sip(from.parse().unwrap(), line)
                .into_iter()
                .filter(|(_, s)| s.method.as_deref() == Some("INVITE"))
                .filter(|(_, s)| s.to_user == own)
                .count() as u64;
            assert!(
                inbound >= n,
                "{line}: {inbound} inbound INVITEs, {n} robocalls"
            );
        }
        assert!(calls >= 2, "seed {}: {calls} robocalls", w.seed);
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let mut sc = scenario();
    sc.duration_secs = 60;
    let run = |seed| {
        let mut out = Vec::new();
        let l = generate(&sc, seed, &mut out).unwrap();
        (out, l)
    };
    let (a, la) = run(42);
    let (b, lb) = run(42);
    assert!(a == b, "same seed, same bytes");
    assert_eq!(la, lb);
    let (c, lc) = run(43);
    assert!(a != c);
    assert_ne!(la.threats, lc.threats);
}

#[test]
fn the_noise_scenario_stays_small() {
    for w in worlds() {
        // Fast enough for simulate + eval in a debug build (about 2 s per seed).
        assert!(w.labels.packets < 1_500_000, "{}", w.labels.packets);
    }
}

#[test]
fn ipv6_lines_are_attacked_from_ipv6_and_forged_v6_sources_stay_labelled() {
    let sc = Scenario::from_toml(
        r#"
duration = "40s"
[[population]]
kind = "household"
name = "v6"
ipv6 = true
unsolicited = "reject"
[[population]]
kind = "household"
name = "v4"
unsolicited = "reject"
[[noise]]
kind = "sweep"
targets = "all"
after = "1s"
[[noise]]
kind = "invite-flood"
targets = ["v6", "v4"]
spoofed = true
rate = 200.0
burst = "3s"
after = "5s"
"#,
        "v6.toml",
    )
    .unwrap();
    let mut out = Vec::new();
    let labels = generate(&sc, 9, &mut out).unwrap();
    let cap = read(&out);
    let v6: IpAddr = labels
        .lines
        .iter()
        .find(|(_, l)| l.params["population"] == "v6")
        .map(|(a, _)| a.parse().unwrap())
        .unwrap();
    assert!(v6.is_ipv6());
    let mut v6_sources = BTreeSet::new();
    let provider = labels.lines[&v6.to_string()].params["provider"]
        .as_str()
        .unwrap()
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .ip();
    for p in cap.pkts.iter().filter(|p| p.dst.ip() == v6) {
        if p.src.ip() == provider {
            continue;
        }
        assert!(attacker_range(p.src.ip()), "{}", p.src);
        let t = &labels.threats[&p.src.ip().to_string()];
        assert!(t.targets.contains(&v6.to_string()));
        if t.kind == ThreatKind::Flood {
            v6_sources.insert(p.src.ip());
        }
    }
    assert!(v6_sources.len() >= 50, "{}", v6_sources.len());
    // The sweeper has one address per family; both are labelled scans.
    let scans: Vec<&String> = labels
        .threats
        .iter()
        .filter(|(_, t)| t.kind == ThreatKind::Scan)
        .map(|(a, _)| a)
        .collect();
    assert_eq!(scans.len(), 2, "{scans:?}");
}
