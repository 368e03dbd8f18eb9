//! Field-officer report: one self-contained HTML file (inline CSS and SVG, a few lines of inline
//! script for sorting, nothing fetched) built from an `Analysis`.
//!
//! Contract: every string from the capture is HTML-escaped; the size is bounded (call rows per
//! line and chart points are capped, with the cap stated in the page).

use crate::analyze::Analysis;
use simboxd_core::model::{CallRecord, Direction, Outcome, Timestamp, VerdictLevel};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

/// Call rows shown per line in the call table.
pub const MAX_CALL_ROWS_PER_LINE: usize = 300;
/// Lines given their own concurrency chart.
pub const MAX_CHARTED_LINES: usize = 12;
/// Points per concurrency chart (the series is down-sampled to keep the file small).
const MAX_POINTS: usize = 600;

/// Facts about the run that the report states for provenance.
pub struct Provenance {
    /// The configuration used, as TOML.
    pub config_toml: String,
    /// Wall-clock generation time (the only clock read, at the binary's edge).
    pub generated: String,
}

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

fn ts(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".into(), |t| t.to_rfc3339())
}

fn verdict_name(v: Option<VerdictLevel>) -> &'static str {
    match v {
        Some(VerdictLevel::Gateway) => "gateway",
        Some(VerdictLevel::Suspect) => "suspect",
        Some(VerdictLevel::Normal) => "normal",
        None => "unscored",
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Answered => "answered",
        Outcome::Busy => "busy",
        Outcome::NoAnswer => "no-answer",
        Outcome::Cancelled => "cancelled",
        Outcome::Failed => "failed",
        Outcome::Incomplete => "incomplete",
    }
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
        Direction::Internal => "internal",
        Direction::Transit => "transit",
    }
}

