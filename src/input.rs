//! Inputs of offline analysis: capture files as Wireshark opens them, read with the pure-Rust
//! `pcap-parser` (libpcap stays for live capture).
//!
//! Contract: `Inputs::open` takes file names (`-` is standard input) and checks each one before
//! any packet is read (a file that is not a capture is an error). `next_packet` yields every
//! packet of every input with its own interface's link type, in packet-time order across
//! inputs (a ring of tcpdump files, captures of two taps) and in file order within one. Formats:
//! pcap in either byte order with micro- or nanosecond times, pcapng with any number of
//! sections and interfaces (each with its link type, time resolution and offset), each of them
//! gzip-compressed or not (told by the magic bytes, not the name). Every byte read is hashed
//! (SHA-256) on a reading thread while the packets are parsed, so standard input has a hash too.
//! An input cut off (a full disk, a pulled cable) or damaged is read up to the last whole record
//! and reported in `InputInfo::truncated`; it never stops the other inputs. Memory is bounded:
//! an input being read holds one parse buffer (grown only to fit its largest block, at most
//! `MAX_BLOCK`) and a queue of `QUEUE` chunks of `CHUNK` bytes; an input whose first packet lies
//! after the packets being read is opened only when they reach it, so a ring is read one or two
//! files at a time. `ReadAhead` runs `Inputs` on a parsing thread of its own and hands packets
//! over in reused batches (at most `BATCH_QUEUE` + 2 of `BATCH_BYTES`), so that `analyze`'s
//! engine thread does nothing but the engine.

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use simboxd_core::model::{LinkType, RawPacket, Timestamp};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// The name that stands for standard input.
pub const STDIN: &str = "-";
/// Bytes read from an input at a time (and hashed) by its reading thread.
const CHUNK: usize = 256 * 1024;
/// Chunks queued between a reading thread and the parser.
const QUEUE: usize = 4;
/// Initial parse buffer of an input.
const PARSE_BUFFER: usize = 1 << 20;
/// Parse buffer of an input opened only to find its first packet.
const PEEK_BUFFER: usize = 64 * 1024;
/// Largest block (pcap record or pcapng block) accepted; a longer one is a damaged length.
pub const MAX_BLOCK: usize = 64 << 20;

/// What is known about one input once it has been read.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InputInfo {
    /// The name as given (`-` for standard input).
    pub file: String,
    /// SHA-256 of the bytes read (the file as stored: compressed when it is compressed).
    pub sha256: String,
    /// Bytes read (the file's size, or what standard input delivered).
    pub size: u64,
    /// `pcap`, `pcap-nsec` (nanosecond times), `pcapng`, or `empty` (no byte at all).
    pub format: &'static str,
    /// `gzip` when the input was gzip-compressed.
    pub compression: Option<&'static str>,
    pub packets: u64,
    /// Link types of the input's interfaces (pcap: one; pcapng: one per interface).
    pub link_types: Vec<i32>,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    /// Set when the input ended inside a record or held a damaged one: read up to there.
    pub truncated: Option<Truncation>,
}

/// Where and why reading an input stopped before its end.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Truncation {
    /// Offset in the capture data (after decompression) of the end of the last whole record.
    pub at_byte: u64,
    /// Packets read before the cut.
    pub after_packets: u64,
    pub reason: String,
}

impl InputInfo {
    /// Counts a packet read at `ts`: the count, the first and the latest time.
    #[inline]
    fn count(&mut self, ts: Timestamp) {
        self.packets += 1;
        if self.first.is_none() {
            self.first = Some(ts);
        }
        if self.last.is_none_or(|l| ts > l) {
            self.last = Some(ts);
        }
    }

    /// The facts of a file read elsewhere (the live view's replay) whose packets `st` counted.
    pub fn of_file(
        file: &str,
        sha256: String,
        size: u64,
        st: &simboxd_core::engine::EngineStats,
    ) -> InputInfo {
        InputInfo {
            file: file.to_string(),
            sha256,
            size,
            format: "pcap",
            compression: None,
            packets: st.packets,
            link_types: Vec::new(),
            first: st.first,
            last: st.last,
            truncated: None,
        }
    }

    fn display_name(&self) -> String {
        if self.file == STDIN {
            "standard input".into()
        } else {
            self.file.clone()
        }
    }

