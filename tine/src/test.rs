//! Testing an app without sockets: [`TestClient`].
//!
//! A `TestClient` owns an [`App`] and answers requests on the same path the
//! server takes for every request (routing, before-hooks, the handler or
//! the WebSocket handshake, error pages, after-hooks, the request log; for
//! a request with a body, its admission before the body: a before-hook's
//! answer, a 404/405, or the `413` for a body over its route group's
//! `max_body` or [`Limits::max_body`](crate::Limits::max_body); the `400`
//! for a path whose escapes are not UTF-8),
//! with panics turned into 500s, but in the test's own thread: no port,
//! no process, no waiting. Requests carry the fields every client sends,
//! a `Host` (`localhost` unless the test sets one) and their body's
//! `Content-Length`; and, as on the server, the before-hooks of a request
//! with a body run before the body arrives, so they see none. What a worker would set up with
//! [`App::on_worker_start`] is set up once when the client is made, so
//! handlers find their [`Request::state`].
//!
//! ```
//! use serde_json::json;
//! use tine::test::TestClient;
//! use tine::{App, Request, Response, StatusCode};
//!
//! let app = App::new()
//!     .post("/greet", |req: &Request| -> Result<Response, tine::Error> {
//!         let who: serde_json::Value = req.json()?;
//!         Ok(Response::json(&json!({ "hello": who["name"] })))
//!     });
//! let client = TestClient::new(app);
//!
//! let res = client.post("/greet").json(&json!({ "name": "ada" })).send();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.json::<serde_json::Value>(), json!({ "hello": "ada" }));
//!
//! let res = client.post("/greet").body("not json").send();
//! assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
//! assert_eq!(client.get("/nope").send().status(), StatusCode::NOT_FOUND);
//! ```
//!
//! The client keeps the cookies responses set (`Set-Cookie`, removals
//! included) and sends them with later requests, like a browser, so a
//! log-in flow works as written: each to the paths under its `Path` (one
//! set without `Path` to its request's directory), `Secure` ones too (a
//! browser sends them to `http://localhost`, which it trusts as it trusts
//! HTTPS). WebSocket routes are driven with
//! [`TestClient::ws`]: send messages, read what the handler sent, see the
//! close. Messages handlers [`publish`](crate::publish) reach the client's
//! WebSockets subscribed to their topic (the client stands for one worker
//! process) and are listed by [`TestClient::take_published`].
//!
//! An app's tests, in the shape the README shows: worker state, a JSON
//! route, and a WebSocket that hears what the route publishes.
//!
//! ```
//! use serde_json::{json, Value};
//! use tine::test::TestClient;
//! use tine::{App, Request, Response, StatusCode, WebSocket, WsEvent};
//!
//! struct Db(std::cell::RefCell<Vec<String>>); // a connection, in a real app
//!
//! fn app() -> App {
//!     App::new()
//!         .on_worker_start(|state| { state.insert(Db(Default::default())); })
//!         .post("/notes", |req: &Request| -> Result<Response, tine::Error> {
//!             let note: Value = req.json()?;
//!             let text = note["text"].as_str().unwrap_or_default().to_string();
//!             req.state::<Db>().unwrap().0.borrow_mut().push(text.clone());
//!             tine::publish("notes", text.as_str())?;
//!             Ok(Response::json(&json!({ "saved": text })).with_status(StatusCode::CREATED))
//!         })
//!         .ws("/live", |ws: &mut WebSocket, ev: WsEvent| {
//!             if ev == WsEvent::Open {
//!                 ws.subscribe("notes");
//!             }
//!         })
//! }
//!
//! // #[test]
//! fn notes_are_saved_and_announced() {
//!     let client = TestClient::new(app()); // runs on_worker_start
//!     let mut live = client.ws("/live").unwrap(); // a WebSocket without a socket
//!     let res = client.post("/notes").json(&json!({ "text": "milk" })).send();
//!     assert_eq!(res.status(), StatusCode::CREATED);
//!     assert_eq!(res.json::<Value>(), json!({ "saved": "milk" }));
//!     assert_eq!(live.recv_text().as_deref(), Some("milk"));
//!     assert_eq!(client.post("/notes").body("oops").send().status(), 415);
//! }
//! # notes_are_saved_and_announced();
//! ```
//!
//! What is not simulated: the wire itself (parsing, timeouts, keep-alive,
//! framing; the head's size and field count are checked against the
//! limits, as the server answers them) and several processes. Test those
//! over real TCP.

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketContext};
use tungstenite::Message;

use crate::app::App;
use crate::handler;
use crate::http::{Body, Request, Response};
use crate::pubsub::{self, Payload};
use crate::server::ServerConfig;
use crate::service::{Admission, Answer, Service};
use crate::sse::SseSession;
use crate::ws::session::{Session, Wire};
use crate::ws::{Upgrade, WsEvent};

/// A cookie the client holds: one per name and path, as browsers key them
/// (there is one host).
#[derive(Debug)]
struct JarCookie {
    name: String,
    /// As the server set it, still encoded.
    value: String,
    /// Sent with requests whose path is under it (RFC 6265 §5.1.4).
    path: String,
}

impl JarCookie {
    /// Whether a request for `path` gets this cookie: the same path, or
    /// one below it (`/admin` gets `/admin` and `/admin/users`, not
    /// `/administrator`).
    fn sent_to(&self, path: &str) -> bool {
        match path.strip_prefix(self.path.as_str()) {
            Some(rest) => rest.is_empty() || self.path.ends_with('/') || rest.starts_with('/'),
            None => false,
        }
    }
}

/// The path a cookie set without `Path` gets (RFC 6265 §5.1.4): the
/// request path's directory, `/` for `/x` or an empty path.
fn default_cookie_path(request_path: &str) -> String {
    match request_path.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => request_path[..i].to_string(),
    }
}

/// Drives an [`App`] without sockets: see the [module docs](self).
///
/// Requests are built with [`get`](Self::get), [`post`](Self::post), ...
/// and sent with [`TestRequest::send`]; WebSocket routes are opened with
/// [`ws`](Self::ws).
///
/// ```
/// use std::cell::Cell;
/// use tine::{test::TestClient, App, Request};
///
/// struct Hits(Cell<u32>);
/// let app = App::new()
///     .on_worker_start(|state| { state.insert(Hits(Cell::new(0))); })
///     .get("/hits", |req: &Request| {
///         let hits = req.state::<Hits>().expect("set up by on_worker_start");
///         hits.0.set(hits.0.get() + 1);
///         hits.0.get().to_string()
///     });
/// let client = TestClient::new(app);
/// assert_eq!(client.get("/hits").send().text(), "1");
/// assert_eq!(client.get("/hits").send().text(), "2");
/// ```
pub struct TestClient {
    service: Service,
    config: ServerConfig,
    /// Cookies set by responses, as sent.
    jar: RefCell<Vec<JarCookie>>,
    /// The open WebSockets, for delivering published messages.
    sockets: RefCell<Vec<std::rc::Weak<RefCell<Socket>>>>,
    /// The event streams (SSE) of the responses still held.
    streams: RefCell<Vec<std::rc::Weak<RefCell<SseSession>>>>,
    /// Everything published so far, for [`take_published`](Self::take_published).
    published: RefCell<Vec<(String, WsEvent)>>,
}

impl fmt::Debug for TestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient")
            .field("cookies", &self.jar.borrow())
            .finish_non_exhaustive()
    }
}

