//! sip (being implemented).
