//! systemd integration: socket activation (`LISTEN_FDS`) and readiness
//! notification (`sd_notify`).
//!
//! # Socket activation
//!
//! With a socket unit, systemd binds the addresses itself and starts the
//! service with the listening sockets inherited from fd 3 on, naming them
//! with `LISTEN_FDS=<count>` and `LISTEN_PID=<the service's pid>`
//! (`sd_listen_fds(3)`). [`inherited_listeners`] takes them over instead of
//! binding (the address given to `bind` is then ignored, and the log says
//! so), after checking each of them: the fd is open, a stream socket
//! (`SO_TYPE`), listening (`SO_ACCEPTCONN`, where the system implements
//! it: not on macOS) and an IPv4 or IPv6 address or a Unix socket with a
//! path (`ListenStream=/run/app.sock`). Anything that does not
//! match (another process's `LISTEN_PID`, a count that is not a number or
//! is zero, one fd that fails a check) is ignored as a whole with a
//! warning naming the reason, and the server binds as usual: inherited
//! sockets are never half-used. When `LISTEN_PID` names this process but
//! one fd fails its check, the listening sockets among the others are
//! closed first: kept, they would sit in every worker with nobody
//! accepting (clients hang in their queues) and hold the address a
//! `--bind` of the same address needs. Using only the good ones would
//! serve part of what the socket unit lists while the log said the unit
//! was ignored; a unit is used whole or not at all. The variables (`LISTEN_FDS`, `LISTEN_PID`,
//! `LISTEN_FDNAMES`) are removed from the environment once read, so
//! nothing the app starts later takes them for its own, and the adopted
//! fds are made close-on-exec (systemd passes them without it).
//!
//! This is done by hand rather than with the `listenfd` crate: the checks
//! are four `getsockopt`/`fcntl` calls on socket2 and rustix, which tine
//! already uses, and `listenfd` takes fds it cannot use as a `TcpListener`
//! or leaves them half-taken, where tine must take all of them or none.
//!
//! ## One shared socket per address
//!
//! systemd hands over one socket per address. tine cannot turn it into one
//! `SO_REUSEPORT` socket per worker (a new reuseport socket would need to
//! bind the address itself, and bind rights are what the socket unit
//! keeps), so every inherited socket becomes an address in the shared
//! mode: all workers accept from the one queue. The trade-off:
//!
//! * A shared queue balances by availability: whichever worker is free
//!   accepts, so a worker busy in a slow handler takes no new connection
//!   (with reuseport, the kernel hashes connections to a worker's own
//!   queue whether it is busy or not).
//! * On Linux each worker watches the socket with `EPOLLEXCLUSIVE` and
//!   takes one connection per wake-up, so a new connection wakes one (or
//!   a few) of the waiting workers, not all (the event loop's `accept.rs`).
//!   On kqueue systems every waiting worker wakes and all but one find
//!   the queue empty: wasted wake-ups under a high connection rate (no
//!   cost with keep-alive).
//! * The socket survives everything, the master included: systemd holds
//!   it, so connections that arrive while the service restarts wait in the
//!   queue instead of being refused.
//!
//! A Unix socket from a socket unit is served like any Unix listener
//! (shared, every worker accepts from it), but its file is the unit's:
//! tine never removes it (systemd does, with `RemoveOnStop=`), and its
//! mode is the unit's `SocketMode=`.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use super::listener::Socket;
use super::sys;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
pub(crate) const LISTEN_FDS_START: RawFd = 3;

/// How many sockets the variables promise this process, or why they do
/// not apply (`Ok(None)`: not socket-activated at all).
fn parse_vars(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    me: u32,
) -> Result<Option<usize>, String> {
    let (pid, fds) = match (listen_pid, listen_fds) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err("LISTEN_PID is set without LISTEN_FDS".into()),
        (None, Some(_)) => return Err("LISTEN_FDS is set without LISTEN_PID".into()),
        (Some(p), Some(f)) => (p.trim(), f.trim()),
    };
    let pid: u32 = pid
        .parse()
        .map_err(|_| format!("LISTEN_PID is not a pid: {pid:?}"))?;
    if pid != me {
        return Err(format!(
            "LISTEN_PID={pid} names another process (this is {me})"
        ));
    }
    let n: usize = fds
        .parse()
        .map_err(|_| format!("LISTEN_FDS is not a count: {fds:?}"))?;
    if n == 0 {
        return Err("LISTEN_FDS=0 passes no socket".into());
    }
    // Far more than any socket unit lists: a wrong value, not sockets.
    if n > 1024 {
        return Err(format!("LISTEN_FDS={n} is not a plausible count"));
    }
    Ok(Some(n))
}

