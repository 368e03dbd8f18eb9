//! SDP parser (RFC 4566/8866): a pure, zero-copy view of the fields the call tracker needs.
//!
//! Contract: `parse` never panics, runs in linear time and holds at most `MAX_MEDIA` media
//! sections with at most `MAX_PAYLOAD_TYPES` formats and rtpmaps each (fixed arrays, no heap);
//! what exceeds them, and lines that do not parse, are counted in `Sdp` and otherwise ignored.
//! CRLF and bare LF line ends are both accepted. A `c=` with a host name instead of an address
//! (legal, rare) is counted in `bad_lines` and leaves the connection unset: nothing here resolves
//! names.

// arrayvec, not heapless: heapless's `Vec::new` is materialised as a zeroed copy of the whole
// buffer (a 7 KB memset per SDP body parsed), arrayvec's is not.
use crate::sip::split_at_byte;
use arrayvec::ArrayVec;
use std::net::{IpAddr, SocketAddr};

/// Most `m=` sections kept per body; more are counted and ignored.
pub const MAX_MEDIA: usize = 8;
/// Most payload types (and rtpmaps) kept per `m=` section; more are counted and ignored.
pub const MAX_PAYLOAD_TYPES: usize = 32;
/// Largest SDP body looked at.
pub(crate) const MAX_SDP: usize = 65535;

/// Why a body was not read as SDP.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is longer than 65535 bytes (its length is given).
    #[error("SDP body of {0} bytes is too large")]
    TooLarge(usize),
    /// No `x=value` line at all (an empty or blank body, or one of non-UTF-8 lines only).
    #[error("empty SDP body")]
    Empty,
    /// The first line is not `v=`.
    #[error("SDP does not start with v=")]
    NotSdp,
}

impl SdpError {
    /// Stable counter key.
    pub fn kind(&self) -> &'static str {
        match self {
            SdpError::TooLarge(_) => "too_large",
            SdpError::Empty => "empty",
            SdpError::NotSdp => "not_sdp",
        }
    }
}

/// Media direction attribute (RFC 4566 6); sendrecv when absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MediaDirection {
    /// `a=sendrecv` (the default).
    #[default]
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl MediaDirection {
    fn from_attr(a: &str) -> Option<MediaDirection> {
        match a {
            "sendrecv" => Some(MediaDirection::SendRecv),
            "sendonly" => Some(MediaDirection::SendOnly),
            "recvonly" => Some(MediaDirection::RecvOnly),
            "inactive" => Some(MediaDirection::Inactive),
            _ => None,
        }
    }
    /// The attribute's name (`sendrecv`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaDirection::SendRecv => "sendrecv",
            MediaDirection::SendOnly => "sendonly",
            MediaDirection::RecvOnly => "recvonly",
            MediaDirection::Inactive => "inactive",
        }
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RtpMap<'a> {
    pub(crate) pt: u8,
    pub(crate) encoding: &'a str,
    pub(crate) clock_rate: u32,
    pub channels: Option<u8>,
}

/// One `m=` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media<'a> {
    /// `audio`, `video`, `image`, ...
    pub(crate) kind: &'a str,
    /// Port of the `m=` line (0: stream disabled).
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, `udptl`, ...
    pub proto: &'a str,
    /// The format list as written (`0 8 101`, or `t38` for image/udptl).
    pub(crate) formats: &'a str,
    /// Numeric formats (RTP payload types) in offer order.
    pub payload_types: ArrayVec<u8, MAX_PAYLOAD_TYPES>,
    pub(crate) rtpmaps: ArrayVec<RtpMap<'a>, MAX_PAYLOAD_TYPES>,
    /// Media-level c=, else the session c=.
    pub(crate) connection: Option<IpAddr>,
    /// `a=ptime` of the section, in milliseconds.
    pub ptime: Option<u32>,
    /// The section's direction attribute, else the session's, else sendrecv.
    pub direction: MediaDirection,
}

