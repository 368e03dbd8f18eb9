//! The daemon's exposition types, now those of `crate::metrics` (encoded by
//! `prometheus-client`); the names stay so that the daemon's metrics table
//! (`runtime::metrics`) and `central` read the same.

pub use crate::metrics::{Kind, Labels, Sample, Snapshot as Exposition};
