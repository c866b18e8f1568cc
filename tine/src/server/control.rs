//! The control channel between the master and each worker.
//!
//! Every worker gets one end of a Unix socketpair ([`WorkerStart::control`]);
//! the master keeps the other. Both sides speak the same framing:
//!
//! ```text
//! [kind: u8][len: u32 little-endian][payload: len bytes]
//! ```
//!
//! Kinds:
//!
//! | kind | direction | payload | meaning |
//! |---|---|---|---|
//! | [`READY`] (1) | worker → master | empty | sent once when the worker has registered its initial listeners and is accepting, and once more after handling each [`ADOPT`] |
//! | [`ADOPT`] (2) | master → worker | listener index, `u32` LE | also accept on `listeners[index]` (scale-down hand-over, or the queue of a worker that died, lent until it is back); answer with [`READY`] |
//! | [`RELEASE`] (4) | master → worker | listener index, `u32` LE | stop accepting on `listeners[index]` (a lent queue whose own worker is back and accepting); no answer |
//! | [`RECYCLE`] (5) | worker → master | responses served, `u64` LE | the worker is past its [`max_requests`](crate::App::max_requests) limit: the master replaces it (the replacement accepts first, then this worker gets `SIGTERM` and drains); sent once, the worker keeps serving meanwhile |
//! | [`PUBLISH`] (3) | worker → master → other workers | one published message (topic and payload, in the wire form of `crate::pubsub`) | relayed verbatim by the master to every other live worker, which delivers it to its subscribers; with flow control (`pubsub::relay`) |
//! | [`TLS`] (6) | master → worker | a TLS update: `1` + new session-ticket keys, or `2` + a listener's certificates (PEM), see `server::tls` | install them for new handshakes; no answer |
//!
//! Unknown kinds decode to [`Msg::Other`] so that either side can skip them.
//! End-of-file on the channel means the peer is gone: a worker that reads EOF
//! treats it as "the master died", stops accepting, drains and exits.
//!
//! [`Channel`] is a small buffer pair (inbound bytes, bounded outbound queue)
//! that both sides can drive from a non-blocking socket registered in their
//! mio `Poll`. Channels are made with [`pair`] and written through
//! [`SendNoSignal`], so that a peer that died never raises `SIGPIPE`.
//!
//! # Memory
//!
//! A channel's buffers grow with what clients publish (up to their bounds:
//! one maximal frame inbound, [`outbound_bound`] outbound), and in the
//! master one process holds them for every worker. They grow fallibly
//! ([`try_grow`]): a frame there is no memory for is not queued
//! ([`Refused::NoMemory`]) or, inbound, skipped whole ([`Msg::Dropped`]),
//! and the caller counts the message as dropped. An allocation failure
//! through `Vec`'s ordinary growth would abort the process instead, and the
//! master's abort takes every worker, so the whole service, down with it.
//!
//! [`WorkerStart::control`]: super::master::WorkerStart::control

use std::collections::TryReserveError;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

/// Worker → master: "my listeners are registered and I am accepting".
/// Sent once at start-up and once after handling each [`ADOPT`].
pub(crate) const READY: u8 = 1;
/// Master → worker: "also accept on this listener index" (payload: `u32` LE).
pub(crate) const ADOPT: u8 = 2;
/// A published message, relayed by the master to every other live worker.
pub(crate) const PUBLISH: u8 = 3;
/// Master → worker: "stop accepting on this listener index" (payload:
/// `u32` LE); only sent for a listener another worker accepts on.
pub(crate) const RELEASE: u8 = 4;
/// Worker → master: "I served my share, replace me" (payload: the
/// responses served, `u64` LE).
pub(crate) const RECYCLE: u8 = 5;
/// Master → worker: new TLS session-ticket keys or certificates (payload:
/// see `server::tls`); no answer. Arrives as [`Msg::Other`].
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) const TLS: u8 = 6;
/// Worker → master: "stop the server gracefully", as `SIGTERM` would
/// (a [`ServerHandle`](crate::ServerHandle) used in a worker: a worker
/// that dropped privileges may not signal its master). No payload.
pub(crate) const STOP: u8 = 7;

/// Bytes in a frame header: one kind byte and a `u32` LE payload length.
pub(crate) const HEADER_LEN: usize = 5;
/// Largest payload of a [`Channel::new`]; a larger length is
/// [`Msg::Malformed`]. A server's channels take larger ones when its
/// limits let clients send larger messages ([`Channel::with_limit`],
/// sized by `pubsub::relay_limit`): a published message is relayed as one
/// frame, and a frame no larger than the message limit could not carry a
/// message of exactly that limit plus its topic.
pub(crate) const MAX_PAYLOAD: usize = 1 << 20;
/// Least upper bound on the bytes queued for one peer; [`Channel::queue`]
/// refuses a frame that would exceed it (the caller logs and drops it, or
/// retries later). A channel for larger payloads gets a larger bound
/// ([`outbound_bound`]).
pub(crate) const MAX_OUTBOUND: usize = 4 << 20;

