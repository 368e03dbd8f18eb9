//! media (being implemented).
