//! Linux: a listening socket that several worker processes share,
//! registered with epoll level-triggered and with `EPOLLEXCLUSIVE`.
//!
//! mio registers every source edge-triggered and has no flag for
//! `EPOLLEXCLUSIVE`, so this one registration is made with `epoll_ctl`
//! directly (rustix) on mio's own epoll descriptor, with the token mio will
//! hand back in its events: mio reads the token from the event's data and
//! needs no record of its own. Such a source must also be removed here
//! ([`unwatch`]): mio's `deregister` keeps a debug-build record of what it
//! registered and would refuse it.
//!
//! * Level-triggered: the worker takes one connection per wake-up and
//!   epoll reports the listener again at the next `epoll_wait` while
//!   connections are still queued; an edge-triggered registration would
//!   force draining the queue (a woken worker would take the whole
//!   backlog, including connections it then leaves waiting behind a slow
//!   handler).
//! * `EPOLLEXCLUSIVE` (Linux 4.5+): a new connection wakes one *or more* of
//!   the workers blocked in `epoll_wait` on the socket, not all of them;
//!   a worker busy in a handler is not waiting and is not woken. Older
//!   kernels refuse the flag (`EINVAL`): the socket is then registered
//!   level-triggered without it (every waiting worker wakes; one wins the
//!   `accept`, the others find the queue empty).

use std::io;

use std::os::fd::AsFd;

use mio::{Registry, Token};
use rustix::event::epoll::{self, EventData, EventFlags};

/// Registers `socket` for readability on `registry`'s epoll instance,
/// level-triggered, with `EPOLLEXCLUSIVE` where the kernel has it; events
/// carry `token`. Returns whether the exclusive wake-up is on.
pub(super) fn watch(registry: &Registry, socket: &impl AsFd, token: Token) -> io::Result<bool> {
    let data = EventData::new_u64(token.0 as u64);
    match epoll::add(
        registry,
        socket,
        data,
        EventFlags::IN | EventFlags::EXCLUSIVE,
    ) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::INVAL) => {
            epoll::add(registry, socket, data, EventFlags::IN)?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes the registration and makes it again, which moves this epoll
/// instance to the back of the socket's wait queue.
///
/// A new connection wakes the waiters on the socket's wait queue in order,
/// stopping after the first exclusive one that had a task in
/// `epoll_wait`; exclusive entries are added at the tail. Without this
/// the worker that registered first takes every connection that arrives
/// while it is idle, and a light keep-alive load ends up on one worker,
/// so that a single slow request stalls all of it.
/// Two system calls per accepted connection.
pub(super) fn rotate(registry: &Registry, socket: &impl AsFd, token: Token) -> io::Result<()> {
    epoll::delete(registry, socket)?;
    watch(registry, socket, token).map(drop)
}

/// Removes a registration made by [`watch`].
pub(super) fn unwatch(registry: &Registry, socket: &impl AsFd) -> io::Result<()> {
    Ok(epoll::delete(registry, socket)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    const TOKEN: Token = Token(usize::MAX / 2 + 3);

    /// The flags of `fd`'s registration in the epoll instance `epfd`, from
    /// the kernel's own account (`/proc/self/fdinfo`: "tfd: FD events:
    /// HEX data: HEX").
    fn registered_flags(epfd: i32, fd: i32) -> Option<(u32, u64)> {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{epfd}")).unwrap();
        info.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "tfd:").then_some(())?;
            (words.next()?.parse::<i32>().ok()? == fd).then_some(())?;
            (words.next()? == "events:").then_some(())?;
            let events = u32::from_str_radix(words.next()?, 16).ok()?;
            (words.next()? == "data:").then_some(())?;
            let data = u64::from_str_radix(words.next()?, 16).ok()?;
            Some((events, data))
        })
    }

    fn ready(poll: &mut mio::Poll, events: &mut mio::Events) -> Vec<Token> {
        poll.poll(events, Some(Duration::ZERO)).unwrap();
        events.iter().map(|e| e.token()).collect()
    }

    #[test]
    fn the_shared_listener_is_level_triggered_and_exclusive_with_mios_token() {
        let std_listener =
            crate::server::listener::bind_single("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = TcpListener::from_std(std_listener);
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(8);
        assert!(watch(poll.registry(), &listener, TOKEN).unwrap());

        let (flags, data) = registered_flags(poll.as_raw_fd(), listener.as_raw_fd())
            .expect("the listener is in the epoll set");
        let want = EventFlags::IN | EventFlags::EXCLUSIVE;
        assert_eq!(flags & want.bits(), want.bits(), "{flags:#x}");
        assert_eq!(
            flags & EventFlags::ET.bits(),
            0,
            "edge-triggered: {flags:#x}"
        );
        assert_eq!(data, TOKEN.0 as u64);

        // Two queued connections: mio reports the listener with its token;
        // after one accept it reports it again (level-triggered: an
        // edge-triggered registration would stay silent with a connection
        // still queued), and once the queue is empty no more.
        let _a = std::net::TcpStream::connect(addr).unwrap();
        let _b = std::net::TcpStream::connect(addr).unwrap();
        assert!(testkit::wait_until(Duration::from_secs(5), || ready(
            &mut poll,
            &mut events
        ) == [TOKEN]));
        listener.accept().unwrap();
        assert_eq!(ready(&mut poll, &mut events), [TOKEN]);
        listener.accept().unwrap();
        assert!(ready(&mut poll, &mut events).is_empty());

        unwatch(poll.registry(), &listener).unwrap();
        assert_eq!(
            registered_flags(poll.as_raw_fd(), listener.as_raw_fd()),
            None
        );
        let _c = std::net::TcpStream::connect(addr).unwrap();
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        assert!(events.is_empty(), "no events once unwatched");
    }
}
