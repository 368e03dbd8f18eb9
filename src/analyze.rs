//! Offline analysis of capture files (`input::Inputs`: pcap/pcapng, gzip, stdin, several merged
//! in time order): the engine run to the end.
//!
//! Contract: `analyze_file` keeps every record (up to `MAX_RECORDS` per kind): it is what
//! `simboxd analyze --format json` prints (`Analysis`, the names are a contract other tools
//! read) and what reports and evaluations are built from; its memory grows with the records.
//! `analyze_streaming` (`--format ndjson`, `--format text` without `--report`) writes records as
//! they are produced (`stream::RecordWriter`) and keeps per-line figures in bounded tallies
//! (`stream::LineTallies`), so its memory does not grow with the number of calls.
//! `analyze_spooled` (`--format json` without `--report`) gives the same document as
//! `analyze_file` with the records spooled to disk (`spool`), its exact per-line figures kept in
//! a few bytes per call.

mod record_json;
pub mod spool;
pub(crate) mod stream;

// The result's types and the file digest live in the leaf `analysis` (the report, evidence
// and the daemon read them without importing the analysis run); their paths here stay.
pub use crate::analysis::{sha256_file, Analysis, CaptureInfo, LineEntry, Stats};

use crate::config::Config;
use crate::input::{InputInfo, Inputs, ReadAhead};
use anyhow::Context;
use serde::Serialize;
use simboxd_core::engine::{Engine, EngineStats};
use simboxd_core::model::{
    CallRecord, Event, MediaFlowRecord, Outcome, RegistrationRecord, SipOnlyAnswers, Timestamp,
    VerdictLevel,
};
use simboxd_core::threats::Threat;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Records kept per kind in one analysis; beyond it records are counted, not kept.
pub const MAX_RECORDS: usize = 2_000_000;

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// Capture files: pcap or pcapng, gzip-compressed or not; several (a ring of tcpdump files,
    /// a shell glob) are merged in packet-time order; `-` reads standard input.
    #[arg(required = true, value_name = "CAPTURE")]
    pub captures: Vec<PathBuf>,
    /// Output format. `ndjson`: one JSON object per output line, records as they are produced
    /// (`{"type":"call"|"registration"|"media_flow",...}`), then `line` objects and a final
    /// `summary`; memory does not grow with the calls (nor does `text`'s without `--report`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Also write every record (NDJSON, as `--format ndjson` prints them) to this file, as
    /// they are produced.
    #[arg(long, value_name = "FILE")]
    pub records: Option<PathBuf>,
    /// Subscriber prefix (repeatable); default RFC 1918, 100.64.0.0/10 and fc00::/7.
    #[arg(long = "home-net", value_name = "CIDR")]
    pub home_net: Vec<ipnet::IpNet>,
    /// Domestic prefix (repeatable).
    #[arg(long = "domestic-net", value_name = "CIDR")]
    pub domestic_net: Vec<ipnet::IpNet>,
    // Section names in brackets are the config's, not links (this text is also the --help).
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Config file (its [network], [limits] and [detection] sections apply).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also write the field-officer report (self-contained HTML) to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Also write evidence (per flagged line: pcap + manifest.json with SHA-256) into this directory.
    #[arg(long, value_name = "DIR")]
    pub evidence: Option<PathBuf>,
    /// Export evidence for this line too, flagged or not (repeatable; needs --evidence).
    #[arg(long = "evidence-line", value_name = "IP", requires = "evidence")]
    pub evidence_line: Vec<IpAddr>,
    /// Case identifier stated in the report and the evidence manifest.
    #[arg(long, value_name = "ID")]
    pub case: Option<String>,
    /// Examiner's name stated in the report and the evidence manifest.
    #[arg(long, value_name = "NAME")]
    pub examiner: Option<String>,
    /// Also show times in this zone (IANA name such as Europe/Berlin) beside UTC in the report.
    #[arg(long, value_name = "AREA/CITY")]
    pub timezone: Option<String>,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// `analyze`'s output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
    Ndjson,
}

/// Calls the text output lists.
const TEXT_CALLS: usize = 50;

/// Collects what the engine emits into an `Analysis`.
#[derive(Default)]
struct Collector {
    calls: Vec<CallRecord>,
    registrations: Vec<RegistrationRecord>,
    media: Vec<MediaFlowRecord>,
    dropped: u64,
}

impl Collector {
    fn take(&mut self, ev: Event) {
        match ev {
            Event::CallEnded(c) => push_bounded(&mut self.calls, *c, &mut self.dropped),
            Event::Registration(r) => push_bounded(&mut self.registrations, *r, &mut self.dropped),
            Event::MediaEnded(m) => push_bounded(&mut self.media, *m, &mut self.dropped),
            _ => {}
        }
    }
}

