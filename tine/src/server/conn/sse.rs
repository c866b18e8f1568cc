//! The server-sent events phase of a connection: writing queued events,
//! and watching the socket for the client going away (the protocol's
//! state is in `crate::sse`).

use std::io;

use super::{Budget, Conn, Input, Next, Shared, Transport};

impl<T: Transport> Conn<T> {
    /// Moves an event stream along: send queued events, then read (and
    /// drop) whatever the client sends, to notice its close.
    pub(super) fn drive_sse(&mut self, shared: &mut Shared, budget: &mut Budget) -> Next {
        let Some(session) = self.sse.as_mut() else {
            return Next::Close;
        };
        if session.overflowed {
            log::debug!(
                "closing an event stream to {}: it read too slowly",
                self.peer
            );
            return Next::Close;
        }
        while !session.unsent().is_empty() {
            match self.stream.write(session.unsent()) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    session.written(n);
                    // Progress: the heartbeat (or giving up on output
                    // still waiting) is an interval from here. Input and
                    // published events do not move it (see
                    // `Conn::timer_from`).
                    self.timer_from = shared.stamp;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        if session.finished && session.unsent().is_empty() {
            self.linger(shared.stamp);
            return Next::Keep;
        }
        // A client sends nothing on an event stream: read only to see
        // EOF or a reset, dropping any bytes, within the turn's budget.
        while self.input.ready() {
            if budget.spent() {
                return Next::Yield;
            }
            match self.stream.read(&mut shared.scratch) {
                Ok(0) => return Next::Close,
                Ok(n) => budget.read = budget.read.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.input = Input::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        Next::Keep
    }
}