macro_rules! method_fns {
    ($($name:ident => $method:ident;)*) => {$(
        #[doc = concat!("Starts a `", stringify!($method), "` request to `target` (a path with an optional query).")]
        ///
        /// ```
        /// let client = tine::test::TestClient::new(tine::App::new());
        #[doc = concat!("let res = client.", stringify!($name), "(\"/x\").send();")]
        /// assert_eq!(res.status(), 404);
        /// ```
        pub fn $name(&self, target: &str) -> TestRequest<'_> {
            self.request(Method::$method, target)
        }
    )*};
}

impl TestClient {
    /// Takes the app and runs its [`on_worker_start`](App::on_worker_start)
    /// hooks, as a worker does before serving. Panics if one of them
    /// panics (the server would not serve either).
    #[track_caller]
    pub fn new(app: App) -> TestClient {
        handler::install_panic_hook();
        let (mut service, config) = app.into_parts();
        if let Err(e) = service.init_worker() {
            panic!("TestClient::new: {e}");
        }
        // The publish limit of a worker on the master's relay, the
        // strictest deployment: a message the app could publish here but
        // not there must fail its tests too. (Per thread, as in a worker:
        // of two clients with different limits in one test, the one made
        // last sets it.)
        pubsub::set_max_size(config.relay_limit());
        TestClient {
            service,
            config,
            jar: RefCell::new(Vec::new()),
            sockets: RefCell::new(Vec::new()),
            streams: RefCell::new(Vec::new()),
            published: RefCell::new(Vec::new()),
        }
    }

    /// Runs every [`App::every`] task once, now, in the order they were
    /// added (the server runs them by the clock). A task that panics is
    /// logged, as in a worker.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::time::Duration;
    /// use tine::{test::TestClient, App, Request};
    /// struct Ticks(Cell<u32>);
    /// let client = TestClient::new(
    ///     App::new()
    ///         .on_worker_start(|state| { state.insert(Ticks(Cell::new(0))); })
    ///         .every(Duration::from_secs(60), |state| {
    ///             let t = state.get::<Ticks>().unwrap();
    ///             t.0.set(t.0.get() + 1);
    ///         })
    ///         .get("/ticks", |req: &Request| req.state::<Ticks>().unwrap().0.get().to_string()),
    /// );
    /// client.run_periodic();
    /// assert_eq!(client.get("/ticks").send().text(), "1");
    /// ```
    pub fn run_periodic(&self) {
        for i in 0..self.service.periodic_count() {
            self.service.run_periodic(i);
        }
    }

    method_fns! {
        get => GET;
        post => POST;
        put => PUT;
        patch => PATCH;
        delete => DELETE;
        head => HEAD;
        options => OPTIONS;
    }

    /// Starts a request with any method.
    ///
    /// ```
    /// use tine::{test::TestClient, App, Method, Request};
    /// let client = TestClient::new(App::new().route(Method::from_bytes(b"PURGE").unwrap(), "/c", |_: &Request| "purged"));
    /// let res = client.request(Method::from_bytes(b"PURGE").unwrap(), "/c").send();
    /// assert_eq!(res.text(), "purged");
    /// ```
    pub fn request(&self, method: Method, target: &str) -> TestRequest<'_> {
        TestRequest {
            client: self,
            method,
            target: target.to_string(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
            cookies: Vec::new(),
        }
    }

