//! End-to-end: Capture -> Decoder -> Tracker over real captures, compared with tshark.
//!
//! Each check runs the real tshark on the same file when it is installed (skips the comparison
//! with a message otherwise) and states the command it runs.

use simboxd::capture::Capture;
use simboxd::config::Config;
use simboxd_core::calls::{Tracker, TrackerStats};
use simboxd_core::decode::Decoder;
use simboxd_core::model::{CallRecord, Event, MediaFlowRecord, Outcome, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `(src, dst, ssrc) -> (packets, lost, jitter ms)` per RTP stream.
type Streams = BTreeMap<(String, String, u32), (u64, i64, f64)>;

struct Run {
    events: Vec<Event>,
    stats: TrackerStats,
    errors: simboxd_core::model::Counters,
}

impl Run {
    fn calls(&self) -> Vec<&CallRecord> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::CallEnded(r) => Some(&**r),
                _ => None,
            })
            .collect()
    }
    fn media(&self) -> Vec<&MediaFlowRecord> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::MediaEnded(r) => Some(&**r),
                _ => None,
            })
            .collect()
    }
}

fn run(path: &Path) -> Run {
    let cfg = Config::default();
    let mut dec = Decoder::new(&cfg.limits);
    let e = cfg.engine();
    let mut tracker = Tracker::new(&e.network, &e.limits);
    let mut cap = Capture::open_file(path).expect("capture opens");
    let mut events = Vec::new();
    let mut last = Timestamp(0);
    while let Some(p) = cap.next_packet().expect("capture reads") {
        last = last.max(p.ts);
        dec.decode(&p, &mut |d| tracker.on_datagram(d, &mut events));
    }
    tracker.finish(last, &mut events);
    Run {
        events,
        stats: tracker.stats(),
        errors: tracker.errors().clone(),
    }
}

fn corpus_file(rel: &str) -> Option<PathBuf> {
    let dir = simboxd::corpus::corpus_dir()?;
    let p = dir.join(rel);
    assert!(p.is_file(), "corpus file missing: {}", p.display());
    Some(p)
}

/// Runs tshark with `args` on `file`; None (with a message) when tshark is not installed.
fn tshark(file: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => panic!("tshark failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            eprintln!("SKIP tshark comparison: {e}");
            None
        }
    }
}

/// `tshark -r F -Y 'sip.Method == "INVITE"' -T fields -e sip.Call-ID | sort -u | wc -l`
fn tshark_invite_call_ids(file: &Path) -> Option<BTreeSet<String>> {
    let out = tshark(
        file,
        &[
            "-Y",
            "sip.Method == \"INVITE\"",
            "-T",
            "fields",
            "-e",
            "sip.Call-ID",
        ],
    )?;
    Some(
        out.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    )
}

/// Last final response code to an INVITE per Call-ID:
/// `tshark -r F -Y 'sip.CSeq.method == "INVITE" && sip.Status-Code >= 200' -T fields -e sip.Call-ID -e sip.Status-Code`
fn tshark_final_codes(file: &Path) -> Option<BTreeMap<String, Vec<u16>>> {
    let out = tshark(
        file,
        &[
            "-Y",
            "sip.CSeq.method == \"INVITE\" && sip.Status-Code >= 200",
            "-T",
            "fields",
            "-e",
            "sip.Call-ID",
            "-e",
            "sip.Status-Code",
        ],
    )?;
    let mut m: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for l in out.lines() {
        let mut it = l.split('\t');
        if let (Some(id), Some(code)) = (it.next(), it.next()) {
            if let Ok(c) = code.trim().parse() {
                m.entry(id.to_string()).or_default().push(c);
            }
        }
    }
    Some(m)
}

/// RTP streams as `(src, dst, ssrc) -> (packets, lost, max jitter ms)`:
/// `tshark -r F -q -z rtp,streams`
fn tshark_rtp_streams(file: &Path) -> Option<Streams> {
    Some(parse_rtp_streams(&tshark(
        file,
        &["-q", "-z", "rtp,streams"],
    )?))
}

