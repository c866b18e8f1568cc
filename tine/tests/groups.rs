//! Route groups and per-route body limits over real TCP: `nest`, `merge`,
//! group hooks and fallbacks beside a static directory at `/`; routing,
//! `max_body` and before-hooks decided once the head is read, so a `413`
//! or a refusal goes out before the body is sent and `100 Continue` only
//! for a body that will be read; large bodies spilled to a file.

mod support;

use std::cell::Cell;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use support::{serve, Client};
use tine::{App, Group, Limits, Request, Response, StatusCode};

fn api() -> Group {
    Group::new()
        .before(|req: &mut Request| {
            (req.header("x-key") != Some("k")).then(|| Response::error(StatusCode::UNAUTHORIZED))
        })
        .after(|_: &Request, res: Response| res.with_header("x-group", "api"))
        .get("/todos", |_: &Request| "todos")
        .get("/", |_: &Request| "api root")
        .nest(
            "/v2",
            Group::new()
                .after(|_: &Request, res: Response| res.with_header("x-inner", "v2"))
                .get("/ping", |_: &Request| "pong"),
        )
        .fallback(|req: &Request| {
            Response::json(&format!("no endpoint {} {}", req.method(), req.path()))
                .with_status(StatusCode::NOT_FOUND)
        })
}

/// A module's routes, merged at the top.
fn users() -> Group {
    Group::new().get("/users/:id", |req: &Request| {
        format!("user {}", req.param("id").unwrap())
    })
}

fn send(c: &mut Client, method: &str, path: &str, key: bool) -> testkit::Resp {
    let key = if key { "X-Key: k\r\n" } else { "" };
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{key}\r\n").as_bytes());
    c.read_response()
}

#[test]
fn groups_have_their_prefix_hooks_and_fallback_beside_a_static_mount() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>hi</h1>").unwrap();
    let public = dir.path().to_path_buf();
    let addr = serve(move || {
        App::new()
            .static_dir("/", public)
            .nest("/api", api())
            .merge(users())
            .after(|_: &Request, res: Response| res.with_header("x-app", "1"))
    });
    let mut c = Client::connect(addr);

    // The group's before-hook guards its routes; its after-hooks and the
    // app's see the refusal.
    let r = send(&mut c, "GET", "/api/todos", false);
    assert_eq!(r.status, 401);
    assert_eq!(
        (r.header("x-group"), r.header("x-app")),
        (Some("api"), Some("1"))
    );
    let r = send(&mut c, "GET", "/api/todos", true);
    assert_eq!((r.status, r.text().as_str()), (200, "todos"));
    assert_eq!(r.header("x-group"), Some("api"));
    assert_eq!(send(&mut c, "GET", "/api", true).text(), "api root");
    // A nested group runs inside its parent's hooks.
    let r = send(&mut c, "GET", "/api/v2/ping", true);
    assert_eq!(r.text(), "pong");
    assert_eq!(
        (r.header("x-inner"), r.header("x-group")),
        (Some("v2"), Some("api"))
    );
    assert_eq!(send(&mut c, "GET", "/api/v2/ping", false).status, 401);

    // The fallback answers the group's other paths, any method, ahead of
    // the static mount at `/`; a route's own path still gets its 405.
    let r = send(&mut c, "GET", "/api/nothing", true);
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "\"no endpoint GET /api/nothing\"");
    assert_eq!(r.header("x-group"), Some("api"));
    let r = send(&mut c, "DELETE", "/api/v3/x", true);
    assert_eq!(r.text(), "\"no endpoint DELETE /api/v3/x\"");
    let r = send(&mut c, "DELETE", "/api/todos", true);
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, OPTIONS"))
    );
    assert_eq!(r.header("x-group"), Some("api"));
    let r = send(&mut c, "OPTIONS", "/api/todos", true);
    assert_eq!(
        (r.status, r.header("allow")),
        (204, Some("GET, HEAD, OPTIONS"))
    );
    // The group's hooks guard its paths' 405 and `OPTIONS` too: a client
    // without the key learns no methods.
    for method in ["DELETE", "OPTIONS"] {
        let r = send(&mut c, method, "/api/todos", false);
        assert_eq!((r.status, r.header("allow")), (401, None), "{method}");
        assert_eq!(r.header("x-group"), Some("api"));
    }
    // Outside the group: the mount, without the group's hooks.
    let r = send(&mut c, "GET", "/index.html", false);
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>hi</h1>"));
    assert_eq!((r.header("x-group"), r.header("x-app")), (None, Some("1")));
    assert_eq!(send(&mut c, "GET", "/nothing.html", false).status, 404);
    // Merged routes answer where they were written.
    assert_eq!(send(&mut c, "GET", "/users/7", false).text(), "user 7");
}

