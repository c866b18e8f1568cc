//! The portable lookup beneath the mount root: what
//! `openat2(RESOLVE_BENEATH)` does in the Linux kernel, done one path
//! component at a time with plain `openat`, so it works on every Unix
//! (macOS, FreeBSD, Linux before 5.6) and can be switched on anywhere with
//! [`StaticConfig::portable_lookup`](super::StaticConfig::portable_lookup).
//!
//! The walk starts at the root descriptor and opens each name with
//! `O_NOFOLLOW` relative to the directory opened before it, so the kernel
//! never resolves more than one name at a time and never follows a symlink
//! on its own:
//!
//! - `..` never reaches the kernel. The walk keeps the names of the
//!   directories it went through; `..` drops the last one and the walk
//!   reopens what is left from the root. A `..` at the root is refused. So
//!   a directory moved out of the root during the lookup cannot lead the
//!   walk outside (the kernel's own `..` of a moved directory would).
//! - A symlink (the open fails with `ELOOP`; FreeBSD says `EMLINK`, Linux
//!   `ENOTDIR` for `O_PATH | O_DIRECTORY`) is read with `readlinkat` and its
//!   target put in place of the name. An absolute target is refused; a
//!   relative one is walked by these same rules from the link's directory.
//!   A link therefore works only if its resolution never leaves the root,
//!   even for a moment — the same rule as `RESOLVE_BENEATH`, so both
//!   lookups serve and refuse the same paths. At most [`MAX_LINKS`] links
//!   per lookup (Linux's `MAXSYMLINKS`), then `ELOOP`.
//! - A link's text is used, never a "magic" jump (`/proc/PID/fd/N`), as
//!   with `RESOLVE_NO_MAGICLINKS`.
//! - Nothing is allocated: the path still to walk, the names walked and a
//!   link's target live in `PATH_MAX` buffers on the stack.
//! - Every lookup is bounded: at most [`MAX_OPENS`] `openat` calls, however
//!   the links and `..` combine, then `ELOOP`.
//!
//! Cost: one `openat` (and a `close`) per directory on the way, against a
//! single `openat2` for the whole path; a `..` in a link target re-walks
//! from the root. Intermediate directories are opened `O_PATH` on Linux
//! (search permission suffices, as for `openat2`) and `O_RDONLY` elsewhere
//! (there a directory on the way must also be readable).
//!
//! Hand-written rather than taken from `cap-std`, which emulates
//! `RESOLVE_BENEATH` the same way: its `Dir` brings its own file, path and
//! metadata types and several crates, and its resolver builds owned paths
//! and component lists per lookup, while this hot path keeps to the stack
//! and hands back the raw `errno` that tells a missing file (404) from
//! descriptor exhaustion (503).

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::path::PATH_CAP;

/// Most symlinks followed in one lookup (Linux's `MAXSYMLINKS`).
pub(super) const MAX_LINKS: u32 = 40;

/// Most `openat` calls in one lookup: a path of single-letter names has up
/// to `PATH_CAP / 2` of them; the rest is room for links and `..`.
const MAX_OPENS: u32 = PATH_CAP as u32;

