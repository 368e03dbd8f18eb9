use super::*;
use crate::engine::EngineConfig;
use crate::model::{
    CallRecord, Datagram, Direction, Event, Outcome, ProbeMethod, ProbeRecord, RegOutcome,
    RegistrationRecord, Timestamp, Transport,
};
use proptest::prelude::*;
use std::net::SocketAddr;

const PHONE: &str = "192.168.1.10:5060";
const SWITCH: &str = "203.0.113.5:5060";
const PHONE_RTP: &str = "192.168.1.10:40000";
const SWITCH_RTP: &str = "203.0.113.5:30000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn msg(start: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut s = format!("{start}\r\n");
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        s.push_str("Content-Type: application/sdp\r\n");
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.into_bytes()
}

fn sdp(ep: &str, user: &str, session: &str, pts: &str) -> String {
    let a = addr(ep);
    let mut s = format!(
        "v=0\r\no={user} 1 1 IN IP4 {ip}\r\ns={session}\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {pts}\r\n",
        ip = a.ip(),
        port = a.port()
    );
    for pt in pts.split(' ') {
        match pt {
            "101" => s.push_str("a=rtpmap:101 telephone-event/8000\r\n"),
            "18" => s.push_str("a=rtpmap:18 G729/8000\r\n"),
            "8" => s.push_str("a=rtpmap:8 PCMA/8000\r\n"),
            "0" => s.push_str("a=rtpmap:0 PCMU/8000\r\n"),
            _ => {}
        }
    }
    s.push_str("a=ptime:20\r\n");
    s
}

/// One call's messages: `caller` sends the INVITE to `callee`.
struct Call {
    id: &'static str,
    caller: &'static str,
    callee: &'static str,
}

