//! Probers: sweeps (OPTIONS over a range), enumeration (REGISTER/INVITE per extension) and
//! toll fraud (INVITEs cycling dial prefixes, relayed calls through a PBX that lets them out).

use super::{secs, step, Reply, Source, GIVE_UP, MAX_RELAYED, NAMES};
use crate::engine::{Exchange, Step, Stream};
use crate::numbers::{self as num, lognormal, uniform};
use crate::population::Line;
use crate::scenario::{Kind, NoiseKind, ProbeMethod, Unsolicited};
use crate::sipmsg::{Dialog, Msg, PCMU};
use rand::Rng;
use std::net::SocketAddr;

impl Source {
    // ----- sweeps -------------------------------------------------------------------------

    /// OPTIONS to the next line of the range; one pass after another.
    pub(super) fn sweep(&mut self, t: i64, lines: &[Line]) -> (Vec<Exchange>, Option<i64>) {
        let n = self.targets.len() as u64;
        if n == 0 || self.cursor >= n * u64::from(self.passes) {
            return (Vec::new(), None);
        }
        let idx = self.targets[(self.cursor % n) as usize];
        self.cursor += 1;
        let next = if self.cursor % n == 0 {
            t + self.pass_gap
        } else {
            t + secs(uniform(&mut self.rng, 0.7, 1.3) / self.rate)
        };
        let Some(line) = lines.get(idx as usize) else {
            return (Vec::new(), Some(next));
        };
        let sock = self.sock(line);
        let host = line.addr.to_string();
        let user = self.from_user.clone();
        let domain = if self.display.is_some() {
            "1.1.1.1".to_string()
        } else {
            sock.ip().to_string()
        };
        let caller = self.party(sock, user.clone(), domain);
        let callee = line.device_party(&mut self.rng, user.clone(), host, 5060);
        let ruri_user = if self.ua.as_deref() == Some("sipcli/v1.8") {
            String::new()
        } else {
            user
        };
        let d = self.dialog(caller, callee, ruri_user, false);
        let mut script = vec![step(t, Msg::Options)];
        self.record(sock.ip(), idx);
        let reply = match line.unsolicited {
            Unsolicited::Ignore => Reply::None,
            // A PBX has no user 100 for a stranger; devices answer any OPTIONS.
            _ if line.kind.is_pbx() || matches!(line.kind, Kind::CallCentre | Kind::HelpDesk) => {
                Reply::Reject {
                    trying: false,
                    code: 404,
                }
            }
            _ => Reply::AnswerMute,
        };
        match reply {
            Reply::Reject { code, .. } => {
                script.push(step(t + self.turnaround(), Msg::OptionsResp(code)))
            }
            Reply::None => {}
            _ => script.push(step(t + self.turnaround(), Msg::OptionsResp(200))),
        }
        self.outcome(idx, reply);
        (vec![self.exchange(idx, d, script, Vec::new())], Some(next))
    }

    // ----- enumeration and toll fraud --------------------------------------------------------

    /// The `k`-th user name an enumeration tries: common names (sometimes first), then 100..999,
    /// then 1000 and up.
    pub(super) fn extension(&self, k: u32) -> String {
        let mut k = k as usize;
        if self.names_first {
            if let Some(n) = NAMES.get(k) {
                return (*n).to_string();
            }
            k -= NAMES.len();
        }
        if k < 900 {
            (100 + k).to_string()
        } else {
            (1000 + k - 900).to_string()
        }
    }

