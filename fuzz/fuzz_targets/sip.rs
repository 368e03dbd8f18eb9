//! SIP parser: no panic, no out-of-bounds body, accessors safe on whatever parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use simboxd_core::{sdp, sip};

fuzz_target!(|data: &[u8]| {
    let lim = sip::Limits::default();
    let _ = sip::looks_like_sip(data);
    if let Ok(Some(n)) = sip::frame_len(data, &lim) {
        assert!(n <= lim.max_message);
    }
    for m in [sip::parse(data, &lim), sip::parse_lenient(data, &lim)]
        .into_iter()
        .flatten()
    {
        assert!(m.body.len() <= data.len());
        let _ = (
            m.call_id(),
            m.cseq(),
            m.from(),
            m.to(),
            m.contact(),
            m.top_via(),
        );
        let _ = (
            m.request_uri(),
            m.expires(),
            m.contact_expires(),
            m.status(),
        );
        let _ = (m.user_agent(), m.server(), m.allow(), m.content_length());
        let _ = m.contacts().count() + m.vias().count();
        for h in m.headers.iter() {
            let _ = m.header_values(h.name).count();
        }
        if m.has_sdp() {
            let _ = sdp::parse(m.body);
        }
    }
});
