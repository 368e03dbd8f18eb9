//! `simboxd watch --connect URL`: the view of a running daemon (or central) through its HTTP
//! API (`/api/v1/lines`, `/api/v1/lines/{addr}`, `/api/v1/alerts`, bearer token).
//!
//! Contract: one thread polls every `POLL_EVERY` with a fresh HTTP/1.1 connection per request
//! (as the webhook sender does), each request bounded by `REQUEST_TIMEOUT` and its body by
//! `MAX_BODY`; a failed poll is counted (`Drops::polls`) and shown, never fatal. The daemon has
//! pseudonymised numbers already. Evidence and reports are written where the capture is, not
//! over the API.

use super::source::{Command, Link};
use super::view::{
    verdict_from_name, CallRow, Drops, LineDetail, LineRow, RegRow, RunState, Snapshot,
    SPARK_SAMPLES,
};
use crate::alert::webhook::WebhookUrl;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use simboxd_core::model::{Direction, Outcome, Reason, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub const POLL_EVERY: Duration = Duration::from_secs(1);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest API answer read.
pub const MAX_BODY: usize = 16 << 20;
/// Lines asked for per poll.
pub const LIST_LIMIT: usize = 1000;
/// Alerts asked for per poll.
pub const ALERT_LIMIT: usize = 50;

pub struct Remote {
    pub url: WebhookUrl,
    pub token: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Remote {
    async fn get(&self, path: &str) -> Result<Value, String> {
        let base = self.url.path.trim_end_matches('/');
        let full = format!("{base}{path}");
        let fut = async {
            let tcp = tokio::net::TcpStream::connect((self.url.host.as_str(), self.url.port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn crate::alert::syslog::Stream> = if self.url.https {
                let tls = self.tls.clone().ok_or("no TLS settings")?;
                Box::new(crate::alert::delivery::tls_connect(tls, &self.url.host, tcp).await?)
            } else {
                Box::new(tcp)
            };
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| e.to_string())?;
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = hyper::Request::get(full.as_str())
                .header(hyper::header::HOST, self.url.authority())
                .header(
                    hyper::header::AUTHORIZATION,
                    format!("Bearer {}", self.token),
                )
                .header(
                    hyper::header::USER_AGENT,
                    concat!("simboxd-watch/", env!("CARGO_PKG_VERSION")),
                )
                .body(http_body_util::Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string());
            let out = match resp {
                Ok(r) => {
                    let status = r.status();
                    let body = http_body_util::Limited::new(r.into_body(), MAX_BODY)
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    if status.is_success() {
                        serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
                    } else {
                        Err(format!("HTTP {}", status.as_u16()))
                    }
                }
                Err(e) => Err(e),
            };
            driver.abort();
            out
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(r) => r.map_err(|e| format!("{}{full}: {e}", self.url)),
            Err(_) => Err(format!(
                "{}{full}: no answer in {REQUEST_TIMEOUT:?}",
                self.url
            )),
        }
    }

    /// Polls until the UI goes away.
    pub fn run(&self, link: &Link) -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let source = format!("daemon {}", self.url);
        let mut drops = Drops::default();
        let mut history: HashMap<IpAddr, VecDeque<u64>> = HashMap::new();
        let mut frozen = false;
        loop {
            let mut snap = Snapshot::empty(source.clone());
            // Numbers come as the daemon's [privacy] made them; packet counts are in its metrics.
            snap.counts_packets = false;
            let lines = rt.block_on(self.get(&format!("/api/v1/lines?limit={LIST_LIMIT}")));
            let alerts = rt.block_on(self.get(&format!("/api/v1/alerts?limit={ALERT_LIMIT}")));
            let focus = link.focus();
            let detail = focus.map(|ip| rt.block_on(self.get(&format!("/api/v1/lines/{ip}"))));
            let mut error = None;
            match lines {
                Ok(v) => {
                    snap.lines = lines_of(&v);
                    snap.clock = v
                        .get("lines")
                        .and_then(Value::as_array)
                        .and_then(|l| l.iter().filter_map(|x| ts(x, "updated")).max());
                    snap.lines_total = v
                        .get("total")
                        .and_then(Value::as_u64)
                        .map_or(snap.lines.len(), |t| t as usize);
                }
                Err(e) => error = Some(e),
            }
            match alerts {
                Ok(v) => snap.alerts = alerts_of(&v),
                Err(e) => error = error.or(Some(e)),
            }
            if let (Some(ip), Some(Ok(v))) = (focus, detail) {
                let open = v
                    .pointer("/figures/open_calls")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let h = history.entry(ip).or_default();
                if h.len() >= SPARK_SAMPLES {
                    h.pop_front();
                }
                h.push_back(open);
                let mut d = detail_of(ip, &v);
                d.concurrency = h.iter().copied().collect();
                snap.detail = Some(d);
            }
            if history.len() > 64 {
                history.retain(|ip, _| Some(*ip) == focus);
            }
            if let Some(e) = error {
                drops.polls += 1;
                snap.state = RunState::Failed(e);
            } else if frozen {
                snap.state = RunState::Paused;
            }
            snap.drops = drops.clone();
            if !frozen || matches!(snap.state, RunState::Paused) {
                match link.snapshots.try_send(snap) {
                    Ok(()) | Err(std::sync::mpsc::TrySendError::Full(_)) => {}
                    Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Ok(()),
                }
            }
            match link.commands.recv_timeout(POLL_EVERY) {
                Ok(Command::TogglePause) => frozen = !frozen,
                Ok(Command::Evidence(_)) | Ok(Command::Report) => {
                    let _ = link.notices.send(
                        "evidence and reports are written on the daemon's host (simboxd analyze --evidence/--report on its capture), not over the API".into(),
                    );
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }
}

fn ts(v: &Value, key: &str) -> Option<Timestamp> {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(Timestamp::parse_rfc3339)
}

fn f64_at(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

fn u64_at(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
}

/// Rows from `/api/v1/lines` (`LineVerdict` plus `figures`).
pub fn lines_of(v: &Value) -> Vec<LineRow> {
    let Some(list) = v.get("lines").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|l| {
            let line: IpAddr = l.get("line")?.as_str()?.parse().ok()?;
            Some(LineRow {
                line,
                verdict: verdict_from_name(l.get("verdict").and_then(Value::as_str).unwrap_or("")),
                score: f64_at(l, "/score").unwrap_or(0.0),
                calls_now: u64_at(l, "/figures/open_calls"),
                max_concurrent: u64_at(l, "/figures/max_concurrent_calls").min(u64::from(u32::MAX))
                    as u32,
                calls_5min: None,
                calls_hour: None,
                foreign_share: None,
                distinct_numbers: u64_at(l, "/figures/distinct_called_numbers"),
                peers: 0,
                top_peer: None,
                site: l.get("site").and_then(Value::as_str).map(String::from),
                unassessed: false,
            })
        })
        .collect()
}

/// One line per alert from `/api/v1/alerts`: its time (capture time, UTC) and summary.
pub fn alerts_of(v: &Value) -> Vec<String> {
    let Some(list) = v.get("alerts").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|a| serde_json::from_value::<crate::alert::Alert>(a.clone()).ok())
        .map(|a| format!("{} {}", super::ui::hms(a.created), a.summary(1)))
        .collect()
}

fn direction_of(s: &str) -> Direction {
    match s {
        "inbound" => Direction::Inbound,
        "outbound" => Direction::Outbound,
        "internal" => Direction::Internal,
        _ => Direction::Transit,
    }
}

fn outcome_of(s: &str) -> Option<Outcome> {
    serde_json::from_value(Value::String(s.to_string())).ok()
}

/// The detail screen from `/api/v1/lines/{addr}`.
pub fn detail_of(ip: IpAddr, v: &Value) -> LineDetail {
    let verdict = v.get("verdict").cloned().unwrap_or(Value::Null);
    let reasons: Vec<Reason> = verdict
        .get("reasons")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default();
    let f = |k: &str| u64_at(v, &format!("/figures/{k}"));
    let figures = format!(
        "calls {} (in {} / out {}), answered {}, now {}, max concurrent {}, {} distinct called, {} registrations",
        f("calls"),
        f("inbound_calls"),
        f("outbound_calls"),
        f("answered_calls"),
        f("open_calls"),
        f("max_concurrent_calls"),
        f("distinct_called_numbers"),
        u64_at(v, "/profile/registrations"),
    );
    let calls: Vec<CallRow> = v
        .get("recent_calls")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|c| CallRow {
                    call_id: c
                        .get("call_id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    start: ts(c, "start").unwrap_or_default(),
                    direction: direction_of(
                        c.get("direction").and_then(Value::as_str).unwrap_or(""),
                    ),
                    peer: c
                        .get("peer")
                        .and_then(Value::as_str)
                        .and_then(|p| p.parse().ok()),
                    number: c.get("to").and_then(Value::as_str).map(String::from),
                    outcome: c
                        .get("outcome")
                        .and_then(Value::as_str)
                        .and_then(outcome_of),
                    duration_secs: c
                        .get("talk_secs")
                        .and_then(Value::as_f64)
                        .or_else(|| Some(ts(c, "end")?.secs_since(ts(c, "start")?).max(0.0))),
                    codec: c.get("codec").and_then(Value::as_str).map(String::from),
                    two_way_voice: None,
                    user_agent: c
                        .get("user_agent")
                        .and_then(Value::as_str)
                        .map(String::from),
                    flow: Vec::new(),
                })
                .take(super::view::CALLS_PER_LINE)
                .collect()
        })
        .unwrap_or_default();
    let mut counted: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for c in &calls {
        if let Some(ua) = c.user_agent.as_ref().filter(|u| !u.is_empty()) {
            *counted.entry(ua.chars().take(80).collect()).or_default() += 1;
        }
    }
    let mut agents: Vec<(String, u64)> = counted.into_iter().collect();
    agents.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    LineDetail {
        line: ip,
        verdict: verdict_from_name(verdict.get("verdict").and_then(Value::as_str).unwrap_or("")),
        score: verdict.get("score").and_then(Value::as_f64).unwrap_or(0.0),
        flagged_at: ts(&verdict, "flagged_at"),
        site: verdict
            .get("site")
            .and_then(Value::as_str)
            .map(String::from),
        reasons,
        figures,
        concurrency: Vec::new(),
        sample_secs: POLL_EVERY.as_secs_f64(),
        calls,
        registrations: Vec::<RegRow>::new(),
        registrations_seen: u64_at(v, "/profile/registrations"),
        accounts: u64_at(v, "/profile/accounts_registered"),
        user_agents: agents,
        site_members: Vec::new(),
        caveat: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_json_becomes_rows_and_detail() {
        let lines = serde_json::json!({"total": 2, "lines": [
            {"line": "100.64.1.10", "verdict": "gateway", "score": 0.94, "site": null,
             "figures": {"open_calls": 2, "max_concurrent_calls": 4, "distinct_called_numbers": 8}},
            {"line": "not an address", "verdict": "normal"}
        ]});
        let rows = lines_of(&lines);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].verdict, simboxd_core::model::VerdictLevel::Gateway);
        assert_eq!(
            (
                rows[0].calls_now,
                rows[0].max_concurrent,
                rows[0].distinct_numbers
            ),
            (2, 4, 8)
        );
        let ip: IpAddr = "100.64.1.10".parse().unwrap();
        let detail = serde_json::json!({
            "verdict": {"verdict": "gateway", "score": 0.94, "flagged_at": "2026-01-05T09:01:14Z",
                        "reasons": [{"signal": "foreign_inbound", "value": 1.0, "strength": 1.0,
                                     "detail": "6 of the 6 calls"}]},
            "figures": {"calls": 8, "inbound_calls": 8},
            "profile": {"registrations": 4, "accounts_registered": 4},
            "recent_calls": [{"call_id": "a", "direction": "inbound", "peer": "203.0.113.10:5060",
                              "to": "p:0011", "outcome": "no-answer", "start": "2026-01-05T09:00:00Z",
                              "end": "2026-01-05T09:00:20Z", "codec": "G729", "user_agent": "X"}]
        });
        let d = detail_of(ip, &detail);
        assert_eq!(d.reasons.len(), 1);
        assert!(d.flagged_at.is_some());
        assert_eq!((d.registrations_seen, d.accounts), (4, 4));
        let c = &d.calls[0];
        assert_eq!(c.outcome, Some(Outcome::NoAnswer));
        assert_eq!(c.duration_secs, Some(20.0));
        assert_eq!(c.number.as_deref(), Some("p:0011"));
        assert_eq!(d.user_agents, vec![("X".to_string(), 1)]);
        // Whatever comes back, nothing panics.
        let _ = detail_of(ip, &serde_json::json!([1, 2]));
        assert!(lines_of(&serde_json::json!("x")).is_empty());
        assert!(alerts_of(&serde_json::json!({"alerts": [{"junk": true}]})).is_empty());
    }
}
