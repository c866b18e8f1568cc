//! Route groups: routes that share a path prefix, hooks, a body limit and
//! a fallback, registered on an [`App`](crate::App) with
//! [`nest`](crate::App::nest) or [`merge`](crate::App::merge).

use std::fmt;
use std::panic::Location;
use std::rc::Rc;
use std::time::Duration;

use http::Method;

use crate::handler::{After, Before, Handler};
use crate::http::{IntoResponse, Request, Response};
use crate::router::{Pattern, Router};
use crate::service::{BodyLimits, Layer, Route, RouteKind, Service, WsRoute};
use crate::ws::{WebSocket, WsConfig, WsEvent, WsHandler};

/// A set of routes with their own before/after hooks, body limit and
/// fallback, to be mounted under a prefix with [`App::nest`](crate::App::nest) or as they
/// are with [`App::merge`](crate::App::merge) (which is how an app is split across modules,
/// and how one route gets its own [`max_body`](Group::max_body)).
///
/// - Routes are written relative to the group (`/todos` nested at `/api`
///   answers `/api/todos`; `/` answers `/api` itself).
/// - [`before`](Group::before) hooks run after the app's, only for the
///   group's routes and fallback, and the `405` (or the `204` to
///   `OPTIONS`) on a path the group's routes take with other methods, so
///   an unauthenticated client learns no methods; [`after`](Group::after) hooks run
///   before the app's. A group nested in a group runs its parent's hooks
///   around its own.
/// - [`max_body`](Group::max_body) replaces
///   [`Limits::max_body`](crate::Limits::max_body) for the group's routes,
///   decided once the request head is read: a body over it is refused
///   with `413` before any of it is read, and so is a body nobody is
///   allowed to send because a before-hook refused the request (its answer
///   goes out at once, `Expect: 100-continue` is never confirmed).
/// - [`body_timeout`](Group::body_timeout) replaces
///   [`Limits::body_timeout`](crate::Limits::body_timeout) the same way,
///   so an upload route can take longer than the rest.
/// - [`ws`](Group::ws) routes WebSocket upgrades under the prefix; the
///   group's before-hooks run on the upgrade request, so the group's
///   authentication covers its WebSockets too.
/// - [`ws_config`](Group::ws_config) replaces the app's
///   [`WsConfig`] for the group's WebSocket routes.
/// - [`fallback`](Group::fallback) answers, for every method, the paths
///   under the prefix that no route matches, ahead of wildcard routes and
///   static mounts registered with a shorter prefix (a static directory at
///   `/`, say), but after those at least as deep.
///
/// Registering a bad pattern, or a route that an earlier one of the same
/// group would always take first, panics at that line; a conflict that
/// only appears once the group is nested panics at the `nest` or `merge`
/// line, naming the group route's line.
///
/// ```
/// use tine::{App, Group, Request, Response, StatusCode};
///
/// let api = Group::new()
///     .before(|req: &mut Request| {
///         (req.header("x-api-key") != Some("secret"))
///             .then(|| Response::error(StatusCode::UNAUTHORIZED))
///     })
///     .get("/todos", |_: &Request| "[]")
///     .fallback(|_: &Request| Response::json(&"no such endpoint").with_status(StatusCode::NOT_FOUND));
/// let uploads = Group::new()
///     .max_body(100 << 20)
///     .post("/upload", |req: &Request| format!("{} bytes", req.body_len()));
/// let app = App::new().nest("/api", api).merge(uploads);
///
/// let mut req = tine::Request::builder(tine::Method::GET, "/api/todos").finish();
/// assert_eq!(app.handle(&mut req).status(), StatusCode::UNAUTHORIZED);
/// ```
#[derive(Default)]
pub struct Group {
    entries: Vec<Entry>,
    before: Vec<Before>,
    after: Vec<After>,
    max_body: Option<usize>,
    body_timeout: Option<Duration>,
    ws: Option<Rc<WsConfig>>,
    fallback: Option<(Handler, &'static Location<'static>)>,
    /// The group's own routes, relative, to refuse conflicts among them
    /// at the line that adds them.
    check: Router<()>,
    /// The same for its WebSocket routes.
    ws_check: Router<()>,
}

enum Entry {
    Route {
        method: Option<Method>,
        pattern: String,
        handler: Handler,
        at: &'static Location<'static>,
    },
    Ws {
        pattern: String,
        handler: WsHandler,
        at: &'static Location<'static>,
    },
    Nest {
        prefix: String,
        group: Box<Group>,
        at: &'static Location<'static>,
    },
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("entries", &self.entries.len())
            .field("before", &self.before.len())
            .field("after", &self.after.len())
            .field("max_body", &self.max_body)
            .field("body_timeout", &self.body_timeout)
            .field("ws_config", &self.ws)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

use crate::app::method_fns;

impl Group {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    method_fns! {
        /// Routes `GET` (and `HEAD`) requests.
        get => GET;
        /// Routes `POST` requests.
        post => POST;
        /// Routes `PUT` requests.
        put => PUT;
        /// Routes `DELETE` requests.
        delete => DELETE;
        /// Routes `PATCH` requests.
        patch => PATCH;
        /// Routes `HEAD` requests explicitly.
        head => HEAD;
        /// Routes `OPTIONS` requests.
        options => OPTIONS;
    }

