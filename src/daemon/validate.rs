//! Host checks of `simboxd validate` (the unit's `ExecStartPre`) and of `run` before it opens
//! anything: what a loaded, well-formed config would still fail on at start on this host.
//!
//! Contract: every check looks, none changes anything (no file created, no interface touched
//! beyond libpcap's activation when permitted); all findings are collected, errors first, each
//! naming the section and key it concerns. Warnings (world-readable token, API beyond loopback
//! without TLS, ...) do not fail validation.

use crate::capture::filter_for_link;
use crate::config::Config;
use nix::unistd::{Gid, Group, Uid, User};
use simboxd_core::model::LinkType;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
}

/// One thing found wrong (or risky) with the config on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub section: &'static str,
    pub key: &'static str,
    pub message: String,
}

impl Finding {
    fn error(section: &'static str, key: &'static str, message: String) -> Finding {
        Finding {
            level: Level::Error,
            section,
            key,
            message,
        }
    }
    fn warning(section: &'static str, key: &'static str, message: String) -> Finding {
        Finding {
            level: Level::Warning,
            section,
            key,
            message,
        }
    }
}

/// Warning text when a secret file may be read by every user.
pub fn world_readable(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        format!(
            "{} is readable by every user (mode {:o}); chmod o-r it",
            path.display(),
            mode & 0o7777
        )
    })
}

/// Every check; errors first.
pub fn check_host(cfg: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    check_capture(cfg, &mut out);
    let identity = check_identity(cfg, &mut out);
    if let Some(id) = identity {
        check_state_dir(cfg, &id, &mut out);
    }
    check_http(cfg, &mut out);
    out.sort_by_key(|f| f.level);
    out
}

/// Names of the interfaces libpcap can capture on.
pub fn interface_names() -> Vec<String> {
    pcap::Device::list()
        .map(|l| l.into_iter().map(|d| d.name).collect())
        .unwrap_or_default()
}

