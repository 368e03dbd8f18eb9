//! Decode: link layer -> tags/tunnels -> IP (with fragment reassembly) -> UDP/TCP (with SIP framing).
//! (Being implemented.) Contract: see `Decoder`.

use crate::config::LimitsConfig;
use crate::model::{Counters, Datagram, RawPacket, Timestamp};

pub struct Decoder {
    errors: Counters,
    evictions: Counters,
}

impl Decoder {
    pub fn new(_limits: &LimitsConfig) -> Self {
        Decoder {
            errors: Counters::default(),
            evictions: Counters::default(),
        }
    }
    /// Decodes one packet and calls `out` for every transport payload in it: none, one, or
    /// several (tunnels, several SIP messages in one TCP segment).
    pub fn decode(&mut self, _pkt: &RawPacket<'_>, _out: &mut dyn FnMut(&Datagram<'_>)) {}
    /// Drops fragment reassemblies and TCP streams idle at `now`.
    pub fn expire(&mut self, _now: Timestamp) {}
    /// Decode stops by layer.
    pub fn errors(&self) -> &Counters {
        &self.errors
    }
    pub fn table_sizes(&self) -> Vec<(&'static str, usize)> {
        Vec::new()
    }
    /// Evictions by table (`fragments`, `tcp_streams`).
    pub fn evictions(&self) -> &Counters {
        &self.evictions
    }
}