#[test]
fn the_app_fallback_answers_what_nothing_else_matches() {
    let addr = serve(|| {
        App::new()
            .get("/a", |_: &Request| "a")
            .fallback(|req: &Request| format!("fallback {}", req.path()))
    });
    let mut c = Client::connect(addr);
    assert_eq!(send(&mut c, "GET", "/a", false).text(), "a");
    assert_eq!(send(&mut c, "POST", "/b/c", false).text(), "fallback /b/c");
    assert_eq!(send(&mut c, "POST", "/a", false).status, 405);
}

/// A single-page app: files from a static directory at `/`, and for any
/// other path the app's fallback (the page whose script routes it). A
/// mount deeper than the fallback keeps its 404s: a missing script must
/// not come back as the page.
#[test]
fn a_static_mount_lets_an_as_deep_fallback_answer_what_it_has_no_file_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.js"), "run()").unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("assets/a.css"), "p{}").unwrap();
    let public = dir.path().to_path_buf();
    let addr = serve(move || {
        App::new()
            .static_dir("/assets", public.join("assets"))
            .static_dir("/", public.clone())
            .nest(
                "/admin",
                Group::new()
                    .before(|req: &mut Request| {
                        (req.header("x-key") != Some("k"))
                            .then(|| Response::error(StatusCode::UNAUTHORIZED))
                    })
                    .max_body(4)
                    .fallback(|req: &Request| format!("admin page for {}", req.path())),
            )
            .static_dir("/admin", public.join("assets"))
            .fallback(|req: &Request| Response::html(format!("page for {}", req.path())))
    });
    let mut c = Client::connect(addr);
    assert_eq!(send(&mut c, "GET", "/app.js", false).text(), "run()");
    let r = send(&mut c, "GET", "/todos/7", false);
    assert_eq!((r.status, r.text().as_str()), (200, "page for /todos/7"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(send(&mut c, "GET", "/assets/a.css", false).text(), "p{}");
    let r = send(&mut c, "GET", "/assets/missing.js", false);
    assert_eq!((r.status, r.text().as_str()), (404, "404 Not Found\n"));
    // A group's fallback as deep as a mount answers the mount's misses,
    // after the group's before-hooks.
    assert_eq!(send(&mut c, "GET", "/admin/a.css", true).text(), "p{}");
    assert_eq!(send(&mut c, "GET", "/admin/x", false).status, 401);
    let r = send(&mut c, "GET", "/admin/x", true);
    assert_eq!(r.text(), "admin page for /admin/x");
    // A body sent there is the fallback's: its group's hooks and limit
    // answer before the body comes, not the mount's (the app's).
    for (key, status) in [("", 401), ("X-Key: k\r\n", 413)] {
        let mut c = Client::connect(addr);
        c.send(
            format!(
                "POST /admin/x HTTP/1.1\r\nHost: t\r\n{key}Content-Length: 10\r\n\
                 Expect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(c.read_response().status, status, "{key:?}");
    }
    let mut c = Client::connect(addr);
    c.send(b"POST /admin/x HTTP/1.1\r\nHost: t\r\nX-Key: k\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(c.read_response().text(), "admin page for /admin/x");
}

#[test]
fn a_conflict_that_nesting_makes_panics_at_the_nest_line() {
    let nest_line = line!() + 4;
    let err = catch_unwind(AssertUnwindSafe(|| {
        let _ = App::new()
            .get("/api/x", |_: &Request| "app")
            .nest("/api", Group::new().get("/x", |_: &Request| "group"));
    }))
    .unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("conflicting route: GET \"/api/x\""), "{msg}");
    // The message names both the group route's line and the nest line.
    assert!(msg.contains(&format!("groups.rs:{nest_line}")), "{msg}");
    assert_eq!(msg.matches("groups.rs:").count(), 2, "{msg}");
}

#[test]
fn a_groups_hooks_guard_its_websocket_routes() {
    let addr = serve(|| {
        App::new()
            .nest(
                "/api",
                api().nest(
                    "/live",
                    Group::new()
                        .before(|req: &mut Request| {
                            req.extensions_mut().insert(String::from("live"));
                            None
                        })
                        .ws(
                            "/rooms/:room",
                            |ws: &mut tine::WebSocket, ev: tine::WsEvent| {
                                if ev == tine::WsEvent::Open {
                                    let req = ws.request();
                                    let seen = req.extensions().get::<String>().cloned();
                                    let room = req.param("room").unwrap_or_default().to_string();
                                    ws.send_text(format!("{room} {}", seen.unwrap_or_default()));
                                }
                            },
                        ),
                ),
            )
            .after(|_: &Request, res: Response| res.with_header("x-app", "1"))
    });
    let upgrade = |key: bool| {
        let mut c = Client::connect(addr);
        let mut head = testkit::ws::upgrade_request("/api/live/rooms/r1");
        if key {
            head.splice(head.len() - 2..head.len() - 2, *b"X-Key: k\r\n");
        }
        c.send(&head);
        c
    };
    // Without the key, the outer group's hook refuses the handshake, and
    // the refusal goes through the groups' after-hooks and the app's.
    let r = upgrade(false).read_response();
    assert_eq!(r.status, 401);
    assert_eq!(
        (r.header("x-group"), r.header("x-app")),
        (Some("api"), Some("1"))
    );
    // With it, both groups' hooks ran before the handler saw the socket.
    let mut stream = upgrade(true).stream;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", head.escape_ascii());
    let (_, opcode, payload) = testkit::ws::read_frame(&mut stream).unwrap();
    assert_eq!((opcode, payload.as_slice()), (1, &b"r1 live"[..]));
    // A plain request to the path is told to upgrade, past the group's
    // hooks like its other answers.
    let r = send(
        &mut Client::connect(addr),
        "GET",
        "/api/live/rooms/r1",
        false,
    );
    assert_eq!(r.status, 401);
    let r = send(
        &mut Client::connect(addr),
        "GET",
        "/api/live/rooms/r1",
        true,
    );
    assert_eq!((r.status, r.header("upgrade")), (426, Some("websocket")));
}

/// A plain request with a body to a group's WebSocket route under a static
/// mount at `/` is admitted (before its body) as the WebSocket route's,
/// not the mount's: the group's before-hooks refuse it, once, rather than
/// the route's `426` telling an unauthenticated client the socket is there.
#[test]
fn a_body_to_a_websocket_path_under_a_mount_meets_the_groups_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().to_path_buf();
    let addr = serve(move || {
        let calls = Rc::new(Cell::new(0u32));
        let counted = calls.clone();
        App::new().static_dir("/", public).nest(
            "/live",
            Group::new()
                .before(move |req: &mut Request| {
                    counted.set(counted.get() + 1);
                    (req.header("x-key") != Some("k"))
                        .then(|| Response::error(StatusCode::UNAUTHORIZED))
                })
                .after(move |_: &Request, res: Response| {
                    res.with_header("x-hook-calls", calls.get().to_string())
                })
                .ws(
                    "/rooms/:room",
                    |_: &mut tine::WebSocket, _: tine::WsEvent| {},
                ),
        )
    });
    let post = |key: &str| {
        let mut c = Client::connect(addr);
        c.send(
            format!("GET /live/rooms/r1 HTTP/1.1\r\nHost: t\r\n{key}Content-Length: 3\r\n\r\nabc")
                .as_bytes(),
        );
        c.read_response()
    };
    let r = post("");
    assert_eq!((r.status, r.header("x-hook-calls")), (401, Some("1")));
    let r = post("X-Key: k\r\n");
    assert_eq!(
        (r.status, r.header("upgrade"), r.header("x-hook-calls")),
        (426, Some("websocket"), Some("2"))
    );
}

#[test]
fn a_websocket_route_conflict_that_nesting_makes_panics_at_the_nest_line() {
    let echo = |_: &mut tine::WebSocket, _: tine::WsEvent| {};
    let nest_line = line!() + 4;
    let err = catch_unwind(AssertUnwindSafe(|| {
        let _ = App::new()
            .ws("/api/ws", echo)
            .nest("/api", Group::new().ws("/ws", echo));
    }))
    .unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("\"/api/ws\""), "{msg}");
    assert!(msg.contains(&format!("groups.rs:{nest_line}")), "{msg}");
    assert_eq!(msg.matches("groups.rs:").count(), 2, "{msg}");
}

/// An upload route with its own large limit beside routes that keep the
/// app's 1 KiB, one of them behind an authenticating before-hook that
/// counts its calls.
fn limits_app(hook_calls: Rc<Cell<u32>>) -> App {
    let calls = hook_calls.clone();
    let private = Group::new()
        .max_body(1 << 20)
        .before(move |req: &mut Request| {
            calls.set(calls.get() + 1);
            (req.header("authorization") != Some("Bearer ok"))
                .then(|| Response::error(StatusCode::UNAUTHORIZED))
        })
        .post("/private", move |req: &Request| {
            format!("{} bytes, hook ran {}", req.body_len(), hook_calls.get())
        });
    App::new()
        .limits(Limits::default().max_body(1024).body_buffer(64 * 1024))
        .post("/json", |req: &Request| format!("{} bytes", req.body_len()))
        .merge(
            Group::new()
                .max_body(100 << 20)
                .post("/upload", |req: &Request| {
                    let mut hasher = 0u64;
                    let mut n = 0u64;
                    let mut reader = req.body_reader();
                    let mut buf = [0u8; 8192];
                    loop {
                        let got = reader.read(&mut buf).unwrap();
                        if got == 0 {
                            break;
                        }
                        n += got as u64;
                        hasher = buf[..got]
                            .iter()
                            .fold(hasher, |h, &b| h.wrapping_mul(31).wrapping_add(b as u64));
                    }
                    format!("{n} {} {hasher}", req.body_is_spilled())
                })
                // `body()` works for a spilled body too (read back whole).
                .post("/upload/whole", |req: &Request| {
                    let sum = req.body().iter().map(|&b| b as u64).sum::<u64>();
                    format!("{} {} {sum}", req.body().len(), req.body_is_spilled())
                }),
        )
        .merge(private)
}

fn post_head(path: &str, len: u64, extra: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n{extra}\r\n"
    )
    .into_bytes()
}

