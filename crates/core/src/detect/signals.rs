//! The line signals: pure functions of one profile at a capture time, each returning a value,
//! a strength 0..1 and the figures behind it, counting only calls the line took part in.

use super::DetectionConfig;
use crate::lines::{Profile, ProfileParams, LEVELS};
use crate::model::Timestamp;
use std::fmt::Write as _;

/// Linear ramp: 0 at or below `lo`, 1 at or above `hi`.
pub(crate) fn ramp(x: f64, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return if x >= hi { 1.0 } else { 0.0 };
    }
    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// One signal's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    /// The signal's name (e.g. `foreign_inbound`), as in the weights and reasons.
    pub name: &'static str,
    /// The measured figure (its unit depends on the signal; see `detail`).
    pub value: f64,
    /// Strength 0..1 with which it points at a gateway.
    pub strength: f64,
    /// Human text with the figures.
    pub detail: String,
}

/// What signals read: the profile, the time and the configuration.
pub(crate) struct Ctx<'a> {
    pub(crate) now: Timestamp,
    pub(crate) cfg: &'a DetectionConfig,
    pub params: &'a ProfileParams,
}

pub(crate) fn minutes(secs: f64) -> String {
    if secs < 90.0 {
        format!("{secs:.0} s")
    } else {
        format!("{:.0} min", secs / 60.0)
    }
}

