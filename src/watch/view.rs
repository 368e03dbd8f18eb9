//! What the screens draw: a snapshot of one source (engine or daemon API) at one instant.
//!
//! Contract: plain owned data, bounded by the constants below, sent from the source's thread to
//! the UI thread. Numbers are already pseudonymised when `[privacy]` says so; the UI only
//! formats.

use simboxd_core::model::{Direction, Outcome, Reason, Timestamp, VerdictLevel};
use std::net::{IpAddr, SocketAddr};

/// Rows of the lines screen kept in one snapshot (flagged and highest scores first).
pub const MAX_ROWS: usize = 2000;
/// Latest calls shown per line.
pub const CALLS_PER_LINE: usize = 30;
/// SIP messages kept per call for its ladder.
pub const MESSAGES_PER_CALL: usize = 48;
/// Concurrency samples kept per line for the sparkline.
pub const SPARK_SAMPLES: usize = 300;

/// Counted losses the header shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Drops {
    /// Packets the kernel dropped (capture buffer full).
    pub kernel: u64,
    /// Packets the interface or its driver dropped.
    pub interface: u64,
    /// Snapshots the UI had not taken yet when the next one was ready (the view skipped them).
    pub snapshots: u64,
    /// Packets not written to the live spool (it reached its size cap).
    pub spool: u64,
    /// Engine records not kept for the report (beyond the cap).
    pub records: u64,
    /// Polls of the daemon API that failed.
    pub polls: u64,
}

impl Drops {
    pub fn total(&self) -> u64 {
        self.kernel + self.interface + self.spool + self.records + self.polls
    }
}

/// Where the source is.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    Running,
    Paused,
    /// The replayed file ended: what is shown is final.
    Ended,
    /// The source failed; the text says why.
    Failed(String),
}

/// One row of the lines screen.
#[derive(Clone, Debug, PartialEq)]
pub struct LineRow {
    pub line: IpAddr,
    pub verdict: VerdictLevel,
    pub score: f64,
    pub calls_now: u64,
    pub max_concurrent: u32,
    /// Calls started in the last 5 minutes / hour of packet time (`None`: not known here).
    pub calls_5min: Option<u64>,
    pub calls_hour: Option<u64>,
    /// Share of the line's inbound calls that came from foreign peers.
    pub foreign_share: Option<f64>,
    pub distinct_numbers: u64,
    pub peers: u64,
    /// The peer with most calls.
    pub top_peer: Option<IpAddr>,
    pub site: Option<String>,
    /// It carried media but no readable SIP call: `normal` means "not shown to be a gateway".
    pub unassessed: bool,
}

/// One SIP message of a call's ladder.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowMessage {
    pub ts: Timestamp,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// `INVITE`, `180 Ringing`, `BYE`, ... (never a number or a URI).
    pub label: String,
    /// SDP attached (offer/answer).
    pub sdp: bool,
}

/// One of a line's latest calls.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRow {
    pub call_id: String,
    pub start: Timestamp,
    pub direction: Direction,
    pub peer: Option<SocketAddr>,
    /// The called number on inbound calls, the caller's on outbound (pseudonymised when set).
    pub number: Option<String>,
    /// `None`: still in progress.
    pub outcome: Option<Outcome>,
    pub duration_secs: Option<f64>,
    pub codec: Option<String>,
    /// Voice both ways (the line's participation), `None` when not known (in progress, API).
    pub two_way_voice: Option<bool>,
    pub user_agent: Option<String>,
    pub flow: Vec<FlowMessage>,
}

/// One registration the line sent.
#[derive(Clone, Debug, PartialEq)]
pub struct RegRow {
    pub time: Timestamp,
    pub account: String,
    pub registrar: SocketAddr,
    pub outcome: String,
    pub expires: Option<u32>,
    pub user_agent: Option<String>,
}

