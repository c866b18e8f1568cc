//! Binary upgrade (`SIGUSR2`): the process side. The decisions are the
//! supervisor's (`supervisor/upgrade.rs`); this file starts the new
//! master, hands it the listening sockets, and, in the new master, takes
//! them over.
//!
//! # How it goes
//!
//! 1. When it binds, the server records the path it was started with
//!    (`argv[0]`, made absolute against the working directory, or looked
//!    up in `PATH` when it has no slash) and its arguments ([`Exec`]).
//!    Symlinks are left unresolved, so a file replaced in place or a
//!    `current` symlink switched to a new release is what runs next; not
//!    `/proc/self/exe`, which names the old (possibly deleted) inode. (An
//!    app that changes its working directory before binding should be
//!    started with an absolute path.)
//! 2. On `SIGUSR2` the master renames its pid file to `PATH.oldbin`, like
//!    nginx, and starts that path with the same arguments. The child
//!    inherits the listening sockets and one end of a Unix socket pair
//!    (the *link*); every other fd is close-on-exec. [`UPGRADE_VAR`]
//!    names them: `parent=PID link=FD sockets=FD:ADDRESS:MODE:FILE,...`
//!    (`MODE` is `r` for a reuseport socket, `s` for a shared one;
//!    `ADDRESS` the index of the address it belongs to; `FILE` is `o` for
//!    a Unix socket whose file the old master would have removed when it
//!    stopped, because it bound it or took it over with that duty, `-`
//!    for any other: a TCP socket, or a socket unit's Unix socket, whose
//!    file is systemd's). The child gets no
//!    parent-death signal and an empty signal mask (see
//!    `sys::keep_across_exec`); `WATCHDOG_PID` is dropped from its
//!    environment, so it can pet systemd's watchdog once it is the main
//!    process.
//! 3. The new master ([`inherited`]) checks the variable and every fd
//!    (open, a listening TCP or Unix socket), removes the variable, and serves on
//!    those sockets without binding: the same kernel accept queues, so no
//!    connection is refused or reset. The socket files marked `o` are its
//!    to remove when it stops for good, and no other. It binds more `SO_REUSEPORT`
//!    sockets on the same address if it runs more workers than there were
//!    sockets. It writes the pid file (the old one is at `.oldbin`).
//! 4. Once every one of its workers reported ready, it writes one byte on
//!    the link. The old master then announces the new pid to systemd
//!    (`MAINPID=`), stops like on `SIGTERM` (its workers drain) and exits
//!    0, removing `PATH.oldbin`. The new master sees the link close and
//!    accepts `SIGUSR2` from then on.
//! 5. If the new master exits first, or is not ready within the upgrade
//!    timeout (then it gets `SIGTERM`, and `SIGKILL` after the graceful
//!    timeout), the old master logs why, renames `PATH.oldbin` back and
//!    serves on.
//!
//! A variable that names another parent (left in the environment of some
//! unrelated child) is ignored with a warning, and of the descriptors it
//! names only those a hand-over passes and that came across `exec` are
//! closed (a copied environment names this process's own); one that is
//! malformed, or
//! names an fd that is not a listening TCP socket, is a start-up error
//! naming the variable: the old master then sees the new one exit and
//! keeps serving.
//!
//! On Linux the scoreboard's memfd is handed over too (`board=FD@ORIGIN`,
//! the clock origin in `CLOCK_MONOTONIC` microseconds): the new master
//! maps the same region, sees the old generation draining, and the
//! counters carry on (see `scoreboard.rs`). Elsewhere (no memfd) it maps
//! a new one.
//!
//! Published messages cross between the generations while both run: the
//! old master also hands over one end of a second socket pair, the
//! *bridge*, named by [`BRIDGE_VAR`] (`FD`; a variable of its own, not a
//! field of [`UPGRADE_VAR`], so that a build from before the bridge, which
//! refuses fields it does not know, still takes over, only without it).
//! Each master relays what its own workers publish to the other over it,
//! and what arrives from the other to its own workers, until the old
//! master exits (see `master/bridge.rs`). Without it, for the seconds the
//! old workers drain, a message reached only its own generation's
//! subscribers.
//!
//! Single-process mode (`workers` 1) has no master to do this: `SIGUSR2`
//! is ignored there with a log line, and a new build started by an upgrade
//! with `workers` 1 refuses to serve (the old master serves on).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::listener::{Bound, Mode, Socket, SocketFile};
use super::{sys, systemd};

