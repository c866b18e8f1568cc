//! Dropping privileges: the master keeps the identity it was started with
//! (root, to bind port 443 or read keys only root may read) and each
//! worker switches to the configured user and group right after the fork,
//! before any app code (`on_worker_start`, handlers) runs. In
//! single-process mode the process switches once its sockets are bound.
//!
//! Names are resolved once, by the master at start-up: an unknown user or
//! group, or a switch that needs root when not running as root, is a
//! start-up error naming it. A worker that cannot switch exits with status
//! 1 (and is respawned with backoff) rather than serve with privileges.
//!
//! The switch sets the supplementary groups (the user's, from the group
//! database, or just the group when only a group is given), then the gid,
//! then the uid, and checks that root cannot be regained. Sockets the
//! master binds later (a scale-up's `SO_REUSEPORT` socket) are still bound
//! by the master, so they join the group of sockets of the same owner.
//! A Unix socket file the master binds is given to the workers' user and
//! group, so the socket's mode speaks of them.
//!
//! Linux and FreeBSD only: macOS has no `setgroups` in the `nix` crate
//! tine uses, and dropping root while keeping its supplementary groups
//! would be a half-done drop, so it is refused there at start-up.

use std::io;

use nix::unistd::{Gid, Uid};

/// Who workers become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// For the log: `user:group`.
    pub name: String,
    pub uid: Option<Uid>,
    pub gid: Gid,
    /// Supplementary groups, `gid` included.
    pub groups: Vec<Gid>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Resolves `user` and `group` (names, or numbers) into the credentials
/// workers take; `None` when neither is set.
pub(crate) fn resolve(user: Option<&str>, group: Option<&str>) -> io::Result<Option<Credentials>> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    if cfg!(target_vendor = "apple") {
        return Err(invalid(
            "tine: App::user and App::group are not supported on macOS".into(),
        ));
    }
    let user = match user {
        None => None,
        Some(name) => Some(lookup_user(name)?),
    };
    let gid = match (group, &user) {
        (Some(name), _) => lookup_group(name)?,
        (None, Some(u)) => u.gid,
        (None, None) => unreachable!("checked above"),
    };
    let groups = match &user {
        Some(u) => supplementary(u, gid)?,
        None => vec![gid],
    };
    let euid = nix::unistd::geteuid();
    let changes = user.as_ref().is_some_and(|u| u.uid != euid) || gid != nix::unistd::getegid();
    if changes && !euid.is_root() {
        return Err(invalid(format!(
            "tine: switching workers to {} needs root (running as uid {euid})",
            describe(user.as_ref().map(|u| u.name.as_str()), group, gid)
        )));
    }
    Ok(Some(Credentials {
        name: describe(user.as_ref().map(|u| u.name.as_str()), group, gid),
        uid: user.map(|u| u.uid),
        gid,
        groups,
    }))
}

fn describe(user: Option<&str>, group: Option<&str>, gid: Gid) -> String {
    match (user, group) {
        (Some(u), Some(g)) => format!("{u}:{g}"),
        (Some(u), None) => format!("{u}:{gid}"),
        (None, Some(g)) => format!("group {g}"),
        (None, None) => String::new(),
    }
}

fn lookup_user(name: &str) -> io::Result<nix::unistd::User> {
    let found = match name.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(Uid::from_raw(uid)),
        Err(_) => nix::unistd::User::from_name(name),
    };
    found
        .map_err(|e| invalid(format!("tine: cannot look up user {name:?}: {e}")))?
        .ok_or_else(|| invalid(format!("tine: no such user: {name:?}")))
}

fn lookup_group(name: &str) -> io::Result<Gid> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(Gid::from_raw(gid));
    }
    nix::unistd::Group::from_name(name)
        .map_err(|e| invalid(format!("tine: cannot look up group {name:?}: {e}")))?
        .map(|g| g.gid)
        .ok_or_else(|| invalid(format!("tine: no such group: {name:?}")))
}

#[cfg(not(target_vendor = "apple"))]
fn supplementary(user: &nix::unistd::User, gid: Gid) -> io::Result<Vec<Gid>> {
    let name = std::ffi::CString::new(user.name.as_str())
        .map_err(|_| invalid(format!("tine: bad user name {:?}", user.name)))?;
    nix::unistd::getgrouplist(&name, gid).map_err(|e| {
        invalid(format!(
            "tine: cannot list the groups of {:?}: {e}",
            user.name
        ))
    })
}

