//! [`ServeError`]: why a server could not start or stopped with an error,
//! readable in one line however it is printed.

use std::fmt;
use std::io;

/// Why [`App::bind`](crate::App::bind), [`App::serve`](crate::App::serve)
/// or [`Server::run`](crate::Server::run) failed: an address in use, a bad
/// `TINE_WORKERS`, a worker start-up that panicked, ...
///
/// Its `Debug` prints the same one line as its `Display`, so a `main` that
/// returns it tells the operator what went wrong rather than dumping a
/// structure (an `io::Error`'s `Debug` prints `Custom { kind: AddrInUse,
/// error: "..." }`, and it cannot be changed):
///
/// ```no_run
/// fn main() -> Result<(), tine::ServeError> {
///     tine::App::new()
///         .get("/", |_: &tine::Request| "Hello, World!")
///         .serve("127.0.0.1:8080")
/// }
/// // With the port taken, this prints one line and exits with status 1:
/// // Error: tine: cannot bind 127.0.0.1:8080: address already in use
/// ```
///
/// Every message names tine: an error from the system (`Too many open
/// files`) is shown as `tine: Too many open files (os error 24)`.
///
/// It converts into the [`io::Error`] behind it (the same kind, and the
/// message without that prefix), so `?` still works in a function
/// returning `io::Result`, and the I/O error is there for code that
/// matches on the kind:
///
/// ```
/// use std::io;
///
/// fn start() -> io::Result<()> {
///     let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
///     let err = tine::App::new().bind(busy.local_addr()?).unwrap_err();
///     assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
///     assert_eq!(format!("{err:?}"), err.to_string());
///     Err(err)?
/// }
/// assert!(start().is_err());
/// ```
pub struct ServeError {
    inner: io::Error,
}

impl ServeError {
    /// The kind of the I/O error behind it.
    pub fn kind(&self) -> io::ErrorKind {
        self.inner.kind()
    }

    /// The I/O error behind it.
    pub fn io_error(&self) -> &io::Error {
        &self.inner
    }

    /// Takes the I/O error behind it.
    pub fn into_io_error(self) -> io::Error {
        self.inner
    }
}

impl From<io::Error> for ServeError {
    fn from(inner: io::Error) -> Self {
        ServeError { inner }
    }
}

impl From<ServeError> for io::Error {
    fn from(err: ServeError) -> Self {
        err.inner
    }
}

/// The message, naming tine: tine's own errors do already; an error from
/// the system (`Too many open files`) gets the `tine: ` prefix, so that a
/// program printing it says whose error it is.
impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.inner.to_string();
        if text.starts_with("tine:") {
            f.write_str(&text)
        } else {
            write!(f, "tine: {text}")
        }
    }
}

/// The message, as `Display` writes it: this is what `main` prints when it
/// returns the error.
impl fmt::Debug for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_the_one_line_message() {
        let err = ServeError::from(io::Error::new(
            io::ErrorKind::AddrInUse,
            "tine: cannot bind 127.0.0.1:1: address already in use",
        ));
        assert_eq!(
            format!("{err:?}"),
            "tine: cannot bind 127.0.0.1:1: address already in use"
        );
        assert_eq!(format!("{err:?}"), err.to_string());
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let back: io::Error = err.into();
        assert_eq!(back.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            back.to_string(),
            "tine: cannot bind 127.0.0.1:1: address already in use"
        );
        // An OS error reads as the OS says it, still on one line, and
        // names tine.
        let err = ServeError::from(io::Error::from_raw_os_error(libc_eacces()));
        assert!(!format!("{err:?}").contains('\n'));
        assert!(!format!("{err:?}").contains("Os {"));
        assert!(err.to_string().starts_with("tine: "), "{err}");
        assert!(!err.to_string().starts_with("tine: tine:"), "{err}");
        assert_eq!(err.io_error().raw_os_error(), Some(libc_eacces()));
    }

    /// EACCES, the same number on every platform tine builds for.
    fn libc_eacces() -> i32 {
        13
    }
}
