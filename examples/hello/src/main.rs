//! tine's reference example. Its routes and flags are a stable contract:
//! the end-to-end tests, the benchmarks and outside conformance checks rely
//! on them.
//!
//! ```text
//! GET  /plaintext      Hello, World!
//! GET  /json           {"message":"Hello, World!"}
//! GET  /hello/:name    Hello, <name>!
//! POST /echo           the request body, same Content-Type
//! GET  /pid            the serving process's id
//! GET  /sleep?ms=N     blocks its worker N ms (max 10,000), then "slept";
//!                      meanwhile the worker's thread is named "sleeping"
//!                      (ps, /proc/PID/comm), so tests can see it has begun
//! GET  /panic          a handler that panics (answers 500)
//! GET  /stream?n=N&size=S  N chunks of S bytes, streamed, one write per
//!                      chunk (&batched=1: gathered into 64 KiB writes;
//!                      &panic_after=K: the stream panics after K chunks;
//!                      &delay_ms=D: each chunk takes D ms to make)
//! WS   /ws/echo        echoes text as text, binary as binary
//!                      (`?subscribe=T`: also subscribed to topic T)
//! WS   /ws/sleep       each text message "N" blocks the worker N ms (max
//!                      10,000), then is echoed
//! WS   /ws/chat?room=R a chat room across all workers (tine::publish);
//!                      first message "pid N"; "/leave" unsubscribes;
//!                      a message too large to publish (tine::pubsub::
//!                      max_size) answers "not sent: ..." to the sender
//! POST /publish/:topic publishes the body to a topic (?id=X: as a
//!                      server-sent event with id X, type `message`);
//!                      413 when too large to publish; ?thread_ms=N:
//!                      answers at once and publishes from a thread of its
//!                      own N ms later (tine::pubsub::publisher)
//! GET  /big?kb=N       about N KiB of JSON, buffered (for compression)
//! GET  /sse/:topic     server-sent events: everything published to the
//!                      topic, in any worker (see src/streams.rs)
//! GET  /pubsub/stats   this worker's pub/sub counters, one `name value` a line
//! GET  /static/*       files from --static DIR
//! GET  /version        the --version-tag TEXT (default: the crate version)
//! GET  /block?ms=N     blocks its worker N ms, with no cap (for a watchdog
//!                      test: a worker stuck in a handler), then "blocked";
//!                      its thread is named "sleeping" meanwhile, like /sleep's
//! POST /leak?kb=N      testing aid: allocates N KiB, writes them and never
//!                      frees them (max 1 GiB per request); answers this
//!                      worker's total leaked KiB
//! GET  /metrics        Prometheus metrics of every worker (one scrape)
//! GET  /status         status page, a row per worker process (HTML;
//!                      ?format=json for JSON)
//! GET  /healthz        200 "ok" while serving, 503 "stopping" after SIGTERM
//! GET  /whoami         the client's address and scheme as tine sees them
//!                      (`203.0.113.7 https` behind a --trusted-proxy)
//! POST /upload         multipart/form-data; answers JSON
//!                      {"fields":[{"name","value"}],"files":[{"field",
//!                      "filename","size","sha256"}]} (hex SHA-256); body
//!                      limit --max-upload; 400/413/415 naming the problem
//! ```
//!
//! Process flags besides the address and the limits:
//!
//! ```text
//! --workers N                 worker processes (>1: a master and N workers)
//! --pid-file PATH             the master's (or single process's) pid, removed on exit
//! --max-requests N            recycle a worker after about N responses
//! --max-requests-jitter J     ... each worker's limit is N + random(0..=J)
//! --max-worker-memory BYTES   recycle a worker past BYTES of private memory (Linux)
//! --worker-timeout-ms N       kill and replace a worker stuck N ms (0: never; default 30 s)
//! --version-tag TEXT          what GET /version answers (given twice: the last)
//! --listen ADDR               another address with the same routes (repeatable;
//!                             one `listening on` line per address)
//! --bind, --listen and --proxy-protocol-listen take `unix:PATH` too: a
//!                             Unix-domain socket (`listening on unix:PATH`)
//! --unix-mode OCTAL           file mode of the Unix sockets (default 666)
//! --shutdown-delay-ms N       SIGTERM: keep serving N ms with /healthz at 503, then drain
//! --trusted-proxy ADDR_OR_CIDR  believe X-Forwarded-For/-Proto from it (repeatable)
//! --access-log common|combined|json  an access log line per request, with a
//!                             request id (echoed in X-Request-Id)
//! --access-log-file PATH      ... to PATH instead of stdout; reopened on SIGUSR1
//!                             (one that cannot be opened: exit status 2;
//!                             without --access-log: refused, exit status 2)
//! --proxy-protocol-listen ADDR  another address whose connections start with a
//!                             PROXY protocol v1/v2 header (repeatable; its
//!                             `listening on` line comes right after --bind's)
//! --admin-bind ADDR           /metrics, /status, /healthz served on ADDR by an admin
//!                             process that runs no handler (404 on --bind)
//! --upgrade-timeout-ms N      a new master started by SIGUSR2 must be ready within N ms (default 60 s)
//! --user NAME / --group NAME  workers (or the single process) run as NAME
//! --balance reuseport|shared  a SO_REUSEPORT listener per worker, or one
//!                             listener the free workers accept from
//! --tls-bind ADDR             an HTTPS (and WSS) listener with the same routes,
//! --tls-cert FILE                with this PEM chain and key (re-read on SIGHUP,
//! --tls-key FILE                 and on SIGUSR1 without restarting workers)
//! --redirect-https            plain requests get a 308 to the HTTPS listener
//! --max-upload BYTES          body limit of POST /upload (default: --max-body's)
//! --body-buffer BYTES         bodies past BYTES spill to a temporary file (default: --max-body)
//! --compress                  compress responses (gzip, br; zstd on Linux)
//! ```
//!
//! Under systemd, a socket unit's sockets (`LISTEN_FDS`) replace `--bind`
//! (see `docs/deploy/`).