fn push_bounded<T>(v: &mut Vec<T>, x: T, dropped: &mut u64) {
    if v.len() < MAX_RECORDS {
        v.push(x);
    } else {
        *dropped += 1;
    }
}

/// Runs the whole engine over a capture file, keeping every record.
pub fn analyze_file(path: &Path, cfg: &Config, progress: bool) -> anyhow::Result<Analysis> {
    analyze_file_with(&[path.to_path_buf()], cfg, progress, &mut [])
}

/// `analyze_file` over several inputs (merged in time order), also writing each record to
/// `writers` as it is produced.
pub fn analyze_file_with(
    paths: &[PathBuf],
    cfg: &Config,
    progress: bool,
    writers: &mut [stream::RecordWriter<Box<dyn Write>>],
) -> anyhow::Result<Analysis> {
    let mut col = Collector::default();
    let (engine, inputs) = run_engine(paths, cfg, progress, &mut |ev, _| {
        for w in writers.iter_mut() {
            write_record(w, &ev)?;
        }
        col.take(ev);
        Ok(())
    })?;
    for w in writers.iter_mut() {
        w.flush()?;
    }
    let st = engine.stats();
    let verdicts = engine.lines().verdicts();
    let mut a = build(inputs, st, col, cfg);
    a.threats = engine.threats();
    apply_verdicts(&mut a.lines, &verdicts);
    let privacy = privacy_of(cfg)?;
    if privacy.enabled() {
        pseudonymize(&mut a, &privacy);
    }
    Ok(a)
}

fn privacy_of(cfg: &Config) -> anyhow::Result<crate::privacy::Pseudonymizer> {
    crate::privacy::Pseudonymizer::from_config(&cfg.privacy)
        .map_err(|e| anyhow::anyhow!("[privacy]: {e}"))
}

fn write_record(w: &mut stream::RecordWriter<Box<dyn Write>>, ev: &Event) -> std::io::Result<()> {
    match ev {
        Event::CallEnded(c) => w.call(c),
        Event::Registration(r) => w.registration(r),
        Event::MediaEnded(m) => w.media_flow(m),
        _ => Ok(()),
    }
}

/// `analyze_file_with` for `--format json`: the records go to a spool on disk as they are
/// produced (see `spool`) instead of into the `Analysis`, whose record arrays stay empty;
/// `spool::RecordSpool::write_document` writes the document `analyze_file_with`'s would be.
pub fn analyze_spooled(
    paths: &[PathBuf],
    cfg: &Config,
    progress: bool,
    writers: &mut [stream::RecordWriter<Box<dyn Write>>],
) -> anyhow::Result<(Analysis, spool::RecordSpool)> {
    let mut sp = spool::RecordSpool::new(cfg.detection.sip_only_answers())
        .context("cannot create a temporary file for the records")?;
    let (engine, inputs) = run_engine(paths, cfg, progress, &mut |ev, now| {
        for w in writers.iter_mut() {
            write_record(w, &ev)?;
        }
        match ev {
            Event::CallEnded(c) => sp.call(*c, now),
            Event::Registration(r) => sp.registration(&r),
            Event::MediaEnded(m) => sp.media_flow(&m),
            _ => Ok(()),
        }
    })?;
    for w in writers.iter_mut() {
        w.flush()?;
    }
    let st = engine.stats();
    let verdicts = engine.lines().verdicts();
    let threats = engine.threats();
    drop(engine);
    let mut lines = sp.take_facts().entries(st.last);
    apply_verdicts(&mut lines, &verdicts);
    let col = Collector {
        dropped: sp.dropped,
        ..Default::default()
    };
    let mut a = build_with_lines(inputs, st, col, cfg, lines);
    a.stats.media_flows = sp.n_media as u64;
    a.threats = threats;
    let privacy = privacy_of(cfg)?;
    if privacy.enabled() {
        pseudonymize(&mut a, &privacy);
    }
    Ok((a, sp))
}

/// What a streaming analysis keeps: the `Analysis` without its record arrays (`calls` holds
/// the earliest few, for the text output), the number of call records and, per line, the
/// figures that are estimates.
pub struct Streamed {
    pub analysis: Analysis,
    pub call_records: u64,
    pub estimated: BTreeMap<IpAddr, BTreeMap<&'static str, f64>>,
}

