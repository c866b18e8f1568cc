//! What every peer server shares: its command line and the JSON message.

use std::path::PathBuf;

/// `--port P --workers N [--static DIR]`
pub struct Args {
    pub port: u16,
    pub workers: usize,
    pub static_dir: Option<PathBuf>,
    /// HTTPS instead of HTTP (peers that support it: actix with `tls`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Args {
    pub fn parse() -> Args {
        let mut args = Args {
            port: 8080,
            workers: 1,
            static_dir: None,
            tls_cert: None,
            tls_key: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
            match flag.as_str() {
                "--port" => args.port = value.parse().unwrap_or_else(|_| usage("bad --port")),
                "--workers" => {
                    args.workers = value.parse().unwrap_or_else(|_| usage("bad --workers"))
                }
                "--static" => args.static_dir = Some(PathBuf::from(value)),
                "--tls-cert" => args.tls_cert = Some(PathBuf::from(value)),
                "--tls-key" => args.tls_key = Some(PathBuf::from(value)),
                _ => usage(&format!("unknown flag {flag}")),
            }
        }
        args.workers = args.workers.max(1);
        args
    }

    /// Peers listen on loopback only.
    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("{msg}\nusage: --port P --workers N [--static DIR]");
    std::process::exit(2)
}

/// The `/json` body: `{"message":"Hello, World!"}`.
#[derive(serde::Serialize)]
pub struct Message {
    pub message: &'static str,
}

pub const HELLO: Message = Message {
    message: "Hello, World!",
};

/// Keep-alive timeout for every peer: longer than any load run.
pub const KEEP_ALIVE_SECS: u64 = 75;

/// The `ms` of a `/sleep?ms=N` query (at most 10,000, as tine's hello caps
/// it); `None` when missing or not a number (the peer answers 400).
pub fn sleep_ms(query: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("ms="))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| ms.min(10_000))
}

/// `/sleep`'s blocking sleep: the thread that runs the handler does nothing
/// else meanwhile (an async peer's executor thread included), like a tine
/// handler blocking its worker on a slow query.
pub fn blocking_sleep(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}
