//! The request-to-answer path: one [`Service`] turns every request the
//! server reads into what the connection sends, whether it is routed to a
//! handler, a static file mount or a WebSocket route, or refused by tine.
//!
//! For a request that was read whole, [`Service::answer`] runs, inside the
//! panic boundary:
//!
//! 1. routing (a WebSocket upgrade request to the WebSocket routes, every
//!    other request to the HTTP routes);
//! 2. the before-hooks, in order, until one answers: the app's, then
//!    those of the route's group (outermost first);
//! 3. the handler, the WebSocket handshake, or tine's 404 / 405;
//! 4. the error page, if the response is one (the rule below);
//! 5. the after-hooks, in order (on everything but an accepted upgrade):
//!    the group's (innermost first), then the app's;
//! 6. the request log line.
//!
//! A request with a body is first *admitted*, as soon as its head is
//! read and before any of its body is accepted ([`Service::admit`]):
//! routing gives its group's `max_body`, and steps 2 and 4 to 6 run there,
//! so an authentication hook refuses a 100 MiB upload before it is sent
//! (and before `100 Continue`). A request no route takes gets its 404 or
//! 405 there too (after the before-hooks, as in step 3), since its body
//! would only be dropped. A body answered at admission is passed over
//! unread (`Decoder::skip_body`: up to 256 KiB, so that the connection
//! stays open; a chunked body's answer is held until the body's end). Otherwise the connection reads the body within
//! the limit and calls `answer`, which skips the hooks already run. Bodiless
//! requests (the common case) skip admission entirely.
//!
//! A request tine refuses once its request line was read (400, 408, 413,
//! 431, ... found by the decoder or the timers) goes through
//! [`Service::refuse`]: steps 4 to 6 with what could be read of the
//! request (method, target, header lines; no body), so its error page is
//! the app's, and CORS or request-id headers from after-hooks are on it.
//! When not even a request line was read (a bad byte in the method or the
//! target, a bad PROXY protocol header) there is no request to show the
//! hooks: the `errors` handler renders the status with `None`, and no
//! after-hook runs; only step 6 does, so the refusal is still logged
//! (with the client's address, and the raw first line escaped, or `-`),
//! as nginx does, and counted as it is in the metrics.
//!
//! **Which responses the `errors` handler renders.** Error pages: every
//! error tine makes itself (400, 404, 405, 408, 413, 414, 417, 426, 431,
//! 500 after a panic, 501, 505, a static file's 404/405/503), and every
//! response made with [`Response::error`], [`Response::not_found`] or
//! [`Response::bad_request`], whoever returns it: handler, before-hook,
//! static files, on HTTP and WebSocket routes alike. The status and the
//! headers of the response are kept (such as `Allow`). A response built
//! with content of its own (`Response::text(..).with_status(404)`,
//! `(StatusCode, body)`, a bare `StatusCode`, an [`Error`](crate::Error)
//! with its message, JSON body or response of its own) is the app's own
//! answer and is sent as is; an `Error` made from an error page
//! (`Error::from(Response::error(..))`) is still an error page, since
//! errors become responses before this rule looks at them.
//! After-hooks see the rendered page; what they return is not rendered
//! again.
//!
//! The service is built once by [`App`](crate::App) and is immutable while
//! serving; the server holds it and knows nothing of routes or hooks.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::handler::{self, After, Before, ErrorHandler, Handler};
use crate::http::cookies::CookieKeys;
use crate::http::parse::{Seen, SeenHead};
use crate::http::{Extensions, Request, Response};
use crate::router::{Match, Router};
use crate::ws::{handshake, Upgrade, WsConfig, WsHandler};

/// A per-worker initialisation hook.
pub(crate) type WorkerInit = Box<dyn Fn(&mut Extensions)>;

/// A task of [`App::every`](crate::App::every), with its period.
pub(crate) struct Periodic {
    period: Duration,
    task: Box<dyn Fn(&Extensions)>,
}

/// What the server does with a request.
pub(crate) enum Answer {
    /// Send this response.
    Response(Response),
    /// Send this `101` and switch the connection to WebSocket.
    Upgrade(Response, Upgrade),
}

/// What [`Service::admit`] decided for a request whose body is still to
/// come.
pub(crate) enum Admission {
    /// Read the body within these limits (its route group's), then
    /// [`answer`](Service::answer) it.
    Accept(BodyLimits),
    /// A before-hook answered (or panicked), or no route takes the
    /// request (404, 405): send this, without reading the body.
    Answer(Response),
}