/// Runs the engine over a capture file, writing records to `writers` as they are produced and
/// keeping only bounded per-line tallies (see `stream`); `first_calls` calls are kept.
pub fn analyze_streaming(
    paths: &[PathBuf],
    cfg: &Config,
    progress: bool,
    writers: &mut [stream::RecordWriter<Box<dyn Write>>],
    first_calls: usize,
) -> anyhow::Result<Streamed> {
    let mut tallies = stream::LineTallies::new(cfg.detection.sip_only_answers());
    let mut first = stream::FirstCalls::new(first_calls);
    let (mut call_records, mut media_records) = (0u64, 0u64);
    let (engine, inputs) = run_engine(paths, cfg, progress, &mut |ev, now| {
        for w in writers.iter_mut() {
            write_record(w, &ev)?;
        }
        match &ev {
            Event::CallStarted {
                call_id,
                line: Some(line),
                ts,
                ..
            } => tallies.call_started(*line, call_id, *ts),
            Event::CallEnded(c) => {
                call_records += 1;
                tallies.call_ended(c, now.max(c.end.unwrap_or(c.start)));
                first.offer(c);
            }
            Event::Registration(r) => tallies.registration(r),
            Event::MediaEnded(m) => {
                media_records += 1;
                tallies.media_flow(m, now);
            }
            _ => {}
        }
        Ok(())
    })?;
    for w in writers.iter_mut() {
        w.flush()?;
    }
    let mut st = engine.stats();
    if tallies.evictions > 0 {
        st.evictions.add("line_tallies", tallies.evictions);
    }
    let verdicts = engine.lines().verdicts();
    let (mut lines, estimated) = tallies.entries(engine.now());
    apply_verdicts(&mut lines, &verdicts);
    let col = Collector {
        calls: first.into_vec(),
        ..Default::default()
    };
    let mut a = build_with_lines(inputs, st, col, cfg, lines);
    a.stats.media_flows = media_records;
    a.threats = engine.threats();
    let privacy = privacy_of(cfg)?;
    if privacy.enabled() {
        pseudonymize(&mut a, &privacy);
    }
    Ok(Streamed {
        analysis: a,
        call_records,
        estimated,
    })
}

/// Events handed from the engine's thread to the records' consumer at once, and batches in
/// flight between them (a bound on what the engine can run ahead of a slow writer).
const EVENT_BATCH: usize = 512;
const EVENT_BATCHES_IN_FLIGHT: usize = 16;

/// Reads the inputs through the engine (each hashed on its reading thread while it is parsed),
/// handing every event to `take` with the packet time it was drained at, in order. The engine
/// runs on a thread of its own and `take` (writing the records, the per-line tallies) on the
/// caller's, so that a flood's records cost the engine nothing but a hand-over.
fn run_engine(
    paths: &[PathBuf],
    cfg: &Config,
    progress: bool,
    take: &mut dyn FnMut(Event, Timestamp) -> std::io::Result<()>,
) -> anyhow::Result<(Engine, Vec<InputInfo>)> {
    // Parsing runs ahead on a thread of its own (hashing on the inputs' reading threads).
    let inputs = ReadAhead::start(Inputs::open(paths)?)?;
    let bar = if progress {
        let b = indicatif::ProgressBar::new(inputs.total_size());
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {bytes}/{total_bytes} [{bar:40}] {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(EVENT_BATCHES_IN_FLIGHT);
    std::thread::scope(|s| {
        let engine_thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn_scoped(s, || engine_loop(inputs, cfg, bar, tx))
            .context("cannot start the engine thread")?;
        let mut failed = None;
        'batches: for batch in rx.iter() {
            for (ev, now) in batch {
                if let Err(e) = take(ev, now) {
                    failed = Some(e);
                    break 'batches;
                }
            }
        }
        // A failed write stops the engine at its next hand-over.
        drop(rx);
        let ran = engine_thread
            .join()
            .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
        match failed {
            Some(e) => Err(anyhow::Error::from(e).context("writing records")),
            None => ran,
        }
    })
}

/// The engine over `inputs`, its events sent to `tx` in batches (see `run_engine`).
fn engine_loop(
    mut inputs: ReadAhead,
    cfg: &Config,
    bar: Option<indicatif::ProgressBar>,
    tx: std::sync::mpsc::SyncSender<Vec<(Event, Timestamp)>>,
) -> anyhow::Result<(Engine, Vec<InputInfo>)> {
    let stopped = || anyhow::anyhow!("stopped: the records could not be written");
    let mut engine = Engine::new(&cfg.engine());
    let mut batch = Vec::with_capacity(EVENT_BATCH);
    let mut n: u64 = 0;
    let read = inputs.bytes_read_counter();
    // Inlined where the reader hands packets out: no call per packet besides the engine's.
    inputs.for_each_packet(
        #[inline(always)]
        |pkt| -> anyhow::Result<()> {
            engine.process(pkt);
            if engine.has_events() {
                let now = engine.now();
                batch.extend(engine.drain_events().map(|ev| (ev, now)));
                if batch.len() >= EVENT_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(EVENT_BATCH));
                    tx.send(full).map_err(|_| stopped())?;
                }
            }
            n += 1;
            if n % 65536 == 0 {
                if let Some(b) = &bar {
                    b.set_position(read.load(std::sync::atomic::Ordering::Relaxed));
                }
            }
            Ok(())
        },
    )?;
    engine.finish();
    let now = engine.now();
    batch.extend(engine.drain_events().map(|ev| (ev, now)));
    tx.send(batch).map_err(|_| stopped())?;
    drop(tx);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    Ok((engine, inputs.finish()))
}

