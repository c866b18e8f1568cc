//! # tine
//!
//! A fast, simple HTTP/1.1 framework whose multi-core story is processes,
//! not threads: each process runs one single-threaded, non-blocking event
//! loop (mio: epoll/kqueue), and handlers are plain synchronous functions.
//! No async runtime, no `Send`/`Sync` bounds, no locks.
//!
//! ```no_run
//! use tine::{App, Request, Response};
//!
//! App::new()
//!     .get("/", |_req: &Request| "Hello, World!")
//!     .get("/hello/:name", |req: &Request| {
//!         Response::text(format!("Hello, {}!", req.param("name").unwrap_or("?")))
//!     })
//!     .log_requests()
//!     .serve("127.0.0.1:8080")
//!     .unwrap();
//! ```
//!
//! ## The model
//!
//! * **One loop per process.** The loop owns every connection; protocol
//!   code (parsing, encoding) works on buffers and never sees a socket.
//! * **Handlers block their process.** A handler runs on the loop's only
//!   thread; while it runs, that process serves nobody else. Keep handlers
//!   short, or run more worker processes.
//! * **Requests are read whole** (head and body, within [`Limits`]) before
//!   the handler runs; responses may stream ([`Response::stream`]).
//! * **Bad input gets a status, never a panic:** 400, 408, 413, 431, ...
//!   and a handler that panics yields a 500 while the process goes on.
//!   Every piece of app code (handlers, hooks, the error handler, stream
//!   iterators, WebSocket callbacks, worker-init) runs inside that panic
//!   boundary.
//!
//! ## Architecture: who owns what
//!
//! | module | owns |
//! | --- | --- |
//! | `app` | [`App`], the builder; it produces an immutable `Service` and the server settings |
//! | `service` | the one request-to-answer path: routing, before-hooks, the handler or WebSocket handshake, error pages (the `errors` handler), after-hooks, the request log; also the answers to requests tine refuses |
//! | `handler` | handler and hook types, and the panic boundary every piece of app code runs in |
//! | `router` | route patterns and matching |
//! | `middleware` | [`Cors`], [`Compression`] (after-hooks) |
//! | `observe` | [`App::metrics`], [`App::status`], [`App::health`], [`App::admin_bind`]: the scoreboard read as Prometheus text, an HTML/JSON status page, health for load balancers |
//! | `access_log` | [`App::access_log`]: common/combined/JSON lines, request ids, reopened on `SIGUSR1` |
//! | `proxies` | [`App::trusted_proxies`]: [`Request::client_addr`] and [`Request::scheme`] from `X-Forwarded-*` or `Forwarded` |
//! | `http` | the wire format on buffers: parsing (`parse`, `body`), the framing decision and encoding (`encode`), [`Request`], [`Response`], signed and private cookies (`cookies`: the key ring) |
//! | `static_files` | static files: lookups that cannot leave the root, validators, ranges, precompressed siblings ([`StaticConfig`]) |
//! | `ws` | WebSocket: handshake, the session and its framing (RFC 6455 on tine's buffers), the event-style API ([`WsConfig`]) |
//! | `sse` | server-sent events: [`Sse`] (the route's handle), [`SseEvent`], [`publish_event`]; the connection side is `server/conn/sse.rs` |
//! | [`pubsub`] | [`publish`]: the bounded outbox, the topic index, the bus (master relay or Redis) |
//! | `server` | sockets and processes: `event_loop/` (poll, accept, timers, drain), `conn/` (one connection's HTTP/1.1, WebSocket and event-stream state machine over a `Transport`), `listener.rs` (addresses, each a `SO_REUSEPORT` group or one shared socket), `master/` (the system calls of supervision) and `supervisor/` (its decisions, a pure state machine), `control.rs` (master-worker messages), `systemd.rs` (socket activation) and `notify.rs` (`sd_notify`), `privileges.rs` (workers' user and group) |
//! | `error`, `limits`, `macros` | [`Error`], [`Limits`], [`app!`] and [`server!`] |
//! | [`test`](mod@test) | [`TestClient`](test::TestClient): the app driven without sockets, on the service's own path |
//!
//! ## How a request flows
//!
//! 1. `server::event_loop` accepts the connection (within
//!    `max_connections` and `max_connections_per_ip`) and, on each
//!    readiness event, drives its `Conn` for a bounded share of the loop
//!    turn (so one pipelining client cannot hold the process).
//! 2. The `Conn` reads into its buffer and the `http::parse` decoder finds a
//!    whole request (head, then body, within [`Limits`] and their
//!    deadlines). What it refuses (400, 408, 413, 414, 431, ...) goes to the
//!    service as a refusal, so error pages, after-hooks and the log see it.
//! 3. `Service::answer` routes the [`Request`], runs before-hooks, the
//!    handler (or the WebSocket handshake), renders error pages through
//!    the `errors` handler, runs after-hooks and logs it.
//! 4. The `Conn` frames the [`Response`] (`http::encode::framing`, a pure
//!    function: length, chunked or close; keep-alive) and queues it;
//!    pipelined answers leave in one write; files go by `sendfile` where
//!    the transport allows; streams are pulled as fast as the client reads.
//! 5. An upgraded connection becomes a WebSocket session in the same
//!    `Conn`, and an [`Sse`] answer makes it an event stream; what
//!    handlers [`publish`] waits in a bounded outbox that the loop hands to
//!    the bus (the master relays it to the other workers, or Redis carries
//!    it), and each process delivers to its subscribers, WebSocket and
//!    event-stream connections alike.
//!
//! With several workers, `server::master` binds the listeners, forks the
//! workers and performs what `server::supervisor` decides on each event
//! (signal, worker ready or gone, fork failed, timer): fork slot k, signal
//! a pid, lend a listener to a survivor, exit.

