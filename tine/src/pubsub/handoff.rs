//! Publishing from other threads of a worker: a [`Publisher`].
//!
//! [`publish`](super::publish) queues in the calling thread's outbox, which
//! only the thread running the worker's event loop drains. A handler that
//! hands slow work to a thread of its own (a report, a call to a slow
//! service), or a thread started in `on_worker_start` (a ticker, a file
//! follower), publishes through a `Publisher` instead: its messages wait
//! in the worker's inbox (here, behind a mutex: the one place tine's
//! threads meet), and a [`mio::Waker`] tells the loop to move them to the
//! outbox, from where they travel as any other message.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use std::cell::{Cell, RefCell};

use super::{outbox, stats, Payload, Published};
use crate::{Error, StatusCode};

/// Publishes to the worker it was made in, from any thread: see
/// [`publisher`](crate::pubsub::publisher). `Send`, `Sync` and cheap to
/// clone.
///
/// ```
/// use tine::{test::TestClient, App, Request, StatusCode};
///
/// let app = App::new().post("/report", |_: &Request| {
///     let publisher = tine::pubsub::publisher().expect("in a worker");
///     // The slow part runs beside the worker, which serves on.
///     std::thread::spawn(move || {
///         let report = "42 rows".to_string(); // ... a slow query ...
///         publisher.publish("reports", report).ok();
///     })
///     .join() // (only so that this example can check the result)
///     .unwrap();
///     StatusCode::ACCEPTED
/// });
/// let client = TestClient::new(app);
/// client.post("/report").send();
/// assert_eq!(client.take_published().len(), 1);
/// ```
#[derive(Clone)]
pub struct Publisher {
    inbox: Arc<Inbox>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("open", &self.inbox.open.load(Ordering::Relaxed))
            .finish()
    }
}

/// Messages from other threads, waiting for the worker's loop.
struct Inbox {
    queue: Mutex<Queue>,
    /// Set once the loop runs; until then messages wait (they were
    /// published in `on_worker_start`, before it).
    waker: OnceLock<Arc<mio::Waker>>,
    /// Whether the loop was woken and has not drained since: one wake-up
    /// (a system call) per batch, not per message.
    woken: AtomicBool,
    /// The loop's [`max_size`](super::max_size), plus the wire overhead.
    limit: AtomicUsize,
    /// False once the loop has ended: nothing would take the messages.
    open: AtomicBool,
    /// Messages refused here, for the loop's [`stats`].
    dropped: AtomicU64,
}

#[derive(Default)]
struct Queue {
    messages: VecDeque<Published>,
    bytes: usize,
}

thread_local! {
    /// The inbox of the worker whose loop runs (or will run) on this
    /// thread.
    static INBOX: RefCell<Option<Arc<Inbox>>> = const { RefCell::new(None) };
    /// Messages were left in the inbox for lack of room (see [`take`]).
    static PENDING: Cell<bool> = const { Cell::new(false) };
}

/// This worker's publisher: `None` outside a worker (and outside a
/// [`TestClient`](crate::test::TestClient)), as in a thread of one; take
/// it in a handler or in `on_worker_start`, then move it to the thread.
pub fn publisher() -> Option<Publisher> {
    if !super::attached() {
        return None;
    }
    Some(Publisher {
        inbox: INBOX.with(|i| i.borrow_mut().get_or_insert_with(new_inbox).clone()),
    })
}

fn new_inbox() -> Arc<Inbox> {
    Arc::new(Inbox {
        queue: Mutex::new(Queue::default()),
        waker: OnceLock::new(),
        woken: AtomicBool::new(false),
        limit: AtomicUsize::new(super::limit()),
        open: AtomicBool::new(true),
        dropped: AtomicU64::new(0),
    })
}

