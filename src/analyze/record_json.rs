//! The call record as JSON without serde: a flood ends hundreds of thousands of calls, and
//! serde_json's generic path with an RFC 3339 string made per time was a fifth of the engine
//! thread's instructions on the hostile capture.
//!
//! Contract: `call_fields` appends exactly the bytes `serde_json::to_writer` makes of a
//! `CallRecord` without its opening brace (`registration_fields` of a `RegistrationRecord`),
//! `line_fields` those of a `LineEntry` flattened
//! beside its `estimated` map (same field order and names; strings escaped by
//! serde_json's table; integers as itoa, floats as zmij and non-finite ones as `null`, as
//! serde_json writes them; times as `Timestamp::to_rfc3339`). No allocation beyond `out`'s.

use crate::analysis::LineEntry;
use simboxd_core::model::{CallRecord, RegistrationRecord, RtpStreamStats, Timestamp};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

/// `,"name":` (the first field of an object is written without its comma).
macro_rules! key {
    ($out:expr, $name:literal) => {
        $out.extend_from_slice(concat!(",\"", $name, "\":").as_bytes())
    };
}

/// The fields of `c` and its closing brace (`"call_id":...}`), as serde_json writes them.
pub fn call_fields(out: &mut Vec<u8>, c: &CallRecord) {
    out.extend_from_slice(b"\"call_id\":");
    string(out, &c.call_id);
    key!(out, "line");
    opt(out, c.line, ip);
    key!(out, "direction");
    enum_name(out, c.direction.name());
    key!(out, "peer");
    opt(out, c.peer, socket);
    key!(out, "from");
    opt_str(out, &c.from);
    key!(out, "to");
    opt_str(out, &c.to);
    key!(out, "request_uri");
    opt_str(out, &c.request_uri);
    key!(out, "user_agent");
    opt_str(out, &c.user_agent);
    key!(out, "server");
    opt_str(out, &c.server);
    key!(out, "allow");
    opt_str(out, &c.allow);
    key!(out, "sdp_origin");
    opt_str(out, &c.sdp_origin);
    key!(out, "sdp_session");
    opt_str(out, &c.sdp_session);
    key!(out, "transport");
    enum_name(out, c.transport.name());
    key!(out, "codec");
    opt_str(out, &c.codec);
    key!(out, "codecs");
    out.push(b'[');
    for (i, s) in c.codecs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
    key!(out, "ptime");
    opt(out, c.ptime, int);
    key!(out, "start");
    time(out, c.start);
    key!(out, "progress");
    opt(out, c.progress, time);
    key!(out, "answer");
    opt(out, c.answer, time);
    key!(out, "end");
    opt(out, c.end, time);
    key!(out, "outcome");
    enum_name(out, c.outcome.name());
    key!(out, "status_code");
    opt(out, c.status_code, int);
    key!(out, "private_contact");
    out.extend_from_slice(if c.private_contact { b"true" } else { b"false" });
    key!(out, "rtp");
    out.push(b'[');
    for (i, s) in c.rtp.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        rtp_stream(out, s);
    }
    out.push(b']');
    key!(out, "participation");
    enum_name(out, c.participation.label());
    out.push(b'}');
}

/// The fields of `r` and its closing brace, as serde_json writes them.
pub fn registration_fields(out: &mut Vec<u8>, r: &RegistrationRecord) {
    out.extend_from_slice(b"\"account\":");
    string(out, &r.account);
    key!(out, "registrar");
    socket(out, r.registrar);
    key!(out, "source");
    socket(out, r.source);
    key!(out, "line");
    opt(out, r.line, ip);
    key!(out, "contact");
    opt_str(out, &r.contact);
    key!(out, "expires");
    opt(out, r.expires, int);
    key!(out, "outcome");
    enum_name(out, r.outcome.name());
    key!(out, "status_code");
    opt(out, r.status_code, int);
    key!(out, "user_agent");
    opt_str(out, &r.user_agent);
    key!(out, "time");
    time(out, r.time);
    out.push(b'}');
}

