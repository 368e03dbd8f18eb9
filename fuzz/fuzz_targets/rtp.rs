//! RTP/RTCP parsers and stream statistics: no panic; lengths stay inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use simboxd_core::model::Timestamp;
use simboxd_core::rtp;

fuzz_target!(|data: &[u8]| {
    let _ = rtp::parse_rtcp(data);
    let _ = rtp::looks_like_rtp(data);
    if let Ok(h) = rtp::parse(data) {
        assert!(h.header_len + h.payload_len <= data.len());
        // Feed the same header repeatedly with shifted fields: exercises the A.1/A.8 state.
        let a = "10.0.0.1:1".parse().unwrap();
        let b = "10.0.0.2:2".parse().unwrap();
        let mut s = rtp::StreamStats::new(
            a,
            b,
            &h,
            Timestamp(0),
            rtp::clock_rate(h.payload_type, None),
        );
        for (i, chunk) in data.chunks(3).enumerate() {
            let mut h2 = h;
            h2.seq = h.seq.wrapping_add(u16::from(*chunk.first().unwrap_or(&0)));
            h2.timestamp = h.timestamp.wrapping_mul(i as u32 + 1);
            s.update(
                &h2,
                Timestamp(i as i64 * i64::from(*chunk.last().unwrap_or(&1))),
                data.len(),
            );
        }
        assert!(s.jitter_ms().is_finite());
        let _ = s.to_record();
    }
});