impl Call {
    fn base(&self, cseq: u32, method: &str, to_tag: Option<&str>) -> Vec<(String, String)> {
        let to = match to_tag {
            Some(t) => format!("<sip:13800138000@{}>;tag={t}", addr(self.callee).ip()),
            None => format!("<sip:13800138000@{}>", addr(self.callee).ip()),
        };
        vec![
            (
                "Via".into(),
                format!("SIP/2.0/UDP {};branch=z9hG4bK{cseq}{method}", self.caller),
            ),
            (
                "From".into(),
                format!(
                    "\"0086\" <sip:0086755123@{}>;tag=caller1",
                    addr(self.caller).ip()
                ),
            ),
            ("To".into(), to),
            ("Call-ID".into(), self.id.into()),
            ("CSeq".into(), format!("{cseq} {method}")),
        ]
    }
    fn render(
        start: &str,
        h: Vec<(String, String)>,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Vec<u8> {
        let mut all: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        all.extend_from_slice(extra);
        msg(start, &all, body)
    }
    fn invite(&self, cseq: u32, body: &str) -> Vec<u8> {
        let start = format!("INVITE sip:13800138000@{} SIP/2.0", self.callee);
        Self::render(
            &start,
            self.base(cseq, "INVITE", None),
            &[
                ("Contact", "<sip:0086755123@203.0.113.5:5060>"),
                ("User-Agent", "VOS3000"),
            ],
            body,
        )
    }
    fn resp(
        &self,
        code: u16,
        cseq: u32,
        method: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Vec<u8> {
        let tag = if code == 100 { None } else { Some("callee1") };
        Self::render(
            &format!("SIP/2.0 {code} X"),
            self.base(cseq, method, tag),
            extra,
            body,
        )
    }
    fn req(&self, method: &str, cseq: u32) -> Vec<u8> {
        let start = format!("{method} sip:13800138000@{} SIP/2.0", self.callee);
        let tag = if method == "CANCEL" {
            None
        } else {
            Some("callee1")
        };
        Self::render(&start, self.base(cseq, method, tag), &[], "")
    }
    /// BYE sent by the callee: From/To swapped.
    fn bye_from_callee(&self, cseq: u32) -> Vec<u8> {
        let start = format!("BYE sip:0086755123@{} SIP/2.0", self.caller);
        let h = vec![
            (
                "Via".to_string(),
                format!("SIP/2.0/UDP {};branch=z9hG4bKcb{cseq}", self.callee),
            ),
            (
                "From".to_string(),
                format!("<sip:13800138000@{}>;tag=callee1", addr(self.callee).ip()),
            ),
            (
                "To".to_string(),
                format!("<sip:0086755123@{}>;tag=caller1", addr(self.caller).ip()),
            ),
            ("Call-ID".to_string(), self.id.to_string()),
            ("CSeq".to_string(), format!("{cseq} BYE")),
        ];
        Self::render(&start, h, &[], "")
    }
}

const INBOUND: Call = Call {
    id: "call-1@softswitch",
    caller: SWITCH,
    callee: PHONE,
};

struct Run {
    t: Tracker,
    ev: Vec<Event>,
}

impl Run {
    fn new() -> Self {
        Self::with(EngineConfig::default())
    }
    fn with(cfg: EngineConfig) -> Self {
        Run {
            t: Tracker::new(&cfg.network, &cfg.limits),
            ev: Vec::new(),
        }
    }
    fn send(&mut self, src: &str, dst: &str, ms: i64, payload: &[u8]) {
        let d = Datagram {
            ts: Timestamp(ms * 1000),
            src: addr(src),
            dst: addr(dst),
            transport: Transport::Udp,
            payload,
            ip_len: payload.len() as u32 + 28,
        };
        self.t.on_datagram(&d, &mut self.ev);
    }
    /// The caller side sends (`up`) or the callee side sends.
    fn sip(&mut self, c: &Call, up: bool, ms: i64, payload: &[u8]) {
        if up {
            self.send(c.caller, c.callee, ms, payload);
        } else {
            self.send(c.callee, c.caller, ms, payload);
        }
    }
    fn rtp(&mut self, from_ms: i64, secs: i64) {
        for i in 0..secs * 50 {
            let at = from_ms + i * 20;
            let mut a = vec![0x80, 18];
            a.extend_from_slice(&(i as u16).to_be_bytes());
            a.extend_from_slice(&((i as u32) * 160).to_be_bytes());
            a.extend_from_slice(&0x1111u32.to_be_bytes());
            a.extend_from_slice(&[0u8; 20]);
            self.send(SWITCH_RTP, PHONE_RTP, at, &a);
            let mut b = a.clone();
            b[8..12].copy_from_slice(&0x2222u32.to_be_bytes());
            self.send(PHONE_RTP, SWITCH_RTP, at + 1, &b);
        }
    }
    fn finish(&mut self, ms: i64) {
        self.t.finish(Timestamp(ms * 1000), &mut self.ev);
    }
    fn expire(&mut self, ms: i64) {
        self.t.expire(Timestamp(ms * 1000), &mut self.ev);
    }
    fn calls(&self) -> Vec<&CallRecord> {
        self.ev
            .iter()
            .filter_map(|e| match e {
                Event::CallEnded(r) => Some(&**r),
                _ => None,
            })
            .collect()
    }
    fn count(&self, f: fn(&Event) -> bool) -> usize {
        self.ev.iter().filter(|e| f(e)).count()
    }
    fn regs(&self) -> Vec<&RegistrationRecord> {
        self.ev
            .iter()
            .filter_map(|e| match e {
                Event::Registration(r) => Some(&**r),
                _ => None,
            })
            .collect()
    }
}

fn started(e: &Event) -> bool {
    matches!(e, Event::CallStarted { .. })
}
fn answered(e: &Event) -> bool {
    matches!(e, Event::CallAnswered { .. })
}

#[test]
fn answered_inbound_call_with_sdp_and_rtp() {
    let c = INBOUND;
    let mut r = Run::new();
    let offer = sdp(SWITCH_RTP, "VOS3000", "session", "18 8 101");
    let answer = sdp(PHONE_RTP, "dbl", "DBL", "18 101");
    let phone_hdrs = [
        ("User-Agent", "dble"),
        ("Allow", "INVITE, ACK, BYE, CANCEL"),
        ("Contact", "<sip:goip@10.0.0.2:5060>"),
    ];
    r.sip(&c, true, 0, &c.invite(1, &offer));
    r.sip(&c, false, 10, &c.resp(100, 1, "INVITE", &[], ""));
    r.sip(
        &c,
        false,
        500,
        &c.resp(183, 1, "INVITE", &phone_hdrs, &answer),
    );
    r.sip(
        &c,
        false,
        4000,
        &c.resp(200, 1, "INVITE", &phone_hdrs, &answer),
    );
    r.sip(&c, true, 4050, &c.req("ACK", 1));
    r.rtp(4100, 3);
    r.sip(&c, true, 7200, &c.req("BYE", 2));
    r.sip(&c, false, 7210, &c.resp(200, 2, "BYE", &[], ""));
    r.finish(20_000);

    assert_eq!(r.count(started), 1);
    assert_eq!(r.count(answered), 1);
    assert_eq!(r.count(|e| matches!(e, Event::MediaStarted { .. })), 1);
    match &r.ev[0] {
        Event::CallStarted {
            line,
            direction,
            peer,
            ts,
            ..
        } => {
            assert_eq!(*line, Some(addr(PHONE).ip()));
            assert_eq!(*direction, Direction::Inbound);
            assert_eq!(*peer, Some(addr(SWITCH)));
            assert_eq!(*ts, Timestamp(0));
        }
        e => panic!("{e:?}"),
    }
    let calls = r.calls();
    assert_eq!(calls.len(), 1);
    let k = calls[0];
    assert_eq!(k.outcome, Outcome::Answered);
    assert_eq!(k.status_code, Some(200));
    assert_eq!(k.progress, Some(Timestamp(500_000)));
    assert_eq!(k.answer, Some(Timestamp(4_000_000)));
    assert_eq!(k.end, Some(Timestamp(7_200_000)));
    assert_eq!(k.talk_secs(), Some(3.2));
    assert_eq!(k.from.as_deref(), Some("0086755123"));
    assert_eq!(k.to.as_deref(), Some("13800138000"));
    assert_eq!(k.request_uri.as_deref(), Some("13800138000"));
    // The line is the callee: its responses give the fingerprints, not the switch's INVITE.
    assert_eq!(k.user_agent.as_deref(), Some("dble"));
    assert_eq!(k.allow.as_deref(), Some("INVITE, ACK, BYE, CANCEL"));
    assert_eq!(k.sdp_origin.as_deref(), Some("dbl"));
    assert_eq!(k.sdp_session.as_deref(), Some("DBL"));
    assert!(k.private_contact);
    assert_eq!(k.codec.as_deref(), Some("G729"));
    assert_eq!(
        k.codecs,
        vec!["G729".to_string(), "telephone-event".to_string()]
    );
    assert_eq!(k.ptime, Some(20));
    assert_eq!(k.transport, Transport::Udp);
    assert_eq!(k.rtp.len(), 2);
    assert!(k.rtp.iter().all(|s| s.packets == 150 && s.lost == 0));
    let media =
        r.ev.iter()
            .find_map(|e| match e {
                Event::MediaEnded(m) => Some(m),
                _ => None,
            })
            .unwrap();
    assert_eq!(media.call_id.as_deref(), Some(c.id));
    assert!(media.voice_like && media.rtp);
    let s = r.t.stats();
    assert_eq!((s.calls, s.calls_answered, s.calls_ended), (1, 1, 1));
    assert_eq!(s.sip_messages, 7);
    assert_eq!((s.rtp_streams, s.rtp_packets), (2, 300));
    assert!(r.t.errors().0.is_empty(), "{:?}", r.t.errors());
}

#[test]
fn codec_names_are_canonical() {
    assert_eq!(canonical_codec("pcma"), "PCMA");
    assert_eq!(canonical_codec("ILBC"), "iLBC");
    assert_eq!(canonical_codec("Telephone-Event"), "telephone-event");
    assert_eq!(canonical_codec("X-weird"), "X-weird");
    let o = SideSdp {
        codecs: vec!["PCMU".into(), "G729".into(), "telephone-event".into()],
        ..SideSdp::default()
    };
    let a = SideSdp {
        codecs: vec!["telephone-event".into(), "G729".into()],
        ..SideSdp::default()
    };
    assert_eq!(
        negotiated_codec(Some(&o), Some(&a)).as_deref(),
        Some("G729")
    );
    assert_eq!(negotiated_codec(Some(&o), None).as_deref(), Some("PCMU"));
    assert_eq!(negotiated_codec(None, None), None);
}

#[test]
fn private_contact_means_behind_a_nat() {
    // The phone's own address is private (a CGNAT or test range): a Contact naming that
    // address is not behind a NAT; a Contact naming another private address is.
    let c = INBOUND;
    let mut r = Run::new();
    let own = [("Contact", "<sip:goip@192.168.1.10:5060>")];
    r.sip(&c, true, 0, &c.invite(1, ""));
    r.sip(&c, false, 100, &c.resp(200, 1, "INVITE", &own, ""));
    let d = Call {
        id: "nat",
        ..INBOUND
    };
    let lan = [("Contact", "<sip:goip@10.9.8.7:5060>")];
    r.sip(&d, true, 0, &d.invite(1, ""));
    r.sip(&d, false, 100, &d.resp(200, 1, "INVITE", &lan, ""));
    r.finish(1000);
    let calls = r.calls();
    assert!(
        !calls
            .iter()
            .find(|k| k.call_id == c.id)
            .unwrap()
            .private_contact
    );
    assert!(
        calls
            .iter()
            .find(|k| k.call_id == "nat")
            .unwrap()
            .private_contact
    );
    assert!(is_private_host("100.64.3.4") && is_private_host("[fd00::1]"));
    assert!(!is_private_host("203.0.113.5") && !is_private_host("example.com"));
}

#[test]
fn busy_is_reported_after_the_linger() {
    let c = INBOUND;
    let mut r = Run::new();
    r.sip(&c, true, 0, &c.invite(1, ""));
    r.sip(&c, false, 100, &c.resp(486, 1, "INVITE", &[], ""));
    r.sip(&c, true, 150, &c.req("ACK", 1));
    r.expire(3000);
    assert!(r.calls().is_empty());
    r.expire(4200);
    let calls = r.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome, Outcome::Busy);
    assert_eq!(calls[0].status_code, Some(486));
    assert_eq!(calls[0].end, Some(Timestamp(100_000)));
    // A late retransmission of the 486 or INVITE hits the tombstone: still one call.
    r.sip(&c, false, 5000, &c.resp(486, 1, "INVITE", &[], ""));
    r.sip(&c, true, 5000, &c.invite(1, ""));
    r.finish(6000);
    assert_eq!(r.calls().len(), 1);
    assert_eq!(r.t.stats().calls, 1);
}

#[test]
fn cancel_with_487_is_cancelled() {
    let c = INBOUND;
    let mut r = Run::new();
    r.sip(&c, true, 0, &c.invite(1, ""));
    r.sip(&c, false, 300, &c.resp(180, 1, "INVITE", &[], ""));
    r.sip(&c, true, 9000, &c.req("CANCEL", 1));
    r.sip(&c, false, 9010, &c.resp(200, 1, "CANCEL", &[], ""));
    r.sip(&c, false, 9020, &c.resp(487, 1, "INVITE", &[], ""));
    r.sip(&c, true, 9030, &c.req("ACK", 1));
    r.finish(10_000);
    let k = r.calls()[0];
    assert_eq!(k.outcome, Outcome::Cancelled);
    assert_eq!(k.status_code, Some(487));
    assert_eq!(k.progress, Some(Timestamp(300_000)));
    assert_eq!(k.answer, None);
}

#[test]
fn no_answer_by_code_and_by_setup_timeout() {
    let mut cfg = EngineConfig::default();
    cfg.limits.dialog_setup_timeout_secs = 60;
    let mut r = Run::with(cfg);
    let a = Call { id: "a", ..INBOUND };
    let b = Call { id: "b", ..INBOUND };
    let c = Call { id: "c", ..INBOUND };
    r.sip(&a, true, 0, &a.invite(1, ""));
    r.sip(&a, false, 100, &a.resp(480, 1, "INVITE", &[], ""));
    r.sip(&b, true, 0, &b.invite(1, ""));
    r.sip(&b, false, 100, &b.resp(180, 1, "INVITE", &[], ""));
    r.sip(&c, true, 0, &c.invite(1, ""));
    r.sip(&c, false, 100, &c.resp(100, 1, "INVITE", &[], ""));
    r.expire(59_000);
    assert_eq!(r.calls().len(), 1);
    r.expire(60_000);
    let calls = r.calls();
    assert_eq!(calls.len(), 3);
    let by = |id: &str| calls.iter().find(|k| k.call_id == id).unwrap().outcome;
    assert_eq!(by("a"), Outcome::NoAnswer);
    assert_eq!(by("b"), Outcome::NoAnswer);
    assert_eq!(by("c"), Outcome::Incomplete);
}

#[test]
fn retransmitted_invite_and_200_count_once() {
    let c = INBOUND;
    let mut r = Run::new();
    for ms in [0, 500, 1500] {
        r.sip(&c, true, ms, &c.invite(1, ""));
    }
    r.sip(&c, false, 2000, &c.resp(200, 1, "INVITE", &[], ""));
    r.sip(&c, false, 2500, &c.resp(200, 1, "INVITE", &[], ""));
    r.sip(&c, true, 2600, &c.req("ACK", 1));
    r.finish(3000);
    assert_eq!(r.count(started), 1);
    assert_eq!(r.count(answered), 1);
    let s = r.t.stats();
    assert_eq!(s.calls, 1);
    assert_eq!(s.retransmissions, 3);
    // Open at the end of input: answered, but not ended.
    let k = r.calls()[0];
    assert_eq!(k.outcome, Outcome::Answered);
    assert_eq!(k.end, None);
}

#[test]
fn reinvite_from_callee_does_not_start_a_call() {
    let c = INBOUND;
    let mut r = Run::new();
    r.sip(
        &c,
        true,
        0,
        &c.invite(1, &sdp(SWITCH_RTP, "os", "s", "18 8")),
    );
    r.sip(
        &c,
        false,
        100,
        &c.resp(200, 1, "INVITE", &[], &sdp(PHONE_RTP, "ph", "p", "18")),
    );
    r.sip(&c, true, 150, &c.req("ACK", 1));
    // The callee's re-INVITE uses its own CSeq space (1 again) and its own From-tag.
    let start = format!("INVITE sip:0086755123@{SWITCH} SIP/2.0");
    let re = msg(
        &start,
        &[
            ("Via", "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKre1"),
            ("From", "<sip:13800138000@192.168.1.10>;tag=callee1"),
            ("To", "<sip:0086755123@203.0.113.5>;tag=caller1"),
            ("Call-ID", c.id),
            ("CSeq", "1 INVITE"),
        ],
        &sdp(PHONE_RTP, "ph", "p", "8"),
    );
    r.send(PHONE, SWITCH, 5000, &re);
    let ok = msg(
        "SIP/2.0 200 OK",
        &[
            ("Via", "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKre1"),
            ("From", "<sip:13800138000@192.168.1.10>;tag=callee1"),
            ("To", "<sip:0086755123@203.0.113.5>;tag=caller1"),
            ("Call-ID", c.id),
            ("CSeq", "1 INVITE"),
        ],
        &sdp(SWITCH_RTP, "os", "s", "8"),
    );
    r.send(SWITCH, PHONE, 5010, &ok);
    r.sip(&c, true, 9000, &c.req("BYE", 2));
    r.finish(20_000);
    assert_eq!(r.count(started), 1);
    assert_eq!(r.count(answered), 1);
    assert_eq!(r.t.stats().calls, 1);
    let k = r.calls()[0];
    assert_eq!(k.outcome, Outcome::Answered);
    assert_eq!(k.answer, Some(Timestamp(100_000)));
    assert_eq!(k.end, Some(Timestamp(9_000_000)));
    // The re-INVITE switched the call to PCMA.
    assert_eq!(k.codec.as_deref(), Some("PCMA"));
}

#[test]
fn forked_responses_answered_once() {
    let c = INBOUND;
    let mut r = Run::new();
    r.sip(&c, true, 0, &c.invite(1, ""));
    let fork = |code: u16, tag: &str| {
        let mut h = c.base(1, "INVITE", Some(tag));
        h.push(("Server".into(), format!("fork-{tag}")));
        Call::render(&format!("SIP/2.0 {code} X"), h, &[], "")
    };
    r.sip(&c, false, 100, &fork(180, "A"));
    r.sip(&c, false, 120, &fork(180, "B"));
    r.sip(&c, false, 900, &fork(486, "A"));
    r.sip(&c, false, 1000, &fork(200, "B"));
    r.sip(&c, false, 1010, &fork(200, "A"));
    r.finish(2000);
    assert_eq!(r.count(answered), 1);
    let k = r.calls()[0];
    assert_eq!(k.outcome, Outcome::Answered);
    assert_eq!(k.progress, Some(Timestamp(100_000)));
    assert_eq!(k.answer, Some(Timestamp(1_000_000)));
    assert_eq!(k.server.as_deref(), Some("fork-A"));
}

#[test]
fn bye_from_callee_ends_the_call() {
    let c = INBOUND;
    let mut r = Run::new();
    r.sip(&c, true, 0, &c.invite(1, ""));
    r.sip(&c, false, 1000, &c.resp(200, 1, "INVITE", &[], ""));
    r.sip(&c, false, 61_000, &c.bye_from_callee(1));
    // The 200 to the callee's BYE comes from the caller.
    let ok = msg(
        "SIP/2.0 200 OK",
        &[
            ("Via", "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKcb1"),
            ("From", "<sip:13800138000@192.168.1.10>;tag=callee1"),
            ("To", "<sip:0086755123@203.0.113.5>;tag=caller1"),
            ("Call-ID", c.id),
            ("CSeq", "1 BYE"),
        ],
        "",
    );
    r.sip(&c, true, 61_010, &ok);
    r.expire(65_500);
    let k = r.calls()[0];
    assert_eq!(k.outcome, Outcome::Answered);
    assert_eq!(k.talk_secs(), Some(60.0));
}

#[test]
fn answered_call_without_bye_times_out() {
    let mut cfg = EngineConfig::default();
    cfg.limits.dialog_timeout_secs = 120;
    let c = INBOUND;
    let mut r = Run::with(cfg);
    r.sip(&c, true, 0, &c.invite(1, &sdp(SWITCH_RTP, "o", "s", "18")));
    r.sip(
        &c,
        false,
        1000,
        &c.resp(200, 1, "INVITE", &[], &sdp(PHONE_RTP, "p", "s", "18")),
    );
    r.rtp(1100, 10);
    r.expire(120_900);
    assert!(r.calls().is_empty());
    r.expire(121_000);
    let k = r.calls()[0];
    assert_eq!(k.outcome, Outcome::Answered);
    // Ended at the last RTP packet (media idle-out at 41 s handed over the streams).
    assert_eq!(k.end, Some(Timestamp((1100 + 499 * 20 + 1) * 1000)));
    assert_eq!(k.rtp.len(), 2);
}

#[test]
fn invite_407_then_authenticated_retry_is_one_answered_call() {
    let c = INBOUND;
    let mut r = Run::new();
    r.sip(&c, true, 0, &c.invite(1, ""));
    r.sip(&c, false, 50, &c.resp(407, 1, "INVITE", &[], ""));
    r.sip(&c, true, 60, &c.req("ACK", 1));
    r.sip(&c, true, 100, &c.invite(2, ""));
    r.sip(&c, false, 2000, &c.resp(200, 2, "INVITE", &[], ""));
    r.finish(3000);
    assert_eq!(r.count(started), 1);
    assert_eq!(r.t.stats().calls, 1);
    let calls = r.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome, Outcome::Answered);
    assert_eq!(calls[0].status_code, Some(200));
}

