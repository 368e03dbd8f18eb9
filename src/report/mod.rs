//! Field-officer report: one self-contained HTML file (inline CSS and SVG, a few lines of inline
//! script for sorting, nothing fetched) built from an `Analysis`, written to be read, printed and
//! questioned: verdicts in plain words with the figures behind them, charts (`charts`), every call
//! row, the method and its limits, and provenance (`provenance`).
//!
//! Contract: every string from the capture is HTML-escaped; every figure comes from the analysis
//! (`figures` definitions), none is recomputed differently here; the size is bounded (call rows
//! per line and charted lines are capped, with the cap stated in the page); printing keeps every
//! table and chart (no collapsed sections).

pub(crate) mod charts;
pub(crate) mod provenance;
pub(crate) mod words;

use crate::analysis::{Analysis, LineEntry};
use crate::figures::Span;
pub use provenance::{Clock, Provenance};
use simboxd_core::model::{CallRecord, Direction, Outcome, Timestamp, VerdictLevel};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

/// Call rows shown per line in the call table.
pub const MAX_CALL_ROWS_PER_LINE: usize = 1000;
/// Lines given their own charts.
pub const MAX_CHARTED_LINES: usize = 12;

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '\n' | '\t' => o.push(c),
            // Controls and bidi overrides from the wire shown as escapes, never raw.
            c if crate::text::needs_escape(c) => crate::text::push_escaped(&mut o, c),
            c => o.push(c),
        }
    }
    o
}

fn ts(clock: &Clock, t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".into(), |t| escape(&clock.full(t)))
}

/// "2026-01-05 09:00:05.744" (UTC), the call table's time format.
pub fn utc_short(t: Timestamp) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(t.0).map_or_else(
        || t.to_string(),
        |u| u.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
    )
}

