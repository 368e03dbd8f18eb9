//! Capture: reads packets from a pcap/pcapng file or a live interface with libpcap.
//!
//! Contract: yields `RawPacket`s in capture order with packet time; never interprets bytes.
//! `read()` returns `Next::Packet`, `Next::Timeout` (live only: no packet within
//! `LIVE_READ_TIMEOUT_MS`, so the caller can tick; call `read` again) or `Next::End` (file
//! exhausted). Live captures run in non-blocking mode and wait with poll(2) on the capture
//! descriptor: libpcap's own read timeout never fires on Linux when no packet arrives at all. `next_packet()` folds the last
//! two into `Ok(None)`; on a live capture `None` therefore means "nothing yet", never an end.
//! Live captures report libpcap/kernel drop counters through `stats()`; files report their size
//! and the bytes consumed so far for progress display.

use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};
use simboxd_core::model::{LinkType, RawPacket, Timestamp};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Live interface to capture from.
    pub interface: Option<String>,
    /// Capture file to replay instead of an interface.
    pub file: Option<PathBuf>,
    /// BPF filter; the default keeps IP fragments (non-first fragments carry no ports).
    pub filter: String,
    pub snaplen: u32,
    pub buffer_mib: u32,
    pub promiscuous: bool,
    pub immediate: bool,
}

/// Keeps all UDP/TCP plus IPv4 and IPv6 fragments, MPLS, PPPoE and VLAN-tagged frames.
/// `vlan` comes last and MPLS/PPPoE are matched by ethertype: libpcap's `vlan`, `mpls` and
/// `pppoes` keywords shift the offsets of everything after them ("unsupported protocol over
/// mpls"). Ethernet-only: files with other link types are replayed unfiltered by the daemon.
pub const DEFAULT_FILTER: &str =
    "udp or tcp or (ip[6:2] & 0x1fff != 0) or ip6 or ether proto 0x8847 or ether proto 0x8864 or vlan";

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interface: None,
            file: None,
            filter: DEFAULT_FILTER.to_string(),
            snaplen: 65535,
            buffer_mib: 64,
            promiscuous: true,
            immediate: true,
        }
    }
}

/// Read timeout of a live capture: the longest the daemon waits before it can tick.
pub const LIVE_READ_TIMEOUT_MS: i32 = 250;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{file}: cannot open capture file: {source}")]
    OpenFile {
        file: String,
        #[source]
        source: pcap::Error,
    },
    #[error("{interface}: cannot open interface: {source}")]
    OpenLive {
        interface: String,
        #[source]
        source: pcap::Error,
    },
    #[error("{interface}: no interface configured (capture.interface)")]
    NoInterface { interface: String },
    #[error("{name}: bad capture filter {filter:?}: {source}")]
    Filter {
        name: String,
        filter: String,
        #[source]
        source: pcap::Error,
    },
    #[error("{name}: read error: {source}")]
    Read {
        name: String,
        #[source]
        source: pcap::Error,
    },
    #[error("{name}: statistics unavailable: {source}")]
    Stats {
        name: String,
        #[source]
        source: pcap::Error,
    },
}

/// Counters from libpcap and the kernel (live captures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureStats {
    /// Packets received by the filter.
    pub received: u64,
    /// Packets dropped because the capture buffer was full.
    pub dropped: u64,
    /// Packets dropped by the interface or its driver.
    pub if_dropped: u64,
}

/// What one read produced.
#[derive(Debug)]
pub enum Next<'a> {
    Packet(RawPacket<'a>),
    /// Live capture: the read timeout expired with no packet. Not an end.
    Timeout,
    /// File capture: no more packets.
    End,
}

enum Handle {
    File(pcap::Capture<pcap::Offline>),
    Live(pcap::Capture<pcap::Active>),
}

/// A duplicate of the live capture's descriptor, to wait on while the handle is borrowed.
struct Waiter(OwnedFd);

