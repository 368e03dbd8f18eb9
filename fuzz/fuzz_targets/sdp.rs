//! SDP parser: no panic, bounds respected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use simboxd_core::sdp;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = sdp::parse(data) {
        assert!(s.media.len() <= sdp::MAX_MEDIA);
        for m in s.media.iter() {
            assert!(m.payload_types.len() <= sdp::MAX_PAYLOAD_TYPES);
            let _ = m.codec_names().count();
            let _ = m.rtp_endpoint();
        }
    }
});
