//! Routing semantics over real TCP: exact routes own their paths (405
//! with `Allow`, `HEAD` from `GET`, `OPTIONS` listing the methods) even
//! with a catch-all and a static directory at `/`; registration mistakes
//! panic at the app's line.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use support::{serve, Client};
use tine::{App, Request, Response, StatusCode};

fn app(public: std::path::PathBuf) -> App {
    App::new()
        .get("/api/todos", |_: &Request| "list")
        .post("/api/todos", |_: &Request| "created")
        .get("/api/todos/:id", |req: &Request| {
            format!("todo {}", req.param("id").unwrap())
        })
        .put("/api/todos/:id", |_: &Request| "put")
        .delete("/api/todos/:id", |_: &Request| StatusCode::NO_CONTENT)
        .any("/api/*", |req: &Request| {
            Response::text(format!("no endpoint {} {}", req.method(), req.path()))
                .with_status(StatusCode::NOT_FOUND)
        })
        .static_dir("/", public)
}

fn send(c: &mut Client, method: &str, path: &str) -> testkit::Resp {
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").as_bytes());
    if method == "HEAD" {
        c.read_head_response()
    } else {
        c.read_response()
    }
}

#[test]
fn exact_routes_answer_405_head_and_options_despite_catch_alls_and_mounts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>hi</h1>").unwrap();
    let public = dir.path().to_path_buf();
    let addr = serve(move || app(public));
    let mut c = Client::connect(addr);

    // The routes themselves.
    assert_eq!(send(&mut c, "GET", "/api/todos").text(), "list");
    assert_eq!(send(&mut c, "POST", "/api/todos").text(), "created");
    assert_eq!(send(&mut c, "GET", "/api/todos/3").text(), "todo 3");
    // HEAD follows GET, not the catch-all registered after.
    let r = send(&mut c, "HEAD", "/api/todos/3");
    assert_eq!((r.status, r.header("content-length")), (200, Some("6")));

    // Other methods on the routes' paths: 405 with their Allow, though the
    // catch-all and the mount match these paths too.
    let r = send(&mut c, "DELETE", "/api/todos");
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, POST, OPTIONS"))
    );
    let r = send(&mut c, "PATCH", "/api/todos/3");
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, PUT, DELETE, OPTIONS"))
    );
    let r = send(&mut c, "OPTIONS", "/api/todos");
    assert_eq!(
        (r.status, r.header("allow")),
        (204, Some("GET, HEAD, POST, OPTIONS"))
    );

    // Other /api paths: the catch-all, whatever the method.
    for m in ["GET", "DELETE", "POST"] {
        let r = send(&mut c, m, "/api/nothing");
        assert_eq!(r.status, 404, "{m}");
        assert_eq!(r.text(), format!("no endpoint {m} /api/nothing"));
    }

    // The static mount: a file it has allows GET and HEAD only; a file it
    // has not is a 404 whatever the method.
    assert_eq!(send(&mut c, "GET", "/index.html").text(), "<h1>hi</h1>");
    let r = send(&mut c, "DELETE", "/index.html");
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, OPTIONS"))
    );
    let r = send(&mut c, "OPTIONS", "/index.html");
    assert_eq!(
        (r.status, r.header("allow")),
        (204, Some("GET, HEAD, OPTIONS"))
    );
    assert_eq!(send(&mut c, "GET", "/missing.html").status, 404);
    let r = send(&mut c, "DELETE", "/missing.html");
    assert_eq!((r.status, r.header("allow")), (404, None));
}

#[test]
fn a_static_mount_at_the_root_does_not_turn_unknown_paths_into_405s() {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().to_path_buf();
    let addr = serve(move || {
        App::new()
            .get("/api/todos", |_: &Request| "list")
            .static_dir("/", public)
    });
    let mut c = Client::connect(addr);
    let r = send(&mut c, "DELETE", "/api/nothing");
    assert_eq!((r.status, r.header("allow")), (404, None));
    let r = send(&mut c, "DELETE", "/api/todos");
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, OPTIONS"))
    );
}