impl Waiter {
    /// Waits until the capture has data or the read timeout passes.
    fn wait(&self) {
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::from(LIVE_READ_TIMEOUT_MS.unsigned_abs() as u16);
        // EINTR or any other failure: the caller just reads again.
        let _ = nix::poll::poll(&mut fds, timeout);
    }
}

/// An open packet source.
pub struct Capture {
    handle: Handle,
    waiter: Option<Waiter>,
    name: String,
    link: LinkType,
    file_size: Option<u64>,
    consumed: u64,
    pcapng: bool,
    ended: bool,
}

/// Maps a libpcap DLT value (as returned by `pcap_datalink`) to the LINKTYPE the decoder knows.
/// DLT_RAW is 12 on most systems and 14 on some BSDs; libpcap reports either for LINKTYPE_RAW.
pub fn link_type_from_dlt(dlt: i32) -> LinkType {
    match dlt {
        12 | 14 => LinkType::RAW,
        other => LinkType(other),
    }
}

fn stat_counters(s: pcap::Stat) -> CaptureStats {
    CaptureStats {
        received: u64::from(s.received),
        dropped: u64::from(s.dropped),
        if_dropped: u64::from(s.if_dropped),
    }
}

impl Capture {
    /// Opens a pcap or pcapng file.
    pub fn open_file(path: &Path) -> Result<Capture, CaptureError> {
        let name = path.display().to_string();
        let handle = pcap::Capture::from_file(path).map_err(|source| CaptureError::OpenFile {
            file: name.clone(),
            source,
        })?;
        let link = link_type_from_dlt(handle.get_datalink().0);
        let file_size = std::fs::metadata(path).ok().map(|m| m.len());
        let pcapng = is_pcapng(path);
        Ok(Capture {
            handle: Handle::File(handle),
            waiter: None,
            name,
            link,
            file_size,
            // Section/file header: 24 bytes for pcap; pcapng SHB + IDB are about 48 bytes.
            consumed: if pcapng { 48 } else { 24 },
            pcapng,
            ended: false,
        })
    }