/// The outbound bound of a channel whose payloads go up to `max_payload`
/// bytes: at least [`MAX_OUTBOUND`], and always room for what the master
/// may queue for a worker while flow control lets it read on
/// (`pubsub::relay`): a queue below [`HIGH`](crate::pubsub::relay::HIGH)
/// when a read starts grows by at most
/// [`READ_LIMIT`](crate::pubsub::relay::READ_LIMIT), one 64 KiB read and
/// one maximal frame. Smaller, a worker that is merely behind would lose
/// relayed messages, and a maximal frame could never be queued at all.
pub(crate) fn outbound_bound(max_payload: usize) -> usize {
    use crate::pubsub::relay::{HIGH, READ_LIMIT};
    MAX_OUTBOUND.max(HIGH + READ_LIMIT + 64 * 1024 + HEADER_LEN + max_payload)
}

/// A decoded control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Msg {
    /// See [`READY`].
    Ready,
    /// See [`ADOPT`]: the listener index to accept on as well.
    Adopt(u32),
    /// See [`RELEASE`]: the listener index to stop accepting on.
    Release(u32),
    /// See [`PUBLISH`]: an opaque payload to relay.
    Publish(Vec<u8>),
    /// See [`RECYCLE`]: the responses the worker served.
    Recycle(u64),
    /// See [`STOP`].
    Stop,
    /// A kind this version does not know; skip it.
    Other {
        /// The frame's kind byte.
        kind: u8,
        /// The frame's payload.
        payload: Vec<u8>,
    },
    /// A frame that can never be valid (length over the channel's limit, or an
    /// `ADOPT` or `RELEASE` whose payload is not 4 bytes, a `RECYCLE` whose
    /// payload is not 8). The stream is out of sync
    /// afterwards: close the channel.
    Malformed {
        /// The frame's kind byte.
        kind: u8,
        /// The length the header announced.
        len: usize,
    },
    /// A valid frame this end had no memory for ([`try_grow`] failed): it
    /// was skipped whole, so the stream stays in sync and the channel goes
    /// on, but its message is lost. A `PUBLISH` counts as dropped.
    Dropped {
        /// The frame's kind byte.
        kind: u8,
        /// The frame's payload length.
        len: usize,
    },
}

/// Why [`Channel::try_queue`] did not queue a frame (it queued nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The payload is over the channel's limit.
    TooLarge,
    /// The queue would pass its bound ([`outbound_bound`]): the peer is
    /// not reading.
    Full,
    /// The allocator refused the memory for the frame ([`try_grow`]).
    NoMemory,
}

/// Makes room in `buf` for `additional` more bytes, or says it cannot:
/// how every control-channel buffer grows.
///
/// `Vec`'s own growth (`reserve`, `extend_from_slice`, `to_vec`) aborts
/// the process when the allocator refuses. These buffers grow with client
/// traffic, and in the master they are held for every worker at once:
/// under an address-space limit (`prlimit --as`), forty 1 MB messages
/// published while two workers did not read made an outbound queue double
/// past what could be had, and the master aborted (`memory allocation of
/// 4000036 bytes failed`); every worker then drained and exited with it,
/// and the port refused connections. A refusal here costs the one message
/// instead (the callers count it as dropped). The amortized growth (doubling) is asked for
/// first, then, when memory is short, exactly what is needed.
pub(crate) fn try_grow(buf: &mut Vec<u8>, additional: usize) -> Result<(), TryReserveError> {
    // A starved test asks for more than any `Vec` can hold whenever the
    // allocator would be asked: `try_reserve` refuses (`CapacityOverflow`)
    // without allocating, so the fallible paths run for real.
    #[cfg(test)]
    let additional = if starve::on() && buf.capacity() - buf.len() < additional {
        usize::MAX
    } else {
        additional
    };
    buf.try_reserve(additional)
        .or_else(|_| buf.try_reserve_exact(additional))
}

/// A copy of `bytes` in a buffer of its own, `None` without the memory.
fn try_copy(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut copy = Vec::new();
    try_grow(&mut copy, bytes.len()).ok()?;
    copy.extend_from_slice(bytes);
    Some(copy)
}

/// Test switch: while a [`starve::Starved`] guard lives, [`try_grow`]
/// fails on this thread whenever it would allocate, as it does when the
/// allocator refuses.
#[cfg(test)]
pub(crate) mod starve {
    use std::cell::Cell;

    thread_local! {
        static ON: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn on() -> bool {
        ON.with(Cell::get)
    }

    /// Every [`try_grow`](super::try_grow) of this thread fails until
    /// the guard is dropped.
    #[must_use]
    pub(crate) struct Starved(());

    pub(crate) fn starve() -> Starved {
        ON.with(|c| c.set(true));
        Starved(())
    }

    impl Drop for Starved {
        fn drop(&mut self) {
            ON.with(|c| c.set(false));
        }
    }
}

impl Msg {
    /// Appends this message's frame to `out`.
    ///
    /// # Panics
    ///
    /// On [`Msg::Malformed`], which is never sent.
    #[cfg(test)]
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Msg::Ready => encode(READY, &[], out),
            Msg::Adopt(index) => encode(ADOPT, &index.to_le_bytes(), out),
            Msg::Release(index) => encode(RELEASE, &index.to_le_bytes(), out),
            Msg::Publish(payload) => encode(PUBLISH, payload, out),
            Msg::Recycle(served) => encode(RECYCLE, &served.to_le_bytes(), out),
            Msg::Stop => encode(STOP, &[], out),
            Msg::Other { kind, payload } => encode(*kind, payload, out),
            Msg::Malformed { .. } | Msg::Dropped { .. } => {
                panic!("a malformed or dropped message is never encoded")
            }
        }
    }
}

