//! simboxd: detects SIM-box gateway lines from SIP/RTP seen on a tap.
//!
//! The modules read as the pipeline they implement:
//! `capture` -> `decode` -> `sip`/`sdp`/`rtp` -> `calls` (+ `media`) -> `lines` -> `detect` -> `alert`,
//! with `model` (plain data passed between stages), `config`, `engine` (the stages wired for one
//! thread, shared by offline analysis and the daemon) and the binary edge (`cli`) around them.
//! Nothing below the daemon reads a clock: packet time drives everything.

pub mod model;
pub mod config;
pub mod capture;
pub mod decode;
pub mod sip;
pub mod sdp;
pub mod rtp;
pub mod media;
pub mod calls;
pub mod engine;
pub mod lines;
pub mod detect;
pub mod alert;
pub mod daemon;
pub mod report;
pub mod simulate;
pub mod analyze;
pub mod cli;
pub mod corpus;
