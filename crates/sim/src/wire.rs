//! Frame building and a classic pcap writer (Ethernet link type, microsecond timestamps).
//!
//! Every frame is built into one reused buffer: Ethernet (optional 802.1Q tag), IPv4 or IPv6,
//! UDP or TCP, with correct lengths and checksums. Large IPv4 UDP datagrams are fragmented at the
//! configured MTU with correct offsets and MF flags. Output is a pure function of the calls made.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

/// Snap length written into the pcap header.
pub const SNAPLEN: u32 = 65535;
/// Link MTU used for IPv4 fragmentation and TCP segment sizes.
pub const MTU: usize = 1500;
/// TCP maximum segment size (MTU minus 40 bytes of IPv4 and TCP headers, minus options room).
pub const MSS: usize = 1448;

/// Layer-2 framing of one line: its MAC, the access router's MAC and an optional VLAN tag.
#[derive(Clone, Copy, Debug)]
pub struct L2 {
    pub line_mac: [u8; 6],
    pub router_mac: [u8; 6],
    pub vlan: Option<u16>,
}

/// Writes a classic pcap stream and counts packets.
pub struct PcapWriter<W: Write> {
    out: W,
    packets: u64,
    frame: Vec<u8>,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut hdr = [0u8; 24];
        hdr[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        hdr[4..6].copy_from_slice(&2u16.to_le_bytes());
        hdr[6..8].copy_from_slice(&4u16.to_le_bytes());
        hdr[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        hdr[20..24].copy_from_slice(&1u32.to_le_bytes());
        out.write_all(&hdr)?;
        Ok(PcapWriter {
            out,
            packets: 0,
            frame: Vec::with_capacity(2048),
        })
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn write_frame(&mut self, ts_us: i64) -> io::Result<()> {
        let secs = ts_us.div_euclid(1_000_000) as u32;
        let us = ts_us.rem_euclid(1_000_000) as u32;
        let len = self.frame.len() as u32;
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&secs.to_le_bytes());
        rec[4..8].copy_from_slice(&us.to_le_bytes());
        rec[8..12].copy_from_slice(&len.to_le_bytes());
        rec[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&rec)?;
        self.out.write_all(&self.frame)?;
        self.packets += 1;
        Ok(())
    }

    fn eth(&mut self, l2: &L2, from_line: bool, v6: bool) {
        self.frame.clear();
        let (dst, src) = if from_line {
            (l2.router_mac, l2.line_mac)
        } else {
            (l2.line_mac, l2.router_mac)
        };
        self.frame.extend_from_slice(&dst);
        self.frame.extend_from_slice(&src);
        if let Some(v) = l2.vlan {
            self.frame.extend_from_slice(&[0x81, 0x00]);
            self.frame.extend_from_slice(&(v & 0x0fff).to_be_bytes());
        }
        self.frame
            .extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    }

    /// Writes one UDP datagram; IPv4 datagrams larger than the MTU are fragmented.
    #[allow(clippy::too_many_arguments)]
    pub fn udp(
        &mut self,
        ts_us: i64,
        l2: &L2,
        from_line: bool,
        src: SocketAddr,
        dst: SocketAddr,
        ip_id: u16,
        ttl: u8,
        payload: &[u8],
    ) -> io::Result<()> {
        let udp_len = 8 + payload.len();
        let mut udp_hdr = [0u8; 8];
        udp_hdr[0..2].copy_from_slice(&src.port().to_be_bytes());
        udp_hdr[2..4].copy_from_slice(&dst.port().to_be_bytes());
        udp_hdr[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        let ck = transport_checksum(src.ip(), dst.ip(), 17, &udp_hdr, payload);
        let ck = if ck == 0 { 0xffff } else { ck };
        udp_hdr[6..8].copy_from_slice(&ck.to_be_bytes());
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                if 20 + udp_len <= MTU {
                    self.eth(l2, from_line, false);
                    ipv4_header(
                        &mut self.frame,
                        s.octets(),
                        d.octets(),
                        17,
                        ip_id,
                        ttl,
                        udp_len,
                        0x4000,
                    );
                    self.frame.extend_from_slice(&udp_hdr);
                    self.frame.extend_from_slice(payload);
                    return self.write_frame(ts_us);
                }
                // Fragment the UDP datagram (header + payload) in 8-byte units.
                let max_data = (MTU - 20) & !7;
                let total = udp_len;
                let mut off = 0usize;
                while off < total {
                    let n = (total - off).min(max_data);
                    let more = off + n < total;
                    let flags = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
                    self.eth(l2, from_line, false);
                    ipv4_header(
                        &mut self.frame,
                        s.octets(),
                        d.octets(),
                        17,
                        ip_id,
                        ttl,
                        n,
                        flags,
                    );
                    for i in off..off + n {
                        let b = if i < 8 {
                            udp_hdr.get(i).copied().unwrap_or(0)
                        } else {
                            payload.get(i - 8).copied().unwrap_or(0)
                        };
                        self.frame.push(b);
                    }
                    self.write_frame(ts_us)?;
                    off += n;
                }
                Ok(())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                self.eth(l2, from_line, true);
                ipv6_header(
                    &mut self.frame,
                    s.octets(),
                    d.octets(),
                    17,
                    ttl,
                    udp_len,
                    ip_id,
                );
                self.frame.extend_from_slice(&udp_hdr);
                self.frame.extend_from_slice(payload);
                self.write_frame(ts_us)
            }
            _ => Ok(()),
        }
    }