/// Appends one frame `[kind][len u32 LE][payload]` to `out`.
///
/// # Panics
///
/// If `payload` is longer than `u32::MAX` bytes (channels refuse far
/// smaller ones, see [`Channel::queue`]).
pub(crate) fn encode(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    assert!(
        u32::try_from(payload.len()).is_ok(),
        "control payload of {} bytes does not fit a frame",
        payload.len()
    );
    out.reserve(HEADER_LEN + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Decodes the first frame in `buf`.
///
/// Returns `None` while the frame is incomplete, otherwise the message and
/// the number of bytes it used. A header announcing more than
/// `max_payload` bytes yields [`Msg::Malformed`] consuming the whole
/// buffer: the caller should close the channel. A payload there is no
/// memory to copy yields [`Msg::Dropped`], the frame consumed.
pub(crate) fn decode(buf: &[u8], max_payload: usize) -> Option<(Msg, usize)> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    let kind = buf[0];
    let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > max_payload {
        return Some((Msg::Malformed { kind, len }, buf.len()));
    }
    let end = HEADER_LEN + len;
    if buf.len() < end {
        return None;
    }
    let payload = &buf[HEADER_LEN..end];
    let msg = match kind {
        READY => Msg::Ready,
        STOP => Msg::Stop,
        ADOPT => match <[u8; 4]>::try_from(payload) {
            Ok(b) => Msg::Adopt(u32::from_le_bytes(b)),
            Err(_) => Msg::Malformed { kind, len },
        },
        RELEASE => match <[u8; 4]>::try_from(payload) {
            Ok(b) => Msg::Release(u32::from_le_bytes(b)),
            Err(_) => Msg::Malformed { kind, len },
        },
        RECYCLE => match <[u8; 8]>::try_from(payload) {
            Ok(b) => Msg::Recycle(u64::from_le_bytes(b)),
            Err(_) => Msg::Malformed { kind, len },
        },
        // Up to `max_payload` bytes each, as clients publish: copied only
        // if the memory can be had (see `try_grow`).
        _ => match try_copy(payload) {
            None => Msg::Dropped { kind, len },
            Some(payload) if kind == PUBLISH => Msg::Publish(payload),
            Some(payload) => Msg::Other { kind, payload },
        },
    };
    Some((msg, end))
}

/// Inbound buffer plus bounded outbound queue for one end of the channel.
///
/// Typical use from a mio loop (the socket is non-blocking and registered
/// for `READABLE | WRITABLE`, edge-triggered):
///
/// ```text
/// let mut chan = Channel::new();
/// chan.queue(READY, &[]);
/// chan.flush_to(&mut SendNoSignal(&sock))?;
/// // on a readable event for the control token:
/// let eof = chan.receive(&mut sock, |msg| match msg {
///     Msg::Adopt(index) => { /* register listeners[index], then queue READY */ }
///     _ => {}
/// })?;
/// if eof { /* the master died: stop accepting, drain, exit */ }
/// ```
#[derive(Debug)]
pub(crate) struct Channel {
    /// Largest payload taken either way (see [`Channel::with_limit`]).
    max_payload: usize,
    /// Most bytes queued outbound ([`outbound_bound`] of `max_payload`).
    max_outbound: usize,
    inbuf: Vec<u8>,
    /// Bytes of `inbuf` already decoded (compacted lazily, so decoding a
    /// burst of messages does not move the buffer once per message).
    in_pos: usize,
    outbuf: Vec<u8>,
    out_pos: usize,
    /// Inbound bytes still to be skipped: the rest of a frame there was no
    /// memory for (see [`Msg::Dropped`]).
    skip: usize,
}

/// How a [`Channel::receive_some`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// Everything available was read (`WouldBlock`).
    Drained,
    /// The read limit was reached; more input may wait.
    More,
    /// The peer is gone.
    Eof,
}

impl Default for Channel {
    fn default() -> Self {
        Channel::with_limit(MAX_PAYLOAD)
    }
}

impl Channel {
    /// An empty channel buffer for payloads up to [`MAX_PAYLOAD`].
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// An empty channel buffer for payloads up to `max_payload` bytes (at
    /// least [`MAX_PAYLOAD`]). Both ends of a channel must use the same
    /// limit: a frame over the receiver's is [`Msg::Malformed`] and closes
    /// the channel. Memory: inbound at most one maximal frame, outbound at
    /// most [`outbound_bound`]`(max_payload)`.
    pub(crate) fn with_limit(max_payload: usize) -> Self {
        let max_payload = max_payload.clamp(MAX_PAYLOAD, u32::MAX as usize);
        Channel {
            max_payload,
            max_outbound: outbound_bound(max_payload),
            inbuf: Vec::new(),
            in_pos: 0,
            outbuf: Vec::new(),
            out_pos: 0,
            skip: 0,
        }
    }

