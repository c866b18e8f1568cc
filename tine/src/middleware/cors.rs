//! Cross-origin resource sharing (the Fetch standard's CORS protocol).

use std::rc::Rc;

use http::header::{self, HeaderValue};
use http::{Method, StatusCode};

use crate::app::App;
use crate::http::{Request, Response};

/// CORS settings, installed with [`App::cors`].
///
/// Preflight requests (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) are answered `204` with the allowed
/// methods, headers and max-age, before routing reaches a handler.
///
/// With any origin (no [`allow_origin`](Cors::allow_origin)) every answer
/// gets `Access-Control-Allow-Origin: *`, whether the request had an
/// `Origin` or not, so the answer is the same for all and caches need no
/// `Vary`. With a list, an allowed origin is echoed, and every answer (to
/// a listed origin, another one or none, error pages included) gets
/// `Vary: Origin`, preflights `Vary: Origin, Access-Control-Request-Method,
/// Access-Control-Request-Headers`, added to the `Vary` the handler set:
/// a shared cache then never serves one origin's answer to another.
///
/// ```
/// use tine::{App, Cors, Method, Request};
/// let app = App::new()
///     .get("/api", |_: &Request| "data")
///     .cors(Cors::new().allow_origin("https://app.example").max_age(600));
/// let mut req = Request::builder(Method::GET, "/api").header("origin", "https://app.example").finish();
/// let res = app.handle(&mut req);
/// assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example");
/// assert_eq!(res.headers()["vary"], "Origin");
/// // Not allowed, or no `Origin` at all: no CORS headers, but the answer
/// // still depends on the origin.
/// let mut req = Request::builder(Method::GET, "/api").finish();
/// let res = app.handle(&mut req);
/// assert!(!res.headers().contains_key("access-control-allow-origin"));
/// assert_eq!(res.headers()["vary"], "Origin");
/// ```
///
/// # Install CORS before authentication hooks
///
/// [`App::cors`] adds a before-hook that answers preflights, and
/// before-hooks run in registration order: a hook added earlier sees the
/// preflight first. Preflights carry no cookies or `Authorization`, so an
/// authentication hook added before `.cors(..)` answers them (`401`, say),
/// and the browser, which needs a `2xx`, never sends the real request.
/// Call `.cors(..)` before such hooks:
///
/// ```
/// use tine::{App, Cors, Method, Request, Response, StatusCode};
/// let app = App::new()
///     .get("/me", |_: &Request| "ada")
///     .cors(Cors::new().allow_origin("https://app.example").allow_credentials(true))
///     .before(|req: &mut Request| {
///         req.header("authorization").is_none().then(|| Response::error(StatusCode::UNAUTHORIZED))
///     });
/// let mut req = Request::builder(Method::OPTIONS, "/me")
///     .header("origin", "https://app.example")
///     .header("access-control-request-method", "GET")
///     .finish();
/// assert_eq!(app.handle(&mut req).status(), 204);
/// ```
///
/// # Credentials need listed origins
///
/// With [`allow_credentials(true)`](Cors::allow_credentials) the browser
/// sends the user's cookies and lets the page read the answer, so only
/// origins you list with [`allow_origin`](Cors::allow_origin) may be
/// allowed: [`App::cors`] panics, at your `.cors(..)` line, when credentials
/// are allowed and no origin is listed (as tower-http refuses it).
/// Echoing any origin with credentials would let every site act as
/// the signed-in user and read the answers. The `null` origin (sandboxed
/// iframes, `data:` and `file:` pages, some redirects) is one that any
/// page can take on, so it is allowed only when listed literally
/// (`allow_origin("null")`), which is rarely what you want. Without
/// credentials, `Cors::new()` answers `*`, which every origin, `null`
/// included, may read: use it for public data only.
///
/// # WebSockets
///
/// Browsers apply no CORS to WebSockets: a page on any site can open one
/// to your server, and the browser sends the user's cookies with the
/// upgrade. With origins listed, an upgrade whose `Origin` is not among
/// them is refused with `403` (before the WebSocket route sees it);
/// clients that are not browsers send no `Origin` and pass. Without a
/// list, check `Origin` yourself in an app before-hook if your
/// WebSockets trust cookies.
///
/// ```
/// use tine::{App, Cors, Method, Request};
/// let app = App::new()
///     .get("/me", |_: &Request| "ada")
///     .cors(Cors::new().allow_origin("https://app.example").allow_credentials(true));
/// let mut req = Request::builder(Method::GET, "/me").header("origin", "null").finish();
/// let res = app.handle(&mut req);
/// assert!(!res.headers().contains_key("access-control-allow-origin"));
/// ```
///
/// ```should_panic
/// use tine::{App, Cors, Request};
/// // Panics: credentials with any origin.
/// let app = App::new().get("/me", |_: &Request| "ada").cors(Cors::new().allow_credentials(true));
/// ```
#[derive(Debug, Clone)]
pub struct Cors {
    /// `None`: any origin (`*`).
    origins: Option<Vec<String>>,
    methods: HeaderValue,
    headers: HeaderValue,
    max_age: u32,
    credentials: bool,
    /// `Access-Control-Expose-Headers` on answers to allowed origins.
    expose: Option<HeaderValue>,
}

