//! Errors that become HTTP answers: a status and a body for the client.

use std::fmt;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use serde::Serialize;

use crate::http::{Body, Response};

/// An error that becomes an HTTP answer: it carries the status to send and
/// what the client gets: a short plain-text message ([`Error::new`]), a
/// JSON body ([`Error::json`]) or a whole response of your own
/// ([`Error::response`], or `From<Response>`), so an API's error shape is
/// written once and every handler returns it with `?`.
///
/// An `Error` is the app's own answer, not an error page: it is sent as it
/// is, and the [`errors`](crate::App::errors) handler does not replace it
/// (it would lose the body; use [`Response::error`](crate::Response::error)
/// for a page rendered by the error handler, or wrap one with
/// [`Error::response`], which keeps it an error page). After-hooks and the
/// request log see it like any response.
///
/// Handlers that return `Result<Response, tine::Error>` can use `?` on the
/// request helpers ([`Request::json`](crate::Request::json),
/// [`Request::form`](crate::Request::form), ...), whose failures already carry
/// the right status (400, 415, ...).
///
/// `Error` is `Send + Sync + Clone`, like other error types, so it also
/// travels inside `Box<dyn std::error::Error + Send + Sync>` or `anyhow`.
///
/// ```
/// use tine::{Error, StatusCode};
/// let err = Error::new(StatusCode::CONFLICT, "name taken");
/// assert_eq!(err.status(), StatusCode::CONFLICT);
/// assert_eq!(err.to_string(), "409 Conflict: name taken");
/// ```
#[derive(Debug, Clone)]
pub struct Error {
    status: StatusCode,
    /// What `Display` and [`Error::message`] show: the plain-text body, or
    /// the text of a custom body.
    message: String,
    /// A body other than the plain-text message: `None` for the common
    /// case, which stays one small allocation.
    custom: Option<Box<Custom>>,
}

/// A custom error body, with its headers. Kept as parts (not a `Response`,
/// whose streamed and file bodies are neither `Send` nor `Clone`) so that
/// `Error` stays an ordinary error type.
#[derive(Debug, Clone)]
struct Custom {
    headers: HeaderMap,
    body: Bytes,
    /// Rendered by the app's error handler, like [`Response::error`].
    error_page: bool,
}

impl Error {
    /// An error answered with `status` and `message` as a plain-text body.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
            custom: None,
        }
    }

    /// `400 Bad Request` with a message.
    ///
    /// ```
    /// let err = tine::Error::bad_request("page must be a number");
    /// assert_eq!(err.status(), 400);
    /// ```
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::new(StatusCode::BAD_REQUEST, message)
    }

    /// `404 Not Found` with a message (sent as the body; see above).
    ///
    /// ```
    /// let err = tine::Error::not_found("no such user");
    /// assert_eq!(err.to_string(), "404 Not Found: no such user");
    /// ```
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(StatusCode::NOT_FOUND, message)
    }

    /// An error answered with `status` and `value` as a JSON body
    /// (`Content-Type: application/json`): write an API's error shape
    /// once, in a function every handler calls. If `value` cannot be
    /// serialized the answer is a `500` (logged), as with
    /// [`Response::json`].
    ///
    /// ```
    /// use serde_json::json;
    /// use tine::{App, Error, Request, Response, StatusCode};
    ///
    /// fn api_error(status: StatusCode, message: &str) -> Error {
    ///     Error::json(status, &json!({ "error": message }))
    /// }
    ///
    /// fn user(req: &Request) -> Result<Response, Error> {
    ///     let id: u32 = req.param("id").unwrap_or("").parse()
    ///         .map_err(|_| api_error(StatusCode::BAD_REQUEST, "id must be a number"))?;
    ///     Err(api_error(StatusCode::NOT_FOUND, &format!("no user {id}")))
    /// }
    ///
    /// let client = tine::test::TestClient::new(App::new().get("/users/:id", user));
    /// let res = client.get("/users/x").send();
    /// assert_eq!(res.status(), 400);
    /// assert_eq!(res.header("content-type"), Some("application/json"));
    /// assert_eq!(res.text(), r#"{"error":"id must be a number"}"#);
    /// ```
    pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Self {
        Error::response(Response::json(value).with_status(status))
    }

    /// An error answered with `res`, status, headers and body, as it is.
    /// A [`Response::error`] (or `not_found`, `bad_request`) stays an error
    /// page, rendered by the app's [`errors`](crate::App::errors) handler.
    ///
    /// The body must be in memory (`text`, `json`, `html`, `bytes`,
    /// `empty`): an `Error` is `Send` and `Clone`, which a streamed or file
    /// body is not. Such a body is dropped, with a warning in the log, and
    /// the error becomes the error page for its status.
    ///
    /// ```
    /// use tine::{Error, Response, StatusCode};
    /// let err = Error::response(
    ///     Response::text("log in first")
    ///         .with_status(StatusCode::UNAUTHORIZED)
    ///         .with_header("www-authenticate", "Bearer"),
    /// );
    /// assert_eq!(err.status(), 401);
    /// assert_eq!(err.message(), "log in first");
    /// let res = Response::from(err);
    /// assert_eq!(res.headers()["www-authenticate"], "Bearer");
    /// ```
    pub fn response(mut res: Response) -> Self {
        let status = res.status;
        let error_page = res.error_page;
        let headers = std::mem::take(res.headers_mut());
        let (body, error_page) = match std::mem::replace(&mut res.body, Body::Empty) {
            Body::Empty => (Bytes::new(), error_page),
            Body::Full(b) => (b, error_page),
            Body::Vec(v) => (Bytes::from(v), error_page),
            Body::Stream(_) | Body::File(_) | Body::Sse(_) => {
                log::warn!(
                    "tine::Error::response: a streamed or file body cannot be carried by an \
                     Error; answering the error page for {status}"
                );
                (Bytes::new(), true)
            }
        };
        let message = match std::str::from_utf8(&body) {
            Ok(text) if !text.is_empty() => text.to_string(),
            _ => status.canonical_reason().unwrap_or("error").to_string(),
        };
        Error {
            status,
            message,
            custom: Some(Box::new(Custom {
                headers,
                body,
                error_page,
            })),
        }
    }

    /// Adds a header to the answer, such as `WWW-Authenticate` or
    /// `Retry-After`: appended, or in place of the one there for the fields
    /// a response has once (`Content-Type`, `Retry-After`, ...: see
    /// [`Response::with_header`]). Panics, pointing at the caller, if the
    /// name or value is invalid.
    ///
    /// ```
    /// use tine::{Error, Response, StatusCode};
    /// let err = Error::new(StatusCode::SERVICE_UNAVAILABLE, "busy").with_header("retry-after", "1");
    /// assert_eq!(Response::from(err).headers()["retry-after"], "1");
    /// ```
    #[track_caller]
    pub fn with_header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: fmt::Debug,
        V: TryInto<HeaderValue>,
        V::Error: fmt::Debug,
    {
        let name = name.try_into().expect("invalid header name");
        let value = value.try_into().expect("invalid header value");
        let message = &self.message;
        let custom = self.custom.get_or_insert_with(|| {
            let mut headers = HeaderMap::with_capacity(2);
            headers.insert(header::CONTENT_TYPE, TEXT);
            Box::new(Custom {
                headers,
                body: Bytes::from(message.clone()),
                error_page: false,
            })
        });
        crate::http::add_header(&mut custom.headers, name, value);
        self
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message: the plain-text body, or the text of a custom body
    /// (the status's reason phrase when that body is empty or not UTF-8).
    pub fn message(&self) -> &str {
        &self.message
    }
}

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for Response {
    fn from(err: Error) -> Response {
        match err.custom {
            None => Response::text(err.message).with_status(err.status),
            Some(custom) => {
                let Custom {
                    headers,
                    body,
                    error_page,
                } = *custom;
                let mut res = Response::empty(err.status);
                res.set_headers(headers);
                if !body.is_empty() {
                    res.body = Body::Full(body);
                }
                res.error_page = error_page;
                res
            }
        }
    }
}