/// An `Analysis` of records gathered elsewhere (the live view's report of what it has seen so
/// far), with the same per-line figures, verdicts and pseudonyms as `analyze_file`. `calls`,
/// `registrations` and `media` are the records kept; `dropped` counts those not kept.
pub fn analysis_of_records(
    source: &Path,
    sha256: String,
    size: u64,
    st: EngineStats,
    (calls, registrations, media, dropped): (
        Vec<CallRecord>,
        Vec<RegistrationRecord>,
        Vec<MediaFlowRecord>,
        u64,
    ),
    verdicts: &[simboxd_core::model::LineVerdict],
    cfg: &Config,
) -> anyhow::Result<Analysis> {
    let col = Collector {
        calls,
        registrations,
        media,
        dropped,
    };
    let input = InputInfo::of_file(&source.display().to_string(), sha256, size, &st);
    let mut a = build(vec![input], st, col, cfg);
    apply_verdicts(&mut a.lines, verdicts);
    let privacy = crate::privacy::Pseudonymizer::from_config(&cfg.privacy)
        .map_err(|e| anyhow::anyhow!("[privacy]: {e}"))?;
    if privacy.enabled() {
        pseudonymize(&mut a, &privacy);
    }
    Ok(a)
}

fn build(inputs: Vec<InputInfo>, st: EngineStats, mut col: Collector, cfg: &Config) -> Analysis {
    col.calls
        .sort_by(|a, b| a.start.cmp(&b.start).then(a.call_id.cmp(&b.call_id)));
    let lines = line_entries(
        &col.calls,
        &col.registrations,
        &col.media,
        st.last,
        &cfg.detection.sip_only_answers(),
    );
    build_with_lines(inputs, st, col, cfg, lines)
}

fn build_with_lines(
    inputs: Vec<InputInfo>,
    st: EngineStats,
    col: Collector,
    cfg: &Config,
    lines: Vec<LineEntry>,
) -> Analysis {
    Analysis {
        capture: CaptureInfo::of_inputs(inputs, &st),
        network: cfg.network.clone(),
        stats: Stats {
            packets: st.packets,
            bytes: st.bytes,
            sip_messages: st.calls.sip_messages,
            calls: st.calls.calls,
            registrations: st.calls.registrations,
            rtp_streams: st.calls.rtp_streams,
            rtp_packets: st.calls.rtp_packets,
            media_flows: col.media.len() as u64,
            decode_errors: st.decode_errors,
            decode_skipped: st.decode_skipped,
            evictions: st.evictions,
            records_dropped: col.dropped,
        },
        calls: col.calls,
        registrations: col.registrations,
        media_flows: col.media,
        lines,
        threats: Vec::new(),
    }
}

