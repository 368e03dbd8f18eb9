//! report (being implemented).
