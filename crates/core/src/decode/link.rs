//! Link layers, tags and tunnel headers: pure functions from bytes to the next layer.
//!
//! Contract: each function peels exactly one header and says what follows (`Layer`), or why it
//! stopped (`Layer::Other(kind)` for well-formed frames of a protocol simboxd does not analyse,
//! `kind` being the skipped counter; `Layer::Bad(key)` for malformed ones, `key` being the error
//! counter). No function panics or allocates.

use crate::model::LinkType;

/// What follows a peeled header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Layer<'a> {
    /// An Ethernet II frame (destination MAC first).
    Ether(&'a [u8]),
    /// A payload identified by an EtherType.
    EtherType(u16, &'a [u8]),
    /// A PPP frame (optional HDLC address/control, then the protocol field).
    Ppp(&'a [u8]),
    /// An IPv4 or IPv6 packet.
    Ip(&'a [u8]),
    /// A well-formed frame without IP (ARP, STP, LLDP, PPP control, ...), by kind.
    Other(&'static str),
    Bad(&'static str),
}

/// Kind of a well-formed frame that carries no IP, by EtherType (skipped, not an error).
pub(crate) fn ethertype_kind(t: u16) -> &'static str {
    match t {
        0x0806 => "arp",
        0x8035 => "rarp",
        0x88CC => "lldp",
        0x8809 => "lacp",
        0x888E => "eapol",
        0x88F7 => "ptp",
        0x8863 => "pppoe_discovery",
        0x88E1 | 0x8912 => "homeplug",
        0x9000 => "loopback_test",
        0x22F0 | 0x22EA => "avtp",
        _ => "other_ethertype",
    }
}

/// Kind of an IEEE 802.3 frame (length field, then LLC): STP/RSTP (DSAP/SSAP 0x42), SNAP
/// (0xAA: CDP, VTP, DTP...), or other LLC.
fn llc_kind(llc: &[u8]) -> &'static str {
    match llc.get(..2) {
        Some([0x42, 0x42]) => "stp",
        Some([0xAA, 0xAA]) => "snap",
        _ => "llc",
    }
}

pub(crate) const ERR_LINK: &str = "link";
pub(crate) const ERR_LINK_TYPE: &str = "link_type";
pub(crate) const ERR_VLAN: &str = "vlan";
pub(crate) const ERR_MPLS: &str = "mpls";
pub(crate) const ERR_PPPOE: &str = "pppoe";
pub(crate) const ERR_PPP: &str = "ppp";
pub(crate) const ERR_GRE: &str = "gre";
pub(crate) const ERR_ERSPAN: &str = "erspan";
pub(crate) const ERR_GTP: &str = "gtp";

/// Most MPLS labels in one stack.
const MAX_LABELS: usize = 8;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn tail(b: &[u8], at: usize) -> &[u8] {
    b.get(at..).unwrap_or_default()
}

/// The first layer of a captured frame.
pub(crate) fn link(link: LinkType, data: &[u8]) -> Layer<'_> {
    match link.0 {
        1 => Layer::Ether(data),
        // DLT_RAW is 12 or 14 depending on the platform; LINKTYPE_RAW is 101.
        101 | 12 | 14 | 228 | 229 => Layer::Ip(data),
        0 | 108 => loopback(link, data),
        113 => sll(data),
        276 => sll2(data),
        _ => Layer::Bad(ERR_LINK_TYPE),
    }
}

/// BSD loopback: a 4-byte address family, host order for NULL, network order for LOOP.
fn loopback(link: LinkType, data: &[u8]) -> Layer<'_> {
    let Some(fam) = data.get(..4) else {
        return Layer::Bad(ERR_LINK);
    };
    let fam = [fam[0], fam[1], fam[2], fam[3]]; // ok: get(..4) gave 4 bytes
    let family = if link == LinkType::LOOP {
        u32::from_be_bytes(fam)
    } else {
        // Host order of the capturing machine, which may not be ours: take the small reading.
        u32::from_le_bytes(fam).min(u32::from_be_bytes(fam))
    };
    match family {
        // AF_INET; AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, Darwin.
        2 | 10 | 24 | 28 | 30 => Layer::Ip(tail(data, 4)),
        _ => Layer::Other("loopback_other"),
    }
}

/// Linux cooked capture v1: 16 bytes, protocol last.
fn sll(data: &[u8]) -> Layer<'_> {
    match be16(data, 14) {
        Some(p) if p >= 0x0600 => Layer::EtherType(p, tail(data, 16)),
        Some(_) => Layer::Other(llc_kind(tail(data, 16))),
        None => Layer::Bad(ERR_LINK),
    }
}

