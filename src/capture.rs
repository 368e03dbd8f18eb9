//! Capture: reads packets from a pcap/pcapng file or a live interface with libpcap.
//!
//! Contract: yields `RawPacket`s in capture order with packet time; never interprets bytes.
//! Live capture reports libpcap/kernel drop counters. (Being implemented.)