    /// Routes `method` on `pattern` (relative to the group); see
    /// [`App::route`](crate::App::route) for patterns and precedence.
    #[track_caller]
    pub fn route<H, R>(self, method: Method, pattern: &str, handler: H) -> Self
    where
        H: Fn(&Request) -> R + 'static,
        R: IntoResponse,
    {
        self.add(Some(method), pattern, handler)
    }

    /// Routes every method on `pattern`.
    #[track_caller]
    pub fn any<H, R>(self, pattern: &str, handler: H) -> Self
    where
        H: Fn(&Request) -> R + 'static,
        R: IntoResponse,
    {
        self.add(None, pattern, handler)
    }

    #[track_caller]
    fn add<H, R>(mut self, method: Option<Method>, pattern: &str, handler: H) -> Self
    where
        H: Fn(&Request) -> R + 'static,
        R: IntoResponse,
    {
        let parsed = match Pattern::parse(pattern) {
            Ok(p) => p,
            Err(msg) => crate::service::registration_panic(&msg),
        };
        if let Err(msg) = self.check.add(method.clone(), parsed, ()) {
            crate::service::registration_panic(&msg);
        }
        self.entries.push(Entry::Route {
            method,
            pattern: pattern.to_string(),
            handler: Box::new(move |req| handler(req).into_response()),
            at: Location::caller(),
        });
        self
    }

    /// Routes WebSocket upgrade requests on `pattern` (relative to the
    /// group) to `handler`, as [`App::ws`](crate::App::ws) does, with the
    /// group's before-hooks (inside the app's) on the upgrade request: a
    /// hook's answer refuses the handshake. A refused or bad handshake's
    /// answer goes through the group's after-hooks too.
    ///
    /// ```
    /// use tine::{App, Group, Request, Response, StatusCode, WebSocket, WsEvent};
    ///
    /// let live = Group::new()
    ///     .before(|req: &mut Request| {
    ///         req.cookie("session").is_none().then(|| Response::error(StatusCode::UNAUTHORIZED))
    ///     })
    ///     .ws("/feed", |ws: &mut WebSocket, ev: WsEvent| {
    ///         if ev == WsEvent::Open {
    ///             ws.subscribe("feed");
    ///         }
    ///     });
    /// let client = tine::test::TestClient::new(App::new().nest("/live", live));
    /// assert_eq!(client.ws("/live/feed").unwrap_err().status(), StatusCode::UNAUTHORIZED);
    /// ```
    #[track_caller]
    pub fn ws<F>(mut self, pattern: &str, handler: F) -> Self
    where
        F: Fn(&mut WebSocket<'_>, WsEvent) + 'static,
    {
        let parsed = match Pattern::parse(pattern) {
            Ok(p) => p,
            Err(msg) => crate::service::registration_panic(&msg),
        };
        if let Err(msg) = self.ws_check.add(Some(Method::GET), parsed, ()) {
            crate::service::registration_panic(&msg);
        }
        self.entries.push(Entry::Ws {
            pattern: pattern.to_string(),
            handler: Rc::new(handler),
            at: Location::caller(),
        });
        self
    }

    /// Nests `group` under `prefix` inside this group (its hooks run
    /// inside this group's).
    #[track_caller]
    pub fn nest(mut self, prefix: &str, group: Group) -> Self {
        let prefix = checked_prefix(prefix);
        self.entries.push(Entry::Nest {
            prefix,
            group: Box::new(group),
            at: Location::caller(),
        });
        self
    }

    /// Adds a before-hook for the group's routes (after the app's
    /// hooks). See [`App::before`](crate::App::before).
    pub fn before<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut Request) -> Option<Response> + 'static,
    {
        self.before.push(Box::new(hook));
        self
    }

    /// Adds an after-hook for the group's answers (before the app's).
    /// See [`App::after`](crate::App::after).
    pub fn after<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Request, Response) -> Response + 'static,
    {
        self.after.push(Box::new(hook));
        self
    }