/// The environment variable naming the publish/subscribe bridge's fd (see
/// the module docs).
pub(crate) const BRIDGE_VAR: &str = "TINE_UPGRADE_BRIDGE";

/// The environment variable naming the fds a new master inherits (see the
/// module docs).
pub(crate) const UPGRADE_VAR: &str = "TINE_UPGRADE";

/// The executable this process was started from and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Exec {
    pub(crate) path: PathBuf,
    pub(crate) args: Vec<OsString>,
}

impl Exec {
    /// From `argv` as the process got it; `None` if `argv[0]` cannot be
    /// made absolute (a bare name not found in `PATH`).
    pub(crate) fn current() -> Option<Exec> {
        let mut argv = std::env::args_os();
        let argv0 = argv.next()?;
        let cwd = std::env::current_dir().ok()?;
        let path = absolute(&argv0, &cwd, std::env::var_os("PATH").as_deref())?;
        Some(Exec {
            path,
            args: argv.collect(),
        })
    }
}

/// `argv0` as an absolute path without resolving symlinks: joined to `cwd`
/// if it holds a slash, else the first executable file of that name in
/// `path_var` (what a shell ran).
fn absolute(argv0: &OsStr, cwd: &Path, path_var: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    if argv0.is_empty() {
        return None;
    }
    if argv0.as_bytes().contains(&b'/') {
        // `components` drops `.` segments (`./app` is `CWD/app`), nothing else.
        return Some(cwd.join(argv0).components().collect());
    }
    std::env::split_paths(path_var?)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                cwd.join(dir)
            }
        })
        .map(|dir| dir.join(argv0))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// One listening socket handed to a new master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handed {
    pub(crate) fd: RawFd,
    pub(crate) address: usize,
    pub(crate) mode: Mode,
    /// A Unix socket whose file goes with it: the new master removes it
    /// when it stops for good (`false` for TCP, and for a socket unit's
    /// socket, whose file is systemd's).
    pub(crate) owns_file: bool,
}

/// What [`UPGRADE_VAR`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    parent: i32,
    link: RawFd,
    sockets: Vec<Handed>,
    /// The scoreboard's memfd and clock origin.
    board: Option<(RawFd, u64)>,
    /// A pipe holding the TLS session-ticket keys (read to its end).
    tickets: Option<RawFd>,
}

impl Spec {
    /// Every descriptor the spec names.
    fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        std::iter::once(self.link)
            .chain(self.sockets.iter().map(|h| h.fd))
            .chain(self.board.map(|(fd, _)| fd))
            .chain(self.tickets)
    }
}

fn encode(spec: &Spec) -> String {
    let sockets: Vec<String> = spec
        .sockets
        .iter()
        .map(|h| {
            let mode = match h.mode {
                Mode::ReusePort => 'r',
                Mode::Shared => 's',
            };
            let file = if h.owns_file { 'o' } else { '-' };
            format!("{}:{}:{mode}:{file}", h.fd, h.address)
        })
        .collect();
    let board = spec
        .board
        .map(|(fd, origin)| format!(" board={fd}@{origin}"))
        .unwrap_or_default();
    let tickets = spec
        .tickets
        .map(|fd| format!(" tickets={fd}"))
        .unwrap_or_default();
    format!(
        "parent={} link={} sockets={}{board}{tickets}",
        spec.parent,
        spec.link,
        sockets.join(",")
    )
}

