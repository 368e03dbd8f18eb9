//! Evidence export: per flagged line, a pcap with its SIP signalling and a bounded sample of its
//! media, plus `manifest.json` with the SHA-256 of every file written and of the source capture.
//!
//! Contract: packets are copied unchanged (original link type and timestamps) from the source
//! capture(s) in a second pass (through `input::Inputs`, merged in time order as analysed; a
//! pcapng file when the inputs have several link types, else a pcap); the manifest lets an investigator verify nothing was altered. A
//! folder holds one run only: export refuses a non-empty folder, so every file in it is listed
//! in its manifest. A requested line with no packet gets no file and is listed as such.

use crate::input::{InputInfo, Inputs};
use serde::Serialize;
use simboxd_core::config::LimitsConfig;
use simboxd_core::decode::Decoder;
use simboxd_core::model::Transport;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Media packets kept per line (the signalling is kept whole).
pub const MEDIA_SAMPLE_PER_LINE: u64 = 2000;

#[derive(Debug, Serialize)]
pub struct ManifestFile {
    pub file: String,
    pub line: String,
    pub sha256: String,
    pub bytes: u64,
    pub packets: u64,
    pub sip_packets: u64,
    pub media_packets: u64,
}

/// One input the evidence was cut from.
#[derive(Debug, Serialize)]
pub struct ManifestInput {
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct Manifest {
    pub source: String,
    /// The capture's SHA-256 as `analyze` states it (several inputs: of their listing).
    pub source_sha256: String,
    /// Every input with its size and SHA-256 (standard input cannot be read twice: never here).
    pub inputs: Vec<ManifestInput>,
    pub simboxd_version: String,
    pub media_sample_per_line: u64,
    pub files: Vec<ManifestFile>,
    /// Version and git commit of the build (`report::provenance::build`).
    pub build: String,
    /// Wall-clock creation time (RFC 3339 UTC).
    pub created: Option<String>,
    pub command_line: Vec<String>,
    pub case: Option<String>,
    pub examiner: Option<String>,
    /// The report written by the same run, with its SHA-256.
    pub report: Option<ReportRef>,
    /// Requested lines with no packet in the capture: no file was written for them.
    pub lines_without_traffic: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReportRef {
    pub file: String,
    pub sha256: String,
}

/// What the manifest records about the run that made it.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub created: String,
    pub command_line: Vec<String>,
    pub case: Option<String>,
    pub examiner: Option<String>,
    pub report: Option<ReportRef>,
}

/// Refuses a folder that exists and holds anything: its files would sit beside this run's
/// without being in its manifest.
pub fn check_empty_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => {
            if it.next().is_some() {
                anyhow::bail!(
                    "evidence folder {} is not empty: give a new or empty folder, so that every file in it belongs to this run and is listed in its manifest",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!("evidence folder {}: {e}", dir.display())),
    }
}

/// Source and destination of an IP fragment on an Ethernet or raw-IP link (outer header only).
fn fragment_addrs(link: simboxd_core::model::LinkType, data: &[u8]) -> Option<(IpAddr, IpAddr)> {
    use etherparse::{LaxNetSlice, LaxSlicedPacket};
    use simboxd_core::model::LinkType;
    let p = match link {
        LinkType::ETHERNET => LaxSlicedPacket::from_ethernet(data).ok()?,
        LinkType::RAW | LinkType::IPV4 | LinkType::IPV6 => LaxSlicedPacket::from_ip(data).ok()?,
        _ => return None,
    };
    match p.net? {
        LaxNetSlice::Ipv4(v4) if v4.is_payload_fragmented() => {
            let h = v4.header();
            Some((h.source_addr().into(), h.destination_addr().into()))
        }
        LaxNetSlice::Ipv6(v6) if v6.is_payload_fragmented() => {
            let h = v6.header();
            Some((h.source_addr().into(), h.destination_addr().into()))
        }
        _ => None,
    }
}

fn file_name(line: IpAddr) -> String {
    format!("line-{}.pcap", line.to_string().replace(':', "_"))
}

/// An evidence file being written: pcap for one link type, pcapng for several.
enum Writer {
    Pcap(pcap::Savefile),
    Ng(crate::pcapng_out::PcapngWriter<std::io::BufWriter<std::fs::File>>),
}

struct Out {
    save: Writer,
    path: PathBuf,
    packets: u64,
    sip: u64,
    media: u64,
}

/// Writes the evidence files for `lines` cut from `capture` into `dir` with the run's facts in
/// the manifest (also written), and returns the manifest.
pub fn export_run(
    capture: &Path,
    source_sha256: &str,
    limits: &LimitsConfig,
    lines: &[IpAddr],
    dir: &Path,
    run: &RunInfo,
) -> anyhow::Result<Manifest> {
    let file = capture.display().to_string();
    let size = std::fs::metadata(capture).map(|m| m.len()).unwrap_or(0);
    let input = InputInfo {
        file,
        sha256: source_sha256.to_string(),
        size,
        format: "pcap",
        compression: None,
        packets: 0,
        link_types: Vec::new(),
        first: None,
        last: None,
        truncated: None,
    };
    export_inputs(&[input], source_sha256, limits, lines, dir, run)
}

/// Writes the evidence for `lines` cut from `inputs` (as the analysis read them; each is
/// checked to hash the same the second time) into `dir`, with the run's facts in the manifest.
pub fn export_inputs(
    inputs: &[InputInfo],
    source_sha256: &str,
    limits: &LimitsConfig,
    lines: &[IpAddr],
    dir: &Path,
    run: &RunInfo,
) -> anyhow::Result<Manifest> {
    check_empty_dir(dir)?;
    std::fs::create_dir_all(dir)?;
    let names: Vec<PathBuf> = inputs.iter().map(|i| PathBuf::from(&i.file)).collect();
    let mut cap = Inputs::open(&names)?;
    let mut links: Vec<i32> = inputs
        .iter()
        .flat_map(|i| i.link_types.iter().copied())
        .collect();
    links.sort_unstable();
    links.dedup();
    // One link type (or unknown until read, as for `export_run`): a pcap of the first packet's
    // link type; several: pcapng.
    let several = links.len() > 1;
    let mut pcap_link: Option<pcap::Linktype> = links.first().map(|l| pcap::Linktype(*l));
    let mut outs: BTreeMap<IpAddr, Out> = BTreeMap::new();
    let mut decoder = Decoder::new(limits);
    // (line, is_sip) hits of the current packet; small and reused.
    let mut hits: Vec<(IpAddr, bool)> = Vec::with_capacity(4);
    let mut written: Vec<IpAddr> = Vec::with_capacity(4);
    let mut opened = false;
    while let Some(pkt) = cap.next_packet()? {
        if !opened {
            opened = true;
            let link = *pcap_link.get_or_insert(pcap::Linktype(pkt.link.0));
            open_outs(&mut outs, lines, dir, several, link)?;
        }
        hits.clear();
        decoder.decode(&pkt, &mut |d| {
            let sip = simboxd_core::sip::looks_like_sip(d.payload);
            if !sip && d.transport != Transport::Udp {
                return;
            }
            for ip in [d.src.ip(), d.dst.ip()] {
                if outs.contains_key(&ip) && !hits.contains(&(ip, sip)) {
                    hits.push((ip, sip));
                }
            }
        });
        // A fragment of a datagram still being reassembled yields nothing yet: keep fragments of
        // the exported lines as signalling (large INVITEs are what gets fragmented), so the
        // evidence holds every piece of the message, not only the last.
        if hits.is_empty() {
            if let Some((a, b)) = fragment_addrs(pkt.link, pkt.data) {
                for ip in [a, b] {
                    if outs.contains_key(&ip) && !hits.contains(&(ip, true)) {
                        hits.push((ip, true));
                    }
                }
            }
        }
        written.clear();
        for &(ip, sip) in &hits {
            if written.contains(&ip) {
                continue;
            }
            let Some(o) = outs.get_mut(&ip) else { continue };
            if !sip && o.media >= MEDIA_SAMPLE_PER_LINE {
                continue;
            }
            match &mut o.save {
                Writer::Pcap(save) => {
                    let header = pcap::PacketHeader {
                        ts: libc_timeval(pkt.ts.micros()),
                        caplen: pkt.data.len() as u32,
                        len: pkt.wire_len,
                    };
                    save.write(&pcap::Packet::new(&header, pkt.data));
                }
                Writer::Ng(w) => w.packet(pkt.ts, pkt.link, pkt.data, pkt.wire_len)?,
            }
            o.packets += 1;
            if sip {
                o.sip += 1;
            } else {
                o.media += 1;
            }
            written.push(ip);
        }
    }
    let again = cap.finish();
    for (first, second) in inputs.iter().zip(&again) {
        if !first.sha256.is_empty() && first.sha256 != second.sha256 {
            anyhow::bail!(
                "{}: changed between the analysis and the evidence export (SHA-256 {} then {})",
                first.file,
                first.sha256,
                second.sha256
            );
        }
    }
    if !opened {
        // No packet at all: every requested line is without traffic (no file written).
        open_outs(
            &mut outs,
            lines,
            dir,
            several,
            pcap_link.unwrap_or(pcap::Linktype(1)),
        )?;
    }
    let mut files = Vec::new();
    let mut lines_without_traffic = Vec::new();
    for (line, o) in outs {
        match o.save {
            Writer::Pcap(mut save) => save.flush()?,
            Writer::Ng(w) => {
                w.finish()?;
            }
        }
        if o.packets == 0 {
            // An empty pcap would look like evidence of silence; say it plainly instead.
            std::fs::remove_file(&o.path)?;
            lines_without_traffic.push(line.to_string());
            continue;
        }
        let sha256 = crate::analysis::sha256_file(&o.path)?;
        let bytes = std::fs::metadata(&o.path)?.len();
        files.push(ManifestFile {
            file: o
                .path
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default(),
            line: line.to_string(),
            sha256,
            bytes,
            packets: o.packets,
            sip_packets: o.sip,
            media_packets: o.media,
        });
    }
    let manifest = Manifest {
        source: inputs
            .iter()
            .map(|i| i.file.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        source_sha256: source_sha256.to_string(),
        inputs: again
            .iter()
            .map(|i| ManifestInput {
                file: i.file.clone(),
                size: i.size,
                sha256: i.sha256.clone(),
            })
            .collect(),
        simboxd_version: env!("CARGO_PKG_VERSION").to_string(),
        media_sample_per_line: MEDIA_SAMPLE_PER_LINE,
        files,
        build: crate::report::provenance::build(),
        created: (!run.created.is_empty()).then(|| run.created.clone()),
        command_line: run.command_line.clone(),
        case: run.case.clone(),
        examiner: run.examiner.clone(),
        report: run.report.clone(),
        lines_without_traffic,
    };
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    Ok(manifest)
}

/// Creates the evidence file of every line: pcap of `link`, or pcapng with `several`.
fn open_outs(
    outs: &mut BTreeMap<IpAddr, Out>,
    lines: &[IpAddr],
    dir: &Path,
    several: bool,
    link: pcap::Linktype,
) -> anyhow::Result<()> {
    let dead = pcap::Capture::dead(link)?;
    for &l in lines {
        let name = file_name(l);
        let (path, save) = if several {
            let path = dir.join(format!("{name}ng"));
            let f = std::io::BufWriter::new(std::fs::File::create(&path)?);
            (path, Writer::Ng(crate::pcapng_out::PcapngWriter::new(f)?))
        } else {
            let path = dir.join(&name);
            let save = dead.savefile(&path)?;
            (path, Writer::Pcap(save))
        };
        outs.insert(
            l,
            Out {
                save,
                path,
                packets: 0,
                sip: 0,
                media: 0,
            },
        );
    }
    Ok(())
}

fn libc_timeval(us: i64) -> libc::timeval {
    libc::timeval {
        tv_sec: us.div_euclid(1_000_000) as libc::time_t,
        tv_usec: us.rem_euclid(1_000_000) as libc::suseconds_t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_file_names_have_no_colons() {
        assert_eq!(file_name("fd00::1".parse().unwrap()), "line-fd00__1.pcap");
    }
}