/// `ip port` columns as a socket address string (`[v6]:port` for IPv6).
fn sock(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn parse_rtp_streams(out: &str) -> Streams {
    let mut m = BTreeMap::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Start End SrcIP SrcPort DstIP DstPort SSRC Payload[, ...] Pkts Lost (pct) MinDelta
        // MeanDelta MaxDelta MinJitter MeanJitter MaxJitter [X]
        if f.len() < 9 || !f[6].starts_with("0x") {
            continue;
        }
        let Ok(ssrc) = u32::from_str_radix(f[6].trim_start_matches("0x"), 16) else {
            continue;
        };
        let mut i = 7;
        while i < f.len() && f[i].ends_with(',') {
            i += 1;
        }
        let (Some(pkts), Some(lost), Some(maxj)) = (
            f.get(i + 1).and_then(|p| p.parse().ok()),
            f.get(i + 2).and_then(|p| p.parse().ok()),
            f.get(i + 9).and_then(|p| p.parse().ok()),
        ) else {
            continue;
        };
        m.insert(
            (sock(f[2], f[3]), sock(f[4], f[5]), ssrc),
            (pkts, lost, maxj),
        );
    }
    m
}

/// Our RTP streams in reported media flows: `(src, dst, ssrc) -> (packets, lost, jitter ms)`.
fn ours_rtp_streams(r: &Run, only_announced: bool) -> Streams {
    let mut m = BTreeMap::new();
    for f in r.media() {
        if only_announced && f.call_id.is_none() {
            continue;
        }
        for s in &f.streams {
            m.insert(
                (s.src.to_string(), s.dst.to_string(), s.ssrc),
                (s.packets, s.lost, s.jitter_ms),
            );
        }
    }
    m
}

/// Codec names of the last SDP answer (a response) of each call, else of its INVITE:
/// `tshark -r F -Y sdp -T fields -e sip.Call-ID -e sip.Status-Code -e sdp.mime.type`
fn tshark_negotiated_codecs(file: &Path) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let out = tshark(
        file,
        &[
            "-Y",
            "sdp",
            "-T",
            "fields",
            "-e",
            "sip.Call-ID",
            "-e",
            "sip.Status-Code",
            "-e",
            "sdp.mime.type",
        ],
    )?;
    let mut offers = BTreeMap::new();
    let mut answers = BTreeMap::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        let (Some(id), Some(code), Some(mime)) = (f.first(), f.get(1), f.get(2)) else {
            continue;
        };
        if id.is_empty() {
            continue;
        }
        let set: BTreeSet<String> = mime
            .split(',')
            .filter(|m| !m.is_empty())
            .map(|m| m.to_ascii_lowercase())
            .collect();
        if code.is_empty() {
            offers.entry(id.to_string()).or_insert(set);
        } else {
            answers.insert(id.to_string(), set);
        }
    }
    for (k, v) in answers {
        offers.insert(k, v);
    }
    Some(offers)
}

fn lower_set(v: &[String]) -> BTreeSet<String> {
    v.iter().map(|c| c.to_ascii_lowercase()).collect()
}

/// The outcome a final status code implies (as documented for `Outcome`).
fn outcome_of(code: u16) -> Outcome {
    match code {
        200..=299 => Outcome::Answered,
        486 | 600 => Outcome::Busy,
        408 | 480 => Outcome::NoAnswer,
        487 => Outcome::Cancelled,
        _ => Outcome::Failed,
    }
}