fn verdict_name(v: Option<VerdictLevel>) -> &'static str {
    v.map_or("unscored", VerdictLevel::name)
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}h3{font-size:15px;margin:16px 0 4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f3f3f3;cursor:pointer}.gateway{background:#ffebee}.suspect{background:#fff8e1}.caveat{background:#e3f2fd;padding:8px;margin:8px 0}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600}
.b-gateway{background:#c62828}.b-suspect{background:#ef6c00}.b-normal{background:#2e7d32}
.mono,code{font-family:ui-monospace,monospace;font-size:12px}.note{color:#555;font-size:12px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#fafafa;border:1px solid #eee;padding:8px}
.t{white-space:nowrap}table.calls{font-size:12px}
svg{max-width:100%;height:auto;border:1px solid #eee;margin:4px 0}figure{margin:8px 0}figcaption{font-size:12px;color:#555}
@media print{@page{size:A4 landscape;margin:10mm}body{margin:0;max-width:none;font-size:10px}
th{cursor:auto}thead{display:table-header-group}tr,figure,.verdict,.caveat{break-inside:avoid}h2,h3{break-after:avoid}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}td,th{padding:1px 3px}}";

/// Sorts a table by the clicked column (numbers numerically). No external code.
const JS: &str = "document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){var t=th.closest('table'),b=t.tBodies[0];if(!b)return;var r=Array.prototype.slice.call(b.rows),d=th.dataset.d==='1'?-1:1;th.dataset.d=d===1?'1':'0';r.sort(function(x,y){var a=x.cells[i].textContent,c=y.cells[i].textContent,na=parseFloat(a),nc=parseFloat(c);if(!isNaN(na)&&!isNaN(nc))return (na-nc)*d;return a<c?-d:a>c?d:0;});r.forEach(function(x){b.appendChild(x);});});});";

/// Renders the whole report.
pub fn render(a: &Analysis, prov: &Provenance) -> String {
    let mut h = String::with_capacity(256 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>simboxd report: {}</title><style>{CSS}</style></head><body>",
        escape(&a.capture.file)
    );
    header(&mut h, a, prov);
    verdicts(&mut h, a, prov);
    lines_table(&mut h, a);
    threats_section(&mut h, a, &prov.clock);
    charts_section(&mut h, a, &prov.clock);
    peers_table(&mut h, a);
    calls_table(&mut h, a, &prov.clock);
    registrations(&mut h, a);
    user_agents(&mut h, a);
    method(&mut h, prov);
    provenance(&mut h, a, prov);
    let _ = write!(h, "<script>{JS}</script></body></html>");
    h
}

fn header(h: &mut String, a: &Analysis, prov: &Provenance) {
    let _ = write!(
        h,
        "<h1>simboxd report</h1><table><tbody><tr><th>case</th><td>{}</td></tr><tr><th>examiner</th><td>{}</td></tr><tr><th>capture</th><td class=\"mono\">{}</td></tr><tr><th>capture SHA-256</th><td class=\"mono\">{}</td></tr><tr><th>first / last packet</th><td>{} / {}</td></tr><tr><th>report generated</th><td>{}</td></tr></tbody></table>",
        escape(prov.case.as_deref().unwrap_or("(not given)")),
        escape(prov.examiner.as_deref().unwrap_or("(not given)")),
        escape(&a.capture.file),
        escape(&a.capture.sha256),
        ts(&prov.clock, a.capture.start),
        ts(&prov.clock, a.capture.end),
        escape(&prov.generated),
    );
    if a.capture.truncated {
        let _ = write!(
            h,
            "<p class=\"caveat\"><b>The capture was cut off:</b> {}. Everything before the cut was analysed; see Inputs under Provenance.</p>",
            escape(
                &a.capture
                    .inputs
                    .iter()
                    .filter_map(|i| i.truncation_warning())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        );
    }
}

fn line_name(l: &LineEntry) -> String {
    l.line.map_or_else(|| "-".into(), |ip| ip.to_string())
}

fn is_flagged(l: &LineEntry) -> bool {
    l.verdict.is_some_and(|v| v != VerdictLevel::Normal)
}

/// The headline figures of a line in one sentence (the same figures as the table and JSON).
pub fn line_figures_text(l: &LineEntry) -> String {
    let mut s = format!(
        "{} calls ({} inbound, {} outbound), {} answered; at most {} in progress at once",
        l.calls, l.inbound_calls, l.outbound_calls, l.answered_calls, l.max_concurrent_calls
    );
    if l.open_calls_at_end > 0 {
        let _ = write!(
            s,
            " ({} still open when the capture ended)",
            l.open_calls_at_end
        );
    }
    let _ = write!(
        s,
        "; {} distinct called numbers on inbound calls",
        l.distinct_called_numbers
    );
    if let Some(m) = l.median_talk_secs_inbound {
        let _ = write!(s, "; median talk time of answered inbound calls {m:.1} s");
    }
    let _ = write!(
        s,
        "; {} registrations; {} media flows ({} voice-like without SIP)",
        l.registrations, l.media_flows, l.voice_flows_without_sip
    );
    s
}

/// A line that carried media but no readable call: its verdict cannot rest on signalling.
pub fn unreadable_caveat(l: &LineEntry) -> Option<String> {
    if is_flagged(l) || l.calls > 0 || l.media_flows == 0 {
        return None;
    }
    Some(format!(
        "carried {} media flow(s) ({} voice-like) but no readable SIP call: its signalling, if any, could not be read (encrypted, proprietary or on an unexpected port), so no number, direction or outcome is known and it was judged on its media alone. \"normal\" here means \"not shown to be a gateway\", not \"shown to be normal\"; examine this line by other means.",
        l.media_flows, l.voice_flows_without_sip
    ))
}

fn verdicts(h: &mut String, a: &Analysis, prov: &Provenance) {
    h.push_str("<h2>Verdict</h2>");
    let flagged: Vec<&LineEntry> = a.lines.iter().filter(|l| is_flagged(l)).collect();
    if flagged.is_empty() {
        let _ = write!(
            h,
            "<p>No line in this capture shows the behaviour of a SIM-box gateway. {} line(s) seen.</p>",
            a.lines.len()
        );
    }
    for l in &flagged {
        let v = verdict_name(l.verdict);
        let (what, threshold) = if v == "gateway" {
            ("behaves like a SIM-box gateway", prov.gateway_score)
        } else {
            (
                "shows some behaviour of a SIM-box gateway (suspect)",
                prov.suspect_score,
            )
        };
        let _ = write!(
            h,
            "<div class=\"verdict {v}\" style=\"padding:8px;margin:8px 0\"><p><span class=\"badge b-{v}\">{}</span> <b>Line {}</b> {what}: score {:.2} (the verdict needs {threshold:.2}){}{}.</p><p>In this capture: {}.</p><ul>",
            escape(v),
            escape(&line_name(l)),
            l.score.unwrap_or(0.0),
            l.site.as_deref().map(|s| format!(", site {}", escape(s))).unwrap_or_default(),
            l.flagged_at.map(|t| format!(", flagged at {}", escape(&prov.clock.full(t)))).unwrap_or_default(),
            escape(&line_figures_text(l)),
        );
        for r in &l.reasons {
            let _ = write!(
                h,
                "<li><b>{}</b> <span class=\"note\">(<code>{}</code>, strength {:.2})</span>: {}</li>",
                escape(words::signal_name(&r.signal)),
                escape(&r.signal),
                r.strength,
                escape(&r.detail)
            );
        }
        h.push_str("</ul></div>");
    }
    for l in &a.lines {
        if let Some(c) = unreadable_caveat(l) {
            let _ = write!(
                h,
                "<div class=\"caveat\"><b>Line {} was not assessed from signalling</b>: it {}</div>",
                escape(&line_name(l)),
                escape(&c)
            );
        }
    }
}

/// Attacks seen in the capture: findings about the attacking peers, with the lines they aimed
/// at and what each line answered. Only `compromised_pbx` is a finding about a line.
fn threats_section(h: &mut String, a: &Analysis, clock: &Clock) {
    let _ = write!(h, "<h2>Threats ({})</h2>", a.threats.len());
    h.push_str("<p class=\"note\">Requests sent <i>to</i> lines from outside: sweeps (scan), user-name guessing (enumeration), calls to international or premium numbers (toll_fraud_attempt), request floods and gateway-shaped call streams the lines refused (framing). These are findings about the sender, not about the lines it targeted: a line that was scanned, flooded or framed is a victim. A line that relayed toll-fraud calls (voice both ways, or calls placed out to the numbers it was sent) is a compromised PBX: fraud of another kind, not a SIM box.</p>");
    if a.threats.is_empty() {
        h.push_str("<p>No attack on a line was seen in this capture.</p>");
        return;
    }
    h.push_str("<table class=\"sortable\"><thead><tr><th>peer</th><th>kind</th><th>severity</th><th>requests</th><th>lines</th><th>first seen</th><th>last seen</th><th>user agents</th><th>what the lines answered</th><th>evidence</th><th>targets</th></tr></thead><tbody>");
    for t in &a.threats {
        let answers: Vec<String> = t
            .answers
            .iter()
            .map(|(k, n)| format!("{k} x {n}"))
            .collect();
        let evidence: Vec<String> = t.reasons.iter().map(|r| r.detail.clone()).collect();
        let mut targets: Vec<String> = t
            .lines
            .iter()
            .take(10)
            .map(|l| {
                let ans: Vec<String> = l
                    .answers
                    .iter()
                    .map(|(k, n)| format!("{k} x {n}"))
                    .collect();
                format!("{} ({} requests: {})", l.line, l.requests, ans.join(", "))
            })
            .collect();
        if t.lines_total > targets.len() as u64 {
            targets.push(format!("... {} lines in all", t.lines_total));
        }
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
            escape(&t.peer.to_string()),
            escape(t.kind.label()),
            escape(t.severity.label()),
            t.requests,
            t.lines_total,
            escape(&clock.full(t.first_seen)),
            escape(&clock.full(t.last_seen)),
            escape(&t.user_agents.join(" / ")),
            escape(&answers.join(", ")),
            escape(&evidence.join(" ")),
            escape(&targets.join("; ")),
        );
    }
    h.push_str("</tbody></table>");
}

fn lines_table(h: &mut String, a: &Analysis) {
    h.push_str("<h2>Lines</h2><p class=\"note\">Counts over the calls recorded in this capture. \"max concurrent\": the most calls in progress at one instant (from first INVITE to end; a call open when the capture ended counts until its last packet). \"median talk\": exact median talk time of answered inbound calls.</p><table class=\"sortable\"><thead><tr><th>line</th><th>verdict</th><th>score</th><th>site</th><th>calls</th><th>inbound</th><th>outbound</th><th>answered</th><th>max concurrent</th><th>distinct called</th><th>median talk s</th><th>registrations</th><th>media flows</th><th>voice flows without SIP</th></tr></thead><tbody>");
    for l in &a.lines {
        let v = verdict_name(l.verdict);
        let _ = write!(
            h,
            "<tr class=\"{}\"><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(v),
            escape(&line_name(l)),
            escape(v),
            l.score.map_or_else(|| "-".into(), |s| format!("{s:.2}")),
            escape(l.site.as_deref().unwrap_or("-")),
            l.calls,
            l.inbound_calls,
            l.outbound_calls,
            l.answered_calls,
            l.max_concurrent_calls,
            l.distinct_called_numbers,
            l.median_talk_secs_inbound.map_or_else(|| "-".into(), |m| format!("{m:.1}")),
            l.registrations,
            l.media_flows,
            l.voice_flows_without_sip
        );
    }
    h.push_str("</tbody></table>");
}

/// Lines to chart: flagged ones first, then the busiest.
fn charted_lines(a: &Analysis) -> Vec<&LineEntry> {
    let mut ls: Vec<&LineEntry> = a
        .lines
        .iter()
        .filter(|l| l.line.is_some() && l.calls > 0)
        .collect();
    ls.sort_by(|x, y| {
        is_flagged(y)
            .cmp(&is_flagged(x))
            .then(y.calls.cmp(&x.calls))
    });
    ls.truncate(MAX_CHARTED_LINES);
    ls
}

fn charts_section(h: &mut String, a: &Analysis, clock: &Clock) {
    h.push_str("<h2>Charts</h2>");
    let (Some(t0), Some(t1)) = (a.capture.start, a.capture.end) else {
        h.push_str("<p>No packets.</p>");
        return;
    };
    let f = charts::Frame::new(t0, t1);
    let _ = write!(
        h,
        "<p class=\"note\">Time runs from the first to the last packet of the capture in {} buckets; clock times are {}.</p>",
        escape(&f.width_label()),
        escape(&clock.axis_zone(t0))
    );
    let charted = charted_lines(a);
    for l in &charted {
        let Some(ip) = l.line else { continue };
        let calls: Vec<&CallRecord> = a.calls.iter().filter(|c| c.line == Some(ip)).collect();
        let spans: Vec<Span> = calls
            .iter()
            .map(|c| Span {
                start: c.start,
                end: c.end,
            })
            .collect();
        let series = charts::concurrency_buckets(&spans, &f);
        let _ = write!(
            h,
            "<h3>Line <span class=\"mono\">{}</span> ({})</h3><figure>{}<figcaption>Calls in progress on line {} over time ({} calls). Blue: the most calls in progress at any instant of each {} bucket, carried forward between calls; red: the ceiling, {} at once.</figcaption></figure>",
            escape(&ip.to_string()),
            verdict_name(l.verdict),
            charts::concurrency_svg(&series, l.max_concurrent_calls, &f, clock),
            escape(&ip.to_string()),
            calls.len(),
            escape(&f.width_label()),
            l.max_concurrent_calls
        );
        let shown = &calls[..calls.len().min(charts::MAX_TIMELINE_BARS)];
        let bars = charts::timeline_bars(shown, &f);
        let _ = write!(
            h,
            "<figure>{}<figcaption>Call timeline of line {}: each call a bar from its first INVITE to its end, on the first channel row free when it started{}.</figcaption></figure>{}",
            charts::timeline_svg(&bars, &f, clock),
            escape(&ip.to_string()),
            if calls.len() > shown.len() {
                format!(" (first {} of {} calls drawn)", shown.len(), calls.len())
            } else {
                String::new()
            },
            charts::outcome_legend()
        );
    }
    if a.lines.iter().filter(|l| l.calls > 0).count() > charted.len() {
        let _ = write!(
            h,
            "<p class=\"note\">Charts are drawn for {} lines (flagged first, then the busiest).</p>",
            charted.len()
        );
    }
    h.push_str("<h3>All lines</h3>");
    let starts = charts::starts_per_bucket(&a.calls, &f);
    let _ = write!(
        h,
        "<figure>{}<figcaption>Calls started per {} over the capture, stacked by outcome.</figcaption></figure>{}",
        charts::starts_svg(&starts, &f, clock),
        escape(&f.width_label()),
        charts::outcome_legend()
    );
    talk_histogram(h, a);
    hour_chart(h, a, clock);
}

fn talk_histogram(h: &mut String, a: &Analysis) {
    const EDGES: [f64; 10] = [
        10.0,
        20.0,
        30.0,
        60.0,
        90.0,
        120.0,
        180.0,
        300.0,
        600.0,
        f64::INFINITY,
    ];
    let talk: Vec<f64> = a.calls.iter().filter_map(|c| c.talk_secs()).collect();
    let mut counts = vec![0u64; EDGES.len()];
    for t in &talk {
        let i = EDGES.iter().position(|e| t < e).unwrap_or(EDGES.len() - 1);
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    }
    let labels: Vec<String> = [
        "0-10 s",
        "10-20 s",
        "20-30 s",
        "30-60 s",
        "1-1.5 min",
        "1.5-2 min",
        "2-3 min",
        "3-5 min",
        "5-10 min",
        ">= 10 min",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let median = crate::figures::median(&talk).map_or_else(
        || "none answered".into(),
        |m| format!("exact median {m:.1} s"),
    );
    let _ = write!(
        h,
        "<figure>{}<figcaption>Talk time of the {} answered calls ({median}).</figcaption></figure>",
        charts::category_svg(&labels, &counts, "talk time", "answered calls"),
        talk.len()
    );
}

fn hour_chart(h: &mut String, a: &Analysis, clock: &Clock) {
    let mut counts = vec![0u64; 24];
    for c in &a.calls {
        if let Some(n) = counts.get_mut(clock.hour(c.start)) {
            *n += 1;
        }
    }
    let labels: Vec<String> = (0..24).map(|i| format!("{i:02}")).collect();
    let zone = a
        .capture
        .start
        .map_or_else(|| "UTC".to_string(), |t| clock.axis_zone(t));
    let _ = write!(
        h,
        "<figure>{}<figcaption>Calls started by hour of day ({}).</figcaption></figure>",
        charts::category_svg(
            &labels,
            &counts,
            &format!("hour of day ({zone})"),
            "calls started"
        ),
        escape(&zone)
    );
}

fn method(h: &mut String, prov: &Provenance) {
    let _ = write!(
        h,
        "<h2>Method and limitations</h2>\
<p>simboxd reads the packets of the capture, decodes the SIP signalling and the media (RTP) of the subscriber lines, follows every call (one INVITE dialog) and registration, and keeps a profile of each <i>line</i> (an address inside the configured subscriber networks). From each profile it measures the signals below; each signal has a strength between 0 and 1, and the <b>score</b> is their weighted combination (0 to 1). A line is <i>suspect</i> from a score of {:.2} and a <i>gateway</i> from {:.2} with at least {} signals of strength 0.5 or more. The score is not a probability and is no proof: it says how closely the line's traffic matches the known behaviour of SIM-box gateways.</p>\
<table><thead><tr><th>signal</th><th>code</th><th>what it measures</th><th>what it cannot tell</th></tr></thead><tbody>",
        prov.suspect_score, prov.gateway_score, prov.gateway_min_signals
    );
    for (code, name, what, cannot) in words::SIGNALS {
        let _ = write!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(name),
            escape(code),
            escape(what),
            escape(cannot)
        );
    }
    let _ = write!(
        h,
        "</tbody></table><p><b>Figures.</b> Counts (calls, answered calls, distinct called numbers, simultaneous calls) are exact counts over the calls recorded in this capture; a call occupies a channel from its first INVITE to its end, and a call still open when the capture ended is counted until the last packet. Medians are exact. The reasons quote the detection's own figures, measured over its sliding window; a figure marked as an estimate carries its error.</p>\
<p><b>Limitations.</b> simboxd sees only the traffic in this capture: calls before its first packet or after its last are unknown, and packets the capture lost are missing from every figure. Encrypted or proprietary signalling cannot be read: such calls have no numbers or outcomes, and the line is judged on its media alone. Product names (fingerprints) are easily changed. Anyone can send gateway-shaped traffic to an innocent line; the verdict weighs what the line itself does (answers, media sent back, registrations), but it should be corroborated (for example by test calls or the mobile operator's records) before any action. Times come from the capture's packet timestamps and are as accurate as the capturing host's clock. Tables are bounded; anything evicted or dropped is counted under Provenance.{}</p>",
        if prov.pseudonymized {
            " Phone numbers are shown as keyed pseudonyms (<code>p:</code> + 16 hex digits): the same number always has the same pseudonym under the same key."
        } else {
            ""
        }
    );
}

fn peers_table(h: &mut String, a: &Analysis) {
    #[derive(Default)]
    struct P {
        inbound: u64,
        outbound: u64,
        answered: u64,
        lines: std::collections::BTreeSet<IpAddr>,
    }
    let mut peers: BTreeMap<IpAddr, P> = BTreeMap::new();
    for c in &a.calls {
        let Some(p) = c.peer else { continue };
        let e = peers.entry(p.ip()).or_default();
        match c.direction {
            Direction::Inbound => e.inbound += 1,
            _ => e.outbound += 1,
        }
        if c.outcome == Outcome::Answered {
            e.answered += 1;
        }
        if let Some(l) = c.line {
            e.lines.insert(l);
        }
    }
    h.push_str("<h2>Peers</h2><p class=\"note\">Calls in each direction relative to the line (inbound: the peer called into the line). \"domestic\" uses the configured domestic prefixes.</p><table class=\"sortable\"><thead><tr><th>peer</th><th>domestic</th><th>inbound calls</th><th>outbound calls</th><th>answered</th><th>lines</th></tr></thead><tbody>");
    for (ip, p) in &peers {
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&ip.to_string()),
            if a.network.is_domestic(*ip) { "yes" } else { "no" },
            p.inbound,
            p.outbound,
            p.answered,
            p.lines.len()
        );
    }
    h.push_str("</tbody></table>");
}

fn calls_table(h: &mut String, a: &Analysis, clock: &Clock) {
    let mut by_line: BTreeMap<String, Vec<&CallRecord>> = BTreeMap::new();
    for c in &a.calls {
        let k = c.line.map_or_else(|| "(no line)".into(), |l| l.to_string());
        by_line.entry(k).or_default().push(c);
    }
    let local = clock.tz.is_some();
    let _ = write!(h, "<h2>Calls ({})</h2>", a.calls.len());
    for (line, calls) in &by_line {
        let _ = write!(
            h,
            "<h3>Line <span class=\"mono\">{}</span>: {} calls{}</h3><table class=\"sortable calls\"><thead><tr><th>start (UTC)</th>{}<th>direction</th><th>peer</th><th>from</th><th>to</th><th>outcome</th><th>status</th><th>talk s</th><th>end</th><th>codec</th><th>user agent</th><th>RTP packets</th></tr></thead><tbody>",
            escape(line),
            calls.len(),
            if calls.len() > MAX_CALL_ROWS_PER_LINE {
                format!(" (first {MAX_CALL_ROWS_PER_LINE} shown; all are in the JSON output)")
            } else {
                String::new()
            },
            if local { "<th>start (local)</th>" } else { "" }
        );
        for c in calls.iter().take(MAX_CALL_ROWS_PER_LINE) {
            let _ = write!(
                h,
                "<tr><td class=\"t\">{}</td>{}<td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                utc_short(c.start),
                if local { format!("<td class=\"t\">{}</td>", escape(&clock.axis(c.start, true))) } else { String::new() },
                c.direction.name(),
                escape(&c.peer.map_or_else(|| "-".into(), |p| p.to_string())),
                escape(c.from.as_deref().unwrap_or("-")),
                escape(c.to.as_deref().unwrap_or("-")),
                c.outcome.name(),
                c.status_code.map_or_else(|| "-".into(), |s| s.to_string()),
                c.talk_secs().map_or_else(|| "-".into(), |t| format!("{t:.1}")),
                c.end.map_or_else(|| "open at capture end".into(), |e| format!("+{:.1} s", e.secs_since(c.start))),
                escape(c.codec.as_deref().unwrap_or("-")),
                escape(c.user_agent.as_deref().or(c.server.as_deref()).unwrap_or("-")),
                c.rtp.iter().map(|s| s.packets).sum::<u64>()
            );
        }
        h.push_str("</tbody></table>");
    }
}

fn registrations(h: &mut String, a: &Analysis) {
    let _ = write!(
        h,
        "<h2>Registrations ({})</h2><table class=\"sortable\"><thead><tr><th>time</th><th>account</th><th>source</th><th>registrar</th><th>outcome</th><th>status</th><th>expires</th><th>user agent</th></tr></thead><tbody>",
        a.registrations.len()
    );
    for r in a.registrations.iter().take(2000) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.time,
            escape(&r.account),
            escape(&r.source.to_string()),
            escape(&r.registrar.to_string()),
            escape(&format!("{:?}", r.outcome).to_lowercase()),
            r.status_code.map_or_else(|| "-".into(), |s| s.to_string()),
            r.expires.map_or_else(|| "-".into(), |s| s.to_string()),
            escape(r.user_agent.as_deref().unwrap_or("-"))
        );
    }
    h.push_str("</tbody></table>");
}

