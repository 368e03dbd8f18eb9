//! Robocall campaigns: short calls from rotating caller IDs to many lines.

use super::{secs, step, Reply, Source};
use crate::engine::{Exchange, Step};
use crate::numbers::{self as num, exponential, lognormal, uniform};
use crate::population::Line;
use crate::sipmsg::{Msg, G729};
use rand::Rng;
use std::net::SocketAddr;

impl Source {
    // ----- robocalls ------------------------------------------------------------------------

    /// A spam call into household `slot` through its provider: answered briefly, rejected, or
    /// left ringing until the provider cancels.
    pub(super) fn robocall(
        &mut self,
        slot: u32,
        t: i64,
        lines: &[Line],
    ) -> (Vec<Exchange>, Option<i64>) {
        let Some(&idx) = self.targets.get(slot as usize) else {
            return (Vec::new(), None);
        };
        let next = t
            + 1
            + secs(exponential(
                &mut self.rng,
                3600.0 / self.calls_per_hour.max(0.01),
            ));
        let Some(line) = lines.get(idx as usize) else {
            return (Vec::new(), None);
        };
        // A busy household's provider answers busy itself and nothing reaches the line; the
        // dialer retries busy numbers a little later.
        if line.active > 0 {
            return (
                Vec::new(),
                Some(t + secs(uniform(&mut self.rng, 30.0, 120.0))),
            );
        }
        let prov = line.provider();
        let prtt = prov.rtt_us;
        // Neighbour spoofing (a number like the household's own), any mobile, or one abroad.
        let u: f64 = self.rng.random();
        let cli = if u < 0.45 {
            let own = prov.user.trim_start_matches('+');
            let head = own.get(..own.len().saturating_sub(4)).unwrap_or(own);
            format!("+{head}{:04}", self.rng.random_range(0..10_000u32))
        } else if u < 0.8 {
            format!("+{}{}", num::HOME_CC, num::mobile_national(&mut self.rng))
        } else {
            num::intl_cli(&mut self.rng)
        };
        let pp = line.provider_party(&mut self.rng, cli);
        let lp = line.device_party(
            &mut self.rng,
            prov.user.clone(),
            prov.domain.clone(),
            prov.port,
        );
        let mut d = self.dialog(pp, lp, prov.user.clone(), prov.tcp);
        d.ruri_host = SocketAddr::new(line.addr, prov.port).to_string();
        let (codec, ptime) = line.codec();
        d.codec = codec;
        d.offer = vec![codec, G729];
        self.record(prov.peer.ip(), idx);
        let mut script = vec![step(t, Msg::Invite)];
        let at = t + self.turnaround();
        script.push(step(at, Msg::Trying));
        let tr = at + self.rng.random_range(50_000..300_000);
        script.push(step(tr, Msg::Ringing));
        let mut streams = Vec::new();
        let v: f64 = self.rng.random();
        let reply = if v < self.answer_ratio {
            let ta = tr + secs(uniform(&mut self.rng, 2.0, 12.0));
            script.push(step(ta, Msg::OkInvite));
            script.push(step(ta + prtt, Msg::AckOk));
            let te = ta + secs(lognormal(&mut self.rng, 6.0, 0.7).clamp(1.0, 40.0));
            let by_caller = self.rng.random_bool(0.2);
            script.push(step(te, Msg::Bye { by_caller }));
            let ok = if by_caller { self.turnaround() } else { prtt };
            script.push(step(te + ok, Msg::OkBye { by_caller }));
            let line_media = SocketAddr::new(line.addr, d.callee.rtp_port);
            let peer_media = SocketAddr::new(d.caller.sock.ip(), d.caller.rtp_port);
            streams.push(self.voice(true, line_media, peer_media, ta + 1, te, codec, ptime, 300));
            streams.push(self.voice(
                false,
                peer_media,
                line_media,
                ta + prtt,
                te,
                codec,
                ptime,
                1_000,
            ));
            Reply::AnswerMute
        } else if v < self.answer_ratio + (1.0 - self.answer_ratio) * 0.6 {
            let tf = tr + secs(uniform(&mut self.rng, 1.0, 8.0));
            let code = if self.rng.random_bool(0.5) { 486 } else { 603 };
            script.push(step(tf, Msg::Fail(code)));
            script.push(step(tf + prtt, Msg::AckFail(code)));
            Reply::Reject { trying: true, code }
        } else {
            let tc = tr + secs(uniform(&mut self.rng, 15.0, 30.0));
            script.push(step(tc, Msg::Cancel));
            let tok = tc + self.turnaround();
            script.push(Step {
                t: tok,
                msg: Msg::OkCancel,
                coalesce: true,
            });
            script.push(step(tok + 500, Msg::Fail(487)));
            script.push(step(tok + 500 + prtt, Msg::AckFail(487)));
            Reply::None
        };
        self.outcome(idx, reply);
        let mut ex = self.exchange(idx, d, script, streams);
        ex.counts_active = true;
        ex.peer_ttl = None;
        (vec![ex], Some(next))
    }
}