// A library never prints: it logs through `log`, and the app decides.
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod access_log;
mod app;
mod error;
mod group;
mod handler;
mod http;
mod limits;
mod log_writer;
mod macros;
mod middleware;
mod multipart;
mod observe;
mod proxies;
pub mod pubsub;
mod router;
mod server;
mod service;
mod sse;
mod static_files;
pub mod test;
mod throttle;
mod ws;

pub use crate::access_log::{AccessLog, LogFormat};
pub use crate::app::App;
pub use crate::error::Error;
pub use crate::group::Group;
pub use crate::http::{
    BodyReader, Extensions, HeaderValues, IntoResponse, Params, Request, RequestBuilder, Response,
};
pub use crate::limits::Limits;
pub use crate::log_writer::LogWriter;
pub use crate::middleware::{Compression, Cors};
pub use crate::multipart::{Multipart, MultipartLimits, Part, PartReader};
pub use crate::proxies::ProxyHeader;
pub use crate::pubsub::{publish, publish_binary, Publisher};
#[cfg(feature = "tls")]
pub use crate::server::tls::{TlsConfig, TlsError};
pub use crate::server::{
    worker, Balance, Listen, ListenAddr, ServeError, Server, ServerHandle, WorkerInfo,
};
pub use crate::sse::{publish_event, Sse, SseEvent};
pub use crate::static_files::StaticConfig;
pub use crate::ws::{WebSocket, WsConfig, WsEvent};
/// The rustls version tine uses (for [`TlsConfig::from_rustls`]).
#[cfg(feature = "tls")]
pub use rustls;

pub use ::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
pub use bytes::Bytes;
pub use cookie;

/// Entry points for the fuzz targets in `tine/fuzz`; not part of the API.
#[doc(hidden)]
pub mod __fuzz {
    use bytes::BytesMut;

    /// Reads `data` as a request head both ways, tine's one-pass reader of
    /// the common head and `httparse` with the checks after it; panics if
    /// the first reads it and the two disagree. Whether it read it.
    pub fn plain_head(data: &[u8], max_headers: usize) -> bool {
        crate::http::parse::plain_agrees(data, max_headers)
    }