fn user_agents(h: &mut String, a: &Analysis) {
    let mut uas: BTreeMap<&str, (u64, std::collections::BTreeSet<IpAddr>)> = BTreeMap::new();
    for c in &a.calls {
        for ua in [c.user_agent.as_deref(), c.server.as_deref()]
            .into_iter()
            .flatten()
        {
            let e = uas.entry(ua).or_default();
            e.0 += 1;
            if let Some(l) = c.line {
                e.1.insert(l);
            }
        }
    }
    for r in &a.registrations {
        if let Some(ua) = r.user_agent.as_deref() {
            let e = uas.entry(ua).or_default();
            e.0 += 1;
            if let Some(l) = r.line {
                e.1.insert(l);
            }
        }
    }
    h.push_str("<h2>User agents</h2><table class=\"sortable\"><thead><tr><th>User-Agent / Server</th><th>messages (calls + registrations)</th><th>lines</th></tr></thead><tbody>");
    for (ua, (n, lines)) in &uas {
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td>{n}</td><td>{}</td></tr>",
            escape(ua),
            lines.len()
        );
    }
    h.push_str("</tbody></table>");
}

fn provenance(h: &mut String, a: &Analysis, prov: &Provenance) {
    let c = &a.capture;
    let s = &a.stats;
    let list = |m: &simboxd_core::model::Counters| -> String {
        if m.0.is_empty() {
            "none".to_string()
        } else {
            m.0.iter()
                .map(|(k, v)| format!("{}={v}", escape(k)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let file_name = std::path::Path::new(&c.file)
        .file_name()
        .map_or_else(|| c.file.clone(), |n| n.to_string_lossy().into_owned());
    let _ = write!(
        h,
        "<h2>Provenance</h2><table><tbody>\
<tr><th>case</th><td>{}</td></tr><tr><th>examiner</th><td>{}</td></tr>\
<tr><th>capture file</th><td class=\"mono\">{} <span class=\"note\">({})</span></td></tr><tr><th>size</th><td>{} bytes</td></tr><tr><th>SHA-256</th><td class=\"mono\">{}</td></tr>\
<tr><th>first packet</th><td>{}</td></tr><tr><th>last packet</th><td>{}</td></tr><tr><th>packets</th><td>{} ({} bytes on the wire)</td></tr>\
<tr><th>SIP messages / calls / registrations</th><td>{} / {} / {}</td></tr><tr><th>decode errors</th><td>{}</td></tr><tr><th>evictions (bounded tables)</th><td>{}</td></tr><tr><th>records dropped</th><td>{}</td></tr>\
<tr><th>tool</th><td>{}</td></tr><tr><th>command line</th><td class=\"mono\">{}</td></tr><tr><th>host</th><td class=\"mono\">{}</td></tr><tr><th>generated</th><td>{}</td></tr><tr><th>report hash</th><td>SHA-256 in the file beside this one (<code>&lt;report&gt;.sha256</code>, check with <code>sha256sum -c</code>)</td></tr>\
</tbody></table><p>Configuration used by the analysis (the [network], [limits] and [detection] sections; keys, tokens and alert targets are not part of the analysis and are left out):</p><pre class=\"mono\">{}</pre>",
        escape(prov.case.as_deref().unwrap_or("(not given)")),
        escape(prov.examiner.as_deref().unwrap_or("(not given)")),
        escape(&file_name),
        escape(&c.file),
        c.size,
        escape(&c.sha256),
        ts(&prov.clock, c.start),
        ts(&prov.clock, c.end),
        c.packets,
        c.bytes,
        s.sip_messages,
        s.calls,
        s.registrations,
        list(&s.decode_errors),
        list(&s.evictions),
        s.records_dropped,
        escape(&provenance::build()),
        escape(&provenance::command_line_text(&prov.command_line)),
        escape(&prov.host),
        escape(&prov.generated),
        escape(&prov.config_toml)
    );
    inputs_table(h, c, &prov.clock);
}

/// Every input of the analysis with its size and SHA-256, and where one was cut off (shown
/// when there are several inputs or one was cut off).
fn inputs_table(h: &mut String, c: &crate::analysis::CaptureInfo, clock: &Clock) {
    let plain = |i: &crate::input::InputInfo| {
        i.file != crate::input::STDIN && i.compression.is_none() && i.truncated.is_none()
    };
    if c.inputs.len() <= 1 && c.inputs.iter().all(plain) {
        return;
    }
    let _ = write!(
        h,
        "<h3>Inputs ({})</h3><p>The capture was read from these inputs, merged in packet-time order{}.</p><table><thead><tr><th>input</th><th>size (bytes)</th><th>SHA-256</th><th>format</th><th>packets</th><th>first / last packet</th><th>cut off</th></tr></thead><tbody>",
        c.inputs.len(),
        if c.inputs.len() > 1 {
            "; the capture SHA-256 above is that of their sha256sum listing (HASH  NAME, in this order)"
        } else {
            ""
        }
    );
    for i in &c.inputs {
        let format = match i.compression {
            Some(z) => format!("{} ({z})", i.format),
            None => i.format.to_string(),
        };
        let cut = i.truncated.as_ref().map_or_else(
            || "no".to_string(),
            |t| {
                format!(
                    "yes: {} (after {} packets, at byte {})",
                    t.reason, t.after_packets, t.at_byte
                )
            },
        );
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td></tr>",
            escape(if i.file == crate::input::STDIN { "(standard input)" } else { &i.file }),
            i.size,
            escape(&i.sha256),
            escape(&format),
            i.packets,
            ts(clock, i.first),
            ts(clock, i.last),
            escape(&cut)
        );
    }
    h.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x')&\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;"
        );
        assert_eq!(escape("a\u{0}b\u{202e}"), "a\\x00b\\u{202e}");
        assert_eq!(
            escape("a\nb"),
            "a\nb",
            "newlines kept for pre-formatted text"
        );
    }
}