    /// Compresses the group's answers, as
    /// [`App::compress`](crate::App::compress) does the app's: an API can
    /// compress its JSON while the rest of the app is left alone (or
    /// compressed with other settings). It is one of the group's
    /// after-hooks, run where it is registered among them; an answer it
    /// compressed is not compressed again by the app's.
    ///
    /// ```
    /// use tine::{App, Compression, Group, Request, Response};
    /// let api = Group::new()
    ///     .get("/report", |_: &Request| Response::json(&vec!["row"; 500]))
    ///     .compress(Compression::new());
    /// let app = App::new().nest("/api", api);
    /// ```
    pub fn compress(self, compression: crate::Compression) -> Self {
        self.after(compression.into_hook())
    }

    /// The largest request body the group's routes accept, in bytes,
    /// instead of [`Limits::max_body`](crate::Limits::max_body) (larger
    /// or smaller). Checked when the head is read: a `Content-Length`
    /// over it is answered `413` at once, without reading the body; a
    /// chunked body is cut off with `413` when it grows past it. Bodies
    /// past [`Limits::body_buffer`](crate::Limits::body_buffer) are
    /// spilled to a temporary file rather than held in memory.
    ///
    /// ```
    /// let uploads = tine::Group::new().max_body(100 << 20);
    /// ```
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// How long the group's routes give a request's whole body to arrive,
    /// instead of [`Limits::body_timeout`](crate::Limits::body_timeout)
    /// (longer or shorter): an upload route that takes 100 MiB needs more
    /// than the minute that keeps slow bodies off the rest of the app.
    /// Past it the answer is `408` and the connection closes. The longest
    /// pause inside a body stays [`Limits::idle_timeout`](crate::Limits::idle_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// let uploads = tine::Group::new()
    ///     .max_body(100 << 20)
    ///     .body_timeout(Duration::from_secs(600));
    /// ```
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = Some(timeout);
        self
    }

    /// The WebSocket settings of the group's [`ws`](Group::ws) routes,
    /// instead of the app's [`App::ws_config`](crate::App::ws_config)
    /// (all of them: start from [`WsConfig::default`], not from the
    /// app's): a chat socket can take small messages and ping often
    /// while a file-transfer socket takes 64 MiB messages and more time
    /// for each. Groups nested in this one use these settings unless
    /// they set their own. The subprotocols the handshake may select are
    /// these settings' [`protocols`](WsConfig::protocols) too. Messages
    /// [published](crate::publish) between workers may be as large as the
    /// largest [`max_message`](WsConfig::max_message) (or body limit) any
    /// group or the app sets.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tine::{App, Group, WebSocket, WsConfig, WsEvent};
    /// let transfers = Group::new()
    ///     .ws_config(
    ///         WsConfig::default()
    ///             .max_message(64 << 20)
    ///             .message_timeout(Duration::from_secs(600))
    ///             .protocols(["transfer.v1"]),
    ///     )
    ///     .ws("/upload", |ws: &mut WebSocket, ev: WsEvent| {
    ///         if let WsEvent::Binary(file) = ev {
    ///             ws.send_text(format!("{} bytes", file.len()));
    ///         }
    ///     });
    /// let app = App::new()
    ///     .ws_config(WsConfig::default().max_message(64 * 1024))
    ///     .nest("/files", transfers);
    ///
    /// let client = tine::test::TestClient::new(app);
    /// let mut ws = client.ws("/files/upload").unwrap();
    /// ws.send_binary(vec![0u8; 1 << 20]);
    /// assert_eq!(ws.recv_text().as_deref(), Some("1048576 bytes"));
    /// ```
    pub fn ws_config(mut self, config: WsConfig) -> Self {
        self.ws = Some(Rc::new(config));
        self
    }

    /// The largest body or message limit the group or a group nested in
    /// it sets (0: none).
    pub(crate) fn largest_limit(&self) -> usize {
        let own = self
            .max_body
            .unwrap_or(0)
            .max(self.ws.as_ref().and_then(|c| c.max_message).unwrap_or(0));
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Nest { group, .. } => Some(group.largest_limit()),
                _ => None,
            })
            .fold(own, usize::max)
    }

    /// Answers every method on the paths under the group's prefix that no
    /// route matches (instead of `404`; paths a route matches with another
    /// method still get `405`). Merged at the top (`App::merge`), it is
    /// the app's fallback.
    #[track_caller]
    pub fn fallback<H, R>(mut self, handler: H) -> Self
    where
        H: Fn(&Request) -> R + 'static,
        R: IntoResponse,
    {
        if self.fallback.is_some() {
            crate::service::registration_panic("this group already has a fallback");
        }
        self.fallback = Some((
            Box::new(move |req| handler(req).into_response()),
            Location::caller(),
        ));
        self
    }

    /// Registers the group's routes under `prefix` (already checked,
    /// without a trailing `/`) in `service`, inside `parent`'s hooks, with
    /// the WebSocket settings of the nearest group around it that has its
    /// own (`inherited`), unless it has its own.
    #[track_caller]
    pub(crate) fn register(
        self,
        service: &mut Service,
        prefix: &str,
        parent: Option<Rc<Layer>>,
        inherited: Option<Rc<WsConfig>>,
    ) {
        let Group {
            entries,
            before,
            after,
            max_body,
            body_timeout,
            ws,
            fallback,
            check: _,
            ws_check: _,
        } = self;
        let ws = ws.or(inherited);
        let body = BodyLimits {
            max: max_body,
            timeout: body_timeout,
        };
        let layer = if before.is_empty() && after.is_empty() && body == BodyLimits::default() {
            parent
        } else {
            Some(Rc::new(Layer {
                before,
                after,
                body,
                parent,
            }))
        };
        for entry in entries {
            match entry {
                Entry::Route {
                    method,
                    pattern,
                    handler,
                    at,
                } => {
                    let full = join(prefix, &pattern);
                    let route = Route {
                        handler,
                        layer: layer.clone(),
                        kind: RouteKind::Plain,
                    };
                    if let Err(msg) = service.try_add_route(method, &full, route) {
                        crate::service::registration_panic(&format!(
                            "{msg}; the group route was added at {at}"
                        ));
                    }
                }
                Entry::Ws {
                    pattern,
                    handler,
                    at,
                } => {
                    let full = join(prefix, &pattern);
                    let route = WsRoute {
                        handler,
                        layer: layer.clone(),
                        config: ws.clone(),
                        reach: 0,
                    };
                    if let Err(msg) = service.try_add_ws_route(&full, route) {
                        crate::service::registration_panic(&format!(
                            "{msg}; the group's WebSocket route was added at {at}"
                        ));
                    }
                }
                Entry::Nest {
                    prefix: inner,
                    group,
                    at,
                } => {
                    let full = format!("{prefix}{inner}");
                    if full.contains('*') {
                        crate::service::registration_panic(&format!(
                            "nest prefix {full:?} (nested at {at}) must not contain '*'"
                        ));
                    }
                    group.register(service, &full, layer.clone(), ws.clone());
                }
            }
        }
        if let Some((handler, at)) = fallback {
            let pattern = if prefix.is_empty() {
                "*".to_string()
            } else {
                format!("{prefix}/*")
            };
            let route = Route {
                handler,
                layer,
                kind: RouteKind::Fallback(0),
            };
            if let Err(msg) = service.try_add_fallback(&pattern, route) {
                crate::service::registration_panic(&format!(
                    "{msg}; the fallback was added at {at}"
                ));
            }
        }
    }
}

