//! Where the master's signals come from.
//!
//! The master must neither lose a signal nor handle one before it is
//! ready. Two routes keep both promises; [`Source`] hides which one runs.
//!
//! * **signalfd** (Linux, the default there): the handled signals are
//!   blocked for the master's whole life and read from a signalfd in its
//!   mio loop. No handler is ever installed, so nothing can run "too
//!   early", and a child forked at any moment starts with them blocked.
//! * **self-pipe** (every other platform; on Linux with
//!   `TINE_PORTABLE_SIGNALS=1`, see [`sys::portable_signals`]): with the
//!   signals still blocked, signal-hook installs its handlers, which only
//!   note the signal and write a byte to a pipe the loop polls; the pipe
//!   is registered, and only then are the signals unblocked. One sent
//!   earlier waited as pending and reaches the pipe now. Around every
//!   `fork` the master blocks them again ([`Source::hold`] /
//!   [`Source::release`]): a child must never run a handler that writes
//!   into the master's pipe, and it starts with the signals blocked until
//!   it has dropped the master's registrations and installed its own
//!   handlers (`worker_signals_ready`).
//!
//! One difference remains between the routes, about a signal sent to a
//! worker directly rather than to the master: on the self-pipe route the
//! master-only signals (`QUIT`, `HUP`, `TTIN`, `TTOU`, `CHLD`) reach
//! signal-hook's handlers, left in place in the worker with nothing
//! registered (see `sys::child_after_fork`), so they do nothing, where the
//! signalfd route leaves `SIGQUIT` its default (the worker dies, and the
//! master replaces it).
//!
//! Neither route resets a handler the application installed before
//! serving (see [`Source::new`]).
//!
//! Standard signals coalesce on both routes: several `SIGTTIN` sent at once
//! may count as one. The signalfd returns them in arrival order; the
//! self-pipe in signal-number order (`HUP`, then `TTIN`, then `TTOU`) when
//! several arrive between two turns of the loop.

use std::io;

use mio::{Interest, Registry, Token};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};

use super::sys;

/// The master's signal source: see the module docs.
pub(crate) enum Source {
    /// Blocked signals read from a signalfd.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Fd(nix::sys::signalfd::SignalFd),
    /// signal-hook's handlers feeding a self-pipe.
    Pipe {
        /// The handlers' registrations and the pipe's reading end;
        /// dropping it unregisters them.
        signals: signal_hook_mio::v1_0::Signals,
        /// The handled signals, to block around a fork.
        set: SigSet,
    },
}

/// The set of `signals`.
pub(crate) fn set_of(signals: &[Signal]) -> SigSet {
    let mut set = SigSet::empty();
    for &sig in signals {
        set.add(sig);
    }
    set
}

/// Signals blocked in this thread until a [`Source`] takes them over
/// (see [`Held::keep`]); dropped before that, it unblocks again those it
/// blocked.
///
/// A server that will run as a master blocks [`HANDLED_SIGNALS`] when it
/// binds, before the application can announce its address: a `SIGTERM`
/// sent the moment a supervisor (or a test) reads `listening on` then
/// waits as pending until the master reads it, instead of taking its
/// default action and killing the master before it has set anything up.
/// The master runs single-threaded (it refuses to fork otherwise), so the
/// calling thread's mask is the process's.
///
/// [`HANDLED_SIGNALS`]: super::master::HANDLED_SIGNALS
#[derive(Debug)]
pub(crate) struct Held {
    /// Those of the signals that were not blocked already.
    blocked: SigSet,
}

impl Held {
    /// Blocks `signals` in the calling thread.
    pub(crate) fn block(signals: &[Signal]) -> io::Result<Held> {
        let mut before = SigSet::empty();
        pthread_sigmask(
            SigmaskHow::SIG_BLOCK,
            Some(&set_of(signals)),
            Some(&mut before),
        )?;
        let mut blocked = SigSet::empty();
        for &sig in signals.iter().filter(|&&s| !before.contains(s)) {
            blocked.add(sig);
        }
        Ok(Held { blocked })
    }

