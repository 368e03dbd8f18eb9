//! The view's state between frames (screen, selection, filter) and what keys do to it.
//!
//! Contract: no I/O. `key` turns one key press into state changes and `Action`s for the caller
//! (commands to the source, the line to follow); `update` takes a new snapshot and keeps the
//! selection on the same line.

use super::source::Command;
use super::view::{LineRow, Snapshot};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use simboxd_core::model::VerdictLevel;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Lines,
    Detail,
    Threats,
    CallFlow,
}

/// What the caller must do after a key.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Send(Command),
    /// Follow this line's detail.
    Focus(Option<IpAddr>),
    Quit,
}

pub struct App {
    pub snap: Snapshot,
    pub screen: Screen,
    /// Index into the filtered rows.
    pub selected: usize,
    /// The selected line, kept across snapshots once the user has moved (before that the
    /// selection stays on the top row, the most severe line).
    pub selected_line: Option<IpAddr>,
    pub moved: bool,
    /// The line whose detail is shown.
    pub focus: Option<IpAddr>,
    /// Index into the detail's calls.
    pub call_selected: usize,
    pub filter: String,
    /// The filter being typed after `/`.
    pub editing: Option<String>,
    pub help: bool,
    pub notice: Option<String>,
}

/// Whether `row` passes the filter: every word must match, as a verdict name (`gateway`,
/// `suspect`, `normal`, `flagged`) or as part of the line's address, its top peer or its site.
pub fn matches(row: &LineRow, filter: &str) -> bool {
    filter.split_whitespace().all(|w| {
        let w = w.to_ascii_lowercase();
        let level = VerdictLevel::from_name(&w).or((w == "gw").then_some(VerdictLevel::Gateway));
        match w.as_str() {
            _ if level.is_some() => Some(row.verdict) == level,
            "flagged" => row.verdict != VerdictLevel::Normal,
            _ => {
                row.line.to_string().contains(&w)
                    || row.top_peer.is_some_and(|p| p.to_string().contains(&w))
                    || row
                        .site
                        .as_deref()
                        .is_some_and(|s| s.to_ascii_lowercase().contains(&w))
            }
        }
    })
}

impl App {
    pub fn new(snap: Snapshot) -> App {
        let mut app = App {
            snap,
            screen: Screen::Lines,
            selected: 0,
            selected_line: None,
            moved: false,
            focus: None,
            call_selected: 0,
            filter: String::new(),
            editing: None,
            help: false,
            notice: None,
        };
        app.reselect();
        app
    }

    /// The rows that pass the filter, in snapshot order.
    pub fn rows(&self) -> Vec<&LineRow> {
        let f = self.editing.as_deref().unwrap_or(&self.filter);
        self.snap.lines.iter().filter(|r| matches(r, f)).collect()
    }

    pub fn update(&mut self, snap: Snapshot) {
        self.snap = snap;
        self.reselect();
    }

    /// Keeps the selection on the same line (or the same index when it went).
    fn reselect(&mut self) {
        let rows = self.rows();
        let idx = self
            .selected_line
            .filter(|_| self.moved)
            .and_then(|ip| rows.iter().position(|r| r.line == ip))
            .unwrap_or(self.selected.min(rows.len().saturating_sub(1)));
        let line = rows.get(idx).map(|r| r.line);
        self.selected = idx;
        self.selected_line = line;
        let calls = self.snap.detail.as_ref().map_or(0, |d| d.calls.len());
        self.call_selected = self.call_selected.min(calls.saturating_sub(1));
    }

    fn move_by(&mut self, delta: isize) {
        match self.screen {
            Screen::Lines => {
                let n = self.rows().len();
                if n == 0 {
                    return;
                }
                let i = (self.selected as isize + delta).clamp(0, n as isize - 1) as usize;
                self.selected = i;
                self.moved = true;
                self.selected_line = self.rows().get(i).map(|r| r.line);
            }
            Screen::Detail | Screen::CallFlow => {
                let n = self.snap.detail.as_ref().map_or(0, |d| d.calls.len());
                if n == 0 {
                    return;
                }
                self.call_selected =
                    (self.call_selected as isize + delta).clamp(0, n as isize - 1) as usize;
            }
            Screen::Threats => {}
        }
    }

