//! Offline analysis of a capture file: the engine run to the end, with every record kept.
//!
//! Contract: `analyze_file` is what `simboxd analyze` prints (JSON: `Analysis`, the names are a
//! contract other tools read) and what reports and evaluations are built from.

use crate::capture::Capture;
use crate::config::Config;
use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};
use simboxd_core::engine::{Engine, EngineStats};
use simboxd_core::model::{
    CallRecord, Counters, Event, MediaFlowRecord, Outcome, Reason, RegistrationRecord, Timestamp,
    VerdictLevel,
};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Records kept per kind in one analysis; beyond it records are counted, not kept.
pub const MAX_RECORDS: usize = 2_000_000;

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// pcap or pcapng file.
    pub capture: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Subscriber prefix (repeatable); default RFC 1918, 100.64.0.0/10 and fc00::/7.
    #[arg(long = "home-net", value_name = "CIDR")]
    pub home_net: Vec<ipnet::IpNet>,
    /// Domestic prefix (repeatable).
    #[arg(long = "domestic-net", value_name = "CIDR")]
    pub domestic_net: Vec<ipnet::IpNet>,
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

#[derive(Clone, Debug, Serialize)]
pub struct CaptureInfo {
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub packets: u64,
    pub bytes: u64,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub sip_messages: u64,
    /// Distinct INVITE dialogs.
    pub calls: u64,
    pub registrations: u64,
    pub rtp_streams: u64,
    pub rtp_packets: u64,
    pub media_flows: u64,
    pub decode_errors: Counters,
    /// Well-formed packets of protocols not analysed (ARP, STP, ICMP, ...), by kind: not errors.
    pub decode_skipped: Counters,
    pub evictions: Counters,
    /// Records counted but not kept (beyond `MAX_RECORDS`).
    pub records_dropped: u64,
}

/// One line (subscriber address) seen in the capture.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LineEntry {
    pub line: Option<IpAddr>,
    /// Detection's verdict (absent when detection did not score the line).
    pub verdict: Option<VerdictLevel>,
    pub score: Option<f64>,
    /// Capture time when the verdict first became `gateway`.
    pub flagged_at: Option<Timestamp>,
    pub site: Option<String>,
    pub reasons: Vec<Reason>,
    pub calls: u64,
    pub inbound_calls: u64,
    pub outbound_calls: u64,
    pub answered_calls: u64,
    /// Calls in progress at once, at most (`figures::max_concurrent`).
    pub max_concurrent_calls: u32,
    /// Calls still open when the capture ended (drawn and counted until its last packet).
    pub open_calls_at_end: u64,
    pub distinct_called_numbers: u64,
    /// Inbound calls the line took part in (`figures::is_taken_inbound`): the only inbound
    /// calls detection judges the line on. The rest were offers it rejected or ignored, or
    /// answered without relaying voice.
    pub inbound_calls_taken: u64,
    /// Of those, calls the line answered.
    pub inbound_calls_taken_answered: u64,
    /// Distinct numbers called on the calls the line took part in.
    pub distinct_called_numbers_taken: u64,
    /// Exact median talk time of the line's answered inbound calls (what detection judges).
    pub median_talk_secs_inbound: Option<f64>,
    pub peers: Vec<String>,
    pub registrations: u64,
    pub media_flows: u64,
    pub voice_flows_without_sip: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    pub capture: CaptureInfo,
    /// The home and domestic prefixes the run used.
    pub network: simboxd_core::config::NetworkConfig,
    pub stats: Stats,
    pub calls: Vec<CallRecord>,
    pub registrations: Vec<RegistrationRecord>,
    pub media_flows: Vec<MediaFlowRecord>,
    pub lines: Vec<LineEntry>,
}

/// Streams the file through SHA-256.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

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