/// Where [`Service::route`] sends a request.
enum Routed<'a> {
    /// A WebSocket route, for an upgrade request.
    Ws(&'a WsRoute),
    /// An HTTP route (a handler, a static file mount or a fallback).
    Http(&'a Route),
    /// Routes take the path, none the method; these methods would.
    NotAllowed(Vec<Method>),
    /// `OPTIONS *` (only `OPTIONS` may have this target), which no
    /// catch-all route took: about the server as a whole, answered `204`
    /// (RFC 9110 §9.3.7), at admission too when it has a body.
    Asterisk,
    /// A plain request to a path a WebSocket route takes and no HTTP
    /// route does (a fallback aside): `426` to `GET` and `HEAD` (a proxy
    /// in between that drops `Upgrade` makes these), `405` to other
    /// methods (`204` to `OPTIONS`), through the WebSocket route's
    /// group's hooks.
    UpgradeRequired(&'a WsRoute),
    /// No route takes the path.
    NotFound,
}

/// The body limits of a request's route group; `None` where the group
/// sets none: the server's [`Limits`](crate::Limits) apply.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct BodyLimits {
    /// Instead of [`Limits::max_body`](crate::Limits::max_body).
    pub(crate) max: Option<usize>,
    /// Instead of [`Limits::body_timeout`](crate::Limits::body_timeout).
    pub(crate) timeout: Option<Duration>,
}

/// What a route group adds to its routes: hooks, body limits, and the
/// group it is nested in (see [`Group`](crate::Group)).
#[derive(Default)]
pub(crate) struct Layer {
    pub(crate) before: Vec<Before>,
    pub(crate) after: Vec<After>,
    pub(crate) body: BodyLimits,
    pub(crate) parent: Option<Rc<Layer>>,
}

impl Layer {
    /// The innermost body limits set on the way to this group, each on
    /// its own.
    fn body_limits(&self) -> BodyLimits {
        let outer = match &self.parent {
            Some(parent) => parent.body_limits(),
            None => BodyLimits::default(),
        };
        BodyLimits {
            max: self.body.max.or(outer.max),
            timeout: self.body.timeout.or(outer.timeout),
        }
    }

    /// The before-hooks, outermost group first, until one answers.
    fn before(&self, req: &mut Request) -> Option<Response> {
        if let Some(parent) = &self.parent {
            if let Some(res) = parent.before(req) {
                return Some(res);
            }
        }
        self.before.iter().find_map(|hook| hook(req))
    }

    /// The after-hooks, innermost group first.
    fn after(&self, req: &Request, mut res: Response) -> Response {
        for hook in &self.after {
            res = hook(req, res);
        }
        match &self.parent {
            Some(parent) => parent.after(req, res),
            None => res,
        }
    }
}

/// A routed handler, with the group it was registered in, if any.
pub(crate) struct Route {
    pub(crate) handler: Handler,
    pub(crate) layer: Option<Rc<Layer>>,
    pub(crate) kind: RouteKind,
}

/// What a route is, where that changes how its answers are found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RouteKind {
    /// A handler for its paths.
    Plain,
    /// A static mount, with its depth (segments before its `*`): a path
    /// it has no file for goes to the fallback that matches it, if that
    /// is at least as deep.
    Mount(usize),
    /// A fallback (a group's, or the app's), with its depth: it answers
    /// what no route takes, but a path a WebSocket route at least as deep
    /// takes is taken (`426` to a plain request, as a route taking it with
    /// other methods answers `405`).
    Fallback(usize),
}

impl Route {
    pub(crate) fn plain(handler: Handler) -> Self {
        Route {
            handler,
            layer: None,
            kind: RouteKind::Plain,
        }
    }
}

/// A WebSocket route, with the group it was registered in, if any: the
/// group's before-hooks run on the upgrade request, its after-hooks on a
/// refused handshake's answer.
pub(crate) struct WsRoute {
    pub(crate) handler: WsHandler,
    pub(crate) layer: Option<Rc<Layer>>,
    /// Its group's settings ([`Group::ws_config`](crate::Group::ws_config)),
    /// if the group has its own.
    pub(crate) config: Option<Rc<WsConfig>>,
    /// Its pattern's reach (`Pattern::reach`): set when it is added.
    pub(crate) reach: usize,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Route")
    }
}

/// Routes, hooks and error pages: everything between a decoded request
/// and the response the connection sends. See the module docs.
#[derive(Default)]
pub(crate) struct Service {
    router: Router<Route>,
    ws_router: Router<WsRoute>,
    /// Subprotocols the WebSocket handshake may select.
    ws_protocols: Vec<String>,
    before: Vec<Before>,
    after: Vec<After>,
    error_handler: Option<ErrorHandler>,
    log_requests: bool,
    worker_init: Vec<WorkerInit>,
    /// `App::every`'s tasks, in the order they were added.
    periodic: Vec<Periodic>,
    /// What the worker-init hooks built, shared by every request, with
    /// the cookie keys.
    state: Rc<Extensions>,
    /// Peers whose forwarding headers are believed (`App::trusted_proxies`).
    pub(crate) proxies: crate::proxies::Proxies,
    /// `App::access_log`: a line per request, and request ids.
    pub(crate) access_log: Option<Rc<crate::access_log::AccessLog>>,
    /// Keys for signed and private cookies; kept in `state` too, where
    /// requests find them.
    cookie_keys: Option<CookieKeys>,
}

/// Where in [`Service::answer`] a panic happened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Routing, before-hooks, handler, error page.
    Inner,
    /// The after-hooks.
    After,
}

impl Service {
    /// Adds a route, panicking at the builder's caller on a bad pattern
    /// or a conflicting route.
    #[track_caller]
    pub(crate) fn add_route(&mut self, method: Option<Method>, pattern: &str, route: Route) {
        let result = self.router.add(method, parse_pattern(pattern), route);
        registered(result);
    }

    /// Adds a route, or says why it cannot be (a group checks at its
    /// `nest` line).
    pub(crate) fn try_add_route(
        &mut self,
        method: Option<Method>,
        pattern: &str,
        route: Route,
    ) -> Result<(), String> {
        let pattern = crate::router::Pattern::parse(pattern)?;
        self.router.add(method, pattern, route)
    }

    /// Like [`try_add_route`](Self::try_add_route), for a fallback.
    pub(crate) fn try_add_fallback(
        &mut self,
        pattern: &str,
        mut route: Route,
    ) -> Result<(), String> {
        let pattern = crate::router::Pattern::parse(pattern)?;
        route.kind = RouteKind::Fallback(pattern.depth());
        self.router.add_fallback(pattern, route)
    }

    /// Adds a static mount: see the router's docs for what it answers.
    #[track_caller]
    pub(crate) fn add_mount(&mut self, pattern: &str, handler: Handler) {
        let pattern = parse_pattern(pattern);
        let route = Route {
            kind: RouteKind::Mount(pattern.depth()),
            ..Route::plain(handler)
        };
        let result = self.router.add_mount(pattern, route);
        registered(result);
    }

    #[track_caller]
    pub(crate) fn add_ws_route(&mut self, pattern: &str, handler: WsHandler) {
        let route = WsRoute {
            handler,
            layer: None,
            config: None,
            reach: 0,
        };
        let result = self.try_add_ws_route(pattern, route);
        registered(result);
    }

    /// Like [`try_add_route`](Self::try_add_route), for a WebSocket route.
    pub(crate) fn try_add_ws_route(
        &mut self,
        pattern: &str,
        mut route: WsRoute,
    ) -> Result<(), String> {
        let pattern = crate::router::Pattern::parse(pattern)?;
        route.reach = pattern.reach();
        self.ws_router.add(Some(Method::GET), pattern, route)
    }

