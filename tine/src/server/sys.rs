//! The only `unsafe` code of the prefork master, each block with its safety
//! argument, plus the small process-level helpers that go with `fork`.
//!
//! The crate denies `unsafe_code`; this module alone allows it.
#![allow(unsafe_code)]

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{ForkResult, Pid};

/// The environment variable that selects the portable process plumbing on
/// Linux (`1`: on). It is a test and diagnostic switch: Linux normally
/// reads the master's signals from a signalfd and has the kernel signal a
/// worker whose master died (`PR_SET_PDEATHSIG`); with the switch on it
/// uses the routes every other platform uses instead (signal handlers
/// feeding a self-pipe, and a worker thread that checks its parent), so
/// that the tests run here exercise them. Read once, at the first call of
/// [`portable_signals`].
pub(crate) const PORTABLE_SIGNALS_VAR: &str = "TINE_PORTABLE_SIGNALS";

/// Whether the master takes its signals through signal-hook's self-pipe
/// and workers watch their parent with a thread (see
/// [`PORTABLE_SIGNALS_VAR`]); always on where Linux's `signalfd` and
/// `PR_SET_PDEATHSIG` do not exist.
pub(crate) fn portable_signals() -> bool {
    static PORTABLE: OnceLock<bool> = OnceLock::new();
    *PORTABLE.get_or_init(|| {
        !cfg!(any(target_os = "linux", target_os = "android"))
            || std::env::var_os(PORTABLE_SIGNALS_VAR).is_some_and(|v| v == "1")
    })
}

/// An fd this process may have inherited at `exec` (socket activation
/// passes listening sockets from fd 3 on), borrowed for the checks that
/// decide whether to take it; `None` if it is not open.
///
/// Called at start-up only, before any thread exists, so the fd cannot be
/// closed or reused while it is borrowed.
pub(crate) fn inherited_fd(fd: std::os::fd::RawFd) -> Option<std::os::fd::BorrowedFd<'static>> {
    if fd < 0 {
        return None;
    }
    // SAFETY: `fcntl(F_GETFD)` on a number that is not an open fd only
    // fails with EBADF; the borrow is used for nothing else until that
    // check passed, and nothing closes the fd afterwards but
    // [`own_inherited`], which ends the borrow's use.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(borrowed).ok().map(|_| borrowed)
}

/// Takes ownership of an inherited fd checked with [`inherited_fd`].
///
/// # Safety
///
/// Nothing else in the process may own `fd`: it came from the parent
/// across `exec` (named by `LISTEN_FDS` or an old master's hand-over) and
/// no other code took it. Taking an fd some other part of the process
/// owns (the log writer's copy of stderr, an app's file) makes two owners
/// of one number: the first to close it leaves the other writing to
/// whatever is opened next under that number. A number read from the
/// environment alone does not prove that: see [`crossed_exec`].
pub(crate) unsafe fn own_inherited(fd: std::os::fd::BorrowedFd<'static>) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: the fd is open (checked by `inherited_fd`), and the caller
    // promises nothing else owns it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd.as_raw_fd()) }
}

/// Whether `fd` lacks close-on-exec, as every fd a parent passes across
/// `exec` does. Everything this process opens itself through the standard
/// library, rustix, mio or socket2 is close-on-exec, so an fd that is not
/// was inherited (or made so on purpose): the check that tells a number
/// named by an environment variable left over from another process (and
/// now naming this process's own fds) from a real hand-over.
pub(crate) fn crossed_exec(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    rustix::io::fcntl_getfd(fd).is_ok_and(|flags| !flags.contains(rustix::io::FdFlags::CLOEXEC))
}

/// Which side of a [`fork`] we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fork {
    /// The new worker process.
    Child,
    /// The master; the child's pid.
    Parent(Pid),
}

/// Number of threads in this process (`/proc/self/task` on Linux,
/// `task_threads` on macOS, `sysctl` on FreeBSD: the `num_threads`
/// crate). On Linux the directory is read here: the crate says only that
/// it could not count, where the reason (`EMFILE` under a low open-file
/// limit, `/proc` not mounted) is what the operator needs.
pub(crate) fn thread_count() -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let failed = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("tine: cannot count this process's threads: /proc/self/task: {e}"),
            )
        };
        let mut n = 0;
        for entry in std::fs::read_dir("/proc/self/task").map_err(failed)? {
            entry.map_err(failed)?;
            n += 1;
        }
        Ok(n)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    num_threads::num_threads()
        .map(std::num::NonZeroUsize::get)
        .ok_or_else(|| io::Error::other("tine: cannot count this process's threads"))
}

/// The error returned when forking would be unsound.
pub(crate) fn threads_error(n: usize) -> io::Error {
    io::Error::other(format!(
        "tine: refusing to fork workers: the process already runs {n} threads \
         (start thread pools in the per-worker hook, after the fork)"
    ))
}

