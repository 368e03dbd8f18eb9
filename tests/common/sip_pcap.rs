//! Crafted captures for the threat tests: a classic pcap writer of IPv4/UDP datagrams and SIP
//! requests/responses with their transaction headers.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

/// A classic pcap (Ethernet) of IPv4/UDP datagrams.
pub struct Pcap {
    pub out: Vec<u8>,
}

impl Pcap {
    pub fn new() -> Pcap {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        Pcap { out }
    }

    pub fn udp(&mut self, t: f64, src: &str, dst: &str, payload: &str) {
        let sa = |s: &str| -> SocketAddrV4 {
            if s.contains(':') {
                s.parse().unwrap()
            } else {
                SocketAddrV4::new(s.parse::<Ipv4Addr>().unwrap(), 5060)
            }
        };
        let (s, d) = (sa(src), sa(dst));
        let p = payload.as_bytes();
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&((20 + 8 + p.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
        ip.extend_from_slice(&s.ip().octets());
        ip.extend_from_slice(&d.ip().octets());
        let mut sum: u32 = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        ip.extend_from_slice(&s.port().to_be_bytes());
        ip.extend_from_slice(&d.port().to_be_bytes());
        ip.extend_from_slice(&((8 + p.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(p);
        let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        frame.extend_from_slice(&ip);
        let us = (1_764_000_000.0 + t) * 1e6;
        let us = us.round() as i64;
        self.out
            .extend_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
        self.out
            .extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        self.out
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&frame);
    }
}

/// A request from `from` to `to` (user `user`), with its transaction headers.
pub fn request(method: &str, from: &str, to: &str, user: &str, call_id: &str, ua: &str) -> String {
    format!(
        "{method} sip:{user}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from}:5060;branch=z9hG4bK{call_id}\r\n\
         From: <sip:100@{from}>;tag=f{call_id}\r\nTo: <sip:{user}@{to}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\nContact: <sip:100@{from}:5060>\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
    )
}

pub fn response(
    code: u16,
    method: &str,
    from: &str,
    to: &str,
    user: &str,
    call_id: &str,
) -> String {
    format!(
        "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP {from}:5060;branch=z9hG4bK{call_id}\r\n\
         From: <sip:100@{from}>;tag=f{call_id}\r\nTo: <sip:{user}@{to}>;tag=t{call_id}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
}
