//! RTP/RTCP: header parsing (RFC 3550 section 5/6) and per-stream statistics (appendix A).
//!
//! Contract: pure functions over `&[u8]`; one length check per field, no panics on any input.
//! `StreamStats` tracks one SSRC in one direction: RFC 3550 A.1 sequence validation with
//! wrap-around, A.3 expected/lost, A.8 interarrival jitter (in the payload's clock units,
//! reported in milliseconds). Time comes from packet timestamps only.

use crate::model::{RtpStreamStats, Timestamp};
use std::net::SocketAddr;

const RTP_VERSION: u8 = 2;
const FIXED_HEADER: usize = 12;

/// Why a datagram was not read as RTP or RTCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header (RTP) or 8 bytes (RTCP).
    #[error("shorter than the fixed header")]
    TooShort,
    /// The version bits are not 2.
    #[error("version is not 2")]
    Version,
    /// The CSRC list or header extension runs past the end.
    #[error("CSRC list or extension runs past the end")]
    Truncated,
    /// The padding count is zero or larger than the payload.
    #[error("padding count is invalid")]
    Padding,
    /// An RTCP length field disagrees with the datagram.
    #[error("RTCP length field disagrees with the datagram")]
    RtcpLength,
    /// An RTCP packet type outside 200-207.
    #[error("RTCP packet type outside 200-207")]
    RtcpType,
}

impl RtpError {
    /// Stable counter key.
    pub fn kind(&self) -> &'static str {
        match self {
            RtpError::TooShort => "too_short",
            RtpError::Version => "version",
            RtpError::Truncated => "truncated",
            RtpError::Padding => "padding",
            RtpError::RtcpLength => "rtcp_length",
            RtpError::RtcpType => "rtcp_type",
        }
    }
}

/// A parsed RTP fixed header (plus CSRC/extension lengths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    /// P bit: the payload ends in padding.
    pub(crate) padding: bool,
    /// X bit: a header extension follows the CSRCs.
    pub(crate) extension: bool,
    pub(crate) csrc_count: u8,
    /// M bit (talkspurt start for audio).
    pub(crate) marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp, in the payload's clock rate.
    pub timestamp: u32,
    /// Synchronisation source identifier.
    pub(crate) ssrc: u32,
    /// Bytes before the payload: fixed header, CSRCs and extension.
    pub header_len: usize,
    /// Payload bytes, without padding.
    pub payload_len: usize,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([
        *s.first()?,
        *s.get(1)?,
        *s.get(2)?,
        *s.get(3)?,
    ]))
}

/// Parses an RTP header. Does not reject RTCP: use `is_rtcp` first when both may occur.
pub fn parse(buf: &[u8]) -> Result<RtpHeader, RtpError> {
    if buf.len() < FIXED_HEADER {
        return Err(RtpError::TooShort);
    }
    let b0 = buf.first().copied().ok_or(RtpError::TooShort)?;
    let b1 = buf.get(1).copied().ok_or(RtpError::TooShort)?;
    if b0 >> 6 != RTP_VERSION {
        return Err(RtpError::Version);
    }
    let padding = b0 & 0x20 != 0;
    let extension = b0 & 0x10 != 0;
    let csrc_count = b0 & 0x0f;
    let seq = be16(buf, 2).ok_or(RtpError::TooShort)?;
    let timestamp = be32(buf, 4).ok_or(RtpError::TooShort)?;
    let ssrc = be32(buf, 8).ok_or(RtpError::TooShort)?;
    let mut header_len = FIXED_HEADER + 4 * usize::from(csrc_count);
    if header_len > buf.len() {
        return Err(RtpError::Truncated);
    }
    if extension {
        // 16-bit profile id, 16-bit length in 32-bit words, then the words.
        let words = be16(buf, header_len + 2).ok_or(RtpError::Truncated)?;
        header_len += 4 + 4 * usize::from(words);
        if header_len > buf.len() {
            return Err(RtpError::Truncated);
        }
    }
    let mut payload_len = buf.len() - header_len;
    if padding {
        let pad = usize::from(buf.last().copied().unwrap_or(0));
        if pad == 0 || pad > payload_len {
            return Err(RtpError::Padding);
        }
        payload_len -= pad;
    }
    Ok(RtpHeader {
        padding,
        extension,
        csrc_count,
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        seq,
        timestamp,
        ssrc,
        header_len,
        payload_len,
    })
}

