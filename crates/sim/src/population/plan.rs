//! How a line plans what it does: channel calls, arrivals (calls or media flows), one call's
//! dialog, script and streams, registrations, and non-SIP flows.

use super::{empty_exchange, host_str, pick, Line, MediaMode, Plan, Shape};
use crate::engine::{Exchange, Step, Stream, StreamKind};
use crate::numbers::{self as num, exponential, lognormal, uniform};
use crate::scenario::Kind;
use crate::sipmsg::{CodecSpec, Dialog, Msg, Party, PCMA};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::net::{IpAddr, SocketAddr};

impl Line {
    /// Next call on a gateway or dialer channel.
    pub fn plan_channel_call(&mut self, ch: u32, t: i64) -> Plan {
        let peer = self.cfg.peer;
        if self.kind == Kind::CallCentre {
            let from = pick(&mut self.rng, &self.cfg.own_numbers).clone();
            let to = num::domestic_dialled(&mut self.rng);
            let lp = self.line_party(from, self.cfg.domain.clone(), 5060);
            let pp = self.peer_party(peer, to.clone(), self.cfg.domain.clone());
            return self.plan_call(t, lp, pp, true, to);
        }
        let port = self
            .cfg
            .accounts
            .get(ch as usize)
            .map(|a| a.port)
            .unwrap_or(
                self.cfg
                    .sig_port
                    .wrapping_add(if self.cfg.port_per_channel {
                        ch as u16
                    } else {
                        0
                    }),
            );
        let (_, dialled) = num::dialled_mobile(&mut self.rng);
        let cli = num::intl_cli(&mut self.rng);
        let lp = self.line_party(dialled.clone(), host_str(self.addr), port);
        let pp = self.peer_party(peer, cli, host_str(peer.ip()));
        self.plan_call(t, lp, pp, false, dialled)
    }

    /// A random arrival on a line with Poisson traffic.
    pub fn arrival(&mut self, t: i64, _start: i64) -> Shape {
        if self.active >= self.cfg.max_active {
            return Shape::None;
        }
        match self.kind {
            Kind::AppCalls | Kind::Gaming | Kind::Video => Shape::Flow(self.plan_flow(t)),
            Kind::HelpDesk => {
                let peer = *pick(&mut self.rng, &self.cfg.peers);
                let to = pick(&mut self.rng, &self.cfg.own_numbers).clone();
                let foreign = !matches!(peer.ip(), IpAddr::V4(a) if a.octets()[0] == 198 && a.octets()[1] < 20);
                let from = if foreign {
                    num::intl_cli(&mut self.rng)
                } else {
                    num::domestic_cli(&mut self.rng)
                };
                self.cfg.rtt_us = if foreign { 180_000 } else { 15_000 };
                self.cfg.peer_ttl = if foreign { 48 } else { 59 };
                let lp = self.line_party(to.clone(), host_str(self.addr), 5060);
                let pp = self.peer_party(peer, from, host_str(peer.ip()));
                Shape::Call(Box::new(self.plan_call(t, lp, pp, false, to)))
            }
            _ => {
                let inbound = self.rng.random_bool(self.cfg.inbound_share);
                let own = pick(&mut self.rng, &self.cfg.own_numbers).clone();
                let peer = self.cfg.peer;
                let domain = self.cfg.domain.clone();
                let account = self.cfg.accounts.first().map(|a| a.user.clone());
                let port = self
                    .cfg
                    .accounts
                    .first()
                    .map(|a| a.port)
                    .unwrap_or(self.cfg.sig_port);
                if inbound {
                    let from = if self.kind == Kind::ExpatVoip && self.rng.random_bool(0.6) {
                        num::foreign_e164(&mut self.rng, "44")
                    } else {
                        num::domestic_cli(&mut self.rng)
                    };
                    let user = if self.kind.is_pbx() {
                        own
                    } else {
                        account.unwrap_or_else(|| own.trim_start_matches('+').to_string())
                    };
                    let lp = self.line_party(user.clone(), domain.clone(), port);
                    let pp = self.peer_party(peer, from, domain);
                    Shape::Call(Box::new(self.plan_call(t, lp, pp, false, user)))
                } else {
                    let to = if self.kind == Kind::ExpatVoip && self.rng.random_bool(0.5) {
                        num::foreign_e164(&mut self.rng, "44")
                    } else {
                        num::domestic_dialled(&mut self.rng)
                    };
                    let from = if self.kind.is_pbx() {
                        own
                    } else {
                        account.unwrap_or(own)
                    };
                    let lp = self.line_party(from, domain.clone(), port);
                    let pp = self.peer_party(peer, to.clone(), domain);
                    Shape::Call(Box::new(self.plan_call(t, lp, pp, true, to)))
                }
            }
        }
    }