    /// Opens a WebSocket on `target`: `Ok` with the open connection, or
    /// `Err` with the answer that refused the upgrade (a before-hook's
    /// 401, a 404 where no WebSocket route matches, ...). Use
    /// [`TestRequest::ws`] to send headers with the upgrade request.
    ///
    /// ```
    /// use tine::{test::TestClient, App, WebSocket, WsEvent};
    /// let client = TestClient::new(App::new().ws("/echo", |ws: &mut WebSocket, ev: WsEvent| {
    ///     if let WsEvent::Text(t) = ev {
    ///         ws.send_text(t.to_uppercase());
    ///     }
    /// }));
    /// let mut ws = client.ws("/echo").unwrap();
    /// ws.send_text("hi");
    /// assert_eq!(ws.recv_text().as_deref(), Some("HI"));
    /// assert_eq!(client.ws("/other").unwrap_err().status(), 404);
    /// ```
    // Test code, called once per connection: the refusal is returned as
    // it is rather than boxed, for `unwrap_err().status()`.
    #[allow(clippy::result_large_err)]
    pub fn ws(&self, target: &str) -> Result<TestWebSocket<'_>, TestResponse> {
        self.get(target).ws()
    }

    /// The value of a cookie the client holds (as the server set it,
    /// still encoded), if any; of several with this name (set for
    /// different paths), the one with the longest path.
    ///
    /// ```
    /// use tine::{test::TestClient, App, Request, Response};
    /// let client = TestClient::new(App::new().get("/in", |_: &Request| Response::text("ok").simple_cookie("sid", "42")));
    /// client.get("/in").send();
    /// assert_eq!(client.cookie("sid").as_deref(), Some("42"));
    /// ```
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar
            .borrow()
            .iter()
            .filter(|c| c.name == name)
            .max_by_key(|c| c.path.len())
            .map(|c| c.value.clone())
    }

    /// Sets a cookie in the client's jar (with path `/`), sent with every
    /// later request (`value` is sent as given).
    ///
    /// ```
    /// use tine::{test::TestClient, App, Request};
    /// let client = TestClient::new(App::new().get("/", |req: &Request| {
    ///     req.cookie("theme").map(|c| c.value().to_string()).unwrap_or_default()
    /// }));
    /// client.set_cookie("theme", "dark");
    /// assert_eq!(client.get("/").send().text(), "dark");
    /// ```
    pub fn set_cookie(&self, name: &str, value: &str) {
        self.keep(JarCookie {
            name: name.to_string(),
            value: value.to_string(),
            path: "/".to_string(),
        });
    }

    /// Puts a cookie in the jar, in place of one of the same name and
    /// path.
    fn keep(&self, cookie: JarCookie) {
        let mut jar = self.jar.borrow_mut();
        jar.retain(|c| c.name != cookie.name || c.path != cookie.path);
        jar.push(cookie);
    }

    /// Forgets every cookie.
    ///
    /// ```
    /// let client = tine::test::TestClient::new(tine::App::new());
    /// client.set_cookie("a", "1");
    /// client.clear_cookies();
    /// assert_eq!(client.cookie("a"), None);
    /// ```
    pub fn clear_cookies(&self) {
        self.jar.borrow_mut().clear();
    }

    /// The messages handlers [`publish`](crate::publish)ed since the last
    /// call, oldest first, as `(topic, WsEvent::Text or WsEvent::Binary)`.
    ///
    /// ```
    /// use tine::{test::TestClient, App, Request, StatusCode, WsEvent};
    /// let client = TestClient::new(App::new().post("/news", |req: &Request| {
    ///     tine::publish("news", req.text()?)?;
    ///     Ok::<_, tine::Error>(StatusCode::ACCEPTED)
    /// }));
    /// client.post("/news").body("hello").send();
    /// assert_eq!(client.take_published(), [("news".to_string(), WsEvent::Text("hello".into()))]);
    /// ```
    pub fn take_published(&self) -> Vec<(String, WsEvent)> {
        std::mem::take(&mut *self.published.borrow_mut())
    }

    /// The refusal a head this large would get from the server
    /// ([`Limits::max_header`](crate::Limits::max_header),
    /// [`max_headers`](crate::Limits::max_headers)), its size counted as
    /// the request would be sent.
    fn head_refused(&self, req: &Request) -> Option<StatusCode> {
        let limits = &self.config.limits;
        let line = req.method().as_str().len() + 1 + req.raw_target().len() + " HTTP/1.1\r\n".len();
        if line > limits.max_header {
            return Some(StatusCode::URI_TOO_LONG);
        }
        let fields = req.headers();
        let size = fields
            .iter()
            .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
            .sum::<usize>()
            + line
            + 2;
        (size > limits.max_header || fields.len() > limits.max_headers)
            .then_some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    }

    /// Answers `req` on the server's path, then delivers what it published.
    fn answer(&self, req: &mut Request, open_ws: bool) -> Result<TestResponse, Upgrade> {
        if let Some(status) = self.head_refused(req) {
            let res = TestResponse::new(self.service.refuse_request(status, req), req.method());
            self.keep_cookies(res.headers(), req.raw_path());
            return Ok(res);
        }
        let answer = if req.body().is_empty() {
            self.service.answer(req)
        } else {
            // A request with a body is admitted when its head arrives, as
            // the server does: routing gives its group's limit, and the
            // before-hooks or a 404/405 may answer it before the body,
            // which they therefore do not see.
            let body = req.take_body();
            match self.service.admit(req) {
                Admission::Accept(limit) => {
                    let too_large = body.len() > limit.max.unwrap_or(self.config.limits.max_body);
                    req.set_body(crate::http::body::ReadBody::Memory(body));
                    if too_large {
                        Answer::Response(
                            self.service
                                .refuse_request(StatusCode::PAYLOAD_TOO_LARGE, req),
                        )
                    } else {
                        self.service.answer(req)
                    }
                }
                Admission::Answer(res) => Answer::Response(res),
            }
        };
        let result = match answer {
            Answer::Response(res) => Ok(TestResponse::new(res, req.method())),
            Answer::Upgrade(_, accepted) if open_ws => Err(accepted),
            // A plain request that asked for an upgrade itself: its 101.
            Answer::Upgrade(res, _) => Ok(TestResponse::new(res, req.method())),
        };
        if let Ok(res) = &result {
            // An event stream follows its topics, as its connection does.
            if let TestBody::Sse(stream) = &*res.body.borrow() {
                self.streams.borrow_mut().push(Rc::downgrade(stream));
            }
            // The path as sent: cookie paths match the request's raw path
            // (RFC 6265 §5.1.4), as `build` does.
            self.keep_cookies(res.headers(), req.raw_path());
        }
        self.deliver();
        result
    }

    /// The server's `400` for a request whose path escapes are not UTF-8.
    fn refuse(&self, req: &mut Request) -> TestResponse {
        let res = self.service.refuse_request(StatusCode::BAD_REQUEST, req);
        let res = TestResponse::new(res, req.method());
        self.keep_cookies(res.headers(), req.raw_path());
        res
    }

    /// Updates the jar from a response's `Set-Cookie` headers to a request
    /// for `path`: a removal (`Max-Age=0` or an expiry in the past)
    /// forgets the cookie of that name and path.
    fn keep_cookies(&self, headers: &HeaderMap, path: &str) {
        for value in headers.get_all(header::SET_COOKIE) {
            let Some(parsed) = value
                .to_str()
                .ok()
                .and_then(|v| cookie::Cookie::parse(v).ok())
            else {
                continue;
            };
            let removed = parsed.max_age().is_some_and(|age| age.is_zero())
                || parsed
                    .expires_datetime()
                    .is_some_and(|at| at <= cookie::time::OffsetDateTime::now_utc());
            let path = match parsed.path() {
                Some(p) if p.starts_with('/') => p.to_string(),
                _ => default_cookie_path(path),
            };
            if removed {
                let mut jar = self.jar.borrow_mut();
                jar.retain(|c| c.name != parsed.name() || c.path != path);
            } else {
                self.keep(JarCookie {
                    name: parsed.name().to_string(),
                    value: parsed.value().to_string(),
                    path,
                });
            }
        }
    }

    /// Hands what handlers published to this client's subscribed
    /// WebSockets and event streams, as a worker's event loop does after
    /// each handler.
    fn deliver(&self) {
        // Messages of other threads first (a worker's loop takes them
        // when they wake it).
        pubsub::take_handoff();
        while let Some(published) = pubsub::outbox_pop().or_else(|| {
            // Those left for lack of room in the outbox, now it drained.
            pubsub::handoff_pending().then(pubsub::take_handoff)?;
            pubsub::outbox_pop()
        }) {
            let streams: Vec<_> = self
                .streams
                .borrow()
                .iter()
                .filter_map(std::rc::Weak::upgrade)
                .collect();
            for stream in streams {
                let mut stream = stream.borrow_mut();
                if stream.topics.contains(&published.topic) {
                    stream.deliver(&published.payload);
                }
            }
            let (message, event) = match published.payload {
                // What a WebSocket gets of a text or an event (as a worker
                // delivers it).
                Payload::Text(t) => {
                    let text = crate::sse::websocket_text(&t).into_owned();
                    (Message::Text(text.as_str().into()), WsEvent::Text(text))
                }
                Payload::Binary(b) => (Message::Binary(b.clone()), WsEvent::Binary(b)),
            };
            let sockets: Vec<_> = self
                .sockets
                .borrow()
                .iter()
                .filter_map(std::rc::Weak::upgrade)
                .collect();
            for socket in sockets {
                let mut socket = socket.borrow_mut();
                if socket.session.topics.contains(&published.topic) {
                    socket.session.deliver(message.clone());
                    socket.pump();
                }
            }
            self.published.borrow_mut().push((published.topic, event));
        }
        self.sockets.borrow_mut().retain(|s| s.strong_count() > 0);
        self.streams.borrow_mut().retain(|s| s.strong_count() > 0);
    }
}

/// A request being built by a [`TestClient`]; [`send`](Self::send) it.
///
/// ```
/// use tine::{test::TestClient, App, Request};
/// let client = TestClient::new(App::new().post("/echo", |req: &Request| {
///     format!("{} {}", req.header("x-token").unwrap_or("-"), req.text().unwrap_or(""))
/// }));
/// let res = client.post("/echo").header("x-token", "t1").body("hi").send();
/// assert_eq!(res.text(), "t1 hi");
/// ```
#[must_use = "a request does nothing until it is sent"]
pub struct TestRequest<'c> {
    client: &'c TestClient,
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Bytes,
    peer: SocketAddr,
    cookies: Vec<(String, String)>,
}