    pub(crate) fn set_ws_protocols(&mut self, protocols: Vec<String>) {
        self.ws_protocols = protocols;
    }

    pub(crate) fn add_before(&mut self, hook: Before) {
        self.before.push(hook);
    }

    pub(crate) fn add_after(&mut self, hook: After) {
        self.after.push(hook);
    }

    pub(crate) fn set_error_handler(&mut self, handler: ErrorHandler) {
        self.error_handler = Some(handler);
    }

    pub(crate) fn set_log_requests(&mut self) {
        self.log_requests = true;
    }

    pub(crate) fn add_worker_init(&mut self, init: WorkerInit) {
        self.worker_init.push(init);
    }

    pub(crate) fn add_periodic(&mut self, period: Duration, task: Box<dyn Fn(&Extensions)>) {
        self.periodic.push(Periodic { period, task });
    }

    /// The periodic tasks' periods, in the order they were added.
    pub(crate) fn periods(&self) -> Vec<Duration> {
        self.periodic.iter().map(|p| p.period).collect()
    }

    /// How many periodic tasks there are.
    pub(crate) fn periodic_count(&self) -> usize {
        self.periodic.len()
    }

    /// Runs periodic task `i` with the worker's state, in its panic
    /// boundary: a panic is logged, and the task runs again at its next
    /// time.
    pub(crate) fn run_periodic(&self, i: usize) {
        if let Some(p) = self.periodic.get(i) {
            let _ = handler::catch_in(&handler::PERIODIC, || (p.task)(&self.state));
        }
    }