/// Whether `fd` is an open, listening stream socket, TCP (IPv4 or IPv6)
/// or Unix with a path; the reason if not.
pub(crate) fn check_fd(fd: RawFd) -> Result<(), String> {
    let borrowed = sys::inherited_fd(fd).ok_or_else(|| format!("fd {fd} is not open"))?;
    check_socket(fd, borrowed)
}

fn check_socket(fd: RawFd, borrowed: BorrowedFd<'_>) -> Result<(), String> {
    let kind = rustix::net::sockopt::socket_type(borrowed)
        .map_err(|e| format!("fd {fd} is not a socket ({e})"))?;
    if kind != rustix::net::SocketType::STREAM {
        return Err(format!("fd {fd} is not a stream socket"));
    }
    #[cfg(not(target_vendor = "apple"))]
    match rustix::net::sockopt::socket_acceptconn(borrowed) {
        Ok(true) => {}
        Ok(false) => return Err(format!("fd {fd} is a socket that does not listen")),
        Err(e) => return Err(format!("fd {fd}: cannot read SO_ACCEPTCONN ({e})")),
    }
    let addr = socket2::SockRef::from(&borrowed)
        .local_addr()
        .map_err(|e| format!("fd {fd}: no local address ({e})"))?;
    if addr.as_socket().is_some() {
        return Ok(());
    }
    if !addr.is_unix() {
        return Err(format!(
            "fd {fd} is neither an IPv4 or IPv6 nor a Unix socket (tine listens on TCP \
             and Unix sockets)"
        ));
    }
    match addr.as_pathname() {
        Some(p) if !p.as_os_str().is_empty() => Ok(()),
        _ => Err(format!(
            "fd {fd} is a Unix socket without a path (tine serves Unix sockets with a path)"
        )),
    }
}

/// The sockets systemd passed to this process, if `LISTEN_PID` names it
/// and every one of the `LISTEN_FDS` fds is a listening TCP or Unix
/// socket; see
/// the module docs. Otherwise `None` (with a warning if the variables were
/// set). Either way the variables are removed from the environment.
///
/// Call it once, before any thread is started (it edits the environment).
pub(crate) fn inherited_listeners() -> Option<Vec<Socket>> {
    let pid_var = std::env::var("LISTEN_PID").ok();
    let fds_var = std::env::var("LISTEN_FDS").ok();
    // Only what is set is removed: a server bound from a test thread must
    // not write the environment others read.
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        if std::env::var_os(var).is_some() {
            std::env::remove_var(var);
        }
    }
    let promised = parse_vars(pid_var.as_deref(), fds_var.as_deref(), std::process::id());
    let checked = promised.clone().and_then(|n| match n {
        None => Ok(None),
        Some(n) => {
            let fds: Vec<RawFd> = (0..n as RawFd).map(|i| LISTEN_FDS_START + i).collect();
            fds.iter().try_for_each(|&fd| check_fd(fd))?;
            Ok(Some(fds))
        }
    });
    let fds = match checked {
        Ok(fds) => fds?,
        Err(why) => {
            // The variables named this process but a socket failed its
            // check: the others are this process's, and kept open they
            // would be inherited by every worker and accepted on by none
            // (their clients hang) while holding the address the fallback
            // binds. Another process's fds are left alone.
            let closed = match promised {
                Ok(Some(n)) => close_listening(n),
                _ => 0,
            };
            let closing = if closed > 0 {
                format!("closing the {closed} inherited listening socket(s) and ")
            } else {
                String::new()
            };
            log::warn!("socket activation ignored: {why}; {closing}binding the configured address");
            return None;
        }
    };
    let mut listeners = Vec::with_capacity(fds.len());
    for fd in fds {
        // Checked open by `check_fd` a moment ago, single-threaded.
        let Some(borrowed) = sys::inherited_fd(fd) else {
            log::warn!("socket activation ignored: fd {fd} closed; binding the configured address");
            listeners.into_iter().for_each(std::mem::forget);
            return None;
        };
        // SAFETY: LISTEN_PID names this process, so systemd passed it
        // the fds LISTEN_FDS counts, and nothing took them yet.
        #[allow(unsafe_code)]
        let owned = unsafe { sys::own_inherited(borrowed) };
        if let Err(e) = prepare(&owned) {
            // Checked a moment ago: not expected. Keep the fds (dropping
            // them would close systemd's sockets in this process only, but
            // half-used is what must not happen).
            log::warn!("socket activation ignored: fd {fd}: {e}; binding the configured address");
            std::mem::forget(owned);
            listeners.into_iter().for_each(std::mem::forget);
            return None;
        }
        match Socket::from_fd(owned) {
            Ok(socket) => listeners.push(socket),
            Err(e) => {
                // Checked a moment ago: not expected (see above).
                log::warn!(
                    "socket activation ignored: fd {fd}: {e}; binding the configured address"
                );
                listeners.into_iter().for_each(std::mem::forget);
                return None;
            }
        }
    }
    Some(listeners)
}