/// Whether `s` has the form of a serialized origin (RFC 6454 §6.1):
/// `scheme://host` with an optional `:port`, nothing else.
fn is_serialized_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    // `[v6]:port` or `name:port`: the port is what follows the last `:`
    // outside brackets.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    let name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
        }
        None => name(host),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    scheme_ok && host_ok && port_ok
}

impl Default for Cors {
    fn default() -> Self {
        Self::new()
    }
}

impl Cors {
    /// Any origin; methods GET, HEAD, POST, PUT, PATCH, DELETE; request
    /// headers `Content-Type` and `Authorization`; max-age 1 day.
    pub fn new() -> Self {
        Cors {
            origins: None,
            methods: HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE"),
            headers: HeaderValue::from_static("Content-Type, Authorization"),
            max_age: 86_400,
            credentials: false,
            expose: None,
        }
    }

    /// Allows one more origin (e.g. `https://app.example`); once any is
    /// given, only the listed origins are allowed. Matched without regard
    /// to case (scheme and host are case-insensitive, and browsers send
    /// them lower case); the answer echoes the origin as the request sent
    /// it. Panics on `*`: for any origin, list none (and see
    /// [credentials](Cors#credentials-need-listed-origins)). Panics too
    /// on an entry that is neither `null` nor an origin as browsers send
    /// it, `scheme://host` with an optional `:port`: a path, a missing
    /// scheme or a wildcard would match nothing.
    ///
    /// ```
    /// use tine::Cors;
    /// let cors = Cors::new().allow_origin("https://app.example").allow_origin("https://admin.example");
    /// ```
    #[track_caller]
    pub fn allow_origin(mut self, origin: &str) -> Self {
        // Matched literally, `*` would allow nothing (browsers never send
        // it); an app that wrote it meant "any origin", which with
        // credentials is exactly what must not be done silently.
        if origin.trim() == "*" {
            crate::service::registration_panic(
                "Cors::allow_origin(\"*\"): for any origin list none (Cors::new() answers `*`); \
                 with credentials, list each allowed origin",
            );
        }
        let origin = origin.trim_end_matches('/');
        // Browsers leave the scheme's default port out of `Origin`.
        let origin = origin
            .strip_suffix(":443")
            .filter(|o| o.starts_with("https://"))
            .or_else(|| {
                origin
                    .strip_suffix(":80")
                    .filter(|o| o.starts_with("http://"))
            })
            .unwrap_or(origin);
        // Matched literally, an entry that is not an origin as browsers
        // send it (`app.example`, `https://app.example/api`,
        // `https://*.app.example`) would allow nothing, silently.
        if origin != "null" && !is_serialized_origin(origin) {
            crate::service::registration_panic(&format!(
                "Cors::allow_origin({origin:?}): an origin is scheme://host[:port] as browsers \
                 send it (e.g. https://app.example), with no path, query or wildcard"
            ));
        }
        self.origins
            .get_or_insert_with(Vec::new)
            .push(origin.to_string());
        self
    }

    /// The methods preflights allow.
    pub fn allow_methods(mut self, methods: &[Method]) -> Self {
        let list = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        self.methods = HeaderValue::from_str(&list).expect("method names are valid header text");
        self
    }

