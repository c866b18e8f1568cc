//! The HTTP/1.1 phase: reading requests, answering them in order, and
//! sending responses (memory, stream, file), then the lingering close.
//!
//! Requests are decoded from the connection's buffer and answered in
//! order; their responses are gathered into one buffer written once per
//! batch (pipelining costs one write, not one per request). A connection
//! whose socket is full keeps its queued output and reads nothing more
//! until it drains, so a slow client only slows itself.

use std::io;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, Version};

use super::{
    Admitted, Budget, Conn, Input, Next, Pending, Phase, Proxy, Shared, Transport, OUT_BATCH,
};
use crate::http::encode::{encode_fields, encode_status, framing, BodyShape, Exchange};
use crate::http::parse::{Decoded, Seen};
use crate::http::{fill_stream, Body, Fill, Request, Response};
use crate::pubsub;
use crate::server::scoreboard::{self, Entry};
use crate::server::timer::Stamp;
use crate::service::Admission;
use crate::ws::session::Session;

/// Bodies up to this size are copied behind their head into one write;
/// larger ones are written from their own buffer.
const INLINE_BODY: usize = 16 * 1024;
/// Most bytes of stream chunks (or copied file) gathered per write.
const STREAM_BATCH: usize = 64 * 1024;
/// Most time a turn spends pulling one connection's stream before the
/// other connections get theirs: a producer that waits for each chunk
/// (a report computed row by row) serves the others between chunks.
const TURN_STREAM: std::time::Duration = std::time::Duration::from_millis(1);

/// The outcome of pushing queued output to the socket.
#[derive(Debug, PartialEq, Eq)]
enum Flush {
    /// Everything queued was sent.
    Done,
    /// The socket is full; wait for a writable event.
    Blocked,
    /// The connection is broken; close it.
    Failed,
    /// The turn's write budget is spent with more to send: drive the
    /// connection again after the others (the socket may still take it,
    /// and no event would say so).
    Yield,
}

/// The outcome of discarding input while lingering.
#[derive(Debug, PartialEq, Eq)]
enum Discard {
    /// The socket has nothing more for now.
    Drained,
    /// The limit was reached with input possibly left.
    More,
    /// The peer closed or failed: time to close.
    Closed,
}

impl<T: Transport> Conn<T> {
    /// Drives the HTTP/1.1 phase (and hands over to the WebSocket phase
    /// once the `101` is sent).
    pub(super) fn drive_http(&mut self, shared: &mut Shared, budget: &mut Budget) -> Next {
        loop {
            if self.phase == Phase::Done {
                return Next::Close;
            }
            if self.phase == Phase::Lingering {
                if self.input.ready() {
                    match self.discard_input(&mut shared.scratch, budget.read) {
                        Discard::Drained => self.input = Input::Drained,
                        Discard::More => return Next::Yield,
                        Discard::Closed => return Next::Close,
                    }
                }
                return Next::Keep;
            }
            match self.flush(shared.stamp) {
                Flush::Done => {}
                Flush::Blocked => return Next::Keep,
                Flush::Failed => return Next::Close,
                Flush::Yield => return Next::Yield,
            }
            if self.ws.is_some() {
                self.return_output(shared);
                return self.drive_ws(shared, budget);
            }
            if self.sse.is_some() {
                self.return_output(shared);
                return self.drive_sse(shared, budget);
            }
            match self.pump(shared.stamp, budget) {
                Flush::Done => {}
                Flush::Blocked => return Next::Keep,
                Flush::Failed => return Next::Close,
                Flush::Yield => return Next::Yield,
            }
            self.return_output(shared);
            if self.phase == Phase::Closing {
                self.linger(shared.stamp);
                continue;
            }
            if budget.spent() {
                // Everything answered so far is sent; the rest waits its
                // turn.
                return if self.input.ready() || !self.rbuf.is_empty() {
                    Next::Yield
                } else {
                    Next::Keep
                };
            }
            if !pubsub::outbox_has_room() {
                // Its handlers' messages cannot be queued: decode and read
                // nothing more until the loop has delivered the outbox.
                return Next::Park;
            }
            if self.answer_buffered(shared, budget) {
                continue;
            }
            if !self.input.ready() {
                return Next::Keep;
            }
            self.lend_input(shared);
            match self.read_some(&mut shared.scratch, shared.stamp) {
                // EOF: a half-sent request cannot be answered; an answer
                // held while its body was passed over still goes out (the
                // client may only have shut its sending side).
                Ok(0) => {
                    if self.release_held(false, shared) {
                        continue;
                    }
                    return Next::Close;
                }
                Ok(n) => {
                    let more = self.stream.may_have_more();
                    self.input = self.input.after_read(n, shared.scratch.len(), more);
                    budget.read = budget.read.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.input = Input::Drained;
                    self.return_input(shared);
                    return Next::Keep;
                }
                Err(_) => return Next::Close,
            }
        }
    }

