//! Property tests for the SIP and SDP parsers: no panic on any input, and generated well-formed
//! messages parse back to the fields they were built from.

use proptest::prelude::*;
use simboxd_core::{sdp, sip};

fn limits() -> sip::Limits {
    sip::Limits::default()
}

/// Exercises every accessor; none may panic whatever the message.
fn touch_all(m: &sip::SipMessage<'_>) {
    let _ = (m.is_request(), m.status(), m.reason(), m.method());
    let _ = (m.request_uri(), m.request_uri_str(), m.call_id(), m.cseq());
    let _ = (
        m.from(),
        m.to(),
        m.contact(),
        m.contact_expires(),
        m.top_via(),
    );
    let _ = (m.user_agent(), m.server(), m.allow(), m.expires());
    let _ = (m.content_type(), m.content_length(), m.has_sdp());
    let _ = m.contacts().count() + m.vias().count();
    for h in m.headers.iter() {
        let _ = m.header_values(h.name).count();
        let _ = sip::parse_name_addr(h.value);
        let _ = sip::parse_via(h.value);
        let _ = sip::parse_uri(h.value);
    }
    if let Some(u) = m.request_uri() {
        let _ = (u.number(), u.host_ip(), u.params.iter().count());
    }
}

const METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
    "X-GOIP",
    "invite",
];

/// Randomises the case of an ASCII header name.
fn cased(name: &str, mask: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Gen {
    method: &'static str,
    user: String,
    host: String,
    port: Option<u16>,
    call_id: String,
    tag: String,
    cseq: u32,
    branch: String,
    ua: String,
    body: Vec<u8>,
    compact: bool,
    case_mask: u64,
    lf_only: bool,
    fold: bool,
    order: Vec<usize>,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        prop::sample::select(METHODS),
        "\\+?[0-9]{3,15}|[a-z][a-z0-9._-]{0,12}",
        "[a-z]{1,10}\\.(com|net)|(25[0-5]|1?[0-9]?[0-9])\\.(1?[0-9]?[0-9])\\.1\\.2",
        prop::option::of(1u16..),
        "[A-Za-z0-9.@_-]{1,40}",
        "[a-z0-9]{1,16}",
        0u32..(1 << 31),
        "z9hG4bK[a-zA-Z0-9]{1,20}",
        "[A-Za-z][ -~]{0,30}",
        prop::collection::vec(any::<u8>(), 0..200),
        (
            any::<bool>(),
            any::<u64>(),
            any::<bool>(),
            any::<bool>(),
            Just((0..8).collect::<Vec<usize>>()).prop_shuffle(),
        ),
    )
        .prop_map(
            |(
                method,
                user,
                host,
                port,
                call_id,
                tag,
                cseq,
                branch,
                ua,
                body,
                (compact, case_mask, lf_only, fold, order),
            )| Gen {
                method,
                user,
                host,
                port,
                call_id,
                tag,
                cseq,
                branch,
                ua: ua.trim().to_string(),
                body,
                compact,
                case_mask,
                lf_only,
                fold,
                order,
            },
        )
}

fn render(g: &Gen) -> Vec<u8> {
    let eol = if g.lf_only { "\n" } else { "\r\n" };
    let hostport = match g.port {
        Some(p) => format!("{}:{p}", g.host),
        None => g.host.clone(),
    };
    let n = |long: &str, short: &str| {
        if g.compact && !short.is_empty() {
            cased(short, g.case_mask)
        } else {
            cased(long, g.case_mask)
        }
    };
    let headers = [
        if g.fold {
            // A folded value: the continuation lines belong to Via.
            format!(
                "{}: SIP/2.0/UDP{eol}\t {hostport}{eol} ;branch={}",
                n("Via", "v"),
                g.branch
            )
        } else {
            format!(
                "{}: SIP/2.0/UDP {hostport};branch={}",
                n("Via", "v"),
                g.branch
            )
        },
        format!("{}: <sip:{}@{hostport}>", n("To", "t"), g.user),
        format!(
            "{}: \"Caller, X\" <sip:caller@example.org>;tag={}",
            n("From", "f"),
            g.tag
        ),
        format!("{}: {}", n("Call-ID", "i"), g.call_id),
        format!("{}: {} {}", n("CSeq", ""), g.cseq, g.method),
        format!("{}: {}", n("User-Agent", ""), g.ua),
        format!("{}: {}", n("Content-Length", "l"), g.body.len()),
        format!("{}: 70", n("Max-Forwards", "")),
    ];
    let mut out = format!("{} sip:{}@{hostport} SIP/2.0{eol}", g.method, g.user).into_bytes();
    for &i in &g.order {
        out.extend_from_slice(headers[i].as_bytes());
        out.extend_from_slice(eol.as_bytes());
    }
    out.extend_from_slice(eol.as_bytes());
    out.extend_from_slice(&g.body);
    out
}