    /// The warning to print for a truncated input.
    pub fn truncation_warning(&self) -> Option<String> {
        self.truncated.as_ref().map(|t| {
            format!(
                "{}: {}; analysed the {} packets before byte {} of the capture data",
                self.display_name(),
                t.reason,
                t.after_packets,
                t.at_byte
            )
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{file}: cannot open: {source}")]
    Open {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not a pcap or pcapng capture{hint}")]
    NotCapture { file: String, hint: String },
    #[error("standard input (-) can be given only once")]
    StdinTwice,
    #[error("no capture given")]
    NoInput,
}

/// A chunk from a reading thread.
enum Chunk {
    Data(Vec<u8>),
    Failed(std::io::Error),
}

/// What a reading thread found: the hash and size of what it read, and the read error that
/// stopped it, if one did.
struct Hashed {
    sha256: String,
    bytes: u64,
    error: Option<std::io::Error>,
}

/// Reads `buf` full unless the source ends (or fails after some bytes, then those are returned
/// and the error is kept for the next call).
fn fill(src: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if n == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(n)
}

/// Where a `ChunkReader`'s chunks come from.
enum Feed {
    /// A reading thread that hashes every chunk; used chunks go back to it on `back`, so that
    /// nothing is allocated (nor zeroed) per chunk.
    Thread {
        rx: mpsc::Receiver<Chunk>,
        back: mpsc::SyncSender<Vec<u8>>,
    },
    /// A file read here, `PEEK_BUFFER` bytes at a time (opened only to find its first packet).
    Direct(Box<dyn Read + Send>),
}

/// The parser's side of an input: a `Read` over its chunks, which a plain pcap also reads in
/// place (see [`PlainPcap`]).
struct ChunkReader {
    feed: Feed,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ChunkReader {
    /// Starts a thread that reads `src` to its end, hashing every byte and adding the count to
    /// `progress`; chunks go to the returned reader while it exists (and are hashed and dropped
    /// after it is gone, so the hash always covers the whole input).
    fn spawn(
        mut src: Box<dyn Read + Send>,
        progress: Arc<AtomicU64>,
    ) -> std::io::Result<(ChunkReader, std::thread::JoinHandle<Hashed>)> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (back, spare) = mpsc::sync_channel::<Vec<u8>>(QUEUE + 2);
        let handle = std::thread::Builder::new()
            .name("simboxd-read".into())
            .spawn(move || {
                let mut h = Sha256::new();
                let mut bytes = 0u64;
                let mut live = true;
                let mut error = None;
                // A chunk the parser gave back, or (once it is gone) the last one read.
                let mut own: Option<Vec<u8>> = None;
                loop {
                    let mut buf = own
                        .take()
                        .or_else(|| spare.try_recv().ok())
                        .unwrap_or_default();
                    // A reused chunk keeps its length: only a short last read leaves a tail to
                    // zero.
                    buf.resize(CHUNK, 0);
                    match fill(&mut *src, &mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            buf.truncate(n);
                            h.update(&buf);
                            bytes += n as u64;
                            progress.fetch_add(n as u64, Ordering::Relaxed);
                            if live {
                                if let Err(mpsc::SendError(Chunk::Data(b))) =
                                    tx.send(Chunk::Data(buf))
                                {
                                    live = false;
                                    own = Some(b);
                                }
                            } else {
                                own = Some(buf);
                            }
                        }
                        Err(e) => {
                            if live {
                                let copy = std::io::Error::new(e.kind(), e.to_string());
                                let _ = tx.send(Chunk::Failed(copy));
                            }
                            error = Some(e);
                            break;
                        }
                    }
                }
                Hashed {
                    sha256: hex::encode(h.finalize()),
                    bytes,
                    error,
                }
            })?;
        Ok((
            ChunkReader {
                feed: Feed::Thread { rx, back },
                cur: Vec::new(),
                pos: 0,
                done: false,
            },
            handle,
        ))
    }

    /// Reads `src` here, a small chunk at a time, without hashing.
    fn direct(src: Box<dyn Read + Send>) -> ChunkReader {
        ChunkReader {
            feed: Feed::Direct(src),
            cur: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    /// The bytes not read yet of the current chunk, loading the next one when it is used up
    /// (empty only at the end of the input).
    #[inline]
    fn peek(&mut self) -> std::io::Result<&[u8]> {
        // Called once per record: the chunk has bytes left nearly every time.
        if self.pos < self.cur.len() {
            return Ok(self.cur.get(self.pos..).unwrap_or_default());
        }
        self.load()
    }

    /// `peek` once the current chunk is used up.
    #[inline(never)]
    fn load(&mut self) -> std::io::Result<&[u8]> {
        while self.pos >= self.cur.len() && !self.done {
            let used = std::mem::take(&mut self.cur);
            self.pos = 0;
            match &mut self.feed {
                Feed::Thread { rx, back } => {
                    if used.capacity() > 0 {
                        let _ = back.try_send(used);
                    }
                    match rx.recv() {
                        Ok(Chunk::Data(v)) => self.cur = v,
                        Ok(Chunk::Failed(e)) => {
                            self.done = true;
                            return Err(e);
                        }
                        Err(_) => self.done = true,
                    }
                }
                Feed::Direct(src) => {
                    let mut buf = used;
                    buf.resize(PEEK_BUFFER, 0);
                    match fill(&mut **src, &mut buf) {
                        Ok(0) => self.done = true,
                        Ok(n) => {
                            buf.truncate(n);
                            self.cur = buf;
                        }
                        Err(e) => {
                            self.done = true;
                            return Err(e);
                        }
                    }
                }
            }
        }
        Ok(self.cur.get(self.pos..).unwrap_or_default())
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.peek()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.pos += n;
        Ok(n)
    }
}

/// Why a plain pcap stopped before its end.
enum PlainStop {
    Cut,
    TooLong,
    Read(std::io::Error),
}

/// A record of a plain pcap: its header's fields and where its data lies.
#[derive(Clone, Copy)]
struct PlainRecord {
    ts: Timestamp,
    wire_len: u32,
    start: usize,
    len: usize,
    in_carry: bool,
}

/// A plain (uncompressed) pcap, read record by record where its chunks lie: a packet's bytes
/// are copied only when its record straddles two chunks (into `carry`). pcap-parser reads every
/// other form; this is the same format and the same stops (`cut off`, a record of 64 MiB or
/// more) without copying each packet twice.
struct PlainPcap {
    chunks: ChunkReader,
    /// Record header length: 16, or 24 in the "modified" (Kuznetzov) format.
    hdr_len: usize,
    big_endian: bool,
    nanos: bool,
    link: LinkType,
    /// A record that straddles chunks, put together.
    carry: Vec<u8>,
    /// Capture bytes before the head record (the file header included).
    consumed: u64,
    /// Length of the head record, added to `consumed` when the next one is read.
    head_len: u64,
}

/// The legacy pcap magic numbers (as the first four bytes read little-endian) pcap-parser
/// knows: (big-endian, nanoseconds, modified format).
fn plain_pcap_magic(head: &[u8]) -> Option<(bool, bool, bool)> {
    let m = u32::from_le_bytes(head.get(..4)?.try_into().ok()?);
    match m {
        0xa1b2_c3d4 => Some((false, false, false)),
        0xa1b2_3c4d => Some((false, true, false)),
        0xa1b2_cd34 => Some((false, false, true)),
        0xd4c3_b2a1 => Some((true, false, false)),
        0x4d3c_b2a1 => Some((true, true, false)),
        _ => None,
    }
}

impl PlainPcap {
    /// Reads the file header; `None` when the input ends inside it.
    fn open(
        mut chunks: ChunkReader,
        (big_endian, nanos, modified): (bool, bool, bool),
    ) -> Result<PlainPcap, Option<std::io::Error>> {
        let mut hdr = [0u8; 24];
        let mut got = 0;
        while got < hdr.len() {
            match chunks.peek() {
                Ok([]) => return Err(None),
                Ok(avail) => {
                    let n = avail.len().min(hdr.len() - got);
                    hdr[got..got + n].copy_from_slice(&avail[..n]);
                    got += n;
                    chunks.pos += n;
                }
                Err(e) => return Err(Some(e)),
            }
        }
        let network = [hdr[20], hdr[21], hdr[22], hdr[23]];
        let network = if big_endian {
            i32::from_be_bytes(network)
        } else {
            i32::from_le_bytes(network)
        };
        Ok(PlainPcap {
            chunks,
            hdr_len: if modified { 24 } else { 16 },
            big_endian,
            nanos,
            link: crate::capture::link_type_from_dlt(network),
            carry: Vec::new(),
            consumed: 24,
            head_len: 0,
        })
    }

    /// (time, wire length, captured length) of the record header at the start of `b` (at
    /// least 16 bytes).
    #[inline]
    fn header(b: &[u8], big_endian: bool, nanos: bool) -> (Timestamp, u32, usize) {
        let Some(&[s0, s1, s2, s3, f0, f1, f2, f3, c0, c1, c2, c3, w0, w1, w2, w3]) =
            b.first_chunk::<16>()
        else {
            return (Timestamp::from_micros(0), 0, 0);
        };
        let le = |w: [u8; 4]| u32::from_le_bytes(w);
        let mut fields = [
            le([s0, s1, s2, s3]),
            le([f0, f1, f2, f3]),
            le([c0, c1, c2, c3]),
            le([w0, w1, w2, w3]),
        ];
        // One choice of byte order per record, not one per field.
        if big_endian {
            fields = fields.map(u32::swap_bytes);
        }
        let [sec, frac, caplen, wire_len] = fields;
        let frac = if nanos {
            i64::from(frac) / 1000
        } else {
            i64::from(frac)
        };
        let ts = Timestamp::from_micros(i64::from(sec).saturating_mul(1_000_000) + frac);
        (ts, wire_len, caplen as usize)
    }

    /// The next record, `None` at the end of the input.
    fn next(&mut self) -> Result<Option<PlainRecord>, PlainStop> {
        self.consumed += self.head_len;
        self.head_len = 0;
        let hl = self.hdr_len;
        let avail = self.chunks.peek().map_err(PlainStop::Read)?;
        if avail.len() >= hl {
            let (ts, wire_len, caplen) = Self::header(avail, self.big_endian, self.nanos);
            let rec = hl.saturating_add(caplen);
            if rec <= avail.len() {
                let start = self.chunks.pos + hl;
                self.chunks.pos += rec;
                self.head_len = rec as u64;
                return Ok(Some(PlainRecord {
                    ts,
                    wire_len,
                    start,
                    len: caplen,
                    in_carry: false,
                }));
            }
        }
        self.assemble()
    }

    /// A record that straddles chunks (or the end of the input), put together in `carry`.
    fn assemble(&mut self) -> Result<Option<PlainRecord>, PlainStop> {
        let hl = self.hdr_len;
        self.carry.clear();
        let mut need = hl;
        let mut fields = None;
        loop {
            if self.carry.len() >= need {
                match fields {
                    None => {
                        let (ts, wire_len, caplen) =
                            Self::header(&self.carry, self.big_endian, self.nanos);
                        // As pcap-parser: a record of `MAX_BLOCK` bytes or more is a damaged
                        // length when that much data follows, else the capture is cut off.
                        need = hl.saturating_add(caplen).min(MAX_BLOCK);
                        fields = Some((ts, wire_len, caplen));
                        continue;
                    }
                    Some((ts, wire_len, caplen)) => {
                        if hl.saturating_add(caplen) >= MAX_BLOCK {
                            return Err(PlainStop::TooLong);
                        }
                        self.head_len = (hl + caplen) as u64;
                        return Ok(Some(PlainRecord {
                            ts,
                            wire_len,
                            start: hl,
                            len: caplen,
                            in_carry: true,
                        }));
                    }
                }
            }
            let avail = self.chunks.peek().map_err(PlainStop::Read)?;
            if avail.is_empty() {
                return if self.carry.is_empty() {
                    Ok(None)
                } else {
                    Err(PlainStop::Cut)
                };
            }
            let take = (need - self.carry.len()).min(avail.len());
            self.carry.extend_from_slice(&avail[..take]);
            self.chunks.pos += take;
        }
    }

    fn data(&self, r: &PlainRecord) -> Option<&[u8]> {
        let buf = if r.in_carry {
            &self.carry
        } else {
            &self.chunks.cur
        };
        buf.get(r.start..r.start.checked_add(r.len)?)
    }
}

/// A `Read` that fills the buffer it is given (pcap-parser takes a short read for the end of
/// the header) and keeps the last error so that the reason for a stop can be told.
struct FillRead {
    inner: Box<dyn Read + Send>,
    error: Arc<Mutex<Option<std::io::Error>>>,
}

impl Read for FillRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let msg = std::io::Error::new(e.kind(), e.to_string());
                    if let Ok(mut slot) = self.error.lock() {
                        *slot = Some(e);
                    }
                    if n == 0 {
                        return Err(msg);
                    }
                    break;
                }
            }
        }
        Ok(n)
    }
}