/// Summary of a (possibly compound) RTCP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcpInfo {
    /// Number of RTCP packets in the datagram.
    pub packets: usize,
    /// Packet type of the first packet (200 SR, 201 RR, 202 SDES, 203 BYE, 204 APP, ...).
    pub(crate) first_type: u8,
    /// Sender SSRC of the first packet.
    pub(crate) ssrc: u32,
    /// Whether one of the packets is a BYE.
    pub(crate) has_bye: bool,
}

/// Most RTCP packets walked in one compound datagram (a bound, not a protocol limit).
const MAX_RTCP_PARTS: usize = 64;

/// Parses an RTCP datagram: every part must be version 2 with a type in 200-207 and the lengths
/// must add up exactly to the datagram (RFC 3550 6.1 / A.2 validity checks, relaxed to allow
/// any type first since SRTCP and reduced-size RTCP exist).
pub fn parse_rtcp(buf: &[u8]) -> Result<RtcpInfo, RtpError> {
    if buf.len() < 8 {
        return Err(RtpError::TooShort);
    }
    let mut at = 0usize;
    let mut info = RtcpInfo {
        packets: 0,
        first_type: 0,
        ssrc: 0,
        has_bye: false,
    };
    while at < buf.len() {
        if info.packets >= MAX_RTCP_PARTS {
            return Err(RtpError::RtcpLength);
        }
        let b0 = buf.get(at).copied().ok_or(RtpError::Truncated)?;
        let pt = buf.get(at + 1).copied().ok_or(RtpError::Truncated)?;
        if b0 >> 6 != RTP_VERSION {
            return Err(RtpError::Version);
        }
        if !(200..=207).contains(&pt) {
            return Err(RtpError::RtcpType);
        }
        let words = be16(buf, at + 2).ok_or(RtpError::Truncated)?;
        let len = (usize::from(words) + 1) * 4;
        let end = at.checked_add(len).ok_or(RtpError::RtcpLength)?;
        if end > buf.len() {
            return Err(RtpError::RtcpLength);
        }
        if info.packets == 0 {
            info.first_type = pt;
            info.ssrc = be32(buf, at + 4).unwrap_or(0);
        }
        info.has_bye |= pt == 203;
        info.packets += 1;
        at = end;
    }
    Ok(info)
}

/// Whether `buf` is a valid RTCP datagram (possibly compound).
pub(crate) fn is_rtcp(buf: &[u8]) -> bool {
    parse_rtcp(buf).is_ok()
}

/// Heuristic for unannounced flows: version 2, a payload type that audio/video uses (static
/// 0-34 or dynamic 96-127; 72-76 with the marker are RTCP), a header that fits and a non-empty
/// payload. One packet proves little; callers confirm with sequence/SSRC continuity.
pub fn looks_like_rtp(buf: &[u8]) -> bool {
    !is_rtcp(buf) && parse(buf).is_ok_and(|h| plausible(&h))
}

/// Whether a parsed header has a media payload type and a payload (see `looks_like_rtp`).
pub(crate) fn plausible(h: &RtpHeader) -> bool {
    (h.payload_type <= 34 || (96..=127).contains(&h.payload_type)) && h.payload_len > 0
}

/// RTP clock rate of a payload type: the rtpmap rate when known, else RFC 3551 static values,
/// else 8000 (what nearly all telephony audio uses).
pub fn clock_rate(payload_type: u8, rtpmap_rate: Option<u32>) -> u32 {
    if let Some(r) = rtpmap_rate.filter(|&r| r > 0) {
        return r;
    }
    match payload_type {
        6 => 16000,
        10 | 11 => 44100,
        14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => 90000,
        16 => 11025,
        17 => 22050,
        _ => 8000,
    }
}

const RTP_SEQ_MOD: u32 = 1 << 16;
const MAX_DROPOUT: u32 = 3000;
const MAX_MISORDER: u32 = 100;
const MIN_SEQUENTIAL: u32 = 2;

