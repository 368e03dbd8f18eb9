//! systemd readiness protocol (sd_notify) through the `sd-notify` crate: one datagram per state
//! change to `$NOTIFY_SOCKET` (path or abstract socket).
//!
//! Contract: without `$NOTIFY_SOCKET` every call is a no-op, so the daemon runs the same outside
//! systemd. Send errors are logged once and otherwise ignored: notification is advisory.
//! `RELOADING=1` carries `MONOTONIC_USEC`, as `Type=notify-reload` requires.
//! Covered end to end by `tests/daemon_lifecycle.rs` (a real datagram socket as `NOTIFY_SOCKET`).

use sd_notify::NotifyState;
use std::time::Duration;

pub struct Notifier {
    enabled: bool,
    warned: std::sync::atomic::AtomicBool,
}

impl Notifier {
    /// Notifies when `$NOTIFY_SOCKET` is set.
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty()),
            warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn send(&self, state: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(state) {
            if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(error = %e, "sd_notify failed");
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

/// Half the watchdog period from `$WATCHDOG_USEC` (when `$WATCHDOG_PID` is absent or ours).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}
