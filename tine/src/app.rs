//! The application: routes, hooks and settings, built once, then served.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use percent_encoding::{utf8_percent_encode, CONTROLS};

use crate::group::Group;
use crate::http::{Extensions, IntoResponse, Request, Response};
use crate::limits::Limits;
use crate::middleware::{Compression, Cors};
use crate::server::{Balance, Listen, ServeError, Server, ServerConfig};
use crate::service::{Answer, Route, Service};
use crate::static_files::{self, Mount, Outcome, StaticConfig};
use crate::ws::{WebSocket, WsConfig, WsEvent};

/// A tine application: routes, middleware and settings.
///
/// Build it with the methods below, then call [`serve`](App::serve) (or
/// [`bind`](App::bind) to learn the bound address first). Handlers are
/// plain functions or closures `Fn(&Request) -> impl IntoResponse`; they
/// need not be `Send` or `Sync`, and they run on the worker's only thread:
/// **a handler that blocks, blocks its whole worker process**.
///
/// ```no_run
/// use tine::{App, Request, Response};
///
/// fn hello(req: &Request) -> Response {
///     Response::text(format!("Hello, {}!", req.param("name").unwrap_or("world")))
/// }
///
/// App::new()
///     .get("/hello/:name", hello)
///     .get("/", |_req: &Request| "home")
///     .serve("127.0.0.1:8080")
///     .unwrap();
/// ```
pub struct App {
    /// Routes, hooks and error pages: what answers requests.
    pub(crate) service: Service,
    /// Limits, workers and the other settings the server reads.
    pub(crate) config: ServerConfig,
    /// The admin routes (metrics, status, health), for the admin process
    /// of [`admin_bind`](App::admin_bind).
    pub(crate) admin: Service,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (before, after) = self.service.counts();
        f.debug_struct("App")
            .field("router", &"..")
            .field("before", &before)
            .field("after", &after)
            .field("limits", &self.config.limits)
            .finish()
    }
}

