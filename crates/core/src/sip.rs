//! SIP message parser (RFC 3261): pure, zero-copy functions over `&[u8]`, no state.
//!
//! Contract: `parse` never panics and runs in time linear in the input. It rejects hostile sizes
//! (`Limits`) before scanning, keeps at most `MAX_HEADERS` headers in a fixed array (no heap), and
//! returns borrowed views (`&str` into the input). Every rejection is a `SipError` whose `kind()` is
//! a stable counter key. Accessors never allocate.
//!
//! Leniency (a tap must keep what still has a clear meaning): bare LF line ends are accepted,
//! leading CRLF keep-alives are skipped, complete header lines with no empty line after them mean
//! an empty body, and a header line that is not UTF-8 is skipped and counted in
//! `SipMessage::skipped_headers` instead of failing the whole message. Folded (continuation)
//! header values keep their inner line breaks; every accessor treats CR/LF/HT as white space.
//! A message cut short (inside its headers, or before Content-Length bytes of body) is
//! `truncated` for `parse`; `parse_lenient` keeps its complete lines and flags `body_truncated`.
//! Only the first message of a datagram is read; bytes after its body are counted in `trailing`.
//! `frame_len` finds message boundaries in a TCP byte stream.

use std::net::IpAddr;

/// Capacity of the fixed header array; `Limits::max_headers` above this is clamped to it.
pub(crate) const MAX_HEADERS: usize = 128;

/// Size caps applied before and during scanning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in bytes.
    pub max_message: usize,
    /// Most headers accepted (clamped to `MAX_HEADERS`).
    pub(crate) max_headers: usize,
}

impl From<&crate::config::LimitsConfig> for Limits {
    fn from(l: &crate::config::LimitsConfig) -> Limits {
        Limits {
            max_message: l.max_sip_message,
            max_headers: l.max_sip_headers,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(&crate::config::LimitsConfig::default())
    }
}

/// Why a payload was not accepted as a SIP message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    /// The message is longer than `Limits::max_message`.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The message's length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// More header lines than `Limits::max_headers`.
    #[error("more than {max} headers")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// Nothing but white space and CRLF keep-alives.
    #[error("empty message")]
    Empty,
    /// The first line is neither a request line nor a status line.
    #[error("malformed start line")]
    BadStartLine,
    /// The version is not `SIP/2.0`.
    #[error("unsupported SIP version")]
    BadVersion,
    /// The status code is not three digits in 100..=699.
    #[error("malformed status code")]
    BadStatus,
    /// A header line with no colon or no token name, or a continuation line with no header.
    #[error("malformed header line")]
    BadHeader,
    /// Content-Length is not a number, or two of them disagree.
    #[error("malformed or conflicting Content-Length")]
    BadContentLength,
    /// The body is shorter than Content-Length says.
    #[error("body shorter than Content-Length ({have} < {want})")]
    Truncated {
        /// Body bytes present.
        have: usize,
        /// Body bytes Content-Length announced.
        want: usize,
    },
    /// The message ends before the empty line that closes the headers.
    #[error("message ends inside its header block ({have} bytes)")]
    TruncatedHeaders {
        /// Bytes of the message present.
        have: usize,
    },
    /// The start line is not UTF-8.
    #[error("start line is not UTF-8")]
    NotUtf8,
}

impl SipError {
    /// Stable counter key.
    pub fn kind(&self) -> &'static str {
        match self {
            SipError::TooLarge { .. } => "too_large",
            SipError::TooManyHeaders { .. } => "too_many_headers",
            SipError::Empty => "empty",
            SipError::BadStartLine => "bad_start_line",
            SipError::BadVersion => "bad_version",
            SipError::BadStatus => "bad_status",
            SipError::BadHeader => "bad_header",
            SipError::BadContentLength => "bad_content_length",
            SipError::Truncated { .. } | SipError::TruncatedHeaders { .. } => "truncated",
            SipError::NotUtf8 => "not_utf8",
        }
    }
}

/// Request method. Methods are case-sensitive (RFC 3261 7.1): `invite` is `Other("invite")`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// REGISTER (RFC 3261).
    Register,
    /// OPTIONS (RFC 3261).
    Options,
    /// INFO (RFC 6086).
    Info,
    /// UPDATE (RFC 3311).
    Update,
    /// PRACK (RFC 3262).
    Prack,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other token, as written.
    Other(&'a str),
}

impl<'a> Method<'a> {
    /// Maps a method token (exact case) to a `Method`.
    pub(crate) fn from_token(s: &'a str) -> Method<'a> {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other),
        }
    }

    /// The method token as sent (`Other`'s text unchanged).
    pub fn as_str(&self) -> &'a str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first line of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `METHOD uri SIP/2.0`; `uri` as written.
    Request {
        /// The method token.
        method: Method<'a>,
        /// The Request-URI as written.
        uri: &'a str,
    },
    /// `SIP/2.0 code reason`.
    Response {
        /// Status code, 100..=699.
        code: u16,
        /// Reason phrase as written (may be empty).
        reason: &'a str,
    },
}

/// One header line as written (name not normalised; value trimmed, folds kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Header name as written (any case, compact or long form).
    pub name: &'a str,
    /// Header value without surrounding white space; folded lines kept.
    pub value: &'a str,
}

impl Header<'_> {
    /// Whether this header is `name` (case-insensitive, compact forms equal their long forms).
    pub(crate) fn is(&self, name: &str) -> bool {
        same_header(self.name, name)
    }
}

/// A parsed SIP message borrowing its input.
#[derive(Clone, Debug)]
pub struct SipMessage<'a> {
    /// Request or status line.
    pub start: StartLine<'a>,
    /// Header lines in order, at most `Limits::max_headers`.
    pub headers: heapless::Vec<Header<'a>, MAX_HEADERS>,
    /// The body: Content-Length bytes (or the rest of the payload when it has none).
    pub body: &'a [u8],
    /// Header lines dropped because they were not UTF-8.
    pub skipped_headers: u16,
    /// Bytes after the body that Content-Length did not cover (ignored, per RFC 3261 18.3).
    pub trailing: usize,
    /// Set only by `parse_lenient`: the message ended early, inside the header block (the
    /// partial last line is dropped) or before Content-Length bytes of body.
    pub(crate) body_truncated: bool,
    /// Set only by `parse_lenient`: a Content-Length header could not be read (or disagreed with
    /// another) and was ignored; the body is the rest of the datagram.
    pub(crate) content_length_ignored: bool,
}

/// URI scheme understood by `parse_uri`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
}

/// A `;name=value;flag` parameter list (leading `;` optional), read lazily.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a>(pub &'a str);

impl<'a> Params<'a> {
    /// Each parameter as (name, value); a flag has value `""`. Names keep their case.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        split_outside(self.0, b';', false).filter_map(|p| {
            let p = trim(p);
            if p.is_empty() {
                return None;
            }
            Some(match split_at_byte(p, b'=') {
                Some((n, v)) => (trim(n), trim(v)),
                None => (p, ""),
            })
        })
    }
    /// Value of parameter `name` (case-insensitive); `Some("")` for a flag.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    /// Whether parameter `name` is present (case-insensitive), flag or not.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// Whether there is no parameter at all.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// A SIP/SIPS or tel URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uri<'a> {
    /// `sip`, `sips` or `tel`.
    pub scheme: Scheme,
    /// User part as written, including user parameters (`+1-555;npdi`); for tel: the number.
    pub user: Option<&'a str>,
    /// Password after `user:`, when written (deprecated by RFC 3261 but still seen).
    pub(crate) password: Option<&'a str>,
    /// Host without IPv6 brackets; empty for tel: URIs.
    pub host: &'a str,
    /// Port after the host, when written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=udp;user=phone`; for tel: `;phone-context=...`).
    pub params: Params<'a>,
    /// Text after `?`, when present.
    pub headers: Option<&'a str>,
}