/// The fields of a `line` object and its closing brace: `l`'s fields, then `estimated`, as
/// serde_json writes the entry flattened beside the map. The verdict and the reasons (few
/// lines have them) go through serde_json.
pub fn line_fields(out: &mut Vec<u8>, l: &LineEntry, estimated: &BTreeMap<&'static str, f64>) {
    out.extend_from_slice(b"\"line\":");
    opt(out, l.line, ip);
    key!(out, "verdict");
    match &l.verdict {
        Some(v) => serde_value(out, v),
        None => out.extend_from_slice(b"null"),
    }
    key!(out, "score");
    opt(out, l.score, float);
    key!(out, "flagged_at");
    opt(out, l.flagged_at, time);
    key!(out, "site");
    opt_str(out, &l.site);
    key!(out, "reasons");
    if l.reasons.is_empty() {
        out.extend_from_slice(b"[]");
    } else {
        serde_value(out, &l.reasons);
    }
    for (k, v) in [
        (&b",\"calls\":"[..], l.calls),
        (b",\"inbound_calls\":", l.inbound_calls),
        (b",\"outbound_calls\":", l.outbound_calls),
        (b",\"answered_calls\":", l.answered_calls),
        (
            b",\"max_concurrent_calls\":",
            u64::from(l.max_concurrent_calls),
        ),
        (b",\"open_calls_at_end\":", l.open_calls_at_end),
        (b",\"distinct_called_numbers\":", l.distinct_called_numbers),
        (b",\"inbound_calls_taken\":", l.inbound_calls_taken),
        (
            b",\"inbound_calls_taken_answered\":",
            l.inbound_calls_taken_answered,
        ),
        (
            b",\"distinct_called_numbers_taken\":",
            l.distinct_called_numbers_taken,
        ),
    ] {
        out.extend_from_slice(k);
        int(out, v);
    }
    key!(out, "median_talk_secs_inbound");
    opt(out, l.median_talk_secs_inbound, float);
    key!(out, "peers");
    out.push(b'[');
    for (i, p) in l.peers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, p);
    }
    out.push(b']');
    key!(out, "registrations");
    int(out, l.registrations);
    key!(out, "media_flows");
    int(out, l.media_flows);
    key!(out, "voice_flows_without_sip");
    int(out, l.voice_flows_without_sip);
    key!(out, "estimated");
    out.push(b'{');
    for (i, (k, v)) in estimated.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        float(out, *v);
    }
    out.extend_from_slice(b"}}");
}

/// A value serde_json writes (into a Vec: it cannot fail but for a `Serialize` that does).
fn serde_value<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn rtp_stream(out: &mut Vec<u8>, s: &RtpStreamStats) {
    out.extend_from_slice(b"{\"src\":");
    socket(out, s.src);
    key!(out, "dst");
    socket(out, s.dst);
    key!(out, "ssrc");
    int(out, s.ssrc);
    key!(out, "payload_type");
    int(out, s.payload_type);
    key!(out, "packets");
    int(out, s.packets);
    key!(out, "bytes");
    int(out, s.bytes);
    key!(out, "lost");
    int(out, s.lost);
    key!(out, "jitter_ms");
    float(out, s.jitter_ms);
    key!(out, "first");
    time(out, s.first);
    key!(out, "last");
    time(out, s.last);
    out.push(b'}');
}

/// A serde variant name (no character to escape).
fn enum_name(out: &mut Vec<u8>, name: &str) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

