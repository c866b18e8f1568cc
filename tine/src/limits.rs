//! Every limit tine enforces, with its default and the reason for it.

use std::time::Duration;

/// The largest [`Limits::max_headers`]: past about 24,000 names the `http`
/// crate's `HeaderMap` panics when it grows, and a request's map is built
/// from its parsed fields (also outside the handler's panic boundary, to
/// read forwarding headers or to log a refused request).
const MOST_HEADERS: usize = 10_000;

/// The largest `max_header`: 1 GiB. The decoder keeps its positions in a
/// head as `u32`s (8 bytes less in every connection); a head is refused
/// past `max_header`, and the read buffer holds at most one read more than
/// that, so with this bound no position can reach `u32::MAX`. (A larger
/// limit made them saturate, and a head searched from a saturated
/// position was searched from near its start again on every read.)
const MOST_HEADER_BYTES: usize = 1 << 30;

/// Resource limits for one server, set with [`App::limits`](crate::App::limits).
///
/// Each limit is a hard bound the event loop enforces per connection or per
/// process; when a client crosses one it gets the documented HTTP status and
/// the connection is closed, never a panic or an unbounded buffer.
///
/// Start from the defaults and change what you need; each setter documents
/// its limit and default. (The struct is `#[non_exhaustive]`: new limits can
/// be added without breaking code written this way.)
///
/// ```
/// use std::time::Duration;
/// let limits = tine::Limits::default()
///     .max_body(8 * 1024 * 1024)
///     .idle_timeout(Duration::from_secs(30));
/// let app = tine::App::new().limits(limits);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// See [`Limits::max_header`].
    pub(crate) max_header: usize,
    /// See [`Limits::max_headers`].
    pub(crate) max_headers: usize,
    /// See [`Limits::max_body`].
    pub(crate) max_body: usize,
    /// See [`Limits::body_buffer`]; `None`: `max_body`.
    pub(crate) body_buffer: Option<usize>,
    /// See [`Limits::header_timeout`].
    pub(crate) header_timeout: Duration,
    /// See [`Limits::body_timeout`].
    pub(crate) body_timeout: Duration,
    /// See [`Limits::idle_timeout`].
    pub(crate) idle_timeout: Duration,
    /// See [`Limits::max_connections`].
    pub(crate) max_connections: usize,
    /// See [`Limits::max_connections_per_ip`].
    pub(crate) max_connections_per_ip: usize,
    /// See [`Limits::drain_timeout`].
    pub(crate) drain_timeout: Duration,
    /// See [`Limits::keepalive_requests`].
    pub(crate) keepalive_requests: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header: 16 * 1024,
            max_headers: 100,
            max_body: 1024 * 1024,
            body_buffer: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_ip: usize::MAX,
            drain_timeout: Duration::from_secs(10),
            keepalive_requests: u32::MAX,
        }
    }
}

impl Limits {
    /// Largest request head (request line plus headers, and any empty
    /// lines before the request line), in bytes. Default 16 KiB: more than
    /// any browser sends, small enough that a client cannot make a worker
    /// buffer much. Over it: `431` (`414` when the request line alone does
    /// not end within it), then close. At most 1 GiB: a larger value is
    /// taken as 1 GiB.
    ///
    /// ```
    /// let limits = tine::Limits::default().max_header(8 * 1024);
    /// ```
    ///
    /// # Panics
    /// If `bytes` is under 64: no request line with a `Host` field fits,
    /// and every request would be refused.
    #[must_use]
    #[track_caller]
    pub fn max_header(mut self, bytes: usize) -> Self {
        assert!(
            bytes >= 64,
            "Limits::max_header({bytes}): every request would be refused (the least is 64 bytes)"
        );
        self.max_header = bytes.min(MOST_HEADER_BYTES);
        self
    }

