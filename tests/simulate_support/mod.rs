//! Reads back simulator output for the `simulate_*` tests: a small classic-pcap reader with
//! Ethernet/802.1Q, IPv4 (with fragment reassembly), IPv6, UDP and TCP (SIP framed by
//! Content-Length), and a minimal SIP header reader. Independent of the generator's code.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Clone, Debug)]
pub struct Pkt {
    pub ts: i64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub tcp: bool,
    pub payload: Vec<u8>,
}

#[derive(Default, Debug)]
pub struct Capture {
    /// UDP datagrams (reassembled) and SIP messages framed from TCP streams, in capture order.
    pub pkts: Vec<Pkt>,
    pub frames: u64,
    pub vlan_frames: u64,
    pub ipv6_frames: u64,
    pub fragments: u64,
    pub tcp_segments: u64,
    /// TCP segments holding more than one SIP message, and messages spread over several segments.
    pub tcp_coalesced: u64,
    pub tcp_split: u64,
    pub out_of_order_ts: u64,
    pub bad_ip_checksums: u64,
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn le32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn ip_checksum_ok(h: &[u8]) -> bool {
    let mut s: u32 = 0;
    for c in h.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// (source, destination, IP id) of a datagram being reassembled.
type FragKey = (IpAddr, IpAddr, u16);
/// (byte offset, data, more fragments).
type Fragment = (usize, Vec<u8>, bool);

struct TcpStream {
    next_seq: Option<u32>,
    buf: Vec<u8>,
    msgs_in_buf_started: bool,
}

/// Length of the first complete SIP message in `buf`, if any.
pub fn sip_frame_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let cl: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.eq_ignore_ascii_case("content-length") || k == "l").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= end + cl).then_some(end + cl)
}

pub fn read(data: &[u8]) -> Capture {
    let mut cap = Capture::default();
    assert_eq!(le32(data, 0), 0xa1b2_c3d4, "classic little-endian pcap");
    assert_eq!(le32(data, 20), 1, "Ethernet link type");
    let mut pos = 24;
    let mut last_ts = i64::MIN;
    let mut frags: HashMap<FragKey, Vec<Fragment>> = HashMap::new();
    let mut streams: HashMap<(SocketAddr, SocketAddr), TcpStream> = HashMap::new();
    while pos + 16 <= data.len() {
        let ts = i64::from(le32(data, pos)) * 1_000_000 + i64::from(le32(data, pos + 4));
        let caplen = le32(data, pos + 8) as usize;
        let frame = &data[pos + 16..pos + 16 + caplen];
        pos += 16 + caplen;
        cap.frames += 1;
        if ts < last_ts {
            cap.out_of_order_ts += 1;
        }
        last_ts = ts;
        let mut et = be16(frame, 12);
        let mut off = 14;
        if et == 0x8100 {
            cap.vlan_frames += 1;
            et = be16(frame, 16);
            off = 18;
        }
        let ip = &frame[off..];
        let (src, dst, proto, l4): (IpAddr, IpAddr, u8, Vec<u8>) = match et {
            0x0800 => {
                let ihl = usize::from(ip[0] & 15) * 4;
                if !ip_checksum_ok(&ip[..ihl]) {
                    cap.bad_ip_checksums += 1;
                }
                let total = usize::from(be16(ip, 2));
                let s = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
                let d = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
                let ff = be16(ip, 6);
                let body = ip[ihl..total].to_vec();
                if ff & 0x2000 != 0 || ff & 0x1fff != 0 {
                    cap.fragments += 1;
                    let key = (s, d, be16(ip, 4));
                    let more = ff & 0x2000 != 0;
                    let e = frags.entry(key).or_default();
                    e.push((usize::from(ff & 0x1fff) * 8, body, more));
                    if more {
                        continue;
                    }
                    let mut parts = frags.remove(&key).unwrap();
                    parts.sort_by_key(|p| p.0);
                    let mut whole = Vec::new();
                    for (o, b, _) in parts {
                        assert_eq!(o, whole.len(), "fragment offsets are contiguous");
                        whole.extend_from_slice(&b);
                    }
                    (s, d, ip[9], whole)
                } else {
                    (s, d, ip[9], body)
                }
            }
            0x86dd => {
                cap.ipv6_frames += 1;
                let plen = usize::from(be16(ip, 4));
                let s: [u8; 16] = ip[8..24].try_into().unwrap();
                let d: [u8; 16] = ip[24..40].try_into().unwrap();
                (
                    IpAddr::V6(Ipv6Addr::from(s)),
                    IpAddr::V6(Ipv6Addr::from(d)),
                    ip[6],
                    ip[40..40 + plen].to_vec(),
                )
            }
            other => panic!("unexpected ethertype {other:#x}"),
        };
        match proto {
            17 => {
                let sp = be16(&l4, 0);
                let dp = be16(&l4, 2);
                assert_eq!(usize::from(be16(&l4, 4)), l4.len(), "UDP length");
                cap.pkts.push(Pkt {
                    ts,
                    src: SocketAddr::new(src, sp),
                    dst: SocketAddr::new(dst, dp),
                    tcp: false,
                    payload: l4[8..].to_vec(),
                });
            }
            6 => {
                cap.tcp_segments += 1;
                let s = SocketAddr::new(src, be16(&l4, 0));
                let d = SocketAddr::new(dst, be16(&l4, 2));
                let seq = u32::from_be_bytes(l4[4..8].try_into().unwrap());
                let hl = usize::from(l4[12] >> 4) * 4;
                let flags = l4[13];
                let data = &l4[hl..];
                let st = streams.entry((s, d)).or_insert(TcpStream {
                    next_seq: None,
                    buf: Vec::new(),
                    msgs_in_buf_started: false,
                });
                if flags & 0x02 != 0 {
                    st.next_seq = Some(seq.wrapping_add(1));
                    continue;
                }
                if data.is_empty() {
                    continue;
                }
                if let Some(n) = st.next_seq {
                    assert_eq!(seq, n, "TCP sequence numbers are contiguous");
                }
                st.next_seq = Some(seq.wrapping_add(data.len() as u32));
                if !st.buf.is_empty() {
                    cap.tcp_split += 1;
                }
                st.buf.extend_from_slice(data);
                let mut n_msgs = 0;
                while let Some(n) = sip_frame_len(&st.buf) {
                    let msg: Vec<u8> = st.buf.drain(..n).collect();
                    n_msgs += 1;
                    cap.pkts.push(Pkt {
                        ts,
                        src: s,
                        dst: d,
                        tcp: true,
                        payload: msg,
                    });
                }
                st.msgs_in_buf_started = !st.buf.is_empty();
                if n_msgs > 1 {
                    cap.tcp_coalesced += 1;
                }
            }
            p => panic!("unexpected IP protocol {p}"),
        }
    }
    assert_eq!(pos, data.len(), "no trailing bytes");
    cap
}

