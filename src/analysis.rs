//! The result of an offline analysis: what `analyze` fills and prints (`Analysis`, field
//! names a contract other tools read), and what the report, evidence and evaluation read;
//! with the file digest (`sha256_file`) every output that names its inputs uses.
//!
//! Contract: data only, no analysis run here; a leaf among the application's modules (the
//! report and evidence import it, not `analyze`).

use crate::input::InputInfo;
use serde::Serialize;
use sha2::{Digest, Sha256};
use simboxd_core::engine::EngineStats;
use simboxd_core::model::{
    CallRecord, Counters, MediaFlowRecord, Reason, RegistrationRecord, Timestamp, VerdictLevel,
};
use simboxd_core::threats::Threat;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct CaptureInfo {
    /// The input's name (`-`: standard input); several inputs: their names joined by ", ".
    pub file: String,
    /// SHA-256 of the input; several inputs: of their `sha256sum` listing (`HASH  NAME` lines in
    /// the order given), each input's own hash being in `inputs`.
    pub sha256: String,
    /// Bytes read (all inputs).
    pub size: u64,
    pub packets: u64,
    pub bytes: u64,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    /// Every input: name, size, SHA-256, format, compression, packets, first/last packet and
    /// where it was cut off (`truncated`), in the order given.
    pub inputs: Vec<InputInfo>,
    /// An input was cut off or damaged: the analysis covers it up to the cut only.
    pub truncated: bool,
}

impl CaptureInfo {
    /// The capture facts of `inputs` read into an engine that saw `st`.
    pub fn of_inputs(inputs: Vec<InputInfo>, st: &EngineStats) -> CaptureInfo {
        let (file, sha256) = match inputs.as_slice() {
            [one] => (one.file.clone(), one.sha256.clone()),
            many => {
                let listing: String = many
                    .iter()
                    .map(|i| format!("{}  {}\n", i.sha256, i.file))
                    .collect();
                (
                    many.iter()
                        .map(|i| i.file.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    hex::encode(Sha256::digest(listing.as_bytes())),
                )
            }
        };
        CaptureInfo {
            file,
            sha256,
            size: inputs.iter().map(|i| i.size).sum(),
            packets: st.packets,
            bytes: st.bytes,
            start: st.first,
            end: st.last,
            truncated: inputs.iter().any(|i| i.truncated.is_some()),
            inputs,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub sip_messages: u64,
    /// Distinct INVITE dialogs.
    pub calls: u64,
    pub registrations: u64,
    pub rtp_streams: u64,
    pub rtp_packets: u64,
    pub media_flows: u64,
    pub decode_errors: Counters,
    /// Well-formed packets of protocols not analysed (ARP, STP, ICMP, ...), by kind: not errors.
    pub decode_skipped: Counters,
    pub evictions: Counters,
    /// Records counted but not kept (beyond `MAX_RECORDS`).
    pub records_dropped: u64,
}

/// One line (subscriber address) seen in the capture.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LineEntry {
    pub line: Option<IpAddr>,
    /// Detection's verdict (absent when detection did not score the line).
    pub verdict: Option<VerdictLevel>,
    pub score: Option<f64>,
    /// Capture time when the verdict first became `gateway`.
    pub flagged_at: Option<Timestamp>,
    pub site: Option<String>,
    pub reasons: Vec<Reason>,
    pub calls: u64,
    pub inbound_calls: u64,
    pub outbound_calls: u64,
    pub answered_calls: u64,
    /// Calls in progress at once, at most (`figures::max_concurrent`).
    pub max_concurrent_calls: u32,
    /// Calls still open when the capture ended (drawn and counted until its last packet).
    pub open_calls_at_end: u64,
    pub distinct_called_numbers: u64,
    /// Inbound calls the line took part in (`figures::is_taken_inbound`): the only inbound
    /// calls detection judges the line on. The rest were offers it rejected or ignored, or
    /// answered without relaying voice.
    pub inbound_calls_taken: u64,
    /// Of those, calls the line answered.
    pub inbound_calls_taken_answered: u64,
    /// Distinct numbers called on the calls the line took part in.
    pub distinct_called_numbers_taken: u64,
    /// Exact median talk time of the line's answered inbound calls (what detection judges).
    pub median_talk_secs_inbound: Option<f64>,
    pub peers: Vec<String>,
    pub registrations: u64,
    pub media_flows: u64,
    pub voice_flows_without_sip: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    pub capture: CaptureInfo,
    /// The home and domestic prefixes the run used.
    pub network: simboxd_core::config::NetworkConfig,
    pub stats: Stats,
    pub calls: Vec<CallRecord>,
    pub registrations: Vec<RegistrationRecord>,
    pub media_flows: Vec<MediaFlowRecord>,
    pub lines: Vec<LineEntry>,
    /// Attacks on lines, about the attacking peer (scan, enumeration, toll_fraud_attempt,
    /// flood, framing) and lines that relayed toll fraud (compromised_pbx); highest severity
    /// first. Never a finding against a targeted line except `compromised_pbx`.
    pub threats: Vec<Threat>,
}

/// Streams the file through SHA-256.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
