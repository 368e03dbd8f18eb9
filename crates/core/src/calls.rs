//! Calls: SIP INVITE dialogs and REGISTER transactions, tied to their media.
//!
//! Contract: `Tracker` takes transport payloads in capture order and pushes `Event`s in capture
//! order. SIP payloads are parsed (failures counted as `sip.<kind>`), everything else on UDP goes
//! to the media table. Dialogs are keyed by Call-ID; a dialog is one call however many
//! retransmissions, hops of the same transaction, authentication retries or re-INVITEs it sees.
//! Every table is bounded (`limits.dialogs`, `limits.registrations`, `limits.media_flows`) and
//! evicts the entry whose deadline comes first, counting it. Packet time only: `expire` is also
//! run from `on_datagram` whenever packet time advances by a second.

use crate::config::{EngineConfig, NetworkConfig};
use crate::media::{MediaTable, TimedTable};
use crate::model::{
    CallRecord, Counters, Datagram, Direction, Event, Outcome, Participation, RegOutcome,
    RegistrationRecord, RtpStreamStats, Timestamp, Transport,
};
use crate::sdp;
use crate::sip::{self, Method, SipMessage};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};

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
    pub sip_requests: u64,
    pub sip_responses: u64,
    /// Distinct INVITE dialogs (distinct Call-IDs that carried an INVITE request).
    pub calls: u64,
    /// Call records reported.
    pub calls_ended: u64,
    pub calls_answered: u64,
    /// REGISTER transactions reported.
    pub registrations: u64,
    /// Requests and responses recognised as retransmissions (or other hops of one transaction).
    pub retransmissions: u64,
    /// Media flows created and reported.
    pub media_flows: u64,
    pub media_reported: u64,
    /// RTP streams and packets in reported media flows.
    pub rtp_streams: u64,
    pub rtp_packets: u64,
    pub rtcp_packets: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// INVITE sent, no final answer yet.
    Setup,
    Answered,
    /// BYE, CANCEL or a failure seen at this time; reported after the linger.
    Ending(Timestamp),
    /// Reported; kept as a tombstone.
    Closed,
}

#[derive(Clone, Debug, Default)]
struct SideSdp {
    origin_user: Option<String>,
    session: Option<String>,
    codecs: Vec<String>,
    ptime: Option<u32>,
}

#[derive(Debug)]
struct Dialog {
    seq: u64,
    call_id: String,
    from_tag: Option<String>,
    caller: SocketAddr,
    callee: SocketAddr,
    line: Option<IpAddr>,
    direction: Direction,
    peer: Option<SocketAddr>,
    transport: Transport,
    from: Option<String>,
    to: Option<String>,
    request_uri: Option<String>,
    user_agent: Option<String>,
    server: Option<String>,
    allow: Option<String>,
    caller_sdp: Option<SideSdp>,
    callee_sdp: Option<SideSdp>,
    invite_cseq: u32,
    start: Timestamp,
    progress: Option<Timestamp>,
    answer: Option<Timestamp>,
    end: Option<Timestamp>,
    status_code: Option<u16>,
    final_code: Option<u16>,
    cancelled: bool,
    bye: bool,
    timed_out: bool,
    private_contact: bool,
    phase: Phase,
    /// Last in-dialog signalling.
    last: Timestamp,
    endpoints: Vec<SocketAddr>,
    rtp: Vec<RtpStreamStats>,
}

impl Dialog {
    fn line_is_caller(&self) -> bool {
        !matches!(self.direction, Direction::Inbound)
    }

    fn outcome(&self) -> Outcome {
        if self.answer.is_some() {
            return Outcome::Answered;
        }
        match self.final_code {
            Some(486 | 600) => Outcome::Busy,
            Some(408 | 480) => Outcome::NoAnswer,
            Some(487) => Outcome::Cancelled,
            Some(c) if c >= 300 => Outcome::Failed,
            _ if self.cancelled || self.bye => Outcome::Cancelled,
            _ if self.timed_out && self.progress.is_some() => Outcome::NoAnswer,
            _ => Outcome::Incomplete,
        }
    }

    fn record(&self, media: &MediaTable) -> CallRecord {
        let (offer, answer) = (self.caller_sdp.as_ref(), self.callee_sdp.as_ref());
        let negotiated = answer.or(offer);
        let line_sdp = if self.line_is_caller() { offer } else { answer };
        let codec = negotiated_codec(offer, answer);
        let mut rtp = self.rtp.clone();
        for s in media.streams_for(&self.call_id) {
            if rtp.len() < MAX_CALL_STREAMS {
                rtp.push(s);
            }
        }
        rtp.sort_by_key(|s| (s.first, s.src, s.ssrc));
        let mut rec = CallRecord {
            call_id: self.call_id.clone(),
            line: self.line,
            direction: self.direction,
            peer: self.peer,
            from: self.from.clone(),
            to: self.to.clone(),
            request_uri: self.request_uri.clone(),
            user_agent: self.user_agent.clone(),
            server: self.server.clone(),
            allow: self.allow.clone(),
            sdp_origin: line_sdp.and_then(|s| s.origin_user.clone()),
            sdp_session: line_sdp.and_then(|s| s.session.clone()),
            transport: self.transport,
            codec,
            codecs: negotiated.map(|s| s.codecs.clone()).unwrap_or_default(),
            ptime: answer.and_then(|s| s.ptime).or(offer.and_then(|s| s.ptime)),
            start: self.start,
            progress: self.progress,
            answer: self.answer,
            end: self.end,
            outcome: self.outcome(),
            status_code: self.status_code,
            private_contact: self.private_contact,
            rtp,
            participation: Participation::Ignored,
        };
        // INVITE responses are taken from the callee only (see `on_invite_response`), so an
        // answer on an inbound call is the line's own.
        rec.participation = rec.judge_participation(true);
        rec
    }

    fn deadline(&self, l: &Limits) -> Timestamp {
        match self.phase {
            Phase::Setup => self.start.plus_secs(l.setup_secs),
            Phase::Answered => self
                .answer
                .map_or(self.last, |a| a.max(self.last))
                .plus_secs(l.established_secs),
            Phase::Ending(at) if matches!(self.final_code, Some(401 | 407)) && !self.cancelled => {
                at.plus_secs(CHALLENGE_WAIT_SECS)
            }
            Phase::Ending(at) => at.plus_secs(END_LINGER_SECS),
            Phase::Closed => self.last.plus_secs(TOMBSTONE_SECS),
        }
    }
}

/// Usual spellings of codec names; SDP writers vary the case (`pcma`, `PCMA`).
const CODEC_SPELLINGS: [&str; 23] = [
    "PCMU",
    "PCMA",
    "G729",
    "G729A",
    "G723",
    "G722",
    "G7221",
    "G728",
    "G726-16",
    "G726-24",
    "G726-32",
    "G726-40",
    "GSM",
    "AMR",
    "AMR-WB",
    "EVS",
    "L16",
    "CN",
    "iLBC",
    "speex",
    "opus",
    "SILK",
    "telephone-event",
];

fn canonical_codec(name: &str) -> String {
    CODEC_SPELLINGS
        .iter()
        .find(|c| c.eq_ignore_ascii_case(name))
        .map_or_else(|| short(name), |c| (*c).to_string())
}

/// Telephone-event and comfort noise are never "the" codec.
fn is_aux_codec(name: &str) -> bool {
    name.eq_ignore_ascii_case("telephone-event") || name.eq_ignore_ascii_case("CN")
}

/// First codec of the answer that the offer also lists (else the first real codec of either).
fn negotiated_codec(offer: Option<&SideSdp>, answer: Option<&SideSdp>) -> Option<String> {
    let first_real = |s: &SideSdp| s.codecs.iter().find(|c| !is_aux_codec(c)).cloned();
    match (offer, answer) {
        (Some(o), Some(a)) => a
            .codecs
            .iter()
            .find(|c| !is_aux_codec(c) && o.codecs.iter().any(|x| x.eq_ignore_ascii_case(c)))
            .cloned()
            .or_else(|| first_real(a)),
        (None, Some(s)) | (Some(s), None) => first_real(s),
        (None, None) => None,
    }
}

