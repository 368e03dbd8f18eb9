//! Drawing the screens of `simboxd watch` with ratatui: lines, line detail, threats, the call
//! flow of one call, and the help.
//!
//! Contract: pure rendering of an `App` into a frame of any size (80x24 upwards; smaller sizes
//! draw what fits and never panic). Verdicts are coloured and also carry a text marker (`!!`,
//! `!`), so monochrome terminals and screen captures show them.

use super::app::{App, Screen};
use super::view::{
    row_marker, verdict_marker, verdict_name, CallRow, FlowMessage, LineDetail, RunState, Snapshot,
};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap,
};
use ratatui::Frame;
use simboxd_core::model::{Direction, Outcome, Timestamp, VerdictLevel};
use std::net::SocketAddr;

/// Wire text (User-Agents, numbers, reasons) as it may be drawn: see [`crate::text::escape`].
fn esc(s: &str) -> String {
    crate::text::escape(s).into_owned()
}

/// Width from which the detail screen puts registrations beside the calls.
const WIDE: u16 = 140;

fn verdict_style(v: VerdictLevel) -> Style {
    match v {
        VerdictLevel::Gateway => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        VerdictLevel::Suspect => Style::default()
            .fg(Color::Yellow)
            .add_modifier(Modifier::BOLD),
        VerdictLevel::Normal => Style::default(),
    }
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

fn dim() -> Style {
    Style::default().add_modifier(Modifier::DIM)
}

fn selected() -> Style {
    Style::default().add_modifier(Modifier::REVERSED)
}

/// `HH:MM:SS` in UTC.
pub fn hms(t: Timestamp) -> String {
    t.to_rfc3339().get(11..19).unwrap_or("--:--:--").to_string()
}

/// `HH:MM:SS.mmm` in UTC.
fn hms_ms(t: Timestamp) -> String {
    t.to_rfc3339()
        .get(11..23)
        .unwrap_or("--:--:--.---")
        .to_string()
}

fn rate(x: f64) -> String {
    if x >= 10_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if x >= 1000.0 {
        format!("{:.1}k", x / 1000.0)
    } else {
        format!("{x:.0}")
    }
}

/// Draws the whole frame.
pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let [head, tabs, body, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    header(f, head, &app.snap);
    tab_bar(f, tabs, app);
    match app.screen {
        Screen::Lines => lines_screen(f, body, app),
        Screen::Detail => detail_screen(f, body, app),
        Screen::Threats => threats_screen(f, body, &app.snap),
        Screen::CallFlow => call_flow_screen(f, body, app),
    }
    footer(f, foot, app);
    if app.help {
        help(f, area);
    }
}

fn header(f: &mut Frame, area: Rect, s: &Snapshot) {
    let (state, style) = match &s.state {
        RunState::Running => ("running".to_string(), Style::default().fg(Color::Green)),
        RunState::Paused => ("PAUSED".to_string(), bold().fg(Color::Yellow)),
        RunState::Ended => ("replay ended".to_string(), bold()),
        RunState::Failed(why) => (format!("ERROR: {}", esc(why)), bold().fg(Color::Red)),
    };
    let clock = s.clock.map_or_else(
        || "no packet yet".to_string(),
        |t| format!("{} {} UTC", t.to_rfc3339().get(..10).unwrap_or(""), hms(t)),
    );
    let d = &s.drops;
    let mut drops = format!("drops {}", d.total());
    if d.total() > 0 || d.snapshots > 0 {
        drops = format!(
            "drops kernel {} if {} spool {} records {} polls {} | ui skipped {}",
            d.kernel, d.interface, d.spool, d.records, d.polls, d.snapshots
        );
    }
    let drop_style = if d.total() > 0 {
        bold().fg(Color::Red)
    } else {
        Style::default()
    };
    // The state first: a long source (a file path) is what gets cut on a narrow terminal.
    let l1 = Line::from(vec![
        Span::styled("simboxd watch  ", bold()),
        Span::styled(state, style),
        Span::raw(if s.pseudonymized {
            "  numbers pseudonymised"
        } else {
            ""
        }),
        Span::raw("  "),
        Span::raw(esc(&s.source)),
    ]);
    let packets = if s.counts_packets {
        format!("{} pkts {}/s  ", s.packets, rate(s.packets_per_sec))
    } else {
        String::new()
    };
    let l2 = Line::from(vec![
        Span::raw(format!("{clock}  {packets}lines {}  ", s.lines_total)),
        Span::styled(drops, drop_style),
    ]);
    f.render_widget(Paragraph::new(vec![l1, l2]), area);
}

fn tab_bar(f: &mut Frame, area: Rect, app: &App) {
    let tab = |n: &str, name: &str, on: bool| {
        let style = if on {
            selected().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        Span::styled(format!(" {n} {name} "), style)
    };
    let line = Line::from(vec![
        tab("1", "Lines", app.screen == Screen::Lines),
        tab("2", "Detail", app.screen == Screen::Detail),
        tab("3", "Threats", app.screen == Screen::Threats),
        tab("\u{23ce}", "Call flow", app.screen == Screen::CallFlow),
        Span::styled("  ? help  q quit", dim()),
    ]);
    f.render_widget(Paragraph::new(line), area);
}

fn footer(f: &mut Frame, area: Rect, app: &App) {
    let line = if let Some(text) = &app.editing {
        Line::from(vec![
            Span::styled("filter: ", bold()),
            Span::raw(text.clone()),
            Span::styled("_  (address, peer, site, or gateway/suspect/normal/flagged; Enter applies, Esc cancels)", dim()),
        ])
    } else if let Some(n) = &app.notice {
        Line::from(Span::styled(n.clone(), bold()))
    } else {
        let filter = if app.filter.is_empty() {
            String::new()
        } else {
            format!("filter \"{}\"  ", app.filter)
        };
        Line::from(vec![
            Span::styled(filter, bold()),
            Span::styled(
                "\u{2191}\u{2193}/jk move  Enter open  Esc back  / filter  e evidence  r report  p pause",
                dim(),
            ),
        ])
    };
    f.render_widget(Paragraph::new(line), area);
}

fn opt_u(x: Option<u64>) -> String {
    x.map_or_else(|| "-".to_string(), |n| n.to_string())
}

fn lines_screen(f: &mut Frame, area: Rect, app: &App) {
    let rows = app.rows();
    if rows.is_empty() {
        let text = if app.snap.lines.is_empty() {
            "no line seen yet (a line is an address inside the home networks with SIP or media traffic)"
        } else {
            "no line matches the filter"
        };
        f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let addr_w = rows
        .iter()
        .map(|r| r.line.to_string().len())
        .max()
        .unwrap_or(15)
        .clamp(11, 39) as u16;
    let header = Row::new([
        "line", "verdict", "score", "now/max", "5min", "1h", "foreign", "nums", "peers",
    ])
    .style(bold());
    let body: Vec<Row> = rows
        .iter()
        .map(|r| {
            let peers = match r.top_peer {
                Some(p) => format!("{} {p}", r.peers),
                None => r.peers.to_string(),
            };
            Row::new(vec![
                Cell::from(r.line.to_string()),
                Cell::from(format!("{}{}", row_marker(r), verdict_name(r.verdict)))
                    .style(verdict_style(r.verdict)),
                Cell::from(format!("{:.2}", r.score)),
                Cell::from(format!("{}/{}", r.calls_now, r.max_concurrent)),
                Cell::from(opt_u(r.calls_5min)),
                Cell::from(opt_u(r.calls_hour)),
                Cell::from(
                    r.foreign_share
                        .map_or_else(|| "-".to_string(), |x| format!("{:.0}%", x * 100.0)),
                ),
                Cell::from(r.distinct_numbers.to_string()),
                Cell::from(peers),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(addr_w),
        Constraint::Length(10),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(4),
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(4),
        Constraint::Min(6),
    ];
    // The `>` shows the selection where reverse video does not (screen captures).
    let table = Table::new(body, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(selected())
        .highlight_symbol(">")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(Some(app.selected));
    f.render_stateful_widget(table, area, &mut state);
}

fn reason_lines(d: &LineDetail) -> Vec<Line<'static>> {
    if let Some(c) = &d.caveat {
        return vec![Line::from(vec![
            Span::styled("NOT ASSESSED FROM SIGNALLING: ", bold().fg(Color::Yellow)),
            Span::raw(format!("it {}", esc(c))),
        ])];
    }
    if d.reasons.is_empty() {
        return vec![Line::styled("no signal points at a gateway", dim())];
    }
    d.reasons
        .iter()
        .map(|r| {
            Line::from(vec![
                Span::styled(format!("{:.2} ", r.strength), bold()),
                Span::styled(
                    format!("{}: ", crate::report::words::signal_name(&r.signal)),
                    bold(),
                ),
                Span::raw(esc(&r.detail)),
            ])
        })
        .collect()
}

/// Rows a paragraph of `lines` takes when wrapped at `width` (roughly: by characters).
fn wrapped_height(lines: &[Line], width: u16) -> u16 {
    let w = usize::from(width.max(1));
    lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(w) as u16)
        .sum()
}

fn outcome_name(o: Option<Outcome>) -> &'static str {
    match o {
        None => "in call",
        Some(Outcome::Answered) => "answered",
        Some(Outcome::Busy) => "busy",
        Some(Outcome::NoAnswer) => "no answer",
        Some(Outcome::Cancelled) => "cancelled",
        Some(Outcome::Failed) => "failed",
        Some(Outcome::Incomplete) => "no final",
    }
}

fn dir_name(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "in",
        Direction::Outbound => "out",
        Direction::Internal => "int",
        Direction::Transit => "tr",
    }
}

fn calls_table(f: &mut Frame, area: Rect, calls: &[CallRow], sel: usize, title: &str) {
    let header = Row::new([
        "time", "dir", "peer", "number", "outcome", "dur", "codec", "2way",
    ])
    .style(bold());
    let rows: Vec<Row> = calls
        .iter()
        .map(|c| {
            Row::new(vec![
                hms(c.start),
                dir_name(c.direction).to_string(),
                c.peer
                    .map_or_else(|| "-".to_string(), |p| p.ip().to_string()),
                c.number.as_deref().map_or_else(|| "-".to_string(), esc),
                outcome_name(c.outcome).to_string(),
                c.duration_secs
                    .map_or_else(|| "-".to_string(), |d| format!("{d:.0}s")),
                c.codec.as_deref().map_or_else(|| "-".to_string(), esc),
                match c.two_way_voice {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "-",
                }
                .to_string(),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(8),
        Constraint::Length(3),
        Constraint::Length(15),
        Constraint::Min(10),
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(4),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(
            Block::default()
                .borders(Borders::TOP)
                .title(title.to_string()),
        )
        .row_highlight_style(selected())
        .highlight_symbol(">")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected((!calls.is_empty()).then_some(sel));
    f.render_stateful_widget(table, area, &mut state);
}

fn detail_screen(f: &mut Frame, area: Rect, app: &App) {
    let Some(d) = app
        .snap
        .detail
        .as_ref()
        .filter(|d| Some(d.line) == app.focus)
    else {
        let text = match app.focus {
            Some(ip) => format!("{ip}: waiting for the source..."),
            None => "select a line on the Lines screen and press Enter".to_string(),
        };
        f.render_widget(Paragraph::new(text), area);
        return;
    };
    let title = Line::from(vec![
        Span::styled(format!("{}  ", d.line), bold()),
        Span::styled(
            format!("{}{}", verdict_marker(d.verdict), verdict_name(d.verdict)),
            verdict_style(d.verdict),
        ),
        Span::raw(format!("  score {:.2}", d.score)),
        Span::raw(
            d.flagged_at
                .map_or(String::new(), |t| format!("  flagged {} UTC", hms(t))),
        ),
        Span::raw(
            d.site
                .as_ref()
                .map_or(String::new(), |s| format!("  {}", esc(s))),
        ),
    ]);
    let reasons = reason_lines(d);
    let reasons_h = (wrapped_height(&reasons, area.width) + 1)
        .min(area.height / 3)
        .max(2);
    let info = info_lines(d, area.width >= WIDE);
    let [t, fig, rs, sp, inf, rest] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Length(reasons_h),
        Constraint::Length(3),
        Constraint::Length(info.len() as u16),
        Constraint::Min(3),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(title), t);
    f.render_widget(
        Paragraph::new(d.figures.clone()).wrap(Wrap { trim: true }),
        fig,
    );
    let mut rl = vec![Line::styled(
        "Reasons",
        bold().add_modifier(Modifier::UNDERLINED),
    )];
    rl.extend(reasons);
    f.render_widget(Paragraph::new(rl).wrap(Wrap { trim: true }), rs);
    sparkline(f, sp, d);
    f.render_widget(Paragraph::new(info), inf);
    if area.width >= WIDE {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)])
                .areas(rest);
        calls_table(
            f,
            left,
            &d.calls,
            app.call_selected,
            "Latest calls (Enter: call flow)",
        );
        registrations(f, right, d);
    } else {
        calls_table(
            f,
            rest,
            &d.calls,
            app.call_selected,
            "Latest calls (Enter: call flow)",
        );
    }
}

fn sparkline(f: &mut Frame, area: Rect, d: &LineDetail) {
    let [label, chart] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let n = usize::from(area.width).max(1);
    let data: Vec<u64> = d.concurrency.iter().rev().take(n).rev().copied().collect();
    let max = data.iter().copied().max().unwrap_or(0);
    let span = data.len() as f64 * d.sample_secs;
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("Calls in progress", bold()),
            Span::raw(format!(
                " over the last {span:.0} s (peak {max}, latest {})",
                data.last().copied().unwrap_or(0)
            )),
        ])),
        label,
    );
    f.render_widget(
        Sparkline::default()
            .data(&data)
            .max(max.max(1))
            .style(Style::default().fg(Color::Cyan)),
        chart,
    );
}