/// Every call: status code one of tshark's final codes for the Call-ID (the last one when there
/// were no re-INVITEs), outcome consistent with it, negotiated codecs as tshark decodes them.
fn check_calls_against_tshark(file: &Path, r: &Run) {
    let Some(ids) = tshark_invite_call_ids(file) else {
        return;
    };
    let ours: BTreeSet<String> = r.calls().iter().map(|c| c.call_id.clone()).collect();
    assert_eq!(ours, ids, "{}: Call-IDs", file.display());
    assert_eq!(r.stats.calls, ids.len() as u64);
    let finals = tshark_final_codes(file).unwrap_or_default();
    let codecs = tshark_negotiated_codecs(file).unwrap_or_default();
    for c in r.calls() {
        match finals.get(&c.call_id) {
            Some(codes) => {
                let code = c.status_code.expect("a final response was seen");
                assert!(
                    codes.contains(&code),
                    "{}: {} {code} not in {codes:?}",
                    file.display(),
                    c.call_id
                );
                assert_eq!(
                    c.outcome,
                    outcome_of(code),
                    "{}: {}",
                    file.display(),
                    c.call_id
                );
            }
            None => assert_eq!(
                c.outcome,
                Outcome::Incomplete,
                "{}: {}",
                file.display(),
                c.call_id
            ),
        }
        if let Some(want) = codecs.get(&c.call_id) {
            // tshark lists the rtpmap names of every m= line (video too); we list the audio
            // line's codecs, including static payload types that have no rtpmap.
            let have = lower_set(&c.codecs);
            let statics = [
                "pcmu", "pcma", "gsm", "g723", "g722", "g728", "g729", "cn", "lpc",
            ];
            for x in have.difference(want) {
                assert!(
                    statics.contains(&x.as_str()),
                    "{}: {} codec {x} not in {want:?}",
                    file.display(),
                    c.call_id
                );
            }
        }
    }
}

/// Our streams equal tshark's `rtp,streams` in packets and loss; our final jitter is at most
/// tshark's maximum jitter for the stream (both follow RFC 3550 A.8).
fn check_rtp_against_tshark(ours: &Streams, theirs: &Streams) {
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "same RTP streams"
    );
    for (k, (pk, lost, jit)) in ours {
        let (tpk, tlost, tmax) = theirs[k];
        assert_eq!(*pk, tpk, "{k:?} packets");
        assert_eq!(*lost, tlost, "{k:?} lost");
        assert!(
            *jit <= tmax + 0.01,
            "{k:?} jitter {jit} > tshark max {tmax}"
        );
    }
}

#[test]
fn call_counts_match_tshark_on_every_capture() {
    let Some(dir) = simboxd::corpus::corpus_dir() else {
        return;
    };
    let mut compared = 0;
    for p in simboxd::corpus::files_under(&dir) {
        let name = p.display().to_string();
        if !(name.ends_with(".pcap")
            || name.ends_with(".pcapng")
            || name.ends_with(".cap")
            || name.ends_with("SIP_CALL_RTP_G711"))
        {
            continue;
        }
        // NetMon and other formats libpcap cannot read are not captures for us.
        if Capture::open_file(&p).is_err() {
            continue;
        }
        let r = run(&p);
        assert_eq!(r.stats.calls_ended, r.calls().len() as u64);
        let Some(ids) = tshark_invite_call_ids(&p) else {
            return;
        };
        let ours = r.stats.calls as usize;
        if name.ends_with("invalid-content-length.pcap") {
            // Content-Length is unreadable: counted, and the datagram is read leniently.
            assert_eq!(r.errors.get("sip.bad_content_length"), 2, "{name}");
        }
        assert_eq!(ours, ids.len(), "{name}: calls vs tshark");
        // Every call is reported exactly once, each with its own Call-ID.
        let reported: BTreeSet<String> = r.calls().iter().map(|c| c.call_id.clone()).collect();
        assert_eq!(reported, ids, "{name}");
        compared += 1;
    }
    assert!(compared >= 30, "only {compared} captures compared");
}

#[test]
fn sip_rtp_g711_two_answered_calls() {
    // tshark -r sipnab/pcap-samples/sip-rtp-g711.pcap -q -z rtp,streams
    let Some(p) = corpus_file("sipnab/pcap-samples/sip-rtp-g711.pcap") else {
        return;
    };
    let r = run(&p);
    check_calls_against_tshark(&p, &r);
    let calls = r.calls();
    assert_eq!(calls.len(), 2);
    for c in &calls {
        assert_eq!(c.outcome, Outcome::Answered);
        assert_eq!(c.rtp.len(), 1, "{}", c.call_id);
    }
    let by_id = |id: &str| calls.iter().find(|c| c.call_id == id).unwrap();
    // The callee hung up the first call after 8.5 s (BYE at 8.503693, 200 at 0.004350); the
    // capture ends during the second, which has no BYE: answered, not ended.
    let talk = by_id("1-1966@10.0.2.20").talk_secs().unwrap();
    assert!((talk - 8.499343).abs() < 1e-6, "{talk}");
    assert_eq!(by_id("1-1968@10.0.2.20").end, None);
    // The RTP payload type tshark decodes is the codec each call negotiated.
    assert_eq!(by_id("1-1966@10.0.2.20").codec.as_deref(), Some("PCMU"));
    assert_eq!(by_id("1-1968@10.0.2.20").codec.as_deref(), Some("PCMA"));
    assert_eq!(by_id("1-1966@10.0.2.20").rtp[0].payload_type, 0);
    assert_eq!(by_id("1-1968@10.0.2.20").rtp[0].payload_type, 8);
    if let Some(t) = tshark_rtp_streams(&p) {
        check_rtp_against_tshark(&ours_rtp_streams(&r, true), &t);
    }
    // One-way RTP: RTP, but not voice-like.
    assert!(r
        .media()
        .iter()
        .all(|m| m.rtp && !m.voice_like && m.call_id.is_some()));
}

