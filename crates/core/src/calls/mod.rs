//! Calls: SIP INVITE dialogs and REGISTER transactions, tied to their media.
//!
//! Contract: `Tracker` takes transport payloads in capture order and pushes `Event`s in capture
//! order. SIP payloads are parsed (failures counted as `sip.<kind>`), everything else on UDP goes
//! to the media table. Dialogs are keyed by Call-ID; a dialog is one call however many
//! retransmissions, hops of the same transaction, authentication retries or re-INVITEs it sees.
//! A dialog that has seen nothing but its INVITE (no response, no other request) is closed as
//! incomplete after `limits.dialog_no_response_timeout_secs` (RFC 3261 Timer B: the caller gave
//! up), so a flood of unanswered INVITEs holds a few seconds' worth of dialogs, not the setup
//! timeout's. A reported dialog leaves a small tombstone (hashed From-tag and CSeq) in its own
//! table. Every table is bounded (`limits.dialogs` for dialogs and for tombstones,
//! `limits.registrations`, `limits.media_flows`) and evicts the entry whose deadline comes first,
//! counting it. Packet time only: `expire` is also run from `on_datagram` whenever packet time
//! advances by a second.

use crate::config::{LimitsConfig, NetworkConfig};
use crate::media::MediaTable;
use crate::model::{Counters, Datagram, Event, RegOutcome, Timestamp, Transport};
use crate::sip::{self, Method, SipMessage};
use crate::table::TimedTable;
use serde::Serialize;
use std::net::IpAddr;

/// After BYE, CANCEL or a final failure, a dialog waits this long for the 200/487/ACK, an
/// authenticated retry or a forked 2xx, and for trailing RTP, before it is reported.
const END_LINGER_SECS: f64 = 4.0;
/// After 401/407 to an INVITE, how long to wait for the authenticated retry (a person may have
/// to type a password) before reporting the call as failed.
const CHALLENGE_WAIT_SECS: f64 = 64.0;
/// A reported dialog stays as a tombstone this long so late retransmissions and late retries
/// do not start a new call.
const TOMBSTONE_SECS: f64 = 64.0;
/// Longest string kept from a header (User-Agent etc.).
const MAX_FIELD: usize = 200;
/// Most SDP endpoints remembered per dialog and RTP streams carried per call record.
const MAX_ENDPOINTS: usize = 8;
const MAX_CALL_STREAMS: usize = 32;
/// Payloads shorter than this are neither SIP nor media (keep-alives).
const MIN_MEDIA_PAYLOAD: usize = 12;

/// Running totals of the tracker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrackerStats {
    /// SIP messages parsed.
    pub sip_messages: u64,
    pub(crate) sip_requests: u64,
    pub(crate) sip_responses: u64,
    /// Distinct INVITE dialogs (distinct Call-IDs that carried an INVITE request).
    pub calls: u64,
    /// Call records reported.
    pub calls_ended: u64,
    pub(crate) calls_answered: u64,
    /// REGISTER transactions reported.
    pub registrations: u64,
    /// Requests and responses recognised as retransmissions (or other hops of one transaction).
    pub retransmissions: u64,
    /// Media flows created and reported.
    pub(crate) media_flows: u64,
    pub(crate) media_reported: u64,
    /// RTP streams and packets in reported media flows.
    pub rtp_streams: u64,
    /// RTP packets counted in those streams.
    pub rtp_packets: u64,
    pub(crate) rtcp_packets: u64,
}

mod dialog;
mod probe;
mod register;
#[cfg(test)]
mod tests;

use dialog::*;
use probe::*;
use register::*;

#[derive(Clone, Copy, Debug)]
struct Limits {
    setup_secs: f64,
    /// Setup timeout of a dialog that has seen nothing but its INVITE (at most `setup_secs`).
    no_response_secs: f64,
    established_secs: f64,
    registration_secs: f64,
}

