//! `analyze --format json` without holding the records: call, registration and media-flow
//! records go to an unlinked temporary file as they are produced and are streamed into the JSON
//! document's arrays at the end; the per-line figures are kept as they come.
//!
//! Contract: the document written by `write_document` is byte for byte what
//! `serde_json::to_writer_pretty` makes of the `Analysis` `analyze_file` returns (same field
//! order, same record order: calls by start then Call-ID, registrations and media flows as
//! produced; the same `MAX_RECORDS` per kind; phone numbers through `[privacy]`), and `LineFacts`
//! gives the `lines` `analyze`'s `line_entries` computes from the full records. Memory: a sort
//! chunk of `CHUNK_CALLS` calls, one read buffer per sorted run, and per line its counters plus
//! 16 bytes per call (span) and 8 bytes per inbound call (called-number hash) for the exact
//! figures (concurrency, distinct numbers), instead of the records (about 1 KB each).

use super::{Analysis, LineEntry, MAX_RECORDS};
use crate::figures::{self, Span, Taken};
use crate::privacy::Pseudonymizer;
use serde::Serialize;
use simboxd_core::model::{
    CallRecord, FastMap, MediaFlowRecord, Outcome, RegistrationRecord, SipOnlyAnswers, Timestamp,
};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::os::unix::fs::FileExt;

/// Calls sorted in memory at once before they are written as one sorted run.
pub const CHUNK_CALLS: usize = 8192;
/// Read buffer per sorted run (and per spool file) while the document is written.
const READ_BUF: usize = 64 * 1024;

/// A temporary file that is gone from the directory as soon as it is created (the data lives
/// until the handle is dropped, even if the process is killed).
fn unlinked_temp(tag: &str) -> io::Result<File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    for _ in 0..16 {
        let name = format!(
            "simboxd-{tag}-{}-{}-{:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            rand::random::<u64>()
        );
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => {
                std::fs::remove_file(&path)?;
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free temporary file name"))
}

/// Length-prefixed postcard records appended to a temporary file.
struct SpoolFile {
    out: BufWriter<File>,
    len: u64,
    buf: Vec<u8>,
}

impl SpoolFile {
    fn new(tag: &str) -> io::Result<SpoolFile> {
        Ok(SpoolFile {
            out: BufWriter::with_capacity(READ_BUF, unlinked_temp(tag)?),
            len: 0,
            buf: Vec::with_capacity(1024),
        })
    }

    fn push<T: Serialize>(&mut self, x: &T) -> io::Result<()> {
        self.buf.clear();
        self.buf =
            postcard::to_extend(x, std::mem::take(&mut self.buf)).map_err(io::Error::other)?;
        let n = u32::try_from(self.buf.len()).map_err(io::Error::other)?;
        self.out.write_all(&n.to_le_bytes())?;
        self.out.write_all(&self.buf)?;
        self.len += 4 + u64::from(n);
        Ok(())
    }

    fn into_file(self) -> io::Result<File> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// Reads length-prefixed records from `[start, end)` of a file with positioned reads (several
/// readers share one handle).
struct RunReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
}

impl<'a> RunReader<'a> {
    fn new(file: &'a File, start: u64, end: u64) -> Self {
        RunReader {
            file,
            pos: start,
            end,
            buf: Vec::new(),
            at: 0,
        }
    }

    /// Makes `n` bytes available at `self.at`; false at the end of the run.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        if self.buf.len() - self.at >= n {
            return Ok(true);
        }
        self.buf.drain(..self.at);
        self.at = 0;
        let want = (n - self.buf.len()).max(READ_BUF);
        let take = want.min((self.end - self.pos) as usize);
        if self.buf.len() + take < n {
            return Ok(false);
        }
        let old = self.buf.len();
        self.buf.resize(old + take, 0);
        self.file.read_exact_at(&mut self.buf[old..], self.pos)?;
        self.pos += take as u64;
        Ok(true)
    }

    fn next<T: serde::de::DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        if !self.fill(4)? {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.buf[self.at..self.at + 4]);
        let n = u32::from_le_bytes(len) as usize;
        self.at += 4;
        if !self.fill(n)? {
            return Err(io::Error::other("record spool cut short"));
        }
        let x = postcard::from_bytes(&self.buf[self.at..self.at + n]).map_err(io::Error::other)?;
        self.at += n;
        Ok(Some(x))
    }
}