/// Everything the detail screen shows about one line.
#[derive(Clone, Debug, PartialEq)]
pub struct LineDetail {
    pub line: IpAddr,
    pub verdict: VerdictLevel,
    pub score: f64,
    pub flagged_at: Option<Timestamp>,
    pub site: Option<String>,
    pub reasons: Vec<Reason>,
    /// Headline figures in plain words (`calls 8 (in 8 / out 0), answered 3, ...`).
    pub figures: String,
    /// Calls in progress, sampled over time (oldest first).
    pub concurrency: Vec<u64>,
    /// Seconds between samples of `concurrency`.
    pub sample_secs: f64,
    /// Latest calls, newest first.
    pub calls: Vec<CallRow>,
    /// Latest registrations, newest first.
    pub registrations: Vec<RegRow>,
    /// Registrations the line sent in all, and accounts it registered.
    pub registrations_seen: u64,
    pub accounts: u64,
    /// User-Agent / Server strings seen from the line, with their counts.
    pub user_agents: Vec<(String, u64)>,
    /// Other lines of the same site.
    pub site_members: Vec<IpAddr>,
    /// Why the verdict cannot rest on signalling (media without a readable call), if so.
    pub caveat: Option<String>,
}

/// An attacking peer and what it did to the lines watched (see `threats`).
#[derive(Clone, Debug, PartialEq)]
pub struct ThreatRow {
    pub peer: IpAddr,
    /// `sweep`, `enumeration`, `toll_fraud`, `flood`, `framing`, ...
    pub kind: String,
    pub lines_targeted: u64,
    pub attempts: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub user_agents: Vec<String>,
}

/// One state of the source, as the UI receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// `file captures/x.pcap (speed max)`, `interface eth1`, `daemon http://...`.
    pub source: String,
    pub state: RunState,
    /// Packet time now (the latest packet seen).
    pub clock: Option<Timestamp>,
    pub packets: u64,
    pub packets_per_sec: f64,
    /// Whether `packets` is known (not over the API).
    pub counts_packets: bool,
    pub drops: Drops,
    /// All lines known (rows may be fewer: `MAX_ROWS`).
    pub lines_total: usize,
    pub lines: Vec<LineRow>,
    /// Detail of the line the UI asked for.
    pub detail: Option<LineDetail>,
    /// `None`: this engine tracks no threats.
    pub threats: Option<Vec<ThreatRow>>,
    /// Daemon alerts (connect mode), newest first, one line each.
    pub alerts: Vec<String>,
    /// Numbers are pseudonyms.
    pub pseudonymized: bool,
    /// Whether `e`/`r` can write files from this source (not over the API).
    pub can_export: bool,
}

impl Snapshot {
    pub fn empty(source: String) -> Snapshot {
        Snapshot {
            source,
            state: RunState::Running,
            clock: None,
            packets: 0,
            packets_per_sec: 0.0,
            counts_packets: true,
            drops: Drops::default(),
            lines_total: 0,
            lines: Vec::new(),
            detail: None,
            threats: None,
            alerts: Vec::new(),
            pseudonymized: false,
            can_export: false,
        }
    }
}

/// Verdict name as the screens print it.
pub fn verdict_name(v: VerdictLevel) -> &'static str {
    // Flagged levels shout (the type's names, upper-cased), the normal one does not.
    match v {
        VerdictLevel::Gateway => "GATEWAY",
        VerdictLevel::Suspect => "SUSPECT",
        VerdictLevel::Normal => VerdictLevel::Normal.name(),
    }
}

/// The marker of a row: the verdict's, or `?` for a line not assessed from signalling.
pub fn row_marker(r: &LineRow) -> &'static str {
    if r.unassessed && r.verdict == VerdictLevel::Normal {
        "?  "
    } else {
        verdict_marker(r.verdict)
    }
}

/// The text marker beside a verdict, for monochrome terminals.
pub fn verdict_marker(v: VerdictLevel) -> &'static str {
    match v {
        VerdictLevel::Gateway => "!! ",
        VerdictLevel::Suspect => "!  ",
        VerdictLevel::Normal => "   ",
    }
}

/// `verdict` parsed from the API's lower-case name.
pub fn verdict_from_name(s: &str) -> VerdictLevel {
    VerdictLevel::from_name(s).unwrap_or(VerdictLevel::Normal)
}