/// Flags for a directory on the way.
#[cfg(target_os = "linux")]
const DIR_FLAGS: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
#[cfg(not(target_os = "linux"))]
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens `path` (relative, `/`-separated, no NUL) beneath `root` with
/// `flags` (to which `O_NOFOLLOW` is added: a final symlink is resolved
/// here, not by the kernel). An empty path or `.` opens the root itself.
///
/// Errors are those of `openat` and `readlinkat`, plus `EXDEV` for a path
/// that would leave the root, `ELOOP` past [`MAX_LINKS`] links or
/// [`MAX_OPENS`] opens, and `ENAMETOOLONG` when a link's expansion exceeds
/// `PATH_MAX`.
pub(super) fn open(root: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let final_flags = flags | OFlags::NOFOLLOW;
    // The path still to walk is `todo[pos..len]`.
    let mut todo = [0u8; PATH_CAP];
    let mut len = path.len();
    todo.get_mut(..len)
        .ok_or(Errno::NAMETOOLONG)?
        .copy_from_slice(path);
    let mut pos = 0;
    // Names of the directories walked from the root, `/`-separated, and
    // the descriptor of the last one (`None`: the root).
    let mut walked = Names::default();
    let mut cur: Option<OwnedFd> = None;
    let (mut links, mut opens) = (0, 0);
    loop {
        while todo[pos..len].first() == Some(&b'/') {
            pos += 1;
        }
        let dir = cur.as_ref().map_or(root, AsFd::as_fd);
        if pos == len {
            // Everything walked (the path was empty, `.`, or ended with
            // `/`): open the directory reached.
            spend(&mut opens)?;
            return openat(dir, b".", final_flags);
        }
        let end = todo[pos..len]
            .iter()
            .position(|&b| b == b'/')
            .map_or(len, |i| pos + i);
        let name = &todo[pos..end];
        if name == b"." {
            pos = end;
            continue;
        }
        if name == b".." {
            if !walked.pop() {
                return Err(Errno::XDEV);
            }
            cur = rewalk(root, walked.as_bytes(), &mut opens)?;
            pos = end;
            continue;
        }
        spend(&mut opens)?;
        let last = end == len;
        let opened = openat(dir, name, if last { final_flags } else { DIR_FLAGS });
        match opened {
            Ok(fd) if last => return Ok(fd),
            Ok(fd) => {
                if !walked.push(name) {
                    return Err(Errno::NAMETOOLONG);
                }
                cur = Some(fd);
                pos = end;
            }
            Err(e @ (Errno::LOOP | Errno::MLINK | Errno::NOTDIR)) => {
                // Perhaps a symlink: read it (relative to the same
                // directory) and walk its target instead of the name.
                let mut target = [0u8; PATH_CAP];
                let n = match rustix::fs::readlinkat_raw(dir, name, &mut target[..]) {
                    Ok(n) => n,
                    // Not a symlink: the open's error stands.
                    Err(Errno::INVAL) => return Err(e),
                    Err(other) => return Err(other),
                };
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::LOOP);
                }
                let target = &target[..n];
                match target.first() {
                    None => return Err(Errno::NOENT),
                    Some(b'/') => return Err(Errno::XDEV),
                    Some(_) => {}
                }
                // A full buffer may be a truncated target.
                let new_len = n + (len - end);
                if n == PATH_CAP || new_len >= PATH_CAP {
                    return Err(Errno::NAMETOOLONG);
                }
                todo.copy_within(end..len, n);
                todo[..n].copy_from_slice(target);
                (pos, len) = (0, new_len);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens the directories named in `walked` from the root again (after a
/// `..`). Each must still be a directory and not a symlink.
fn rewalk(root: BorrowedFd<'_>, walked: &[u8], opens: &mut u32) -> Result<Option<OwnedFd>, Errno> {
    let mut cur: Option<OwnedFd> = None;
    for name in walked.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
        spend(opens)?;
        let dir = cur.as_ref().map_or(root, AsFd::as_fd);
        cur = Some(openat(dir, name, DIR_FLAGS)?);
    }
    Ok(cur)
}

/// Counts one `openat` against [`MAX_OPENS`].
fn spend(opens: &mut u32) -> Result<(), Errno> {
    *opens += 1;
    if *opens > MAX_OPENS {
        Err(Errno::LOOP)
    } else {
        Ok(())
    }
}

/// `openat` of one name, retrying `EINTR` (slow file systems).
fn openat(dir: BorrowedFd<'_>, name: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    loop {
        match rustix::fs::openat(dir, name, flags, Mode::empty()) {
            Err(Errno::INTR) => {}
            other => return other,
        }
    }
}

/// Names of the directories walked, `/`-separated, in a stack buffer.
struct Names {
    buf: [u8; PATH_CAP],
    len: usize,
}

impl Default for Names {
    fn default() -> Names {
        Names {
            buf: [0; PATH_CAP],
            len: 0,
        }
    }
}

impl Names {
    /// Appends `name`; false if it does not fit in `PATH_MAX`.
    fn push(&mut self, name: &[u8]) -> bool {
        let sep = usize::from(self.len > 0);
        let end = self.len + sep + name.len();
        if end >= PATH_CAP {
            return false;
        }
        if sep == 1 {
            self.buf[self.len] = b'/';
        }
        self.buf[self.len + sep..end].copy_from_slice(name);
        self.len = end;
        true
    }

    /// Drops the last name; false at the root (nothing to drop).
    fn pop(&mut self) -> bool {
        if self.len == 0 {
            return false;
        }
        self.len = self.buf[..self.len]
            .iter()
            .rposition(|&b| b == b'/')
            .unwrap_or(0);
        true
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn open_in(root: &std::path::Path, path: &str) -> Result<OwnedFd, Errno> {
        let dir = rustix::fs::open(root, DIR_FLAGS, Mode::empty()).unwrap();
        open(
            dir.as_fd(),
            path.as_bytes(),
            OFlags::RDONLY | OFlags::CLOEXEC,
        )
    }

    #[test]
    fn refusals_carry_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        std::fs::write(root.join("f"), b"f").unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../secret", root.join("out")).unwrap();
        symlink("self_loop", root.join("self_loop")).unwrap();
        symlink("f/", root.join("file_slash")).unwrap();
        symlink("a/".repeat(2000), root.join("long")).unwrap();
        assert_eq!(open_in(&root, "..").unwrap_err(), Errno::XDEV);
        assert_eq!(open_in(&root, "d/../..").unwrap_err(), Errno::XDEV);
        assert_eq!(open_in(&root, "abs/passwd").unwrap_err(), Errno::XDEV);
        assert_eq!(open_in(&root, "out").unwrap_err(), Errno::XDEV);
        assert_eq!(open_in(&root, "self_loop").unwrap_err(), Errno::LOOP);
        assert_eq!(open_in(&root, "file_slash").unwrap_err(), Errno::NOTDIR);
        assert_eq!(open_in(&root, "f/x").unwrap_err(), Errno::NOTDIR);
        assert_eq!(open_in(&root, "missing").unwrap_err(), Errno::NOENT);
        // The link's text plus the rest of the path must fit in PATH_MAX.
        let rest = format!("long/{}", "b".repeat(200));
        assert_eq!(open_in(&root, &rest).unwrap_err(), Errno::NAMETOOLONG);
        // What is left is served.
        for ok in ["", ".", "f", "./d/../f", "d/", "d/.."] {
            assert!(open_in(&root, ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn climbing_links_are_bounded_by_the_open_budget() {
        // A 70-deep tree whose bottom links climb to the root and come back
        // down: one such link costs ~2,600 opens (each `..` re-walks from
        // the root), two in a row exceed MAX_OPENS and give up, where the
        // kernel (which counts only links) would go on.
        const DEPTH: usize = 70;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let bottom = root.join("d/".repeat(DEPTH));
        std::fs::create_dir_all(&bottom).unwrap();
        std::fs::write(bottom.join("leaf"), b"leaf").unwrap();
        let round_trip =
            |name: &str| format!("{}{}{name}", "../".repeat(DEPTH), "d/".repeat(DEPTH));
        symlink(round_trip("leaf"), bottom.join("once")).unwrap();
        symlink(round_trip("once"), bottom.join("twice")).unwrap();
        let deep = "d/".repeat(DEPTH);
        assert!(open_in(root, &format!("{deep}once")).is_ok());
        assert_eq!(
            open_in(root, &format!("{deep}twice")).unwrap_err(),
            Errno::LOOP
        );
    }
}

/// Needs an atomic exchange of two directories (`renameat2` /
/// `renameatx_np`).
#[cfg(all(test, any(target_os = "linux", target_vendor = "apple")))]
mod race {
    use std::os::unix::fs::symlink;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use rustix::fs::{renameat_with, RenameFlags, CWD};

    use super::*;

    /// `dir/hop7 -> hop6 -> ... -> hop0 -> leak -> ../secret`: the chain
    /// widens the window between entering `dir` and its `..`.
    fn chain(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        symlink("../secret", dir.join("leak")).unwrap();
        symlink("leak", dir.join("hop0")).unwrap();
        for i in 1..8 {
            symlink(format!("hop{}", i - 1), dir.join(format!("hop{i}"))).unwrap();
        }
    }

    #[test]
    fn a_directory_moved_out_mid_lookup_does_not_lead_outside() {
        // root/a and out/a hold the same link chain ending in ../secret;
        // only out/ has a secret. Another thread keeps exchanging the two
        // `a` directories, so a lookup that entered root/a may find that
        // directory in out/ when it reaches `..`. A walk asking the kernel
        // for `..` of the directory it holds would then serve out/secret;
        // this one re-walks from the root by name and only ever sees
        // root/secret, which does not exist.
        let dir = tempfile::tempdir().unwrap();
        let (root, out) = (dir.path().join("root"), dir.path().join("out"));
        chain(&root.join("a"));
        chain(&out.join("a"));
        std::fs::write(out.join("secret"), b"SECRET").unwrap();
        let root_fd = rustix::fs::open(&root, DIR_FLAGS, Mode::empty()).unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let stop = stop.clone();
            let (inside, outside) = (root.join("a"), out.join("a"));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    renameat_with(CWD, &inside, CWD, &outside, RenameFlags::EXCHANGE).unwrap();
                }
            })
        };
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let leaked = (0..2_000)
            .filter(|_| open(root_fd.as_fd(), b"a/hop7", flags).is_ok())
            .count();
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        assert_eq!(leaked, 0, "lookups that reached out/secret");
    }
}
