//! The only `unsafe` code of the prefork master, each block with its safety
//! argument, plus the small process-level helpers that go with `fork`.
//!
//! The crate denies `unsafe_code`; this module alone allows it.
#![allow(unsafe_code)]

use std::io;

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{ForkResult, Pid};

/// Which side of a [`fork`] we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fork {
    /// The new worker process.
    Child,
    /// The master; the child's pid.
    Parent(Pid),
}

/// Number of threads in this process (entries of `/proc/self/task`).
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The error returned when forking would be unsound.
pub(crate) fn threads_error(n: usize) -> io::Error {
    io::Error::other(format!(
        "tine: refusing to fork workers: the process already runs {n} threads \
         (start thread pools in the per-worker hook, after the fork)"
    ))
}

/// `fork(2)`, refusing if the process is not single-threaded.
pub(crate) fn fork() -> io::Result<Fork> {
    let n = thread_count()?;
    if n != 1 {
        return Err(threads_error(n));
    }
    // SAFETY: nix marks `fork` unsafe because, in a multi-threaded parent,
    // the child may only call async-signal-safe functions (another thread
    // could have held the allocator's or stdout's lock at the moment of the
    // fork). We checked just above that this process has exactly one
    // thread, and nothing between that check and this call can start one
    // (the master never spawns threads), so the child is an ordinary copy of
    // a single-threaded process and may run arbitrary Rust code.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => Ok(Fork::Child),
        Ok(ForkResult::Parent { child }) => Ok(Fork::Parent(child)),
        Err(e) => Err(e.into()),
    }
}

/// Resets the dispositions of `signals` to `SIG_DFL`.
///
/// The master handles its signals through a signalfd with the signals
/// blocked, so it installs no handler at all; resetting matters because an
/// inherited `SIG_IGN` for `SIGCHLD` would make the kernel auto-reap workers
/// (and `waitpid` fail), and an application handler installed before
/// `run_master` must not leak into the workers.
pub(crate) fn reset_dispositions(signals: &[Signal]) -> io::Result<()> {
    for &sig in signals {
        // SAFETY: `signal` is unsafe because installing a *handler* means
        // running a Rust function in signal context, and because replacing a
        // handler may break code that relies on it. `SIG_DFL` is not a
        // function, so no Rust code will run asynchronously; the handlers we
        // replace belong to signals the caller is taking over on purpose
        // (they are blocked and read through a signalfd in the master, and
        // the worker installs its own after the fork).
        unsafe { signal(sig, SigHandler::SigDfl) }?;
    }
    Ok(())
}

/// What a freshly forked worker does first, before touching anything else:
/// reset `signals` to their default dispositions, ask the kernel for
/// `SIGTERM` when the master dies (`PR_SET_PDEATHSIG`, which `fork`
/// clears, so it must be set here), then check the master did not die
/// before that request took effect. Returns `false` if the master is
/// already gone: the caller must exit at once.
pub(crate) fn child_after_fork(master: Pid, signals: &[Signal]) -> bool {
    // Errors here cannot be reported anywhere useful yet; the worker still
    // notices a dead master through EOF on its control channel.
    let _ = reset_dispositions(signals);
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    nix::unistd::getppid() == master
}

/// Makes a worker ignore the master-only signals (`SIGHUP`, `SIGTTIN`,
/// `SIGTTOU`) so that one sent to a worker by mistake neither ends it
/// (`HUP`) nor stops it (`TTIN`/`TTOU` default to "stop the process").
pub(crate) fn ignore_master_signals() {
    for sig in [Signal::SIGHUP, Signal::SIGTTIN, Signal::SIGTTOU] {
        // SAFETY: `SIG_IGN` runs no code in signal context, and these
        // signals have no other user in a worker: the master's dispositions
        // were reset to default after the fork and nothing else installs
        // handlers for them.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_threads() {
        let n = thread_count().unwrap();
        assert!(n >= 1, "{n}");
        let msg = threads_error(n).to_string();
        assert!(msg.contains("refusing to fork"), "{msg}");
        // libtest normally runs tests on their own threads; only then is it
        // safe to call `fork` here, because it must refuse (a test never
        // forks the test process).
        if n >= 2 {
            let err = fork().unwrap_err();
            assert!(err.to_string().contains("threads"), "{err}");
        }
    }
}
