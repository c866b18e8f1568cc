//! The JSON API, the front end and the live updates, driven with
//! `tine::test::TestClient`: the app as `main` builds it, on a temporary
//! database, without sockets or processes. What needs the real server
//! (several worker processes, a body refused before it is read) is
//! tested over TCP in `tests/api.rs`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tine::test::{TestClient, TestResponse};
use tine::WsEvent;

use crate::live::{CHANGED, TOPIC};
use crate::Settings;

/// The app on its own temporary database.
struct Todo {
    client: TestClient,
    db: PathBuf,
    _dir: tempfile::TempDir,
}

impl Todo {
    fn start() -> Todo {
        Todo::with_busy_timeout(Duration::from_secs(1))
    }

    fn with_busy_timeout(busy_timeout: Duration) -> Todo {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("todo.db");
        let settings = Settings {
            db: db.clone(),
            busy_timeout,
            static_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static")),
        };
        // Runs the app's on_worker_start: the SQLite connection is there.
        let client = TestClient::new(crate::app(settings));
        Todo {
            client,
            db,
            _dir: dir,
        }
    }

    fn create(&self, text: &str) -> Value {
        let res = self
            .client
            .post("/api/todos")
            .json(&json!({ "text": text }))
            .send();
        assert_eq!(res.status(), 201, "{}", res.text());
        json_body(&res)
    }

    fn list(&self) -> Value {
        json_body(&self.client.get("/api/todos").send())
    }
}

fn json_body(res: &TestResponse) -> Value {
    assert_eq!(
        res.header("content-type"),
        Some("application/json"),
        "{res:?}"
    );
    res.json()
}

/// Asserts `res` is `status` with a JSON `{"error": "..."}` body and
/// returns the message.
#[track_caller]
fn assert_error(res: &TestResponse, status: u16) -> String {
    assert_eq!(res.status(), status, "{}", res.text());
    let body = json_body(res);
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"));
    assert!(!message.is_empty());
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    message.to_string()
}

#[test]
fn create_list_get_update_delete() {
    let app = Todo::start();
    let c = &app.client;
    assert_eq!(app.list(), json!([]));

    let res = c
        .post("/api/todos")
        .json(&json!({"text": "  Buy milk  "}))
        .send();
    assert_eq!(res.status(), 201);
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

    assert_eq!(app.list(), json!([milk, dog]));
    let item = format!("/api/todos/{id}");
    assert_eq!(json_body(&c.get(&item).send()), milk);

    // PATCH and PUT are both partial updates.
    let res = c.patch(&item).json(&json!({"done": true})).send();
    assert_eq!(res.status(), 200);
    assert_eq!(
        json_body(&res),
        json!({"id": id, "text": "Buy milk", "done": true})
    );
    let res = c.put(&item).json(&json!({"text": "Buy oat milk"})).send();
    assert_eq!(
        json_body(&res),
        json!({"id": id, "text": "Buy oat milk", "done": true})
    );
    let res = c
        .patch(&item)
        .json(&json!({"text": "Buy milk", "done": false}))
        .send();
    assert_eq!(
        json_body(&res),
        json!({"id": id, "text": "Buy milk", "done": false})
    );

    let res = c.delete(&item).send();
    assert_eq!(res.status(), 204);
    assert!(res.bytes().is_empty());
    assert_eq!(app.list(), json!([dog]));

    // HEAD answers like GET, without the body.
    for path in ["/api/todos".to_string(), format!("/api/todos/{dog_id}")] {
        let res = c.head(&path).send();
        assert_eq!(res.status(), 200, "{path}");
        assert!(res.bytes().is_empty());
    }
}

