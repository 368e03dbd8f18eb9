//! Decode: link layer -> tags/tunnels -> IP (with fragment reassembly) -> UDP/TCP/SCTP (with SIP
//! framing, WebSocket included).
//!
//! Contract: `Decoder::decode` takes one captured frame and calls `out` for every transport
//! payload in it: each UDP datagram (after IP reassembly), each complete SIP message framed
//! from a TCP stream or from the WebSocket frames of one (`Transport::Ws`, RFC 7118), and each
//! whole user message of an SCTP DATA or I-DATA chunk (`Transport::Sctp`, RFC 4168). Tunnels (GRE with ERSPAN I-III and PPP, VXLAN on UDP 4789, IP-in-IP,
//! GTP-U on UDP 2152) are opened and their inner packets decoded like outer ones, up to
//! `MAX_DEPTH` encapsulations. Nothing panics on any input; every stop is counted in
//! `errors()` under the layer that stopped it, and every table is bounded by `LimitsConfig`.
//! `Datagram::ip_len` is the (reassembled) IP length for UDP, and for a TCP message the IP length
//! of the segment that completed it. Inner packets of tunnels carry the inner addresses.
//!
//! Error keys: `link`, `link_type` (unsupported link type), `vlan`, `mpls`, `pppoe`, `ppp`, `gre`,
//! `erspan`, `gtp`, `vxlan` (a datagram to 4789 without a VXLAN header: still emitted as UDP), `ip` (neither v4 nor v6), `ipv4`, `ipv6`, `udp`, `tcp`, `sctp` (malformed headers or chunks);
//! `sctp_fragment` (a DATA chunk holding part of a user message: not reassembled);
//! `ws_framing` (a WebSocket frame that is not one, or a message cut by the next);
//! `depth` (too many encapsulations or tags), `truncated` (payload
//! cut by the snap length: UDP is still emitted, TCP is not used); `fragment` (overlapping,
//! inconsistent or oversized fragments), `fragment_timeout`; `tcp_gap` (lost bytes, stream
//! resynchronised), `tcp_oversize`, `tcp_framing` (bad Content-Length or data that is not SIP),
//! `tcp_total` (all-stream byte budget exhausted). Eviction keys: `fragments`, `tcp_streams`.
//! Well-formed traffic of other protocols is not an error: `skipped()` counts it by kind (`arp`,
//! `stp`, `snap`, `llc`, `lldp`, `lacp`, `ppp_control`, ... for frames without IP; `icmp`,
//! `igmp`, `icmpv6`, `ospf`, `esp`, `pim`, `vrrp`, ... for IP payloads other than
//! UDP/TCP/SCTP/tunnels; `other_ethertype`, `other_ip_proto` for the rest).

mod fast;
mod frag;
mod link;
mod peek;
mod sctp;
mod tcp;
mod ws;

pub use peek::{line_key, peek, Innermost, Peek};
pub use tcp::starts_like_sip;

use crate::config::LimitsConfig;
use crate::model::{Counters, Datagram, LinkType, RawPacket, Timestamp, Transport};
use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice, UdpHeaderSlice};
use frag::{FragKey, FragTable, Fragment};
use link::{Gtp, Layer};
use std::net::{IpAddr, SocketAddr};
use tcp::{Segment, TcpTable};

/// Most encapsulations (tunnels) opened in one frame.
pub(crate) const MAX_DEPTH: u8 = 6;
/// Most headers peeled at the link layer of one encapsulation level (tags, labels, PPPoE...).
const MAX_LINK_STEPS: usize = 12;
/// Most IPv6 extension headers walked.
const MAX_V6_EXT: usize = 8;

/// UDP port of VXLAN (RFC 7348).
pub(crate) const VXLAN_PORT: u16 = 4789;
/// UDP port of GTP-U (3GPP TS 29.281).
pub(crate) const GTPU_PORT: u16 = 2152;

const ERR_IP: &str = "ip";
const ERR_IPV4: &str = "ipv4";
const ERR_IPV6: &str = "ipv6";
const ERR_UDP: &str = "udp";
const ERR_TCP: &str = "tcp";

/// Kind of an IP payload simboxd does not analyse, by IP protocol number (skipped, not an
/// error).
fn ip_proto_kind(proto: u8) -> &'static str {
    match proto {
        1 => "icmp",
        2 => "igmp",
        58 => "icmpv6",
        89 => "ospf",
        50 => "esp",
        51 => "ah",
        103 => "pim",
        112 => "vrrp",
        88 => "eigrp",
        59 => "ipv6_no_next",
        _ => "other_ip_proto",
    }
}
const ERR_DEPTH: &str = "depth";
const ERR_TRUNCATED: &str = "truncated";
const ERR_VXLAN: &str = "vxlan";
const ERR_SCTP: &str = "sctp";
const ERR_SCTP_FRAGMENT: &str = "sctp_fragment";