impl Publisher {
    /// Publishes a text message, as [`publish`](crate::publish) does from
    /// the worker's own thread: the same delivery and size limit. It
    /// waits in the worker's inbox until the loop takes it (at once, if
    /// the bus keeps up; while the bus is behind, as long as a publishing
    /// handler would wait), and is refused with `503 Service Unavailable`
    /// when 8 MiB of this worker's other threads' messages already wait,
    /// or once the worker has stopped. A message taken is not dropped on
    /// the way to the bus while the worker runs; when it stops, what
    /// still waits goes with its last messages, as far as the bus takes
    /// them (what it cannot take is counted as dropped, as a handler's
    /// messages at a stop are).
    pub fn publish(&self, topic: &str, text: impl Into<String>) -> Result<(), Error> {
        let text = crate::sse::escape_plain(text.into());
        self.send(topic, Payload::Text(text))
    }

    /// Publishes a binary message (see [`publish`](Self::publish)).
    pub fn publish_binary(&self, topic: &str, data: impl Into<Bytes>) -> Result<(), Error> {
        self.send(topic, Payload::Binary(data.into()))
    }

    /// Publishes a server-sent event, as
    /// [`publish_event`](crate::publish_event) does.
    pub fn publish_event(&self, topic: &str, event: crate::SseEvent) -> Result<(), Error> {
        self.send(topic, Payload::Text(crate::sse::event_text(&event)))
    }

    fn send(&self, topic: &str, payload: Payload) -> Result<(), Error> {
        let inbox = &*self.inbox;
        let p = Published {
            topic: topic.to_string(),
            payload,
        };
        let refused = |e: Error| {
            inbox.dropped.fetch_add(1, Ordering::Relaxed);
            Err(e)
        };
        if let Err(e) = super::check_size(&p, inbox.limit.load(Ordering::Relaxed)) {
            return refused(e);
        }
        let size = p.size();
        {
            let mut q = inbox.queue.lock().unwrap_or_else(PoisonError::into_inner);
            // Under the lock [`close`] takes: a message is either queued
            // before the loop's last look, or refused.
            if !inbox.open.load(Ordering::Acquire) {
                drop(q);
                return refused(Error::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the worker this publisher belongs to has stopped",
                ));
            }
            if q.bytes + size > outbox::MAX {
                drop(q);
                return refused(Error::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many published messages waiting; message dropped",
                ));
            }
            q.messages.push_back(p);
            q.bytes += size;
        }
        if !inbox.woken.swap(true, Ordering::AcqRel) {
            if let Some(waker) = inbox.waker.get() {
                // A failed wake-up (the loop gone) leaves the messages
                // where a stopping worker would lose them anyway.
                let _ = waker.wake();
            }
        }
        Ok(())
    }
}

/// The loop starts: other threads' messages wake it with `waker` from now
/// on; any already waiting (published in `on_worker_start`) are moved at
/// once.
pub(crate) fn start(waker: Arc<mio::Waker>) {
    let inbox = INBOX.with(|i| i.borrow_mut().get_or_insert_with(new_inbox).clone());
    inbox.limit.store(super::limit(), Ordering::Relaxed);
    let _ = inbox.waker.set(waker);
    take();
}

/// Moves what other threads published to this thread's outbox (on the
/// loop's wake-up, and on later turns while some is left), counting what
/// they had to refuse.
///
/// Only while the outbox has room (under [`outbox::ROOM`], the mark below
/// which handlers run too): the rest waits here, in order, for the bus to
/// drain the outbox, as a publishing handler waits. A message the thread
/// was told was taken is never dropped on the way; the inbox's own bound
/// (8 MiB) is what refuses a thread that publishes faster than the bus
/// carries.
pub(crate) fn take() {
    let Some(inbox) = INBOX.with(|i| i.borrow().clone()) else {
        return;
    };
    inbox.woken.store(false, Ordering::Release);
    let dropped = inbox.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        stats::add_dropped(dropped);
    }
    // One message at a time, the lock released before the outbox takes
    // it: the outbox may log, and a logger may hold a `Publisher` (which
    // takes this lock: held here, it would wait for ever).
    let next = || {
        let mut q = inbox.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let p = q.messages.pop_front()?;
        q.bytes -= p.size();
        Some(p)
    };
    while outbox::has_room() {
        let Some(p) = next() else {
            break;
        };
        // Counted as published here, in the worker's own counters.
        stats::add_published();
        if !outbox::push(p) {
            // Past the outbox's 8 MiB with room under its 1 MiB mark:
            // not reached with messages of at most `max_size` (4 MiB).
            log::warn!("pub/sub: a message from another thread was dropped (outbox full)");
        }
    }
    let left = !inbox
        .queue
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .messages
        .is_empty();
    PENDING.with(|p| p.set(left));
}

