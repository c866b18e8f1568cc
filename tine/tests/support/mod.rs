//! Helpers for tine's in-process end-to-end tests: an app served on an
//! ephemeral port on its own thread (no fork: this is a test process).
//! Raw client helpers come from the shared `testkit` crate.

#![allow(dead_code, unused_imports, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

pub use testkit::{get, wait_until, Client, Resp};
use tine::App;

/// Builds an app on a new thread, serves it on 127.0.0.1:0 and returns the
/// bound address. The server lives until the test process exits.
pub fn serve(build: impl FnOnce() -> App + Send + 'static) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let server = build().bind("127.0.0.1:0").expect("bind");
        tx.send(server.local_addr()).unwrap();
        server.run().expect("server run");
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("server started")
}

/// A WebSocket handler that sends every text and binary message back.
pub fn echo(ws: &mut tine::WebSocket, event: tine::WsEvent) {
    match event {
        tine::WsEvent::Text(t) => ws.send_text(t),
        tine::WsEvent::Binary(b) => ws.send_binary(b),
        _ => {}
    }
}
