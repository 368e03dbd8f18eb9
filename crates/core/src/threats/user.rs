//! How the threat table reads a SIP user part (a dialled number or a user name), and the
//! pseudonymous form a sensor publishes instead of the user part itself.
//!
//! Contract: [`ThreatTable::user_class`] is the one rule: an international or premium number
//! (a `toll_prefixes` prefix with at least six digits after it that do not start with a
//! `home_calling_codes` code), another number (digits, optionally after `+`, at least 7), or a
//! user name. [`pseudonymous`] writes a user part as `p:<hex>;toll=<prefix>` (the keyed
//! pseudonym of the digits after the prefix, so that prefix variants of one number stay one
//! number), `p:<hex>;number` or `p:<hex>;name` (the pseudonym of the whole user part); the
//! table reads that form as the class it names, whatever its own prefixes, and counts distinct
//! numbers and names by the pseudonyms. A user part parsed from SIP never holds `;` (user
//! parameters are cut off), so a packet cannot forge the form.

use super::peer::number_like;
use super::table::ThreatTable;

/// What a user part is to the threat table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserClass<'a> {
    /// An international or premium number: the dial prefix as dialled and what follows it (of
    /// a pseudonymous user part: the pseudonym of what follows).
    Toll {
        /// The dial prefix as dialled (`00`, `+`, `900`, ...).
        prefix: &'a str,
        /// What follows the prefix (its pseudonym in a pseudonymous user part).
        rest: &'a str,
    },
    /// Another phone number (domestic, or international to a home calling code).
    Number,
    /// Anything else: an extension or user name.
    Name,
}

/// `user` of class `class` (see [`ThreatTable::user_class`]) in its pseudonymous form;
/// `pseudonym` maps a text to its keyed pseudonym (`p:` and hex digits).
pub fn pseudonymous(
    user: &str,
    class: UserClass<'_>,
    pseudonym: impl Fn(&str) -> String,
) -> String {
    match class {
        UserClass::Toll { prefix, rest } => format!("{};toll={prefix}", pseudonym(rest)),
        UserClass::Number => format!("{};number", pseudonym(user)),
        UserClass::Name => format!("{};name", pseudonym(user)),
    }
}

/// The class a pseudonymous user part names (`None` for any other text).
fn named_class(u: &str) -> Option<UserClass<'_>> {
    let (p, class) = crate::sip::split_at_byte(u, b';')?;
    let hex = p.strip_prefix("p:")?;
    if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match class {
        "number" => Some(UserClass::Number),
        "name" => Some(UserClass::Name),
        c => {
            let prefix = c.strip_prefix("toll=")?;
            (!prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit() || b == b'+'))
                .then_some(UserClass::Toll { prefix, rest: p })
        }
    }
}