/// Linux cooked capture v2: 20 bytes, protocol first.
fn sll2(data: &[u8]) -> Layer<'_> {
    if data.len() < 20 {
        return Layer::Bad(ERR_LINK);
    }
    match be16(data, 0) {
        Some(p) if p >= 0x0600 => Layer::EtherType(p, tail(data, 20)),
        _ => Layer::Other(llc_kind(tail(data, 20))),
    }
}

/// Ethernet II header.
pub(crate) fn ethernet(data: &[u8]) -> Layer<'_> {
    match be16(data, 12) {
        Some(t) if t >= 0x0600 => Layer::EtherType(t, tail(data, 14)),
        // An 802.3 length field (LLC/SNAP: STP, CDP...).
        Some(_) => Layer::Other(llc_kind(tail(data, 14))),
        None => Layer::Bad(ERR_LINK),
    }
}

/// Whether an EtherType is a VLAN tag: 802.1Q, 802.1ad, or one of the old QinQ types.
pub(crate) fn is_vlan_tag(t: u16) -> bool {
    matches!(t, 0x8100 | 0x88A8 | 0x9100 | 0x9200)
}

/// Dispatches on an EtherType, peeling one tag when it is one.
pub(crate) fn ethertype(t: u16, data: &[u8]) -> Layer<'_> {
    match t {
        0x0800 | 0x86DD => Layer::Ip(data),
        t if is_vlan_tag(t) => match be16(data, 2) {
            Some(inner) if data.len() >= 4 => Layer::EtherType(inner, tail(data, 4)),
            _ => Layer::Bad(ERR_VLAN),
        },
        0x8847 | 0x8848 => mpls(data),
        0x8864 => pppoe(data),
        0x6558 => Layer::Ether(data),
        0x880B => Layer::Ppp(data),
        other => Layer::Other(ethertype_kind(other)),
    }
}

/// An MPLS label stack; what follows the bottom label is guessed from its first nibble.
fn mpls(data: &[u8]) -> Layer<'_> {
    let mut off = 0;
    for _ in 0..MAX_LABELS {
        let Some(label) = data.get(off..off + 4) else {
            return Layer::Bad(ERR_MPLS);
        };
        off += 4;
        let bottom = label.get(2).is_some_and(|b| b & 1 == 1);
        if bottom {
            let rest = tail(data, off);
            return match rest.first().map(|b| b >> 4) {
                Some(4) | Some(6) => Layer::Ip(rest),
                // Pseudowire control word (RFC 4385), then an Ethernet frame.
                Some(0) if rest.len() >= 4 => Layer::Ether(tail(rest, 4)),
                _ => Layer::Bad(ERR_MPLS),
            };
        }
    }
    Layer::Bad(ERR_MPLS)
}

/// PPPoE session header (RFC 2516).
fn pppoe(data: &[u8]) -> Layer<'_> {
    if data.len() < 6 || data.first() != Some(&0x11) || data.get(1) != Some(&0) {
        return Layer::Bad(ERR_PPPOE);
    }
    let len = usize::from(be16(data, 4).unwrap_or(0));
    let body = tail(data, 6);
    Layer::Ppp(body.get(..len).unwrap_or(body))
}

