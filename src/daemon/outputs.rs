//! What a worker's engine hands the daemon, typed: line list entries and details for the API,
//! figures for `/metrics`, ended calls for the stream. They turn into JSON only at the edge
//! (the HTTP handlers, the metrics exposition, the stream publisher), never inside a worker.
//!
//! Contract: serialised with `serde_json::to_value`, each gives the JSON the API, `/metrics`
//! and the stream have always shown (a recorded golden checks the bytes: the adapter's tests).

use crate::figures::LiveFigures;
use serde::Serialize;
use simboxd_core::detect::LineSummary;
use simboxd_core::engine::EngineStats;
use simboxd_core::model::{Counters, Direction, LineVerdict, Outcome, Timestamp};
use std::net::{IpAddr, SocketAddr};

/// A line as `/api/v1/lines` lists it: its verdict with the headline figures.
#[derive(Clone, Debug, Serialize)]
pub struct LineListed {
    #[serde(flatten)]
    pub verdict: LineVerdict,
    pub figures: LiveFigures,
}

/// One line for `/api/v1/lines/{addr}`: verdict, profile (its headline counters those of
/// `figures`), headline figures and the latest calls, newest first.
#[derive(Clone, Debug, Serialize)]
pub struct LineDetail {
    pub line: IpAddr,
    pub verdict: Option<LineVerdict>,
    pub profile: LineSummary,
    pub figures: LiveFigures,
    pub recent_calls: Vec<RecentCall>,
}

/// One ended call as a line's detail shows it (numbers pseudonymised).
#[derive(Clone, Debug, Serialize)]
pub struct RecentCall {
    pub call_id: String,
    pub direction: Direction,
    pub peer: Option<SocketAddr>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub request_uri: Option<String>,
    pub user_agent: Option<String>,
    pub codec: Option<String>,
    pub start: Timestamp,
    pub answer: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub outcome: Outcome,
    pub status_code: Option<u16>,
    pub talk_secs: Option<f64>,
}

/// One worker's figures for `/metrics`: the engine's stats (its `tables` and `evictions` with
/// the worker's own tables added), events by kind, the pre-alert rings when evidence is on,
/// and the line table's events.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerStats {
    #[serde(flatten)]
    pub engine: EngineStats,
    pub events: Counters,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_ring: Option<RingFigures>,
    pub lines: Counters,
}

/// Pre-alert ring packets by outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RingFigures {
    pub kept: u64,
    pub media_sampled_out: u64,
    pub ring_overflow: u64,
    pub recording_refused: u64,
}