impl ThreatTable {
    /// The class of user part `u` by this table's `toll_prefixes` and `home_calling_codes`, or
    /// the class a pseudonymous user part names.
    pub fn user_class<'a>(&'a self, u: &'a str) -> UserClass<'a> {
        if let Some(c) = named_class(u) {
            return c;
        }
        let n = u.trim();
        for p in &self.prefixes {
            let Some(rest) = n.strip_prefix(p.as_str()) else {
                continue;
            };
            if rest.len() < 6 || !rest.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if self
                .cfg
                .home_calling_codes
                .iter()
                .any(|cc| rest.starts_with(cc.as_str()))
            {
                break;
            }
            return UserClass::Toll {
                prefix: p.as_str(),
                rest,
            };
        }
        if number_like(u) {
            UserClass::Number
        } else {
            UserClass::Name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetworkConfig;
    use crate::model::{
        CallRecord, Direction, Event, Outcome, Participation, ProbeMethod, ProbeRecord, Timestamp,
    };
    use crate::threats::{ThreatKind, ThreatsConfig};
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

    /// A stand-in for the keyed pseudonym (the application's is an HMAC).
    fn pseudonym(s: &str) -> String {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(s);
        format!("p:{h:016x}")
    }

    fn table(home: &[&str]) -> ThreatTable {
        let cfg = ThreatsConfig {
            home_calling_codes: home.iter().map(|s| (*s).to_string()).collect(),
            ..Default::default()
        };
        ThreatTable::new(&cfg, &NetworkConfig::default())
    }

    #[test]
    fn classes_follow_the_prefixes_and_home_codes() {
        let t = table(&["49"]);
        assert_eq!(
            t.user_class("9011972599123456"),
            UserClass::Toll {
                prefix: "9011",
                rest: "972599123456"
            }
        );
        // A home number written internationally, a short number, names.
        assert_eq!(t.user_class("004930123456"), UserClass::Number);
        assert_eq!(t.user_class("13800138000"), UserClass::Number);
        assert_eq!(t.user_class("00123"), UserClass::Name);
        assert_eq!(t.user_class("admin"), UserClass::Name);
        // The pseudonymous forms name their class, whatever this table's prefixes.
        let p = pseudonymous(
            "9011972599123456",
            t.user_class("9011972599123456"),
            pseudonym,
        );
        assert_eq!(p, format!("{};toll=9011", pseudonym("972599123456")));
        assert!(!p.contains("972599123456"));
        assert_eq!(
            table(&[]).user_class(&p),
            UserClass::Toll {
                prefix: "9011",
                rest: &pseudonym("972599123456")
            }
        );
        let n = pseudonymous("13800138000", UserClass::Number, pseudonym);
        assert_eq!(t.user_class(&n), UserClass::Number);
        assert_eq!(t.user_class("p:zz;number"), UserClass::Name);
        assert_eq!(t.user_class("p:ab;toll=x1"), UserClass::Name);
    }

    fn at(s: f64) -> Timestamp {
        Timestamp::from_secs_f64(1_700_000_000.0 + s)
    }

    /// INVITEs from one peer as the calls stage reports them (the probe and the ended call),
    /// and a PBX placing the first number out; users through `user`.
    fn attack(user: impl Fn(&str) -> String) -> Vec<Event> {
        let peer = "185.32.203.219:5070".parse().unwrap();
        let numbers = ["011972599123456", "9011972599123456", "00972599123456"];
        let mut out = Vec::new();
        for i in 0..12u8 {
            let line = std::net::IpAddr::from([10, 0, 0, i % 4]);
            let n = numbers[usize::from(i) % 3];
            let s = f64::from(i) * 7.0;
            out.push(Event::Probe(Box::new(ProbeRecord {
                peer,
                line,
                method: ProbeMethod::Invite,
                request_user: Some(user(n)),
                to_user: Some(user(n)),
                user_agent: None,
                time: at(s),
                status: None,
            })));
            let mut c = CallRecord::new(format!("c{i}"), Direction::Inbound, at(s));
            c.line = Some(line);
            c.peer = Some(peer);
            c.request_uri = Some(user(n));
            c.end = Some(at(s + 2.0));
            c.outcome = Outcome::Failed;
            c.participation = Participation::Rejected;
            out.push(Event::CallEnded(Box::new(c)));
        }
        // Framing-shaped: mobile numbers, and a name search, at another line.
        for i in 0..12u8 {
            let line = std::net::IpAddr::from([10, 0, 1, 1]);
            let s = 100.0 + f64::from(i) * 6.0;
            for u in [format!("138001380{i:02}"), format!("user{i}")] {
                out.push(Event::Probe(Box::new(ProbeRecord {
                    peer,
                    line,
                    method: ProbeMethod::Invite,
                    request_user: Some(user(&u)),
                    to_user: None,
                    user_agent: None,
                    time: at(s),
                    status: None,
                })));
            }
        }
        let mut c = CallRecord::new("out".into(), Direction::Outbound, at(5.0));
        c.line = Some(std::net::IpAddr::from([10, 0, 0, 0]));
        c.request_uri = Some(user(numbers[0]));
        c.participation = Participation::Placed;
        out.push(Event::CallEnded(Box::new(c)));
        out
    }

    #[test]
    fn a_table_fed_pseudonymous_users_finds_what_the_raw_users_give() {
        let raw_table = table(&[]);
        let mut raw = table(&[]);
        let mut pseudo = table(&[]);
        for e in attack(|u| u.to_string()) {
            raw.on_event(&e);
        }
        for e in attack(|u| pseudonymous(u, raw_table.user_class(u), pseudonym)) {
            pseudo.on_event(&e);
        }
        let shape = |t: &ThreatTable| {
            t.threats()
                .iter()
                .map(|x| {
                    (
                        x.kind,
                        x.requests,
                        x.lines_total,
                        x.numbers.len(),
                        x.lines.iter().map(|l| l.line).collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let got = shape(&pseudo);
        assert_eq!(got, shape(&raw));
        let kinds: Vec<ThreatKind> = got.iter().map(|x| x.0).collect();
        assert!(kinds.contains(&ThreatKind::TollFraudAttempt), "{kinds:?}");
        assert!(kinds.contains(&ThreatKind::CompromisedPbx), "{kinds:?}");
        for x in pseudo.threats() {
            for r in &x.reasons {
                assert!(!r.detail.contains("972599123456"), "{}", r.detail);
            }
        }
    }
}
