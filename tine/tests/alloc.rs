//! tine allocates nothing per request on its hot path: a counting global
//! allocator watches the server's thread while real requests go through
//! the real connection code over 127.0.0.1 (keep-alive, one at a time, and
//! pipelined 16 per write), after a warm-up. The only allocations left are
//! the handler's own (`format!`, serialising JSON), counted the same way by
//! running the same code on the test's thread.
//!
//! This counts; it does not time. It is its own test binary because a
//! global allocator is per binary.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use support::{serve, Client};
use tine::{App, Request, Response};

/// Counts allocations (`alloc`, `alloc_zeroed`, `realloc`) made on threads
/// that asked to be counted.
struct Counting;

static COUNTED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    if COUNT_HERE.try_with(Cell::get).unwrap_or(false) {
        COUNTED.fetch_add(1, Ordering::Relaxed);
    }
}

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to the system allocator; the
// wrapper only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(serde::Serialize)]
struct Message {
    message: &'static str,
}

const NAME: &str = "world";

/// What the `/hello/:name` handler allocates by itself.
fn hello_text(name: &str) -> String {
    format!("Hello, {name}!")
}

/// What the `/json` handler allocates by itself (`Response::json`
/// serialises with `serde_json::to_vec`).
fn json_body() -> Vec<u8> {
    serde_json::to_vec(&Message {
        message: "Hello, World!",
    })
    .unwrap()
}

/// Allocations `f` makes on this thread.
fn allocations_of<T>(f: impl FnOnce() -> T) -> u64 {
    let before = COUNTED.load(Ordering::SeqCst);
    COUNT_HERE.with(|c| c.set(true));
    let out = f();
    COUNT_HERE.with(|c| c.set(false));
    let n = COUNTED.load(Ordering::SeqCst) - before;
    drop(out);
    n
}

/// The reference example's hot routes, served on a thread whose
/// allocations are counted.
fn app() -> App {
    COUNT_HERE.with(|c| c.set(true));
    App::new()
        .get("/plaintext", |_: &Request| Response::text("Hello, World!"))
        .get("/json", |_: &Request| {
            Response::json(&Message {
                message: "Hello, World!",
            })
        })
        .get("/hello/:name", |req: &Request| {
            Response::text(hello_text(req.param("name").unwrap_or("")))
        })
        // Another WebSocket route makes every request go through the
        // upgrade check, as in the reference example.
        .ws("/ws", |_, _| {})
}

/// Allocations on the server thread while `n` requests for `path` are
/// answered on `client`, `depth` per write (1: one at a time).
fn server_allocations(client: &mut Client, path: &str, n: usize, depth: usize) -> u64 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nUser-Agent: alloc-test\r\n\r\n");
    let batch = request.repeat(depth);
    let before = COUNTED.load(Ordering::SeqCst);
    for _ in 0..n / depth {
        client.send(batch.as_bytes());
        for _ in 0..depth {
            let r = client.read_response();
            assert_eq!(r.status, 200, "{path}");
        }
    }
    COUNTED.load(Ordering::SeqCst) - before
}

#[test]
fn the_hot_path_allocates_nothing_per_request() {
    // The test thread counts only while measuring a handler's own work,
    // before the server thread starts: the count is shared, and the
    // server's start-up would land in it.
    let hello_path = format!("/hello/{NAME}");
    let own = [
        ("/plaintext", 0),
        ("/json", allocations_of(json_body)),
        (hello_path.as_str(), allocations_of(|| hello_text(NAME))),
    ];
    assert_eq!(own[1].1, 1, "serde_json::to_vec allocates its buffer once");
    assert_eq!(own[2].1, 1, "format! allocates its string once");
    let addr = serve(app);

    const N: usize = 512;
    for depth in [1, 16] {
        let mut client = Client::connect(addr);
        // Warm-up: the loop's buffers, the connection's slot, the router,
        // the date, whatever grows once.
        for (path, _) in own {
            server_allocations(&mut client, path, 64, depth);
        }
        for (path, handler) in own {
            let counted = server_allocations(&mut client, path, N, depth);
            assert_eq!(
                counted,
                handler * N as u64,
                "{path}, {depth} per write: {counted} allocations for {N} requests, \
                 the handler's own are {handler} each"
            );
        }
    }
}
