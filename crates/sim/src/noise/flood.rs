//! Floods (INVITE/REGISTER from random, often spoofed sources) and framing (gateway-looking
//! calls sent at a line from outside).

use super::{pick, secs, step, Reply, Source};
use crate::engine::Exchange;
use crate::numbers::{self as num, exponential, lognormal, uniform};
use crate::population::Line;
use crate::scenario::{Kind, NoiseKind, Unsolicited};
use crate::sipmsg::{Msg, G729, PCMA, PCMU};
use rand::Rng;
use std::net::SocketAddr;

impl Source {
    // ----- floods ---------------------------------------------------------------------------

    /// One INVITE or REGISTER of a flood: random Call-ID, user and (spoofed) source; the flooder
    /// never completes a transaction.
    pub(super) fn flood(&mut self, t: i64, lines: &[Line]) -> (Vec<Exchange>, Option<i64>) {
        let n = self.targets.len() as u64;
        if n == 0 || t >= self.burst_end {
            return (Vec::new(), None);
        }
        let idx = self.targets[(self.cursor % n) as usize];
        self.cursor += 1;
        let next = t + 1 + (exponential(&mut self.rng, 1.0 / self.rate) * 1e6) as i64;
        let Some(line) = lines.get(idx as usize) else {
            return (Vec::new(), Some(next));
        };
        let sock = if self.spoofed {
            self.spoofed_sock(line)
        } else {
            self.sock(line)
        };
        let host = line.addr.to_string();
        let user = self.rng.random_range(100..10_000u32).to_string();
        let to = if self.rng.random_bool(0.5) {
            num::mobile_national(&mut self.rng)
        } else {
            user.clone()
        };
        let caller = self.party(sock, user, host.clone());
        let callee = line.device_party(&mut self.rng, to.clone(), host, 5060);
        let d = self.dialog(caller, callee, to, false);
        self.record(sock.ip(), idx);
        let answers = line.unsolicited != Unsolicited::Ignore;
        let at = t + self.turnaround();
        let mut script = Vec::with_capacity(3);
        let mut reply = Reply::None;
        if self.kind == NoiseKind::InviteFlood {
            script.push(step(t, Msg::Invite));
            // An overloaded device answers some: 100 Trying, now and then a final refusal.
            if answers && self.rng.random_bool(0.35) {
                script.push(step(at, Msg::Trying));
                reply = Reply::Provisional;
                if self.rng.random_bool(0.25) {
                    let code = *pick(&mut self.rng, &[486u16, 503, 403]);
                    script.push(step(at + self.turnaround(), Msg::Fail(code)));
                    reply = Reply::Reject { trying: true, code };
                }
            }
        } else {
            let cseq = self.rng.random_range(1..100);
            script.push(step(t, Msg::Register { cseq, auth: false }));
            if answers && self.rng.random_bool(0.4) {
                let m = if line.kind.is_pbx() {
                    Msg::Unauthorized { cseq }
                } else {
                    Msg::RegisterFail { cseq, code: 403 }
                };
                script.push(step(at, m));
                reply = Reply::Reject {
                    trying: false,
                    code: 401,
                };
            }
        }
        self.outcome(idx, reply);
        (vec![self.exchange(idx, d, script, Vec::new())], Some(next))
    }

    // ----- framing --------------------------------------------------------------------------

    /// One attempt on a framing channel: a gateway-shaped INVITE (a new mobile number of the
    /// country, a foreign caller ID) that the line ignores or rejects, optionally with one-way
    /// voice-shaped RTP sent at the line anyway.
    pub(super) fn framing(&mut self, t: i64, lines: &[Line]) -> (Vec<Exchange>, Option<i64>) {
        let n = self.targets.len() as u64;
        if n == 0 {
            return (Vec::new(), None);
        }
        let idx = self.targets[(self.cursor % n) as usize];
        self.cursor += 1;
        let Some(line) = lines.get(idx as usize) else {
            return (Vec::new(), None);
        };
        let sock = self.sock(line);
        let host = line.addr.to_string();
        let (_, dialled) = num::dialled_mobile(&mut self.rng);
        let cli = num::intl_cli(&mut self.rng);
        let caller = self.party(sock, cli, sock.ip().to_string());
        let callee = line.device_party(&mut self.rng, dialled.clone(), host, 5060);
        let mut d = self.dialog(caller, callee, dialled.clone(), false);
        d.offer = vec![G729, PCMA, PCMU];
        self.record(sock.ip(), idx);
        let reply = match line.unsolicited {
            Unsolicited::Ignore => Reply::None,
            Unsolicited::Answer if line.kind == Kind::Camera => Reply::AnswerMute,
            _ if line.kind.is_pbx() => Reply::Reject {
                trying: true,
                code: 404,
            },
            _ => {
                let u: f64 = self.rng.random();
                Reply::Reject {
                    trying: false,
                    code: if u < 0.4 {
                        403
                    } else if u < 0.75 {
                        486
                    } else {
                        404
                    },
                }
            }
        };
        self.outcome(idx, reply);
        let rtt = self.rtt;
        let mut script = vec![step(t, Msg::Invite)];
        let at = t + self.turnaround();
        let sig_end = match reply {
            Reply::None => {
                // RFC 3261 timer A: retransmit at 0.5 s, doubling, until the attempt is given up.
                let hold = uniform(&mut self.rng, 8.0, 32.0);
                if self.retransmit {
                    let mut gap = 0.5;
                    let mut at = 0.5;
                    while at < hold {
                        script.push(step(t + secs(at), Msg::Invite));
                        gap *= 2.0;
                        at += gap;
                    }
                }
                t + secs(hold)
            }
            Reply::Reject { trying, code } => {
                let mut tf = at;
                if trying {
                    script.push(step(at, Msg::Trying));
                    tf += self.turnaround();
                }
                script.push(step(tf, Msg::Fail(code)));
                script.push(step(tf + rtt, Msg::AckFail(code)));
                tf + rtt
            }
            _ => {
                script.push(step(at, Msg::Trying));
                let ta = at + secs(uniform(&mut self.rng, 0.2, 1.5));
                script.push(step(ta, Msg::OkInvite));
                script.push(step(ta + rtt, Msg::AckOk));
                let te = ta + rtt + secs(lognormal(&mut self.rng, 40.0, 0.6).clamp(5.0, 150.0));
                script.push(step(te, Msg::Bye { by_caller: true }));
                script.push(step(te + self.turnaround(), Msg::OkBye { by_caller: true }));
                te
            }
        };
        let mut streams = Vec::new();
        let mut media_end = sig_end;
        if self.rtp || reply == Reply::AnswerMute {
            // Voice-shaped G.729 at 20 ms towards the port a gateway would have answered with.
            let from = t + secs(uniform(&mut self.rng, 0.3, 2.0));
            let to = from + secs(lognormal(&mut self.rng, 45.0, 0.6).clamp(8.0, 180.0));
            let to = if reply == Reply::AnswerMute {
                sig_end
            } else {
                to
            };
            let src = SocketAddr::new(d.caller.sock.ip(), d.caller.rtp_port);
            let dst = SocketAddr::new(line.addr, d.callee.rtp_port);
            streams.push(self.voice(false, src, dst, from, to, G729, 20, 3_000));
            media_end = media_end.max(to);
        }
        let gap = secs(uniform(&mut self.rng, 1.0, 15.0));
        (
            vec![self.exchange(idx, d, script, streams)],
            Some(media_end + gap),
        )
    }
}