    /// Writes one TCP segment (flags: 0x02 SYN, 0x10 ACK, 0x08 PSH, 0x12 SYN-ACK).
    #[allow(clippy::too_many_arguments)]
    pub fn tcp(
        &mut self,
        ts_us: i64,
        l2: &L2,
        from_line: bool,
        src: SocketAddr,
        dst: SocketAddr,
        ip_id: u16,
        ttl: u8,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> io::Result<()> {
        let syn = flags & 0x02 != 0;
        let hdr_len = if syn { 24 } else { 20 };
        let mut th = [0u8; 24];
        th[0..2].copy_from_slice(&src.port().to_be_bytes());
        th[2..4].copy_from_slice(&dst.port().to_be_bytes());
        th[4..8].copy_from_slice(&seq.to_be_bytes());
        th[8..12].copy_from_slice(&ack.to_be_bytes());
        th[12] = ((hdr_len / 4) as u8) << 4;
        th[13] = flags;
        th[14..16].copy_from_slice(&64240u16.to_be_bytes());
        if syn {
            // MSS option.
            th[20] = 2;
            th[21] = 4;
            th[22..24].copy_from_slice(&(MSS as u16).to_be_bytes());
        }
        let th = th.get(..hdr_len).unwrap_or(&[]);
        let mut th_buf = [0u8; 24];
        th_buf[..hdr_len].copy_from_slice(th);
        let ck = transport_checksum(src.ip(), dst.ip(), 6, &th_buf[..hdr_len], payload);
        th_buf[16..18].copy_from_slice(&ck.to_be_bytes());
        let seg_len = hdr_len + payload.len();
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.eth(l2, from_line, false);
                ipv4_header(
                    &mut self.frame,
                    s.octets(),
                    d.octets(),
                    6,
                    ip_id,
                    ttl,
                    seg_len,
                    0x4000,
                );
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                self.eth(l2, from_line, true);
                ipv6_header(
                    &mut self.frame,
                    s.octets(),
                    d.octets(),
                    6,
                    ttl,
                    seg_len,
                    ip_id,
                );
            }
            _ => return Ok(()),
        }
        self.frame.extend_from_slice(&th_buf[..hdr_len]);
        self.frame.extend_from_slice(payload);
        self.write_frame(ts_us)
    }
}

#[allow(clippy::too_many_arguments)]
fn ipv4_header(
    buf: &mut Vec<u8>,
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    id: u16,
    ttl: u8,
    payload_len: usize,
    flags_frag: u16,
) {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[1] = if proto == 17 { 0xb8 } else { 0x68 };
    h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&flags_frag.to_be_bytes());
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let ck = fold(sum16(0, &h));
    h[10..12].copy_from_slice(&(!ck).to_be_bytes());
    buf.extend_from_slice(&h);
}

fn ipv6_header(
    buf: &mut Vec<u8>,
    src: [u8; 16],
    dst: [u8; 16],
    next: u8,
    hops: u8,
    payload_len: usize,
    flow: u16,
) {
    buf.extend_from_slice(&[0x60, 0x0b, 0, 0]);
    let n = buf.len();
    if let Some(b) = buf.get_mut(n - 2..n) {
        b.copy_from_slice(&flow.to_be_bytes());
    }
    buf.extend_from_slice(&(payload_len as u16).to_be_bytes());
    buf.push(next);
    buf.push(hops);
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&dst);
}

