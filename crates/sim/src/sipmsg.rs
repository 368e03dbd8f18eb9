//! SIP and SDP text for simulated dialogs and registrations (RFC 3261, RFC 4566).
//!
//! A `Dialog` holds everything both ends say about one INVITE dialog or REGISTER transaction;
//! `render` writes one message of it into a reused buffer with a correct Content-Length.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// One end of a dialog.
#[derive(Clone, Debug)]
pub struct Party {
    /// Address on the wire (after NAT).
    pub sock: SocketAddr,
    /// Host written in Via/Contact/SDP (a private address behind NAT).
    pub host: String,
    pub port: u16,
    /// User part of From/To (a number or account name).
    pub user: String,
    /// Display name in From/To (scanners sign theirs), `None` for none.
    pub display: Option<String>,
    /// Host part of From/To URIs.
    pub domain: String,
    pub tag: String,
    /// `User-Agent` (requests) / `Server` (responses) value; `None` omits the header.
    pub ua: Option<String>,
    pub allow: Option<&'static str>,
    pub rtp_port: u16,
    pub sdp_user: String,
    pub sdp_session: String,
    pub sess_id: u32,
}

/// Codec offered/answered in SDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodecSpec {
    pub pt: u8,
    pub name: &'static str,
    /// Payload bytes per 10 ms.
    pub bytes_per_10ms: u16,
}

pub const G729: CodecSpec = CodecSpec {
    pt: 18,
    name: "G729",
    bytes_per_10ms: 10,
};
pub const PCMU: CodecSpec = CodecSpec {
    pt: 0,
    name: "PCMU",
    bytes_per_10ms: 80,
};
pub const PCMA: CodecSpec = CodecSpec {
    pt: 8,
    name: "PCMA",
    bytes_per_10ms: 80,
};

#[derive(Clone, Debug)]
pub struct Dialog {
    pub call_id: String,
    pub caller: Party,
    pub callee: Party,
    /// Request-URI user (the dialled number) and host:port.
    pub ruri_user: String,
    pub ruri_host: String,
    pub branch: String,
    /// Branch of the in-dialog requests (ACK for 2xx, BYE).
    pub branch2: String,
    pub tcp: bool,
    pub codec: CodecSpec,
    pub offer: Vec<CodecSpec>,
    pub ptime: u32,
    /// Pad the INVITE with extra headers and SDP lines (large INVITEs get IP-fragmented).
    pub big: bool,
    /// Extra header lines (e.g. P-Asserted-Identity), already formatted without CRLF.
    pub extra: Vec<String>,
    /// REGISTER: expiry seconds and nonce.
    pub expires: u32,
    pub nonce: String,
    pub max_forwards: u8,
}

/// One message of a dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    Invite,
    Trying,
    Ringing,
    /// 183 with SDP (early media).
    Progress,
    OkInvite,
    AckOk,
    /// A final failure response to the INVITE (486, 480, 404, 503, 487...).
    Fail(u16),
    AckFail(u16),
    Cancel,
    OkCancel,
    Bye {
        by_caller: bool,
    },
    OkBye {
        by_caller: bool,
    },
    Register {
        cseq: u32,
        auth: bool,
    },
    Unauthorized {
        cseq: u32,
    },
    OkRegister {
        cseq: u32,
    },
    /// A final error response to a REGISTER (403, 404).
    RegisterFail {
        cseq: u32,
        code: u16,
    },
    /// OPTIONS (a scanner's ping) and its response (200, 404).
    Options,
    OptionsResp(u16),
}

impl Msg {
    /// Whether the caller (INVITE/REGISTER sender) sends this message.
    pub fn sent_by_caller(self) -> bool {
        match self {
            Msg::Invite
            | Msg::AckOk
            | Msg::AckFail(_)
            | Msg::Cancel
            | Msg::Register { .. }
            | Msg::Options => true,
            Msg::Bye { by_caller } => by_caller,
            Msg::OkBye { by_caller } => !by_caller,
            _ => false,
        }
    }
}

pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        407 => "Proxy Authentication Required",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Unknown",
    }
}

