//! Detection: signals over line profiles, the score, sites, and the table of all lines.
//!
//! Contract: every signal ([`mod@signals`]) is a pure function of one [`Profile`] at a capture time
//! returning a value, a strength 0..1 and the figures behind it. A line is judged on what it did:
//! signals count only calls the line took part in (voice both ways, early media it sent, calls it
//! placed, REGISTERs it sent), never offers it rejected or ignored. The score ([`combine`])
//! combines signal strengths as a noisy-OR with configured weights (`score = 1 - Π(1 - w·s)`).
//! Sites ([`sites`]) group suspect lines sharing a peer and a rhythm. [`LineTable`] ([`table`])
//! owns the profiles (LRU-capped, idle-evicted), is fed `model::Event`s in capture order and
//! re-scores touched lines when asked. The section's settings are in [`config`].
//!
//! [`Profile`]: crate::lines::Profile

#[cfg(any(test, feature = "synth"))]
pub mod synth;

pub mod config;
pub mod score;
pub mod signals;
pub mod sites;
pub mod table;
#[cfg(test)]
mod tests;

pub use config::*;
pub use score::*;
pub use signals::*;
pub(crate) use sites::rhythm;
pub use sites::{group as site_groups, site_signal, Rhythm, SiteCandidate};

pub use table::*;