impl fmt::Debug for TestRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestRequest")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl<'c> TestRequest<'c> {
    /// Adds a header. Panics, pointing at the caller, on an invalid name
    /// or value.
    #[track_caller]
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: fmt::Debug,
        V: TryInto<HeaderValue>,
        V::Error: fmt::Debug,
    {
        let name = name.try_into().expect("invalid header name");
        let value = value.try_into().expect("invalid header value");
        self.headers.append(name, value);
        self
    }

    /// Sets the body (no `Content-Type`: add one with
    /// [`header`](Self::header), or use [`json`](Self::json) or
    /// [`form`](Self::form)).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `Content-Type: application/json`. Panics if
    /// `value` cannot be serialized.
    ///
    /// ```
    /// use tine::{test::TestClient, App, Request};
    /// let client = TestClient::new(App::new().post("/n", |req: &Request| -> Result<String, tine::Error> {
    ///     Ok((req.json::<u32>()? + 1).to_string())
    /// }));
    /// assert_eq!(client.post("/n").json(&41).send().text(), "42");
    /// ```
    #[track_caller]
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("TestRequest::json: cannot serialize");
        self.header(header::CONTENT_TYPE, "application/json")
            .body(body)
    }

    /// Sets an `application/x-www-form-urlencoded` body and its
    /// `Content-Type`. Panics if `value` cannot be encoded.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use tine::{test::TestClient, App, Request};
    /// let client = TestClient::new(App::new().post("/f", |req: &Request| -> Result<String, tine::Error> {
    ///     Ok(req.form::<HashMap<String, String>>()?["q"].clone())
    /// }));
    /// assert_eq!(client.post("/f").form(&[("q", "a b")]).send().text(), "a b");
    /// ```
    #[track_caller]
    pub fn form<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_urlencoded::to_string(value).expect("TestRequest::form: cannot encode");
        self.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
    }

    /// Sends a cookie with this request only (besides the client's jar).
    pub fn cookie(mut self, name: &str, value: &str) -> Self {
        self.cookies.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the client address the handler sees (default 127.0.0.1).
    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.peer = peer;
        self
    }

    /// Sends the request and returns the answer. Panics on a target that
    /// is not a valid path (this is test code).
    #[track_caller]
    pub fn send(self) -> TestResponse {
        let client = self.client;
        let mut req = match self.build() {
            Ok(req) => req,
            Err(mut req) => return client.refuse(&mut req),
        };
        match client.answer(&mut req, false) {
            Ok(res) => res,
            Err(_) => unreachable!("only TestRequest::ws opens WebSockets"),
        }
    }

    /// Sends this request as a WebSocket upgrade (adding the handshake's
    /// headers): `Ok` with the open connection, `Err` with the answer that
    /// refused it. See [`TestClient::ws`].
    ///
    /// ```
    /// use tine::{test::TestClient, App, Request, Response, StatusCode, WebSocket, WsEvent};
    /// let app = App::new()
    ///     .ws("/live", |ws: &mut WebSocket, ev: WsEvent| {
    ///         if ev == WsEvent::Open {
    ///             let user = ws.request().header("authorization").unwrap_or("").to_string();
    ///             ws.send_text(format!("hello {user}"));
    ///         }
    ///     })
    ///     .before(|req: &mut Request| {
    ///         req.header("authorization").is_none().then(|| Response::error(StatusCode::UNAUTHORIZED))
    ///     });
    /// let client = TestClient::new(app);
    /// assert_eq!(client.ws("/live").unwrap_err().status(), 401);
    /// let mut ws = client.get("/live").header("authorization", "ada").ws().unwrap();
    /// assert_eq!(ws.recv_text().as_deref(), Some("hello ada"));
    /// ```
    #[track_caller]
    #[allow(clippy::result_large_err)] // see TestClient::ws
    pub fn ws(self) -> Result<TestWebSocket<'c>, TestResponse> {
        let client = self.client;
        let mut this = self;
        for (name, value) in [
            (header::UPGRADE, "websocket"),
            (header::CONNECTION, "Upgrade"),
            (header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ=="),
            (header::SEC_WEBSOCKET_VERSION, "13"),
        ] {
            if !this.headers.contains_key(&name) {
                this.headers.insert(name, HeaderValue::from_static(value));
            }
        }
        let mut req = match this.build() {
            Ok(req) => req,
            Err(mut req) => return Err(client.refuse(&mut req)),
        };
        match client.answer(&mut req, true) {
            Ok(refused) => Err(refused),
            Err(accepted) => {
                let config = &client.config;
                let session = Session::new(
                    req,
                    accepted.handler.clone(),
                    accepted.config(&config.ws),
                    config.limits.max_body,
                    Vec::new(),
                );
                let socket = Rc::new(RefCell::new(Socket {
                    session,
                    wire: TestWire::default(),
                    peer: WebSocketContext::new(Role::Client, None),
                    io: WsIo::default(),
                    received: std::collections::VecDeque::new(),
                    close: None,
                }));
                client.sockets.borrow_mut().push(Rc::downgrade(&socket));
                {
                    let mut s = socket.borrow_mut();
                    let s = &mut *s;
                    s.session.open(&s.wire);
                    s.pump();
                }
                client.deliver();
                Ok(TestWebSocket { client, socket })
            }
        }
    }

    /// The request; `Err` holds one whose path escapes are not UTF-8,
    /// which the server refuses with `400`.
    #[track_caller]
    fn build(self) -> Result<Request, Box<Request>> {
        let sends_length = !self.body.is_empty()
            || matches!(self.method, Method::POST | Method::PUT | Method::PATCH);
        let mut builder = Request::builder(self.method, &self.target).peer(self.peer);
        let jar = self.client.jar.borrow();
        let path = self.target.split('?').next().unwrap_or("");
        // Longer paths first, as browsers send them.
        let mut held: Vec<&JarCookie> = jar.iter().filter(|c| c.sent_to(path)).collect();
        held.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let cookies: Vec<String> = held
            .into_iter()
            .map(|c| (&c.name, &c.value))
            .filter(|(n, _)| !self.cookies.iter().any(|(m, _)| m == *n))
            .chain(self.cookies.iter().map(|(n, v)| (n, v)))
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let mut headers = self.headers;
        // What every HTTP/1.1 client sends and the server requires: a
        // `Host` (the server answers `400` without one) and the body's
        // length (browsers send `Content-Length: 0` for an empty `POST`).
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, HeaderValue::from_static("localhost"));
        }
        if sends_length
            && !headers.contains_key(header::CONTENT_LENGTH)
            && !headers.contains_key(header::TRANSFER_ENCODING)
        {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        if !cookies.is_empty() {
            let value = HeaderValue::from_str(&cookies.join("; ")).expect("valid cookie values");
            headers.append(header::COOKIE, value);
        }
        builder = builder.headers(headers).body(self.body);
        builder.try_finish()
    }
}

/// The answer to a [`TestRequest`]: status, headers and body, as the
/// server would send them (no body for `HEAD`, `204` and `304`). `Date`,
/// `Content-Length` and `Connection` are the server's framing and are not
/// here.
///
/// ```
/// use tine::{test::TestClient, App, Request, Response};
/// let client = TestClient::new(App::new().get("/", |_: &Request| Response::text("hi").with_header("x-a", "1")));
/// let res = client.get("/").send();
/// assert_eq!((res.status().as_u16(), res.header("x-a"), res.text().as_str()), (200, Some("1"), "hi"));
/// assert_eq!(client.head("/").send().text(), "");
/// ```
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: RefCell<TestBody>,
}

/// A response body, read as far as asked.
enum TestBody {
    /// Read whole.
    Done(Bytes),
    /// A stream: what was pulled so far, and the rest.
    Stream(BytesMut, Option<Box<dyn Iterator<Item = Bytes>>>),
    /// An event stream (SSE), fed by what is published to its topics.
    Sse(Rc<RefCell<SseSession>>),
}