// A binary talks to its operator on stdout/stderr; the library never does.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// `println!` that does not panic when stdout cannot be written (a
/// reader that went away, `>/dev/full`): the announcement is for whoever
/// watches, and a server whose output nobody reads still serves.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that does not panic when stderr cannot be written: the exit
/// status still tells what happened (2: bad flags or an address that
/// cannot be bound).
macro_rules! complain {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod streams;

use clap::Parser;

mod observe;
mod tls;
mod upload;
use tine::{App, Request, Response, StatusCode, WebSocket, WsEvent};

/// `--unix-mode 660`: an octal file mode.
fn octal_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|&m| m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal file mode (like 660)"))
}

/// `--max-connections 100`: a count of at least 1 (0 would refuse every
/// connection, and `tine::Limits` panics on it).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("0 would refuse every connection (the least is 1)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(about = "tine's reference example")]
struct Args {
    /// Address to listen on: IP:PORT, or unix:PATH for a Unix-domain
    /// socket.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: tine::Listen,
    /// File mode of the Unix-domain sockets, in octal (default 666).
    #[arg(long, value_parser = octal_mode)]
    unix_mode: Option<u32>,
    /// Worker processes: >1 forks a master and that many workers;
    /// 0 or 1 serves in this process (TINE_WORKERS overrides).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Join an existing SO_REUSEPORT group on the address on purpose.
    #[arg(long)]
    join_existing: bool,
    /// Testing aid: every worker exits with status 1 at start-up (to check
    /// the master's crash-loop backoff).
    #[arg(long, hide = true)]
    crash_on_start: bool,
    /// Testing aid: the on_worker_start hook panics.
    #[arg(long, hide = true)]
    panic_on_start: bool,
    /// Testing aid: the on_worker_start hook sleeps this many milliseconds
    /// (a worker slow to set up, as one opening database connections).
    #[arg(long, hide = true)]
    slow_start_ms: Option<u64>,
    /// Testing aid: `POST /stop` stops the server with its
    /// `tine::ServerHandle` (from a handler, in whichever worker).
    #[arg(long, hide = true)]
    stop_route: bool,
    /// Testing aid: register signal-hook handlers for SIGINT and SIGTERM
    /// before serving, as an application that watches signals itself.
    #[arg(long, hide = true)]
    hook_signals_first: bool,
    /// Carry published messages through this Redis server
    /// (redis://host:port) so several servers share topics.
    #[arg(long)]
    redis: Option<String>,
    /// Graceful-stop timeout of the master, in milliseconds.
    #[arg(long)]
    graceful_timeout_ms: Option<u64>,
    /// Serve this directory under /static/.
    #[arg(long = "static")]
    static_dir: Option<std::path::PathBuf>,
    /// Keep opened static files for this many milliseconds (nginx's
    /// open_file_cache); 0 or absent: look every time. Needs --static.
    #[arg(long, requires = "static_dir")]
    open_file_cache_ms: Option<u64>,
    /// Log one line per request.
    #[arg(long)]
    log: bool,
    /// Header-read timeout in milliseconds (tests use a short one).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_ms: Option<u64>,
    /// Idle keep-alive timeout in milliseconds.
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
    /// Whole-body deadline in milliseconds.
    #[arg(long)]
    body_timeout_ms: Option<u64>,
    /// Maximum open connections per client address and process (at least
    /// 1).
    #[arg(long, value_parser = at_least_one)]
    max_connections_per_ip: Option<usize>,
    /// Maximum request body in bytes.
    #[arg(long)]
    max_body: Option<usize>,
    /// Maximum open connections per process (at least 1).
    #[arg(long, value_parser = at_least_one)]
    max_connections: Option<usize>,
    /// Most requests answered on one connection before it closes (at
    /// least 1; nginx's keepalive_requests). Default: no limit.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    keepalive_requests: Option<u32>,
    /// Drain deadline in milliseconds.
    #[arg(long)]
    drain_timeout_ms: Option<u64>,
    /// Recycle a worker after about this many responses.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Each worker's request limit is --max-requests plus up to this many.
    #[arg(long)]
    max_requests_jitter: Option<u64>,
    /// Recycle a worker whose private memory passes this many bytes (Linux).
    #[arg(long)]
    max_worker_memory: Option<u64>,
    /// Kill and replace a worker that made no progress (no loop turn, no
    /// handler started) for this many milliseconds (0 disables the
    /// watchdog).
    #[arg(long)]
    worker_timeout_ms: Option<u64>,
    /// Write the master's (or single process's) pid here; removed on exit.
    #[arg(long)]
    pid_file: Option<std::path::PathBuf>,
    /// The user workers run as (the master keeps its own).
    #[arg(long)]
    user: Option<String>,
    /// The group workers run as (default: the user's).
    #[arg(long)]
    group: Option<String>,
    /// Text answered by GET /version (to tell two builds or runs apart;
    /// given twice, the last one wins, so an upgrade wrapper can append
    /// `--version-tag new` to the arguments it is started with).
    #[arg(long, overrides_with = "version_tag")]
    version_tag: Option<String>,
    /// Another address to serve the same routes on (repeatable; IP:PORT
    /// or unix:PATH).
    #[arg(long = "listen")]
    listen: Vec<tine::Listen>,
    // --- observability ---
    /// How long SIGTERM keeps serving (GET /healthz answering 503) before
    /// the drain, in milliseconds (default 0).
    #[arg(long)]
    shutdown_delay_ms: Option<u64>,
    /// Serve /metrics, /status and /healthz from an admin process on this
    /// address (and not on --bind); needs --workers > 1.
    #[arg(long)]
    admin_bind: Option<SocketAddr>,
    /// Believe X-Forwarded-For/-Proto from this address or CIDR range
    /// (repeatable).
    #[arg(long = "trusted-proxy")]
    trusted_proxy: Vec<String>,
    /// Access log lines in this format: common, combined or json (with a
    /// request id, echoed in X-Request-Id).
    #[arg(long)]
    access_log: Option<String>,
    /// Write the access log to this file instead of stdout (reopened on
    /// SIGUSR1; one that cannot be opened stops the start). Needs
    /// --access-log.
    #[arg(long, requires = "access_log")]
    access_log_file: Option<std::path::PathBuf>,
    /// Another address whose connections start with a PROXY protocol
    /// header, v1 or v2 (repeatable; listed right after --bind's; IP:PORT
    /// or unix:PATH).
    #[arg(long = "proxy-protocol-listen")]
    proxy_protocol_listen: Vec<tine::Listen>,
    /// Benchmark aid: leave out /metrics, /status, /healthz and /whoami
    /// (to measure what the routes cost the others).
    #[arg(long, hide = true)]
    without_observability_routes: bool,
    // --- tls ---
    /// HTTPS (and WSS) address serving the same routes (needs --tls-cert
    /// and --tls-key).
    #[arg(long)]
    tls_bind: Option<SocketAddr>,
    /// PEM certificate chain for --tls-bind (re-read on SIGHUP and SIGUSR1).
    #[arg(long)]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-bind (re-read on SIGHUP and SIGUSR1).
    #[arg(long)]
    tls_key: Option<std::path::PathBuf>,
    /// Answer every plain-HTTP request with a 308 to the HTTPS listener.
    #[arg(long)]
    redirect_https: bool,
    /// Testing aid: rotate session-ticket keys every N milliseconds.
    #[arg(long, hide = true)]
    tls_ticket_rotation_ms: Option<u64>,
    // --- upgrade ---
    /// How long a new master started by SIGUSR2 may take until all its
    /// workers are ready, in milliseconds (default 60 s).
    #[arg(long)]
    upgrade_timeout_ms: Option<u64>,
    // --- balance ---
    /// How the workers share each address: `reuseport` (a SO_REUSEPORT
    /// listener per worker; the Linux and FreeBSD default) or `shared` (one
    /// listener the free workers accept from; macOS's default).
    /// TINE_LISTENER overrides it.
    #[arg(long, value_enum)]
    balance: Option<BalanceArg>,
    // --- uploads ---
    /// Body limit of POST /upload in bytes (default: --max-body's).
    #[arg(long)]
    max_upload: Option<usize>,
    /// Request bodies larger than this many bytes are spilled to a
    /// temporary file instead of memory (default: --max-body's).
    #[arg(long)]
    body_buffer: Option<usize>,
    // --- web streams ---
    /// Compress responses (gzip, brotli; zstd where built) as the
    /// client's Accept-Encoding allows.
    #[arg(long)]
    compress: bool,
}