/// The per-method registration functions (`get`, `post`, ...) of a
/// builder that has `route(Method, &str, handler)`: `App` and `Group`.
macro_rules! method_fns {
    ($($(#[$doc:meta])* $name:ident => $method:ident;)*) => {$(
        $(#[$doc])*
        #[track_caller]
        pub fn $name<H, R>(self, pattern: &str, handler: H) -> Self
        where
            H: Fn(&$crate::Request) -> R + 'static,
            R: $crate::IntoResponse,
        {
            self.route($crate::Method::$method, pattern, handler)
        }
    )*};
}
pub(crate) use method_fns;

impl App {
    /// An application with no routes and default [`Limits`].
    pub fn new() -> Self {
        App {
            service: Service::default(),
            config: ServerConfig::default(),
            admin: Service::default(),
        }
    }

    method_fns! {
        /// Routes `GET` (and `HEAD`, answered without the body) requests.
        get => GET;
        /// Routes `POST` requests.
        post => POST;
        /// Routes `PUT` requests.
        put => PUT;
        /// Routes `DELETE` requests.
        delete => DELETE;
        /// Routes `PATCH` requests.
        patch => PATCH;
        /// Routes `HEAD` requests explicitly (otherwise `GET` routes answer them).
        head => HEAD;
        /// Routes `OPTIONS` requests.
        options => OPTIONS;
    }

    /// Routes requests with `method` matching `pattern` to `handler`.
    ///
    /// Patterns: `/users/:id` captures a segment
    /// ([`Request::param`]), a trailing `*` captures the rest of the path
    /// under `"*"`, and `*` alone matches any path.
    ///
    /// Which route answers: patterns without `*` own the paths they match,
    /// before any wildcard route or static mount; of those that match, the
    /// most specific owns the path, in whatever order they were
    /// registered (at the first segment where two differ, a literal beats
    /// a capture: `/users/new` beside `/users/:id`), as in axum. Its route
    /// for the method answers, `HEAD` falls back to `GET`, another method
    /// gets `405` with `Allow` listing its methods (`204` with it for
    /// `OPTIONS`). Wildcard routes and mounts get only the other paths, by
    /// the same rule (`/files/special/*` before `/files/:x/*` before
    /// `/files/*`), except that a static mount answers another method with
    /// `404` where it has no file.
    ///
    /// ```
    /// use tine::{test::TestClient, App, Request};
    /// let app = App::new()
    ///     .get("/users/:id", |req: &Request| format!("user {}", req.param("id").unwrap()))
    ///     .get("/users/new", |_: &Request| "the form");
    /// let client = TestClient::new(app);
    /// assert_eq!(client.get("/users/new").send().text(), "the form");
    /// assert_eq!(client.get("/users/7").send().text(), "user 7");
    /// ```
    ///
    /// Panics, pointing at the caller, on a malformed pattern or on a
    /// route that could never answer (the same method, or `any`, already
    /// registered on the same pattern).
    #[track_caller]
    pub fn route<H, R>(self, method: Method, pattern: &str, handler: H) -> Self
    where
        H: Fn(&Request) -> R + 'static,
        R: IntoResponse,
    {
        self.add_route(Some(method), pattern, handler)
    }

    /// Routes requests of every method matching `pattern` to `handler`.
    #[track_caller]
    pub fn any<H, R>(self, pattern: &str, handler: H) -> Self
    where
        H: Fn(&Request) -> R + 'static,
        R: IntoResponse,
    {
        self.add_route(None, pattern, handler)
    }

    #[track_caller]
    fn add_route<H, R>(mut self, method: Option<Method>, pattern: &str, handler: H) -> Self
    where
        H: Fn(&Request) -> R + 'static,
        R: IntoResponse,
    {
        self.service.add_route(
            method,
            pattern,
            Route::plain(Box::new(move |req| handler(req).into_response())),
        );
        self
    }

    /// Mounts a [`Group`] of routes under `prefix` (`"/api"`; `""` or
    /// `"/"` for none, which is [`merge`](App::merge)): its routes answer
    /// `prefix` + their pattern, with the group's hooks, body limit and
    /// fallback. Panics, pointing at this line, if a group route conflicts
    /// with one already registered (the message names the group route's
    /// line too).
    ///
    /// ```
    /// use tine::{App, Group, Request};
    /// let app = App::new().nest("/api", Group::new().get("/todos", |_: &Request| "[]"));
    /// ```
    #[track_caller]
    pub fn nest(mut self, prefix: &str, group: Group) -> Self {
        let prefix = crate::group::checked_prefix(prefix);
        self.config.group_limit = self.config.group_limit.max(group.largest_limit());
        group.register(&mut self.service, &prefix, None, None);
        self
    }

    /// Adds a [`Group`]'s routes as they are, with its hooks and limits:
    /// for an app split across modules, each returning its `Group`, or
    /// for one route with its own [`max_body`](Group::max_body).
    ///
    /// ```
    /// use tine::{App, Group, Request};
    /// fn users() -> Group {
    ///     Group::new().get("/users", |_: &Request| "[]")
    /// }
    /// let app = App::new().merge(users());
    /// ```
    #[track_caller]
    pub fn merge(self, group: Group) -> Self {
        self.nest("", group)
    }

    /// Answers every method on the paths that no route or wildcard route
    /// matches (instead of tine's `404`; a path a route matches with
    /// another method still gets `405`), and the paths a static mount at
    /// `/` has no file for: a single-page app's files, else its page. A
    /// deeper mount (`/assets`) keeps its `404`s. After the app's
    /// before-hooks, like a route. Panics if the app already has one.
    ///
    /// ```
    /// use tine::{App, Request, Response, StatusCode};
    /// let app = App::new().fallback(|req: &Request| {
    ///     Response::text(format!("nothing at {}", req.path())).with_status(StatusCode::NOT_FOUND)
    /// });
    /// ```
    ///
    /// ```no_run
    /// # use tine::{App, Request, Response};
    /// // The files of ./dist, and index.html for every other path.
    /// let app = App::new()
    ///     .static_dir("/", "./dist")
    ///     .fallback(|_: &Request| Response::file("./dist/index.html"));
    /// ```
    #[track_caller]
    pub fn fallback<H, R>(self, handler: H) -> Self
    where
        H: Fn(&Request) -> R + 'static,
        R: IntoResponse,
    {
        self.merge(Group::new().fallback(handler))
    }

    /// Serves the files under `dir` at the URL prefix `prefix` (GET and
    /// HEAD): `index.html` for directories, a 301 to add a missing trailing
    /// slash, `ETag`/`Last-Modified` validators (304), single byte ranges
    /// (206/416), precompressed `.br`/`.gz` siblings, and `sendfile(2)` for
    /// the body. Paths that would leave `dir` (`..`, encoded slashes,
    /// symlinks pointing outside) are a 404, like missing files.
    ///
    /// Panics, pointing at the caller, if `dir` cannot be opened: a
    /// misconfigured server should not start.
    ///
    /// ```no_run
    /// let app = tine::App::new().static_dir("/static", "./public");
    /// ```
    #[track_caller]
    pub fn static_dir(self, prefix: &str, dir: impl Into<std::path::PathBuf>) -> Self {
        self.static_files(prefix, StaticConfig::new(dir))
    }

    /// Like [`static_dir`](App::static_dir), with settings (index file,
    /// `Cache-Control`, precompressed lookups).
    ///
    /// ```no_run
    /// use tine::{App, HeaderValue, StaticConfig};
    /// let config = StaticConfig::new("./public")
    ///     .cache_control(HeaderValue::from_static("public, max-age=3600"));
    /// let app = App::new().static_files("/assets", config);
    /// ```
    #[track_caller]
    pub fn static_files(self, prefix: &str, config: StaticConfig) -> Self {
        let root = config.root.display().to_string();
        let mount = match Mount::open(config) {
            Ok(m) => m,
            Err(e) => panic!("static files at {prefix:?}: cannot open {root:?}: {e}"),
        };
        let prefix = prefix.trim_end_matches('/').to_string();
        let pattern = format!("{prefix}/*");
        let mut app = self;
        app.service.add_mount(
            &pattern,
            Box::new(move |req: &Request| serve_static(&mount, &prefix, req)),
        );
        app
    }

    /// Routes WebSocket upgrade requests matching `pattern` (same syntax as
    /// HTTP routes) to `handler`, called once per [`WsEvent`]. The app's
    /// before-hooks run on the upgrade request (so authentication applies;
    /// a route in a [`Group`](crate::Group), added with
    /// [`Group::ws`](crate::Group::ws), gets the group's hooks too), and the
    /// handler sees its params and extensions through
    /// [`WebSocket::request`]. A bad handshake is answered 400, an
    /// unsupported version 426; a plain request to the path is ordinary
    /// HTTP: an HTTP route on it answers, else `426 Upgrade Required`
    /// with `Upgrade: websocket` (the sign of a proxy in between that
    /// drops `Upgrade`; see `docs/deploy/README.md`) to `GET` and `HEAD`,
    /// and to other methods what a path routed for `GET` answers: `405`
    /// with `Allow`, `204` to `OPTIONS`.
    ///
    /// ```no_run
    /// use tine::{App, WebSocket, WsEvent};
    /// let app = App::new().ws("/ws/echo", |ws: &mut WebSocket, ev: WsEvent| match ev {
    ///     WsEvent::Text(t) => ws.send_text(t),
    ///     WsEvent::Binary(b) => ws.send_binary(b),
    ///     _ => {}
    /// });
    /// ```
    #[track_caller]
    pub fn ws<F>(mut self, pattern: &str, handler: F) -> Self
    where
        F: Fn(&mut WebSocket<'_>, WsEvent) + 'static,
    {
        self.service.add_ws_route(pattern, Rc::new(handler));
        self
    }

    /// Carries [`publish`](crate::publish)ed messages through Redis
    /// (`redis://[[user]:password@]host[:port]`) instead of the master, so
    /// servers on several machines share topics. Each process opens its own
    /// two connections (subscribe, publish) after the fork, reconnects with
    /// backoff, and publishes on channels named `tine:<topic>`. Delivery is
    /// at most once, like Redis pub/sub itself: while Redis is unreachable,
    /// messages are dropped (and counted in the log).
    ///
    /// ```
    /// let app = tine::App::new().redis("redis://127.0.0.1:6379");
    /// ```
    pub fn redis(mut self, url: &str) -> Self {
        self.config.redis_url = Some(url.to_string());
        self
    }

    /// Replaces the WebSocket settings ([`WsConfig`]).
    pub fn ws_config(mut self, config: WsConfig) -> Self {
        self.service.set_ws_protocols(config.protocols.clone());
        self.config.ws = config;
        self
    }

    /// Adds a before-hook. Hooks run in registration order after routing
    /// (so [`Request::param`] works) and before the handler, also for
    /// requests no route matches. A hook may add
    /// [extensions](Request::extensions_mut) or answer the request itself by
    /// returning `Some(response)`, which skips the later hooks and the
    /// handler (after-hooks still run, and a [`Response::error`] is
    /// rendered by the [`errors`](App::errors) handler, as from a handler).
    /// Before-hooks run on WebSocket upgrade requests too; they do not run
    /// on requests tine refuses before routing (malformed, over a limit,
    /// timed out). For a request with a body they run once its head is
    /// read, before the body is accepted (and before `100 Continue` is
    /// sent): a hook that answers then refuses the body unread. The body
    /// is passed over as it arrives, up to 256 KiB, so the connection
    /// goes on; a larger one, or one the client would send only after
    /// `100 Continue`, closes the connection after the answer. A chunked
    /// body's answer waits for the body's end, which alone shows whether
    /// the connection can stay open. (The hook sees an empty body.)
    ///
    /// ```
    /// use tine::{App, Request, Response, StatusCode};
    /// let app = App::new().before(|req: &mut Request| {
    ///     if req.header("authorization").is_none() {
    ///         return Some(Response::empty(StatusCode::UNAUTHORIZED));
    ///     }
    ///     None
    /// });
    /// ```
    pub fn before<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut Request) -> Option<Response> + 'static,
    {
        self.service.add_before(Box::new(hook));
        self
    }

    /// Answers every request that did not arrive over TLS with a `308
    /// Permanent Redirect` to the same host and path over HTTPS, on
    /// `https_port` (omitted from the URL when 443). Requests on TLS
    /// listeners (`Listen::tls`, with the `tls` feature), and those a
    /// [trusted proxy](App::trusted_proxies) says came over HTTPS
    /// ([`Request::scheme`]), are served as usual.
    /// A before-hook: hooks added earlier run first. A request without a
    /// `Host` (HTTP/1.0) gets a `400`.
    ///
    /// ```
    /// use tine::{App, Method, Request};
    /// let app = App::new().get("/", |_: &Request| "hi").redirect_https(8443);
    /// let res = app.handle(&mut Request::builder(Method::GET, "/a?b=1")
    ///     .header("host", "example.com:8080").finish());
    /// assert_eq!(res.status(), 308);
    /// assert_eq!(res.headers()["location"], "https://example.com:8443/a?b=1");
    /// ```
    ///
    /// # Panics
    /// If `https_port` is 0, which no client can connect to.
    #[track_caller]
    pub fn redirect_https(self, https_port: u16) -> Self {
        assert!(
            https_port != 0,
            "App::redirect_https(0): port 0 is no port a client can connect to"
        );
        self.before(move |req: &mut Request| {
            // The scheme a trusted proxy reports: behind one that ends
            // TLS, the socket is plain for every request, and redirecting
            // by it would send the client round in circles.
            if req.scheme() == "https" {
                return None;
            }
            Some(https_redirect(req, https_port))
        })
    }

    /// Adds an after-hook, which maps every response sent for a request,
    /// in registration order: handler answers, early answers of
    /// before-hooks, error pages (404, 405, 500, ...), refused WebSocket
    /// upgrades, and the errors tine answers once a request line was read
    /// (400, 408, 413, 431, ...: the hook sees the method, target and the
    /// header lines that could be read, with an empty body). It does not
    /// see an accepted upgrade's `101`. If an after-hook panics, the answer
    /// is a 500 error page (rendered by the [`errors`](App::errors)
    /// handler, if there is one) that no after-hook sees.
    ///
    /// ```
    /// use tine::{App, Request, Response};
    /// let app = App::new().after(|_req: &Request, res: Response| res.with_header("x-frame-options", "DENY"));
    /// ```
    pub fn after<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Request, Response) -> Response + 'static,
    {
        self.service.add_after(Box::new(hook));
        self
    }

    /// Replaces the plain-text error pages. The handler renders error
    /// pages: every error status tine generates (400, 404, 405, 408, 413,
    /// 426, 431, 500 after a panic, ...) and every [`Response::error`],
    /// [`Response::not_found`] or [`Response::bad_request`] a handler or
    /// before-hook returns, on HTTP and WebSocket routes alike. Responses
    /// with content of their own (`Response::text(..).with_status(404)`,
    /// a bare `StatusCode`, a [`tine::Error`](crate::Error) with its
    /// message, [JSON body](crate::Error::json) or
    /// [response](crate::Error::response)) are sent as they are. tine keeps the status and the
    /// headers of the response being rendered (such as `Allow` on 405s).
    ///
    /// The request is what could be read of it (for a request refused as
    /// malformed or over a limit: method, target and header lines, no
    /// body), or `None` when not even a request line was read; the
    /// after-hooks then run on the page (so CORS headers are on it), except
    /// in the `None` case.
    ///
    /// ```
    /// use tine::{App, Response};
    /// let app = App::new().errors(|_req, status| {
    ///     Response::html(format!("<h1>{status}</h1>"))
    /// });
    /// ```
    pub fn errors<F>(mut self, handler: F) -> Self
    where
        F: Fn(Option<&Request>, StatusCode) -> Response + 'static,
    {
        self.service.set_error_handler(Box::new(handler));
        self
    }

    /// Adds CORS handling: answers preflight requests and adds the
    /// `Access-Control-*` headers to responses. See [`Cors`]. Panics when
    /// `cors` allows credentials but lists no origin. Preflights are
    /// answered by a before-hook: call this before authentication hooks,
    /// which would otherwise refuse them (preflights carry no credentials).
    ///
    /// ```
    /// use tine::{App, Cors, Request};
    /// let app = App::new()
    ///     .cors(Cors::new().allow_origin("https://app.example"))
    ///     .get("/api", |_: &Request| "data");
    /// ```
    #[track_caller]
    pub fn cors(self, cors: Cors) -> Self {
        cors.install(self)
    }

    /// Adds a server-sent events route: `GET pattern` answers a
    /// `text/event-stream` whose events come from publish/subscribe.
    /// `handler` runs once per connection, after the before-hooks (which
    /// can refuse it, for authentication): it subscribes the stream to
    /// topics, may send first events (those missed since
    /// [`Sse::last_event_id`](crate::Sse::last_event_id), say), set `retry:`, the heartbeat interval
    /// and the buffer limit, or [`reject`](crate::Sse::reject) the request. Then
    /// every [`publish`](crate::publish) or
    /// [`publish_event`](crate::publish_event) to those topics, from any
    /// worker, reaches the client. See [`Sse`](crate::Sse).
    ///
    /// ```
    /// use tine::{App, Request, Sse, SseEvent, StatusCode};
    /// let app = App::new()
    ///     .sse("/events/:room", |req: &Request, sse: &mut Sse| {
    ///         sse.subscribe(req.param("room").unwrap_or("lobby"));
    ///         sse.send(SseEvent::new("welcome").event("hello"));
    ///     })
    ///     .post("/say/:room", |req: &Request| -> Result<StatusCode, tine::Error> {
    ///         tine::publish(req.param("room").unwrap_or("lobby"), req.text()?)?;
    ///         Ok(StatusCode::ACCEPTED)
    ///     });
    /// ```
    #[track_caller]
    pub fn sse<F>(self, pattern: &str, handler: F) -> Self
    where
        F: Fn(&Request, &mut crate::Sse) + 'static,
    {
        self.get(pattern, move |req: &Request| {
            let mut sse = crate::Sse::new(req);
            handler(req, &mut sse);
            sse
        })
    }

    /// Compresses responses with gzip, brotli or zstd (the `zstd`
    /// feature) as the request's `Accept-Encoding` allows: bodies in
    /// memory, streams (chunk by chunk, still streamed) and static files
    /// without a precompressed sibling. See [`Compression`] for what is
    /// skipped and the default levels.
    ///
    /// It is an after-hook: register it after hooks whose output it should
    /// compress (hooks registered later see the compressed response).
    ///
    /// ```
    /// use tine::{App, Compression, Request, Response};
    /// let app = App::new()
    ///     .get("/report", |_: &Request| Response::json(&vec!["row"; 500]))
    ///     .compress(Compression::new());
    /// ```
    pub fn compress(self, compression: Compression) -> Self {
        compression.install(self)
    }

    /// Logs one line per request, `METHOD /path STATUS 3ms`, through the
    /// `log` facade (target `tine::access`, level info).
    pub fn log_requests(mut self) -> Self {
        self.service.set_log_requests();
        self
    }

    /// The key that signs and encrypts cookies
    /// ([`Response::set_signed_cookie`], [`Response::set_private_cookie`])
    /// and is tried first when reading them ([`Request::signed_cookie`],
    /// [`Request::private_cookie`]). Signed cookies use HMAC-SHA256,
    /// private ones AES-256-GCM (the `cookie` crate's).
    ///
    /// Take the key from configuration, never from code: a secret of at
    /// least 32 random bytes (`openssl rand -base64 48`) in an environment
    /// variable or a file, turned into a key with
    /// [`Key::derive_from`](cookie::Key::derive_from) (panics if shorter
    /// than 32 bytes), or 64 bytes of key given to
    /// [`Key::try_from`](cookie::Key::try_from). The app is built before
    /// the workers are forked, so every worker has the same key.
    /// ([`Key::generate`](cookie::Key::generate) suits tests: cookies made
    /// with it do not survive a restart.)
    ///
    /// **Rotating the key** without logging everyone out: make the new
    /// secret the `cookie_key` and give the old one to
    /// [`old_cookie_key`](App::old_cookie_key). New cookies are signed
    /// with the new key; cookies signed with the old one are still
    /// accepted, and are replaced as the app sets them again (set session
    /// cookies on each log-in or refresh to move clients over sooner). Once
    /// the longest-lived cookie made with the old key has expired, remove
    /// the old key: from then on, whatever it signed is refused.
    ///
    /// ```no_run
    /// use tine::cookie::Key;
    /// use tine::App;
    /// let secret = std::env::var("COOKIE_SECRET").expect("COOKIE_SECRET (32+ bytes)");
    /// let mut app = App::new().cookie_key(Key::derive_from(secret.as_bytes()));
    /// // During a rotation: the previous secret is still accepted.
    /// if let Ok(old) = std::env::var("COOKIE_SECRET_OLD") {
    ///     app = app.old_cookie_key(Key::derive_from(old.as_bytes()));
    /// }
    /// ```
    pub fn cookie_key(mut self, key: cookie::Key) -> Self {
        self.service
            .set_cookie_keys(|keys| keys.current = Some(key));
        self
    }

    /// A key still accepted when reading signed and private cookies, but
    /// never used to make them: the previous key during a rotation (see
    /// [`cookie_key`](App::cookie_key)). May be given several times.
    ///
    /// ```
    /// use tine::cookie::{Cookie, Key};
    /// use tine::{test::TestClient, App, Request, Response};
    /// let (old, new) = (Key::generate(), Key::generate());
    /// let routes = |app: App| {
    ///     app.get("/in", |req: &Request| Response::text("").set_signed_cookie(req, Cookie::new("u", "ada")))
    ///         .get("/me", |req: &Request| req.signed_cookie("u").map(|c| c.value().to_string()).unwrap_or_default())
    /// };
    /// // Yesterday's server signed the cookie with the old key ...
    /// let before = TestClient::new(routes(App::new().cookie_key(old.clone())));
    /// before.get("/in").send();
    /// let cookie = before.cookie("u").unwrap();
    /// // ... today's signs with the new one and still accepts it.
    /// let after = TestClient::new(routes(App::new().cookie_key(new.clone()).old_cookie_key(old)));
    /// after.set_cookie("u", &cookie);
    /// assert_eq!(after.get("/me").send().text(), "ada");
    /// // Once the old key is retired, it is refused.
    /// let later = TestClient::new(routes(App::new().cookie_key(new)));
    /// later.set_cookie("u", &cookie);
    /// assert_eq!(later.get("/me").send().text(), "");
    /// ```
    pub fn old_cookie_key(mut self, key: cookie::Key) -> Self {
        self.service.set_cookie_keys(|keys| keys.old.push(key));
        self
    }

    /// Serves with `n` worker processes. With `n > 1`, [`serve`](App::serve)
    /// makes the calling process a supervising master that forks `n`
    /// workers, each with its own event loop and `SO_REUSEPORT` listener
    /// (on macOS, whose `SO_REUSEPORT` does not balance, one listener
    /// shared by all);
    /// `n <= 1` serves in the calling process, with no fork. The
    /// environment variable `TINE_WORKERS` (a number, or `auto` for the
    /// number of available cores) overrides this at start-up. At most
    /// 128 (a rolling restart runs a replacement beside every draining
    /// worker, and the scoreboard has 256 entries): more is refused when
    /// the server binds, and `SIGTTIN` adds none past it.
    ///
    /// ```
    /// let app = tine::App::new().workers(4);
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// How long the master lets workers drain on a graceful stop (and
    /// retired workers on reload or scale-down) before killing them.
    /// Default 30 s.
    pub fn graceful_timeout(mut self, timeout: Duration) -> Self {
        self.config.graceful_timeout = timeout;
        self
    }

    /// Recycles each worker after it has served about `n` responses
    /// (gunicorn's `max_requests`): the master starts a replacement for its
    /// slot, which accepts on the same queue, and only once it is ready
    /// tells the old worker to stop accepting and drain, so no connection
    /// is refused or reset. A worker keeps serving until then. Each
    /// worker's own limit is `n` plus a random `0..=j` from
    /// [`max_requests_jitter`](App::max_requests_jitter), so workers
    /// started together do not recycle together. `0` (the default) never
    /// recycles. Needs workers > 1: a single process has nobody to replace
    /// it, so there the setting is ignored with a warning.
    ///
    /// ```
    /// let app = tine::App::new().workers(4).max_requests(10_000).max_requests_jitter(1_000);
    /// ```
    pub fn max_requests(mut self, n: u64) -> Self {
        self.config.max_requests = (n > 0).then_some(n);
        self
    }

    /// Spreads [`max_requests`](App::max_requests): each worker's limit is
    /// `n + random(0..=j)`. Default 0.
    ///
    /// ```
    /// let app = tine::App::new().workers(4).max_requests(1_000).max_requests_jitter(50);
    /// ```
    pub fn max_requests_jitter(mut self, j: u64) -> Self {
        self.config.max_requests_jitter = j;
        self
    }

    /// Recycles a worker whose own memory grows past `bytes` (uWSGI's
    /// `reload-on-rss`), the same way as [`max_requests`](App::max_requests):
    /// its replacement accepts first, then it drains. The master reads each
    /// serving worker's memory about once a second from
    /// `/proc/PID/smaps_rollup`, and counts its *private* memory
    /// (`Private_Clean + Private_Dirty`): the pages only this worker maps,
    /// which is what a leak grows and what its exit gives back. Not RSS,
    /// which also counts the pages still shared with the master since the
    /// fork (the whole app before any write), nor PSS, whose share of those
    /// changes as siblings come and go. `0` (the default) never recycles.
    ///
    /// Linux only: elsewhere the setting is accepted and the master logs a
    /// warning at start-up. Needs workers > 1, like `max_requests`.
    ///
    /// ```
    /// let app = tine::App::new().workers(4).max_worker_memory(512 << 20);
    /// ```
    pub fn max_worker_memory(mut self, bytes: u64) -> Self {
        self.config.max_worker_memory = (bytes > 0).then_some(bytes);
        self
    }

    /// Kills and replaces a worker that has made no progress for `d`: its
    /// event loop has not waited for events, and no handler has started
    /// (default 30 s, like gunicorn's `--timeout`; `Duration::ZERO`
    /// disables the watchdog). The environment variable
    /// `TINE_WORKER_TIMEOUT`, in seconds (`30`, `0.5`, `0`), overrides it at
    /// start-up; a value that is not a number of seconds is a start-up
    /// error naming the variable.
    ///
    /// Each worker writes a heartbeat to the shared scoreboard at the start
    /// of every loop turn and counts each handler it starts; the master
    /// reads them twice a second. A worker that is busy (in a handler, or
    /// anywhere but waiting for events) with no handler started for longer
    /// than `d` (one loop turn may run many short handlers, pipelined, on
    /// many connections or for WebSocket messages, or pull many chunks of
    /// a stream: each is progress) is logged with what it is stuck on (`worker 2 (pid
    /// 4242) stuck 30.0 s in GET /report?id=7, killing it`) and killed with
    /// `SIGKILL`; its connections are lost, but the connections waiting in
    /// its listener's queue are kept and served by its replacement, which
    /// is forked at once (a timeout is not a crash: no crash backoff). A
    /// worker stuck while draining is killed the same way, and so is one
    /// whose start-up (the per-worker init hook) takes longer than `d`.
    /// An idle worker is never stuck, however long it waits. Set `d` above
    /// your slowest legitimate handler. Needs workers > 1 (a single
    /// process has nobody to watch it).
    ///
    /// ```
    /// use std::time::Duration;
    /// let app = tine::App::new().workers(4).worker_timeout(Duration::from_secs(10));
    /// ```
    pub fn worker_timeout(mut self, d: std::time::Duration) -> Self {
        self.config.worker_timeout = d;
        self
    }

    /// How long a new master started by a binary upgrade (`SIGUSR2` to the
    /// master) may take until every one of its workers is ready (default
    /// 60 s: the new build forks its workers and runs their start-up hooks
    /// meanwhile). Past it, the new master gets `SIGTERM` (`SIGKILL` after
    /// the graceful timeout), the log says why, and the old master serves
    /// on. The same happens at once if the new master exits. Needs
    /// workers > 1.
    ///
    /// ```
    /// use std::time::Duration;
    /// let app = tine::App::new().workers(4).upgrade_timeout(Duration::from_secs(120));
    /// ```
    pub fn upgrade_timeout(mut self, d: std::time::Duration) -> Self {
        self.config.upgrade_timeout = d;
        self
    }

    /// Writes the serving process's pid (the master's with workers > 1) to
    /// `path` once its address is bound ([`bind`](App::bind),
    /// [`serve`](App::serve)), and removes the file when the server is
    /// done ([`Server::run`] returned, or the server was dropped), if the
    /// file still holds that pid. A path that cannot be written makes
    /// `bind` fail, before serving, with an error naming it. The file is replaced atomically (written aside, then
    /// renamed), so a reader never sees a partial pid. A process killed
    /// with `SIGKILL` leaves it behind, like any pid file.
    ///
    /// ```
    /// let app = tine::App::new().workers(4).pid_file("/run/app.pid");
    /// ```
    pub fn pid_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.pid_file = Some(path.into());
        self
    }

    /// The user that worker processes run as (a name, or a number). The
    /// master keeps the identity it was started with: started as root, it
    /// binds privileged ports and reads what only root may read, while
    /// each worker switches to this user (its supplementary groups, then
    /// its group, then the user) right after the fork, before
    /// `on_worker_start` and any handler run. In single-process mode the
    /// process switches once its sockets are bound. An unknown user, or
    /// one that needs root to switch to when not running as root, makes
    /// [`bind`](App::bind) fail with an error naming it; a worker that
    /// cannot switch exits rather than serve. Linux and FreeBSD (refused on
    /// macOS). Default: no switch. (A single process can no longer remove
    /// a [`pid_file`](App::pid_file) in a directory only root may write.)
    ///
    /// ```
    /// let app = tine::App::new().workers(4).user("www-data");
    /// ```
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.config.user = Some(name.into());
        self
    }

    /// The group that worker processes run as (a name, or a number);
    /// default: the primary group of [`user`](App::user). Alone, without a
    /// user, only the group changes. See [`user`](App::user).
    ///
    /// ```
    /// let app = tine::App::new().workers(4).user("www-data").group("www-data");
    /// ```
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.config.group = Some(name.into());
        self
    }

    /// Joins an existing `SO_REUSEPORT` group on the address on purpose.
    /// By default a server refuses to start when another process already
    /// listens there, rather than silently sharing its traffic.
    ///
    /// The group joined is one the kernel lets in: sockets bound with
    /// `SO_REUSEPORT` by the same user, as those of a tine master in the
    /// reuseport mode are (or a server that itself joined). A single
    /// process (`workers <= 1`) joins with its one socket, but binds a
    /// plain socket otherwise, which nothing can join. With a shared
    /// listener ([`Balance::Shared`](crate::Balance)) the joining server
    /// binds one reuseport socket that its workers share.
    ///
    /// ```
    /// let app = tine::App::new().workers(4).join_existing(true);
    /// ```
    pub fn join_existing(mut self, join: bool) -> Self {
        self.config.join_existing = join;
        self
    }

    /// Listens on one more address besides the one given to
    /// [`bind`](App::bind) (which stays the first): the same routes on
    /// every address, each with its own settings (see [`Listen`]).
    ///
    /// ```no_run
    /// use tine::{App, Listen, Request};
    /// App::new()
    ///     .get("/", |_: &Request| "hi")
    ///     .listen(Listen::tcp(([0, 0, 0, 0, 0, 0, 0, 0], 8080)))
    ///     .serve("0.0.0.0:8080")?;
    /// # Ok::<(), tine::ServeError>(())
    /// ```
    pub fn listen(mut self, listen: Listen) -> Self {
        self.config.listens.push(listen);
        self
    }

    /// How workers share each address unless its [`Listen`] says
    /// otherwise (default: [`Balance::ReusePort`] on Linux and FreeBSD,
    /// [`Balance::Shared`] on macOS). See [`Balance`] for when to choose
    /// which.
    ///
    /// ```
    /// let app = tine::App::new().workers(4).balance(tine::Balance::Shared);
    /// # let _ = app;
    /// ```
    pub fn balance(mut self, balance: Balance) -> Self {
        self.config.balance = Some(balance);
        self
    }

    /// Runs `init` in each worker process after the fork (and once before
    /// serving in single-process mode), for resources that must not cross a
    /// fork: database connections, thread pools, RNG seeds. What it stores
    /// is reachable from every request with [`Request::state`].
    ///
    /// A hook that panics stops that process from serving: the panic is
    /// logged once; in single-process mode [`Server::run`] returns an
    /// error before accepting anything; a worker exits with status 1, and
    /// the master replaces it with its crash backoff (so a hook that
    /// always panics does not fork-loop).
    ///
    /// ```
    /// use std::cell::Cell;
    /// use tine::{App, Request};
    /// struct Counter(Cell<u64>);
    /// let app = App::new()
    ///     .on_worker_start(|state| { state.insert(Counter(Cell::new(0))); })
    ///     .get("/hits", |req: &Request| {
    ///         let c = req.state::<Counter>().unwrap();
    ///         c.0.set(c.0.get() + 1);
    ///         c.0.get().to_string()
    ///     });
    /// ```
    pub fn on_worker_start<F>(mut self, init: F) -> Self
    where
        F: Fn(&mut Extensions) + 'static,
    {
        self.service.add_worker_init(Box::new(init));
        self
    }

    /// Runs `task` every `period` in each worker process (and in a single
    /// process), on the worker's own thread, between the requests it
    /// serves: for work on the worker's state that nothing else starts,
    /// such as refreshing a cache or dropping expired sessions. It gets
    /// the state [`on_worker_start`](App::on_worker_start) built, and may
    /// [`publish`](crate::publish) (what it publishes goes out in the same
    /// turn of the loop).
    ///
    /// A task first runs one period after its worker starts serving. Like
    /// a handler it blocks its worker while it runs, so keep it short
    /// (hand slow work to a thread, which can report back through a
    /// [`Publisher`](crate::Publisher)); one that never returns is a stuck
    /// worker, and the master's watchdog replaces it. A run made late by a
    /// busy worker does not make up the runs it missed. A panic is logged
    /// and the task runs again at its next time. A worker that is stopping
    /// runs no more tasks. [`TestClient::run_periodic`] runs them in tests.
    ///
    /// The timing is the event loop's: a task may run a little after its
    /// time, never before.
    ///
    /// Panics if `period` is zero.
    ///
    /// [`TestClient::run_periodic`]: crate::test::TestClient::run_periodic
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::time::Duration;
    /// use tine::{App, Request};
    /// struct Prices(RefCell<Vec<u32>>);
    /// let app = App::new()
    ///     .on_worker_start(|state| { state.insert(Prices(RefCell::new(vec![1, 2]))); })
    ///     .every(Duration::from_secs(30), |state| {
    ///         if let Some(prices) = state.get::<Prices>() {
    ///             prices.0.borrow_mut().push(3); // a fresh copy, say
    ///         }
    ///     })
    ///     .get("/prices", |req: &Request| {
    ///         format!("{:?}", req.state::<Prices>().unwrap().0.borrow())
    ///     });
    /// ```
    #[track_caller]
    pub fn every<F>(mut self, period: Duration, task: F) -> Self
    where
        F: Fn(&Extensions) + 'static,
    {
        assert!(!period.is_zero(), "App::every: the period must not be zero");
        self.service.add_periodic(period, Box::new(task));
        self
    }

    /// Replaces the [`Limits`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Binds `addr` and returns the server, ready to [`run`](Server::run).
    /// Use port 0 to let the system pick a free port and read it back with
    /// [`Server::local_addr`].
    pub fn bind(self, addr: impl ToSocketAddrs) -> Result<Server, ServeError> {
        let addr = resolve(addr)?;
        let mut server = Server::bind(self.service, self.config, Some(addr))?;
        server.set_admin_service(self.admin);
        Ok(server)
    }

    /// Binds only the addresses added with [`listen`](App::listen) (an
    /// error if there is none), for a server whose first address needs
    /// settings of its own.
    ///
    /// ```
    /// use tine::{App, Balance, Listen};
    /// let server = App::new()
    ///     .listen(Listen::tcp(([127, 0, 0, 1], 0)).balance(Balance::Shared))
    ///     .bind_listeners()?;
    /// assert_eq!(server.local_addrs().len(), 1);
    /// assert!(App::new().bind_listeners().is_err());
    /// # Ok::<(), tine::ServeError>(())
    /// ```
    pub fn bind_listeners(self) -> Result<Server, ServeError> {
        let mut server = Server::bind(self.service, self.config, None)?;
        server.set_admin_service(self.admin);
        Ok(server)
    }

    /// Binds `addr` and serves until SIGINT or SIGTERM, then drains and
    /// returns.
    pub fn serve(self, addr: impl ToSocketAddrs) -> Result<(), ServeError> {
        self.bind(addr)?.run()
    }

    /// The settings the server will read.
    #[cfg(test)]
    pub(crate) fn server_config(&self) -> &ServerConfig {
        &self.config
    }

    /// The service and settings the server would take (for the test
    /// client, and tests that drive a connection without a server).
    pub(crate) fn into_parts(self) -> (Service, ServerConfig) {
        (self.service, self.config)
    }

    /// Answers one request without a socket, on the same path the server
    /// uses for every request (routing, hooks, handler or WebSocket
    /// handshake, error pages, after-hooks, the request log), with panics
    /// turned into 500s. An accepted WebSocket upgrade returns its `101`.
    /// Worker-init hooks have not run here, so [`Request::state`] finds
    /// nothing: to test an app, use [`tine::test::TestClient`](crate::test::TestClient),
    /// which runs them, keeps cookies, drives WebSocket routes and applies
    /// the body limit.
    ///
    /// ```
    /// use tine::{App, Method, Request, StatusCode};
    /// let app = App::new().get("/hi", |_req: &Request| "hi");
    /// let mut req = Request::builder(Method::GET, "/nope").finish();
    /// assert_eq!(app.handle(&mut req).status(), StatusCode::NOT_FOUND);
    /// ```
    pub fn handle(&self, req: &mut Request) -> Response {
        match self.service.answer(req) {
            Answer::Response(res) | Answer::Upgrade(res, _) => res,
        }
    }
}

