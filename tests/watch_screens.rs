//! Snapshot tests of every `simboxd watch` screen, drawn with ratatui's TestBackend from the
//! shipped sample capture replayed to its end, at 80x24 (SSH) and 200x50 (a wide terminal).

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use simboxd::config::Config;
use simboxd::watch::app::{App, Screen};
use simboxd::watch::source::replay_to_end;
use simboxd::watch::view::Snapshot;
use std::net::IpAddr;
use std::path::Path;

const SAMPLE: &str = "captures/sample-site.pcap";
const GATEWAY: &str = "100.64.1.10";

fn sample(focus: Option<IpAddr>, cfg: &Config) -> Snapshot {
    replay_to_end(Path::new(SAMPLE), cfg, focus).expect("replay the sample capture")
}

/// The screen as text, one string per row (trailing blanks removed).
fn render(app: &App, w: u16, h: u16) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| simboxd::watch::ui::draw(f, app)).expect("draw");
    let buf = t.backend().buffer().clone();
    (0..h)
        .map(|y| {
            let mut row = String::new();
            for x in 0..w {
                row.push_str(buf[(x, y)].symbol());
            }
            row.trim_end().to_string()
        })
        .collect()
}

fn text(rows: &[String]) -> String {
    rows.join("\n")
}

/// The screen's words with line breaks as spaces (wrapped paragraphs read as one).
fn flat(rows: &[String]) -> String {
    rows.iter().map(|r| r.trim()).collect::<Vec<_>>().join(" ")
}

fn gateway_app(screen: Screen) -> App {
    let ip: IpAddr = GATEWAY.parse().unwrap();
    let mut app = App::new(sample(Some(ip), &Config::default()));
    app.focus = Some(ip);
    app.screen = screen;
    app
}

const SIZES: [(u16, u16); 2] = [(80, 24), (200, 50)];

#[test]
fn lines_screen_puts_the_gateway_first() {
    let app = App::new(sample(None, &Config::default()));
    for (w, h) in SIZES {
        let rows = render(&app, w, h);
        let all = text(&rows);
        assert!(
            rows[0].contains("simboxd watch") && rows[0].contains("replay ended"),
            "{all}"
        );
        assert!(
            rows[1].contains("40270 pkts") && rows[1].contains("lines 9"),
            "{all}"
        );
        assert!(rows[1].contains("drops 0"), "{all}");
        let header = rows
            .iter()
            .position(|r| r.contains("verdict") && r.contains("score"))
            .expect("table header");
        for col in ["line", "now/max", "5min", "1h", "foreign", "nums", "peers"] {
            assert!(
                rows[header].contains(col),
                "column {col} missing at {w}x{h}:\n{all}"
            );
        }
        let first = &rows[header + 1];
        assert!(first.starts_with('>'), "the top row is selected: {first}");
        assert!(
            first.contains(GATEWAY) && first.contains("!! GATEWAY"),
            "{all}"
        );
        assert!(
            first.contains("0.94") && first.contains("3/4") && first.contains("100%"),
            "{first}"
        );
        assert!(first.contains("203.0.113.10"), "top peer: {first}");
        let second = &rows[header + 2];
        assert!(
            second.contains("100.64.1.11") && second.contains("!  SUSPECT"),
            "{all}"
        );
        let third = &rows[header + 3];
        assert!(
            third.contains("100.64.1.12") && third.contains("?  normal"),
            "media without readable SIP: {third}"
        );
        assert!(rows.last().unwrap().contains("e evidence"), "{all}");
    }
}

#[test]
fn filter_keeps_matching_lines() {
    let mut app = App::new(sample(None, &Config::default()));
    app.filter = "suspect".into();
    let rows = render(&app, 80, 24);
    let all = text(&rows);
    assert!(
        all.contains("100.64.1.11") && !all.contains(GATEWAY),
        "{all}"
    );
    app.filter = "100.64.1.1".into();
    let all = text(&render(&app, 80, 24));
    assert!(
        all.contains("100.64.1.18") && all.contains(GATEWAY),
        "{all}"
    );
    app.filter = "nothing-here".into();
    let all = text(&render(&app, 80, 24));
    assert!(all.contains("no line matches the filter"), "{all}");
}