fn sdp_text(port: u16, pts: &[u8], ptime: Option<u32>, v6: bool) -> String {
    let c = if v6 {
        "IN IP6 2001:db8::7"
    } else {
        "IN IP4 192.0.2.7"
    };
    let mut s =
        format!("v=0\r\no=gw 1 1 {c}\r\ns=call\r\nc={c}\r\nt=0 0\r\nm=audio {port} RTP/AVP");
    for pt in pts {
        s.push_str(&format!(" {pt}"));
    }
    s.push_str("\r\n");
    for pt in pts.iter().filter(|&&p| p >= 96) {
        s.push_str(&format!("a=rtpmap:{pt} DYN{pt}/8000\r\n"));
    }
    if let Some(p) = ptime {
        s.push_str(&format!("a=ptime:{p}\r\n"));
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sip_arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = sip::looks_like_sip(&data);
        let _ = sip::frame_len(&data, &limits());
        if let Ok(m) = sip::parse(&data, &limits()) {
            touch_all(&m);
        }
        if let Ok(m) = sip::parse_lenient(&data, &limits()) {
            touch_all(&m);
        }
    }

    #[test]
    fn sip_text_like_input_never_panics(s in "[ -~\r\n\t]{0,600}") {
        // Mostly printable input gets much further into the header code than random bytes.
        let mut data = b"INVITE sip:a@b SIP/2.0\r\n".to_vec();
        data.extend_from_slice(s.as_bytes());
        if let Ok(m) = sip::parse(&data, &limits()) {
            touch_all(&m);
        }
        let _ = sip::frame_len(&data, &limits());
        let _ = sip::parse_uri(&s);
        let _ = sip::parse_name_addr(&s);
        let _ = sip::parse_via(&s);
    }

    #[test]
    fn sip_generated_messages_round_trip(g in gen()) {
        let bytes = render(&g);
        prop_assert!(sip::looks_like_sip(&bytes));
        let m = sip::parse(&bytes, &limits()).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
        touch_all(&m);
        prop_assert_eq!(m.method().map(|x| x.as_str()), Some(g.method));
        let ru = m.request_uri().unwrap();
        prop_assert_eq!(ru.user, Some(g.user.as_str()));
        prop_assert_eq!(ru.host, g.host.as_str());
        prop_assert_eq!(ru.port, g.port);
        prop_assert_eq!(m.call_id(), Some(g.call_id.as_str()));
        prop_assert_eq!(m.cseq().map(|(n, x)| (n, x.as_str())), Some((g.cseq, g.method)));
        prop_assert_eq!(m.from().unwrap().tag, Some(g.tag.as_str()));
        prop_assert_eq!(m.from().unwrap().display, Some("Caller, X"));
        prop_assert_eq!(m.to().unwrap().user, Some(g.user.as_str()));
        let via = m.top_via().unwrap();
        prop_assert_eq!(via.branch, Some(g.branch.as_str()));
        prop_assert_eq!(via.host, g.host.as_str());
        prop_assert_eq!(via.port, g.port);
        prop_assert_eq!(m.user_agent(), Some(g.ua.as_str()));
        prop_assert_eq!(m.body, &g.body[..]);
        prop_assert_eq!(m.content_length(), Some(g.body.len()));
        prop_assert_eq!(m.headers.len(), 8);
        // TCP framing finds the same message boundary.
        prop_assert_eq!(sip::frame_len(&bytes, &limits()).unwrap(), Some(bytes.len()));
    }

    #[test]
    fn sip_cut_messages_are_truncated_or_short(g in gen(), cut in 0usize..400) {
        let bytes = render(&g);
        let cut = cut.min(bytes.len());
        let part = &bytes[..cut];
        // A prefix either fails with an error kind or parses to a message with fewer fields:
        // never a panic, never a body beyond what is there.
        let parsed = sip::parse(part, &limits());
        if let Ok(m) = &parsed {
            prop_assert!(m.body.len() <= part.len());
        }
    }

    #[test]
    fn sdp_arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(s) = sdp::parse(&data) {
            for m in s.media.iter() {
                let _ = m.codec_names().count();
                let _ = m.rtp_endpoint();
            }
        }
    }

    #[test]
    fn sdp_line_soup_never_panics(lines in prop::collection::vec("[vocmast]=[ -~]{0,40}", 0..40)) {
        let text = format!("v=0\r\n{}", lines.join("\r\n"));
        let parsed = sdp::parse(text.as_bytes());
        if let Ok(s) = &parsed {
            prop_assert!(s.media.len() <= sdp::MAX_MEDIA);
            for m in s.media.iter() {
                prop_assert!(m.payload_types.len() <= sdp::MAX_PAYLOAD_TYPES);
                let _ = m.codec_names().count();
                let _ = m.rtp_endpoint();
            }
        }
    }

    #[test]
    fn sdp_generated_round_trip(
        port in 1u16..,
        pts in prop::collection::btree_set(prop::sample::select(vec![0u8, 3, 4, 8, 9, 18, 96, 97, 101, 120]), 1..6),
        ptime in prop::option::of(prop::sample::select(vec![10u32, 20, 30, 40, 60])),
        v6 in any::<bool>(),
    ) {
        let pts: Vec<u8> = pts.into_iter().collect();
        let text = sdp_text(port, &pts, ptime, v6);
        let s = sdp::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(s.media.len(), 1);
        let m = &s.media[0];
        prop_assert_eq!(m.port, port);
        prop_assert_eq!(m.payload_types.as_slice(), &pts[..]);
        prop_assert_eq!(m.ptime, ptime);
        let names: Vec<String> = m.codec_names().map(str::to_string).collect();
        let want: Vec<String> = pts
            .iter()
            .map(|&p| sdp::static_payload_name(p).map(str::to_string).unwrap_or(format!("DYN{p}")))
            .collect();
        prop_assert_eq!(names, want);
        let ip: std::net::IpAddr = if v6 { "2001:db8::7".parse().unwrap() } else { "192.0.2.7".parse().unwrap() };
        prop_assert_eq!(m.rtp_endpoint(), Some(std::net::SocketAddr::new(ip, port)));
        prop_assert_eq!(s.origin_user, Some("gw"));
    }
}
