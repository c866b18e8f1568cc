//! systemd's side of a service, played by a test: sockets passed with
//! `LISTEN_FDS` ([`spawn_activated`]) and a `NOTIFY_SOCKET` that collects
//! what the server announces ([`NotifySocket`]).

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::procs::ServerTree;

/// Whose pid `LISTEN_PID` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenPid {
    /// The server's own pid, as systemd sets it.
    Server,
    /// Another process's (pid 1): the server must ignore the sockets.
    Other,
}

/// Starts `bin args...` (without waiting for its address) with `socket`
/// passed as fd 3 and `LISTEN_FDS=1`, `LISTEN_PID` as `pid` says, plus
/// `env`, as a socket unit would.
///
/// The pid is only known once the process exists, and the test process
/// must not fork by hand (nor run code between fork and exec), so a shell
/// does it: `bash -c 'export LISTEN_PID=$$; exec "$@" 3<&N'` keeps its pid
/// through `exec`. `N` is a duplicate of `socket` without close-on-exec,
/// closed again once the shell started (a child spawned meanwhile by
/// another test thread inherits it too, harmlessly).
pub fn spawn_activated(
    bin: &str,
    args: &[&str],
    socket: impl AsFd,
    pid: ListenPid,
    env: &[(&str, &str)],
) -> ServerTree {
    spawn_with_fds(bin, args, socket, pid, env, false)
}

/// [`spawn_activated`] with `LISTEN_FDS=2` and `LISTEN_PID` the server's,
/// fd 3 `socket` and fd 4 `/dev/null`: a socket unit whose second fd fails
/// the server's checks.
pub fn spawn_activated_with_a_bad_second_fd(
    bin: &str,
    args: &[&str],
    socket: impl AsFd,
) -> ServerTree {
    spawn_with_fds(bin, args, socket, ListenPid::Server, &[], true)
}

fn spawn_with_fds(
    bin: &str,
    args: &[&str],
    socket: impl AsFd,
    pid: ListenPid,
    env: &[(&str, &str)],
    bad_second: bool,
) -> ServerTree {
    // dup(2) leaves the copy without FD_CLOEXEC: the shell inherits it.
    let copy = nix::unistd::dup(socket.as_fd()).expect("dup");
    let n = copy.as_raw_fd();
    let mut redirect = if n == 3 {
        String::new()
    } else {
        format!("3<&{n} {n}<&-")
    };
    let count = if bad_second {
        redirect.push_str(" 4</dev/null");
        2
    } else {
        1
    };
    let listen_pid = match pid {
        ListenPid::Server => "$$",
        ListenPid::Other => "1",
    };
    let script =
        format!("export LISTEN_FDS={count} LISTEN_PID={listen_pid}; exec \"$@\" {redirect}");
    // bash, not sh: dash takes only fds 0 to 9 in a redirection.
    let mut sh_args = vec!["-c", script.as_str(), "bash", bin];
    sh_args.extend_from_slice(args);
    let tree = ServerTree::spawn_env("bash", &sh_args, env);
    drop(copy);
    tree
}

/// A fake `NOTIFY_SOCKET`: a Unix datagram socket in a temporary
/// directory that collects the server's `sd_notify` messages.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
    /// Every message received so far, in order.
    pub seen: Vec<String>,
}

impl Default for NotifySocket {
    fn default() -> Self {
        NotifySocket::new()
    }
}

impl NotifySocket {
    /// Binds a fresh socket.
    pub fn new() -> NotifySocket {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket {
            socket,
            path,
            _dir: dir,
            seen: Vec::new(),
        }
    }

    /// Its path, the value of `NOTIFY_SOCKET`.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temporary path")
    }

    /// Receives until a message holding the line `line` arrives (up to
    /// `limit`); returns that message, or panics listing what was seen.
    pub fn wait_for(&mut self, line: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {line:?} within {limit:?}; seen: {:?}",
                self.seen
            );
            self.socket
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(|l| l == line) {
                    return msg;
                }
            }
        }
    }

    /// Takes every message already waiting, without blocking.
    pub fn drain(&mut self) {
        self.socket.set_nonblocking(true).expect("set_nonblocking");
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.socket.set_nonblocking(false).expect("set_nonblocking");
    }

    /// How many messages seen so far hold the line `line`.
    pub fn count(&self, line: &str) -> usize {
        self.seen
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }
}
