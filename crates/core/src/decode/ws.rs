//! SIP over WebSocket (RFC 7118): the opening handshake and RFC 6455 frames, as pure functions
//! over bytes (the stream state lives in `tcp`).
//!
//! Contract: `upgrade` tells whether a stream starts with an HTTP Upgrade to WebSocket that
//! offers or accepts the `sip` subprotocol; `frame` reads one frame header (any length form,
//! masked or not) and says how long the whole frame is; `unmask_into` copies a payload out,
//! unmasking it. `sip_frame_start` tells a frame whose payload starts a SIP message (to pick up
//! a stream whose handshake was not captured). Nothing here allocates except `unmask_into`'s
//! append, and nothing panics on any input.

/// Frame opcodes (RFC 6455 section 5.2).
pub(crate) const OP_CONTINUATION: u8 = 0;
pub(crate) const OP_TEXT: u8 = 1;
pub(crate) const OP_BINARY: u8 = 2;
pub(crate) const OP_CLOSE: u8 = 8;

/// Bytes of a handshake searched for its end; longer is not a handshake we follow.
pub(crate) const MAX_HANDSHAKE: usize = 8192;

/// What the start of a stream is, for WebSocket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Upgrade {
    /// An HTTP Upgrade to WebSocket with the `sip` subprotocol; frames follow its `usize`
    /// bytes of headers.
    Sip(usize),
    /// Could be one, the headers are not complete yet.
    Incomplete,
    No,
}

/// Whether `p` starts like an HTTP request or a `101` response (cheap, before `upgrade`).
pub(crate) fn starts_like_http_upgrade(p: &[u8]) -> bool {
    p.starts_with(b"GET ") || p.starts_with(b"HTTP/1.1 101")
}

/// Reads an HTTP Upgrade request (`GET`) or a `101 Switching Protocols` response at the start
/// of `p`: `Sip(len)` when it upgrades to WebSocket with the `sip` subprotocol.
pub(crate) fn upgrade(p: &[u8]) -> Upgrade {
    if !starts_like_http_upgrade(p) {
        return Upgrade::No;
    }
    let search = p.get(..p.len().min(MAX_HANDSHAKE)).unwrap_or_default();
    let Some(end) = super::tcp::header_end(search) else {
        return if p.len() >= MAX_HANDSHAKE {
            Upgrade::No
        } else {
            Upgrade::Incomplete
        };
    };
    let mut websocket = false;
    let mut sip = false;
    for line in search
        .get(..end)
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .skip(1)
    {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        let value = line.get(colon + 1..).unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(b"upgrade") {
            websocket |= value.eq_ignore_ascii_case(b"websocket");
        } else if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
            sip |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"sip"));
        }
    }
    if websocket && sip {
        Upgrade::Sip(end)
    } else {
        Upgrade::No
    }
}

/// One frame header.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    /// Bytes of the header (2 to 14).
    pub header_len: usize,
    pub payload_len: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Complete(Header),
    /// More bytes needed.
    Incomplete,
    /// Longer than `max` bytes.
    Oversize,
    /// Not a frame: reserved bits or opcodes, a control frame that is fragmented or long.
    Invalid,
}

