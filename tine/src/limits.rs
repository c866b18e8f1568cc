//! Every limit tine enforces, with its default and the reason for it.

use std::time::Duration;

/// Resource limits for one server, set with [`App::limits`](crate::App::limits).
///
/// Each field is a hard bound the event loop enforces per connection or per
/// process; when a client crosses one it gets the documented HTTP status and
/// the connection is closed, never a panic or an unbounded buffer.
///
/// ```
/// use std::time::Duration;
/// let limits = tine::Limits {
///     max_body: 8 * 1024 * 1024,
///     idle_timeout: Duration::from_secs(30),
///     ..tine::Limits::default()
/// };
/// assert_eq!(limits.max_header, 16 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request head (request line plus headers), in bytes.
    /// Default 16 KiB: more than any browser sends, small enough that a
    /// client cannot make a worker buffer much. Over it: `431` (`414` when
    /// the request line alone does not end within it), then close.
    pub max_header: usize,
    /// Most header fields in one request. Default 100. Over it: `431`.
    pub max_headers: usize,
    /// Largest request body, in bytes, whether sent with `Content-Length`
    /// or chunked. Default 1 MiB, as in the original framework. Over it:
    /// `413`, sent as soon as the declared length is known, then close.
    pub max_body: usize,
    /// Time a client has to deliver a complete request head once it has
    /// started one (or once it connected). Default 10 s: the slowloris
    /// defence. On expiry: `408`, then close.
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept open between requests, and
    /// the longest pause allowed while a body is being received or a
    /// response is being sent. Default 60 s, as in the original.
    pub idle_timeout: Duration,
    /// Most open connections per process. Default 10,000. At the limit the
    /// process stops accepting (connections wait in the kernel's queue)
    /// until a slot frees; it never fails with `EMFILE`.
    pub max_connections: usize,
    /// How long a graceful shutdown waits for in-flight requests and queued
    /// responses before closing what is left. Default 10 s.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header: 16 * 1024,
            max_headers: 100,
            max_body: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(10),
        }
    }
}