fn decode(text: &str) -> Result<Spec, String> {
    let (mut parent, mut link, mut sockets, mut board) = (None, None, None, None);
    let mut tickets = None;
    for field in text.split_whitespace() {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| format!("{field:?} is not KEY=VALUE"))?;
        let fd = |v: &str| -> Result<RawFd, String> {
            v.parse::<RawFd>()
                .ok()
                .filter(|&fd| fd > 2)
                .ok_or_else(|| format!("{v:?} is not an fd above 2"))
        };
        match key {
            "parent" => {
                parent = Some(
                    value
                        .parse::<i32>()
                        .ok()
                        .filter(|&p| p > 0)
                        .ok_or_else(|| format!("parent {value:?} is not a pid"))?,
                )
            }
            "link" => link = Some(fd(value)?),
            "tickets" => tickets = Some(fd(value)?),
            "board" => {
                let (f, origin) = value
                    .split_once('@')
                    .ok_or_else(|| format!("board {value:?} is not FD@ORIGIN"))?;
                let origin = origin
                    .parse::<u64>()
                    .map_err(|_| format!("board origin {origin:?} is not a number"))?;
                board = Some((fd(f)?, origin));
            }
            "sockets" => {
                let mut list = Vec::new();
                for s in value.split(',') {
                    let mut parts = s.split(':');
                    let (Some(f), Some(a), Some(m), Some(o), None) = (
                        parts.next(),
                        parts.next(),
                        parts.next(),
                        parts.next(),
                        parts.next(),
                    ) else {
                        return Err(format!("socket {s:?} is not FD:ADDRESS:MODE:FILE"));
                    };
                    let address = a
                        .parse::<usize>()
                        .ok()
                        .filter(|&a| a < 1024)
                        .ok_or_else(|| format!("socket {s:?}: bad address index"))?;
                    let mode = match m {
                        "r" => Mode::ReusePort,
                        "s" => Mode::Shared,
                        _ => return Err(format!("socket {s:?}: mode is r or s")),
                    };
                    let owns_file = match o {
                        "o" => true,
                        "-" => false,
                        _ => return Err(format!("socket {s:?}: file is o or -")),
                    };
                    list.push(Handed {
                        fd: fd(f)?,
                        address,
                        mode,
                        owns_file,
                    });
                }
                sockets = Some(list);
            }
            _ => return Err(format!("unknown field {key:?}")),
        }
    }
    let spec = Spec {
        parent: parent.ok_or("no parent=")?,
        link: link.ok_or("no link=")?,
        sockets: sockets.ok_or("no sockets=")?,
        board,
        tickets,
    };
    // Addresses numbered 0.. without a gap, one mode and one file duty
    // each, a shared one with exactly one socket; no fd named twice.
    let n = spec
        .sockets
        .iter()
        .map(|h| h.address + 1)
        .max()
        .unwrap_or(0);
    for a in 0..n {
        let of: Vec<&Handed> = spec.sockets.iter().filter(|h| h.address == a).collect();
        match of.first() {
            None => return Err(format!("address {a} has no socket")),
            Some(first) if of.iter().any(|h| h.mode != first.mode) => {
                return Err(format!("address {a} has two modes"))
            }
            Some(first) if of.iter().any(|h| h.owns_file != first.owns_file) => {
                return Err(format!("address {a} both owns its file and does not"))
            }
            Some(first) if first.mode == Mode::Shared && of.len() != 1 => {
                return Err(format!("shared address {a} has {} sockets", of.len()))
            }
            _ => {}
        }
    }
    let mut fds: Vec<RawFd> = spec.sockets.iter().map(|h| h.fd).collect();
    fds.push(spec.link);
    fds.extend(spec.board.map(|b| b.0));
    fds.extend(spec.tickets);
    fds.sort_unstable();
    if fds.windows(2).any(|w| w[0] == w[1]) {
        return Err("an fd is named twice".into());
    }
    Ok(spec)
}

