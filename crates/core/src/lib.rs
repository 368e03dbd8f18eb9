//! simboxd's packet engine: everything between a captured frame and a line verdict, with no
//! I/O. Nothing here reads a clock, opens a file or socket, or spawns a thread (clippy's
//! `disallowed-methods`/`disallowed-types` in this crate's `clippy.toml` refuse them): packet
//! time is the only clock, so the same code runs live, on a file and in tests.
//!
//! The modules read as the pipeline they implement:
//! [`decode`] -> [`sip`]/[`sdp`]/[`rtp`] -> [`calls`] (+ [`media`]) -> [`lines`] -> [`detect`]
//! (and, beside the lines, [`threats`]: attacks reported about the attacking peer),
//! with [`model`] (the plain records passed between stages), [`config`] (the sections these
//! stages own) and [`engine`] (the stages wired together for one thread).
//!
//! Every public item is documented: `missing_docs` below makes an undocumented one a warning,
//! which the CI gate (`cargo clippy --all-targets -- -D warnings`) refuses.

#![warn(missing_docs)]

pub mod calls;
pub mod config;
pub mod decode;
pub mod detect;
pub mod engine;
pub mod lines;
pub mod media;
pub mod model;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod table;
pub mod threats;