/// One RTP stream (SSRC + direction): counts, RFC 3550 A.1 sequence state, A.3 loss, A.8 jitter.
#[derive(Clone, Debug)]
pub struct StreamStats {
    /// Sender's address and port.
    pub src: SocketAddr,
    /// Receiver's address and port.
    pub dst: SocketAddr,
    /// Synchronisation source identifier.
    pub(crate) ssrc: u32,
    /// Payload type of the stream's first packet.
    pub payload_type: u8,
    /// Every packet seen for this SSRC, including probation and duplicates.
    pub packets: u64,
    /// RTP bytes (header + payload) of those packets.
    pub bytes: u64,
    /// Capture time of the first packet.
    pub first: Timestamp,
    /// Capture time of the latest packet.
    pub last: Timestamp,
    clock_rate: u32,
    // A.1 state.
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u64,
    validated: bool,
    // A.8 state.
    jitter: f64,
    last_arrival_us: i64,
    last_rtp_ts: u32,
    have_transit: bool,
    /// Jitter is measured on the first packet's payload type only: interleaved RFC 4733 events,
    /// comfort noise or fax relay follow their own timestamp rules and would read as jitter.
    jitter_pt: u8,
}

impl StreamStats {
    /// Starts a stream from its first packet (which is counted by the following `update`).
    pub fn new(
        src: SocketAddr,
        dst: SocketAddr,
        h: &RtpHeader,
        ts: Timestamp,
        clock_rate: u32,
    ) -> Self {
        StreamStats {
            src,
            dst,
            ssrc: h.ssrc,
            payload_type: h.payload_type,
            packets: 0,
            bytes: 0,
            first: ts,
            last: ts,
            clock_rate: clock_rate.max(1),
            // A.1 source initialisation: max_seq = seq - 1, probation = MIN_SEQUENTIAL.
            max_seq: h.seq.wrapping_sub(1),
            cycles: 0,
            base_seq: u32::from(h.seq),
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            validated: false,
            jitter: 0.0,
            last_arrival_us: 0,
            last_rtp_ts: 0,
            have_transit: false,
            jitter_pt: h.payload_type,
        }
    }

    /// Changes the clock rate (e.g. when the rtpmap becomes known); resets jitter.
    pub(crate) fn set_clock_rate(&mut self, rate: u32) {
        if rate > 0 && rate != self.clock_rate {
            self.clock_rate = rate;
            self.jitter = 0.0;
            self.have_transit = false;
        }
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
    }

    /// RFC 3550 A.1 `update_seq`; returns whether the packet counts as valid.
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = u32::from(seq.wrapping_sub(self.max_seq));
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.validated = true;
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if udelta <= RTP_SEQ_MOD - MAX_MISORDER {
            // A very large jump: restart if the next packet follows it, else drop this one.
            if u32::from(seq) == self.bad_seq {
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        }
        // else: duplicate or reordered packet, counted as received.
        self.received += 1;
        true
    }

    /// Adds one packet of this stream; `rtp_len` is the RTP datagram length.
    pub fn update(&mut self, h: &RtpHeader, ts: Timestamp, rtp_len: usize) {
        self.packets += 1;
        self.bytes = self.bytes.saturating_add(rtp_len as u64);
        if ts > self.last {
            self.last = ts;
        }
        if ts < self.first {
            self.first = ts;
        }
        self.update_seq(h.seq);
        // A.8: D(i-1,i) = (Rj - Ri) - (Sj - Si) in timestamp units; J += (|D| - J) / 16.
        let arrival_us = ts.micros();
        if h.payload_type != self.jitter_pt {
            return;
        }
        if self.have_transit {
            let darr_us = arrival_us.saturating_sub(self.last_arrival_us);
            let darr = darr_us as f64 * f64::from(self.clock_rate) / 1e6;
            let dts = f64::from(h.timestamp.wrapping_sub(self.last_rtp_ts) as i32);
            let d = (darr - dts).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.have_transit = true;
        self.last_arrival_us = arrival_us;
        self.last_rtp_ts = h.timestamp;
    }

    /// Highest sequence number with its wrap count (A.3 `extended_max`).
    pub(crate) fn extended_max(&self) -> u64 {
        u64::from(self.cycles) + u64::from(self.max_seq)
    }

    /// Packets expected since validation (A.3), 0 before the stream is validated.
    pub(crate) fn expected(&self) -> u64 {
        if !self.validated {
            return 0;
        }
        (self.extended_max() + 1).saturating_sub(u64::from(self.base_seq))
    }

    /// Expected minus received (A.3): negative with duplicates.
    pub(crate) fn lost(&self) -> i64 {
        if !self.validated {
            return 0;
        }
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate)
    }

