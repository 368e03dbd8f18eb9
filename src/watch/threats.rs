//! Where the Threats screen gets its rows: attacking peers and what they did to the lines.
//!
//! Contract: a `ThreatFeed` turns whatever the engine tracks into `ThreatRow`s, or answers
//! `None` when the engine tracks no threats (the screen then says so). `EngineThreats` reads the
//! engine's threat table (`Engine::threats`, the same findings as `analyze`'s `threats`).

use super::view::ThreatRow;
use simboxd_core::engine::Engine;

/// Rows of the threats screen kept in one snapshot.
pub const MAX_THREATS: usize = 500;

pub trait ThreatFeed: Send {
    /// The threats tracked now, most active first, at most `MAX_THREATS`; `None` when the engine
    /// tracks none.
    fn threats(&self, engine: &Engine) -> Option<Vec<ThreatRow>>;
}

/// The engine's own threat table.
pub struct EngineThreats;

impl ThreatFeed for EngineThreats {
    fn threats(&self, engine: &Engine) -> Option<Vec<ThreatRow>> {
        let rows = engine
            .threats()
            .into_iter()
            .map(|t| ThreatRow {
                peer: t.peer,
                kind: t.kind.label().to_string(),
                lines_targeted: t.lines_total,
                attempts: t.requests,
                first_seen: t.first_seen,
                last_seen: t.last_seen,
                user_agents: t.user_agents,
            })
            .collect();
        Some(rank(rows))
    }
}

/// Orders rows most active first (attempts, then lines targeted, then latest) and bounds them.
pub fn rank(mut rows: Vec<ThreatRow>) -> Vec<ThreatRow> {
    rows.sort_by(|a, b| {
        b.attempts
            .cmp(&a.attempts)
            .then(b.lines_targeted.cmp(&a.lines_targeted))
            .then(b.last_seen.cmp(&a.last_seen))
            .then(a.peer.cmp(&b.peer))
    });
    rows.truncate(MAX_THREATS);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use simboxd_core::model::Timestamp;

    #[test]
    fn most_active_first() {
        let row = |peer: &str, attempts| ThreatRow {
            peer: peer.parse().unwrap(),
            kind: "sweep".into(),
            lines_targeted: 1,
            attempts,
            first_seen: Timestamp(0),
            last_seen: Timestamp(1),
            user_agents: vec![],
        };
        let r = rank(vec![row("192.0.2.1", 2), row("192.0.2.2", 9)]);
        assert_eq!(r[0].peer.to_string(), "192.0.2.2");
    }
}