/// The link type a capture on `name` gets: from libpcap when the interface can be opened here,
/// else from the kernel's ARPHRD type in sysfs (validate may run without CAP_NET_RAW).
pub fn interface_link_type(name: &str) -> LinkType {
    if let Ok(c) = pcap::Capture::from_device(name).and_then(|c| c.open()) {
        return crate::capture::link_type_from_dlt(c.get_datalink().0);
    }
    if name == "any" {
        return LinkType::LINUX_SLL;
    }
    let arphrd = std::fs::read_to_string(format!("/sys/class/net/{name}/type"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    match arphrd {
        // ARPHRD_ETHER, ARPHRD_LOOPBACK: libpcap presents both as Ethernet.
        Some(1) | Some(772) | None => LinkType::ETHERNET,
        // ARPHRD_NONE (tun, wireguard), IP-in-IP, SIT, GRE: raw IP.
        Some(_) => LinkType::RAW,
    }
}

/// Compiles `filter` for link type `link` on a dead libpcap handle.
pub fn compile_filter(filter: &str, link: LinkType) -> Result<(), String> {
    // LINKTYPE_RAW (101) is DLT_RAW (12) to libpcap; the other values are the same in both.
    let dlt = if link == LinkType::RAW { 12 } else { link.0 };
    let dead = pcap::Capture::dead(pcap::Linktype(dlt)).map_err(|e| e.to_string())?;
    dead.compile(filter, true)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn check_capture(cfg: &Config, out: &mut Vec<Finding>) {
    let c = &cfg.capture;
    if let Some(file) = &c.file {
        // `run` replays a file unfiltered when the default filter does not fit its link type;
        // a filter of one's own must compile.
        match crate::capture::Capture::open_file(file) {
            Ok(cap) => {
                let link = cap.link_type();
                let own = c.filter != crate::capture::DEFAULT_FILTER && !c.filter.trim().is_empty();
                if let (true, Err(e)) = (own, compile_filter(&c.filter, link)) {
                    out.push(Finding::error(
                        "capture",
                        "filter",
                        format!(
                            "capture.filter {:?} does not compile for {} (link type {}): {e}",
                            c.filter,
                            file.display(),
                            link.0
                        ),
                    ));
                }
            }
            Err(e) => out.push(Finding::error("capture", "file", e.to_string())),
        }
        return;
    }
    let present = interface_names();
    for name in c.interface_list() {
        let key = if c.interface.as_deref() == Some(name.as_str()) {
            "interface"
        } else {
            "interfaces"
        };
        if !present.contains(&name) {
            out.push(Finding::error(
                "capture",
                key,
                format!(
                    "capture.{key}: no interface {name:?} on this host; there are: {}",
                    if present.is_empty() {
                        "none visible".to_string()
                    } else {
                        present.join(", ")
                    }
                ),
            ));
            continue;
        }
        let link = interface_link_type(&name);
        let filter = filter_for_link(&c.filter, link);
        if filter.trim().is_empty() {
            continue;
        }
        if let Err(e) = compile_filter(filter, link) {
            out.push(Finding::error(
                "capture",
                "filter",
                format!(
                    "capture.filter {filter:?} does not compile on {name} (link type {}): {e}",
                    link.0
                ),
            ));
        }
    }
}

/// Who the daemon will be once running: uid, primary gid and supplementary gids.
pub struct Identity {
    pub uid: u32,
    pub gids: Vec<u32>,
    pub name: String,
    /// This process's own identity (no switch at start).
    pub current: bool,
}

fn check_identity(cfg: &Config, out: &mut Vec<Finding>) -> Option<Identity> {
    let d = &cfg.daemon;
    let root = Uid::effective().is_root();
    let current = || Identity {
        uid: Uid::effective().as_raw(),
        gids: std::iter::once(Gid::effective().as_raw())
            .chain(
                nix::unistd::getgroups()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|g| g.as_raw()),
            )
            .collect(),
        name: User::from_uid(Uid::effective())
            .ok()
            .flatten()
            .map_or_else(|| Uid::effective().to_string(), |u| u.name),
        current: true,
    };
    if d.user.is_empty() || !root {
        // Not root: `run` keeps the current identity (e.g. systemd's User= with ambient
        // capabilities), so the user named in the file does not matter.
        if !d.user.is_empty() && User::from_name(&d.user).ok().flatten().is_none() {
            out.push(Finding::warning(
                "daemon",
                "user",
                format!(
                    "daemon.user {:?} does not exist (ignored: not running as root)",
                    d.user
                ),
            ));
        }
        return Some(current());
    }
    let user = match User::from_name(&d.user) {
        Ok(Some(u)) => u,
        Ok(None) => {
            out.push(Finding::error(
                "daemon",
                "user",
                format!("daemon.user {:?} does not exist", d.user),
            ));
            return None;
        }
        Err(e) => {
            out.push(Finding::error(
                "daemon",
                "user",
                format!("daemon.user {:?}: {e}", d.user),
            ));
            return None;
        }
    };
    let gid = if d.group.is_empty() {
        user.gid
    } else {
        match Group::from_name(&d.group) {
            Ok(Some(g)) => g.gid,
            Ok(None) => {
                out.push(Finding::error(
                    "daemon",
                    "group",
                    format!("daemon.group {:?} does not exist", d.group),
                ));
                return None;
            }
            Err(e) => {
                out.push(Finding::error(
                    "daemon",
                    "group",
                    format!("daemon.group {:?}: {e}", d.group),
                ));
                return None;
            }
        }
    };
    // Supplementary groups are cleared by the drop.
    Some(Identity {
        uid: user.uid.as_raw(),
        gids: vec![gid.as_raw()],
        name: user.name,
        current: false,
    })
}

/// Whether `id` may do `want` (bits of rwx: 4, 2, 1) on `path` by its mode bits. Root may do
/// anything (as far as the mode bits go).
pub fn allowed(id: &Identity, meta: &std::fs::Metadata, want: u32) -> bool {
    if id.uid == 0 {
        return true;
    }
    let mode = meta.mode();
    let bits = if meta.uid() == id.uid {
        (mode >> 6) & 7
    } else if id.gids.contains(&meta.gid()) {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    bits & want == want
}

fn check_state_dir(cfg: &Config, id: &Identity, out: &mut Vec<Finding>) {
    let path = &cfg.storage.path;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    // The outbox creates missing directories: the nearest existing one must let it.
    let mut existing = dir.clone();
    while std::fs::symlink_metadata(&existing).is_err() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p.to_path_buf(),
            _ => {
                existing = std::path::PathBuf::from(".");
                break;
            }
        }
    }
    let meta = match std::fs::metadata(&existing) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => {
            out.push(Finding::error(
                "storage",
                "path",
                format!("storage.path: {} is not a directory", existing.display()),
            ));
            return;
        }
        Err(e) => {
            out.push(Finding::error(
                "storage",
                "path",
                format!("storage.path: {}: {e}", existing.display()),
            ));
            return;
        }
    };
    if !writable_dir(id, &existing, &meta) {
        let what = if existing == dir {
            format!(
                "state directory {} is not writable by user {}",
                dir.display(),
                id.name
            )
        } else {
            format!(
                "state directory {} does not exist and user {} cannot create it in {}",
                dir.display(),
                id.name,
                existing.display()
            )
        };
        out.push(Finding::error(
            "storage",
            "path",
            format!(
                "storage.path: {what} (owner uid {}, gid {}, mode {:o}; create it for that user, or use systemd's StateDirectory=)",
                meta.uid(),
                meta.gid(),
                meta.mode() & 0o7777
            ),
        ));
        return;
    }
    let state = super::state::StateStore::path_for(path);
    for file in [path.as_path(), state.as_path()] {
        if let Ok(m) = std::fs::metadata(file) {
            if !allowed(id, &m, 0o6) {
                out.push(Finding::error(
                    "storage",
                    "path",
                    format!(
                        "storage.path: {} exists but user {} cannot read and write it (owner uid {}, mode {:o})",
                        file.display(),
                        id.name,
                        m.uid(),
                        m.mode() & 0o7777
                    ),
                ));
            }
        }
    }
}