impl<'a> Uri<'a> {
    /// The user part without user parameters (`+1-212-555;npdi` -> `+1-212-555`).
    pub fn number(&self) -> Option<&'a str> {
        let u = self.user?;
        let n = split_at_byte(u, b';').map_or(u, |(n, _)| n);
        (!n.is_empty()).then_some(n)
    }
    /// The host as an IP address, when it is one.
    pub fn host_ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// A From/To/Contact value: `"Display" <uri>;params` or `uri;params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name without surrounding quotes (escapes kept).
    pub display: Option<&'a str>,
    /// The URI as written (`*` for a wildcard Contact).
    pub(crate) uri: &'a str,
    /// User part of the URI.
    pub user: Option<&'a str>,
    /// Host of the URI (without IPv6 brackets).
    pub host: Option<&'a str>,
    /// Port of the URI, when written.
    pub port: Option<u16>,
    /// `tag=` header parameter (From/To).
    pub tag: Option<&'a str>,
    /// Header parameters (after `>`, or after the URI in the addr-spec form).
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// `expires=` header parameter (Contact).
    pub fn expires(&self) -> Option<u32> {
        parse_u32_sat(self.params.get("expires")?)
    }
}

/// One Via value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// `UDP`, `TCP`, `TLS`, `WS`, ... as written.
    pub transport: &'a str,
    /// Sent-by host without IPv6 brackets.
    pub host: &'a str,
    /// Sent-by port, when written.
    pub port: Option<u16>,
    /// `branch=` parameter (the transaction id).
    pub branch: Option<&'a str>,
    /// `received=` parameter (the source address a proxy saw).
    pub(crate) received: Option<&'a str>,
    /// `rport=N` value (a bare `rport` flag gives None; see `params`).
    pub(crate) rport: Option<u16>,
    /// All the Via's parameters.
    pub params: Params<'a>,
}

// ---------------------------------------------------------------------------------------------
// Detection and parsing

/// Cheap check: does `payload` start (after optional CRLF keep-alives) with a SIP request line
/// (`METHOD SP uri SP SIP/2.0`) or status line (`SIP/2.0 NNN`)?
#[inline]
pub fn looks_like_sip(payload: &[u8]) -> bool {
    // Media, the bulk of the traffic, starts with a byte that is neither CR/LF nor a token
    // byte (RTP's version bits make it 0x80-0xbf): told by that byte alone, where it is read.
    match payload.first() {
        Some(&b) if b == b'\r' || b == b'\n' || b == b'/' || is_token_byte(b) => {
            starts_like_sip(payload)
        }
        _ => false,
    }
}

/// `looks_like_sip` past its first byte.
#[inline(never)]
fn starts_like_sip(payload: &[u8]) -> bool {
    let p = skip_leading_crlf(payload);
    // A start line longer than this is not something a tap should bother with.
    let head = p.get(..p.len().min(2048)).unwrap_or(&[]);
    // The method token (or `SIP/2.0`) comes first and ends in SP: media and other binary
    // payloads, the bulk of the traffic, fail here within a byte or two.
    let tok = head
        .iter()
        .position(|&b| !(is_token_byte(b) || b == b'/'))
        .unwrap_or(head.len());
    if tok == 0 || head.get(tok) != Some(&b' ') {
        return false;
    }
    let line = match memchr::memchr(b'\n', head) {
        Some(i) => head.get(..i).unwrap_or(&[]),
        None => head,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(rest) = strip_prefix_ci(line, b"SIP/2.0 ") {
        return rest.len() >= 3 && rest.iter().take(3).all(u8::is_ascii_digit);
    }
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let method = line.get(..sp).unwrap_or(&[]);
    if method.is_empty() || !method.iter().all(|&b| is_token_byte(b)) {
        return false;
    }
    let Some(rest) = line.get(sp + 1..) else {
        return false;
    };
    match rest.iter().rposition(|&b| b == b' ') {
        Some(i) if i > 0 => rest
            .get(i + 1..)
            .is_some_and(|v| v.eq_ignore_ascii_case(b"SIP/2.0")),
        _ => false,
    }
}

/// Parses one complete SIP message (a UDP datagram or a message framed from TCP).
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<SipMessage<'a>, SipError> {
    let mut msg = SipMessage::blank();
    parse_inner(buf, limits, false, &mut msg)?;
    Ok(msg)
}

/// Like `parse`, but a body shorter than Content-Length (snaplen cut, lost fragment) is kept as
/// far as it goes and flagged in `body_truncated` instead of failing: the headers still tell
/// the call tracker what happened. Callers should still count it (`truncated`).
pub fn parse_lenient<'a>(buf: &'a [u8], limits: &Limits) -> Result<SipMessage<'a>, SipError> {
    let mut msg = SipMessage::blank();
    parse_inner(buf, limits, true, &mut msg)?;
    Ok(msg)
}

/// `parse_lenient` into `msg`, which must be `SipMessage::blank()`: the caller's message is
/// filled in place (its header array is some 4 KB; returning a message copies it). On an error
/// `msg` holds whatever was read before it.
pub(crate) fn parse_lenient_into<'a>(
    buf: &'a [u8],
    limits: &Limits,
    msg: &mut SipMessage<'a>,
) -> Result<(), SipError> {
    parse_inner(buf, limits, true, msg)
}

fn parse_inner<'a>(
    buf: &'a [u8],
    limits: &Limits,
    allow_short: bool,
    msg: &mut SipMessage<'a>,
) -> Result<(), SipError> {
    if buf.len() > limits.max_message {
        return Err(SipError::TooLarge {
            len: buf.len(),
            max: limits.max_message,
        });
    }
    let max_headers = limits.max_headers.min(MAX_HEADERS);
    let input = skip_leading_crlf(buf);
    if input.is_empty() {
        return Err(SipError::Empty);
    }
    let utf8 = Utf8Lines::new(input);
    let mut lines = Lines { buf: input, pos: 0 };
    let first = lines.next_line().ok_or(SipError::Empty)?;
    let first = utf8.get(0, first.len()).ok_or(SipError::NotUtf8)?;
    let start = parse_start_line(first)?;

    // Built in the caller's message: the header array is some 4 KB, not to be copied.
    msg.start = start;
    let headers = &mut msg.headers;
    let mut skipped_headers: u16 = 0;
    let mut body_start = input.len();
    let mut cut_in_headers = !lines.ended_with_newline();
    loop {
        if cut_in_headers {
            break;
        }
        let line_start = lines.pos;
        let Some(line) = lines.next_line() else {
            break; // no empty line but complete lines: lenient, empty body
        };
        if line.is_empty() {
            body_start = lines.pos;
            break;
        }
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            // A continuation with no header before it.
            return Err(SipError::BadHeader);
        }
        // Absorb folded continuation lines into this header.
        let mut end = lines.pos;
        while lines.peek_byte().is_some_and(|b| b == b' ' || b == b'\t') {
            let _ = lines.next_line();
            end = lines.pos;
        }
        if !lines.ended_with_newline() {
            // The buffer ends inside this header line (snaplen, lost fragment): its value
            // may be cut. Strict parsing rejects the message; lenient parsing drops the line.
            cut_in_headers = true;
            if !allow_short {
                return Err(SipError::TruncatedHeaders { have: input.len() });
            }
            break;
        }
        let Some(text) = utf8.get(line_start, end) else {
            skipped_headers = skipped_headers.saturating_add(1);
            continue;
        };
        let (name, value) = split_at_byte(text, b':').ok_or(SipError::BadHeader)?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(SipError::BadHeader);
        }
        if headers.len() >= max_headers {
            return Err(SipError::TooManyHeaders { max: max_headers });
        }
        let h = Header {
            name,
            value: trim(value),
        };
        if headers.push(h).is_err() {
            return Err(SipError::TooManyHeaders { max: max_headers });
        }
    }

    let rest = input.get(body_start..).unwrap_or(&[]);
    let mut content_length: Option<usize> = None;
    let mut content_length_ignored = false;
    for h in headers.iter().filter(|h| h.is("content-length")) {
        let n = match parse_usize(h.value) {
            Some(n) => n,
            // Lenient (a tap, over UDP): an unreadable Content-Length is ignored and the body is
            // the rest of the datagram, as if the header were absent.
            None if allow_short => {
                content_length_ignored = true;
                continue;
            }
            None => return Err(SipError::BadContentLength),
        };
        match content_length {
            Some(prev) if prev != n && !allow_short => return Err(SipError::BadContentLength),
            Some(prev) if prev != n => content_length_ignored = true,
            Some(_) => {}
            None => content_length = Some(n),
        }
    }
    if cut_in_headers && !allow_short {
        return Err(SipError::TruncatedHeaders { have: input.len() });
    }
    let mut body_truncated = cut_in_headers;
    let (body, trailing) = match content_length {
        Some(n) => match rest.get(..n) {
            Some(b) => (b, rest.len() - n),
            None if allow_short => {
                body_truncated = true;
                (rest, 0)
            }
            None => {
                return Err(SipError::Truncated {
                    have: rest.len(),
                    want: n,
                })
            }
        },
        None => (rest, 0),
    };
    msg.body = body;
    msg.skipped_headers = skipped_headers;
    msg.trailing = trailing;
    msg.body_truncated = body_truncated;
    msg.content_length_ignored = content_length_ignored;
    Ok(())
}