/// Answers a request for a static file under `mount`.
fn serve_static(mount: &Mount, prefix: &str, req: &Request) -> Response {
    let raw = req.raw_path();
    let rel = after_prefix(raw, prefix);
    match static_files::serve(mount, req.method(), raw, rel, req.headers()) {
        Outcome::NotFound => Response::error(StatusCode::NOT_FOUND),
        // Another method on a file the mount has (see the router's docs).
        Outcome::MethodNotAllowed if req.method() == Method::OPTIONS => {
            Response::empty(StatusCode::NO_CONTENT).with_header(header::ALLOW, static_files::ALLOW)
        }
        Outcome::MethodNotAllowed => Response::error(StatusCode::METHOD_NOT_ALLOWED)
            .with_header(header::ALLOW, static_files::ALLOW),
        Outcome::Redirect { mut location } => match req.query_string() {
            // The query is only needed here: keep it off the hot path.
            Some(q) => {
                location.push('?');
                location.extend(utf8_percent_encode(q, CONTROLS));
                redirect(&location)
            }
            None => redirect(&location),
        },
        Outcome::Respond {
            status,
            headers,
            body,
            compressible,
        } => {
            let mut res = match body {
                Some(b) => Response::from_file(b.file, b.offset, b.len),
                None => Response::empty(status),
            };
            res.status = status;
            res.set_headers(headers);
            res.compressible = compressible;
            res
        }
        Outcome::Error(e) => {
            // Out of descriptors, every request for a file fails alike:
            // said once per interval with a count, not once per request;
            // each kind of error apart, so that one file's I/O error is
            // not hidden behind the descriptor table's being full.
            thread_local! {
                static FAILED: std::cell::RefCell<[crate::throttle::Throttle; 3]> =
                    Default::default();
            }
            let kind = match e.raw_os_error() {
                Some(emfile) if emfile == rustix::io::Errno::MFILE.raw_os_error() => 0,
                Some(enfile) if enfile == rustix::io::Errno::NFILE.raw_os_error() => 1,
                _ => 2,
            };
            let now = std::time::Instant::now();
            if let Some(more) = FAILED.with(|t| t.borrow_mut()[kind].allow(now)) {
                log::error!("static file {raw}: {e}; answered 503{more}");
            }
            Response::error(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// The part of the raw path after the mount's `prefix` (no trailing
/// `/`), starting with its `/` (or empty). The router matched the prefix
/// segment by segment after percent-decoding, so the raw path may spell
/// it differently (`/stati%63/a.txt`): its segments are skipped, not its
/// bytes, or another file than the one the path names would be served.
fn after_prefix<'a>(raw: &'a str, prefix: &str) -> &'a str {
    if let Some(rest) = raw.strip_prefix(prefix) {
        if rest.is_empty() || rest.starts_with('/') {
            return rest;
        }
    }
    let mut rest = raw;
    for _ in prefix.split('/').filter(|s| !s.is_empty()) {
        rest = match rest.get(1..).and_then(|r| r.find('/')) {
            Some(i) => &rest[i + 1..],
            None => "",
        };
    }
    rest
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => Response::empty(StatusCode::MOVED_PERMANENTLY).with_header(header::LOCATION, v),
        Err(_) => Response::error(StatusCode::NOT_FOUND),
    }
}

/// The address `bind` was given, resolved. Its errors say what was being
/// done and what is expected: the standard library's alone ("invalid
/// socket address", "invalid port value") do not say which address.
fn resolve(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    let hint = "give HOST:PORT, such as 127.0.0.1:8080, [::1]:8080 or localhost:8080";
    let resolved = addr.to_socket_addrs().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot resolve the address to bind ({e}); {hint}"),
        )
    })?;
    resolved.into_iter().next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the address to bind resolved to nothing; {hint}"),
        )
    })
}