#[test]
fn sip_call_rtp_g711_relay_legs_found_by_heuristic() {
    // tshark -r sipnab/pcap-samples/SIP_CALL_RTP_G711 -q -z rtp,streams -o rtp.heuristic_rtp:TRUE
    let Some(p) = corpus_file("sipnab/pcap-samples/SIP_CALL_RTP_G711") else {
        return;
    };
    let r = run(&p);
    check_calls_against_tshark(&p, &r);
    let answered = r
        .calls()
        .into_iter()
        .find(|c| c.outcome == Outcome::Answered)
        .expect("one answered call");
    assert_eq!(answered.codec.as_deref(), Some("PCMA"));
    assert_eq!(answered.rtp.len(), 2);
    // SDP announced one leg; the relay's other leg (same SSRCs) is found by the RTP heuristic,
    // as tshark finds it with heuristic RTP on.
    if let Some(t) = tshark(
        &p,
        &["-q", "-z", "rtp,streams", "-o", "rtp.heuristic_rtp:TRUE"],
    ) {
        let theirs = parse_rtp_streams(&t);
        check_rtp_against_tshark(&ours_rtp_streams(&r, false), &theirs);
    }
    let voice: Vec<_> = r.media().into_iter().filter(|m| m.voice_like).collect();
    assert_eq!(
        voice.len(),
        2,
        "both legs of the answered call are voice-like, nothing else"
    );
    assert!(voice
        .iter()
        .all(|m| m.rtp && (m.mean_ip_len - 200.0).abs() < 5.0));
}

#[test]
fn fax_call_with_t38_reinvites() {
    let Some(p) = corpus_file("nDPI/FAX-Call-t38-CA-TDM-SIP-FB-1.pcap") else {
        return;
    };
    let r = run(&p);
    check_calls_against_tshark(&p, &r);
    assert!(r
        .calls()
        .iter()
        .all(|c| c.outcome == Outcome::Answered && c.codec.as_deref() == Some("PCMA")));
    assert!(r.stats.retransmissions > 0);
    let ours = ours_rtp_streams(&r, true);
    let Some(t) = tshark_rtp_streams(&p) else {
        return;
    };
    // Gateway to fax server: identical to tshark's figures.
    let k = (
        "10.23.1.52:16756".to_string(),
        "10.35.60.100:15580".to_string(),
        0x17D9_0134,
    );
    assert_eq!(ours[&k].0, t[&k].0);
    assert_eq!(ours[&k].1, t[&k].1);
    // The other way tshark, following the T.38 re-INVITE's m=image, decodes 27 of the packets
    // as T.38 although they are PCMA RTP with the same SSRC; we count every one of them:
    // tshark -r F -Y 'udp.srcport == 15580 && udp.dstport == 16756'
    let k = (
        "10.35.60.100:15580".to_string(),
        "10.23.1.52:16756".to_string(),
        0x0EAF_0EAF,
    );
    let all =
        tshark(&p, &["-Y", "udp.srcport == 15580 && udp.dstport == 16756"]).unwrap_or_default();
    assert_eq!(ours[&k].0, all.lines().count() as u64);
    assert!(ours[&k].0 > t[&k].0);
    assert_eq!(ours[&k].1, t[&k].1, "lost (same sequence span)");
}