/// Per-line figures of `analyze`'s `lines`, kept from the records as they come (see the module
/// contract); `entries` gives what `line_entries` gives over the same records.
#[derive(Default)]
pub struct LineFacts {
    lines: FastMap<IpAddr, Box<Facts>>,
    tap_media: bool,
    hasher: ahash::RandomState,
}

#[derive(Default)]
struct Facts {
    entry: LineEntry,
    /// Called numbers of inbound calls (hashes; counted distinct at the end).
    numbers: Vec<u64>,
    /// Inbound calls taken whatever the tap (voice both ways, early media) and their numbers.
    taken_media: u64,
    taken_media_answered: u64,
    numbers_media: Vec<u64>,
    /// Answered inbound calls without media that lasted: taken only on a SIP-only tap.
    taken_sip: u64,
    taken_sip_answered: u64,
    numbers_sip: Vec<u64>,
    peers: Vec<IpAddr>,
    peers_deduped: usize,
    /// (start, end or `i64::MIN` while open at the end), microseconds.
    spans: Vec<(i64, i64)>,
    talk: Vec<f64>,
}

impl LineFacts {
    pub fn new() -> Self {
        LineFacts {
            // Fixed seeds: the same figures on every run.
            hasher: ahash::RandomState::with_seeds(0x11, 0x22, 0x33, 0x44),
            ..Default::default()
        }
    }

    fn facts(&mut self, line: IpAddr) -> &mut Facts {
        self.lines.entry(line).or_insert_with(|| {
            Box::new(Facts {
                entry: LineEntry {
                    line: Some(line),
                    ..Default::default()
                },
                ..Default::default()
            })
        })
    }

    /// One call record, reported at `now` (see `figures::taken_inbound`).
    pub fn call(&mut self, c: &CallRecord, sip_only: &SipOnlyAnswers, now: Timestamp) {
        if !c.rtp.is_empty() {
            self.tap_media = true;
        }
        let Some(line) = c.line else { return };
        let number = figures::called_number(c).map(|n| self.hasher.hash_one(n));
        let f = self.facts(line);
        let e = &mut f.entry;
        e.calls += 1;
        if figures::is_inbound(c) {
            e.inbound_calls += 1;
        } else if figures::is_outbound(c) {
            e.outbound_calls += 1;
        }
        let answered = c.outcome == Outcome::Answered;
        if answered {
            e.answered_calls += 1;
        }
        if c.end.is_none() {
            e.open_calls_at_end += 1;
        }
        if let Some(h) = number {
            f.numbers.push(h);
        }
        // `figures::is_taken_inbound` with the tap's media known only at the end: both kinds.
        match figures::taken_inbound(c, sip_only, now) {
            Some(Taken::Media) => {
                f.taken_media += 1;
                f.taken_media_answered += u64::from(answered);
                f.numbers_media.extend(number);
            }
            Some(Taken::SipOnly) => {
                f.taken_sip += 1;
                f.taken_sip_answered += u64::from(answered);
                f.numbers_sip.extend(number);
            }
            None => {}
        }
        if let Some(p) = c.peer {
            let ip = p.ip();
            if f.peers.last() != Some(&ip) {
                f.peers.push(ip);
                if f.peers.len() >= 2 * f.peers_deduped.max(8) {
                    f.peers.sort_unstable();
                    f.peers.dedup();
                    f.peers_deduped = f.peers.len();
                }
            }
        }
        if let Some(t) = figures::inbound_talk_secs(c) {
            f.talk.push(t);
        }
        f.spans
            .push((c.start.micros(), c.end.map_or(i64::MIN, |t| t.micros())));
    }

    pub fn registration(&mut self, r: &RegistrationRecord) {
        if let Some(line) = r.line {
            self.facts(line).entry.registrations += 1;
        }
    }

