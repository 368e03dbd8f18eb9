//! INVITE dialogs: their state, the call record they end in, and the tracker's INVITE,
//! in-dialog and response handling.

use super::*;
use crate::media::MediaTable;
use crate::model::{
    CallRecord, Datagram, Direction, Event, Outcome, Participation, ProbeMethod, ProbeRecord,
    RtpStreamStats, Timestamp, Transport,
};
use crate::sdp;
use crate::sip::{Method, NameAddr, SipMessage};
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// INVITE sent, no final answer yet.
    Setup,
    Answered,
    /// BYE, CANCEL or a failure seen at this time; reported after the linger.
    Ending(Timestamp),
}

#[derive(Clone, Debug, Default)]
pub(super) struct SideSdp {
    pub(super) origin_user: Option<String>,
    pub(super) session: Option<String>,
    pub(super) codecs: Vec<String>,
    pub(super) ptime: Option<u32>,
}

#[derive(Debug)]
pub(super) struct Dialog {
    pub(super) seq: u64,
    pub(super) call_id: String,
    pub(super) from_tag: Option<String>,
    pub(super) caller: SocketAddr,
    pub(super) callee: SocketAddr,
    pub(super) line: Option<IpAddr>,
    pub(super) direction: Direction,
    pub(super) peer: Option<SocketAddr>,
    pub(super) transport: Transport,
    pub(super) from: Option<String>,
    pub(super) to: Option<String>,
    pub(super) request_uri: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) server: Option<String>,
    pub(super) allow: Option<String>,
    pub(super) caller_sdp: Option<SideSdp>,
    pub(super) callee_sdp: Option<SideSdp>,
    pub(super) invite_cseq: u32,
    pub(super) start: Timestamp,
    pub(super) progress: Option<Timestamp>,
    pub(super) answer: Option<Timestamp>,
    pub(super) end: Option<Timestamp>,
    pub(super) status_code: Option<u16>,
    pub(super) final_code: Option<u16>,
    pub(super) cancelled: bool,
    pub(super) bye: bool,
    pub(super) timed_out: bool,
    pub(super) private_contact: bool,
    pub(super) phase: Phase,
    /// Something besides the INVITE was seen: a response from the callee or another request
    /// of the dialog. Until then the dialog is an offer that may age out at Timer B.
    pub(super) responded: bool,
    /// Last in-dialog signalling.
    pub(super) last: Timestamp,
    pub(super) endpoints: Vec<SocketAddr>,
    pub(super) rtp: Vec<RtpStreamStats>,
}

impl Dialog {
    pub(super) fn line_is_caller(&self) -> bool {
        !matches!(self.direction, Direction::Inbound)
    }

