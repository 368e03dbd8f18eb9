//! daemon (being implemented).