fn opt<T>(out: &mut Vec<u8>, v: Option<T>, some: impl FnOnce(&mut Vec<u8>, T)) {
    match v {
        Some(x) => some(out, x),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_str(out: &mut Vec<u8>, v: &Option<String>) {
    match v {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn int<I: itoa::Integer>(out: &mut Vec<u8>, v: I) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn float(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

// Addresses are strings in JSON (serde writes their `Display`); no character of them needs
// escaping. IPv4 is written digit by digit (`Display` goes through the formatter and a
// stack buffer); IPv6, rare on these taps, by `Display`. Writing into a Vec cannot fail.
fn ip(out: &mut Vec<u8>, a: IpAddr) {
    out.push(b'"');
    ip_bare(out, a);
    out.push(b'"');
}

fn ip_bare(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            int(out, a);
            out.push(b'.');
            int(out, b);
            out.push(b'.');
            int(out, c);
            out.push(b'.');
            int(out, d);
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn socket(out: &mut Vec<u8>, a: SocketAddr) {
    out.push(b'"');
    match a {
        SocketAddr::V4(v4) => {
            ip_bare(out, IpAddr::V4(*v4.ip()));
            out.push(b':');
            int(out, v4.port());
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
    out.push(b'"');
}

fn time(out: &mut Vec<u8>, t: Timestamp) {
    out.push(b'"');
    t.write_rfc3339(out);
    out.push(b'"');
}

/// Whether any of the 8 bytes of `w` is below 0x20, `"` or `\` (the bytes JSON escapes):
/// the high bit of a byte survives in `x - 0x01..` & `!x` only where `x` was zero.
fn any_to_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
    below_space || zero_in(w ^ (ONES * u64::from(b'"'))) || zero_in(w ^ (ONES * u64::from(b'\\')))
}

/// A JSON string: serde_json escapes `"` and `\`, the control characters with a short form
/// (`\b \f \n \r \t`) by it, the others as `\u00xx` (lower-case hex), and nothing else.
pub fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    // Most strings need no escaping: skip them 8 bytes at a time.
    let mut clean = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        if any_to_escape(u64::from_le_bytes(w)) {
            break;
        }
        clean += 8;
    }
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(bytes.get(run..i).unwrap_or_default());
        run = i + 1;
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(&[
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        }
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use simboxd_core::model::{Direction, Outcome, Participation, RegOutcome, Transport};

    fn serde_bytes(c: &CallRecord) -> Vec<u8> {
        serde_json::to_vec(c).unwrap()
    }

    fn ours(c: &CallRecord) -> Vec<u8> {
        let mut v = vec![b'{'];
        call_fields(&mut v, c);
        v
    }

    fn stream(jitter: f64, t: i64) -> RtpStreamStats {
        RtpStreamStats {
            src: "10.0.0.1:4000".parse().unwrap(),
            dst: "[2001:db8::1]:5004".parse().unwrap(),
            ssrc: u32::MAX,
            payload_type: 18,
            packets: u64::MAX,
            bytes: 0,
            lost: i64::MIN,
            jitter_ms: jitter,
            first: Timestamp(t),
            last: Timestamp(t + 1),
        }
    }

    fn full(s: &str) -> CallRecord {
        let mut c = CallRecord::new(
            s.into(),
            Direction::Inbound,
            Timestamp(1_767_600_000_123_456),
        );
        c.line = Some("10.20.0.1".parse().unwrap());
        c.peer = Some("[fe80::1%3]:5060".parse().unwrap());
        c.from = Some(s.into());
        c.to = Some(format!("{s}\u{7f}\u{e9}"));
        c.request_uri = Some(String::new());
        c.user_agent = Some(s.into());
        c.sdp_session = Some("-".into());
        c.codec = Some("G729".into());
        c.codecs = vec!["G729".into(), s.into()];
        c.ptime = Some(20);
        c.progress = Some(Timestamp(0));
        c.answer = Some(Timestamp(-1));
        c.end = Some(Timestamp(253_402_300_799_999_999));
        c.status_code = Some(200);
        c.private_contact = true;
        c.rtp = vec![
            stream(0.0, 1),
            stream(12.345_678_9, -86_400_000_001),
            stream(f64::NAN, 2),
            stream(f64::INFINITY, 3),
            stream(1e300, 4),
        ];
        c
    }

    #[test]
    fn every_control_character_and_quote_is_escaped_as_serde_json_does() {
        let all: String = (0u8..0x80).map(char::from).collect();
        let mut a = Vec::new();
        string(&mut a, &all);
        assert_eq!(a, serde_json::to_vec(&all).unwrap());
        let c = full(&all);
        assert_eq!(ours(&c), serde_bytes(&c));
    }

    #[test]
    fn an_escaped_byte_is_found_at_any_offset_of_a_long_string() {
        for bad in (0u8..0x20).chain([b'"', b'\\']) {
            for at in 0..24 {
                let mut s = vec![b'a'; 24];
                s[at] = bad;
                let s = String::from_utf8(s).unwrap();
                let mut a = Vec::new();
                string(&mut a, &s);
                assert_eq!(a, serde_json::to_vec(&s).unwrap(), "{bad} at {at}");
            }
        }
    }

    #[test]
    fn every_enum_variant_is_named_as_serde_names_it() {
        let mut c = CallRecord::new("x".into(), Direction::Inbound, Timestamp(0));
        for d in Direction::ALL {
            for t in Transport::ALL {
                for o in Outcome::ALL {
                    for p in Participation::ALL {
                        (c.direction, c.transport, c.outcome, c.participation) = (d, t, o, p);
                        assert_eq!(ours(&c), serde_bytes(&c));
                    }
                }
            }
        }
    }

    #[derive(serde::Serialize)]
    struct LineOut<'a> {
        #[serde(flatten)]
        entry: &'a LineEntry,
        estimated: &'a BTreeMap<&'static str, f64>,
    }

    #[test]
    fn line_objects_match_serde_jsons_flattened_entry() {
        let mut l = LineEntry::default();
        let mut est = BTreeMap::new();
        let check = |l: &LineEntry, est: &BTreeMap<&'static str, f64>| {
            let mut a = vec![b'{'];
            line_fields(&mut a, l, est);
            let b = serde_json::to_vec(&LineOut {
                entry: l,
                estimated: est,
            })
            .unwrap();
            assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
        };
        check(&l, &est);
        l.line = Some("2001:db8::7".parse().unwrap());
        l.verdict = Some(simboxd_core::model::VerdictLevel::Gateway);
        l.score = Some(0.875);
        l.flagged_at = Some(Timestamp(1_767_600_000_000_001));
        l.site = Some("site \"1\"\n".into());
        l.reasons = vec![simboxd_core::model::Reason {
            signal: "foreign_inbound".into(),
            value: f64::NAN,
            strength: 1.0,
            detail: "212 calls\t\u{1}".into(),
        }];
        (l.calls, l.inbound_calls, l.outbound_calls, l.answered_calls) = (u64::MAX, 1, 2, 3);
        l.max_concurrent_calls = u32::MAX;
        (l.open_calls_at_end, l.distinct_called_numbers) = (4, 5);
        l.inbound_calls_taken = 6;
        l.inbound_calls_taken_answered = 7;
        l.distinct_called_numbers_taken = 8;
        l.median_talk_secs_inbound = Some(f64::INFINITY);
        l.peers = vec!["10.0.0.1".into(), "a\\b".into()];
        (l.registrations, l.media_flows, l.voice_flows_without_sip) = (9, 10, 11);
        est.insert("distinct_called_numbers", 1.0 / 254f64.sqrt());
        est.insert("peers", 0.0);
        check(&l, &est);
        l.line = Some("10.20.0.1".parse().unwrap());
        l.median_talk_secs_inbound = Some(12.5);
        l.verdict = Some(simboxd_core::model::VerdictLevel::Suspect);
        check(&l, &est);
    }

    #[test]
    fn registrations_match_in_every_outcome() {
        let mut r = RegistrationRecord {
            account: "100@ex\"ample".into(),
            registrar: "198.51.100.1:5060".parse().unwrap(),
            source: "[2001:db8::1]:5070".parse().unwrap(),
            line: None,
            contact: None,
            expires: None,
            outcome: RegOutcome::Registered,
            status_code: None,
            user_agent: None,
            time: Timestamp(1_767_600_000_005_880),
        };
        for o in RegOutcome::ALL {
            r.outcome = o;
            let mut a = vec![b'{'];
            registration_fields(&mut a, &r);
            assert_eq!(a, serde_json::to_vec(&r).unwrap());
            r.line = Some("10.20.0.9".parse().unwrap());
            r.contact = Some("sip:7281@198.51.100.7:5070;\u{0}".into());
            r.expires = Some(u32::MAX);
            r.status_code = Some(401);
            r.user_agent = Some("friendly-scanner".into());
        }
    }

    #[test]
    fn an_empty_record_matches() {
        let c = CallRecord::new(String::new(), Direction::Transit, Timestamp(i64::MIN));
        assert_eq!(ours(&c), serde_bytes(&c));
    }

    proptest! {
        #[test]
        fn any_strings_times_and_figures_match_serde_json(
            s in "\\PC*|[\\x00-\\x1f\"\\\\]{0,8}",
            raw in proptest::collection::vec(any::<u8>(), 0..40),
            t in any::<i64>(),
            small_t in -100_000_000_000_000_000i64..300_000_000_000_000_000,
            jitter in any::<f64>(),
        ) {
            let mut c = full(&s);
            c.user_agent = Some(String::from_utf8_lossy(&raw).into_owned());
            c.start = Timestamp(small_t);
            c.progress = Some(Timestamp(t));
            c.rtp.push(stream(jitter, small_t));
            prop_assert_eq!(ours(&c), serde_bytes(&c));
        }
    }
}
