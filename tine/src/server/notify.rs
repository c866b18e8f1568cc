//! systemd's readiness protocol (`sd_notify(3)`): datagrams such as
//! `READY=1` sent to the Unix socket named by `NOTIFY_SOCKET`, for a unit
//! with `Type=notify` (or `notify-reload`).
//!
//! | when | message |
//! |---|---|
//! | every worker accepts (single process: the loop starts) | `READY=1` |
//! | a rolling restart (`SIGHUP`) starts | `RELOADING=1` and `MONOTONIC_USEC=<now>` |
//! | it ended (every slot replaced, or the step abandoned) | `READY=1` |
//! | a stop starts (`SIGTERM`, `SIGINT`, `SIGQUIT`) | `STOPPING=1` |
//! | every `WATCHDOG_USEC / 2`, while some worker accepts (or a stop drains) | `WATCHDOG=1` |
//! | a binary upgrade (`SIGUSR2`) starts | `RELOADING=1` and `MONOTONIC_USEC=<now>` |
//! | the new master is ready (sent by the old one, still the main process) | `MAINPID=<new>` and `READY=1`; the old master says nothing more |
//! | the upgrade failed (sent by the old master, which serves on) | `STATUS=binary upgrade failed: <why>`, then `READY=1` |
//!
//! A master started by an upgrade sends no `READY=1` of its own at
//! start-up (the old master says it with `MAINPID=`); from then on it is
//! the main process and announces as above.
//!
//! Only the master sends (a unit's default `NotifyAccess=main` drops
//! everything else). It sends `WATCHDOG=1` from its own loop, so a master
//! that hangs stops petting the watchdog, and so does one whose workers all
//! fail: systemd then restarts the service. `WATCHDOG_PID`, when set, must
//! name this process. `NOTIFY_SOCKET` stays in the environment, so a
//! process exec'd to take the master's place can still reach systemd.
//!
//! Written by hand over std's `UnixDatagram` rather than with the
//! `sd-notify` crate: it is one `sendto` of a few lines, the master needs
//! to own the socket and decide itself when each message goes out, and
//! the watchdog timing has to live in the master's own loop anyway.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A connection to systemd's notification socket.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket on
    /// Linux); `None` if unset or unusable (with a warning).
    pub(crate) fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        match Notifier::connect(&path) {
            Ok(n) => Some(n),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET={path:?} unusable ({e}): no sd_notify messages");
                None
            }
        }
    }

    fn connect(path: &std::ffi::OsStr) -> io::Result<Notifier> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_bytes();
        let addr = match bytes.first() {
            Some(b'/') => std::os::unix::net::SocketAddr::from_pathname(path)?,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Some(b'@') => {
                #[cfg(target_os = "android")]
                use std::os::android::net::SocketAddrExt;
                #[cfg(target_os = "linux")]
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..])?
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an absolute path",
                ))
            }
        };
        let socket = UnixDatagram::unbound()?;
        // A full socket must never block the master: the message is lost
        // instead (systemd reads its socket promptly).
        socket.set_nonblocking(true)?;
        Ok(Notifier { socket, addr })
    }

    /// Sends `msg` (newline-separated `KEY=VALUE` lines); a failure is
    /// logged, never fatal.
    pub(crate) fn send(&self, msg: &str) {
        if let Err(e) = self.socket.send_to_addr(msg.as_bytes(), &self.addr) {
            log::warn!(
                "sd_notify {:?} failed: {e}",
                msg.lines().next().unwrap_or("")
            );
        }
    }
}

/// The `WATCHDOG=1` interval (half of `WATCHDOG_USEC`) if the unit asks
/// for one and `WATCHDOG_PID`, when set, names this process.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares
/// `MONOTONIC_USEC` with (the scoreboard's reading of it).
fn monotonic_usec() -> u64 {
    crate::server::scoreboard::monotonic_us()
}

/// The master's state as the protocol sees it, read from the supervisor
/// after every batch of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct State {
    pub all_ready: bool,
    pub reloading: bool,
    pub stopping: bool,
    pub healthy: bool,
}

/// Turns the master's state changes into messages (see the module docs).
#[derive(Debug)]
pub(crate) struct Announcer {
    notifier: Option<Notifier>,
    /// `READY=1` was sent once (start-up is over).
    started: bool,
    reloading: bool,
    stopping: bool,
    watchdog: Option<(Duration, Instant)>,
    /// A new master took over: nothing more is sent.
    silent: bool,
}

impl Announcer {
    /// For the master: `None` when systemd asked for nothing.
    pub(crate) fn from_env(now: Instant) -> Option<Announcer> {
        let notifier = Notifier::from_env()?;
        let interval = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        if let Some(every) = interval {
            log::info!("systemd watchdog: WATCHDOG=1 every {every:?}");
        }
        Some(Announcer::new(Some(notifier), interval, now))
    }

    fn new(notifier: Option<Notifier>, watchdog: Option<Duration>, now: Instant) -> Announcer {
        Announcer {
            notifier,
            started: false,
            reloading: false,
            stopping: false,
            watchdog: watchdog.map(|every| (every, now)),
            silent: false,
        }
    }

    /// A master started by a binary upgrade: its start-up `READY=1` is
    /// the old master's to send.
    pub(crate) fn assume_started(&mut self) {
        self.started = true;
    }