/// Starts the new master: `exec`'s path and arguments, inheriting the
/// sockets in `handed`, the child end of the link and the scoreboard
/// (`board`: its memfd and clock origin) and, with TLS, the session-ticket
/// keys (`tickets`, written into a pipe the new master reads, so a ticket
/// issued before the upgrade resumes after it; never in the environment).
/// Returns its pid.
pub(crate) fn spawn(
    exec: &Exec,
    handed: &[Handed],
    link: &UnixStream,
    bridge: &UnixStream,
    board: Option<(RawFd, u64)>,
    tickets: Option<&[u8]>,
    signals: &'static [nix::sys::signal::Signal],
) -> io::Result<i32> {
    // A few dozen bytes: they fit the pipe's buffer, so the write end is
    // written and closed before the reader exists, and the reader reads to
    // EOF without waiting.
    let tickets = match tickets {
        Some(wire) => {
            // `pipe` and then close-on-exec (Apple systems have no
            // `pipe2`); the master is single-threaded, so no fork can slip
            // in between.
            let (read, write) = rustix::pipe::pipe()?;
            for fd in [&read, &write] {
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
            }
            let mut write = std::fs::File::from(write);
            std::io::Write::write_all(&mut write, wire)?;
            Some(read)
        }
        None => None,
    };
    let spec = Spec {
        parent: std::process::id() as i32,
        link: link.as_raw_fd(),
        sockets: handed.to_vec(),
        board,
        tickets: tickets.as_ref().map(|fd| fd.as_raw_fd()),
    };
    let mut cmd = std::process::Command::new(&exec.path);
    cmd.args(&exec.args)
        .env(UPGRADE_VAR, encode(&spec))
        .env(BRIDGE_VAR, bridge.as_raw_fd().to_string())
        .env_remove("WATCHDOG_PID");
    let mut keep: Vec<RawFd> = handed.iter().map(|h| h.fd).collect();
    keep.push(link.as_raw_fd());
    keep.push(bridge.as_raw_fd());
    keep.extend(board.map(|b| b.0));
    keep.extend(tickets.as_ref().map(|fd| fd.as_raw_fd()));
    sys::keep_across_exec(&mut cmd, keep, signals);
    let child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", exec.path.display())))?;
    // Reaped by the master's own `waitpid(-1)`; dropping `Child` neither
    // waits nor kills.
    Ok(child.id() as i32)
}

/// A new master's old master, while it runs: its pid, the link, and the
/// publish/subscribe bridge if it handed one over.
#[derive(Debug)]
pub(crate) struct Predecessor {
    pub(crate) pid: i32,
    pub(crate) link: UnixStream,
    pub(crate) bridge: Option<UnixStream>,
}

/// What a new master inherited from the old one.
#[derive(Debug)]
pub(crate) struct Inherited {
    /// The old master's pid.
    pub(crate) parent: i32,
    /// The link: write one byte when every worker is ready; EOF when the
    /// old master has exited.
    pub(crate) link: UnixStream,
    /// The publish/subscribe bridge to the old master, if it handed one
    /// over (see the module docs).
    pub(crate) bridge: Option<UnixStream>,
    /// The listening sockets, address by address.
    pub(crate) addresses: Vec<Bound>,
    /// The Unix socket files the old master would have removed when it
    /// stopped (those marked `o`): this master's to remove once it stops
    /// for good. Never a socket unit's file.
    pub(crate) socket_files: Vec<SocketFile>,
    /// The scoreboard's memfd and clock origin (see `scoreboard::adopt`).
    pub(crate) board: Option<(std::os::fd::OwnedFd, u64)>,
    /// The old master's TLS session-ticket keys, in their wire form (read
    /// whatever the build, so the pipe is drained and closed; used with the
    /// `tls` feature).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) tickets: Option<Vec<u8>>,
}

/// Whether `fd` is an open Unix stream socket, as a hand-over's link and
/// bridge are.
fn is_unix_stream(fd: RawFd) -> bool {
    sys::inherited_fd(fd).is_some_and(|b| {
        rustix::net::sockopt::socket_type(b).is_ok_and(|t| t == rustix::net::SocketType::STREAM)
            && socket2::SockRef::from(&b)
                .local_addr()
                .is_ok_and(|a| a.is_unix())
    })
}