    /// Leaves the signals blocked: the master's [`Source`] reads them from
    /// here on (and keeps them blocked after it stops).
    pub(crate) fn keep(mut self) {
        self.blocked = SigSet::empty();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&self.blocked), None);
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_pipe() {
            "Source::Pipe"
        } else {
            "Source::Fd"
        })
    }
}

impl Source {
    /// Takes `signals` over and registers the source under `token`: blocks
    /// them, then sets up the route chosen by [`sys::portable_signals`].
    /// From here on every one of them is read with [`Source::read`]; none
    /// is lost in between.
    ///
    /// The signalfd route replaces `SIG_IGN` by the default (an ignored
    /// signal never reaches a signalfd; see [`sys::unignore`]). The
    /// self-pipe route needs no such step: signal-hook's handlers replace
    /// whatever was there, `SIG_IGN` included. Neither resets a handler:
    /// signal-hook keeps a registry of the handlers it installed, which a
    /// reset behind its back would leave believing its handler still in
    /// place (an application that used signal-hook before serving would
    /// see the master, or its workers, die of the default action). A
    /// handler the application installed itself before serving keeps
    /// running where signal-hook chains it.
    pub(crate) fn new(registry: &Registry, token: Token, signals: &[Signal]) -> io::Result<Source> {
        let set = set_of(signals);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        if sys::portable_signals() {
            let numbers: Vec<i32> = signals.iter().map(|&s| s as i32).collect();
            let mut hook = signal_hook_mio::v1_0::Signals::new(numbers)?;
            registry.register(&mut hook, token, Interest::READABLE)?;
            // Handlers and pipe are in place: let the signals (and any
            // that arrived meanwhile) in.
            pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None)?;
            return Ok(Source::Pipe { signals: hook, set });
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use nix::sys::signalfd::{SfdFlags, SignalFd};
            use std::os::fd::AsRawFd;
            sys::unignore(signals)?;
            let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
            registry.register(
                &mut mio::unix::SourceFd(&fd.as_raw_fd()),
                token,
                Interest::READABLE,
            )?;
            Ok(Source::Fd(fd))
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        unreachable!("the self-pipe route is the only one here")
    }

    /// Whether this is the self-pipe route.
    pub(crate) fn is_pipe(&self) -> bool {
        self.pipe_set().is_some()
    }

    /// Appends every signal that arrived since the last call to `got`
    /// (each at most once per call: standard signals coalesce).
    pub(crate) fn read(&mut self, got: &mut Vec<Signal>) {
        match self {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Source::Fd(fd) => loop {
                match fd.read_signal() {
                    Ok(Some(info)) => {
                        if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                            got.push(sig);
                        }
                    }
                    Ok(None) => break,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        log::error!("reading signalfd failed: {e}");
                        break;
                    }
                }
            },
            Source::Pipe { signals, .. } => {
                got.extend(signals.pending().filter_map(|n| Signal::try_from(n).ok()));
            }
        }
    }

    /// Blocks the handled signals before a `fork` (self-pipe route; on the
    /// signalfd route they are blocked all along). A signal that arrives
    /// meanwhile waits as pending.
    pub(crate) fn hold(&self) {
        if let Some(set) = self.pipe_set() {
            let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(set), None);
        }
    }

    /// In the master after a `fork` (or a failed one): lets the signals
    /// [`hold`](Source::hold) blocked in again.
    pub(crate) fn release(&self) {
        if let Some(set) = self.pipe_set() {
            let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(set), None);
        }
    }

    /// The signals to block around a fork: only the self-pipe route
    /// unblocks them.
    fn pipe_set(&self) -> Option<&SigSet> {
        match self {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Source::Fd(_) => None,
            Source::Pipe { set, .. } => Some(set),
        }
    }
}