    /// The request headers preflights allow. Panics, naming it, on a name
    /// that is not a header name (a token: no spaces, no separators).
    #[track_caller]
    pub fn allow_headers(mut self, headers: &[&str]) -> Self {
        self.headers = header_list("allow_headers", headers);
        self
    }

    /// Response headers the browser lets the page's script read, beyond
    /// the CORS-safelisted ones (`Cache-Control`, `Content-Language`,
    /// `Content-Length`, `Content-Type`, `Expires`, `Last-Modified`,
    /// `Pragma`): sent as `Access-Control-Expose-Headers` on answers to
    /// allowed origins. Panics, naming it, on a name that is not a header
    /// name.
    ///
    /// ```
    /// use tine::{test::TestClient, App, Cors, Request, Response};
    /// let app = App::new()
    ///     .get("/items", |_: &Request| Response::text("[]").with_header("x-total-count", "0"))
    ///     .cors(Cors::new().expose_headers(&["X-Total-Count", "Location"]));
    /// let res = TestClient::new(app).get("/items").header("origin", "https://app.example").send();
    /// assert_eq!(res.header("access-control-expose-headers"), Some("X-Total-Count, Location"));
    /// ```
    #[track_caller]
    pub fn expose_headers(mut self, headers: &[&str]) -> Self {
        self.expose = (!headers.is_empty()).then(|| header_list("expose_headers", headers));
        self
    }

    /// How long (seconds) browsers may cache a preflight answer.
    pub fn max_age(mut self, seconds: u32) -> Self {
        self.max_age = seconds;
        self
    }

    /// Sends `Access-Control-Allow-Credentials: true` to the listed
    /// origins, echoing the origin (never `*`, as the standard requires).
    /// Needs at least one [`allow_origin`](Cors::allow_origin):
    /// [`App::cors`] panics otherwise (see
    /// [credentials](Cors#credentials-need-listed-origins)).
    ///
    /// ```
    /// use tine::{App, Cors, Request};
    /// let app = App::new()
    ///     .get("/me", |_: &Request| "ada")
    ///     .cors(Cors::new().allow_origin("https://app.example").allow_credentials(true));
    /// ```
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.credentials = allow;
        self
    }

    /// The `Access-Control-Allow-Origin` value for a request's origin (if
    /// it sent one), if allowed.
    fn allow_origin_for(&self, origin: Option<&str>) -> Option<HeaderValue> {
        match &self.origins {
            // Any origin is `*`, never an echo: echoing every origin with
            // credentials let any site read answers made with the user's
            // cookies. `install` refuses credentials without a list; were
            // they here anyway, browsers reject `*` with credentials.
            // `*` goes on answers without `Origin` too: were it only on
            // those with one, a cache could give a CORS request the answer
            // stored for a plain one, and the browser would refuse it.
            None => Some(HeaderValue::from_static("*")),
            Some(list) => {
                let origin = origin?;
                // Scheme and host are case-insensitive (RFC 6454 serialises
                // them lower case, as browsers send them), so a list entry
                // written `https://App.example` must still match.
                list.iter()
                    .any(|o| o.eq_ignore_ascii_case(origin))
                    .then(|| HeaderValue::from_str(origin).ok())
                    .flatten()
            }
        }
    }

    /// Adds the CORS headers for `origin` (`None`: the request had none)
    /// to an answer, a preflight's if `preflight`.
    fn decorate(&self, origin: Option<&str>, preflight: bool, res: &mut Response) {
        let headers = res.headers_mut();
        // With a list, the answer depends on the origin whether it is
        // allowed, refused or absent (only an allowed one gets the headers
        // below), so every answer says so: with `Vary: Origin` only on
        // echoes, a shared cache could serve an answer without CORS
        // headers, stored for a plain request, to a listed origin.
        if self.origins.is_some() {
            let names: &[&str] = if preflight {
                PREFLIGHT_VARY
            } else {
                &["Origin"]
            };
            super::add_vary(headers, names);
        }
        let Some(value) = self.allow_origin_for(origin) else {
            return;
        };
        if headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            return;
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// Adds `Access-Control-Expose-Headers` to an actual (not preflight)
    /// answer for an allowed origin.
    fn expose(&self, origin: Option<&str>, res: &mut Response) {
        let Some(expose) = &self.expose else {
            return;
        };
        if self.allow_origin_for(origin).is_some() {
            res.headers_mut()
                .entry(header::ACCESS_CONTROL_EXPOSE_HEADERS)
                .or_insert_with(|| expose.clone());
        }
    }

    /// Panics (at the app's `.cors(..)` line) when credentials are
    /// allowed without a list of origins.
    #[track_caller]
    pub(crate) fn install(self, app: App) -> App {
        if self.credentials && self.origins.is_none() {
            crate::service::registration_panic(
                "Cors::allow_credentials(true) with any origin: list the origins allowed to \
                 send credentials with Cors::allow_origin (answering every origin with \
                 credentials lets any site act as the user and read the answers)",
            );
        }
        let cors = Rc::new(self);
        let pre = cors.clone();
        app.before(move |req: &mut Request| {
            let origin = req.header(header::ORIGIN)?;
            if crate::ws::handshake::is_upgrade(req) {
                // Browsers apply no CORS to WebSockets: any page may open
                // one to this server, with the user's cookies. With a list
                // of origins, only theirs may (as Phoenix's `check_origin`
                // or gorilla's default do); clients that are not browsers
                // send no `Origin` and are not concerned.
                let refused = pre.origins.is_some() && pre.allow_origin_for(Some(origin)).is_none();
                return refused.then(|| Response::error(StatusCode::FORBIDDEN));
            }
            if !is_preflight(req) {
                return None;
            }
            let origin = Some(origin);
            let mut res = Response::empty(StatusCode::NO_CONTENT);
            if pre.allow_origin_for(origin).is_some() {
                let h = res.headers_mut();
                h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, pre.methods.clone());
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, pre.headers.clone());
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from(pre.max_age),
                );
            }
            pre.decorate(origin, true, &mut res);
            Some(res)
        })
        .after(move |req: &Request, mut res: Response| {
            let origin = req.header(header::ORIGIN);
            let preflight = is_preflight(req);
            cors.decorate(origin, preflight, &mut res);
            if !preflight {
                cors.expose(origin, &mut res);
            }
            res
        })
    }
}