    pub fn next_arrival_us(&mut self, t: i64, start: i64) -> i64 {
        let mut rate = self.cfg.calls_per_hour.max(0.01);
        if self.kind.is_pbx() {
            // Office hours 08-18 UTC at full rate, a trickle otherwise.
            let hour = ((t / 1_000_000).rem_euclid(86400)) / 3600;
            if !(8..18).contains(&hour) {
                rate *= 0.05;
            }
        }
        let _ = start;
        t + (exponential(&mut self.rng, 3600.0 / rate) * 1e6) as i64 + 1
    }

    fn media_kind(&mut self, codec: CodecSpec, ptime: u32) -> StreamKind {
        let payload = codec.bytes_per_10ms * (ptime / 10) as u16;
        match self.media {
            MediaMode::Rtp | MediaMode::RtpScrambled => StreamKind::Rtp {
                ssrc: self.rng.random(),
                seq: self.rng.random(),
                ts: self.rng.random(),
                ts_step: 8 * ptime,
                pt: codec.pt,
                payload,
                marker: true,
            },
            MediaMode::Opaque => StreamKind::Opaque {
                min: 12 + payload,
                max: 12 + payload,
            },
        }
    }

    /// Plans one INVITE dialog between the line party and the peer party from time `t`.
    fn plan_call(
        &mut self,
        t: i64,
        lp: Party,
        pp: Party,
        line_is_caller: bool,
        dialled: String,
    ) -> Plan {
        let rtt = self.cfg.rtt_us.max(2_000);
        let big = self.rng.random_bool(self.cfg.big_share.clamp(0.0, 1.0));
        let (caller, callee) = if line_is_caller { (lp, pp) } else { (pp, lp) };
        let ruri_host = if callee.sock.is_ipv6() {
            format!("[{}]:{}", callee.sock.ip(), callee.sock.port())
        } else {
            callee.sock.to_string()
        };
        let offer = if line_is_caller {
            self.cfg.offer.clone()
        } else {
            self.cfg.peer_offer.clone()
        };
        let codec = if offer.contains(&self.cfg.codec) {
            self.cfg.codec
        } else {
            offer.first().copied().unwrap_or(PCMA)
        };
        let ptime = self.cfg.ptime;
        let tcp =
            self.tcp.is_some() && (caller.sock == self.cfg.peer || callee.sock == self.cfg.peer);
        let call_host = caller.host.clone();
        let d = Dialog {
            call_id: format!("{}@{}", num::hex_id(&mut self.rng, 10), call_host),
            caller,
            callee,
            ruri_user: dialled,
            ruri_host,
            branch: format!("z9hG4bK{}", num::hex_id(&mut self.rng, 8)),
            branch2: format!("z9hG4bK{}", num::hex_id(&mut self.rng, 8)),
            tcp,
            codec,
            offer,
            ptime,
            big,
            extra: Vec::new(),
            expires: 0,
            nonce: String::new(),
            max_forwards: 70,
        };
        // Delay until the far side's answer to a message reaches the tap.
        let resp_from_peer = rtt;
        let resp_from_line = self.rng.random_range(2_000..40_000);
        let (callee_delay, caller_delay) = if line_is_caller {
            (resp_from_peer, resp_from_line)
        } else {
            (resp_from_line, resp_from_peer)
        };
        let mut s: Vec<Step> = Vec::with_capacity(8);
        let step = |t: i64, msg: Msg| Step {
            t,
            msg,
            coalesce: false,
        };
        s.push(step(t, Msg::Invite));
        s.push(step(t + callee_delay, Msg::Trying));
        let u: f64 = self.rng.random();
        let gw = self.kind.is_gateway() || self.kind == Kind::CallCentre;
        let early = self.rng.random_bool(self.cfg.early_media.clamp(0.0, 1.0));
        // Over TCP a provider often sends 100 and 180/183 back to back in one segment.
        let back_to_back = d.tcp && self.rng.random_bool(0.4);
        let tp = if back_to_back {
            if let Some(first) = s.last_mut() {
                first.coalesce = true;
            }
            t + callee_delay
        } else {
            t + callee_delay + (uniform(&mut self.rng, 0.3, 2.5) * 1e6) as i64
        };
        let mut early_from = None;
        let end;
        let mut streams = Vec::new();
        let callee_media = SocketAddr::new(d.callee.sock.ip(), d.callee.rtp_port);
        let caller_media = SocketAddr::new(d.caller.sock.ip(), d.caller.rtp_port);
        let jit_line = 300i64;
        let jit_peer = if rtt > 80_000 { 3_000 } else { 1_000 };
        let (jit_callee, jit_caller) = if line_is_caller {
            (jit_peer, jit_line)
        } else {
            (jit_line, jit_peer)
        };
        let interval = i64::from(ptime) * 1000;
        let mut outcome = "answered";
        let mut code = 200u16;
        if u < self.cfg.answer_ratio {
            if early {
                s.push(step(tp, Msg::Progress));
                early_from = Some(tp + 20_000);
            } else {
                s.push(step(tp, Msg::Ringing));
            }
            let ring = lognormal(&mut self.rng, 7.0, 0.5).clamp(1.0, 45.0);
            let ta = tp + (ring * 1e6) as i64;
            s.push(step(ta, Msg::OkInvite));
            s.push(step(ta + caller_delay, Msg::AckOk));
            let max_talk = if gw { 1800.0 } else { 5400.0 };
            let talk = lognormal(&mut self.rng, self.cfg.talk_median, self.cfg.talk_sigma)
                .clamp(2.0, max_talk);
            let te = ta + (talk * 1e6) as i64;
            let by_caller = self.rng.random_bool(0.5);
            s.push(step(te, Msg::Bye { by_caller }));
            let d_ok = if by_caller {
                callee_delay
            } else {
                caller_delay
            };
            s.push(step(te + d_ok, Msg::OkBye { by_caller }));
            end = te + d_ok;
            let kind = self.media_kind(codec, ptime);
            let seed = self.rng.random();
            streams.push(Stream::new(
                !line_is_caller,
                callee_media,
                caller_media,
                early_from.unwrap_or(ta + 1),
                te,
                interval,
                jit_callee,
                kind,
                seed,
            ));
            let kind = self.media_kind(codec, ptime);
            let seed = self.rng.random();
            streams.push(Stream::new(
                line_is_caller,
                caller_media,
                callee_media,
                ta + caller_delay + 1,
                te,
                interval,
                jit_caller,
                kind,
                seed,
            ));
        } else {
            let v: f64 = self.rng.random();
            let (fail, at) = if v < 0.3 {
                (
                    Some(486),
                    tp + (uniform(&mut self.rng, 1.0, 8.0) * 1e6) as i64,
                )
            } else if v < 0.5 {
                (
                    Some(480),
                    tp + (uniform(&mut self.rng, 5.0, 25.0) * 1e6) as i64,
                )
            } else if v < 0.6 {
                (
                    Some(404),
                    t + callee_delay + (uniform(&mut self.rng, 0.1, 0.6) * 1e6) as i64,
                )
            } else if v < 0.7 {
                (
                    Some(503),
                    t + callee_delay + (uniform(&mut self.rng, 0.05, 0.4) * 1e6) as i64,
                )
            } else {
                (None, tp + (uniform(&mut self.rng, 8.0, 40.0) * 1e6) as i64)
            };
            if at > tp {
                if early {
                    s.push(step(tp, Msg::Progress));
                    early_from = Some(tp + 20_000);
                } else {
                    s.push(step(tp, Msg::Ringing));
                }
            }
            match fail {
                Some(c) => {
                    code = c;
                    outcome = match c {
                        486 => "busy",
                        480 => "no-answer",
                        _ => "failed",
                    };
                    s.push(step(at, Msg::Fail(c)));
                    s.push(step(at + caller_delay, Msg::AckFail(c)));
                    end = at + caller_delay;
                }
                None => {
                    code = 487;
                    outcome = "cancelled";
                    s.push(step(at, Msg::Cancel));
                    s.push(Step {
                        t: at + callee_delay,
                        msg: Msg::OkCancel,
                        coalesce: true,
                    });
                    s.push(step(at + callee_delay + 500, Msg::Fail(487)));
                    s.push(step(
                        at + callee_delay + 500 + caller_delay,
                        Msg::AckFail(487),
                    ));
                    end = at + callee_delay + 500 + caller_delay;
                }
            }
            if let Some(ef) = early_from {
                let stop = s
                    .iter()
                    .find(|x| matches!(x.msg, Msg::Fail(_) | Msg::Cancel))
                    .map(|x| x.t)
                    .unwrap_or(ef);
                if stop > ef {
                    let kind = self.media_kind(codec, ptime);
                    let seed = self.rng.random();
                    streams.push(Stream::new(
                        !line_is_caller,
                        callee_media,
                        caller_media,
                        ef,
                        stop,
                        interval,
                        jit_callee,
                        kind,
                        seed,
                    ));
                }
            }
        }
        let _ = (outcome, code);
        // Keep the script in time order whatever the draws were.
        for i in 1..s.len() {
            let prev = s.get(i - 1).map(|x| x.t).unwrap_or(t);
            if let Some(x) = s.get_mut(i) {
                if x.t < prev {
                    x.t = prev;
                }
            }
        }
        let end = end.max(s.last().map(|x| x.t).unwrap_or(t));
        Plan {
            dialog: Box::new(d),
            line_is_caller,
            script: s,
            streams,
            end,
        }
    }