/// A nest prefix: `""`/`"/"` (no prefix) or `/segments` without a
/// trailing slash and without `*`.
#[track_caller]
pub(crate) fn checked_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if !trimmed.is_empty() && !trimmed.starts_with('/') {
        crate::service::registration_panic(&format!("nest prefix {prefix:?} must start with '/'"));
    }
    if trimmed.contains('*') {
        crate::service::registration_panic(&format!("nest prefix {prefix:?} must not contain '*'"));
    }
    if let Err(msg) = Pattern::parse(if trimmed.is_empty() { "/" } else { trimmed }) {
        crate::service::registration_panic(&msg);
    }
    trimmed.to_string()
}

/// A group route's pattern under `prefix`: `/api` + `/todos` is
/// `/api/todos`, `/api` + `/` is `/api`, and `*` under `/api` is `/api/*`.
fn join(prefix: &str, pattern: &str) -> String {
    if prefix.is_empty() {
        return pattern.to_string();
    }
    match pattern {
        "*" => format!("{prefix}/*"),
        "/" => prefix.to_string(),
        _ => format!("{prefix}{pattern}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joining_prefixes() {
        assert_eq!(join("/api", "/todos"), "/api/todos");
        assert_eq!(join("/api", "/"), "/api");
        assert_eq!(join("/api", "*"), "/api/*");
        assert_eq!(join("", "/x"), "/x");
        assert_eq!(checked_prefix("/api/"), "/api");
        assert_eq!(checked_prefix("/"), "");
    }

    #[test]
    fn the_largest_limit_counts_nested_groups_and_their_ws_configs() {
        assert_eq!(Group::new().largest_limit(), 0);
        let inner = Group::new()
            .ws_config(WsConfig::default().max_message(5000))
            .nest("/b", Group::new().max_body(300));
        let g = Group::new().max_body(10).nest("/a", inner);
        assert_eq!(g.largest_limit(), 5000);
        assert_eq!(Group::new().max_body(7).largest_limit(), 7);
    }

    #[test]
    #[should_panic(expected = "must start with '/'")]
    fn a_bad_prefix_panics() {
        checked_prefix("api");
    }

    #[test]
    #[should_panic(expected = "conflicting route")]
    fn a_conflict_inside_a_group_panics_at_its_line() {
        let _ = Group::new()
            .get("/a/:x", |_: &Request| "1")
            .get("/a/:y", |_: &Request| "2");
    }
}