impl fmt::Debug for TestResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TestResponse");
        d.field("status", &self.status)
            .field("headers", &self.headers);
        match &*self.body.borrow() {
            TestBody::Done(b) => d.field("body", &String::from_utf8_lossy(b)),
            TestBody::Stream(..) => d.field("body", &"(stream)"),
            TestBody::Sse(..) => d.field("body", &"(event stream)"),
        };
        d.finish()
    }
}

impl TestResponse {
    fn new(mut res: Response, method: &Method) -> TestResponse {
        let status = res.status;
        // The map is built here if the response had none (only its
        // `Content-Type` slot): the test client reads headers as a map.
        let headers = std::mem::take(res.headers_mut());
        let body = std::mem::replace(&mut res.body, Body::Empty);
        let no_body = *method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status.is_informational();
        let body = match body {
            _ if no_body => TestBody::Done(Bytes::new()),
            Body::Empty => TestBody::Done(Bytes::new()),
            Body::Full(b) => TestBody::Done(b),
            Body::Vec(v) => TestBody::Done(Bytes::from(v)),
            Body::Stream(chunks) => TestBody::Stream(BytesMut::new(), Some(chunks.iter)),
            // An event stream, unframed: what the route sent when it
            // opened (its `retry:` and first events), then what is
            // published to its topics.
            Body::Sse(mut sse) => {
                sse.start(false);
                TestBody::Sse(Rc::new(RefCell::new(*sse)))
            }
            Body::File(f) => TestBody::Done(read_file(&f)),
        };
        TestResponse {
            status,
            headers,
            body: RefCell::new(body),
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Every header.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of a header as text, if present and visible ASCII.
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A cookie this response sets (`Set-Cookie`), by name.
    ///
    /// ```
    /// use tine::{test::TestClient, App, Request, Response};
    /// let client = TestClient::new(App::new().get("/", |_: &Request| Response::text("").simple_cookie("sid", "7")));
    /// let res = client.get("/").send();
    /// let sid = res.cookie("sid").unwrap();
    /// assert_eq!((sid.value(), sid.http_only()), ("7", Some(true)));
    /// ```
    pub fn cookie(&self, name: &str) -> Option<cookie::Cookie<'static>> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| cookie::Cookie::parse(v.to_string()).ok())
            .find(|c| c.name() == name)
    }

    /// The whole body. A streamed body is pulled to its end first (so a
    /// stream that never ends never returns: read it with
    /// [`next_chunk`](Self::next_chunk)). A stream that panicked ends where
    /// it panicked, as the server cuts the response off there.
    pub fn bytes(&self) -> Bytes {
        let mut body = self.body.borrow_mut();
        if let TestBody::Stream(..) = &*body {
            while pull(&mut body).is_some() {}
            if let TestBody::Stream(done, None) = &mut *body {
                let all = std::mem::take(done).freeze();
                *body = TestBody::Done(all);
            }
        }
        match &*body {
            TestBody::Done(b) => b.clone(),
            TestBody::Sse(stream) => Bytes::copy_from_slice(stream.borrow().unsent()),
            TestBody::Stream(..) => unreachable!("pulled to its end above"),
        }
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// The body parsed as JSON. Panics, showing the status and body, if it
    /// does not parse into `T`.
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        let body = self.bytes();
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "response {} is not the JSON expected ({e}): {}",
                self.status,
                String::from_utf8_lossy(&body)
            )
        })
    }

    /// The next chunk of a streamed body ([`Response::stream`]), pulled
    /// now; `None` at its end. For a body in memory, the whole body once.
    /// For an event stream ([`Sse`](crate::Sse)), what it was sent since
    /// the last call (its first events, then what requests since
    /// published to its topics; `None` when nothing waits). Chunks read
    /// this way are not in [`bytes`](Self::bytes), which for an event
    /// stream is what waits unread.
    ///
    /// ```
    /// use tine::{test::TestClient, App, Request, Response};
    /// let client = TestClient::new(App::new().get("/s", |_: &Request| {
    ///     Response::stream((1..).map(|i| format!("tick {i}\n")))
    /// }));
    /// let res = client.get("/s").send();
    /// assert_eq!(res.next_chunk().unwrap(), "tick 1\n");
    /// assert_eq!(res.next_chunk().unwrap(), "tick 2\n");
    /// ```
    pub fn next_chunk(&self) -> Option<Bytes> {
        let mut body = self.body.borrow_mut();
        match &mut *body {
            TestBody::Done(b) if b.is_empty() => None,
            TestBody::Done(b) => Some(std::mem::take(b)),
            TestBody::Sse(stream) => {
                let mut stream = stream.borrow_mut();
                let waiting = Bytes::copy_from_slice(stream.unsent());
                stream.written(waiting.len());
                (!waiting.is_empty()).then_some(waiting)
            }
            TestBody::Stream(..) => {
                let chunk = pull(&mut body)?;
                if let TestBody::Stream(seen, _) = &mut *body {
                    seen.clear();
                }
                Some(chunk)
            }
        }
    }
}

/// Pulls one chunk of a streamed body into its buffer (and returns it),
/// inside the panic boundary the server runs streams in.
fn pull(body: &mut TestBody) -> Option<Bytes> {
    let TestBody::Stream(seen, rest) = body else {
        return None;
    };
    let chunks = rest.as_mut()?;
    match handler::catch_in(&handler::STREAM, || chunks.next()) {
        Some(Some(chunk)) => {
            seen.extend_from_slice(&chunk);
            Some(chunk)
        }
        Some(None) | None => {
            *rest = None;
            None
        }
    }
}

/// Reads a file body's region, as `sendfile` would send it.
fn read_file(body: &crate::http::FileBody) -> Bytes {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; usize::try_from(body.len).unwrap_or(usize::MAX)];
    let mut done = 0;
    while done < buf.len() {
        match body
            .file
            .read_at(&mut buf[done..], body.offset + done as u64)
        {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("TestResponse: reading the file body: {e}"),
        }
    }
    buf.truncate(done);
    buf.into()
}

/// One WebSocket connection of a [`TestClient`]: the server's session,
/// and a client-side protocol context on buffers standing in for the
/// socket.
struct Socket {
    session: Session,
    /// What `send_text_now` wrote "to the socket".
    wire: TestWire,
    /// The client end: frames the test sends, messages it receives.
    peer: WebSocketContext,
    io: WsIo,
    received: std::collections::VecDeque<WsEvent>,
    /// The server's close frame, once it arrived.
    close: Option<(u16, String)>,
}

/// The client end's stand-in for a socket: bytes from the server to
/// read, bytes for the server written.
#[derive(Default)]
struct WsIo {
    input: Vec<u8>,
    in_pos: usize,
    output: Vec<u8>,
}

impl WsIo {
    fn push_input(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }
}

impl std::io::Read for WsIo {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = &self.input[self.in_pos..];
        if available.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.in_pos += n;
        if self.in_pos == self.input.len() {
            self.input.clear();
            self.in_pos = 0;
        }
        Ok(n)
    }
}