    pub fn media_flow(&mut self, m: &MediaFlowRecord) {
        self.tap_media = true;
        if let Some(line) = m.line {
            let e = &mut self.facts(line).entry;
            e.media_flows += 1;
            if m.call_id.is_none() && m.voice_like {
                e.voice_flows_without_sip += 1;
            }
        }
    }

    /// The lines, ordered by address, as `line_entries` makes them.
    pub fn entries(self, capture_end: Option<Timestamp>) -> Vec<LineEntry> {
        fn distinct(v: &mut Vec<u64>) -> u64 {
            v.sort_unstable();
            v.dedup();
            v.len() as u64
        }
        let tap_media = self.tap_media;
        let mut out: Vec<LineEntry> = Vec::with_capacity(self.lines.len());
        for (_, f) in self.lines {
            let mut f = *f;
            let mut e = std::mem::take(&mut f.entry);
            e.distinct_called_numbers = distinct(&mut f.numbers);
            if tap_media {
                e.inbound_calls_taken = f.taken_media;
                e.inbound_calls_taken_answered = f.taken_media_answered;
                e.distinct_called_numbers_taken = distinct(&mut f.numbers_media);
            } else {
                e.inbound_calls_taken = f.taken_media + f.taken_sip;
                e.inbound_calls_taken_answered = f.taken_media_answered + f.taken_sip_answered;
                f.numbers_media.append(&mut f.numbers_sip);
                e.distinct_called_numbers_taken = distinct(&mut f.numbers_media);
            }
            f.peers.sort_unstable();
            f.peers.dedup();
            let mut peers: Vec<String> = f.peers.iter().map(|p| p.to_string()).collect();
            peers.sort();
            e.peers = peers;
            if !f.spans.is_empty() {
                let spans: Vec<Span> = f
                    .spans
                    .iter()
                    .map(|&(s, t)| Span {
                        start: Timestamp::from_micros(s),
                        end: (t != i64::MIN).then(|| Timestamp::from_micros(t)),
                    })
                    .collect();
                e.max_concurrent_calls = figures::max_concurrent(&spans, capture_end);
            }
            e.median_talk_secs_inbound = figures::median(&f.talk);
            out.push(e);
        }
        out.sort_by_key(|e| e.line);
        out
    }
}

/// The records of one analysis on disk (see the module contract), and the line figures.
pub struct RecordSpool {
    calls: SpoolFile,
    /// Calls not yet written, sorted and written as one run when `CHUNK_CALLS` are held.
    chunk: Vec<CallRecord>,
    /// Byte ranges of the sorted runs in `calls`.
    runs: Vec<(u64, u64)>,
    regs: SpoolFile,
    media: SpoolFile,
    pub n_calls: usize,
    pub n_regs: usize,
    pub n_media: usize,
    pub dropped: u64,
    pub facts: LineFacts,
    sip_only: SipOnlyAnswers,
}

impl RecordSpool {
    pub fn new(sip_only: SipOnlyAnswers) -> io::Result<Self> {
        Ok(RecordSpool {
            calls: SpoolFile::new("calls")?,
            chunk: Vec::with_capacity(CHUNK_CALLS),
            runs: Vec::new(),
            regs: SpoolFile::new("registrations")?,
            media: SpoolFile::new("media")?,
            n_calls: 0,
            n_regs: 0,
            n_media: 0,
            dropped: 0,
            facts: LineFacts::new(),
            sip_only,
        })
    }

    /// One call record, reported at `now` (the latest packet time).
    pub fn call(&mut self, c: CallRecord, now: Timestamp) -> io::Result<()> {
        if self.n_calls >= MAX_RECORDS {
            self.dropped += 1;
            return Ok(());
        }
        self.n_calls += 1;
        self.facts.call(&c, &self.sip_only, now);
        self.chunk.push(c);
        if self.chunk.len() >= CHUNK_CALLS {
            self.write_run()?;
        }
        Ok(())
    }

    pub fn registration(&mut self, r: &RegistrationRecord) -> io::Result<()> {
        if self.n_regs >= MAX_RECORDS {
            self.dropped += 1;
            return Ok(());
        }
        self.n_regs += 1;
        self.facts.registration(r);
        self.regs.push(r)
    }