/// Whether `id` may create files in directory `dir`: by `access(2)` when `id` is this process
/// (which also sees read-only mounts such as systemd's `ProtectSystem=strict`), else by the
/// mode bits.
fn writable_dir(id: &Identity, dir: &Path, meta: &std::fs::Metadata) -> bool {
    use nix::unistd::AccessFlags;
    if id.current {
        return nix::unistd::access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_ok();
    }
    allowed(id, meta, 0o3)
}

fn check_http(cfg: &Config, out: &mut Vec<Finding>) {
    let h = &cfg.http;
    if !h.enabled {
        return;
    }
    if let Some(path) = &h.token_file {
        if let Some(w) = world_readable(path) {
            out.push(Finding::warning("http", "token_file", w));
        }
    }
    if let Some(w) = crate::http::tls::exposure_warning(h) {
        out.push(Finding::warning("http", "listen", w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filter_compiles_on_every_link_type_it_is_narrowed_for() {
        use crate::capture::DEFAULT_FILTER;
        for link in [
            LinkType::ETHERNET,
            LinkType::LINUX_SLL,
            LinkType::LINUX_SLL2,
            LinkType::RAW,
        ] {
            let f = filter_for_link(DEFAULT_FILTER, link);
            compile_filter(f, link).unwrap_or_else(|e| panic!("link {}: {e}", link.0));
        }
        // The reason for the narrowing: libpcap refuses `vlan` on Linux cooked frames.
        let e = compile_filter(DEFAULT_FILTER, LinkType::LINUX_SLL).unwrap_err();
        assert!(e.contains("VLAN"), "{e}");
        assert!(compile_filter("udp port banana", LinkType::ETHERNET).is_err());
    }

    #[test]
    fn secret_files_must_be_small_regular_files() {
        use crate::http::read_secret_file;
        let e = read_secret_file(Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 5000]).unwrap();
        assert!(read_secret_file(&big).unwrap_err().contains("5000 bytes"));
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "0123456789abcdef\n").unwrap();
        assert_eq!(read_secret_file(&ok).unwrap(), "0123456789abcdef\n");
        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(world_readable(&ok).is_some());
        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(world_readable(&ok).is_none());
    }

    #[test]
    fn mode_bits_decide_for_owner_group_and_others() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        let m = std::fs::metadata(dir.path()).unwrap();
        let owner = Identity {
            uid: m.uid().max(1),
            gids: vec![],
            name: "o".into(),
            current: false,
        };
        let other = Identity {
            uid: 4_000_000,
            gids: vec![4_000_000],
            name: "x".into(),
            current: false,
        };
        let group = Identity {
            uid: 4_000_000,
            gids: vec![m.gid()],
            name: "g".into(),
            current: false,
        };
        if m.uid() != 0 {
            assert!(allowed(&owner, &m, 0o3));
        }
        assert!(!allowed(&other, &m, 0o1));
        assert!(allowed(&group, &m, 0o5));
        assert!(!allowed(&group, &m, 0o2));
    }
}
