//! Helpers shared by the integration tests.

// Each test binary includes this module and uses only some of it.
#![allow(dead_code)]

use std::path::Path;

/// Runs `openssl` in `dir` and asserts it succeeded.
pub fn openssl(dir: &Path, args: &[&str]) {
    let st = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(st.success(), "openssl {args:?} failed");
}

/// A CA (ca.pem) and a server certificate for 127.0.0.1 (srv.pem, srv.key), made by openssl.
pub fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=simboxd-test-ca",
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// Writes a minimal MaxMind DB (format 2.0, IPv4 tree, 24-bit records) mapping IPv4 prefixes to
/// `{country: {iso_code}}`, as GeoLite2-Country does, so GeoIP tests need no download.
pub fn write_country_mmdb(path: &Path, nets: &[(&str, &str)]) {
    fn string(out: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 29);
        out.push(0x40 | s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    // Binary trie over the prefix bits; leaves hold an index into `nets`.
    #[derive(Default, Clone)]
    struct Node {
        child: [Option<usize>; 2],
        data: [Option<usize>; 2],
    }
    let mut nodes = vec![Node::default()];
    for (i, (cidr, _)) in nets.iter().enumerate() {
        let (addr, len) = cidr.split_once('/').expect("cidr");
        let addr: std::net::Ipv4Addr = addr.parse().expect("ipv4");
        let bits = u32::from(addr);
        let len: u32 = len.parse().expect("prefix length");
        assert!((1..=32).contains(&len));
        let mut n = 0;
        for k in 0..len {
            let b = ((bits >> (31 - k)) & 1) as usize;
            if k == len - 1 {
                nodes[n].data[b] = Some(i);
            } else {
                n = match nodes[n].child[b] {
                    Some(c) => c,
                    None => {
                        nodes.push(Node::default());
                        let c = nodes.len() - 1;
                        nodes[n].child[b] = Some(c);
                        c
                    }
                };
            }
        }
    }
    // Data section: one map per network.
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for (_, iso) in nets {
        offsets.push(data.len());
        data.push(0xE1);
        string(&mut data, "country");
        data.push(0xE1);
        string(&mut data, "iso_code");
        string(&mut data, iso);
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for n in &nodes {
        for side in 0..2 {
            let v = match (n.child[side], n.data[side]) {
                (Some(c), _) => c,
                (None, Some(d)) => count + 16 + offsets[d],
                (None, None) => count,
            };
            out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    out.push(0xE9); // metadata: a map of 9 entries
    string(&mut out, "binary_format_major_version");
    out.extend_from_slice(&[0xA1, 2]);
    string(&mut out, "binary_format_minor_version");
    out.push(0xA0);
    string(&mut out, "build_epoch");
    out.extend_from_slice(&[0x01, 0x02, 0x01]); // uint64 (extended type 9), 1 byte
    string(&mut out, "database_type");
    string(&mut out, "GeoLite2-Country");
    string(&mut out, "description");
    out.push(0xE1);
    string(&mut out, "en");
    string(&mut out, "simboxd test");
    string(&mut out, "ip_version");
    out.extend_from_slice(&[0xA1, 4]);
    string(&mut out, "languages");
    out.extend_from_slice(&[0x01, 0x04]); // array (extended type 11) of 1
    string(&mut out, "en");
    string(&mut out, "node_count");
    out.push(0xC4);
    out.extend_from_slice(&(count as u32).to_be_bytes());
    string(&mut out, "record_size");
    out.extend_from_slice(&[0xA1, 24]);
    std::fs::write(path, out).expect("write mmdb");
}