impl std::io::Write for WsIo {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The socket as `send_*_now` sees it: bytes written at once.
#[derive(Default)]
struct TestWire(RefCell<Vec<u8>>);

impl Wire for TestWire {
    fn write_all_now(&self, data: &[u8]) -> std::io::Result<()> {
        self.0.borrow_mut().extend_from_slice(data);
        Ok(())
    }
}

impl Socket {
    /// Moves bytes both ways until neither side has anything to say:
    /// the server's output to the client context (collecting messages
    /// and the close), the client's answers (pongs, the close reply) to
    /// the session.
    fn pump(&mut self) {
        // Bounded: each round moves what the other side produced; a
        // protocol exchange settles in a few rounds.
        for _ in 0..64 {
            let mut from_server = std::mem::take(&mut *self.wire.0.borrow_mut());
            let unsent = self.session.unsent();
            from_server.extend_from_slice(unsent);
            let n = unsent.len();
            self.session.written(n);
            self.session.topic_changes.clear();
            self.io.push_input(&from_server);
            loop {
                match self.peer.read(&mut self.io) {
                    Ok(Message::Text(t)) => self
                        .received
                        .push_back(WsEvent::Text(t.as_str().to_string())),
                    Ok(Message::Binary(b)) => self.received.push_back(WsEvent::Binary(b)),
                    Ok(Message::Close(frame)) => {
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.as_str().to_string()))
                            .unwrap_or((1005, String::new()));
                        self.close = Some((code, reason.clone()));
                        self.received.push_back(WsEvent::Close { code, reason });
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = self.peer.flush(&mut self.io);
            let to_server = std::mem::take(&mut self.io.output);
            if to_server.is_empty() && from_server.is_empty() {
                return;
            }
            if !to_server.is_empty() && !self.session.finished() {
                self.session.feed(&to_server, &self.wire);
            }
        }
    }
}

/// A WebSocket opened by [`TestClient::ws`]: send messages as the browser
/// would, read what the handler sent, see the close. Messages published
/// to a topic the connection subscribed to arrive here too.
///
/// Dropping it without a close handshake is a dropped connection: the
/// handler sees `Close` with code 1006.
///
/// ```
/// use tine::{test::TestClient, App, Request, WebSocket, WsEvent};
/// let app = App::new()
///     .ws("/chat", |ws: &mut WebSocket, ev: WsEvent| match ev {
///         WsEvent::Open => ws.subscribe("room"),
///         WsEvent::Text(t) if t == "bye" => ws.close(1000, "see you"),
///         WsEvent::Text(t) => tine::publish("room", t).unwrap_or_else(|e| ws.send_text(e.message())),
///         _ => {}
///     });
/// let client = TestClient::new(app);
/// let mut ada = client.ws("/chat").unwrap();
/// let mut bob = client.ws("/chat").unwrap();
/// ada.send_text("hi all");
/// assert_eq!(bob.recv_text().as_deref(), Some("hi all"));
/// assert_eq!(ada.recv_text().as_deref(), Some("hi all"));
/// bob.send_text("bye");
/// assert_eq!(bob.recv(), Some(WsEvent::Close { code: 1000, reason: "see you".into() }));
/// assert!(bob.is_closed());
/// ```
pub struct TestWebSocket<'c> {
    client: &'c TestClient,
    socket: Rc<RefCell<Socket>>,
}

impl fmt::Debug for TestWebSocket<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.socket.borrow();
        f.debug_struct("TestWebSocket")
            .field("topics", &s.session.topics)
            .field("pending", &s.received.len())
            .field("close", &s.close)
            .finish()
    }
}