#[derive(Debug)]
struct PendingReg {
    account: String,
    registrar: SocketAddr,
    source: SocketAddr,
    line: Option<IpAddr>,
    contact: Option<String>,
    expires: Option<u32>,
    cseq: u32,
    challenged: bool,
    status: Option<u16>,
    user_agent: Option<String>,
    time: Timestamp,
}

impl PendingReg {
    fn record(&self, outcome: RegOutcome) -> RegistrationRecord {
        RegistrationRecord {
            account: self.account.clone(),
            registrar: self.registrar,
            source: self.source,
            line: self.line,
            contact: self.contact.clone(),
            expires: self.expires,
            outcome,
            status_code: self.status,
            user_agent: self.user_agent.clone(),
            time: self.time,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    setup_secs: f64,
    established_secs: f64,
    registration_secs: f64,
}

/// Tracks SIP dialogs, registrations and media flows; turns them into `Event`s.
pub struct Tracker {
    network: NetworkConfig,
    sip_limits: sip::Limits,
    limits: Limits,
    /// Boxed: the table's slots hold a pointer, not a whole dialog, so its spare capacity
    /// under a flood costs little.
    dialogs: TimedTable<String, Box<Dialog>>,
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

/// User part without user parameters.
fn user_of(na: Option<sip::NameAddr<'_>>) -> Option<String> {
    let u = na?.user?;
    let u = u.split(';').next().unwrap_or(u);
    (!u.is_empty()).then(|| short(u))
}

impl Tracker {
    pub fn new(cfg: &EngineConfig) -> Self {
        let l = &cfg.limits;
        Tracker {
            network: cfg.network.clone(),
            sip_limits: sip::Limits::from(l),
            limits: Limits {
                setup_secs: f64::from(l.dialog_setup_timeout_secs.max(1)),
                established_secs: f64::from(l.dialog_timeout_secs.max(1)),
                registration_secs: f64::from(l.registration_timeout_secs.max(1)),
            },
            dialogs: TimedTable::new(l.dialogs),
            regs: TimedTable::new(l.registrations),
            media: MediaTable::new(cfg),
            next_seq: 0,
            last_expire: None,
            errors: Counters::default(),
            own_evictions: Counters::default(),
            evictions: Counters::default(),
            media_evictions_seen: 0,
            stats: TrackerStats::default(),
        }
    }

    /// Takes one transport payload; pushes what happened onto `events`.
    pub fn on_datagram(&mut self, d: &Datagram<'_>, events: &mut Vec<Event>) {
        match self.last_expire {
            None => self.last_expire = Some(d.ts),
            Some(t) if d.ts.secs_since(t) >= 1.0 => self.expire(d.ts, events),
            Some(_) => {}
        }
        if sip::looks_like_sip(d.payload) {
            // A body cut short (snaplen, lost fragment) still leaves headers worth tracking.
            match sip::parse_lenient(d.payload, &self.sip_limits) {
                Ok(msg) => {
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
        } else if d.transport == Transport::Udp && d.payload.len() >= MIN_MEDIA_PAYLOAD {
            let from = events.len();
            self.media.on_datagram(d, events);
            self.absorb_media(events, from);
        }
    }

    /// Closes dialogs, transactions and media flows that timed out at `now`.
    pub fn expire(&mut self, now: Timestamp, events: &mut Vec<Event>) {
        self.last_expire = Some(now);
        let from = events.len();
        self.media.expire(now, events);
        self.absorb_media(events, from);
        while let Some(key) = self.dialogs.first_due(now) {
            let Some(phase) = self.dialogs.get(&key).map(|d| d.phase) else {
                break;
            };
            match phase {
                Phase::Closed => {
                    self.dialogs.remove(&key);
                }
                Phase::Setup => {
                    if let Some(dl) = self.dialogs.get_mut(&key) {
                        dl.timed_out = true;
                    }
                    self.report(&key, now, events);
                }
                Phase::Answered => {
                    // No BYE seen: the call ended at its last sign of life.
                    let last_rtp = self.media.streams_for(&key).iter().map(|s| s.last).max();
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
        let mut open: Vec<(u64, String)> = self
            .dialogs
            .values()
            .filter(|d| d.phase != Phase::Closed)
            .map(|d| (d.seq, d.call_id.clone()))
            .collect();
        open.sort();
        for (_, key) in open {
            self.report(&key, now, events);
        }
        self.dialogs.drain_ordered();
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

    pub fn errors(&self) -> &Counters {
        &self.errors
    }
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
        ]
    }

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
        let total: u64 = self.media.evictions().0.values().sum();
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
                    if let Some(dl) = self.dialogs.get_mut(c) {
                        if dl.phase != Phase::Closed {
                            for s in &r.streams {
                                if dl.rtp.len() < MAX_CALL_STREAMS {
                                    dl.rtp.push(s.clone());
                                }
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
            (Some(m), _) => self.on_in_dialog_request(msg, m, call_id, d),
            (None, Some(code)) => match cmethod {
                Method::Register => self.on_register_response(msg, call_id, cseq, code, d, events),
                Method::Invite => self.on_invite_response(msg, call_id, cseq, code, d, events),
                _ => self.on_other_response(msg, call_id, d),
            },
            (None, None) => {}
        }
    }

    fn classify(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> (Option<IpAddr>, Direction, Option<SocketAddr>) {
        match (
            self.network.is_home(src.ip()),
            self.network.is_home(dst.ip()),
        ) {
            (false, true) => (Some(dst.ip()), Direction::Inbound, Some(src)),
            (true, false) => (Some(src.ip()), Direction::Outbound, Some(dst)),
            (true, true) => (Some(src.ip()), Direction::Internal, Some(dst)),
            (false, false) => (None, Direction::Transit, None),
        }
    }

    fn on_invite(
        &mut self,
        msg: &SipMessage<'_>,
        call_id: &str,
        cseq: u32,
        d: &Datagram<'_>,
        events: &mut Vec<Event>,
    ) {
        let from_tag = msg.from().and_then(|f| f.tag);
        let to_tag = msg.to().and_then(|t| t.tag);
        let key = call_id.to_string();
        if let Some(dl) = self.dialogs.get_mut(&key) {
            let same_caller = match (from_tag, dl.from_tag.as_deref()) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if same_caller && cseq == dl.invite_cseq {
                // Retransmission, or the same INVITE seen on another hop.
                self.stats.retransmissions += 1;
                return;
            }
            let new_attempt = same_caller && to_tag.is_none() && cseq > dl.invite_cseq;
            match dl.phase {
                Phase::Closed if new_attempt => {
                    // A fresh attempt reusing a reported Call-ID: a new record, same call count.
                    self.reset_dialog(&key, msg, cseq, d, events);
                    return;
                }
                Phase::Closed => return,
                Phase::Setup | Phase::Ending(_)
                    if new_attempt && dl.answer.is_none() && !dl.bye =>
                {
                    // Authenticated retry after 401/407 (or a missed failure): same call.
                    dl.invite_cseq = cseq;
                    dl.final_code = None;
                    dl.status_code = None;
                    dl.cancelled = false;
                    dl.end = None;
                    dl.phase = Phase::Setup;
                    dl.last = d.ts;
                }
                _ => {
                    // re-INVITE: media may change; the call goes on.
                    dl.last = d.ts;
                }
            }
            self.absorb_message(&key, msg, d);
            self.reschedule(&key);
            return;
        }
        self.new_dialog(key, msg, cseq, d, events);
    }

    fn new_dialog(
        &mut self,
        key: String,
        msg: &SipMessage<'_>,
        cseq: u32,
        d: &Datagram<'_>,
        events: &mut Vec<Event>,
    ) {
        let dl = self.fresh_dialog(&key, msg, cseq, d);
        let deadline = dl.deadline(&self.limits);
        events.push(Event::CallStarted {
            call_id: key.clone(),
            line: dl.line,
            direction: dl.direction,
            peer: dl.peer,
            ts: d.ts,
        });
        self.stats.calls += 1;
        if let Some((_, old)) = self.dialogs.insert(key.clone(), Box::new(dl), deadline) {
            self.evicted("dialogs");
            if old.phase != Phase::Closed {
                self.emit_call(*old, d.ts, events);
            }
        }
        self.absorb_message(&key, msg, d);
    }

    fn reset_dialog(
        &mut self,
        key: &str,
        msg: &SipMessage<'_>,
        cseq: u32,
        d: &Datagram<'_>,
        events: &mut Vec<Event>,
    ) {
        let dl = self.fresh_dialog(key, msg, cseq, d);
        events.push(Event::CallStarted {
            call_id: key.to_string(),
            line: dl.line,
            direction: dl.direction,
            peer: dl.peer,
            ts: d.ts,
        });
        let k = key.to_string();
        if let Some(slot) = self.dialogs.get_mut(&k) {
            **slot = dl;
        }
        self.absorb_message(&k, msg, d);
        self.reschedule(&k);
    }

    fn fresh_dialog(
        &mut self,
        key: &str,
        msg: &SipMessage<'_>,
        cseq: u32,
        d: &Datagram<'_>,
    ) -> Dialog {
        let (line, direction, peer) = self.classify(d.src, d.dst);
        self.next_seq += 1;
        Dialog {
            seq: self.next_seq,
            call_id: key.to_string(),
            from_tag: msg.from().and_then(|f| f.tag).map(short),
            caller: d.src,
            callee: d.dst,
            line,
            direction,
            peer,
            transport: d.transport,
            from: user_of(msg.from()),
            to: user_of(msg.to()),
            request_uri: msg.request_uri().and_then(|u| u.number()).map(short),
            user_agent: None,
            server: None,
            allow: None,
            caller_sdp: None,
            callee_sdp: None,
            invite_cseq: cseq,
            start: d.ts,
            progress: None,
            answer: None,
            end: None,
            status_code: None,
            final_code: None,
            cancelled: false,
            bye: false,
            timed_out: false,
            private_contact: false,
            phase: Phase::Setup,
            last: d.ts,
            endpoints: Vec::new(),
            rtp: Vec::new(),
        }
    }

    fn reschedule(&mut self, key: &str) {
        if let Some(dl) = self.dialogs.get(key) {
            let t = dl.deadline(&self.limits);
            self.dialogs.set_deadline(key, t);
        }
    }

    /// Whether `msg` was sent by the caller's side of `dl`: requests carry the caller's From-tag
    /// when the caller sends them, responses when the caller receives them.
    fn sent_by_caller(dl: &Dialog, msg: &SipMessage<'_>, d: &Datagram<'_>) -> bool {
        let tag = msg.from().and_then(|f| f.tag);
        match (tag, dl.from_tag.as_deref()) {
            (Some(t), Some(orig)) => msg.is_request() == (t == orig),
            _ if d.src == dl.caller => true,
            _ if d.src == dl.callee => false,
            _ => msg.is_request(),
        }
    }

    /// Takes fingerprints and SDP from a message of dialog `key`.
    fn absorb_message(&mut self, key: &str, msg: &SipMessage<'_>, d: &Datagram<'_>) {
        let Some(dl) = self.dialogs.get_mut(key) else {
            return;
        };
        let by_caller = Self::sent_by_caller(dl, msg, d);
        let by_line = by_caller == dl.line_is_caller();
        if by_line {
            if dl.user_agent.is_none() {
                dl.user_agent = msg.user_agent().map(short);
            }
            if dl.server.is_none() {
                dl.server = msg.server().map(short);
            }
            if dl.allow.is_none() {
                dl.allow = msg.allow().map(short);
            }
            // A private address other than the one the packet came from: the device sits
            // behind a NAT on the line (a CGNAT line's own 100.64/10 address is not that).
            let behind_nat = |host: &str| is_private_host(host) && !same_ip(host, d.src.ip());
            if msg.contact().and_then(|c| c.host).is_some_and(behind_nat) {
                dl.private_contact = true;
            }
            // Responses carry the requester's Via, so only requests tell about the line.
            if msg.is_request() && msg.top_via().is_some_and(|v| behind_nat(v.host)) {
                dl.private_contact = true;
            }
        }
        if !msg.has_sdp() || msg.body_truncated {
            return;
        }
        let sdp = match sdp::parse(msg.body) {
            Ok(s) => s,
            Err(e) => {
                self.errors.add(&format!("sdp.{}", e.kind()), 1);
                return;
            }
        };
        let side = if by_caller {
            &mut dl.caller_sdp
        } else {
            &mut dl.callee_sdp
        };
        let entry = side.get_or_insert_with(|| SideSdp {
            origin_user: sdp.origin_user.map(short),
            session: sdp.session_name.map(short),
            ..SideSdp::default()
        });
        if let Some(audio) = sdp.audio() {
            entry.codecs = audio.codec_names().take(16).map(canonical_codec).collect();
            entry.ptime = audio.ptime;
        }
        let mut announce = Vec::new();
        for m in &sdp.media {
            if let Some(ep) = m.rtp_endpoint() {
                let rates: Vec<(u8, u32)> =
                    m.rtpmaps.iter().map(|r| (r.pt, r.clock_rate)).collect();
                announce.push((ep, rates));
                if !dl.endpoints.contains(&ep) && dl.endpoints.len() < MAX_ENDPOINTS {
                    dl.endpoints.push(ep);
                }
            }
        }
        for (ep, rates) in announce {
            self.media.expect_with_rates(ep, key, &rates, d.ts);
        }
        self.sync_evictions();
    }

    fn on_invite_response(
        &mut self,
        msg: &SipMessage<'_>,
        call_id: &str,
        cseq: u32,
        code: u16,
        d: &Datagram<'_>,
        events: &mut Vec<Event>,
    ) {
        let key = call_id;
        let from_tag = msg.from().and_then(|f| f.tag);
        let Some(dl) = self.dialogs.get_mut(key) else {
            return;
        };
        if dl.phase == Phase::Closed {
            return;
        }
        // Only the callee answers an INVITE. A response from any other address (a 200 OK or a
        // 403 forged by a third party) says nothing about the line and is not taken.
        let from_callee = match (dl.direction, dl.line) {
            (Direction::Inbound, Some(l)) => d.src.ip() == l,
            (Direction::Transit, _) | (_, None) => true,
            _ => d.src != dl.caller,
        };
        if !from_callee {
            self.errors.add("sip.response_not_from_callee", 1);
            return;
        }
        let same_caller = match (from_tag, dl.from_tag.as_deref()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        dl.last = d.ts;
        if same_caller && cseq == dl.invite_cseq {
            match code {
                180..=199 if dl.progress.is_none() => dl.progress = Some(d.ts),
                200..=299 => {
                    if dl.answer.is_some() {
                        self.stats.retransmissions += 1;
                    } else if !dl.bye {
                        dl.answer = Some(d.ts);
                        dl.status_code = Some(code);
                        dl.final_code = Some(code);
                        dl.end = None;
                        dl.phase = Phase::Answered;
                        self.stats.calls_answered += 1;
                        events.push(Event::CallAnswered {
                            call_id: key.to_string(),
                            line: dl.line,
                            direction: dl.direction,
                            invited: dl.start,
                            ts: d.ts,
                        });
                    }
                }
                300.. if dl.answer.is_none() => {
                    if dl.final_code == Some(code) {
                        self.stats.retransmissions += 1;
                    }
                    dl.final_code = Some(code);
                    dl.status_code = Some(code);
                    dl.end = Some(d.ts);
                    dl.phase = Phase::Ending(d.ts);
                }
                _ => {}
            }
        }
        // Responses to re-INVITEs only matter for their SDP and fingerprints.
        self.absorb_message(key, msg, d);
        self.reschedule(key);
    }

    fn on_in_dialog_request(
        &mut self,
        msg: &SipMessage<'_>,
        m: Method<'_>,
        call_id: &str,
        d: &Datagram<'_>,
    ) {
        let key = call_id;
        let Some(dl) = self.dialogs.get_mut(key) else {
            return;
        };
        if dl.phase == Phase::Closed {
            return;
        }
        dl.last = d.ts;
        match m {
            Method::Bye => {
                if !dl.bye {
                    dl.bye = true;
                    dl.end = Some(d.ts);
                    dl.phase = Phase::Ending(d.ts);
                } else {
                    self.stats.retransmissions += 1;
                }
            }
            Method::Cancel if dl.answer.is_none() && !dl.cancelled => {
                dl.cancelled = true;
                dl.end = Some(d.ts);
                dl.phase = Phase::Ending(d.ts);
            }
            _ => {}
        }
        self.absorb_message(key, msg, d);
        self.reschedule(key);
    }

    fn on_other_response(&mut self, msg: &SipMessage<'_>, call_id: &str, d: &Datagram<'_>) {
        let key = call_id;
        let Some(dl) = self.dialogs.get_mut(key) else {
            return;
        };
        if dl.phase == Phase::Closed {
            return;
        }
        dl.last = d.ts;
        self.absorb_message(key, msg, d);
        self.reschedule(key);
    }

    /// Reports dialog `key` (if not yet reported) and leaves a tombstone.
    fn report(&mut self, key: &str, now: Timestamp, events: &mut Vec<Event>) {
        let Some(dl) = self.dialogs.get_mut(key) else {
            return;
        };
        if dl.phase == Phase::Closed {
            return;
        }
        let rec = dl.record(&self.media);
        let endpoints = std::mem::take(&mut dl.endpoints);
        dl.phase = Phase::Closed;
        dl.rtp = Vec::new();
        // A tombstone only matches late messages (Call-ID, From-tag, CSeq): the record's
        // fields are not needed any more.
        dl.from = None;
        dl.to = None;
        dl.request_uri = None;
        dl.user_agent = None;
        dl.server = None;
        dl.allow = None;
        dl.caller_sdp = None;
        dl.callee_sdp = None;
        dl.last = dl.last.max(now);
        for ep in endpoints {
            self.media.unexpect(ep, key);
        }
        self.push_call(rec, events);
        self.reschedule(key);
    }

    /// Reports a dialog that was evicted from the table.
    fn emit_call(&mut self, dl: Dialog, _now: Timestamp, events: &mut Vec<Event>) {
        let rec = dl.record(&self.media);
        for ep in &dl.endpoints {
            self.media.unexpect(*ep, &dl.call_id);
        }
        self.push_call(rec, events);
    }

    fn push_call(&mut self, rec: CallRecord, events: &mut Vec<Event>) {
        self.stats.calls_ended += 1;
        events.push(Event::CallEnded(Box::new(rec)));
    }

    fn emit_reg(&mut self, r: &PendingReg, outcome: RegOutcome, events: &mut Vec<Event>) {
        self.stats.registrations += 1;
        events.push(Event::Registration(Box::new(r.record(outcome))));
    }

    fn on_register(
        &mut self,
        msg: &SipMessage<'_>,
        call_id: &str,
        cseq: u32,
        d: &Datagram<'_>,
        events: &mut Vec<Event>,
    ) {
        let key = call_id.to_string();
        let expires = msg.contact_expires().or_else(|| msg.expires());
        let contact = msg.contact().map(|c| short(c.uri));
        if let Some(p) = self.regs.get_mut(&key) {
            if cseq == p.cseq {
                self.stats.retransmissions += 1;
                return;
            }
            if p.challenged && cseq > p.cseq {
                // The authenticated retry: same transaction as far as the record goes.
                p.cseq = cseq;
                p.expires = expires.or(p.expires);
                p.contact = contact.or(p.contact.take());
                let deadline = d.ts.plus_secs(self.limits.registration_secs);
                self.regs.set_deadline(&key, deadline);
                return;
            }
            if let Some(old) = self.regs.remove(&key) {
                let outcome = if old.challenged {
                    RegOutcome::Challenged
                } else {
                    RegOutcome::NoResponse
                };
                self.emit_reg(&old, outcome, events);
            }
        }
        let to = msg.to().or_else(|| msg.from());
        let account = match to {
            Some(t) => match (t.user, t.host) {
                (Some(u), Some(h)) => format!("{}@{}", short(u), short(h)),
                (None, Some(h)) => short(h),
                _ => short(t.uri),
            },
            None => String::new(),
        };
        let line = if self.network.is_home(d.src.ip()) {
            Some(d.src.ip())
        } else if self.network.is_home(d.dst.ip()) {
            Some(d.dst.ip())
        } else {
            None
        };
        let p = PendingReg {
            account,
            registrar: d.dst,
            source: d.src,
            line,
            contact,
            expires,
            cseq,
            challenged: false,
            status: None,
            user_agent: msg.user_agent().map(short),
            time: d.ts,
        };
        let deadline = d.ts.plus_secs(self.limits.registration_secs);
        if self.regs.insert(key, p, deadline).is_some() {
            self.evicted("registrations");
        }
    }

    fn on_register_response(
        &mut self,
        msg: &SipMessage<'_>,
        call_id: &str,
        cseq: u32,
        code: u16,
        d: &Datagram<'_>,
        events: &mut Vec<Event>,
    ) {
        let key = call_id;
        let Some(p) = self.regs.get_mut(key) else {
            return;
        };
        if p.cseq != cseq || code < 200 {
            return;
        }
        p.status = Some(code);
        match code {
            401 | 407 => {
                p.challenged = true;
                let deadline = d.ts.plus_secs(self.limits.registration_secs);
                self.regs.set_deadline(key, deadline);
            }
            200..=299 => {
                // The registrar's granted expiry, when it says, else what was asked for.
                let granted = msg.contact_expires().or_else(|| msg.expires());
                if let Some(mut r) = self.regs.remove(key) {
                    let asked_zero = r.expires == Some(0);
                    r.expires = granted.or(r.expires);
                    let outcome = if asked_zero || r.expires == Some(0) {
                        RegOutcome::Unregistered
                    } else {
                        RegOutcome::Registered
                    };
                    self.emit_reg(&r, outcome, events);
                }
            }
            _ => {
                if let Some(r) = self.regs.remove(key) {
                    self.emit_reg(&r, RegOutcome::Failed, events);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PHONE: &str = "192.168.1.10:5060";
    const SWITCH: &str = "203.0.113.5:5060";
    const PHONE_RTP: &str = "192.168.1.10:40000";
    const SWITCH_RTP: &str = "203.0.113.5:30000";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn msg(start: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
        let mut s = format!("{start}\r\n");
        for (n, v) in headers {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() {
            s.push_str("Content-Type: application/sdp\r\n");
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.into_bytes()
    }

    fn sdp(ep: &str, user: &str, session: &str, pts: &str) -> String {
        let a = addr(ep);
        let mut s = format!(
            "v=0\r\no={user} 1 1 IN IP4 {ip}\r\ns={session}\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {pts}\r\n",
            ip = a.ip(),
            port = a.port()
        );
        for pt in pts.split(' ') {
            match pt {
                "101" => s.push_str("a=rtpmap:101 telephone-event/8000\r\n"),
                "18" => s.push_str("a=rtpmap:18 G729/8000\r\n"),
                "8" => s.push_str("a=rtpmap:8 PCMA/8000\r\n"),
                "0" => s.push_str("a=rtpmap:0 PCMU/8000\r\n"),
                _ => {}
            }
        }
        s.push_str("a=ptime:20\r\n");
        s
    }

    /// One call's messages: `caller` sends the INVITE to `callee`.
    struct Call {
        id: &'static str,
        caller: &'static str,
        callee: &'static str,
    }

    impl Call {
        fn base(&self, cseq: u32, method: &str, to_tag: Option<&str>) -> Vec<(String, String)> {
            let to = match to_tag {
                Some(t) => format!("<sip:13800138000@{}>;tag={t}", addr(self.callee).ip()),
                None => format!("<sip:13800138000@{}>", addr(self.callee).ip()),
            };
            vec![
                (
                    "Via".into(),
                    format!("SIP/2.0/UDP {};branch=z9hG4bK{cseq}{method}", self.caller),
                ),
                (
                    "From".into(),
                    format!(
                        "\"0086\" <sip:0086755123@{}>;tag=caller1",
                        addr(self.caller).ip()
                    ),
                ),
                ("To".into(), to),
                ("Call-ID".into(), self.id.into()),
                ("CSeq".into(), format!("{cseq} {method}")),
            ]
        }
        fn render(
            start: &str,
            h: Vec<(String, String)>,
            extra: &[(&str, &str)],
            body: &str,
        ) -> Vec<u8> {
            let mut all: Vec<(&str, &str)> =
                h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            all.extend_from_slice(extra);
            msg(start, &all, body)
        }
        fn invite(&self, cseq: u32, body: &str) -> Vec<u8> {
            let start = format!("INVITE sip:13800138000@{} SIP/2.0", self.callee);
            Self::render(
                &start,
                self.base(cseq, "INVITE", None),
                &[
                    ("Contact", "<sip:0086755123@203.0.113.5:5060>"),
                    ("User-Agent", "VOS3000"),
                ],
                body,
            )
        }
        fn resp(
            &self,
            code: u16,
            cseq: u32,
            method: &str,
            extra: &[(&str, &str)],
            body: &str,
        ) -> Vec<u8> {
            let tag = if code == 100 { None } else { Some("callee1") };
            Self::render(
                &format!("SIP/2.0 {code} X"),
                self.base(cseq, method, tag),
                extra,
                body,
            )
        }
        fn req(&self, method: &str, cseq: u32) -> Vec<u8> {
            let start = format!("{method} sip:13800138000@{} SIP/2.0", self.callee);
            let tag = if method == "CANCEL" {
                None
            } else {
                Some("callee1")
            };
            Self::render(&start, self.base(cseq, method, tag), &[], "")
        }
        /// BYE sent by the callee: From/To swapped.
        fn bye_from_callee(&self, cseq: u32) -> Vec<u8> {
            let start = format!("BYE sip:0086755123@{} SIP/2.0", self.caller);
            let h = vec![
                (
                    "Via".to_string(),
                    format!("SIP/2.0/UDP {};branch=z9hG4bKcb{cseq}", self.callee),
                ),
                (
                    "From".to_string(),
                    format!("<sip:13800138000@{}>;tag=callee1", addr(self.callee).ip()),
                ),
                (
                    "To".to_string(),
                    format!("<sip:0086755123@{}>;tag=caller1", addr(self.caller).ip()),
                ),
                ("Call-ID".to_string(), self.id.to_string()),
                ("CSeq".to_string(), format!("{cseq} BYE")),
            ];
            Self::render(&start, h, &[], "")
        }
    }

    const INBOUND: Call = Call {
        id: "call-1@softswitch",
        caller: SWITCH,
        callee: PHONE,
    };

    struct Run {
        t: Tracker,
        ev: Vec<Event>,
    }

    impl Run {
        fn new() -> Self {
            Self::with(EngineConfig::default())
        }
        fn with(cfg: EngineConfig) -> Self {
            Run {
                t: Tracker::new(&cfg),
                ev: Vec::new(),
            }
        }
        fn send(&mut self, src: &str, dst: &str, ms: i64, payload: &[u8]) {
            let d = Datagram {
                ts: Timestamp(ms * 1000),
                src: addr(src),
                dst: addr(dst),
                transport: Transport::Udp,
                payload,
                ip_len: payload.len() as u32 + 28,
            };
            self.t.on_datagram(&d, &mut self.ev);
        }
        /// The caller side sends (`up`) or the callee side sends.
        fn sip(&mut self, c: &Call, up: bool, ms: i64, payload: &[u8]) {
            if up {
                self.send(c.caller, c.callee, ms, payload);
            } else {
                self.send(c.callee, c.caller, ms, payload);
            }
        }
        fn rtp(&mut self, from_ms: i64, secs: i64) {
            for i in 0..secs * 50 {
                let at = from_ms + i * 20;
                let mut a = vec![0x80, 18];
                a.extend_from_slice(&(i as u16).to_be_bytes());
                a.extend_from_slice(&((i as u32) * 160).to_be_bytes());
                a.extend_from_slice(&0x1111u32.to_be_bytes());
                a.extend_from_slice(&[0u8; 20]);
                self.send(SWITCH_RTP, PHONE_RTP, at, &a);
                let mut b = a.clone();
                b[8..12].copy_from_slice(&0x2222u32.to_be_bytes());
                self.send(PHONE_RTP, SWITCH_RTP, at + 1, &b);
            }
        }
        fn finish(&mut self, ms: i64) {
            self.t.finish(Timestamp(ms * 1000), &mut self.ev);
        }
        fn expire(&mut self, ms: i64) {
            self.t.expire(Timestamp(ms * 1000), &mut self.ev);
        }
        fn calls(&self) -> Vec<&CallRecord> {
            self.ev
                .iter()
                .filter_map(|e| match e {
                    Event::CallEnded(r) => Some(&**r),
                    _ => None,
                })
                .collect()
        }
        fn count(&self, f: fn(&Event) -> bool) -> usize {
            self.ev.iter().filter(|e| f(e)).count()
        }
        fn regs(&self) -> Vec<&RegistrationRecord> {
            self.ev
                .iter()
                .filter_map(|e| match e {
                    Event::Registration(r) => Some(&**r),
                    _ => None,
                })
                .collect()
        }
    }

    fn started(e: &Event) -> bool {
        matches!(e, Event::CallStarted { .. })
    }
    fn answered(e: &Event) -> bool {
        matches!(e, Event::CallAnswered { .. })
    }

    #[test]
    fn answered_inbound_call_with_sdp_and_rtp() {
        let c = INBOUND;
        let mut r = Run::new();
        let offer = sdp(SWITCH_RTP, "VOS3000", "session", "18 8 101");
        let answer = sdp(PHONE_RTP, "dbl", "DBL", "18 101");
        let phone_hdrs = [
            ("User-Agent", "dble"),
            ("Allow", "INVITE, ACK, BYE, CANCEL"),
            ("Contact", "<sip:goip@10.0.0.2:5060>"),
        ];
        r.sip(&c, true, 0, &c.invite(1, &offer));
        r.sip(&c, false, 10, &c.resp(100, 1, "INVITE", &[], ""));
        r.sip(
            &c,
            false,
            500,
            &c.resp(183, 1, "INVITE", &phone_hdrs, &answer),
        );
        r.sip(
            &c,
            false,
            4000,
            &c.resp(200, 1, "INVITE", &phone_hdrs, &answer),
        );
        r.sip(&c, true, 4050, &c.req("ACK", 1));
        r.rtp(4100, 3);
        r.sip(&c, true, 7200, &c.req("BYE", 2));
        r.sip(&c, false, 7210, &c.resp(200, 2, "BYE", &[], ""));
        r.finish(20_000);

        assert_eq!(r.count(started), 1);
        assert_eq!(r.count(answered), 1);
        assert_eq!(r.count(|e| matches!(e, Event::MediaStarted { .. })), 1);
        match &r.ev[0] {
            Event::CallStarted {
                line,
                direction,
                peer,
                ts,
                ..
            } => {
                assert_eq!(*line, Some(addr(PHONE).ip()));
                assert_eq!(*direction, Direction::Inbound);
                assert_eq!(*peer, Some(addr(SWITCH)));
                assert_eq!(*ts, Timestamp(0));
            }
            e => panic!("{e:?}"),
        }
        let calls = r.calls();
        assert_eq!(calls.len(), 1);
        let k = calls[0];
        assert_eq!(k.outcome, Outcome::Answered);
        assert_eq!(k.status_code, Some(200));
        assert_eq!(k.progress, Some(Timestamp(500_000)));
        assert_eq!(k.answer, Some(Timestamp(4_000_000)));
        assert_eq!(k.end, Some(Timestamp(7_200_000)));
        assert_eq!(k.talk_secs(), Some(3.2));
        assert_eq!(k.from.as_deref(), Some("0086755123"));
        assert_eq!(k.to.as_deref(), Some("13800138000"));
        assert_eq!(k.request_uri.as_deref(), Some("13800138000"));
        // The line is the callee: its responses give the fingerprints, not the switch's INVITE.
        assert_eq!(k.user_agent.as_deref(), Some("dble"));
        assert_eq!(k.allow.as_deref(), Some("INVITE, ACK, BYE, CANCEL"));
        assert_eq!(k.sdp_origin.as_deref(), Some("dbl"));
        assert_eq!(k.sdp_session.as_deref(), Some("DBL"));
        assert!(k.private_contact);
        assert_eq!(k.codec.as_deref(), Some("G729"));
        assert_eq!(
            k.codecs,
            vec!["G729".to_string(), "telephone-event".to_string()]
        );
        assert_eq!(k.ptime, Some(20));
        assert_eq!(k.transport, Transport::Udp);
        assert_eq!(k.rtp.len(), 2);
        assert!(k.rtp.iter().all(|s| s.packets == 150 && s.lost == 0));
        let media =
            r.ev.iter()
                .find_map(|e| match e {
                    Event::MediaEnded(m) => Some(m),
                    _ => None,
                })
                .unwrap();
        assert_eq!(media.call_id.as_deref(), Some(c.id));
        assert!(media.voice_like && media.rtp);
        let s = r.t.stats();
        assert_eq!((s.calls, s.calls_answered, s.calls_ended), (1, 1, 1));
        assert_eq!(s.sip_messages, 7);
        assert_eq!((s.rtp_streams, s.rtp_packets), (2, 300));
        assert!(r.t.errors().0.is_empty(), "{:?}", r.t.errors());
    }

    #[test]
    fn codec_names_are_canonical() {
        assert_eq!(canonical_codec("pcma"), "PCMA");
        assert_eq!(canonical_codec("ILBC"), "iLBC");
        assert_eq!(canonical_codec("Telephone-Event"), "telephone-event");
        assert_eq!(canonical_codec("X-weird"), "X-weird");
        let o = SideSdp {
            codecs: vec!["PCMU".into(), "G729".into(), "telephone-event".into()],
            ..SideSdp::default()
        };
        let a = SideSdp {
            codecs: vec!["telephone-event".into(), "G729".into()],
            ..SideSdp::default()
        };
        assert_eq!(
            negotiated_codec(Some(&o), Some(&a)).as_deref(),
            Some("G729")
        );
        assert_eq!(negotiated_codec(Some(&o), None).as_deref(), Some("PCMU"));
        assert_eq!(negotiated_codec(None, None), None);
    }

    #[test]
    fn private_contact_means_behind_a_nat() {
        // The phone's own address is private (a CGNAT or test range): a Contact naming that
        // address is not behind a NAT; a Contact naming another private address is.
        let c = INBOUND;
        let mut r = Run::new();
        let own = [("Contact", "<sip:goip@192.168.1.10:5060>")];
        r.sip(&c, true, 0, &c.invite(1, ""));
        r.sip(&c, false, 100, &c.resp(200, 1, "INVITE", &own, ""));
        let d = Call {
            id: "nat",
            ..INBOUND
        };
        let lan = [("Contact", "<sip:goip@10.9.8.7:5060>")];
        r.sip(&d, true, 0, &d.invite(1, ""));
        r.sip(&d, false, 100, &d.resp(200, 1, "INVITE", &lan, ""));
        r.finish(1000);
        let calls = r.calls();
        assert!(
            !calls
                .iter()
                .find(|k| k.call_id == c.id)
                .unwrap()
                .private_contact
        );
        assert!(
            calls
                .iter()
                .find(|k| k.call_id == "nat")
                .unwrap()
                .private_contact
        );
        assert!(is_private_host("100.64.3.4") && is_private_host("[fd00::1]"));
        assert!(!is_private_host("203.0.113.5") && !is_private_host("example.com"));
    }

    #[test]
    fn busy_is_reported_after_the_linger() {
        let c = INBOUND;
        let mut r = Run::new();
        r.sip(&c, true, 0, &c.invite(1, ""));
        r.sip(&c, false, 100, &c.resp(486, 1, "INVITE", &[], ""));
        r.sip(&c, true, 150, &c.req("ACK", 1));
        r.expire(3000);
        assert!(r.calls().is_empty());
        r.expire(4200);
        let calls = r.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].outcome, Outcome::Busy);
        assert_eq!(calls[0].status_code, Some(486));
        assert_eq!(calls[0].end, Some(Timestamp(100_000)));
        // A late retransmission of the 486 or INVITE hits the tombstone: still one call.
        r.sip(&c, false, 5000, &c.resp(486, 1, "INVITE", &[], ""));
        r.sip(&c, true, 5000, &c.invite(1, ""));
        r.finish(6000);
        assert_eq!(r.calls().len(), 1);
        assert_eq!(r.t.stats().calls, 1);
    }

    #[test]
    fn cancel_with_487_is_cancelled() {
        let c = INBOUND;
        let mut r = Run::new();
        r.sip(&c, true, 0, &c.invite(1, ""));
        r.sip(&c, false, 300, &c.resp(180, 1, "INVITE", &[], ""));
        r.sip(&c, true, 9000, &c.req("CANCEL", 1));
        r.sip(&c, false, 9010, &c.resp(200, 1, "CANCEL", &[], ""));
        r.sip(&c, false, 9020, &c.resp(487, 1, "INVITE", &[], ""));
        r.sip(&c, true, 9030, &c.req("ACK", 1));
        r.finish(10_000);
        let k = r.calls()[0];
        assert_eq!(k.outcome, Outcome::Cancelled);
        assert_eq!(k.status_code, Some(487));
        assert_eq!(k.progress, Some(Timestamp(300_000)));
        assert_eq!(k.answer, None);
    }

    #[test]
    fn no_answer_by_code_and_by_setup_timeout() {
        let mut cfg = EngineConfig::default();
        cfg.limits.dialog_setup_timeout_secs = 60;
        let mut r = Run::with(cfg);
        let a = Call { id: "a", ..INBOUND };
        let b = Call { id: "b", ..INBOUND };
        let c = Call { id: "c", ..INBOUND };
        r.sip(&a, true, 0, &a.invite(1, ""));
        r.sip(&a, false, 100, &a.resp(480, 1, "INVITE", &[], ""));
        r.sip(&b, true, 0, &b.invite(1, ""));
        r.sip(&b, false, 100, &b.resp(180, 1, "INVITE", &[], ""));
        r.sip(&c, true, 0, &c.invite(1, ""));
        r.sip(&c, false, 100, &c.resp(100, 1, "INVITE", &[], ""));
        r.expire(59_000);
        assert_eq!(r.calls().len(), 1);
        r.expire(60_000);
        let calls = r.calls();
        assert_eq!(calls.len(), 3);
        let by = |id: &str| calls.iter().find(|k| k.call_id == id).unwrap().outcome;
        assert_eq!(by("a"), Outcome::NoAnswer);
        assert_eq!(by("b"), Outcome::NoAnswer);
        assert_eq!(by("c"), Outcome::Incomplete);
    }

    #[test]
    fn retransmitted_invite_and_200_count_once() {
        let c = INBOUND;
        let mut r = Run::new();
        for ms in [0, 500, 1500] {
            r.sip(&c, true, ms, &c.invite(1, ""));
        }
        r.sip(&c, false, 2000, &c.resp(200, 1, "INVITE", &[], ""));
        r.sip(&c, false, 2500, &c.resp(200, 1, "INVITE", &[], ""));
        r.sip(&c, true, 2600, &c.req("ACK", 1));
        r.finish(3000);
        assert_eq!(r.count(started), 1);
        assert_eq!(r.count(answered), 1);
        let s = r.t.stats();
        assert_eq!(s.calls, 1);
        assert_eq!(s.retransmissions, 3);
        // Open at the end of input: answered, but not ended.
        let k = r.calls()[0];
        assert_eq!(k.outcome, Outcome::Answered);
        assert_eq!(k.end, None);
    }

    #[test]
    fn reinvite_from_callee_does_not_start_a_call() {
        let c = INBOUND;
        let mut r = Run::new();
        r.sip(
            &c,
            true,
            0,
            &c.invite(1, &sdp(SWITCH_RTP, "os", "s", "18 8")),
        );
        r.sip(
            &c,
            false,
            100,
            &c.resp(200, 1, "INVITE", &[], &sdp(PHONE_RTP, "ph", "p", "18")),
        );
        r.sip(&c, true, 150, &c.req("ACK", 1));
        // The callee's re-INVITE uses its own CSeq space (1 again) and its own From-tag.
        let start = format!("INVITE sip:0086755123@{SWITCH} SIP/2.0");
        let re = msg(
            &start,
            &[
                ("Via", "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKre1"),
                ("From", "<sip:13800138000@192.168.1.10>;tag=callee1"),
                ("To", "<sip:0086755123@203.0.113.5>;tag=caller1"),
                ("Call-ID", c.id),
                ("CSeq", "1 INVITE"),
            ],
            &sdp(PHONE_RTP, "ph", "p", "8"),
        );
        r.send(PHONE, SWITCH, 5000, &re);
        let ok = msg(
            "SIP/2.0 200 OK",
            &[
                ("Via", "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKre1"),
                ("From", "<sip:13800138000@192.168.1.10>;tag=callee1"),
                ("To", "<sip:0086755123@203.0.113.5>;tag=caller1"),
                ("Call-ID", c.id),
                ("CSeq", "1 INVITE"),
            ],
            &sdp(SWITCH_RTP, "os", "s", "8"),
        );
        r.send(SWITCH, PHONE, 5010, &ok);
        r.sip(&c, true, 9000, &c.req("BYE", 2));
        r.finish(20_000);
        assert_eq!(r.count(started), 1);
        assert_eq!(r.count(answered), 1);
        assert_eq!(r.t.stats().calls, 1);
        let k = r.calls()[0];
        assert_eq!(k.outcome, Outcome::Answered);
        assert_eq!(k.answer, Some(Timestamp(100_000)));
        assert_eq!(k.end, Some(Timestamp(9_000_000)));
        // The re-INVITE switched the call to PCMA.
        assert_eq!(k.codec.as_deref(), Some("PCMA"));
    }

    #[test]
    fn forked_responses_answered_once() {
        let c = INBOUND;
        let mut r = Run::new();
        r.sip(&c, true, 0, &c.invite(1, ""));
        let fork = |code: u16, tag: &str| {
            let mut h = c.base(1, "INVITE", Some(tag));
            h.push(("Server".into(), format!("fork-{tag}")));
            Call::render(&format!("SIP/2.0 {code} X"), h, &[], "")
        };
        r.sip(&c, false, 100, &fork(180, "A"));
        r.sip(&c, false, 120, &fork(180, "B"));
        r.sip(&c, false, 900, &fork(486, "A"));
        r.sip(&c, false, 1000, &fork(200, "B"));
        r.sip(&c, false, 1010, &fork(200, "A"));
        r.finish(2000);
        assert_eq!(r.count(answered), 1);
        let k = r.calls()[0];
        assert_eq!(k.outcome, Outcome::Answered);
        assert_eq!(k.progress, Some(Timestamp(100_000)));
        assert_eq!(k.answer, Some(Timestamp(1_000_000)));
        assert_eq!(k.server.as_deref(), Some("fork-A"));
    }

    #[test]
    fn bye_from_callee_ends_the_call() {
        let c = INBOUND;
        let mut r = Run::new();
        r.sip(&c, true, 0, &c.invite(1, ""));
        r.sip(&c, false, 1000, &c.resp(200, 1, "INVITE", &[], ""));
        r.sip(&c, false, 61_000, &c.bye_from_callee(1));
        // The 200 to the callee's BYE comes from the caller.
        let ok = msg(
            "SIP/2.0 200 OK",
            &[
                ("Via", "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKcb1"),
                ("From", "<sip:13800138000@192.168.1.10>;tag=callee1"),
                ("To", "<sip:0086755123@203.0.113.5>;tag=caller1"),
                ("Call-ID", c.id),
                ("CSeq", "1 BYE"),
            ],
            "",
        );
        r.sip(&c, true, 61_010, &ok);
        r.expire(65_500);
        let k = r.calls()[0];
        assert_eq!(k.outcome, Outcome::Answered);
        assert_eq!(k.talk_secs(), Some(60.0));
    }

    #[test]
    fn answered_call_without_bye_times_out() {
        let mut cfg = EngineConfig::default();
        cfg.limits.dialog_timeout_secs = 120;
        let c = INBOUND;
        let mut r = Run::with(cfg);
        r.sip(&c, true, 0, &c.invite(1, &sdp(SWITCH_RTP, "o", "s", "18")));
        r.sip(
            &c,
            false,
            1000,
            &c.resp(200, 1, "INVITE", &[], &sdp(PHONE_RTP, "p", "s", "18")),
        );
        r.rtp(1100, 10);
        r.expire(120_900);
        assert!(r.calls().is_empty());
        r.expire(121_000);
        let k = r.calls()[0];
        assert_eq!(k.outcome, Outcome::Answered);
        // Ended at the last RTP packet (media idle-out at 41 s handed over the streams).
        assert_eq!(k.end, Some(Timestamp((1100 + 499 * 20 + 1) * 1000)));
        assert_eq!(k.rtp.len(), 2);
    }

    #[test]
    fn invite_407_then_authenticated_retry_is_one_answered_call() {
        let c = INBOUND;
        let mut r = Run::new();
        r.sip(&c, true, 0, &c.invite(1, ""));
        r.sip(&c, false, 50, &c.resp(407, 1, "INVITE", &[], ""));
        r.sip(&c, true, 60, &c.req("ACK", 1));
        r.sip(&c, true, 100, &c.invite(2, ""));
        r.sip(&c, false, 2000, &c.resp(200, 2, "INVITE", &[], ""));
        r.finish(3000);
        assert_eq!(r.count(started), 1);
        assert_eq!(r.t.stats().calls, 1);
        let calls = r.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].outcome, Outcome::Answered);
        assert_eq!(calls[0].status_code, Some(200));
    }

    #[test]
    fn direction_and_line_follow_home_networks() {
        let mut r = Run::new();
        let out = Call {
            id: "o",
            caller: PHONE,
            callee: SWITCH,
        };
        let internal = Call {
            id: "i",
            caller: "10.1.1.1:5060",
            callee: PHONE,
        };
        let transit = Call {
            id: "t",
            caller: SWITCH,
            callee: "198.51.100.7:5060",
        };
        for c in [&out, &internal, &transit] {
            r.sip(c, true, 0, &c.invite(1, ""));
        }
        r.finish(1000);
        let calls = r.calls();
        let get = |id: &str| *calls.iter().find(|k| k.call_id == id).unwrap();
        assert_eq!(get("o").direction, Direction::Outbound);
        assert_eq!(get("o").line, Some(addr(PHONE).ip()));
        assert_eq!(get("o").peer, Some(addr(SWITCH)));
        // The outbound line sent the INVITE: its User-Agent is the fingerprint.
        assert_eq!(get("o").user_agent.as_deref(), Some("VOS3000"));
        assert_eq!(get("i").direction, Direction::Internal);
        assert_eq!(get("i").line, Some("10.1.1.1".parse().unwrap()));
        assert_eq!(get("t").direction, Direction::Transit);
        assert_eq!(get("t").line, None);
        assert_eq!(get("t").peer, None);
        assert!(calls.iter().all(|k| k.outcome == Outcome::Incomplete));
    }

    fn register(call_id: &str, cseq: u32, expires: &str, auth: bool) -> Vec<u8> {
        let cseq_s = format!("{cseq} REGISTER");
        let via = format!("SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bKr{cseq}");
        let mut h = vec![
            ("Via", via.as_str()),
            ("From", "<sip:1001@voip.example>;tag=r1"),
            ("To", "<sip:1001@voip.example>"),
            ("Call-ID", call_id),
            ("CSeq", cseq_s.as_str()),
            ("Contact", "<sip:1001@192.168.1.10:5062>"),
            ("Expires", expires),
            ("User-Agent", "GoIP16"),
        ];
        if auth {
            h.push(("Authorization", "Digest username=\"1001\""));
        }
        msg("REGISTER sip:voip.example SIP/2.0", &h, "")
    }

    fn reg_resp(call_id: &str, cseq: u32, code: u16, extra: &[(&str, &str)]) -> Vec<u8> {
        let cseq_s = format!("{cseq} REGISTER");
        let via = format!("SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bKr{cseq}");
        let mut h = vec![
            ("Via", via.as_str()),
            ("From", "<sip:1001@voip.example>;tag=r1"),
            ("To", "<sip:1001@voip.example>;tag=srv"),
            ("Call-ID", call_id),
            ("CSeq", cseq_s.as_str()),
        ];
        h.extend_from_slice(extra);
        msg(&format!("SIP/2.0 {code} X"), &h, "")
    }

    const GW: &str = "192.168.1.10:5062";
    const REGISTRAR: &str = "198.51.100.1:5060";

    #[test]
    fn register_401_then_200_is_one_registration() {
        let mut r = Run::new();
        r.send(GW, REGISTRAR, 0, &register("reg1", 1, "3600", false));
        r.send(REGISTRAR, GW, 20, &reg_resp("reg1", 1, 401, &[]));
        r.send(GW, REGISTRAR, 40, &register("reg1", 2, "3600", true));
        r.send(
            REGISTRAR,
            GW,
            60,
            &reg_resp(
                "reg1",
                2,
                200,
                &[("Contact", "<sip:1001@192.168.1.10:5062>;expires=120")],
            ),
        );
        let regs = r.regs();
        assert_eq!(regs.len(), 1);
        let g = regs[0];
        assert_eq!(g.outcome, RegOutcome::Registered);
        assert_eq!(g.account, "1001@voip.example");
        assert_eq!(g.registrar, addr(REGISTRAR));
        assert_eq!(g.source, addr(GW));
        assert_eq!(g.line, Some(addr(GW).ip()));
        assert_eq!(g.expires, Some(120));
        assert_eq!(g.status_code, Some(200));
        assert_eq!(g.user_agent.as_deref(), Some("GoIP16"));
        assert_eq!(g.contact.as_deref(), Some("sip:1001@192.168.1.10:5062"));
        assert_eq!(g.time, Timestamp(0));
        assert_eq!(r.t.stats().registrations, 1);
    }

    #[test]
    fn unregister_failure_challenge_and_silence() {
        let mut cfg = EngineConfig::default();
        cfg.limits.registration_timeout_secs = 32;
        let mut r = Run::with(cfg);
        r.send(GW, REGISTRAR, 0, &register("u", 5, "0", true));
        r.send(REGISTRAR, GW, 10, &reg_resp("u", 5, 200, &[]));
        r.send(GW, REGISTRAR, 0, &register("f", 1, "60", false));
        r.send(REGISTRAR, GW, 10, &reg_resp("f", 1, 403, &[]));
        r.send(GW, REGISTRAR, 0, &register("c", 1, "60", false));
        r.send(REGISTRAR, GW, 10, &reg_resp("c", 1, 407, &[]));
        r.send(GW, REGISTRAR, 0, &register("n", 1, "60", false));
        r.send(GW, REGISTRAR, 500, &register("n", 1, "60", false));
        r.expire(31_000);
        assert_eq!(r.regs().len(), 2);
        r.expire(32_100);
        let regs = r.regs();
        let by = |acct_call: usize| regs[acct_call].outcome;
        assert_eq!(regs.len(), 4);
        assert_eq!(by(0), RegOutcome::Unregistered);
        assert_eq!(by(1), RegOutcome::Failed);
        let rest: Vec<_> = regs[2..].iter().map(|g| g.outcome).collect();
        assert!(rest.contains(&RegOutcome::Challenged) && rest.contains(&RegOutcome::NoResponse));
        assert_eq!(r.t.stats().retransmissions, 1);
    }

    #[test]
    fn full_tables_evict_and_count() {
        let mut cfg = EngineConfig::default();
        cfg.limits.dialogs = 2;
        cfg.limits.registrations = 1;
        let mut r = Run::with(cfg);
        for (i, id) in ["d1", "d2", "d3"].iter().enumerate() {
            let c = Call { id, ..INBOUND };
            r.sip(&c, true, i as i64 * 100, &c.invite(1, ""));
        }
        assert_eq!(r.t.evictions().get("dialogs"), 1);
        // The dialog expiring first (the oldest setup) was reported as incomplete.
        let calls = r.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].call_id, "d1");
        assert_eq!(calls[0].outcome, Outcome::Incomplete);
        assert_eq!(r.t.table_sizes()[0], ("dialogs", 2));
        r.send(GW, REGISTRAR, 0, &register("r1", 1, "60", false));
        r.send(GW, REGISTRAR, 0, &register("r2", 1, "60", false));
        assert_eq!(r.t.evictions().get("registrations"), 1);
        assert_eq!(r.t.table_sizes()[1], ("registrations", 1));
        assert_eq!(r.t.stats().calls, 3);
    }

    #[test]
    fn malformed_sip_is_counted() {
        let mut r = Run::new();
        r.send(
            SWITCH,
            PHONE,
            0,
            b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 500\r\n\r\nv=0",
        );
        r.send(
            SWITCH,
            PHONE,
            0,
            &msg("OPTIONS sip:a@b SIP/2.0", &[("CSeq", "1 OPTIONS")], ""),
        );
        assert_eq!(r.t.errors().get("sip.truncated"), 1);
        assert_eq!(r.t.errors().get("sip.no_call_id"), 2);
        assert_eq!(r.t.stats().calls, 0);
        // A body cut short: the call is still tracked (counted as truncated), its SDP is not used.
        let c = INBOUND;
        let mut inv = c.invite(1, &sdp(SWITCH_RTP, "o", "s", "18"));
        inv.truncate(inv.len() - 20);
        r.sip(&c, true, 10, &inv);
        assert_eq!(r.t.errors().get("sip.truncated"), 2);
        assert_eq!(r.t.stats().calls, 1);
        assert_eq!(r.t.table_sizes()[3], ("media_expectations", 0));
    }

    #[test]
    fn udp_invite_with_bad_content_length_still_counts_as_a_call() {
        let mut r = Run::new();
        r.send(
            SWITCH,
            PHONE,
            0,
            b"INVITE sip:a@b SIP/2.0\r\nCall-ID: cl-bad\r\nCSeq: 1 INVITE\r\nContent-Length: bad\r\n\r\nv=0\r\n",
        );
        assert_eq!(r.t.errors().get("sip.bad_content_length"), 1);
        assert_eq!(r.t.stats().calls, 1);
    }

    fn call_messages() -> Vec<(bool, Vec<u8>)> {
        let c = INBOUND;
        let offer = sdp(SWITCH_RTP, "o", "s", "18 8");
        let answer = sdp(PHONE_RTP, "p", "s", "18");
        vec![
            (true, c.invite(1, &offer)),
            (false, c.resp(100, 1, "INVITE", &[], "")),
            (false, c.resp(180, 1, "INVITE", &[], "")),
            (false, c.resp(407, 1, "INVITE", &[], "")),
            (true, c.invite(2, &offer)),
            (false, c.resp(183, 2, "INVITE", &[], &answer)),
            (false, c.resp(200, 2, "INVITE", &[], &answer)),
            (true, c.req("ACK", 2)),
            (true, c.req("CANCEL", 2)),
            (false, c.resp(487, 2, "INVITE", &[], "")),
            (false, c.resp(486, 2, "INVITE", &[], "")),
            (true, c.req("BYE", 3)),
            (false, c.bye_from_callee(1)),
            (false, c.resp(200, 3, "BYE", &[], "")),
        ]
    }

    proptest! {
        /// Hostile input: call messages with random bytes overwritten and random datagrams on
        /// the signalling and media addresses never panic, every call started is reported by
        /// `finish`, and `finish` leaves no table entry behind.
        #[test]
        fn mutated_messages_never_panic(
            edits in proptest::collection::vec((0usize..14, 0usize..2000, any::<u8>()), 0..30),
            junk in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
        ) {
            let msgs = call_messages();
            let mut r = Run::new();
            for (i, (k, at, byte)) in edits.iter().enumerate() {
                let (up, m) = &msgs[*k];
                let mut m = m.clone();
                let n = m.len().max(1);
                if let Some(b) = m.get_mut(*at % n) {
                    *b = *byte;
                }
                r.sip(&INBOUND, *up, i as i64 * 30, &m);
            }
            for (i, j) in junk.iter().enumerate() {
                r.send(SWITCH_RTP, PHONE_RTP, 1000 + i as i64 * 20, j);
                r.send(SWITCH, PHONE, 1000 + i as i64 * 20, j);
            }
            r.finish(200_000);
            prop_assert_eq!(r.calls().len(), r.count(started));
            prop_assert_eq!(r.t.table_sizes()[0], ("dialogs", 0));
            prop_assert_eq!(r.t.table_sizes()[2], ("media_flows", 0));
        }

        #[test]
        fn interleavings_never_count_two_calls(order in proptest::collection::vec(0usize..14, 0..40)) {
            let msgs = call_messages();
            let mut r = Run::new();
            let mut any_invite = false;
            for (i, &k) in order.iter().enumerate() {
                let (up, m) = &msgs[k];
                any_invite |= k == 0 || k == 4;
                r.sip(&INBOUND, *up, i as i64 * 50, m);
            }
            r.finish(100_000);
            let s = r.t.stats();
            prop_assert_eq!(s.calls, u64::from(any_invite));
            prop_assert!(r.count(started) <= 1);
            prop_assert!(r.count(answered) <= 1);
            prop_assert_eq!(r.calls().len(), r.count(started));
        }
    }
}