    /// Everything queued is sent: give the output buffer back to the
    /// loop, so an idle connection holds none.
    fn return_output(&mut self, shared: &mut Shared) {
        if self.wbuf.capacity() > 0 {
            if shared.spare_out.capacity() < self.wbuf.capacity() {
                std::mem::swap(&mut self.wbuf, &mut shared.spare_out);
            }
            self.wbuf = Vec::new();
        }
    }

    /// Gives the connection the loop's spare read buffer if it has none.
    fn lend_input(&mut self, shared: &mut Shared) {
        if self.rbuf.is_empty() {
            std::mem::swap(&mut self.rbuf, &mut shared.spare_in);
            self.rbuf_lent = true;
        }
    }

    /// Gives the lent read buffer back to the loop once its requests are
    /// answered, so idle connections hold none. What is left of a next
    /// request (a few bytes of a head, a body still arriving) moves to a
    /// buffer of its own, exactly sized, and so does a head waiting for
    /// its body: a connection that stalls must not pin the loop's buffer
    /// (a slow client would otherwise hold a large buffer each). A buffer
    /// of the connection's own stays with it while it holds bytes.
    ///
    /// Inlined, the rest of it not: it is called several times a loop
    /// turn, mostly with no buffer lent (about 25 instructions a call as
    /// a whole, callgrind).
    #[inline]
    fn return_input(&mut self, shared: &mut Shared) {
        if !self.rbuf_lent {
            if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
                self.rbuf = BytesMut::new();
            }
            return;
        }
        self.return_lent_input(shared);
    }

    /// [`return_input`](Self::return_input) of the loop's buffer.
    #[inline(never)]
    fn return_lent_input(&mut self, shared: &mut Shared) {
        self.rbuf_lent = false;
        let rest = if self.rbuf.is_empty() {
            BytesMut::new()
        } else {
            BytesMut::from(&self.rbuf[..])
        };
        if let Some(admitted) = &mut self.admitted {
            // A head waiting for its body.
            admitted.req.detach();
        }
        let mut buf = std::mem::replace(&mut self.rbuf, rest);
        // An emptied buffer reports only the capacity after what was
        // consumed; taking the consumed part back (no allocation: the
        // requests that were slices of it are gone) makes its capacity
        // say what it holds. The larger buffer stays the spare.
        buf.clear();
        let _ = buf.try_reclaim(1);
        if buf.capacity() > shared.spare_in.capacity() {
            shared.spare_in = buf;
        }
    }

    /// Gives the connection the loop's spare output buffer if it has none.
    /// It has none exactly when no output was waiting (see
    /// [`return_output`](Self::return_output)): the output queued now
    /// starts the idle timeout of a response being sent (see
    /// `Conn::timer_from`), even if the socket cannot take a byte of it.
    fn lend_output(&mut self, shared: &mut Shared) {
        if self.wbuf.capacity() == 0 {
            std::mem::swap(&mut self.wbuf, &mut shared.spare_out);
            self.timer_from = shared.stamp;
        }
    }

    /// Decodes and answers the requests already in the read buffer,
    /// queueing their responses. Returns whether anything was queued.
    fn answer_buffered(&mut self, shared: &mut Shared, budget: &mut Budget) -> bool {
        if self.proxy == Proxy::Expected && !self.take_proxy_header(shared) {
            // Refused: answered (closing), or to be closed unanswered.
            return self.phase != Phase::Open;
        }
        let mut produced = false;
        // Handlers run in this batch, timed together at its end.
        let mut handled = 0u32;
        while self.pending.is_none()
            && self.sse.is_none()
            && self.phase == Phase::Open
            && self.wbuf.len() < OUT_BATCH
        {
            if self.rbuf.is_empty() && !self.decoder.mid_request() {
                break;
            }
            if budget.requests == 0 || (produced && !pubsub::outbox_has_room()) {
                break;
            }
            // `Decoder::decode` in its steps: the common request (no body)
            // answered straight from the parser's reading, everything else
            // decoded as a whole.
            let mut parse = self.decoder.parse_next(&self.rbuf, &shared.config.limits);
            let taken =
                self.decoder
                    .take_request(&mut self.rbuf, &shared.config.limits, &mut parse);
            let decoded = match taken {
                Some(Ok(head)) => {
                    if self.answer_head(head, Bytes::new(), shared, &mut handled) {
                        return true;
                    }
                    budget.requests -= 1;
                    produced = true;
                    continue;
                }
                Some(Err(status)) => Decoded::Error(status),
                None => {
                    self.decoder
                        .decode_parsed(&mut self.rbuf, &shared.config.limits, &mut parse)
                }
            };
            if self.body_started.is_none() && self.decoder.mid_request() {
                // The head is complete and its body is arriving: from here
                // the body deadline applies instead of the header deadline.
                self.head_started = None;
                self.body_started = Some(shared.stamp);
            }
            match decoded {
                Decoded::NeedMore => break,
                Decoded::Continue => {
                    self.lend_output(shared);
                    self.wbuf
                        .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    produced = true;
                }
                Decoded::Error(status) => {
                    let (res, exchange) = match self.admitted.take() {
                        // Refused while its body was read (over the
                        // route's limit, malformed chunks).
                        Some(mut admitted) => (
                            shared.service.refuse_request(status, &mut admitted.req),
                            admitted.exchange.closing(),
                        ),
                        None => {
                            let max_headers = shared.config.limits.max_headers;
                            let seen = self.decoder.take_seen(&self.rbuf, max_headers);
                            let exchange = Exchange {
                                head: seen.is_head(),
                                ..Exchange::CLOSE
                            };
                            (shared.service.refuse(status, seen, self.peer), exchange)
                        }
                    };
                    self.lend_output(shared);
                    self.encode_response(res, exchange, shared);
                    self.rbuf.clear();
                    budget.requests -= 1;
                    produced = true;
                }
                Decoded::Request(head, body) => {
                    if self.answer_head(head, body, shared, &mut handled) {
                        return true;
                    }
                    budget.requests -= 1;
                    produced = true;
                }
                Decoded::Head(head) => {
                    if self.admit(head, shared) {
                        budget.requests -= 1;
                        produced = true;
                    }
                }
                Decoded::Discarded(whole) => {
                    self.request_read(shared.stamp);
                    if self.release_held(whole, shared) {
                        produced = true;
                    } else if !whole {
                        // Its request is answered: close once that is
                        // sent, reading nothing more.
                        self.phase = Phase::Closing;
                        self.rbuf.clear();
                        produced = true;
                    }
                }
                Decoded::Body(body) => {
                    self.request_read(shared.stamp);
                    let Some(admitted) = self.admitted.take() else {
                        // A body is only decoded after its head was
                        // admitted; nothing to answer otherwise.
                        continue;
                    };
                    let Admitted {
                        mut req, exchange, ..
                    } = *admitted;
                    req.set_body(body);
                    let exchange = Exchange {
                        keep_alive: exchange.keep_alive
                            && stays_open(shared, self.served.saturating_add(1)),
                        ..exchange
                    };
                    if self.answer_request(req, exchange, shared, &mut handled) {
                        return true;
                    }
                    budget.requests -= 1;
                    produced = true;
                }
            }
        }
        self.return_input(shared);
        if let Some(e) = scoreboard::mine().filter(|_| handled > 0) {
            handlers_done(shared, e, handled);
        }
        produced
    }

    /// Answers a request read whole ([`Decoded::Request`]); returns
    /// whether the connection switched to WebSocket.
    #[inline(always)]
    fn answer_head(
        &mut self,
        head: crate::http::parse::Head,
        body: Bytes,
        shared: &mut Shared,
        handled: &mut u32,
    ) -> bool {
        self.request_read(shared.stamp);
        let exchange = Exchange {
            head: head.raw.method == Method::HEAD,
            http10: head.raw.version == Version::HTTP_10,
            keep_alive: head.keep_alive && stays_open(shared, self.served.saturating_add(1)),
        };
        let req = Request::decoded(head.raw, body, self.peer);
        self.answer_request(req, exchange, shared, handled)
    }

    /// A request (or the body passed over behind one) was read to its end.
    /// Bytes left behind it (pipelined, or the start of a slow next head)
    /// begin the next head now: it is timed by the header timeout from
    /// here, not by the idle timeout that every trickled byte would renew.
    #[inline]
    fn request_read(&mut self, now: Stamp) {
        self.head_started = if self.rbuf.is_empty() {
            None
        } else {
            Some(now)
        };
        self.body_started = None;
    }

    /// Reads the PROXY protocol header at the start of the connection:
    /// `true` once it was taken (the peer is now its source); `false`
    /// while more is needed, or after a bad header was answered 400 (the
    /// connection then closes).
    #[cold]
    fn take_proxy_header(&mut self, shared: &mut Shared) -> bool {
        match super::proxy_header::take(&mut self.rbuf) {
            super::proxy_header::Taken::NeedMore => false,
            super::proxy_header::Taken::Header(addr) => {
                // Counted against `max_connections_per_ip` only now, under
                // the client the header names (a `LOCAL` or `UNKNOWN` one:
                // the balancer itself); not at accept, where every
                // connection comes from the balancer. Over the limit it is
                // closed unanswered at once, as at accept, holding no
                // count.
                let client = addr.unwrap_or(self.peer);
                if !shared.per_ip.admit(client.ip()) {
                    log::debug!("{} has too many connections; closing one", client.ip());
                    self.proxy = Proxy::Refused;
                    self.rbuf.clear();
                    self.phase = Phase::Done;
                    return false;
                }
                self.proxy = Proxy::Counted;
                self.peer = client;
                true
            }
            super::proxy_header::Taken::Bad(why) => {
                log::debug!("{}: bad PROXY protocol header ({why}); closing", self.peer);
                self.proxy = Proxy::Refused;
                let res = shared
                    .service
                    .refuse(StatusCode::BAD_REQUEST, Seen::Nothing, self.peer);
                self.lend_output(shared);
                self.encode_response(res, Exchange::CLOSE, shared);
                self.rbuf.clear();
                false
            }
        }
    }

    /// Answers a whole request (or refuses one whose path cannot be
    /// decoded) and queues the response. Returns whether the connection
    /// switched to WebSocket.
    ///
    /// The response goes from the service to [`encode_response`](Self::encode_response)
    /// on one straight path, the refusal and the upgrade out of line:
    /// joined again in `match`es, the paths moved the whole response
    /// from one place to another (about 8 instructions a request,
    /// callgrind).
    #[inline]
    fn answer_request(
        &mut self,
        mut req: Request,
        exchange: Exchange,
        shared: &mut Shared,
        handled: &mut u32,
    ) -> bool {
        if req.undecodable() {
            self.refuse_undecodable(req, exchange, shared);
            return false;
        }
        if self.stream.is_tls() {
            req.set_https();
        }
        // The scoreboard shows the request while its handler runs (what
        // the watchdog names if it never returns).
        let board = scoreboard::mine();
        if let Some(e) = board {
            e.begin(req.method(), req.raw_target());
        }
        let mut upgrade = None;
        // The response is encoded from where the service put it (see
        // `Service::answer_into`).
        let mut answer = None;
        shared
            .service
            .answer_into(&mut req, &mut upgrade, &mut answer);
        if let Some(accepted) = upgrade {
            self.upgrade(req, answer, accepted, shared, *handled);
            return true;
        }
        if let Some(e) = board {
            e.handler_returned();
            *handled += 1;
        }
        self.lend_output(shared);
        self.encode_answer(&mut answer, exchange, shared);
        self.served = self.served.saturating_add(1);
        shared.budget.count();
        false
    }

    /// [`answer_request`](Self::answer_request) of a request whose path's
    /// escapes are not UTF-8: a `400`.
    #[cold]
    #[inline(never)]
    fn refuse_undecodable(&mut self, mut req: Request, exchange: Exchange, shared: &mut Shared) {
        let res = shared
            .service
            .refuse_request(StatusCode::BAD_REQUEST, &mut req);
        self.lend_output(shared);
        self.encode_response(res, exchange, shared);
        self.served = self.served.saturating_add(1);
        shared.budget.count();
    }

    /// [`answer_request`](Self::answer_request) of an accepted WebSocket
    /// upgrade: queues its `101` and makes the connection a session.
    /// `handled`: the handlers run in this batch before it.
    #[cold]
    #[inline(never)]
    fn upgrade(
        &mut self,
        mut req: Request,
        mut answer: Option<Response>,
        accepted: crate::ws::Upgrade,
        shared: &mut Shared,
        handled: u32,
    ) {
        if let Some(e) = scoreboard::mine() {
            e.handler_returned();
            handlers_done(shared, e, handled + 1);
            Entry::gauge(&e.gauges.websockets, 1);
        }
        self.lend_output(shared);
        // An upgrade that expected `100 Continue` gets it before its `101`
        // (RFC 9110 §7.8). Only one without a body: the decoder sends one
        // that waits for its body itself.
        if req.body().is_empty()
            && req.version() == http::Version::HTTP_11
            && req
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            self.wbuf
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.encode_answer(&mut answer, Exchange::UPGRADE, shared);
        let leftover = std::mem::take(&mut self.rbuf).to_vec();
        self.rbuf_lent = false;
        // The session keeps the request for the connection's life: it
        // must not pin the loop's read buffer.
        req.detach();
        let mut session = Box::new(Session::new(
            req,
            accepted.handler.clone(),
            accepted.config(&shared.config.ws),
            shared.config.limits.max_body,
            leftover,
        ));
        session.open(&self.stream);
        if shared.draining {
            // Upgraded on a connection kept from before the stop: closed
            // with 1001 at once, as every other WebSocket is, so its
            // client reconnects to a worker that serves on.
            session.go_away();
        }
        self.ws = Some(session);
    }

    /// The head of a request with a body is read: before any of the body
    /// is accepted (and before `100 Continue`), the service routes it and
    /// runs the before-hooks ([`Service::admit`](crate::service::Service::admit)),
    /// which give the body limit of its route or answer it at once; a
    /// `Content-Length` over the limit is refused here, unread. Returns
    /// whether a response was queued.
    #[cold]
    fn admit(&mut self, head: crate::http::parse::Head, shared: &mut Shared) -> bool {
        self.head_started = None;
        self.body_started = Some(shared.stamp);
        let head_chunked = head.framing == crate::http::parse::Framing::Chunked;
        let exchange = Exchange {
            head: head.raw.method == Method::HEAD,
            http10: head.raw.version == Version::HTTP_10,
            keep_alive: head.keep_alive,
        };
        let req = Request::new(head.raw, bytes::Bytes::new(), self.peer);
        let mut req = match req {
            Ok(mut req) => {
                // Before-hooks (at admission) see the scheme too.
                if self.stream.is_tls() {
                    req.set_https();
                }
                req
            }
            Err(mut req) => {
                let res = shared
                    .service
                    .refuse_request(StatusCode::BAD_REQUEST, &mut req);
                self.decoder.refuse_body();
                self.refuse_with(res, exchange, shared);
                return true;
            }
        };
        match shared.service.admit(&mut req) {
            Admission::Accept(group) => {
                let limits = &shared.config.limits;
                let max_body = group.max.unwrap_or(limits.max_body);
                match self.decoder.admit(max_body, limits.spill_past()) {
                    Ok(()) => {
                        self.admitted = Some(Box::new(Admitted {
                            req,
                            exchange,
                            body_timeout: group.timeout,
                        }));
                        false
                    }
                    Err(status) => {
                        let res = shared.service.refuse_request(status, &mut req);
                        self.refuse_with(res, exchange, shared);
                        true
                    }
                }
            }
            Admission::Answer(res) => {
                if let Some(e) = scoreboard::mine() {
                    e.count_request(req.method());
                }
                if self.decoder.skip_body(&mut self.rbuf) {
                    // The body is dropped (what of it arrived with the
                    // head at once, the rest as it comes), and the
                    // connection goes on. While it is passed over, the
                    // body timeout still runs.
                    self.served = self.served.saturating_add(1);
                    shared.budget.count();
                    if !self.decoder.discarding() {
                        // All of it came with the head: what follows it
                        // is the next request.
                        self.request_read(shared.stamp);
                    } else if head_chunked {
                        // How long a chunked body is, and whether it is
                        // well formed, shows only at its end: the answer
                        // waits for it, to say whether the connection
                        // stays open (as Go's server does; nginx answers
                        // first and may then close unannounced). A
                        // `Content-Length` body is known to be short
                        // enough: its answer goes out now.
                        self.held = Some(Box::new((res, exchange)));
                        return true;
                    }
                    // (This response is counted already.)
                    let exchange = Exchange {
                        keep_alive: exchange.keep_alive && stays_open(shared, self.served),
                        ..exchange
                    };
                    self.lend_output(shared);
                    self.encode_response(res, exchange, shared);
                } else {
                    self.refuse_with(res, exchange, shared);
                }
                true
            }
        }
    }

    /// Queues the answer held while a chunked body was passed over, if
    /// any: keeping the connection open if the body ended well (`whole`),
    /// else closing it once the answer is sent. Returns whether there was
    /// one.
    #[cold]
    pub(super) fn release_held(&mut self, whole: bool, shared: &mut Shared) -> bool {
        let Some(held) = self.held.take() else {
            return false;
        };
        let (res, exchange) = *held;
        self.lend_output(shared);
        if whole {
            // (It was counted when it was held.)
            let exchange = Exchange {
                keep_alive: exchange.keep_alive && stays_open(shared, self.served),
                ..exchange
            };
            self.encode_response(res, exchange, shared);
        } else {
            self.encode_response(res, exchange.closing(), shared);
            self.rbuf.clear();
            self.head_started = None;
            self.body_started = None;
        }
        true
    }

    /// Queues `res` as the last answer on this connection: the body that
    /// was to follow is not read.
    #[cold]
    fn refuse_with(&mut self, res: Response, exchange: Exchange, shared: &mut Shared) {
        self.lend_output(shared);
        self.encode_response(res, exchange.closing(), shared);
        self.rbuf.clear();
        self.body_started = None;
    }

    /// A request did not arrive in time: queue a `408` (sending it moves
    /// the connection to lingering).
    pub(super) fn request_timed_out(&mut self, shared: &mut Shared) {
        let seen = self
            .decoder
            .take_seen(&self.rbuf, shared.config.limits.max_headers);
        let (res, exchange) = match self.admitted.take() {
            Some(mut admitted) => (
                shared
                    .service
                    .refuse_request(StatusCode::REQUEST_TIMEOUT, &mut admitted.req),
                admitted.exchange.closing(),
            ),
            None => {
                let exchange = Exchange {
                    head: seen.is_head(),
                    ..Exchange::CLOSE
                };
                let res = shared
                    .service
                    .refuse(StatusCode::REQUEST_TIMEOUT, seen, self.peer);
                (res, exchange)
            }
        };
        self.lend_output(shared);
        self.encode_response(res, exchange, shared);
        self.rbuf.clear();
        self.head_started = None;
        self.body_started = None;
    }

    /// Queues a response: its head, and its body inline or as pending.
    #[inline]
    fn encode_response(&mut self, res: Response, exchange: Exchange, shared: &Shared) {
        self.encode_answer(&mut Some(res), exchange, shared);
    }

    /// [`encode_response`](Self::encode_response) of the response where
    /// it lies (see `Service::answer_into`), taken out of `answer` (left
    /// `None`). Passed by value, it was copied whole for the call; taken
    /// here, it is read field by field where it lies, and the caller's
    /// drop is one test.
    fn encode_answer(
        &mut self,
        answer: &mut Option<Response>,
        exchange: Exchange,
        shared: &Shared,
    ) {
        let Some(res) = answer.take() else {
            return;
        };
        let status = res.status;
        let shape = match &res.body {
            Body::Empty if exchange.head => declared_length(&res),
            Body::Empty => BodyShape::Empty,
            Body::Full(bytes) => BodyShape::Sized(bytes.len() as u64),
            Body::Vec(bytes) => BodyShape::Sized(bytes.len() as u64),
            Body::File(file) => BodyShape::Sized(file.len),
            Body::Stream(_) | Body::Sse(_) => BodyShape::Stream,
        };
        if let Some(e) = scoreboard::mine() {
            e.count_response(status.as_u16());
        }
        let exchange = match res.asks_to_close() {
            true => exchange.closing(),
            false => exchange,
        };
        let framing = framing(status, shape, exchange);
        let out = &mut self.wbuf;
        encode_status(
            out,
            status,
            framing.length,
            framing.connection,
            &shared.date,
        );
        encode_fields(out, res.fields());
        let body = res.body;
        if framing.send_body {
            match body {
                Body::Empty => {}
                Body::Full(bytes) if bytes.len() <= INLINE_BODY => {
                    self.wbuf.extend_from_slice(&bytes);
                }
                Body::Full(bytes) => self.pending = Some(Pending::Bytes(bytes)),
                Body::Vec(bytes) if bytes.len() <= INLINE_BODY => {
                    self.wbuf.extend_from_slice(&bytes);
                }
                Body::Vec(bytes) => self.pending = Some(Pending::Bytes(bytes.into())),
                // A small file is read behind its head: one write, one TCP
                // segment, instead of a write and a sendfile.
                Body::File(file) if file.len <= INLINE_BODY as u64 => {
                    if !read_inline(&mut self.wbuf, &file) {
                        self.pending = Some(Pending::File(file));
                    }
                }
                Body::File(file) => self.pending = Some(Pending::File(file)),
                Body::Stream(chunks) => {
                    self.pending = Some(Pending::Stream {
                        chunks,
                        chunked: framing.length == crate::http::encode::Length::Chunked,
                    })
                }
                // The connection becomes an event stream (`sse.rs`); what
                // the client pipelined behind this request is dropped.
                Body::Sse(mut session) => {
                    session.start(framing.length == crate::http::encode::Length::Chunked);
                    if shared.draining {
                        // Stopping: the browser reconnects elsewhere.
                        session.finish();
                    }
                    self.sse = Some(session);
                    self.rbuf.clear();
                    return;
                }
            }
        }
        if !framing.keep_alive {
            self.phase = Phase::Closing;
        }
    }

    /// Cuts off a streamed response whose iterator panicked: the head and
    /// earlier chunks are out, the end never will be. A chunked body just
    /// stops (the client sees a message without its last chunk); a body
    /// delimited by the close would look complete after a normal close, so
    /// that connection is reset instead. Returns `Failed`: close it.
    fn abort_stream(&mut self, now: Stamp) -> Flush {
        // What the iterator produced before it panicked goes out if the
        // socket takes it now.
        let _ = self.flush(now);
        if let Some(Pending::Stream { chunked: false, .. }) = self.pending {
            self.stream.reset_on_close();
        }
        self.pending = None;
        self.wbuf.clear();
        self.wpos = 0;
        Flush::Failed
    }

    /// Reads once into `scratch` and appends to `rbuf`. `Ok(0)` is EOF.
    fn read_some(&mut self, scratch: &mut [u8], now: Stamp) -> io::Result<usize> {
        loop {
            match self.stream.read(scratch) {
                Ok(n) => {
                    if n > 0 {
                        if self.rbuf.is_empty() && !self.decoder.mid_request() {
                            self.head_started.get_or_insert(now);
                        }
                        self.rbuf.extend_from_slice(&scratch[..n]);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes queued bytes; on `Done` the buffer is empty. A write that
    /// makes progress renews the idle timeout from `now` (see
    /// `Conn::timer_from`): one store, no clock read.
    ///
    /// Inlined where nothing is queued on a plain stream (most calls:
    /// the loop flushes before it reads or answers more), which only
    /// resets the buffer's position (a call of about 35 instructions,
    /// callgrind); the rest is [`flush_queued`](Self::flush_queued).
    #[inline]
    fn flush(&mut self, now: Stamp) -> Flush {
        // A TLS transport may hold ciphertext even with nothing queued
        // here: its flush is always tried. Other transports' flush does
        // nothing.
        if self.wpos >= self.wbuf.len() && !self.stream.is_tls() {
            self.wbuf.clear();
            self.wpos = 0;
            return Flush::Done;
        }
        self.flush_queued(now)
    }

    #[inline(never)]
    fn flush_queued(&mut self, now: Stamp) -> Flush {
        // A head followed by sendfile: tell the kernel more is coming, so
        // head and first body bytes share a segment (like TCP_CORK).
        let more = matches!(self.pending, Some(Pending::File(_)));
        while self.wpos < self.wbuf.len() {
            let sent = if more {
                self.stream.write_more(&self.wbuf[self.wpos..])
            } else {
                self.stream.write(&self.wbuf[self.wpos..])
            };
            match sent {
                Ok(0) => return Flush::Failed,
                Ok(n) => {
                    self.wpos += n;
                    self.timer_from = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flush::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flush::Failed,
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        // A TLS transport may hold ciphertext the socket did not take yet.
        match self.stream.flush() {
            Ok(()) => Flush::Done,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Flush::Blocked,
            Err(_) => Flush::Failed,
        }
    }

    /// Sends more of the pending body. `Done` means the body is finished
    /// (and `pending` is `None`); the head must have been flushed first.
    /// Progress renews the idle timeout from `now`, as in
    /// [`flush`](Self::flush). At most `budget.write` bytes a turn, and
    /// a stream's producer for at most [`TURN_STREAM`] (it may wait for
    /// each chunk): then `Yield`, so that the worker's other connections,
    /// and its signals, are seen in between.
    fn pump(&mut self, now: Stamp, budget: &mut Budget) -> Flush {
        // When this turn began pulling a stream (read once it does).
        let mut streaming_since: Option<std::time::Instant> = None;
        loop {
            let Some(pending) = &mut self.pending else {
                return Flush::Done;
            };
            if budget.write == 0 {
                return Flush::Yield;
            }
            match pending {
                Pending::Bytes(bytes) => {
                    while !bytes.is_empty() {
                        if budget.write == 0 {
                            return Flush::Yield;
                        }
                        match self.stream.write(bytes) {
                            Ok(0) => return Flush::Failed,
                            Ok(n) => {
                                let _ = bytes.split_to(n);
                                budget.write = budget.write.saturating_sub(n);
                                self.timer_from = now;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                return Flush::Blocked
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => return Flush::Failed,
                        }
                    }
                    self.pending = None;
                }
                Pending::Stream { chunks, chunked } => {
                    // Pull only as much as one write can take; the
                    // producer waits while the client is slow.
                    let since = *streaming_since.get_or_insert_with(std::time::Instant::now);
                    match fill_stream(chunks, *chunked, &mut self.wbuf, STREAM_BATCH) {
                        Fill::More => {}
                        Fill::Done => self.pending = None,
                        Fill::Aborted => return self.abort_stream(now),
                    }
                    let queued = self.wbuf.len() - self.wpos;
                    match self.flush(now) {
                        Flush::Done => {}
                        other => return other,
                    }
                    budget.write = budget.write.saturating_sub(queued);
                    // One clock read per chunk written, beside its write.
                    if self.pending.is_some() && since.elapsed() >= TURN_STREAM {
                        return Flush::Yield;
                    }
                }
                Pending::File(file) => {
                    let mut copied = false;
                    while file.len > 0 {
                        let count = usize::try_from(file.len).unwrap_or(usize::MAX).min(1 << 30);
                        let sent = match self.stream.send_file(&file.file, &mut file.offset, count)
                        {
                            Some(sent) => sent,
                            // The transport cannot send from the page
                            // cache: copy a batch through the buffer.
                            None => {
                                let batch = count.min(STREAM_BATCH);
                                let start = self.wbuf.len();
                                self.wbuf.resize(start + batch, 0);
                                match std::os::unix::fs::FileExt::read_at(
                                    &*file.file,
                                    &mut self.wbuf[start..],
                                    file.offset,
                                ) {
                                    Ok(0) | Err(_) => return Flush::Failed,
                                    Ok(n) => {
                                        self.wbuf.truncate(start + n);
                                        file.offset += n as u64;
                                        file.len -= n as u64;
                                    }
                                }
                                copied = true;
                                break;
                            }
                        };
                        match sent {
                            Ok(0) => return Flush::Failed, // the file shrank
                            Ok(n) => {
                                file.len -= n as u64;
                                budget.write = budget.write.saturating_sub(n);
                                self.timer_from = now;
                                if budget.write == 0 && file.len > 0 {
                                    return Flush::Yield;
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                return Flush::Blocked
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => return Flush::Failed,
                        }
                    }
                    if copied {
                        let queued = self.wbuf.len() - self.wpos;
                        match self.flush(now) {
                            Flush::Done => {
                                budget.write = budget.write.saturating_sub(queued);
                                continue;
                            }
                            other => return other,
                        }
                    }
                    self.pending = None;
                }
            }
        }
    }

    /// Reads and drops input while lingering, at most about `limit` bytes.
    fn discard_input(&mut self, scratch: &mut [u8], limit: usize) -> Discard {
        let mut read = 0;
        loop {
            if read >= limit {
                return Discard::More;
            }
            match self.stream.read(scratch) {
                Ok(0) => return Discard::Closed,
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Discard::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Discard::Closed,
            }
        }
    }
}

/// Appends a small file region to `out`; `false` (with `out` unchanged)
/// if it could not be read whole, so the caller falls back to sendfile.
fn read_inline(out: &mut Vec<u8>, file: &crate::http::FileBody) -> bool {
    use std::os::unix::fs::FileExt;
    let start = out.len();
    out.resize(start + file.len as usize, 0);
    if file
        .file
        .read_exact_at(&mut out[start..], file.offset)
        .is_ok()
    {
        true
    } else {
        out.truncate(start);
        false
    }
}

/// `n` handlers ran since `shared.clock` (one request, or a batch of
/// pipelined ones): their time goes to the scoreboard's histogram. One
/// clock read per batch, not per request: the batch's start is the end of
/// the previous one (or the loop turn's start), which differs only by the
/// decoding; a batch that ended before `fast_until` (at most 1 ms after
/// its start) counts every handler in the first bucket, and a slower batch
/// of several counts each with the batch's average time.
#[inline]
fn handlers_done(shared: &mut Shared, e: &Entry, n: u32) {
    let t = std::time::Instant::now();
    if t < shared.fast_until {
        e.end_fast(n);
    } else {
        e.end(t.saturating_duration_since(shared.clock) / n.max(1), n);
        shared.fast_until = t + scoreboard::FAST;
    }
    shared.clock = t;
}

/// Whether a connection may stay open after its `nth` response (counting
/// from 1): not while the worker drains, nor once it has had
/// `Limits::keepalive_requests` of them.
#[inline]
fn stays_open(shared: &Shared, nth: u32) -> bool {
    !shared.draining && nth < shared.config.limits.keepalive_requests
}

/// The length a `HEAD` route's empty answer declares for the `GET` it
/// stands for (RFC 9110 §9.3.2: the same fields, without the content): its
/// `Content-Length`, when it set a valid one; else none (`0`).
#[cold]
fn declared_length(res: &Response) -> BodyShape {
    res.headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(BodyShape::Empty, BodyShape::Sized)
}
