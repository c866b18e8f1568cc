//! Errors that become HTTP answers: a status and a message for the client.

use std::fmt;

use http::StatusCode;

use crate::http::Response;

/// An error that becomes an HTTP answer: it carries the status to send and
/// a short message for the client.
///
/// The message is the body, sent as it is: an `Error` is the app's own
/// answer, not an error page, so the [`errors`](crate::App::errors)
/// handler does not replace it (it would lose the message; use
/// [`Response::error`](crate::Response::error) for a page rendered by the
/// error handler). After-hooks see it like any response.
///
/// Handlers that return `Result<Response, tine::Error>` can use `?` on the
/// request helpers ([`Request::json`](crate::Request::json),
/// [`Request::form`](crate::Request::form), ...), whose failures already carry
/// the right status (400, 415, ...).
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
    message: String,
}

impl Error {
    /// An error answered with `status` and `message` as a plain-text body.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
        }
    }

    /// `400 Bad Request` with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::new(StatusCode::BAD_REQUEST, message)
    }

    /// `404 Not Found` with a message (sent as the body; see above).
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(StatusCode::NOT_FOUND, message)
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message sent to the client.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for Response {
    fn from(err: Error) -> Response {
        Response::text(err.message).with_status(err.status)
    }
}
