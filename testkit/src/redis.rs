//! A throwaway `redis-server` on a loopback port, for pub/sub tests (tine's
//! Redis bus unit tests and the end-to-end tests share it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` on a free 127.0.0.1 port, persistence off,
    /// with `extra` arguments (e.g. `["--requirepass", "pw"]`). Returns
    /// `None`, after a loud message on stderr, when `redis-server` is not
    /// installed; panics instead when `CI` is set, so CI can never skip the
    /// test silently.
    pub fn start(extra: &[&str]) -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            let msg = "redis-server is not installed: `apt-get install -y redis-server`";
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            // Straight to the process's stderr: the test harness captures
            // `eprintln!` of tests that pass.
            let _ = std::io::stderr()
                .write_all(format!("\n*** REDIS TEST NOT RUN: {msg} ***\n\n").as_bytes());
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir.path().to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = spawn(&args, addr);
        Some(RedisServer {
            child,
            addr,
            args,
            _dir: dir,
        })
    }

    /// The `redis://` URL of this server.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops the server (it can be started again with [`restart`](Self::restart)).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it and starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.args, self.addr);
    }

    /// The `--requirepass` the server was started with.
    pub fn password(&self) -> Option<&str> {
        let at = self.args.iter().position(|a| a == "--requirepass")?;
        self.args.get(at + 1).map(String::as_str)
    }

    /// Runs `redis-cli -p PORT args...` (authenticated if needed) and
    /// returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port().to_string())
            .args(
                self.password()
                    .map(|pw| ["--no-auth-warning", "-a", pw])
                    .into_iter()
                    .flatten(),
            )
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns redis-server and waits (bounded) until it answers.
fn spawn(args: &[String], addr: SocketAddr) -> Child {
    let mut child = Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let mut reply = [0u8; 64];
            // Any reply (PONG or NOAUTH) means it is up.
            if s.write_all(b"PING\r\n").is_ok() && s.read(&mut reply).unwrap_or(0) > 0 {
                return child;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis-server exited early: {status}");
        }
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}
