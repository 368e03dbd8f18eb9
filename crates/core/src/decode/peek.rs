//! The line a frame belongs to, without state: the decoder's own link-layer, tag and tunnel
//! peeling (`link`), then the engine's one rule for the line end
//! ([`NetworkConfig::line_end`]) on the innermost IP header, with the two ends in a fixed order
//! so both directions of a flow get the same key. The daemon shards packets on it, so a line's
//! SIP, RTP and tunnelled traffic reach one worker whatever the encapsulation (VLAN, QinQ,
//! MPLS, PPPoE, GRE/ERSPAN, VXLAN, GTP-U, IP-in-IP).
//!
//! Contract: no allocation, no panics, bounded work (at most `MAX_LAYERS` headers).

use super::link::{self, Gtp, Layer};
use super::{GTPU_PORT, VXLAN_PORT};
use crate::config::NetworkConfig;
use crate::model::LinkType;
use std::net::IpAddr;

const MAX_LAYERS: usize = 16;

/// The IP header's addresses, protocol and payload (`None` payload for a non-first fragment).
fn ip_header(d: &[u8]) -> Option<(IpAddr, IpAddr, u8, Option<&[u8]>)> {
    match d.first()? >> 4 {
        4 => {
            let ihl = usize::from(d.first()? & 0x0f) * 4;
            let s: [u8; 4] = d.get(12..16)?.try_into().ok()?;
            let t: [u8; 4] = d.get(16..20)?.try_into().ok()?;
            let proto = *d.get(9)?;
            let frag = u16::from_be_bytes([*d.get(6)?, *d.get(7)?]) & 0x1fff;
            let payload = (frag == 0).then(|| d.get(ihl..)).flatten();
            Some((IpAddr::from(s), IpAddr::from(t), proto, payload))
        }
        6 => {
            let s: [u8; 16] = d.get(8..24)?.try_into().ok()?;
            let t: [u8; 16] = d.get(24..40)?.try_into().ok()?;
            // Extension headers are not walked here: tunnels behind them are keyed by the outer
            // addresses (rare on taps).
            Some((IpAddr::from(s), IpAddr::from(t), *d.get(6)?, d.get(40..)))
        }
        _ => None,
    }
}

/// The line of a frame, or, when neither end is a line, the lower address (any stable key);
/// `None` for frames without IP.
pub fn line_key(link_type: LinkType, data: &[u8], net: &NetworkConfig) -> Option<IpAddr> {
    peek(link_type, data, net).map(|p| p.key)
}

/// What [`peek`] finds in a frame: the innermost IP header's ends and the line among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peek<'a> {
    /// The line (the home end; of two home ends, the lower), else the lower address.
    pub(crate) key: IpAddr,
    /// Whether `key` is a line (an end inside the home networks).
    pub(crate) is_line: bool,
    /// Source address of the innermost IP header.
    pub src: IpAddr,
    /// Destination address of the innermost IP header.
    pub dst: IpAddr,
    /// IP protocol of the innermost header (17 UDP, 6 TCP, ...).
    pub proto: u8,
    /// The transport header and payload; `None` for a non-first IP fragment.
    pub(crate) l4: Option<&'a [u8]>,
}

impl<'a> Peek<'a> {
    /// Source and destination ports of a UDP/TCP header that is whole enough to hold them.
    #[cfg(test)]
    pub(crate) fn ports(&self) -> Option<(u16, u16)> {
        if !matches!(self.proto, 6 | 17) {
            return None;
        }
        let h = self.l4?.get(..4)?;
        Some((
            u16::from_be_bytes([*h.first()?, *h.get(1)?]),
            u16::from_be_bytes([*h.get(2)?, *h.get(3)?]),
        ))
    }

    /// The transport payload of UDP (after its 8-byte header) or TCP (after its data offset).
    #[cfg(test)]
    pub(crate) fn payload(&self) -> Option<&'a [u8]> {
        let l4 = self.l4?;
        match self.proto {
            17 => l4.get(8..),
            6 => l4.get(usize::from(l4.get(12)? >> 4) * 4..),
            _ => None,
        }
    }
}

impl Peek<'_> {
    /// The facts of [`Innermost`], from this peek.
    pub fn innermost(&self) -> Innermost {
        Innermost::of(self.src, self.dst, self.proto, self.l4)
    }
}