/// `--balance`'s values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum BalanceArg {
    Reuseport,
    Shared,
}

#[derive(serde::Serialize)]
struct Message {
    message: &'static str,
}

fn plaintext(_: &Request) -> Response {
    Response::text("Hello, World!")
}

fn json(_: &Request) -> Response {
    Response::json(&Message {
        message: "Hello, World!",
    })
}

fn hello(req: &Request) -> Response {
    Response::text(format!("Hello, {}!", req.param("name").unwrap_or("")))
}

fn echo(req: &Request) -> Response {
    let mut res = Response::bytes(req.body_bytes());
    if let Some(ct) = req.headers().get(tine::header::CONTENT_TYPE) {
        res.headers_mut()
            .insert(tine::header::CONTENT_TYPE, ct.clone());
    }
    res
}

fn pid(_: &Request) -> Response {
    Response::text(tine::worker().pid.to_string())
}

fn sleep(req: &Request) -> Result<Response, tine::Error> {
    let ms: u64 = req
        .query_param("ms")
        .unwrap_or_default()
        .parse()
        .map_err(|_| tine::Error::bad_request("ms must be a number of milliseconds"))?;
    named_sleeping(|| std::thread::sleep(Duration::from_millis(ms.min(10_000))));
    Ok(Response::text("slept"))
}