impl<'a> Media<'a> {
    /// Codec name of payload type `pt`: its rtpmap, else the RFC 3551 static table.
    pub(crate) fn codec_name(&self, pt: u8) -> Option<&'a str> {
        self.rtpmaps
            .iter()
            .find(|r| r.pt == pt)
            .map(|r| r.encoding)
            .or_else(|| static_payload_name(pt))
    }
    /// Codec names in offer order (payload types without a known name are skipped).
    pub fn codec_names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.payload_types
            .iter()
            .filter_map(move |&pt| self.codec_name(pt))
    }
    /// Where this side wants to receive RTP; None for a disabled stream (port 0), no
    /// connection address, or the unspecified address (hold).
    pub fn rtp_endpoint(&self) -> Option<SocketAddr> {
        let ip = self.connection?;
        if self.port == 0 || ip.is_unspecified() {
            return None;
        }
        Some(SocketAddr::new(ip, self.port))
    }
    pub(crate) fn is_audio(&self) -> bool {
        self.kind.eq_ignore_ascii_case("audio")
    }
}

/// A parsed SDP body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sdp<'a> {
    /// Username field of `o=` (`-` when not given).
    pub origin_user: Option<&'a str>,
    /// The whole `o=` value.
    pub(crate) origin: Option<&'a str>,
    /// `s=` value.
    pub(crate) session_name: Option<&'a str>,
    /// Session-level c= address.
    pub(crate) connection: Option<IpAddr>,
    /// Session-level direction attribute, when given (media without their own inherit it).
    pub direction: Option<MediaDirection>,
    /// The `m=` sections in order, at most `MAX_MEDIA`.
    pub media: ArrayVec<Media<'a>, MAX_MEDIA>,
    /// `m=` sections beyond `MAX_MEDIA` (ignored).
    pub(crate) dropped_media: u32,
    /// Payload types or rtpmaps beyond `MAX_PAYLOAD_TYPES` (ignored).
    pub(crate) dropped_formats: u32,
    /// Lines that are not `x=value`, not UTF-8, or whose value did not parse (ignored).
    pub(crate) bad_lines: u32,
}

impl<'a> Sdp<'a> {
    /// The first audio section with a non-zero port.
    pub fn audio(&self) -> Option<&Media<'a>> {
        self.media.iter().find(|m| m.is_audio() && m.port != 0)
    }
}

/// RFC 3551 static audio/video payload type names.
pub fn static_payload_name(pt: u8) -> Option<&'static str> {
    Some(match pt {
        0 => "PCMU",
        3 => "GSM",
        4 => "G723",
        5 | 6 | 16 | 17 => "DVI4",
        7 => "LPC",
        8 => "PCMA",
        9 => "G722",
        10 | 11 => "L16",
        12 => "QCELP",
        13 => "CN",
        14 => "MPA",
        15 => "G728",
        18 => "G729",
        25 => "CelB",
        26 => "JPEG",
        28 => "nv",
        31 => "H261",
        32 => "MPV",
        33 => "MP2T",
        34 => "H263",
        _ => return None,
    })
}

/// Parses an SDP body.
pub fn parse(body: &[u8]) -> Result<Sdp<'_>, SdpError> {
    let mut sdp = Sdp::default();
    parse_into(body, &mut sdp)?;
    Ok(sdp)
}

