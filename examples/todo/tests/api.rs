//! The JSON API over HTTP: the real binary with 2 worker processes on a
//! temporary database, every status the API answers.

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
fn create_list_get_update_delete() {
    let app = App::start(&[]);
    assert_eq!(json_body(&app.get("/api/todos")), json!([]));

    let res = app.send_json("POST", "/api/todos", r#"{"text":"  Buy milk  "}"#);
    assert_eq!(res.status, 201);
    let milk = json_body(&res);
    assert_eq!(milk["text"], "Buy milk", "text is trimmed");
    assert_eq!(milk["done"], false);
    let id = milk["id"].as_i64().unwrap();
    assert_eq!(
        res.header("location"),
        Some(format!("/api/todos/{id}").as_str())
    );
    let dog = app.create("Walk the dög 🐕");
    assert_eq!(dog["text"], "Walk the dög 🐕");
    let dog_id = dog["id"].as_i64().unwrap();

    assert_eq!(json_body(&app.get("/api/todos")), json!([milk, dog]));
    assert_eq!(json_body(&app.get(&format!("/api/todos/{id}"))), milk);

    // PATCH and PUT are both partial updates.
    let res = app.send_json("PATCH", &format!("/api/todos/{id}"), r#"{"done":true}"#);
    assert_eq!(res.status, 200);
    assert_eq!(
        json_body(&res),
        json!({"id": id, "text": "Buy milk", "done": true})
    );
    let res = app.send_json(
        "PUT",
        &format!("/api/todos/{id}"),
        r#"{"text":"Buy oat milk"}"#,
    );
    assert_eq!(
        json_body(&res),
        json!({"id": id, "text": "Buy oat milk", "done": true})
    );
    let res = app.send_json(
        "PATCH",
        &format!("/api/todos/{id}"),
        r#"{"text":"Buy milk","done":false}"#,
    );
    assert_eq!(
        json_body(&res),
        json!({"id": id, "text": "Buy milk", "done": false})
    );

    let res = app.send("DELETE", &format!("/api/todos/{id}"), None, "");
    assert_eq!(res.status, 204);
    assert!(res.body.is_empty());
    assert_eq!(json_body(&app.get("/api/todos")), json!([dog]));

    // HEAD answers like GET, without the body.
    let res = app.send("HEAD", "/api/todos", None, "");
    assert_eq!(res.status, 200);
    let res = app.send("HEAD", &format!("/api/todos/{dog_id}"), None, "");
    assert_eq!(res.status, 200);
}

#[test]
fn invalid_input_is_400_with_a_json_error() {
    let app = App::start(&[]);
    let id = app.create("x")["id"].as_i64().unwrap();
    let item = format!("/api/todos/{id}");

    let too_long = "é".repeat(501);
    let just_right = "é".repeat(500);
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("POST", "/api/todos", r#"{"text":""}"#.into(), "empty"),
        ("POST", "/api/todos", r#"{"text":" \n\t "}"#.into(), "empty"),
        (
            "POST",
            "/api/todos",
            json!({ "text": too_long }).to_string(),
            "too long",
        ),
        ("POST", "/api/todos", r#"{"text":"#.into(), "invalid JSON"),
        ("POST", "/api/todos", "".into(), "invalid JSON"),
        ("POST", "/api/todos", "not json".into(), "invalid JSON"),
        ("POST", "/api/todos", r#"{"text":5}"#.into(), "invalid type"),
        (
            "POST",
            "/api/todos",
            r#"{"text":null}"#.into(),
            "invalid type",
        ),
        ("POST", "/api/todos", r#"["text"]"#.into(), "invalid"),
        ("POST", "/api/todos", r#"{}"#.into(), "missing field"),
        (
            "POST",
            "/api/todos",
            r#"{"text":"a","colour":"red"}"#.into(),
            "unknown field",
        ),
        ("PATCH", &item, r#"{"done":"yes"}"#.into(), "invalid type"),
        ("PATCH", &item, r#"{"done":1}"#.into(), "invalid type"),
        ("PUT", &item, r#"{"text":false}"#.into(), "invalid type"),
        ("PATCH", &item, r#"{"text":""}"#.into(), "empty"),
        (
            "PUT",
            &item,
            json!({ "text": too_long }).to_string(),
            "too long",
        ),
        ("PATCH", &item, r#"{}"#.into(), "nothing to change"),
        (
            "PATCH",
            &item,
            r#"{"done":null}"#.into(),
            "nothing to change",
        ),
        ("PATCH", &item, r#"{"id":7}"#.into(), "unknown field"),
        ("PATCH", &item, "{".into(), "invalid JSON"),
    ];
    for (method, path, body, expected) in &cases {
        let res = app.send_json(method, path, body);
        let message = assert_error(&res, 400);
        assert!(
            message.contains(expected),
            "{method} {path} {body}: {message:?} should mention {expected:?}"
        );
    }

    // Non-numeric (or non-positive) ids, whatever the method.
    for bad in [
        "abc",
        "1.5",
        "-3",
        "0",
        "1e3",
        "99999999999999999999",
        "%201",
    ] {
        let path = format!("/api/todos/{bad}");
        let message = assert_error(&app.get(&path), 400);
        assert!(message.contains("invalid id"), "{message}");
        assert_error(&app.send_json("PATCH", &path, r#"{"done":true}"#), 400);
        assert_error(&app.send_json("PUT", &path, r#"{"done":true}"#), 400);
        assert_error(&app.send("DELETE", &path, None, ""), 400);
    }

    // A body that is not declared as JSON: 415.
    let res = app.send("POST", "/api/todos", Some("text/plain"), r#"{"text":"a"}"#);
    assert!(assert_error(&res, 415).contains("application/json"));
    let res = app.send("PATCH", &item, None, r#"{"done":true}"#);
    assert_error(&res, 415);

    // A body over tine's limit (1 MiB by default), refused before it is read.
    let mut client = Client::connect(app.addr());
    client.send(
        b"POST /api/todos HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 2000000\r\n\r\n",
    );
    assert_error(&client.read_response(), 413);

    // Nothing was changed by any of it; the longest text is accepted.
    assert_eq!(
        json_body(&app.get("/api/todos")),
        json!([{"id": id, "text": "x", "done": false}])
    );
    assert_eq!(app.create(&just_right)["text"], just_right.as_str());
}

#[test]
fn unknown_ids_and_routes_are_json_404s_and_wrong_methods_405s() {
    let app = App::start(&[]);
    let id = app.create("x")["id"].as_i64().unwrap();
    let gone = format!("/api/todos/{}", id + 1000);

    assert!(assert_error(&app.get(&gone), 404).contains("no todo"));
    assert_error(&app.send_json("PATCH", &gone, r#"{"done":true}"#), 404);
    assert_error(&app.send_json("PUT", &gone, r#"{"text":"y"}"#), 404);
    assert_error(&app.send("DELETE", &gone, None, ""), 404);

    // Deleting twice: the second time there is nothing.
    let path = format!("/api/todos/{id}");
    assert_eq!(app.send("DELETE", &path, None, "").status, 204);
    assert_error(&app.send("DELETE", &path, None, ""), 404);
    assert_error(&app.send_json("PATCH", &path, r#"{"done":true}"#), 404);

    // Unknown routes, under /api/ whatever the method, and elsewhere.
    assert_error(&app.get("/api/nope"), 404);
    assert_error(&app.send_json("POST", "/api/nope", "{}"), 404);
    assert_error(&app.get("/api/todos/1/extra"), 404);
    assert_error(&app.get("/api"), 404);
    assert_error(&app.get("/no-such-page.html"), 404);

    // Known paths, wrong methods: 405 with Allow; OPTIONS lists them.
    let res = app.send("DELETE", "/api/todos", None, "");
    assert_error(&res, 405);
    assert_eq!(res.header("allow"), Some("GET, HEAD, POST"));
    let res = app.send_json("POST", "/api/todos/1", "{}");
    assert_error(&res, 405);
    assert_eq!(res.header("allow"), Some("GET, HEAD, PUT, PATCH, DELETE"));
    let res = app.send("OPTIONS", "/api/todos", None, "");
    assert_eq!(res.status, 204);
    assert_eq!(res.header("allow"), Some("GET, HEAD, POST"));
    let res = app.send("POST", "/index.html", None, "");
    assert_error(&res, 405);
}

#[test]
fn the_front_end_is_served() {
    let app = App::start(&[]);
    let res = app.get("/");
    assert_eq!(res.status, 200);
    assert!(res.header("content-type").unwrap().starts_with("text/html"));
    assert!(res.text().contains(r#"<script src="app.js""#));
    assert!(res.header("etag").is_some());
    for (path, ty) in [
        ("/app.js", "javascript"),
        ("/style.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let res = app.get(path);
        assert_eq!(res.status, 200, "{path}");
        assert!(res.header("content-type").unwrap().contains(ty), "{path}");
    }
}

#[test]
fn a_locked_database_is_503_and_reads_go_on() {
    let app = App::start(&["--busy-timeout-ms", "200"]);
    app.create("before the lock");

    // Another process holds the write lock longer than the busy timeout.
    let locker = side_connection(&app.db);
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let res = app.send_json("POST", "/api/todos", r#"{"text":"during the lock"}"#);
    assert!(assert_error(&res, 503).contains("busy"));
    assert_eq!(res.header("retry-after"), Some("1"));
    assert_error(
        &app.send_json("PATCH", "/api/todos/1", r#"{"done":true}"#),
        503,
    );
    assert_error(&app.send("DELETE", "/api/todos/1", None, ""), 503);
    // WAL: readers do not wait for the writer.
    let list = json_body(&app.get("/api/todos"));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    locker.execute_batch("COMMIT").unwrap();
    app.create("after the lock");
    let list = json_body(&app.get("/api/todos"));
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
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