    /// The line `e` exports: the one shown in detail, else the selected row.
    pub fn target_line(&self) -> Option<IpAddr> {
        match self.screen {
            Screen::Detail | Screen::CallFlow => self.focus.or(self.selected_line),
            _ => self.selected_line,
        }
    }

    pub fn key(&mut self, k: KeyEvent) -> Vec<Action> {
        if k.modifiers.contains(KeyModifiers::CONTROL) && matches!(k.code, KeyCode::Char('c')) {
            return vec![Action::Quit];
        }
        if let Some(text) = &mut self.editing {
            match k.code {
                KeyCode::Enter => {
                    self.filter = std::mem::take(text);
                    self.editing = None;
                    self.selected = 0;
                    self.moved = false;
                    self.reselect();
                }
                KeyCode::Esc => {
                    self.editing = None;
                    self.reselect();
                }
                KeyCode::Backspace => {
                    text.pop();
                    self.reselect();
                }
                KeyCode::Char(c) if text.len() < 64 && !c.is_control() => {
                    text.push(c);
                    self.reselect();
                }
                _ => {}
            }
            return Vec::new();
        }
        if self.help {
            self.help = false;
            if !matches!(k.code, KeyCode::Char('q')) {
                return Vec::new();
            }
        }
        let page = 10;
        match k.code {
            KeyCode::Char('q') => return vec![Action::Quit],
            KeyCode::Char('?') => self.help = true,
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp | KeyCode::Char('u') => self.move_by(-page),
            KeyCode::PageDown | KeyCode::Char('d') => self.move_by(page),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(-(isize::MAX / 2)),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX / 2),
            KeyCode::Char('/') => {
                self.editing = Some(self.filter.clone());
                self.screen = Screen::Lines;
            }
            KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => match self.screen {
                Screen::Lines => return self.open_detail(),
                Screen::Detail
                    if self
                        .snap
                        .detail
                        .as_ref()
                        .is_some_and(|d| !d.calls.is_empty()) =>
                {
                    self.screen = Screen::CallFlow;
                }
                _ => {}
            },
            KeyCode::Esc | KeyCode::Left | KeyCode::Backspace | KeyCode::Char('h') => {
                self.screen = match self.screen {
                    Screen::CallFlow => Screen::Detail,
                    _ => Screen::Lines,
                };
            }
            KeyCode::Char('1') => self.screen = Screen::Lines,
            KeyCode::Char('2') => return self.open_detail(),
            KeyCode::Char('3') | KeyCode::Char('t') => self.screen = Screen::Threats,
            KeyCode::Tab => match self.screen {
                Screen::Lines => return self.open_detail(),
                Screen::Detail | Screen::CallFlow => self.screen = Screen::Threats,
                Screen::Threats => self.screen = Screen::Lines,
            },
            KeyCode::Char('e') => {
                return match self.target_line() {
                    Some(ip) => vec![Action::Send(Command::Evidence(ip))],
                    None => {
                        self.notice = Some("evidence: select a line first".into());
                        Vec::new()
                    }
                }
            }
            KeyCode::Char('r') => return vec![Action::Send(Command::Report)],
            KeyCode::Char('p') | KeyCode::Char(' ') => {
                return vec![Action::Send(Command::TogglePause)]
            }
            _ => {}
        }
        Vec::new()
    }

    fn open_detail(&mut self) -> Vec<Action> {
        let Some(ip) = self.selected_line else {
            return Vec::new();
        };
        if self.focus != Some(ip) {
            self.call_selected = 0;
        }
        self.focus = Some(ip);
        self.screen = Screen::Detail;
        vec![Action::Focus(Some(ip))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::view::{LineDetail, Snapshot};

    fn row(ip: &str, v: VerdictLevel, score: f64) -> LineRow {
        LineRow {
            line: ip.parse().unwrap(),
            verdict: v,
            score,
            calls_now: 0,
            max_concurrent: 0,
            calls_5min: None,
            calls_hour: None,
            foreign_share: None,
            distinct_numbers: 0,
            peers: 0,
            top_peer: None,
            site: None,
            unassessed: false,
        }
    }

    fn snap(rows: Vec<LineRow>) -> Snapshot {
        Snapshot {
            lines: rows,
            ..Snapshot::empty("test".into())
        }
    }

    fn press(app: &mut App, code: KeyCode) -> Vec<Action> {
        app.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn selection_follows_the_top_until_moved_then_the_line() {
        let mut app = App::new(snap(vec![row("10.0.0.2", VerdictLevel::Normal, 0.0)]));
        assert_eq!(app.selected_line, Some("10.0.0.2".parse().unwrap()));
        // A gateway appears above: the untouched selection moves to it.
        app.update(snap(vec![
            row("10.0.0.9", VerdictLevel::Gateway, 0.9),
            row("10.0.0.2", VerdictLevel::Normal, 0.0),
        ]));
        assert_eq!(app.selected_line, Some("10.0.0.9".parse().unwrap()));
        press(&mut app, KeyCode::Char('j'));
        assert_eq!(app.selected_line, Some("10.0.0.2".parse().unwrap()));
        // Once moved, the selection stays on its line when rows reorder.
        app.update(snap(vec![
            row("10.0.0.9", VerdictLevel::Gateway, 0.9),
            row("10.0.0.5", VerdictLevel::Suspect, 0.6),
            row("10.0.0.2", VerdictLevel::Normal, 0.0),
        ]));
        assert_eq!(app.selected, 2);
        press(&mut app, KeyCode::Char('g'));
        assert_eq!(app.selected, 0);
        press(&mut app, KeyCode::End);
        assert_eq!(app.selected, 2);
    }

    #[test]
    fn filter_is_typed_applied_and_cancelled() {
        let mut app = App::new(snap(vec![
            row("10.0.0.9", VerdictLevel::Gateway, 0.9),
            row("10.0.0.2", VerdictLevel::Normal, 0.0),
        ]));
        press(&mut app, KeyCode::Char('/'));
        for c in "normal".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        // 'q' while typing is text, not quit.
        assert!(press(&mut app, KeyCode::Char('q')).is_empty());
        press(&mut app, KeyCode::Backspace);
        assert_eq!(app.rows().len(), 1, "the filter applies while typed");
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.filter, "normal");
        assert_eq!(app.selected_line, Some("10.0.0.2".parse().unwrap()));
        press(&mut app, KeyCode::Char('/'));
        press(&mut app, KeyCode::Char('x'));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.filter, "normal", "Esc keeps the applied filter");
        assert!(matches(
            &row("10.0.0.9", VerdictLevel::Gateway, 0.9),
            "flagged 10.0.0"
        ));
        assert!(!matches(
            &row("10.0.0.9", VerdictLevel::Gateway, 0.9),
            "suspect"
        ));
    }

    #[test]
    fn enter_focuses_and_e_exports_the_line_shown() {
        let mut app = App::new(snap(vec![
            row("10.0.0.9", VerdictLevel::Gateway, 0.9),
            row("10.0.0.2", VerdictLevel::Normal, 0.0),
        ]));
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(
            press(&mut app, KeyCode::Enter),
            vec![Action::Focus(Some(ip))]
        );
        assert_eq!(app.screen, Screen::Detail);
        // No calls yet: Enter stays on the detail.
        app.snap.detail = Some(LineDetail {
            line: ip,
            verdict: VerdictLevel::Gateway,
            score: 0.9,
            flagged_at: None,
            site: None,
            reasons: vec![],
            figures: String::new(),
            concurrency: vec![],
            sample_secs: 1.0,
            calls: vec![],
            registrations: vec![],
            registrations_seen: 0,
            accounts: 0,
            user_agents: vec![],
            site_members: vec![],
            caveat: None,
        });
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.screen, Screen::Detail);
        assert_eq!(
            press(&mut app, KeyCode::Char('e')),
            vec![Action::Send(Command::Evidence(ip))]
        );
        assert_eq!(
            press(&mut app, KeyCode::Char('r')),
            vec![Action::Send(Command::Report)]
        );
        assert_eq!(
            press(&mut app, KeyCode::Char('p')),
            vec![Action::Send(Command::TogglePause)]
        );
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen, Screen::Lines);
        press(&mut app, KeyCode::Char('?'));
        assert!(app.help);
        assert!(
            press(&mut app, KeyCode::Char('j')).is_empty(),
            "a key closes the help"
        );
        assert!(!app.help);
        assert_eq!(press(&mut app, KeyCode::Char('q')), vec![Action::Quit]);
        assert_eq!(
            app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            vec![Action::Quit]
        );
    }
}
