//! Handler and hook types, and the panic boundary around user code.
//!
//! Every piece of application code tine calls runs inside [`catch`] (or
//! [`catch_in`], which names what runs): handlers, before- and after-hooks,
//! the `errors` handler, WebSocket callbacks, `Response::stream` iterators
//! and worker-init hooks. A panic there is logged once, through `log`, with
//! its location, and the caller decides what the request gets instead (a
//! 500, a cut-off response, a 1011 close, a worker that exits); the process
//! serves on.

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

/// What user code is running, for the panic log line: what it is, and
/// what happens instead.
#[derive(Debug)]
pub(crate) struct Site {
    pub(crate) what: &'static str,
    pub(crate) then: &'static str,
}

/// A handler or hook answering a request.
pub(crate) static HANDLER: Site = Site {
    what: "handler",
    then: "answering 500",
};
/// The `errors` handler rendering an error page.
pub(crate) static ERROR_PAGE: Site = Site {
    what: "error handler",
    then: "sending the plain error page",
};
/// A `Response::stream` iterator producing the body.
pub(crate) static STREAM: Site = Site {
    what: "response stream",
    then: "cutting the response off and closing the connection",
};
/// A WebSocket handler.
pub(crate) static WS_HANDLER: Site = Site {
    what: "websocket handler",
    then: "closing with 1011",
};
/// A periodic task (`App::every`).
pub(crate) static PERIODIC: Site = Site {
    what: "periodic task",
    then: "running it again at its next time",
};
/// A worker-init hook (`App::on_worker_start`).
pub(crate) static WORKER_INIT: Site = Site {
    what: "on_worker_start hook",
    then: "the process does not serve",
};

thread_local! {
    /// The user code running now on this thread, if any.
    static RUNNING: Cell<Option<&'static Site>> = const { Cell::new(None) };
}

/// Installs, once per process, a panic hook that logs a panic in user code
/// through `log` (once, with its location) instead of printing it to
/// stderr; panics elsewhere go to the previous hook.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if let Some(site) = RUNNING.with(Cell::get) {
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
                log::error!("{} panicked{at}: {msg}; {}", site.what, site.then);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs a handler or hook, turning a panic into `None`. The panic is logged
/// once by the hook above.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Option<R> {
    catch_in(&HANDLER, f)
}

/// Runs user code described by `site`, turning a panic into `None`.
/// Nested calls (an error page rendered while a handler's boundary is
/// open) restore the outer site when they return.
pub(crate) fn catch_in<R>(site: &'static Site, f: impl FnOnce() -> R) -> Option<R> {
    let outer = RUNNING.with(|c| c.replace(Some(site)));
    let result = match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(payload) => {
            drop_payload(payload);
            None
        }
    };
    RUNNING.with(|c| c.set(outer));
    result
}

/// Drops a panic's payload inside the boundary: a payload of the app's
/// (`std::panic::panic_any`) may panic in its `Drop` too, and that second
/// panic, dropped outside, would end the process. What it leaves (its own
/// payload) is leaked rather than dropped again.
fn drop_payload(payload: Box<dyn std::any::Any + Send>) {
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(|| drop(payload))) {
        std::mem::forget(again);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_catch_restores_the_outer_site() {
        install_panic_hook();
        let inner_then_outer = catch(|| {
            let inner = catch_in(&ERROR_PAGE, || -> u8 { panic!("inner") });
            assert!(inner.is_none());
            RUNNING.with(Cell::get).map(|s| s.what)
        });
        assert_eq!(inner_then_outer, Some(Some("handler")));
        assert!(RUNNING.with(Cell::get).is_none());
    }

    /// A panic whose payload panics again when dropped stays inside the
    /// boundary (it used to be dropped outside it, ending the worker).
    #[test]
    fn a_payload_that_panics_when_dropped_is_caught_too() {
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("the payload's drop");
            }
        }
        install_panic_hook();
        assert_eq!(catch(|| -> u8 { std::panic::panic_any(Bomb) }), None);
        assert_eq!(catch(|| 7), Some(7));
        assert!(RUNNING.with(Cell::get).is_none());
    }
}