/// TCP framing: the length of the first message in `buf` (headers + Content-Length body), or
/// `Ok(None)` when the header block is not complete yet. Leading CRLF keep-alives count in the
/// length. A missing Content-Length means no body (RFC 3261 18.3 makes it mandatory on TCP).
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, SipError> {
    let lead = buf.len() - skip_leading_crlf(buf).len();
    let input = buf.get(lead..).unwrap_or(&[]);
    let mut lines = Lines { buf: input, pos: 0 };
    let mut header_end = None;
    let mut content_length: Option<usize> = None;
    let mut first = true;
    while let Some(line) = lines.next_line() {
        if !lines.ended_with_newline() {
            break; // partial last line
        }
        if line.is_empty() {
            header_end = Some(lines.pos);
            break;
        }
        if !first {
            if let Some(i) = line.iter().position(|&b| b == b':') {
                let name = line.get(..i).unwrap_or(&[]);
                let name = trim_bytes(name);
                if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
                    let v = std::str::from_utf8(line.get(i + 1..).unwrap_or(&[]))
                        .ok()
                        .and_then(|s| parse_usize(trim(s)))
                        .ok_or(SipError::BadContentLength)?;
                    content_length = Some(v);
                }
            }
        }
        first = false;
        if lead + lines.pos > limits.max_message {
            break;
        }
    }
    let Some(h) = header_end else {
        if buf.len() > limits.max_message {
            return Err(SipError::TooLarge {
                len: buf.len(),
                max: limits.max_message,
            });
        }
        return Ok(None);
    };
    let total = lead
        .checked_add(h)
        .and_then(|t| t.checked_add(content_length.unwrap_or(0)))
        .ok_or(SipError::BadContentLength)?;
    if total > limits.max_message {
        return Err(SipError::TooLarge {
            len: total,
            max: limits.max_message,
        });
    }
    Ok(Some(total))
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, SipError> {
    if line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        let (version, rest) = split_at_byte(line, b' ').ok_or(SipError::BadStartLine)?;
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            return Err(SipError::BadVersion);
        }
        let rest = rest.trim_start_matches(' ');
        let (code, reason) = match split_at_byte(rest, b' ') {
            Some((c, r)) => (c, r),
            None => (rest, ""),
        };
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SipError::BadStatus);
        }
        let code: u16 = code.parse().map_err(|_| SipError::BadStatus)?;
        if !(100..=699).contains(&code) {
            return Err(SipError::BadStatus);
        }
        return Ok(StartLine::Response {
            code,
            reason: trim(reason),
        });
    }
    let (method, rest) = split_at_byte(line, b' ').ok_or(SipError::BadStartLine)?;
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(SipError::BadStartLine);
    }
    let (uri, version) = rest.rsplit_once(' ').ok_or(SipError::BadStartLine)?;
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        if version.len() >= 4
            && version
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        {
            return Err(SipError::BadVersion);
        }
        return Err(SipError::BadStartLine);
    }
    // Exactly one SP on each side of the Request-URI (RFC 3261 25.1: no LWS inside it).
    if uri.is_empty() || uri.bytes().any(|b| b == b' ' || b == b'\t') {
        return Err(SipError::BadStartLine);
    }
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri,
    })
}

// ---------------------------------------------------------------------------------------------
// Accessors

impl<'a> SipMessage<'a> {
    /// A message with nothing read yet (a status line of code 0, no headers, no body): what
    /// the parsers fill.
    pub(crate) fn blank() -> SipMessage<'a> {
        SipMessage {
            start: StartLine::Response {
                code: 0,
                reason: "",
            },
            headers: heapless::Vec::new(),
            body: &[],
            skipped_headers: 0,
            trailing: 0,
            body_truncated: false,
            content_length_ignored: false,
        }
    }
    /// Whether this is a request (else a response).
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }
    /// Status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }
    /// Reason phrase of a response.
    pub fn reason(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }
    /// Method of a request (for a response, see `cseq()`).
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }
    /// The Request-URI as written.
    pub fn request_uri_str(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }
    /// The Request-URI parsed (None for responses and unknown schemes).
    pub fn request_uri(&self) -> Option<Uri<'a>> {
        parse_uri(self.request_uri_str()?)
    }

    /// Whole value of the first `name` header (trimmed; compact forms and case folded).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        let want = expand_compact(name);
        self.headers
            .iter()
            .find(|h| expand_compact(h.name).eq_ignore_ascii_case(want))
            .map(|h| h.value)
    }
    /// All values of `name`: every such header, each split on commas outside quotes and `<...>`.
    /// Only meaningful for list headers (Via, Contact, Allow, Supported, ...).
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        let want = expand_compact(name);
        self.headers
            .iter()
            .filter(move |h| expand_compact(h.name).eq_ignore_ascii_case(want))
            .flat_map(|h| split_outside(h.value, b',', true))
            .map(trim)
            .filter(|v| !v.is_empty())
    }
    /// The Call-ID header (compact `i`), when present and not empty.
    pub fn call_id(&self) -> Option<&'a str> {
        self.header("call-id").filter(|v| !v.is_empty())
    }
    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, Method<'a>)> {
        let v = self.header("cseq")?;
        let mut it = ws_tokens(v);
        let n = u32::try_from(decimal(it.next()?, 10)?).ok()?;
        let m = it.next()?;
        if !m.bytes().all(is_token_byte) || it.next().is_some() {
            return None;
        }
        Some((n, Method::from_token(m)))
    }
    /// The From header (compact `f`), parsed.
    pub fn from(&self) -> Option<NameAddr<'a>> {
        parse_name_addr(self.header("from")?)
    }
    /// The To header (compact `t`), parsed.
    pub fn to(&self) -> Option<NameAddr<'a>> {
        parse_name_addr(self.header("to")?)
    }
    /// First Contact value.
    pub fn contact(&self) -> Option<NameAddr<'a>> {
        parse_name_addr(self.header_values("contact").next()?)
    }
    /// Every Contact value (REGISTER may carry several).
    pub fn contacts<'s>(&'s self) -> impl Iterator<Item = NameAddr<'a>> + 's {
        self.header_values("contact").filter_map(parse_name_addr)
    }
    /// `expires=` of the first Contact.
    pub fn contact_expires(&self) -> Option<u32> {
        self.contact()?.expires()
    }
    /// The first (topmost) Via value: the sender's.
    pub fn top_via(&self) -> Option<Via<'a>> {
        parse_via(self.header_values("via").next()?)
    }
    /// Every Via value, topmost first.
    pub fn vias<'s>(&'s self) -> impl Iterator<Item = Via<'a>> + 's {
        self.header_values("via").filter_map(parse_via)
    }
    /// The User-Agent header.
    pub fn user_agent(&self) -> Option<&'a str> {
        self.header("user-agent")
    }
    /// The Server header.
    pub fn server(&self) -> Option<&'a str> {
        self.header("server")
    }
    /// The Allow header as written (first occurrence).
    pub fn allow(&self) -> Option<&'a str> {
        self.header("allow")
    }
    /// The Expires header (delta-seconds; values beyond u32 saturate).
    pub fn expires(&self) -> Option<u32> {
        parse_u32_sat(self.header("expires")?)
    }
    /// The Content-Type header (compact `c`) as written.
    pub fn content_type(&self) -> Option<&'a str> {
        self.header("content-type")
    }
    /// Whether the body is SDP (Content-Type `application/sdp`, parameters ignored).
    pub fn has_sdp(&self) -> bool {
        !self.body.is_empty()
            && self.content_type().is_some_and(|c| {
                trim(split_at_byte(c, b';').map_or(c, |(t, _)| t))
                    .eq_ignore_ascii_case("application/sdp")
            })
    }
    /// The Content-Length header (compact `l`), when it is a number.
    pub fn content_length(&self) -> Option<usize> {
        parse_usize(self.header("content-length")?)
    }
}