    /// The largest payload this channel sends or receives.
    pub(crate) fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Reads everything currently available from `r` (until `WouldBlock` or
    /// EOF) and calls `f` for each complete message, in order. Returns
    /// `Ok(true)` on EOF (the peer is gone). Inbound memory stays bounded by
    /// one maximal frame. After `f` has seen [`Msg::Malformed`] the caller
    /// should stop using the channel. A frame there is no memory for is
    /// skipped ([`Msg::Dropped`]); an error of kind `OutOfMemory` means not
    /// even its header could be kept: close the channel.
    pub(crate) fn receive<R: Read>(&mut self, r: &mut R, f: impl FnMut(Msg)) -> io::Result<bool> {
        Ok(self.receive_some(r, usize::MAX, f)? == Received::Eof)
    }

    /// [`receive`](Self::receive), but stops once it has read `limit` bytes
    /// or more ([`Received::More`]: input may be left, and as readiness is
    /// edge-triggered no new event will say so; the caller reads on
    /// later). The master reads published messages this way, so that what
    /// one read of a busy worker's channel relays stays bounded and flow
    /// control (`pubsub::relay`) gets a say between reads: a worker that
    /// keeps its channel full would otherwise be read for as long as it
    /// writes, and what it published would overflow the others' queues.
    pub(crate) fn receive_some<R: Read>(
        &mut self,
        r: &mut R,
        limit: usize,
        mut f: impl FnMut(Msg),
    ) -> io::Result<Received> {
        let cap = HEADER_LEN + self.max_payload;
        let mut chunk = [0u8; 64 * 1024];
        let mut read = 0usize;
        while read < limit {
            let room = cap
                .saturating_sub(self.inbuf.len() - self.in_pos)
                .clamp(1, chunk.len());
            let n = match r.read(&mut chunk[..room]) {
                Ok(0) => {
                    self.drain_msgs(&mut f);
                    return Ok(Received::Eof);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Received::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            read += n;
            self.take_in(&chunk[..n], &mut f)?;
        }
        Ok(Received::More)
    }

    /// Appends `data`, just read, to the inbound buffer and hands `f` every
    /// message it completes. When the buffer cannot grow for it
    /// ([`try_grow`]), the frame being received is given up: what is
    /// buffered of it is let go, the rest is skipped as it arrives, and `f`
    /// gets [`Msg::Dropped`]; the frames after it are read as usual.
    fn take_in(&mut self, mut data: &[u8], f: &mut impl FnMut(Msg)) -> io::Result<()> {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            if try_grow(&mut self.inbuf, data.len()).is_ok() {
                self.inbuf.extend_from_slice(data);
                self.drain_msgs(f);
                return Ok(());
            }
            self.drain_msgs(f);
            if self.inbuf.is_empty() {
                // Nothing buffered: the whole frames at the start of `data`
                // need no room in the buffer (a payload is copied, itself
                // fallibly), so they are taken from `data` directly. Only a
                // frame that must wait for more input needs the room that
                // was refused; a small one ahead of it (`READY`, `ADOPT`)
                // is not lost with it.
                let before = data.len();
                while let Some((msg, used)) = decode(data, self.max_payload) {
                    let malformed = matches!(msg, Msg::Malformed { .. });
                    f(msg);
                    if malformed {
                        return Ok(());
                    }
                    data = &data[used..];
                }
                if data.len() < before {
                    // Try to buffer what is left: less than before.
                    continue;
                }
            }
            // Left buffered: the start of one frame, too short to decode.
            let have = &self.inbuf[self.in_pos..];
            let mut header = [0u8; HEADER_LEN];
            let kept = have.len().min(HEADER_LEN);
            header[..kept].copy_from_slice(&have[..kept]);
            let Some(missing) = data.get(..HEADER_LEN - kept) else {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "no memory for a control frame's header",
                ));
            };
            header[kept..].copy_from_slice(missing);
            let kind = header[0];
            let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let buffered = have.len();
            self.inbuf.clear();
            self.in_pos = 0;
            if len > self.max_payload {
                // What `decode` says of such a header; the caller closes.
                f(Msg::Malformed { kind, len });
                return Ok(());
            }
            // `buffered` is short of the whole frame (it would have been
            // decoded otherwise).
            self.skip = (HEADER_LEN + len).saturating_sub(buffered);
            f(Msg::Dropped { kind, len });
        }
        Ok(())
    }

    /// Takes the next complete message out of the inbound buffer, if any.
    /// Mostly for tests; [`Channel::receive`] calls it for you.
    pub(crate) fn next_msg(&mut self) -> Option<Msg> {
        let Some((msg, used)) = decode(&self.inbuf[self.in_pos..], self.max_payload) else {
            // Incomplete: drop what was decoded so the buffer stays bounded.
            self.inbuf.drain(..self.in_pos);
            self.in_pos = 0;
            return None;
        };
        self.in_pos += used;
        if self.in_pos == self.inbuf.len() {
            self.inbuf.clear();
            self.in_pos = 0;
            shrink_idle(&mut self.inbuf);
        }
        Some(msg)
    }

    /// Appends raw received bytes to the inbound buffer (for tests and for
    /// callers that do their own reads).
    #[cfg(test)]
    pub(crate) fn push_inbound(&mut self, bytes: &[u8]) {
        self.inbuf.extend_from_slice(bytes);
    }

    fn drain_msgs(&mut self, f: &mut impl FnMut(Msg)) {
        while let Some(msg) = self.next_msg() {
            f(msg);
        }
    }

