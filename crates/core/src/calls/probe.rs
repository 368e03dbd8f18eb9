//! Out-of-dialog requests from outside to a line (OPTIONS, SUBSCRIBE, ...) and the line's
//! answers to them, reported as `Event::Probe` (evidence about the sender).

use super::*;
use crate::model::{Datagram, Event, ProbeMethod, ProbeRecord, Timestamp};
use crate::sip::{self, Method, SipMessage};
use std::net::{IpAddr, SocketAddr};

/// `to`: the message's To, parsed (the caller has it already).
pub(super) fn probe_record(
    msg: &SipMessage<'_>,
    to: Option<sip::NameAddr<'_>>,
    method: ProbeMethod,
    peer: SocketAddr,
    line: IpAddr,
    status: Option<u16>,
    time: Timestamp,
) -> ProbeRecord {
    // A response carries the line's Server/User-Agent and echoes the request's users: only the
    // request's own fields are worth an allocation.
    let request = status.is_none();
    ProbeRecord {
        peer,
        line,
        method,
        request_user: msg
            .request_uri()
            .and_then(|u| u.number())
            .filter(|_| request)
            .map(short),
        to_user: if request { user_of(to) } else { None },
        user_agent: msg.user_agent().filter(|_| request).map(short),
        time,
        status,
    }
}

/// User part without user parameters.
pub(super) fn user_of(na: Option<sip::NameAddr<'_>>) -> Option<String> {
    let u = na?.user?;
    let u = crate::sip::split_at_byte(u, b';').map_or(u, |(u, _)| u);
    (!u.is_empty()).then(|| short(u))
}

impl Tracker {
    /// Reports an out-of-dialog request from outside to a line (OPTIONS, SUBSCRIBE, MESSAGE,
    /// NOTIFY, ...) or the line's final response to one, as `Event::Probe`. Nothing is kept.
    pub(super) fn maybe_probe(
        &mut self,
        msg: &SipMessage<'_>,
        m: Method<'_>,
        status: Option<u16>,
        call_id: &str,
        d: &Datagram<'_>,
        events: &mut Vec<Event>,
    ) {
        let method = match m {
            Method::Options => ProbeMethod::Options,
            Method::Subscribe => ProbeMethod::Subscribe,
            Method::Message => ProbeMethod::Message,
            Method::Notify => ProbeMethod::Notify,
            Method::Info | Method::Publish | Method::Refer | Method::Other(_) => ProbeMethod::Other,
            _ => return,
        };
        if status.is_some_and(|c| c < 200) {
            return;
        }
        let key = self.key(call_id);
        if self.dialogs.contains(&key) || self.tombs.contains(&key) {
            return;
        }
        // Requests come from outside to the line; responses from the line back out.
        let (outside, home) = match status {
            None => (d.src, d.dst),
            Some(_) => (d.dst, d.src),
        };
        if self.network.is_home(outside.ip()) || !self.network.is_home(home.ip()) {
            return;
        }
        // Only a request's To is looked at.
        let to = if status.is_none() { msg.to() } else { None };
        if to.and_then(|t| t.tag).is_some() {
            return; // a request inside some dialog this tap did not see start
        }
        events.push(Event::Probe(Box::new(probe_record(
            msg,
            to,
            method,
            outside,
            home.ip(),
            status,
            d.ts,
        ))));
    }
}
