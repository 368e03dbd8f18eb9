//! simboxd: detects SIM-box gateway lines from SIP/RTP seen on a tap.
//!
//! The modules read as the pipeline they implement:
//! `capture` -> `decode` -> `sip`/`sdp`/`rtp` -> `calls` (+ `media`) -> `lines` -> `detect` -> `alert`,
//! with `model` (plain data passed between stages), `config`, `engine` (the stages wired for one
//! thread, shared by offline analysis and the daemon) and the binary edge (`cli`) around them.
//! Nothing below the daemon reads a clock: packet time drives everything.

pub mod alert;
pub mod analyze;
pub mod calls;
pub mod capture;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod daemon;
pub mod decode;
pub mod detect;
pub mod engine;
pub mod eval;
pub mod evidence;
pub mod figures;
pub mod lines;
pub mod media;
pub mod model;
pub mod privacy;
pub mod report;
pub mod rtp;
pub mod sdp;
pub mod simulate;
pub mod sip;