#[test]
fn invalid_input_is_400_with_a_json_error() {
    let app = Todo::start();
    let c = &app.client;
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
        let res = c
            .request(method.parse().unwrap(), path)
            .header("content-type", "application/json")
            .body(body.clone())
            .send();
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
        let message = assert_error(&c.get(&path).send(), 400);
        assert!(message.contains("invalid id"), "{message}");
        let done = json!({"done": true});
        assert_error(&c.patch(&path).json(&done).send(), 400);
        assert_error(&c.put(&path).json(&done).send(), 400);
        assert_error(&c.delete(&path).send(), 400);
    }

    // A body that is not declared as JSON: 415.
    let res = c
        .post("/api/todos")
        .header("content-type", "text/plain")
        .body(r#"{"text":"a"}"#)
        .send();
    assert!(assert_error(&res, 415).contains("application/json"));
    let res = c.patch(&item).body(r#"{"done":true}"#).send();
    assert_error(&res, 415);

    // A body over tine's limit (1 MiB by default).
    let res = c.post("/api/todos").json(&"x".repeat(2 << 20)).send();
    assert_error(&res, 413);

    // Nothing was changed by any of it; the longest text is accepted.
    assert_eq!(app.list(), json!([{"id": id, "text": "x", "done": false}]));
    assert_eq!(app.create(&just_right)["text"], just_right.as_str());
}

#[test]
fn unknown_ids_and_routes_are_json_404s_and_wrong_methods_405s() {
    let app = Todo::start();
    let c = &app.client;
    let id = app.create("x")["id"].as_i64().unwrap();
    let gone = format!("/api/todos/{}", id + 1000);

    assert!(assert_error(&c.get(&gone).send(), 404).contains("no todo"));
    let done = json!({"done": true});
    assert_error(&c.patch(&gone).json(&done).send(), 404);
    assert_error(&c.put(&gone).json(&json!({"text": "y"})).send(), 404);
    assert_error(&c.delete(&gone).send(), 404);

    // Deleting twice: the second time there is nothing.
    let path = format!("/api/todos/{id}");
    assert_eq!(c.delete(&path).send().status(), 204);
    assert_error(&c.delete(&path).send(), 404);
    assert_error(&c.patch(&path).json(&done).send(), 404);

    // Unknown routes, under /api/ whatever the method, and elsewhere.
    assert_error(&c.get("/api/nope").send(), 404);
    assert_error(&c.post("/api/nope").json(&json!({})).send(), 404);
    assert_error(&c.get("/api/todos/1/extra").send(), 404);
    assert_error(&c.get("/api").send(), 404);
    assert_error(&c.get("/no-such-page.html").send(), 404);

    // Known paths, wrong methods: 405 with Allow; OPTIONS lists them.
    let res = c.delete("/api/todos").send();
    assert_error(&res, 405);
    assert_eq!(res.header("allow"), Some("GET, HEAD, POST, OPTIONS"));
    let res = c.post("/api/todos/1").json(&json!({})).send();
    assert_error(&res, 405);
    assert_eq!(
        res.header("allow"),
        Some("GET, HEAD, PUT, PATCH, DELETE, OPTIONS")
    );
    let res = c.options("/api/todos").send();
    assert_eq!(res.status(), 204);
    assert_eq!(res.header("allow"), Some("GET, HEAD, POST, OPTIONS"));
    assert_error(&c.post("/index.html").send(), 405);
}

#[test]
fn no_cache_keeps_an_api_answer() {
    let app = Todo::start();
    let c = &app.client;
    let id = app.create("x")["id"].as_i64().unwrap();
    for res in [
        c.get("/api/todos").send(),
        c.get(&format!("/api/todos/{id}")).send(),
        c.get("/api/nope").send(),
        c.delete("/api/todos").send(),
    ] {
        assert_eq!(
            res.header("cache-control"),
            Some("no-store"),
            "{}",
            res.status()
        );
    }
    // The front end is files, cached by their validators.
    assert_eq!(c.get("/").send().header("cache-control"), None);
}

#[test]
fn the_front_end_is_served() {
    let app = Todo::start();
    let res = app.client.get("/").send();
    assert_eq!(res.status(), 200);
    assert!(res.header("content-type").unwrap().starts_with("text/html"));
    assert!(res.text().contains(r#"<script src="app.js""#));
    assert!(res.header("etag").is_some());
    for (path, ty) in [
        ("/app.js", "javascript"),
        ("/style.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let res = app.client.get(path).send();
        assert_eq!(res.status(), 200, "{path}");
        assert!(res.header("content-type").unwrap().contains(ty), "{path}");
        assert!(!res.bytes().is_empty(), "{path}");
    }
}

#[test]
fn every_change_is_announced_to_the_live_socket_and_nothing_else_is() {
    let app = Todo::start();
    let c = &app.client;
    let mut ws = c.ws("/ws").unwrap();
    assert_eq!(ws.topics(), [TOPIC]);

    let id = app.create("milk")["id"].as_i64().unwrap();
    assert_eq!(ws.recv_text().as_deref(), Some(CHANGED));
    let item = format!("/api/todos/{id}");
    c.patch(&item).json(&json!({"done": true})).send();
    assert_eq!(ws.recv_text().as_deref(), Some(CHANGED));
    c.delete(&item).send();
    assert_eq!(ws.recv_text().as_deref(), Some(CHANGED));
    assert_eq!(c.take_published().len(), 3);

    // Reads and failures announce nothing.
    app.list();
    assert_error(&c.post("/api/todos").json(&json!({"text": ""})).send(), 400);
    assert_error(&c.delete(&item).send(), 404);
    assert_eq!(ws.recv(), None);
    assert!(c.take_published().is_empty());

    // Messages from the browser are ignored; its close is answered.
    ws.send_text("hello?");
    assert_eq!(ws.recv(), None);
    ws.close(1000, "bye");
    assert_eq!(
        ws.recv(),
        Some(WsEvent::Close {
            code: 1000,
            reason: "bye".into()
        })
    );
}

#[test]
fn a_locked_database_is_503_and_reads_go_on() {
    let app = Todo::with_busy_timeout(Duration::from_millis(200));
    let c = &app.client;
    app.create("before the lock");

    // Another connection holds the write lock longer than the busy timeout.
    let locker = rusqlite::Connection::open(&app.db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let res = c
        .post("/api/todos")
        .json(&json!({"text": "during the lock"}))
        .send();
    assert!(assert_error(&res, 503).contains("busy"));
    assert_eq!(res.header("retry-after"), Some("1"));
    let done = json!({"done": true});
    assert_error(&c.patch("/api/todos/1").json(&done).send(), 503);
    assert_error(&c.delete("/api/todos/1").send(), 503);
    // WAL: readers do not wait for the writer.
    assert_eq!(app.list().as_array().unwrap().len(), 1);

    locker.execute_batch("COMMIT").unwrap();
    app.create("after the lock");
    assert_eq!(app.list().as_array().unwrap().len(), 2);
}
