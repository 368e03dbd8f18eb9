//! Calls: SIP INVITE dialogs and REGISTER transactions, tied to their media.
//!
//! Contract: `Tracker` takes transport payloads in capture order and pushes `Event`s in capture
//! order. SIP payloads are parsed (failures counted as `sip.<kind>`), everything else on UDP goes
//! to the media table. Dialogs are keyed by Call-ID; a dialog is one call however many
//! retransmissions, hops of the same transaction, authentication retries or re-INVITEs it sees.
//! Every table is bounded (`limits.dialogs`, `limits.registrations`, `limits.media_flows`) and
//! evicts the entry whose deadline comes first, counting it. Packet time only: `expire` is also
//! run from `on_datagram` whenever packet time advances by a second.

use crate::config::{Config, NetworkConfig};
use crate::media::{MediaTable, TimedTable};
use crate::model::{
    CallRecord, Counters, Datagram, Direction, Event, Outcome, RegOutcome, RegistrationRecord,
    RtpStreamStats, Timestamp, Transport,
};
use crate::sdp;
use crate::sip::{self, Method, SipMessage};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};

/// After BYE, CANCEL or a final failure, a dialog waits this long for the 200/487/ACK, an
/// authenticated retry or a forked 2xx, and for trailing RTP, before it is reported.
const END_LINGER_SECS: f64 = 4.0;
/// A reported dialog stays as a tombstone this long (64*T1) so late retransmissions do not
/// start a new call.
const TOMBSTONE_SECS: f64 = 32.0;
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
        CallRecord {
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
        }
    }

    fn deadline(&self, l: &Limits) -> Timestamp {
        match self.phase {
            Phase::Setup => self.start.plus_secs(l.setup_secs),
            Phase::Answered => self
                .answer
                .map_or(self.last, |a| a.max(self.last))
                .plus_secs(l.established_secs),
            Phase::Ending(at) => at.plus_secs(END_LINGER_SECS),
            Phase::Closed => self.last.plus_secs(TOMBSTONE_SECS),
        }
    }
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
    dialogs: TimedTable<String, Dialog>,
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

/// User part without user parameters.
fn user_of(na: Option<sip::NameAddr<'_>>) -> Option<String> {
    let u = na?.user?;
    let u = u.split(';').next().unwrap_or(u);
    (!u.is_empty()).then(|| short(u))
}

impl Tracker {
    pub fn new(cfg: &Config) -> Self {
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
            match sip::parse(d.payload, &self.sip_limits) {
                Ok(msg) => self.on_sip(&msg, d, events),
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
        if let Some((_, old)) = self.dialogs.insert(key.clone(), dl, deadline) {
            self.evicted("dialogs");
            if old.phase != Phase::Closed {
                self.emit_call(old, d.ts, events);
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
            *slot = dl;
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

    fn reschedule(&mut self, key: &String) {
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
    fn absorb_message(&mut self, key: &String, msg: &SipMessage<'_>, d: &Datagram<'_>) {
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
            if msg
                .contact()
                .and_then(|c| c.host)
                .is_some_and(is_private_host)
            {
                dl.private_contact = true;
            }
            // Responses carry the requester's Via, so only requests tell about the line.
            if msg.is_request() && msg.top_via().is_some_and(|v| is_private_host(v.host)) {
                dl.private_contact = true;
            }
        }
        if !msg.has_sdp() {
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
            entry.codecs = audio.codec_names().take(16).map(short).collect();
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
        let key = call_id.to_string();
        let from_tag = msg.from().and_then(|f| f.tag);
        let Some(dl) = self.dialogs.get_mut(&key) else {
            return;
        };
        if dl.phase == Phase::Closed {
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
                            call_id: key.clone(),
                            line: dl.line,
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
        self.absorb_message(&key, msg, d);
        self.reschedule(&key);
    }

    fn on_in_dialog_request(
        &mut self,
        msg: &SipMessage<'_>,
        m: Method<'_>,
        call_id: &str,
        d: &Datagram<'_>,
    ) {
        let key = call_id.to_string();
        let Some(dl) = self.dialogs.get_mut(&key) else {
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
        self.absorb_message(&key, msg, d);
        self.reschedule(&key);
    }

    fn on_other_response(&mut self, msg: &SipMessage<'_>, call_id: &str, d: &Datagram<'_>) {
        let key = call_id.to_string();
        let Some(dl) = self.dialogs.get_mut(&key) else {
            return;
        };
        if dl.phase == Phase::Closed {
            return;
        }
        dl.last = d.ts;
        self.absorb_message(&key, msg, d);
        self.reschedule(&key);
    }

    /// Reports dialog `key` (if not yet reported) and leaves a tombstone.
    fn report(&mut self, key: &String, now: Timestamp, events: &mut Vec<Event>) {
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
        let key = call_id.to_string();
        let Some(p) = self.regs.get_mut(&key) else {
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
                self.regs.set_deadline(&key, deadline);
            }
            200..=299 => {
                // The registrar's granted expiry, when it says, else what was asked for.
                let granted = msg.contact_expires().or_else(|| msg.expires());
                if let Some(mut r) = self.regs.remove(&key) {
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
                if let Some(r) = self.regs.remove(&key) {
                    self.emit_reg(&r, RegOutcome::Failed, events);
                }
            }
        }
    }
}
