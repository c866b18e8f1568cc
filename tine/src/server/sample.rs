//! What the master samples for the metrics about once a second, besides
//! what workers write themselves: each worker's private memory and the
//! accept-queue depth of every listening socket (a worker cannot see the
//! queues of sockets bound after its fork, nor a stuck worker its own).
//!
//! The queue depth comes from `TCP_INFO` on a listening socket (Linux):
//! `tcpi_unacked` is the number of connections waiting to be accepted and
//! `tcpi_sacked` the queue's limit (the `listen(2)` backlog, capped by
//! `net.core.somaxconn`). Other platforms report no such value: the
//! metric is absent there, and so is the memory (see `recycle.rs`).
//! Unix-domain listeners are left out everywhere: `TCP_INFO` is TCP's,
//! and Linux tells a Unix socket's queue only through `sock_diag`
//! netlink (what `ss -x` reads), more machinery than the metric is worth.
#![allow(unsafe_code)]

use std::net::TcpListener;

use super::listener::Socket;
use super::recycle;
use super::scoreboard::Board;

/// How often the master samples.
pub(crate) const PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// A listening socket's accept queue: (waiting, limit).
#[cfg(target_os = "linux")]
pub(crate) fn queue_depth(l: &TcpListener) -> Option<(u64, u64)> {
    use std::os::fd::AsRawFd;
    // SAFETY: `info` is a plain C struct for which all-zero bytes are
    // valid; getsockopt writes at most `len` bytes into it and updates
    // `len`; the fd is borrowed from a live listener.
    let (rc, info) = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (rc, info)
    };
    (rc == 0 && info.tcpi_state == 10/* TCP_LISTEN */)
        .then(|| (u64::from(info.tcpi_unacked), u64::from(info.tcpi_sacked)))
}

/// Not measured off Linux.
#[cfg(not(target_os = "linux"))]
pub(crate) fn queue_depth(_l: &TcpListener) -> Option<(u64, u64)> {
    None
}

/// Samples every listener's queue and every live entry's memory into the
/// board.
pub(crate) fn sample(board: &Board, listeners: &[Socket], entries: &[(usize, i32)]) {
    for (i, l) in listeners.iter().enumerate() {
        let Some(l) = l.as_tcp() else { continue };
        if let (Some((depth, max)), Ok(addr)) = (queue_depth(l), l.local_addr()) {
            board.set_queue(i, addr, depth, max);
        }
    }
    if recycle::MEMORY_SUPPORTED {
        for &(i, pid) in entries {
            if let Ok(bytes) = recycle::private_bytes(pid) {
                board
                    .entry(i)
                    .memory
                    .store(bytes, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_reports_its_queue() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(queue_depth(&l).map(|q| q.0), Some(0));
        // Two connections completed by the kernel, not accepted yet.
        let _a = std::net::TcpStream::connect(addr).unwrap();
        let _b = std::net::TcpStream::connect(addr).unwrap();
        let (depth, max) = queue_depth(&l).unwrap();
        assert_eq!(depth, 2);
        assert!(max >= 2, "{max}");
        let _ = l.accept().unwrap();
        assert_eq!(queue_depth(&l).unwrap().0, 1);
        // Not a listener: no value.
        assert_eq!(queue_depth_of_stream(&_a), None);
    }

    fn queue_depth_of_stream(s: &std::net::TcpStream) -> Option<(u64, u64)> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // Reuse the listener code path on a connected socket's fd without
        // taking ownership of it.
        let l = std::mem::ManuallyDrop::new(
            // SAFETY: the fd stays owned by `s`; ManuallyDrop never closes it.
            unsafe { TcpListener::from_raw_fd(s.as_raw_fd()) },
        );
        queue_depth(&l)
    }
}