/// One's-complement sum of 16-bit big-endian words (odd trailing byte padded with zero).
fn sum16(mut acc: u64, data: &[u8]) -> u64 {
    // Eight bytes at a time: the one's-complement sum of big-endian 32-bit words folds to the
    // same 16-bit sum, and a u64 accumulator cannot overflow for any frame size.
    let mut wide = data.chunks_exact(8);
    for c in &mut wide {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_be_bytes(w);
        acc += (v >> 32) + (v & 0xffff_ffff);
    }
    let mut chunks = wide.remainder().chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// UDP/TCP checksum over the pseudo-header, the transport header (checksum field zero) and data.
fn transport_checksum(src: IpAddr, dst: IpAddr, proto: u8, hdr: &[u8], data: &[u8]) -> u16 {
    let len = (hdr.len() + data.len()) as u64;
    let mut acc = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum16(sum16(0, &s.octets()), &d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum16(sum16(0, &s.octets()), &d.octets()),
        _ => 0,
    };
    acc += u64::from(proto) + len;
    acc = sum16(acc, hdr);
    // The header length is even, so the data's word alignment is unchanged.
    acc = sum16(acc, data);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: RFC 1071 sum over 16-bit words.
    fn sum16_slow(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for c in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        fold(acc)
    }

    #[test]
    fn wide_sum_equals_rfc1071_sum() {
        let mut x = 0x1234_5678_9abc_def1u64;
        for len in [0usize, 1, 2, 7, 8, 9, 15, 16, 17, 160, 161, 1400, 1401] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert_eq!(fold(sum16(0, &data)), sum16_slow(&data), "len {len}");
        }
        assert_eq!(fold(sum16(0, &[0xff; 4000])), sum16_slow(&[0xff; 4000]));
    }

    fn l2() -> L2 {
        L2 {
            line_mac: [2, 0, 0, 0, 0, 1],
            router_mac: [2, 0, 0, 0, 0, 0xfe],
            vlan: None,
        }
    }

    #[test]
    fn global_header_and_one_udp_frame() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let s: SocketAddr = "100.64.1.2:5060".parse().unwrap();
        let d: SocketAddr = "198.18.0.10:5060".parse().unwrap();
        w.udp(1_000_000_500, &l2(), true, s, d, 7, 64, b"hello")
            .unwrap();
        let out = w.into_inner();
        assert_eq!(&out[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(out.len(), 24 + 16 + 14 + 20 + 8 + 5);
        // ts seconds and micros
        assert_eq!(u32::from_le_bytes(out[24..28].try_into().unwrap()), 1000);
        assert_eq!(u32::from_le_bytes(out[28..32].try_into().unwrap()), 500);
        let ip = &out[24 + 16 + 14..];
        assert_eq!(ip[0], 0x45);
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 33);
        // A header with a correct checksum sums to 0xffff.
        assert_eq!(fold(sum16(0, &ip[..20])), 0xffff);
    }

    #[test]
    fn udp_checksum_verifies() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let s: SocketAddr = "[fd00::5]:5060".parse().unwrap();
        let d: SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
        w.udp(0, &l2(), true, s, d, 1, 64, b"abc").unwrap();
        let out = w.into_inner();
        let udp = &out[24 + 16 + 14 + 40..];
        assert_eq!(udp.len(), 11);
        let again = transport_checksum(s.ip(), d.ip(), 17, &udp[..8], &udp[8..]);
        // Summing with the checksum in place gives zero after complement.
        assert_eq!(again, 0);
    }

    #[test]
    fn large_ipv4_datagram_is_fragmented_in_8_byte_units() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let s: SocketAddr = "203.0.113.10:5060".parse().unwrap();
        let d: SocketAddr = "100.64.1.2:5060".parse().unwrap();
        let payload = vec![b'x'; 3000];
        w.udp(0, &l2(), false, s, d, 99, 50, &payload).unwrap();
        assert_eq!(w.packets(), 3);
        let out = w.into_inner();
        let mut pos = 24;
        let mut offsets = Vec::new();
        let mut total = 0;
        while pos < out.len() {
            let caplen = u32::from_le_bytes(out[pos + 8..pos + 12].try_into().unwrap()) as usize;
            let ip = &out[pos + 16 + 14..pos + 16 + caplen];
            let ff = u16::from_be_bytes([ip[6], ip[7]]);
            offsets.push((ff & 0x1fff, ff & 0x2000 != 0));
            assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 99);
            total += ip.len() - 20;
            pos += 16 + caplen;
        }
        assert_eq!(offsets, vec![(0, true), (185, true), (370, false)]);
        assert_eq!(total, 3008);
    }
}