    /// Most header fields in one request. Default 100. Over it: `431`.
    /// At most 10,000: a larger count is taken as 10,000 (the `http`
    /// crate's header map, which [`Request::headers`](crate::Request::headers)
    /// returns, holds no more than about 24,000 names).
    ///
    /// ```
    /// let limits = tine::Limits::default().max_headers(50);
    /// ```
    ///
    /// # Panics
    /// If `count` is 0: every HTTP/1.1 request has a `Host` field, and
    /// would be refused.
    #[must_use]
    #[track_caller]
    pub fn max_headers(mut self, count: usize) -> Self {
        assert!(
            count > 0,
            "Limits::max_headers(0): every HTTP/1.1 request (which has a Host field) would be refused (the least is 1)"
        );
        self.max_headers = count.min(MOST_HEADERS);
        self
    }

    /// Largest request body, in bytes, whether sent with `Content-Length`
    /// or chunked. Default 1 MiB. Over it: `413`, sent as soon as the
    /// declared length is known (before any of the body is read, and
    /// before `100 Continue`), then close. A route group can set its own
    /// with [`Group::max_body`](crate::Group::max_body).
    ///
    /// ```
    /// let limits = tine::Limits::default().max_body(10 << 20);
    /// ```
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Largest request body kept in memory, in bytes (nginx's
    /// `client_body_buffer_size`). A larger body (allowed by a route
    /// group's [`max_body`](crate::Group::max_body), say) is written to an
    /// anonymous temporary file as it arrives (in `TMPDIR`, else `/tmp`),
    /// so a 100 MiB upload costs a connection about one read buffer of
    /// memory, not 100 MiB. The handler streams such a body with
    /// [`Request::body_reader`](crate::Request::body_reader) (which
    /// works for every body); [`Request::body`](crate::Request::body)
    /// still works, but reads the whole file into memory on first use.
    /// Default: [`max_body`](Limits::max_body) (1 MiB by default), so
    /// bodies the app-wide limit allows stay in memory as they always
    /// did, and only bodies that a group's larger `max_body` lets through
    /// are spilled.
    ///
    /// ```
    /// let limits = tine::Limits::default().body_buffer(64 * 1024);
    /// ```
    #[must_use]
    pub fn body_buffer(mut self, bytes: usize) -> Self {
        self.body_buffer = Some(bytes);
        self
    }

    /// The body size past which bodies are spilled (see
    /// [`body_buffer`](Limits::body_buffer)).
    pub(crate) fn spill_past(&self) -> usize {
        self.body_buffer.unwrap_or(self.max_body)
    }

    /// Time a client has to deliver a complete request head once it has
    /// started one (from its first byte, also when that byte arrived
    /// behind a pipelined request), or once it connected. Default 10 s:
    /// the slowloris defence. On expiry: `408`, then close.
    ///
    /// ```
    /// let limits = tine::Limits::default().header_timeout(std::time::Duration::from_secs(5));
    /// ```
    ///
    /// # Panics
    /// If `timeout` is zero: a head that does not arrive in the
    /// connection's first read would be refused.
    #[must_use]
    #[track_caller]
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "Limits::header_timeout(0): a head not in the first read would be refused with 408"
        );
        self.header_timeout = no_longer_than_forever(timeout);
        self
    }

    /// Time a client has to deliver a complete request body once its head
    /// has arrived: a deadline for the whole body, which arriving bytes do
    /// not extend (unlike nginx's `client_body_timeout`, which times the
    /// pause between two reads), so a body trickled a byte at a time cannot
    /// hold a connection. Default 60 s: the default [`max_body`] of 1 MiB
    /// then needs about 17 KiB/s; raise it together with `max_body` for
    /// large uploads over slow links. On expiry: `408`, then close.
    ///
    /// [`max_body`]: Limits::max_body
    ///
    /// ```
    /// let limits = tine::Limits::default()
    ///     .max_body(100 << 20)
    ///     .body_timeout(std::time::Duration::from_secs(600));
    /// ```
    #[must_use]
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Most requests answered on one connection (nginx's
    /// `keepalive_requests`): the last one's response says
    /// `Connection: close`, and the client opens a new connection for
    /// more, which the kernel may hand to another worker. Default: no
    /// limit. A limit (nginx's default is 1,000) spreads long-lived
    /// keep-alive clients, such as a proxy's pooled connections, over the
    /// workers again and again, rather than leaving each pinned to the
    /// worker that accepted it. Requests pipelined behind the last one
    /// are not answered (the client sends them again on a new connection,
    /// as after any close).
    ///
    /// Panics if `count` is 0.
    ///
    /// ```
    /// let limits = tine::Limits::default().keepalive_requests(1_000);
    /// ```
    #[must_use]
    #[track_caller]
    pub fn keepalive_requests(mut self, count: u32) -> Self {
        assert!(
            count > 0,
            "Limits::keepalive_requests: 0 would answer nothing"
        );
        self.keepalive_requests = count;
        self
    }

    /// Time an idle keep-alive connection is kept open between requests,
    /// and the longest pause allowed while a body is being received or a
    /// response is being sent. Default 60 s.
    ///
    /// While a response is being sent, only progress renews it: a write
    /// that the client took bytes of (like nginx's `send_timeout`). Input
    /// from the client does not, so a client that reads nothing but sends
    /// a byte now and then is still closed this long after it stopped
    /// reading, and the response buffered for it freed.
    ///
    /// ```
    /// let limits = tine::Limits::default().idle_timeout(std::time::Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = no_longer_than_forever(timeout);
        self
    }

    /// Most open connections per process. Default 10,000. At the limit the
    /// process stops accepting (connections wait in the kernel's queue)
    /// until a slot frees.
    ///
    /// Each connection is a file descriptor, and the usual soft open-file
    /// limit is 1,024. So at start-up the master (or the single process)
    /// raises its soft `RLIMIT_NOFILE` to the hard limit (workers inherit
    /// it), and logs a warning if that still cannot hold `max_connections`
    /// plus the listeners and 64 more descriptors (event loop, control
    /// channel, Redis, static files being sent). Raise the hard limit with
    /// `ulimit -Hn` or systemd's `LimitNOFILE=`, or lower this setting.
    ///
    /// Static open-file caches
    /// ([`StaticConfig::open_file_cache`](crate::StaticConfig::open_file_cache))
    /// get only what the limit leaves beyond that (a warning says when it
    /// is less than they would keep), so they never take a connection's
    /// descriptor. Should a process still run out of descriptors (a limit
    /// too low for this setting, or many large files being sent at once),
    /// `accept` failing with `EMFILE` first makes the caches close their
    /// files, then pauses accepting for 100 ms at a time: clients wait in
    /// the queue, the server does not fail.
    ///
    /// ```
    /// let limits = tine::Limits::default().max_connections(1_000);
    /// ```
    ///
    /// # Panics
    /// If `count` is 0: a process that may hold no connection never
    /// accepts one, and its clients would wait in the queue for ever.
    #[must_use]
    #[track_caller]
    pub fn max_connections(mut self, count: usize) -> Self {
        assert!(
            count > 0,
            "Limits::max_connections(0): a process could never accept a connection (the least is 1)"
        );
        self.max_connections = count;
        self
    }

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
    /// directly, for example to a few hundred, or on a listener whose
    /// balancer sends the PROXY protocol: there a connection counts
    /// against the client its header names, once the header is read
    /// (closed unanswered if that client is at the limit), not against
    /// the balancer's address.
    ///
    /// ```
    /// let limits = tine::Limits::default().max_connections_per_ip(200);
    /// ```
    ///
    /// # Panics
    /// If `count` is 0: every connection would be closed unanswered (for
    /// no limit, leave it unset or pass `usize::MAX`).
    #[must_use]
    #[track_caller]
    pub fn max_connections_per_ip(mut self, count: usize) -> Self {
        assert!(
            count > 0,
            "Limits::max_connections_per_ip(0): every connection would be closed unanswered (the least is 1; no limit: usize::MAX)"
        );
        self.max_connections_per_ip = count;
        self
    }

    /// How long a graceful shutdown waits for in-flight requests and queued
    /// responses before closing what is left. Default 10 s.
    ///
    /// A stopping process (a worker recycled, replaced by a rolling restart
    /// or a binary upgrade, or the whole server stopping) ends its
    /// WebSockets (close `1001`) and streamed responses still running one
    /// after another, spread evenly over the first half of this timeout,
    /// so that their clients do not all reconnect at the same moment; the
    /// second half is left for the close handshakes.
    ///
    /// ```
    /// let limits = tine::Limits::default().drain_timeout(std::time::Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = no_longer_than_forever(timeout);
        self
    }
}