#[test]
fn direction_and_line_follow_home_networks() {
    let mut r = Run::new();
    let out = Call {
        id: "o",
        caller: PHONE,
        callee: SWITCH,
    };
    let internal = Call {
        id: "i",
        caller: "10.1.1.1:5060",
        callee: PHONE,
    };
    let transit = Call {
        id: "t",
        caller: SWITCH,
        callee: "198.51.100.7:5060",
    };
    for c in [&out, &internal, &transit] {
        r.sip(c, true, 0, &c.invite(1, ""));
    }
    r.finish(1000);
    let calls = r.calls();
    let get = |id: &str| *calls.iter().find(|k| k.call_id == id).unwrap();
    assert_eq!(get("o").direction, Direction::Outbound);
    assert_eq!(get("o").line, Some(addr(PHONE).ip()));
    assert_eq!(get("o").peer, Some(addr(SWITCH)));
    // The outbound line sent the INVITE: its User-Agent is the fingerprint.
    assert_eq!(get("o").user_agent.as_deref(), Some("VOS3000"));
    assert_eq!(get("i").direction, Direction::Internal);
    assert_eq!(get("i").line, Some("10.1.1.1".parse().unwrap()));
    assert_eq!(get("t").direction, Direction::Transit);
    assert_eq!(get("t").line, None);
    assert_eq!(get("t").peer, None);
    assert!(calls.iter().all(|k| k.outcome == Outcome::Incomplete));
}

