//! lines (being implemented).