    /// The new master `pid` took over: `MAINPID=` and `READY=1` (ending
    /// the `RELOADING=1` of the upgrade), then silence, so that systemd
    /// neither takes this master's stop for the service's nor hears its
    /// watchdog.
    pub(crate) fn hand_over(&mut self, pid: i32) {
        if let Some(n) = &self.notifier {
            n.send(&format!("MAINPID={pid}\nREADY=1"));
        }
        self.silent = true;
    }

    /// A `STATUS=` line (a failed upgrade says why).
    pub(crate) fn status(&self, text: &str) {
        if let Some(n) = &self.notifier {
            n.send(&format!("STATUS={}", text.replace('\n', " ")));
        }
    }

    /// When [`Announcer::update`] has a `WATCHDOG=1` to send next.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.watchdog.map(|(_, at)| at)
    }

    /// Sends what changed since the last call (and a due `WATCHDOG=1`).
    pub(crate) fn update(&mut self, state: State, now: Instant) {
        for msg in self.messages(state, now) {
            if let Some(n) = &self.notifier {
                n.send(&msg);
            }
        }
    }

    fn messages(&mut self, s: State, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        if self.silent {
            return out;
        }
        if s.stopping {
            if !self.stopping {
                self.stopping = true;
                out.push("STOPPING=1".to_owned());
            }
        } else if !self.started {
            if s.all_ready {
                self.started = true;
                out.push("READY=1".to_owned());
            }
        } else if s.reloading != self.reloading {
            self.reloading = s.reloading;
            out.push(if s.reloading {
                format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec())
            } else {
                "READY=1".to_owned()
            });
        }
        if let Some((every, at)) = &mut self.watchdog {
            if *at <= now {
                // Skipped while unhealthy: systemd then acts on the
                // missing beat.
                if s.healthy {
                    out.push("WATCHDOG=1".to_owned());
                }
                *at = now + *every;
            }
        }
        out
    }
}

/// The single-process server's notifier (workers forked by a master never
/// set it): `READY=1` when its loop starts, `STOPPING=1` from the loop.
static SINGLE: OnceLock<Notifier> = OnceLock::new();

/// Single-process mode: announces readiness, and remembers the socket for
/// [`single_stopping`].
pub(crate) fn single_ready() {
    if let Some(n) = Notifier::from_env() {
        n.send("READY=1");
        let _ = SINGLE.set(n);
    }
}

/// Single-process mode: the loop began its graceful stop.
pub(crate) fn single_stopping() {
    if let Some(n) = SINGLE.get() {
        n.send("STOPPING=1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(all_ready: bool, reloading: bool, stopping: bool) -> State {
        State {
            all_ready,
            reloading,
            stopping,
            healthy: all_ready || stopping,
        }
    }

    #[test]
    fn ready_reloading_ready_stopping_each_once() {
        let now = Instant::now();
        let mut a = Announcer::new(None, None, now);
        assert!(a.messages(state(false, false, false), now).is_empty());
        assert_eq!(a.messages(state(true, false, false), now), ["READY=1"]);
        assert!(a.messages(state(true, false, false), now).is_empty());
        let reload = a.messages(state(true, true, false), now);
        assert_eq!(reload.len(), 1);
        let mut lines = reload[0].lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: u64 = lines.next().unwrap()["MONOTONIC_USEC=".len()..]
            .parse()
            .unwrap();
        assert!(usec > 0 && usec <= monotonic_usec());
        // A worker not ready during the restart is no new announcement.
        assert!(a.messages(state(false, true, false), now).is_empty());
        assert_eq!(a.messages(state(true, false, false), now), ["READY=1"]);
        assert_eq!(a.messages(state(false, false, true), now), ["STOPPING=1"]);
        assert!(a.messages(state(false, false, true), now).is_empty());
    }

    #[test]
    fn a_stop_before_ready_never_says_ready() {
        let now = Instant::now();
        let mut a = Announcer::new(None, None, now);
        assert_eq!(a.messages(state(false, false, true), now), ["STOPPING=1"]);
        assert!(a.messages(state(true, false, true), now).is_empty());
    }

    #[test]
    fn the_watchdog_beats_every_interval_only_while_healthy() {
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        let mut a = Announcer::new(None, Some(every), t0);
        let ok = state(true, false, false);
        assert_eq!(a.messages(ok, t0), ["READY=1", "WATCHDOG=1"]);
        assert_eq!(a.next_deadline(), Some(t0 + every));
        assert!(a.messages(ok, t0 + every / 2).is_empty());
        assert_eq!(a.messages(ok, t0 + every), ["WATCHDOG=1"]);
        let sick = State {
            healthy: false,
            ..ok
        };
        assert!(a.messages(sick, t0 + every * 2).is_empty());
        assert_eq!(a.messages(ok, t0 + every * 3), ["WATCHDOG=1"]);
    }

    #[test]
    fn the_watchdog_interval_is_half_of_watchdog_usec_for_this_pid() {
        let half = Some(Duration::from_secs(1));
        assert_eq!(watchdog_interval(Some("2000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("2000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn a_notifier_needs_an_absolute_path() {
        for bad in ["", "relative/path"] {
            assert!(
                Notifier::connect(std::ffi::OsStr::new(bad)).is_err(),
                "{bad:?}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(path.as_os_str()).unwrap();
        n.send("READY=1");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }
}