/// PPP: optional address/control `FF 03`, then a 1- or 2-byte protocol field.
pub(crate) fn ppp(data: &[u8]) -> Layer<'_> {
    let data = data.strip_prefix(&[0xFF, 0x03]).unwrap_or(data);
    let (proto, rest) = match data.first() {
        // An odd first byte is a compressed one-byte protocol field (RFC 1661 PFC).
        Some(&b) if b & 1 == 1 => (u16::from(b), tail(data, 1)),
        Some(_) => match be16(data, 0) {
            Some(p) => (p, tail(data, 2)),
            None => return Layer::Bad(ERR_PPP),
        },
        None => return Layer::Bad(ERR_PPP),
    };
    match proto {
        0x0021 | 0x0057 => Layer::Ip(rest),
        _ => Layer::Other("ppp_control"),
    }
}

/// GRE (RFC 2784/2890, PPTP enhanced GRE version 1), with ERSPAN types I-III.
pub(crate) fn gre(data: &[u8]) -> Layer<'_> {
    let (Some(flags), Some(proto)) = (be16(data, 0), be16(data, 2)) else {
        return Layer::Bad(ERR_GRE);
    };
    let (c, r, k, s) = (
        flags & 0x8000 != 0,
        flags & 0x4000 != 0,
        flags & 0x2000 != 0,
        flags & 0x1000 != 0,
    );
    match flags & 0x0007 {
        0 => {
            if r {
                // RFC 1701 source routing: obsolete, not decoded.
                return Layer::Bad(ERR_GRE);
            }
            let off = 4 + 4 * (usize::from(c) + usize::from(k) + usize::from(s));
            let Some(payload) = data.get(off..) else {
                return Layer::Bad(ERR_GRE);
            };
            match proto {
                // ERSPAN type I has no header and no sequence number; type II has both.
                0x88BE if !s => Layer::Ether(payload),
                0x88BE => erspan2(payload),
                0x22EB => erspan3(payload),
                _ => Layer::EtherType(proto, payload),
            }
        }
        1 => {
            // PPTP: key field holds payload length and call id; optional sequence and ack.
            let ack = flags & 0x0080 != 0;
            if !k || proto != 0x880B {
                return Layer::Bad(ERR_GRE);
            }
            let off = 8 + 4 * (usize::from(s) + usize::from(ack));
            let len = usize::from(be16(data, 4).unwrap_or(0));
            match data.get(off..) {
                Some(p) => Layer::Ppp(p.get(..len).unwrap_or(p)),
                None => Layer::Bad(ERR_GRE),
            }
        }
        _ => Layer::Bad(ERR_GRE),
    }
}

/// ERSPAN type II: 8-byte header (version 1), then the mirrored Ethernet frame.
fn erspan2(data: &[u8]) -> Layer<'_> {
    match data.first() {
        Some(b) if b >> 4 == 1 && data.len() >= 8 => Layer::Ether(tail(data, 8)),
        _ => Layer::Bad(ERR_ERSPAN),
    }
}

/// ERSPAN type III: 12-byte header (version 2), an optional 8-byte platform subheader (O bit),
/// then an Ethernet frame (frame type 0) or an IP packet (frame type 2).
fn erspan3(data: &[u8]) -> Layer<'_> {
    let (Some(b0), Some(b10), Some(b11)) = (data.first(), data.get(10), data.get(11)) else {
        return Layer::Bad(ERR_ERSPAN);
    };
    if b0 >> 4 != 2 {
        return Layer::Bad(ERR_ERSPAN);
    }
    let off = if b11 & 1 == 1 { 20 } else { 12 };
    let Some(inner) = data.get(off..) else {
        return Layer::Bad(ERR_ERSPAN);
    };
    match (b10 >> 2) & 0x1F {
        0 => Layer::Ether(inner),
        2 => Layer::Ip(inner),
        _ => Layer::Other("erspan_other"),
    }
}