#[test]
fn detail_screen_states_the_reasons_and_calls() {
    let app = gateway_app(Screen::Detail);
    for (w, h) in SIZES {
        let rows = render(&app, w, h);
        let all = text(&rows);
        let title = rows
            .iter()
            .find(|r| r.starts_with(GATEWAY))
            .unwrap_or_else(|| panic!("{all}"));
        assert!(
            title.contains("!! GATEWAY") && title.contains("score 0.94"),
            "{title}"
        );
        assert!(all.contains("calls 8 (in 8 / out 0), answered 3"), "{all}");
        assert!(all.contains("Reasons"), "{all}");
        assert!(
            all.contains("Calls come in from abroad"),
            "reason in plain words:\n{all}"
        );
        assert!(
            flat(&rows).contains(
                "6 of the 6 calls the line took part in came in from 203.0.113.10 (foreign)"
            ),
            "reason figures:\n{all}"
        );
        let spark = rows
            .iter()
            .find(|r| r.contains("Calls in progress"))
            .expect("sparkline");
        assert!(
            spark.contains("peak 4, latest 3"),
            "the sparkline follows max concurrent 4: {spark}"
        );
        assert!(all.contains("Calls in progress"), "{all}");
        assert!(
            all.contains("OpenVox VS-GW1202-4G 2.2"),
            "user agent:\n{all}"
        );
        assert!(all.contains("Latest calls"), "{all}");
        let call = rows
            .iter()
            .find(|r| r.contains(" in ") && r.contains("203.0.113.10") && r.contains("G729"))
            .unwrap_or_else(|| panic!("an inbound call row:\n{all}"));
        assert!(call.contains("09:0"), "{call}");
        if w >= 140 {
            assert!(
                all.contains("Registrations") && all.contains("203.0.113.10:5060"),
                "{all}"
            );
            assert!(all.contains("registered"), "{all}");
        } else {
            assert!(all.contains("Registrations: 4 (4 accounts)"), "{all}");
        }
    }
}

#[test]
fn detail_pseudonymises_numbers_when_configured() {
    let mut cfg = Config::default();
    cfg.privacy.pseudonymize = true;
    cfg.privacy.key = Some("0123456789abcdef0123".into());
    let ip: IpAddr = GATEWAY.parse().unwrap();
    let snap = sample(Some(ip), &cfg);
    assert!(snap.pseudonymized);
    let d = snap.detail.as_ref().expect("detail");
    assert!(!d.calls.is_empty());
    for c in &d.calls {
        if let Some(n) = &c.number {
            assert!(n.starts_with("p:"), "number not pseudonymised: {n}");
        }
    }
    for r in &d.registrations {
        assert!(
            r.account.contains("p:"),
            "account not pseudonymised: {}",
            r.account
        );
    }
    let mut app = App::new(snap);
    app.focus = Some(ip);
    app.screen = Screen::Detail;
    let all = text(&render(&app, 200, 50));
    assert!(all.contains("numbers pseudonymised"), "{all}");
    assert!(
        !all.contains("8618898973576"),
        "a raw number is on screen:\n{all}"
    );
}

#[test]
fn threats_screen_says_when_no_peer_attacked() {
    // The engine tracks threats; nobody attacks the sample's lines.
    let app = gateway_app(Screen::Threats);
    for (w, h) in SIZES {
        let all = text(&render(&app, w, h));
        assert!(all.contains("no attacking peer seen"), "{all}");
        assert!(all.contains("3 Threats"), "{all}");
    }
}

#[test]
fn call_flow_screen_draws_the_ladder() {
    let mut app = gateway_app(Screen::CallFlow);
    let d = app.snap.detail.clone().expect("detail");
    let idx = d
        .calls
        .iter()
        .position(|c| c.flow.iter().any(|m| m.label.starts_with("200")))
        .expect("an answered call with its SIP messages");
    app.call_selected = idx;
    for (w, h) in SIZES {
        let rows = render(&app, w, h);
        let all = text(&rows);
        assert!(rows[3].starts_with("Call "), "{all}");
        assert!(
            all.contains("203.0.113.10:5060") && all.contains("100.64.1.10:"),
            "participants:\n{all}"
        );
        let invite = rows
            .iter()
            .find(|r| r.contains("INVITE"))
            .unwrap_or_else(|| panic!("no INVITE:\n{all}"));
        assert!(
            invite.contains('|') && (invite.contains('>') || invite.contains('<')),
            "{invite}"
        );
        assert!(all.contains("200 OK"), "{all}");
        assert!(all.contains("(SDP)"), "{all}");
    }
}

#[test]
fn help_lists_the_keys() {
    let mut app = gateway_app(Screen::Lines);
    app.help = true;
    for (w, h) in SIZES {
        let all = text(&render(&app, w, h));
        assert!(all.contains("simboxd watch: keys"), "{all}");
        assert!(
            all.contains("e                evidence pcap + manifest"),
            "{all}"
        );
    }
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut app = gateway_app(Screen::Detail);
    for screen in [
        Screen::Lines,
        Screen::Detail,
        Screen::Threats,
        Screen::CallFlow,
    ] {
        app.screen = screen;
        for (w, h) in [(1, 1), (10, 3), (20, 5), (40, 10), (79, 23)] {
            let _ = render(&app, w, h);
        }
        app.help = !app.help;
    }
}

#[test]
fn a_line_with_media_but_no_readable_call_is_not_called_normal() {
    let ip: IpAddr = "100.64.1.12".parse().unwrap();
    let mut app = App::new(sample(Some(ip), &Config::default()));
    app.focus = Some(ip);
    app.screen = Screen::Detail;
    let rows = render(&app, 80, 24);
    let all = flat(&rows);
    assert!(
        all.contains("NOT ASSESSED FROM SIGNALLING: it carried 3 media flow(s)"),
        "{}",
        text(&rows)
    );
}