    /// One REGISTER transaction of `account` at `t` and when to refresh.
    pub fn register(&mut self, line: u32, account: u32, t: i64) -> (Exchange, i64) {
        let interval = i64::from(self.cfg.reg_interval) * 1_000_000;
        let challenge = self.rng.random_bool(self.cfg.reg_challenge);
        let registrar = self.cfg.peer;
        let domain = if self.cfg.domain.is_empty() {
            host_str(registrar.ip())
        } else {
            self.cfg.domain.clone()
        };
        let Some(acc) = self.cfg.accounts.get(account as usize).cloned() else {
            return (empty_exchange(line), i64::MAX);
        };
        let mut lp = self.line_party(acc.user.clone(), domain.clone(), acc.port);
        lp.rtp_port = 0;
        let pp = self.peer_party(registrar, acc.user.clone(), domain);
        let rtt = self.cfg.rtt_us.max(2_000);
        let nonce = num::hex_id(&mut self.rng, 8);
        let branch = format!("z9hG4bK{}", num::hex_id(&mut self.rng, 6));
        let tcp = self.tcp.is_some();
        let cseq = acc.cseq;
        let d = Dialog {
            call_id: acc.call_id.clone(),
            caller: lp,
            callee: pp,
            ruri_user: String::new(),
            ruri_host: String::new(),
            branch,
            branch2: String::new(),
            tcp,
            codec: PCMA,
            offer: Vec::new(),
            ptime: 20,
            big: false,
            extra: Vec::new(),
            expires: self.cfg.reg_interval.saturating_mul(2).min(3600),
            nonce,
            max_forwards: 70,
        };
        let step = |t: i64, msg: Msg| Step {
            t,
            msg,
            coalesce: false,
        };
        let mut script = Vec::new();
        let mut c = cseq;
        if challenge {
            script.push(step(
                t,
                Msg::Register {
                    cseq: c,
                    auth: false,
                },
            ));
            script.push(step(t + rtt, Msg::Unauthorized { cseq: c }));
            c += 1;
            script.push(step(
                t + rtt + 3_000,
                Msg::Register {
                    cseq: c,
                    auth: true,
                },
            ));
            script.push(step(t + 2 * rtt + 3_000, Msg::OkRegister { cseq: c }));
        } else {
            script.push(step(
                t,
                Msg::Register {
                    cseq: c,
                    auth: true,
                },
            ));
            script.push(step(t + rtt, Msg::OkRegister { cseq: c }));
        }
        if let Some(a) = self.cfg.accounts.get_mut(account as usize) {
            a.cseq = c + 1;
        }
        let ex = Exchange {
            line,
            dialog: Some(Box::new(d)),
            line_is_caller: true,
            script,
            pos: 0,
            streams: Vec::new(),
            counts_active: false,
            plain: false,
            peer_ttl: None,
        };
        let next = t + (interval as f64 * uniform(&mut self.rng, 0.97, 1.0)) as i64;
        (ex, next)
    }