    /// Round robin over the targets still being probed.
    pub(super) fn probe(&mut self, t: i64, lines: &[Line]) -> (Vec<Exchange>, Option<i64>) {
        let n = self.targets.len();
        let Some(pos) = (0..n)
            .map(|i| (self.cursor as usize + i) % n.max(1))
            .find(|&i| self.probes.get(i).is_some_and(|p| !p.done))
        else {
            return (Vec::new(), None);
        };
        self.cursor = (pos + 1) as u64;
        let next = t + secs(uniform(&mut self.rng, 0.8, 1.25) / self.rate);
        let idx = self.targets[pos];
        let Some(line) = lines.get(idx as usize) else {
            if let Some(p) = self.probes.get_mut(pos) {
                p.done = true;
            }
            return (Vec::new(), Some(next));
        };
        let k = self.probes.get(pos).map_or(0, |p| p.tried);
        let (ex, reply) = if self.kind == NoiseKind::Enumeration {
            let ext = self.extension(k);
            match self.method {
                ProbeMethod::Register => self.register_probe(t, line, ext),
                ProbeMethod::Invite => {
                    let reply = self.invite_reply(line, &ext, None);
                    (self.invite_probe(t, line, ext, reply), reply)
                }
            }
        } else {
            let (dial, prefix) = self.dial_string(pos, k);
            let reply = self.invite_reply(line, &dial, Some((prefix, t)));
            if reply == Reply::Relay {
                if let Some(p) = self.probes.get_mut(pos) {
                    p.open = Some(prefix);
                }
            }
            (self.invite_probe(t, line, dial, reply), reply)
        };
        self.outcome(idx, reply);
        if let Some(p) = self.probes.get_mut(pos) {
            p.tried += 1;
            p.silent_streak = if reply == Reply::None {
                p.silent_streak + 1
            } else {
                0
            };
            p.done = p.tried >= self.attempts || p.silent_streak >= GIVE_UP;
        }
        (ex, Some(next))
    }

    /// Toll fraud's `k`-th dial string at target `pos`: every prefix in turn before each
    /// destination number, or, once one got through, that prefix with number after number.
    pub(super) fn dial_string(&mut self, pos: usize, k: u32) -> (String, usize) {
        let np = num::TOLL_PREFIXES.len();
        let k = k as usize;
        let nn = self.numbers.len().max(1);
        let (prefix, i) = match self.probes.get(pos).and_then(|p| p.open) {
            Some(open) => (open, k % nn),
            None => (k % np, (k / np) % nn),
        };
        let number = self.numbers.get(i).cloned().unwrap_or_default();
        let head = num::TOLL_PREFIXES.get(prefix).copied().unwrap_or("00");
        (format!("{head}{number}"), prefix)
    }

    /// How `line` replies to an INVITE for `user` (toll fraud: with the dial prefix index and
    /// the time, for the compromised PBX's route and channels).
    fn invite_reply(&mut self, line: &Line, user: &str, fraud: Option<(usize, i64)>) -> Reply {
        let pbx = line.kind.is_pbx() || matches!(line.kind, Kind::CallCentre | Kind::HelpDesk);
        match line.unsolicited {
            Unsolicited::Ignore => Reply::None,
            Unsolicited::Answer if line.kind == Kind::Camera => Reply::AnswerMute,
            Unsolicited::Answer => match fraud {
                Some((prefix, t)) if line.open_prefix == Some(prefix) => {
                    self.relayed_until.retain(|&e| e > t);
                    if self.relayed_until.len() >= MAX_RELAYED {
                        Reply::Reject {
                            trying: true,
                            code: 503,
                        }
                    } else {
                        Reply::Relay
                    }
                }
                _ => Reply::Reject {
                    trying: true,
                    code: if line.has_extension(user) { 401 } else { 404 },
                },
            },
            Unsolicited::Reject if pbx => Reply::Reject {
                trying: true,
                code: if line.has_extension(user) {
                    401
                } else if fraud.is_some() {
                    [404, 403, 401][line.idx as usize % 3]
                } else {
                    404
                },
            },
            Unsolicited::Reject => Reply::Reject {
                trying: false,
                code: if line.idx % 2 == 0 { 403 } else { 404 },
            },
        }
    }

