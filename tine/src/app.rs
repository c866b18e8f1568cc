//! The application: routes, hooks and settings, built once, then served.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, StatusCode};

use crate::handler::{self, After, Before, ErrorHandler, Handler};
use crate::http::{Extensions, IntoResponse, Request, Response};
use crate::limits::Limits;
use crate::middleware::Cors;
use crate::router::{Match, Pattern, Router};
use crate::server::Server;
use crate::static_files::{self, Mount, Outcome, StaticConfig};
use crate::ws::{handshake, WebSocket, WsConfig, WsEvent, WsHandler};

/// A per-worker initialisation hook.
pub(crate) type WorkerInit = Box<dyn Fn(&mut Extensions)>;

/// What the server does with a request.
pub(crate) enum Answer {
    /// Send this response.
    Response(Response),
    /// Send this `101` and switch the connection to WebSocket.
    Upgrade(Response, WsHandler),
}

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
    pub(crate) router: Router<Handler>,
    pub(crate) ws_router: Router<WsHandler>,
    pub(crate) ws_config: WsConfig,
    pub(crate) before: Vec<Before>,
    pub(crate) after: Vec<After>,
    pub(crate) error_handler: Option<ErrorHandler>,
    pub(crate) limits: Limits,
    pub(crate) log_requests: bool,
    pub(crate) workers: usize,
    pub(crate) graceful_timeout: Duration,
    pub(crate) join_existing: bool,
    pub(crate) worker_init: Vec<WorkerInit>,
    pub(crate) redis_url: Option<String>,
    /// What the worker-init hooks built, shared by every request.
    pub(crate) state: Rc<Extensions>,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("router", &"..")
            .field("before", &self.before.len())
            .field("after", &self.after.len())
            .field("limits", &self.limits)
            .finish()
    }
}

