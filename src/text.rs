//! Text that came off the wire, made safe to print: the one escaping function used at every
//! text edge (analyze's text output, the watch view, logs, the HTML report, alerts sent to
//! receivers).
//!
//! Contract: [`escape`] replaces every character that can forge or hide output — C0 controls
//! (CR, LF, TAB, ESC, NUL ...), DEL, C1 controls (U+0080-U+009F), the Unicode bidi controls
//! (U+061C, U+200E/U+200F, U+202A-U+202E, U+2066-U+2069) and the line/paragraph separators
//! (U+2028/U+2029) — with a visible escape (`\r`, `\n`, `\t`, `\x1b`, `\u{202e}`); everything
//! else is kept as is. The result has no character that `needs_escape` flags, so escaping twice
//! changes nothing: a layer that escapes what an earlier one already escaped is harmless.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` must not reach a terminal, a log line or a receiver raw.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Appends the visible form of `c` (which `needs_escape`) to `out`.
pub fn push_escaped(out: &mut String, c: char) {
    use fmt::Write as _;
    let _ = match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c if (c as u32) < 0x100 => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:04x}}}", c as u32),
    };
}

/// `s` with every character that `needs_escape` replaced by its visible escape; borrowed
/// when nothing needed it (the common case).
pub fn escape(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find(needs_escape) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(s.get(..first).unwrap_or(""));
    for c in s.get(first..).unwrap_or("").chars() {
        if needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Escapes in place (an owned string that may hold wire text).
pub fn escape_in_place(s: &mut String) {
    if let Cow::Owned(e) = escape(s) {
        *s = e;
    }
}

/// `Display` of escaped text, for `format!`/`writeln!` without an intermediate string.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Padding (`{:<20}`) applies to the escaped text.
        f.pad(&escape(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forging_characters_become_visible() {
        assert_eq!(escape("plain UA/1.0 é 中"), "plain UA/1.0 é 中");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\r\n10.0.0.1 GATEWAY\x1b]0;title\x07\0"),
            "a\\r\\n10.0.0.1 GATEWAY\\x1b]0;title\\x07\\x00"
        );
        assert_eq!(escape("\u{85}\u{9b}31m\x7f"), "\\x85\\x9b31m\\x7f");
        assert_eq!(
            escape("gnp.\u{202e}exe\u{2066}\u{2069}\u{200f}\u{2028}"),
            "gnp.\\u{202e}exe\\u{2066}\\u{2069}\\u{200f}\\u{2028}"
        );
        assert_eq!(format!("[{:<6}]", Escaped("a\tb")), "[a\\tb  ]");
        let mut s = String::from("x\0");
        escape_in_place(&mut s);
        assert_eq!(s, "x\\x00");
    }

    proptest::proptest! {
        #[test]
        fn output_is_clean_and_escaping_is_idempotent(s in "\\PC{0,40}|[\\x00-\\x{a0}\\x{2028}-\\x{206f}]{0,40}") {
            let once = escape(&s).into_owned();
            proptest::prop_assert!(!once.chars().any(needs_escape));
            proptest::prop_assert_eq!(escape(&once).into_owned(), once.clone());
            // Nothing but the flagged characters changes.
            if !s.chars().any(needs_escape) {
                proptest::prop_assert_eq!(once, s);
            }
        }
    }
}
