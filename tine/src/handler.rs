//! Handler and hook types, and the panic boundary around them.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use http::StatusCode;

use crate::http::{Request, Response};

/// A boxed request handler: any `Fn(&Request) -> impl IntoResponse`.
pub(crate) type Handler = Box<dyn Fn(&Request) -> Response>;
/// A before-hook: may annotate the request, or answer it early.
pub(crate) type Before = Box<dyn Fn(&mut Request) -> Option<Response>>;
/// An after-hook: maps every response the dispatcher produced.
pub(crate) type After = Box<dyn Fn(&Request, Response) -> Response>;
/// Renders an error status; `None` when no request could be parsed.
pub(crate) type ErrorHandler = Box<dyn Fn(Option<&Request>, StatusCode) -> Response>;

thread_local! {
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once per process, a panic hook that logs a handler's panic
/// through `log` (once, with its location) instead of printing it to
/// stderr; panics elsewhere go to the previous hook.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_HANDLER.with(Cell::get) {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-string panic payload)".to_string());
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                log::error!("handler panicked{at}: {msg}; answering 500");
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into `None`. The panic is logged once by the
/// hook above.
///
/// Calls nest (dispatch runs the error page inside its own `catch`), so the
/// flag is restored to what it was, not cleared: an inner `catch` must not
/// hand the rest of the outer one's panics to the default hook.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Option<R> {
    let outer = IN_HANDLER.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    IN_HANDLER.with(|c| c.set(outer));
    result.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_handler() -> bool {
        IN_HANDLER.with(Cell::get)
    }

    #[test]
    fn nested_catch_restores_the_outer_flag() {
        assert!(!in_handler());
        let seen = catch(|| {
            let inner = catch(in_handler);
            // A panicking inner call restores it too.
            let panicked = catch(|| -> () { panic!("inner") });
            (inner, panicked, in_handler())
        });
        assert_eq!(seen, Some((Some(true), None, true)));
        assert!(!in_handler());
    }
}