/// A failed `fork(2)` in words: `EAGAIN` is, nearly always, a limit on
/// processes, which its text (`Resource temporarily unavailable`) does not
/// say.
fn fork_error(e: nix::Error) -> io::Error {
    let err = io::Error::from(e);
    if e != nix::Error::EAGAIN {
        return err;
    }
    io::Error::new(
        err.kind(),
        format!(
            "{err}: the limit on processes is reached (the user's: `ulimit -u`, \
             RLIMIT_NPROC; the service's: systemd's TasksMax=, cgroup pids.max; or the \
             system's: kernel.pid_max, kernel.threads-max)"
        ),
    )
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
        Err(e) => Err(fork_error(e)),
    }
}

/// `e` with what was being done when it happened: `tine: cannot {what}:
/// {e}` (the same kind). A bare `Too many open files` at start-up does not
/// say which of the many things a server opens ran out.
pub(crate) fn while_doing(what: &'static str) -> impl Fn(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("tine: cannot {what}: {e}"))
}

/// Replaces `SIG_IGN` by `SIG_DFL` for each of `signals`, leaving any
/// handler in place. Call it with `signals` blocked.
///
/// The master does on the signalfd route before reading them: a signal
/// whose disposition is `SIG_IGN` is discarded even while blocked, so the
/// signalfd would never see it (think of `nohup` and `SIGHUP`), and an
/// ignored `SIGCHLD` would make the kernel reap workers behind the
/// master's back (and `waitpid` fail). Handlers are kept: an application
/// that registered signal-hook handlers before serving leaves signal-hook
/// a registry of the handlers it installed, copied into every worker; a
/// handler reset behind its back would leave it believing its handler in
/// place, and the worker's own `SIGTERM` handler (signal-hook too) would
/// never be installed: the worker would die of `SIGTERM` instead of
/// draining.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn unignore(signals: &[Signal]) -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigSet};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for &sig in signals {
        // SAFETY: `sigaction` is unsafe because installing a *handler*
        // means running a Rust function in signal context. `SIG_DFL` is not
        // a function, and the action put back is exactly the one the
        // process had (a handler installed by its own code, not ours).
        // The signals are blocked, so none is delivered in between.
        let old = unsafe { sigaction(sig, &default) }?;
        if !matches!(old.handler(), SigHandler::SigDfl | SigHandler::SigIgn) {
            // SAFETY: as above.
            unsafe { sigaction(sig, &old) }?;
        }
    }
    Ok(())
}

/// What a freshly forked worker does first, before touching anything else
/// (the handled signals are still blocked): make sure it will not outlive
/// the master, then check the master did not die before that took effect.
/// Returns `false` if the master is already gone: the caller must exit at
/// once.
///
/// * signalfd route (Linux): ask the kernel for `SIGTERM` when the master
///   dies (`PR_SET_PDEATHSIG`, which `fork` clears, so it is set here).
///   The dispositions are the master's: no `SIG_IGN` (see [`unignore`]),
///   and any handler the application installed before serving.
/// * portable route: the dispositions are left alone. They are
///   signal-hook's handlers, which do nothing once the master's
///   registrations are gone (dropped with the master's state before the
///   worker runs; a handler the application installed before serving,
///   which signal-hook chains, still runs), and signal-hook keeps a
///   registry of the handlers it installed, copied by the fork: resetting
///   a disposition behind its back would make it believe its handler
///   still in place, and the worker's own `SIGTERM` handler would never be
///   installed. A thread ([`watch_parent`]) stands in for
///   `PR_SET_PDEATHSIG`.
///
/// Either way the worker also sees EOF on its control channel when the
/// master dies.
pub(crate) fn child_after_fork(master: Pid) -> bool {
    // Errors here are not fatal: the worker still notices a dead master
    // through EOF on its control channel.
    if portable_signals() {
        if let Err(e) = watch_parent(master) {
            log::warn!("cannot start the thread that watches the master: {e}");
        }
    } else {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    }
    nix::unistd::getppid() == master
}

/// After a worker changed its user or group: Linux clears
/// `PR_SET_PDEATHSIG` on a credential change, so it is set again (the
/// parent watch of the portable route is a thread and survives). Whether
/// `master` is still the parent.
pub(crate) fn rearm_after_credentials(master: Pid) -> bool {
    if !portable_signals() {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    }
    nix::unistd::getppid() == master
}