/// [`Error::response`]: handlers and helpers can turn any in-memory
/// response into an error (`Err(res.into())`, or `?` on a
/// `Result<_, Response>`).
///
/// ```
/// use tine::{Error, Response, StatusCode};
/// fn check(n: u32) -> Result<u32, Response> {
///     if n > 10 {
///         return Err(Response::text("too big").with_status(StatusCode::UNPROCESSABLE_ENTITY));
///     }
///     Ok(n)
/// }
/// fn handler(n: u32) -> Result<Response, Error> {
///     let n = check(n)?;
///     Ok(Response::text(n.to_string()))
/// }
/// assert_eq!(handler(11).unwrap_err().status(), 422);
/// ```
impl From<Response> for Error {
    fn from(res: Response) -> Error {
        Error::response(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync_clone<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn stays_an_ordinary_error_type() {
        send_sync_clone::<Error>();
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(Error::bad_request("x"));
        assert_eq!(boxed.to_string(), "400 Bad Request: x");
    }

    #[test]
    fn bodies_and_pages() {
        let res = Response::from(Error::json(StatusCode::CONFLICT, &["taken"]));
        assert_eq!(res.status(), 409);
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(res.body_bytes().unwrap(), r#"["taken"]"#);
        assert!(!res.error_page);

        let page = Response::from(Error::from(
            Response::error(StatusCode::FORBIDDEN).with_header("x-why", "role"),
        ));
        assert!(page.error_page);
        assert_eq!(page.status(), 403);
        assert_eq!(page.headers()["x-why"], "role");

        // A streamed body cannot travel in an Error: the error page instead.
        let err = Error::from(Response::stream(["a"]).with_status(StatusCode::BAD_GATEWAY));
        assert_eq!(err.message(), "Bad Gateway");
        let res = Response::from(err);
        assert!(res.error_page);
        assert_eq!(res.status(), 502);

        let res = Response::from(Error::not_found("nope").with_header("x-a", "1"));
        assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(res.headers()["x-a"], "1");
        assert_eq!(res.body_bytes().unwrap(), "nope");

        // A type given to the message replaces the text one: one type.
        let res = Response::from(
            Error::bad_request("<b>no</b>").with_header("content-type", "text/html"),
        );
        let types: Vec<_> = res.headers().get_all("content-type").iter().collect();
        assert_eq!(types, ["text/html"]);
    }
}