/// Link, IP (with reassembly), tunnel and transport decoding of captured frames into
/// [`Datagram`]s, with bounded fragment and TCP tables and counted stops.
pub struct Decoder {
    errors: Counters,
    /// Well-formed frames of other protocols, by kind.
    skipped: Counters,
    evictions: Counters,
    frags: FragTable,
    tcp: TcpTable,
    /// Whether to keep `innermost` (the daemon's evidence rings file frames with it).
    keep_innermost: bool,
    innermost: Option<Innermost>,
}

/// Result of walking IPv6 extension headers.
enum V6<'a> {
    /// Upper-layer protocol and its bytes.
    Payload(u8, &'a [u8]),
    Fragment {
        id: u32,
        offset: usize,
        more: bool,
        next: u8,
        data: &'a [u8],
        /// Bytes of extension headers before the Fragment header.
        unfrag: usize,
    },
    NoNext,
    Bad,
}

fn walk_v6(mut next: u8, body: &[u8]) -> V6<'_> {
    let mut off = 0usize;
    for _ in 0..MAX_V6_EXT {
        let (Some(&nh), Some(&len)) = (body.get(off), body.get(off + 1)) else {
            return match next {
                0 | 43 | 44 | 51 | 60 | 135 | 139 | 140 => V6::Bad,
                59 => V6::NoNext,
                p => V6::Payload(p, body.get(off..).unwrap_or_default()),
            };
        };
        let hdr_len = match next {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6.
            0 | 43 | 60 | 135 | 139 | 140 => (usize::from(len) + 1) * 8,
            // Authentication header (RFC 4302): length in 4-byte units minus 2.
            51 => (usize::from(len) + 2) * 4,
            44 => {
                let Some(fh) = body.get(off..off + 8) else {
                    return V6::Bad;
                };
                let fo = u16::from_be_bytes([fh[2], fh[3]]); // ok: fh has 8 bytes
                let id = u32::from_be_bytes([fh[4], fh[5], fh[6], fh[7]]); // ok: 8 bytes
                let offset = usize::from(fo >> 3) * 8;
                let more = fo & 1 == 1;
                if offset == 0 && !more {
                    // Atomic fragment (RFC 6946): not fragmented at all.
                    next = nh;
                    off += 8;
                    continue;
                }
                return V6::Fragment {
                    id,
                    offset,
                    more,
                    next: nh,
                    data: body.get(off + 8..).unwrap_or_default(),
                    unfrag: off,
                };
            }
            59 => return V6::NoNext,
            p => return V6::Payload(p, body.get(off..).unwrap_or_default()),
        };
        if body.len() < off + hdr_len {
            return V6::Bad;
        }
        next = nh;
        off += hdr_len;
    }
    V6::Bad
}

impl Decoder {
    /// A decoder whose fragment and TCP tables have `limits`' caps and timeouts.
    pub fn new(limits: &LimitsConfig) -> Self {
        Decoder {
            errors: Counters::default(),
            skipped: Counters::default(),
            evictions: Counters::default(),
            frags: FragTable::new(
                limits.fragments,
                limits.fragment_bytes,
                limits.fragment_timeout_secs,
            ),
            tcp: TcpTable::new(
                limits.tcp_streams,
                limits.tcp_stream_bytes,
                limits.tcp_total_bytes,
                limits.tcp_timeout_secs,
            ),
            keep_innermost: false,
            innermost: None,
        }
    }

    /// From now on, keep what each frame's innermost IP header holds (see [`innermost`]).
    ///
    /// [`innermost`]: Self::innermost
    pub fn keep_innermost(&mut self, on: bool) {
        self.keep_innermost = on;
        self.innermost = None;
    }

    /// The innermost IP header of the frame decoded last (after tags and tunnels), when kept
    /// (see [`keep_innermost`](Self::keep_innermost)); `None` for a frame without IP.
    pub fn innermost(&self) -> Option<&Innermost> {
        self.innermost.as_ref()
    }

    fn note(&mut self, src: IpAddr, dst: IpAddr, proto: u8, l4: Option<&[u8]>) {
        if self.keep_innermost {
            self.innermost = Some(Innermost::of(src, dst, proto, l4));
        }
    }

