//! Request-path validation: turns the raw (percent-encoded) remainder of a
//! request path into a root-relative, NUL-terminated file-system path held on
//! the stack, rejecting anything that could name a file outside the root.

use std::ffi::CStr;

/// Longest path (including the terminating NUL) the kernel accepts
/// (`PATH_MAX`). Longer paths would fail with `ENAMETOOLONG` anyway.
pub(super) const PATH_CAP: usize = 4096;

/// A validated path relative to the mount root, built in a fixed stack
/// buffer so that serving a file needs no heap allocation for the path.
///
/// Invariants: `buf[..len]` never contains NUL, never starts with `/`, has no
/// empty, `.` or `..` component, and `buf[len] == 0`.
pub(super) struct RelPath {
    buf: [u8; PATH_CAP],
    len: usize,
    /// The request path ended with `/` (so a directory may be served via its
    /// index file instead of redirecting).
    trailing_slash: bool,
}

impl RelPath {
    /// Validates and percent-decodes `rel`, segment by segment.
    ///
    /// `rel` may start with one `/` (it is the remainder after a mount
    /// prefix). Returns `None` (→ 404) when a segment:
    /// - is empty (`a//b`, or a second leading `/`, i.e. `//etc/passwd`),
    /// - decodes to `..`,
    /// - decodes to something containing `/`, `\` or NUL (so `..%2f`, `%2f`
    ///   and `%5c` cannot smuggle separators),
    /// - contains a malformed percent escape (`%zz`, `%4`),
    ///
    /// or when the decoded path does not fit in `PATH_MAX`. Segments that
    /// decode to `.` are dropped. Decoded bytes need not be UTF-8 (Linux file
    /// names are bytes).
    pub(super) fn parse(rel: &str) -> Option<RelPath> {
        let mut p = RelPath {
            buf: [0; PATH_CAP],
            len: 0,
            trailing_slash: rel.ends_with('/'),
        };
        let s = rel.strip_prefix('/').unwrap_or(rel);
        let body = s.strip_suffix('/').unwrap_or(s);
        if body.is_empty() {
            // "" or "/" : the mount root itself.
            return if s.is_empty() { Some(p) } else { None };
        }
        for seg in body.split('/') {
            if seg.is_empty() || !valid_escapes(seg.as_bytes()) {
                return None;
            }
            let mark = p.len;
            if mark > 0 && !p.push(b"/") {
                return None;
            }
            let start = p.len;
            for b in percent_encoding::percent_decode(seg.as_bytes()) {
                if matches!(b, 0 | b'/' | b'\\') || !p.push(&[b]) {
                    return None;
                }
            }
            match &p.buf[start..p.len] {
                b".." => return None,
                b"." => {
                    p.truncate(mark);
                    // A last `.` names the directory before it, as a
                    // trailing `/` does (RFC 3986 §5.2.4: `a/.` is `a/`),
                    // so `file.txt/.` is not the file.
                    p.trailing_slash = true;
                }
                _ => p.trailing_slash = rel.ends_with('/'),
            }
        }
        Some(p)
    }

    /// True when the request path ended with `/`.
    pub(super) fn trailing_slash(&self) -> bool {
        self.trailing_slash
    }

    /// Current length of the path in bytes (used as a mark for
    /// [`RelPath::truncate`]).
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Appends `name` as a new path component (for the index file). The
    /// caller guarantees `name` is a single, valid component.
    pub(super) fn join(&mut self, name: &[u8]) -> bool {
        (self.len == 0 || self.push(b"/")) && self.push(name)
    }

    /// Appends raw bytes to the last component (for `.br` / `.gz`).
    pub(super) fn push(&mut self, bytes: &[u8]) -> bool {
        let end = self.len + bytes.len();
        if end >= PATH_CAP {
            return false;
        }
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
        self.buf[end] = 0;
        true
    }

    /// Cuts the path back to `len` bytes (a value from [`RelPath::len`]).
    pub(super) fn truncate(&mut self, len: usize) {
        debug_assert!(len <= self.len);
        self.len = len;
        self.buf[len] = 0;
    }

    /// The decoded path without the NUL (empty for the root).
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The path as a C string for `openat2`; the root is `"."`.
    pub(super) fn as_cstr(&self) -> &CStr {
        if self.len == 0 {
            return c".";
        }
        // Invariant: no interior NUL and buf[len] == 0, so this cannot fail.
        CStr::from_bytes_with_nul(&self.buf[..=self.len]).unwrap_or(c".")
    }
}

