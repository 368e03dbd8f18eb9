//! `simboxd analyze` on every form of capture Wireshark opens (issue 15, point 4): the shipped
//! sample rewritten as big-endian and nanosecond pcap, pcapng with two link types (Ethernet and
//! raw IP, merged by `mergecap`), gzip-compressed under a name that does not say so, standard
//! input, a ring of files (`editcap -c`) given out of order, cut off (exit code 3 and a flag in
//! the JSON), empty, and not a capture at all. The files are made here, with editcap/mergecap
//! (Debian's wireshark-common) and gzip, or in code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap")
}

fn tool(name: &str) -> bool {
    let ok = Command::new(name)
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is missing (scripts/setup.sh installs it)"
        );
        eprintln!("skipped: {name} not installed (scripts/setup.sh installs it)");
    }
    ok
}

fn analyze(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_simboxd"));
    c.arg("analyze")
        .args(args)
        .args(["--domestic-net", "198.18.0.0/15", "--quiet"]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().expect("simboxd runs");
    if let Some(bytes) = stdin {
        let mut s = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = s.write_all(&bytes);
        });
    }
    child.wait_with_output().expect("simboxd ends")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// What must not change with the container: packets, SIP, calls and every line's verdict.
fn essence(j: &serde_json::Value) -> serde_json::Value {
    let lines: Vec<serde_json::Value> = j["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            serde_json::json!([
                l["line"],
                l["verdict"],
                l["score"],
                l["calls"],
                l["max_concurrent_calls"]
            ])
        })
        .collect();
    serde_json::json!({
        "packets": j["capture"]["packets"],
        "bytes": j["capture"]["bytes"],
        "start": j["capture"]["start"],
        "end": j["capture"]["end"],
        "sip": j["stats"]["sip_messages"],
        "calls": j["stats"]["calls"],
        "rtp": j["stats"]["rtp_packets"],
        "lines": lines,
    })
}

fn baseline() -> serde_json::Value {
    let out = analyze(&[sample().to_str().unwrap(), "--format", "json"], None);
    assert!(out.status.success());
    json(&out)
}

/// Packets of a little-endian microsecond pcap: (seconds, microseconds, wire length, bytes).
fn read_pcap(bytes: &[u8]) -> Vec<(u32, u32, u32, Vec<u8>)> {
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    let u = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let (sec, usec, cap, len) = (u(off), u(off + 4), u(off + 8) as usize, u(off + 12));
        out.push((sec, usec, len, bytes[off + 16..off + 16 + cap].to_vec()));
        off += 16 + cap;
    }
    out
}

/// A pcap file: big-endian or not, nanosecond times or not.
fn write_pcap(
    link: u32,
    packets: &[(u32, u32, u32, Vec<u8>)],
    big_endian: bool,
    nanos: bool,
) -> Vec<u8> {
    let w32 = |b: &mut Vec<u8>, v: u32| {
        if big_endian {
            b.extend_from_slice(&v.to_be_bytes())
        } else {
            b.extend_from_slice(&v.to_le_bytes())
        }
    };
    let w16 = |b: &mut Vec<u8>, v: u16| {
        if big_endian {
            b.extend_from_slice(&v.to_be_bytes())
        } else {
            b.extend_from_slice(&v.to_le_bytes())
        }
    };
    let mut b = Vec::new();
    w32(&mut b, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    w16(&mut b, 2);
    w16(&mut b, 4);
    w32(&mut b, 0);
    w32(&mut b, 0);
    w32(&mut b, 65535);
    w32(&mut b, link);
    for (sec, usec, len, data) in packets {
        w32(&mut b, *sec);
        w32(&mut b, if nanos { usec * 1000 } else { *usec });
        w32(&mut b, data.len() as u32);
        w32(&mut b, *len);
        b.extend_from_slice(data);
    }
    b
}

/// The IP packet inside an Ethernet frame (one VLAN tag at most, as in the sample).
fn strip_ethernet(frame: &[u8]) -> Vec<u8> {
    let at = if frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    };
    frame[at..].to_vec()
}