    /// Opens the live interface named in `cfg.interface` with its snaplen, buffer size,
    /// promiscuous and immediate modes, and compiles `cfg.filter` into it.
    pub fn open_live(cfg: &CaptureConfig) -> Result<Capture, CaptureError> {
        let interface = cfg.interface.clone().unwrap_or_default();
        if interface.is_empty() {
            return Err(CaptureError::NoInterface { interface });
        }
        let open_err = |source| CaptureError::OpenLive {
            interface: interface.clone(),
            source,
        };
        let snaplen = i32::try_from(cfg.snaplen).unwrap_or(i32::MAX);
        let buffer =
            i32::try_from(u64::from(cfg.buffer_mib).saturating_mul(1 << 20)).unwrap_or(i32::MAX);
        let mut handle = pcap::Capture::from_device(interface.as_str())
            .map_err(open_err)?
            .promisc(cfg.promiscuous)
            .snaplen(snaplen)
            .buffer_size(buffer)
            .immediate_mode(cfg.immediate)
            .timeout(LIVE_READ_TIMEOUT_MS)
            .open()
            .map_err(open_err)?;
        if !cfg.filter.trim().is_empty() {
            handle
                .filter(&cfg.filter, true)
                .map_err(|source| CaptureError::Filter {
                    name: interface.clone(),
                    filter: cfg.filter.clone(),
                    source,
                })?;
        }
        let handle = handle
            .setnonblock()
            .map_err(|source| CaptureError::OpenLive {
                interface: interface.clone(),
                source,
            })?;
        let fd = handle
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| CaptureError::OpenLive {
                interface: interface.clone(),
                source: pcap::Error::IoError(e.kind()),
            })?;
        let link = link_type_from_dlt(handle.get_datalink().0);
        Ok(Capture {
            handle: Handle::Live(handle),
            waiter: Some(Waiter(fd)),
            name: interface,
            link,
            file_size: None,
            consumed: 0,
            pcapng: false,
            ended: false,
        })
    }

    /// Applies a BPF filter to an open capture (files too, e.g. for replay with a filter).
    pub fn set_filter(&mut self, filter: &str) -> Result<(), CaptureError> {
        let res = match &mut self.handle {
            Handle::File(h) => h.filter(filter, true),
            Handle::Live(h) => h.filter(filter, true),
        };
        res.map_err(|source| CaptureError::Filter {
            name: self.name.clone(),
            filter: filter.to_string(),
            source,
        })
    }

    /// Reads the next packet; see `Next`.
    pub fn read(&mut self) -> Result<Next<'_>, CaptureError> {
        if self.ended {
            return Ok(Next::End);
        }
        let res = match &mut self.handle {
            Handle::File(h) => h.next_packet(),
            Handle::Live(h) => h.next_packet(),
        };
        match res {
            Ok(p) => {
                let caplen = p.header.caplen;
                let record = if self.pcapng {
                    // Enhanced Packet Block: 28 bytes of header + data padded to 4 + 4 trailer.
                    32 + u64::from(caplen).div_ceil(4) * 4
                } else {
                    16 + u64::from(caplen)
                };
                self.consumed = self.consumed.saturating_add(record);
                if let Some(size) = self.file_size {
                    self.consumed = self.consumed.min(size);
                }
                let ts = timeval_micros(p.header.ts.tv_sec, p.header.ts.tv_usec);
                Ok(Next::Packet(RawPacket {
                    ts,
                    link: self.link,
                    data: p.data,
                    wire_len: p.header.len,
                }))
            }
            Err(pcap::Error::TimeoutExpired) => {
                // Non-blocking: nothing ready. Wait for data (or the timeout) so that the
                // caller's next read finds it, and let the caller tick meanwhile.
                if let Some(w) = &self.waiter {
                    w.wait();
                }
                Ok(Next::Timeout)
            }
            Err(pcap::Error::NoMorePackets) => {
                self.ended = true;
                if let Some(size) = self.file_size {
                    self.consumed = size;
                }
                Ok(Next::End)
            }
            Err(source) => Err(CaptureError::Read {
                name: self.name.clone(),
                source,
            }),
        }
    }

    /// The next packet, or `None`: end of file for a file capture, read timeout for a live one
    /// (a live capture never ends by itself; use `read()` to tell them apart).
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, CaptureError> {
        match self.read()? {
            Next::Packet(p) => Ok(Some(p)),
            Next::Timeout | Next::End => Ok(None),
        }
    }

    /// libpcap/kernel counters of a live capture; zeros for a file.
    pub fn stats(&mut self) -> Result<CaptureStats, CaptureError> {
        match &mut self.handle {
            Handle::File(_) => Ok(CaptureStats::default()),
            Handle::Live(h) => h
                .stats()
                .map(stat_counters)
                .map_err(|source| CaptureError::Stats {
                    name: self.name.clone(),
                    source,
                }),
        }
    }

    pub fn link_type(&self) -> LinkType {
        self.link
    }
    /// File path or interface name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn is_live(&self) -> bool {
        matches!(self.handle, Handle::Live(_))
    }
    /// Size of the capture file in bytes (`None` for live captures).
    pub fn file_size(&self) -> Option<u64> {
        self.file_size
    }
    /// Bytes of the file consumed so far (sum of record sizes; for pcapng an estimate that
    /// ignores block options), never more than the file size; the file size once at the end.
    pub fn bytes_consumed(&self) -> u64 {
        self.consumed
    }
}

/// Packet time from a `timeval` (its field widths differ between platforms).
fn timeval_micros(sec: impl Into<i64>, usec: impl Into<i64>) -> Timestamp {
    Timestamp::from_micros(
        sec.into()
            .saturating_mul(1_000_000)
            .saturating_add(usec.into()),
    )
}

