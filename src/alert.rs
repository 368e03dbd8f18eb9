//! alert (being implemented).