    /// REGISTER for extension `ext`: 401 where it exists on a PBX, 403/404 elsewhere.
    fn register_probe(&mut self, t: i64, line: &Line, ext: String) -> (Vec<Exchange>, Reply) {
        let sock = self.sock(line);
        let host = line.addr.to_string();
        let caller = self.party(sock, ext.clone(), host.clone());
        let callee = line.device_party(&mut self.rng, ext, host, 5060);
        let user = caller.user.clone();
        let d = self.dialog(caller, callee, String::new(), false);
        self.record(sock.ip(), line.idx);
        let mut script = vec![step(
            t,
            Msg::Register {
                cseq: 1,
                auth: false,
            },
        )];
        let at = t + self.turnaround();
        let reply = match line.unsolicited {
            Unsolicited::Ignore => Reply::None,
            _ if line.has_extension(&user) => {
                script.push(step(at, Msg::Unauthorized { cseq: 1 }));
                Reply::Reject {
                    trying: false,
                    code: 401,
                }
            }
            _ => {
                let code = if line.kind == Kind::Camera || line.idx % 2 == 0 {
                    403
                } else {
                    404
                };
                script.push(step(at, Msg::RegisterFail { cseq: 1, code }));
                Reply::Reject {
                    trying: false,
                    code,
                }
            }
        };
        (vec![self.exchange(line.idx, d, script, Vec::new())], reply)
    }

    /// One INVITE probe (enumeration or toll fraud) with full SDP, and what follows its reply.
    fn invite_probe(&mut self, t: i64, line: &Line, user: String, reply: Reply) -> Vec<Exchange> {
        let sock = self.sock(line);
        let host = line.addr.to_string();
        let from = self.from_user.clone();
        let from = if from.is_empty() { user.clone() } else { from };
        let caller = self.party(sock, from, host.clone());
        let callee = line.device_party(&mut self.rng, user.clone(), host, 5060);
        let mut d = self.dialog(caller, callee, user, false);
        let (codec, ptime) = line.codec();
        d.codec = codec;
        self.record(sock.ip(), line.idx);
        let rtt = self.rtt;
        let mut script = vec![step(t, Msg::Invite)];
        let mut streams = Vec::new();
        let mut extra = Vec::new();
        let at = t + self.turnaround();
        match reply {
            Reply::None => {}
            Reply::Provisional => script.push(step(at, Msg::Trying)),
            Reply::Reject { trying, code } => {
                let mut tf = at;
                if trying {
                    script.push(step(at, Msg::Trying));
                    tf = at + self.turnaround();
                }
                script.push(step(tf, Msg::Fail(code)));
                script.push(step(tf + rtt, Msg::AckFail(code)));
            }
            Reply::AnswerMute => {
                script.push(step(at, Msg::Trying));
                let ta = at + secs(uniform(&mut self.rng, 0.2, 1.5));
                script.push(step(ta, Msg::OkInvite));
                script.push(step(ta + rtt, Msg::AckOk));
                // Probes hang up at once; toll-fraud dialers play their audio into the call.
                let talk = if self.kind == NoiseKind::Enumeration {
                    uniform(&mut self.rng, 0.1, 1.0)
                } else {
                    lognormal(&mut self.rng, 20.0, 0.6).clamp(3.0, 90.0)
                };
                let te = ta + rtt + secs(talk);
                if self.kind == NoiseKind::TollFraud {
                    let src = SocketAddr::new(d.caller.sock.ip(), d.caller.rtp_port);
                    let dst = SocketAddr::new(line.addr, d.callee.rtp_port);
                    streams.push(self.voice(
                        false,
                        src,
                        dst,
                        ta + rtt + 1,
                        te,
                        codec,
                        ptime,
                        3_000,
                    ));
                }
                script.push(step(te, Msg::Bye { by_caller: true }));
                script.push(step(te + self.turnaround(), Msg::OkBye { by_caller: true }));
            }
            Reply::Relay => {
                extra = self.relay(at, line, &mut d, &mut script, &mut streams);
            }
        }
        let mut v = vec![self.exchange(line.idx, d, script, streams)];
        v.extend(extra);
        v
    }

