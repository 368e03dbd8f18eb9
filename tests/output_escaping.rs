//! Output that cannot be forged (issue 17): a crafted capture whose SIP User-Agents carry a
//! terminal escape (retitle the window), a bell, a NUL, a bare CR with a fake report line and a
//! Unicode bidi override is analysed by the real binary (text output) and drawn by the watch
//! threats screen; the text shows every such character as a visible escape and never raw.

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use simboxd::config::Config;
use simboxd::watch::app::{App, Screen};
use simboxd::watch::source::replay_to_end;
use simboxd_sim::{PcapWriter, L2};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

const SCANNER: &str = "203.0.113.66";
/// Retitles an xterm, rings the bell, hides the rest behind a NUL and reverses text.
const UA_ESCAPES: &str = "evil\x1b]0;owned\x07 \u{202e}exe.gnp\u{202c} \0tail";
/// A bare CR returns the cursor: the rest would overprint the line as a fake verdict.
const UA_CR: &str = "scan\r  100.64.9.9   GATEWAY score 1.00";

fn options(to: &str, call_id: &str, ua: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:100@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {SCANNER}:5060;branch=z9hG4bK{call_id}\r\n\
         From: <sip:100@{SCANNER}>;tag=f{call_id}\r\nTo: <sip:100@{to}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// An OPTIONS sweep over 14 lines from one scanner with the crafted User-Agents.
fn crafted_capture(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(std::io::BufWriter::new(file)).unwrap();
    let l2 = L2 {
        line_mac: [2, 0, 0, 0, 0, 1],
        router_mac: [2, 0, 0, 0, 0, 2],
        vlan: None,
    };
    let src: SocketAddr = format!("{SCANNER}:5060").parse().unwrap();
    for i in 1..=14u16 {
        let to = format!("10.1.0.{i}");
        let dst: SocketAddr = format!("{to}:5060").parse().unwrap();
        let ua = if i % 2 == 0 { UA_ESCAPES } else { UA_CR };
        let t = 1_764_000_000_000_000i64 + i64::from(i) * 500_000;
        w.udp(
            t,
            &l2,
            false,
            src,
            dst,
            i,
            64,
            &options(&to, &format!("c{i}"), ua),
        )
        .unwrap();
    }
    w.flush().unwrap();
}

/// No character that could drive a terminal or reorder text, line ends apart.
fn assert_clean(what: &str, text: &str) {
    for (n, line) in text.lines().enumerate() {
        let bad: Vec<char> = line
            .chars()
            .filter(|&c| simboxd::text::needs_escape(c))
            .collect();
        assert!(
            bad.is_empty(),
            "{what} line {}: raw {bad:?} in {line:?}",
            n + 1
        );
        assert!(
            !line.trim_start().starts_with("100.64.9.9"),
            "{what}: forged line {line:?}"
        );
    }
}

#[test]
fn analyze_text_and_watch_escape_wire_control_and_bidi_characters() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("crafted.pcap");
    crafted_capture(&cap);

    // The JSON keeps the exact bytes (for evidence); the text escapes them.
    let json = Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .args(["analyze", "--format", "json", "--quiet"])
        .arg(&cap)
        .output()
        .unwrap();
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let agents: Vec<String> = v["threats"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["peer"] == SCANNER)
        .flat_map(|t| t["user_agents"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    assert!(
        agents
            .iter()
            .any(|a| a.contains('\x1b') && a.contains('\u{202e}')),
        "the crafted User-Agent reached the analysis: {agents:?}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_simboxd"))
        .args(["analyze", "--format", "text", "--quiet"])
        .arg(&cap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_clean("analyze text", &text);
    assert!(
        text.contains(r"evil\x1b]0;owned\x07 \u{202e}exe.gnp\u{202c} \x00tail"),
        "{text}"
    );
    if agents.iter().any(|a| a.contains('\r')) {
        assert!(text.contains(r"scan\r  100.64.9.9"), "{text}");
    }

    // The watch threats screen draws the same User-Agents, escaped.
    let snap = replay_to_end(&cap, &Config::default(), None).expect("replay");
    let mut app = App::new(snap);
    app.screen = Screen::Threats;
    let mut term = Terminal::new(TestBackend::new(240, 30)).unwrap();
    term.draw(|f| simboxd::watch::ui::draw(f, &app)).unwrap();
    let buf = term.backend().buffer().clone();
    let screen: String = (0..30)
        .map(|y| (0..240).map(|x| buf[(x, y)].symbol()).collect::<String>() + "\n")
        .collect();
    assert_clean("watch threats screen", &screen);
    assert!(screen.contains(r"evil\x1b]0;owned\x07"), "{screen}");
}