/// A parsed SIP message (start line and a few headers).
#[derive(Clone, Debug)]
pub struct Sip {
    pub method: Option<String>,
    pub status: Option<u16>,
    pub call_id: String,
    pub cseq_method: String,
    pub from_user: String,
    pub to_user: String,
    pub ruri_user: Option<String>,
    pub user_agent: Option<String>,
    pub body: String,
}

fn uri_user(v: &str) -> String {
    let v = v.split("sip:").nth(1).unwrap_or("");
    v.split('@').next().unwrap_or("").to_string()
}

pub fn parse_sip(p: &[u8]) -> Option<Sip> {
    let text = std::str::from_utf8(p).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let first = lines.next()?;
    let (method, status, ruri_user) = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        (None, rest.get(..3)?.parse().ok(), None)
    } else {
        let mut it = first.split(' ');
        let m = it.next()?.to_string();
        let uri = it.next()?;
        if it.next()? != "SIP/2.0" {
            return None;
        }
        let ru = uri
            .strip_prefix("sip:")
            .and_then(|u| u.split_once('@'))
            .map(|(u, _)| u.to_string());
        (Some(m), None, ru)
    };
    let mut s = Sip {
        method,
        status,
        call_id: String::new(),
        cseq_method: String::new(),
        from_user: String::new(),
        to_user: String::new(),
        ruri_user,
        user_agent: None,
        body: body.to_string(),
    };
    let mut cl = None;
    for l in lines {
        let (k, v) = l.split_once(':')?;
        let v = v.trim();
        match k {
            "Call-ID" => s.call_id = v.to_string(),
            "CSeq" => s.cseq_method = v.split(' ').nth(1)?.to_string(),
            "From" => s.from_user = uri_user(v),
            "To" => s.to_user = uri_user(v),
            "User-Agent" | "Server" => s.user_agent = Some(v.to_string()),
            "Content-Length" => cl = v.parse::<usize>().ok(),
            _ => {}
        }
    }
    assert_eq!(cl, Some(body.len()), "Content-Length matches the body");
    Some(s)
}

/// Whether the payload starts like SIP (a method or status line).
pub fn looks_like_sip(p: &[u8]) -> bool {
    const STARTS: [&[u8]; 7] = [
        b"SIP/2.0 ",
        b"INVITE ",
        b"ACK ",
        b"BYE ",
        b"CANCEL ",
        b"REGISTER ",
        b"OPTIONS ",
    ];
    STARTS.iter().any(|s| p.starts_with(s))
}

/// RTP header fields when the payload carries version 2.
pub fn rtp_header(p: &[u8]) -> Option<(u8, u16, u32, u32)> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    Some((
        p[1] & 0x7f,
        be16(p, 2),
        u32::from_be_bytes(p[4..8].try_into().ok()?),
        u32::from_be_bytes(p[8..12].try_into().ok()?),
    ))
}

/// A mirror filtered to signalling: only packets whose UDP or TCP payload starts a SIP message
/// (a request line or `SIP/2.0`) and IP fragments past the first, of a classic little-endian
/// pcap. Media, and everything else, is gone.
pub fn sip_only(pcap: &[u8]) -> Vec<u8> {
    let mut out = pcap[..24].to_vec();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let rec = &pcap[at..at + 16 + incl];
        at += 16 + incl;
        let d = &rec[16..];
        let mut off = 12;
        let mut et = u16::from_be_bytes([d[off], d[off + 1]]);
        off += 2;
        while et == 0x8100 {
            et = u16::from_be_bytes([d[off + 2], d[off + 3]]);
            off += 4;
        }
        let (proto, l4) = match et {
            0x0800 => {
                let frag = u16::from_be_bytes([d[off + 6], d[off + 7]]) & 0x1fff;
                if frag != 0 {
                    out.extend_from_slice(rec);
                    continue;
                }
                (d[off + 9], off + usize::from(d[off] & 15) * 4)
            }
            0x86dd => (d[off + 6], off + 40),
            _ => continue,
        };
        let payload = match proto {
            17 => &d[l4 + 8..],
            6 => &d[l4 + usize::from(d[l4 + 12] >> 4) * 4..],
            _ => continue,
        };
        if looks_like_sip(payload) {
            out.extend_from_slice(rec);
        }
    }
    out
}