/// Per-line figures derived from the records.
fn line_entries(
    calls: &[CallRecord],
    regs: &[RegistrationRecord],
    media: &[MediaFlowRecord],
    capture_end: Option<Timestamp>,
    sip_only: &SipOnlyAnswers,
) -> Vec<LineEntry> {
    let mut by: BTreeMap<IpAddr, LineEntry> = BTreeMap::new();
    let mut numbers: BTreeMap<IpAddr, std::collections::BTreeSet<&str>> = BTreeMap::new();
    let mut taken_numbers: BTreeMap<IpAddr, std::collections::BTreeSet<&str>> = BTreeMap::new();
    // Where the tap carried any media (any call with RTP, any media flow), an answer must carry
    // voice both ways to count (detection's rule; a SIP-only mirror is the exception).
    let tap_media = !media.is_empty() || calls.iter().any(|c| !c.rtp.is_empty());
    let mut peers: BTreeMap<IpAddr, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut spans: BTreeMap<IpAddr, Vec<crate::figures::Span>> = BTreeMap::new();
    let mut talk: BTreeMap<IpAddr, Vec<f64>> = BTreeMap::new();
    for c in calls {
        let Some(line) = c.line else { continue };
        let e = by.entry(line).or_insert_with(|| LineEntry {
            line: Some(line),
            ..Default::default()
        });
        // The definitions are `figures`' (the daemon's live tally uses the same ones).
        e.calls += 1;
        if crate::figures::is_inbound(c) {
            e.inbound_calls += 1;
        } else if crate::figures::is_outbound(c) {
            e.outbound_calls += 1;
        }
        if c.outcome == Outcome::Answered {
            e.answered_calls += 1;
        }
        if let Some(n) = crate::figures::called_number(c) {
            numbers.entry(line).or_default().insert(n);
        }
        let reported = capture_end.unwrap_or(c.start);
        if crate::figures::is_taken_inbound(c, tap_media, sip_only, reported) {
            e.inbound_calls_taken += 1;
            if c.outcome == Outcome::Answered {
                e.inbound_calls_taken_answered += 1;
            }
            if let Some(n) = crate::figures::called_number(c) {
                taken_numbers.entry(line).or_default().insert(n);
            }
        }
        if let Some(p) = c.peer {
            peers.entry(line).or_default().insert(p.ip().to_string());
        }
        if c.end.is_none() {
            e.open_calls_at_end += 1;
        }
        if let Some(t) = crate::figures::inbound_talk_secs(c) {
            talk.entry(line).or_default().push(t);
        }
        spans.entry(line).or_default().push(crate::figures::Span {
            start: c.start,
            end: c.end,
        });
    }
    for r in regs {
        if let Some(line) = r.line {
            by.entry(line)
                .or_insert_with(|| LineEntry {
                    line: Some(line),
                    ..Default::default()
                })
                .registrations += 1;
        }
    }
    for m in media {
        if let Some(line) = m.line {
            let e = by.entry(line).or_insert_with(|| LineEntry {
                line: Some(line),
                ..Default::default()
            });
            e.media_flows += 1;
            if m.call_id.is_none() && m.voice_like {
                e.voice_flows_without_sip += 1;
            }
        }
    }
    for (line, e) in by.iter_mut() {
        e.distinct_called_numbers = numbers.get(line).map_or(0, |s| s.len() as u64);
        e.distinct_called_numbers_taken = taken_numbers.get(line).map_or(0, |s| s.len() as u64);
        e.peers = peers
            .get(line)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        if let Some(s) = spans.get(line) {
            e.max_concurrent_calls = crate::figures::max_concurrent(s, capture_end);
        }
        e.median_talk_secs_inbound = talk.get(line).and_then(|v| crate::figures::median(v));
    }
    by.into_values().collect()
}

/// Replaces phone numbers (call parties, accounts, numbers quoted in reasons) by their keyed
/// pseudonyms, before anything is printed or written.
fn pseudonymize(a: &mut Analysis, p: &crate::privacy::Pseudonymizer) {
    for c in &mut a.calls {
        p.call(c);
    }
    for r in &mut a.registrations {
        p.registration(r);
    }
    for l in &mut a.lines {
        for r in &mut l.reasons {
            r.detail = p.text(&r.detail);
        }
    }
    for t in &mut a.threats {
        p.threat(t);
    }
}

/// The configuration as the report shows it: only the sections analysis uses, without keys,
/// tokens or alert targets (see `report::provenance::used_config_toml`).
pub fn redacted_config_toml(cfg: &Config) -> String {
    crate::report::provenance::used_config_toml(cfg.used_sections())
}

/// Adds detection's verdicts to the per-line entries (lines only detection saw get an entry too)
/// and orders them flagged first, then by score. The counters stay those of the records, which
/// offline analysis has in full (the same figures the report's charts draw).
fn apply_verdicts(lines: &mut Vec<LineEntry>, verdicts: &[simboxd_core::model::LineVerdict]) {
    let mut index: std::collections::HashMap<IpAddr, usize> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.line.map(|ip| (ip, i)))
        .collect();
    for v in verdicts {
        let idx = match index.get(&v.line) {
            Some(&i) => i,
            None => {
                index.insert(v.line, lines.len());
                lines.push(LineEntry {
                    line: Some(v.line),
                    ..Default::default()
                });
                lines.len() - 1
            }
        };
        let Some(e) = lines.get_mut(idx) else {
            continue;
        };
        e.verdict = Some(v.verdict);
        e.score = Some(v.score);
        e.flagged_at = v.flagged_at;
        e.site = v.site.clone();
        e.reasons = v.reasons.clone();
    }
    lines.sort_by(|a, b| {
        b.verdict
            .cmp(&a.verdict)
            .then(b.score.unwrap_or(0.0).total_cmp(&a.score.unwrap_or(0.0)))
            .then(a.line.cmp(&b.line))
    });
}