/// `parse` into `sdp`, which must be `Sdp::default()`: the caller's value is filled in place
/// (an `Sdp` holds fixed arrays of some 9 KB; returning one copies them). On an error `sdp`
/// holds whatever was read before it.
pub(crate) fn parse_into<'a>(body: &'a [u8], sdp: &mut Sdp<'a>) -> Result<(), SdpError> {
    if body.len() > MAX_SDP {
        return Err(SdpError::TooLarge(body.len()));
    }
    let mut seen_version = false;
    let mut any = false;
    // Media-level values not yet final (connection/direction fall back at the end).
    let mut media_conn: ArrayVec<Option<IpAddr>, MAX_MEDIA> = ArrayVec::new();
    let mut media_dir: ArrayVec<Option<MediaDirection>, MAX_MEDIA> = ArrayVec::new();
    // Whether the current m= section was dropped (its attributes are ignored too).
    let mut in_dropped_media = false;

    // Checked for UTF-8 once; a bad line is counted.
    let utf8 = crate::sip::Utf8Lines::new(body);
    // Lines split at LF, with their offsets (the pieces of `body.split` on b'\n').
    let lines = memchr::memchr_iter(b'\n', body)
        .chain(std::iter::once(body.len()))
        .scan(0, |start, end| {
            let at = *start;
            *start = end + 1;
            Some((at, body.get(at..end).unwrap_or(&[])))
        });
    for (at, raw) in lines {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let Some(line) = utf8.get(at, at + raw.len()) else {
            sdp.bad_lines = sdp.bad_lines.saturating_add(1);
            continue;
        };
        let line = line.trim_end();
        let bytes = line.as_bytes();
        let (Some(&t), Some(b'=')) = (bytes.first(), bytes.get(1)) else {
            sdp.bad_lines = sdp.bad_lines.saturating_add(1);
            if !any {
                return Err(SdpError::NotSdp);
            }
            continue;
        };
        let value = line.get(2..).unwrap_or("");
        if !any {
            any = true;
            // RFC 4566: the first line is v=. Accept its absence only when it cannot be
            // confused with another text format: require v= first.
            if t != b'v' {
                return Err(SdpError::NotSdp);
            }
        }
        let in_media = !sdp.media.is_empty() || in_dropped_media;
        match t {
            b'v' => seen_version = true,
            b'o' if !in_media => {
                sdp.origin = Some(value);
                sdp.origin_user = value.split_ascii_whitespace().next();
            }
            b's' if !in_media => sdp.session_name = Some(value),
            b'c' => {
                let Some(ip) = parse_connection(value) else {
                    sdp.bad_lines = sdp.bad_lines.saturating_add(1);
                    continue;
                };
                if in_dropped_media {
                    continue;
                }
                match media_conn.last_mut() {
                    Some(slot) => *slot = Some(ip),
                    None => sdp.connection = Some(ip),
                }
            }
            b'm' => {
                let Some(m) = parse_media_line(value, &mut sdp.dropped_formats) else {
                    sdp.bad_lines = sdp.bad_lines.saturating_add(1);
                    // Attributes of an unparsable m= must not land on the previous section.
                    in_dropped_media = true;
                    continue;
                };
                if sdp.media.try_push(m).is_err() {
                    sdp.dropped_media = sdp.dropped_media.saturating_add(1);
                    in_dropped_media = true;
                } else {
                    in_dropped_media = false;
                    let _ = media_conn.try_push(None);
                    let _ = media_dir.try_push(None);
                }
            }
            b'a' => {
                if in_dropped_media {
                    continue;
                }
                let (name, val) = match split_at_byte(value, b':') {
                    Some((n, v)) => (n, Some(v)),
                    None => (value, None),
                };
                if let Some(dir) = MediaDirection::from_attr(name) {
                    match media_dir.last_mut() {
                        Some(slot) => *slot = Some(dir),
                        None => sdp.direction = Some(dir),
                    }
                    continue;
                }
                let Some(media) = sdp.media.last_mut() else {
                    continue;
                };
                match (name, val) {
                    ("rtpmap", Some(v)) => match parse_rtpmap(v) {
                        Some(r) => {
                            if media.rtpmaps.iter().any(|x| x.pt == r.pt) {
                                continue;
                            }
                            if media.rtpmaps.try_push(r).is_err() {
                                sdp.dropped_formats = sdp.dropped_formats.saturating_add(1);
                            }
                        }
                        None => sdp.bad_lines = sdp.bad_lines.saturating_add(1),
                    },
                    ("ptime", Some(v)) => match parse_ptime(v) {
                        Some(p) => media.ptime = Some(p),
                        None => sdp.bad_lines = sdp.bad_lines.saturating_add(1),
                    },
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !any {
        return Err(SdpError::Empty);
    }
    if !seen_version {
        return Err(SdpError::NotSdp);
    }
    for (i, m) in sdp.media.iter_mut().enumerate() {
        m.connection = media_conn.get(i).copied().flatten().or(sdp.connection);
        m.direction = media_dir
            .get(i)
            .copied()
            .flatten()
            .or(sdp.direction)
            .unwrap_or_default();
    }
    Ok(())
}

/// `IN IP4 192.0.2.1`, `IN IP6 2001:db8::1`, also with a multicast `/ttl` suffix.
fn parse_connection(v: &str) -> Option<IpAddr> {
    let mut it = v.split_ascii_whitespace();
    let net = it.next()?;
    let addrtype = it.next()?;
    let addr = it.next()?;
    if !net.eq_ignore_ascii_case("IN") {
        return None;
    }
    let addr = first_field(addr, b'/');
    let ip: IpAddr = addr.parse().ok()?;
    let ok = if addrtype.eq_ignore_ascii_case("IP4") {
        ip.is_ipv4()
    } else if addrtype.eq_ignore_ascii_case("IP6") {
        ip.is_ipv6()
    } else {
        false
    };
    ok.then_some(ip)
}

/// `audio 49170 RTP/AVP 0 8 97` (port may be `port/count`).
fn parse_media_line<'a>(v: &'a str, dropped: &mut u32) -> Option<Media<'a>> {
    let (kind, rest) = next_token(v)?;
    let (port, rest) = next_token(rest)?;
    let port = first_field(port, b'/');
    let port = parse_small::<u16>(port, 5)?;
    let (proto, formats) = next_token(rest)?;
    let formats = formats.trim();
    let it = formats.split_ascii_whitespace();
    let mut payload_types = ArrayVec::new();
    for f in it {
        let Some(pt) = parse_small::<u8>(f, 3).filter(|&p| p <= 127) else {
            continue; // non-RTP format such as t38
        };
        if payload_types.contains(&pt) {
            continue;
        }
        if payload_types.try_push(pt).is_err() {
            *dropped = dropped.saturating_add(1);
        }
    }
    Some(Media {
        kind,
        port,
        proto,
        formats,
        payload_types,
        rtpmaps: ArrayVec::new(),
        connection: None,
        ptime: None,
        direction: MediaDirection::SendRecv,
    })
}

/// The first white-space separated token of `s` and the text after it.
fn next_token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    Some(match s.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((t, rest)) => (t, rest),
        None => (s, ""),
    })
}