fn is_pcapng(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == [0x0a, 0x0d, 0x0d, 0x0a]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A classic little-endian pcap file with the given link type and packets.
    fn pcap_file(link: u32, packets: &[(u32, u32, &[u8])]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut b = Vec::new();
        b.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&0i32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&65535u32.to_le_bytes());
        b.extend_from_slice(&link.to_le_bytes());
        for (sec, usec, data) in packets {
            b.extend_from_slice(&sec.to_le_bytes());
            b.extend_from_slice(&usec.to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(&(data.len() as u32 + 10).to_le_bytes());
            b.extend_from_slice(data);
        }
        f.write_all(&b).unwrap();
        f.flush().unwrap();
        f
    }

    #[test]
    fn reads_file_packets_times_and_progress() {
        let f = pcap_file(
            101,
            &[(1_700_000_000, 5, b"\x45abc"), (1_700_000_001, 7, b"xy")],
        );
        let mut c = Capture::open_file(f.path()).unwrap();
        assert_eq!(c.link_type(), LinkType::RAW);
        assert!(!c.is_live());
        assert_eq!(c.file_size(), Some(24 + 16 + 4 + 16 + 2));
        assert_eq!(c.bytes_consumed(), 24);
        {
            let p = c.next_packet().unwrap().unwrap();
            assert_eq!(p.ts, Timestamp::from_micros(1_700_000_000_000_005));
            assert_eq!(p.data, b"\x45abc");
            assert_eq!(p.wire_len, 14);
        }
        assert_eq!(c.bytes_consumed(), 24 + 20);
        let p = c.next_packet().unwrap().unwrap();
        assert_eq!(p.data, b"xy");
        assert_eq!(p.ts.micros(), 1_700_000_001_000_007);
        assert!(c.next_packet().unwrap().is_none());
        assert!(matches!(c.read().unwrap(), Next::End));
        assert_eq!(c.bytes_consumed(), 62);
        assert_eq!(c.stats().unwrap(), CaptureStats::default());
    }

    #[test]
    fn link_types_are_mapped() {
        for (dlt, want) in [
            (1, LinkType::ETHERNET),
            (113, LinkType::LINUX_SLL),
            (0, LinkType::NULL),
        ] {
            let f = pcap_file(dlt, &[]);
            assert_eq!(Capture::open_file(f.path()).unwrap().link_type(), want);
        }
        assert_eq!(link_type_from_dlt(12), LinkType::RAW);
        assert_eq!(link_type_from_dlt(14), LinkType::RAW);
        assert_eq!(link_type_from_dlt(276), LinkType::LINUX_SLL2);
    }

    #[test]
    fn open_errors_name_the_file() {
        let err = Capture::open_file(Path::new("/nonexistent/x.pcap"))
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with("/nonexistent/x.pcap: "),
            "{err}"
        );
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"this is not a capture file at all").unwrap();
        let err = Capture::open_file(f.path()).err().unwrap();
        assert!(
            err.to_string().contains(&f.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn bad_filter_is_reported_with_name() {
        let f = pcap_file(1, &[]);
        let mut c = Capture::open_file(f.path()).unwrap();
        c.set_filter("udp port 5060").unwrap();
        let err = c.set_filter("udp port banana").unwrap_err();
        assert!(err.to_string().contains("banana"), "{err}");
    }

    #[test]
    fn capture_and_decoder_can_move_to_a_capture_thread() {
        fn send<T: Send>() {}
        send::<Capture>();
        send::<simboxd_core::decode::Decoder>();
    }

    #[test]
    fn live_without_interface_is_an_error() {
        let err = Capture::open_live(&CaptureConfig::default()).err().unwrap();
        assert!(matches!(err, CaptureError::NoInterface { .. }));
        let cfg = CaptureConfig {
            interface: Some("nonexistent-if0".into()),
            ..CaptureConfig::default()
        };
        let err = Capture::open_live(&cfg).err().unwrap();
        assert!(err.to_string().starts_with("nonexistent-if0: "), "{err}");
    }
}
