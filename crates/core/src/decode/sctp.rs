//! SIP over SCTP (RFC 4168): the user messages in the DATA and I-DATA chunks of one packet.
//!
//! Contract: `user_messages` walks every chunk of one SCTP packet (common header, then chunks
//! padded to 4 bytes) and calls `emit` with the stream's user data for each DATA (RFC 9260) or
//! I-DATA (RFC 8260) chunk that holds a whole user message (B and E flags both set), whatever
//! its payload protocol identifier (SIP has none registered; 0 is usual). A fragment of a user
//! message is not reassembled: it is counted (`Walk::fragments`). Control chunks are skipped.
//! A malformed header or chunk stops the walk and is reported; nothing panics on any input.

/// Bytes of the SCTP common header.
const COMMON_HEADER: usize = 12;
/// Chunk types (RFC 9260 section 3.2, RFC 8260 section 2.1).
const CHUNK_DATA: u8 = 0;
const CHUNK_IDATA: u8 = 64;
/// Bytes before the user data in a DATA and an I-DATA chunk.
const DATA_HEADER: usize = 16;
const IDATA_HEADER: usize = 20;
/// Chunk flags: first and last piece of a user message.
const FLAG_E: u8 = 0x01;
const FLAG_B: u8 = 0x02;

/// How a packet's chunks were walked.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Walk {
    pub messages: u32,
    /// DATA chunks carrying part of a user message only (not reassembled).
    pub fragments: u32,
    /// The header or a chunk was malformed (stopped there).
    pub malformed: bool,
    /// A chunk ran past the captured bytes (the snap length cut the packet).
    pub cut: bool,
}

/// Source and destination ports of an SCTP packet.
pub(crate) fn ports(p: &[u8]) -> Option<(u16, u16)> {
    let h = p.get(..4)?;
    Some((
        u16::from_be_bytes([h[0], h[1]]), // ok: h has 4 bytes
        u16::from_be_bytes([h[2], h[3]]), // ok: h has 4 bytes
    ))
}