/// The sockets handed over by an old master, if [`UPGRADE_VAR`] is set and
/// names this process's parent (see the module docs). The variable is
/// removed from the environment.
///
/// Call it once, before any thread is started (it edits the environment).
pub(crate) fn inherited() -> io::Result<Option<Inherited>> {
    let bridge_var = std::env::var_os(BRIDGE_VAR);
    std::env::remove_var(BRIDGE_VAR);
    let bridge_fd = bridge_var
        .as_deref()
        .and_then(OsStr::to_str)
        .and_then(|v| v.parse::<RawFd>().ok())
        .filter(|&fd| fd > 2);
    let Some(text) = std::env::var_os(UPGRADE_VAR) else {
        return Ok(None);
    };
    std::env::remove_var(UPGRADE_VAR);
    let bad = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tine: {UPGRADE_VAR}: {why}"),
        )
    };
    let text = text.into_string().map_err(|_| bad("not UTF-8".into()))?;
    let spec = decode(&text).map_err(bad)?;
    let parent = nix::unistd::getppid().as_raw();
    if parent != spec.parent {
        // Not started by that master itself (it died meanwhile and this
        // process was reparented, or a wrapper runs between them): the
        // hand-over is refused. The descriptors it names may have been
        // inherited all the same, without close-on-exec; kept, they would
        // stay open in this process and every worker, and a listening
        // socket among them would make binding its address fail ("in
        // use"), a link kept open would leave the old master waiting.
        // But the variable may also be left over in an environment copied
        // without its descriptors (an exported shell variable, a tool that
        // restarts a process from its /proc/PID/environ), and then its
        // numbers name this process's own descriptors: the log writer's
        // copy of stderr is usually fd 3, and closing it sent every later
        // log line into whatever took the number next (the scoreboard).
        // So only what a hand-over passes, and what came across exec, is
        // closed: listening sockets, and Unix sockets for the link and the
        // bridge. A scoreboard or tickets descriptor left open costs
        // nothing.
        let listening = spec
            .sockets
            .iter()
            .map(|h| h.fd)
            .filter(|&fd| systemd::check_fd(fd).is_ok());
        let unix = std::iter::once(spec.link)
            .chain(bridge_fd)
            .filter(|&fd| is_unix_stream(fd));
        let mut named: Vec<RawFd> = listening.chain(unix).collect();
        named.sort_unstable();
        named.dedup();
        let closed = named
            .into_iter()
            .filter_map(sys::inherited_fd)
            .filter(|&b| sys::crossed_exec(b))
            // SAFETY: a socket of the kind a hand-over passes, open
            // without close-on-exec, so not opened by this process (see
            // `sys::crossed_exec`): inherited, and owned by nothing else.
            // Each number once (deduplicated above).
            .map(|b| {
                #[allow(unsafe_code)]
                let owned = unsafe { sys::own_inherited(b) };
                owned
            })
            .count();
        log::warn!(
            "{UPGRADE_VAR} names parent {} but this process's parent is {parent}: \
             ignored, and the {closed} descriptor(s) it names closed",
            spec.parent
        );
        return Ok(None);
    }
    for h in &spec.sockets {
        systemd::check_fd(h.fd).map_err(bad)?;
    }
    let link_fd = sys::inherited_fd(spec.link)
        .ok_or_else(|| bad(format!("link fd {} is not open", spec.link)))?;
    // SAFETY: the variable names this process's parent, the old master,
    // which passed these descriptors across exec for this process to own;
    // `decode` refused a spec naming one number twice. (The same holds for
    // the bridge, the board, the tickets and the sockets below.)
    #[allow(unsafe_code)]
    let link = unsafe { sys::own_inherited(link_fd) };
    rustix::io::fcntl_setfd(&link, rustix::io::FdFlags::CLOEXEC)?;
    let link = UnixStream::from(link);
    // The bridge is an extra: one that is not there, or not a socket, is
    // warned about and done without.
    let bridge = bridge_var.and_then(|v| {
        let owned = bridge_fd
            .filter(|fd| !spec.fds().any(|named| named == *fd))
            .and_then(sys::inherited_fd)
            // SAFETY: as the link's; not a number the spec names (above).
            .map(|b| {
                #[allow(unsafe_code)]
                let owned = unsafe { sys::own_inherited(b) };
                owned
            });
        let Some(owned) = owned else {
            log::warn!(
                "{BRIDGE_VAR}={v:?} names no descriptor of its own: published messages \
                 will not cross to the old master's workers"
            );
            return None;
        };
        let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
        let stream = UnixStream::from(owned);
        match stream.set_nonblocking(true) {
            Ok(()) => Some(stream),
            Err(e) => {
                log::warn!(
                    "{BRIDGE_VAR}: {e}: published messages will not cross to the old \
                     master's workers"
                );
                None
            }
        }
    });
    let board = match spec.board {
        Some((fd, origin)) => {
            let borrowed =
                sys::inherited_fd(fd).ok_or_else(|| bad(format!("board fd {fd} is not open")))?;
            // SAFETY: as the link's.
            #[allow(unsafe_code)]
            let owned = unsafe { sys::own_inherited(borrowed) };
            rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)?;
            Some((owned, origin))
        }
        None => None,
    };
    let tickets = match spec.tickets {
        Some(fd) => {
            let borrowed =
                sys::inherited_fd(fd).ok_or_else(|| bad(format!("tickets fd {fd} is not open")))?;
            // SAFETY: as the link's.
            #[allow(unsafe_code)]
            let mut file = std::fs::File::from(unsafe { sys::own_inherited(borrowed) });
            let mut wire = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut wire)?;
            Some(wire)
        }
        None => None,
    };
    let mut addresses: Vec<Bound> = Vec::new();
    let mut socket_files = Vec::new();
    for h in &spec.sockets {
        let borrowed = sys::inherited_fd(h.fd).ok_or_else(|| bad(format!("fd {} closed", h.fd)))?;
        // SAFETY: as the link's.
        #[allow(unsafe_code)]
        let owned = unsafe { sys::own_inherited(borrowed) };
        systemd::prepare(&owned)?;
        // TCP or Unix, by the socket's own address.
        let socket = Socket::from_fd(owned).map_err(|e| bad(format!("fd {}: {e}", h.fd)))?;
        if let Some(b) = addresses.get_mut(h.address) {
            b.sockets.push(socket);
        } else {
            // `decode` checked the addresses come without a gap; the
            // sockets are listed address by address.
            let addr = socket
                .local()
                .map_err(|e| bad(format!("fd {}: {e}", h.fd)))?;
            if h.owns_file {
                let path = addr.path().ok_or_else(|| {
                    bad(format!(
                        "fd {}: marked as owning its socket file, but it is no Unix \
                         socket with a path",
                        h.fd
                    ))
                })?;
                // Gone or replaced meanwhile: nothing of ours to remove.
                socket_files.extend(SocketFile::at(path));
            }
            addresses.push(Bound {
                addr,
                mode: h.mode,
                sockets: vec![socket],
            });
        }
    }
    Ok(Some(Inherited {
        parent: spec.parent,
        link,
        bridge,
        addresses,
        socket_files,
        board,
        tickets,
    }))
}

