//! Capture: reads packets from a pcap/pcapng file with libpcap. (Minimal version; the full
//! live-capture implementation is being written on branch `decode`.)

use crate::model::{LinkType, RawPacket, Timestamp};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{name}: {source}")]
    Pcap {
        name: String,
        #[source]
        source: pcap::Error,
    },
}

pub struct Capture {
    name: String,
    inner: pcap::Capture<pcap::Offline>,
    link: LinkType,
    size: Option<u64>,
    consumed: u64,
}

impl Capture {
    pub fn open_file(path: &Path) -> Result<Capture, CaptureError> {
        let name = path.display().to_string();
        let inner = pcap::Capture::from_file(path).map_err(|source| CaptureError::Pcap {
            name: name.clone(),
            source,
        })?;
        let link = LinkType(inner.get_datalink().0);
        let size = std::fs::metadata(path).ok().map(|m| m.len());
        Ok(Capture {
            name,
            inner,
            link,
            size,
            consumed: 24,
        })
    }

    /// The next packet, `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, CaptureError> {
        match self.inner.next_packet() {
            Ok(p) => {
                let ts =
                    Timestamp::from_micros(p.header.ts.tv_sec * 1_000_000 + p.header.ts.tv_usec);
                self.consumed += 16 + p.header.caplen as u64;
                Ok(Some(RawPacket {
                    ts,
                    link: self.link,
                    data: p.data,
                    wire_len: p.header.len,
                }))
            }
            Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(source) => Err(CaptureError::Pcap {
                name: self.name.clone(),
                source,
            }),
        }
    }

    pub fn link_type(&self) -> LinkType {
        self.link
    }

    pub fn file_size(&self) -> Option<u64> {
        self.size
    }

    pub fn bytes_read(&self) -> u64 {
        self.consumed
    }
}
