//! Logging of `simboxd run`: journald-native when stderr is the journal (systemd sets
//! `$JOURNAL_STREAM` to its device:inode), plain lines or JSON elsewhere.
//!
//! Contract: under journald every event goes to the journal through `tracing-journald` with its
//! priority (error 3, warn 4, info 6, debug/trace 7) and its fields as journal fields
//! (`DELIVERY_TARGET=`, `ERROR=`, ...), so `journalctl -p warning` and `journalctl
//! DELIVERY_TARGET=...` work; when the journal socket cannot be opened, plain lines without
//! time stamps (journald adds its own). `$JOURNAL_STREAM` inherited by a process whose stderr
//! was redirected elsewhere is ignored.

use super::DaemonConfig;
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
        match tracing_journald::layer() {
            Ok(layer) => {
                // syslog priorities as journalctl -p reads them (info 6, not the crate's notice 5),
                // and fields under their own names (DELIVERY_TARGET=, ERROR=; none of ours
                // collides with a journal field).
                let layer = layer
                    .with_syslog_identifier("simboxd".to_string())
                    .with_field_prefix(None)
                    .with_priority_mappings(tracing_journald::PriorityMappings {
                        error: tracing_journald::Priority::Error,
                        warn: tracing_journald::Priority::Warning,
                        info: tracing_journald::Priority::Informational,
                        debug: tracing_journald::Priority::Debug,
                        trace: tracing_journald::Priority::Debug,
                    });
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
