//! No file descriptor leaks: 10,000 static-file requests, a third of them
//! aborted mid-download, leave the server with as many descriptors as it
//! started with (counted in /proc/PID/fd of the real `hello` process).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use testkit::{wait_until, Client, ServerProcess};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn ten_thousand_requests_including_aborted_ones_leak_no_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.txt"), "small file\n").unwrap();
    std::fs::write(dir.path().join("big.bin"), vec![1u8; 4 << 20]).unwrap();
    let server = ServerProcess::start(
        HELLO,
        &[
            "--bind",
            "127.0.0.1:0",
            "--static",
            dir.path().to_str().unwrap(),
        ],
    );
    let addr = server.addr;
    assert_eq!(Client::connect(addr).get("/static/small.txt").status, 200);
    let before = open_fds(server.pid());

    let mut keep = Client::connect(addr);
    for i in 0..10_000 {
        match i % 3 {
            // Kept-alive requests for a small file.
            0 | 1 => assert_eq!(keep.get("/static/small.txt").status, 200),
            // A big download aborted after the first bytes (every 10th one),
            // or right after sending the request.
            _ => {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                if i % 10 == 2 {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                }
                drop(s);
            }
        }
    }
    drop(keep);
    // Aborted downloads are noticed when the socket errors; allow the loop
    // a moment, then the count must be back where it started.
    assert!(
        wait_until(Duration::from_secs(10), || open_fds(server.pid()) <= before),
        "descriptors: {before} before, {} after",
        open_fds(server.pid())
    );
}

/// A `--static` directory that does not exist (or is a file) is bad input:
/// one clear line and exit status 2, not a panic.
#[test]
fn a_missing_static_directory_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for (path, why) in [
        (dir.path().join("missing"), "No such file or directory"),
        (file, "not a directory"),
    ] {
        let out = std::process::Command::new(HELLO)
            .args(["--bind", "127.0.0.1:0", "--static"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.starts_with("--static ") && err.contains(why), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