#[test]
fn aaa_auth_retries_are_one_call_each() {
    let Some(p) = corpus_file("sngrep/aaa.pcap") else {
        return;
    };
    let r = run(&p);
    check_calls_against_tshark(&p, &r);
    let calls = r.calls();
    assert_eq!(calls.len(), 4);
    // Each 407 was followed by an authenticated retry (up to 51 s later): one record per call,
    // with the retry's final answer.
    let finals: Vec<_> = calls.iter().map(|c| (c.outcome, c.status_code)).collect();
    assert_eq!(
        finals,
        vec![
            (Outcome::NoAnswer, Some(408)),
            (Outcome::Failed, Some(403)),
            (Outcome::Failed, Some(403)),
            (Outcome::NoAnswer, Some(480)),
        ]
    );
    assert!(calls
        .iter()
        .all(|c| c.direction == simboxd_core::model::Direction::Outbound));
    assert!(calls
        .iter()
        .all(|c| c.line == Some("192.168.1.2".parse().unwrap())));
    // Early media after the 183 of the last call: 9 RTP packets, as tshark counts them.
    if let Some(t) = tshark_rtp_streams(&p) {
        check_rtp_against_tshark(&ours_rtp_streams(&r, true), &t);
    }
    assert_eq!(calls[3].rtp.iter().map(|s| s.packets).sum::<u64>(), 9);
    assert!(r.stats.registrations > 0);
}

#[test]
fn rtp_streams_match_tshark_on_full_calls() {
    // tshark -r F -q -z rtp,streams, for every capture of a full call with SDP-announced RTP.
    let Some(dir) = simboxd::corpus::corpus_dir() else {
        return;
    };
    for rel in [
        "sipnab/pcap-samples/SIP_DTMF2.cap",
        "sipnab/pcap-samples/b2bua-asterisk.pcapng",
        "sipnab/pcap-samples/codec-negotiation.pcap",
        "sipnab/pcap-samples/invite-opus-bye.pcap",
        "sipnab/pcap-samples/register-invite-reinvite-bye.pcap",
        "sipnab/pcap-samples/rtp-protocol.pcap",
        "sipnab/pcap-samples/sip-over-tcp.pcap",
        "sipnab/pcap-samples/sip-rtp-g722.pcap",
        "sipnab/pcap-samples/sip-rtp-g729a.pcap",
        "sipnab/pcap-samples/h263-over-rtp.pcap",
        "arkime/gtp-iphone.pcap",
        "nDPI/sip.pcap",
    ] {
        let p = dir.join(rel);
        let r = run(&p);
        let Some(t) = tshark_rtp_streams(&p) else {
            return;
        };
        eprintln!("{rel}: {} streams", t.len());
        check_rtp_against_tshark(&ours_rtp_streams(&r, true), &t);
        check_calls_against_tshark(&p, &r);
        // Every announced stream is in its call's record.
        let in_calls: usize = r.calls().iter().map(|c| c.rtp.len()).sum();
        assert_eq!(in_calls, t.len(), "{rel}");
    }
    // Streams whose second packet does not follow the first: RFC 3550 A.1 starts counting at
    // the first two in-sequence packets, tshark at the first packet, so we report fewer lost.
    for rel in [
        "sipnab/pcap-samples/Asterisk_ZFONE_XLITE.pcap",
        "sipnab/pcap-samples/sip-rtp-opus-hybrid.pcap",
    ] {
        let p = dir.join(rel);
        let r = run(&p);
        let Some(t) = tshark_rtp_streams(&p) else {
            return;
        };
        let ours = ours_rtp_streams(&r, true);
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            t.keys().collect::<Vec<_>>(),
            "{rel}"
        );
        for (k, (pk, lost, jit)) in &ours {
            let (tpk, tlost, tmax) = t[k];
            assert_eq!(*pk, tpk, "{rel} {k:?}");
            assert!(*lost <= tlost, "{rel} {k:?} lost {lost} > {tlost}");
            assert!(*jit <= tmax + 0.01, "{rel} {k:?}");
        }
        assert!(
            ours.iter().any(|(k, v)| v.1 < t[k].1),
            "{rel}: the probation difference shows"
        );
    }
}