/// Reads the frame at the start of `b`; `Complete` only when all of its payload is in `b`.
pub(crate) fn frame(b: &[u8], max: usize) -> Frame {
    let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
        return Frame::Incomplete;
    };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    // Extensions (compression) set reserved bits: not negotiated for SIP, not followed.
    if b0 & 0x70 != 0 || !matches!(opcode, 0..=2 | 8..=10) {
        return Frame::Invalid;
    }
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            let Some(x) = b.get(2..4) else {
                return Frame::Incomplete;
            };
            (u64::from(u16::from_be_bytes([x[0], x[1]])), 4) // ok: x has 2 bytes
        }
        127 => {
            let Some(x) = b.get(2..10) else {
                return Frame::Incomplete;
            };
            let mut a = [0u8; 8];
            a.copy_from_slice(x);
            (u64::from_be_bytes(a), 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode >= 8 && (!fin || len > 125) {
        return Frame::Invalid;
    }
    let mask = if masked {
        let Some(m) = b.get(at..at + 4) else {
            return Frame::Incomplete;
        };
        at += 4;
        Some([m[0], m[1], m[2], m[3]]) // ok: m has 4 bytes
    } else {
        None
    };
    let Ok(payload_len) = usize::try_from(len) else {
        return Frame::Oversize;
    };
    if payload_len > max.saturating_sub(at) {
        return Frame::Oversize;
    }
    if b.len() < at + payload_len {
        return Frame::Incomplete;
    }
    Frame::Complete(Header {
        fin,
        opcode,
        mask,
        header_len: at,
        payload_len,
    })
}

/// Appends `payload` to `out`, unmasked with `mask` (RFC 6455 section 5.3).
pub(crate) fn unmask_into(payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    match mask {
        None => out.extend_from_slice(payload),
        Some(m) => out.extend(
            payload
                .iter()
                .zip(m.iter().cycle())
                .map(|(byte, key)| byte ^ key),
        ),
    }
}

/// Whether `p` starts with a text or binary frame (final or first of several) whose payload
/// starts like a SIP message: a stream met after its handshake.
pub(crate) fn sip_frame_start(p: &[u8]) -> bool {
    let (Some(&b0), Some(&b1)) = (p.first(), p.get(1)) else {
        return false;
    };
    if b0 & 0x70 != 0 || !matches!(b0 & 0x0f, OP_TEXT | OP_BINARY) {
        return false;
    }
    let mut at = match b1 & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mask = if b1 & 0x80 != 0 {
        let Some(m) = p.get(at..at + 4) else {
            return false;
        };
        at += 4;
        Some([m[0], m[1], m[2], m[3]]) // ok: m has 4 bytes
    } else {
        None
    };
    let head = p.get(at..p.len().min(at + 32)).unwrap_or_default();
    let mut plain = Vec::with_capacity(head.len());
    unmask_into(head, mask, &mut plain);
    plain.len() >= 8 && super::tcp::starts_like_sip(&plain)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A frame as a client (masked) or a server (unmasked) sends it.
    pub(crate) fn ws_frame(
        fin: bool,
        opcode: u8,
        payload: &[u8],
        mask: Option<[u8; 4]>,
    ) -> Vec<u8> {
        let mut f = vec![(u8::from(fin) << 7) | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n <= 0xffff => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if let Some(k) = mask {
            f.extend_from_slice(&k);
        }
        unmask_into(payload, mask, &mut f);
        f
    }

    #[test]
    fn handshake_with_sip_subprotocol() {
        // RFC 7118 section 4 (request) and its 101 answer.
        let req = b"GET / HTTP/1.1\r\nHost: proxy.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://www.example.com\r\nSec-WebSocket-Protocol: sip\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(upgrade(req), Upgrade::Sip(req.len()));
        let resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: sip\r\n\r\n\x81";
        assert_eq!(upgrade(resp), Upgrade::Sip(resp.len() - 1));
        // Several protocols offered, any case.
        let multi =
            b"GET /ws HTTP/1.1\r\nupgrade: WebSocket\r\nsec-websocket-protocol: chat, SIP\r\n\r\n";
        assert!(matches!(upgrade(multi), Upgrade::Sip(_)));
        // Another subprotocol, or not an upgrade, or not yet complete.
        let chat = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: chat\r\n\r\n";
        assert_eq!(upgrade(chat), Upgrade::No);
        assert_eq!(upgrade(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Upgrade::No);
        assert_eq!(upgrade(&req[..40]), Upgrade::Incomplete);
        assert_eq!(upgrade(b"POST / HTTP/1.1\r\n\r\n"), Upgrade::No);
    }

    #[test]
    fn frames_of_every_length_form() {
        let key = Some([0x37, 0xfa, 0x21, 0x3d]);
        for n in [0usize, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            for mask in [None, key] {
                let f = ws_frame(true, OP_TEXT, &payload, mask);
                let Frame::Complete(h) = frame(&f, 1 << 20) else {
                    panic!("{n} {mask:?}");
                };
                assert_eq!(h.header_len + h.payload_len, f.len());
                assert!(h.fin);
                let mut out = Vec::new();
                unmask_into(&f[h.header_len..], h.mask, &mut out);
                assert_eq!(out, payload);
                // Every cut is incomplete, never complete or invalid.
                for cut in [0, 1, h.header_len - 1, f.len() - 1] {
                    if cut < f.len() {
                        assert_eq!(frame(&f[..cut], 1 << 20), Frame::Incomplete, "{n} {cut}");
                    }
                }
                if n > 0 {
                    assert_eq!(frame(&f, n + h.header_len - 1), Frame::Oversize);
                }
            }
        }
    }

    #[test]
    fn rfc6455_examples() {
        // Section 5.7: a single-frame unmasked and masked text message "Hello".
        let plain = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        for f in [&plain[..], &masked[..]] {
            let Frame::Complete(h) = frame(f, 1024) else {
                panic!()
            };
            let mut out = Vec::new();
            unmask_into(&f[h.header_len..], h.mask, &mut out);
            assert_eq!(out, b"Hello");
        }
        // A fragmented unmasked text message: "Hel" then "lo".
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let last = [0x80, 0x02, 0x6c, 0x6f];
        assert!(matches!(
            frame(&first, 64),
            Frame::Complete(Header {
                fin: false,
                opcode: OP_TEXT,
                ..
            })
        ));
        assert!(matches!(
            frame(&last, 64),
            Frame::Complete(Header {
                fin: true,
                opcode: OP_CONTINUATION,
                ..
            })
        ));
    }

    #[test]
    fn invalid_frames() {
        // Reserved bits, reserved opcode, fragmented or long control frame.
        assert_eq!(frame(&[0xc1, 0x00], 64), Frame::Invalid);
        assert_eq!(frame(&[0x83, 0x00], 64), Frame::Invalid);
        assert_eq!(frame(&[0x08, 0x00], 64), Frame::Invalid);
        assert_eq!(frame(&[0x89, 126, 0, 200], 1024), Frame::Invalid);
        // A 64-bit length beyond any bound.
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(frame(&huge, 1 << 20), Frame::Oversize);
    }

    #[test]
    fn sip_in_a_frame_is_recognised() {
        let invite = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/WS x\r\n\r\n";
        assert!(sip_frame_start(&ws_frame(
            true,
            OP_TEXT,
            invite,
            Some([1, 2, 3, 4])
        )));
        assert!(sip_frame_start(&ws_frame(true, OP_BINARY, invite, None)));
        assert!(!sip_frame_start(&ws_frame(
            true,
            OP_TEXT,
            b"{\"json\":1}",
            None
        )));
        assert!(!sip_frame_start(&ws_frame(true, OP_CLOSE, b"", None)));
        assert!(!sip_frame_start(invite));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), max in 0usize..300) {
            if let Frame::Complete(h) = frame(&data, max) {
                proptest::prop_assert!(h.header_len + h.payload_len <= data.len());
                proptest::prop_assert!(h.header_len + h.payload_len <= max);
            }
            let _ = upgrade(&data);
            let _ = sip_frame_start(&data);
        }
    }
}
