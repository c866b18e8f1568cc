//! `tine::Error` with a body of the app's own (JSON, a whole response),
//! over real TCP: sent as it is through the one dispatch path, with the
//! after-hooks and the request log seeing it; an error page wrapped in an
//! `Error` is still rendered by the `errors` handler.

mod support;

use std::net::SocketAddr;

use serde_json::json;
use support::Client;
use testkit::logs;
use tine::{App, Error, Request, Response, StatusCode};

/// The API's error shape, written once.
fn api_error(status: StatusCode, message: &str) -> Error {
    Error::json(status, &json!({ "error": message }))
}

fn app() -> App {
    App::new()
        .get("/users/:id", |req: &Request| -> Result<Response, Error> {
            let id: u32 = req
                .param("id")
                .unwrap_or("")
                .parse()
                .map_err(|_| api_error(StatusCode::BAD_REQUEST, "id must be a number"))?;
            Err(api_error(StatusCode::NOT_FOUND, &format!("no user {id}")))
        })
        .get("/slow-down", |_: &Request| -> Result<Response, Error> {
            Err(Error::response(
                Response::text("slow down")
                    .with_status(StatusCode::TOO_MANY_REQUESTS)
                    .with_header("retry-after", "3"),
            ))
        })
        .get("/forbidden", |_: &Request| -> Result<Response, Error> {
            // `?` on a Result<_, Response>: From<Response> for Error.
            let denied: Result<(), Response> = Err(Response::error(StatusCode::FORBIDDEN));
            denied?;
            Ok(Response::text("unreachable"))
        })
        .get("/busy", |_: &Request| -> Result<Response, Error> {
            Err(Error::new(StatusCode::SERVICE_UNAVAILABLE, "busy").with_header("retry-after", "1"))
        })
        .before(|req: &mut Request| {
            (req.header("authorization") == Some("bad"))
                .then(|| api_error(StatusCode::UNAUTHORIZED, "bad token").into())
        })
        .after(|_: &Request, res: Response| res.with_header("x-request-id", "rid-9"))
        .errors(|_, status| Response::text(format!("page {}", status.as_u16())))
        .log_requests()
}

fn start() -> SocketAddr {
    logs::capture();
    support::serve(app)
}

fn access_logged(line: &str) -> bool {
    logs::matching(line)
        .iter()
        .any(|l| l.contains("tine::access"))
}

#[test]
fn json_errors_are_sent_as_they_are_with_hooks_and_log() {
    let addr = start();
    let mut c = Client::connect(addr);
    let r = c.get("/users/abc");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), r#"{"error":"id must be a number"}"#);
    assert_eq!(r.header("x-request-id"), Some("rid-9"));
    // Same connection, kept alive: the framing of an error body is right.
    let r = c.get("/users/7");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), r#"{"error":"no user 7"}"#, "not the error page");
    assert_eq!(r.header("x-request-id"), Some("rid-9"));
    assert!(access_logged("GET /users/abc 400"));
    assert!(access_logged("GET /users/7 404"));
}

#[test]
fn whole_responses_and_error_pages_inside_errors() {
    let addr = start();
    let mut c = Client::connect(addr);
    let r = c.get("/slow-down");
    assert_eq!((r.status, r.text().as_str()), (429, "slow down"));
    assert_eq!(r.header("retry-after"), Some("3"));
    assert_eq!(r.header("x-request-id"), Some("rid-9"));
    // An error page stays one: the errors handler renders it.
    let r = c.get("/forbidden");
    assert_eq!((r.status, r.text().as_str()), (403, "page 403"));
    assert_eq!(r.header("x-request-id"), Some("rid-9"));
    let r = c.get("/busy");
    assert_eq!((r.status, r.text().as_str()), (503, "busy"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(access_logged("GET /slow-down 429"));
    assert!(access_logged("GET /forbidden 403"));
}

#[test]
fn a_before_hook_answers_with_an_error() {
    let addr = start();
    let mut c = Client::connect(addr);
    c.send(b"GET /users/1 HTTP/1.1\r\nHost: t\r\nAuthorization: bad\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), r#"{"error":"bad token"}"#);
    assert_eq!(r.header("x-request-id"), Some("rid-9"));
}
