//! The WebSocket phase of a connection: writing queued frames, reading
//! and processing incoming ones (the protocol itself is in `crate::ws`).

use std::io;

use super::{Budget, Conn, Input, Next, Shared, Transport};
use crate::pubsub;

impl<T: Transport> Conn<T> {
    /// Moves a WebSocket connection along: send queued frames, read and
    /// process incoming ones, within the turn's budget.
    pub(super) fn drive_ws(&mut self, shared: &mut Shared, budget: &mut Budget) -> Next {
        let Some(session) = self.ws.as_mut() else {
            return Next::Close;
        };
        loop {
            if !session.unsent().is_empty() {
                while !session.unsent().is_empty() {
                    match self.stream.write(session.unsent()) {
                        Ok(0) => return Next::Close,
                        Ok(n) => session.written(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Next::Close,
                    }
                }
                // What was queued (a published message, a ping) is out: the
                // connection may be at rest again.
                session.rest();
            }
            // A TLS transport may hold ciphertext the socket did not take.
            match self.stream.flush() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(_) => return Next::Close,
            }
            if session.finished() {
                // Close like HTTP does: shut our side, then read until the
                // peer closes, so unread input cannot turn into a reset
                // that makes the peer lose our close frame.
                self.linger(shared.stamp);
                return Next::Keep;
            }
            if !self.input.ready() && !session.has_input() {
                return Next::Keep;
            }
            if budget.spent() {
                return Next::Yield;
            }
            if !pubsub::outbox_has_room() {
                return Next::Park;
            }
            if session.has_input() {
                // Frames left over from the last turn come first (a pong
                // among them ends the wait for it, as below).
                budget.requests -= session.feed_some(&mut [], &self.stream, budget.requests);
                session.time_message(shared.now);
                if !session.awaiting_pong() && !session.closing() {
                    self.timer_from = shared.stamp;
                }
                continue;
            }
            match self.stream.read(&mut shared.scratch) {
                Ok(0) => {
                    session.closed(1006, String::new(), &self.stream);
                    return Next::Close;
                }
                Ok(n) => {
                    let more = self.stream.may_have_more();
                    self.input = self.input.after_read(n, shared.scratch.len(), more);
                    budget.read = budget.read.saturating_sub(n);
                    budget.requests -=
                        session.feed_some(&mut shared.scratch[..n], &self.stream, budget.requests);
                    session.time_message(shared.now);
                    // Input is what shows the peer alive: the next ping is
                    // due an interval after it (see `Conn::timer_from`);
                    // a pong just read ends the wait for it. Not once the
                    // session is closing, whose give-up time is fixed.
                    if !session.awaiting_pong() && !session.closing() {
                        self.timer_from = shared.stamp;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.input = Input::Drained;
                    return Next::Keep;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
    }
}