fn ok(_: &Request) -> &'static str {
    "ok"
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("must panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap()
}

#[test]
#[should_panic(
    expected = "conflicting route: GET \"/users/:name\" is already routed (GET \"/users/:id\")"
)]
fn a_conflicting_route_panics() {
    let _ = App::new().get("/users/:id", ok).get("/users/:name", ok);
}

#[test]
#[should_panic(expected = "route pattern \"users\" must start with '/'")]
fn a_bad_pattern_panics() {
    let _ = App::new().get("users", ok);
}

// Each mistake and `line!()` on one line, to compare with the location the
// panic names.
#[rustfmt::skip]
mod mistakes {
    use super::*;
    pub(super) fn conflict() -> (String, u32) { (panic_message(|| drop(App::new().get("/a", ok).post("/a", ok).get("/a", ok))), line!()) }
    pub(super) fn bad_pattern() -> (String, u32) { (panic_message(|| drop(App::new().get("/a/*/b", ok))), line!()) }
    pub(super) fn after_any() -> (String, u32) { (panic_message(|| drop(App::new().any("/x", ok).delete("/x", ok))), line!()) }
    pub(super) fn websocket() -> (String, u32) { (panic_message(|| drop(App::new().ws("/ws", |_: &mut tine::WebSocket<'_>, _| {}).ws("/ws", |_: &mut tine::WebSocket<'_>, _| {}))), line!()) }
    pub(super) fn static_twice(dir: &std::path::Path) -> (String, u32) { (panic_message(|| drop(App::new().static_dir("/s", dir).static_dir("/s/", dir))), line!()) }
}

#[test]
fn registration_panics_point_at_the_apps_line() {
    let dir = tempfile::tempdir().unwrap();
    for (msg, line) in [
        mistakes::conflict(),
        mistakes::bad_pattern(),
        mistakes::after_any(),
        mistakes::websocket(),
        mistakes::static_twice(dir.path()),
    ] {
        assert!(msg.contains(&format!("(at {}:{line}:", file!())), "{msg}");
    }
    // The location the panic itself reports is that line too
    // (`#[track_caller]` all the way from the builder method).
    let reported = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = reported.clone();
    // Tests run on threads: only this thread's panic counts, and the
    // others go to the usual hook.
    let me = std::thread::current().id();
    let usual = std::sync::Arc::new(std::panic::take_hook());
    let others = usual.clone();
    std::panic::set_hook(Box::new(move |info| match info.location() {
        Some(l) if std::thread::current().id() == me => {
            *seen.lock().unwrap() = format!("{}:{}", l.file(), l.line());
        }
        _ => others(info),
    }));
    let (msg, line) = mistakes::conflict();
    drop(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| usual(info)));
    assert_eq!(
        *reported.lock().unwrap(),
        format!("{}:{line}", file!()),
        "{msg}"
    );
}

/// `param_as`: a capture parsed into the handler's type, percent-decoded
/// first; a value that does not parse is a `400` saying which parameter
/// and why.
#[test]
fn typed_path_parameters_parse_or_answer_400() {
    let addr = serve(|| {
        App::new().get(
            "/users/:id",
            |req: &Request| -> Result<String, tine::Error> {
                let id: u32 = req.param_as("id")?;
                Ok(format!("user {id}"))
            },
        )
    });
    let mut c = Client::connect(addr);
    let r = c.get("/users/7");
    assert_eq!((r.status, r.text().as_str()), (200, "user 7"));
    let r = c.get("/users/%34%32");
    assert_eq!((r.status, r.text().as_str()), (200, "user 42"));
    let r = c.get("/users/seven");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            400,
            "invalid path parameter `id`: invalid digit found in string"
        )
    );
    let r = c.get("/users/99999999999");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            400,
            "invalid path parameter `id`: number too large to fit in target type"
        )
    );
}