#[cfg(target_vendor = "apple")]
fn supplementary(_: &nix::unistd::User, gid: Gid) -> io::Result<Vec<Gid>> {
    Ok(vec![gid])
}

impl Credentials {
    /// Switches this process (a worker just forked, or the single process)
    /// to these credentials; any failure is an error, and the process must
    /// not serve.
    pub(crate) fn apply(&self) -> io::Result<()> {
        let fail = |what: &str, e: nix::Error| {
            io::Error::other(format!("cannot switch to {} ({what}): {e}", self.name))
        };
        #[cfg(not(target_vendor = "apple"))]
        if nix::unistd::geteuid().is_root() {
            nix::unistd::setgroups(&self.groups).map_err(|e| fail("setgroups", e))?;
        }
        nix::unistd::setgid(self.gid).map_err(|e| fail("setgid", e))?;
        if let Some(uid) = self.uid {
            nix::unistd::setuid(uid).map_err(|e| fail("setuid", e))?;
            // setuid from root changes the real, effective and saved ids:
            // there must be no way back.
            if !uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
                return Err(io::Error::other(format!(
                    "cannot switch to {}: root could be regained",
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// Gives a Unix socket file the master bound to the user and group
    /// workers run as (gunicorn's rule), so that with a mode such as 0660
    /// whoever shares the group (a proxy in `www-data`) may connect. A
    /// socket unit's or an inherited file is not touched: its owner is
    /// set where it was made.
    ///
    /// `lchown`, not `chown`, and only to a socket of one name: the
    /// directory may be writable by that user, and a link put in the
    /// socket's place (symbolic, or a hard link to another file) would
    /// otherwise have root give the user the file it names.
    pub(crate) fn own(&self, path: &std::path::Path) -> io::Result<()> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        // Nor through a hard link: a file put in the socket's place under
        // a second name is not the socket.
        let meta = std::fs::symlink_metadata(path)?;
        if !meta.file_type().is_socket() || meta.nlink() != 1 {
            return Err(io::Error::other(format!(
                "tine: unix:{} is no longer the socket just bound",
                path.display()
            )));
        }
        let uid = self.uid.map(Uid::as_raw);
        std::os::unix::fs::lchown(path, uid, Some(self.gid.as_raw())).map_err(|e| {
            io::Error::other(format!(
                "tine: cannot give unix:{} to {}: {e}",
                path.display(),
                self.name
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_do_without_user_or_group() {
        assert_eq!(resolve(None, None).unwrap(), None);
    }

    #[test]
    #[cfg(not(target_vendor = "apple"))]
    fn unknown_names_are_errors_naming_them() {
        let err = resolve(Some("no-such-user-tine-test"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tine: no such user: \"no-such-user-tine-test\""
        );
        let err = resolve(None, Some("no-such-group-tine-test")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tine: no such group: \"no-such-group-tine-test\""
        );
    }

    #[test]
    #[cfg(not(target_vendor = "apple"))]
    fn the_current_user_resolves_without_root() {
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .expect("the test runs as a user in the passwd database");
        let c = resolve(Some(&me.name), None).unwrap().unwrap();
        assert_eq!(c.uid, Some(me.uid));
        assert_eq!(c.gid, me.gid);
        assert!(c.groups.contains(&me.gid), "{c:?}");
        // By number too.
        let by_number = resolve(Some(&me.uid.to_string()), None).unwrap().unwrap();
        assert_eq!(by_number.uid, Some(me.uid));
    }

    /// A link in the socket file's place, symbolic or hard, is refused and
    /// what it names stays root's (a user who may write the directory
    /// could plant one); the socket itself is given away.
    #[test]
    #[allow(clippy::print_stderr)] // says it skipped
    fn own_gives_the_socket_and_never_a_link() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("!!! SKIPPED: changing owners needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("secret");
        std::fs::write(&target, "x").unwrap();
        let nobody = Credentials {
            name: "nobody".into(),
            uid: Some(Uid::from_raw(65534)),
            gid: Gid::from_raw(65534),
            groups: vec![Gid::from_raw(65534)],
        };
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let hard = dir.path().join("hard.sock");
        std::fs::hard_link(&target, &hard).unwrap();
        for planted in [&link, &hard] {
            assert!(nobody.own(planted).is_err(), "{planted:?}");
            let uid = std::fs::metadata(&target).unwrap().uid();
            assert_eq!(uid, 0, "the target stays root's");
        }
        let sock = dir.path().join("app.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        nobody.own(&sock).unwrap();
        assert_eq!(std::fs::symlink_metadata(&sock).unwrap().uid(), 65534);
    }
}
