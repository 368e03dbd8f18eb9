//! sdp (being implemented).
