//! detect (being implemented).