    /// Decodes one packet and calls `out` for every transport payload in it: none, one, or
    /// several (tunnels, several SIP messages in one TCP segment). Inline: the fast path is a
    /// few loads, and where `out` is known it is called directly.
    #[inline]
    pub fn decode(&mut self, pkt: &RawPacket<'_>, out: &mut dyn FnMut(&Datagram<'_>)) {
        if self.keep_innermost {
            self.innermost = None;
        }
        if pkt.link == LinkType::ETHERNET {
            if let Some(u) = fast::ether_ipv4_udp(pkt.data) {
                let (src, dst) = (IpAddr::V4(u.src), IpAddr::V4(u.dst));
                self.note(src, dst, 17, Some(u.l4));
                return out(&Datagram {
                    ts: pkt.ts,
                    src: SocketAddr::new(src, u.sport),
                    dst: SocketAddr::new(dst, u.dport),
                    transport: Transport::Udp,
                    payload: u.body,
                    ip_len: u.ip_len,
                });
            }
        }
        self.layers(pkt.ts, link::link(pkt.link, pkt.data), 0, out);
    }

    /// Drops fragment reassemblies and TCP streams idle at `now`.
    pub fn expire(&mut self, now: Timestamp) {
        self.frags.expire(now, &mut self.errors);
        self.tcp.expire(now);
    }

    /// Decode stops by layer.
    pub fn errors(&self) -> &Counters {
        &self.errors
    }

    /// Well-formed packets of protocols simboxd does not analyse, by kind.
    pub(crate) fn skipped(&self) -> &Counters {
        &self.skipped
    }

    /// Evictions by table (`fragments`, `tcp_streams`).
    pub fn evictions(&self) -> &Counters {
        &self.evictions
    }

    /// Current entries per table, for metrics: reassemblies and their bytes, TCP streams and
    /// their buffered bytes.
    pub fn table_sizes(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("fragments", self.frags.len()),
            ("fragment_bytes", self.frags.bytes()),
            ("tcp_streams", self.tcp.len()),
            ("tcp_bytes", self.tcp.bytes()),
        ]
    }

    /// Peels link-layer headers, tags and tunnel headers until an IP packet.
    fn layers(
        &mut self,
        ts: Timestamp,
        mut layer: Layer<'_>,
        depth: u8,
        out: &mut dyn FnMut(&Datagram<'_>),
    ) {
        for _ in 0..MAX_LINK_STEPS {
            layer = match layer {
                Layer::Ether(d) => link::ethernet(d),
                Layer::EtherType(t, d) => link::ethertype(t, d),
                Layer::Ppp(d) => link::ppp(d),
                Layer::Ip(d) => return self.ip(ts, d, depth, out),
                Layer::Other(kind) => return self.skipped.add(kind, 1),
                Layer::Bad(key) => return self.errors.add(key, 1),
            };
        }
        self.errors.add(ERR_DEPTH, 1);
    }

    /// Opens one more encapsulation level, or counts the stop.
    fn deeper(&mut self, depth: u8) -> Option<u8> {
        if depth >= MAX_DEPTH {
            self.errors.add(ERR_DEPTH, 1);
            return None;
        }
        Some(depth + 1)
    }

    fn ip(&mut self, ts: Timestamp, data: &[u8], depth: u8, out: &mut dyn FnMut(&Datagram<'_>)) {
        match data.first().map(|b| b >> 4) {
            Some(4) => self.ipv4(ts, data, depth, out),
            Some(6) => self.ipv6(ts, data, depth, out),
            _ => self.errors.add(ERR_IP, 1),
        }
    }

    fn ipv4(&mut self, ts: Timestamp, data: &[u8], depth: u8, out: &mut dyn FnMut(&Datagram<'_>)) {
        let Ok(h) = Ipv4HeaderSlice::from_slice(data) else {
            return self.errors.add(ERR_IPV4, 1);
        };
        let hl = h.slice().len();
        // Zero: left unset by segmentation offload on the capturing host; use the captured size.
        let total = match usize::from(h.total_len()) {
            0 => data.len(),
            n => n,
        };
        if total < hl {
            return self.errors.add(ERR_IPV4, 1);
        }
        // Trim Ethernet padding; a packet cut by the snap length is decoded laxly.
        let (packet, truncated) = match data.get(..total) {
            Some(p) => (p, false),
            None => (data, true),
        };
        let payload = packet.get(hl..).unwrap_or_default();
        let src = IpAddr::V4(h.source_addr());
        let dst = IpAddr::V4(h.destination_addr());
        let proto = h.protocol().0;
        let offset = usize::from(h.fragments_offset().value()) * 8;
        self.note(src, dst, proto, (offset == 0).then_some(payload));
        if h.more_fragments() || offset != 0 {
            if truncated {
                return self.errors.add(frag::ERR_FRAGMENT, 1);
            }
            let key = FragKey {
                src,
                dst,
                id: u32::from(h.identification()),
                proto,
            };
            let piece = Fragment {
                offset,
                more: h.more_fragments(),
                data: payload,
                first: (offset == 0).then_some((proto, hl)),
            };
            if let Some(r) = self
                .frags
                .add(key, ts, &piece, &mut self.errors, &mut self.evictions)
            {
                let ip_len = u32::try_from(r.hdr_len + r.buf.len()).unwrap_or(u32::MAX);
                let l4 = L4 {
                    ts,
                    src,
                    dst,
                    ip_len,
                    truncated: false,
                };
                self.transport(&l4, r.proto, &r.buf, depth, out);
                self.frags.recycle(r.buf);
            }
            return;
        }
        let l4 = L4 {
            ts,
            src,
            dst,
            ip_len: u32::try_from(total).unwrap_or(u32::MAX),
            truncated,
        };
        self.transport(&l4, proto, payload, depth, out);
    }

    fn ipv6(&mut self, ts: Timestamp, data: &[u8], depth: u8, out: &mut dyn FnMut(&Datagram<'_>)) {
        let Ok(h) = Ipv6HeaderSlice::from_slice(data) else {
            return self.errors.add(ERR_IPV6, 1);
        };
        let all = data.get(40..).unwrap_or_default();
        let plen = usize::from(h.payload_length());
        // Payload length 0: jumbogram or unset by offload; use what was captured.
        let (body, truncated) = match plen {
            0 => (all, false),
            n => match all.get(..n) {
                Some(b) => (b, false),
                None => (all, true),
            },
        };
        let ip_len = u32::try_from(40 + plen.max(body.len())).unwrap_or(u32::MAX);
        let src = IpAddr::V6(h.source_addr());
        let dst = IpAddr::V6(h.destination_addr());
        let walked = walk_v6(h.next_header().0, body);
        match &walked {
            V6::Payload(proto, payload) => self.note(src, dst, *proto, Some(*payload)),
            V6::Fragment {
                offset, next, data, ..
            } => self.note(src, dst, *next, (*offset == 0).then_some(*data)),
            V6::NoNext | V6::Bad => self.note(src, dst, h.next_header().0, Some(&[])),
        }
        match walked {
            V6::Payload(proto, payload) => {
                let l4 = L4 {
                    ts,
                    src,
                    dst,
                    ip_len,
                    truncated,
                };
                self.transport(&l4, proto, payload, depth, out);
            }
            V6::Fragment {
                id,
                offset,
                more,
                next,
                data: piece_data,
                unfrag,
            } => {
                if truncated {
                    return self.errors.add(frag::ERR_FRAGMENT, 1);
                }
                let key = FragKey {
                    src,
                    dst,
                    id,
                    proto: 0,
                };
                let piece = Fragment {
                    offset,
                    more,
                    data: piece_data,
                    first: (offset == 0).then_some((next, 40 + unfrag)),
                };
                let Some(r) =
                    self.frags
                        .add(key, ts, &piece, &mut self.errors, &mut self.evictions)
                else {
                    return;
                };
                let ip_len = u32::try_from(r.hdr_len + r.buf.len()).unwrap_or(u32::MAX);
                // The fragmentable part may itself start with extension headers.
                match walk_v6(r.proto, &r.buf) {
                    V6::Payload(proto, payload) => {
                        let l4 = L4 {
                            ts,
                            src,
                            dst,
                            ip_len,
                            truncated: false,
                        };
                        self.transport(&l4, proto, payload, depth, out);
                    }
                    V6::NoNext => {}
                    V6::Fragment { .. } => self.errors.add(frag::ERR_FRAGMENT, 1),
                    V6::Bad => self.errors.add(ERR_IPV6, 1),
                }
                self.frags.recycle(r.buf);
            }
            V6::NoNext => {}
            V6::Bad => self.errors.add(ERR_IPV6, 1),
        }
    }

    fn transport(
        &mut self,
        l4: &L4,
        proto: u8,
        payload: &[u8],
        depth: u8,
        out: &mut dyn FnMut(&Datagram<'_>),
    ) {
        match proto {
            17 => self.udp(l4, payload, depth, out),
            6 => self.tcp(l4, payload, out),
            132 => self.sctp(l4, payload, out),
            4 | 41 => {
                if let Some(d) = self.deeper(depth) {
                    self.ip(l4.ts, payload, d, out);
                }
            }
            47 => {
                if let Some(d) = self.deeper(depth) {
                    self.layers(l4.ts, link::gre(payload), d, out);
                }
            }
            other => self.skipped.add(ip_proto_kind(other), 1),
        }
    }

    fn udp(&mut self, l4: &L4, payload: &[u8], depth: u8, out: &mut dyn FnMut(&Datagram<'_>)) {
        let Ok(h) = UdpHeaderSlice::from_slice(payload) else {
            return self.errors.add(ERR_UDP, 1);
        };
        let ulen = usize::from(h.length());
        let body = match ulen {
            // Zero: an IPv6 jumbogram or an unset length; take what the IP layer gave.
            0 => payload.get(8..),
            1..=7 => None,
            n => match payload.get(8..n) {
                Some(b) => Some(b),
                // Longer than the IP payload: fine only when the snap length cut the packet.
                None if l4.truncated => payload.get(8..),
                None => None,
            },
        };
        let Some(body) = body else {
            return self.errors.add(ERR_UDP, 1);
        };
        let truncated = l4.truncated && (ulen == 0 || ulen > payload.len());
        let (sport, dport) = (h.source_port(), h.destination_port());
        if !truncated {
            if dport == VXLAN_PORT {
                if let Some(inner) = link::vxlan(body) {
                    if let Some(d) = self.deeper(depth) {
                        self.layers(l4.ts, Layer::Ether(inner), d, out);
                    }
                    return;
                }
                // Not a VXLAN header after all: counted, and passed on as plain UDP.
                self.errors.add(ERR_VXLAN, 1);
            }
            if dport == GTPU_PORT {
                match link::gtpu(body) {
                    Gtp::Inner(ip) => {
                        if let Some(d) = self.deeper(depth) {
                            self.ip(l4.ts, ip, d, out);
                        }
                        return;
                    }
                    Gtp::Bad => return self.errors.add(link::ERR_GTP, 1),
                    Gtp::Signalling | Gtp::Plain => {}
                }
            }
        } else {
            self.errors.add(ERR_TRUNCATED, 1);
        }
        out(&Datagram {
            ts: l4.ts,
            src: SocketAddr::new(l4.src, sport),
            dst: SocketAddr::new(l4.dst, dport),
            transport: Transport::Udp,
            payload: body,
            ip_len: l4.ip_len,
        });
    }

    fn tcp(&mut self, l4: &L4, payload: &[u8], out: &mut dyn FnMut(&Datagram<'_>)) {
        let Ok(h) = TcpHeaderSlice::from_slice(payload) else {
            return self.errors.add(ERR_TCP, 1);
        };
        let body = payload.get(h.slice().len()..).unwrap_or_default();
        if l4.truncated && !body.is_empty() {
            // Missing bytes would corrupt the stream: let the gap logic resynchronise.
            return self.errors.add(ERR_TRUNCATED, 1);
        }
        let seg = Segment {
            ts: l4.ts,
            src: SocketAddr::new(l4.src, h.source_port()),
            dst: SocketAddr::new(l4.dst, h.destination_port()),
            seq: h.sequence_number(),
            syn: h.syn(),
            fin: h.fin(),
            rst: h.rst(),
            payload: body,
            ip_len: l4.ip_len,
        };
        self.tcp
            .segment(&seg, &mut self.errors, &mut self.evictions, out);
    }
}

impl Decoder {
    /// SIP over SCTP: every whole user message of the packet's DATA chunks.
    fn sctp(&mut self, l4: &L4, payload: &[u8], out: &mut dyn FnMut(&Datagram<'_>)) {
        let Some((sport, dport)) = sctp::ports(payload) else {
            return self.errors.add(ERR_SCTP, 1);
        };
        let (src, dst) = (
            SocketAddr::new(l4.src, sport),
            SocketAddr::new(l4.dst, dport),
        );
        let w = sctp::user_messages(payload, l4.truncated, &mut |m| {
            out(&Datagram {
                ts: l4.ts,
                src,
                dst,
                transport: Transport::Sctp,
                payload: m,
                ip_len: l4.ip_len,
            })
        });
        if w.malformed {
            self.errors.add(ERR_SCTP, 1);
        }
        if w.cut {
            self.errors.add(ERR_TRUNCATED, 1);
        }
        if w.fragments > 0 {
            self.errors.add(ERR_SCTP_FRAGMENT, u64::from(w.fragments));
        }
    }
}

/// What the transport layer needs from the IP layer.
struct L4 {
    ts: Timestamp,
    src: IpAddr,
    dst: IpAddr,
    ip_len: u32,
    truncated: bool,
}

#[cfg(test)]
mod tests;