    pub fn media_flow(&mut self, m: &MediaFlowRecord) -> io::Result<()> {
        if self.n_media >= MAX_RECORDS {
            self.dropped += 1;
            return Ok(());
        }
        self.n_media += 1;
        self.facts.media_flow(m);
        self.media.push(m)
    }

    /// Sorts the held calls as `analyze` orders them (stable: ties keep their arrival order)
    /// and appends them as one run.
    fn write_run(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.chunk
            .sort_by(|a, b| a.start.cmp(&b.start).then(a.call_id.cmp(&b.call_id)));
        let start = self.calls.len;
        for c in self.chunk.drain(..) {
            self.calls.push(&c)?;
        }
        self.runs.push((start, self.calls.len));
        Ok(())
    }

    /// The line figures (taken out; the records stay for `write_document`).
    pub fn take_facts(&mut self) -> LineFacts {
        std::mem::take(&mut self.facts)
    }

    /// Writes `a` (whose record arrays are empty) as `serde_json::to_writer_pretty` would with
    /// the spooled records in them, followed by nothing (the caller adds the newline).
    pub fn write_document(
        mut self,
        out: &mut dyn Write,
        a: &Analysis,
        privacy: &Pseudonymizer,
    ) -> io::Result<()> {
        self.write_run()?;
        let calls = self.calls.into_file()?;
        let regs_len = self.regs.len;
        let regs = self.regs.into_file()?;
        let media_len = self.media.len;
        let media = self.media.into_file()?;
        let mut w = Pretty::new(out);
        w.begin()?;
        w.field("capture", &a.capture)?;
        w.field("network", &a.network)?;
        w.field("stats", &a.stats)?;
        // Calls: a k-way merge of the sorted runs (ties: the earlier run, i.e. arrival order).
        w.begin_array("calls")?;
        let mut readers: Vec<RunReader<'_>> = self
            .runs
            .iter()
            .map(|&(s, e)| RunReader::new(&calls, s, e))
            .collect();
        let mut heads: Vec<Option<CallRecord>> = Vec::with_capacity(readers.len());
        for r in &mut readers {
            heads.push(r.next()?);
        }
        let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(Timestamp, String, usize)>> =
            heads
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    h.as_ref()
                        .map(|c| std::cmp::Reverse((c.start, c.call_id.clone(), i)))
                })
                .collect();
        while let Some(std::cmp::Reverse((_, _, i))) = heap.pop() {
            let Some(mut c) = heads.get_mut(i).and_then(Option::take) else {
                continue;
            };
            if let Some(next) = readers
                .get_mut(i)
                .map(RunReader::next::<CallRecord>)
                .transpose()?
                .flatten()
            {
                heap.push(std::cmp::Reverse((next.start, next.call_id.clone(), i)));
                if let Some(h) = heads.get_mut(i) {
                    *h = Some(next);
                }
            }
            privacy.call(&mut c);
            w.element(&c)?;
        }
        w.end_array()?;
        w.begin_array("registrations")?;
        let mut rd = RunReader::new(&regs, 0, regs_len);
        while let Some(mut r) = rd.next::<RegistrationRecord>()? {
            privacy.registration(&mut r);
            w.element(&r)?;
        }
        w.end_array()?;
        w.begin_array("media_flows")?;
        let mut rd = RunReader::new(&media, 0, media_len);
        while let Some(m) = rd.next::<MediaFlowRecord>()? {
            w.element(&m)?;
        }
        w.end_array()?;
        // Element by element, as the records: one line's JSON is buffered at a time.
        w.begin_array("lines")?;
        for l in &a.lines {
            w.element(l)?;
        }
        w.end_array()?;
        w.begin_array("threats")?;
        for t in &a.threats {
            w.element(t)?;
        }
        w.end_array()?;
        w.end()
    }
}

/// serde_json's pretty layout (two-space indent, `": "` after keys, `[]`/`{}` when empty) for
/// a value placed `depth` levels deep: its inner lines carry the deeper indent, so the value is
/// written once, straight into the document's buffer.
struct Nested {
    depth: usize,
    has_value: bool,
}

