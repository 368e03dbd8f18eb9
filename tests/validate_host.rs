//! `simboxd validate` refuses what `run` would fail on at start on this host (issue 16): a BPF
//! filter that does not compile for the interface's link type, a missing interface (listing the
//! ones there are), a missing user or group, a state directory the daemon user cannot write,
//! unreadable TLS files, a GeoIP database that does not open, a token file that is not a small
//! regular file; and it warns about a world-readable token and a clear-text API beyond loopback.
//! Interfaces of our own are made in a network namespace of our own (skipped without `ip`/root).

mod daemon_common;

use daemon_common::bin;
use std::path::Path;
use std::process::Command;

fn validate_in(netns: Option<&str>, path: &Path) -> (i32, String, String) {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, bin()]);
            c
        }
        None => Command::new(bin()),
    };
    let out = cmd
        .args(["validate", "--config"])
        .arg(path)
        .output()
        .expect("run simboxd validate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn validate(path: &Path) -> (i32, String, String) {
    validate_in(None, path)
}

/// A config whose `[capture]` section is `capture`, with the current user and `dir` as state
/// directory; `extra` (whole sections) is appended.
fn config(dir: &Path, capture: &str, extra: &str) -> std::path::PathBuf {
    let p = dir.join("simboxd.toml");
    let text = format!(
        "[capture]\n{capture}\n[daemon]\nuser = \"\"\ngroup = \"\"\n[storage]\npath = {:?}\n{extra}",
        dir.join("alerts.redb").display().to_string()
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[test]
fn bad_bpf_filter_is_refused_with_the_link_type() {
    let dir = tempfile::tempdir().unwrap();
    let p = config(
        dir.path(),
        "interface = \"lo\"\nfilter = \"udp port banana\"",
        "",
    );
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:3:1: capture.filter \"udp port banana\" does not compile on lo (link type 1)",
            p.display()
        )),
        "{stderr}"
    );
}

#[test]
fn missing_interface_is_refused_listing_those_there_are() {
    let dir = tempfile::tempdir().unwrap();
    let p = config(dir.path(), "interface = \"simboxd-nope0\"", "");
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "capture.interface: no interface \"simboxd-nope0\" on this host; there are: "
        ) && stderr.contains("lo"),
        "{stderr}"
    );
    // The second of several interfaces is checked too, and located at `interfaces`.
    let p = config(
        dir.path(),
        "interface = \"lo\"\ninterfaces = [\"simboxd-nope1\"]",
        "",
    );
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:3:1: capture.interfaces: no interface \"simboxd-nope1\"",
            p.display()
        )),
        "{stderr}"
    );
}

#[test]
fn any_with_the_default_filter_validates() {
    // libpcap refuses the default filter's `vlan` on Linux cooked frames; the daemon narrows it.
    let dir = tempfile::tempdir().unwrap();
    let p = config(dir.path(), "interface = \"any\"", "");
    let (code, stdout, stderr) = validate(&p);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.ends_with(": ok\n"), "{stdout}");
    // A filter of one's own that libpcap cannot compile on cooked frames is refused.
    let p = config(
        dir.path(),
        "interface = \"any\"\nfilter = \"vlan and udp\"",
        "",
    );
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("does not compile on any (link type 113)"),
        "{stderr}"
    );
}

#[test]
fn missing_user_and_group_are_refused_as_root() {
    if !is_root() {
        eprintln!("SKIP: not root (the daemon keeps the current user then)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("u.toml");
    std::fs::write(
        &p,
        format!(
            "[capture]\ninterface = \"lo\"\n[daemon]\nuser = \"simboxd-no-such-user\"\n[storage]\npath = {:?}\n",
            dir.path().join("a.redb").display().to_string()
        ),
    )
    .unwrap();
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{}:4:1: daemon.user \"simboxd-no-such-user\" does not exist",
            p.display()
        )
    );
    std::fs::write(
        &p,
        format!(
            "[capture]\ninterface = \"lo\"\n[daemon]\nuser = \"nobody\"\ngroup = \"simboxd-no-such-group\"\n[storage]\npath = {:?}\n",
            dir.path().join("a.redb").display().to_string()
        ),
    )
    .unwrap();
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("5:1: daemon.group \"simboxd-no-such-group\" does not exist"),
        "{stderr}"
    );
}

