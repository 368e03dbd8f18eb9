//! Memory per line of the line table: 1 M synthetic lines, each fed a registration and a few
//! calls, then left idle. Bytes are counted by a global allocator wrapper (live heap bytes), so
//! the figure includes the profiles, the LRU slab, the index and any per-line heap. Prints bytes
//! per line and ingest/evaluate rates. `cargo bench --bench lines_memory [-- LINES]`.

use simboxd_core::config::NetworkConfig;
use simboxd_core::detect::synth::{at, Builder, CallSpec};
use simboxd_core::detect::{DetectionConfig, LineTable};
use simboxd_core::model::{Direction, Event, Outcome};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A line's few events: one registration, two inbound and one outbound call.
fn events(ip: IpAddr, k: u64) -> Vec<Event> {
    let mut b = Builder::new(ip, k);
    let peer: SocketAddr = "198.51.100.20:5060"
        .parse()
        .unwrap_or(SocketAddr::from(([198, 51, 100, 20], 5060)));
    let t = (k % 3600) as f64;
    b.register(&format!("{k}@voip.example"), peer, t, 3600);
    for (i, dir) in [Direction::Inbound, Direction::Inbound, Direction::Outbound]
        .into_iter()
        .enumerate()
    {
        let spec = CallSpec {
            direction: dir,
            peer,
            from: "+31205550000".into(),
            to: format!("+3120{}", 5_000_000 + k % 1_000_000),
            start: t + 60.0 * i as f64,
            ring: 4.0,
            talk: Some(30.0),
            fail: Outcome::NoAnswer,
            codec: "PCMA",
            media: true,
            early_media: false,
        };
        b.call(&spec);
    }
    b.finish()
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: a small smoke run then.
    let full = std::env::args().any(|a| a == "--bench");
    let lines: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 10_000 });
    let cfg = DetectionConfig {
        max_lines: lines as usize,
        ..Default::default()
    };
    let net = NetworkConfig::default();
    let base = LIVE.load(Ordering::Relaxed);
    let mut table = LineTable::new(&cfg, &net);
    let t0 = Instant::now();
    let mut n_events = 0u64;
    for k in 0..lines {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + k));
        for e in events(ip, u64::from(k)) {
            table.on_event(&e);
            n_events += 1;
        }
        if k % 100_000 == 99_999 {
            table.evaluate(at(4000.0));
        }
    }
    let ingest = t0.elapsed();
    let t1 = Instant::now();
    table.evaluate(at(4000.0));
    let eval = t1.elapsed();
    let live = LIVE.load(Ordering::Relaxed).saturating_sub(base);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    println!("lines_memory: {} lines, {} events", table.len(), n_events);
    println!(
        "  live heap {:.1} MiB = {:.0} bytes per line (peak {:.0} bytes per line)",
        live as f64 / 1048576.0,
        live as f64 / f64::from(lines),
        peak as f64 / f64::from(lines)
    );
    println!(
        "  size_of Profile {} bytes; ingest {:.2} s ({:.2} M events/s); final evaluate {:.2} s",
        std::mem::size_of::<simboxd_core::lines::Profile>(),
        ingest.as_secs_f64(),
        n_events as f64 / ingest.as_secs_f64() / 1e6,
        eval.as_secs_f64()
    );
    let target = 2048.0;
    let per_line = live as f64 / f64::from(lines);
    println!(
        "  target <= {target:.0} bytes per idle line: {}",
        if per_line <= target { "met" } else { "MISSED" }
    );
}
