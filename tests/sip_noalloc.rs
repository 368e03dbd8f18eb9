//! The SIP and SDP parsers and their accessors never touch the heap: a counting allocator sees no
//! allocation on this thread while a full INVITE with SDP is parsed and read.

use simboxd_core::{sdp, sip};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

const INVITE: &[u8] = b"INVITE sip:+8613812345678@198.51.100.7:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
v: SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK2, SIP/2.0/UDP 10.0.0.3\r\n\
Max-Forwards: 70\r\n\
To: <sip:+8613812345678@198.51.100.7>\r\n\
f: \"Alice, A\" <sip:alice@203.0.113.10>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@203.0.113.10:5070>;expires=60\r\n\
User-Agent: DBL GoIP\r\n\
Subject: folded\r\n value\r\n\
Allow: INVITE, ACK, BYE, CANCEL\r\n\
Expires: 120\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 142\r\n\
\r\n\
v=0\r\n\
o=DBL 1 1 IN IP4 203.0.113.10\r\n\
s=DBL\r\n\
c=IN IP4 203.0.113.10\r\n\
t=0 0\r\n\
m=audio 4000 RTP/AVP 18 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n";

#[test]
fn parsing_and_accessors_do_not_allocate() {
    let lim = sip::Limits::default();
    // Warm up anything lazily initialised by the test harness on this thread.
    let _ = allocs();
    let before = allocs();
    let m = sip::parse(INVITE, &lim).unwrap();
    let mut n = 0usize;
    n += m.call_id().map_or(0, str::len);
    n += m.cseq().map_or(0, |c| c.0 as usize);
    n += m.from().and_then(|f| f.tag).map_or(0, str::len);
    n += m.to().and_then(|t| t.user).map_or(0, str::len);
    n += m.contact().and_then(|c| c.port).map_or(0, usize::from);
    n += m.contact_expires().map_or(0, |e| e as usize);
    n += m.vias().count();
    n += m.top_via().and_then(|v| v.branch).map_or(0, str::len);
    n += m.request_uri().and_then(|u| u.number()).map_or(0, str::len);
    n += m.header_values("allow").count();
    n += m.expires().map_or(0, |e| e as usize);
    n += m.user_agent().map_or(0, str::len) + m.header("subject").map_or(0, str::len);
    assert!(m.has_sdp());
    let s = sdp::parse(m.body).unwrap();
    let a = s.audio().unwrap();
    n += a.codec_names().count();
    n += a.rtp_endpoint().map_or(0, |e| usize::from(e.port()));
    n += usize::from(sip::looks_like_sip(INVITE));
    n += sip::frame_len(INVITE, &lim).unwrap().unwrap_or(0);
    let after = allocs();
    assert_eq!(after - before, 0, "heap allocations while parsing");
    // The values were really read (and are what the message says).
    assert_eq!(m.vias().count(), 3);
    assert_eq!(
        a.codec_names().collect::<Vec<_>>(),
        ["G729", "telephone-event"]
    );
    assert!(n > 0);
}
