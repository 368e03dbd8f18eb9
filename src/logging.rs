//! Logging of `simboxd run` and `simboxd central`: journald-native when stderr is the journal (systemd sets
//! `$JOURNAL_STREAM` to its device:inode), plain lines or JSON elsewhere.
//!
//! Contract: under journald every event goes to the journal through `tracing-journald` with its
//! priority (error 3, warn 4, info 6, debug/trace 7) and its fields as journal fields
//! (`DELIVERY_TARGET=`, `ERROR=`, ...), so `journalctl -p warning` and `journalctl
//! DELIVERY_TARGET=...` work; when the journal socket cannot be opened, plain lines without
//! time stamps (journald adds its own). `$JOURNAL_STREAM` inherited by a process whose stderr
//! was redirected elsewhere is ignored.

use crate::config::daemon::DaemonConfig;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Journald,
    Text,
    Json,
}

/// Whether `$JOURNAL_STREAM` (`DEV:INODE`) names the file stderr is connected to.
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr()) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

/// The sink for `d` in this process's environment.
pub fn choose(d: &DaemonConfig, journal: bool) -> Sink {
    if journal {
        Sink::Journald
    } else if d.log_format == "json" {
        Sink::Json
    } else {
        Sink::Text
    }
}

/// Sets up `tracing` (see the module contract). Returns the sink used.
pub fn init(d: &DaemonConfig) -> Sink {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&d.log_level))
    };
    let journal = stderr_is_journal();
    let mut sink = choose(d, journal);
    if sink == Sink::Journald {
        match JournalLayer::new(JOURNAL_SOCKET) {
            Ok(layer) => {
                if tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init()
                    .is_ok()
                {
                    return sink;
                }
            }
            Err(e) => eprintln!("simboxd: journald socket unavailable ({e}): logging to stderr"),
        }
        sink = Sink::Text;
    }
    let json = sink == Sink::Json;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(move || EscapedLine::new(json))
        .with_ansi(false);
    let res = match (sink, journal) {
        (Sink::Json, _) => builder.json().try_init(),
        (_, true) => builder.without_time().try_init(),
        _ => builder.try_init(),
    };
    if res.is_err() {
        eprintln!("simboxd: logging was already initialised");
    }
    sink
}

/// journald's native protocol socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Events to journald in its native protocol: syslog priorities as `journalctl -p` reads them
/// (error 3, warn 4, info 6, debug/trace 7), `SYSLOG_IDENTIFIER=simboxd`, and every field under
/// its own name (`DELIVERY_TARGET=`, `ERROR=`; upper-cased, `.` as `_`; none of ours collides
/// with a journal field). Every value passes through [`crate::text::escape`] like the text
/// output, so wire text (a User-Agent, a receiver's error) reaches the journal with its control
/// and bidi characters as visible escapes, never raw.
pub struct JournalLayer {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
}

/// Longest value sent when a whole entry does not fit one datagram.
const JOURNAL_VALUE_CAP: usize = 4096;

impl JournalLayer {
    pub fn new(path: impl Into<std::path::PathBuf>) -> std::io::Result<Self> {
        let path = path.into();
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        // As journald clients do: fail now when nothing listens there.
        socket.send_to(&[], &path)?;
        Ok(JournalLayer { socket, path })
    }

    /// The datagram of one entry (`KEY=value` lines; values hold no newline once escaped).
    pub fn entry(fields: &[(String, String)], cap: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(256);
        for (k, v) in fields {
            let v = crate::text::escape(v);
            let mut end = v.len().min(cap);
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            buf.extend_from_slice(k.as_bytes());
            buf.push(b'=');
            buf.extend_from_slice(v.get(..end).unwrap_or("").as_bytes());
            buf.push(b'\n');
        }
        buf
    }

    /// `name` as a journal field name: upper case letters, digits and `_`, not starting with `_`.
    fn field_name(name: &str) -> String {
        let n: String = name
            .chars()
            .map(|c| if c == '.' { '_' } else { c })
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let n = n.trim_start_matches('_');
        match n.chars().next() {
            None => "FIELD".to_string(),
            Some(c) if c.is_ascii_digit() => format!("F_{n}"),
            Some(_) => n.to_string(),
        }
    }
}

struct JournalFields(Vec<(String, String)>);

