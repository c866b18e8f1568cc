//! The pid file of [`App::pid_file`](crate::App::pid_file): written by
//! the master (or the single serving process) when it binds, removed when
//! the [`Server`](super::Server) is done (dropped), but only if the file
//! still holds its own pid (another instance may have taken the path over
//! meanwhile). Forked workers never remove it: they exit without dropping
//! the master's state, and the pid check would stop them anyway.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// A pid file this process wrote.
#[derive(Debug)]
pub(crate) struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's pid and a newline to `path`, through a
    /// temporary file renamed over it, so that a reader never sees a
    /// partial file. The error names the path.
    ///
    /// The temporary file's name is predictable, in a directory that may
    /// be the workers' user's (`/run/app` owned by `www-data`), and the
    /// master may be root: it is created new (`O_EXCL`), never through a
    /// symbolic link (`O_NOFOLLOW`), or a user who planted a link there
    /// would have root truncate and write any file. Whatever is in the
    /// way (a link, a crashed start's file) is removed, not followed
    /// (`rename` over `path` replaces a link there the same way).
    pub(crate) fn create(path: &Path) -> io::Result<PidFile> {
        let pid = std::process::id();
        let named = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot write the pid file {}: {e}", path.display()),
            )
        };
        if let Some(other) = live_owner(path, pid) {
            // nginx writes over it too; gunicorn refuses to start. A stale
            // file's pid may have been reused by an unrelated process, so
            // refusing could keep a server from starting after a crash:
            // say it, loudly, and go on.
            log::warn!(
                "pid file {}: it names pid {other}, which is running: written over (two \
                 servers given one pid file?)",
                path.display()
            );
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{pid}.tmp"));
        let tmp = PathBuf::from(tmp);
        let written = create_new(&tmp)
            .or_else(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => {
                    std::fs::remove_file(&tmp)?;
                    create_new(&tmp)
                }
                _ => Err(e),
            })
            .and_then(|mut f| f.write_all(format!("{pid}\n").as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(named(e));
        }
        Ok(PidFile {
            path: path.to_owned(),
            pid,
        })
    }

    /// Removes the file if it still holds this process's pid.
    fn remove(&self) {
        if self.pid != std::process::id() {
            return; // a forked child: the file is not its own
        }
        let holds_ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim().parse::<u32>().ok() == Some(self.pid));
        if holds_ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!("cannot remove the pid file {}: {e}", self.path.display());
            }
        } else {
            log::info!(
                "pid file {} no longer holds pid {}: left in place",
                self.path.display(),
                self.pid
            );
        }
    }
}

/// The pid the file at `path` names, if it is a running process other
/// than `ours`.
fn live_owner(path: &Path, ours: u32) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: i32 = text.trim().parse().ok().filter(|&p: &i32| p > 0)?;
    if pid as u32 == ours {
        return None;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Some(pid),
        Err(_) => None,
    }
}

/// Creates `path` for writing, only if nothing is there, without
/// following a symbolic link.
fn create_new(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

impl Drop for PidFile {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_with_our_pid_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");
        let f = PidFile::create(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        // Written over an older file, with no temporary file left.
        let again = PidFile::create(&path).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(again);
        assert!(!path.exists());
        drop(f); // already gone: nothing to do
    }

    /// A link planted at the temporary file's predictable name is not
    /// followed: the file it points to (root's, say) is left alone.
    #[test]
    fn a_link_at_the_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "ORIGINAL").unwrap();
        let path = dir.path().join("app.pid");
        let tmp = dir
            .path()
            .join(format!("app.pid.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        let f = PidFile::create(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "ORIGINAL");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        assert!(std::fs::symlink_metadata(&tmp).is_err());
        drop(f);
    }

    #[test]
    fn a_running_process_named_by_the_file_is_told_apart_from_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");
        assert_eq!(live_owner(&path, std::process::id()), None);
        // This test's own parent runs; pid 2^22 + 1 is beyond pid_max.
        let parent = std::os::unix::process::parent_id();
        std::fs::write(&path, format!("{parent}\n")).unwrap();
        assert_eq!(live_owner(&path, std::process::id()), Some(parent as i32));
        std::fs::write(&path, "4194305\n").unwrap();
        assert_eq!(live_owner(&path, std::process::id()), None);
        std::fs::write(&path, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(live_owner(&path, std::process::id()), None);
    }

    #[test]
    fn a_file_taken_over_by_another_pid_is_left_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");
        let f = PidFile::create(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        drop(f);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("app.pid");
        let err = PidFile::create(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("cannot write the pid file"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}
