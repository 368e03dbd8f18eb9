//! systemd readiness protocol (sd_notify): one datagram per state change to `$NOTIFY_SOCKET`.
//!
//! Contract: without `$NOTIFY_SOCKET` every call is a no-op, so the daemon runs the same outside
//! systemd. Send errors are logged once and otherwise ignored: notification is advisory.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    sock: Option<(UnixDatagram, NotifyAddr)>,
    warned: std::sync::atomic::AtomicBool,
}

enum NotifyAddr {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
    pub fn from_env() -> Notifier {
        let addr = std::env::var_os("NOTIFY_SOCKET").and_then(|v| {
            let b = std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec();
            match b.first() {
                None => None,
                Some(b'@') => Some(NotifyAddr::Abstract(b.get(1..).unwrap_or(&[]).to_vec())),
                Some(_) => Some(NotifyAddr::Path(v.into())),
            }
        });
        let sock = addr.and_then(|a| UnixDatagram::unbound().ok().map(|s| (s, a)));
        Notifier {
            sock,
            warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn enabled(&self) -> bool {
        self.sock.is_some()
    }

    /// Sends `state` (e.g. `READY=1`, newline-separated assignments).
    pub fn notify(&self, state: &str) {
        let Some((sock, addr)) = &self.sock else {
            return;
        };
        let res = match addr {
            NotifyAddr::Path(p) => sock.send_to(state.as_bytes(), p),
            NotifyAddr::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
            }
        };
        if let Err(e) = res {
            if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(error = %e, "sd_notify failed");
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }
    pub fn reloading(&self) {
        self.notify("RELOADING=1");
    }
    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }
    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={status}"));
    }
    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }
}

/// Half the watchdog period from `$WATCHDOG_USEC` (when `$WATCHDOG_PID` is absent or ours).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let us: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (us > 0).then(|| Duration::from_micros(us / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            sock: Some((UnixDatagram::unbound().unwrap(), NotifyAddr::Path(path))),
            warned: Default::default(),
        };
        n.ready("capturing on lo");
        n.watchdog();
        let mut buf = [0u8; 256];
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1\nSTATUS=capturing on lo");
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");
    }

    #[test]
    fn no_socket_is_a_no_op() {
        let n = Notifier {
            sock: None,
            warned: Default::default(),
        };
        assert!(!n.enabled());
        n.ready("x");
    }
}