    /// Queues one frame for sending. Queues nothing, and says why, when
    /// the payload is over the channel's limit, the queue would exceed its
    /// bound ([`outbound_bound`]: a slow or stuck peer cannot make the
    /// sender grow without bound), or there is no memory for it.
    pub(crate) fn try_queue(&mut self, kind: u8, payload: &[u8]) -> Result<(), Refused> {
        if payload.len() > self.max_payload {
            return Err(Refused::TooLarge);
        }
        if self.pending_out() + HEADER_LEN + payload.len() > self.max_outbound {
            return Err(Refused::Full);
        }
        if self.out_pos > 0 && self.out_pos == self.outbuf.len() {
            self.outbuf.clear();
            self.out_pos = 0;
        }
        // Within the bound, yet the queue may have to double to take the
        // frame (see `try_grow` for the abort that caused): fallibly, so that
        // the caller drops this message rather than the process aborting.
        try_grow(&mut self.outbuf, HEADER_LEN + payload.len()).map_err(|_| Refused::NoMemory)?;
        encode(kind, payload, &mut self.outbuf);
        Ok(())
    }

    /// [`try_queue`](Self::try_queue), for callers that need not know why:
    /// `false` when nothing was queued.
    pub(crate) fn queue(&mut self, kind: u8, payload: &[u8]) -> bool {
        self.try_queue(kind, payload).is_ok()
    }

    /// Bytes queued but not yet written.
    pub(crate) fn pending_out(&self) -> usize {
        self.outbuf.len() - self.out_pos
    }

    /// Writes queued bytes to `w` until the queue is empty or `w` would
    /// block (the rest goes out on the next writable event).
    pub(crate) fn flush_to<W: Write>(&mut self, w: &mut W) -> io::Result<()> {
        while self.out_pos < self.outbuf.len() {
            match w.write(&self.outbuf[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.out_pos == self.outbuf.len() {
            self.outbuf.clear();
            self.out_pos = 0;
            shrink_idle(&mut self.outbuf);
        } else if self.out_pos > 64 * 1024 {
            self.outbuf.drain(..self.out_pos);
            self.out_pos = 0;
        }
        Ok(())
    }
}

/// A new control channel: a Unix socketpair, both ends non-blocking and
/// close-on-exec, neither raising `SIGPIPE` when written to after the peer
/// died (`SO_NOSIGPIPE` where `send` has no `MSG_NOSIGNAL`; see
/// [`SendNoSignal`]).
pub(crate) fn pair() -> io::Result<(UnixStream, UnixStream)> {
    let (a, b) = UnixStream::pair()?;
    for end in [&a, &b] {
        end.set_nonblocking(true)?;
        #[cfg(target_vendor = "apple")]
        socket2::SockRef::from(end).set_nosigpipe(true)?;
    }
    Ok((a, b))
}

/// Gives back the room of an emptied buffer past 1 MiB, keeping 64 KiB: a
/// burst of published messages (up to [`MAX_OUTBOUND`] and a frame on
/// each side of every channel) would otherwise stay with the master and
/// each worker for good. Under a steady flow this large, one
/// reallocation per MiB moved is nothing.
///
/// The large buffer is freed before the small one is asked for, fallibly
/// (`shrink_to` reallocates, and aborts if that fails): without the
/// memory, the buffer is left empty and grows again when needed.
fn shrink_idle(buf: &mut Vec<u8>) {
    if buf.capacity() > 1 << 20 {
        debug_assert!(buf.is_empty());
        *buf = Vec::new();
        let _ = try_grow(buf, 64 * 1024);
    }
}

/// `send(2)` flags that keep a write to a dead peer from raising `SIGPIPE`.
/// macOS has no `MSG_NOSIGNAL`: there the sockets carry `SO_NOSIGPIPE`
/// instead ([`pair`]).
#[cfg(not(target_vendor = "apple"))]
const NO_SIGNAL: rustix::net::SendFlags = rustix::net::SendFlags::NOSIGNAL;
#[cfg(target_vendor = "apple")]
const NO_SIGNAL: rustix::net::SendFlags = rustix::net::SendFlags::empty();

/// A `Write` adapter that sends on a control socket without raising
/// `SIGPIPE` (`MSG_NOSIGNAL`, or the `SO_NOSIGPIPE` that [`pair`] set where
/// that flag does not exist), so writing to a peer that has died returns
/// `EPIPE` instead.
#[derive(Debug)]
pub(crate) struct SendNoSignal<'a, F: AsFd>(pub &'a F);

impl<F: AsFd> Write for SendNoSignal<'_, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        rustix::net::send(self.0.as_fd(), buf, NO_SIGNAL).map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emptied_buffers_give_back_a_bursts_room() {
        let mut c = Channel::with_limit(4 << 20);
        let big = vec![7u8; 3 << 20];
        assert!(c.queue(PUBLISH, &big));
        let mut sink = Vec::new();
        c.flush_to(&mut sink).unwrap();
        assert_eq!(c.pending_out(), 0);
        assert!(c.outbuf.capacity() <= 64 * 1024, "{}", c.outbuf.capacity());
        c.push_inbound(&sink);
        assert_eq!(c.next_msg(), Some(Msg::Publish(big)));
        assert!(c.inbuf.capacity() <= 64 * 1024, "{}", c.inbuf.capacity());
        // A small flow keeps its room.
        assert!(c.queue(PUBLISH, b"hi"));
        c.flush_to(&mut Vec::new()).unwrap();
        assert!(c.outbuf.capacity() > 0);
    }