    /// Changes the cookie keys, and puts them where requests find them.
    pub(crate) fn set_cookie_keys(&mut self, change: impl FnOnce(&mut CookieKeys)) {
        let keys = self.cookie_keys.get_or_insert_with(CookieKeys::default);
        change(keys);
        let keys = keys.clone();
        // While the app is being built the state is this service's alone
        // (the worker-init hooks have not run: it holds only the keys).
        match Rc::get_mut(&mut self.state) {
            Some(state) => {
                state.insert(keys);
            }
            None => {
                let mut state = Extensions::default();
                state.insert(keys);
                self.state = Rc::new(state);
            }
        }
    }

    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.before.len(), self.after.len())
    }

    /// Runs the worker-init hooks (in the process that will serve). A hook
    /// that panics (logged once) is an error: that process must not serve
    /// without the state the hook was to build.
    pub(crate) fn init_worker(&mut self) -> io::Result<()> {
        // This thread's loop will deliver what the hooks publish.
        crate::pubsub::attach();
        let mut state = Extensions::default();
        for init in &self.worker_init {
            if handler::catch_in(&handler::WORKER_INIT, || init(&mut state)).is_none() {
                return Err(io::Error::other(
                    "tine: an on_worker_start hook panicked (see the log); not serving",
                ));
            }
        }
        if let Some(keys) = &self.cookie_keys {
            state.insert(keys.clone());
        }
        self.state = Rc::new(state);
        if let Some(log) = &self.access_log {
            // Now rather than at the first line: a worker keeps writing
            // to this file if it cannot open it again on `SIGUSR1`. A
            // worker that cannot open it at all (its user may not reach a
            // file the master could) does not serve: every line would be
            // lost.
            crate::access_log::open_now(log)
                .map_err(|e| io::Error::new(e.kind(), format!("{e}; not serving")))?;
        }
        Ok(())
    }

    /// Answers a request read whole: a response, or an accepted WebSocket
    /// upgrade. Panics in the app's code become a 500 error page (after
    /// the after-hooks, unless an after-hook was what panicked).
    pub(crate) fn answer(&self, req: &mut Request) -> Answer {
        let mut upgrade = None;
        let mut answer = None;
        self.answer_into(req, &mut upgrade, &mut answer);
        let res = answer.unwrap_or_else(|| default_error(StatusCode::INTERNAL_SERVER_ERROR));
        match upgrade {
            Some(accepted) => Answer::Upgrade(res, accepted),
            None => Answer::Response(res),
        }
    }

    /// [`answer`](Self::answer) for the connection's loop: the response,
    /// put in `answer` (an empty slot of the caller's), and the WebSocket
    /// handler in `upgrade` when it is the `101` of an accepted upgrade.
    ///
    /// The response stays where the handler's answer was first put,
    /// through the hooks, the error rule and the log line, and the
    /// connection encodes it from there: returned through the panic
    /// boundary, then from here, then passed on, it was copied whole at
    /// each step (about 8 instructions a move, callgrind).
    #[inline]
    pub(crate) fn answer_into<'a>(
        &self,
        req: &mut Request,
        upgrade: &mut Option<Upgrade>,
        answer: &'a mut Option<Response>,
    ) -> &'a mut Response {
        req.set_state(self.state.clone());
        // A request admitted before its body (see `admit`) already has
        // its client and request id.
        if !req.hooks_done() {
            self.begin(req);
        }
        let started = (self.log_requests || self.access_log.is_some()).then(Instant::now);
        let mut stage = Stage::Inner;
        let mut layer = None;
        let answered = handler::catch(|| {
            let res = self.inner(req, upgrade, &mut layer, answer);
            if upgrade.is_none() {
                stage = Stage::After;
                self.after_hooks_in(req, res, layer.as_deref());
            }
        });
        if answered.is_none() {
            *upgrade = None;
            let page = self.error_page(Some(req), StatusCode::INTERNAL_SERVER_ERROR);
            *answer = Some(match stage {
                Stage::Inner => self.after_hooks_caught(req, page, layer.as_deref()),
                Stage::After => page,
            });
        }
        // (Set by now: by the handler's side, or by the panic's page.)
        let res = answer.get_or_insert_with(|| default_error(StatusCode::INTERNAL_SERVER_ERROR));
        if !is_final(res.status) && upgrade.is_none() {
            *res = self.not_final(req, res.status);
        }
        self.log(req, res, started);
        res
    }

    /// Decides, once the head of a request with a body is read and before
    /// any of the body is accepted, whether to read it and up to which
    /// size: routes the request (for its group's `max_body`), and runs the
    /// before-hooks (app, then groups), which may answer it at once (an
    /// authentication failure, say), with the after-hooks applied and the
    /// request logged; a request no route takes is answered at once with
    /// its 404 or 405. The hooks do not run again when the whole request
    /// is [`answer`](Self::answer)ed.
    #[cold]
    pub(crate) fn admit(&self, req: &mut Request) -> Admission {
        req.set_state(self.state.clone());
        self.begin(req);
        let started = (self.log_requests || self.access_log.is_some()).then(Instant::now);
        let mut layer: Option<Rc<Layer>> = None;
        let mut stage = Stage::Inner;
        let decided = handler::catch(|| {
            let routed = self.route(req);
            match &routed {
                Routed::Http(route) => layer = self.layer_for(route, req),
                Routed::Ws(route) | Routed::UpgradeRequired(route) => {
                    layer.clone_from(&route.layer)
                }
                Routed::NotAllowed(allowed) => layer = self.layer_of_path(allowed, req),
                _ => {}
            }
            let limit = layer
                .as_ref()
                .map_or_else(BodyLimits::default, |l| l.body_limits());
            let res = match self.before_hooks(req, layer.as_deref()) {
                Some(res) => self.render(req, res),
                None => match routed {
                    Routed::Ws(_) | Routed::Http(_) => return Admission::Accept(limit),
                    Routed::Asterisk => Response::empty(StatusCode::NO_CONTENT),
                    // No route takes it: its body would only be read to
                    // be dropped (after a `100 Continue`, or into a
                    // temporary file), so the answer goes now.
                    Routed::NotAllowed(allowed) => self.method_not_allowed(req, &allowed),
                    Routed::UpgradeRequired(_) => self.upgrade_required(req),
                    Routed::NotFound => self.error_page(Some(req), StatusCode::NOT_FOUND),
                },
            };
            stage = Stage::After;
            Admission::Answer(self.after_hooks(req, res, layer.as_deref()))
        });
        req.set_hooks_done();
        let res = match decided {
            Some(Admission::Accept(limit)) => return Admission::Accept(limit),
            Some(Admission::Answer(res)) => res,
            None => {
                let page = self.error_page(Some(req), StatusCode::INTERNAL_SERVER_ERROR);
                match stage {
                    Stage::Inner => self.after_hooks_caught(req, page, layer.as_deref()),
                    Stage::After => page,
                }
            }
        };
        let mut res = res;
        if !is_final(res.status) {
            res = self.not_final(req, res.status);
        }
        self.log(req, &mut res, started);
        Admission::Answer(res)
    }

    /// The response for a request tine refuses with `status` once its
    /// request line was read (`seen`, from the decoder) or before: the
    /// error page, the after-hooks when there is a request to show them,
    /// and the log line.
    pub(crate) fn refuse(&self, status: StatusCode, seen: Seen, peer: SocketAddr) -> Response {
        let seen = match seen {
            Seen::Head(seen) => seen,
            Seen::Line(line) => return self.refuse_bare(status, Some(&line), peer),
            Seen::Nothing => return self.refuse_bare(status, None, peer),
        };
        let SeenHead {
            method,
            target,
            version,
            headers,
            sent_version,
        } = *seen;
        let mut req =
            Request::from_parts(method, target, version, headers, Default::default(), peer)
                .unwrap_or_else(|req| *req);
        if let (Some(sent), Some(_)) = (sent_version, &self.access_log) {
            req.extensions_mut()
                .insert(crate::access_log::SentVersion(sent));
        }
        self.refuse_request(status, &mut req)
    }

    /// A refusal before any request line could be read (`line`: the raw
    /// first line, if anything came): the error page (rendered with no
    /// request) and the log line; no hooks.
    #[cold]
    fn refuse_bare(&self, status: StatusCode, line: Option<&[u8]>, peer: SocketAddr) -> Response {
        let started = (self.log_requests || self.access_log.is_some()).then(Instant::now);
        let mut res = self.error_page(None, status);
        if let Some(started) = started {
            let took = started.elapsed();
            if self.log_requests {
                log::info!(
                    target: "tine::access",
                    "- {} {} {}ms",
                    line.map_or("-".into(), |l| l.escape_ascii().to_string()),
                    res.status.as_u16(),
                    took.as_millis()
                );
            }
            if let Some(access) = &self.access_log {
                crate::access_log::finish_bare(access, line, peer, &mut res, took);
            }
        }
        res
    }

    /// Like [`refuse`](Self::refuse), for a request that was read whole
    /// but cannot be answered (a path whose escapes are not UTF-8).
    pub(crate) fn refuse_request(&self, status: StatusCode, req: &mut Request) -> Response {
        req.set_state(self.state.clone());
        // A request admitted before its body (see `admit`) already has
        // its client and request id.
        if !req.hooks_done() {
            self.begin(req);
        }
        let started = (self.log_requests || self.access_log.is_some()).then(Instant::now);
        let page = self.error_page(Some(req), status);
        // A request refused once admitted (its body over the route's
        // limit, or too slow) gets its group's after-hooks too.
        let layer = match req.hooks_done() {
            true => self.layer_of(req),
            false => None,
        };
        let mut res = self.after_hooks_caught(req, page, layer.as_deref());
        self.log(req, &mut res, started);
        res
    }

    /// What every request gets before its hooks: the client behind
    /// trusted proxies, and its request id when there is an access log.
    #[inline]
    fn begin(&self, req: &mut Request) {
        if !self.proxies.is_empty() || self.access_log.is_some() {
            self.begin_with(req);
        }
    }

    #[cold]
    fn begin_with(&self, req: &mut Request) {
        self.find_client(req);
        if self.access_log.is_some() {
            crate::access_log::begin(req);
        }
    }

    /// The client behind trusted proxies, for `Request::client_addr`.
    #[inline]
    fn find_client(&self, req: &mut Request) {
        if !self.proxies.is_empty() {
            if let Some(client) = self.proxies.client(req) {
                req.extensions_mut().insert(client);
            }
        }
    }

    /// The group of the route a request goes to.
    #[cold]
    fn layer_of(&self, req: &Request) -> Option<Rc<Layer>> {
        if !self.ws_router.is_empty() && handshake::is_upgrade(req) {
            if let Match::Found(route, _) = self.ws_router.find(req.method(), req.raw_path()) {
                return route.layer.clone();
            }
        }
        match self.router.find(req.method(), req.raw_path()) {
            Match::Found(route, _) => self.layer_for(route, req),
            _ => None,
        }
    }

    /// The group of the routes that take a path with other methods
    /// (`allowed`): a `405`, or the `204` to `OPTIONS`, about a group's
    /// path goes through its hooks, as its routes' answers do (an
    /// unauthenticated client learns no more than `401`). Where routes of
    /// several groups share the path, the first allowed method's decides.
    #[cold]
    fn layer_of_path(&self, allowed: &[Method], req: &Request) -> Option<Rc<Layer>> {
        let method = allowed.first()?;
        match self.router.find(method, req.raw_path()) {
            Match::Found(route, _) => route.layer.clone(),
            _ => None,
        }
    }

    /// The group a request routed to `route` belongs to, for its body
    /// limits and hooks at admission. A static mount belongs to no group,
    /// but what would answer a path it has no file for may (see
    /// [`mount_missed`](Self::mount_missed)): a request with a body is one
    /// a mount never serves (it sends files), so it is admitted as that
    /// answer's, a WebSocket route's `426` or the fallback, with its
    /// group's limits, and its group's before-hooks answer before the body
    /// is sent (they do not run again after it).
    fn layer_for(&self, route: &Route, req: &Request) -> Option<Rc<Layer>> {
        match route.kind {
            RouteKind::Mount(depth) => {
                if let Some(ws) = self.ws_route_of(req).filter(|ws| ws.reach >= depth) {
                    return ws.layer.clone();
                }
                if !self.router.has_fallbacks() {
                    return None;
                }
                self.router
                    .fallback_for(req.raw_path(), depth)
                    .and_then(|(fallback, _)| fallback.layer.clone())
            }
            _ => route.layer.clone(),
        }
    }

    /// The app's before-hooks, then the group's, until one answers.
    fn before_hooks(&self, req: &mut Request, layer: Option<&Layer>) -> Option<Response> {
        for hook in &self.before {
            if let Some(res) = hook(req) {
                return Some(res);
            }
        }
        layer.and_then(|l| l.before(req))
    }

    /// Routing, before-hooks, handler or handshake, error page: the
    /// response put in `answer` (see [`answer_into`](Self::answer_into)).
    fn inner<'a>(
        &self,
        req: &mut Request,
        upgrade: &mut Option<Upgrade>,
        layer: &mut Option<Rc<Layer>>,
        answer: &'a mut Option<Response>,
    ) -> &'a mut Response {
        let routed = self.route(req);
        match &routed {
            Routed::Http(route) if route.layer.is_some() => layer.clone_from(&route.layer),
            Routed::Ws(route) | Routed::UpgradeRequired(route) => layer.clone_from(&route.layer),
            Routed::NotAllowed(allowed) => *layer = self.layer_of_path(allowed, req),
            _ => {}
        }
        // A request admitted before its body was read already went
        // through them (see `admit`).
        if !req.hooks_done() {
            if let Some(res) = self.before_hooks(req, layer.as_deref()) {
                return answer.insert(self.render(req, res));
            }
        }
        let res = match routed {
            Routed::Ws(route) => {
                let protocols = match &route.config {
                    Some(config) => &config.protocols,
                    None => &self.ws_protocols,
                };
                match handshake::accept(req, protocols) {
                    Ok(res) => {
                        *upgrade = Some(Upgrade {
                            handler: route.handler.clone(),
                            config: route.config.clone(),
                        });
                        return answer.insert(res);
                    }
                    Err(res) => answer.insert(*res),
                }
            }
            Routed::Http(Route {
                handler,
                kind: RouteKind::Mount(depth),
                ..
            }) => answer.insert(match handler(req) {
                res if res.error_page && res.status == StatusCode::NOT_FOUND => {
                    self.mount_missed(req, layer, *depth).unwrap_or(res)
                }
                res => res,
            }),
            // The handler's answer goes where it stays.
            Routed::Http(route) => answer.insert((route.handler)(req)),
            Routed::NotAllowed(allowed) => {
                return answer.insert(self.method_not_allowed(req, &allowed))
            }
            Routed::Asterisk => return answer.insert(Response::empty(StatusCode::NO_CONTENT)),
            Routed::UpgradeRequired(_) => return answer.insert(self.upgrade_required(req)),
            Routed::NotFound => {
                return answer.insert(self.error_page(Some(req), StatusCode::NOT_FOUND))
            }
        };
        self.render_in(req, res);
        res
    }

    /// What answers a path a static mount has no file for: a WebSocket
    /// route's `426` for a plain request to it (a static directory at `/`
    /// must not hide that sign of a proxy that drops `Upgrade`), else the
    /// fallback (see [`fall_back`](Self::fall_back)).
    #[cold]
    fn mount_missed(
        &self,
        req: &mut Request,
        layer: &mut Option<Rc<Layer>>,
        depth: usize,
    ) -> Option<Response> {
        if let Some(ws) = self.ws_route_of(req).filter(|ws| ws.reach >= depth) {
            // Its group's before-hooks first, as for any of its answers.
            layer.clone_from(&ws.layer);
            if !req.hooks_done() {
                if let Some(res) = layer.as_deref().and_then(|l| l.before(req)) {
                    return Some(res);
                }
            }
            return Some(self.upgrade_required(req));
        }
        if !self.router.has_fallbacks() {
            return None;
        }
        self.fall_back(req, layer, depth)
    }

    /// A path a static mount (`depth` segments before its `*`) has no
    /// file for: the fallback that matches it answers if it is at least as
    /// deep, as if the mount were not there. So `static_dir("/", ..)` with
    /// `App::fallback` serves files, else the app's page (the
    /// single-page-app pattern), while a missing `/static/app.js` stays a
    /// 404. The fallback's group's before-hooks run first (the mount, the
    /// app's, had none), and its after-hooks later.
    #[cold]
    fn fall_back(
        &self,
        req: &mut Request,
        layer: &mut Option<Rc<Layer>>,
        depth: usize,
    ) -> Option<Response> {
        let (route, params) = self.router.fallback_for(req.raw_path(), depth)?;
        req.set_params(params);
        layer.clone_from(&route.layer);
        // A request with a body ran them at admission (see `layer_for`).
        if !req.hooks_done() {
            if let Some(res) = layer.as_deref().and_then(|l| l.before(req)) {
                return Some(res);
            }
        }
        Some((route.handler)(req))
    }

    /// The WebSocket route on `req`'s path, if any, whatever the method
    /// (its routes take `GET`).
    #[cold]
    fn ws_route_of(&self, req: &Request) -> Option<&WsRoute> {
        if self.ws_router.is_empty() {
            return None;
        }
        match self.ws_router.find(&Method::GET, req.raw_path()) {
            Match::Found(route, _) => Some(route),
            _ => None,
        }
    }

    /// What a plain request to a WebSocket route's path gets: to `GET`
    /// or `HEAD`, `426 Upgrade Required` (RFC 9110 §15.5.22: with the
    /// `Upgrade` it takes), an error page; to another method, the `405`
    /// (or `OPTIONS`'s `204`) of a path routed for `GET`.
    #[cold]
    fn upgrade_required(&self, req: &Request) -> Response {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return self.method_not_allowed(req, &[Method::GET, Method::HEAD]);
        }
        let res = Response::error(StatusCode::UPGRADE_REQUIRED)
            .with_header(header::UPGRADE, HeaderValue::from_static("websocket"));
        self.render(req, res)
    }

    /// On `SIGUSR1`: the access log file is opened again by its path now,
    /// not at the next line (an idle worker would keep the rotated file).
    pub(crate) fn reopen_access_log(&self) {
        crate::access_log::reopen();
        if let Some(log) = &self.access_log {
            // A failure is warned about; lines go to the file still open.
            let _ = crate::access_log::open_now(log);
        }
    }

    /// At the end of the process's loop: what the access log still owes
    /// (see [`access_log::report_lost`](crate::access_log::report_lost)).
    pub(crate) fn report_log_losses(&self) {
        if let Some(log) = &self.access_log {
            crate::access_log::report_lost(log);
        }
    }

    /// Where a request goes, for [`answer`](Self::answer) and
    /// [`admit`](Self::admit) alike: an upgrade request to the WebSocket
    /// route that takes it, any other request to the HTTP routes. Sets the
    /// request's path parameters.
    ///
    /// Always inlined: called from two places, it was otherwise kept as a
    /// call, which cost every request about 20 instructions (callgrind).
    #[inline(always)]
    fn route(&self, req: &mut Request) -> Routed<'_> {
        if !self.ws_router.is_empty() && handshake::is_upgrade(req) {
            if let Match::Found(route, params) = self.ws_router.find(req.method(), req.raw_path()) {
                req.set_params(params);
                return Routed::Ws(route);
            }
        }
        match self.router.find(req.method(), req.raw_path()) {
            Match::Found(route, params) => {
                if let RouteKind::Fallback(depth) = route.kind {
                    if let Some(ws) = self.ws_route_of(req).filter(|ws| ws.reach >= depth) {
                        return Routed::UpgradeRequired(ws);
                    }
                    // `OPTIONS *` is about the server: no fallback's
                    // business (the app's, on the bare `*`, matches it).
                    if req.raw_path() == "*" {
                        return Routed::Asterisk;
                    }
                }
                // Also when empty: `set_params` skips the drop glue's call
                // for an empty list, which dropping it here would not.
                req.set_params(params);
                Routed::Http(route)
            }
            Match::MethodNotAllowed(allowed) => Routed::NotAllowed(allowed),
            Match::NotFound if req.raw_path() == "*" => Routed::Asterisk,
            Match::NotFound => match self.ws_route_of(req) {
                Some(ws) => Routed::UpgradeRequired(ws),
                None => Routed::NotFound,
            },
        }
    }

    /// Renders `res` through the error handler if it is an error page;
    /// answers a conditional or range request for a whole file.
    #[inline]
    fn render(&self, req: &Request, mut res: Response) -> Response {
        self.render_in(req, &mut res);
        res
    }

    /// [`render`](Self::render) where the response lies: one test of both
    /// flags on the way of every answer, and the response not moved (a
    /// response returned from here and there was copied whole to one
    /// place, about 8 instructions a move, callgrind).
    #[inline]
    fn render_in(&self, req: &Request, res: &mut Response) {
        if res.error_page | res.whole_file {
            self.render_cold(req, res);
        }
    }

    #[cold]
    fn render_cold(&self, req: &Request, res: &mut Response) {
        let taken = std::mem::replace(res, Response::empty(StatusCode::OK));
        *res = if taken.error_page {
            self.render_page(req, taken)
        } else {
            crate::static_files::answer_file(req.method(), req.headers(), taken)
        };
    }

    /// Renders an error page through the error handler, keeping its status
    /// and the headers it set (such as `Allow`, `WWW-Authenticate`,
    /// `Set-Cookie`, `Content-Security-Policy`). Where both set a field
    /// the page's stands (two `Content-Type` or `Cache-Control` lines would
    /// be contradictions), and the error's fields about its body
    /// (`Content-Type`, `-Encoding`, `-Language`, `-Length`, `-Location`,
    /// `-Range`, `-Disposition`, validators) go with the body the page
    /// replaces.
    #[cold]
    fn render_page(&self, req: &Request, res: Response) -> Response {
        let mut page = self.error_page(Some(req), res.status);
        let own: Vec<HeaderName> = page.headers().keys().cloned().collect();
        let headers = page.headers_mut();
        res.each_header(|name, value| {
            // (Not every `Content-*`: `Content-Security-Policy` is about
            // the page, and must stay.)
            let about_the_body = [
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                header::CONTENT_LANGUAGE,
                header::CONTENT_LENGTH,
                header::CONTENT_LOCATION,
                header::CONTENT_RANGE,
                header::CONTENT_DISPOSITION,
                header::ETAG,
                header::LAST_MODIFIED,
            ]
            .contains(name);
            let page_has_it = *name != header::SET_COOKIE && own.contains(name);
            if !about_the_body && !page_has_it {
                headers.append(name, value.clone());
            }
        });
        page
    }

    /// The group's after-hooks (innermost group first), then the app's.
    /// An error page one of them returns is rendered like any other (the
    /// hooks do not run again on it).
    fn after_hooks(&self, req: &Request, mut res: Response, layer: Option<&Layer>) -> Response {
        self.after_hooks_in(req, &mut res, layer);
        res
    }

    /// [`after_hooks`](Self::after_hooks) where the response lies.
    /// Inlined: on every answer's way, and most have no hook to run (as a
    /// call it cost about 35 instructions a request, callgrind); the
    /// hooks, when there are any, run in a call of their own.
    #[inline]
    fn after_hooks_in(&self, req: &Request, res: &mut Response, layer: Option<&Layer>) {
        if layer.is_some() || !self.after.is_empty() {
            self.run_after_hooks(req, res, layer);
        }
        self.render_in(req, res);
    }

    #[inline(never)]
    fn run_after_hooks(&self, req: &Request, res: &mut Response, layer: Option<&Layer>) {
        // (A hook that panics leaves this stand-in, which the panic's
        // error page replaces.)
        let mut taken = std::mem::replace(res, Response::empty(StatusCode::OK));
        if let Some(layer) = layer {
            taken = layer.after(req, taken);
        }
        for hook in &self.after {
            taken = hook(req, taken);
        }
        *res = taken;
    }

    /// The after-hooks in their own panic boundary: if one panics, the
    /// answer is a 500 error page (the app's `errors` handler renders it),
    /// which no after-hook sees.
    fn after_hooks_caught(&self, req: &Request, res: Response, layer: Option<&Layer>) -> Response {
        if self.after.is_empty() && layer.is_none() {
            return res;
        }
        handler::catch(|| self.after_hooks(req, res, layer))
            .unwrap_or_else(|| default_error(StatusCode::INTERNAL_SERVER_ERROR))
    }

    fn method_not_allowed(&self, req: &Request, allowed: &[Method]) -> Response {
        // `OPTIONS` is answered on every routed path (the 204 below), so
        // `Allow` lists it too (RFC 9110 §10.2.1: the methods the target
        // resource supports).
        let options = (!allowed.contains(&Method::OPTIONS)).then_some("OPTIONS");
        let list = allowed
            .iter()
            .map(Method::as_str)
            .chain(options)
            .collect::<Vec<_>>()
            .join(", ");
        let allow = HeaderValue::from_str(&list).unwrap_or(HeaderValue::from_static(""));
        if req.method() == Method::OPTIONS {
            let mut res = Response::empty(StatusCode::NO_CONTENT);
            res.headers_mut().insert(header::ALLOW, allow);
            return res;
        }
        let mut res = self.error_page(Some(req), StatusCode::METHOD_NOT_ALLOWED);
        res.headers_mut().insert(header::ALLOW, allow);
        res
    }

    /// The page for an error status, through the custom error handler if
    /// there is one (a panic in it falls back to the plain page).
    fn error_page(&self, req: Option<&Request>, status: StatusCode) -> Response {
        if let Some(handler) = &self.error_handler {
            if let Some(mut res) = handler::catch_in(&handler::ERROR_PAGE, || handler(req, status))
            {
                // The page is rendered: were it built with
                // `Response::error`, it is not rendered again.
                res.error_page = false;
                return res.with_status(status);
            }
        }
        default_error(status)
    }

    /// What the app's answer with `status`, which no final response may
    /// have, becomes: a `500`, logged. A `1xx` sent as the answer would be
    /// taken for an interim response, and the next request's answer for
    /// this one's (RFC 9110 §15.2; a `101` belongs to an accepted upgrade
    /// only); codes past 599 have no meaning (§15). hyper refuses them
    /// the same way.
    #[cold]
    fn not_final(&self, req: &Request, status: StatusCode) -> Response {
        log::error!(
            "{} {}: the app answered {}, which is not a final status; answering 500",
            req.method(),
            req.raw_path().escape_debug(),
            status.as_u16()
        );
        self.error_page(Some(req), StatusCode::INTERNAL_SERVER_ERROR)
    }

    #[inline]
    fn log(&self, req: &Request, res: &mut Response, started: Option<Instant>) {
        if let Some(started) = started {
            self.log_with(req, res, started);
        }
    }

    #[cold]
    fn log_with(&self, req: &Request, res: &mut Response, started: Instant) {
        let took = started.elapsed();
        if self.log_requests {
            log::info!(
                target: "tine::access",
                "{} {} {} {}ms",
                req.method(),
                req.raw_path(),
                res.status.as_u16(),
                took.as_millis()
            );
        }
        if let Some(access) = &self.access_log {
            crate::access_log::finish(access, req, res, took);
        }
    }
}