/// Builds the run's config from `--config` and the network flags.
pub fn settings(args: &AnalyzeArgs) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if !args.home_net.is_empty() {
        cfg.network.home = args.home_net.clone();
    }
    if !args.domestic_net.is_empty() {
        cfg.network.domestic = args.domestic_net.clone();
    }
    Ok(cfg)
}

/// How an analysis ended, for the exit code (`cli`): 0, or `EXIT_TRUNCATED` when an input was
/// cut off or damaged (everything before the cut was analysed and printed).
pub const EXIT_TRUNCATED: i32 = 3;

pub fn cli_main(args: AnalyzeArgs) -> anyhow::Result<i32> {
    let cfg = settings(&args)?;
    if args.evidence.is_some() && args.captures.iter().any(|p| crate::input::is_stdin(p)) {
        anyhow::bail!(
            "--evidence reads the capture a second time, which standard input (-) cannot give: save it to a file first"
        );
    }
    let clock = match &args.timezone {
        Some(tz) => crate::report::Clock::parse(tz)?,
        None => crate::report::Clock::default(),
    };
    // Refuse before the analysis: a folder with older files would mix runs.
    if let Some(dir) = &args.evidence {
        crate::evidence::check_empty_dir(dir)?;
    }
    let progress =
        !args.quiet && std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
    let mut writers: Vec<stream::RecordWriter<Box<dyn Write>>> = Vec::new();
    if let Some(p) = &args.records {
        let f = std::fs::File::create(p)
            .with_context(|| format!("{}: cannot write records", p.display()))?;
        let w: Box<dyn Write> = Box::new(std::io::BufWriter::with_capacity(1 << 16, f));
        writers.push(stream::RecordWriter::new(w, privacy_of(&cfg)?));
    }
    if args.format == OutputFormat::Ndjson {
        // Last: the line and summary objects follow the records on stdout.
        let w: Box<dyn Write> = Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stdout().lock(),
        ));
        writers.push(stream::RecordWriter::new(w, privacy_of(&cfg)?));
    }
    // The report needs every record in memory; the JSON document spools them to disk; the
    // rest streams.
    let streaming = args.format != OutputFormat::Json && args.report.is_none();
    let mut spooled = None;
    let (a, call_records, estimated) = if streaming {
        let first = if args.format == OutputFormat::Text {
            TEXT_CALLS
        } else {
            0
        };
        let s = analyze_streaming(&args.captures, &cfg, progress, &mut writers, first)?;
        (s.analysis, s.call_records, s.estimated)
    } else if args.report.is_none() {
        // `--format json`: the records wait on disk, not in memory.
        let (a, sp) = analyze_spooled(&args.captures, &cfg, progress, &mut writers)?;
        spooled = Some(sp);
        let n = a.stats.calls;
        (a, n, BTreeMap::new())
    } else {
        let a = analyze_file_with(&args.captures, &cfg, progress, &mut writers)?;
        let n = a.calls.len() as u64;
        (a, n, BTreeMap::new())
    };
    let status = input_warnings(&a.capture);
    let prov = crate::report::Provenance::of_run(
        cfg.used_sections(),
        args.case.clone(),
        args.examiner.clone(),
        clock,
    );
    let mut report_hash = None;
    if let Some(path) = &args.report {
        let html = crate::report::render(&a, &prov);
        let sha = crate::report::provenance::write_with_sha256(path, html.as_bytes())
            .with_context(|| format!("{}: cannot write report", path.display()))?;
        report_hash = Some((path.display().to_string(), sha));
    }
    if let Some(dir) = &args.evidence {
        let mut lines: Vec<IpAddr> = a
            .lines
            .iter()
            .filter(|l| l.verdict.is_some_and(|v| v != VerdictLevel::Normal))
            .filter_map(|l| l.line)
            .collect();
        for l in &args.evidence_line {
            if !lines.contains(l) {
                lines.push(*l);
            }
        }
        let run = crate::evidence::RunInfo {
            created: prov.generated.clone(),
            command_line: prov.command_line.clone(),
            case: args.case.clone(),
            examiner: args.examiner.clone(),
            report: report_hash.map(|(file, sha256)| crate::evidence::ReportRef { file, sha256 }),
        };
        let m = crate::evidence::export_inputs(
            &a.capture.inputs,
            &a.capture.sha256,
            &cfg.limits,
            &lines,
            dir,
            &run,
        )
        .with_context(|| format!("{}: cannot write evidence", dir.display()))?;
        for l in &m.lines_without_traffic {
            eprintln!(
                "warning: --evidence-line {l}: no packet of this line in the capture; no file written (recorded in manifest.json)"
            );
        }
    }
    if args.format == OutputFormat::Ndjson {
        if let Some(w) = writers.last_mut() {
            write_ndjson_tail(w, &a, &estimated)?;
            w.flush()?;
        }
        return Ok(status);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.format {
        OutputFormat::Json => {
            match spooled {
                Some(sp) => sp.write_document(&mut out, &a, &privacy_of(&cfg)?)?,
                None => serde_json::to_writer_pretty(&mut out, &a)?,
            }
            writeln!(out)?;
        }
        OutputFormat::Text => write_text_with(&mut out, &a, call_records, &estimated)?,
        OutputFormat::Ndjson => {}
    }
    out.flush()?;
    Ok(status)
}