const OUTCOMES: [(Outcome, &str); 6] = [
    (Outcome::Answered, "#2e7d32"),
    (Outcome::Busy, "#f9a825"),
    (Outcome::NoAnswer, "#ef6c00"),
    (Outcome::Cancelled, "#8e24aa"),
    (Outcome::Failed, "#c62828"),
    (Outcome::Incomplete, "#757575"),
];

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3;cursor:pointer}.gateway{background:#ffebee}.suspect{background:#fff8e1}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600}
.b-gateway{background:#c62828}.b-suspect{background:#ef6c00}.b-normal{background:#2e7d32}
.mono{font-family:ui-monospace,monospace;font-size:12px}.note{color:#666;font-size:12px}
svg{background:#fafafa;border:1px solid #eee;margin:4px 0}figure{margin:8px 0}figcaption{font-size:12px;color:#555}";

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
    let _ = write!(
        h,
        "<h1>simboxd report</h1><p class=\"mono\">{}</p>",
        escape(&a.capture.file)
    );
    verdicts(&mut h, a);
    charts(&mut h, a);
    peers_table(&mut h, a);
    calls_table(&mut h, a);
    registrations(&mut h, a);
    user_agents(&mut h, a);
    provenance(&mut h, a, prov);
    let _ = write!(h, "<script>{JS}</script></body></html>");
    h
}

fn verdicts(h: &mut String, a: &Analysis) {
    h.push_str("<h2>Verdict</h2>");
    let flagged: Vec<_> = a
        .lines
        .iter()
        .filter(|l| l.verdict.is_some_and(|v| v != VerdictLevel::Normal))
        .collect();
    if flagged.is_empty() {
        let _ = write!(
            h,
            "<p>No line in this capture shows the behaviour of a SIM-box gateway. {} line(s) seen.</p>",
            a.lines.len()
        );
    } else {
        for l in &flagged {
            let v = verdict_name(l.verdict);
            let line = l.line.map_or_else(|| "-".into(), |ip| ip.to_string());
            let what = if v == "gateway" {
                "behaves like a SIM-box gateway"
            } else {
                "shows some behaviour of a SIM-box gateway (suspect)"
            };
            let _ = write!(
                h,
                "<div class=\"{v}\" style=\"padding:8px;margin:8px 0\"><p><span class=\"badge b-{v}\">{}</span> <b>Line {}</b> {what}: score {:.2}{}{}.</p><ul>",
                escape(v),
                escape(&line),
                l.score.unwrap_or(0.0),
                l.site.as_deref().map(|s| format!(", site {}", escape(s))).unwrap_or_default(),
                l.flagged_at.map(|t| format!(", flagged at {t}")).unwrap_or_default(),
            );
            for r in &l.reasons {
                let _ = write!(
                    h,
                    "<li><b>{}</b>: {}</li>",
                    escape(&r.signal),
                    escape(&r.detail)
                );
            }
            h.push_str("</ul></div>");
        }
    }
    h.push_str("<table class=\"sortable\"><thead><tr><th>line</th><th>verdict</th><th>score</th><th>site</th><th>calls</th><th>inbound</th><th>outbound</th><th>answered</th><th>max concurrent</th><th>distinct called</th><th>registrations</th><th>voice flows without SIP</th></tr></thead><tbody>");
    for l in &a.lines {
        let v = verdict_name(l.verdict);
        let _ = write!(
            h,
            "<tr class=\"{}\"><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(v),
            escape(&l.line.map_or_else(|| "-".into(), |ip| ip.to_string())),
            escape(v),
            l.score.map_or_else(|| "-".into(), |s| format!("{s:.2}")),
            escape(l.site.as_deref().unwrap_or("-")),
            l.calls,
            l.inbound_calls,
            l.outbound_calls,
            l.answered_calls,
            l.max_concurrent_calls,
            l.distinct_called_numbers,
            l.registrations,
            l.voice_flows_without_sip
        );
    }
    h.push_str("</tbody></table>");
}

/// Lines to chart: flagged ones first, then the busiest.
fn charted_lines(a: &Analysis) -> Vec<IpAddr> {
    let mut ls: Vec<_> = a.lines.iter().filter(|l| l.line.is_some()).collect();
    ls.sort_by(|x, y| {
        let fx = x.verdict.is_some_and(|v| v != VerdictLevel::Normal);
        let fy = y.verdict.is_some_and(|v| v != VerdictLevel::Normal);
        fy.cmp(&fx).then(y.calls.cmp(&x.calls))
    });
    ls.iter()
        .filter(|l| l.calls > 0)
        .filter_map(|l| l.line)
        .take(MAX_CHARTED_LINES)
        .collect()
}

fn charts(h: &mut String, a: &Analysis) {
    h.push_str("<h2>Charts</h2>");
    let (Some(t0), Some(t1)) = (a.capture.start, a.capture.end) else {
        h.push_str("<p>No packets.</p>");
        return;
    };
    let span = t1.secs_since(t0).max(1.0);
    for line in charted_lines(a) {
        let calls: Vec<&CallRecord> = a.calls.iter().filter(|c| c.line == Some(line)).collect();
        concurrency_chart(h, line, &calls, t0, t1, span);
    }
    per_minute_chart(h, a, t0, span);
    duration_histogram(h, a);
    hour_chart(h, a);
}

fn concurrency_chart(
    h: &mut String,
    line: IpAddr,
    calls: &[&CallRecord],
    t0: Timestamp,
    t1: Timestamp,
    span: f64,
) {
    let mut steps: Vec<(f64, i32)> = Vec::with_capacity(calls.len() * 2);
    for c in calls {
        let s = c.start.secs_since(t0);
        // A call still open when the capture ends lasts until the end.
        let e = c.end.unwrap_or(t1).secs_since(t0);
        steps.push((s, 1));
        steps.push((e, -1));
    }
    steps.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut series = Vec::with_capacity(steps.len());
    let mut cur = 0i32;
    let mut max = 0i32;
    for (t, d) in steps {
        cur += d;
        max = max.max(cur);
        series.push((t, cur.max(0)));
    }
    // Down-sample: keep the maximum of each bucket so the ceiling stays visible.
    let buckets = MAX_POINTS.min(series.len().max(1));
    let mut pts = vec![0i32; buckets];
    for (t, v) in &series {
        let i = ((t / span) * buckets as f64).clamp(0.0, (buckets - 1) as f64) as usize;
        if let Some(p) = pts.get_mut(i) {
            *p = (*p).max(*v);
        }
    }
    let (w, hgt) = (1000.0, 160.0);
    let ymax = f64::from(max.max(1)) * 1.15;
    let mut path = String::new();
    for (i, v) in pts.iter().enumerate() {
        let x = 40.0 + (i as f64 / buckets as f64) * (w - 50.0);
        let y = hgt - 20.0 - (f64::from(*v) / ymax) * (hgt - 30.0);
        let _ = write!(path, "{}{x:.1},{y:.1} ", if i == 0 { "M" } else { "L" });
    }
    let ceil_y = hgt - 20.0 - (f64::from(max) / ymax) * (hgt - 30.0);
    let _ = write!(
        h,
        "<figure><svg width=\"{w}\" height=\"{hgt}\" role=\"img\" aria-label=\"concurrent calls\"><line x1=\"40\" y1=\"{ceil_y:.1}\" x2=\"{}\" y2=\"{ceil_y:.1}\" stroke=\"#c62828\" stroke-dasharray=\"4 3\"/><text x=\"2\" y=\"{:.1}\" font-size=\"11\">{max}</text><text x=\"2\" y=\"{}\" font-size=\"11\">0</text><path d=\"{path}\" fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.5\"/></svg><figcaption>Concurrent calls over time on line {} ({} calls; dashed: the ceiling of {max})</figcaption></figure>",
        w - 10.0,
        ceil_y + 4.0,
        hgt - 20.0,
        escape(&line.to_string()),
        calls.len()
    );
}

fn bars(h: &mut String, caption: &str, labels: &[String], stacks: &[Vec<(u64, &str)>]) {
    let (w, hgt) = (1000.0, 180.0);
    let n = stacks.len().max(1);
    let total_max = stacks
        .iter()
        .map(|s| s.iter().map(|(v, _)| *v).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let bw = (w - 50.0) / n as f64;
    let _ = write!(
        h,
        "<figure><svg width=\"{w}\" height=\"{hgt}\" role=\"img\" aria-label=\"{}\"><text x=\"2\" y=\"14\" font-size=\"11\">{}</text>",
        escape(caption),
        total_max
    );
    for (i, stack) in stacks.iter().enumerate() {
        let x = 40.0 + i as f64 * bw;
        let mut y = hgt - 20.0;
        for (v, color) in stack {
            if *v == 0 {
                continue;
            }
            let bh = (*v as f64 / total_max) * (hgt - 35.0);
            y -= bh;
            let _ = write!(
                h,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{v}</title></rect>",
                (bw - 1.0).max(0.5)
            );
        }
        if let Some(l) = labels.get(i) {
            if n <= 30 || i % (n / 12).max(1) == 0 {
                let _ = write!(
                    h,
                    "<text x=\"{x:.1}\" y=\"{}\" font-size=\"10\">{}</text>",
                    hgt - 6.0,
                    escape(l)
                );
            }
        }
    }
    let _ = write!(
        h,
        "</svg><figcaption>{}</figcaption></figure>",
        escape(caption)
    );
}

fn per_minute_chart(h: &mut String, a: &Analysis, t0: Timestamp, span: f64) {
    let minutes = ((span / 60.0).ceil() as usize).clamp(1, 24 * 60);
    let per = (span / minutes as f64).max(1.0);
    let mut counts = vec![[0u64; 6]; minutes];
    for c in &a.calls {
        let i = ((c.start.secs_since(t0) / per) as usize).min(minutes - 1);
        let k = OUTCOMES
            .iter()
            .position(|(o, _)| *o == c.outcome)
            .unwrap_or(5);
        if let Some(row) = counts.get_mut(i) {
            row[k] += 1;
        }
    }
    let stacks: Vec<Vec<(u64, &str)>> = counts
        .iter()
        .map(|row| {
            row.iter()
                .zip(OUTCOMES.iter())
                .map(|(v, (_, c))| (*v, *c))
                .collect()
        })
        .collect();
    let labels: Vec<String> = (0..minutes)
        .map(|i| {
            let secs = (i as f64 * per) as u64;
            format!("{}:{:02}", secs / 60, secs % 60)
        })
        .collect();
    let legend: Vec<String> = OUTCOMES
        .iter()
        .map(|(o, c)| {
            format!(
                "<span style=\"color:{c}\">&#9632;</span> {}",
                outcome_name(*o)
            )
        })
        .collect();
    bars(
        h,
        &format!("Calls started per {:.0} s, by outcome", per),
        &labels,
        &stacks,
    );
    let _ = write!(h, "<p class=\"note\">{}</p>", legend.join(" &nbsp; "));
}

fn duration_histogram(h: &mut String, a: &Analysis) {
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
    let mut counts = [0u64; 10];
    for c in &a.calls {
        if let Some(t) = c.talk_secs() {
            let i = EDGES.iter().position(|e| t < *e).unwrap_or(9);
            counts[i] += 1;
        }
    }
    let labels: Vec<String> = [
        "<10s", "<20s", "<30s", "<1m", "<1.5m", "<2m", "<3m", "<5m", "<10m", ">=10m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let stacks: Vec<Vec<(u64, &str)>> = counts.iter().map(|v| vec![(*v, "#1565c0")]).collect();
    bars(
        h,
        "Talk time of answered calls (histogram)",
        &labels,
        &stacks,
    );
}

fn hour_chart(h: &mut String, a: &Analysis) {
    let mut counts = [0u64; 24];
    for c in &a.calls {
        let hour = (c.start.micros().div_euclid(3_600_000_000)).rem_euclid(24) as usize;
        counts[hour] += 1;
    }
    let labels: Vec<String> = (0..24).map(|i| format!("{i:02}")).collect();
    let stacks: Vec<Vec<(u64, &str)>> = counts.iter().map(|v| vec![(*v, "#6a1b9a")]).collect();
    bars(h, "Calls by hour of day (UTC)", &labels, &stacks);
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

fn calls_table(h: &mut String, a: &Analysis) {
    let mut by_line: BTreeMap<String, Vec<&CallRecord>> = BTreeMap::new();
    for c in &a.calls {
        let k = c.line.map_or_else(|| "(no line)".into(), |l| l.to_string());
        by_line.entry(k).or_default().push(c);
    }
    let _ = write!(h, "<h2>Calls ({})</h2>", a.calls.len());
    for (line, calls) in &by_line {
        let _ = write!(
            h,
            "<details><summary>line <span class=\"mono\">{}</span>: {} calls{}</summary><table class=\"sortable\"><thead><tr><th>start</th><th>direction</th><th>peer</th><th>from</th><th>to</th><th>outcome</th><th>status</th><th>talk s</th><th>codec</th><th>user agent</th><th>RTP packets</th></tr></thead><tbody>",
            escape(line),
            calls.len(),
            if calls.len() > MAX_CALL_ROWS_PER_LINE {
                format!(" (first {MAX_CALL_ROWS_PER_LINE} shown)")
            } else {
                String::new()
            }
        );
        for c in calls.iter().take(MAX_CALL_ROWS_PER_LINE) {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                c.start,
                direction_name(c.direction),
                escape(&c.peer.map_or_else(|| "-".into(), |p| p.to_string())),
                escape(c.from.as_deref().unwrap_or("-")),
                escape(c.to.as_deref().unwrap_or("-")),
                outcome_name(c.outcome),
                c.status_code.map_or_else(|| "-".into(), |s| s.to_string()),
                c.talk_secs().map_or_else(|| "-".into(), |t| format!("{t:.1}")),
                escape(c.codec.as_deref().unwrap_or("-")),
                escape(c.user_agent.as_deref().or(c.server.as_deref()).unwrap_or("-")),
                c.rtp.iter().map(|s| s.packets).sum::<u64>()
            );
        }
        h.push_str("</tbody></table></details>");
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
    let errors: Vec<String> = s
        .decode_errors
        .0
        .iter()
        .map(|(k, v)| format!("{}={v}", escape(k)))
        .collect();
    let _ = write!(
        h,
        "<h2>Provenance</h2><table><tbody><tr><th>capture file</th><td class=\"mono\">{}</td></tr><tr><th>size</th><td>{} bytes</td></tr><tr><th>SHA-256</th><td class=\"mono\">{}</td></tr><tr><th>time span</th><td>{} .. {}</td></tr><tr><th>packets</th><td>{} ({} bytes on the wire)</td></tr><tr><th>SIP messages / calls / registrations</th><td>{} / {} / {}</td></tr><tr><th>decode errors</th><td>{}</td></tr><tr><th>simboxd version</th><td>{}</td></tr><tr><th>generated</th><td>{}</td></tr></tbody></table><p>Configuration used:</p><pre class=\"mono\">{}</pre>",
        escape(&c.file),
        c.size,
        escape(&c.sha256),
        ts(c.start),
        ts(c.end),
        c.packets,
        c.bytes,
        s.sip_messages,
        s.calls,
        s.registrations,
        if errors.is_empty() { "none".to_string() } else { errors.join(" ") },
        env!("CARGO_PKG_VERSION"),
        escape(&prov.generated),
        escape(&prov.config_toml)
    );
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
        assert_eq!(escape("a\u{0}b"), "a\u{fffd}b");
    }
}
