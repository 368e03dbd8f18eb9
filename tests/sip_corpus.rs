//! Every SIP/SDP message file in the public corpus parses or is rejected with an error kind (none
//! panics), the RFC 4475 valid messages parse with the right fields, and the RFC 4475 invalid
//! messages are either rejected or accepted on purpose (each choice explained below).
//!
//! Run with `SIMBOXD_CORPUS=/work/shared/captures/public` when the corpus is not beside the crate.

use simboxd::corpus::{corpus_dir, files_under};
use simboxd_core::sdp;
use simboxd_core::sip::{self, Limits, Method, Scheme};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn read(dir: &Path, rel: &str) -> Vec<u8> {
    let p = dir.join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn rfc(dir: &Path, name: &str) -> Vec<u8> {
    read(dir, &format!("resiprocate/rfc4475/{name}.dat"))
}

/// RFC 4475 3.1.1: valid messages that must parse.
const VALID_3_1_1: &[&str] = &[
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
];

/// RFC 4475 3.2 (transaction layer), 3.3 (application layer), 3.4 (backward compatibility):
/// syntactically valid messages whose problems are semantic; a parser must accept them.
const SEMANTIC: &[&str] = &[
    "badbranch",
    "insuf",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "multi01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
];

/// RFC 4475 3.1.2 invalid messages with what this parser does, and why.
/// `Err(kind)`: rejected with that kind. `Ok(reason)`: accepted on purpose.
const INVALID_3_1_2: &[(&str, Result<&str, &str>)] = &[
    // 3.1.2.1 Extraneous separators (`;;,;,,` in Via, `;;;;` in Contact). The separators are
    // empty elements; the meaning is clear, so a tap keeps the message.
    ("badinv01", Ok("empty list elements and params are skipped")),
    // 3.1.2.2 Content-Length larger than the datagram.
    ("clerr", Err("truncated")),
    // 3.1.2.3 Negative Content-Length.
    ("ncl", Err("bad_content_length")),
    // 3.1.2.4/5 Overlarge scalars (CSeq beyond 2**32, Expires of 100 digits). The message is
    // kept; `cseq()` returns None and `expires()` saturates at 2**32-1 as RFC 3261 20.19 says.
    (
        "scalar02",
        Ok("overlarge CSeq -> cseq() None; Expires saturates"),
    ),
    ("scalarlg", Ok("overlarge CSeq -> cseq() None")),
    // 3.1.2.6 Unterminated quote in To: the message is kept, `to()` returns None.
    (
        "quotbal",
        Ok("to() is None for the unbalanced display name"),
    ),
    // 3.1.2.7 Request-URI in <>: kept (the start line is still three parts), but
    // `request_uri()` is None because `<sip:` is not a known scheme.
    ("ltgtruri", Ok("request_uri() None")),
    // 3.1.2.8 LWS inside the Request-URI: the start line is ambiguous.
    ("lwsruri", Err("bad_start_line")),
    // 3.1.2.9 Multiple SP between start-line elements.
    ("lwsstart", Err("bad_start_line")),
    // 3.1.2.10 Trailing SP after SIP/2.0.
    ("trws", Err("bad_start_line")),
    // 3.1.2.11 Escaped headers in the Request-URI: only meaningful to a UA; the call is real.
    ("escruri", Ok("URI headers kept in Uri::headers")),
    // 3.1.2.12 Bad time zone in Date: Date is not interpreted.
    ("baddate", Ok("Date not parsed")),
    // 3.1.2.13 Contact URI with `?` not in <>: the URI is still readable.
    ("regbadct", Ok("addr-spec Contact read as far as it goes")),
    // 3.1.2.14 Spaces inside <...>: trimmed; who is calling whom is still clear.
    ("badaspec", Ok("LWS inside <> trimmed")),
    // 3.1.2.15 Non-token characters in an unquoted display name: kept as the display name.
    ("baddn", Ok("display name kept as written")),
    // 3.1.2.16 Unknown SIP version.
    ("badvers", Err("bad_version")),
    // 3.1.2.17/18 CSeq method differs from the request method: a dialog-level check for the
    // call tracker; the parser reports both as written.
    ("mismatch01", Ok("CSeq method reported as written")),
    ("mismatch02", Ok("CSeq method reported as written")),
    // 3.1.2.19 Response code beyond 699 (4294967301).
    ("bigcode", Err("bad_status")),
    // RFC 4475 3.3.9 lists mcl01 (two different Content-Length values) with the application
    // layer tests; the body boundary is then unknown, so it is rejected here.
    ("mcl01", Err("bad_content_length")),
];

#[test]
fn rfc4475_valid_messages_parse_with_fields() {
    let Some(dir) = corpus_dir() else { return };
    let lim = Limits::default();
    for name in VALID_3_1_1.iter().chain(SEMANTIC) {
        let b = rfc(&dir, name);
        let m = sip::parse(&b, &lim).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            m.call_id().is_some() || *name == "insuf",
            "{name}: no Call-ID"
        );
        if m.has_sdp() {
            let s = sdp::parse(m.body).unwrap_or_else(|e| panic!("{name} SDP: {e}"));
            assert!(!s.media.is_empty(), "{name}: SDP without media");
        }
    }

    // 3.1.1.1 wsinv: white space everywhere, folding, compact forms, odd case.
    let b = rfc(&dir, "wsinv");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.call_id(), Some("wsinv.ndaksdj@192.0.2.1"));
    assert_eq!(m.cseq(), Some((9, Method::Invite)));
    assert_eq!(m.to().unwrap().tag, Some("1918181833n"));
    assert_eq!(m.to().unwrap().user, Some("vivekg"));
    assert_eq!(m.from().unwrap().tag, Some("98asjd8"));
    assert_eq!(m.from().unwrap().display, Some(r#"J Rosenberg \\\""#));
    assert_eq!(m.header("max-forwards"), Some("0068"));
    let vias: Vec<_> = m.vias().collect();
    assert_eq!(vias.len(), 3);
    assert_eq!((vias[0].transport, vias[0].host), ("UDP", "192.0.2.2"));
    assert_eq!(vias[0].branch, Some("390skdjuw"));
    assert_eq!(
        (vias[1].transport, vias[1].host),
        ("TCP", "spindle.example.com")
    );
    assert_eq!(vias[1].branch, Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].branch, Some("z9hG4bK30239"));
    assert_eq!(m.header("s"), Some(""));
    assert_eq!(m.content_length(), Some(150));
    assert_eq!(m.body.len(), 150);
    let ru = m.request_uri().unwrap();
    assert!(ru.params.has("unknownparam"));
    assert!(m
        .header("NewFangledHeader")
        .unwrap()
        .ends_with("continued newfangled value"));

    // 3.1.1.2 intmeth: unusual method token and characters everywhere.
    let b = rfc(&dir, "intmeth");
    let m = sip::parse(&b, &lim).unwrap();
    let weird = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method(), Some(Method::Other(weird)));
    assert_eq!(m.cseq(), Some((139122385, Method::Other(weird))));
    assert_eq!(
        m.call_id(),
        Some(r#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#)
    );
    let ru = m.request_uri().unwrap();
    assert_eq!(
        ru.user,
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(ru.host, "example.com");
    assert_eq!(m.from().unwrap().tag, Some("_token~1'+`*%!-."));
    assert_eq!(m.from().unwrap().user, Some("mundane"));
    assert_eq!(
        m.to().unwrap().user,
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(m.top_via().unwrap().branch, Some("z9hG4bK-.!%66*_+`'~"));
    assert_eq!(
        m.header("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}大停電")
    );

    // 3.1.1.3 esc01: escaped characters, compact i and C.
    let b = rfc(&dir, "esc01");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
    assert_eq!(m.content_type(), Some("application/sdp"));
    assert!(m.has_sdp());
    assert_eq!(
        m.request_uri().unwrap().user,
        Some("sips%3Auser%40example.com")
    );
    assert_eq!(m.to().unwrap().user, Some("%75se%72"));
    assert_eq!(m.contact().unwrap().user, Some("cal%6Cer"));

    // 3.1.1.4 escnull: %00 in users, two Contact headers, compact L.
    let b = rfc(&dir, "escnull");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.contacts().count(), 2);
    assert_eq!(m.content_length(), Some(0));
    assert_eq!(m.to().unwrap().user, Some("null-%00-null"));

    // 3.1.1.5 esc02: escaped method is a different (extension) method; C%6Fntact is not Contact.
    let b = rfc(&dir, "esc02");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.method(), Some(Method::Other("RE%47IST%45R")));
    assert_eq!(m.contacts().count(), 2);
    assert_eq!(
        m.header("C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );

    // 3.1.1.6 lwsdisp: no LWS between display name and <.
    let b = rfc(&dir, "lwsdisp");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.from().unwrap().display, Some("caller"));
    assert_eq!(m.from().unwrap().tag, Some("323"));

    // 3.1.1.7 longreq: long values everywhere.
    let b = rfc(&dir, "longreq");
    let m = sip::parse(&b, &lim).unwrap();
    assert!(m.call_id().unwrap().len() > 100);
    assert_eq!(m.to().unwrap().port, Some(6000));
    assert!(m.vias().count() > 30);
    let tag = m.from().unwrap().tag.unwrap();
    assert!(
        tag.starts_with("1298298298") && tag.ends_with("424") && tag.len() > 100,
        "{tag}"
    );

    // 3.1.1.8 dblreq: a REGISTER followed by an INVITE in one datagram: the second is ignored.
    let b = rfc(&dir, "dblreq");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.method(), Some(Method::Register));
    assert_eq!(m.call_id(), Some("dblreq.0ha0isndaksdj99sdfafnl3lk233412"));
    assert!(m.body.is_empty());
    assert!(m.trailing > 300);

    // 3.1.1.9 semiuri: `;` in the user part; folded Accept list.
    let b = rfc(&dir, "semiuri");
    let m = sip::parse(&b, &lim).unwrap();
    let ru = m.request_uri().unwrap();
    assert_eq!(ru.user, Some("user;par=u%40example.net"));
    assert_eq!(ru.number(), Some("user"));
    assert_eq!(ru.host, "example.com");
    assert_eq!(m.header_values("accept").count(), 6);

    // 3.1.1.10 transports: five Vias with different transports.
    let b = rfc(&dir, "transports");
    let m = sip::parse(&b, &lim).unwrap();
    let t: Vec<_> = m.vias().map(|v| v.transport).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(m.call_id(), Some("transports.kijh4akdnaqjkwendsasfdj"));

    // 3.1.1.11 mpart01: multipart body kept whole.
    let b = rfc(&dir, "mpart01");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.method(), Some(Method::Message));
    assert!(m.content_type().unwrap().starts_with("multipart/mixed"));
    assert_eq!(Some(m.body.len()), m.content_length());
    assert!(!m.has_sdp());

    // 3.1.1.12 unreason: UTF-8 reason phrase.
    let b = rfc(&dir, "unreason");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.status(), Some(200));
    assert!(m.reason().unwrap().contains("простое"));
    assert_eq!(m.to().unwrap().tag, Some("2229"));

    // 3.1.1.13 noreason: empty reason phrase.
    let b = rfc(&dir, "noreason");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!((m.status(), m.reason()), (Some(100), Some("")));

    // 3.3.2 unkscm: unknown Request-URI scheme kept as text.
    let b = rfc(&dir, "unkscm");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(
        m.request_uri_str(),
        Some("nobodyKnowsThisScheme:totallyopaquecontent")
    );
    assert_eq!(m.request_uri(), None);
}