/// Warns on stderr about inputs cut off and captures without packets; the exit code they call
/// for.
fn input_warnings(c: &CaptureInfo) -> i32 {
    for i in &c.inputs {
        if let Some(w) = i.truncation_warning() {
            eprintln!("warning: {w}");
        }
    }
    if c.packets == 0 {
        eprintln!(
            "warning: {}: no packets in the capture: nothing to analyse",
            if c.file == crate::input::STDIN {
                "standard input"
            } else {
                c.file.as_str()
            }
        );
    }
    if c.truncated {
        EXIT_TRUNCATED
    } else {
        0
    }
}

/// Figures of a line that are estimates: name -> relative standard error (0.0: a lower bound
/// or a partial list).
pub type Estimated = BTreeMap<IpAddr, BTreeMap<&'static str, f64>>;

/// After the records: one `line` object per line (fields as in `lines`, plus `estimated`), one
/// `threat` object per finding (as in `threats`), then the `summary` (`capture`, `network`,
/// `stats` as in the JSON document).
fn write_ndjson_tail(
    w: &mut stream::RecordWriter<Box<dyn Write>>,
    a: &Analysis,
    estimated: &Estimated,
) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct Summary<'a> {
        capture: &'a CaptureInfo,
        network: &'a simboxd_core::config::NetworkConfig,
        stats: &'a Stats,
    }
    let none = BTreeMap::new();
    for l in &a.lines {
        let est = l.line.and_then(|ip| estimated.get(&ip)).unwrap_or(&none);
        w.line(l, est)?;
    }
    for t in &a.threats {
        w.object("threat", t)?;
    }
    w.object(
        "summary",
        &Summary {
            capture: &a.capture,
            network: &a.network,
            stats: &a.stats,
        },
    )
}

fn opt_ts(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_string(), |t| t.to_rfc3339())
}

/// The readable summary for a person.
pub fn write_text(out: &mut dyn Write, a: &Analysis) -> std::io::Result<()> {
    write_text_with(out, a, a.calls.len() as u64, &BTreeMap::new())
}