    #[test]
    fn roundtrip_all_kinds() {
        let msgs = [
            Msg::Ready,
            Msg::Adopt(7),
            Msg::Adopt(u32::MAX),
            Msg::Release(7),
            Msg::Recycle(1001),
            Msg::Publish(b"hello".to_vec()),
            Msg::Publish(Vec::new()),
            Msg::Other {
                kind: 200,
                payload: vec![1, 2, 3],
            },
        ];
        let mut buf = Vec::new();
        for m in &msgs {
            m.encode(&mut buf);
        }
        let mut at = 0;
        for m in &msgs {
            let (got, used) = decode(&buf[at..], MAX_PAYLOAD).expect("complete frame");
            assert_eq!(&got, m);
            at += used;
        }
        assert_eq!(at, buf.len());
        assert_eq!(decode(&buf[at..], MAX_PAYLOAD), None);
    }

    #[test]
    fn wire_format_is_kind_len_le_payload() {
        let mut buf = Vec::new();
        encode(ADOPT, &3u32.to_le_bytes(), &mut buf);
        assert_eq!(buf, [2, 4, 0, 0, 0, 3, 0, 0, 0]);
        buf.clear();
        encode(READY, &[], &mut buf);
        assert_eq!(buf, [1, 0, 0, 0, 0]);
    }