fn info_lines(d: &LineDetail, wide: bool) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    if !wide {
        let regs = match d.registrations.first() {
            _ if d.registrations_seen == 0 => "none seen".to_string(),
            Some(r) => format!(
                "{} ({} accounts), latest to {} {}",
                d.registrations_seen,
                d.accounts,
                r.registrar,
                esc(&r.outcome)
            ),
            None => format!("{} ({} accounts)", d.registrations_seen, d.accounts),
        };
        out.push(Line::from(vec![
            Span::styled("Registrations: ", bold()),
            Span::raw(regs),
        ]));
    }
    let agents = if d.user_agents.is_empty() {
        "none seen".to_string()
    } else {
        d.user_agents
            .iter()
            .map(|(a, n)| format!("\"{}\" ({n})", esc(a)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push(Line::from(vec![
        Span::styled("User agents: ", bold()),
        Span::raw(agents),
    ]));
    let site = match &d.site {
        Some(s) if d.site_members.is_empty() => format!("{} (no other line)", esc(s)),
        Some(s) => format!(
            "{}: {}",
            esc(s),
            d.site_members
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "not part of a site".to_string(),
    };
    out.push(Line::from(vec![
        Span::styled("Site: ", bold()),
        Span::raw(site),
    ]));
    out
}

fn registrations(f: &mut Frame, area: Rect, d: &LineDetail) {
    let header = Row::new(["time", "account", "registrar", "outcome", "exp"]).style(bold());
    let rows: Vec<Row> = d
        .registrations
        .iter()
        .map(|r| {
            Row::new(vec![
                hms(r.time),
                esc(&r.account),
                r.registrar.to_string(),
                esc(&r.outcome),
                r.expires.map_or_else(|| "-".to_string(), |e| e.to_string()),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(8),
        Constraint::Min(12),
        Constraint::Length(21),
        Constraint::Length(10),
        Constraint::Length(5),
    ];
    f.render_widget(
        Table::new(rows, widths).header(header).block(
            Block::default()
                .borders(Borders::TOP)
                .title("Registrations"),
        ),
        area,
    );
}

fn threats_screen(f: &mut Frame, area: Rect, s: &Snapshot) {
    let alerts_h = if s.alerts.is_empty() {
        0
    } else {
        (s.alerts.len() as u16 + 1).min(area.height / 2)
    };
    let [top, bottom] =
        Layout::vertical([Constraint::Min(2), Constraint::Length(alerts_h)]).areas(area);
    match &s.threats {
        None => f.render_widget(
            Paragraph::new(vec![
                Line::styled("no threats tracked by this engine", bold()),
                Line::styled(
                    "(attacking peers: sweeps, enumeration, toll-fraud attempts, floods, framing)",
                    dim(),
                ),
            ]),
            top,
        ),
        Some(rows) if rows.is_empty() => {
            f.render_widget(Paragraph::new("no attacking peer seen"), top)
        }
        Some(rows) => {
            let header = Row::new([
                "peer",
                "kind",
                "lines",
                "tries",
                "first",
                "last",
                "user agents",
            ])
            .style(bold());
            let body: Vec<Row> = rows
                .iter()
                .map(|t| {
                    Row::new(vec![
                        t.peer.to_string(),
                        esc(&t.kind),
                        t.lines_targeted.to_string(),
                        t.attempts.to_string(),
                        hms(t.first_seen),
                        hms(t.last_seen),
                        esc(&t.user_agents.join(", ")),
                    ])
                })
                .collect();
            let widths = [
                Constraint::Length(15),
                Constraint::Length(11),
                Constraint::Length(5),
                Constraint::Length(6),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Min(10),
            ];
            f.render_widget(Table::new(body, widths).header(header), top);
        }
    }
    if alerts_h > 0 {
        let mut lines = vec![Line::styled("Daemon alerts (newest first)", bold())];
        lines.extend(s.alerts.iter().map(|a| Line::raw(a.clone())));
        f.render_widget(Paragraph::new(lines), bottom);
    }
}

/// Column of each participant on the ladder (in order of appearance, at most `max`).
fn participants(flow: &[FlowMessage], max: usize) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for m in flow {
        for a in [m.src, m.dst] {
            if !out.contains(&a) && out.len() < max {
                out.push(a);
            }
        }
    }
    out
}

/// One ladder row: `|` at every participant, an arrow with the label between sender and receiver.
pub fn ladder_row(width: usize, cols: &[usize], from: usize, to: usize, label: &str) -> String {
    let mut row: Vec<char> = vec![' '; width];
    for &c in cols {
        if let Some(x) = row.get_mut(c) {
            *x = '|';
        }
    }
    let (a, b) = (from.min(to), from.max(to));
    if b > a + 1 {
        for x in row.iter_mut().take(b).skip(a + 1) {
            *x = '-';
        }
        if to > from {
            if let Some(x) = row.get_mut(b - 1) {
                *x = '>';
            }
        } else if let Some(x) = row.get_mut(a + 1) {
            *x = '<';
        }
        let room = (b - a).saturating_sub(3);
        let text: Vec<char> = label.chars().take(room).collect();
        let start = a + 2 + (room.saturating_sub(text.len())) / 2;
        for (i, ch) in text.into_iter().enumerate() {
            if let Some(x) = row.get_mut(start + i) {
                *x = ch;
            }
        }
    }
    row.into_iter().collect::<String>().trim_end().to_string()
}

fn call_flow_screen(f: &mut Frame, area: Rect, app: &App) {
    let Some(d) = app.snap.detail.as_ref() else {
        f.render_widget(Paragraph::new("no line selected"), area);
        return;
    };
    let Some(c) = d.calls.get(app.call_selected) else {
        f.render_widget(Paragraph::new("no call selected"), area);
        return;
    };
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("Call {} ", c.call_id.chars().take(40).collect::<String>()),
            bold(),
        ),
        Span::raw(format!(
            "{} {} {}  {}",
            dir_name(c.direction),
            c.number.as_deref().unwrap_or("-"),
            outcome_name(c.outcome),
            c.user_agent.as_deref().unwrap_or("")
        )),
    ])];
    if c.flow.is_empty() {
        lines.push(Line::raw(
            "no SIP message of this call is kept (only the latest calls keep their ladder)",
        ));
        f.render_widget(Paragraph::new(lines), area);
        return;
    }
    let time_w = 13usize;
    let width = usize::from(area.width).saturating_sub(time_w + 1).max(10);
    let parts = participants(&c.flow, 4);
    let n = parts.len().max(2);
    let label_w = 22usize;
    let usable = width.saturating_sub(label_w).max(n);
    let cols: Vec<usize> = (0..parts.len())
        .map(|i| label_w / 2 + i * usable / (n - 1).max(1))
        .map(|x| x.min(width.saturating_sub(1)))
        .collect();
    // Participant names centred over their columns.
    let mut head: Vec<char> = vec![' '; width + label_w];
    for (i, p) in parts.iter().enumerate() {
        let name: Vec<char> = p.to_string().chars().collect();
        let start = cols[i].saturating_sub(name.len() / 2);
        for (j, ch) in name.into_iter().enumerate() {
            if let Some(x) = head.get_mut(start + j) {
                *x = ch;
            }
        }
    }
    lines.push(Line::styled(
        format!(
            "{:time_w$} {}",
            "",
            head.into_iter().collect::<String>().trim_end()
        ),
        bold(),
    ));
    for m in &c.flow {
        let from = parts.iter().position(|p| *p == m.src);
        let to = parts.iter().position(|p| *p == m.dst);
        let label = if m.sdp {
            format!("{} (SDP)", m.label)
        } else {
            m.label.clone()
        };
        let row = match (from, to) {
            (Some(a), Some(b)) => ladder_row(width, &cols, cols[a], cols[b], &label),
            _ => format!("{label}  {} -> {}", m.src, m.dst),
        };
        lines.push(Line::raw(format!("{:time_w$} {row}", hms_ms(m.ts))));
    }
    f.render_widget(Paragraph::new(lines), area);
}

fn help(f: &mut Frame, area: Rect) {
    let text = Text::from(vec![
        Line::styled("simboxd watch: keys", bold()),
        Line::raw(""),
        Line::raw("Up/Down, j/k     move; PgUp/PgDn, u/d page; g/G first/last"),
        Line::raw("Enter, l, Right  open the line's detail / the call's flow"),
        Line::raw("Esc, h, Left     back"),
        Line::raw("1 2 3, t, Tab    Lines, Detail, Threats"),
        Line::raw("/                filter: address, peer, site, or gateway,"),
        Line::raw("                 suspect, normal, flagged (words combine)"),
        Line::raw("e                evidence pcap + manifest of the line"),
        Line::raw("r                HTML report of everything seen so far"),
        Line::raw("p, Space         pause a replay (live: freeze the view)"),
        Line::raw("q, Ctrl-C        quit"),
        Line::raw(""),
        Line::raw("Markers: !! GATEWAY, ! SUSPECT, ? not assessed from signalling"),
        Line::raw("(media without a readable SIP call). Any key closes this help."),
    ]);
    let w = area.width.min(66);
    let h = area.height.min(17);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(text).block(Block::default().borders(Borders::ALL)),
        r,
    );
}
