//! Dropping root: a pooler started as root (by systemd, by an init script) takes
//! its sockets and opens its log file while root, then becomes `user=` / `-u`
//! for good before it serves anyone.
//!
//! PgBouncer's rules, with one stricter default: started as root *without* a
//! user to switch to, pgsluice refuses to run, since a pooler never needs root
//! once its sockets are open. Not root, `user=` naming the current user is a
//! no-op and naming another user is an error (only root can switch).
//!
//! After the drop, everything pgsluice reads again (the config and auth file on
//! reload, a reopened log file) is read as that user; an unreadable file is
//! then a reload error, not a crash.

use std::ffi::CString;
use std::path::Path;

use nix::unistd::{Gid, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("refusing to run as root: set user= or -u")]
    RootWithoutUser,
    #[error("refusing to run as root: user={0} is root too; name an unprivileged user")]
    TargetIsRoot(String),
    #[error("cannot look up user {0}: {1}")]
    Lookup(String, nix::Error),
    #[error("no such user: {0}")]
    NoSuchUser(String),
    #[error(
        "cannot switch to user {user}: only root can switch users, \
         and this process runs as uid {uid}"
    )]
    NotRoot { user: String, uid: u32 },
    #[error("cannot switch to user {user}: {step} failed: {source}")]
    Switch {
        user: String,
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("switched to user {0}, but {1}; refusing to go on")]
    Verify(String, String),
}

impl PrivilegeError {
    /// The OS error behind the failure, for `ERRNO=`.
    pub fn errno(&self) -> Option<i32> {
        match self {
            PrivilegeError::RootWithoutUser | PrivilegeError::TargetIsRoot(_) => {
                Some(nix::libc::EPERM)
            }
            PrivilegeError::NotRoot { .. } => Some(nix::libc::EPERM),
            PrivilegeError::Lookup(_, e) | PrivilegeError::Switch { source: e, .. } => {
                Some(*e as i32)
            }
            PrivilegeError::NoSuchUser(_) => Some(nix::libc::ENOENT),
            PrivilegeError::Verify(..) => Some(nix::libc::EPERM),
        }
    }
}

/// The user to become.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// Decide whom to run as, from `-u` (first) or `user=`. `None`: stay as we are.
pub fn resolve(requested: Option<&str>) -> Result<Option<Target>, PrivilegeError> {
    let requested = requested.map(str::trim).filter(|u| !u.is_empty());
    let euid = nix::unistd::geteuid();
    let Some(name) = requested else {
        return if euid.is_root() {
            Err(PrivilegeError::RootWithoutUser)
        } else {
            Ok(None)
        };
    };
    let user = User::from_name(name)
        .map_err(|e| PrivilegeError::Lookup(name.to_owned(), e))?
        .ok_or_else(|| PrivilegeError::NoSuchUser(name.to_owned()))?;
    if euid.is_root() {
        if user.uid.is_root() {
            return Err(PrivilegeError::TargetIsRoot(name.to_owned()));
        }
        return Ok(Some(Target {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
        }));
    }
    if user.uid == euid {
        Ok(None)
    } else {
        Err(PrivilegeError::NotRoot {
            user: name.to_owned(),
            uid: euid.as_raw(),
        })
    }
}

/// Give a file we created as root (the log file) to the target user, so that
/// it can still reopen it after a reload or a logrotate `copytruncate`.
pub fn give_file(path: &Path, target: &Target) -> Result<(), PrivilegeError> {
    nix::unistd::chown(path, Some(target.uid), Some(target.gid)).map_err(|source| {
        PrivilegeError::Switch {
            user: target.name.clone(),
            step: "chown of the log file",
            source,
        }
    })
}

/// Become `target`: supplementary groups, then the group, then the user (in
/// that order: after setuid we could no longer change groups). As root, setgid
/// and setuid set the real, effective and saved ids alike, so root cannot come
/// back; we check that rather than trust it.
///
/// Must run while the process has one thread: setuid applies to the calling
/// thread in the kernel, and only the C library's wrapper spreads it.
pub fn drop_to(target: &Target) -> Result<(), PrivilegeError> {
    let switch = |step: &'static str| {
        let user = target.name.clone();
        move |source| PrivilegeError::Switch { user, step, source }
    };
    let name = CString::new(target.name.as_str()).map_err(|_| {
        PrivilegeError::Verify(target.name.clone(), "the user name contains NUL".into())
    })?;
    nix::unistd::initgroups(&name, target.gid).map_err(switch("initgroups"))?;
    nix::unistd::setgid(target.gid).map_err(switch("setgid"))?;
    nix::unistd::setuid(target.uid).map_err(switch("setuid"))?;
    verify(target)
}

fn verify(target: &Target) -> Result<(), PrivilegeError> {
    let fail = |what: String| Err(PrivilegeError::Verify(target.name.clone(), what));
    let (uid, euid) = (nix::unistd::getuid(), nix::unistd::geteuid());
    let (gid, egid) = (nix::unistd::getgid(), nix::unistd::getegid());
    if uid != target.uid || euid != target.uid {
        return fail(format!("uid is {uid}, euid {euid}"));
    }
    if gid != target.gid || egid != target.gid {
        return fail(format!("gid is {gid}, egid {egid}"));
    }
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return fail("setuid(0) still succeeds".into());
    }
    if nix::unistd::setgid(Gid::from_raw(0)).is_ok() {
        return fail("setgid(0) still succeeds".into());
    }
    Ok(())
}