#[test]
fn rfc4475_invalid_messages_rejected_or_accepted_on_purpose() {
    let Some(dir) = corpus_dir() else { return };
    let lim = Limits::default();
    let mut report = Vec::new();
    for (name, want) in INVALID_3_1_2 {
        let b = rfc(&dir, name);
        let got = sip::parse(&b, &lim);
        match (want, &got) {
            (Err(kind), Err(e)) => assert_eq!(e.kind(), *kind, "{name}"),
            (Ok(_), Ok(_)) => {}
            _ => panic!("{name}: expected {want:?}, got {got:?}"),
        }
        report.push(format!(
            "{name}: {}",
            match (want, &got) {
                (Err(_), Err(e)) => format!("rejected ({})", e.kind()),
                (Ok(why), _) => format!("accepted: {why}"),
                _ => unreachable!(),
            }
        ));
    }
    eprintln!("RFC 4475 invalid messages:\n  {}", report.join("\n  "));

    // The accepted ones expose their defects through the accessors as documented above.
    let m_owned = rfc(&dir, "scalar02");
    let m = sip::parse(&m_owned, &lim).unwrap();
    assert_eq!(m.cseq(), None);
    assert_eq!(m.expires(), Some(u32::MAX));
    assert_eq!(m.contact_expires(), Some(u32::MAX));
    let b = rfc(&dir, "scalarlg");
    assert_eq!(sip::parse(&b, &lim).unwrap().cseq(), None);
    let b = rfc(&dir, "quotbal");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.to(), None);
    assert_eq!(m.from().unwrap().tag, Some("93334"));
    let b = rfc(&dir, "ltgtruri");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.request_uri(), None);
    let b = rfc(&dir, "escruri");
    let ru_owned = sip::parse(&b, &lim).unwrap();
    let ru = ru_owned.request_uri().unwrap();
    assert_eq!(ru.headers, Some("Route=%3Csip:example.com%3E"));
    let b = rfc(&dir, "badaspec");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.to().unwrap().user, Some("t.watson"));
    let b = rfc(&dir, "baddn");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.from().unwrap().display, Some("Bell, Alexander"));
    let b = rfc(&dir, "mismatch01");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.method(), Some(Method::Options));
    assert_eq!(m.cseq(), Some((8, Method::Invite)));
    let b = rfc(&dir, "badinv01");
    let m = sip::parse(&b, &lim).unwrap();
    assert_eq!(m.top_via().unwrap().host, "192.0.2.15");
    assert_eq!(m.contact().unwrap().user, Some("joe"));
}