/// Closes the listening sockets among the `n` fds from
/// [`LISTEN_FDS_START`] (socket activation falling back to binding: see
/// [`inherited_listeners`]); the count closed. Only fds that pass
/// [`check_fd`] are closed: systemd's listening sockets. Anything else in
/// the range (a file, an fd not open) is not one of them, and a wrong count
/// may reach fds the process opened itself.
fn close_listening(n: usize) -> usize {
    let mut closed = 0;
    for fd in (0..n as RawFd).map(|i| LISTEN_FDS_START + i) {
        if check_fd(fd).is_err() {
            continue;
        }
        if let Some(borrowed) = sys::inherited_fd(fd).filter(|&b| sys::crossed_exec(b)) {
            // SAFETY: named by LISTEN_FDS, a listening socket that came
            // across exec: systemd's, owned by nothing else in the process.
            #[allow(unsafe_code)]
            drop(unsafe { sys::own_inherited(borrowed) });
            closed += 1;
        }
    }
    closed
}

/// Close-on-exec and non-blocking, like the sockets tine binds itself.
pub(crate) fn prepare(fd: &OwnedFd) -> io::Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    socket2::SockRef::from(fd).set_nonblocking(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_variables_must_name_this_process_and_a_count() {
        assert_eq!(parse_vars(None, None, 7), Ok(None));
        assert_eq!(parse_vars(Some("7"), Some("2"), 7), Ok(Some(2)));
        assert_eq!(parse_vars(Some(" 7\n"), Some("1"), 7), Ok(Some(1)));
        let err = parse_vars(Some("8"), Some("1"), 7).unwrap_err();
        assert!(err.contains("names another process"), "{err}");
        for (pid, fds) in [
            (Some("x"), Some("1")),
            (Some("7"), Some("one")),
            (Some("7"), Some("0")),
            (Some("7"), Some("-1")),
            (Some("7"), Some("100000")),
            (Some("7"), None),
            (None, Some("1")),
        ] {
            assert!(parse_vars(pid, fds, 7).is_err(), "{pid:?} {fds:?}");
        }
    }

    #[test]
    fn only_an_open_listening_tcp_socket_passes() {
        let listening = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(check_fd(listening.as_raw_fd()), Ok(()));

        let bound =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        bound
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        #[cfg(not(target_vendor = "apple"))]
        {
            let err = check_fd(bound.as_raw_fd()).unwrap_err();
            assert!(err.contains("does not listen"), "{err}");
        }

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = check_fd(udp.as_raw_fd()).unwrap_err();
        assert!(err.contains("not a stream socket"), "{err}");

        let file = std::fs::File::open("/dev/null").unwrap();
        let err = check_fd(file.as_raw_fd()).unwrap_err();
        assert!(err.contains("not a socket"), "{err}");

        // A listening Unix socket with a path passes (ListenStream=/path);
        // one in Linux's abstract namespace (no file) does not.
        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        assert_eq!(check_fd(unix.as_raw_fd()), Ok(()));
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("tine-test-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
            let abstract_ = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
            let err = check_fd(abstract_.as_raw_fd()).unwrap_err();
            assert!(err.contains("without a path"), "{err}");
        }

        // Far above any fd this process holds: not open.
        let err = check_fd(1 << 20).unwrap_err();
        assert!(err.contains("not open"), "{err}");
    }
}