fn register(call_id: &str, cseq: u32, expires: &str, auth: bool) -> Vec<u8> {
    let cseq_s = format!("{cseq} REGISTER");
    let via = format!("SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bKr{cseq}");
    let mut h = vec![
        ("Via", via.as_str()),
        ("From", "<sip:1001@voip.example>;tag=r1"),
        ("To", "<sip:1001@voip.example>"),
        ("Call-ID", call_id),
        ("CSeq", cseq_s.as_str()),
        ("Contact", "<sip:1001@192.168.1.10:5062>"),
        ("Expires", expires),
        ("User-Agent", "GoIP16"),
    ];
    if auth {
        h.push(("Authorization", "Digest username=\"1001\""));
    }
    msg("REGISTER sip:voip.example SIP/2.0", &h, "")
}

fn reg_resp(call_id: &str, cseq: u32, code: u16, extra: &[(&str, &str)]) -> Vec<u8> {
    let cseq_s = format!("{cseq} REGISTER");
    let via = format!("SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bKr{cseq}");
    let mut h = vec![
        ("Via", via.as_str()),
        ("From", "<sip:1001@voip.example>;tag=r1"),
        ("To", "<sip:1001@voip.example>;tag=srv"),
        ("Call-ID", call_id),
        ("CSeq", cseq_s.as_str()),
    ];
    h.extend_from_slice(extra);
    msg(&format!("SIP/2.0 {code} X"), &h, "")
}