/// Message files in the corpus: RFC 4475 and resiprocate tests, sip2json, pjproject seeds.
fn message_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["resiprocate", "sip2json", "pjproject"] {
        for p in files_under(&dir.join(sub)) {
            let name = p.to_string_lossy();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            let is_msg = matches!(ext, "dat" | "sip" | "msg" | "sdp" | "txt")
                && (name.contains("rfc4475")
                    || name.contains("RSP-")
                    || name.contains("sip2json")
                    || name.contains("fuzz-sip")
                    || name.contains("fuzz-sdp"));
            if is_msg {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn every_message_file_parses_or_is_rejected_with_a_kind() {
    let Some(dir) = corpus_dir() else { return };
    let lim = Limits::default();
    let files = message_files(&dir);
    assert!(
        files.len() >= 100,
        "only {} message files found",
        files.len()
    );
    let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
    let mut sdp_ok = 0;
    for p in &files {
        let b = std::fs::read(p).unwrap();
        let rel = p.strip_prefix(&dir).unwrap().display().to_string();
        if rel.contains("fuzz-sdp") {
            let r = sdp::parse(&b);
            let key = match &r {
                Ok(_) => "sdp:ok".to_string(),
                Err(e) => format!("sdp:{}", e.kind()),
            };
            *outcomes.entry(key).or_default() += 1;
            if let Ok(s) = r {
                sdp_ok += 1;
                for m in s.media.iter() {
                    let _ = m.codec_names().count();
                    let _ = m.rtp_endpoint();
                }
            }
            continue;
        }
        let key = match sip::parse(&b, &lim) {
            Ok(m) => {
                // Every accessor runs on every accepted message.
                let _ = (
                    m.call_id(),
                    m.cseq(),
                    m.from(),
                    m.to(),
                    m.contact(),
                    m.top_via(),
                );
                let _ = (
                    m.request_uri(),
                    m.expires(),
                    m.contact_expires(),
                    m.user_agent(),
                );
                if m.has_sdp() {
                    let _ = sdp::parse(m.body);
                }
                "sip:ok".to_string()
            }
            Err(e) => {
                assert!(!e.kind().is_empty());
                format!("sip:{}", e.kind())
            }
        };
        *outcomes.entry(key).or_default() += 1;
    }
    eprintln!("{} message files: {outcomes:?}", files.len());
    assert!(
        outcomes.get("sip:ok").copied().unwrap_or(0) >= 60,
        "{outcomes:?}"
    );
    assert!(sdp_ok >= 5, "{outcomes:?}");
}

#[test]
fn sip2json_log_files_keep_their_headers() {
    let Some(dir) = corpus_dir() else { return };
    let lim = Limits::default();
    let mut checked = 0;
    for p in files_under(&dir.join("sip2json")) {
        let b = std::fs::read(&p).unwrap();
        if sip::looks_like_sip(&b) {
            // These are log excerpts with LF line ends whose Content-Length counted CRLF, so
            // strict parsing may say `truncated`; the lenient parse keeps the headers.
            let m = sip::parse_lenient(&b, &lim).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(m.call_id().is_some(), "{}", p.display());
            assert!(m.top_via().is_some(), "{}", p.display());
            checked += 1;
        } else {
            // Files starting with a log timestamp are not SIP on their first line.
            assert!(sip::parse(&b, &lim).is_err(), "{}", p.display());
        }
    }
    assert!(checked >= 20, "{checked}");
}

#[test]
fn pjproject_seeds_fields() {
    let Some(dir) = corpus_dir() else { return };
    let lim = Limits::default();
    let b = read(
        &dir,
        "pjproject/fuzz-sip_seed_corpus_extracted/fuzz-sip_seed_corpus/tel_uri_basic.sip",
    );
    let m = sip::parse(&b, &lim).unwrap();
    let ru = m.request_uri().unwrap();
    assert_eq!(ru.scheme, Scheme::Tel);
    assert_eq!(ru.user, Some("+1-212-555-0100"));
    assert_eq!(sip::phone_digits(ru.user.unwrap()), "+12125550100");
}