/// Tracks SIP dialogs, registrations and media flows; turns them into `Event`s.
pub struct Tracker {
    network: NetworkConfig,
    sip_limits: sip::Limits,
    limits: Limits,
    /// Keyed by the Call-ID's keyed hash (the dialog keeps the Call-ID itself). Boxed: the
    /// table's slots hold a pointer, not a whole dialog, so its spare capacity under a flood
    /// costs little.
    dialogs: TimedTable<CallKey, Box<Dialog>>,
    /// Reported dialogs, kept `TOMBSTONE_SECS` so late messages do not start a new call.
    tombs: TimedTable<CallKey, Tomb>,
    /// Keyed per process: hostile Call-IDs cannot be crafted to collide.
    hasher: ahash::RandomState,
    regs: TimedTable<String, PendingReg>,
    media: MediaTable,
    next_seq: u64,
    last_expire: Option<Timestamp>,
    errors: Counters,
    own_evictions: Counters,
    evictions: Counters,
    media_evictions_seen: u64,
    stats: TrackerStats,
}

/// A Call-ID as a table key: its keyed 64-bit hash. The dialog table's map and deadline index
/// each hold the key, so a hash instead of the string saves two copies of every Call-ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct CallKey(u64);

/// What is left of a reported dialog: enough to recognise its late retransmissions (same
/// From-tag and CSeq) and a fresh attempt on its Call-ID.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tomb {
    pub(super) from_tag: Option<u64>,
    pub(super) invite_cseq: u32,
}

fn short(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_FIELD {
        return s.to_string();
    }
    let mut end = MAX_FIELD;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("").to_string()
}

/// Whether a Contact/Via host names an address that is not publicly routable.
fn is_private_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    match h.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_loopback()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        Ok(IpAddr::V6(v6)) => {
            let s0 = v6.segments()[0];
            (s0 & 0xfe00) == 0xfc00 || (s0 & 0xffc0) == 0xfe80 || v6.is_loopback()
        }
        Err(_) => false,
    }
}

fn same_ip(host: &str, ip: IpAddr) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse::<IpAddr>().is_ok_and(|h| h == ip)
}

impl Tracker {
    /// An empty tracker with `l`'s table caps and timeouts; `network` says which end is the line.
    pub fn new(network: &NetworkConfig, l: &LimitsConfig) -> Self {
        Tracker {
            network: network.clone(),
            sip_limits: sip::Limits::from(l),
            limits: Limits {
                setup_secs: f64::from(l.dialog_setup_timeout_secs.max(1)),
                no_response_secs: f64::from(
                    l.dialog_no_response_timeout_secs
                        .clamp(1, l.dialog_setup_timeout_secs.max(1)),
                ),
                established_secs: f64::from(l.dialog_timeout_secs.max(1)),
                registration_secs: f64::from(l.registration_timeout_secs.max(1)),
            },
            dialogs: TimedTable::new(l.dialogs),
            tombs: TimedTable::new(l.dialogs),
            hasher: ahash::RandomState::new(),
            regs: TimedTable::new(l.registrations),
            media: MediaTable::new(network, l),
            next_seq: 0,
            last_expire: None,
            errors: Counters::default(),
            own_evictions: Counters::default(),
            evictions: Counters::default(),
            media_evictions_seen: 0,
            stats: TrackerStats::default(),
        }
    }

    pub(super) fn key(&self, call_id: &str) -> CallKey {
        CallKey(self.hasher.hash_one(call_id))
    }

    pub(super) fn tag_hash(&self, tag: Option<&str>) -> Option<u64> {
        tag.map(|t| self.hasher.hash_one(t))
    }

    /// Takes one transport payload; pushes what happened onto `events`.
    #[inline]
    pub fn on_datagram(&mut self, d: &Datagram<'_>, events: &mut Vec<Event>) {
        match self.last_expire {
            None => self.last_expire = Some(d.ts),
            // `secs_since(t) >= 1.0` in whole microseconds (no division per packet).
            Some(t) if d.ts.micros().wrapping_sub(t.micros()) >= 1_000_000 => {
                self.expire(d.ts, events)
            }
            Some(_) => {}
        }
        if sip::looks_like_sip(d.payload) {
            self.on_sip_datagram(d, events);
        } else if d.transport == Transport::Udp && d.payload.len() >= MIN_MEDIA_PAYLOAD {
            let from = events.len();
            self.media.on_datagram(d, events);
            // Nearly every media packet ends no flow and evicts nothing.
            if events.len() > from || self.media.evictions_total() != self.media_evictions_seen {
                self.absorb_media(events, from);
            }
        }
    }

