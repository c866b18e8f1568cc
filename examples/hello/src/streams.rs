//! hello's web-stream routes: a large JSON body (for compression checks)
//! and a server-sent events stream fed by publish/subscribe.
//!
//! ```text
//! GET /big?kb=N        about N KiB of JSON (buffered; max 65,536)
//! GET /sse/:topic      an event stream subscribed to the topic: first an
//!                      event `hello` with "pid N" (the worker holding it),
//!                      after a reconnect an event `resume` whose data is the
//!                      Last-Event-ID; then everything published to the topic
//!                      (?heartbeat_ms=N: heartbeat comments every N ms)
//! ```

use std::time::Duration;

use tine::{App, Request, Response, Sse, SseEvent};

/// Adds the routes to `app`.
pub(crate) fn routes(app: App) -> App {
    app.get("/big", big).sse("/sse/:topic", sse)
}

#[derive(serde::Serialize)]
struct Item {
    id: usize,
    text: String,
    done: bool,
}

/// About `kb` KiB of JSON: an array of small objects, as an API listing
/// would answer.
fn big(req: &Request) -> Result<Response, tine::Error> {
    let kb: usize = req
        .query_param("kb")
        .unwrap_or("64".into())
        .parse()
        .map_err(|_| tine::Error::bad_request("kb must be a number of KiB"))?;
    if kb > 65_536 {
        return Err(tine::Error::bad_request("kb is at most 65536 (64 MiB)"));
    }
    let target = kb * 1024;
    let mut items = Vec::new();
    // Items of about 70 bytes until the next would pass the target.
    let mut size = 2;
    while size + 80 <= target {
        let id = items.len();
        let text = format!("item number {id:08} of the big list");
        let done = id % 3 == 0;
        // {"id":N,"text":"...","done":B}, plus the comma.
        size += 6 + itoa_len(id) + 9 + text.len() + 9 + if done { 4 } else { 5 } + 2;
        items.push(Item { id, text, done });
    }
    Ok(Response::json(&items))
}

fn itoa_len(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

fn sse(req: &Request, sse: &mut Sse) {
    sse.subscribe(req.param("topic").unwrap_or(""));
    if let Some(ms) = req.query_param("heartbeat_ms").and_then(|v| v.parse().ok()) {
        sse.heartbeat(Duration::from_millis(ms));
    }
    sse.retry(Duration::from_millis(500));
    match sse.last_event_id().map(str::to_string) {
        Some(last) => sse.send(SseEvent::new(last).event("resume")),
        None => sse.send(SseEvent::new(format!("pid {}", tine::worker().pid)).event("hello")),
    }
}
