//! The decoder's hot path does not allocate: once warmed up (counter keys created), decoding
//! plain UDP traffic again performs no heap allocation at all.

use simboxd_core::config::LimitsConfig;
use simboxd_core::decode::Decoder;
use simboxd_core::model::{LinkType, RawPacket, Timestamp};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts calls made on the current thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

#[test]
fn udp_hot_path_does_not_allocate() {
    let Some(dir) = simboxd::corpus::corpus_dir() else {
        return;
    };
    // Ethernet, SIP over UDP with RTP, ARP and other non-IP frames (no fragments, no SIP/TCP).
    let path = dir.join("sngrep/aaa.pcap");
    let mut cap = simboxd::capture::Capture::open_file(&path).unwrap();
    let mut frames: Vec<(Timestamp, LinkType, Vec<u8>)> = Vec::new();
    while let Some(p) = cap.next_packet().unwrap() {
        frames.push((p.ts, p.link, p.data.to_vec()));
    }
    assert_eq!(frames.len(), 691);
    let mut dec = Decoder::new(&LimitsConfig::default());
    let mut bytes = 0usize;
    let mut pass = |dec: &mut Decoder| {
        for (ts, link, data) in &frames {
            let pkt = RawPacket {
                ts: *ts,
                link: *link,
                data,
                wire_len: data.len() as u32,
            };
            dec.decode(&pkt, &mut |d| bytes += d.payload.len());
        }
    };
    let start = allocs();
    pass(&mut dec);
    // The first pass creates the `not_ip` counter key: proof that counting works.
    assert!(allocs() > start);
    let before = allocs();
    pass(&mut dec);
    let during = allocs() - before;
    assert_eq!(during, 0, "allocations while decoding 691 frames");
    assert!(bytes > 0);
}
