//! A throwaway `redis-server` on a loopback port, for pub/sub tests.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_until;

/// A `redis-server` child process, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl RedisServer {
    /// Starts `redis-server` on a free 127.0.0.1 port, with persistence
    /// off. Returns `None`, after a loud message on stderr, when
    /// `redis-server` is not installed; panics instead when `CI` is set,
    /// so CI can never skip the test silently.
    pub fn start() -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("redis-server not available ({e}): install it with `apt-get install -y redis-server`");
                assert!(std::env::var_os("CI").is_none(), "{msg}");
                // Straight to the process's stderr: the test harness
                // captures `eprintln!` of tests that pass.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("\n*** REDIS TEST NOT RUN: {msg} ***\n\n").as_bytes(),
                );
                return None;
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let server = RedisServer { child, addr };
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
            "redis-server did not start"
        );
        Some(server)
    }

    /// The `redis://` URL of this server.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
