//! The API over real HTTP: the binary with 2 worker processes on a
//! temporary database, for what needs them (several processes on one
//! database, a body refused before it is read). The API's answers
//! themselves are tested without sockets, with `tine::test::TestClient`,
//! in `src/tests.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use testkit::{Client, Resp, ServerProcess};

/// A running app on its own temporary database.
struct App {
    server: ServerProcess,
    db: PathBuf,
    _dir: tempfile::TempDir,
}

impl App {
    fn start(extra: &[&str]) -> App {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("todo.db");
        let mut args = vec![
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--db",
            db.to_str().unwrap(),
            "--quiet",
        ];
        args.extend_from_slice(extra);
        let server = ServerProcess::start(env!("CARGO_BIN_EXE_todo"), &args);
        let app = App {
            server,
            db,
            _dir: dir,
        };
        // The workers create the schema after the fork; wait for one.
        assert!(testkit::wait_until(
            std::time::Duration::from_secs(10),
            || { app.get("/api/todos").status == 200 }
        ));
        app
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    fn get(&self, path: &str) -> Resp {
        testkit::get(self.addr(), path)
    }

    /// A request with a JSON body (`Content-Type: application/json`).
    fn send_json(&self, method: &str, path: &str, body: &str) -> Resp {
        self.send(method, path, Some("application/json"), body)
    }

    fn send(&self, method: &str, path: &str, content_type: Option<&str>, body: &str) -> Resp {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str("\r\n");
        let mut client = Client::connect(self.addr());
        client.send(head.as_bytes());
        client.send(body.as_bytes());
        if method == "HEAD" {
            client.read_head_response()
        } else {
            client.read_response()
        }
    }

    fn create(&self, text: &str) -> Value {
        let res = self.send_json("POST", "/api/todos", &json!({ "text": text }).to_string());
        assert_eq!(res.status, 201, "{}", res.text());
        json_body(&res)
    }
}

fn json_body(res: &Resp) -> Value {
    assert_eq!(
        res.header("content-type"),
        Some("application/json"),
        "{} {}",
        res.status,
        res.text()
    );
    serde_json::from_slice(&res.body).unwrap_or_else(|e| panic!("{e}: {}", res.text()))
}

/// Asserts `res` is `status` with a JSON `{"error": "..."}` body and
/// returns the message.
#[track_caller]
fn assert_error(res: &Resp, status: u16) -> String {
    assert_eq!(res.status, status, "{}", res.text());
    let body = json_body(res);
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"));
    assert!(!message.is_empty());
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    message.to_string()
}

fn side_connection(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn
}

#[test]
fn a_body_over_the_limit_is_refused_before_it_is_read() {
    let app = App::start(&[]);
    // Only the head is sent: the 413 comes without waiting for the body.
    let mut client = Client::connect(app.addr());
    client.send(
        b"POST /api/todos HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 2000000\r\n\r\n",
    );
    assert_error(&client.read_response(), 413);
    // The API and the front end answer over HTTP.
    assert_eq!(app.create("x")["text"], "x");
    assert_eq!(app.get("/").status, 200);
}

#[test]
fn a_failing_database_is_500_and_the_workers_go_on() {
    let app = App::start(&[]);
    app.create("x");
    // Break the schema under the running workers: every query now fails
    // (a worker that starts later keeps the broken table, too).
    let side = side_connection(&app.db);
    side.execute_batch(
        "DROP TABLE todos; CREATE TABLE todos (id INTEGER PRIMARY KEY, other TEXT);",
    )
    .unwrap();

    for _ in 0..4 {
        assert_eq!(assert_error(&app.get("/api/todos"), 500), "database error");
        assert_error(&app.send_json("POST", "/api/todos", r#"{"text":"y"}"#), 500);
        assert_error(
            &app.send_json("PATCH", "/api/todos/1", r#"{"done":true}"#),
            500,
        );
    }
    // Validation still comes first, and the rest of the app still serves.
    assert_error(&app.send_json("POST", "/api/todos", r#"{"text":""}"#), 400);
    assert_eq!(app.get("/").status, 200);
}

#[test]
fn every_worker_sees_every_write() {
    let app = App::start(&[]);
    // Fresh connections spread over both workers.
    let ids: Vec<i64> = (0..20)
        .map(|i| app.create(&format!("item {i}"))["id"].as_i64().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 20, "ids are unique: {ids:?}");
    for _ in 0..10 {
        let list = json_body(&app.get("/api/todos"));
        assert_eq!(list.as_array().unwrap().len(), 20);
    }
    // Keep-alive: several requests on one connection.
    let mut client = Client::connect(app.addr());
    for _ in 0..5 {
        assert_eq!(client.get("/api/todos").status, 200);
    }
}
