//! engine (being implemented).
