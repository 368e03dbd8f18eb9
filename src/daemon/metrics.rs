//! The daemon's exposition types, now those of `crate::metrics` (encoded by
//! `prometheus-client`); the names stay so that `runtime::render_metrics` reads the same.

pub use crate::metrics::{Kind, Labels, Sample, Snapshot as Exposition};
