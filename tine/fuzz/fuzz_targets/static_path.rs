//! Static files: no request path opens anything outside the mount root.
//!
//! The input is the remainder of a request path after the mount prefix,
//! as the static handler gets it. The root is a fixture directory with
//! files, subdirectories and symlinks, some of which point outside it (at
//! a file beside the root, at `..`, at an absolute path, at themselves).
//! Checked:
//!
//! - the handler's validation (`rel_path`) gives a relative path with no
//!   empty, `.` or `..` component and no NUL or `\`, and the same path as
//!   the reference decoding below (or refuses, as it does);
//! - that path, and the raw input itself (its `..` and symlinks left to
//!   the lookups), opened by both lookups (`openat2(RESOLVE_BENEATH)` and
//!   the portable walk): whatever opens is the root or lies beneath it, as
//!   the kernel names the open descriptor, and the two lookups open the
//!   same file or both refuse.
#![no_main]

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Fixture {
    /// Kept for its lifetime (the directory is removed with it).
    _dir: tempfile::TempDir,
    /// The root, canonical, as `/proc/self/fd` names it.
    root: PathBuf,
    root_fd: OwnedFd,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let base = dir.path().canonicalize().expect("canonical path");
        let root = base.join("root");
        let write = |p: &Path| std::fs::write(p, b"x").expect("write fixture file");
        std::fs::create_dir_all(root.join("d/e")).expect("create fixture");
        std::fs::create_dir_all(base.join("rootx")).expect("create fixture");
        write(&base.join("secret"));
        write(&base.join("rootx/f"));
        write(&root.join("f"));
        write(&root.join("index.html"));
        write(&root.join("d/g"));
        write(&root.join("d/e/h"));
        for (link, target) in [
            ("in", "d"),
            ("d/back", "../f"),
            ("d/e/up2", "../../f"),
            ("d/e/root", "../.."),
            ("up", "../secret"),
            ("sibling", "../rootx/f"),
            ("d/out", "../../secret"),
            ("dotdot", ".."),
            ("abs", "/etc"),
            ("abs_root", "/"),
            ("magic", "/proc/self/root"),
            ("loop", "loop"),
            ("dslash", "d/"),
            ("fslash", "f/"),
            ("chain", "in/e/root/up"),
            ("d/e/deep", "../../in/e/../back"),
            ("empty_dots", "./././f"),
        ] {
            symlink(target, root.join(link)).expect("create fixture symlink");
        }
        let root_fd = OwnedFd::from(std::fs::File::open(&root).expect("open root"));
        Fixture {
            _dir: dir,
            root,
            root_fd,
        }
    })
}

/// The reference: the path the handler should open for `rel`, and whether
/// it names a directory (a trailing `/`, or a last `.` segment).
fn reference(rel: &str) -> Option<(Vec<u8>, bool)> {
    let s = rel.strip_prefix('/').unwrap_or(rel);
    let body = s.strip_suffix('/').unwrap_or(s);
    if body.is_empty() {
        return s.is_empty().then(|| (Vec::new(), rel.ends_with('/')));
    }
    let mut out: Vec<u8> = Vec::new();
    let mut dir = false;
    for seg in body.split('/') {
        let decoded = percent_decode(seg.as_bytes())?;
        if decoded.is_empty() || decoded == b".." || decoded.iter().any(|b| b"\0/\\".contains(b)) {
            return None;
        }
        if decoded == b"." {
            dir = true;
            continue;
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(&decoded);
        dir = rel.ends_with('/');
    }
    Some((out, dir))
}

/// Strict percent-decoding: every `%` takes two hex digits.
fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Opens `path` by both lookups; checks that what opens is beneath the
/// root and that both agree. `compare`: whether they must (the portable
/// walk reads a leading `/` as relative, `openat2` refuses it; the handler
/// never passes one).
fn open_both(fx: &Fixture, path: &[u8], compare: bool) {
    let kernel = tine::__fuzz::open_beneath(&fx.root_fd, path, false);
    let portable = tine::__fuzz::open_beneath(&fx.root_fd, path, true);
    let mut ids = [None, None];
    for (slot, (how, opened)) in ids
        .iter_mut()
        .zip([("openat2", &kernel), ("portable", &portable)])
    {
        let Ok(fd) = opened else { continue };
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .expect("readlink /proc/self/fd");
        assert!(
            link == fx.root || link.starts_with(&fx.root),
            "{how} lookup of {:?} opened {link:?}, outside the root {:?}",
            String::from_utf8_lossy(path),
            fx.root
        );
        let meta = std::fs::metadata(&link).expect("stat opened file");
        *slot = Some((meta.dev(), meta.ino()));
    }
    if compare {
        assert_eq!(
            ids[0],
            ids[1],
            "the lookups disagree on {:?}: openat2 {:?}, portable {:?}",
            String::from_utf8_lossy(path),
            kernel.as_ref().err(),
            portable.as_ref().err()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    if let Ok(rel) = std::str::from_utf8(data) {
        let got = tine::__fuzz::rel_path(rel);
        if let Some((path, _)) = &got {
            assert!(!path.starts_with(b"/"), "{rel:?} gave an absolute path");
            assert!(!path.contains(&0) && !path.contains(&b'\\'), "{rel:?}");
            if !path.is_empty() {
                for component in path.split(|&b| b == b'/') {
                    assert!(
                        !matches!(component, b"" | b"." | b".."),
                        "{rel:?} gave {:?}",
                        String::from_utf8_lossy(path)
                    );
                }
            }
            open_both(fx, path, true);
        }
        // The reference leaves out the handler's length limit.
        if rel.len() < 4000 {
            assert_eq!(got, reference(rel), "{rel:?}");
        }
    }
    open_both(fx, data, !data.starts_with(b"/"));
});