// ---------------------------------------------------------------------------------------------
// Value parsers

/// Parses a `sip:`, `sips:` or `tel:` URI. Other schemes, an empty host or a bad port give None.
pub fn parse_uri(s: &str) -> Option<Uri<'_>> {
    let s = trim(s);
    let (scheme, rest) = split_at_byte(s, b':')?;
    let scheme = if scheme.eq_ignore_ascii_case("sip") {
        Scheme::Sip
    } else if scheme.eq_ignore_ascii_case("sips") {
        Scheme::Sips
    } else if scheme.eq_ignore_ascii_case("tel") {
        Scheme::Tel
    } else {
        return None;
    };
    if scheme == Scheme::Tel {
        let (number, params) = match split_at_byte(rest, b';') {
            Some((n, p)) => (n, p),
            None => (rest, ""),
        };
        let number = trim(number);
        if number.is_empty() {
            return None;
        }
        return Some(Uri {
            scheme,
            user: Some(number),
            password: None,
            host: "",
            port: None,
            params: Params(params),
            headers: None,
        });
    }
    // The user part may hold `?`, `;` and `:` (RFC 3261 25.1 user-unreserved), so the `@` is
    // found first and `?headers` only looked for after it.
    let (userinfo, hostpart) = match split_at_byte(rest, b'@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (hostpart, headers) = match split_at_byte(hostpart, b'?') {
        Some((m, h)) => (m, Some(h)),
        None => (hostpart, None),
    };
    let (user, password) = match userinfo {
        Some(u) => match split_at_byte(u, b':') {
            Some((u, p)) => (Some(u), Some(p)),
            None => (Some(u), None),
        },
        None => (None, None),
    };
    let (hostport, params) = match split_at_byte(hostpart, b';') {
        Some((h, p)) => (h, p),
        None => (hostpart, ""),
    };
    let (host, port) = split_host_port(hostport)?;
    if host.is_empty() {
        return None;
    }
    Some(Uri {
        scheme,
        user: user.filter(|u| !u.is_empty()),
        password,
        host,
        port,
        params: Params(params),
        headers,
    })
}

/// Parses a From/To/Contact value.
pub fn parse_name_addr(s: &str) -> Option<NameAddr<'_>> {
    let s = trim(s);
    if s.is_empty() || !quotes_balanced(s) {
        return None;
    }
    let (display, uri, params) = match find_outside_quotes(s, b'<') {
        Some(lt) => {
            let before = s.get(..lt)?;
            let after = s.get(lt + 1..)?;
            let (uri, params) = split_at_byte(after, b'>')?;
            let d = trim(before);
            let d = d
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(d);
            ((!d.is_empty()).then_some(d), trim(uri), params)
        }
        None => {
            // addr-spec form: parameters after the URI belong to the header (RFC 3261 20.10).
            match split_at_byte(s, b';') {
                Some((u, p)) => (None, trim(u), p),
                None => (None, s, ""),
            }
        }
    };
    if uri.is_empty() {
        return None;
    }
    let parsed = parse_uri(uri);
    let params = Params(params);
    Some(NameAddr {
        display,
        uri,
        user: parsed.and_then(|u| u.user),
        host: parsed.map(|u| u.host),
        port: parsed.and_then(|u| u.port),
        tag: params.get("tag").filter(|t| !t.is_empty()),
        params,
    })
}

/// Parses one Via value (`SIP/2.0/UDP host:port;branch=...`; LWS around `/` allowed).
pub fn parse_via(s: &str) -> Option<Via<'_>> {
    let s = trim(s);
    let (name, rest) = split_at_byte(s, b'/')?;
    if !trim(name).eq_ignore_ascii_case("SIP") {
        return None;
    }
    let (_version, rest) = split_at_byte(rest, b'/')?;
    let rest = trim_start(rest);
    let tend = rest
        .find(|c: char| c.is_ascii_whitespace() || c == ';')
        .unwrap_or(rest.len());
    let (transport, rest) = rest.split_at_checked(tend)?;
    if transport.is_empty() {
        return None;
    }
    let rest = trim_start(rest);
    let (sent_by, params) = match split_at_byte(rest, b';') {
        Some((h, p)) => (h, p),
        None => (rest, ""),
    };
    // LWS is allowed around the `:` of sent-by; a `(comment)` after it is dropped.
    let sent_by = trim(split_at_byte(sent_by, b'(').map_or(sent_by, |(s, _)| s));
    let (host, port) = split_host_port(sent_by)?;
    if host.is_empty() {
        return None;
    }
    let params = Params(params);
    Some(Via {
        transport,
        host,
        port,
        branch: params.get("branch").filter(|b| !b.is_empty()),
        received: params.get("received").filter(|r| !r.is_empty()),
        rport: params.get("rport").and_then(|r| r.parse().ok()),
        params,
    })
}

