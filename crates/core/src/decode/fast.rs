//! The frame nearly every packet on a tap is: Ethernet II, at most two VLAN tags (a SPAN port
//! or tap on a trunk keeps the 802.1Q tag, a provider's the QinQ pair), IPv4 without options or
//! fragmentation, UDP, whole. Read here in one pass over fixed offsets instead of layer by
//! layer (link, EtherType, tags, IP version, header slices, transport dispatch).
//!
//! Contract: `ether_ipv4_udp` returns `Some` only for a frame the layered decoder would turn into
//! exactly one plain UDP datagram with no error or skip counted: the same addresses, payload and
//! IP length. Anything else (deeper tag stacks, MPLS, tunnels, options, fragments, a length that
//! does not fit, a VXLAN or GTP-U port, a cut frame) is `None` and left to the layered decoder.

use super::link::is_vlan_tag;
use super::{GTPU_PORT, VXLAN_PORT};
use std::net::Ipv4Addr;

/// A plain IPv4/UDP datagram read from an Ethernet frame.
pub(crate) struct Udp4<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    /// The IP payload (UDP header included).
    pub l4: &'a [u8],
    /// The UDP payload.
    pub body: &'a [u8],
    /// The IP total length.
    pub ip_len: u32,
}

/// Most VLAN tags peeled here; deeper stacks go the long way.
const MAX_TAGS: usize = 2;

#[inline(always)]
pub(crate) fn ether_ipv4_udp(frame: &[u8]) -> Option<Udp4<'_>> {
    let (head, mut rest) = frame.split_first_chunk::<14>()?;
    let mut ethertype = u16::from_be_bytes([head[12], head[13]]);
    for _ in 0..MAX_TAGS {
        if !is_vlan_tag(ethertype) {
            break;
        }
        // Tag control (priority, VLAN id), then the EtherType it carries.
        let (tag, after) = rest.split_first_chunk::<4>()?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        rest = after;
    }
    if ethertype != 0x0800 {
        return None;
    }
    let ip = rest;
    let h: &[u8; 20] = ip.get(..20)?.try_into().ok()?;
    // Version 4, 20-byte header, UDP; neither More Fragments nor an offset (DF may be set).
    if h[0] != 0x45 || h[9] != 17 || h[6] & 0x3f != 0 || h[7] != 0 {
        return None;
    }
    let total = u16::from_be_bytes([h[2], h[3]]);
    // A total of 0 (offload) or beyond the frame (snap length) goes the long way; Ethernet
    // padding after it is dropped.
    let l4 = ip.get(..usize::from(total))?.get(20..)?;
    let u: &[u8; 8] = l4.get(..8)?.try_into().ok()?;
    let ulen = usize::from(u16::from_be_bytes([u[4], u[5]]));
    if ulen < 8 {
        return None;
    }
    let body = l4.get(8..ulen)?;
    let sport = u16::from_be_bytes([u[0], u[1]]);
    let dport = u16::from_be_bytes([u[2], u[3]]);
    if dport == VXLAN_PORT || dport == GTPU_PORT {
        return None;
    }
    Some(Udp4 {
        src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
        dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
        sport,
        dport,
        l4,
        body,
        ip_len: u32::from(total),
    })
}