fn proto(tcp: bool) -> &'static str {
    if tcp {
        "TCP"
    } else {
        "UDP"
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn display(p: &Party) -> String {
    p.display
        .as_ref()
        .map_or(String::new(), |d| format!("\"{d}\" "))
}

/// `sip:user@host` or, without a user, `sip:host`.
fn request_uri(user: &str, host: &str) -> String {
    if user.is_empty() {
        format!("sip:{host}")
    } else {
        format!("sip:{user}@{host}")
    }
}

fn uri_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

impl Dialog {
    fn sdp(&self, p: &Party, offer: bool, out: &mut String) {
        let ipv = if p.host.contains(':') { "IP6" } else { "IP4" };
        let codecs: Vec<CodecSpec> = if offer {
            self.offer.clone()
        } else {
            vec![self.codec]
        };
        let _ = write!(
            out,
            "v=0\r\no={} {} {} IN {ipv} {}\r\ns={}\r\nc=IN {ipv} {}\r\nt=0 0\r\nm=audio {} RTP/AVP",
            p.sdp_user,
            p.sess_id,
            p.sess_id.wrapping_add(1),
            p.host,
            p.sdp_session,
            p.host,
            p.rtp_port
        );
        for c in &codecs {
            let _ = write!(out, " {}", c.pt);
        }
        out.push_str(" 101\r\n");
        for c in &codecs {
            let _ = write!(out, "a=rtpmap:{} {}/8000\r\n", c.pt, c.name);
            if c.pt == 18 {
                out.push_str("a=fmtp:18 annexb=no\r\n");
            }
        }
        out.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n");
        let _ = write!(out, "a=ptime:{}\r\n", self.ptime);
        if self.big && offer {
            out.push_str("a=maxptime:150\r\n");
            for i in 0..8u32 {
                let _ = write!(
                    out,
                    "a=x-nat-candidate:{} 1 UDP {} {} {} typ host\r\n",
                    i + 1,
                    2_130_706_431u32.wrapping_sub(i * 256),
                    p.host,
                    p.rtp_port.wrapping_add(2 * i as u16)
                );
            }
        }
        out.push_str("a=sendrecv\r\n");
    }

    fn via(&self, p: &Party, branch: &str, out: &mut String) {
        let _ = write!(
            out,
            "Via: SIP/2.0/{} {};branch={};rport\r\n",
            proto(self.tcp),
            host_port(&p.host, p.port),
            branch
        );
    }

    fn contact(&self, p: &Party, out: &mut String) {
        let t = if self.tcp { ";transport=tcp" } else { "" };
        let _ = writeln!(
            out,
            "Contact: <sip:{}@{}{t}>\r",
            p.user,
            host_port(&p.host, p.port)
        );
    }

    fn write_from_to(&self, out: &mut String, to_tag: bool) {
        let c = &self.caller;
        let e = &self.callee;
        let _ = write!(
            out,
            "From: {}<sip:{}@{}>;tag={}\r\n",
            display(c),
            c.user,
            uri_host(&c.domain),
            c.tag
        );
        let _ = write!(
            out,
            "To: {}<sip:{}@{}>",
            display(e),
            e.user,
            uri_host(&e.domain)
        );
        if to_tag {
            let _ = write!(out, ";tag={}", e.tag);
        }
        out.push_str("\r\n");
    }

    /// From/To as seen on an in-dialog request sent by the callee (swapped).
    fn write_from_to_reversed(&self, out: &mut String) {
        let c = &self.caller;
        let e = &self.callee;
        let _ = write!(
            out,
            "From: <sip:{}@{}>;tag={}\r\n",
            e.user,
            uri_host(&e.domain),
            e.tag
        );
        let _ = write!(
            out,
            "To: <sip:{}@{}>;tag={}\r\n",
            c.user,
            uri_host(&c.domain),
            c.tag
        );
    }

    fn ua(p: &Party, server: bool, out: &mut String) {
        if let Some(ua) = &p.ua {
            let h = if server { "Server" } else { "User-Agent" };
            let _ = write!(out, "{h}: {ua}\r\n");
        }
    }

    fn finish(out: &mut String, body: &str, buf: &mut Vec<u8>) {
        if !body.is_empty() {
            out.push_str("Content-Type: application/sdp\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
        buf.clear();
        buf.extend_from_slice(out.as_bytes());
        buf.extend_from_slice(body.as_bytes());
    }

    /// Writes message `m` into `buf`.
    pub fn render(&self, m: Msg, buf: &mut Vec<u8>) {
        let mut h = String::with_capacity(900);
        let mut body = String::new();
        let c = &self.caller;
        let e = &self.callee;
        match m {
            Msg::Invite => {
                let _ = write!(
                    h,
                    "INVITE {} SIP/2.0\r\n",
                    request_uri(&self.ruri_user, &self.ruri_host)
                );
                self.via(c, &self.branch, &mut h);
                let _ = write!(h, "Max-Forwards: {}\r\n", self.max_forwards);
                self.write_from_to(&mut h, false);
                let _ = write!(h, "Call-ID: {}\r\nCSeq: 1 INVITE\r\n", self.call_id);
                self.contact(c, &mut h);
                Self::ua(c, false, &mut h);
                if let Some(a) = c.allow {
                    let _ = write!(h, "Allow: {a}\r\n");
                }
                for x in &self.extra {
                    h.push_str(x);
                    h.push_str("\r\n");
                }
                if self.big {
                    h.push_str("Supported: replaces, timer, 100rel, path, histinfo\r\n");
                    h.push_str("Session-Expires: 1800;refresher=uac\r\nMin-SE: 90\r\n");
                    let _ = write!(
                        h,
                        "P-Asserted-Identity: <sip:{}@{}>\r\n",
                        c.user,
                        uri_host(&c.domain)
                    );
                    let _ = write!(
                        h,
                        "History-Info: <sip:{}@{}>;index=1\r\n",
                        self.ruri_user, self.ruri_host
                    );
                    let _ = write!(
                        h,
                        "X-Route-Info: trunk=grp{};cost=0.0031;billing-id={}\r\n",
                        c.sess_id % 97,
                        self.call_id
                    );
                }
                self.sdp(c, true, &mut body);
            }
            Msg::Trying
            | Msg::Ringing
            | Msg::Progress
            | Msg::OkInvite
            | Msg::Fail(_)
            | Msg::OkCancel => {
                let (code, cseq) = match m {
                    Msg::Trying => (100, "1 INVITE"),
                    Msg::Ringing => (180, "1 INVITE"),
                    Msg::Progress => (183, "1 INVITE"),
                    Msg::OkInvite => (200, "1 INVITE"),
                    Msg::Fail(code) => (code, "1 INVITE"),
                    _ => (200, "1 CANCEL"),
                };
                let _ = write!(h, "SIP/2.0 {code} {}\r\n", reason(code));
                self.via(c, &self.branch, &mut h);
                self.write_from_to(&mut h, code != 100);
                let _ = write!(h, "Call-ID: {}\r\nCSeq: {cseq}\r\n", self.call_id);
                if matches!(code, 180 | 183 | 200) && cseq == "1 INVITE" {
                    self.contact(e, &mut h);
                }
                Self::ua(e, true, &mut h);
                if code == 200 && cseq == "1 INVITE" {
                    if let Some(a) = e.allow {
                        let _ = write!(h, "Allow: {a}\r\n");
                    }
                }
                if matches!(m, Msg::Progress | Msg::OkInvite) {
                    self.sdp(e, false, &mut body);
                }
            }
            Msg::AckFail(_) | Msg::Cancel => {
                let method = if m == Msg::Cancel { "CANCEL" } else { "ACK" };
                let _ = write!(
                    h,
                    "{method} {} SIP/2.0\r\n",
                    request_uri(&self.ruri_user, &self.ruri_host)
                );
                self.via(c, &self.branch, &mut h);
                let _ = write!(h, "Max-Forwards: {}\r\n", self.max_forwards);
                self.write_from_to(&mut h, method == "ACK");
                let _ = write!(h, "Call-ID: {}\r\nCSeq: 1 {method}\r\n", self.call_id);
                Self::ua(c, false, &mut h);
            }
            Msg::AckOk | Msg::Bye { by_caller: true } => {
                let (method, cseq) = if m == Msg::AckOk {
                    ("ACK", 1)
                } else {
                    ("BYE", 2)
                };
                let _ = write!(
                    h,
                    "{method} sip:{}@{} SIP/2.0\r\n",
                    e.user,
                    host_port(&e.host, e.port)
                );
                let br = if method == "ACK" {
                    self.branch2.clone()
                } else {
                    format!("{}b", self.branch2)
                };
                self.via(c, &br, &mut h);
                let _ = write!(h, "Max-Forwards: {}\r\n", self.max_forwards);
                self.write_from_to(&mut h, true);
                let _ = write!(h, "Call-ID: {}\r\nCSeq: {cseq} {method}\r\n", self.call_id);
                Self::ua(c, false, &mut h);
            }
            Msg::Bye { by_caller: false } => {
                let _ = write!(
                    h,
                    "BYE sip:{}@{} SIP/2.0\r\n",
                    c.user,
                    host_port(&c.host, c.port)
                );
                self.via(e, &format!("{}e", self.branch2), &mut h);
                let _ = write!(h, "Max-Forwards: {}\r\n", self.max_forwards);
                self.write_from_to_reversed(&mut h);
                let _ = write!(h, "Call-ID: {}\r\nCSeq: 1 BYE\r\n", self.call_id);
                Self::ua(e, false, &mut h);
            }
            Msg::OkBye { by_caller } => {
                h.push_str("SIP/2.0 200 OK\r\n");
                if by_caller {
                    self.via(c, &format!("{}b", self.branch2), &mut h);
                    self.write_from_to(&mut h, true);
                    let _ = write!(h, "Call-ID: {}\r\nCSeq: 2 BYE\r\n", self.call_id);
                    Self::ua(e, true, &mut h);
                } else {
                    self.via(e, &format!("{}e", self.branch2), &mut h);
                    self.write_from_to_reversed(&mut h);
                    let _ = write!(h, "Call-ID: {}\r\nCSeq: 1 BYE\r\n", self.call_id);
                    Self::ua(c, true, &mut h);
                }
            }
            Msg::Register { cseq, auth } => {
                let _ = write!(h, "REGISTER sip:{} SIP/2.0\r\n", uri_host(&e.domain));
                self.via(c, &format!("{}{cseq}", self.branch), &mut h);
                let _ = write!(h, "Max-Forwards: {}\r\n", self.max_forwards);
                self.write_from_to(&mut h, false);
                let _ = write!(h, "Call-ID: {}\r\nCSeq: {cseq} REGISTER\r\n", self.call_id);
                self.contact(c, &mut h);
                if auth {
                    let _ = write!(
                        h,
                        "Authorization: Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"sip:{}\", response=\"{:08x}{:08x}{:08x}{:08x}\", algorithm=MD5\r\n",
                        c.user,
                        e.domain,
                        self.nonce,
                        uri_host(&e.domain),
                        c.sess_id,
                        cseq,
                        c.sess_id.rotate_left(7),
                        e.sess_id
                    );
                }
                Self::ua(c, false, &mut h);
                if let Some(a) = c.allow {
                    let _ = write!(h, "Allow: {a}\r\n");
                }
                let _ = write!(h, "Expires: {}\r\n", self.expires);
            }
            Msg::Unauthorized { cseq } | Msg::OkRegister { cseq } => {
                let code = if matches!(m, Msg::OkRegister { .. }) {
                    200
                } else {
                    401
                };
                let _ = write!(h, "SIP/2.0 {code} {}\r\n", reason(code));
                self.via(c, &format!("{}{cseq}", self.branch), &mut h);
                self.write_from_to(&mut h, true);
                let _ = write!(h, "Call-ID: {}\r\nCSeq: {cseq} REGISTER\r\n", self.call_id);
                if code == 401 {
                    let _ = write!(
                        h,
                        "WWW-Authenticate: Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5\r\n",
                        e.domain, self.nonce
                    );
                } else {
                    let t = if self.tcp { ";transport=tcp" } else { "" };
                    let _ = write!(
                        h,
                        "Contact: <sip:{}@{}{t}>;expires={}\r\n",
                        c.user,
                        host_port(&c.host, c.port),
                        self.expires
                    );
                }
                Self::ua(e, true, &mut h);
            }
            Msg::RegisterFail { cseq, code } => {
                let _ = write!(h, "SIP/2.0 {code} {}\r\n", reason(code));
                self.via(c, &format!("{}{cseq}", self.branch), &mut h);
                self.write_from_to(&mut h, true);
                let _ = write!(h, "Call-ID: {}\r\nCSeq: {cseq} REGISTER\r\n", self.call_id);
                Self::ua(e, true, &mut h);
            }
            Msg::Options => {
                let _ = write!(
                    h,
                    "OPTIONS {} SIP/2.0\r\n",
                    request_uri(&self.ruri_user, &self.ruri_host)
                );
                self.via(c, &self.branch, &mut h);
                let _ = write!(h, "Max-Forwards: {}\r\n", self.max_forwards);
                self.write_from_to(&mut h, false);
                let _ = write!(h, "Call-ID: {}\r\nCSeq: 1 OPTIONS\r\n", self.call_id);
                self.contact(c, &mut h);
                Self::ua(c, false, &mut h);
                for x in &self.extra {
                    h.push_str(x);
                    h.push_str("\r\n");
                }
                h.push_str("Accept: application/sdp\r\n");
            }
            Msg::OptionsResp(code) => {
                let _ = write!(h, "SIP/2.0 {code} {}\r\n", reason(code));
                self.via(c, &self.branch, &mut h);
                self.write_from_to(&mut h, true);
                let _ = write!(h, "Call-ID: {}\r\nCSeq: 1 OPTIONS\r\n", self.call_id);
                Self::ua(e, true, &mut h);
                if code == 200 {
                    if let Some(a) = e.allow {
                        let _ = write!(h, "Allow: {a}\r\n");
                    }
                    h.push_str("Accept: application/sdp\r\n");
                }
            }
        }
        Self::finish(&mut h, &body, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(sock: &str, host: &str, user: &str, tag: &str) -> Party {
        let sock: SocketAddr = sock.parse().unwrap();
        Party {
            sock,
            host: host.to_string(),
            port: sock.port(),
            user: user.to_string(),
            display: None,
            domain: sock.ip().to_string(),
            tag: tag.to_string(),
            ua: Some("GoIP-8".to_string()),
            allow: Some("INVITE, ACK, BYE, CANCEL"),
            rtp_port: 10000,
            sdp_user: "-".to_string(),
            sdp_session: "SIP Call".to_string(),
            sess_id: 42,
        }
    }

    fn dialog() -> Dialog {
        Dialog {
            call_id: "abc@x".to_string(),
            caller: party("203.0.113.10:5060", "203.0.113.10", "8613800000000", "t1"),
            callee: party("100.64.1.2:5060", "192.168.1.20", "13812345678", "t2"),
            ruri_user: "13812345678".to_string(),
            ruri_host: "100.64.1.2:5060".to_string(),
            branch: "z9hG4bK1".to_string(),
            branch2: "z9hG4bK2".to_string(),
            tcp: false,
            codec: G729,
            offer: vec![G729, PCMA],
            ptime: 20,
            big: false,
            extra: vec![],
            expires: 60,
            nonce: "n".to_string(),
            max_forwards: 70,
        }
    }

    fn text(d: &Dialog, m: Msg) -> String {
        let mut b = Vec::new();
        d.render(m, &mut b);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn invite_has_correct_content_length_and_sdp() {
        let t = text(&dialog(), Msg::Invite);
        assert!(t.starts_with("INVITE sip:13812345678@100.64.1.2:5060 SIP/2.0\r\n"));
        assert!(t.contains("Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK1;rport\r\n"));
        let (head, body) = t.split_once("\r\n\r\n").unwrap();
        let cl: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(cl, body.len());
        assert!(body.contains("m=audio 10000 RTP/AVP 18 8 101\r\n"));
        assert!(body.contains("a=rtpmap:18 G729/8000\r\n"));
    }

    #[test]
    fn answer_carries_callee_tag_server_and_single_codec() {
        let t = text(&dialog(), Msg::OkInvite);
        assert!(t.starts_with("SIP/2.0 200 OK\r\n"));
        assert!(t.contains("To: <sip:13812345678@100.64.1.2>;tag=t2\r\n"));
        assert!(t.contains("Server: GoIP-8\r\n"));
        assert!(t.contains("Contact: <sip:13812345678@192.168.1.20:5060>\r\n"));
        assert!(t.contains("m=audio 10000 RTP/AVP 18 101\r\n"));
        let trying = text(&dialog(), Msg::Trying);
        assert!(!trying.contains("tag=t2"));
    }

    #[test]
    fn callee_bye_swaps_from_and_to() {
        let t = text(&dialog(), Msg::Bye { by_caller: false });
        assert!(t.starts_with("BYE sip:8613800000000@203.0.113.10:5060 SIP/2.0\r\n"));
        assert!(t.contains("From: <sip:13812345678@100.64.1.2>;tag=t2\r\n"));
        assert!(t.contains("CSeq: 1 BYE\r\n"));
        assert!(!Msg::Bye { by_caller: false }.sent_by_caller());
        assert!(Msg::OkBye { by_caller: false }.sent_by_caller());
    }
}