/// Runs the whole engine over a capture file.
pub fn analyze_file(path: &Path, cfg: &Config, progress: bool) -> anyhow::Result<Analysis> {
    // The file's hash is computed on a second thread while the engine reads it.
    let hasher = {
        let p = path.to_path_buf();
        std::thread::spawn(move || sha256_file(&p))
    };
    let mut cap = Capture::open_file(path)?;
    let size = cap.file_size().unwrap_or(0);
    let bar = if progress {
        let b = indicatif::ProgressBar::new(size);
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
    let mut engine = Engine::new(&cfg.engine());
    let mut col = Collector::default();
    let mut n: u64 = 0;
    while let Some(pkt) = cap.next_packet()? {
        engine.process(&pkt);
        for ev in engine.drain_events() {
            col.take(ev);
        }
        n += 1;
        if n % 65536 == 0 {
            if let Some(b) = &bar {
                b.set_position(cap.bytes_consumed());
            }
        }
    }
    engine.finish();
    for ev in engine.drain_events() {
        col.take(ev);
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let sha256 = hasher
        .join()
        .map_err(|_| anyhow::anyhow!("hashing thread panicked"))?
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let st = engine.stats();
    let verdicts = engine.lines().verdicts();
    let mut a = build(path, sha256, size, st, col, cfg);
    apply_verdicts(&mut a.lines, &verdicts);
    let privacy = crate::privacy::Pseudonymizer::from_config(&cfg.privacy)
        .map_err(|e| anyhow::anyhow!("[privacy]: {e}"))?;
    if privacy.enabled() {
        pseudonymize(&mut a, &privacy);
    }
    Ok(a)
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
    let mut a = build(source, sha256, size, st, col, cfg);
    apply_verdicts(&mut a.lines, verdicts);
    let privacy = crate::privacy::Pseudonymizer::from_config(&cfg.privacy)
        .map_err(|e| anyhow::anyhow!("[privacy]: {e}"))?;
    if privacy.enabled() {
        pseudonymize(&mut a, &privacy);
    }
    Ok(a)
}

fn build(
    path: &Path,
    sha256: String,
    size: u64,
    st: EngineStats,
    col: Collector,
    cfg: &Config,
) -> Analysis {
    let mut calls = col.calls;
    calls.sort_by(|a, b| a.start.cmp(&b.start).then(a.call_id.cmp(&b.call_id)));
    let lines = line_entries(
        &calls,
        &col.registrations,
        &col.media,
        st.last,
        cfg.detection.sip_only_min_talk_secs,
    );
    Analysis {
        capture: CaptureInfo {
            file: path.display().to_string(),
            sha256,
            size,
            packets: st.packets,
            bytes: st.bytes,
            start: st.first,
            end: st.last,
        },
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
        calls,
        registrations: col.registrations,
        media_flows: col.media,
        lines,
    }
}

/// Per-line figures derived from the records.
fn line_entries(
    calls: &[CallRecord],
    regs: &[RegistrationRecord],
    media: &[MediaFlowRecord],
    capture_end: Option<Timestamp>,
    sip_only_min_talk: f64,
) -> Vec<LineEntry> {
    let mut by: BTreeMap<IpAddr, LineEntry> = BTreeMap::new();
    let mut numbers: BTreeMap<IpAddr, std::collections::BTreeSet<&str>> = BTreeMap::new();
    let mut taken_numbers: BTreeMap<IpAddr, std::collections::BTreeSet<&str>> = BTreeMap::new();
    // Lines any of whose calls carried media: there, an answer must carry voice both ways.
    let line_media: std::collections::BTreeSet<IpAddr> = calls
        .iter()
        .filter(|c| !c.rtp.is_empty())
        .filter_map(|c| c.line)
        .collect();
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
        if crate::figures::is_taken_inbound(c, line_media.contains(&line), sip_only_min_talk) {
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
}

/// The configuration as the report shows it: only the sections analysis uses, without keys,
/// tokens or alert targets (see `report::provenance::used_config_toml`).
pub fn redacted_config_toml(cfg: &Config) -> String {
    crate::report::provenance::used_config_toml(cfg)
}

/// Adds detection's verdicts to the per-line entries (lines only detection saw get an entry too)
/// and orders them flagged first, then by score. The counters stay those of the records, which
/// offline analysis has in full (the same figures the report's charts draw).
fn apply_verdicts(lines: &mut Vec<LineEntry>, verdicts: &[simboxd_core::model::LineVerdict]) {
    for v in verdicts {
        let idx = match lines.iter().position(|l| l.line == Some(v.line)) {
            Some(i) => i,
            None => {
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

pub fn cli_main(args: AnalyzeArgs) -> anyhow::Result<()> {
    let cfg = settings(&args)?;
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
    let a = analyze_file(&args.capture, &cfg, progress)?;
    let prov =
        crate::report::Provenance::of_run(&cfg, args.case.clone(), args.examiner.clone(), clock);
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
        let m =
            crate::evidence::export_run(&args.capture, &a.capture.sha256, &cfg, &lines, dir, &run)
                .with_context(|| format!("{}: cannot write evidence", dir.display()))?;
        for l in &m.lines_without_traffic {
            eprintln!(
                "warning: --evidence-line {l}: no packet of this line in the capture; no file written (recorded in manifest.json)"
            );
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &a)?;
            writeln!(out)?;
        }
        Format::Text => write_text(&mut out, &a)?,
    }
    out.flush()?;
    Ok(())
}

fn opt_ts(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_string(), |t| t.to_rfc3339())
}

/// The readable summary for a person.
pub fn write_text(out: &mut dyn Write, a: &Analysis) -> std::io::Result<()> {
    let c = &a.capture;
    writeln!(out, "capture  {}", c.file)?;
    writeln!(out, "sha256   {}", c.sha256)?;
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
                l.site.as_ref().map_or(String::new(), |s| format!(", {s}"))
            )?;
            for r in &l.reasons {
                writeln!(
                    out,
                    "      {:<20} {:.2}  {}",
                    r.signal, r.strength, r.detail
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
    }
    writeln!(out)?;
    let shown = a.calls.len().min(50);
    writeln!(out, "calls (first {shown} of {}):", a.calls.len())?;
    for call in a.calls.iter().take(shown) {
        writeln!(
            out,
            "  {} {:<8} {:<10} {} -> {}  {}  {}",
            call.start,
            format!("{:?}", call.direction).to_lowercase(),
            format!("{:?}", call.outcome).to_lowercase(),
            call.from.as_deref().unwrap_or("-"),
            call.to.as_deref().unwrap_or("-"),
            call.status_code
                .map_or_else(|| "-".to_string(), |c| c.to_string()),
            call.codec.as_deref().unwrap_or("-"),
        )?;
    }
    Ok(())
}