/// Compression formats told by their magic bytes.
fn compression_of(head: &[u8]) -> Option<&'static str> {
    const MAGICS: [(&[u8], &str); 6] = [
        (&[0x1f, 0x8b], "gzip"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (b"BZh", "bzip2"),
        (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
        (b"PK\x03\x04", "zip"),
    ];
    MAGICS
        .iter()
        .find(|(m, _)| head.starts_with(m))
        .map(|(_, name)| *name)
}

/// One interface of a pcapng section.
#[derive(Clone, Copy)]
struct Iface {
    link: LinkType,
    /// Time units per second.
    units: u64,
    offset_secs: i64,
}

/// The packet at the head of an input: its data lies in the parse buffer at `start..start+len`
/// until `consume` bytes are consumed.
#[derive(Clone, Copy)]
struct Head {
    ts: Timestamp,
    link: LinkType,
    wire_len: u32,
    start: usize,
    len: usize,
    consume: usize,
    /// A plain pcap's record put together in its carry buffer.
    in_carry: bool,
}

/// One input being read.
struct Source {
    info: InputInfo,
    /// A plain pcap, read in place; `reader` reads every other form.
    plain: Option<PlainPcap>,
    /// Whether the input is a plain pcap (read in place, cheap enough for the engine's thread).
    in_place: bool,
    reader: Option<Box<dyn PcapReaderIterator + Send>>,
    io_error: Arc<Mutex<Option<std::io::Error>>>,
    hasher: Option<std::thread::JoinHandle<Hashed>>,
    legacy: Option<(LinkType, bool)>,
    ifaces: Vec<Iface>,
    head: Option<Head>,
    capacity: usize,
    /// Time of the last packet (for pcapng simple packet blocks, which carry none).
    last_ts: Timestamp,
}

/// The file (or standard input) behind an input.
fn open_raw(name: &str) -> Result<Box<dyn Read + Send>, InputError> {
    if name == STDIN {
        return Ok(Box::new(std::io::stdin()));
    }
    let f = std::fs::File::open(name).map_err(|source| InputError::Open {
        file: name.to_string(),
        source,
    })?;
    Ok(Box::new(f))
}

impl Source {
    /// Opens `name`; with `progress`, through a hashing thread (the input is then read to its
    /// end in any case), else directly with a small buffer (to look at its first packet only).
    fn open(name: &str, progress: Option<Arc<AtomicU64>>) -> Result<Source, InputError> {
        let raw = open_raw(name)?;
        match progress {
            Some(p) => {
                let (r, h) = ChunkReader::spawn(raw, p).map_err(|source| InputError::Open {
                    file: name.to_string(),
                    source,
                })?;
                Source::with_reader(name, r, Some(h), PARSE_BUFFER)
            }
            None => Source::with_reader(name, ChunkReader::direct(raw), None, PEEK_BUFFER),
        }
    }

    fn with_reader(
        name: &str,
        mut chunks: ChunkReader,
        hasher: Option<std::thread::JoinHandle<Hashed>>,
        capacity: usize,
    ) -> Result<Source, InputError> {
        let open_err = |source| InputError::Open {
            file: name.to_string(),
            source,
        };
        // The first bytes tell the compression and then the format (a chunk is whole unless
        // the input ends: the first one holds them all).
        let mut magic = [0u8; 8];
        let first = chunks.peek().map_err(open_err)?;
        let got = first.len().min(magic.len());
        magic[..got].copy_from_slice(&first[..got]);
        let magic = &magic[..got];
        let compression = compression_of(magic);
        let plain = if compression.is_none() {
            plain_pcap_magic(magic)
        } else {
            None
        };
        let info = InputInfo {
            file: name.to_string(),
            sha256: String::new(),
            size: 0,
            format: "empty",
            compression: None,
            packets: 0,
            link_types: Vec::new(),
            first: None,
            last: None,
            truncated: None,
        };
        let io_error = Arc::new(Mutex::new(None));
        let mut src = Source {
            info,
            plain: None,
            in_place: false,
            reader: None,
            io_error,
            hasher,
            legacy: None,
            ifaces: Vec::new(),
            head: None,
            capacity,
            last_ts: Timestamp::from_micros(0),
        };
        if let Some(kind) = plain {
            src.in_place = true;
            src.info.format = if kind.1 { "pcap-nsec" } else { "pcap" };
            match PlainPcap::open(chunks, kind) {
                Ok(p) => {
                    push_link(&mut src.info.link_types, p.link);
                    src.plain = Some(p);
                }
                Err(None) => {
                    src.info.format = "pcap";
                    src.damaged(0, "cut off inside the file header");
                }
                Err(Some(e)) => src.damaged(0, &format!("read error ({e})")),
            }
            src.advance();
            return Ok(src);
        }
        let raw: Box<dyn Read + Send> = Box::new(chunks);
        let data: Box<dyn Read + Send> = match compression {
            Some("gzip") => {
                src.info.compression = Some("gzip");
                Box::new(flate2::read::MultiGzDecoder::new(raw))
            }
            Some(other) => {
                return Err(InputError::NotCapture {
                    file: name.to_string(),
                    hint: format!(
                        " (it is {other}-compressed: decompress it first, or compress with gzip)"
                    ),
                })
            }
            None => raw,
        };
        let fill_read = FillRead {
            inner: data,
            error: src.io_error.clone(),
        };
        match pcap_parser::create_reader(capacity, fill_read) {
            Ok(r) => src.reader = Some(r),
            Err(PcapError::Eof) => {
                if src.info.compression.is_some() {
                    src.damaged(0, "the compressed data holds no capture");
                }
            }
            Err(PcapError::Incomplete(_)) => {
                src.info.format = "pcap";
                src.damaged(0, "cut off inside the file header");
            }
            Err(PcapError::ReadError) => {
                let reason = src.read_error_reason();
                src.damaged(0, &reason);
            }
            Err(_) => {
                return Err(InputError::NotCapture {
                    file: name.to_string(),
                    hint: String::new(),
                })
            }
        }
        src.advance();
        Ok(src)
    }

    fn read_error_reason(&self) -> String {
        let e = self.io_error.lock().ok().and_then(|mut e| e.take());
        match (e, self.info.compression) {
            (Some(e), Some(c)) => format!("{c} data cut off or damaged ({e})"),
            (Some(e), None) => format!("read error ({e})"),
            (None, _) => "read error".into(),
        }
    }

    /// Stops reading here: what was read stays, the rest is reported as cut off.
    fn damaged(&mut self, at: u64, reason: &str) {
        self.info.truncated = Some(Truncation {
            at_byte: at,
            after_packets: self.info.packets,
            reason: reason.to_string(),
        });
        self.reader = None;
        self.plain = None;
        self.head = None;
    }

    fn consumed(&self) -> u64 {
        if let Some(p) = &self.plain {
            return p.consumed;
        }
        self.reader.as_ref().map_or(0, |r| r.consumed() as u64)
    }

    /// Counts a packet read at `ts`.
    #[inline]
    fn count(&mut self, ts: Timestamp) {
        self.last_ts = ts;
        self.info.count(ts);
    }

    /// The packet of a record read in place.
    #[inline]
    fn found(&mut self, ts: Timestamp, link: LinkType, wire_len: u32, at: (usize, usize)) -> Head {
        self.count(ts);
        Head {
            ts,
            link,
            wire_len,
            start: at.0,
            len: at.1,
            consume: 0,
            in_carry: false,
        }
    }

    /// `advance` for a plain pcap.
    #[inline]
    fn advance_plain(&mut self) {
        self.head = None;
        let Some(link) = self.plain.as_ref().map(|p| p.link) else {
            return;
        };
        if let Some(r) = self.next_plain() {
            self.head = Some(Head {
                ts: r.ts,
                link,
                wire_len: r.wire_len,
                start: r.start,
                len: r.len,
                consume: 0,
                in_carry: r.in_carry,
            });
        }
    }

    /// Hands the packets of a plain pcap whose head was handed out to `f`, record by record
    /// where they lie (no head kept between them), until the input ends or is cut off (`head`
    /// is then `None`) or `f` fails (the packet handed out last then stands as the head handed
    /// out: `advance` goes on after it).
    #[inline]
    fn run_plain<E>(
        &mut self,
        f: &mut impl FnMut(&RawPacket<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            self.run_in_chunk(f)?;
            // A record that straddles chunks, the next chunk, the end: the general step.
            let Some(r) = self.next_plain() else {
                break;
            };
            let Some(p) = &self.plain else {
                break;
            };
            f(&RawPacket {
                ts: r.ts,
                link: p.link,
                data: p.data(&r).unwrap_or_default(),
                wire_len: r.wire_len,
            })?;
        }
        self.head = None;
        Ok(())
    }

    /// `run_plain` over the records that lie whole in the current chunk: what
    /// [`PlainPcap::next`] and [`count`](Self::count) do for each, in one loop over the chunk.
    #[inline]
    fn run_in_chunk<E>(
        &mut self,
        f: &mut impl FnMut(&RawPacket<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Source {
            plain: Some(p),
            info,
            last_ts,
            ..
        } = self
        else {
            return Ok(());
        };
        let (hl, big_endian, nanos, link) = (p.hdr_len, p.big_endian, p.nanos, p.link);
        loop {
            let pos = p.chunks.pos;
            let Some(avail) = p.chunks.cur.get(pos..) else {
                return Ok(());
            };
            if avail.len() < hl {
                return Ok(());
            }
            let (ts, wire_len, caplen) = PlainPcap::header(avail, big_endian, nanos);
            let rec = hl.saturating_add(caplen);
            let Some(data) = avail.get(hl..rec) else {
                return Ok(());
            };
            p.consumed += p.head_len;
            p.head_len = rec as u64;
            p.chunks.pos = pos + rec;
            *last_ts = ts;
            info.count(ts);
            f(&RawPacket {
                ts,
                link,
                data,
                wire_len,
            })?;
        }
    }

    /// The next record of a plain pcap, counted; `None` at its end or where it stops (then
    /// reported as cut off or damaged).
    #[inline]
    fn next_plain(&mut self) -> Option<PlainRecord> {
        let p = self.plain.as_mut()?;
        match p.next() {
            Ok(Some(r)) => {
                self.count(r.ts);
                Some(r)
            }
            Ok(None) => {
                self.plain = None;
                None
            }
            Err(stop) => {
                self.plain_stopped(stop);
                None
            }
        }
    }

    /// Reports where and why a plain pcap stopped before its end.
    #[cold]
    fn plain_stopped(&mut self, stop: PlainStop) {
        let at = self.consumed();
        let reason = match stop {
            PlainStop::Cut => "the capture ends inside a record (cut off)".to_string(),
            PlainStop::TooLong => {
                "a record longer than 64 MiB (a damaged length field)".to_string()
            }
            PlainStop::Read(e) => format!("read error ({e})"),
        };
        self.damaged(at, &reason);
    }

    /// Consumes the current head (if any) and reads up to the next packet; `head` is `None` at
    /// the end of the input or where it is cut off.
    #[inline]
    fn advance(&mut self) {
        if self.in_place {
            self.advance_plain();
        } else {
            self.advance_parsed();
        }
    }

    /// `advance` for every input pcap-parser reads.
    #[inline(never)]
    fn advance_parsed(&mut self) {
        if let (Some(h), Some(r)) = (self.head.take(), self.reader.as_mut()) {
            r.consume_noshift(h.consume);
        }
        loop {
            let Some(reader) = self.reader.as_mut() else {
                return;
            };
            // (packet time, link, wire length, data address, data length) of a packet block.
            let mut pkt: Option<(Timestamp, LinkType, u32, usize, usize)> = None;
            let res = reader.next();
            let step = match res {
                Ok((off, block)) => {
                    match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            let link = crate::capture::link_type_from_dlt(h.network.0);
                            let nanos = h.is_nanosecond_precision();
                            self.legacy = Some((link, nanos));
                            self.info.format = if nanos { "pcap-nsec" } else { "pcap" };
                            push_link(&mut self.info.link_types, link);
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let (link, nanos) = self.legacy.unwrap_or((LinkType::ETHERNET, false));
                            let frac = if nanos {
                                i64::from(b.ts_usec) / 1000
                            } else {
                                i64::from(b.ts_usec)
                            };
                            let ts = Timestamp::from_micros(
                                i64::from(b.ts_sec).saturating_mul(1_000_000) + frac,
                            );
                            pkt =
                                Some((ts, link, b.origlen, b.data.as_ptr() as usize, b.data.len()));
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            self.info.format = "pcapng";
                            self.ifaces.clear();
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            let link = crate::capture::link_type_from_dlt(idb.linktype.0);
                            push_link(&mut self.info.link_types, link);
                            self.ifaces.push(Iface {
                                link,
                                units: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                                offset_secs: idb.ts_offset(),
                            });
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            // A packet of an undeclared interface cannot be decoded: skipped.
                            if let Some(i) = self.ifaces.get(epb.if_id as usize) {
                                let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                let ts = ng_time(raw, i);
                                let caplen = (epb.caplen as usize).min(epb.data.len());
                                pkt = Some((
                                    ts,
                                    i.link,
                                    epb.origlen,
                                    epb.data.as_ptr() as usize,
                                    caplen,
                                ));
                            }
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            if let Some(i) = self.ifaces.first() {
                                pkt = Some((
                                    self.last_ts,
                                    i.link,
                                    spb.origlen,
                                    spb.data.as_ptr() as usize,
                                    spb.data.len().min(spb.origlen as usize),
                                ));
                            }
                        }
                        PcapBlockOwned::NG(_) => {}
                    }
                    Ok(off)
                }
                Err(e) => Err(match e {
                    PcapError::Eof => Stop::End,
                    PcapError::Incomplete(_) => Stop::Refill,
                    PcapError::UnexpectedEof => Stop::Cut,
                    PcapError::BufferTooSmall => Stop::Grow,
                    PcapError::ReadError => Stop::ReadError,
                    other => Stop::Damaged(format!("{other:?}").chars().take(60).collect()),
                }),
            };
            match step {
                Ok(off) => {
                    let Some((ts, link, wire_len, addr, len)) = pkt else {
                        reader.consume_noshift(off);
                        continue;
                    };
                    let base = reader.data().as_ptr() as usize;
                    let start = addr.wrapping_sub(base);
                    if reader
                        .data()
                        .get(start..start.saturating_add(len))
                        .is_none()
                    {
                        // Cannot happen (the data lies in the buffer); skip rather than panic.
                        reader.consume_noshift(off);
                        continue;
                    }
                    let h = self.found(ts, link, wire_len, (start, len));
                    self.head = Some(Head { consume: off, ..h });
                    return;
                }
                Err(Stop::End) => {
                    self.reader = None;
                    return;
                }
                Err(Stop::Refill) => {
                    if reader.refill().is_err() {
                        let at = self.consumed();
                        let reason = self.read_error_reason();
                        return self.damaged(at, &reason);
                    }
                }
                Err(Stop::Grow) => {
                    if self.capacity >= MAX_BLOCK {
                        let at = self.consumed();
                        return self
                            .damaged(at, "a record longer than 64 MiB (a damaged length field)");
                    }
                    self.capacity *= 2;
                    reader.grow(self.capacity);
                    if reader.refill().is_err() {
                        let at = self.consumed();
                        let reason = self.read_error_reason();
                        return self.damaged(at, &reason);
                    }
                }
                Err(Stop::Cut) => {
                    let at = self.consumed();
                    return self.damaged(at, "the capture ends inside a record (cut off)");
                }
                Err(Stop::ReadError) => {
                    let at = self.consumed();
                    let reason = self.read_error_reason();
                    return self.damaged(at, &reason);
                }
                Err(Stop::Damaged(what)) => {
                    let at = self.consumed();
                    return self.damaged(at, &format!("damaged record ({what})"));
                }
            }
        }
    }

    /// The head packet's bytes.
    #[inline]
    fn head_packet(&self) -> Option<RawPacket<'_>> {
        let h = self.head?;
        let data = match &self.plain {
            Some(p) => p.data(&PlainRecord {
                ts: h.ts,
                wire_len: h.wire_len,
                start: h.start,
                len: h.len,
                in_carry: h.in_carry,
            })?,
            None => self.reader.as_ref()?.data().get(h.start..h.start + h.len)?,
        };
        Some(RawPacket {
            ts: h.ts,
            link: h.link,
            data,
            wire_len: h.wire_len,
        })
    }

    /// Ends reading (the reading thread hashes whatever is left) and returns the facts.
    fn finish(mut self) -> InputInfo {
        self.reader = None;
        self.plain = None;
        self.head = None;
        if let Some(h) = self.hasher.take() {
            if let Ok(hashed) = h.join() {
                self.info.sha256 = hashed.sha256;
                self.info.size = hashed.bytes;
                if let Some(e) = hashed.error {
                    if self.info.truncated.is_none() {
                        self.info.truncated = Some(Truncation {
                            at_byte: 0,
                            after_packets: self.info.packets,
                            reason: format!("read error after the last packet ({e})"),
                        });
                    }
                }
            }
        }
        self.info
    }
}