    /// A compromised PBX takes the call, places it out through its trunk to the destination
    /// and bridges two-way voice on both legs. Returns the trunk leg.
    fn relay(
        &mut self,
        at: i64,
        line: &Line,
        d: &mut Dialog,
        script: &mut Vec<Step>,
        streams: &mut Vec<Stream>,
    ) -> Vec<Exchange> {
        let rtt = self.rtt;
        let (codec, ptime) = line.codec();
        let prov = line.provider();
        let prtt = prov.rtt_us;
        // The PBX's outbound route strips the scanner's prefix and dials 00 + number.
        let digits: String = d.ruri_user.trim_start_matches('+').to_string();
        let number = num::TOLL_PREFIXES
            .iter()
            .filter(|p| **p != "+")
            .filter_map(|p| digits.strip_prefix(p))
            .min_by_key(|r| r.len())
            .unwrap_or(&digits)
            .to_string();
        let dialled = format!("00{number}");
        let own = prov.user.clone();
        let lp = line.device_party(&mut self.rng, own, prov.domain.clone(), prov.port);
        let pp = line.provider_party(&mut self.rng, dialled.clone());
        let mut out = self.dialog(lp, pp, dialled, prov.tcp);
        out.ruri_host = prov.peer.to_string();
        out.codec = codec;
        out.offer = vec![codec, PCMU];
        script.push(step(at, Msg::Trying));
        let t_out = at + self.rng.random_range(5_000..20_000);
        let tr = t_out + prtt + secs(uniform(&mut self.rng, 1.0, 3.0));
        let ta = tr + secs(uniform(&mut self.rng, 3.0, 15.0));
        let talk = lognormal(&mut self.rng, 60.0, 0.7).clamp(10.0, 600.0);
        let te = ta + rtt + secs(talk);
        let mut o = vec![
            step(t_out, Msg::Invite),
            step(t_out + prtt, Msg::Trying),
            step(tr, Msg::Ringing),
            step(ta, Msg::OkInvite),
            step(ta + 1_000, Msg::AckOk),
        ];
        script.push(step(tr + 3_000, Msg::Ringing));
        script.push(step(ta + 3_000, Msg::OkInvite));
        script.push(step(ta + 3_000 + rtt, Msg::AckOk));
        script.push(step(te, Msg::Bye { by_caller: true }));
        let t_ok = te + self.turnaround();
        script.push(step(t_ok, Msg::OkBye { by_caller: true }));
        o.push(step(t_ok + 2_000, Msg::Bye { by_caller: true }));
        o.push(step(t_ok + 2_000 + prtt, Msg::OkBye { by_caller: true }));
        d.codec = codec;
        let atk = SocketAddr::new(d.caller.sock.ip(), d.caller.rtp_port);
        let pbx_in = SocketAddr::new(line.addr, d.callee.rtp_port);
        let pbx_out = SocketAddr::new(line.addr, out.caller.rtp_port);
        let trunk = SocketAddr::new(out.callee.sock.ip(), out.callee.rtp_port);
        streams.push(self.voice(true, pbx_in, atk, ta + 5_000, te, codec, ptime, 300));
        streams.push(self.voice(
            false,
            atk,
            pbx_in,
            ta + 3_000 + rtt,
            te,
            codec,
            ptime,
            3_000,
        ));
        let mut trunk_streams = vec![
            self.voice(true, pbx_out, trunk, ta + 2_000, te, codec, ptime, 300),
            self.voice(
                false,
                trunk,
                pbx_out,
                ta + prtt / 2,
                te,
                codec,
                ptime,
                1_000,
            ),
        ];
        trunk_streams.sort_by_key(|s| s.next);
        self.relayed_until.push(te);
        vec![Exchange {
            line: line.idx,
            dialog: Some(Box::new(out)),
            line_is_caller: true,
            script: o,
            pos: 0,
            streams: trunk_streams,
            counts_active: true,
            plain: true,
            peer_ttl: None,
        }]
    }
}