/// Blocks the worker `ms` milliseconds with no cap (unlike `/sleep`), the
/// way a handler stuck on a dead socket would.
fn block(req: &Request) -> Result<Response, tine::Error> {
    let ms: u64 = req
        .query_param("ms")
        .unwrap_or_default()
        .parse()
        .map_err(|_| tine::Error::bad_request("ms must be a number of milliseconds"))?;
    // Named like /sleep's, so a test can see the handler has begun.
    named_sleeping(|| std::thread::sleep(Duration::from_millis(ms)));
    Ok(Response::text("blocked"))
}

thread_local! {
    /// What `/leak` allocated in this worker, kept until it exits.
    static LEAKED: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Testing aid for memory recycling: keeps `kb` KiB, written so that the
/// pages are really this worker's (not merely reserved).
fn leak(req: &Request) -> Result<Response, tine::Error> {
    let kb: usize = req
        .query_param("kb")
        .unwrap_or_default()
        .parse()
        .map_err(|_| tine::Error::bad_request("kb must be a number of KiB"))?;
    if kb > 1 << 20 {
        return Err(tine::Error::bad_request("kb is at most 1048576 (1 GiB)"));
    }
    let total = LEAKED.with(|l| {
        let mut l = l.borrow_mut();
        l.push(vec![0x5a; kb * 1024]);
        l.iter().map(Vec::len).sum::<usize>() / 1024
    });
    Ok(Response::text(total.to_string()))
}

/// Runs `f` with the main thread named `sleeping`. Handlers run on the
/// process's main thread, whose name is the process's `comm` on Linux: an
/// outside observer (a test about to signal the server) sees the request
/// is being handled, not merely sent. Elsewhere (no `prctl`) it just runs
/// `f`.
fn named_sleeping(f: impl FnOnce()) {
    #[cfg(target_os = "linux")]
    {
        // Read from /proc, not with `prctl::get_name`: nix 0.30's returns
        // an empty name in release builds (its buffer is passed as if
        // immutable, so the compiler keeps the zeroes), which then blanked
        // the worker's name for good.
        let name = std::fs::read_to_string("/proc/thread-self/comm")
            .ok()
            .and_then(|n| std::ffi::CString::new(n.trim_end_matches('\n')).ok())
            .filter(|n| !n.is_empty());
        let _ = nix::sys::prctl::set_name(c"sleeping");
        f();
        if let Some(name) = name {
            let _ = nix::sys::prctl::set_name(&name);
        }
    }
    #[cfg(not(target_os = "linux"))]
    f();
}

fn stream(req: &Request) -> Result<Response, tine::Error> {
    let n: usize = req
        .query_param("n")
        .unwrap_or("10".into())
        .parse()
        .map_err(|_| tine::Error::bad_request("n"))?;
    let size: usize = req
        .query_param("size")
        .unwrap_or("1024".into())
        .parse()
        .map_err(|_| tine::Error::bad_request("size"))?;
    let panic_after: Option<usize> = match req.query_param("panic_after") {
        Some(k) => Some(
            k.parse()
                .map_err(|_| tine::Error::bad_request("panic_after"))?,
        ),
        None => None,
    };
    let delay: u64 = req
        .query_param("delay_ms")
        .unwrap_or("0".into())
        .parse()
        .map_err(|_| tine::Error::bad_request("delay_ms"))?;
    let chunk = tine::Bytes::from(vec![b'x'; size.min(1 << 20)]);
    let chunks = (0..n).map(move |i| {
        if Some(i) == panic_after {
            panic!("deliberate panic in /stream after {i} chunks");
        }
        // A chunk that takes time to make (at most 10 s).
        std::thread::sleep(Duration::from_millis(delay.min(10_000)));
        chunk.clone()
    });
    // The chunks are always ready: with &batched=1 they are gathered into
    // large writes (Response::stream_batched) instead of one write each.
    Ok(if req.query_param("batched").is_some() {
        Response::stream_batched(chunks)
    } else {
        Response::stream(chunks)
    })
}

fn ws_echo(ws: &mut WebSocket, event: WsEvent) {
    match event {
        // `?subscribe=T` also subscribes to topic T (the idle-memory
        // benchmark counts a subscription in).
        WsEvent::Open => {
            if let Some(topic) = ws.request().query_param("subscribe") {
                ws.subscribe(&topic);
            }
        }
        WsEvent::Text(text) => ws.send_text(text),
        WsEvent::Binary(data) => ws.send_binary(data),
        _ => {}
    }
}

/// Blocks the worker as long as a text message says (in ms, at most
/// 10,000), then echoes it: a slow message handler.
fn ws_sleep(ws: &mut WebSocket, event: WsEvent) {
    if let WsEvent::Text(text) = event {
        let ms: u64 = text.trim().parse().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms.min(10_000)));
        ws.send_text(text);
    }
}

