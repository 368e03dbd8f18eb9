//! A minimal pcapng writer for evidence cut from inputs with several link types (a pcap file
//! holds one): one section, one interface per link type, enhanced packet blocks with
//! microsecond times.
//!
//! Contract: packets are written unchanged with their time, captured bytes and wire length;
//! `finish` flushes. Little-endian, as Wireshark, tshark and libpcap read it.

use simboxd_core::model::{LinkType, Timestamp};
use std::io::Write;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;

pub struct PcapngWriter<W: Write> {
    out: W,
    /// Link type of each interface written, by interface id.
    links: Vec<LinkType>,
}

impl<W: Write> PcapngWriter<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        // Section header: byte-order magic, version 1.0, section length unknown (-1).
        let mut body = Vec::with_capacity(16);
        body.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        block(&mut out, SHB, &body)?;
        Ok(PcapngWriter {
            out,
            links: Vec::new(),
        })
    }

    fn interface(&mut self, link: LinkType) -> std::io::Result<u32> {
        if let Some(i) = self.links.iter().position(|l| *l == link) {
            return Ok(i as u32);
        }
        let mut body = Vec::with_capacity(8);
        body.extend_from_slice(&(link.0 as u16).to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes()); // no snap length
        block(&mut self.out, IDB, &body)?;
        self.links.push(link);
        Ok(self.links.len() as u32 - 1)
    }

    /// Writes one packet (its interface is declared before its first packet).
    pub fn packet(
        &mut self,
        ts: Timestamp,
        link: LinkType,
        data: &[u8],
        wire_len: u32,
    ) -> std::io::Result<()> {
        let id = self.interface(link)?;
        // Microseconds (the default resolution of an interface without if_tsresol).
        let t = ts.micros().max(0) as u64;
        let mut body = Vec::with_capacity(20 + data.len() + 3);
        body.extend_from_slice(&id.to_le_bytes());
        body.extend_from_slice(&((t >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(t as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&wire_len.max(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        block(&mut self.out, EPB, &body)
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One block: type, total length, body padded to 4 bytes, total length again.
fn block(out: &mut impl Write, kind: u32, body: &[u8]) -> std::io::Result<()> {
    let pad = (4 - body.len() % 4) % 4;
    let total = (12 + body.len() + pad) as u32;
    out.write_all(&kind.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&[0u8; 3][..pad])?;
    out.write_all(&total.to_le_bytes())
}