    /// `on_datagram` for a payload that looks like SIP (out of line: the media path, taken by
    /// nearly every packet, stays small).
    #[inline(never)]
    fn on_sip_datagram(&mut self, d: &Datagram<'_>, events: &mut Vec<Event>) {
        // A body cut short (snaplen, lost fragment) still leaves headers worth tracking.
        // Parsed in place: the message holds a 4 KB header array, not to be moved.
        let mut msg = SipMessage::blank();
        match sip::parse_lenient_into(d.payload, &self.sip_limits, &mut msg) {
            Ok(()) => {
                if msg.body_truncated {
                    self.errors.add("sip.truncated", 1);
                }
                // An unreadable Content-Length over UDP: read as far as the datagram goes.
                if msg.content_length_ignored {
                    self.errors.add("sip.bad_content_length", 1);
                }
                self.on_sip(&msg, d, events);
            }
            Err(e) => self.errors.add(&format!("sip.{}", e.kind()), 1),
        }
    }

    /// A time by which every dialog that ended (BYE, CANCEL) has been reported: a call ended
    /// before it and not reported yet is still running. Reports come at the first expiry at
    /// least `END_LINGER_SECS` after the end (retransmissions of the BYE are absorbed first).
    pub fn ends_reported_until(&self) -> Option<Timestamp> {
        self.last_expire.map(|t| t.plus_secs(-END_LINGER_SECS))
    }

    /// Closes dialogs, transactions and media flows that timed out at `now`.
    pub fn expire(&mut self, now: Timestamp, events: &mut Vec<Event>) {
        self.last_expire = Some(now);
        let from = events.len();
        self.media.expire(now, events);
        self.absorb_media(events, from);
        while let Some(key) = self.tombs.first_due(now) {
            self.tombs.remove(&key);
        }
        while let Some(key) = self.dialogs.first_due(now) {
            let Some(phase) = self.dialogs.get(&key).map(|d| d.phase) else {
                break;
            };
            match phase {
                Phase::Setup => {
                    if let Some(dl) = self.dialogs.get_mut(&key) {
                        dl.timed_out = true;
                    }
                    self.report(&key, now, events);
                }
                Phase::Answered => {
                    // No BYE seen: the call ended at its last sign of life.
                    let last_rtp = self.dialogs.get(&key).and_then(|dl| {
                        self.media
                            .streams_for(&dl.call_id)
                            .iter()
                            .map(|s| s.last)
                            .max()
                    });
                    if let Some(dl) = self.dialogs.get_mut(&key) {
                        dl.timed_out = true;
                        let rtp_end = dl.rtp.iter().map(|s| s.last).max().max(last_rtp);
                        dl.end = Some(rtp_end.map_or(dl.last, |r| r.max(dl.last)));
                    }
                    self.report(&key, now, events);
                }
                Phase::Ending(_) => self.report(&key, now, events),
            }
        }
        while let Some(key) = self.regs.first_due(now) {
            if let Some(r) = self.regs.remove(&key) {
                let outcome = if r.challenged {
                    RegOutcome::Challenged
                } else {
                    RegOutcome::NoResponse
                };
                self.emit_reg(&r, outcome, events);
            }
        }
        self.sync_evictions();
    }

