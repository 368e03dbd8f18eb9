//! Calls: SIP dialogs and REGISTER transactions, tied to their media. (Being implemented.)

use crate::config::Config;
use crate::model::{Counters, Datagram, Event, Timestamp};

/// Running totals of the calls stage.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TrackerStats {
    pub sip_messages: u64,
    pub calls: u64,
    pub registrations: u64,
    pub rtp_streams: u64,
    pub rtp_packets: u64,
}

pub struct Tracker {
    errors: Counters,
    evictions: Counters,
}

impl Tracker {
    pub fn new(_cfg: &Config) -> Self {
        Tracker {
            errors: Counters::default(),
            evictions: Counters::default(),
        }
    }
    /// Takes one transport payload; pushes what happened onto `events`.
    pub fn on_datagram(&mut self, _d: &Datagram<'_>, _events: &mut Vec<Event>) {}
    /// Closes dialogs, transactions and media flows that timed out at `now`.
    pub fn expire(&mut self, _now: Timestamp, _events: &mut Vec<Event>) {}
    /// End of input: reports everything still open (calls as incomplete unless ended).
    pub fn finish(&mut self, _now: Timestamp, _events: &mut Vec<Event>) {}
    pub fn errors(&self) -> &Counters {
        &self.errors
    }
    pub fn stats(&self) -> TrackerStats {
        TrackerStats::default()
    }
    pub fn table_sizes(&self) -> Vec<(&'static str, usize)> {
        Vec::new()
    }
    pub fn evictions(&self) -> &Counters {
        &self.evictions
    }
}