    pub(super) fn outcome(&self) -> Outcome {
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

    /// The call record, made by moving the dialog's strings (a reported dialog is gone).
    pub(super) fn into_record(self, media: &MediaTable) -> CallRecord {
        let outcome = self.outcome();
        let line_is_caller = self.line_is_caller();
        let Dialog {
            call_id,
            line,
            direction,
            peer,
            transport,
            from,
            to,
            request_uri,
            user_agent,
            server,
            allow,
            caller_sdp: offer,
            callee_sdp: answer,
            start,
            progress,
            answer: answered,
            end,
            status_code,
            private_contact,
            mut rtp,
            ..
        } = self;
        let codec = negotiated_codec(offer.as_ref(), answer.as_ref());
        let ptime = answer
            .as_ref()
            .and_then(|s| s.ptime)
            .or(offer.as_ref().and_then(|s| s.ptime));
        let (mut offer, mut answer) = (offer, answer);
        // The answer's codecs if there is one, else the offer's.
        let codecs = answer
            .as_mut()
            .or(offer.as_mut())
            .map(|s| std::mem::take(&mut s.codecs))
            .unwrap_or_default();
        let line_sdp = if line_is_caller { offer } else { answer };
        let (sdp_origin, sdp_session) =
            line_sdp.map_or((None, None), |s| (s.origin_user, s.session));
        for s in media.streams_for(&call_id) {
            if rtp.len() < MAX_CALL_STREAMS {
                rtp.push(s);
            }
        }
        rtp.sort_by_key(|s| (s.first, s.src, s.ssrc));
        let mut rec = CallRecord {
            call_id,
            line,
            direction,
            peer,
            from,
            to,
            request_uri,
            user_agent,
            server,
            allow,
            sdp_origin,
            sdp_session,
            transport,
            codec,
            codecs,
            ptime,
            start,
            progress,
            answer: answered,
            end,
            outcome,
            status_code,
            private_contact,
            rtp,
            participation: Participation::Ignored,
        };
        // INVITE responses are taken from the callee only (see `on_invite_response`), so an
        // answer on an inbound call is the line's own.
        rec.participation = rec.judge_participation(true);
        rec
    }

    pub(super) fn deadline(&self, l: &Limits) -> Timestamp {
        match self.phase {
            // RFC 3261 Timer B: a caller that heard nothing gives up; so can the tracker.
            Phase::Setup if !self.responded => self.start.plus_secs(l.no_response_secs),
            Phase::Setup => self.start.plus_secs(l.setup_secs),
            Phase::Answered => self
                .answer
                .map_or(self.last, |a| a.max(self.last))
                .plus_secs(l.established_secs),
            Phase::Ending(at) if matches!(self.final_code, Some(401 | 407)) && !self.cancelled => {
                at.plus_secs(CHALLENGE_WAIT_SECS)
            }
            Phase::Ending(at) => at.plus_secs(END_LINGER_SECS),
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

pub(super) fn canonical_codec(name: &str) -> String {
    CODEC_SPELLINGS
        .iter()
        .find(|c| c.eq_ignore_ascii_case(name))
        .map_or_else(|| short(name), |c| (*c).to_string())
}

/// Telephone-event and comfort noise are never "the" codec.
pub(super) fn is_aux_codec(name: &str) -> bool {
    name.eq_ignore_ascii_case("telephone-event") || name.eq_ignore_ascii_case("CN")
}

/// First codec of the answer that the offer also lists (else the first real codec of either).
pub(super) fn negotiated_codec(
    offer: Option<&SideSdp>,
    answer: Option<&SideSdp>,
) -> Option<String> {
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

/// The From and To of one message, parsed once: each parse costs a few thousand instructions,
/// and an INVITE that opens a dialog needs them for its tags, users and probe record.
#[derive(Clone, Copy, Debug)]
pub(super) struct Parties<'a> {
    pub(super) from: Option<NameAddr<'a>>,
    pub(super) to: Option<NameAddr<'a>>,
}

impl<'a> Parties<'a> {
    pub(super) fn of(msg: &SipMessage<'a>) -> Parties<'a> {
        Parties {
            from: msg.from(),
            to: msg.to(),
        }
    }
}

impl Tracker {
    pub(super) fn classify(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> (Option<IpAddr>, Direction, Option<SocketAddr>) {
        match self.network.line_end(src.ip(), dst.ip()) {
            Some(e) if e.direction == Direction::Inbound => (Some(e.line), e.direction, Some(src)),
            Some(e) => (Some(e.line), e.direction, Some(dst)),
            None => (None, Direction::Transit, None),
        }
    }

    pub(super) fn on_invite(
        &mut self,
        msg: &SipMessage<'_>,
        call_id: &str,
        cseq: u32,
        d: &Datagram<'_>,
        events: &mut Vec<Event>,
    ) {
        let parties = Parties::of(msg);
        let from_tag = parties.from.and_then(|f| f.tag);
        let to_tag = parties.to.and_then(|t| t.tag);
        let key = self.key(call_id);
        if let Some(dl) = self.dialogs.get_mut(&key) {
            if dl.call_id != call_id {
                // Two Call-IDs with one 64-bit keyed hash: not seen in practice; counted.
                self.errors.add("sip.call_id_hash_collision", 1);
                return;
            }
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
            self.absorb_message(key, msg, from_tag, d);
            self.reschedule(key);
            return;
        }
        if let Some(t) = self.tombs.get(&key).copied() {
            let same_caller = match (self.tag_hash(from_tag), t.from_tag) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if same_caller && cseq == t.invite_cseq {
                self.stats.retransmissions += 1;
                return;
            }
            if same_caller && to_tag.is_none() && cseq > t.invite_cseq {
                // A fresh attempt reusing a reported Call-ID: a new record, same call count.
                self.tombs.remove(&key);
                self.start_dialog(key, call_id, msg, parties, cseq, d, events, false);
            }
            return;
        }
        self.start_dialog(key, call_id, msg, parties, cseq, d, events, true);
    }

    /// Opens dialog `key`; `first`: a Call-ID not seen before (counted as a call, and an
    /// inbound INVITE is also reported as a probe of the line by its sender).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_dialog(
        &mut self,
        key: CallKey,
        call_id: &str,
        msg: &SipMessage<'_>,
        parties: Parties<'_>,
        cseq: u32,
        d: &Datagram<'_>,
        events: &mut Vec<Event>,
        first: bool,
    ) {
        let dl = self.fresh_dialog(call_id, msg, parties, cseq, d);
        let deadline = dl.deadline(&self.limits);
        events.push(Event::CallStarted {
            call_id: dl.call_id.clone(),
            line: dl.line,
            direction: dl.direction,
            peer: dl.peer,
            ts: d.ts,
        });
        if first {
            self.stats.calls += 1;
            if let (Direction::Inbound, Some(peer), Some(line)) = (dl.direction, dl.peer, dl.line) {
                // The call record keeps the line's User-Agent; the sender's is evidence about it.
                // The users are the dialog's own (`probe_record`'s reading of the request),
                // not parsed a second time.
                events.push(Event::Probe(Box::new(ProbeRecord {
                    peer,
                    line,
                    method: ProbeMethod::Invite,
                    request_user: dl.request_uri.clone(),
                    to_user: dl.to.clone(),
                    user_agent: msg.user_agent().map(short),
                    time: d.ts,
                    status: None,
                })));
            }
        }
        if let Some((_, old)) = self.dialogs.insert(key, Box::new(dl), deadline) {
            self.evicted("dialogs");
            self.emit_call(*old, d.ts, events);
        }
        self.absorb_message(key, msg, parties.from.and_then(|f| f.tag), d);
    }

    pub(super) fn fresh_dialog(
        &mut self,
        key: &str,
        msg: &SipMessage<'_>,
        parties: Parties<'_>,
        cseq: u32,
        d: &Datagram<'_>,
    ) -> Dialog {
        let (line, direction, peer) = self.classify(d.src, d.dst);
        self.next_seq += 1;
        Dialog {
            seq: self.next_seq,
            call_id: key.to_string(),
            from_tag: parties.from.and_then(|f| f.tag).map(short),
            caller: d.src,
            callee: d.dst,
            line,
            direction,
            peer,
            transport: d.transport,
            from: user_of(parties.from),
            to: user_of(parties.to),
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
            responded: false,
            last: d.ts,
            endpoints: Vec::new(),
            rtp: Vec::new(),
        }
    }

    pub(super) fn reschedule(&mut self, key: CallKey) {
        if let Some(dl) = self.dialogs.get(&key) {
            let t = dl.deadline(&self.limits);
            self.dialogs.set_deadline(&key, t);
        }
    }

    /// Whether `msg` (From-tag `tag`) was sent by the caller's side of `dl`: requests carry the
    /// caller's From-tag when the caller sends them, responses when the caller receives them.
    pub(super) fn sent_by_caller(
        dl: &Dialog,
        msg: &SipMessage<'_>,
        tag: Option<&str>,
        d: &Datagram<'_>,
    ) -> bool {
        match (tag, dl.from_tag.as_deref()) {
            (Some(t), Some(orig)) => msg.is_request() == (t == orig),
            _ if d.src == dl.caller => true,
            _ if d.src == dl.callee => false,
            _ => msg.is_request(),
        }
    }

    /// Takes fingerprints and SDP from a message (From-tag `from_tag`) of dialog `key`.
    pub(super) fn absorb_message(
        &mut self,
        key: CallKey,
        msg: &SipMessage<'_>,
        from_tag: Option<&str>,
        d: &Datagram<'_>,
    ) {
        let Some(dl) = self.dialogs.get_mut(&key) else {
            return;
        };
        let by_caller = Self::sent_by_caller(dl, msg, from_tag, d);
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
        // Parsed in place: an `Sdp` holds fixed arrays of some 9 KB, not to be moved.
        let mut parsed = sdp::Sdp::default();
        if let Err(e) = sdp::parse_into(msg.body, &mut parsed) {
            self.errors.add(&format!("sdp.{}", e.kind()), 1);
            return;
        }
        let sdp = &parsed;
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
        // On the stack: one section's rtpmaps (at most `sdp::MAX_PAYLOAD_TYPES`).
        let mut rates: arrayvec::ArrayVec<(u8, u32), { sdp::MAX_PAYLOAD_TYPES }> =
            arrayvec::ArrayVec::new();
        for m in &sdp.media {
            if let Some(ep) = m.rtp_endpoint() {
                rates.clear();
                rates.extend(m.rtpmaps.iter().map(|r| (r.pt, r.clock_rate)));
                self.media.expect_with_rates(ep, &dl.call_id, &rates, d.ts);
                if !dl.endpoints.contains(&ep) && dl.endpoints.len() < MAX_ENDPOINTS {
                    dl.endpoints.push(ep);
                }
            }
        }
        self.sync_evictions();
    }

    pub(super) fn on_invite_response(
        &mut self,
        msg: &SipMessage<'_>,
        call_id: &str,
        cseq: u32,
        code: u16,
        d: &Datagram<'_>,
        events: &mut Vec<Event>,
    ) {
        let key = self.key(call_id);
        let from_tag = msg.from().and_then(|f| f.tag);
        let Some(dl) = self.dialogs.get_mut(&key) else {
            return;
        };
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
        dl.responded = true;
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
                        let called =
                            crate::model::called_user(dl.request_uri.as_deref(), dl.to.as_deref())
                                .map(str::to_string);
                        events.push(Event::CallAnswered {
                            call_id: call_id.to_string(),
                            line: dl.line,
                            direction: dl.direction,
                            peer: dl.peer,
                            called,
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
        self.absorb_message(key, msg, from_tag, d);
        self.reschedule(key);
    }

    pub(super) fn on_in_dialog_request(
        &mut self,
        msg: &SipMessage<'_>,
        m: Method<'_>,
        call_id: &str,
        d: &Datagram<'_>,
    ) {
        let key = self.key(call_id);
        let Some(dl) = self.dialogs.get_mut(&key) else {
            return;
        };
        dl.responded = true;
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
        self.absorb_message(key, msg, msg.from().and_then(|f| f.tag), d);
        self.reschedule(key);
    }

    pub(super) fn on_other_response(
        &mut self,
        msg: &SipMessage<'_>,
        call_id: &str,
        d: &Datagram<'_>,
    ) {
        let key = self.key(call_id);
        let Some(dl) = self.dialogs.get_mut(&key) else {
            return;
        };
        dl.responded = true;
        dl.last = d.ts;
        self.absorb_message(key, msg, msg.from().and_then(|f| f.tag), d);
        self.reschedule(key);
    }

    /// Reports dialog `key` and leaves a tombstone.
    pub(super) fn report(&mut self, key: &CallKey, now: Timestamp, events: &mut Vec<Event>) {
        let Some(dl) = self.dialogs.remove(key) else {
            return;
        };
        for ep in &dl.endpoints {
            self.media.unexpect(*ep, &dl.call_id);
        }
        let tomb = Tomb {
            from_tag: self.tag_hash(dl.from_tag.as_deref()),
            invite_cseq: dl.invite_cseq,
        };
        let until = dl.last.max(now).plus_secs(TOMBSTONE_SECS);
        let rec = dl.into_record(&self.media);
        if self.tombs.insert(*key, tomb, until).is_some() {
            self.evicted("dialog_tombstones");
        }
        self.push_call(rec, events);
    }

    /// Reports a dialog that was evicted from the table.
    pub(super) fn emit_call(&mut self, dl: Dialog, _now: Timestamp, events: &mut Vec<Event>) {
        for ep in &dl.endpoints {
            self.media.unexpect(*ep, &dl.call_id);
        }
        let rec = dl.into_record(&self.media);
        self.push_call(rec, events);
    }

    pub(super) fn push_call(&mut self, rec: CallRecord, events: &mut Vec<Event>) {
        self.stats.calls_ended += 1;
        events.push(Event::CallEnded(Box::new(rec)));
    }
}