const GW: &str = "192.168.1.10:5062";
const REGISTRAR: &str = "198.51.100.1:5060";

#[test]
fn register_401_then_200_is_one_registration() {
    let mut r = Run::new();
    r.send(GW, REGISTRAR, 0, &register("reg1", 1, "3600", false));
    r.send(REGISTRAR, GW, 20, &reg_resp("reg1", 1, 401, &[]));
    r.send(GW, REGISTRAR, 40, &register("reg1", 2, "3600", true));
    r.send(
        REGISTRAR,
        GW,
        60,
        &reg_resp(
            "reg1",
            2,
            200,
            &[("Contact", "<sip:1001@192.168.1.10:5062>;expires=120")],
        ),
    );
    let regs = r.regs();
    assert_eq!(regs.len(), 1);
    let g = regs[0];
    assert_eq!(g.outcome, RegOutcome::Registered);
    assert_eq!(g.account, "1001@voip.example");
    assert_eq!(g.registrar, addr(REGISTRAR));
    assert_eq!(g.source, addr(GW));
    assert_eq!(g.line, Some(addr(GW).ip()));
    assert_eq!(g.expires, Some(120));
    assert_eq!(g.status_code, Some(200));
    assert_eq!(g.user_agent.as_deref(), Some("GoIP16"));
    assert_eq!(g.contact.as_deref(), Some("sip:1001@192.168.1.10:5062"));
    assert_eq!(g.time, Timestamp(0));
    assert_eq!(r.t.stats().registrations, 1);
}