macro_rules! method_fns {
    ($($(#[$doc:meta])* $name:ident => $method:ident;)*) => {$(
        $(#[$doc])*
        #[track_caller]
        pub fn $name<H, R>(self, pattern: &str, handler: H) -> Self
        where
            H: Fn(&Request) -> R + 'static,
            R: IntoResponse,
        {
            self.route(Method::$method, pattern, handler)
        }
    )*};
}

impl App {
    /// An application with no routes and default [`Limits`].
    pub fn new() -> Self {
        App {
            router: Router::default(),
            ws_router: Router::default(),
            ws_config: WsConfig::default(),
            before: Vec::new(),
            after: Vec::new(),
            error_handler: None,
            limits: Limits::default(),
            log_requests: false,
            workers: 1,
            graceful_timeout: Duration::from_secs(30),
            join_existing: false,
            worker_init: Vec::new(),
            redis_url: None,
            state: Rc::new(Extensions::default()),
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
    /// under `"*"`, and `*` alone matches any path. The first registered
    /// match wins. Panics, pointing at the caller, on a malformed pattern.
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
        let pattern = match Pattern::parse(pattern) {
            Ok(p) => p,
            Err(msg) => panic!("{msg}"),
        };
        self.router.add(
            method,
            pattern,
            Box::new(move |req| handler(req).into_response()),
        );
        self
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
        self.get(&pattern, move |req: &Request| {
            serve_static(&mount, &prefix, req)
        })
    }

    /// Routes WebSocket upgrade requests matching `pattern` (same syntax as
    /// HTTP routes) to `handler`, called once per [`WsEvent`]. Before-hooks
    /// run on the upgrade request (so authentication applies), and the
    /// handler sees its params and extensions through
    /// [`WebSocket::request`]. A bad handshake is answered 400, an
    /// unsupported version 426; a plain request to the path is ordinary
    /// HTTP (404/405 unless an HTTP route matches).
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
        let pattern = match Pattern::parse(pattern) {
            Ok(p) => p,
            Err(msg) => panic!("{msg}"),
        };
        self.ws_router
            .add(Some(Method::GET), pattern, Rc::new(handler));
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
        self.redis_url = Some(url.to_string());
        self
    }

    /// Replaces the WebSocket settings ([`WsConfig`]).
    pub fn ws_config(mut self, config: WsConfig) -> Self {
        self.ws_config = config;
        self
    }

    /// Answers a request, or accepts it as a WebSocket upgrade.
    pub(crate) fn answer(&self, req: &mut Request) -> Answer {
        if !self.ws_router.is_empty() && handshake::is_upgrade(req) {
            if let Match::Found(handler, params) = self.ws_router.find(req.method(), req.raw_path())
            {
                req.set_params(params);
                let handler = handler.clone();
                let mut early = None;
                let ran = handler::catch(|| {
                    for hook in &self.before {
                        if let Some(res) = hook(req) {
                            early = Some(res);
                            return;
                        }
                    }
                });
                if ran.is_none() {
                    return Answer::Response(
                        self.error_response(Some(req), StatusCode::INTERNAL_SERVER_ERROR),
                    );
                }
                let res = match early {
                    Some(res) => res,
                    None => match handshake::accept(req, &self.ws_config.protocols) {
                        Ok(res) => return Answer::Upgrade(res, handler),
                        Err(res) => *res,
                    },
                };
                let page = if res.error_page {
                    self.render_error_page(req, res)
                } else {
                    res
                };
                return Answer::Response(page);
            }
        }
        Answer::Response(self.handle(req))
    }

    /// Adds a before-hook. Hooks run in registration order after routing
    /// (so [`Request::param`] works) and before the handler, also for
    /// requests no route matches. A hook may add
    /// [extensions](Request::extensions_mut) or answer the request itself by
    /// returning `Some(response)`, which skips the later hooks and the
    /// handler (after-hooks still run).
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
        self.before.push(Box::new(hook));
        self
    }

    /// Adds an after-hook, which maps every response the dispatcher
    /// produces (handler answers, early answers of before-hooks, 404, 405,
    /// 500), in registration order.
    ///
    /// ```
    /// use tine::{App, Request, Response};
    /// let app = App::new().after(|_req: &Request, res: Response| res.with_header("x-frame-options", "DENY"));
    /// ```
    pub fn after<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Request, Response) -> Response + 'static,
    {
        self.after.push(Box::new(hook));
        self
    }

    /// Replaces the plain-text error pages. The handler renders every error
    /// status tine generates (400, 404, 405, 408, 413, 431, 500, ...); the
    /// request is `None` when none could be parsed. tine keeps the
    /// status and adds `Allow` to 405s.
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
        self.error_handler = Some(Box::new(handler));
        self
    }

    /// Adds CORS handling: answers preflight requests and adds the
    /// `Access-Control-*` headers to responses. See [`Cors`].
    pub fn cors(self, cors: Cors) -> Self {
        cors.install(self)
    }

    /// Logs one line per request, `METHOD /path STATUS 3ms`, through the
    /// `log` facade (target `tine::access`, level info).
    pub fn log_requests(mut self) -> Self {
        self.log_requests = true;
        self
    }

    /// Serves with `n` worker processes. With `n > 1`, [`serve`](App::serve)
    /// makes the calling process a supervising master that forks `n`
    /// workers, each with its own `SO_REUSEPORT` listener and event loop;
    /// `n <= 1` serves in the calling process, with no fork. The
    /// environment variable `TINE_WORKERS` (a number, or `auto` for the
    /// number of available cores) overrides this at start-up.
    ///
    /// ```
    /// let app = tine::App::new().workers(4);
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// How long the master lets workers drain on a graceful stop (and
    /// retired workers on reload or scale-down) before killing them.
    /// Default 30 s.
    pub fn graceful_timeout(mut self, timeout: Duration) -> Self {
        self.graceful_timeout = timeout;
        self
    }

    /// Joins an existing `SO_REUSEPORT` group on the address on purpose.
    /// By default a master refuses to start when another process already
    /// listens there, rather than silently sharing its traffic.
    pub fn join_existing(mut self, join: bool) -> Self {
        self.join_existing = join;
        self
    }

    /// Runs `init` in each worker process after the fork (and once before
    /// serving in single-process mode), for resources that must not cross a
    /// fork: database connections, thread pools, RNG seeds. What it stores
    /// is reachable from every request with [`Request::state`].
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
        self.worker_init.push(Box::new(init));
        self
    }

    /// Runs the worker-init hooks (in the process that will serve).
    pub(crate) fn init_worker(&mut self) {
        let mut state = Extensions::default();
        for init in &self.worker_init {
            init(&mut state);
        }
        self.state = Rc::new(state);
    }

    /// Replaces the [`Limits`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Binds `addr` and returns the server, ready to [`run`](Server::run).
    /// Use port 0 to let the system pick a free port and read it back with
    /// [`Server::local_addr`].
    pub fn bind(self, addr: impl ToSocketAddrs) -> io::Result<Server> {
        let addr = resolve(addr)?;
        Server::bind(self, addr)
    }

    /// Binds `addr` and serves until SIGINT or SIGTERM, then drains and
    /// returns.
    pub fn serve(self, addr: impl ToSocketAddrs) -> io::Result<()> {
        self.bind(addr)?.run()
    }

    /// Answers one request: routing, hooks, handler, error pages, with
    /// panics turned into 500s. Also usable from tests, without sockets.
    ///
    /// ```
    /// use tine::{App, Method, Request, StatusCode};
    /// let app = App::new().get("/hi", |_req: &Request| "hi");
    /// let mut req = Request::builder(Method::GET, "/nope").finish();
    /// assert_eq!(app.handle(&mut req).status(), StatusCode::NOT_FOUND);
    /// ```
    pub fn handle(&self, req: &mut Request) -> Response {
        let started = self.log_requests.then(Instant::now);
        let response = match handler::catch(|| self.dispatch(req)) {
            Some(res) => res,
            None => self.error_response(Some(req), StatusCode::INTERNAL_SERVER_ERROR),
        };
        if let Some(started) = started {
            log::info!(
                target: "tine::access",
                "{} {} {} {}ms",
                req.method(),
                req.raw_path(),
                response.status().as_u16(),
                started.elapsed().as_millis()
            );
        }
        response
    }

    fn dispatch(&self, req: &mut Request) -> Response {
        let routed = self.router.find(req.method(), req.raw_path());
        let handler = match routed {
            Match::Found(h, params) => {
                req.set_params(params);
                Ok(h)
            }
            Match::MethodNotAllowed(allowed) => Err(Some(allowed)),
            Match::NotFound => Err(None),
        };
        let mut early = None;
        for hook in &self.before {
            if let Some(res) = hook(req) {
                early = Some(res);
                break;
            }
        }
        let mut res = match (early, handler) {
            (Some(res), _) => res,
            (None, Ok(h)) => {
                let res = h(req);
                if res.error_page {
                    self.render_error_page(req, res)
                } else {
                    res
                }
            }
            (None, Err(Some(allowed))) => self.method_not_allowed(req, &allowed),
            (None, Err(None)) => self.error_response(Some(req), StatusCode::NOT_FOUND),
        };
        for hook in &self.after {
            res = hook(req, res);
        }
        res
    }

    /// Renders a handler's [`Response::error`] through the error handler,
    /// keeping the headers it set (such as `Allow`).
    fn render_error_page(&self, req: &Request, res: Response) -> Response {
        let mut page = self.error_response(Some(req), res.status);
        for (name, value) in &res.headers {
            page.headers_mut().append(name, value.clone());
        }
        page
    }

    fn method_not_allowed(&self, req: &Request, allowed: &[Method]) -> Response {
        let list = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let allow = HeaderValue::from_str(&list).unwrap_or(HeaderValue::from_static(""));
        if req.method() == Method::OPTIONS {
            let mut res = Response::empty(StatusCode::NO_CONTENT);
            res.headers_mut().insert(header::ALLOW, allow);
            return res;
        }
        let mut res = self.error_response(Some(req), StatusCode::METHOD_NOT_ALLOWED);
        res.headers_mut().insert(header::ALLOW, allow);
        res
    }

    /// The response for an error status, through the custom error handler
    /// if there is one (a panic in it falls back to the plain page).
    pub(crate) fn error_response(&self, req: Option<&Request>, status: StatusCode) -> Response {
        if let Some(handler) = &self.error_handler {
            if let Some(res) = handler::catch(|| handler(req, status)) {
                return res.with_status(status);
            }
        }
        default_error(status)
    }
}