/// Calls `emit` with every whole user message of the packet `p` (common header first).
pub(crate) fn user_messages(p: &[u8], truncated: bool, emit: &mut dyn FnMut(&[u8])) -> Walk {
    let mut w = Walk::default();
    if p.len() < COMMON_HEADER {
        w.malformed = true;
        return w;
    }
    let mut off = COMMON_HEADER;
    while let Some(head) = p.get(off..off + 4) {
        let kind = head[0]; // ok: head has 4 bytes
        let flags = head[1]; // ok: head has 4 bytes
        let len = usize::from(u16::from_be_bytes([head[2], head[3]])); // ok: 4 bytes
        if len < 4 {
            w.malformed = true;
            return w;
        }
        let Some(chunk) = p.get(off..off + len) else {
            if truncated {
                w.cut = true;
            } else {
                w.malformed = true;
            }
            return w;
        };
        let data_header = match kind {
            CHUNK_DATA => Some(DATA_HEADER),
            CHUNK_IDATA => Some(IDATA_HEADER),
            _ => None,
        };
        if let Some(hl) = data_header {
            let Some(data) = chunk.get(hl..) else {
                w.malformed = true;
                return w;
            };
            if flags & (FLAG_B | FLAG_E) == FLAG_B | FLAG_E {
                if !data.is_empty() {
                    w.messages += 1;
                    emit(data);
                }
            } else {
                w.fragments += 1;
            }
        }
        // Chunks are padded to a multiple of 4 bytes (the last one may omit its padding).
        off += len.div_ceil(4) * 4;
    }
    if off < p.len() {
        // 1 to 3 stray bytes after the last chunk.
        w.malformed = true;
    }
    w
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An SCTP packet from `sport` to `dport` with the given chunks.
    pub(crate) fn packet(sport: u16, dport: u16, chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // verification tag
        p.extend_from_slice(&0u32.to_be_bytes()); // checksum (not checked)
        for c in chunks {
            p.extend_from_slice(c);
            while p.len() % 4 != 0 {
                p.push(0);
            }
        }
        p
    }

    /// A DATA chunk (RFC 9260 section 3.3.1) with flags, TSN, stream and PPID.
    pub(crate) fn data_chunk(flags: u8, tsn: u32, stream: u16, ppid: u32, data: &[u8]) -> Vec<u8> {
        let mut c = vec![CHUNK_DATA, flags];
        c.extend_from_slice(&((DATA_HEADER + data.len()) as u16).to_be_bytes());
        c.extend_from_slice(&tsn.to_be_bytes());
        c.extend_from_slice(&stream.to_be_bytes());
        c.extend_from_slice(&0u16.to_be_bytes()); // stream sequence number
        c.extend_from_slice(&ppid.to_be_bytes());
        c.extend_from_slice(data);
        c
    }

    const INVITE: &[u8] = b"INVITE sip:+4930123@gw.example.net SIP/2.0\r\nVia: SIP/2.0/SCTP 192.0.2.1:5060;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
    const OK: &[u8] = b"SIP/2.0 200 OK\r\nl: 0\r\n\r\n";

    fn walk(p: &[u8], truncated: bool) -> (Walk, Vec<Vec<u8>>) {
        let mut got = Vec::new();
        let w = user_messages(p, truncated, &mut |m| got.push(m.to_vec()));
        (w, got)
    }

    #[test]
    fn two_data_chunks_and_a_sack_in_one_packet() {
        // SACK (type 3) before the data, as a bundling endpoint sends it.
        let sack = vec![3, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0x10, 0, 0, 0, 0, 0];
        let p = packet(
            5060,
            5060,
            &[
                sack,
                data_chunk(0x03, 1, 0, 0, INVITE),
                data_chunk(0x07, 2, 1, 46, OK), // unordered, any PPID
            ],
        );
        let (w, got) = walk(&p, false);
        assert_eq!(got, vec![INVITE.to_vec(), OK.to_vec()]);
        assert_eq!(w.messages, 2);
        assert!(!w.malformed && !w.cut);
        assert_eq!(ports(&p), Some((5060, 5060)));
    }

    #[test]
    fn fragments_are_counted_not_emitted() {
        let half = INVITE.len() / 2;
        let p = packet(
            5060,
            5060,
            &[
                data_chunk(FLAG_B, 7, 0, 0, &INVITE[..half]),
                data_chunk(FLAG_E, 8, 0, 0, &INVITE[half..]),
                data_chunk(0, 9, 0, 0, b"middle"),
            ],
        );
        let (w, got) = walk(&p, false);
        assert!(got.is_empty());
        assert_eq!(w.fragments, 3);
    }

    #[test]
    fn idata_chunk() {
        let mut c = vec![CHUNK_IDATA, 0x03];
        c.extend_from_slice(&((IDATA_HEADER + OK.len()) as u16).to_be_bytes());
        c.extend_from_slice(&[0; 16]);
        c.extend_from_slice(OK);
        let (_, got) = walk(&packet(1, 2, &[c]), false);
        assert_eq!(got, vec![OK.to_vec()]);
    }

    #[test]
    fn malformed_and_cut_packets() {
        let good = packet(5060, 5060, &[data_chunk(0x03, 1, 0, 0, INVITE)]);
        // Cut by the snap length: no message, flagged as cut.
        let (w, got) = walk(&good[..40], true);
        assert!(got.is_empty() && w.cut && !w.malformed);
        // The same bytes without a snap length: a lying chunk length.
        let (w, _) = walk(&good[..40], false);
        assert!(w.malformed);
        // Zero chunk length would loop forever if not refused.
        let (w, _) = walk(&packet(1, 2, &[vec![0, 3, 0, 0]]), false);
        assert!(w.malformed);
        // A DATA chunk shorter than its header.
        let (w, _) = walk(&packet(1, 2, &[vec![0, 3, 0, 8, 0, 0, 0, 0]]), false);
        assert!(w.malformed);
        assert!(walk(&good[..8], false).0.malformed);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), cut: bool) {
            let mut total = 0;
            let w = user_messages(&data, cut, &mut |m| total += m.len());
            proptest::prop_assert!(total <= data.len());
            proptest::prop_assert!(w.messages as usize <= data.len() / 16);
        }
    }
}