/// What a frame's innermost IP header holds, as the decoder saw it while decoding (kept when
/// asked, see [`Decoder::keep_innermost`](super::Decoder::keep_innermost)) or as [`peek`] finds
/// it: enough to file the frame under its line and to tell signalling from media without a
/// second walk over the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Innermost {
    /// Source address of the innermost IP header.
    pub src: IpAddr,
    /// Destination address of the innermost IP header.
    pub dst: IpAddr,
    /// IP protocol (17 UDP, 6 TCP, 132 SCTP, ...).
    pub proto: u8,
    /// Ports of a UDP/TCP header whole enough to hold them.
    pub ports: Option<(u16, u16)>,
    /// A fragment other than the first: no transport header.
    pub later_fragment: bool,
    /// A UDP payload that looks like SIP, or a TCP payload that starts like SIP.
    pub sip: bool,
}

impl Innermost {
    /// From the IP ends, protocol and transport bytes (`None` for a non-first fragment).
    pub(crate) fn of(src: IpAddr, dst: IpAddr, proto: u8, l4: Option<&[u8]>) -> Innermost {
        let ports = l4
            .filter(|_| matches!(proto, 6 | 17))
            .and_then(|h| h.get(..4))
            .map(|h| {
                (
                    u16::from_be_bytes([h[0], h[1]]), // ok: 4 bytes
                    u16::from_be_bytes([h[2], h[3]]), // ok: 4 bytes
                )
            });
        let sip = match (proto, l4) {
            (17, Some(l4)) => crate::sip::looks_like_sip(l4.get(8..).unwrap_or(&[])),
            (6, Some(l4)) => l4
                .get(12)
                .and_then(|off| l4.get(usize::from(off >> 4) * 4..))
                .is_some_and(super::starts_like_sip),
            _ => false,
        };
        Innermost {
            src,
            dst,
            proto,
            ports,
            later_fragment: l4.is_none(),
            sip,
        }
    }

    /// The frame's line (the home end; of two, the lower) and `true`, else the lower address and
    /// `false`: the same key [`peek`] gives.
    pub fn line(&self, net: &NetworkConfig) -> (IpAddr, bool) {
        line_of(self.src, self.dst, net)
    }
}

/// The line of two IP ends (either order), else the lower address.
fn line_of(a: IpAddr, b: IpAddr, net: &NetworkConfig) -> (IpAddr, bool) {
    let (lo, hi) = (a.min(b), a.max(b));
    match net.line_end(lo, hi) {
        Some(e) => (e.line, true),
        None => (lo, false),
    }
}