#[test]
fn unregister_failure_challenge_and_silence() {
    let mut cfg = EngineConfig::default();
    cfg.limits.registration_timeout_secs = 32;
    let mut r = Run::with(cfg);
    r.send(GW, REGISTRAR, 0, &register("u", 5, "0", true));
    r.send(REGISTRAR, GW, 10, &reg_resp("u", 5, 200, &[]));
    r.send(GW, REGISTRAR, 0, &register("f", 1, "60", false));
    r.send(REGISTRAR, GW, 10, &reg_resp("f", 1, 403, &[]));
    r.send(GW, REGISTRAR, 0, &register("c", 1, "60", false));
    r.send(REGISTRAR, GW, 10, &reg_resp("c", 1, 407, &[]));
    r.send(GW, REGISTRAR, 0, &register("n", 1, "60", false));
    r.send(GW, REGISTRAR, 500, &register("n", 1, "60", false));
    r.expire(31_000);
    assert_eq!(r.regs().len(), 2);
    r.expire(32_100);
    let regs = r.regs();
    let by = |acct_call: usize| regs[acct_call].outcome;
    assert_eq!(regs.len(), 4);
    assert_eq!(by(0), RegOutcome::Unregistered);
    assert_eq!(by(1), RegOutcome::Failed);
    let rest: Vec<_> = regs[2..].iter().map(|g| g.outcome).collect();
    assert!(rest.contains(&RegOutcome::Challenged) && rest.contains(&RegOutcome::NoResponse));
    assert_eq!(r.t.stats().retransmissions, 1);
}

