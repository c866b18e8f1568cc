//! [`Error`]: an HTTP error that carries its status and a message.
//!
//! Start-up failures (binding, a static root that cannot be opened, ...)
//! are plain `std::io::Error`s.

use std::fmt;

use http::StatusCode;

use crate::http::Response;

/// An error that becomes an HTTP answer: it carries the status to send and
/// a short message for the client.
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

    /// `404 Not Found` with a message.
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