/// `97 AMR/8000/1`
fn parse_rtpmap(v: &str) -> Option<RtpMap<'_>> {
    if v.is_ascii() {
        return parse_rtpmap_ascii(v);
    }
    parse_rtpmap_chars(v)
}

/// `parse_rtpmap` of any text (white space as `str::trim` has it).
fn parse_rtpmap_chars(v: &str) -> Option<RtpMap<'_>> {
    let (pt, rest) = v.trim().split_once([' ', '\t'])?;
    let pt = parse_small::<u8>(pt, 3).filter(|&p| p <= 127)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.trim();
    if encoding.is_empty() {
        return None;
    }
    let clock_rate = parse_small::<u32>(parts.next()?.trim(), 9)?;
    let channels = match parts.next() {
        Some(c) => Some(parse_small::<u8>(c.trim(), 3)?),
        None => None,
    };
    Some(RtpMap {
        pt,
        encoding,
        clock_rate,
        channels,
    })
}

/// `parse_rtpmap` of an ASCII value by bytes: the same splits and trims (an ASCII char is
/// white space for `str::trim` when it is HT, LF, VT, FF, CR or SP) without decoding chars or
/// setting up pattern searches.
fn parse_rtpmap_ascii(v: &str) -> Option<RtpMap<'_>> {
    let v = trim_ascii_ws(v);
    let sp = v.bytes().position(|b| b == b' ' || b == b'\t')?;
    let pt = parse_small::<u8>(v.get(..sp)?, 3).filter(|&p| p <= 127)?;
    let rest = trim_ascii_ws(v.get(sp + 1..)?);
    // `rest.split('/')`: encoding, clock rate, channels (anything after a third `/` ignored).
    let (encoding, after) = match split_at_byte(rest, b'/') {
        Some((e, a)) => (e, Some(a)),
        None => (rest, None),
    };
    let encoding = trim_ascii_ws(encoding);
    if encoding.is_empty() {
        return None;
    }
    let (clock, channels) = match split_at_byte(after?, b'/') {
        Some((c, ch)) => (c, Some(first_field(ch, b'/'))),
        None => (after?, None),
    };
    let clock_rate = parse_small::<u32>(trim_ascii_ws(clock), 9)?;
    let channels = match channels {
        Some(c) => Some(parse_small::<u8>(trim_ascii_ws(c), 3)?),
        None => None,
    };
    Some(RtpMap {
        pt,
        encoding,
        clock_rate,
        channels,
    })
}

