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
//!
//! ## Layout
//!
//! | module | concern |
//! | --- | --- |
//! | `http` | wire format: request parsing, chunked bodies, response encoding |
//! | `router` | route patterns and matching |
//! | `app`, `handler` | the application builder, dispatch, hooks, panic boundary |
//! | `error`, `limits` | [`Error`] (an HTTP error with its status), [`Limits`] |
//! | `macros` | [`app!`] and [`server!`], declarative sugar over the builder |
//! | `middleware` | CORS |
//! | `static_files` | static file decisions: safe paths, validators, ranges, precompressed siblings ([`StaticConfig`]) |
//! | `ws` | WebSocket: handshake, sessions, the event-style handler API ([`WsConfig`]) |
//! | [`pubsub`] | [`publish`] to topics that WebSocket clients subscribe to, across workers |
//! | `server` | sockets, the event loop, timers, the master and its workers |

// A library never prints: it logs through `log`, and the app decides.
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod app;
mod error;
mod handler;
mod http;
mod limits;
mod macros;
mod middleware;
pub mod pubsub;
mod router;
mod server;
mod static_files;
mod ws;

pub use crate::app::App;
pub use crate::error::Error;
pub use crate::http::{Extensions, IntoResponse, Params, Request, RequestBuilder, Response};
pub use crate::limits::Limits;
pub use crate::middleware::Cors;
pub use crate::pubsub::{publish, publish_binary};
pub use crate::server::{worker, Server, WorkerInfo};
pub use crate::static_files::StaticConfig;
pub use crate::ws::{WebSocket, WsConfig, WsEvent};

pub use ::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
pub use bytes::Bytes;
pub use cookie;

/// Entry points for the fuzz targets in `tine/fuzz`; not part of the API.
#[doc(hidden)]
pub mod __fuzz {
    use bytes::BytesMut;

    /// Feeds `data` to a request decoder in pieces of `split` bytes, as the
    /// event loop would, decoding every request it yields.
    pub fn decode_requests(data: &[u8], split: usize) {
        let limits = crate::Limits::default().max_body(64 * 1024);
        let mut decoder = crate::http::parse::Decoder::new();
        let mut buf = BytesMut::new();
        for piece in data.chunks(split.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf, &limits) {
                    crate::http::parse::Decoded::Request(head, body) => {
                        let _ = crate::Request::new(
                            head.method,
                            head.target,
                            head.version,
                            head.headers,
                            body,
                            std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
                        );
                    }
                    crate::http::parse::Decoded::Continue => {}
                    crate::http::parse::Decoded::NeedMore => break,
                    crate::http::parse::Decoded::Error(_) => return,
                }
            }
        }
    }

    /// Feeds `data` (client-to-server WebSocket bytes) to a session in
    /// pieces of `split` bytes, with an echoing handler: tine's glue around
    /// tungstenite's framing, close-code mapping and limits.
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
            if session.finished {
                return;
            }
        }
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
