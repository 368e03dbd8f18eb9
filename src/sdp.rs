//! SDP parser (RFC 4566/8866): a pure, zero-copy view of the fields the call tracker needs.
//!
//! Contract: `parse` never panics, runs in linear time and holds at most `MAX_MEDIA` media
//! sections with at most `MAX_PAYLOAD_TYPES` formats and rtpmaps each (fixed arrays, no heap);
//! what exceeds them, and lines that do not parse, are counted in `Sdp` and otherwise ignored.
//! CRLF and bare LF line ends are both accepted.

use std::net::{IpAddr, SocketAddr};

pub const MAX_MEDIA: usize = 8;
pub const MAX_PAYLOAD_TYPES: usize = 32;
/// Largest SDP body looked at.
pub const MAX_SDP: usize = 65535;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP body of {0} bytes is too large")]
    TooLarge(usize),
    #[error("empty SDP body")]
    Empty,
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
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
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
pub struct RtpMap<'a> {
    pub pt: u8,
    pub encoding: &'a str,
    pub clock_rate: u32,
    pub channels: Option<u8>,
}

/// One `m=` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media<'a> {
    /// `audio`, `video`, `image`, ...
    pub kind: &'a str,
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, `udptl`, ...
    pub proto: &'a str,
    /// The format list as written (`0 8 101`, or `t38` for image/udptl).
    pub formats: &'a str,
    /// Numeric formats (RTP payload types) in offer order.
    pub payload_types: heapless::Vec<u8, MAX_PAYLOAD_TYPES>,
    pub rtpmaps: heapless::Vec<RtpMap<'a>, MAX_PAYLOAD_TYPES>,
    /// Media-level c=, else the session c=.
    pub connection: Option<IpAddr>,
    pub ptime: Option<u32>,
    pub direction: MediaDirection,
}

impl<'a> Media<'a> {
    /// Codec name of payload type `pt`: its rtpmap, else the RFC 3551 static table.
    pub fn codec_name(&self, pt: u8) -> Option<&'a str> {
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
    pub fn is_audio(&self) -> bool {
        self.kind.eq_ignore_ascii_case("audio")
    }
}

/// A parsed SDP body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sdp<'a> {
    /// Username field of `o=` (`-` when not given).
    pub origin_user: Option<&'a str>,
    /// The whole `o=` value.
    pub origin: Option<&'a str>,
    /// `s=` value.
    pub session_name: Option<&'a str>,
    /// Session-level c= address.
    pub connection: Option<IpAddr>,
    /// Session-level direction attribute, when given (media without their own inherit it).
    pub direction: Option<MediaDirection>,
    pub media: heapless::Vec<Media<'a>, MAX_MEDIA>,
    /// `m=` sections beyond `MAX_MEDIA` (ignored).
    pub dropped_media: u32,
    /// Payload types or rtpmaps beyond `MAX_PAYLOAD_TYPES` (ignored).
    pub dropped_formats: u32,
    /// Lines that are not `x=value`, not UTF-8, or whose value did not parse (ignored).
    pub bad_lines: u32,
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
    if body.len() > MAX_SDP {
        return Err(SdpError::TooLarge(body.len()));
    }
    let mut sdp = Sdp::default();
    let mut seen_version = false;
    let mut any = false;
    // Media-level values not yet final (connection/direction fall back at the end).
    let mut media_conn: heapless::Vec<Option<IpAddr>, MAX_MEDIA> = heapless::Vec::new();
    let mut media_dir: heapless::Vec<Option<MediaDirection>, MAX_MEDIA> = heapless::Vec::new();
    // Whether the current m= section was dropped (its attributes are ignored too).
    let mut in_dropped_media = false;

    for raw in body.split(|&b| b == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let Ok(line) = std::str::from_utf8(raw) else {
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
                if sdp.media.push(m).is_err() {
                    sdp.dropped_media = sdp.dropped_media.saturating_add(1);
                    in_dropped_media = true;
                } else {
                    in_dropped_media = false;
                    let _ = media_conn.push(None);
                    let _ = media_dir.push(None);
                }
            }
            b'a' => {
                if in_dropped_media {
                    continue;
                }
                let (name, val) = match value.split_once(':') {
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
                            if media.rtpmaps.push(r).is_err() {
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
    Ok(sdp)
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
    let addr = addr.split('/').next().unwrap_or(addr);
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
    let mut it = v.split_ascii_whitespace();
    let kind = it.next()?;
    let port = it.next()?;
    let port = port.split('/').next().unwrap_or(port);
    let port = parse_small::<u16>(port, 5)?;
    let proto = it.next()?;
    let formats = v
        .find(proto)
        .and_then(|i| v.get(i + proto.len()..))
        .map(str::trim)
        .unwrap_or("");
    let mut payload_types = heapless::Vec::new();
    for f in it {
        let Some(pt) = parse_small::<u8>(f, 3).filter(|&p| p <= 127) else {
            continue; // non-RTP format such as t38
        };
        if payload_types.contains(&pt) {
            continue;
        }
        if payload_types.push(pt).is_err() {
            *dropped = dropped.saturating_add(1);
        }
    }
    Some(Media {
        kind,
        port,
        proto,
        formats,
        payload_types,
        rtpmaps: heapless::Vec::new(),
        connection: None,
        ptime: None,
        direction: MediaDirection::SendRecv,
    })
}

/// `97 AMR/8000/1`
fn parse_rtpmap(v: &str) -> Option<RtpMap<'_>> {
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

/// `20` or `20.0` (some devices send decimals); milliseconds.
fn parse_ptime(v: &str) -> Option<u32> {
    let v = v.trim();
    let int = v.split('.').next().unwrap_or(v);
    parse_small::<u32>(int, 6)
}

/// Digits only, at most `max_digits`, parsed as `T`.
fn parse_small<T: std::str::FromStr>(s: &str, max_digits: usize) -> Option<T> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_offer() {
        let s = parse(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n").unwrap();
        let m = s.audio().unwrap();
        assert_eq!(m.rtp_endpoint(), Some("192.0.2.1:4000".parse().unwrap()));
        assert_eq!(
            m.codec_names().collect::<Vec<_>>(),
            ["G729", "telephone-event"]
        );
        assert_eq!(m.ptime, Some(20));
    }
}
