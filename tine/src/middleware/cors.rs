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
/// methods, headers and max-age, before routing reaches a handler. Every
/// other response to an allowed origin gets `Access-Control-Allow-Origin`;
/// when a specific origin is echoed (not `*`), `Vary: Origin` is added so
/// caches keep answers per origin.
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
/// ```
///
/// # Credentials need listed origins
///
/// With [`allow_credentials(true)`](Cors::allow_credentials) the browser
/// sends the user's cookies and lets the page read the answer, so only
/// origins you list with [`allow_origin`](Cors::allow_origin) may be
/// allowed: [`App::cors`] panics, at your `.cors(..)` line, when credentials
/// are allowed and no origin is listed (as tower-http and actix-cors refuse
/// it). Echoing any origin with credentials would let every site act as
/// the signed-in user and read the answers. The `null` origin (sandboxed
/// iframes, `data:` and `file:` pages, some redirects) is one that any
/// page can take on, so it is allowed only when listed literally
/// (`allow_origin("null")`), which is rarely what you want. Without
/// credentials, `Cors::new()` answers `*`, which every origin, `null`
/// included, may read: use it for public data only.
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
    /// given, only the listed origins are allowed. Panics on `*`: for any
    /// origin, list none (and see [credentials](Cors#credentials-need-listed-origins)).
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
        self.origins
            .get_or_insert_with(Vec::new)
            .push(origin.trim_end_matches('/').to_string());
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

    /// The request headers preflights allow. Panics on a name that is not
    /// valid header text.
    #[track_caller]
    pub fn allow_headers(mut self, headers: &[&str]) -> Self {
        self.headers = HeaderValue::from_str(&headers.join(", ")).expect("valid header names");
        self
    }

    /// Response headers the browser lets the page's script read, beyond
    /// the CORS-safelisted ones (`Cache-Control`, `Content-Language`,
    /// `Content-Length`, `Content-Type`, `Expires`, `Last-Modified`,
    /// `Pragma`): sent as `Access-Control-Expose-Headers` on answers to
    /// allowed origins. Panics on a name that is not valid header text.
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
        self.expose = (!headers.is_empty())
            .then(|| HeaderValue::from_str(&headers.join(", ")).expect("valid header names"));
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

    /// The `Access-Control-Allow-Origin` value for a request's origin, if
    /// allowed, and whether it echoes the origin.
    fn allow_origin_for(&self, origin: &str) -> Option<(HeaderValue, bool)> {
        match &self.origins {
            // Any origin is `*`, never an echo: echoing every origin with
            // credentials let any site read answers made with the user's
            // cookies. `install` refuses credentials without a list; were
            // they here anyway, browsers reject `*` with credentials.
            None => Some((HeaderValue::from_static("*"), false)),
            Some(list) => list
                .iter()
                .any(|o| o == origin)
                .then(|| HeaderValue::from_str(origin).ok().map(|v| (v, true)))
                .flatten(),
        }
    }

    fn decorate(&self, origin: &str, res: &mut Response) {
        let Some((value, echoed)) = self.allow_origin_for(origin) else {
            return;
        };
        let headers = res.headers_mut();
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
        if echoed {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }

    /// Adds `Access-Control-Expose-Headers` to an actual (not preflight)
    /// answer for an allowed origin.
    fn expose(&self, origin: &str, res: &mut Response) {
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
            if !is_preflight(req) {
                return None;
            }
            let mut res = Response::empty(StatusCode::NO_CONTENT);
            if pre.allow_origin_for(origin).is_some() {
                let h = res.headers_mut();
                h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, pre.methods.clone());
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, pre.headers.clone());
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from(pre.max_age),
                );
                pre.decorate(origin, &mut res);
            }
            Some(res)
        })
        .after(move |req: &Request, mut res: Response| {
            if let Some(origin) = req.header(header::ORIGIN) {
                cors.decorate(origin, &mut res);
                if !is_preflight(req) {
                    cors.expose(origin, &mut res);
                }
            }
            res
        })
    }
}

/// A CORS preflight: `OPTIONS` asking which method it may use.
fn is_preflight(req: &Request) -> bool {
    req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(res.headers()["vary"], "Origin");
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