#[test]
fn state_directory_must_exist_and_be_writable_by_the_daemon_user() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.toml");
    // A regular file where a directory is needed.
    std::fs::write(dir.path().join("plain"), "x").unwrap();
    std::fs::write(
        &p,
        format!(
            "[capture]\ninterface = \"lo\"\n[daemon]\nuser = \"\"\ngroup = \"\"\n[storage]\npath = {:?}\n",
            dir.path().join("plain/sub/alerts.redb").display().to_string()
        ),
    )
    .unwrap();
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "7:1: storage.path: {}/plain is not a directory",
            dir.path().display()
        )),
        "{stderr}"
    );
    // A missing directory the daemon can create is fine (the outbox creates it).
    std::fs::write(
        &p,
        format!(
            "[capture]\ninterface = \"lo\"\n[daemon]\nuser = \"\"\ngroup = \"\"\n[storage]\npath = {:?}\n",
            dir.path().join("new/state/alerts.redb").display().to_string()
        ),
    )
    .unwrap();
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !dir.path().join("new").exists(),
        "validate created the directory"
    );
    if !is_root() {
        eprintln!("SKIP: the 'not writable by the daemon user' half needs root");
        return;
    }
    // Root-owned 0755 directory: root could write it, user nobody (the daemon after the drop)
    // can neither write it nor create a directory in it.
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = |path: &Path| {
        format!(
            "[capture]\ninterface = \"lo\"\n[daemon]\nuser = \"nobody\"\ngroup = \"\"\n[storage]\npath = {:?}\n",
            path.display().to_string()
        )
    };
    std::fs::write(&p, cfg(&state.join("alerts.redb"))).unwrap();
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("storage.path: state directory")
            && stderr.contains("is not writable by user nobody"),
        "{stderr}"
    );
    std::fs::write(&p, cfg(&state.join("sub/alerts.redb"))).unwrap();
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("does not exist and user nobody cannot create it in"),
        "{stderr}"
    );
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    nix::unistd::chown(&state, Some(nobody.uid), None).unwrap();
    std::fs::write(&p, cfg(&state.join("alerts.redb"))).unwrap();
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn token_file_must_be_a_small_regular_file_and_private() {
    let dir = tempfile::tempdir().unwrap();
    // /dev/zero once made validate read forever.
    let p = config(
        dir.path(),
        "interface = \"lo\"",
        "[http]\ntoken_file = \"/dev/zero\"\n",
    );
    let t0 = std::time::Instant::now();
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1, "{stderr}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    assert!(stderr.contains("/dev/zero: not a regular file"), "{stderr}");
    let tok = dir.path().join("token");
    std::fs::write(&tok, "0123456789abcdefXYZ\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o644)).unwrap();
    let p = config(
        dir.path(),
        "interface = \"lo\"",
        &format!("[http]\ntoken_file = {:?}\n", tok.display().to_string()),
    );
    let (code, stdout, stderr) = validate(&p);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.ends_with(": ok\n"));
    assert!(
        stderr.contains("warning: ") && stderr.contains("is readable by every user (mode 644)"),
        "{stderr}"
    );
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 0);
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn unreadable_tls_files_and_bad_geoip_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = config(
        dir.path(),
        "interface = \"lo\"",
        "[http]\ntls_cert = \"/nonexistent/api.pem\"\ntls_key = \"/nonexistent/api.key\"\n",
    );
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("http.tls_cert /nonexistent/api.pem"),
        "{stderr}"
    );
    let geo = dir.path().join("geo.mmdb");
    std::fs::write(&geo, b"not a maxmind database").unwrap();
    let p = config(
        dir.path(),
        "interface = \"lo\"",
        &format!(
            "[network]\ngeoip_db = {:?}\nhome_country = \"DE\"\n",
            geo.display().to_string()
        ),
    );
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 1);
    assert!(stderr.contains("network.cannot open"), "{stderr}");
}

#[test]
fn api_beyond_loopback_without_tls_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let p = config(
        dir.path(),
        "interface = \"lo\"",
        "[http]\nlisten = \"0.0.0.0:18080\"\n",
    );
    let (code, _, stderr) = validate(&p);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: http.listen 0.0.0.0:18080 is beyond loopback without TLS"),
        "{stderr}"
    );
}

#[test]
fn shipped_config_is_refused_on_a_host_without_its_interface() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/simboxd.toml");
    if Path::new("/sys/class/net/eth1").exists() {
        eprintln!("SKIP: this host has eth1");
        return;
    }
    let (code, _, stderr) = validate(&shipped);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no interface \"eth1\" on this host"),
        "{stderr}"
    );
}

/// A network namespace of our own with a veth pair and a tun device (raw IP link type).
struct Netns(String);

impl Netns {
    fn create() -> Option<Netns> {
        let name = format!("simboxd-val-{}", std::process::id());
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if !ok(&["netns", "add", &name]) {
            return None;
        }
        let ns = Netns(name);
        // A veth pair stands for the two ports of a tap (no dummy module needed).
        if !ok(&[
            "-n", &ns.0, "link", "add", "tap0", "type", "veth", "peer", "name", "tap1",
        ]) {
            return None;
        }
        if !ok(&["-n", &ns.0, "tuntap", "add", "dev", "tun7", "mode", "tun"]) {
            return None;
        }
        Some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
fn several_interfaces_in_a_namespace_of_our_own() {
    let Some(ns) = Netns::create() else {
        eprintln!("SKIP: cannot create a network namespace with veth/tun interfaces (needs root and iproute2)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Two Ethernet taps and a tun (raw IP: the default filter is narrowed there too).
    let p = config(
        dir.path(),
        "interface = \"tap0\"\ninterfaces = [\"tap1\", \"tun7\"]",
        "",
    );
    let (code, _, stderr) = validate_in(Some(&ns.0), &p);
    assert_eq!(code, 0, "{stderr}");
    // Only what exists in the namespace is listed.
    let p = config(dir.path(), "interfaces = [\"tap0\", \"eth1\"]", "");
    let (code, _, stderr) = validate_in(Some(&ns.0), &p);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no interface \"eth1\" on this host; there are: ")
            && stderr.contains("tap0")
            && stderr.contains("tun7"),
        "{stderr}"
    );
    // A filter that needs Ethernet headers does not compile on the tun.
    let p = config(
        dir.path(),
        "interfaces = [\"tap0\", \"tun7\"]\nfilter = \"ether host 02:00:00:00:00:01\"",
        "",
    );
    let (code, _, stderr) = validate_in(Some(&ns.0), &p);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("does not compile on tun7"), "{stderr}");
    assert!(!stderr.contains("on tap0"), "{stderr}");
}
