//! REGISTER transactions and the registration records they end in.

use super::*;
use crate::model::{Datagram, Event, RegOutcome, RegistrationRecord, Timestamp};
use crate::sip::SipMessage;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug)]
pub(super) struct PendingReg {
    pub(super) account: String,
    pub(super) registrar: SocketAddr,
    pub(super) source: SocketAddr,
    pub(super) line: Option<IpAddr>,
    pub(super) contact: Option<String>,
    pub(super) expires: Option<u32>,
    pub(super) cseq: u32,
    pub(super) challenged: bool,
    pub(super) status: Option<u16>,
    pub(super) user_agent: Option<String>,
    pub(super) time: Timestamp,
}

impl PendingReg {
    pub(super) fn record(&self, outcome: RegOutcome) -> RegistrationRecord {
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

impl Tracker {
    pub(super) fn emit_reg(
        &mut self,
        r: &PendingReg,
        outcome: RegOutcome,
        events: &mut Vec<Event>,
    ) {
        self.stats.registrations += 1;
        events.push(Event::Registration(Box::new(r.record(outcome))));
    }

    pub(super) fn on_register(
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
        let line = self
            .network
            .line_end(d.src.ip(), d.dst.ip())
            .map(|e| e.line);
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

    pub(super) fn on_register_response(
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