    /// Streams of one app call, game session or video session.
    fn plan_flow(&mut self, t: i64) -> Vec<Stream> {
        let server = *pick(&mut self.rng, &self.cfg.peers);
        let local = SocketAddr::new(self.addr, self.rng.random_range(40000..65000));
        let dur = lognormal(&mut self.rng, self.cfg.session_median, 0.6).clamp(20.0, 4.0 * 3600.0);
        let end = t + (dur * 1e6) as i64;
        let s1 = self.rng.random();
        let s2 = self.rng.random();
        match self.kind {
            Kind::AppCalls => {
                let ptime = if self.rng.random_bool(0.7) { 20 } else { 60 };
                let kind = |rng: &mut ChaCha8Rng, srtp: bool, len: u16| {
                    if srtp {
                        StreamKind::Rtp {
                            ssrc: rng.random(),
                            seq: rng.random(),
                            ts: rng.random(),
                            ts_step: 48 * ptime,
                            pt: 111,
                            payload: len,
                            marker: true,
                        }
                    } else {
                        StreamKind::Opaque {
                            min: len - 20,
                            max: len + 40,
                        }
                    }
                };
                let k1 = kind(&mut self.rng, self.cfg.srtp_like, 90);
                let k2 = kind(&mut self.rng, self.cfg.srtp_like, 100);
                let iv = i64::from(ptime) * 1000;
                vec![
                    Stream::new(true, local, server, t, end, iv, 2_000, k1, s1),
                    Stream::new(false, server, local, t + 150_000, end, iv, 8_000, k2, s2),
                ]
            }
            Kind::Gaming => vec![
                Stream::new(
                    true,
                    local,
                    server,
                    t,
                    end,
                    33_333,
                    4_000,
                    StreamKind::Opaque { min: 60, max: 140 },
                    s1,
                ),
                Stream::new(
                    false,
                    server,
                    local,
                    t + 40_000,
                    end,
                    15_625,
                    3_000,
                    StreamKind::Opaque { min: 100, max: 520 },
                    s2,
                ),
            ],
            _ => vec![
                Stream::new(
                    true,
                    local,
                    server,
                    t,
                    end,
                    40_000,
                    10_000,
                    StreamKind::Opaque { min: 60, max: 90 },
                    s1,
                ),
                Stream::new(
                    false,
                    server,
                    local,
                    t + 30_000,
                    end,
                    6_000,
                    2_500,
                    StreamKind::Opaque {
                        min: 1100,
                        max: 1350,
                    },
                    s2,
                ),
            ],
        }
    }
}
