//! Pseudonymisation of phone numbers with a keyed hash.
//!
//! Contract: with `[privacy] pseudonymize = true`, every output that carries a phone number (alert
//! reasons, JSON calls, logs) passes it through [`Pseudonymizer`], which maps a number to
//! `p:` + the first 16 hex digits of HMAC-SHA256(key, number). The same key gives the same
//! pseudonym across runs (so an analyst can still follow one number), a different key a different
//! one. When off, numbers pass through unchanged.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use simboxd_core::model::{CallRecord, RegistrationRecord};
use std::path::PathBuf;

/// `[privacy]` section.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    pub pseudonymize: bool,
    /// HMAC key as text (prefer `key_file` so the key stays out of the config).
    pub key: Option<String>,
    /// File holding the key (its bytes, trailing newline removed).
    pub key_file: Option<PathBuf>,
}

impl PrivacyConfig {
    /// Checks that cannot be expressed in the types: `(key, message)` on failure.
    pub fn validate(&self) -> Result<(), simboxd_core::config::Invalid> {
        if self.key.is_some() && self.key_file.is_some() {
            return Err(simboxd_core::config::Invalid::new(
                "key_file",
                "set either privacy.key or privacy.key_file, not both".into(),
            ));
        }
        if let Some(k) = &self.key {
            if k.len() < 16 {
                return Err(simboxd_core::config::Invalid::new(
                    "key",
                    "privacy.key must be at least 16 bytes".into(),
                ));
            }
        }
        if self.pseudonymize && self.key.is_none() && self.key_file.is_none() {
            return Err(simboxd_core::config::Invalid::new(
                "pseudonymize",
                "privacy.pseudonymize = true needs privacy.key or privacy.key_file".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("cannot read privacy key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("privacy key is too short ({0} bytes, need 16)")]
    ShortKey(usize),
}

/// Maps phone numbers to stable keyed pseudonyms, or passes them through when disabled.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Pseudonymizer")
            .field("enabled", &self.key.is_some())
            .finish()
    }
}

/// Digit runs at least this long in free text are taken as phone numbers; shorter ones are
/// figures (counts, ports, octets of an address).
const MIN_NUMBER_DIGITS: usize = 6;

impl Pseudonymizer {
    /// Numbers pass through unchanged.
    pub fn disabled() -> Self {
        Pseudonymizer { key: None }
    }

    pub fn with_key(key: &[u8]) -> Result<Self, PrivacyError> {
        if key.len() < 16 {
            return Err(PrivacyError::ShortKey(key.len()));
        }
        Ok(Pseudonymizer {
            key: Some(key.to_vec()),
        })
    }

    pub fn from_config(cfg: &PrivacyConfig) -> Result<Self, PrivacyError> {
        if !cfg.pseudonymize {
            return Ok(Self::disabled());
        }
        if let Some(path) = &cfg.key_file {
            let mut bytes = std::fs::read(path).map_err(|source| PrivacyError::KeyFile {
                path: path.display().to_string(),
                source,
            })?;
            while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                bytes.pop();
            }
            return Self::with_key(&bytes);
        }
        match &cfg.key {
            Some(k) => Self::with_key(k.as_bytes()),
            None => Ok(Self::disabled()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// Pseudonym of one number (or SIP user part). Visual separators are dropped first so that
    /// `+86 138-0000-1111` and `+8613800001111` map alike.
    pub fn number(&self, number: &str) -> String {
        let Some(key) = &self.key else {
            return number.to_string();
        };
        let normal: String = number
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        Self::tag(key, &normal)
    }

    /// Pseudonym of a text as it is (no separators dropped): user names such as `john.doe` and
    /// `johndoe` stay two names.
    pub fn exact(&self, text: &str) -> String {
        match &self.key {
            Some(key) => Self::tag(key, text),
            None => text.to_string(),
        }
    }

    /// `p:` + the first 16 hex digits of HMAC-SHA256(key, text).
    fn tag(key: &[u8], text: &str) -> String {
        // HMAC accepts keys of any length: new_from_slice cannot fail for Hmac<Sha256>.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return "p:invalid".to_string();
        };
        mac.update(text.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut out = String::with_capacity(18);
        out.push_str("p:");
        out.push_str(&hex::encode(tag.get(..8).unwrap_or(&[])));
        out
    }

    /// Optional-field helper for records.
    pub fn opt(&self, v: &Option<String>) -> Option<String> {
        v.as_deref().map(|s| self.number(s))
    }

    /// Replaces phone-number-like runs in free text (an optional `+` and at least six digits)
    /// by their pseudonyms; other text, addresses and short figures are kept.
    pub fn text(&self, text: &str) -> String {
        if self.key.is_none() {
            return text.to_string();
        }
        let b = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        let mut copied = 0;
        while i < b.len() {
            let start = i;
            let plus = b.get(i) == Some(&b'+');
            let digits_from = if plus { i + 1 } else { i };
            let mut j = digits_from;
            while b.get(j).is_some_and(|c| c.is_ascii_digit()) {
                j += 1;
            }
            let n = j - digits_from;
            // Part of a dotted address, a decimal or a longer word: leave alone.
            let prev = start.checked_sub(1).and_then(|p| b.get(p)).copied();
            let glued = prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.')
                || b.get(j)
                    .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'.');
            if n >= MIN_NUMBER_DIGITS && !glued {
                out.push_str(text.get(copied..start).unwrap_or(""));
                out.push_str(&self.number(text.get(start..j).unwrap_or("")));
                copied = j;
                i = j;
            } else if n > 0 {
                i = j;
            } else {
                i += 1;
            }
        }
        out.push_str(text.get(copied..).unwrap_or(""));
        out
    }

    /// Pseudonymises the number fields of a call record in place.
    pub fn call(&self, call: &mut CallRecord) {
        if self.key.is_none() {
            return;
        }
        call.from = self.opt(&call.from);
        call.to = self.opt(&call.to);
        call.request_uri = call.request_uri.as_deref().map(|u| self.uri(u));
    }

    /// Pseudonymises the account (`user@host`) and contact of a registration in place.
    /// Numbers a threat quotes (dialled numbers, numbers in its reasons) as keyed pseudonyms;
    /// the same for `analyze`, the report, the API and alerts.
    pub fn threat(&self, t: &mut simboxd_core::threats::Threat) {
        if !self.enabled() {
            return;
        }
        for n in &mut t.numbers {
            *n = self.number(n);
        }
        for r in &mut t.reasons {
            r.detail = self.text(&r.detail);
        }
    }

    pub fn registration(&self, reg: &mut RegistrationRecord) {
        if self.key.is_none() {
            return;
        }
        reg.account = self.uri(&reg.account);
        reg.contact = reg.contact.as_deref().map(|c| self.uri(c));
    }

    /// Pseudonymises the user part of a SIP URI (`sip:USER@host`), or the whole value if it has
    /// no `@`.
    pub fn uri(&self, uri: &str) -> String {
        if self.key.is_none() {
            return uri.to_string();
        }
        let Some(at) = uri.find('@') else {
            return self.number(uri);
        };
        let head = uri.get(..at).unwrap_or("");
        let tail = uri.get(at..).unwrap_or("");
        let (scheme, user) = match head.find(':') {
            Some(c) => (
                head.get(..=c).unwrap_or(""),
                head.get(c + 1..).unwrap_or(""),
            ),
            None => ("", head),
        };
        format!("{scheme}{}{tail}", self.number(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef-test-key";

    #[test]
    fn disabled_passes_numbers_through() {
        let p = Pseudonymizer::disabled();
        assert_eq!(p.number("+8613800001111"), "+8613800001111");
        assert_eq!(p.text("to 8613800001111 now"), "to 8613800001111 now");
    }

    #[test]
    fn stable_and_keyed() {
        let a = Pseudonymizer::with_key(KEY).unwrap();
        let b = Pseudonymizer::with_key(b"another-key-of-16+bytes").unwrap();
        let x = a.number("+8613800001111");
        assert!(x.starts_with("p:") && x.len() == 18, "{x}");
        assert_eq!(x, a.number("+8613800001111"));
        assert_eq!(x, a.number("+86 138-0000-1111"));
        assert_ne!(x, a.number("+8613800001112"));
        assert_ne!(x, b.number("+8613800001111"));
        assert!(!x.contains("1380000"));
    }

    #[test]
    fn text_replaces_numbers_not_figures_or_addresses() {
        let p = Pseudonymizer::with_key(KEY).unwrap();
        let t = "212 calls from 203.0.113.10:5060 to 13800001111, +8613900002222 and v1234567x";
        let out = p.text(t);
        assert!(
            out.starts_with("212 calls from 203.0.113.10:5060 to p:"),
            "{out}"
        );
        assert!(
            !out.contains("13800001111") && !out.contains("8613900002222"),
            "{out}"
        );
        assert!(out.contains(&p.number("13800001111")), "{out}");
        assert!(out.contains(&p.number("+8613900002222")), "{out}");
        assert!(out.ends_with("v1234567x"), "{out}");
        assert_eq!(p.text(""), "");
        assert_eq!(p.text("+"), "+");
    }

    #[test]
    fn uri_user_part_only() {
        let p = Pseudonymizer::with_key(KEY).unwrap();
        let u = p.uri("sip:+8613800001111@198.51.100.7:5060");
        assert_eq!(
            u,
            format!("sip:{}@198.51.100.7:5060", p.number("+8613800001111"))
        );
    }

    #[test]
    fn short_key_rejected_and_config_checked() {
        assert!(Pseudonymizer::with_key(b"short").is_err());
        let c = PrivacyConfig {
            pseudonymize: true,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "pseudonymize");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "0123456789abcdefXYZ\n").unwrap();
        let c = PrivacyConfig {
            pseudonymize: true,
            key: None,
            key_file: Some(f),
        };
        let p = Pseudonymizer::from_config(&c).unwrap();
        let q = Pseudonymizer::with_key(b"0123456789abcdefXYZ").unwrap();
        assert_eq!(p.number("12345678"), q.number("12345678"));
    }

    #[test]
    fn account_user_part_only() {
        let p = Pseudonymizer::with_key(KEY).unwrap();
        assert_eq!(
            p.uri("8613800001111@sip.example.net"),
            format!("{}@sip.example.net", p.number("8613800001111"))
        );
        assert_eq!(
            Pseudonymizer::disabled().uri("8613800001111@h"),
            "8613800001111@h"
        );
    }

    proptest::proptest! {
        #[test]
        fn text_never_panics(s in ".{0,200}") {
            let p = Pseudonymizer::with_key(KEY).unwrap();
            let _ = p.text(&s);
            let _ = p.uri(&s);
        }
    }
}