    /// The stream's figures as handed on in call and flow records.
    pub fn to_record(&self) -> RtpStreamStats {
        RtpStreamStats {
            src: self.src,
            dst: self.dst,
            ssrc: self.ssrc,
            payload_type: self.payload_type,
            packets: self.packets,
            bytes: self.bytes,
            lost: self.lost(),
            jitter_ms: self.jitter_ms(),
            first: self.first,
            last: self.last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pkt(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: usize) -> Vec<u8> {
        let mut v = vec![0x80, pt];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend(std::iter::repeat_n(0xd5u8, payload));
        v
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_fixed_header() {
        let b = [
            0x80, 0x88, 0x12, 0x34, 0x00, 0x00, 0x01, 0x40, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3,
        ];
        let h = parse(&b).unwrap();
        assert_eq!(h.payload_type, 8);
        assert!(h.marker);
        assert_eq!(h.seq, 0x1234);
        assert_eq!(h.timestamp, 320);
        assert_eq!(h.ssrc, 0xdead_beef);
        assert_eq!(h.header_len, 12);
        assert_eq!(h.payload_len, 3);
    }

    #[test]
    fn csrc_extension_and_padding_lengths() {
        // CC=2, X=1, P=1: 12 + 8 (CSRC) + 4 (ext hdr) + 4 (1 word) = 28 bytes header,
        // payload 5 bytes then 3 bytes padding (last byte = 3).
        let mut b = vec![0xb2, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        b.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 10]);
        b.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0xaa, 0xbb, 0xcc, 0xdd]);
        b.extend_from_slice(&[1, 2, 3, 4, 5, 0, 0, 3]);
        let h = parse(&b).unwrap();
        assert_eq!(h.csrc_count, 2);
        assert!(h.extension && h.padding);
        assert_eq!(h.header_len, 28);
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(parse(&[0x80, 0, 0]), Err(RtpError::TooShort));
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::Version));
        // CC=15 needs 72 bytes.
        assert_eq!(parse(&[0x8f; 20]), Err(RtpError::Truncated));
        // Extension header announced but missing.
        assert_eq!(
            parse(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Truncated)
        );
        // Padding larger than the payload.
        let mut b = pkt(0, 1, 0, 1, 2);
        b[0] |= 0x20;
        *b.last_mut().unwrap() = 9;
        assert_eq!(parse(&b), Err(RtpError::Padding));
    }

    #[test]
    fn rtcp_compound_sr_sdes_bye() {
        // SR (RC=0): 28 bytes, length 6. SDES with one chunk (CNAME "ab"): 12 bytes, length 2.
        // BYE with one SSRC: 8 bytes, length 1.
        let mut b = vec![0x80, 200, 0, 6, 0x11, 0x22, 0x33, 0x44];
        b.extend_from_slice(&[0u8; 20]);
        b.extend_from_slice(&[0x81, 202, 0, 2, 0x11, 0x22, 0x33, 0x44, 1, 2, b'a', b'b']);
        b.extend_from_slice(&[0x81, 203, 0, 1, 0x11, 0x22, 0x33, 0x44]);
        let info = parse_rtcp(&b).unwrap();
        assert_eq!(info.packets, 3);
        assert_eq!(info.first_type, 200);
        assert_eq!(info.ssrc, 0x1122_3344);
        assert!(info.has_bye);
        assert!(is_rtcp(&b));
        assert!(!looks_like_rtp(&b));
        // One byte short: the last part's length no longer fits.
        assert_eq!(parse_rtcp(&b[..b.len() - 1]), Err(RtpError::RtcpLength));
        // Trailing garbage after a valid part.
        let mut c = b.clone();
        c.extend_from_slice(&[0x80, 0x00, 0, 0]);
        assert_eq!(parse_rtcp(&c), Err(RtpError::RtcpType));
    }

    #[test]
    fn looks_like_rtp_heuristic() {
        assert!(looks_like_rtp(&pkt(18, 7, 160, 5, 20)));
        assert!(looks_like_rtp(&pkt(101, 7, 160, 5, 4)));
        assert!(!looks_like_rtp(&pkt(50, 7, 160, 5, 20)));
        assert!(!looks_like_rtp(&pkt(0, 7, 160, 5, 0)));
        assert!(!looks_like_rtp(b"OPTIONS sip:a SIP/2.0\r\n"));
    }

    #[test]
    fn clock_rates() {
        assert_eq!(clock_rate(0, None), 8000);
        assert_eq!(clock_rate(18, None), 8000);
        assert_eq!(clock_rate(9, None), 8000); // G.722 keeps 8000 by RFC 3551 quirk.
        assert_eq!(clock_rate(96, Some(16000)), 16000);
        assert_eq!(clock_rate(26, None), 90000);
    }

    fn feed(s: &mut StreamStats, seq: u16, rtp_ts: u32, at_us: i64) {
        let b = pkt(8, seq, rtp_ts, 42, 160);
        let h = parse(&b).unwrap();
        s.update(&h, Timestamp(at_us), b.len());
    }

    fn stream(first_seq: u16) -> StreamStats {
        let b = pkt(8, first_seq, 0, 42, 160);
        let h = parse(&b).unwrap();
        StreamStats::new(
            addr("10.0.0.1:4000"),
            addr("1.2.3.4:5000"),
            &h,
            Timestamp(0),
            8000,
        )
    }

    #[test]
    fn loss_counts_gaps() {
        // Sequence 100..=119 with 105, 106 and 110 missing: the first packet is probation, the
        // second validates (base 101), so expected = 119 - 101 + 1 = 19, received = 16, lost 3.
        let mut s = stream(100);
        for seq in 100u16..120 {
            if seq == 105 || seq == 106 || seq == 110 {
                continue;
            }
            feed(&mut s, seq, u32::from(seq) * 160, i64::from(seq) * 20_000);
        }
        assert_eq!(s.packets, 17);
        assert_eq!(s.expected(), 19);
        assert_eq!(s.lost(), 3);
        assert_eq!(s.bytes, 17 * 172);
    }

    #[test]
    fn sequence_wraps_around() {
        // 65530..=65535 then 0..=9: 16 packets, no loss, one cycle.
        let mut s = stream(65530);
        for (n, seq) in (65530u32..65536).chain(0..10).enumerate() {
            feed(&mut s, seq as u16, (n as u32) * 160, n as i64 * 20_000);
        }
        assert_eq!(s.packets, 16);
        assert_eq!(s.extended_max(), 65536 + 9);
        assert_eq!(s.expected(), 15); // base is the validating packet, 65531
        assert_eq!(s.lost(), 0);
        // A gap across the wrap: 65534, 65535, then 2: two lost (0 and 1).
        let mut s = stream(65534);
        feed(&mut s, 65534, 0, 0);
        feed(&mut s, 65535, 160, 20_000);
        feed(&mut s, 2, 640, 80_000);
        assert_eq!(s.lost(), 2);
    }

    #[test]
    fn duplicates_make_loss_negative_and_jumps_restart() {
        let mut s = stream(10);
        for seq in 10u16..15 {
            feed(&mut s, seq, u32::from(seq) * 160, i64::from(seq) * 20_000);
        }
        feed(&mut s, 14, 14 * 160, 300_000);
        assert_eq!(s.lost(), -1);
        // A jump of 20000 is dropped once, then accepted as a restart when the next follows.
        feed(&mut s, 20_014, 0, 320_000);
        assert_eq!(s.lost(), -1);
        feed(&mut s, 20_015, 160, 340_000);
        assert_eq!(s.expected(), 1);
        assert_eq!(s.lost(), 0);
        assert_eq!(s.packets, 8);
    }

    #[test]
    fn jitter_matches_hand_computation() {
        // Packets every 20 ms with timestamps +160 (8 kHz): D = 0 for a perfect stream.
        let mut s = stream(0);
        for i in 0..10u16 {
            feed(&mut s, i, u32::from(i) * 160, i64::from(i) * 20_000);
        }
        assert_eq!(s.jitter_ms(), 0.0);
        // Now one packet 10 ms late: D = 80 units, J = 80/16 = 5 units = 0.625 ms.
        feed(&mut s, 10, 1600, 210_000);
        assert!((s.jitter_ms() - 0.625).abs() < 1e-9, "{}", s.jitter_ms());
        // The next on time: D = |(220000-210000)*8/1000 - 160| = 80; J = 5 + (80-5)/16 = 9.6875.
        feed(&mut s, 11, 1760, 220_000);
        assert!(
            (s.jitter_ms() - 9.6875 / 8.0).abs() < 1e-9,
            "{}",
            s.jitter_ms()
        );
        let r = s.to_record();
        assert_eq!(r.ssrc, 42);
        assert_eq!(r.payload_type, 8);
        assert_eq!(r.packets, 12);
        assert_eq!(r.first, Timestamp(0));
        assert_eq!(r.last, Timestamp(220_000));
    }

    #[test]
    fn jitter_uses_clock_rate_and_timestamp_wrap() {
        // 16 kHz: 20 ms = 320 units. Timestamps wrap past u32::MAX without effect.
        let mut s = stream(0);
        s.set_clock_rate(16000);
        let base = u32::MAX - 500;
        for i in 0..5u16 {
            feed(
                &mut s,
                i,
                base.wrapping_add(u32::from(i) * 320),
                i64::from(i) * 20_000,
            );
        }
        assert_eq!(s.jitter_ms(), 0.0);
        // 5 ms late at 16 kHz: D = 80 units, J = 5 units = 0.3125 ms.
        feed(&mut s, 5, base.wrapping_add(1600), 105_000);
        assert!((s.jitter_ms() - 0.3125).abs() < 1e-9, "{}", s.jitter_ms());
    }

    #[test]
    fn payload_type_switch_rebases_jitter() {
        // PCMA every 20 ms, then RFC 4733 events (same timestamp for the whole event) in
        // between: the event packets must not count as jitter.
        let mut s = stream(0);
        let mut seq = 0u16;
        for i in 0..10u32 {
            let b = pkt(8, seq, i * 160, 42, 160);
            s.update(
                &parse(&b).unwrap(),
                Timestamp(i64::from(i) * 20_000),
                b.len(),
            );
            seq += 1;
            let e = pkt(101, seq, 5000, 42, 4);
            s.update(
                &parse(&e).unwrap(),
                Timestamp(i64::from(i) * 20_000 + 5_000),
                e.len(),
            );
            seq += 1;
        }
        assert_eq!(s.jitter_ms(), 0.0);
        assert_eq!(s.payload_type, 8);
        assert_eq!(s.packets, 20);
        assert_eq!(s.lost(), 0);
        // The next PCMA packet 10 ms late is still measured against the last PCMA packet:
        // D = (210 - 180) ms * 8 - 160 = 80 units, J = 5 units = 0.625 ms.
        let b = pkt(8, seq, 1600, 42, 160);
        s.update(&parse(&b).unwrap(), Timestamp(210_000), b.len());
        assert!((s.jitter_ms() - 0.625).abs() < 1e-9, "{}", s.jitter_ms());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&b);
            let _ = parse_rtcp(&b);
            let _ = looks_like_rtp(&b);
            if let Ok(h) = parse(&b) {
                prop_assert!(h.header_len + h.payload_len <= b.len());
            }
        }

        #[test]
        fn stats_never_panic(seqs in proptest::collection::vec((any::<u16>(), any::<u32>(), 0i64..1_000_000_000), 1..100)) {
            let mut s = stream(seqs[0].0);
            for (seq, ts, at) in seqs {
                let b = pkt(0, seq, ts, 42, 10);
                let h = parse(&b).unwrap();
                s.update(&h, Timestamp(at), b.len());
            }
            prop_assert!(s.jitter_ms().is_finite());
            prop_assert!(s.jitter_ms() >= 0.0);
        }
    }
}