    /// End of input: reports everything still open (calls as incomplete unless ended).
    pub fn finish(&mut self, now: Timestamp, events: &mut Vec<Event>) {
        self.expire(now, events);
        let from = events.len();
        // Media first, so that call records carry the final RTP figures.
        self.media.finish(now, events);
        self.absorb_media(events, from);
        let mut open: Vec<(u64, CallKey)> = self
            .dialogs
            .values()
            .map(|d| (d.seq, self.key(&d.call_id)))
            .collect();
        open.sort();
        for (_, key) in open {
            self.report(&key, now, events);
        }
        self.dialogs.drain_ordered();
        self.tombs.drain_ordered();
        let mut regs = self.regs.drain_ordered();
        regs.sort_by_key(|(_, r)| r.time);
        for (_, r) in regs {
            let outcome = if r.challenged {
                RegOutcome::Challenged
            } else {
                RegOutcome::NoResponse
            };
            self.emit_reg(&r, outcome, events);
        }
        self.sync_evictions();
    }

    /// Messages that failed to parse or lacked what the tracker needs, by kind (`sip.<kind>`,
    /// `sdp.<kind>`, ...).
    pub fn errors(&self) -> &Counters {
        &self.errors
    }
    /// Evictions by table (dialogs, registrations, media flows, ...).
    pub fn evictions(&self) -> &Counters {
        &self.evictions
    }

    /// Current number of entries in each bounded table.
    pub fn table_sizes(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("dialogs", self.dialogs.len()),
            ("registrations", self.regs.len()),
            ("media_flows", self.media.flow_count()),
            ("media_expectations", self.media.expectation_count()),
            ("dialog_tombstones", self.tombs.len()),
        ]
    }

    /// Running totals so far.
    pub fn stats(&self) -> TrackerStats {
        let m = self.media.stats();
        TrackerStats {
            media_flows: m.flows,
            media_reported: m.reported,
            rtp_streams: m.rtp_streams,
            rtp_packets: m.rtp_packets,
            rtcp_packets: m.rtcp_packets,
            ..self.stats.clone()
        }
    }

    fn sync_evictions(&mut self) {
        let total = self.media.evictions_total();
        if total != self.media_evictions_seen {
            self.media_evictions_seen = total;
            let mut all = self.own_evictions.clone();
            all.merge(self.media.evictions());
            self.evictions = all;
        }
    }

    fn evicted(&mut self, key: &'static str) {
        self.own_evictions.add(key, 1);
        self.evictions.add(key, 1);
    }

    /// Hands the RTP figures of media flows that just ended to their calls.
    fn absorb_media(&mut self, events: &[Event], from: usize) {
        for e in events.get(from..).unwrap_or(&[]) {
            if let Event::MediaEnded(r) = e {
                if let Some(c) = &r.call_id {
                    let key = self.key(c);
                    if let Some(dl) = self.dialogs.get_mut(&key) {
                        for s in &r.streams {
                            if dl.rtp.len() < MAX_CALL_STREAMS {
                                dl.rtp.push(s.clone());
                            }
                        }
                    }
                }
            }
        }
        self.sync_evictions();
    }

    fn on_sip(&mut self, msg: &SipMessage<'_>, d: &Datagram<'_>, events: &mut Vec<Event>) {
        self.stats.sip_messages += 1;
        if msg.is_request() {
            self.stats.sip_requests += 1;
        } else {
            self.stats.sip_responses += 1;
        }
        let Some(call_id) = msg.call_id() else {
            self.errors.add("sip.no_call_id", 1);
            return;
        };
        let Some((cseq, cmethod)) = msg.cseq() else {
            self.errors.add("sip.no_cseq", 1);
            return;
        };
        match (msg.method(), msg.status()) {
            (Some(Method::Register), _) => self.on_register(msg, call_id, cseq, d, events),
            (Some(Method::Invite), _) => self.on_invite(msg, call_id, cseq, d, events),
            (Some(m), _) => {
                self.maybe_probe(msg, m, None, call_id, d, events);
                self.on_in_dialog_request(msg, m, call_id, d)
            }
            (None, Some(code)) => match cmethod {
                Method::Register => self.on_register_response(msg, call_id, cseq, code, d, events),
                Method::Invite => self.on_invite_response(msg, call_id, cseq, code, d, events),
                m => {
                    self.maybe_probe(msg, m, Some(code), call_id, d, events);
                    self.on_other_response(msg, call_id, d)
                }
            },
            (None, None) => {}
        }
    }
}