/// The innermost IP header of a frame (after the decoder's tag and tunnel peeling) and its line,
/// without state; `None` for frames without IP. The daemon's evidence ring keys and classifies
/// packets with it, so its idea of a line's packets is the engine's.
pub fn peek<'a>(link_type: LinkType, data: &'a [u8], net: &NetworkConfig) -> Option<Peek<'a>> {
    let mut layer = link::link(link_type, data);
    for _ in 0..MAX_LAYERS {
        layer = match layer {
            Layer::Ether(d) => link::ethernet(d),
            Layer::EtherType(t, d) => link::ethertype(t, d),
            Layer::Ppp(d) => link::ppp(d),
            Layer::Ip(d) => {
                let (a, b, proto, payload) = ip_header(d)?;
                let (key, is_line) = line_of(a, b, net);
                let found = Peek {
                    key,
                    is_line,
                    src: a,
                    dst: b,
                    proto,
                    l4: payload,
                };
                let Some(p) = payload else {
                    return Some(found);
                };
                match proto {
                    4 | 41 => Layer::Ip(p),
                    47 => link::gre(p),
                    17 => {
                        // A cut UDP header cannot be a tunnel: the outer addresses decide.
                        let Some(&[d0, d1]) = p.get(2..4) else {
                            return Some(found);
                        };
                        let dport = u16::from_be_bytes([d0, d1]);
                        let body = p.get(8..).unwrap_or(&[]);
                        match (dport, link::vxlan(body), link::gtpu(body)) {
                            (VXLAN_PORT, Some(inner), _) => Layer::Ether(inner),
                            (GTPU_PORT, _, Gtp::Inner(ip)) => Layer::Ip(ip),
                            _ => return Some(found),
                        }
                    }
                    _ => return Some(found),
                }
            }
            Layer::Other(_) | Layer::Bad(_) => return None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn net() -> NetworkConfig {
        NetworkConfig {
            home: vec!["100.64.0.0/10".parse().unwrap()],
            ..Default::default()
        }
    }

    fn udp(src: [u8; 4], dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .udp(5060, dport)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn ether(ethertype: u16, tags: &[[u8; 4]], body: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        for t in tags {
            f.extend_from_slice(t);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    const LINE: [u8; 4] = [100, 64, 0, 7];
    const PEER: [u8; 4] = [203, 0, 113, 5];

    #[test]
    fn both_directions_and_every_encapsulation_give_the_line() {
        let line = Some(IpAddr::from(LINE));
        let n = net();
        let out = udp(LINE, PEER, 5060, b"x");
        let back = udp(PEER, LINE, 5060, b"x");
        assert_eq!(line_key(LinkType::RAW, &out, &n), line);
        assert_eq!(line_key(LinkType::RAW, &back, &n), line);
        // QinQ-tagged Ethernet.
        let qinq = ether(0x0800, &[[0x88, 0xa8, 0, 10], [0x81, 0, 0, 20]], &back);
        assert_eq!(line_key(LinkType::ETHERNET, &qinq, &n), line);
        // MPLS (two labels, bottom of stack on the second).
        let mut mpls = vec![0, 0x10, 0x00, 0x40, 0, 0x20, 0x01, 0x40];
        mpls.extend_from_slice(&back);
        let f = ether(0x8847, &[], &mpls);
        assert_eq!(line_key(LinkType::ETHERNET, &f, &n), line);
        // PPPoE session with PPP protocol IPv4.
        let mut pppoe = vec![0x11, 0x00, 0x00, 0x01];
        pppoe.extend_from_slice(&((back.len() + 2) as u16).to_be_bytes());
        pppoe.extend_from_slice(&[0x00, 0x21]);
        pppoe.extend_from_slice(&back);
        let f = ether(0x8864, &[], &pppoe);
        assert_eq!(line_key(LinkType::ETHERNET, &f, &n), line);
        // VXLAN between two collector addresses that are themselves in the home range: the
        // inner packet decides, not the outer addresses.
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 0x2a, 0];
        vx.extend_from_slice(&ether(0x0800, &[], &back));
        let outer = udp([100, 64, 9, 1], [100, 64, 9, 2], VXLAN_PORT, &vx);
        assert_eq!(line_key(LinkType::RAW, &outer, &n), line);
        // GRE (no options, protocol IPv4) between two home-range collectors: the inner packet.
        let mut gre = vec![0, 0, 0x08, 0x00];
        gre.extend_from_slice(&back);
        let mut outer = Vec::new();
        PacketBuilder::ipv4([100, 64, 9, 1], [100, 64, 9, 2], 64)
            .write(&mut outer, etherparse::IpNumber::GRE, &gre)
            .unwrap();
        assert_eq!(line_key(LinkType::RAW, &outer, &n), line);
    }

    #[test]
    fn garbage_and_non_ip_frames_have_no_key() {
        let n = net();
        assert_eq!(line_key(LinkType::ETHERNET, &[], &n), None);
        assert_eq!(line_key(LinkType::ETHERNET, &[0xff; 13], &n), None);
        let arp = ether(0x0806, &[], &[0; 28]);
        assert_eq!(line_key(LinkType::ETHERNET, &arp, &n), None);
        for len in 0..40 {
            let f = udp(LINE, PEER, 5060, b"abc");
            let _ = line_key(LinkType::RAW, f.get(..len).unwrap_or(&f), &n);
        }
    }

    #[test]
    fn peek_gives_ports_payload_and_whether_the_key_is_a_line() {
        let n = net();
        let back = udp(PEER, LINE, 7078, b"payload");
        let p = peek(LinkType::RAW, &back, &n).unwrap();
        assert_eq!(p.key, IpAddr::from(LINE));
        assert!(p.is_line);
        assert_eq!((p.src, p.dst), (IpAddr::from(PEER), IpAddr::from(LINE)));
        assert_eq!(p.proto, 17);
        assert_eq!(p.ports(), Some((5060, 7078)));
        assert_eq!(p.payload(), Some(&b"payload"[..]));
        let transit = udp(PEER, [8, 8, 8, 8], 53, b"q");
        let t = peek(LinkType::RAW, &transit, &n).unwrap();
        assert!(!t.is_line);
        assert_eq!(t.key, IpAddr::from([8, 8, 8, 8]));
        // A cut header has no ports, and no panic.
        for len in 0..back.len() {
            let cut = back.get(..len).unwrap();
            let _ = peek(LinkType::RAW, cut, &n).map(|p| (p.ports(), p.payload()));
        }
    }
}