#[test]
fn pcap_byte_orders_and_nanoseconds_read_alike() {
    let base = essence(&baseline());
    let dir = tempfile::tempdir().unwrap();
    let packets = read_pcap(&std::fs::read(sample()).unwrap());
    for (be, ns) in [(true, false), (false, true), (true, true)] {
        let p = dir.path().join(format!("be{be}-ns{ns}.pcap"));
        std::fs::write(&p, write_pcap(1, &packets, be, ns)).unwrap();
        let out = analyze(&[p.to_str().unwrap(), "--format", "json"], None);
        assert!(out.status.success(), "{be} {ns}");
        let j = json(&out);
        assert_eq!(essence(&j), base, "big-endian {be}, nanoseconds {ns}");
        let want = if ns { "pcap-nsec" } else { "pcap" };
        assert_eq!(j["capture"]["inputs"][0]["format"], want);
    }
    // editcap's own nanosecond pcap too.
    if tool("editcap") {
        let p = dir.path().join("editcap-ns.pcap");
        let st = Command::new("editcap")
            .args(["-F", "nsecpcap"])
            .arg(sample())
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success());
        let j = json(&analyze(&[p.to_str().unwrap(), "--format", "json"], None));
        assert_eq!(essence(&j), base);
    }
}

#[test]
fn pcapng_with_ethernet_and_raw_ip_interfaces() {
    if !tool("mergecap") || !tool("tshark") {
        return;
    }
    let base = essence(&baseline());
    let dir = tempfile::tempdir().unwrap();
    let packets = read_pcap(&std::fs::read(sample()).unwrap());
    // Every other packet as raw IP (its Ethernet header removed), as a second tap would give.
    let (mut eth, mut raw) = (Vec::new(), Vec::new());
    for (i, (s, u, len, data)) in packets.iter().enumerate() {
        if i % 2 == 0 {
            eth.push((*s, *u, *len, data.clone()));
        } else {
            let ip = strip_ethernet(data);
            let cut = (data.len() - ip.len()) as u32;
            raw.push((*s, *u, len - cut, ip));
        }
    }
    let a = dir.path().join("eth.pcap");
    let b = dir.path().join("rawip.pcap");
    std::fs::write(&a, write_pcap(1, &eth, false, false)).unwrap();
    std::fs::write(&b, write_pcap(101, &raw, false, false)).unwrap();
    let merged = dir.path().join("merged.pcapng");
    let st = Command::new("mergecap")
        .arg("-w")
        .arg(&merged)
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap();
    assert!(st.success());
    // mergecap made one pcapng with two interfaces of different link types.
    let enc = Command::new("capinfos").arg("-E").arg(&merged).output();
    if let Ok(o) = enc {
        let text = String::from_utf8_lossy(&o.stdout).to_lowercase();
        assert!(text.contains("per packet"), "{text}");
    }
    let out = analyze(&[merged.to_str().unwrap(), "--format", "json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    let mut got = essence(&j);
    let mut want = base.clone();
    // Raw IP frames are shorter on the wire by their Ethernet header: the rest is equal.
    got["bytes"] = serde_json::Value::Null;
    want["bytes"] = serde_json::Value::Null;
    assert_eq!(got, want);
    let input = &j["capture"]["inputs"][0];
    assert_eq!(input["format"], "pcapng");
    assert_eq!(input["link_types"], serde_json::json!([1, 101]));
    assert_eq!(j["stats"]["decode_errors"].get("link_type"), None);

    // The two pcap files given directly are merged the same way.
    let out = analyze(
        &[b.to_str().unwrap(), a.to_str().unwrap(), "--format", "json"],
        None,
    );
    let j2 = json(&out);
    let mut got2 = essence(&j2);
    got2["bytes"] = serde_json::Value::Null;
    assert_eq!(got2, want);
    assert_eq!(j2["capture"]["inputs"].as_array().unwrap().len(), 2);

    // Evidence from two link types is a pcapng tshark reads, every input in the manifest.
    let ev = dir.path().join("ev");
    let out = analyze(
        &[
            merged.to_str().unwrap(),
            "--format",
            "json",
            "--evidence",
            ev.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ev.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        m["inputs"][0]["sha256"],
        sha256(&std::fs::read(&merged).unwrap())
    );
    assert_eq!(
        m["inputs"][0]["size"],
        std::fs::metadata(&merged).unwrap().len()
    );
    let files = m["files"].as_array().unwrap();
    assert!(!files.is_empty());
    for f in files {
        let name = f["file"].as_str().unwrap();
        assert!(name.ends_with(".pcapng"), "{name}");
        let o = Command::new("tshark")
            .arg("-r")
            .arg(ev.join(name))
            .output()
            .unwrap();
        assert!(o.status.success());
        let rows = String::from_utf8_lossy(&o.stdout).lines().count() as u64;
        assert_eq!(rows, f["packets"].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn gzip_is_told_by_its_magic_and_stdin_is_hashed() {
    if !tool("gzip") {
        return;
    }
    let base = baseline();
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("capture-from-the-field.bin");
    let o = Command::new("gzip")
        .args(["-c", "-6"])
        .arg(sample())
        .output()
        .unwrap();
    std::fs::write(&gz, &o.stdout).unwrap();
    let out = analyze(&[gz.to_str().unwrap(), "--format", "json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert_eq!(essence(&j), essence(&base));
    assert_eq!(j["capture"]["inputs"][0]["compression"], "gzip");
    // The hash is of the file as stored (compressed), as sha256sum gives it.
    assert_eq!(j["capture"]["sha256"], sha256(&o.stdout));
    assert_eq!(j["capture"]["size"], o.stdout.len() as u64);

    // Standard input: the same analysis, hashed while read.
    let bytes = std::fs::read(sample()).unwrap();
    let out = analyze(&["-", "--format", "json"], Some(&bytes));
    assert!(out.status.success());
    let j = json(&out);
    assert_eq!(essence(&j), essence(&base));
    assert_eq!(j["capture"]["file"], "-");
    assert_eq!(j["capture"]["sha256"], sha256(&bytes));
    assert_eq!(j["capture"]["size"], bytes.len() as u64);
    // gzip through standard input too.
    let out = analyze(&["-", "--format", "json"], Some(&o.stdout));
    assert_eq!(essence(&json(&out)), essence(&base));
    // The report's provenance names standard input with its hash.
    let report = dir.path().join("r.html");
    let out = analyze(
        &[
            "-",
            "--format",
            "json",
            "--report",
            report.to_str().unwrap(),
        ],
        Some(&bytes),
    );
    assert!(out.status.success());
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains(&sha256(&bytes)));
    // Evidence needs a second read, which standard input cannot give: refused up front.
    let out = analyze(
        &["-", "--evidence", dir.path().join("ev").to_str().unwrap()],
        Some(&bytes),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard input"));
}

#[test]
fn a_ring_of_files_is_merged_in_time_order() {
    if !tool("editcap") {
        return;
    }
    let base = baseline();
    let dir = tempfile::tempdir().unwrap();
    // A ring as `tcpdump -C`/`-G` leaves it: consecutive files of the same capture.
    let st = Command::new("editcap")
        .args(["-c", "7000"])
        .arg(sample())
        .arg(dir.path().join("ring.pcap"))
        .status()
        .unwrap();
    assert!(st.success());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    // Given in the wrong order (as an unsorted glob or a wrapped ring would list them).
    files.reverse();
    files.swap(0, 2);
    let mut args: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let report = dir.path().join("report.html");
    args.extend(["--format", "json", "--report", report.to_str().unwrap()]);
    let out = analyze(&args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert_eq!(essence(&j), essence(&base));
    let inputs = j["capture"]["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), files.len());
    let html = std::fs::read_to_string(&report).unwrap();
    let mut listing = String::new();
    for (f, i) in files.iter().zip(inputs) {
        let bytes = std::fs::read(f).unwrap();
        assert_eq!(i["file"], f.to_str().unwrap());
        assert_eq!(i["sha256"], sha256(&bytes));
        assert_eq!(i["size"], bytes.len() as u64);
        assert!(
            html.contains(&sha256(&bytes)),
            "report lists {}",
            f.display()
        );
        listing.push_str(&format!("{}  {}\n", sha256(&bytes), f.display()));
    }
    // The capture's hash is that of the sha256sum listing of its inputs.
    assert_eq!(j["capture"]["sha256"], sha256(listing.as_bytes()));
    let total: u64 = inputs.iter().map(|i| i["packets"].as_u64().unwrap()).sum();
    assert_eq!(total, base["capture"]["packets"].as_u64().unwrap());
}

#[test]
fn a_cut_off_capture_is_analysed_up_to_the_cut_with_exit_code_3() {
    let base = baseline();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(sample()).unwrap();
    let cut = dir.path().join("cut.pcap");
    // Cut inside a record, two thirds in (a full disk, a pulled cable).
    let at = bytes.len() * 2 / 3;
    std::fs::write(&cut, &bytes[..at]).unwrap();
    let out = analyze(&[cut.to_str().unwrap(), "--format", "json"], None);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit code for a cut-off capture"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cut off"), "{stderr}");
    let j = json(&out);
    assert_eq!(j["capture"]["truncated"], true);
    let t = &j["capture"]["inputs"][0]["truncated"];
    let packets = j["capture"]["packets"].as_u64().unwrap();
    assert_eq!(t["after_packets"].as_u64().unwrap(), packets);
    let full = base["capture"]["packets"].as_u64().unwrap();
    assert!(packets > full / 2 && packets < full, "{packets} of {full}");
    assert!(t["at_byte"].as_u64().unwrap() <= at as u64);
    // Exactly the packets before the cut: tshark reads as many from the cut file.
    if tool("tshark") {
        let o = Command::new("tshark").arg("-r").arg(&cut).output().unwrap();
        let rows = String::from_utf8_lossy(&o.stdout).lines().count() as u64;
        assert_eq!(rows, packets);
    }
    // Text and NDJSON print everything too, with the same exit code.
    let out = analyze(&[cut.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("TRUNCATED"));
    let out = analyze(&[cut.to_str().unwrap(), "--format", "ndjson"], None);
    assert_eq!(out.status.code(), Some(3));
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let summary: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(summary["capture"]["truncated"], true);

    // Cut inside the file header.
    let head = dir.path().join("head.pcap");
    std::fs::write(&head, &bytes[..10]).unwrap();
    let out = analyze(&[head.to_str().unwrap(), "--format", "json"], None);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(json(&out)["capture"]["packets"], 0);

    // A cut gzip file and a cut pcapng.
    if tool("gzip") {
        let gz = Command::new("gzip")
            .arg("-c")
            .arg(sample())
            .output()
            .unwrap();
        let p = dir.path().join("cut.pcap.gz");
        std::fs::write(&p, &gz.stdout[..gz.stdout.len() / 2]).unwrap();
        let out = analyze(&[p.to_str().unwrap(), "--format", "json"], None);
        assert_eq!(out.status.code(), Some(3));
        let j = json(&out);
        assert!(j["capture"]["packets"].as_u64().unwrap() > 0);
        assert_eq!(j["capture"]["inputs"][0]["compression"], "gzip");
    }
    if tool("editcap") {
        let ng = dir.path().join("full.pcapng");
        assert!(Command::new("editcap")
            .args(["-F", "pcapng"])
            .arg(sample())
            .arg(&ng)
            .status()
            .unwrap()
            .success());
        let ngb = std::fs::read(&ng).unwrap();
        let p = dir.path().join("cut.pcapng");
        std::fs::write(&p, &ngb[..ngb.len() / 2 + 3]).unwrap();
        let out = analyze(&[p.to_str().unwrap(), "--format", "json"], None);
        assert_eq!(out.status.code(), Some(3));
        assert!(json(&out)["capture"]["packets"].as_u64().unwrap() > 0);
    }
}

#[test]
fn an_empty_capture_says_so_and_a_non_capture_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(sample()).unwrap();
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, &bytes[..24]).unwrap();
    let zero = dir.path().join("zero.pcap");
    std::fs::write(&zero, b"").unwrap();
    for p in [&empty, &zero] {
        let out = analyze(&[p.to_str().unwrap(), "--format", "json"], None);
        assert_eq!(out.status.code(), Some(0));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("no packets"), "{stderr}");
        let j = json(&out);
        assert_eq!(j["capture"]["packets"], 0);
        assert_eq!(j["capture"]["truncated"], false);
    }
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "these are not packets\n").unwrap();
    let out = analyze(&[text.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a pcap or pcapng capture"), "{stderr}");
    let out = analyze(&["/nonexistent/x.pcap"], None);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_pipe_given_by_name_is_read_once() {
    // `simboxd analyze <(zcat f.gz)`: the name is a pipe that can be read only once.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let st = Command::new("mkfifo").arg(&fifo).status();
    if !st.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mkfifo unavailable");
        return;
    }
    let bytes = std::fs::read(sample()).unwrap();
    let writer = {
        let fifo = fifo.clone();
        let bytes = bytes.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            let _ = f.write_all(&bytes);
        })
    };
    let out = analyze(&[fifo.to_str().unwrap(), "--format", "json"], None);
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert_eq!(essence(&j), essence(&baseline()));
    assert_eq!(j["capture"]["sha256"], sha256(&bytes));
}