#[test]
fn full_tables_evict_and_count() {
    let mut cfg = EngineConfig::default();
    cfg.limits.dialogs = 2;
    cfg.limits.registrations = 1;
    let mut r = Run::with(cfg);
    for (i, id) in ["d1", "d2", "d3"].iter().enumerate() {
        let c = Call { id, ..INBOUND };
        r.sip(&c, true, i as i64 * 100, &c.invite(1, ""));
    }
    assert_eq!(r.t.evictions().get("dialogs"), 1);
    // The dialog expiring first (the oldest setup) was reported as incomplete.
    let calls = r.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].call_id, "d1");
    assert_eq!(calls[0].outcome, Outcome::Incomplete);
    assert_eq!(r.t.table_sizes()[0], ("dialogs", 2));
    r.send(GW, REGISTRAR, 0, &register("r1", 1, "60", false));
    r.send(GW, REGISTRAR, 0, &register("r2", 1, "60", false));
    assert_eq!(r.t.evictions().get("registrations"), 1);
    assert_eq!(r.t.table_sizes()[1], ("registrations", 1));
    assert_eq!(r.t.stats().calls, 3);
}

#[test]
fn out_of_dialog_requests_from_outside_are_probes() {
    let mut r = Run::new();
    let opts = msg(
        "OPTIONS sip:100@192.168.1.10 SIP/2.0",
        &[
            ("Via", "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKo1"),
            ("From", "<sip:100@203.0.113.5>;tag=s1"),
            ("To", "<sip:100@192.168.1.10>"),
            ("Call-ID", "scan-1"),
            ("CSeq", "1 OPTIONS"),
            ("User-Agent", "friendly-scanner"),
        ],
        "",
    );
    r.send(SWITCH, PHONE, 0, &opts);
    let ok = msg(
        "SIP/2.0 200 OK",
        &[
            ("Via", "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKo1"),
            ("From", "<sip:100@203.0.113.5>;tag=s1"),
            ("To", "<sip:100@192.168.1.10>;tag=p1"),
            ("Call-ID", "scan-1"),
            ("CSeq", "1 OPTIONS"),
            ("Server", "phone"),
        ],
        "",
    );
    r.send(PHONE, SWITCH, 5, &ok);
    // The line's own keep-alive OPTIONS out to its provider is not a probe.
    r.send(PHONE, SWITCH, 10, &opts);
    // An inbound INVITE: the sender's User-Agent is recorded as a probe of method INVITE.
    let c = INBOUND;
    r.sip(&c, true, 20, &c.invite(1, ""));
    let probes: Vec<&ProbeRecord> =
        r.ev.iter()
            .filter_map(|e| match e {
                Event::Probe(p) => Some(&**p),
                _ => None,
            })
            .collect();
    assert_eq!(probes.len(), 3, "{probes:?}");
    assert_eq!(probes[0].method, ProbeMethod::Options);
    assert_eq!(probes[0].peer, addr(SWITCH));
    assert_eq!(probes[0].line, addr(PHONE).ip());
    assert_eq!(probes[0].request_user.as_deref(), Some("100"));
    assert_eq!(probes[0].user_agent.as_deref(), Some("friendly-scanner"));
    assert_eq!(probes[0].status, None);
    assert_eq!(probes[1].status, Some(200));
    assert_eq!(probes[1].user_agent, None);
    assert_eq!(probes[2].method, ProbeMethod::Invite);
    assert_eq!(probes[2].user_agent.as_deref(), Some("VOS3000"));
    assert_eq!(probes[2].request_user.as_deref(), Some("13800138000"));
}

#[test]
fn malformed_sip_is_counted() {
    let mut r = Run::new();
    r.send(
        SWITCH,
        PHONE,
        0,
        b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 500\r\n\r\nv=0",
    );
    r.send(
        SWITCH,
        PHONE,
        0,
        &msg("OPTIONS sip:a@b SIP/2.0", &[("CSeq", "1 OPTIONS")], ""),
    );
    assert_eq!(r.t.errors().get("sip.truncated"), 1);
    assert_eq!(r.t.errors().get("sip.no_call_id"), 2);
    assert_eq!(r.t.stats().calls, 0);
    // A body cut short: the call is still tracked (counted as truncated), its SDP is not used.
    let c = INBOUND;
    let mut inv = c.invite(1, &sdp(SWITCH_RTP, "o", "s", "18"));
    inv.truncate(inv.len() - 20);
    r.sip(&c, true, 10, &inv);
    assert_eq!(r.t.errors().get("sip.truncated"), 2);
    assert_eq!(r.t.stats().calls, 1);
    assert_eq!(r.t.table_sizes()[3], ("media_expectations", 0));
}