/// `write_text` where `a.calls` holds only the first calls of `call_records`, and some line
/// figures are estimates (a streaming analysis).
pub fn write_text_with(
    out: &mut dyn Write,
    a: &Analysis,
    call_records: u64,
    estimated: &Estimated,
) -> std::io::Result<()> {
    use crate::text::Escaped as E;
    let c = &a.capture;
    writeln!(out, "capture  {}", E(&c.file))?;
    writeln!(out, "sha256   {}", c.sha256)?;
    if c.inputs.len() > 1 {
        for i in &c.inputs {
            writeln!(out, "input    {}  {}  {} bytes", i.sha256, i.file, i.size)?;
        }
    }
    for i in &c.inputs {
        if let Some(w) = i.truncation_warning() {
            writeln!(out, "TRUNCATED {w}")?;
        }
    }
    writeln!(
        out,
        "span     {} .. {}  ({} packets, {} bytes)",
        opt_ts(c.start),
        opt_ts(c.end),
        c.packets,
        c.bytes
    )?;
    let s = &a.stats;
    writeln!(
        out,
        "found    {} SIP messages, {} calls, {} registrations, {} RTP streams, {} media flows",
        s.sip_messages, s.calls, s.registrations, s.rtp_streams, s.media_flows
    )?;
    if !s.decode_errors.0.is_empty() {
        let list: Vec<String> = s
            .decode_errors
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(out, "errors   {}", list.join(" "))?;
    }
    if !s.decode_skipped.0.is_empty() {
        let list: Vec<String> = s
            .decode_skipped
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(out, "skipped  {}", list.join(" "))?;
    }
    if !s.evictions.0.is_empty() {
        let list: Vec<String> = s
            .evictions
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(out, "evicted  {}", list.join(" "))?;
    }
    writeln!(out)?;
    writeln!(out, "lines ({}):", a.lines.len())?;
    // Flagged lines first (gateway, then suspect, by score), each with the evidence behind it.
    let mut order: Vec<&LineEntry> = a.lines.iter().collect();
    order.sort_by(|x, y| {
        y.verdict
            .cmp(&x.verdict)
            .then(y.score.unwrap_or(0.0).total_cmp(&x.score.unwrap_or(0.0)))
    });
    for l in order {
        let line = l.line.map_or_else(|| "-".to_string(), |ip| ip.to_string());
        if let Some(v) = l.verdict.filter(|v| *v != VerdictLevel::Normal) {
            writeln!(
                out,
                "  {line:<40} {} score {:.2}{}{}",
                format!("{v:?}").to_uppercase(),
                l.score.unwrap_or(0.0),
                l.flagged_at
                    .map_or(String::new(), |t| format!(", flagged at {t}")),
                l.site
                    .as_ref()
                    .map_or(String::new(), |s| format!(", {}", E(s)))
            )?;
            for r in &l.reasons {
                writeln!(
                    out,
                    "      {:<20} {:.2}  {}",
                    E(&r.signal),
                    r.strength,
                    E(&r.detail)
                )?;
            }
        }
        if let Some(c) = crate::report::unreadable_caveat(l) {
            writeln!(out, "  {line:<40} NOT ASSESSED FROM SIGNALLING: it {c}")?;
        }
        writeln!(
            out,
            "  {line:<40} calls {:>5} (in {}, the line took part in {} / out {}, answered {}), max concurrent {}, {} distinct called ({} on calls it took part in), median talk {}, {} registrations, {} media flows ({} voice without SIP)",
            l.calls,
            l.inbound_calls,
            l.inbound_calls_taken,
            l.outbound_calls,
            l.answered_calls,
            l.max_concurrent_calls,
            l.distinct_called_numbers,
            l.distinct_called_numbers_taken,
            l.median_talk_secs_inbound
                .map_or_else(|| "-".to_string(), |m| format!("{m:.1} s")),
            l.registrations,
            l.media_flows,
            l.voice_flows_without_sip
        )?;
        if let Some(est) = l.line.and_then(|ip| estimated.get(&ip)) {
            let list: Vec<String> = est
                .iter()
                .map(|(k, e)| {
                    if *e > 0.0 {
                        format!("{k} (estimate, ~{:.0}% error)", e * 100.0)
                    } else {
                        format!("{k} (lower bound / partial)")
                    }
                })
                .collect();
            writeln!(out, "  {line:<40} not exact: {}", list.join(", "))?;
        }
    }
    writeln!(out)?;
    write_threats_text(out, &a.threats)?;
    let shown = a.calls.len().min(TEXT_CALLS);
    writeln!(out, "calls (first {shown} of {call_records}):")?;
    for call in a.calls.iter().take(shown) {
        writeln!(
            out,
            "  {} {:<8} {:<10} {} -> {}  {}  {}",
            call.start,
            format!("{:?}", call.direction).to_lowercase(),
            format!("{:?}", call.outcome).to_lowercase(),
            E(call.from.as_deref().unwrap_or("-")),
            E(call.to.as_deref().unwrap_or("-")),
            call.status_code
                .map_or_else(|| "-".to_string(), |c| c.to_string()),
            E(call.codec.as_deref().unwrap_or("-")),
        )?;
    }
    Ok(())
}

/// The Threats section of the text output: one block per finding, with its targets.
pub fn write_threats_text(out: &mut dyn Write, threats: &[Threat]) -> std::io::Result<()> {
    use crate::text::Escaped as E;
    writeln!(out, "threats ({}):", threats.len())?;
    for t in threats {
        writeln!(
            out,
            "  {:<40} {} ({}), {} requests to {} lines, {} .. {}{}",
            t.peer.to_string(),
            t.kind.label().to_uppercase(),
            t.severity.label(),
            t.requests,
            t.lines_total,
            t.first_seen,
            t.last_seen,
            if t.user_agents.is_empty() {
                String::new()
            } else {
                format!(", User-Agent {}", E(&t.user_agents.join(" / ")))
            }
        )?;
        for r in &t.reasons {
            writeln!(out, "      {}", E(&r.detail))?;
        }
        const SHOWN: usize = 5;
        for l in t.lines.iter().take(SHOWN) {
            let answers: Vec<String> = l
                .answers
                .iter()
                .map(|(k, n)| format!("{} x {n}", E(k)))
                .collect();
            writeln!(
                out,
                "      target {:<32} {} requests, answered: {}",
                l.line.to_string(),
                l.requests,
                if answers.is_empty() {
                    "-".to_string()
                } else {
                    answers.join(", ")
                }
            )?;
        }
        if t.lines.len() > SHOWN {
            writeln!(
                out,
                "      ... and {} more targets",
                t.lines_total.saturating_sub(SHOWN as u64)
            )?;
        }
    }
    writeln!(out)
}