/// Removes visual separators (`-`, `.`, `(`, `)`, spaces) and user parameters from a phone
/// number user part, keeping a leading `+`: `+1-(212)-555.1212;npdi` -> `+12125551212`.
pub fn phone_digits(user: &str) -> String {
    let n = user.split(';').next().unwrap_or(user);
    n.chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Long name for a compact header form (RFC 3261 7.3.3 and later extensions).
fn expand_compact(name: &str) -> &str {
    let b = name.as_bytes();
    if b.len() != 1 {
        return name;
    }
    match b.first().map(u8::to_ascii_lowercase) {
        Some(b'i') => "call-id",
        Some(b'f') => "from",
        Some(b't') => "to",
        Some(b'v') => "via",
        Some(b'm') => "contact",
        Some(b'l') => "content-length",
        Some(b'c') => "content-type",
        Some(b'k') => "supported",
        Some(b's') => "subject",
        Some(b'e') => "content-encoding",
        Some(b'o') => "event",
        Some(b'r') => "refer-to",
        Some(b'b') => "referred-by",
        Some(b'u') => "allow-events",
        Some(b'x') => "session-expires",
        Some(b'a') => "accept-contact",
        Some(b'j') => "reject-contact",
        Some(b'd') => "request-disposition",
        Some(b'y') => "identity",
        Some(b'n') => "identity-info",
        _ => name,
    }
}

/// Whether two header names denote the same header.
pub(crate) fn same_header(a: &str, b: &str) -> bool {
    expand_compact(a).eq_ignore_ascii_case(expand_compact(b))
}

/// White space of header values: SP, HT and the CR/LF of folded lines.
fn is_ws_byte(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

// Trimmed by bytes: the white space is ASCII, never part of another char, so this is
// `str::trim_matches` on those chars without decoding each char from UTF-8.
/// The UTF-8 text of a message's lines, checked once for the whole buffer (a few word-wide
/// steps where it is ASCII) instead of once per line. Lines start and end next to ASCII bytes
/// (CR, LF), so a line inside the valid prefix is a slice of it; a line past the prefix is
/// checked on its own. Used by the SIP and SDP parsers.
pub(crate) struct Utf8Lines<'a> {
    bytes: &'a [u8],
    valid: &'a str,
}

impl<'a> Utf8Lines<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Utf8Lines<'a> {
        let valid = match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                std::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or("")
            }
        };
        Utf8Lines { bytes, valid }
    }

    /// The text of `bytes[start..end]`; `None` when that is not UTF-8.
    pub(crate) fn get(&self, start: usize, end: usize) -> Option<&'a str> {
        self.valid
            .get(start..end)
            .or_else(|| std::str::from_utf8(self.bytes.get(start..end)?).ok())
    }
}

fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b.iter().position(|c| !is_ws_byte(c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !is_ws_byte(c))
        .map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or("")
}

/// The non-empty pieces of `s` between SP, HT, CR and LF (`s.split([' ', '\t', '\r', '\n'])`
/// without the empty ones), found by bytes: the separators are ASCII, never inside another char.
fn ws_tokens(s: &str) -> impl Iterator<Item = &str> {
    let b = s.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        let start = pos + b.get(pos..)?.iter().position(|c| !is_ws_byte(c))?;
        let end = b
            .get(start..)?
            .iter()
            .position(is_ws_byte)
            .map_or(b.len(), |i| start + i);
        pos = end;
        s.get(start..end)
    })
}

fn trim_start(s: &str) -> &str {
    let start = s.bytes().position(|c| !is_ws_byte(&c)).unwrap_or(s.len());
    s.get(start..).unwrap_or("")
}

/// `s.split_once(char::from(b))` for an ASCII `b`, by a plain scan: std's char search sets up
/// memchr for long texts, and the fields split here are a few tens of bytes (a tenth of the
/// instructions of a flood INVITE went to that setup). An ASCII byte is never inside another
/// char, so both halves are at char boundaries.
pub(crate) fn split_at_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|x| x == b)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    b.get(start..end).unwrap_or(&[])
}

/// RFC 3261 token characters, one flag per byte value: `looks_like_sip` asks this of the first
/// byte of every datagram (RTP mostly), where a search of the ten marks cost more than the rest.
const TOKEN_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric();
        i += 1;
    }
    let marks = b"-.!%*_+`'~";
    let mut j = 0;
    while j < marks.len() {
        t[marks[j] as usize] = true;
        j += 1;
    }
    t
};

fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

fn skip_leading_crlf(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .unwrap_or(b.len());
    b.get(n..).unwrap_or(&[])
}

fn strip_prefix_ci<'b>(s: &'b [u8], p: &[u8]) -> Option<&'b [u8]> {
    let head = s.get(..p.len())?;
    head.eq_ignore_ascii_case(p).then(|| s.get(p.len()..))?
}