#[test]
fn udp_invite_with_bad_content_length_still_counts_as_a_call() {
    let mut r = Run::new();
    r.send(
        SWITCH,
        PHONE,
        0,
        b"INVITE sip:a@b SIP/2.0\r\nCall-ID: cl-bad\r\nCSeq: 1 INVITE\r\nContent-Length: bad\r\n\r\nv=0\r\n",
    );
    assert_eq!(r.t.errors().get("sip.bad_content_length"), 1);
    assert_eq!(r.t.stats().calls, 1);
}

fn call_messages() -> Vec<(bool, Vec<u8>)> {
    let c = INBOUND;
    let offer = sdp(SWITCH_RTP, "o", "s", "18 8");
    let answer = sdp(PHONE_RTP, "p", "s", "18");
    vec![
        (true, c.invite(1, &offer)),
        (false, c.resp(100, 1, "INVITE", &[], "")),
        (false, c.resp(180, 1, "INVITE", &[], "")),
        (false, c.resp(407, 1, "INVITE", &[], "")),
        (true, c.invite(2, &offer)),
        (false, c.resp(183, 2, "INVITE", &[], &answer)),
        (false, c.resp(200, 2, "INVITE", &[], &answer)),
        (true, c.req("ACK", 2)),
        (true, c.req("CANCEL", 2)),
        (false, c.resp(487, 2, "INVITE", &[], "")),
        (false, c.resp(486, 2, "INVITE", &[], "")),
        (true, c.req("BYE", 3)),
        (false, c.bye_from_callee(1)),
        (false, c.resp(200, 3, "BYE", &[], "")),
    ]
}

proptest! {
    /// Hostile input: call messages with random bytes overwritten and random datagrams on
    /// the signalling and media addresses never panic, every call started is reported by
    /// `finish`, and `finish` leaves no table entry behind.
    #[test]
    fn mutated_messages_never_panic(
        edits in proptest::collection::vec((0usize..14, 0usize..2000, any::<u8>()), 0..30),
        junk in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
    ) {
        let msgs = call_messages();
        let mut r = Run::new();
        for (i, (k, at, byte)) in edits.iter().enumerate() {
            let (up, m) = &msgs[*k];
            let mut m = m.clone();
            let n = m.len().max(1);
            if let Some(b) = m.get_mut(*at % n) {
                *b = *byte;
            }
            r.sip(&INBOUND, *up, i as i64 * 30, &m);
        }
        for (i, j) in junk.iter().enumerate() {
            r.send(SWITCH_RTP, PHONE_RTP, 1000 + i as i64 * 20, j);
            r.send(SWITCH, PHONE, 1000 + i as i64 * 20, j);
        }
        r.finish(200_000);
        prop_assert_eq!(r.calls().len(), r.count(started));
        prop_assert_eq!(r.t.table_sizes()[0], ("dialogs", 0));
        prop_assert_eq!(r.t.table_sizes()[2], ("media_flows", 0));
    }

    #[test]
    fn interleavings_never_count_two_calls(order in proptest::collection::vec(0usize..14, 0..40)) {
        let msgs = call_messages();
        let mut r = Run::new();
        let mut any_invite = false;
        for (i, &k) in order.iter().enumerate() {
            let (up, m) = &msgs[k];
            any_invite |= k == 0 || k == 4;
            r.sip(&INBOUND, *up, i as i64 * 50, m);
        }
        r.finish(100_000);
        let s = r.t.stats();
        prop_assert_eq!(s.calls, u64::from(any_invite));
        prop_assert!(r.count(started) <= 1);
        prop_assert!(r.count(answered) <= 1);
        prop_assert_eq!(r.calls().len(), r.count(started));
    }
}

#[test]
fn an_invite_with_no_response_ages_out_at_timer_b_and_leaves_a_tombstone() {
    let mut r = Run::new();
    let a = Call {
        id: "silent",
        ..INBOUND
    };
    let b = Call {
        id: "trying",
        ..INBOUND
    };
    for ms in [0, 500, 1500, 3500] {
        r.sip(&a, true, ms, &a.invite(1, ""));
    }
    r.sip(&b, true, 0, &b.invite(1, ""));
    r.sip(&b, false, 100, &b.resp(100, 1, "INVITE", &[], ""));
    r.expire(31_000);
    assert!(r.calls().is_empty());
    // 32 s (RFC 3261 Timer B) after the INVITE: the caller gave up; the dialog is reported.
    r.expire(32_000);
    let calls = r.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].call_id, "silent");
    assert_eq!(calls[0].outcome, Outcome::Incomplete);
    assert_eq!(r.t.table_sizes()[0], ("dialogs", 1));
    assert_eq!(r.t.table_sizes()[4], ("dialog_tombstones", 1));
    // A late retransmission hits the tombstone: no new call.
    r.sip(&a, true, 33_000, &a.invite(1, ""));
    assert_eq!(r.t.stats().calls, 2);
    // The dialog that got a provisional response waits for the setup timeout.
    r.expire(299_000);
    assert_eq!(r.calls().len(), 1);
    r.expire(300_000);
    assert_eq!(r.calls().len(), 2);
    // Tombstones go after their linger.
    r.expire(500_000);
    assert_eq!(r.t.table_sizes()[4], ("dialog_tombstones", 0));
}
