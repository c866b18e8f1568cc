//! The JSON API under `/api/todos`, and the JSON error bodies.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tine::{header, IntoResponse, Request, Response, StatusCode};

use crate::db::{self, Store};
use crate::live::notify_change;

/// The longest todo text accepted, in characters (Unicode scalar values).
pub(crate) const MAX_TEXT_CHARS: usize = 500;

/// The body of every error answer: `{"error": "..."}`.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// An error answer: a status and a message for the client, sent as JSON.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn no_such_todo(id: i64) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("no todo with id {id}"))
    }
}

/// `{"error": message}` with `status`.
pub(crate) fn error_json(status: StatusCode, message: &str) -> Response {
    let res = Response::json(&ErrorBody { error: message }).with_status(status);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return res.with_header(header::RETRY_AFTER, "1");
    }
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_json(self.status, &self.message)
    }
}

/// The request helpers' errors (400 for bad JSON, 415 for a body that is
/// not JSON), keeping their status and message.
impl From<tine::Error> for ApiError {
    fn from(err: tine::Error) -> Self {
        ApiError::new(err.status(), err.message())
    }
}

/// Database failures: a lock held by another connection past the busy
/// timeout is a 503 (try again), anything else a 500. The details go to
/// the log, not to the client.
impl From<rusqlite::Error> for ApiError {
    fn from(err: rusqlite::Error) -> Self {
        if db::is_busy(&err) {
            log::warn!("database busy: {err}");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database busy, try again")
        } else {
            log::error!("database error: {err}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "database error")
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// The body as a JSON object deserialized into `T`: not JSON is a 415,
/// anything but an object (serde would also take `["text"]` for a
/// struct), a field of the wrong type, missing or unknown, a 400.
fn json_object<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let object: serde_json::Map<String, serde_json::Value> = req.json()?;
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Runs `f` on this worker's database connection.
fn with_db<T>(
    req: &Request,
    f: impl FnOnce(&db::Db) -> rusqlite::Result<T>,
) -> Result<T, ApiError> {
    let store = req.state::<Store>().ok_or_else(|| {
        log::error!("no database store in the worker state");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "database not configured")
    })?;
    Ok(store.with(f)?)
}

/// The `:id` path capture as a row id: a positive integer, else a 400.
fn id_param(req: &Request) -> Result<i64, ApiError> {
    let raw = req.param("id").unwrap_or("");
    match raw.parse::<i64>() {
        Ok(id) if id > 0 && raw.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => Err(ApiError::bad_request(format!(
            "invalid id {raw:?}: expected a positive integer"
        ))),
    }
}

/// Trims `text` and checks it is neither empty nor too long.
fn valid_text(text: &str) -> Result<&str, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(ApiError::bad_request(format!(
            "text is too long: {chars} characters, at most {MAX_TEXT_CHARS}"
        )));
    }
    Ok(text)
}

/// `POST /api/todos` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTodo {
    text: String,
}

/// `PUT`/`PATCH /api/todos/:id` body: the fields to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TodoChanges {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    done: Option<bool>,
}

/// `GET /api/todos`: every todo, oldest first.
pub(crate) fn list(req: &Request) -> ApiResult {
    let todos = with_db(req, |db| db.list())?;
    Ok(Response::json(&todos))
}

/// `GET /api/todos/:id`.
pub(crate) fn get(req: &Request) -> ApiResult {
    let id = id_param(req)?;
    match with_db(req, |db| db.get(id))? {
        Some(todo) => Ok(Response::json(&todo)),
        None => Err(ApiError::no_such_todo(id)),
    }
}

/// `POST /api/todos` `{"text": "..."}`: 201 with the new todo.
pub(crate) fn create(req: &Request) -> ApiResult {
    let body: NewTodo = json_object(req)?;
    let text = valid_text(&body.text)?;
    let todo = with_db(req, |db| db.insert(text))?;
    notify_change();
    Ok(Response::json(&todo)
        .with_status(StatusCode::CREATED)
        .with_header(header::LOCATION, format!("/api/todos/{}", todo.id)))
}

/// `PUT` or `PATCH /api/todos/:id` `{"text"?: "...", "done"?: bool}`:
/// changes the fields given, at least one.
pub(crate) fn update(req: &Request) -> ApiResult {
    let id = id_param(req)?;
    let changes: TodoChanges = json_object(req)?;
    let text = changes.text.as_deref().map(valid_text).transpose()?;
    if text.is_none() && changes.done.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: send \"text\" and/or \"done\"",
        ));
    }
    match with_db(req, |db| db.update(id, text, changes.done))? {
        Some(todo) => {
            notify_change();
            Ok(Response::json(&todo))
        }
        None => Err(ApiError::no_such_todo(id)),
    }
}

/// `DELETE /api/todos/:id`: 204.
pub(crate) fn delete(req: &Request) -> ApiResult {
    let id = id_param(req)?;
    if with_db(req, |db| db.delete(id))? {
        notify_change();
        Ok(Response::empty(StatusCode::NO_CONTENT))
    } else {
        Err(ApiError::no_such_todo(id))
    }
}

/// Any other path under `/api/`, whatever the method: a JSON 404.
pub(crate) fn not_found(req: &Request) -> Response {
    error_json(
        StatusCode::NOT_FOUND,
        &format!("no such endpoint: {} {}", req.method(), req.path()),
    )
}

/// The body for the errors tine generates itself (404, 405, 413, ...),
/// through `App::errors`.
pub(crate) fn error_page(_req: Option<&Request>, status: StatusCode) -> Response {
    let message = match status {
        StatusCode::NOT_FOUND => "not found".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large".to_string(),
        other => other
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    };
    error_json(status, &message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tine::Method;

    fn id_of(raw: &str) -> Result<i64, ApiError> {
        id_param(&Request::builder(Method::GET, "/").param("id", raw).finish())
    }

    #[test]
    fn ids_are_positive_integers() {
        assert_eq!(id_of("42").unwrap(), 42);
        for bad in [
            "",
            "abc",
            "1.5",
            "-3",
            "+3",
            "0",
            " 1",
            "99999999999999999999",
        ] {
            assert_eq!(id_of(bad).unwrap_err().status, 400, "{bad:?}");
        }
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(valid_text("  milk \n").unwrap(), "milk");
        assert!(valid_text(" \t ").is_err());
        assert!(valid_text(&"é".repeat(MAX_TEXT_CHARS)).is_ok());
        assert!(valid_text(&"é".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }

    #[test]
    fn without_worker_state_a_500_not_a_panic() {
        let req = Request::builder(Method::GET, "/api/todos").finish();
        let res = list(&req).into_response();
        assert_eq!(res.status(), 500);
        assert_eq!(
            res.body_bytes().unwrap(),
            r#"{"error":"database not configured"}"#
        );
    }
}