/// The plain-text page for an error status: `404 Not Found`.
pub(crate) fn default_error(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    Response::text(format!("{} {reason}\n", status.as_u16())).with_status(status)
}

/// Answers a request for a static file under `mount`.
fn serve_static(mount: &Mount, prefix: &str, req: &Request) -> Response {
    let raw = req.raw_path();
    let rel = raw.get(prefix.len()..).unwrap_or("");
    match static_files::serve(mount, req.method(), raw, rel, req.headers()) {
        Outcome::NotFound => Response::error(StatusCode::NOT_FOUND),
        Outcome::MethodNotAllowed => Response::error(StatusCode::METHOD_NOT_ALLOWED)
            .with_header(header::ALLOW, static_files::ALLOW),
        Outcome::Redirect { mut location } => match req.query_string() {
            // The query is only needed here: keep it off the hot path.
            Some(q) => {
                location.push('?');
                location.push_str(q);
                redirect(&location)
            }
            None => redirect(&location),
        },
        Outcome::Respond {
            status,
            headers,
            body,
        } => {
            let mut res = match body {
                Some(b) => Response::from_file(b.file, b.offset, b.len),
                None => Response::empty(status),
            };
            res.status = status;
            res.headers = headers;
            res
        }
        Outcome::Error(e) => {
            log::error!("static file {raw}: {e}");
            Response::error(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => Response::empty(StatusCode::MOVED_PERMANENTLY).with_header(header::LOCATION, v),
        Err(_) => Response::error(StatusCode::NOT_FOUND),
    }
}

fn resolve(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(res.headers()["allow"], "GET, HEAD, POST");
        let res = get(&app, Method::OPTIONS, "/a");
        assert_eq!(res.status(), 204);
        assert_eq!(res.headers()["allow"], "GET, HEAD, POST");
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