/// `path` with `.oldbin` appended (nginx's name for the old master's pid
/// file during an upgrade).
pub(crate) fn oldbin(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".oldbin");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_round_trips_and_bad_ones_are_refused() {
        let spec = Spec {
            parent: 42,
            link: 7,
            sockets: vec![
                Handed {
                    fd: 8,
                    address: 0,
                    mode: Mode::ReusePort,
                    owns_file: false,
                },
                Handed {
                    fd: 9,
                    address: 0,
                    mode: Mode::ReusePort,
                    owns_file: false,
                },
                Handed {
                    fd: 10,
                    address: 1,
                    mode: Mode::Shared,
                    owns_file: true,
                },
                Handed {
                    fd: 13,
                    address: 2,
                    mode: Mode::Shared,
                    owns_file: false,
                },
            ],
            board: None,
            tickets: None,
        };
        let text = encode(&spec);
        assert_eq!(
            text,
            "parent=42 link=7 sockets=8:0:r:-,9:0:r:-,10:1:s:o,13:2:s:-"
        );
        assert_eq!(decode(&text), Ok(spec.clone()));
        let with_board = Spec {
            board: Some((11, 123456)),
            ..spec
        };
        let text = encode(&with_board);
        assert!(text.ends_with(" board=11@123456"), "{text}");
        assert_eq!(decode(&text), Ok(with_board.clone()));
        let with_tickets = Spec {
            tickets: Some(12),
            ..with_board
        };
        let text = encode(&with_tickets);
        assert!(text.ends_with(" board=11@123456 tickets=12"), "{text}");
        assert_eq!(decode(&text), Ok(with_tickets));
        assert!(decode("parent=42 link=7 sockets=8:0:r:- tickets=7").is_err());
        for bad in [
            "",
            "parent=42 link=7",
            "parent=0 link=7 sockets=8:0:r:-",
            "parent=42 link=2 sockets=8:0:r:-",
            "parent=42 link=7 sockets=8:0:x:-",
            "parent=42 link=7 sockets=8:1:r:-",
            "parent=42 link=7 sockets=8:0:r:-,9:0:s:-",
            "parent=42 link=7 sockets=8:0:s:-,9:0:s:-",
            "parent=42 link=7 sockets=7:0:r:-",
            "parent=42 link=7 sockets=8:0:r:- extra=1",
            "parent=42 link=seven sockets=8:0:r:-",
            "parent=42 link=7 sockets=8:0:r:- board=9",
            "parent=42 link=7 sockets=8:0:r:- board=8@1",
            "parent=42 link=7 sockets=8:0:r:- board=9@x",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn whether_a_socket_owns_its_file_is_spelled_out_for_every_socket() {
        let owned = decode("parent=42 link=7 sockets=8:0:s:o").unwrap();
        assert!(owned.sockets[0].owns_file);
        let unit = decode("parent=42 link=7 sockets=8:0:s:-").unwrap();
        assert!(!unit.sockets[0].owns_file);
        for bad in [
            // Without the flag: the duty cannot be guessed either way.
            "parent=42 link=7 sockets=8:0:s",
            "parent=42 link=7 sockets=8:0",
            "parent=42 link=7 sockets=8:0:s:",
            "parent=42 link=7 sockets=8:0:s:O",
            "parent=42 link=7 sockets=8:0:s:yes",
            "parent=42 link=7 sockets=8:0:s:o:o",
            // The sockets of one address share one file.
            "parent=42 link=7 sockets=8:0:r:o,9:0:r:-",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn argv0_is_made_absolute_without_resolving_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        assert_eq!(
            absolute(OsStr::new("bin/app"), cwd, None),
            Some(cwd.join("bin/app"))
        );
        assert_eq!(
            absolute(OsStr::new("./app"), cwd, None),
            Some(cwd.join("app"))
        );
        assert_eq!(
            absolute(OsStr::new("/usr/bin/app"), cwd, None),
            Some(PathBuf::from("/usr/bin/app"))
        );
        // A bare name is looked up in PATH, like the shell did; a symlink
        // found there is kept as it is.
        let bin = cwd.join("bin");
        std::fs::create_dir(&bin).unwrap();
        let real = cwd.join("real-app");
        std::fs::write(&real, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&real, bin.join("app")).unwrap();
        let path = std::env::join_paths([cwd.join("nothing"), bin.clone()]).unwrap();
        assert_eq!(
            absolute(OsStr::new("app"), cwd, Some(&path)),
            Some(bin.join("app"))
        );
        assert_eq!(absolute(OsStr::new("missing"), cwd, Some(&path)), None);
        assert_eq!(absolute(OsStr::new(""), cwd, Some(&path)), None);
    }

    #[test]
    fn oldbin_appends_to_the_name() {
        assert_eq!(
            oldbin(Path::new("/run/app.pid")),
            PathBuf::from("/run/app.pid.oldbin")
        );
    }
}
