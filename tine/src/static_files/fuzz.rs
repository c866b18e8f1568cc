//! Entry points for the fuzz targets in `tine/fuzz`, reached through
//! `crate::__fuzz`; not part of the API.

#[cfg(target_os = "linux")]
use std::ffi::CString;

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::OFlags;
use rustix::io::Errno;

use super::path::RelPath;
use super::range::{self, RangeDecision};

/// `rel` (a request path's remainder after the mount prefix) as the static
/// handler validates it: the root-relative path it would open and whether
/// it ended with `/`, or `None` for a 404.
pub fn rel_path(rel: &str) -> Option<(Vec<u8>, bool)> {
    let p = RelPath::parse(rel)?;
    assert_eq!(p.as_cstr().to_bytes().len(), p.len().max(1));
    Some((p.as_bytes().to_vec(), p.trailing_slash()))
}

/// Opens `path` beneath the directory `root` with the flags the static
/// handler uses, by `openat2(RESOLVE_BENEATH)` (Linux) or, with
/// `portable`, by the component-by-component walk. The empty path is the
/// root (`.`, as `RelPath::as_cstr` gives it); a path holding NUL is
/// `EINVAL` (the handler never builds one).
pub fn open_beneath(root: &OwnedFd, path: &[u8], portable: bool) -> Result<OwnedFd, Errno> {
    let path = if path.is_empty() { b"." } else { path };
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    if path.contains(&0) {
        return Err(Errno::INVAL);
    }
    if portable {
        return super::beneath::open(root.as_fd(), path, flags);
    }
    #[cfg(target_os = "linux")]
    {
        let path = CString::new(path).map_err(|_| Errno::INVAL)?;
        super::openat2(root, &path, flags)
    }
    #[cfg(not(target_os = "linux"))]
    {
        super::beneath::open(root.as_fd(), path, flags)
    }
}

/// What the static handler answers to `Range: <value>` for a file of
/// `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 200 with the whole file.
    Full,
    /// 206 with `len` bytes from `start`.
    Partial {
        /// First byte offset.
        start: u64,
        /// Number of bytes.
        len: u64,
    },
    /// 416.
    Unsatisfiable,
}

/// `range::decide`, as a [`RangeAnswer`].
pub fn range(value: &[u8], size: u64) -> RangeAnswer {
    match range::decide(value, size) {
        RangeDecision::Full => RangeAnswer::Full,
        RangeDecision::Partial { start, len } => RangeAnswer::Partial { start, len },
        RangeDecision::Unsatisfiable => RangeAnswer::Unsatisfiable,
    }
}

/// The codings the static handler would try for these `Accept-Encoding`
/// fields, best first (`"br"`, `"gzip"`).
pub fn accept_encoding(headers: &http::HeaderMap) -> Vec<&'static str> {
    super::encoding::preferred(headers)
        .map(|c| c.token())
        .collect()
}

/// What the static handler's preconditions say for `headers`, a file with
/// the strong tag `etag` (quotes included) and the modification time
/// `last_modified`: `"proceed"`, `"304"` or `"412"`; and whether a `Range`
/// may be honoured (`If-Range`).
pub fn preconditions(
    headers: &http::HeaderMap,
    etag: &[u8],
    last_modified: Option<u64>,
) -> (&'static str, bool) {
    use super::conditional::{evaluate, if_range_allows, Precondition};
    let status = match evaluate(headers, etag, last_modified) {
        Precondition::Proceed => "proceed",
        Precondition::NotModified => "304",
        Precondition::Failed => "412",
    };
    (status, if_range_allows(headers, etag, last_modified))
}
