//! Declarative server definitions: sugar over the [`App`](crate::App)
//! builder, one form per builder call.

/// Builds an [`App`](crate::App) from a list of forms, each mapping to one
/// builder call, in order:
///
/// | form | builder call |
/// | --- | --- |
/// | `GET "/p" => handler;` (also `POST`, `PUT`, `DELETE`, `PATCH`, `HEAD`, `OPTIONS`) | [`get`](crate::App::get), ... |
/// | `WS "/p" => handler;` | [`ws`](crate::App::ws) |
/// | `static "/prefix" => "dir";` | [`static_dir`](crate::App::static_dir) |
/// | `before hook;` / `after hook;` | [`before`](crate::App::before) / [`after`](crate::App::after) |
/// | `errors handler;` | [`errors`](crate::App::errors) |
/// | `workers n;` | [`workers`](crate::App::workers) |
/// | `limits expr;` | [`limits`](crate::App::limits) |
/// | `setup { statements }` | runs the statements there, in order |
///
/// ```
/// use tine::{Method, Request, Response};
///
/// fn hello(req: &Request) -> Response {
///     Response::text(format!("Hello, {}!", req.param("name").unwrap_or("?")))
/// }
///
/// let app = tine::app! {
///     setup { let greeting = "hi"; }
///     GET "/hello/:name" => hello;
///     GET "/" => move |_: &Request| greeting;
///     after |_: &Request, res: Response| res.with_header("x-served-by", "tine");
/// };
/// let mut req = Request::builder(Method::GET, "/hello/ada").finish();
/// let res = app.handle(&mut req);
/// assert_eq!(res.body_bytes().unwrap(), "Hello, ada!");
/// assert_eq!(res.headers()["x-served-by"], "tine");
/// ```
#[macro_export]
macro_rules! app {
    ($($forms:tt)*) => {{
        let app = $crate::App::new();
        $crate::__app_forms!(app; $($forms)*)
    }};
}

/// Defines and serves an app: `bind ADDR;` first, then the forms of
/// [`app!`], including `workers N;`. Expands to
/// `tine::app! { ... }.serve(ADDR)`, a `Result<(), tine::ServeError>`.
///
/// ```no_run
/// use tine::{Request, WebSocket, WsEvent};
///
/// fn main() -> Result<(), tine::ServeError> {
///     tine::server! {
///         bind "127.0.0.1:3000";
///         workers 4;
///         GET "/plaintext" => |_: &Request| "Hello, World!";
///         WS "/ws/echo" => |ws: &mut WebSocket, ev: WsEvent| {
///             if let WsEvent::Text(t) = ev { ws.send_text(t) }
///         };
///         static "/static" => "./public";
///     }
/// }
/// ```
#[macro_export]
macro_rules! server {
    (bind $addr:expr; $($forms:tt)*) => {
        $crate::app!($($forms)*).serve($addr)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __app_forms {
    ($app:ident;) => { $app };
    ($app:ident; GET $p:literal => $h:expr; $($rest:tt)*) => {{ let $app = $app.get($p, $h); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; POST $p:literal => $h:expr; $($rest:tt)*) => {{ let $app = $app.post($p, $h); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; PUT $p:literal => $h:expr; $($rest:tt)*) => {{ let $app = $app.put($p, $h); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; DELETE $p:literal => $h:expr; $($rest:tt)*) => {{ let $app = $app.delete($p, $h); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; PATCH $p:literal => $h:expr; $($rest:tt)*) => {{ let $app = $app.patch($p, $h); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; HEAD $p:literal => $h:expr; $($rest:tt)*) => {{ let $app = $app.head($p, $h); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; OPTIONS $p:literal => $h:expr; $($rest:tt)*) => {{ let $app = $app.options($p, $h); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; WS $p:literal => $h:expr; $($rest:tt)*) => {{ let $app = $app.ws($p, $h); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; static $p:literal => $dir:expr; $($rest:tt)*) => {{ let $app = $app.static_dir($p, $dir); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; before $h:expr; $($rest:tt)*) => {{ let $app = $app.before($h); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; after $h:expr; $($rest:tt)*) => {{ let $app = $app.after($h); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; errors $h:expr; $($rest:tt)*) => {{ let $app = $app.errors($h); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; workers $n:expr; $($rest:tt)*) => {{ let $app = $app.workers($n); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; limits $l:expr; $($rest:tt)*) => {{ let $app = $app.limits($l); $crate::__app_forms!($app; $($rest)*) }};
    ($app:ident; setup { $($s:stmt;)* } $($rest:tt)*) => {{ $($s;)* $crate::__app_forms!($app; $($rest)*) }};
}

#[cfg(test)]
mod tests {
    use crate::{Method, Request, Response, StatusCode};

    #[test]
    fn every_form_maps_to_its_builder_call() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "file").unwrap();
        let root = dir.path().to_path_buf();
        let app = crate::app! {
            workers 2;
            limits crate::Limits::default();
            GET "/g" => |_: &Request| "get";
            POST "/p" => |_: &Request| "post";
            PUT "/p" => |_: &Request| "put";
            DELETE "/p" => |_: &Request| "delete";
            PATCH "/p" => |_: &Request| "patch";
            HEAD "/h" => |_: &Request| StatusCode::NO_CONTENT;
            OPTIONS "/o" => |_: &Request| "options";
            WS "/ws" => |_: &mut crate::WebSocket, _: crate::WsEvent| {};
            static "/static" => root;
            before |req: &mut Request| (req.path() == "/blocked").then(|| Response::text("no"));
            after |_: &Request, res: Response| res.with_header("x-after", "1");
            errors |_, status: StatusCode| Response::text(format!("err {}", status.as_u16()));
        };
        assert_eq!(app.server_config().workers, 2);
        let call = |m: Method, p: &str| {
            let mut req = Request::builder(m, p).finish();
            let res = app.handle(&mut req);
            (
                res.status().as_u16(),
                res.body_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
            )
        };
        assert_eq!(call(Method::GET, "/g"), (200, Some("get".into())));
        for (m, want) in [
            (Method::POST, "post"),
            (Method::PUT, "put"),
            (Method::DELETE, "delete"),
            (Method::PATCH, "patch"),
        ] {
            assert_eq!(call(m, "/p").1.as_deref(), Some(want));
        }
        assert_eq!(call(Method::HEAD, "/h").0, 204);
        assert_eq!(call(Method::OPTIONS, "/o").1.as_deref(), Some("options"));
        assert_eq!(call(Method::GET, "/blocked").1.as_deref(), Some("no"));
        assert_eq!(call(Method::GET, "/missing").1.as_deref(), Some("err 404"));
        assert_eq!(call(Method::GET, "/static/a.txt").0, 200);
        let mut req = Request::builder(Method::GET, "/g").finish();
        assert_eq!(app.handle(&mut req).headers()["x-after"], "1");
        let mut req = Request::builder(Method::GET, "/ws")
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .finish();
        assert_eq!(app.handle(&mut req).status(), 101);
    }
}