impl Nested {
    fn newline<W: ?Sized + Write>(&self, w: &mut W, sep: &[u8]) -> io::Result<()> {
        const PAD: &[u8] = b"                                                                ";
        w.write_all(sep)?;
        let mut n = self.depth * 2;
        while n > 0 {
            let k = n.min(PAD.len());
            w.write_all(PAD.get(..k).unwrap_or_default())?;
            n -= k;
        }
        Ok(())
    }

    fn open<W: ?Sized + Write>(&mut self, w: &mut W, b: &[u8]) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(b)
    }

    fn close<W: ?Sized + Write>(&mut self, w: &mut W, b: &[u8]) -> io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        if self.has_value {
            self.newline(w, b"\n")?;
        }
        w.write_all(b)
    }

    fn item<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.newline(w, if first { b"\n" } else { b",\n" })
    }
}

impl serde_json::ser::Formatter for Nested {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"[")
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.item(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"{")
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.item(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// The top-level object of a pretty JSON document, written field by field (two-space indent,
/// as `serde_json::to_writer_pretty`).
struct Pretty<'a> {
    out: &'a mut dyn Write,
    first_field: bool,
    first_element: bool,
    /// One value's JSON, reused: a value costs one write to `out` instead of one per token.
    json: Vec<u8>,
}

impl<'a> Pretty<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Pretty {
            out,
            first_field: true,
            first_element: true,
            json: Vec::with_capacity(4096),
        }
    }

    fn begin(&mut self) -> io::Result<()> {
        self.out.write_all(b"{")
    }

    fn key(&mut self, key: &str) -> io::Result<()> {
        let sep: &[u8] = if self.first_field { b"\n  " } else { b",\n  " };
        self.first_field = false;
        self.out.write_all(sep)?;
        serde_json::to_writer(&mut *self.out, key)?;
        self.out.write_all(b": ")
    }

    /// `value` as pretty JSON placed `depth` levels deep.
    fn value<T: Serialize + ?Sized>(&mut self, value: &T, depth: usize) -> io::Result<()> {
        self.json.clear();
        let mut ser = serde_json::Serializer::with_formatter(
            &mut self.json,
            Nested {
                depth,
                has_value: false,
            },
        );
        value.serialize(&mut ser)?;
        self.out.write_all(&self.json)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> io::Result<()> {
        self.key(key)?;
        self.value(value, 1)
    }

    fn begin_array(&mut self, key: &str) -> io::Result<()> {
        self.key(key)?;
        self.first_element = true;
        self.out.write_all(b"[")
    }

    fn element<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        let sep: &[u8] = if self.first_element {
            b"\n    "
        } else {
            b",\n    "
        };
        self.first_element = false;
        self.out.write_all(sep)?;
        self.value(value, 2)
    }

    fn end_array(&mut self) -> io::Result<()> {
        if self.first_element {
            self.out.write_all(b"]")
        } else {
            self.out.write_all(b"\n  ]")
        }
    }

    fn end(&mut self) -> io::Result<()> {
        if self.first_field {
            self.out.write_all(b"}")
        } else {
            self.out.write_all(b"\n}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Nested` at depth d gives serde_json's pretty text with every line after the first
    /// indented by 2*d spaces, empty and nested containers included.
    #[test]
    fn nested_layout_is_serde_jsons_pretty_one_placed_deeper() {
        let v = serde_json::json!({
            "a": [],
            "b": {},
            "c": [1, [2, []], {"d": {"e": null, "f": "x\ny"}}],
            "g": [{}],
            "h": 1.5
        });
        for depth in [0usize, 1, 2, 5, 40] {
            let mut ours = Vec::new();
            let mut ser = serde_json::Serializer::with_formatter(
                &mut ours,
                Nested {
                    depth,
                    has_value: false,
                },
            );
            v.serialize(&mut ser).unwrap();
            let pad = format!("\n{}", " ".repeat(2 * depth));
            let theirs = serde_json::to_string_pretty(&v)
                .unwrap()
                .replace('\n', &pad);
            assert_eq!(String::from_utf8(ours).unwrap(), theirs, "depth {depth}");
        }
    }
}