/// A timeout as the event loop keeps it: at most a century, which is as
/// good as never. `Duration::MAX` reads as "no limit", and added to an
/// `Instant` as it is it would overflow (a panic that ends the worker);
/// cut here, once, the deadlines computed for every request stay plain
/// additions.
pub(crate) fn no_longer_than_forever(timeout: Duration) -> Duration {
    timeout.min(crate::server::timer::FOREVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_change_only_their_limit() {
        let d = Limits::default();
        let l = Limits::default()
            .max_header(100)
            .max_headers(2)
            .max_body(3)
            .header_timeout(Duration::from_secs(4))
            .idle_timeout(Duration::from_secs(5))
            .max_connections(6)
            .drain_timeout(Duration::from_secs(7))
            .body_timeout(Duration::from_secs(8))
            .max_connections_per_ip(9);
        assert_eq!(
            (l.max_header, l.max_headers, l.max_body, l.max_connections),
            (100, 2, 3, 6)
        );
        assert_eq!(
            (l.header_timeout, l.idle_timeout, l.drain_timeout),
            (
                Duration::from_secs(4),
                Duration::from_secs(5),
                Duration::from_secs(7)
            )
        );
        assert_eq!(
            (l.body_timeout, l.max_connections_per_ip),
            (Duration::from_secs(8), 9)
        );
        let only_body = Limits::default().max_body(9);
        assert_eq!(only_body.max_body, 9);
        assert_eq!(only_body.max_header, d.max_header);
        assert_eq!(only_body.idle_timeout, d.idle_timeout);
    }

    /// The decoder's positions in a head are `u32`s: a limit they could
    /// not reach is taken as the most they can (see `MOST_HEADER_BYTES`).
    #[test]
    fn a_head_limit_past_a_gibibyte_is_taken_as_one() {
        for bytes in [usize::MAX, 5 << 30, (1 << 30) + 1] {
            assert_eq!(Limits::default().max_header(bytes).max_header, 1 << 30);
        }
        assert_eq!(Limits::default().max_header(1 << 30).max_header, 1 << 30);
        assert_eq!(Limits::default().max_header(64).max_header, 64);
    }

    #[test]
    #[should_panic(expected = "Limits::max_connections(0): a process could never accept")]
    fn no_connection_at_all_is_refused() {
        let _ = Limits::default().max_connections(0);
    }

    #[test]
    #[should_panic(
        expected = "Limits::max_connections_per_ip(0): every connection would be closed"
    )]
    fn no_connection_per_ip_is_refused() {
        let _ = Limits::default().max_connections_per_ip(0);
    }

    #[test]
    #[should_panic(expected = "Limits::max_header(63): every request would be refused")]
    fn a_head_limit_no_request_fits_is_refused() {
        let _ = Limits::default().max_header(63);
    }

    #[test]
    #[should_panic(expected = "Limits::max_headers(0): every HTTP/1.1 request")]
    fn no_header_field_at_all_is_refused() {
        let _ = Limits::default().max_headers(0);
    }

    #[test]
    #[should_panic(expected = "Limits::header_timeout(0)")]
    fn no_time_for_a_head_is_refused() {
        let _ = Limits::default().header_timeout(Duration::ZERO);
    }

    #[test]
    #[should_panic(expected = "Limits::keepalive_requests: 0 would answer nothing")]
    fn no_request_per_connection_is_refused() {
        let _ = Limits::default().keepalive_requests(0);
    }

    #[test]
    fn one_connection_is_enough() {
        let l = Limits::default()
            .max_connections(1)
            .max_connections_per_ip(1);
        assert_eq!((l.max_connections, l.max_connections_per_ip), (1, 1));
    }
}