pub(crate) fn pct(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

/// What the line did with the inbound calls offered to it: the common clause of the reasons
/// ("212 inbound calls, 212 from 203.0.113.10 (foreign); the line took part in 141, 139 answered
/// with voice; 205 ended"). An answered call counts as taken once voice flows both ways, before
/// it ends: the calls taken may outnumber the calls ended.
pub(crate) fn line_share(p: &Profile, c: &Ctx) -> String {
    let w = p.window(c.now, c.params);
    let offered = p
        .peers
        .iter()
        .flatten()
        .filter(|x| x.calls_in > 0)
        .max_by_key(|x| x.calls_in)
        .map_or(String::new(), |x| {
            format!(
                ", {} from {}{}",
                x.calls_in,
                x.ip,
                if x.domestic { "" } else { " (foreign)" }
            )
        });
    // Where the tap shows none of the line's media (a SIP-only mirror), answers that lasted
    // are what counts: the reason may not claim voice it never saw.
    let answered = if w.media_calls == 0 && w.sip_flows == 0 {
        "answered (no media on the tap: answers that lasted)"
    } else {
        "answered with voice"
    };
    format!(
        "{} inbound calls{offered}; the line took part in {}, {} {answered}; {} ended",
        w.calls_in, w.in_taken, w.in_taken_answered, w.in_ended
    )
}

/// Share of the calls the line took part in (inbound calls it relayed, calls it placed) that
/// came in from foreign peers. Offers it rejected or ignored do not count.
pub(crate) fn foreign_inbound(p: &Profile, c: &Ctx) -> Signal {
    let w = p.window(c.now, c.params);
    let all = f64::from(w.calls_taken());
    let share = if all > 0.0 {
        f64::from(w.in_taken_foreign) / all
    } else {
        0.0
    };
    let min = f64::from(c.cfg.min_calls);
    let volume = ramp(f64::from(w.in_taken_foreign), min - 1.0, min + 2.0);
    let peer = p
        .top_peer()
        .filter(|x| !x.domestic && x.taken_in > 0)
        .map_or(String::from("foreign peers"), |x| {
            format!("{} (foreign)", x.ip)
        });
    let mut detail = format!(
        "{} of the {} calls the line took part in came in from {} in {} ({})",
        w.in_taken_foreign,
        w.calls_taken(),
        peer,
        minutes(p.window_span_secs(c.now, c.params)),
        line_share(p, c)
    );
    // A gateway's feed is for a different mobile number on nearly every call. Calls for the
    // line's own number (or a DID block) are a subscriber's, whose provider happens to be
    // abroad: an expatriate's VoIP number, robocalls and all.
    let (nums, blocks, n) = p.recent_called();
    // At most two blocks (a block holds one number or more).
    let own_numbers = n >= OWN_NUMBERS_MIN_CALLS && blocks <= 2;
    // Over more calls, the same few numbers again and again are no feed either: a toll-fraud
    // dialer cycling its premium numbers through a device that answers with sound (a door
    // intercom), an office's handful of DID blocks.
    let few_numbers = !own_numbers && n >= FEW_NUMBERS_MIN_CALLS && blocks * 100 <= n * 45;
    if own_numbers {
        let _ = write!(
            detail,
            "; but the last {n} were for {nums} number(s){}: the line's own, not a feed",
            if nums > 2 {
                format!(" in {blocks} DID block(s)")
            } else {
                String::new()
            }
        );
    } else if few_numbers {
        let _ = write!(
            detail,
            "; but the last {n} were for {nums} numbers in {blocks} blocks: the same few numbers again and again, not a feed"
        );
    }
    Signal {
        name: "foreign_inbound",
        value: share,
        strength: if own_numbers || few_numbers {
            0.0
        } else {
            ramp(share, 0.5, 0.9) * volume
        },
        detail,
    }
}

/// Inbound calls with readable numbers the line must have taken part in before calls for only
/// its own number(s) say it is a subscriber, not a gateway's feed.
const OWN_NUMBERS_MIN_CALLS: usize = 4;

/// Inbound calls with readable numbers the line must have taken part in before few numbers
/// (blocks for at most 45 % of the calls, where `distinct_called` says nothing) say it is no feed.
const FEW_NUMBERS_MIN_CALLS: usize = 8;

/// Distinct called numbers per inbound call over the last 16 inbound calls the line took part
/// in; calls spread over a DID block (numbers sharing all but the last three digits) or to
/// extensions do not count.
pub(crate) fn distinct_called(p: &Profile, c: &Ctx) -> Signal {
    let (nums, blocks, n) = p.recent_called();
    let ratio = if n > 0 { nums as f64 / n as f64 } else { 0.0 };
    let block_ratio = if n > 0 { blocks as f64 / n as f64 } else { 0.0 };
    let w = p.window(c.now, c.params);
    let est = p.distinct_called(c.now, c.params);
    let span = minutes(p.window_span_secs(c.now, c.params));
    let min = f64::from(c.cfg.min_calls);
    // The ring keeps the last 16 whenever they were: only calls ended inside the window count.
    let volume = ramp((n as f64).min(f64::from(w.in_taken)), min - 1.0, min + 1.0);
    let did_block = n >= 4 && blocks <= 2 && nums > blocks;
    let (strength, detail) = if did_block {
        (
            0.0,
            format!("{nums} distinct numbers in the last {n} inbound calls the line took part in, all within {blocks} DID block(s)"),
        )
    } else {
        (
            ramp(ratio.min(block_ratio), 0.45, 0.85) * volume,
            format!(
                "{} inbound calls the line took part in, in {}, to ~{:.0} distinct numbers (estimate; {nums} of the last {n} distinct)",
                w.in_taken, span, est
            ),
        )
    };
    Signal {
        name: "distinct_called",
        value: ratio,
        strength,
        detail,
    }
}

/// Concurrency pinned at a ceiling: the highest level held for >= 5 % of busy time, and the
/// share of busy time spent at it. Channel counts of gateway products (4/8/16/32) count more.
pub(crate) fn concurrency_ceiling(p: &Profile, c: &Ctx) -> Signal {
    let secs = p.level_seconds(c.now);
    let busy: f64 = secs.iter().skip(1).sum();
    let mut ceiling = 0usize;
    for lvl in (1..LEVELS).rev() {
        if secs.get(lvl).copied().unwrap_or(0.0) >= 0.05 * busy && busy > 0.0 {
            ceiling = lvl;
            break;
        }
    }
    let at: f64 = secs.iter().skip(ceiling.max(1)).sum();
    let share = if busy > 0.0 { at / busy } else { 0.0 };
    let channel_like = matches!(ceiling, 4 | 8 | 16 | 32);
    let mut strength = ramp(ceiling as f64, 2.0, 6.0) * ramp(share, 0.25, 0.55);
    if !channel_like {
        strength *= 0.8;
    }
    // Pinning needs time: a couple of minutes of busy time before full strength.
    strength *= ramp(busy, 30.0, 120.0);
    // Only traffic pushed into the line and taken by it counts (dialers pin their outbound
    // trunk too; a device answering without relaying voice took no call).
    let w = p.window(c.now, c.params);
    let pushed = f64::from(w.in_taken) + f64::from(w.opaque_flows);
    let all = f64::from(w.calls_taken()) + f64::from(w.opaque_flows);
    let inbound_share = if all > 0.0 { pushed / all } else { 0.0 };
    let min = f64::from(c.cfg.min_calls);
    strength *= ramp(inbound_share, 0.5, 0.8) * ramp(pushed, min - 1.0, min + 2.0);
    Signal {
        name: "concurrency_ceiling",
        value: ceiling as f64,
        strength,
        detail: format!(
            "{} concurrent calls the line answered or placed for {} of {} busy (max {}{})",
            ceiling,
            pct(share),
            minutes(busy),
            p.max_concurrent,
            if channel_like {
                ", a gateway channel count"
            } else {
                ""
            }
        ),
    }
}

/// Machine rhythm of inbound calls: short talk time and a low answer ratio. For lines without
/// readable SIP the same is read from opaque voice flows (their duration).
pub(crate) fn machine_rhythm(p: &Profile, c: &Ctx) -> Signal {
    let w = p.window(c.now, c.params);
    let min = f64::from(c.cfg.min_calls);
    let sip_n = f64::from(w.in_taken);
    // Durations decay slowly; only as many as ended inside the window count.
    let opaque_n = f64::from(p.opaque_durations.count()).min(f64::from(w.opaque_flows));
    if sip_n >= opaque_n || opaque_n == 0.0 {
        let asr = if sip_n > 0.0 {
            f64::from(w.in_taken_answered) / sip_n
        } else {
            1.0
        };
        let median = p.talk.quantile(0.5);
        let short = median.map_or(0.0, |m| 1.0 - ramp(m, 60.0, 180.0));
        let low_asr = 1.0 - ramp(asr, 0.55, 0.85);
        let strength = ramp(sip_n, min - 1.0, min + 4.0)
            * (0.6 * short + 0.4 * low_asr).min(1.0)
            * if median.is_some() { 1.0 } else { 0.5 };
        Signal {
            name: "machine_rhythm",
            value: median.unwrap_or(0.0),
            strength,
            detail: format!(
                "{} inbound calls the line took part in ended, {} answered (ASR {}), median talk {}",
                w.in_taken,
                w.in_taken_answered,
                pct(asr),
                median.map_or("n/a".into(), minutes)
            ),
        }
    } else {
        let median = p.opaque_durations.quantile(0.5).unwrap_or(0.0);
        // Flows end (and are told) a media timeout after their last packet, so counting ended
        // ones is what makes a sparse box late. Once several have run at once to one peer (three
        // confirmed, or four seen; or, over time, four confirmed in the last ten minutes to have
        // each run beside another: a box with few channels busy, see `opaque_media`), a few
        // short ones are rhythm enough; without that, it takes more (one or two app calls at a
        // time are no gateway).
        let overlapped = f64::from(p.recent(c.now, c.params, 2).opaque_overlapped);
        let several =
            p.opaque_verified_peak >= 3 || p.opaque_peak_same_peer >= 4 || overlapped >= min + 1.0;
        let (lo, hi) = if several {
            (min - 2.0, min)
        } else {
            (min - 1.0, min + 2.0)
        };
        let strength = ramp(opaque_n, lo, hi) * (1.0 - ramp(median, 90.0, 240.0));
        Signal {
            name: "machine_rhythm",
            value: median,
            strength,
            detail: format!(
                "{} voice flows without readable SIP ended, median duration {}",
                p.opaque_durations.count(),
                minutes(median)
            ),
        }
    }
}

/// Gap regularity: the pause between a call ending and the next inbound call (or opaque flow)
/// re-seizing the channel is short and regular on a gateway fed by a softswitch.
pub(crate) fn gap_regularity(p: &Profile, c: &Ctx) -> Signal {
    let g = &p.gaps;
    // Gap statistics decay slowly; only as many as sessions started inside the window count.
    let w = p.window(c.now, c.params);
    let n = f64::from(g.n).min(f64::from(w.in_taken) + f64::from(w.opaque_flows));
    let mean = f64::from(g.mean);
    let cv = if mean > 0.0 {
        f64::from(g.sd()) / mean
    } else {
        0.0
    };
    let min = f64::from(c.cfg.min_calls);
    let strength =
        ramp(n, min, min + 7.0) * (1.0 - ramp(cv, 0.5, 0.9)) * (1.0 - ramp(mean, 6.0, 15.0));
    Signal {
        name: "gap_regularity",
        value: cv,
        strength,
        detail: format!(
            "{:.0} channel re-seizures, gap {:.1} s ± {:.1} s (CV {:.2})",
            n,
            mean,
            g.sd(),
            cv
        ),
    }
}

/// Many accounts registered from the line to one registrar (one per SIM port).
pub(crate) fn registrations(p: &Profile, c: &Ctx) -> Signal {
    let n = p.max_accounts_one_registrar(c.now);
    let strength = ramp(n as f64, 2.0, 6.0);
    let mut detail = format!("{n} accounts registered");
    if let Some(r) = p.top_registrar {
        let _ = write!(detail, " to {r}");
    }
    if let Some(e) = p.min_expires {
        let _ = write!(detail, ", shortest Expires {e} s");
    }
    Signal {
        name: "registrations",
        value: n as f64,
        strength,
        detail,
    }
}

/// Gateway product fingerprints (User-Agent/Server, Allow, SDP o=/s=).
pub(crate) fn fingerprint(p: &Profile, _c: &Ctx) -> Signal {
    let hits = f64::from(p.fingerprint_hits);
    let checked = f64::from(p.fingerprint_checked).max(1.0);
    match &p.fingerprint {
        Some(f) if hits > 0.0 => Signal {
            name: "fingerprint",
            value: hits / checked,
            strength: ramp(hits / checked, 0.2, 0.6),
            detail: format!(
                "{} \"{}\" matches gateway pattern \"{}\" ({} of {} records)",
                f.field.label(),
                f.value,
                f.pattern,
                p.fingerprint_hits,
                p.fingerprint_checked
            ),
        },
        _ => Signal {
            name: "fingerprint",
            value: 0.0,
            strength: 0.0,
            detail: String::new(),
        },
    }
}

/// Several voice-shaped flows at once to one peer without readable SIP: encrypted or proprietary
/// signalling with media that still looks like calls. One or two at a time is an app call.
///
/// Concurrency is read two ways. The peak: three flows confirmed at once (or four seen as they
/// start). And over time, per ended flow: a box with few channels busy (a 4-channel gateway on a
/// low answer ratio) rarely holds three calls at once, but its flows keep running beside one
/// another, flow after flow. A household has two app calls at once now and then; four flows
/// confirmed within ten minutes to have each run beside another to the same peer, among five or
/// more started (or three among seven or more: a pace no household keeps), is a switch keeping
/// channels busy.
pub(crate) fn opaque_media(p: &Profile, c: &Ctx) -> Signal {
    let peak = f64::from(p.opaque_peak_same_peer);
    let w = p.window(c.now, c.params);
    // Flows started in the last two buckets (10 min by default): a gateway starts dozens, a
    // household on app calls one or two. Concurrency is read when flows start, so a flow that
    // ended less than the media timeout ago may still count: hence the rate gate.
    let last = p.recent(c.now, c.params, 2);
    let recent = f64::from(last.opaque_flows);
    let min = f64::from(c.cfg.min_calls);
    // Verified concurrency (read when flows end) counts from 3; the unverified count taken
    // when flows start, which a just-ended flow can inflate by one, only from 4.
    let verified = f64::from(p.opaque_verified_peak);
    let overlapped = f64::from(last.opaque_overlapped);
    // Four such flows; or three at a pace no household keeps (seven or more flows started).
    let held = ramp(overlapped, min - 1.0, min + 1.0)
        .max(ramp(overlapped, min - 1.0, min) * ramp(recent, min + 2.0, 2.0 * min + 1.0));
    let conc = ramp(verified, 1.5, 3.0).max(ramp(peak, 2.5, 4.0)).max(held);
    let strength = conc * ramp(recent, min - 1.0, min + 2.0);
    let peer = p
        .top_peer()
        .filter(|x| x.opaque_flows > 0)
        .map_or(String::from("one peer"), |x| {
            format!("{}{}", x.ip, if x.domestic { "" } else { " (foreign)" })
        });
    let last_span = minutes(2.0 * f64::from(c.cfg.window_secs) / 12.0);
    Signal {
        name: "opaque_media",
        value: peak,
        strength,
        detail: format!(
            "up to {} concurrent voice-shaped flows ({} confirmed) to {} without readable SIP; {} such flows in {} ({:.0} in the last {}, {:.0} confirmed in it to have run beside another flow to the same peer)",
            p.opaque_peak_same_peer,
            p.opaque_verified_peak,
            peer,
            w.opaque_flows,
            minutes(p.window_span_secs(c.now, c.params)),
            recent,
            last_span,
            overlapped
        ),
    }
}

/// Every line signal, in a stable order.
pub(crate) fn signals(p: &Profile, c: &Ctx) -> Vec<Signal> {
    vec![
        foreign_inbound(p, c),
        distinct_called(p, c),
        concurrency_ceiling(p, c),
        machine_rhythm(p, c),
        gap_regularity(p, c),
        registrations(p, c),
        fingerprint(p, c),
        opaque_media(p, c),
    ]
}