impl tracing::field::Visit for JournalFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let name = match field.name() {
            "message" => "MESSAGE".to_string(),
            n => JournalLayer::field_name(n),
        };
        self.0.push((name, value.to_string()));
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = event.metadata();
        let priority = match *meta.level() {
            tracing::Level::ERROR => "3",
            tracing::Level::WARN => "4",
            tracing::Level::INFO => "6",
            _ => "7",
        };
        let mut f = JournalFields(vec![
            ("PRIORITY".into(), priority.into()),
            ("SYSLOG_IDENTIFIER".into(), "simboxd".into()),
            ("TARGET".into(), meta.target().into()),
        ]);
        if let Some(file) = meta.file() {
            f.0.push(("CODE_FILE".into(), file.into()));
        }
        if let Some(line) = meta.line() {
            f.0.push(("CODE_LINE".into(), line.to_string()));
        }
        event.record(&mut f);
        let buf = JournalLayer::entry(&f.0, usize::MAX);
        if let Err(e) = self.socket.send_to(&buf, &self.path) {
            if e.raw_os_error() == Some(libc::EMSGSIZE) {
                let _ = self
                    .socket
                    .send_to(&JournalLayer::entry(&f.0, JOURNAL_VALUE_CAP), &self.path);
            }
        }
    }
}

/// One log line on its way to stderr: control and bidi characters that reached a field or a
/// message (an error text from a receiver, a User-Agent) are escaped when the line is
/// complete, so that no line can forge another or drive the terminal. Text lines use
/// [`crate::text::escape`]; JSON lines (whose serializer already escapes C0) get `\uXXXX`.
pub struct EscapedLine {
    buf: Vec<u8>,
    json: bool,
}

impl EscapedLine {
    pub fn new(json: bool) -> Self {
        EscapedLine {
            buf: Vec::with_capacity(256),
            json,
        }
    }

    /// The line as written out (the final newline kept).
    pub fn render(&self) -> String {
        let text = String::from_utf8_lossy(&self.buf);
        let (body, nl) = match text.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (&*text, ""),
        };
        let mut out = if self.json {
            let mut o = String::with_capacity(body.len());
            for c in body.chars() {
                if crate::text::needs_escape(c) {
                    use std::fmt::Write as _;
                    let _ = write!(o, "\\u{:04x}", c as u32);
                } else {
                    o.push(c);
                }
            }
            o
        } else {
            crate::text::escape(body).into_owned()
        };
        out.push_str(nl);
        out
    }
}

impl std::io::Write for EscapedLine {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EscapedLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        use std::io::Write as _;
        let _ = std::io::stderr().lock().write_all(self.render().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_lines_cannot_forge_lines_or_drive_the_terminal() {
        use std::io::Write as _;
        let mut l = super::EscapedLine::new(false);
        l.write_all(
            "WARN alert delivery failed error=\"x\r\nINFO forged\x1b[2J\u{202e}\"\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(
            l.render(),
            "WARN alert delivery failed error=\"x\\r\\nINFO forged\\x1b[2J\\u{202e}\"\n"
        );
        l.buf.clear();
        let mut j = super::EscapedLine::new(true);
        j.write_all("{\"m\":\"a\u{202e}b\\u0000\"}\n".as_bytes())
            .unwrap();
        let r = j.render();
        j.buf.clear();
        assert_eq!(r, "{\"m\":\"a\\u202eb\\u0000\"}\n");
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["m"], "a\u{202e}b\u{0}");
    }
}

#[cfg(test)]
mod journal_tests {
    use super::*;

    #[test]
    fn journal_entries_escape_wire_text_and_name_fields() {
        let e = JournalLayer::entry(
            &[
                ("MESSAGE".into(), "delivery failed".into()),
                (
                    JournalLayer::field_name("error"),
                    "400\nPRIORITY=0\r\x1b]0;pwned\x07\u{202e}".into(),
                ),
                (JournalLayer::field_name("delivery.target"), "a".into()),
            ],
            usize::MAX,
        );
        let text = String::from_utf8(e).unwrap();
        assert_eq!(
            text,
            "MESSAGE=delivery failed\nERROR=400\\nPRIORITY=0\\r\\x1b]0;pwned\\x07\\u{202e}\nDELIVERY_TARGET=a\n"
        );
        assert_eq!(text.lines().count(), 3, "one line per field: {text}");
        assert_eq!(JournalLayer::field_name("_9x"), "F_9X");
        let long = JournalLayer::entry(&[("M".into(), "\u{e9}".repeat(10))], 5);
        assert_eq!(long, "M=\u{e9}\u{e9}\n".as_bytes());
    }

    #[test]
    fn journal_only_when_stderr_is_the_named_stream() {
        let d = DaemonConfig::default();
        assert_eq!(choose(&d, true), Sink::Journald);
        assert_eq!(choose(&d, false), Sink::Text);
        let json = DaemonConfig {
            log_format: "json".into(),
            ..DaemonConfig::default()
        };
        assert_eq!(choose(&json, false), Sink::Json);
        assert_eq!(choose(&json, true), Sink::Journald);
        // The test harness's stderr is not the device:inode 1:1.
        std::env::set_var("JOURNAL_STREAM", "1:1");
        assert!(!stderr_is_journal());
        let st = nix::sys::stat::fstat(std::io::stderr()).unwrap();
        std::env::set_var("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino));
        assert!(stderr_is_journal());
        std::env::remove_var("JOURNAL_STREAM");
        assert!(!stderr_is_journal());
    }
}
