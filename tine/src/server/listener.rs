//! Listening-socket settings shared by single-process and worker modes.
//! (The sockets themselves are bound in `master.rs`, with socket2.)

/// Backlog of each accept queue: room for bursts while a worker is busy
/// in a handler.
pub(crate) const BACKLOG: i32 = 1024;
