//! Dropping root after the capture is open: the packet socket stays usable, nothing else is.
//!
//! Contract: as root, switch to `[daemon] user`/`group` (supplementary groups cleared) or fail;
//! when not root, or when `user` is empty, log why and keep the current identity.

use nix::unistd::{Gid, Group, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum PrivDropError {
    #[error("user {0:?} does not exist")]
    NoUser(String),
    #[error("group {0:?} does not exist")]
    NoGroup(String),
    #[error("looking up {0:?}: {1}")]
    Lookup(String, nix::Error),
    #[error("{0} failed: {1}")]
    Call(&'static str, nix::Error),
    #[error("still able to regain root after dropping to uid {0}")]
    NotDropped(u32),
}

/// What happened, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Dropped {
    To { uid: u32, gid: u32 },
    NotRoot { uid: u32 },
    Disabled,
}

/// Switches to `user`/`group` (`group` empty: the user's primary group).
pub fn drop_privileges(user: &str, group: &str) -> Result<Dropped, PrivDropError> {
    if user.is_empty() {
        return Ok(Dropped::Disabled);
    }
    if !Uid::effective().is_root() {
        return Ok(Dropped::NotRoot {
            uid: Uid::effective().as_raw(),
        });
    }
    let u = User::from_name(user)
        .map_err(|e| PrivDropError::Lookup(user.to_string(), e))?
        .ok_or_else(|| PrivDropError::NoUser(user.to_string()))?;
    let gid: Gid = if group.is_empty() {
        u.gid
    } else {
        Group::from_name(group)
            .map_err(|e| PrivDropError::Lookup(group.to_string(), e))?
            .ok_or_else(|| PrivDropError::NoGroup(group.to_string()))?
            .gid
    };
    // Order matters: groups and gid while still root, uid last.
    nix::unistd::setgroups(&[gid]).map_err(|e| PrivDropError::Call("setgroups", e))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| PrivDropError::Call("setresgid", e))?;
    nix::unistd::setresuid(u.uid, u.uid, u.uid).map_err(|e| PrivDropError::Call("setresuid", e))?;
    if !u.uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(PrivDropError::NotDropped(u.uid.as_raw()));
    }
    Ok(Dropped::To {
        uid: u.uid.as_raw(),
        gid: gid.as_raw(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_user_disables_the_drop() {
        assert_eq!(drop_privileges("", "").unwrap(), Dropped::Disabled);
    }

    #[test]
    fn unknown_user_is_an_error_as_root() {
        if !Uid::effective().is_root() {
            eprintln!("SKIP: not root");
            return;
        }
        let e = drop_privileges("no-such-user-simboxd-test", "").unwrap_err();
        assert!(matches!(e, PrivDropError::NoUser(_)), "{e}");
    }
}