/// Whether messages of other threads wait for room in the outbox: the
/// loop takes them again after it delivered (one thread-local read a
/// turn).
pub(crate) fn pending() -> bool {
    PENDING.with(Cell::get)
}

/// The loop is ending: publishers say so instead of queueing (from the
/// moment this takes the inbox's lock), and what they queued before goes
/// to the outbox, whatever its size, for the loop's last hand-over to
/// the bus (which may not take everything: what it refuses is counted as
/// dropped, as a handler's messages at a stop are).
pub(crate) fn close() {
    let Some(inbox) = INBOX.with(|i| i.borrow_mut().take()) else {
        return;
    };
    let left = {
        let mut q = inbox.queue.lock().unwrap_or_else(PoisonError::into_inner);
        inbox.open.store(false, Ordering::Release);
        q.bytes = 0;
        std::mem::take(&mut q.messages)
    };
    let dropped = inbox.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        stats::add_dropped(dropped);
    }
    PENDING.with(|p| p.set(false));
    for p in left {
        stats::add_published();
        // Past 8 MiB the outbox drops (and counts) it.
        let _ = outbox::push(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages a thread was told were taken wait in the inbox while the
    /// outbox is full, and none is lost: they move on as it drains.
    #[test]
    fn a_full_outbox_keeps_other_threads_messages_waiting_not_lost() {
        super::super::set_max_size(super::super::MAX_SIZE);
        let big = "x".repeat(512 << 10);
        // A handler filled the outbox past its mark.
        for _ in 0..3 {
            super::super::publish("t", big.clone()).unwrap();
        }
        assert!(!outbox::has_room());
        let publisher = publisher().expect("attached");
        std::thread::spawn(move || {
            for i in 0..4 {
                publisher
                    .publish("u", format!("from a thread {i}"))
                    .unwrap();
            }
        })
        .join()
        .unwrap();
        take();
        assert!(pending());
        let mut got = Vec::new();
        while let Some(p) = outbox::pop() {
            if p.topic == "u" {
                got.push(p.payload);
            }
            if outbox::has_room() && pending() {
                take();
            }
        }
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(!pending());
    }

    /// Messages from another thread reach the outbox, in order, once the
    /// loop takes them; none are taken twice; a stopped worker refuses.
    #[test]
    fn other_threads_publish_through_the_inbox() {
        super::super::set_max_size(super::super::MAX_SIZE);
        let publisher = publisher().expect("attached");
        std::thread::spawn(move || {
            for i in 0..3 {
                publisher.publish("t", format!("m{i}")).unwrap();
            }
            publisher
        })
        .join()
        .map(|p| {
            take();
            let got: Vec<Payload> = std::iter::from_fn(outbox::pop).map(|p| p.payload).collect();
            assert_eq!(
                got,
                ["m0", "m1", "m2"].map(|t| Payload::Text(t.into())).to_vec()
            );
            take();
            assert!(outbox::pop().is_none());
            // Queued, not taken yet, when the loop ends: handed to the
            // outbox for its last delivery, not lost.
            p.publish("t", "before the end").unwrap();
            close();
            assert_eq!(
                outbox::pop().map(|m| m.payload),
                Some(Payload::Text("before the end".into()))
            );
            let refused = p.publish("t", "late").unwrap_err();
            assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        })
        .unwrap();
    }

    /// Outside a worker's thread there is no publisher.
    #[test]
    fn no_publisher_outside_a_worker() {
        std::thread::spawn(|| assert!(publisher().is_none()))
            .join()
            .unwrap();
    }
}