#[test]
fn body_limits_are_per_route_and_refused_before_the_body() {
    let addr = serve(|| limits_app(Rc::new(Cell::new(0))));

    // 100 MiB announced to a 1 KiB route: 413 at once, nothing sent, no
    // 100 Continue first.
    let mut c = Client::connect(addr);
    c.send(&post_head("/json", 100 << 20, ""));
    let r = c.read_response();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());

    // The same to the upload route: invited to send it.
    let mut c = Client::connect(addr);
    c.send(&post_head("/upload", 100 << 20, ""));
    assert_eq!(c.read_response().status, 100);

    // Over the upload route's own limit: 413, unread.
    let mut c = Client::connect(addr);
    c.send(&post_head("/upload", (100 << 20) + 1, ""));
    assert_eq!(c.read_response().status, 413);

    // Chunked bodies are held to the route's limit as they arrive.
    let mut c = Client::connect(addr);
    c.send(b"POST /json HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send(format!("800\r\n{}\r\n", "a".repeat(0x800)).as_bytes());
    assert_eq!(c.read_response().status, 413);
    let mut c = Client::connect(addr);
    c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send(format!("800\r\n{}\r\n0\r\n\r\n", "a".repeat(0x800)).as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("2048 false "), "{}", r.text());
}

#[test]
fn a_large_body_is_spilled_to_a_file_and_read_back_whole() {
    let addr = serve(|| limits_app(Rc::new(Cell::new(0))));
    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let expected = body
        .iter()
        .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(b as u64));
    for chunked in [false, true] {
        let mut c = Client::connect(addr);
        if chunked {
            c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
            for piece in body.chunks(100_000) {
                c.send(format!("{:x}\r\n", piece.len()).as_bytes());
                c.send(piece);
                c.send(b"\r\n");
            }
            c.send(b"0\r\n\r\n");
        } else {
            c.send(&post_head("/upload", body.len() as u64, ""));
            assert_eq!(c.read_response().status, 100);
            c.send(&body);
        }
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("{} true {expected}", body.len()));
        // The connection goes on.
        c.send(b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(c.read_response().text(), "3 bytes");
    }
    let mut c = Client::connect(addr);
    c.send(
        format!(
            "POST /upload/whole HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    let sum: u64 = body.iter().map(|&b| b as u64).sum();
    assert_eq!(
        c.read_response().text(),
        format!("{} true {sum}", body.len())
    );
}

#[test]
fn bodies_within_the_app_limit_stay_in_memory_by_default() {
    // No body_buffer set: it follows max_body, so a 3 MiB body allowed
    // app-wide is in memory, as before spilling existed.
    let addr = serve(|| {
        App::new()
            .limits(Limits::default().max_body(4 << 20))
            .post("/", |req: &Request| {
                format!("{} {}", req.body().len(), req.body_is_spilled())
            })
    });
    let mut c = Client::connect(addr);
    let body = vec![b'x'; 3 << 20];
    c.send(
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    assert_eq!(c.read_response().text(), format!("{} false", 3 << 20));
}

#[test]
fn before_hooks_run_once_before_the_body_and_can_refuse_it_unread() {
    let addr = serve(|| limits_app(Rc::new(Cell::new(0))));

    // Refused with a large body announced: 401 at once, no 100 Continue,
    // and the connection closes (the body was never read).
    let mut c = Client::connect(addr);
    c.send(&post_head("/private", 1 << 20, ""));
    let r = c.read_response();
    assert_eq!(r.status, 401);
    assert!(c.is_closed());

    // Refused with a small body already sent whole: it is dropped and the
    // connection goes on.
    let mut c = Client::connect(addr);
    c.send(b"POST /private HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab");
    assert_eq!(c.read_response().status, 401);
    c.send(b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(c.read_response().text(), "1 bytes");

    // Allowed: 100 Continue, then the answer; the hook ran once for this
    // request (three calls in all, counting the two refusals).
    let mut c = Client::connect(addr);
    c.send(&post_head("/private", 5, "Authorization: Bearer ok\r\n"));
    assert_eq!(c.read_response().status, 100);
    c.send(b"hello");
    assert_eq!(c.read_response().text(), "5 bytes, hook ran 3");
}

#[test]
fn a_before_hook_that_panics_at_admission_is_a_500_before_the_body() {
    let addr = serve(|| {
        App::new().merge(
            Group::new()
                .before(|req: &mut Request| {
                    if req.header("x-boom").is_some() {
                        panic!("deliberate panic in a group before-hook");
                    }
                    None
                })
                .after(|_: &Request, res: Response| res.with_header("x-group", "1"))
                .post("/p", |req: &Request| format!("{} bytes", req.body_len())),
        )
    });
    let mut c = Client::connect(addr);
    c.send(&post_head("/p", 1 << 20, "X-Boom: 1\r\n"));
    let r = c.read_response();
    assert_eq!(r.status, 500);
    // The group's after-hooks still ran on the error page.
    assert_eq!(r.header("x-group"), Some("1"));
    assert!(c.is_closed());
    // The process serves on.
    let mut c = Client::connect(addr);
    c.send(&post_head("/p", 2, ""));
    assert_eq!(c.read_response().status, 100);
    c.send(b"ok");
    assert_eq!(c.read_response().text(), "2 bytes");
}
