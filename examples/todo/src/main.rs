//! The todo example: a small, real application on tine.
//!
//! A JSON API over SQLite, a plain HTML/CSS/JavaScript front end served by
//! tine's static files, and several worker processes behind one port, each
//! with its own SQLite connection (opened after the fork) on one database
//! file in WAL mode.
//!
//! ```text
//! GET    /api/todos        200 [{"id":1,"text":"milk","done":false}, ...]
//! POST   /api/todos        {"text":"milk"}            -> 201 the new todo
//! GET    /api/todos/:id    200 the todo
//! PUT    /api/todos/:id    {"text"?:..,"done"?:..}    -> 200 the todo
//! PATCH  /api/todos/:id    (same as PUT: a partial update)
//! DELETE /api/todos/:id    204
//! GET    /                 the front end (static/)
//! ```
//!
//! Errors are JSON, `{"error": "..."}`: 400 for invalid input (empty or
//! too long text, bad JSON, wrong types, a non-numeric id), 404 for an
//! unknown id or route, 405, 415 for a body that is not JSON, 503 when the
//! database stays locked past the busy timeout, 500 for other database
//! failures.

// A binary talks to its operator on stdout/stderr; the library never does.
#![allow(clippy::print_stdout, clippy::print_stderr)]

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

mod api;
mod db;
mod live;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tine::{header, App, Group, Request, Response};

use crate::db::Store;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(about = "The todo example on tine: SQLite, a JSON API and a browser front end")]
struct Args {
    /// Address to listen on (port 0: any free port, printed at start-up).
    #[arg(long, default_value = "127.0.0.1:3000")]
    bind: SocketAddr,
    /// Worker processes [default: the number of available cores].
    #[arg(long)]
    workers: Option<usize>,
    /// The SQLite database file, created with its schema if missing.
    #[arg(long, default_value = "todo.db")]
    db: PathBuf,
    /// How long a write waits for another worker's lock before the request
    /// fails with 503, in milliseconds (at most 2147483647, SQLite's
    /// limit).
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(..=i32::MAX as u64))]
    busy_timeout_ms: u64,
    /// The front end's directory [default: this crate's static/].
    #[arg(long)]
    static_dir: Option<PathBuf>,
    /// Log warnings and errors only, not every request (RUST_LOG wins).
    #[arg(long)]
    quiet: bool,
}

/// What the app needs besides its routes.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The SQLite database file.
    pub(crate) db: PathBuf,
    /// How long a write waits for another worker's lock.
    pub(crate) busy_timeout: Duration,
    /// The front end's directory.
    pub(crate) static_dir: PathBuf,
}

/// The app: routes, the worker's database connection, the front end and
/// the error pages (serving settings such as workers are `main`'s). The
/// tests in `tests.rs` drive it with `tine::test::TestClient`.
pub(crate) fn app(settings: Settings) -> App {
    let Settings {
        db,
        busy_timeout,
        static_dir,
    } = settings;
    App::new()
        // Runs in each worker after the fork: SQLite connections must never
        // cross a fork, so none is opened before it.
        .on_worker_start(move |state| {
            let store = Store::new(db.clone(), busy_timeout);
            store.open_now();
            state.insert(store);
        })
        .nest(
            "/api",
            Group::new()
                .get("/todos", api::list)
                .post("/todos", api::create)
                .get("/todos/:id", api::get)
                .put("/todos/:id", api::update)
                .patch("/todos/:id", api::update)
                .delete("/todos/:id", api::delete)
                // Other paths under /api/, whatever the method: a JSON
                // 404. The routes above keep their own paths (HEAD from
                // GET, 405 with Allow for other methods, OPTIONS listing
                // them): a fallback only gets the paths no route has.
                .fallback(api::not_found)
                // The list changes under every answer (other browsers
                // write it): no cache may keep one, the browser's
                // included (a shared cache such as Varnish would keep a
                // `200` without it for two minutes).
                .after(|_: &Request, res: Response| {
                    res.with_header(header::CACHE_CONTROL, "no-store")
                }),
        )
        // Live updates: every browser subscribes to the list's topic.
        .ws(
            "/ws",
            |ws: &mut tine::WebSocket<'_>, event: tine::WsEvent| {
                if event == tine::WsEvent::Open {
                    ws.subscribe(live::TOPIC);
                }
            },
        )
        .static_dir("/", &static_dir)
        .errors(api::error_page)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let level = if args.quiet { "warn" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();

    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let static_dir = args
        .static_dir
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static")));
    if !static_dir.join("index.html").is_file() {
        complain!(
            "todo: no index.html in {}: pass --static-dir",
            static_dir.display()
        );
        return ExitCode::from(2);
    }
    // One database for every worker: a private one (`:memory:`) would be
    // a different list in each.
    if workers > 1 && db::is_private(&args.db) {
        complain!(
            "todo: --db {:?} is private to each process: {workers} workers would each have \
             their own list; use a file, or --workers 1",
            args.db.display().to_string()
        );
        return ExitCode::from(2);
    }
    // Checked here, once, so that a database the workers cannot use stops
    // the start instead of answering 500 to everything.
    if !db::is_private(&args.db) {
        if let Err(e) = db::check(&args.db, Duration::from_millis(args.busy_timeout_ms)) {
            let path = std::path::absolute(&args.db).unwrap_or_else(|_| args.db.clone());
            complain!("todo: cannot use the database {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let settings = Settings {
        db: args.db,
        busy_timeout: Duration::from_millis(args.busy_timeout_ms),
        static_dir,
    };
    let app = app(settings).log_requests().workers(workers);

    let server = match app.bind(args.bind) {
        Ok(s) => s,
        Err(e) => {
            complain!("todo: cannot listen on {}: {e}", args.bind);
            return ExitCode::from(2);
        }
    };
    // Tests and scripts read the bound address from this line.
    say!("listening on http://{}", server.local_addr());
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            complain!("todo: {e}");
            ExitCode::FAILURE
        }
    }
}