/// Every message sent by any client reaches every client, whichever worker
/// holds it.
fn ws_chat(ws: &mut WebSocket, event: WsEvent) {
    match event {
        WsEvent::Open => {
            let room = ws
                .request()
                .query_param("room")
                .unwrap_or_else(|| "chat".into());
            ws.subscribe(&room);
            // Tells the client which worker holds it.
            ws.send_text(format!("pid {}", tine::worker().pid));
        }
        WsEvent::Text(text) if text == "/leave" => {
            let topics = ws.topics().to_vec();
            for room in topics {
                ws.unsubscribe(&room);
            }
            ws.send_text("left");
        }
        WsEvent::Text(text) => {
            if let Some(room) = ws.topics().first().cloned() {
                // Too large to reach every worker (or too much waiting):
                // the sender hears it; nobody gets the message.
                if let Err(e) = tine::publish(&room, text) {
                    ws.send_text(format!("not sent: {}", e.message()));
                }
            }
        }
        _ => {}
    }
}

fn publish(req: &Request) -> Result<StatusCode, tine::Error> {
    let topic = req.param("topic").unwrap_or("");
    if let Some(ms) = req.query_param("thread_ms") {
        // Slow work handed to a thread: the worker serves on, and the
        // thread publishes the result through the worker's publisher.
        let ms: u64 = ms
            .parse()
            .map_err(|_| tine::Error::bad_request("thread_ms: a number"))?;
        let publisher = tine::pubsub::publisher()
            .ok_or_else(|| tine::Error::new(StatusCode::INTERNAL_SERVER_ERROR, "no publisher"))?;
        let (topic, text) = (topic.to_string(), req.text()?.to_string());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms.min(10_000)));
            if let Err(e) = publisher.publish(&topic, text) {
                log::warn!("publishing from a thread: {e}");
            }
        });
        return Ok(StatusCode::ACCEPTED);
    }
    match req.query_param("id") {
        Some(id) => tine::publish_event(topic, tine::SseEvent::new(req.text()?).id(id))?,
        None => tine::publish(topic, req.text()?)?,
    }
    Ok(StatusCode::ACCEPTED)
}