    #[test]
    fn partial_frames_need_more() {
        let mut buf = Vec::new();
        Msg::Publish(vec![9; 100]).encode(&mut buf);
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut], MAX_PAYLOAD), None, "cut at {cut}");
        }
        assert!(decode(&buf, MAX_PAYLOAD).is_some());
    }

    #[test]
    fn byte_by_byte_channel_delivers_in_order() {
        let mut wire = Vec::new();
        Msg::Ready.encode(&mut wire);
        Msg::Adopt(2).encode(&mut wire);
        Msg::Ready.encode(&mut wire);
        let mut chan = Channel::new();
        let mut got = Vec::new();
        for b in &wire {
            chan.push_inbound(std::slice::from_ref(b));
            while let Some(m) = chan.next_msg() {
                got.push(m);
            }
        }
        assert_eq!(got, [Msg::Ready, Msg::Adopt(2), Msg::Ready]);
    }

    #[test]
    fn oversized_and_bad_adopt_are_malformed() {
        let mut buf = vec![PUBLISH];
        buf.extend_from_slice(&((MAX_PAYLOAD as u32) + 1).to_le_bytes());
        assert_eq!(
            decode(&buf, MAX_PAYLOAD),
            Some((
                Msg::Malformed {
                    kind: PUBLISH,
                    len: MAX_PAYLOAD + 1
                },
                buf.len()
            ))
        );
        let mut buf = Vec::new();
        encode(ADOPT, &[1, 2], &mut buf);
        assert_eq!(
            decode(&buf, MAX_PAYLOAD),
            Some((
                Msg::Malformed {
                    kind: ADOPT,
                    len: 2
                },
                7
            ))
        );
        let mut buf = Vec::new();
        encode(RECYCLE, &[1, 2, 3, 4], &mut buf);
        assert_eq!(
            decode(&buf, MAX_PAYLOAD),
            Some((
                Msg::Malformed {
                    kind: RECYCLE,
                    len: 4
                },
                9
            ))
        );
        let mut buf = Vec::new();
        encode(RELEASE, &[1, 2, 3, 4, 5], &mut buf);
        assert_eq!(
            decode(&buf, MAX_PAYLOAD),
            Some((
                Msg::Malformed {
                    kind: RELEASE,
                    len: 5
                },
                10
            ))
        );
    }

    /// A reader that returns at most `step` bytes, then `WouldBlock` once,
    /// alternating, and EOF at the end.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
        block_next: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.block_next {
                self.block_next = false;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.block_next = true;
            let n = self.step.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn receive_reports_eof_after_last_message() {
        let mut wire = Vec::new();
        for i in 0..50 {
            Msg::Adopt(i).encode(&mut wire);
        }
        let mut r = Trickle {
            data: wire,
            pos: 0,
            step: 3,
            block_next: false,
        };
        let mut chan = Channel::new();
        let mut got = Vec::new();
        let mut eof = false;
        for _ in 0..10_000 {
            eof = chan.receive(&mut r, |m| got.push(m)).unwrap();
            if eof {
                break;
            }
        }
        assert!(eof);
        assert_eq!(got, (0..50).map(Msg::Adopt).collect::<Vec<_>>());
    }

    /// A peer that keeps writing (a reader that does not run dry within the
    /// test): a bounded receive stops after its limit, says more may wait,
    /// and loses nothing; the next call goes on where it stopped.
    #[test]
    fn receive_some_stops_at_its_limit() {
        let message = Msg::Publish(vec![7u8; 1000]);
        let mut wire = Vec::new();
        for _ in 0..200 {
            message.encode(&mut wire);
        }
        let mut r = wire.as_slice();
        let mut chan = Channel::new();
        let mut got = Vec::new();
        let status = chan.receive_some(&mut r, 10_000, |m| got.push(m)).unwrap();
        assert_eq!(status, Received::More);
        // It reads 64 KiB at a time: the first read passes the limit.
        assert_eq!(got.len(), 64 * 1024 / 1005);
        let status = chan.receive_some(&mut r, 10_000, |m| got.push(m)).unwrap();
        assert_eq!(status, Received::More);
        assert_eq!(got.len(), 2 * 64 * 1024 / 1005);
        assert!(got.iter().all(|m| *m == message));
        // Unbounded, it reads to the end (a slice's end is EOF).
        assert!(chan.receive(&mut r, |m| got.push(m)).unwrap());
        assert_eq!(got.len(), 200);
    }

    /// A writer that accepts `cap` bytes, then blocks.
    struct Limited {
        out: Vec<u8>,
        cap: usize,
    }

    impl Write for Limited {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let room = self.cap - self.out.len();
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = room.min(buf.len());
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn outbound_queue_is_bounded_and_resumes() {
        let mut chan = Channel::new();
        let payload = vec![7u8; 1000];
        let mut queued = 0;
        while chan.queue(PUBLISH, &payload) {
            queued += 1;
            assert!(queued < 100_000, "queue never filled");
        }
        assert!(chan.pending_out() <= MAX_OUTBOUND);
        assert_eq!(queued, MAX_OUTBOUND / (HEADER_LEN + payload.len()));
        // Oversized payloads are refused outright.
        assert!(!Channel::new().queue(PUBLISH, &vec![0; MAX_PAYLOAD + 1]));

        let mut w = Limited {
            out: Vec::new(),
            cap: 10_000,
        };
        chan.flush_to(&mut w).unwrap();
        assert_eq!(chan.pending_out(), queued * 1005 - 10_000);
        assert!(chan.queue(READY, &[]), "room again after a partial flush");
        w.cap = usize::MAX;
        chan.flush_to(&mut w).unwrap();
        assert_eq!(chan.pending_out(), 0);
        let mut rx = Channel::new();
        rx.push_inbound(&w.out);
        let mut n = 0;
        while let Some(m) = rx.next_msg() {
            if n < queued {
                assert_eq!(m, Msg::Publish(payload.clone()));
            } else {
                assert_eq!(m, Msg::Ready);
            }
            n += 1;
        }
        assert_eq!(n, queued + 1);
    }

    /// A channel sized for larger payloads carries a frame as large as its
    /// limit (a published message of the app's largest body plus its
    /// topic) and still queues it behind what flow control lets pile up;
    /// the default channel refuses it, and over the limit both refuse.
    #[test]
    fn a_larger_limit_carries_larger_frames_both_ways() {
        let limit = 3 << 20;
        let big = vec![5u8; limit];
        assert!(!Channel::new().queue(PUBLISH, &big));
        let mut tx = Channel::with_limit(limit);
        assert_eq!(tx.max_payload(), limit);
        assert!(!tx.queue(PUBLISH, &vec![0; limit + 1]));
        let behind = vec![1u8; 1000];
        while tx.pending_out() < crate::pubsub::relay::HIGH + crate::pubsub::relay::READ_LIMIT {
            assert!(tx.queue(PUBLISH, &behind));
        }
        assert!(tx.queue(PUBLISH, &big), "no room for a maximal frame");
        let mut w = Limited {
            out: Vec::new(),
            cap: usize::MAX,
        };
        tx.flush_to(&mut w).unwrap();
        let mut r = w.out.as_slice();
        let mut rx = Channel::with_limit(limit);
        let mut got = Vec::new();
        assert!(rx.receive(&mut r, |m| got.push(m)).unwrap());
        assert_eq!(got.last(), Some(&Msg::Publish(big)));
        assert!(!got.iter().any(|m| matches!(m, Msg::Malformed { .. })));
        // The default limit reads the same frame as malformed.
        let mut r = w.out.as_slice();
        let mut got = Vec::new();
        Channel::new().receive(&mut r, |m| got.push(m)).unwrap();
        assert!(matches!(got.last(), Some(Msg::Malformed { .. })));
    }

    /// Without room to buffer a read, the whole frames at its start still
    /// arrive: only the frame that would have to wait for more input is
    /// dropped, not a `READY` or `ADOPT` ahead of it.
    #[test]
    fn small_frames_ahead_of_one_without_memory_still_arrive() {
        let mut wire = Vec::new();
        Msg::Ready.encode(&mut wire);
        Msg::Adopt(7).encode(&mut wire);
        Msg::Publish(vec![3; 1000]).encode(&mut wire);
        Msg::Ready.encode(&mut wire);
        // The first read ends inside the large frame.
        let mut r = Trickle {
            data: wire,
            pos: 0,
            step: 200,
            block_next: false,
        };
        let mut rx = Channel::new();
        let _starved = starve::starve();
        let mut got = Vec::new();
        for _ in 0..100 {
            if rx.receive(&mut r, |m| got.push(m)).unwrap() {
                break;
            }
        }
        assert_eq!(
            got,
            [
                Msg::Ready,
                Msg::Adopt(7),
                Msg::Dropped {
                    kind: PUBLISH,
                    len: 1000
                },
                Msg::Ready
            ]
        );
    }

    /// The helper every buffer grows through says no instead of aborting
    /// (what `reserve` does) for a size no allocation can satisfy, and
    /// leaves the buffer as it was.
    #[test]
    fn try_grow_refuses_what_cannot_be_had_and_changes_nothing() {
        let mut buf = vec![1u8, 2, 3];
        let err = try_grow(&mut buf, isize::MAX as usize).unwrap_err();
        // `CapacityOverflow`: refused before the allocator is asked.
        assert!(err.to_string().contains("capacity exceeded"), "{err}");
        assert_eq!(buf, [1, 2, 3]);
        try_grow(&mut buf, 1000).unwrap();
        assert!(buf.capacity() >= 1003);
        // Starved (as tests simulate an allocator that refuses), what
        // needs no allocation still works.
        let _starved = starve::starve();
        assert!(try_grow(&mut buf, 1000).is_ok());
        assert!(try_grow(&mut buf, 1 << 20).is_err());
    }

    /// Without memory for a frame, `try_queue` says so and queues nothing
    /// (the master drops that message, it does not abort); the queue is
    /// intact and takes frames again once memory is back.
    #[test]
    fn a_frame_without_memory_is_refused_and_the_queue_goes_on() {
        let mut c = Channel::with_limit(4 << 20);
        assert_eq!(c.try_queue(PUBLISH, b"first"), Ok(()));
        let big = vec![9u8; 3 << 20];
        {
            let _starved = starve::starve();
            assert_eq!(c.try_queue(PUBLISH, &big), Err(Refused::NoMemory));
            assert!(!c.queue(PUBLISH, &big));
            assert_eq!(c.pending_out(), HEADER_LEN + 5);
            // The bound and the limit are checked first, as before.
            assert_eq!(
                c.try_queue(PUBLISH, &vec![0; (4 << 20) + 1]),
                Err(Refused::TooLarge)
            );
        }
        assert_eq!(c.try_queue(PUBLISH, &big), Ok(()));
        let mut sink = Vec::new();
        c.flush_to(&mut sink).unwrap();
        let mut rx = Channel::with_limit(4 << 20);
        let mut got = Vec::new();
        assert!(rx.receive(&mut sink.as_slice(), |m| got.push(m)).unwrap());
        assert_eq!(got, [Msg::Publish(b"first".to_vec()), Msg::Publish(big)]);
    }

    /// Inbound, a frame there is no memory for is skipped whole, its
    /// header split between what was buffered and what was read: the
    /// receiver hears it was dropped, and the frames after it arrive as
    /// usual.
    #[test]
    fn an_inbound_frame_without_memory_is_skipped_and_the_stream_stays_in_sync() {
        let mut rx = Channel::new();
        // A first message leaves the inbound buffer room for 15 bytes.
        let mut first = Vec::new();
        Msg::Publish(vec![1; 10]).encode(&mut first);
        let mut got = Vec::new();
        rx.receive(&mut first.as_slice(), |m| got.push(m)).unwrap();
        assert_eq!(got, [Msg::Publish(vec![1; 10])]);
        assert_eq!(rx.inbuf.capacity(), 15);

        let mut wire = Vec::new();
        Msg::Ready.encode(&mut wire);
        Msg::Ready.encode(&mut wire);
        Msg::Publish(vec![2; 1000]).encode(&mut wire);
        Msg::Adopt(7).encode(&mut wire);
        // 14 bytes a read: the second stops 4 bytes into the large frame's
        // header, the third cannot be kept.
        let mut r = Trickle {
            data: wire,
            pos: 0,
            step: 14,
            block_next: false,
        };
        let _starved = starve::starve();
        let mut got = Vec::new();
        for _ in 0..10_000 {
            if rx.receive(&mut r, |m| got.push(m)).unwrap() {
                break;
            }
        }
        assert_eq!(
            got,
            [
                Msg::Ready,
                Msg::Ready,
                Msg::Dropped {
                    kind: PUBLISH,
                    len: 1000
                },
                Msg::Adopt(7)
            ]
        );
        // A whole frame whose payload cannot be copied is dropped too.
        let mut frame = Vec::new();
        encode(PUBLISH, b"abc", &mut frame);
        assert_eq!(
            decode(&frame, MAX_PAYLOAD),
            Some((
                Msg::Dropped {
                    kind: PUBLISH,
                    len: 3
                },
                8
            ))
        );
    }

    #[test]
    fn socketpair_roundtrip_without_sigpipe() {
        let (a, b) = pair().unwrap();
        let mut ca = Channel::new();
        assert!(ca.queue(READY, &[]));
        assert!(ca.queue(ADOPT, &5u32.to_le_bytes()));
        ca.flush_to(&mut SendNoSignal(&a)).unwrap();
        let mut cb = Channel::new();
        let mut got = Vec::new();
        let mut rb = &b;
        assert!(!cb.receive(&mut rb, |m| got.push(m)).unwrap());
        assert_eq!(got, [Msg::Ready, Msg::Adopt(5)]);
        drop(b);
        assert!(ca.queue(READY, &[]));
        let err = ca.flush_to(&mut SendNoSignal(&a)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let mut ra = &a;
        assert!(Channel::new().receive(&mut ra, |_| ()).unwrap(), "EOF");
    }
}
