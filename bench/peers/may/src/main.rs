//! may_minihttp peer (stackful coroutines on `--workers N` threads).
//! Only /plaintext, /json and /hello/:name: the crate has no static files or WebSocket.
//! The crate never sets TCP_NODELAY, so each accepted socket gets it in `new_service`.
//! It has no idle timeout: keep-alive connections stay open until the client closes.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use bench_common::{Args, HELLO};
use bytes::BufMut;
use may_minihttp::{HttpService, HttpServiceFactory, Request, Response};

struct Peer;

impl HttpService for Peer {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        if req.method() != "GET" {
            rsp.status_code(405, "Method Not Allowed");
            return Ok(());
        }
        let path = req.path();
        if path == "/plaintext" {
            rsp.header("Content-Type: text/plain").body("Hello, World!");
        } else if path == "/json" {
            rsp.header("Content-Type: application/json");
            serde_json::to_writer(rsp.body_mut().writer(), &HELLO)?;
        } else if let Some(name) = path
            .strip_prefix("/hello/")
            .filter(|n| !n.is_empty() && !n.contains('/'))
        {
            rsp.header("Content-Type: text/plain");
            rsp.body_vec(format!("Hello, {name}!").into_bytes());
        } else {
            rsp.status_code(404, "Not Found");
        }
        Ok(())
    }
}

struct Factory;

impl HttpServiceFactory for Factory {
    type Service = Peer;

    /// `id` is the accepted connection's file descriptor.
    fn new_service(&self, id: usize) -> Peer {
        // SAFETY: the fd belongs to the connection being set up and outlives this call.
        let fd = unsafe { BorrowedFd::borrow_raw(id as RawFd) };
        let _ = socket2::SockRef::from(&fd).set_tcp_nodelay(true);
        Peer
    }
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    may::config().set_workers(args.workers);
    let server = Factory.start(args.addr())?;
    server
        .join()
        .map_err(|_| io::Error::other("server coroutine panicked"))
}