/// `s.split(char::from(sep)).next()` for an ASCII `sep`, by a byte scan (no search set-up).
fn first_field(s: &str, sep: u8) -> &str {
    split_at_byte(s, sep).map_or(s, |(f, _)| f)
}

/// `str::trim` of ASCII text (VT included, unlike `u8::is_ascii_whitespace`).
fn trim_ascii_ws(s: &str) -> &str {
    let ws = |b: &u8| matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ');
    let b = s.as_bytes();
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or("")
}

/// `20` or `20.0` (some devices send decimals); milliseconds.
fn parse_ptime(v: &str) -> Option<u32> {
    let v = v.trim();
    let int = first_field(v, b'.');
    parse_small::<u32>(int, 6)
}

/// Digits only, at most `max_digits`, parsed as `T` (None when it does not fit).
fn parse_small<T: TryFrom<u64>>(s: &str, max_digits: usize) -> Option<T> {
    T::try_from(crate::sip::decimal(s, max_digits)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &[u8] = b"v=0\r\n\
o=DBL 1234 5678 IN IP4 203.0.113.10\r\n\
s=DBL Session\r\n\
c=IN IP4 203.0.113.10\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 18 8 0 101\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
m=video 0 RTP/AVP 34\r\n\
c=IN IP4 198.51.100.1\r\n";

    #[test]
    fn session_fields_and_media() {
        let s = parse(OFFER).unwrap();
        assert_eq!(s.origin_user, Some("DBL"));
        assert_eq!(s.origin, Some("DBL 1234 5678 IN IP4 203.0.113.10"));
        assert_eq!(s.session_name, Some("DBL Session"));
        assert_eq!(s.connection, Some("203.0.113.10".parse().unwrap()));
        assert_eq!(s.media.len(), 2);
        let a = &s.media[0];
        assert_eq!((a.kind, a.port, a.proto), ("audio", 16384, "RTP/AVP"));
        assert_eq!(a.formats, "18 8 0 101");
        assert_eq!(a.payload_types.as_slice(), &[18, 8, 0, 101]);
        assert_eq!(a.rtpmaps.len(), 2);
        assert_eq!(
            a.rtpmaps[1],
            RtpMap {
                pt: 101,
                encoding: "telephone-event",
                clock_rate: 8000,
                channels: None
            }
        );
        assert_eq!(
            a.codec_names().collect::<Vec<_>>(),
            ["G729", "PCMA", "PCMU", "telephone-event"]
        );
        assert_eq!(a.ptime, Some(20));
        assert_eq!(a.direction, MediaDirection::SendRecv);
        // Session c= is the fallback.
        assert_eq!(
            a.rtp_endpoint(),
            Some("203.0.113.10:16384".parse().unwrap())
        );
        // Media c= wins; port 0 disables the stream.
        let v = &s.media[1];
        assert_eq!(v.connection, Some("198.51.100.1".parse().unwrap()));
        assert_eq!(v.rtp_endpoint(), None);
        assert_eq!(v.codec_names().collect::<Vec<_>>(), ["H263"]);
        assert_eq!(s.audio().map(|m| m.port), Some(16384));
        assert_eq!((s.bad_lines, s.dropped_media, s.dropped_formats), (0, 0, 0));
    }

    #[test]
    fn lf_only_and_ipv6() {
        let s = parse(b"v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\nm=audio 5004 RTP/AVP 0\na=recvonly\n").unwrap();
        let m = &s.media[0];
        assert_eq!(
            m.rtp_endpoint(),
            Some("[2001:db8::1]:5004".parse().unwrap())
        );
        assert_eq!(m.direction, MediaDirection::RecvOnly);
        // IP4 address type with an IPv6 address is not accepted.
        let s = parse(b"v=0\nc=IN IP4 2001:db8::1\nm=audio 5004 RTP/AVP 0\n").unwrap();
        assert_eq!(s.media[0].connection, None);
        assert_eq!(s.bad_lines, 1);
    }

    #[test]
    fn directions_session_default_and_override() {
        let s = parse(b"v=0\r\na=sendonly\r\nc=IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0\r\nm=audio 2 RTP/AVP 0\r\na=inactive\r\n").unwrap();
        assert_eq!(s.direction, Some(MediaDirection::SendOnly));
        assert_eq!(s.media[0].direction, MediaDirection::SendOnly);
        assert_eq!(s.media[1].direction, MediaDirection::Inactive);
        assert_eq!(MediaDirection::Inactive.as_str(), "inactive");
    }

    #[test]
    fn static_payload_table() {
        for (pt, name) in [
            (0, "PCMU"),
            (3, "GSM"),
            (4, "G723"),
            (8, "PCMA"),
            (9, "G722"),
            (18, "G729"),
            (13, "CN"),
        ] {
            assert_eq!(static_payload_name(pt), Some(name));
        }
        assert_eq!(static_payload_name(96), None);
        // A dynamic type without rtpmap has no name.
        let s = parse(b"v=0\r\nm=audio 4000 RTP/AVP 96 0\r\n").unwrap();
        assert_eq!(s.media[0].codec_names().collect::<Vec<_>>(), ["PCMU"]);
        // An rtpmap overrides the static name.
        let s = parse(b"v=0\r\nm=audio 4000 RTP/AVP 3\r\na=rtpmap:3 GSM-EFR/8000\r\n").unwrap();
        assert_eq!(s.media[0].codec_name(3), Some("GSM-EFR"));
    }

    #[test]
    fn image_t38_and_port_count() {
        let s = parse(b"v=0\r\nc=IN IP4 192.0.2.7\r\nm=image 4002 udptl t38\r\nm=audio 6000/2 RTP/AVP 8\r\na=ptime:30.0\r\n").unwrap();
        assert_eq!(s.media[0].kind, "image");
        assert_eq!(s.media[0].formats, "t38");
        assert!(s.media[0].payload_types.is_empty());
        assert_eq!(s.media[1].port, 6000);
        assert_eq!(s.media[1].ptime, Some(30));
        assert_eq!(s.audio().map(|m| m.port), Some(6000));
    }

    #[test]
    fn bounds_are_counted() {
        let mut b = b"v=0\r\nc=IN IP4 192.0.2.1\r\n".to_vec();
        for i in 0..10 {
            b.extend_from_slice(
                format!("m=audio {} RTP/AVP 0\r\na=ptime:{}\r\n", 1000 + i, 10 + i).as_bytes(),
            );
        }
        let s = parse(&b).unwrap();
        assert_eq!(s.media.len(), MAX_MEDIA);
        assert_eq!(s.dropped_media, 2);
        // The dropped sections' attributes did not land on the last kept one.
        assert_eq!(s.media[MAX_MEDIA - 1].ptime, Some(17));
        let pts: Vec<String> = (0..40).map(|i| (i + 60).to_string()).collect();
        let b = format!("v=0\r\nm=audio 1 RTP/AVP {}\r\n", pts.join(" "));
        let s = parse(b.as_bytes()).unwrap();
        assert_eq!(s.media[0].payload_types.len(), MAX_PAYLOAD_TYPES);
        assert_eq!(s.dropped_formats, 8);
    }

    #[test]
    fn malformed_lines_counted_not_fatal() {
        let s = parse(b"v=0\r\nthis is not sdp\r\nc=IN IP4 nonsense\r\nm=audio x RTP/AVP 0\r\na=ptime:7\r\nm=audio 5 RTP/AVP 0\r\na=rtpmap:200 X/1\r\na=ptime:abc\r\n\xff\xfe\r\n").unwrap();
        assert_eq!(s.media.len(), 1);
        assert_eq!(s.media[0].port, 5);
        // The ptime of the unparsable m= section is ignored, not counted, not misplaced.
        assert_eq!(s.media[0].ptime, None);
        assert_eq!(s.bad_lines, 6);
    }

    #[test]
    fn not_sdp() {
        assert_eq!(parse(b"").unwrap_err().kind(), "empty");
        assert_eq!(parse(b"\r\n\r\n").unwrap_err().kind(), "empty");
        assert_eq!(parse(b"<xml/>").unwrap_err().kind(), "not_sdp");
        assert_eq!(
            parse(b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n")
                .unwrap_err()
                .kind(),
            "not_sdp"
        );
        assert_eq!(
            parse(&vec![b'v'; MAX_SDP + 1]).unwrap_err().kind(),
            "too_large"
        );
    }

    #[test]
    fn rtpmap_ascii_path_reads_as_the_char_path() {
        // Every ASCII white space char (and its neighbours) around and inside the fields.
        let pieces = [
            "", " ", "\t", "\u{b}", "\u{c}", "\r", "\n", "\u{1c}", "\u{1f}", "/", "8", "101",
            "300", "G729", "8000", "1", "x",
        ];
        let mut n = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        let v = format!("{a}18{b}G729{c}/8000{d}/1{a}");
                        assert_eq!(parse_rtpmap_ascii(&v), parse_rtpmap_chars(&v), "{v:?}");
                        let v = format!("{a}{b} {c}/{d}");
                        assert_eq!(parse_rtpmap_ascii(&v), parse_rtpmap_chars(&v), "{v:?}");
                        n += 1;
                    }
                }
            }
        }
        assert!(n > 0);
    }

    #[test]
    fn parse_small_reads_as_str_parse() {
        let old = |s: &str, max: usize| -> (Option<u8>, Option<u16>, Option<u32>) {
            let ok = !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
            (
                s.parse().ok().filter(|_| ok),
                s.parse().ok().filter(|_| ok),
                s.parse().ok().filter(|_| ok),
            )
        };
        let mut cases: Vec<String> = (0..70_000u32).step_by(7).map(|n| n.to_string()).collect();
        cases.extend(
            [
                "", "+1", "-1", "007", "0255", "256", "65535", "65536", " 1", "1 ", "1a",
            ]
            .map(String::from),
        );
        cases.extend(["999999999", "4294967295", "4294967296", "0000000001"].map(String::from));
        for s in &cases {
            for max in [3, 5, 9] {
                let got = (
                    parse_small::<u8>(s, max),
                    parse_small::<u16>(s, max),
                    parse_small::<u32>(s, max),
                );
                assert_eq!(got, old(s, max), "{s:?} max {max}");
            }
        }
    }
}