impl TestWebSocket<'_> {
    fn send(&mut self, msg: Message) {
        {
            let mut s = self.socket.borrow_mut();
            let s = &mut *s;
            if s.peer.write(&mut s.io, msg).is_err() {
                return; // closed: nothing more can be sent
            }
            s.pump();
        }
        self.client.deliver();
    }

    /// Sends a text message to the handler (which runs now).
    pub fn send_text(&mut self, text: impl Into<String>) {
        self.send(Message::Text(text.into().into()));
    }

    /// Sends a binary message to the handler.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) {
        self.send(Message::Binary(data.into()));
    }

    /// Starts the close handshake from the client side with `code` and
    /// `reason`; the handler sees `WsEvent::Close` with them, and the
    /// server's answering close arrives through [`recv`](Self::recv).
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use tine::{test::TestClient, App, WebSocket, WsEvent};
    /// let seen = Rc::new(RefCell::new(Vec::new()));
    /// let log = seen.clone();
    /// let client = TestClient::new(App::new().ws("/w", move |_: &mut WebSocket, ev: WsEvent| log.borrow_mut().push(ev)));
    /// let mut ws = client.ws("/w").unwrap();
    /// ws.close(4000, "done");
    /// assert_eq!(seen.borrow().last(), Some(&WsEvent::Close { code: 4000, reason: "done".into() }));
    /// assert!(ws.is_closed());
    /// ```
    pub fn close(&mut self, code: u16, reason: &str) {
        {
            let mut s = self.socket.borrow_mut();
            let s = &mut *s;
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.to_string().into(),
            };
            if s.peer.close(&mut s.io, Some(frame)).is_err() {
                return;
            }
            s.pump();
        }
        self.client.deliver();
    }

    /// The next thing the server sent: `Text` or `Binary` messages in
    /// order, then `Close` with the server's close code and reason once
    /// its close frame arrived; `None` when nothing is waiting.
    pub fn recv(&mut self) -> Option<WsEvent> {
        self.socket.borrow_mut().received.pop_front()
    }

    /// The next message as text: `None` when nothing is waiting; panics,
    /// showing it, when the next thing is not a text message.
    #[track_caller]
    pub fn recv_text(&mut self) -> Option<String> {
        match self.recv()? {
            WsEvent::Text(t) => Some(t),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Whether the server's close frame arrived.
    pub fn is_closed(&self) -> bool {
        self.socket.borrow().close.is_some()
    }

    /// The topics the connection is subscribed to.
    pub fn topics(&self) -> Vec<String> {
        self.socket.borrow().session.topics.to_vec()
    }
}

impl Drop for TestWebSocket<'_> {
    fn drop(&mut self) {
        let mut s = self.socket.borrow_mut();
        let s = &mut *s;
        // A connection dropped without the handshake: the handler's last
        // event, as the server gives it when a socket goes away.
        s.session.closed(1006, String::new(), &s.wire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, WebSocket};

    #[test]
    fn an_event_stream_answers_what_its_route_sent_at_open() {
        let app = App::new().sse("/events", |req: &Request, sse: &mut crate::Sse| {
            let since = req.header("last-event-id").unwrap_or("none").to_string();
            sse.send(crate::SseEvent::new(format!("since {since}")).id("7"));
        });
        let client = TestClient::new(app);
        let res = client.get("/events").header("last-event-id", "6").send();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.header("content-type"),
            Some("text/event-stream"),
            "{res:?}"
        );
        let text = res.text();
        // The opening comment, then the route's event.
        assert_eq!(text, ":ok\n\ndata: since 6\nid: 7\n\n");
    }

    /// What WebSockets get of what routes publish, as in a worker: an
    /// event's data, and a plain text exactly as published, even one
    /// shaped like a marked event.
    #[test]
    fn published_events_and_texts_reach_websockets_as_workers_deliver_them() {
        let forged = "\u{1e}event: x\ndata: y\n\n";
        let app = App::new()
            .get("/event", |_: &Request| {
                crate::publish_event("t", crate::SseEvent::new("a\nb").id("1")).unwrap();
                "ok"
            })
            .get("/text", move |_: &Request| {
                crate::publish("t", forged).unwrap();
                "ok"
            });
        let client = TestClient::new(app);
        client.get("/event").send();
        client.get("/text").send();
        let got: Vec<WsEvent> = client
            .take_published()
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(
            got,
            [WsEvent::Text("a\nb".into()), WsEvent::Text(forged.into())]
        );
    }

    #[test]
    fn limits_hooks_and_panics_as_on_the_server() {
        let app = App::new()
            .post("/echo", |req: &Request| Response::bytes(req.body_bytes()))
            .get("/boom", |_: &Request| -> Response {
                panic!("test client boom")
            })
            .after(|_: &Request, res: Response| res.with_header("x-after", "1"))
            .limits(Limits::default().max_body(4));
        let client = TestClient::new(app);
        let res = client.post("/echo").body("abcd").send();
        assert_eq!((res.status().as_u16(), res.text().as_str()), (200, "abcd"));
        let res = client.post("/echo").body("abcde").send();
        assert_eq!(res.status(), 413);
        assert_eq!(res.header("x-after"), Some("1"));
        let res = client.get("/boom").send();
        assert_eq!(res.status(), 500);
        assert_eq!(res.header("x-after"), Some("1"));
    }

    #[test]
    fn a_body_is_admitted_as_on_the_server() {
        let echo = |req: &Request| Response::bytes(req.body_bytes());
        let app = App::new()
            .nest("/big", crate::Group::new().max_body(100).post("/", echo))
            .nest("/small", crate::Group::new().max_body(2).post("/", echo))
            .nest(
                "/auth",
                crate::Group::new()
                    .before(|req: &mut Request| {
                        req.header("authorization")
                            .is_none()
                            .then(|| Response::error(StatusCode::UNAUTHORIZED))
                    })
                    .post("/", echo),
            )
            .post("/echo", echo)
            .get("/h/:x", |req: &Request| {
                Response::text(req.param("x").unwrap_or("").to_string())
            })
            .limits(Limits::default().max_body(4));
        let client = TestClient::new(app);
        let status =
            |path: &str, body: &str| client.post(path).body(body.to_string()).send().status();
        // The route group's limit, above and below the app's.
        assert_eq!(status("/big", &"x".repeat(50)), 200);
        assert_eq!(status("/big", &"x".repeat(101)), 413);
        assert_eq!(status("/small", "abc"), 413);
        // Before-hooks and routing answer before the size is looked at.
        assert_eq!(status("/auth", "too long for the app"), 401);
        assert_eq!(status("/nowhere", "too long for the app"), 404);
        let res = client.put("/echo").body("too long for the app").send();
        assert_eq!(
            (res.status().as_u16(), res.header("allow")),
            (405, Some("POST, OPTIONS"))
        );
        // A path whose escapes are not UTF-8: the server's 400, no panic.
        assert_eq!(client.get("/h/%FF").send().status(), 400);
        assert_eq!(client.get("/h/%C3%A9").send().text(), "é");
    }

    /// A before-hook runs when the head arrives and sees no body, on the
    /// server and here alike: a test must not pass where the server
    /// refuses. The handler gets the body, with the head every client
    /// sends (`Host`, `Content-Length`).
    #[test]
    fn hooks_see_no_body_and_requests_carry_host_and_length() {
        let app = App::new()
            .before(|req: &mut Request| {
                (!req.body().is_empty()).then(|| {
                    Response::text("a hook saw the body").with_status(StatusCode::IM_A_TEAPOT)
                })
            })
            .post("/form", |req: &Request| {
                let head = format!(
                    "{} {} {}",
                    req.header("host").unwrap_or("-"),
                    req.header("content-length").unwrap_or("-"),
                    req.form_map().get("a").map_or("-", String::as_str),
                );
                Response::text(head)
            })
            .get("/host", |req: &Request| {
                req.header("host").unwrap_or("-").to_string()
            });
        let client = TestClient::new(app);
        let res = client.post("/form").form(&[("a", "1")]).send();
        assert_eq!(
            (res.status().as_u16(), res.text().as_str()),
            (200, "localhost 3 1")
        );
        assert_eq!(client.post("/form").send().text(), "localhost 0 -");
        assert_eq!(client.get("/host").send().text(), "localhost");
        let res = client.get("/host").header("host", "example.com").send();
        assert_eq!(res.text(), "example.com");
        // An absolute-form target names the host, as the server reads it
        // (it was a panic here: "valid request target").
        let res = client.get("http://proxied.example:8080/host?x=1").send();
        assert_eq!(
            (res.status().as_u16(), res.text().as_str()),
            (200, "proxied.example:8080")
        );
        assert_eq!(client.get("HTTP://h").send().status(), 404);
    }

    #[test]
    fn cookie_jar_follows_set_cookie_and_removals() {
        let app = App::new()
            .get("/in", |_: &Request| {
                Response::text("in").simple_cookie("sid", "a b")
            })
            .get("/who", |req: &Request| {
                req.cookie("sid")
                    .map(|c| c.value().to_string())
                    .unwrap_or_else(|| "nobody".into())
            })
            .get("/out", |_: &Request| {
                Response::text("out").set_cookie(cookie::Cookie::build("sid").removal().build())
            });
        let client = TestClient::new(app);
        assert_eq!(client.get("/who").send().text(), "nobody");
        client.get("/in").send();
        assert_eq!(client.cookie("sid").as_deref(), Some("a%20b"));
        assert_eq!(client.get("/who").send().text(), "a b");
        assert_eq!(client.get("/who").cookie("sid", "x").send().text(), "x");
        client.get("/out").send();
        assert_eq!(client.cookie("sid"), None);
        assert_eq!(client.get("/who").send().text(), "nobody");
    }

    #[test]
    fn publishing_is_limited_as_on_a_worker() {
        // With the default limits a worker relays about 1 MiB + 128 KiB.
        let client = TestClient::new(App::new().get("/news", |req: &Request| {
            let n: usize = req
                .query_param("n")
                .unwrap_or_default()
                .parse()
                .unwrap_or(0);
            crate::publish_binary("news", vec![0u8; n]).map(|()| StatusCode::ACCEPTED)
        }));
        let limit = crate::pubsub::max_size() - "news".len();
        assert!(limit < 2 << 20, "{limit}");
        let status = |n: usize| client.get(&format!("/news?n={n}")).send().status();
        assert_eq!(status(limit), 202);
        assert_eq!(status(limit + 1), 413);
    }

    #[test]
    fn cookies_go_to_the_paths_under_their_path() {
        let set = |cookie: &'static str| {
            move |_: &Request| Response::text("set").with_header("set-cookie", cookie)
        };
        let app = App::new()
            .get("/admin/login", set("a=1; Path=/admin"))
            .get("/docs/page", set("d=2"))
            .get("/:dir/set", set("e=3"))
            .get("/admin/logout", set("a=; Path=/admin; Max-Age=0"))
            .get("/root", set("a=0; Path=/"))
            .any("*", |req: &Request| {
                req.header("cookie").unwrap_or("").to_string()
            });
        let client = TestClient::new(app);
        client.get("/admin/login").send();
        client.get("/docs/page").send();
        assert_eq!(client.get("/admin").send().text(), "a=1");
        assert_eq!(client.get("/admin/users?x=1").send().text(), "a=1");
        assert_eq!(client.get("/administrator").send().text(), "");
        // Without `Path`: the directory of the request that set it.
        assert_eq!(client.get("/docs/other").send().text(), "d=2");
        client.get("/caf%C3%A9/set").send();
        assert_eq!(client.get("/caf%C3%A9/other").send().text(), "e=3");
        assert_eq!(client.get("/").send().text(), "");
        // The same name at another path is another cookie; the longer
        // path is sent first.
        client.get("/root").send();
        assert_eq!(client.get("/admin/x").send().text(), "a=1; a=0");
        assert_eq!(client.cookie("a").as_deref(), Some("1"));
        assert_eq!(client.get("/x").send().text(), "a=0");
        client.get("/admin/logout").send();
        assert_eq!(client.get("/admin/x").send().text(), "a=0");
    }

    #[test]
    fn websocket_events_send_now_and_drop() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        let app = App::new().ws("/w/:room", move |ws: &mut WebSocket, ev: WsEvent| {
            log.borrow_mut().push(ev.clone());
            match ev {
                WsEvent::Open => {
                    let room = ws.param("room").unwrap_or("").to_string();
                    ws.subscribe(&room);
                    ws.send_text(format!("joined {room}"));
                }
                WsEvent::Text(t) => {
                    ws.send_text_now(format!("now {t}")).unwrap();
                    ws.send_text(format!("later {t}"));
                }
                WsEvent::Binary(b) => ws.send_binary(b),
                WsEvent::Close { .. } => {}
            }
        });
        let client = TestClient::new(app);
        let mut ws = client.ws("/w/r1").unwrap();
        assert_eq!(ws.topics(), ["r1"]);
        assert_eq!(ws.recv_text().as_deref(), Some("joined r1"));
        ws.send_text("x");
        assert_eq!(ws.recv_text().as_deref(), Some("now x"));
        assert_eq!(ws.recv_text().as_deref(), Some("later x"));
        ws.send_binary(vec![1u8, 2]);
        assert_eq!(
            ws.recv(),
            Some(WsEvent::Binary(Bytes::from_static(&[1, 2])))
        );
        assert_eq!(ws.recv(), None);
        crate::publish("r1", "news").unwrap();
        crate::publish("r2", "elsewhere").unwrap();
        client.get("/nothing").send(); // delivery follows any request
        assert_eq!(ws.recv_text().as_deref(), Some("news"));
        assert_eq!(ws.recv(), None);
        assert_eq!(client.take_published().len(), 2);
        drop(ws);
        assert_eq!(
            seen.borrow().last(),
            Some(&WsEvent::Close {
                code: 1006,
                reason: String::new()
            })
        );
    }

    #[test]
    fn streams_files_and_head() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "file body").unwrap();
        let app = App::new()
            .get("/s", |_: &Request| Response::stream(["a", "b", "c"]))
            .get("/broken", |_: &Request| {
                Response::stream((0..3).map(|i| {
                    assert!(i < 2, "stream test panic");
                    "x"
                }))
            })
            .static_dir("/static", dir.path());
        let client = TestClient::new(app);
        assert_eq!(client.get("/s").send().text(), "abc");
        let res = client.get("/s").send();
        assert_eq!(res.next_chunk().unwrap(), "a");
        assert_eq!(res.text(), "bc");
        handler::install_panic_hook();
        assert_eq!(client.get("/broken").send().text(), "xx");
        let res = client.get("/static/a.txt").send();
        assert_eq!(res.text(), "file body");
        assert!(res.header("etag").is_some());
        let res = client.head("/static/a.txt").send();
        assert_eq!((res.status().as_u16(), res.text().as_str()), (200, ""));
    }

    /// A handler that closes in its `Close` event (echoing the code it
    /// got, which may be one no frame carries) does nothing once the close
    /// frame went out: no panic.
    #[test]
    fn closing_again_in_the_close_event_does_nothing() {
        use std::cell::Cell;
        use std::rc::Rc;
        let returned = Rc::new(Cell::new(false));
        let seen = returned.clone();
        let client = TestClient::new(App::new().ws(
            "/w",
            move |ws: &mut crate::WebSocket, ev: WsEvent| {
                if let WsEvent::Close { .. } = ev {
                    ws.close(1006, "");
                    seen.set(true);
                }
            },
        ));
        let mut ws = client.ws("/w").unwrap();
        ws.close(1000, "bye");
        assert!(returned.get(), "close(1006) panicked in the Close event");
    }

    /// An event stream follows its topics: what later requests publish
    /// (a text, an event) arrives as the server's connection would send it,
    /// and only on the streams subscribed to the topic.
    #[test]
    fn an_event_stream_gets_what_requests_publish_to_its_topics() {
        use crate::{Sse, SseEvent};
        let client = TestClient::new(
            App::new()
                .sse("/events/:room", |req: &Request, sse: &mut Sse| {
                    sse.subscribe(req.param("room").unwrap());
                    sse.send(SseEvent::new("welcome"));
                })
                .post("/say/:room", |req: &Request| {
                    crate::publish(req.param("room").unwrap(), req.text().unwrap()).unwrap();
                    "ok"
                })
                .post("/event", |_: &Request| {
                    crate::publish_event("a", SseEvent::new("tick").event("clock")).unwrap();
                    "ok"
                }),
        );
        let a = client.get("/events/a").send();
        let b = client.get("/events/b").send();
        let first = a.next_chunk().unwrap();
        assert!(first.ends_with(b"data: welcome\n\n"), "{first:?}");
        assert_eq!(a.next_chunk(), None, "nothing more yet");
        client.post("/say/a").body("hello").send();
        client.post("/event").send();
        assert_eq!(
            a.next_chunk().unwrap(),
            "data: hello\n\nevent: clock\ndata: tick\n\n"
        );
        // `b` got its welcome only.
        assert!(b.next_chunk().unwrap().ends_with(b"data: welcome\n\n"));
        assert_eq!(b.next_chunk(), None);
        // A stream dropped is no longer fed.
        drop(a);
        client.post("/say/a").body("again").send();
        assert!(client.streams.borrow().iter().all(|s| s.strong_count() > 0));
    }

    /// The head limits answer as the server's do: a head over
    /// `max_header` or with more than `max_headers` fields is a `431`, a
    /// request line over `max_header` a `414` (a big session cookie that
    /// works here works in production).
    #[test]
    fn heads_over_the_limits_are_refused_as_the_server_refuses_them() {
        let client = TestClient::new(
            App::new()
                .get("/", |_: &Request| "ok")
                .limits(Limits::default().max_header(300).max_headers(5)),
        );
        assert_eq!(client.get("/").header("cookie", "a=1").send().status(), 200);
        let big = format!("a={}", "x".repeat(300));
        assert_eq!(client.get("/").header("cookie", &big).send().status(), 431);
        let mut many = client.get("/");
        for i in 0..6 {
            many = many.header(format!("x-{i}").as_str(), "1");
        }
        assert_eq!(many.send().status(), 431);
        let long = format!("/?q={}", "x".repeat(300));
        assert_eq!(client.get(&long).send().status(), 414);
        // Exactly at the limit: `GET / HTTP/1.1` and CRLF (16), the
        // `host: localhost` line the client adds (17), `cookie: ` and a
        // value and CRLF, and the empty line's CRLF.
        let fits = format!("a={}", "x".repeat(300 - 16 - 17 - 8 - 2 - 2 - 2));
        assert_eq!(client.get("/").header("cookie", &fits).send().status(), 200);
        let over = format!("{fits}x");
        assert_eq!(client.get("/").header("cookie", &over).send().status(), 431);
    }
}
