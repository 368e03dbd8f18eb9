//! rtp (being implemented).
