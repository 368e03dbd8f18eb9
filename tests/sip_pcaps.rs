//! Every SIP message inside the public captures: found by content (`looks_like_sip`), parsed
//! without panic, and counted against what tshark found in the same files (SOURCES.md).
//!
//! Packet decoding here is deliberately minimal (Ethernet/SLL/raw IP, no reassembly): the
//! `decode` stage does the real work; this test only feeds real SIP payloads to the parser.

use simboxd::corpus::{corpus_dir, files_under};
use simboxd_core::sdp;
use simboxd_core::sip::{self, Limits};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Default, Debug)]
struct Tally {
    udp_sip: u32,
    tcp_sip: u32,
    ok: u32,
    sdp_ok: u32,
    errors: BTreeMap<&'static str, u32>,
    call_ids: BTreeSet<String>,
}

fn payloads(path: &Path, mut f: impl FnMut(bool, &[u8])) -> bool {
    let Ok(mut cap) = pcap::Capture::from_file(path) else {
        return false;
    };
    let link = cap.get_datalink().0;
    while let Ok(pkt) = cap.next_packet() {
        let data = pkt.data;
        let sliced = match link {
            1 => etherparse::SlicedPacket::from_ethernet(data),
            113 => etherparse::SlicedPacket::from_linux_sll(data),
            12 | 14 | 101 | 228 | 229 => etherparse::SlicedPacket::from_ip(data),
            0 | 108 => match data.get(4..) {
                Some(d) => etherparse::SlicedPacket::from_ip(d),
                None => continue,
            },
            _ => return true,
        };
        let Ok(mut s) = sliced else { continue };
        // One level of IP-in-IP (heplify/ipip0.pcap, sngrep/ipip.pcap).
        if s.transport.is_none() {
            let inner = s
                .ip_payload()
                .filter(|p| p.ip_number.0 == 4 || p.ip_number.0 == 41)
                .map(|p| p.payload);
            if let Some(Ok(i)) = inner.map(etherparse::SlicedPacket::from_ip) {
                s = i;
            }
        }
        match s.transport {
            Some(etherparse::TransportSlice::Udp(u)) => f(false, u.payload()),
            Some(etherparse::TransportSlice::Tcp(t)) => f(true, t.payload()),
            _ => {}
        }
    }
    true
}

fn tally(path: &Path) -> Option<Tally> {
    let lim = Limits::default();
    let mut t = Tally::default();
    let note = |t: &mut Tally, r: Result<sip::SipMessage<'_>, sip::SipError>| match r {
        Ok(m) => {
            t.ok += 1;
            if let Some(c) = m.call_id() {
                t.call_ids.insert(c.to_string());
            }
            if m.has_sdp() && sdp::parse(m.body).is_ok() {
                t.sdp_ok += 1;
            }
        }
        Err(e) => *t.errors.entry(e.kind()).or_default() += 1,
    };
    let opened = payloads(path, |tcp, p| {
        if !sip::looks_like_sip(p) {
            return;
        }
        if tcp {
            // Frame what this segment holds; a message continuing in the next segment is
            // parsed leniently as far as it goes.
            let mut rest = p;
            while sip::looks_like_sip(rest) {
                t.tcp_sip += 1;
                match sip::frame_len(rest, &lim) {
                    Ok(Some(n)) if n <= rest.len() => {
                        note(&mut t, sip::parse(&rest[..n], &lim));
                        rest = &rest[n..];
                    }
                    _ => {
                        note(&mut t, sip::parse_lenient(rest, &lim));
                        break;
                    }
                }
            }
        } else {
            t.udp_sip += 1;
            note(&mut t, sip::parse(p, &lim));
        }
    });
    opened.then_some(t)
}

#[test]
fn every_capture_sip_payload_parses_or_is_counted() {
    let Some(dir) = corpus_dir() else { return };
    let mut total = Tally::default();
    let mut files = 0;
    for p in files_under(&dir) {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "pcap" | "pcapng" | "cap") && !p.to_string_lossy().ends_with("G711") {
            continue;
        }
        let Some(t) = tally(&p) else { continue };
        files += 1;
        if t.udp_sip + t.tcp_sip > 0 {
            eprintln!(
                "{}: udp={} tcp={} ok={} sdp={} callids={} errors={:?}",
                p.strip_prefix(&dir).unwrap().display(),
                t.udp_sip,
                t.tcp_sip,
                t.ok,
                t.sdp_ok,
                t.call_ids.len(),
                t.errors
            );
        }
        total.udp_sip += t.udp_sip;
        total.tcp_sip += t.tcp_sip;
        total.ok += t.ok;
        total.sdp_ok += t.sdp_ok;
        for (k, v) in t.errors {
            *total.errors.entry(k).or_default() += v;
        }
    }
    eprintln!(
        "{files} captures: {} UDP + {} TCP SIP payloads, {} parsed, {} SDP bodies, errors {:?}",
        total.udp_sip, total.tcp_sip, total.ok, total.sdp_ok, total.errors
    );
    assert!(files >= 20, "{files}");
    let seen = total.udp_sip + total.tcp_sip;
    assert!(seen >= 1000, "{seen}");
    // Almost everything that starts like SIP is real SIP and must parse; the rest are the
    // PROTOS-fuzzed INVITEs and cut TCP segments, counted by kind.
    assert!(f64::from(total.ok) >= 0.95 * f64::from(seen), "{total:?}");
}

#[test]
fn counts_match_tshark_on_known_captures() {
    let Some(dir) = corpus_dir() else { return };
    // (file, SIP over UDP, distinct Call-IDs) as tshark counted them (SOURCES.md).
    for (rel, udp, callids) in [
        ("nDPI/sip.pcap", 81, 6),
        ("sngrep/aaa.pcap", 81, 6),
        ("heplify/ipip0.pcap", 8, 3),
        ("nDPI/FAX-Call-t38-CA-TDM-SIP-FB-1.pcap", 92, 2),
        ("sipnab/pcap-samples/b2bua-asterisk.pcapng", 60, 12),
        ("sipnab/pcap-samples/sip-routing-error.pcapng", 58, 18),
        (
            "sipnab/pcap-samples/sipp-branch-scenario.pcapng",
            8989,
            1334,
        ),
        ("sipnab/fixtures/udp_5060.pcap", 10, 0),
    ] {
        let t = tally(&dir.join(rel)).unwrap_or_else(|| panic!("{rel}: cannot open"));
        assert_eq!(t.udp_sip, udp, "{rel}: {t:?}");
        assert_eq!(t.ok, udp, "{rel}: {t:?}");
        assert_eq!(t.call_ids.len(), callids, "{rel}: {t:?}");
    }

    // PcapPlusPlus/sip_reqs.pcap: two of its four requests ride PPPoE (not decoded here); the
    // BYE's datagram ends inside a header line ("Content-Lengt"): strictly `truncated`,
    // leniently its headers (Call-ID, CSeq) are kept.
    let t = tally(&dir.join("PcapPlusPlus/sip_reqs.pcap")).unwrap();
    assert_eq!((t.udp_sip, t.ok), (2, 1), "{t:?}");
    assert_eq!(t.errors.get("truncated"), Some(&1), "{t:?}");
}
