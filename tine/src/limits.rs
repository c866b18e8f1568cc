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
    /// client cannot make a worker buffer much. Over it: `431`, then close.
    pub max_header: usize,
    /// Most header fields in one request. Default 100. Over it: `431`.
    pub max_headers: usize,
    /// Largest request body, in bytes, whether sent with `Content-Length`
    /// or chunked. Default 1 MiB, as in the original framework. Over it:
    /// `413`, sent as soon as the declared length is known, then close.
    pub max_body: usize,
    /// Time a client has to deliver a complete request head once it has
    /// started one (from its first byte, also when that byte arrived behind
    /// a pipelined request), or once it connected. Default 10 s: the
    /// slowloris defence. On expiry: `408`, then close.
    pub header_timeout: Duration,
    /// Time a client has to deliver a complete request body once its head
    /// has arrived: a deadline for the whole body, which arriving bytes do
    /// not extend (unlike nginx's `client_body_timeout`, which times the
    /// pause between two reads), so a body trickled a byte at a time cannot
    /// hold a connection. Default 60 s: the default [`max_body`] of 1 MiB
    /// then needs about 17 KiB/s; raise it together with `max_body` for
    /// large uploads over slow links. On expiry: `408`, then close.
    ///
    /// [`max_body`]: Limits::max_body
    pub body_timeout: Duration,
    /// Time an idle keep-alive connection is kept open between requests, and
    /// the longest pause allowed while a body is being received or a
    /// response is being sent. Default 60 s, as in the original.
    pub idle_timeout: Duration,
    /// Most open connections per process. Default 10,000. At the limit the
    /// process stops accepting (connections wait in the kernel's queue)
    /// until a slot frees; it never fails with `EMFILE`.
    pub max_connections: usize,
    /// Most open connections per process from one client address (IPv6:
    /// one /64 network, which one host commonly holds whole), like nginx's
    /// `limit_conn`. A connection over it is closed at once, before
    /// anything is read from it (no answer: a `503` would cost a read and
    /// a write for a client that is already taking too much). With several
    /// workers each process counts its own connections, and the kernel
    /// spreads one client's connections over them, so one address can hold
    /// up to workers times this in all.
    ///
    /// Default `usize::MAX` (no limit): behind a reverse proxy or a large
    /// NAT every client shares one address, and a default limit there
    /// would refuse legitimate traffic. Set it when clients connect
    /// directly, for example to a few hundred.
    pub max_connections_per_ip: usize,
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
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_ip: usize::MAX,
            drain_timeout: Duration::from_secs(10),
        }
    }
}