/// Every `%` must be followed by two hex digits.
fn valid_escapes(seg: &[u8]) -> bool {
    let mut i = 0;
    while i < seg.len() {
        if seg[i] == b'%' {
            match seg.get(i + 1..i + 3) {
                Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(rel: &str) -> (Vec<u8>, bool) {
        let p = RelPath::parse(rel).unwrap_or_else(|| panic!("{rel:?} rejected"));
        assert_eq!(p.as_cstr().to_bytes().len(), p.len().max(1));
        (p.as_bytes().to_vec(), p.trailing_slash())
    }

    fn rejected(rel: &str) -> bool {
        RelPath::parse(rel).is_none()
    }

    #[test]
    fn plain_paths() {
        assert_eq!(ok("a.txt"), (b"a.txt".to_vec(), false));
        assert_eq!(ok("/a.txt"), (b"a.txt".to_vec(), false));
        assert_eq!(ok("/dir/sub/f.css"), (b"dir/sub/f.css".to_vec(), false));
        assert_eq!(ok("/dir/"), (b"dir".to_vec(), true));
        assert_eq!(ok("dir/"), (b"dir".to_vec(), true));
        assert_eq!(ok(".hidden"), (b".hidden".to_vec(), false));
        assert_eq!(ok("..."), (b"...".to_vec(), false));
        assert_eq!(ok("..a"), (b"..a".to_vec(), false));
    }

    #[test]
    fn root_forms() {
        assert_eq!(ok(""), (Vec::new(), false));
        assert_eq!(ok("/"), (Vec::new(), true));
        assert_eq!(RelPath::parse("").unwrap().as_cstr(), c".");
        assert!(rejected("//"));
    }

    #[test]
    fn decoding() {
        assert_eq!(ok("/a%20b.txt"), (b"a b.txt".to_vec(), false));
        assert_eq!(ok("/%C3%A9t%C3%A9"), ("été".as_bytes().to_vec(), false));
        // Non-UTF-8 bytes are legal Linux file names.
        assert_eq!(ok("/%FF"), (vec![0xff], false));
        // Only one level of decoding: %252e stays a literal "%2e".
        assert_eq!(ok("/%252e%252e/x"), (b"%2e%2e/x".to_vec(), false));
    }

    #[test]
    fn dot_segments_are_dropped() {
        assert_eq!(ok("/./a"), (b"a".to_vec(), false));
        assert_eq!(ok("/a/./b"), (b"a/b".to_vec(), false));
        assert_eq!(ok("/a/%2e/b"), (b"a/b".to_vec(), false));
        // A last `.` is a trailing slash (RFC 3986 §5.2.4).
        assert_eq!(ok("/a/."), (b"a".to_vec(), true));
        assert_eq!(ok("/a/%2e"), (b"a".to_vec(), true));
        assert_eq!(ok("/a/./."), (b"a".to_vec(), true));
        assert_eq!(ok("/./a"), (b"a".to_vec(), false));
        assert_eq!(ok("/./"), (Vec::new(), true));
        assert_eq!(ok("/."), (Vec::new(), true));
    }

    #[test]
    fn traversal_rejected() {
        for rel in [
            "..",
            "/..",
            "/../secret",
            "../secret",
            "/a/../../secret",
            "/a/..",
            "/%2e%2e/secret",
            "/%2E%2E/secret",
            "/.%2e/secret",
            "/%2e./secret",
            "/..%2fsecret",
            "/..%2Fsecret",
            "/%2e%2e%2fsecret",
            "/a/%2f/b",
            "/%2fetc%2fpasswd",
            "/..\\secret",
            "/..%5csecret",
            "/a\\b",
            "/a%00b",
            "/%00",
            "//etc/passwd",
            "///etc/passwd",
            "/a//b",
            "/a%zz",
            "/a%4",
            "/a%",
        ] {
            assert!(rejected(rel), "{rel:?} accepted");
        }
    }

    #[test]
    fn absolute_rel_is_made_relative() {
        // One leading '/' is the mount separator; the rest is root-relative.
        assert_eq!(ok("/etc/passwd"), (b"etc/passwd".to_vec(), false));
    }

    #[test]
    fn too_long_rejected() {
        let long = "a/".repeat(PATH_CAP / 2 + 1);
        assert!(rejected(&long));
        let mut p = RelPath::parse("/a").unwrap();
        assert!(!p.push(&[b'x'; PATH_CAP]));
        assert_eq!(p.as_bytes(), b"a");
    }

    #[test]
    fn join_and_truncate() {
        let mut p = RelPath::parse("/").unwrap();
        assert!(p.join(b"index.html"));
        assert_eq!(p.as_cstr(), c"index.html");
        let mut p = RelPath::parse("/d/").unwrap();
        let mark = p.len();
        assert!(p.join(b"index.html"));
        assert!(p.push(b".br"));
        assert_eq!(p.as_cstr(), c"d/index.html.br");
        p.truncate(mark);
        assert_eq!(p.as_cstr(), c"d");
    }
}
