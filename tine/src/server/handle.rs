//! Stopping a server from code rather than with a signal: what a test, or
//! a program that embeds a server, needs to end it when it is done.
//!
//! A single process's loop holds a [`mio::Waker`]: a handle sets a flag and
//! wakes it, and the loop begins its graceful stop (as on `SIGTERM`) in its
//! next turn, whichever thread the handle was used on. Several servers in
//! one process (a test's, each on its own thread) stop one at a time,
//! which a signal to the process could not do. A master runs no thread of
//! the app's (it refuses to fork beside one), so the code that holds its
//! handle runs in its workers: there the handle wakes the worker's loop,
//! which asks the master over its control channel (`control::STOP`) for
//! the stop an operator's `SIGTERM` makes. Not a signal: a worker that
//! dropped privileges ([`App::user`](crate::App::user)) may not signal a
//! master that runs as root.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Stops a running [`Server`](crate::Server) gracefully, from any thread
/// (or, with workers, from a handler in any worker): taken with
/// [`Server::handle`](crate::Server::handle) before
/// [`run`](crate::Server::run), which then returns as it does after
/// `SIGTERM` (new connections refused, requests in flight finished within
/// [`Limits::drain_timeout`](crate::Limits::drain_timeout)). Cheap to
/// clone, `Send` and `Sync`.
///
/// A server (which holds the app's handlers, and so stays on the thread
/// that built it) served on a thread of its own, stopped from another:
///
/// ```
/// let (tx, rx) = std::sync::mpsc::channel();
/// let serving = std::thread::spawn(move || {
///     let server = tine::App::new()
///         .get("/", |_: &tine::Request| "hi")
///         .bind("127.0.0.1:0")?;
///     tx.send((server.local_addr(), server.handle())).unwrap();
///     server.run()
/// });
/// let (addr, handle) = rx.recv().unwrap();
/// // ... talk to the server at `addr` ...
/// handle.stop()?;
/// serving.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ServerHandle {
    target: Target,
}

#[derive(Clone, Debug)]
enum Target {
    /// A single process: its loop's flag and waker.
    Local(Arc<LocalStop>),
    /// A master, by its pid.
    Master(u32),
}

/// A worker's stop request: its loop asks the master for the stop
/// (`control::STOP`). One per process (a worker runs one loop).
pub(crate) static WORKER_STOP: LocalStop = LocalStop::new();

/// A single process's (or a worker's) stop request, shared by its handles
/// and its loop.
#[derive(Debug, Default)]
pub(crate) struct LocalStop {
    requested: AtomicBool,
    /// Set when the loop starts.
    waker: OnceLock<Arc<mio::Waker>>,
}

impl LocalStop {
    pub(crate) const fn new() -> Self {
        LocalStop {
            requested: AtomicBool::new(false),
            waker: OnceLock::new(),
        }
    }

    /// Takes a worker's request: whether there was one since the last
    /// look.
    pub(crate) fn take(&self) -> bool {
        self.requested.swap(false, Ordering::AcqRel)
    }

    /// Whether a handle asked the loop to stop.
    pub(crate) fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Gives the loop's waker to the handles. A stop asked for before
    /// this is seen by the loop's first look at [`requested`](Self::requested).
    pub(crate) fn install(&self, waker: Arc<mio::Waker>) {
        let _ = self.waker.set(waker);
    }

    fn request(&self) {
        self.requested.store(true, Ordering::Release);
        if let Some(waker) = self.waker.get() {
            // A loop that has ended has no use for the wake-up.
            let _ = waker.wake();
        }
    }
}

impl ServerHandle {
    pub(crate) fn local(stop: Arc<LocalStop>) -> Self {
        ServerHandle {
            target: Target::Local(stop),
        }
    }

    pub(crate) fn master(pid: u32) -> Self {
        ServerHandle {
            target: Target::Master(pid),
        }
    }

    /// Begins the server's graceful stop, as `SIGTERM` does. Returns at
    /// once; [`Server::run`](crate::Server::run) returns when the stop is
    /// over. A second call, or one after the server stopped, does
    /// nothing. With workers it works from the master's own processes: in
    /// a worker (a handler, or a thread of the worker's) it asks the master
    /// over the worker's control channel, also when workers run as another
    /// user; in the master (before `run`) it raises `SIGTERM`. In any other
    /// process it returns an error rather than signal a pid the master may
    /// no longer have.
    pub fn stop(&self) -> io::Result<()> {
        match &self.target {
            Target::Local(stop) => {
                stop.request();
                Ok(())
            }
            // The master itself (before `run`: its signals are the
            // server's from `bind` on).
            Target::Master(pid) if std::process::id() == *pid => {
                let pid = rustix::process::Pid::from_raw(*pid as i32)
                    .ok_or_else(|| io::Error::other("tine: no master pid"))?;
                rustix::process::kill_process(pid, rustix::process::Signal::TERM)
                    .map_err(io::Error::from)
            }
            // One of its workers: asked over the control channel, not with
            // a signal, which a worker that dropped privileges may not
            // send its master.
            Target::Master(pid)
                if rustix::process::getppid().map(|p| p.as_raw_nonzero().get())
                    == Some(*pid as i32) =>
            {
                WORKER_STOP.request();
                Ok(())
            }
            Target::Master(pid) => Err(io::Error::other(format!(
                "tine: ServerHandle::stop: master {pid} is neither this process nor its parent"
            ))),
        }
    }
}