/// What a preflight's answer depends on, when the origin is not `*`.
const PREFLIGHT_VARY: &[&str] = &[
    "Origin",
    "Access-Control-Request-Method",
    "Access-Control-Request-Headers",
];

/// A CORS preflight: `OPTIONS` asking which method it may use.
fn is_preflight(req: &Request) -> bool {
    req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// `names` as one list value; panics (at the caller's line) on one that
/// is not a header name, naming it and the setter.
#[track_caller]
fn header_list(setter: &str, names: &[&str]) -> HeaderValue {
    if let Some(bad) = names
        .iter()
        .find(|n| http::header::HeaderName::from_bytes(n.as_bytes()).is_err())
    {
        panic!("Cors::{setter}: {bad:?} is not a header name");
    }
    HeaderValue::from_str(&names.join(", ")).expect("header names are valid header text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "Cors::allow_headers: \"X Bad Header\" is not a header name")]
    fn an_allowed_header_that_is_no_name_is_refused() {
        let _ = Cors::new().allow_headers(&["X-Fine", "X Bad Header"]);
    }

    #[test]
    #[should_panic(expected = "Cors::expose_headers: \"X-A\\nB\" is not a header name")]
    fn an_exposed_header_that_is_no_name_is_refused() {
        let _ = Cors::new().expose_headers(&["X-A\nB"]);
    }

    fn app(cors: Cors) -> App {
        App::new().post("/x", |_: &Request| "ok").cors(cors)
    }

    #[test]
    fn preflight_answered_204() {
        let app = app(Cors::new().allow_origin("https://a.example").max_age(60));
        let mut req = Request::builder(Method::OPTIONS, "/x")
            .header("origin", "https://a.example")
            .header("access-control-request-method", "POST")
            .finish();
        let res = app.handle(&mut req);
        assert_eq!(res.status(), 204);
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "https://a.example"
        );
        assert_eq!(res.headers()["access-control-max-age"], "60");
        assert!(res.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST"));
        assert_eq!(
            res.headers()["vary"],
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        );
    }

    #[test]
    fn disallowed_origin_gets_no_headers() {
        let app = app(Cors::new().allow_origin("https://a.example"));
        let mut req = Request::builder(Method::POST, "/x")
            .header("origin", "https://evil.example")
            .finish();
        let res = app.handle(&mut req);
        assert_eq!(res.status(), 200);
        assert!(!res.headers().contains_key("access-control-allow-origin"));
    }

    #[test]
    fn exposed_headers_only_for_allowed_origins_and_not_on_preflights() {
        let app = app(Cors::new()
            .allow_origin("https://a.example")
            .expose_headers(&["X-Request-Id"]));
        let send = |method: Method, origin: &str| {
            let mut req = Request::builder(method.clone(), "/x")
                .header("origin", origin)
                .header("access-control-request-method", "POST");
            if method == Method::POST {
                req = Request::builder(method, "/x").header("origin", origin);
            }
            app.handle(&mut req.finish())
        };
        let res = send(Method::POST, "https://a.example");
        assert_eq!(
            res.headers()["access-control-expose-headers"],
            "X-Request-Id"
        );
        let res = send(Method::POST, "https://evil.example");
        assert!(!res.headers().contains_key("access-control-expose-headers"));
        let res = send(Method::OPTIONS, "https://a.example");
        assert_eq!(res.status(), 204);
        assert!(!res.headers().contains_key("access-control-expose-headers"));
    }

    #[test]
    #[should_panic(expected = "list the origins allowed to send credentials")]
    fn credentials_with_any_origin_are_refused_at_install() {
        app(Cors::new().allow_credentials(true));
    }

    /// A WebSocket upgrade from a page of an origin not listed is refused:
    /// browsers do not apply CORS to WebSockets, and would send the user's
    /// cookies. Without a list, or without `Origin`, upgrades go through.
    #[test]
    fn websocket_upgrades_from_unlisted_origins_are_refused() {
        let upgrade = |app: &App, origin: Option<&str>| {
            let mut b = Request::builder(Method::GET, "/ws")
                .header("upgrade", "websocket")
                .header("connection", "Upgrade")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .header("sec-websocket-version", "13");
            if let Some(origin) = origin {
                b = b.header("origin", origin);
            }
            app.handle(&mut b.finish()).status().as_u16()
        };
        let ws = |cors: Cors| {
            App::new()
                .ws("/ws", |_: &mut crate::WebSocket, _: crate::WsEvent| {})
                .cors(cors)
        };
        let listed = ws(Cors::new().allow_origin("https://a.example"));
        assert_eq!(upgrade(&listed, Some("https://evil.example")), 403);
        assert_eq!(upgrade(&listed, Some("null")), 403);
        assert_eq!(upgrade(&listed, Some("https://A.example")), 101);
        assert_eq!(upgrade(&listed, None), 101);
        let any = ws(Cors::new());
        assert_eq!(upgrade(&any, Some("https://evil.example")), 101);
    }

    #[test]
    fn origins_are_checked_for_their_form() {
        for good in [
            "https://app.example",
            "https://app.example/",
            "http://localhost:5173",
            "http://[::1]:8080",
            "http://127.0.0.1",
            "null",
        ] {
            let _ = Cors::new().allow_origin(good);
        }
        for bad in [
            "app.example",
            "https://app.example/api",
            "https://*.app.example",
            "https://app.example?x",
            "https://",
            "https://app.example:",
            "https://user@app.example",
            "https://app example",
            "://app.example",
            "https://a:b:80",
            "https://a]b[",
            "http://[::1",
        ] {
            let res = std::panic::catch_unwind(|| Cors::new().allow_origin(bad));
            let msg = res.expect_err(bad);
            let msg = msg.downcast_ref::<String>().expect("a message");
            assert!(msg.contains("scheme://host[:port]"), "{bad}: {msg}");
        }
        // The scheme's default port is left out, as browsers leave it out.
        let app = app(Cors::new().allow_origin("https://a.example:443"));
        let res = post(&app, "https://a.example");
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "https://a.example"
        );
    }

    #[test]
    #[should_panic(expected = "Cors::allow_origin(\"*\")")]
    fn star_is_not_an_origin() {
        let _ = Cors::new().allow_origin("*");
    }

    fn post(app: &App, origin: &str) -> Response {
        let mut req = Request::builder(Method::POST, "/x")
            .header("origin", origin)
            .finish();
        app.handle(&mut req)
    }

    fn preflight(app: &App, origin: &str) -> Response {
        let mut req = Request::builder(Method::OPTIONS, "/x")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .finish();
        app.handle(&mut req)
    }

    #[test]
    fn credentials_only_for_listed_origins_and_null_only_when_listed() {
        let listed = app(Cors::new()
            .allow_origin("https://a.example")
            .allow_credentials(true));
        let res = post(&listed, "https://a.example");
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "https://a.example"
        );
        assert_eq!(res.headers()["access-control-allow-credentials"], "true");
        for origin in ["https://evil.example", "null"] {
            for res in [post(&listed, origin), preflight(&listed, origin)] {
                let h = res.headers();
                assert!(!h.contains_key("access-control-allow-origin"), "{origin}");
                assert!(!h.contains_key("access-control-allow-credentials"));
                assert!(!h.contains_key("access-control-allow-methods"));
            }
        }

        let null = app(Cors::new().allow_origin("null").allow_credentials(true));
        let res = post(&null, "null");
        assert_eq!(res.headers()["access-control-allow-origin"], "null");
        assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    }

    /// With a list the answer depends on the origin even when it gets no
    /// CORS headers: without `Vary: Origin` on those, a shared cache could
    /// serve one stored for a plain request to a listed origin.
    #[test]
    fn vary_origin_on_every_answer_with_a_list() {
        let app = app(Cors::new().allow_origin("https://a.example"));
        let mut plain = Request::builder(Method::POST, "/x").finish();
        let mut missing = Request::builder(Method::GET, "/nowhere").finish();
        for res in [
            post(&app, "https://a.example"),
            post(&app, "https://evil.example"),
            app.handle(&mut plain),
            app.handle(&mut missing),
        ] {
            assert_eq!(res.headers()["vary"], "Origin");
        }
        let res = preflight(&app, "https://evil.example");
        assert!(!res.headers().contains_key("access-control-allow-origin"));
        assert_eq!(
            res.headers()["vary"],
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        );
    }

    #[test]
    fn vary_is_added_to_the_handlers() {
        let app = App::new()
            .get("/gz", |_: &Request| {
                Response::text("ok").with_header("vary", "Accept-Encoding")
            })
            .get("/has", |_: &Request| {
                Response::text("ok").with_header("vary", "accept, origin")
            })
            .get("/star", |_: &Request| {
                Response::text("ok").with_header("vary", "*")
            })
            .cors(Cors::new().allow_origin("https://a.example"));
        for (path, vary) in [
            ("/gz", "Accept-Encoding, Origin"),
            ("/has", "accept, origin"),
            ("/star", "*"),
        ] {
            let mut req = Request::builder(Method::GET, path)
                .header("origin", "https://a.example")
                .finish();
            let res = app.handle(&mut req);
            let all: Vec<_> = res.headers().get_all("vary").iter().collect();
            assert_eq!(all, [vary], "{path}");
        }
    }

    /// `*` is the same for every request, so it needs no `Vary`, and is
    /// there without `Origin` too (else the answer would vary).
    #[test]
    fn any_origin_is_star_on_every_answer() {
        let app = app(Cors::new().expose_headers(&["X-Id"]));
        let mut req = Request::builder(Method::POST, "/x").finish();
        let res = app.handle(&mut req);
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
        assert_eq!(res.headers()["access-control-expose-headers"], "X-Id");
        assert!(!res.headers().contains_key("vary"));
    }

    #[test]
    fn origin_matching_ignores_case() {
        let app = app(Cors::new().allow_origin("https://App.Example"));
        for origin in ["https://app.example", "HTTPS://APP.EXAMPLE"] {
            let res = post(&app, origin);
            assert_eq!(res.headers()["access-control-allow-origin"], origin);
        }
        let res = post(&app, "https://app.example.evil");
        assert!(!res.headers().contains_key("access-control-allow-origin"));
    }

    #[test]
    fn any_origin_is_star_without_vary() {
        let app = app(Cors::new());
        let mut req = Request::builder(Method::POST, "/x")
            .header("origin", "https://b.example")
            .finish();
        let res = app.handle(&mut req);
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
        assert!(!res.headers().contains_key("vary"));
    }
}