/// VXLAN (RFC 7348): the inner Ethernet frame when the header is one: the VNI flag set, the
/// other flag bits clear (the group-policy bit 0x80 allowed) and the last reserved byte zero.
pub(crate) fn vxlan(data: &[u8]) -> Option<&[u8]> {
    match (data.first(), data.get(7)) {
        (Some(f), Some(0)) if f & 0x08 != 0 && f & 0x77 == 0 => Some(tail(data, 8)),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gtp<'a> {
    /// Not a GTPv1-U header: treat the datagram as plain UDP.
    Plain,
    /// A GTP-U message other than a G-PDU (echo, error indication, end marker).
    Signalling,
    /// A G-PDU: the user IP packet.
    Inner(&'a [u8]),
    Bad,
}

/// Most GTP-U extension headers followed.
const MAX_GTP_EXT: usize = 8;

/// GTPv1-U (3GPP TS 29.281) with optional sequence/N-PDU/extension headers.
pub(crate) fn gtpu(data: &[u8]) -> Gtp<'_> {
    let (Some(&b0), Some(&msg), Some(len)) = (data.first(), data.get(1), be16(data, 2)) else {
        return Gtp::Plain;
    };
    if b0 >> 5 != 1 || b0 & 0x10 == 0 || data.len() < 8 {
        return Gtp::Plain;
    }
    if msg != 0xFF {
        return Gtp::Signalling;
    }
    let end = 8 + usize::from(len);
    let mut off = 8;
    if b0 & 0x07 != 0 {
        // Sequence number (2), N-PDU number (1), next extension type (1).
        let Some(&first_ext) = data.get(11) else {
            return Gtp::Bad;
        };
        off = 12;
        let mut next = first_ext;
        let mut n = 0;
        while next != 0 {
            n += 1;
            let units = usize::from(*data.get(off).unwrap_or(&0));
            if units == 0 || n > MAX_GTP_EXT {
                return Gtp::Bad;
            }
            let ext_end = off + units * 4;
            let Some(&nt) = data.get(ext_end - 1) else {
                return Gtp::Bad;
            };
            next = nt;
            off = ext_end;
        }
    }
    let end = end.min(data.len());
    match data.get(off..end) {
        Some(inner) if !inner.is_empty() => Gtp::Inner(inner),
        _ => Gtp::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_and_tags() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x8E, 0x08, 0x00, 0x45]);
        let Layer::EtherType(t, rest) = ethernet(&f) else {
            panic!()
        };
        assert_eq!(t, 0x8100);
        assert_eq!(ethertype(t, rest), Layer::EtherType(0x0800, &[0x45][..]));
        assert_eq!(ethertype(0x8100, &[0, 1]), Layer::Bad(ERR_VLAN));
        assert_eq!(ethernet(&[0; 13]), Layer::Bad(ERR_LINK));
        assert_eq!(ethertype(0x0806, &[0; 28]), Layer::Other("arp"));
        // 802.3 length field
        let mut llc = vec![0u8; 12];
        llc.extend_from_slice(&[0x00, 0x26]);
        assert_eq!(ethernet(&llc), Layer::Other("llc"));
        llc.extend_from_slice(&[0x42, 0x42, 0x03]);
        assert_eq!(ethernet(&llc), Layer::Other("stp"));
        llc.truncate(14);
        llc.extend_from_slice(&[0xAA, 0xAA, 0x03]);
        assert_eq!(ethernet(&llc), Layer::Other("snap"));
    }

    #[test]
    fn mpls_stack() {
        // two labels, bottom of stack on the second, then IPv4
        let d = [0, 0x01, 0x00, 0x40, 0, 0x02, 0x01, 0x40, 0x45, 0];
        assert_eq!(mpls(&d), Layer::Ip(&[0x45, 0][..]));
        // control word then Ethernet
        let d = [0, 0x01, 0x01, 0x40, 0, 0, 0, 0, 0xAA];
        assert_eq!(mpls(&d), Layer::Ether(&[0xAA][..]));
        // never reaches bottom of stack
        assert_eq!(mpls(&[0, 1, 0, 0x40, 0, 2]), Layer::Bad(ERR_MPLS));
        assert_eq!(mpls(&[0u8; 64]), Layer::Bad(ERR_MPLS));
    }

    #[test]
    fn pppoe_and_ppp() {
        let d = [0x11, 0x00, 0x12, 0x34, 0x00, 0x03, 0x00, 0x21, 0x45, 0xEE];
        let Layer::Ppp(p) = pppoe(&d) else { panic!() };
        assert_eq!(ppp(p), Layer::Ip(&[0x45][..]));
        assert_eq!(pppoe(&[0x11, 0x09, 0, 0, 0, 0]), Layer::Bad(ERR_PPPOE));
        assert_eq!(ppp(&[0xFF, 0x03, 0x00, 0x57, 0x60]), Layer::Ip(&[0x60][..]));
        assert_eq!(ppp(&[0x21, 0x45]), Layer::Ip(&[0x45][..]));
        assert_eq!(ppp(&[0xC0, 0x21, 1]), Layer::Other("ppp_control"));
        assert_eq!(ppp(&[]), Layer::Bad(ERR_PPP));
    }

    #[test]
    fn loopback_and_cooked() {
        assert_eq!(
            link(LinkType::NULL, &[2, 0, 0, 0, 0x45]),
            Layer::Ip(&[0x45][..])
        );
        assert_eq!(
            link(LinkType::NULL, &[0, 0, 0, 30, 0x60]),
            Layer::Ip(&[0x60][..])
        );
        assert_eq!(
            link(LinkType::LOOP, &[0, 0, 0, 2, 0x45]),
            Layer::Ip(&[0x45][..])
        );
        assert_eq!(
            link(LinkType::LOOP, &[0, 0, 0, 7, 0x45]),
            Layer::Other("loopback_other")
        );
        assert_eq!(link(LinkType::NULL, &[2, 0]), Layer::Bad(ERR_LINK));
        let mut s = vec![0u8; 14];
        s.extend_from_slice(&[0x86, 0xDD, 0x60]);
        assert_eq!(
            link(LinkType::LINUX_SLL, &s),
            Layer::EtherType(0x86DD, &[0x60][..])
        );
        let mut s2 = vec![0x08, 0x00];
        s2.extend_from_slice(&[0u8; 18]);
        s2.push(0x45);
        assert_eq!(
            link(LinkType::LINUX_SLL2, &s2),
            Layer::EtherType(0x0800, &[0x45][..])
        );
        assert_eq!(link(LinkType(12), &[0x45]), Layer::Ip(&[0x45][..]));
        assert_eq!(link(LinkType(147), &[0x45]), Layer::Bad(ERR_LINK_TYPE));
    }

    #[test]
    fn gre_variants() {
        // plain GRE carrying IPv4
        assert_eq!(
            gre(&[0, 0, 0x08, 0, 0x45]),
            Layer::EtherType(0x0800, &[0x45][..])
        );
        // key and sequence present, transparent Ethernet bridging
        let d = [0x30, 0, 0x65, 0x58, 0, 0, 0, 1, 0, 0, 0, 2, 0xAA];
        assert_eq!(gre(&d), Layer::EtherType(0x6558, &[0xAA][..]));
        // checksum present
        assert_eq!(
            gre(&[0x80, 0, 0x86, 0xDD, 0, 0, 0, 0, 0x60]),
            Layer::EtherType(0x86DD, &[0x60][..])
        );
        // routing present: refused
        assert_eq!(gre(&[0x40, 0, 0x08, 0, 0, 0, 0, 0]), Layer::Bad(ERR_GRE));
        // PPTP: key (len 2 + call id), sequence, then PPP
        let d = [
            0x30, 0x01, 0x88, 0x0B, 0, 2, 0, 7, 0, 0, 0, 1, 0x21, 0x45, 0xEE,
        ];
        let Layer::Ppp(p) = gre(&d) else { panic!() };
        assert_eq!(ppp(p), Layer::Ip(&[0x45][..]));
        assert_eq!(gre(&[0, 0x02, 0x08, 0]), Layer::Bad(ERR_GRE));
        assert_eq!(gre(&[0, 0]), Layer::Bad(ERR_GRE));
    }

    #[test]
    fn erspan_types() {
        // type I: no sequence, no header
        assert_eq!(gre(&[0, 0, 0x88, 0xBE, 0xAA]), Layer::Ether(&[0xAA][..]));
        // type II: sequence, 8-byte header version 1
        let mut d = vec![
            0x10, 0, 0x88, 0xBE, 0, 0, 0, 9, 0x10, 0x01, 0, 0x05, 0, 0, 0, 0,
        ];
        d.push(0xAA);
        assert_eq!(gre(&d), Layer::Ether(&[0xAA][..]));
        // type III with platform subheader (O bit), Ethernet frame type
        let mut h = vec![0x10, 0, 0x22, 0xEB, 0, 0, 0, 1];
        h.extend_from_slice(&[0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x01]);
        h.extend_from_slice(&[0; 8]);
        h.push(0xAA);
        assert_eq!(gre(&h), Layer::Ether(&[0xAA][..]));
        // type III without subheader, IP frame type (FT = 2)
        let mut h = vec![0x10, 0, 0x22, 0xEB, 0, 0, 0, 1];
        h.extend_from_slice(&[0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x08, 0x00]);
        h.push(0x45);
        assert_eq!(gre(&h), Layer::Ip(&[0x45][..]));
        assert_eq!(
            erspan2(&[0x20, 0, 0, 0, 0, 0, 0, 0]),
            Layer::Bad(ERR_ERSPAN)
        );
        assert_eq!(erspan3(&[0x20; 11]), Layer::Bad(ERR_ERSPAN));
    }

    #[test]
    fn vxlan_header() {
        assert_eq!(vxlan(&[0x08, 0, 0, 0, 0, 0, 1, 0, 0xAA]), Some(&[0xAA][..]));
        assert_eq!(vxlan(&[0x88, 0, 0, 5, 0, 0, 1, 0, 0xAA]), Some(&[0xAA][..]));
        // text that happens to have the 0x08 bit: "OPTIONS "
        assert_eq!(vxlan(b"OPTIONS sip:x"), None);
        assert_eq!(vxlan(&[0x08, 0, 0, 0, 0, 0, 1, 9, 0xAA]), None);
        assert_eq!(vxlan(&[0x00, 0, 0, 0, 0, 0, 1, 0, 0xAA]), None);
        assert_eq!(vxlan(&[0x08, 0, 0]), None);
    }

    #[test]
    fn gtpu_headers() {
        // minimal G-PDU
        let d = [0x30, 0xFF, 0, 2, 0, 0, 0, 1, 0x45, 0x00];
        assert_eq!(gtpu(&d), Gtp::Inner(&[0x45, 0][..]));
        // sequence flag, one PDU session container extension (type 0x85, 1 unit)
        let d = [
            0x34, 0xFF, 0, 10, 0, 0, 0, 1, 0, 1, 0, 0x85, 1, 0x10, 0x05, 0, 0x45, 0x00,
        ];
        assert_eq!(gtpu(&d), Gtp::Inner(&[0x45, 0][..]));
        // extension length zero
        let d = [
            0x34, 0xFF, 0, 10, 0, 0, 0, 1, 0, 1, 0, 0x85, 0, 0, 0, 0, 0x45,
        ];
        assert_eq!(gtpu(&d), Gtp::Bad);
        // echo request
        assert_eq!(
            gtpu(&[0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0]),
            Gtp::Signalling
        );
        // GTP' or v2: not GTP-U
        assert_eq!(gtpu(&[0x48, 0xFF, 0, 0, 0, 0, 0, 0]), Gtp::Plain);
        assert_eq!(gtpu(b"INVITE sip:x SIP/2.0"), Gtp::Plain);
    }
}