    /// Feeds `data` to a request decoder in pieces of `split` bytes, as the
    /// event loop would, decoding every request it yields. Returns what
    /// was decoded, one line per request, head, body or error (`100
    /// Continue` and the error's status aside, which may depend on how the
    /// input arrived): the same however `data` is split.
    pub fn decode_requests(data: &[u8], split: usize) -> Vec<String> {
        let limits = crate::Limits::default().max_body(64 * 1024);
        let mut decoder = crate::http::parse::Decoder::new();
        let mut buf = BytesMut::new();
        let mut seen = Vec::new();
        for piece in data.chunks(split.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf, &limits) {
                    crate::http::parse::Decoded::Request(head, body) => {
                        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
                        match crate::Request::new(head.raw, body, peer) {
                            Ok(req) => {
                                // The header lines the lazy views read: the
                                // one-field scan and the map must agree.
                                let first = req.header("x-a").map(str::to_owned);
                                let pair = req.header_pair(["x-a", "x-b"]);
                                assert_eq!(
                                    first.as_deref(),
                                    req.headers().get("x-a").and_then(|v| v.to_str().ok())
                                );
                                for (found, name) in pair.into_iter().zip(["x-a", "x-b"]) {
                                    let in_map = req.headers().get(name).map(|v| v.as_bytes());
                                    assert_eq!(found, in_map, "{name}");
                                }
                                seen.push(format!("request {} {}", req.method(), req.raw_path()));
                            }
                            Err(_) => seen.push("refused".into()),
                        }
                    }
                    crate::http::parse::Decoded::Head(head) => {
                        seen.push("head".into());
                        // A target under `/skip` is answered before its
                        // body, which is passed over, as for a path no
                        // route takes. Not when that would depend on how
                        // the input arrived (a body too large to pass over
                        // unless it is all there, or one the client sends
                        // only after `100 Continue`).
                        let skippable = match head.framing {
                            crate::http::parse::Framing::Length(n) => {
                                n <= crate::http::parse::MAX_DISCARD
                            }
                            _ => true,
                        };
                        if head.raw.head.target().starts_with("/skip")
                            && skippable
                            && !head.expect_continue
                        {
                            assert!(decoder.skip_body(&mut buf));
                            continue;
                        }
                        // Admitted as a route with the global limit would be.
                        if let Err(status) = decoder.admit(limits.max_body, limits.spill_past()) {
                            seen.push(format!("not admitted {status}"));
                            return seen;
                        }
                    }
                    crate::http::parse::Decoded::Body(body) => {
                        let len = match body {
                            crate::http::body::ReadBody::Memory(b) => b.len() as u64,
                            crate::http::body::ReadBody::File(f) => f.len,
                        };
                        seen.push(format!("body {len}"));
                    }
                    crate::http::parse::Decoded::Continue => {}
                    // Whether a passed-over body ends in its own step
                    // depends on how it arrived: only a bad one is noted.
                    crate::http::parse::Decoded::Discarded(true) => {}
                    crate::http::parse::Decoded::Discarded(false) => {
                        seen.push("error".into());
                        return seen;
                    }
                    crate::http::parse::Decoded::NeedMore => break,
                    crate::http::parse::Decoded::Error(_) => {
                        // What the error page and after-hooks would see.
                        let _ = decoder.take_seen(&buf, limits.max_headers);
                        // Which status a head with several faults gets may
                        // depend on which arrived first: not recorded.
                        seen.push("error".into());
                        return seen;
                    }
                }
            }
        }
        seen
    }

    /// Feeds `data` (client-to-server WebSocket bytes) to a session in
    /// pieces of `split` bytes, with an echoing handler: tine's glue around
    /// the framing, close-code mapping and limits.
    pub fn ws_session(data: &[u8], split: usize) {
        struct NoWire;
        impl crate::ws::session::Wire for NoWire {
            fn write_all_now(&self, _: &[u8]) -> std::io::Result<()> {
                Ok(())
            }
        }
        let handler: crate::ws::WsHandler = std::rc::Rc::new(
            |ws: &mut crate::WebSocket<'_>, ev: crate::WsEvent| match ev {
                crate::WsEvent::Text(t) => ws.send_text(t),
                crate::WsEvent::Binary(b) => ws.send_binary(b),
                _ => {}
            },
        );
        let config = crate::WsConfig::default()
            .max_message(64 * 1024)
            .max_outbuf(256 * 1024);
        let req = crate::Request::builder(::http::Method::GET, "/ws").finish();
        let mut session =
            crate::ws::session::Session::new(req, handler, &config, 1 << 20, Vec::new());
        session.open(&NoWire);
        for piece in data.chunks(split.max(1)) {
            session.feed(piece, &NoWire);
            let backlog = session.core.backlog();
            session.core.advance(backlog);
            if session.finished() {
                return;
            }
        }
    }

    /// One connection fed arbitrary client bytes (see `server::conn::fuzz`).
    pub use crate::server::conn::fuzz::connection;

    /// The TLS transport, driven over loopback TCP (see `server::tls::fuzz`).
    #[cfg(feature = "tls")]
    pub use crate::server::tls::fuzz as tls;

    /// Static files: request-path validation, the lookup beneath the root,
    /// `Range` decisions, `Accept-Encoding` and preconditions (see
    /// `static_files::fuzz`).
    pub use crate::static_files::fuzz::{
        accept_encoding, open_beneath, preconditions, range, rel_path, RangeAnswer,
    };

    /// The router built from a list of routes (see `router::fuzz`).
    pub use crate::router::fuzz::{route, RouteKind, Routed};

    /// What [`publish`](crate::publish) publishes for `text`.
    pub fn sse_plain(text: &str) -> String {
        crate::sse::escape_plain(text.to_owned())
    }

    /// What [`publish_event`](crate::publish_event) publishes for `event`.
    pub fn sse_event_text(event: &crate::SseEvent) -> String {
        crate::sse::event_text(event)
    }

    /// What an SSE stream writes for a published text (from either of the
    /// above, or from another publisher on Redis).
    pub fn sse_stream_bytes(published: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let payload = crate::pubsub::Payload::Text(published.to_owned());
        assert!(crate::sse::event_bytes(&payload, &mut out));
        out
    }

    /// What a WebSocket subscriber receives for a published text.
    pub fn sse_websocket_text(published: &str) -> String {
        crate::sse::websocket_text(published).into_owned()
    }

    /// The client a request from `peer` with `headers` has behind the
    /// trusted proxies `trusted` (as `Server::trusted_proxies` takes them)
    /// using `header`: its address and whether it came over HTTPS; `None`
    /// for the socket's view (an untrusted peer, or no `Forwarded`).
    pub fn forwarded_client(
        trusted: &[&str],
        header: crate::ProxyHeader,
        peer: std::net::SocketAddr,
        headers: &[(&str, &[u8])],
    ) -> Option<(std::net::IpAddr, bool)> {
        let mut proxies = crate::proxies::Proxies::default();
        for net in trusted {
            proxies.add(crate::proxies::parse_net(net).expect("a trusted proxy range"));
        }
        proxies.set_header(header);
        let mut map = crate::HeaderMap::new();
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                crate::HeaderName::from_bytes(name.as_bytes()),
                crate::HeaderValue::from_bytes(value),
            ) {
                map.append(name, value);
            }
        }
        let req = crate::Request::builder(::http::Method::GET, "/")
            .peer(peer)
            .headers(map)
            .finish();
        let client = proxies.client(&req)?;
        Some((client.addr, client.https))
    }

    /// Feeds `data` to the PROXY protocol header reader in pieces of
    /// `split` bytes, as a connection's reads arrive. `None` while it
    /// waits for more; else the client's address the header gives (`Ok`,
    /// `None` for none) or the refusal, with how many bytes of `data` the
    /// header took.
    #[allow(clippy::type_complexity)]
    pub fn proxy_header(
        data: &[u8],
        split: usize,
    ) -> (Option<Result<Option<std::net::SocketAddr>, String>>, usize) {
        use crate::server::conn::proxy_header::{take, Taken};
        let mut buf = BytesMut::new();
        let mut fed = 0;
        for piece in data.chunks(split.max(1)) {
            buf.extend_from_slice(piece);
            fed += piece.len();
            match take(&mut buf) {
                Taken::NeedMore => {}
                Taken::Header(addr) => return (Some(Ok(addr)), fed - buf.len()),
                Taken::Bad(why) => return (Some(Err(why)), 0),
            }
        }
        (None, 0)
    }

    /// Decodes `data` as a chunked body in pieces of `split` bytes.
    pub fn decode_chunked(data: &[u8], split: usize) {
        let mut decoder = crate::http::body::ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for piece in data.chunks(split.max(1)) {
            pending.extend_from_slice(piece);
            match decoder.decode(&pending, &mut out, 1 << 20, 4096) {
                Ok((used, done)) => {
                    assert!(used <= pending.len());
                    pending.drain(..used);
                    if done {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

/// The README's Rust examples, compiled as doctests so they cannot drift
/// from the API (`no_run`: they would serve forever).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