/// The value of `s` when it is 1 to `max_digits` (at most 19) ASCII digits and nothing else:
/// what `str::parse` gives for such text, without its sign and overflow handling per digit.
pub(crate) fn decimal(s: &str, max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits.min(19) {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    Some(v)
}

/// Decimal digits only (after trimming); at most 19 digits so it cannot overflow.
fn parse_usize(s: &str) -> Option<usize> {
    usize::try_from(decimal(trim(s), 19)?).ok()
}

/// Decimal digits, saturating at u32::MAX (RFC 3261 allows Expires up to 2**32-1 and says larger
/// values mean that).
fn parse_u32_sat(s: &str) -> Option<u32> {
    let s = trim(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u32 = 0;
    for b in s.bytes() {
        v = v.saturating_mul(10).saturating_add(u32::from(b - b'0'));
    }
    Some(v)
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`. A bad port gives None.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let s = trim(s);
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = split_at_byte(rest, b']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    // A bare IPv6 address (no brackets: invalid, but seen) is a host without port.
    if s.bytes().filter(|&b| b == b':').count() > 1 && s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some((s, None));
    }
    match split_at_byte(s, b':') {
        Some((h, p)) => Some((trim(h), Some(parse_port(p)?))),
        None => Some((s, None)),
    }
}

fn parse_port(p: &str) -> Option<u16> {
    u16::try_from(decimal(trim(p), 5)?).ok()
}

/// Whether every quoted string is closed.
fn quotes_balanced(s: &str) -> bool {
    // Most values quote nothing.
    if memchr::memchr(b'"', s.as_bytes()).is_none() {
        return true;
    }
    let mut in_q = false;
    let mut esc = false;
    for b in s.bytes() {
        if in_q {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_q = false;
            }
        } else if b == b'"' {
            in_q = true;
        }
    }
    !in_q
}

/// Position of the first `c` outside a quoted string.
fn find_outside_quotes(s: &str, c: u8) -> Option<usize> {
    let mut in_q = false;
    let mut esc = false;
    for (i, b) in s.bytes().enumerate() {
        if in_q {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_q = false;
            }
        } else if b == b'"' {
            in_q = true;
        } else if b == c {
            return Some(i);
        }
    }
    None
}

/// Splits `s` on `sep` outside quoted strings (and outside `<...>` when `angles`).
fn split_outside(s: &str, sep: u8, angles: bool) -> SplitOutside<'_> {
    SplitOutside {
        s,
        pos: 0,
        sep,
        angles,
        done: false,
    }
}

struct SplitOutside<'a> {
    s: &'a str,
    pos: usize,
    sep: u8,
    angles: bool,
    done: bool,
}

impl<'a> Iterator for SplitOutside<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let rest = self.s.get(self.pos..)?;
        let (mut in_q, mut esc, mut angle) = (false, false, false);
        for (i, b) in rest.bytes().enumerate() {
            if in_q {
                if esc {
                    esc = false;
                } else if b == b'\\' {
                    esc = true;
                } else if b == b'"' {
                    in_q = false;
                }
            } else if b == b'"' {
                in_q = true;
            } else if self.angles && b == b'<' {
                angle = true;
            } else if self.angles && b == b'>' {
                angle = false;
            } else if b == self.sep && !angle {
                // `sep` is ASCII, so `i` and `i + 1` are char boundaries.
                let item = rest.get(..i)?;
                self.pos += i + 1;
                return Some(item);
            }
        }
        self.done = true;
        Some(rest)
    }
}

/// Line reader accepting CRLF and bare LF.
struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    /// Next line without its line end; None at the end of the buffer.
    fn next_line(&mut self) -> Option<&'a [u8]> {
        let rest = self.buf.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let (line, adv) = match memchr::memchr(b'\n', rest) {
            Some(i) => (rest.get(..i).unwrap_or(&[]), i + 1),
            None => (rest, rest.len()),
        };
        self.pos += adv;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
    fn peek_byte(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }
    fn ended_with_newline(&self) -> bool {
        self.pos > 0 && self.buf.get(self.pos - 1) == Some(&b'\n')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:+8613812345678@198.51.100.7:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:+8613812345678@198.51.100.7>\r\n\
From: \"Alice\" <sip:alice@203.0.113.10>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@203.0.113.10:5070>\r\n\
User-Agent: DBL GoIP\r\n\
Allow: INVITE, ACK, BYE, CANCEL\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn p(b: &[u8]) -> Result<SipMessage<'_>, SipError> {
        parse(b, &Limits::default())
    }

    #[test]
    fn parses_invite() {
        let m = p(INVITE).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.status(), None);
        assert_eq!(m.call_id(), Some("a84b4c76e66710@pc33.example.com"));
        assert_eq!(m.cseq(), Some((314159, Method::Invite)));
        assert_eq!(m.body, b"v=0\n");
        assert_eq!(m.content_length(), Some(4));
        assert_eq!(m.user_agent(), Some("DBL GoIP"));
        assert_eq!(m.allow(), Some("INVITE, ACK, BYE, CANCEL"));
        assert_eq!(
            m.header_values("allow").collect::<Vec<_>>(),
            ["INVITE", "ACK", "BYE", "CANCEL"]
        );
        let ru = m.request_uri().unwrap();
        assert_eq!(ru.scheme, Scheme::Sip);
        assert_eq!(ru.user, Some("+8613812345678"));
        assert_eq!(ru.host, "198.51.100.7");
        assert_eq!(ru.port, Some(5060));
        assert_eq!(ru.params.get("user"), Some("phone"));
        let from = m.from().unwrap();
        assert_eq!(from.display, Some("Alice"));
        assert_eq!(from.user, Some("alice"));
        assert_eq!(from.tag, Some("1928301774"));
        let to = m.to().unwrap();
        assert_eq!(to.user, Some("+8613812345678"));
        assert_eq!(to.tag, None);
        let c = m.contact().unwrap();
        assert_eq!((c.host, c.port), (Some("203.0.113.10"), Some(5070)));
        let via = m.top_via().unwrap();
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.host, "203.0.113.10");
        assert_eq!(via.port, Some(5060));
        assert_eq!(via.branch, Some("z9hG4bK776asdhds"));
        assert_eq!(via.rport, None);
        assert!(via.params.has("rport"));
        assert!(m.has_sdp());
        assert!(looks_like_sip(INVITE));
    }

    #[test]
    fn parses_response() {
        let m = p(b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx;received=192.0.2.9;rport=6000\r\nCall-ID: x@y\r\nCSeq: 2 INVITE\r\nServer: Dinstar\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(!m.is_request());
        assert_eq!(m.status(), Some(486));
        assert_eq!(m.reason(), Some("Busy Here"));
        assert_eq!(m.method(), None);
        assert_eq!(m.cseq(), Some((2, Method::Invite)));
        assert_eq!(m.server(), Some("Dinstar"));
        let v = m.top_via().unwrap();
        assert_eq!(v.received, Some("192.0.2.9"));
        assert_eq!(v.rport, Some(6000));
        assert!(m.body.is_empty());
        assert!(!m.has_sdp());
    }

    #[test]
    fn compact_forms_equal_long_forms() {
        let m = p(b"BYE sip:a@b SIP/2.0\r\nv: SIP/2.0/TCP h:5061;branch=z9hG4bK1\r\ni: cid-1\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>;tag=2\r\nm: <sip:a@10.1.1.1>\r\nc: text/plain\r\nk: timer\r\ns: hi\r\ne: gzip\r\nl: 2\r\n\r\nok").unwrap();
        assert_eq!(m.call_id(), Some("cid-1"));
        assert_eq!(m.header("Call-ID"), Some("cid-1"));
        assert_eq!(m.header("CALL-ID"), Some("cid-1"));
        assert_eq!(m.from().unwrap().tag, Some("1"));
        assert_eq!(m.to().unwrap().tag, Some("2"));
        assert_eq!(m.contact().unwrap().host, Some("10.1.1.1"));
        assert_eq!(m.top_via().unwrap().transport, "TCP");
        assert_eq!(m.content_type(), Some("text/plain"));
        assert_eq!(m.header("supported"), Some("timer"));
        assert_eq!(m.header("subject"), Some("hi"));
        assert_eq!(m.header("content-encoding"), Some("gzip"));
        assert_eq!(m.header("l"), Some("2"));
        assert_eq!(m.body, b"ok");
        // A long-form query finds the compact header and vice versa.
        assert!(same_header("i", "call-id"));
        assert!(same_header("Content-Length", "L"));
        assert!(!same_header("x", "call-id"));
    }

    #[test]
    fn header_names_case_insensitive_and_space_before_colon() {
        let m =
            p(b"OPTIONS sip:a@b SIP/2.0\r\nUSER-agent : Foo 1.0\r\ncall-id:abc\r\n\r\n").unwrap();
        assert_eq!(m.user_agent(), Some("Foo 1.0"));
        assert_eq!(m.call_id(), Some("abc"));
    }

    #[test]
    fn folded_lines_belong_to_previous_header() {
        let m = p(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: I know you're there,\r\n  pick up the phone\r\n\tand talk to me!\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\r\n SIP/2.0/UDP b.example.com:5070;branch=z9hG4bK2\r\nCall-ID: c\r\n\r\n").unwrap();
        assert_eq!(m.headers.len(), 3);
        let subj = m.header("subject").unwrap();
        assert!(subj.starts_with("I know you're there,"));
        assert!(subj.ends_with("and talk to me!"));
        let words: Vec<&str> = subj.split_whitespace().collect();
        assert_eq!(
            words.join(" "),
            "I know you're there, pick up the phone and talk to me!"
        );
        let vias: Vec<_> = m.vias().collect();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[1].host, "b.example.com");
        assert_eq!(vias[1].port, Some(5070));
        assert_eq!(m.call_id(), Some("c"));
    }

    #[test]
    fn continuation_without_header_is_bad_header() {
        let e = p(b"OPTIONS sip:a@b SIP/2.0\r\n folded\r\n\r\n").unwrap_err();
        assert_eq!(e.kind(), "bad_header");
        let e = p(b"OPTIONS sip:a@b SIP/2.0\r\nno colon here\r\n\r\n").unwrap_err();
        assert_eq!(e.kind(), "bad_header");
        let e = p(b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n").unwrap_err();
        assert_eq!(e.kind(), "bad_header");
    }

    #[test]
    fn multi_value_headers_split_outside_quotes_and_angles() {
        let m = p(b"REGISTER sip:r SIP/2.0\r\nContact: \"Smith, J\" <sip:j@h1;a=1,2>;expires=60, <sip:j@h2>;q=0.5\r\nContact: sip:j@h3;expires=0\r\nExpires: 3600\r\n\r\n").unwrap();
        let cs: Vec<_> = m.contacts().collect();
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[0].display, Some("Smith, J"));
        assert_eq!(cs[0].uri, "sip:j@h1;a=1,2");
        assert_eq!(cs[0].expires(), Some(60));
        assert_eq!(cs[1].host, Some("h2"));
        assert_eq!(cs[1].params.get("q"), Some("0.5"));
        // addr-spec form: ;expires belongs to the header, not the URI.
        assert_eq!(cs[2].uri, "sip:j@h3");
        assert_eq!(cs[2].expires(), Some(0));
        assert_eq!(m.contact_expires(), Some(60));
        assert_eq!(m.expires(), Some(3600));
    }

    #[test]
    fn content_length_cases() {
        // Shorter body than Content-Length: truncated.
        let e = p(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc").unwrap_err();
        assert_eq!(e.kind(), "truncated");
        // ... unless lenient: then kept and flagged.
        let m = parse_lenient(
            b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc",
            &Limits::default(),
        )
        .unwrap();
        assert!(m.body_truncated);
        assert_eq!(m.body, b"abc");
        // Longer datagram: body cut at Content-Length, rest counted as trailing.
        let m = p(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\nabcdef").unwrap();
        assert_eq!(
            (m.body, m.trailing, m.body_truncated),
            (&b"ab"[..], 4, false)
        );
        // No Content-Length over UDP: the rest of the datagram.
        let m = p(b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nabcdef").unwrap();
        assert_eq!(m.body, b"abcdef");
        assert_eq!(m.content_length(), None);
        for bad in [&b"-1"[..], b"abc", b"1 2", b"99999999999999999999999", b""] {
            let mut msg = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: ".to_vec();
            msg.extend_from_slice(bad);
            msg.extend_from_slice(b"\r\n\r\n");
            assert_eq!(p(&msg).unwrap_err().kind(), "bad_content_length", "{bad:?}");
        }
        // Two equal values are fine; two different ones are not.
        assert!(p(b"MESSAGE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\nx").is_ok());
        assert_eq!(
            p(b"MESSAGE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nxy")
                .unwrap_err()
                .kind(),
            "bad_content_length"
        );
        // Content-Length with surrounding white space.
        let m = p(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length:   3  \r\n\r\nxyz").unwrap();
        assert_eq!(m.body, b"xyz");
    }

    #[test]
    fn lf_only_and_leading_crlf_accepted() {
        let m = p(b"\r\n\r\nSIP/2.0 200 OK\nCall-ID: lf\nContent-Length: 2\n\nhi").unwrap();
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.call_id(), Some("lf"));
        assert_eq!(m.body, b"hi");
        assert!(looks_like_sip(b"\r\nSIP/2.0 200 OK\n"));
    }

    #[test]
    fn missing_blank_line_means_empty_body() {
        let m = p(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n").unwrap();
        assert_eq!(m.call_id(), Some("x"));
        assert!(m.body.is_empty());
        assert!(!m.body_truncated);
    }

    #[test]
    fn cut_inside_headers_is_truncated() {
        let lim = Limits::default();
        // Cut inside a header line (a real capture ends at "Content-Lengt").
        let cut = b"BYE sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Lengt";
        assert_eq!(p(cut).unwrap_err().kind(), "truncated");
        let m = parse_lenient(cut, &lim).unwrap();
        assert_eq!(m.call_id(), Some("x"));
        assert_eq!(m.headers.len(), 1);
        assert!(m.body_truncated);
        // Cut inside a value: the partial value is not trusted.
        let cut = b"BYE sip:a@b SIP/2.0\r\nCSeq: 1 BYE\r\nCall-ID: abc";
        assert_eq!(p(cut).unwrap_err().kind(), "truncated");
        let m = parse_lenient(cut, &lim).unwrap();
        assert_eq!((m.call_id(), m.cseq()), (None, Some((1, Method::Bye))));
        // Cut inside the start line.
        assert_eq!(
            p(b"INVITE sip:a@b SIP/2.0").unwrap_err().kind(),
            "truncated"
        );
        let m = parse_lenient(b"INVITE sip:a@b SIP/2.0", &lim).unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert!(m.body_truncated);
    }

    #[test]
    fn start_line_errors() {
        let k = |b: &[u8]| p(b).unwrap_err().kind();
        assert_eq!(k(b""), "empty");
        assert_eq!(k(b"\r\n\r\n"), "empty");
        assert_eq!(k(b"INVITE sip:a@b SIP/3.0\r\n\r\n"), "bad_version");
        assert_eq!(k(b"SIP/1.0 200 OK\r\n\r\n"), "bad_version");
        assert_eq!(k(b"SIP/2.0 20 OK\r\n\r\n"), "bad_status");
        assert_eq!(k(b"SIP/2.0 099 Low\r\n\r\n"), "bad_status");
        assert_eq!(k(b"SIP/2.0 4294967301 Big\r\n\r\n"), "bad_status");
        assert_eq!(k(b"INVITE  sip:a@b SIP/2.0\r\n\r\n"), "bad_start_line");
        assert_eq!(k(b"INVITE sip:a@b SIP/2.0 \r\n\r\n"), "bad_start_line");
        assert_eq!(k(b"INVITE sip:a@b\r\n\r\n"), "bad_start_line");
        assert_eq!(k(b"GET / HTTP/1.1\r\n\r\n"), "bad_start_line");
        assert_eq!(k(b"IN<VITE sip:a@b SIP/2.0\r\n\r\n"), "bad_start_line");
        assert_eq!(k(b"INVITE sip:\xff@b SIP/2.0\r\n\r\n"), "not_utf8");
    }

    #[test]
    fn methods_are_case_sensitive() {
        let m = p(b"invite sip:a@b SIP/2.0\r\n\r\n").unwrap();
        assert_eq!(m.method(), Some(Method::Other("invite")));
        for (tok, m) in [
            ("INVITE", Method::Invite),
            ("ACK", Method::Ack),
            ("BYE", Method::Bye),
            ("CANCEL", Method::Cancel),
            ("REGISTER", Method::Register),
            ("OPTIONS", Method::Options),
            ("INFO", Method::Info),
            ("UPDATE", Method::Update),
            ("PRACK", Method::Prack),
            ("SUBSCRIBE", Method::Subscribe),
            ("NOTIFY", Method::Notify),
            ("REFER", Method::Refer),
            ("MESSAGE", Method::Message),
            ("PUBLISH", Method::Publish),
        ] {
            assert_eq!(Method::from_token(tok), m);
            assert_eq!(m.as_str(), tok);
        }
    }

    #[test]
    fn limits_enforced() {
        let lim = Limits {
            max_message: 40,
            max_headers: 8,
        };
        let e = parse(INVITE, &lim).unwrap_err();
        assert_eq!(e.kind(), "too_large");
        let mut msg = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        for i in 0..9 {
            msg.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        msg.extend_from_slice(b"\r\n");
        let lim = Limits {
            max_message: 65535,
            max_headers: 8,
        };
        assert_eq!(parse(&msg, &lim).unwrap_err().kind(), "too_many_headers");
        // A huge configured limit is clamped to the array capacity.
        let mut msg = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        for i in 0..(MAX_HEADERS + 1) {
            msg.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        let lim = Limits {
            max_message: 1 << 20,
            max_headers: 10_000,
        };
        assert_eq!(parse(&msg, &lim).unwrap_err().kind(), "too_many_headers");
        let from_cfg = Limits::from(&crate::config::LimitsConfig::default());
        assert_eq!(from_cfg, Limits::default());
    }

    #[test]
    fn non_utf8_header_skipped_and_counted() {
        let m = p(
            b"INVITE sip:a@b SIP/2.0\r\nFrom: \"M\xfcller\" <sip:m@h>;tag=1\r\nCall-ID: ok\r\n\r\n",
        )
        .unwrap();
        assert_eq!(m.skipped_headers, 1);
        assert_eq!(m.from(), None);
        assert_eq!(m.call_id(), Some("ok"));
    }

    #[test]
    fn tel_and_phone_uris() {
        let u = parse_uri("tel:+1-212-555-0100;phone-context=example.com").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user, Some("+1-212-555-0100"));
        assert_eq!(u.host, "");
        assert_eq!(u.params.get("phone-context"), Some("example.com"));
        assert_eq!(phone_digits(u.user.unwrap()), "+12125550100");
        let u = parse_uri("sip:+1-212-555-1212;npdi;rn=+1-212-555-1111@gw.example.com;user=phone")
            .unwrap();
        assert_eq!(u.user, Some("+1-212-555-1212;npdi;rn=+1-212-555-1111"));
        assert_eq!(u.number(), Some("+1-212-555-1212"));
        assert_eq!(u.host, "gw.example.com");
        assert_eq!(u.params.get("user"), Some("phone"));
        assert_eq!(phone_digits("0086 (138) 1234.5678"), "008613812345678");
        let m =
            p(b"INVITE tel:+8613812345678 SIP/2.0\r\nTo: <tel:+8613812345678>\r\n\r\n").unwrap();
        assert_eq!(m.request_uri().unwrap().user, Some("+8613812345678"));
        assert_eq!(m.to().unwrap().user, Some("+8613812345678"));
        assert_eq!(m.to().unwrap().host, Some(""));
    }

    #[test]
    fn uri_forms() {
        let u = parse_uri("sips:alice:secret@[2001:db8::1]:5061;transport=tls?subject=x").unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, "2001:db8::1");
        assert_eq!(u.host_ip(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params.get("TRANSPORT"), Some("tls"));
        assert_eq!(u.headers, Some("subject=x"));
        let u = parse_uri("SIP:example.com").unwrap();
        assert_eq!((u.user, u.host, u.port), (None, "example.com", None));
        assert_eq!(parse_uri("sip:a@h:99999"), None);
        assert_eq!(parse_uri("sip:a@"), None);
        assert_eq!(parse_uri("http://x"), None);
        assert_eq!(parse_uri("mailto:a@b"), None);
        assert_eq!(parse_uri("tel:"), None);
    }

    #[test]
    fn name_addr_forms() {
        let n = parse_name_addr("sip:caller@example.net;tag=134161461246").unwrap();
        assert_eq!(n.display, None);
        assert_eq!(n.uri, "sip:caller@example.net");
        assert_eq!(n.tag, Some("134161461246"));
        let n = parse_name_addr("Bob <sip:bob@biloxi.com>").unwrap();
        assert_eq!(n.display, Some("Bob"));
        let n = parse_name_addr("\"A <b>\" <sip:x@y>;tag=t").unwrap();
        assert_eq!(n.display, Some("A <b>"));
        assert_eq!(n.user, Some("x"));
        assert_eq!(parse_name_addr("\"unbalanced <sip:x@y>"), None);
        assert_eq!(parse_name_addr("<sip:x@y"), None);
        let n = parse_name_addr("*").unwrap();
        assert_eq!((n.uri, n.host), ("*", None));
        // Unknown scheme: kept as written, no user/host.
        let n = parse_name_addr("<name:John_Smith>").unwrap();
        assert_eq!((n.uri, n.user, n.host), ("name:John_Smith", None, None));
    }

    #[test]
    fn via_forms() {
        let v = parse_via("SIP / 2.0 / UDP first.example.com: 4000;ttl=16;maddr=224.2.0.1 ;branch=z9hG4bKa7c6a8dlze.1").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "first.example.com");
        assert_eq!(v.port, Some(4000));
        assert_eq!(v.branch, Some("z9hG4bKa7c6a8dlze.1"));
        let v = parse_via("SIP/2.0/TCP [2001:db8::9]:5062;branch=z9hG4bK3").unwrap();
        assert_eq!((v.host, v.port), ("2001:db8::9", Some(5062)));
        let v = parse_via("SIP/2.0/UDP 2001:db8::9;branch=z9hG4bK4").unwrap();
        assert_eq!((v.host, v.port), ("2001:db8::9", None));
        assert_eq!(parse_via("HTTP/1.1/TCP x"), None);
        assert_eq!(parse_via("SIP/2.0/UDP"), None);
    }

    #[test]
    fn params_respect_quotes() {
        let p = Params(";cause=16;text=\"a;b=c\" ; Flag ;x = 1");
        assert_eq!(p.get("text"), Some("\"a;b=c\""));
        assert_eq!(p.get("cause"), Some("16"));
        assert_eq!(p.get("flag"), Some(""));
        assert_eq!(p.get("x"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert!(!p.is_empty());
        assert!(Params(" ; ;").is_empty());
        assert_eq!(p.iter().count(), 4);
    }

    #[test]
    fn cseq_edge_cases() {
        let c = |v: &str| {
            let msg = format!("OPTIONS sip:a@b SIP/2.0\r\nCSeq: {v}\r\n\r\n");
            let m = parse(msg.as_bytes(), &Limits::default()).unwrap();
            m.cseq().map(|(n, m)| (n, m.as_str().to_string()))
        };
        assert_eq!(c("1 OPTIONS"), Some((1, "OPTIONS".into())));
        assert_eq!(c("  7   REGISTER "), Some((7, "REGISTER".into())));
        assert_eq!(c("36893488147419103232 REGISTER"), None);
        assert_eq!(c("x INVITE"), None);
        assert_eq!(c("1"), None);
        assert_eq!(c("1 INVITE extra"), None);
    }

    #[test]
    fn expires_saturates_and_rejects_garbage() {
        let e = |v: &str| {
            let msg = format!("REGISTER sip:a SIP/2.0\r\nExpires: {v}\r\n\r\n");
            let m = parse(msg.as_bytes(), &Limits::default()).unwrap();
            m.expires()
        };
        assert_eq!(e("60"), Some(60));
        assert_eq!(e("100000000000000000000"), Some(u32::MAX));
        assert_eq!(e("Thu, 01 Dec 1994"), None);
    }

    #[test]
    fn looks_like_sip_cases() {
        assert!(looks_like_sip(b"OPTIONS sip:a@b SIP/2.0\r\n"));
        assert!(looks_like_sip(b"SIP/2.0 180 Ringing\r\n"));
        assert!(looks_like_sip(b"FOO sip:a SIP/2.0"));
        assert!(!looks_like_sip(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_sip(b"HTTP/1.1 200 OK\r\n"));
        assert!(!looks_like_sip(b"SIP/2.0 OK\r\n"));
        assert!(!looks_like_sip(b"\x80\x08\x00\x01rtp"));
        assert!(!looks_like_sip(b""));
        assert!(!looks_like_sip(b"INVITE SIP/2.0\r\n"));
        // Keep-alive CRLFs before the start line; a first byte that is neither is no SIP.
        assert!(looks_like_sip(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\n"));
        assert!(looks_like_sip(b"\nSIP/2.0 200 OK\r\n"));
        assert!(!looks_like_sip(b" OPTIONS sip:a@b SIP/2.0\r\n"));
        assert!(!looks_like_sip(b"\r\n"));
    }

    #[test]
    fn frame_len_for_tcp() {
        let lim = Limits::default();
        let two =
            b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nabcSIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        let n = frame_len(two, &lim).unwrap().unwrap();
        assert_eq!(&two[n - 3..n], b"abc");
        assert_eq!(frame_len(&two[n..], &lim).unwrap(), Some(two.len() - n));
        // Header block incomplete.
        assert_eq!(
            frame_len(b"OPTIONS sip:a SIP/2.0\r\nCall-I", &lim).unwrap(),
            None
        );
        // Body incomplete: the length is known, the caller waits for it.
        assert_eq!(
            frame_len(b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nab", &lim).unwrap(),
            Some(48)
        );
        // Leading keep-alive CRLFs are part of the frame.
        assert_eq!(
            frame_len(b"\r\n\r\nSIP/2.0 200 OK\r\n\r\n", &lim).unwrap(),
            Some(22)
        );
        let small = Limits {
            max_message: 30,
            max_headers: 8,
        };
        assert_eq!(
            frame_len(b"SIP/2.0 200 OK\r\nContent-Length: 100\r\n\r\n", &small)
                .unwrap_err()
                .kind(),
            "too_large"
        );
        assert_eq!(
            frame_len(b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n", &lim)
                .unwrap_err()
                .kind(),
            "bad_content_length"
        );
    }

    #[test]
    fn ws_tokens_are_the_non_empty_pieces_of_a_split() {
        for s in [
            "",
            " ",
            "1 INVITE",
            "  1\t\tINVITE \r\n",
            "1\u{a0}INVITE",
            "a\u{b}b c",
            "\u{e9}t\u{e9} x",
            "1 INVITE extra",
            "\n\r\t ",
        ] {
            let want: Vec<&str> = s
                .split([' ', '\t', '\r', '\n'])
                .filter(|p| !p.is_empty())
                .collect();
            assert_eq!(ws_tokens(s).collect::<Vec<_>>(), want, "{s:?}");
        }
    }
}