/// Parses a route pattern, panicking (at the builder's caller) on a
/// malformed one.
#[track_caller]
fn parse_pattern(pattern: &str) -> crate::router::Pattern {
    match crate::router::Pattern::parse(pattern) {
        Ok(p) => p,
        Err(msg) => registration_panic(&msg),
    }
}

/// Panics (at the builder's caller) if a route was refused.
#[track_caller]
fn registered(result: Result<(), String>) {
    if let Err(msg) = result {
        registration_panic(&msg)
    }
}

/// A registration mistake: the panic reports the app's line (every builder
/// method on the way is `#[track_caller]`), and the message names it too,
/// for logs that show only messages.
#[cold]
#[track_caller]
pub(crate) fn registration_panic(msg: &str) -> ! {
    panic!("{msg} (at {})", std::panic::Location::caller())
}

/// The plain-text page for an error status: `404 Not Found`.
/// Whether a response may carry `status` as its final one: 200 to 599
/// (`101` is an accepted upgrade's, which does not come this way).
#[inline]
fn is_final(status: StatusCode) -> bool {
    (200..600).contains(&status.as_u16())
}

pub(crate) fn default_error(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    Response::text(format!("{} {reason}\n", status.as_u16())).with_status(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        let mut s = Service::default();
        s.add_route(
            Some(Method::GET),
            "/a",
            Route::plain(Box::new(|_: &Request| Response::text("a"))),
        );
        s.add_before(Box::new(|req: &mut Request| {
            (req.path() == "/deny").then(|| Response::error(StatusCode::FORBIDDEN))
        }));
        s.add_after(Box::new(|req: &Request, res: Response| {
            if req.path() == "/after-panics" {
                panic!("after-hook test panic");
            }
            res.with_header("x-after", "1")
        }));
        s.set_error_handler(Box::new(|req: Option<&Request>, status: StatusCode| {
            Response::text(format!("page {} {}", status.as_u16(), req.is_some()))
        }));
        s
    }

    fn answer(s: &Service, path: &str) -> Response {
        let mut req = Request::builder(Method::GET, path).finish();
        match s.answer(&mut req) {
            Answer::Response(res) => res,
            Answer::Upgrade(..) => panic!("not an upgrade"),
        }
    }

    fn fields(res: &Response, name: &str) -> Vec<String> {
        res.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// A rendered page keeps the error's own fields (`Set-Cookie`,
    /// `WWW-Authenticate`) but not those about the body it replaces, and
    /// the page's stand where both set one: one `Content-Type`.
    #[test]
    fn a_rendered_page_keeps_the_errors_fields_but_not_its_body_type() {
        let app = crate::App::new()
            .get("/nf", |_: &Request| {
                Response::not_found()
                    .with_header("set-cookie", "a=1")
                    .with_header("cache-control", "no-store")
                    .with_header("www-authenticate", "Basic")
                    .with_header("content-security-policy", "default-src 'none'")
            })
            .get("/problem", |_: &Request| {
                Response::error(StatusCode::GONE)
                    .with_header("content-type", "application/problem+json")
            })
            .errors(|_, status| {
                Response::html(format!("<h1>{status}</h1>"))
                    .with_header("cache-control", "max-age=60")
                    .with_header("set-cookie", "b=2")
            });
        let get = |path: &str| app.handle(&mut Request::builder(Method::GET, path).finish());
        let res = get("/nf");
        assert_eq!(res.status(), 404);
        assert_eq!(fields(&res, "content-type"), ["text/html; charset=utf-8"]);
        assert_eq!(fields(&res, "cache-control"), ["max-age=60"]);
        assert_eq!(fields(&res, "set-cookie"), ["b=2", "a=1"]);
        assert_eq!(fields(&res, "www-authenticate"), ["Basic"]);
        assert_eq!(
            fields(&res, "content-security-policy"),
            ["default-src 'none'"]
        );
        let res = get("/problem");
        assert_eq!(res.status(), 410);
        assert_eq!(fields(&res, "content-type"), ["text/html; charset=utf-8"]);

        // Without an `errors` handler, the default page's one type.
        let app = crate::App::new().get("/nf", |_: &Request| Response::not_found());
        let res = app.handle(&mut Request::builder(Method::GET, "/nf").finish());
        assert_eq!(fields(&res, "content-type"), ["text/plain; charset=utf-8"]);
    }

    /// `Response::json` that cannot serialize, and an after-hook's
    /// `Response::error`, are error pages like any other.
    #[test]
    fn failed_json_and_after_hook_errors_are_rendered() {
        let app = crate::App::new()
            .get("/json", |_: &Request| {
                let map: std::collections::HashMap<(i32, i32), &str> = [((1, 2), "x")].into();
                Response::json(&map)
            })
            .get("/late", |_: &Request| "fine")
            .after(|req: &Request, res: Response| match req.path() {
                "/late" => Response::error(StatusCode::FORBIDDEN),
                _ => res,
            })
            .errors(|_, status| Response::text(format!("page {}", status.as_u16())));
        for (path, status) in [("/json", 500), ("/late", 403)] {
            let res = app.handle(&mut Request::builder(Method::GET, path).finish());
            assert_eq!(res.status(), status, "{path}");
            assert_eq!(
                res.body_bytes().unwrap(),
                format!("page {status}"),
                "{path}"
            );
        }
    }

    #[test]
    fn before_hook_error_pages_are_rendered_and_hooked() {
        let s = service();
        let res = answer(&s, "/deny");
        assert_eq!(res.status(), 403);
        assert_eq!(res.body_bytes().unwrap(), "page 403 true");
        assert_eq!(res.headers()["x-after"], "1");
    }

    #[test]
    fn a_panicking_after_hook_gives_a_plain_500_without_hooks() {
        handler::install_panic_hook();
        let res = answer(&service(), "/after-panics");
        assert_eq!(res.status(), 500);
        assert_eq!(res.body_bytes().unwrap(), "page 500 true");
        assert!(!res.headers().contains_key("x-after"));
    }

    #[test]
    fn refusals_with_and_without_a_request_line() {
        let s = service();
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        let bare = s.refuse(StatusCode::BAD_REQUEST, Seen::Nothing, peer);
        assert_eq!(bare.body_bytes().unwrap(), "page 400 false");
        assert!(!bare.headers().contains_key("x-after"));
        let seen = Box::new(SeenHead {
            method: Method::POST,
            target: http::uri::PathAndQuery::from_static("/a"),
            version: http::Version::HTTP_11,
            headers: Default::default(),
            sent_version: None,
        });
        let res = s.refuse(StatusCode::PAYLOAD_TOO_LARGE, Seen::Head(seen), peer);
        assert_eq!(res.status(), 413);
        assert_eq!(res.body_bytes().unwrap(), "page 413 true");
        assert_eq!(res.headers()["x-after"], "1");
    }
}