enum Stop {
    End,
    Refill,
    Cut,
    Grow,
    ReadError,
    Damaged(String),
}

fn push_link(v: &mut Vec<i32>, link: LinkType) {
    if !v.contains(&link.0) {
        v.push(link.0);
    }
}

/// Packet time of a pcapng timestamp in its interface's units.
fn ng_time(raw: u64, i: &Iface) -> Timestamp {
    let micros = if i.units == 1_000_000 {
        i128::from(raw)
    } else {
        i128::from(raw) * 1_000_000 / i128::from(i.units)
    };
    let micros = micros + i128::from(i.offset_secs) * 1_000_000;
    Timestamp::from_micros(micros.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// An input not opened yet, with the time of its first packet.
struct Waiting {
    index: usize,
    name: String,
    first: Option<Timestamp>,
    /// A plain pcap (read in place).
    in_place: bool,
}

/// Every input, merged in packet-time order.
pub struct Inputs {
    names: Vec<String>,
    /// Inputs being read, by index in `names`.
    open: Vec<(usize, Source)>,
    /// Inputs not opened yet, earliest first packet first.
    waiting: std::collections::VecDeque<Waiting>,
    done: Vec<Option<InputInfo>>,
    /// Position in `open` of the input whose head packet was handed out last.
    current: Option<usize>,
    progress: Arc<AtomicU64>,
    total_size: u64,
}

impl Inputs {
    /// Checks every input (it opens and is a capture) and prepares to read them merged.
    pub fn open(names: &[PathBuf]) -> Result<Inputs, InputError> {
        if names.is_empty() {
            return Err(InputError::NoInput);
        }
        let names: Vec<String> = names.iter().map(|p| p.display().to_string()).collect();
        if names.iter().filter(|n| *n == STDIN).count() > 1 {
            return Err(InputError::StdinTwice);
        }
        let progress = Arc::new(AtomicU64::new(0));
        let mut total_size = 0;
        let mut waiting = Vec::new();
        let mut open = Vec::new();
        for (index, name) in names.iter().enumerate() {
            // Standard input and pipes (`<(zcat f)`, a FIFO) can be read once only: opened now,
            // their first packet is their head.
            let regular = std::fs::metadata(name).is_ok_and(|m| m.is_file());
            if name == STDIN || !regular {
                open.push((index, Source::open(name, Some(progress.clone()))?));
                continue;
            }
            total_size += std::fs::metadata(name).map(|m| m.len()).unwrap_or(0);
            // A look at the first packet orders the inputs and checks the format early.
            let peek = Source::open(name, None)?;
            waiting.push(Waiting {
                index,
                name: name.clone(),
                first: peek.head.map(|h| h.ts),
                in_place: peek.in_place,
            });
        }
        // No first packet (empty or cut in the header): opened at once, to be reported.
        waiting.sort_by_key(|w| (w.first.is_some(), w.first, w.index));
        Ok(Inputs {
            done: vec![None; names.len()],
            names,
            open,
            waiting: waiting.into(),
            current: None,
            progress,
            total_size,
        })
    }

    /// Whether every input is a plain pcap, read in place: cheap enough to read on the
    /// consumer's own thread (see [`ReadAhead`]).
    fn all_in_place(&self) -> bool {
        self.open.iter().all(|(_, s)| s.in_place) && self.waiting.iter().all(|w| w.in_place)
    }

    /// The names given, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Total size of the input files (standard input not counted).
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// Bytes read so far from all inputs (as stored, compressed or not).
    pub fn bytes_read(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    fn close(&mut self, pos: usize) {
        let (index, src) = self.open.swap_remove(pos);
        let info = src.finish();
        if let Some(slot) = self.done.get_mut(index) {
            *slot = Some(info);
        }
    }

    fn activate(&mut self) -> Result<(), InputError> {
        let Some(w) = self.waiting.pop_front() else {
            return Ok(());
        };
        let src = Source::open(&w.name, Some(self.progress.clone()))?;
        self.open.push((w.index, src));
        Ok(())
    }

    /// The next packet in time order across inputs, or `None` when every input is read.
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, InputError> {
        if let Some(pos) = self.current.take() {
            if let Some((_, src)) = self.open.get_mut(pos) {
                src.advance();
            }
        }
        // One input being read and none waiting (a single file, or the last of several): no
        // merge to do, its head is next. The loop below closes it once it ends.
        if self.waiting.is_empty() && matches!(self.open.as_slice(), [(_, s)] if s.head.is_some()) {
            self.current = Some(0);
            return Ok(self.open.first().and_then(|(_, s)| s.head_packet()));
        }
        loop {
            // Inputs that ended are closed (their hash collected).
            if let Some(pos) = self.open.iter().position(|(_, s)| s.head.is_none()) {
                self.close(pos);
                continue;
            }
            let best = self
                .open
                .iter()
                .enumerate()
                .filter_map(|(pos, (_, s))| s.head.map(|h| (h.ts, pos)))
                .min();
            let next_waiting = self.waiting.front().map(|w| w.first);
            match (best, next_waiting) {
                (None, None) => return Ok(None),
                (Some((ts, _)), Some(first)) if first.is_none_or(|f| f <= ts) => self.activate()?,
                (None, Some(_)) => self.activate()?,
                (Some((_, pos)), _) => {
                    self.current = Some(pos);
                    return Ok(self.open.get(pos).and_then(|(_, s)| s.head_packet()));
                }
            }
        }
    }

    /// Hands every packet to `f`, in `next_packet`'s order, until every input is read or `f`
    /// fails. A plain pcap read alone (none waiting) goes to `f` straight from its records,
    /// past the merge and the head each input keeps for it.
    pub fn for_each_packet<E: From<InputError>>(
        &mut self,
        mut f: impl FnMut(&RawPacket<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            if self.waiting.is_empty() && self.current == Some(0) {
                if let [(_, s)] = self.open.as_mut_slice() {
                    if s.plain.is_some() {
                        s.run_plain(&mut f)?;
                    }
                }
            }
            match self.next_packet()? {
                Some(p) => f(&p)?,
                None => return Ok(()),
            }
        }
    }

    /// Reads what is left (hashing it) and returns every input's facts, in the order given.
    pub fn finish(mut self) -> Vec<InputInfo> {
        while !self.open.is_empty() {
            self.close(0);
        }
        // Inputs never reached (the run stopped early): hashed now.
        while let Some(w) = self.waiting.pop_front() {
            if let Ok(src) = Source::open(&w.name, Some(self.progress.clone())) {
                let info = src.finish();
                if let Some(slot) = self.done.get_mut(w.index) {
                    *slot = Some(info);
                }
            }
        }
        self.done.into_iter().flatten().collect()
    }
}

/// Whether `path` names standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == STDIN
}

/// Packets copied out of the inputs, a batch at a time (see [`ReadAhead`]).
struct Batch {
    data: Vec<u8>,
    /// (time, link, wire length, start in `data`, length) per packet.
    pkts: Vec<(Timestamp, LinkType, u32, usize, usize)>,
}

/// Bytes of packet data a read-ahead batch holds before it is handed over.
const BATCH_BYTES: usize = 256 * 1024;
/// Packets a read-ahead batch holds before it is handed over.
const BATCH_PACKETS: usize = 2048;
/// Batches between the read-ahead thread and the consumer (besides the two being used).
const BATCH_QUEUE: usize = 4;

impl Batch {
    fn new() -> Batch {
        Batch {
            data: Vec::with_capacity(BATCH_BYTES + 65536),
            pkts: Vec::with_capacity(BATCH_PACKETS),
        }
    }
    fn full(&self) -> bool {
        self.data.len() >= BATCH_BYTES || self.pkts.len() >= BATCH_PACKETS
    }
}

/// What the read-ahead thread sends: a batch, or the error that stopped it.
enum Ahead {
    Batch(Batch),
    Failed(InputError),
}

/// [`Inputs`] read on a thread of their own: parsing (and, on the inputs' own reading threads,
/// hashing) overlaps the consumer's work on the previous packets. Packets come in the same
/// order as from [`Inputs::next_packet`], copied in batches of at most `BATCH_PACKETS` packets or
/// `BATCH_BYTES` bytes; buffers are reused, so nothing is allocated per packet or per batch once
/// running. Plain pcap files need no such thread: they are read in place, which costs less
/// than the copy into a batch, so when every input is one they are read on the consumer's
/// thread (still hashed on their reading threads).
pub struct ReadAhead {
    /// The inputs, when read on the consumer's thread (then `rx` is never connected).
    inline: Option<Inputs>,
    rx: mpsc::Receiver<Ahead>,
    back: mpsc::SyncSender<Batch>,
    cur: Option<Batch>,
    pos: usize,
    done: bool,
    progress: Arc<AtomicU64>,
    total_size: u64,
    handle: Option<std::thread::JoinHandle<Vec<InputInfo>>>,
}

impl ReadAhead {
    /// Starts reading `inputs` ahead on a thread.
    pub fn start(mut inputs: Inputs) -> std::io::Result<ReadAhead> {
        let (tx, rx) = mpsc::sync_channel::<Ahead>(BATCH_QUEUE);
        let (back, spare) = mpsc::sync_channel::<Batch>(BATCH_QUEUE + 2);
        let progress = inputs.progress.clone();
        let total_size = inputs.total_size;
        let ahead = |inline, handle| ReadAhead {
            inline,
            rx,
            back,
            cur: None,
            pos: 0,
            done: false,
            progress,
            total_size,
            handle,
        };
        if inputs.all_in_place() {
            return Ok(ahead(Some(inputs), None));
        }
        let handle = std::thread::Builder::new()
            .name("simboxd-parse".into())
            .spawn(move || {
                let mut batch = Batch::new();
                loop {
                    match inputs.next_packet() {
                        Ok(Some(p)) => {
                            let start = batch.data.len();
                            batch.data.extend_from_slice(p.data);
                            batch
                                .pkts
                                .push((p.ts, p.link, p.wire_len, start, p.data.len()));
                            if batch.full() {
                                let next = spare.try_recv().unwrap_or_else(|_| Batch::new());
                                if tx.send(Ahead::Batch(batch)).is_err() {
                                    break;
                                }
                                batch = next;
                            }
                        }
                        Ok(None) => {
                            if !batch.pkts.is_empty() {
                                let _ = tx.send(Ahead::Batch(batch));
                            }
                            break;
                        }
                        Err(e) => {
                            let _ = tx.send(Ahead::Failed(e));
                            break;
                        }
                    }
                }
                drop(tx);
                inputs.finish()
            })?;
        Ok(ahead(None, Some(handle)))
    }

    /// Total size of the input files (standard input not counted).
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// Bytes read so far from all inputs (as stored, compressed or not).
    pub fn bytes_read(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// The next packet, as [`Inputs::next_packet`] gives it.
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, InputError> {
        if let Some(inputs) = &mut self.inline {
            return inputs.next_packet();
        }
        loop {
            if let Some(b) = &self.cur {
                if self.pos < b.pkts.len() {
                    break;
                }
            }
            if let Some(mut old) = self.cur.take() {
                old.data.clear();
                old.pkts.clear();
                let _ = self.back.try_send(old);
            }
            if self.done {
                return Ok(None);
            }
            match self.rx.recv() {
                Ok(Ahead::Batch(b)) => {
                    self.cur = Some(b);
                    self.pos = 0;
                }
                Ok(Ahead::Failed(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
        let Some(b) = &self.cur else {
            return Ok(None);
        };
        let Some(&(ts, link, wire_len, start, len)) = b.pkts.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        Ok(Some(RawPacket {
            ts,
            link,
            data: b.data.get(start..start + len).unwrap_or_default(),
            wire_len,
        }))
    }

    /// Hands every packet to `f`, as [`Inputs::for_each_packet`] does.
    pub fn for_each_packet<E: From<InputError>>(
        &mut self,
        mut f: impl FnMut(&RawPacket<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(inputs) = &mut self.inline {
            return inputs.for_each_packet(f);
        }
        while let Some(p) = self.next_packet()? {
            f(&p)?;
        }
        Ok(())
    }

    /// The count of bytes read so far from all inputs, shared (for a progress display while
    /// `for_each_packet` runs).
    pub fn bytes_read_counter(&self) -> Arc<AtomicU64> {
        self.progress.clone()
    }

    /// Stops reading (what is left is still hashed) and returns every input's facts, in the
    /// order given.
    pub fn finish(mut self) -> Vec<InputInfo> {
        if let Some(inputs) = self.inline.take() {
            return inputs.finish();
        }
        // Whatever is queued is not wanted: the thread ends at its next send.
        let rx = std::mem::replace(&mut self.rx, mpsc::sync_channel(0).1);
        drop(rx);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}
