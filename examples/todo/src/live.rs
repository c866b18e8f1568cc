//! Live updates: every successful change to the list is announced to every
//! browser, whichever worker process it is connected to.
//!
//! The browser keeps a WebSocket open on `/ws` (`static/app.js`) and
//! re-fetches `GET /api/todos` on any message. On the server, the `/ws`
//! route subscribes each connection to [`TOPIC`] and [`notify_change`]
//! publishes on it with `tine::publish`, which reaches the subscribers of
//! every worker process.

/// The publish/subscribe topic the list's changes are announced on.
pub(crate) const TOPIC: &str = "todos";

/// The message sent on each change. Its content does not matter to the
/// front end, which re-reads the whole list on any message.
pub(crate) const CHANGED: &str = r#"{"type":"changed"}"#;

/// Announces that the list changed. Called by every handler after a
/// successful create, update or delete, never on failure.
pub(crate) fn notify_change() {
    // A short message: it can fail only with the outbox full (logged and
    // counted there); the change itself is saved, so it is not an error.
    let _ = tine::publish(TOPIC, CHANGED);
}