/// `tine::pubsub::stats()` of the worker serving the request.
fn pubsub_stats(_: &Request) -> Response {
    let s = tine::pubsub::stats();
    Response::text(format!(
        "topics {}\nsubscriptions {}\nqueued {}\nqueued_bytes {}\ndropped {}\n",
        s.topics, s.subscriptions, s.queued, s.queued_bytes, s.dropped
    ))
}

fn main() -> ExitCode {
    // Log lines go to stderr through tine's `LogWriter`, which never
    // blocks for long: a log reader that stops reading cannot freeze the
    // master and the workers (made here, before the server forks).
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    logger.target(env_logger::Target::Pipe(
        Box::new(tine::LogWriter::stderr()),
    ));
    // A pipe target cannot tell a terminal: colours on one unless
    // `RUST_LOG_STYLE` (read by `from_env`) or `NO_COLOR` says otherwise.
    let colour_chosen =
        std::env::var_os("RUST_LOG_STYLE").is_some() || std::env::var_os("NO_COLOR").is_some();
    if !colour_chosen && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        logger.write_style(env_logger::WriteStyle::Always);
    }
    logger.init();
    let args = Args::parse();
    let mut limits = tine::Limits::default();
    if let Some(ms) = args.header_timeout_ms {
        limits = limits.header_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = args.idle_timeout_ms {
        limits = limits.idle_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = args.body_timeout_ms {
        limits = limits.body_timeout(Duration::from_millis(ms));
    }
    if let Some(n) = args.max_connections_per_ip {
        limits = limits.max_connections_per_ip(n);
    }
    if let Some(n) = args.max_body {
        limits = limits.max_body(n);
    }
    if let Some(n) = args.keepalive_requests {
        limits = limits.keepalive_requests(n);
    }
    if let Some(n) = args.max_connections {
        limits = limits.max_connections(n);
    }
    if let Some(ms) = args.drain_timeout_ms {
        limits = limits.drain_timeout(Duration::from_millis(ms));
    }
    if let Some(n) = args.body_buffer {
        limits = limits.body_buffer(n);
    }
    let unix_mode = |l: tine::Listen| match args.unix_mode {
        Some(mode) => l.mode(mode),
        None => l,
    };
    // A Unix --bind is the first listener (a TCP one is given to `bind`).
    let unix_bind = args.bind.listen_addr().is_unix();
    let mut app = App::new();
    if unix_bind {
        app = app.listen(unix_mode(args.bind.clone()));
    }
    let mut app = app
        .get("/plaintext", plaintext)
        .get("/json", json)
        .get("/hello/:name", hello)
        .post("/echo", echo)
        .get("/pid", pid)
        .get("/sleep", sleep)
        .get("/block", block)
        .post("/leak", leak)
        .get("/stream", stream)
        .post("/publish/:topic", publish)
        .get("/pubsub/stats", pubsub_stats)
        .merge(upload::routes(args.max_upload))
        .ws("/ws/echo", ws_echo)
        .ws("/ws/sleep", ws_sleep)
        .ws("/ws/chat", ws_chat)
        .get("/panic", |_: &Request| -> Response {
            panic!("deliberate panic from /panic")
        })
        .errors(|_req, status: StatusCode| {
            Response::text(format!(
                "{} {}\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ))
        })
        .limits(limits)
        .workers(args.workers)
        .join_existing(args.join_existing);
    let tag = args
        .version_tag
        .clone()
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    app = app.get("/version", move |_: &Request| Response::text(tag.clone()));
    app = streams::routes(app);
    if args.compress {
        app = app.compress(tine::Compression::new());
    }
    app = match observe::routes(
        app,
        !args.without_observability_routes,
        &observe::Observe {
            shutdown_delay_ms: args.shutdown_delay_ms,
            admin_bind: args.admin_bind,
            trusted_proxies: args.trusted_proxy.clone(),
            access_log: args.access_log.clone(),
            access_log_file: args.access_log_file.clone(),
            proxy_listen: (args.proxy_protocol_listen.iter().cloned())
                .map(unix_mode)
                .collect(),
        },
    ) {
        Ok(app) => app,
        Err(e) => {
            complain!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(n) = args.max_requests {
        app = app.max_requests(n);
    }
    if let Some(j) = args.max_requests_jitter {
        app = app.max_requests_jitter(j);
    }
    if let Some(ms) = args.worker_timeout_ms {
        app = app.worker_timeout(Duration::from_millis(ms));
    }
    if let Some(bytes) = args.max_worker_memory {
        app = app.max_worker_memory(bytes);
    }
    if let Some(ms) = args.upgrade_timeout_ms {
        app = app.upgrade_timeout(Duration::from_millis(ms));
    }
    if let Some(path) = &args.pid_file {
        app = app.pid_file(path);
    }
    if let Some(user) = &args.user {
        app = app.user(user);
    }
    if let Some(group) = &args.group {
        app = app.group(group);
    }
    if let Some(ms) = args.graceful_timeout_ms {
        app = app.graceful_timeout(Duration::from_millis(ms));
    }
    if let Some(url) = &args.redis {
        app = app.redis(url);
    }
    if args.crash_on_start {
        app = app.on_worker_start(|_| std::process::exit(1));
    }
    if args.panic_on_start {
        app = app.on_worker_start(|_| panic!("deliberate panic in on_worker_start"));
    }
    if let Some(ms) = args.slow_start_ms {
        app = app.on_worker_start(move |_| std::thread::sleep(Duration::from_millis(ms)));
    }
    if let Some(dir) = &args.static_dir {
        // `static_files` panics on a root it cannot open (a programming
        // error in an app); for a command-line flag it is bad input.
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                complain!("--static {}: not a directory", dir.display());
                return ExitCode::from(2);
            }
            Err(e) => {
                complain!("--static {}: {e}", dir.display());
                return ExitCode::from(2);
            }
        }
        let config = tine::StaticConfig::new(dir).open_file_cache(
            args.open_file_cache_ms
                .filter(|&ms| ms > 0)
                .map(Duration::from_millis),
        );
        app = app.static_files("/static", config);
    }
    if args.log {
        app = app.log_requests();
    }
    if let Some(b) = args.balance {
        app = app.balance(match b {
            BalanceArg::Reuseport => tine::Balance::ReusePort,
            BalanceArg::Shared => tine::Balance::Shared,
        });
    }
    for l in &args.listen {
        app = app.listen(unix_mode(l.clone()));
    }
    let tls_args = tls::TlsArgs {
        bind: args.tls_bind,
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        redirect: args.redirect_https,
        ticket_rotation_ms: args.tls_ticket_rotation_ms,
    };
    let https = match tls::configure(app, tls_args) {
        Ok((configured, https)) => {
            app = configured;
            https
        }
        Err(e) => {
            complain!("{e}");
            return ExitCode::from(2);
        }
    };
    // The handle exists once the server is bound; the route, built
    // before, finds it here (set before the workers are forked).
    let handle = std::sync::Arc::new(std::sync::OnceLock::<tine::ServerHandle>::new());
    if args.stop_route {
        let handle = handle.clone();
        app = app.post("/stop", move |_: &tine::Request| {
            match handle.get().map(tine::ServerHandle::stop) {
                Some(Ok(())) => {
                    tine::Response::text("stopping\n").with_status(tine::StatusCode::ACCEPTED)
                }
                _ => tine::Response::error(tine::StatusCode::INTERNAL_SERVER_ERROR),
            }
        });
    }
    if args.hook_signals_first {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            if let Err(e) = signal_hook::flag::register(sig, seen.clone()) {
                complain!("cannot register a signal handler: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let bound = if unix_bind {
        app.bind_listeners()
    } else {
        app.bind(args.bind.addr())
    };
    let server = match bound {
        Ok(s) => s,
        Err(e) => {
            complain!("{e}");
            return ExitCode::from(2);
        }
    };
    let _ = handle.set(server.handle());
    // Tests and scripts read the bound addresses from these lines (the
    // --bind address first, then each --proxy-protocol-listen, then each
    // --listen, then --tls-bind's).
    let addrs = server.listen_addrs();
    for (i, addr) in addrs.iter().enumerate() {
        let scheme = if https && i + 1 == addrs.len() {
            "https"
        } else {
            "http"
        };
        match addr.tcp() {
            Some(addr) => say!("listening on {scheme}://{addr}"),
            None => say!("listening on {addr}"),
        }
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A `ServeError` names tine itself, like the bind errors above.
            complain!("{e}");
            ExitCode::FAILURE
        }
    }
}