/// The `308` to the HTTPS form of `req`'s URL (see [`App::redirect_https`]).
fn https_redirect(req: &Request, port: u16) -> Response {
    let Some(host) = req.header("host").filter(|h| !h.is_empty()) else {
        return Response::text("a Host header is needed to redirect to HTTPS\n")
            .with_status(StatusCode::BAD_REQUEST);
    };
    // The host without its port: `[v6]:port`, `name:port`, or bare.
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    // An asterisk-form target (`OPTIONS *`) names no resource a URL can
    // spell: the server's root stands for it.
    let path = match req.raw_path() {
        "*" => "/",
        path => path,
    };
    // Raw bytes past ASCII in the target (which httparse lets through) go
    // out percent-encoded, as a URI must carry them (RFC 3986 §2.1).
    let path = utf8_percent_encode(path, CONTROLS);
    let target = match req.query_string() {
        Some(q) => format!("{path}?{}", utf8_percent_encode(q, CONTROLS)),
        None => path.to_string(),
    };
    let location = if port == 443 {
        format!("https://{name}{target}")
    } else {
        format!("https://{name}:{port}{target}")
    };
    Response::empty(StatusCode::PERMANENT_REDIRECT).with_header(header::LOCATION, location)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler;

    /// A bad address to `bind` says what was being done and what is
    /// expected (the standard library's message alone named neither).
    #[test]
    fn a_bad_address_to_bind_says_what_is_expected() {
        // None of these is looked up (no port, or a bad one): no DNS in a test.
        for bad in ["abc", "127.0.0.1", "[::1]:80x", ""] {
            let err = App::new().bind(bad).map(|_| ()).unwrap_err().to_string();
            assert!(
                err.contains("cannot resolve the address to bind") && err.contains("HOST:PORT"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "App::redirect_https(0)")]
    fn a_redirect_to_port_zero_is_refused() {
        let _ = App::new().redirect_https(0);
    }

    #[test]
    #[should_panic(expected = "WsConfig::protocols: \"a b\" is not a token")]
    fn a_subprotocol_that_is_not_a_token_is_refused() {
        let _ = WsConfig::default().protocols(["chat", "a b"]);
    }

    #[test]
    #[should_panic(expected = "WsConfig::protocols: \"\" is not a token")]
    fn an_empty_subprotocol_is_refused() {
        let _ = WsConfig::default().protocols([""]);
    }

    #[test]
    #[should_panic(expected = "App::every: the period must not be zero")]
    fn a_periodic_task_needs_a_period() {
        let _ = App::new().every(Duration::ZERO, |_| {});
    }

    /// Behind a trusted proxy that ends TLS the socket is plain for every
    /// request: the proxy's word decides, or every request would loop.
    #[test]
    fn an_https_redirect_believes_a_trusted_proxy() {
        let app = App::new()
            .get("/", |_: &Request| "hi")
            .trusted_proxies(["127.0.0.1"])
            .redirect_https(443);
        let ask = |peer: [u8; 4], proto: &str| {
            let mut req = Request::builder(Method::GET, "/")
                .header("host", "example.com")
                .header("x-forwarded-proto", proto)
                .peer((peer, 5000).into())
                .finish();
            app.handle(&mut req).status().as_u16()
        };
        assert_eq!(ask([127, 0, 0, 1], "https"), 200);
        assert_eq!(ask([127, 0, 0, 1], "http"), 308);
        // Anybody else's word is not taken.
        assert_eq!(ask([192, 0, 2, 1], "https"), 308);
    }

    #[test]
    fn an_https_redirect_percent_encodes_raw_bytes() {
        let app = App::new().redirect_https(443);
        let mut req = Request::builder(Method::GET, "/\u{e9}?q=\u{fc}")
            .header("host", "example.com")
            .finish();
        let res = app.handle(&mut req);
        assert_eq!(
            res.headers()["location"],
            "https://example.com/%C3%A9?q=%C3%BC"
        );
    }

    /// A directory's trailing-slash redirect, on the server's path (the
    /// query comes apart from the path there).
    #[test]
    fn a_static_redirect_percent_encodes_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("\u{e9}")).unwrap();
        let app = App::new().static_dir("/static", dir.path());
        let mut req = Request::builder(Method::GET, "/static/\u{e9}?q=\u{fc}").finish();
        let res = app.handle(&mut req);
        assert_eq!(res.status(), 301);
        assert_eq!(res.headers()["location"], "/static/%C3%A9/?q=%C3%BC");
    }

    #[test]
    fn the_prefix_is_skipped_by_segments() {
        assert_eq!(after_prefix("/static/a.txt", "/static"), "/a.txt");
        assert_eq!(after_prefix("/static", "/static"), "");
        assert_eq!(after_prefix("/stati%63/a.txt", "/static"), "/a.txt");
        assert_eq!(after_prefix("/%73tatic/ic/a.txt", "/static"), "/ic/a.txt");
        assert_eq!(after_prefix("/x/%79/z", "/x/y"), "/z");
        assert_eq!(after_prefix("/x/%79", "/x/y"), "");
        assert_eq!(after_prefix("/files", ""), "/files");
    }

    fn get(app: &App, method: Method, path: &str) -> Response {
        let mut req = Request::builder(method, path).finish();
        app.handle(&mut req)
    }

    #[test]
    fn routing_404_405_and_options() {
        let app = App::new()
            .get("/a", |_: &Request| "a")
            .post("/a", |_: &Request| "posted");
        assert_eq!(get(&app, Method::GET, "/a").body_bytes().unwrap(), "a");
        assert_eq!(get(&app, Method::GET, "/b").status(), 404);
        let res = get(&app, Method::DELETE, "/a");
        assert_eq!(res.status(), 405);
        assert_eq!(res.headers()["allow"], "GET, HEAD, POST, OPTIONS");
        let res = get(&app, Method::OPTIONS, "/a");
        assert_eq!(res.status(), 204);
        assert_eq!(res.headers()["allow"], "GET, HEAD, POST, OPTIONS");
    }

    #[test]
    fn hooks_in_order_and_short_circuit() {
        let app = App::new()
            .get("/p/:id", |req: &Request| {
                format!(
                    "{}:{}",
                    req.param("id").unwrap(),
                    req.extensions().get::<u8>().unwrap()
                )
            })
            .before(|req: &mut Request| {
                req.extensions_mut().insert(7u8);
                None
            })
            .before(|req: &mut Request| {
                (req.param("id") == Some("stop")).then(|| Response::text("stopped"))
            })
            .after(|_: &Request, res: Response| res.with_header("x-a", "1"))
            .after(|_: &Request, res: Response| res.with_header("x-b", "2"));
        let res = get(&app, Method::GET, "/p/9");
        assert_eq!(res.body_bytes().unwrap(), "9:7");
        assert_eq!(res.headers()["x-a"], "1");
        let res = get(&app, Method::GET, "/p/stop");
        assert_eq!(res.body_bytes().unwrap(), "stopped");
        assert_eq!(res.headers()["x-b"], "2");
        assert_eq!(get(&app, Method::GET, "/none").headers()["x-a"], "1");
    }

    #[test]
    fn panics_become_500_through_the_error_handler() {
        handler::install_panic_hook();
        let app = App::new()
            .get("/boom", |_: &Request| -> Response { panic!("boom") })
            .errors(|req, status| {
                Response::text(format!(
                    "custom {} {}",
                    status.as_u16(),
                    req.map_or("-", |r| r.path())
                ))
            });
        let res = get(&app, Method::GET, "/boom");
        assert_eq!(res.status(), 500);
        assert_eq!(res.body_bytes().unwrap(), "custom 500 /boom");
        assert_eq!(
            get(&app, Method::GET, "/x").body_bytes().unwrap(),
            "custom 404 /x"
        );
    }

    #[test]
    #[should_panic(expected = "must start with '/'")]
    fn bad_pattern_panics_at_registration() {
        let _ = App::new().get("nope", |_: &Request| "x");
    }
}