/// How often [`watch_parent`] looks at the parent pid.
pub(crate) const PARENT_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The stand-in for `PR_SET_PDEATHSIG` where it does not exist: a thread
/// that checks every [`PARENT_CHECK_INTERVAL`] whether `master` is still
/// this process's parent and, once it is not (the master died and the
/// worker was re-parented), logs it and sends this process `SIGTERM`,
/// which the worker handles as a graceful stop.
///
/// Start it while the handled signals are blocked (right after the fork):
/// the thread keeps that mask, so the process-directed `SIGTERM` is
/// handled by the worker's main thread once it unblocks them. (On Linux,
/// where it only runs with the diagnostic switch on, the thread counts
/// against `RLIMIT_NPROC` like a process.)
pub(crate) fn watch_parent(master: Pid) -> io::Result<()> {
    std::thread::Builder::new()
        .name("tine-parent-watch".to_owned())
        .spawn(move || {
            while nix::unistd::getppid() == master {
                std::thread::sleep(PARENT_CHECK_INTERVAL);
            }
            log::warn!("the master (pid {master}) is gone (worker re-parented); stopping");
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGTERM);
        })?;
    Ok(())
}

/// Prepares `cmd` (a new master started by a binary upgrade) so that,
/// between its fork and its `exec`, the child:
///
/// * clears close-on-exec on `keep` (the listening sockets and the link to
///   the old master), and on nothing else: every other fd of the master
///   is close-on-exec and stays behind;
/// * resets `signals` (the master's) to their default disposition and
///   unblocks every signal: the master keeps its signals blocked, and a
///   blocked mask survives `exec`, so a new master would otherwise start
///   deaf to `SIGTERM` (and so would anything it runs);
/// * clears any parent-death signal (Linux): the new master must outlive
///   the old one.
pub(crate) fn keep_across_exec(
    cmd: &mut std::process::Command,
    keep: Vec<std::os::fd::RawFd>,
    signals: &'static [Signal],
) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before `exec`. The
    // master is single-threaded (it starts no thread, and `fork` checks
    // before every worker it forks; this fork is `Command::spawn`'s, which
    // does not check), and even so the closure is what a child of a
    // threaded parent may run: it only makes system calls on its own fds
    // and signal state, and allocates nothing. The fds
    // in `keep` are open in the master (it owns them for its whole life),
    // hence in the child; borrowing them for one `fcntl` each is sound.
    // Setting `SIG_DFL` installs no handler, so no Rust code runs in
    // signal context.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &keep {
                let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            for &sig in signals {
                let _ = signal(sig, SigHandler::SigDfl);
            }
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            )?;
            #[cfg(any(target_os = "linux", target_os = "android"))]
            nix::sys::prctl::set_pdeathsig(None)?;
            Ok(())
        });
    }
}

/// Makes a worker ignore the master-only signals (`SIGHUP`, `SIGTTIN`,
/// `SIGTTOU`, `SIGUSR2`) so that one sent to a worker by mistake neither ends it
/// (`HUP`) nor stops it (`TTIN`/`TTOU` default to "stop the process").
///
/// On the portable route they already are: signal-hook's handlers, left
/// in place with nothing registered, do nothing (see [`child_after_fork`]),
/// and replacing them with `SIG_IGN` behind signal-hook's back would stop
/// an application from handling them with signal-hook in its worker.
pub(crate) fn ignore_master_signals() {
    if portable_signals() {
        return;
    }
    for sig in [
        Signal::SIGHUP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        // SAFETY: `SIG_IGN` runs no code in signal context, and these
        // signals have no other user in a worker: the master reads them,
        // and the worker's own handlers are installed after this.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
}

/// The process (`EMFILE`) or the system (`ENFILE`) has no file descriptor
/// left: a passing condition (a `503`, a pause in accepting), not a fault.
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    [rustix::io::Errno::MFILE, rustix::io::Errno::NFILE]
        .iter()
        .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
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

    /// `fork failed: Resource temporarily unavailable (os error 11)` did
    /// not say which resource: the limit on processes.
    #[test]
    fn a_fork_refused_for_the_process_limit_says_so() {
        let err = fork_error(nix::Error::EAGAIN).to_string();
        // EAGAIN's number and text are the platform's (11 on Linux, 35 on
        // macOS and FreeBSD).
        let eagain = std::io::Error::from(nix::Error::EAGAIN).to_string();
        assert!(
            err.starts_with(&format!("{eagain}: the limit on processes"))
                && err.contains("ulimit -u")
                && err.contains("RLIMIT_NPROC"),
            "{err}"
        );
        let err = fork_error(nix::Error::ENOMEM).to_string();
        assert!(!err.contains("ulimit"), "{err}");
    }

    /// The thread count's failure carries its cause (it said only "cannot
    /// count this process's threads").
    #[test]
    fn a_subject_is_added_to_the_error() {
        let e = io::Error::from_raw_os_error(24);
        let err = while_doing("create the event loop")(e);
        assert_eq!(
            err.to_string(),
            "tine: cannot create the event loop: Too many open files (os error 24)"
        );
    }
}
