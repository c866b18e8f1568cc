//! Seeing inside a running server: Prometheus metrics for every worker in
//! one scrape ([`App::metrics`](crate::App::metrics)), a status page
//! ([`App::status`](crate::App::status)) and a health check for load
//! balancers ([`App::health`](crate::App::health)).
//!
//! All three read the scoreboard (`server/scoreboard.rs`): the shared
//! memory every worker writes its counters and current request to, and the
//! master its samples (memory, accept queues) and restart counts. So
//! whichever worker a scrape lands on answers for the whole server.
//!
//! # Counters across restarts
//!
//! The `worker` label is the worker *slot* (`0..workers`), not the process:
//! when a slot's worker is replaced (crash, watchdog, recycling, reload),
//! the master adds the old process's counters to the slot's retired totals
//! as it reaps it, and a scrape reports retired totals plus the live
//! processes of the slot (a draining predecessor and its replacement
//! included). A slot's counters therefore never go backwards while the
//! master runs, and Prometheus `rate()` sees no false reset; a restart of
//! the master itself starts them from zero (a real reset, which `rate()`
//! recognises).
//!
//! # Metrics
//!
//! Listed in the docs of [`App::metrics`](crate::App::metrics).
//!
//! # Keeping them private
//!
//! None of these routes exists unless asked for, and `metrics` and
//! `status` take a guard ([`App::metrics_guarded`](crate::App::metrics_guarded),
//! [`App::status_guarded`](crate::App::status_guarded)): a before-hook-style
//! closure that answers the request itself (say, 403 or 404) to refuse it.
//! They show request paths and process ids: keep them off the public
//! internet, with a guard or a separate admin listener.

use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use http::StatusCode;

use crate::http::{Request, Response};
use crate::server::scoreboard::{self, State, View, HANDLER_BUCKETS_MS, METHODS, RESTART_REASONS};

/// A guard on an observability route: `Some(response)` answers instead.
pub(crate) type Guard = Rc<dyn Fn(&Request) -> Option<Response>>;

/// Set (in the master, before the fork) when an admin listener serves the
/// observability routes: the public listeners then answer them 404.
static OFF_PUBLIC: AtomicBool = AtomicBool::new(false);

/// The observability routes move to the admin process.
pub(crate) fn keep_off_public() {
    OFF_PUBLIC.store(true, Relaxed);
}

/// A route on both the app's service and the admin service: the admin
/// process answers it; the app's workers answer it unless an admin
/// listener took it over (then 404, as for any unknown path).
impl crate::App {
    #[track_caller]
    fn observe_route(
        mut self,
        path: &str,
        handler: impl Fn(&Request) -> Response + 'static,
    ) -> Self {
        let handler = Rc::new(handler);
        let h = handler.clone();
        self.admin.add_route(
            Some(http::Method::GET),
            path,
            crate::service::Route::plain(Box::new(move |req| h(req))),
        );
        self.get(path, move |req: &Request| {
            if OFF_PUBLIC.load(Relaxed) {
                Response::error(StatusCode::NOT_FOUND)
            } else {
                handler(req)
            }
        })
    }
}

/// What the scoreboard shows now (an empty view without one: a server
/// whose region could not be mapped, or code not running in a server).
fn view() -> View {
    scoreboard::existing().map(|b| b.view()).unwrap_or_default()
}

/// The text format's content type.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `/metrics` handler.
pub(crate) fn metrics(guard: Option<&Guard>, req: &Request) -> Response {
    if let Some(res) = guard.and_then(|g| g(req)) {
        return res;
    }
    let mut res = Response::text(encode_metrics(&view()));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(PROMETHEUS),
    );
    res
}

/// The `/status` handler.
pub(crate) fn status(guard: Option<&Guard>, req: &Request) -> Response {
    if let Some(res) = guard.and_then(|g| g(req)) {
        return res;
    }
    match req.query_param("format").as_deref() {
        None | Some("html") => Response::html(status_html(&view())),
        Some("json") => Response::json(&status_json(&view()).to_json()),
        Some(other) => Response::text(format!(
            "unknown format {other:?}: use format=html (the default) or format=json\n"
        ))
        .with_status(StatusCode::BAD_REQUEST),
    }
}

/// The health handler: 200 while serving, 503 once a stop was asked for,
/// and 503 while no worker serves (none has finished starting, or every
/// one has been dying at start-up: the admin process answers then).
pub(crate) fn health(_req: &Request) -> Response {
    let Some(board) = scoreboard::existing() else {
        return Response::text("ok\n");
    };
    if board.stopping() {
        Response::text("stopping\n").with_status(StatusCode::SERVICE_UNAVAILABLE)
    } else if !board.any_serving() {
        Response::text("starting\n").with_status(StatusCode::SERVICE_UNAVAILABLE)
    } else {
        Response::text("ok\n")
    }
}

// The metrics are written by hand rather than through a crate such as
// `prometheus-client`: its metric types own their values (atomics in this
// process's memory, registered once), while tine's counters live in the
// scoreboard shared by every process and are summed per slot at scrape
// time. What remains is the text format itself: `# HELP`, `# TYPE` and
// `name{label="value"} number` lines, with label values escaped.

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.text.push_str("\\\\"),
                        '"' => self.text.push_str("\\\""),
                        '\n' => self.text.push_str("\\n"),
                        c => self.text.push(c),
                    }
                }
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// The serving (not draining, newest) live process of each slot.
fn serving(view: &View) -> Vec<Option<&scoreboard::Snapshot>> {
    let mut out: Vec<Option<&scoreboard::Snapshot>> = vec![None; view.slot_totals.len()];
    for (_, s) in &view.entries {
        if s.draining || s.state == State::Free {
            continue;
        }
        if let Some(o) = out.get_mut(s.slot as usize) {
            if o.is_none_or(|x| x.started_ms < s.started_ms) {
                *o = Some(s);
            }
        }
    }
    out
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The Prometheus text format of `view` (see the module docs).
pub(crate) fn encode_metrics(view: &View) -> String {
    let mut o = Out {
        text: String::with_capacity(8 * 1024),
    };
    o.family("tine_build_info", "gauge", "tine's version.");
    o.sample(
        "tine_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    o.family(
        "tine_start_time_seconds",
        "gauge",
        "When the server started, in Unix time.",
    );
    o.sample("tine_start_time_seconds", &[], secs(view.started_unix_ms));
    o.family("tine_stopping", "gauge", "1 once a stop was asked for.");
    o.sample("tine_stopping", &[], u8::from(view.stopping));

    let slots: Vec<String> = (0..view.slot_totals.len()).map(|i| i.to_string()).collect();
    let per_slot = |o: &mut Out, name: &str, kind: &str, help: &str, f: &dyn Fn(usize) -> u64| {
        o.family(name, kind, help);
        for (i, w) in slots.iter().enumerate() {
            o.sample(name, &[("worker", w)], f(i));
        }
    };
    // A slot the master no longer runs (after `SIGTTOU`, or an upgrade to
    // fewer workers) keeps its counters, which never go backwards, but
    // has no gauges once no process of it is left: a `tine_worker_up`
    // of 0 would read as a worker down for good.
    let current = |i: usize| {
        view.workers.is_none_or(|n| i < n) || view.entries.iter().any(|(_, s)| s.slot as usize == i)
    };
    let per_current_slot =
        |o: &mut Out, name: &str, kind: &str, help: &str, f: &dyn Fn(usize) -> u64| {
            o.family(name, kind, help);
            for (i, w) in slots.iter().enumerate().filter(|(i, _)| current(*i)) {
                o.sample(name, &[("worker", w)], f(i));
            }
        };

    o.family(
        "tine_http_requests_total",
        "counter",
        "Requests routed, by method (other methods as OTHER).",
    );
    for (i, w) in slots.iter().enumerate() {
        for (m, name) in METHODS.iter().enumerate() {
            let n = view.slot_totals[i].methods[m];
            o.sample(
                "tine_http_requests_total",
                &[("worker", w), ("method", name)],
                n,
            );
        }
    }
    o.family(
        "tine_http_responses_total",
        "counter",
        "Responses sent, by status class.",
    );
    for (i, w) in slots.iter().enumerate() {
        for (c, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            let n = view.slot_totals[i].status[c];
            o.sample(
                "tine_http_responses_total",
                &[("worker", w), ("class", class)],
                n,
            );
        }
    }
    let name = "tine_http_handler_duration_seconds";
    o.family(name, "histogram", "Handler time.");
    for (i, w) in slots.iter().enumerate() {
        let buckets = view.slot_totals[i].handler;
        let mut cumulative = 0;
        for (b, n) in buckets.iter().enumerate() {
            cumulative += n;
            let le = HANDLER_BUCKETS_MS
                .get(b)
                .map_or("+Inf".to_string(), |&ms| format!("{}", secs(ms)));
            o.sample(
                &format!("{name}_bucket"),
                &[("worker", w), ("le", &le)],
                cumulative,
            );
        }
        o.sample(&format!("{name}_count"), &[("worker", w)], cumulative);
    }
    let t = &view.slot_totals;
    per_slot(
        &mut o,
        "tine_http_received_bytes_total",
        "counter",
        "Bytes read from clients.",
        &|i| t[i].bytes_in,
    );
    per_slot(
        &mut o,
        "tine_http_sent_bytes_total",
        "counter",
        "Bytes written to clients.",
        &|i| t[i].bytes_out,
    );
    let live = |i: usize, f: &dyn Fn(&scoreboard::Snapshot) -> u64| -> u64 {
        view.entries
            .iter()
            .filter(|(_, s)| s.slot as usize == i)
            .map(|(_, s)| f(s))
            .sum()
    };
    per_current_slot(
        &mut o,
        "tine_open_connections",
        "gauge",
        "Open connections.",
        &|i| live(i, &|s| s.connections),
    );
    per_current_slot(
        &mut o,
        "tine_open_websockets",
        "gauge",
        "Open WebSocket connections.",
        &|i| live(i, &|s| s.websockets),
    );
    per_current_slot(
        &mut o,
        "tine_requests_in_flight",
        "gauge",
        "Handlers running now.",
        &|i| live(i, &|s| u64::from(s.state == State::Handler)),
    );
    per_slot(
        &mut o,
        "tine_pubsub_published_total",
        "counter",
        "Messages published by handlers.",
        &|i| t[i].published,
    );
    per_slot(
        &mut o,
        "tine_pubsub_delivered_total",
        "counter",
        "Published messages delivered to subscribers (WebSockets and event streams).",
        &|i| t[i].delivered,
    );
    per_slot(
        &mut o,
        "tine_pubsub_dropped_total",
        "counter",
        "Published messages dropped.",
        &|i| t[i].dropped,
    );
    o.family(
        "tine_worker_restarts_total",
        "counter",
        "Worker replacements, by reason.",
    );
    for (i, w) in slots.iter().enumerate() {
        for (r, reason) in RESTART_REASONS.iter().enumerate() {
            let n = view.restarts.get(i).map_or(0, |c| c[r]);
            o.sample(
                "tine_worker_restarts_total",
                &[("worker", w), ("reason", reason)],
                n,
            );
        }
    }
    let serving = serving(view);
    per_current_slot(
        &mut o,
        "tine_worker_up",
        "gauge",
        "1 while the slot has a serving process.",
        &|i| u64::from(serving[i].is_some()),
    );
    o.family(
        "tine_worker_pid",
        "gauge",
        "The process id of the slot's serving process.",
    );
    for (i, w) in slots.iter().enumerate() {
        if let Some(s) = serving[i] {
            o.sample("tine_worker_pid", &[("worker", w)], s.pid);
        }
    }
    o.family(
        "tine_worker_age_seconds",
        "gauge",
        "How long the slot's serving process has run.",
    );
    for (i, w) in slots.iter().enumerate() {
        if let Some(s) = serving[i] {
            let age = view.now_ms.saturating_sub(s.started_ms);
            o.sample("tine_worker_age_seconds", &[("worker", w)], secs(age));
        }
    }
    if cfg!(target_os = "linux") {
        o.family(
            "tine_worker_private_memory_bytes",
            "gauge",
            "Private memory of the slot's serving process (sampled every second).",
        );
        for (i, w) in slots.iter().enumerate() {
            if let Some(s) = serving[i].filter(|s| s.memory > 0) {
                o.sample(
                    "tine_worker_private_memory_bytes",
                    &[("worker", w)],
                    s.memory,
                );
            }
        }
    }
    if !view.queues.is_empty() {
        o.family(
            "tine_listener_queue_depth",
            "gauge",
            "Connections waiting to be accepted (sampled every second).",
        );
        for (sock, addr, depth, _) in &view.queues {
            let (a, s) = (addr.to_string(), sock.to_string());
            o.sample(
                "tine_listener_queue_depth",
                &[("listener", &a), ("socket", &s)],
                depth,
            );
        }
        o.family(
            "tine_listener_queue_limit",
            "gauge",
            "The accept queue's limit.",
        );
        for (sock, addr, _, max) in &view.queues {
            let (a, s) = (addr.to_string(), sock.to_string());
            o.sample(
                "tine_listener_queue_limit",
                &[("listener", &a), ("socket", &s)],
                max,
            );
        }
    }
    o.text
}

fn state_name(s: &scoreboard::Snapshot) -> &'static str {
    if s.draining {
        return "draining";
    }
    match s.state {
        State::Free => "free",
        State::Starting => "starting",
        State::Idle => "idle",
        State::Busy => "busy",
        State::Handler => "handler",
    }
}

/// One row per live process, for the status page.
struct Row {
    slot: u32,
    pid: u32,
    generation: u32,
    state: &'static str,
    /// The request in the handler, and for how long (seconds).
    request: Option<String>,
    request_seconds: Option<f64>,
    requests: u64,
    connections: u64,
    websockets: u64,
    /// Private memory in bytes (`None`: not measured).
    memory_bytes: Option<u64>,
    age_seconds: f64,
}

struct Status {
    version: &'static str,
    started_unix: f64,
    uptime_seconds: f64,
    stopping: bool,
    requests: u64,
    workers: Vec<Row>,
}

fn status_json(view: &View) -> Status {
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Status {
        version: env!("CARGO_PKG_VERSION"),
        started_unix: secs(view.started_unix_ms),
        uptime_seconds: secs(unix_now.saturating_sub(view.started_unix_ms)),
        stopping: view.stopping,
        requests: view.slot_totals.iter().map(|t| t.requests).sum(),
        workers: view
            .entries
            .iter()
            .map(|(_, s)| {
                let in_handler = s.state == State::Handler && !s.text.is_empty();
                Row {
                    slot: s.slot,
                    pid: s.pid,
                    generation: s.generation,
                    state: state_name(s),
                    request: in_handler.then(|| s.text.clone()),
                    request_seconds: in_handler
                        .then(|| secs(view.now_ms.saturating_sub(s.since_ms))),
                    requests: s.requests,
                    connections: s.connections,
                    websockets: s.websockets,
                    memory_bytes: (s.memory > 0).then_some(s.memory),
                    age_seconds: secs(view.now_ms.saturating_sub(s.started_ms)),
                }
            })
            .collect(),
    }
}

impl Status {
    fn to_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .workers
            .iter()
            .map(|r| {
                serde_json::json!({
                    "slot": r.slot,
                    "pid": r.pid,
                    "generation": r.generation,
                    "state": r.state,
                    "request": r.request,
                    "request_seconds": r.request_seconds,
                    "requests": r.requests,
                    "connections": r.connections,
                    "websockets": r.websockets,
                    "memory_bytes": r.memory_bytes,
                    "age_seconds": r.age_seconds,
                })
            })
            .collect();
        serde_json::json!({
            "version": self.version,
            "started_unix": self.started_unix,
            "uptime_seconds": self.uptime_seconds,
            "stopping": self.stopping,
            "requests": self.requests,
            "workers": rows,
        })
    }
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn status_html(view: &View) -> String {
    let st = status_json(view);
    let mut h = String::with_capacity(4096);
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <title>tine status</title>\n<style>\n\
         body{font-family:system-ui,sans-serif;margin:2em;color:#222}\n\
         table{border-collapse:collapse}\n\
         th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:right}\n\
         th{background:#f4f4f4}\n\
         td.l,th.l{text-align:left}\n\
         .handler{background:#fff6d6}.draining{color:#888}\n\
         </style>\n</head>\n<body>\n",
    );
    let _ = writeln!(h, "<h1>tine {}</h1>", st.version);
    let _ = writeln!(
        h,
        "<p>Up {:.0} s &#183; {} requests served &#183; {} processes{}</p>",
        st.uptime_seconds,
        st.requests,
        st.workers.len(),
        if st.stopping {
            " &#183; <strong>stopping</strong>"
        } else {
            ""
        }
    );
    h.push_str(
        "<table>\n<thead><tr><th>slot</th><th>pid</th><th>gen</th><th class=\"l\">state</th>\
         <th class=\"l\">request</th><th>for (s)</th><th>requests</th><th>conns</th>\
         <th>memory (MiB)</th><th>age (s)</th></tr></thead>\n<tbody>\n",
    );
    for r in &st.workers {
        let _ = writeln!(
            h,
            "<tr class=\"{state}\"><td>{slot}</td><td class=\"pid\">{pid}</td><td>{gen}</td>\
             <td class=\"l\">{state}</td><td class=\"l\">{req}</td><td>{for_s}</td><td>{n}</td>\
             <td>{conns}</td><td>{mem}</td><td>{age:.1}</td></tr>",
            state = r.state,
            slot = r.slot,
            pid = r.pid,
            gen = r.generation,
            req = r.request.as_deref().map(escape_html).unwrap_or_default(),
            for_s = r
                .request_seconds
                .map(|s| format!("{s:.1}"))
                .unwrap_or_default(),
            n = r.requests,
            conns = r.connections,
            mem = r
                .memory_bytes
                .map(|b| format!("{:.1}", b as f64 / (1024.0 * 1024.0)))
                .unwrap_or_else(|| "-".into()),
            age = r.age_seconds,
        );
    }
    h.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    h
}

impl crate::App {
    /// Serves Prometheus metrics for the whole server at `path` (`GET`):
    /// whichever worker answers reads every worker's counters from the
    /// shared scoreboard. Counters are per worker *slot* (the `worker`
    /// label): a replaced worker's counts stay with its slot, so they never
    /// go backwards while the master runs. Off unless called; the page
    /// shows nothing secret but is nobody else's business: keep it off the
    /// public internet with
    /// [`metrics_guarded`](crate::App::metrics_guarded) or a separate
    /// listener.
    ///
    /// | name | type | labels | meaning |
    /// |---|---|---|---|
    /// | `tine_build_info` | gauge | `version` | always 1 |
    /// | `tine_start_time_seconds` | gauge | | when the server (its master) started, Unix time |
    /// | `tine_stopping` | gauge | | 1 once a stop was asked for (`SIGTERM`) |
    /// | `tine_http_requests_total` | counter | `worker`, `method` | requests routed (that reached hooks and handlers), by method (`GET`, `POST`, `PUT`, `DELETE`, `HEAD`, `OPTIONS`, `PATCH`, `CONNECT`, `TRACE`, any other as `OTHER`) |
    /// | `tine_http_responses_total` | counter | `worker`, `class` | responses sent (handlers' and tine's own refusals), by status class `1xx`..`5xx` |
    /// | `tine_http_handler_duration_seconds` | histogram | `worker` | handler time (buckets of 1 ms to 10 s; no `_sum`: the scoreboard keeps buckets only) |
    /// | `tine_http_received_bytes_total`, `tine_http_sent_bytes_total` | counter | `worker` | bytes read from and written to clients |
    /// | `tine_open_connections`, `tine_open_websockets` | gauge | `worker` | now |
    /// | `tine_requests_in_flight` | gauge | `worker` | handlers running now (a worker runs one at a time; the scrape itself counts) |
    /// | `tine_pubsub_published_total`, `tine_pubsub_delivered_total`, `tine_pubsub_dropped_total` | counter | `worker` | messages published by handlers, deliveries to subscribers (WebSockets and event streams), published messages dropped |
    /// | `tine_worker_restarts_total` | counter | `worker`, `reason` | replacements by reason: `crash`, `timeout` (watchdog), `recycled`, `reload`, `upgrade` |
    /// | `tine_worker_up` | gauge | `worker` | 1 while the slot has a serving (not draining) process |
    /// | `tine_worker_pid`, `tine_worker_age_seconds` | gauge | `worker` | the slot's serving process |
    /// | `tine_worker_private_memory_bytes` | gauge | `worker` | its private memory, sampled by the master every second (Linux only: absent elsewhere) |
    /// | `tine_listener_queue_depth`, `tine_listener_queue_limit` | gauge | `listener` (address), `socket` | connections waiting to be accepted on each listening socket, and the queue's limit, sampled by the master every second from `TCP_INFO` (Linux only: absent elsewhere) |
    ///
    /// ```
    /// let app = tine::App::new().workers(4).metrics("/metrics");
    /// ```
    #[track_caller]
    pub fn metrics(self, path: &str) -> Self {
        self.observe_route(path, |req: &Request| metrics(None, req))
    }

    /// Like [`metrics`](crate::App::metrics), with a guard that runs first
    /// and answers instead when it returns `Some` (a before-hook for this
    /// route only).
    ///
    /// ```
    /// use tine::{Request, Response, StatusCode};
    /// let app = tine::App::new().metrics_guarded("/metrics", |req: &Request| {
    ///     (!req.peer_addr().ip().is_loopback()).then(|| Response::empty(StatusCode::FORBIDDEN))
    /// });
    /// ```
    #[track_caller]
    pub fn metrics_guarded<G>(self, path: &str, guard: G) -> Self
    where
        G: Fn(&Request) -> Option<Response> + 'static,
    {
        let guard: Guard = Rc::new(guard);
        self.observe_route(path, move |req: &Request| metrics(Some(&guard), req))
    }

    /// Serves a status page at `path` (`GET`), like Apache's `mod_status`:
    /// an HTML table (no JavaScript) with a row per worker process (slot,
    /// pid, state, the request in its handler and for how long, requests
    /// served, open connections, memory, age), or JSON with
    /// `?format=json`; another format is a 400 naming the two. It shows
    /// request paths and pids: keep it private
    /// ([`status_guarded`](crate::App::status_guarded)).
    ///
    /// ```
    /// let app = tine::App::new().status("/status");
    /// ```
    #[track_caller]
    pub fn status(self, path: &str) -> Self {
        self.observe_route(path, |req: &Request| status(None, req))
    }

    /// Like [`status`](crate::App::status), with a guard (see
    /// [`metrics_guarded`](crate::App::metrics_guarded)).
    ///
    /// ```
    /// use tine::{Request, Response, StatusCode};
    /// let app = tine::App::new().status_guarded("/status", |req: &Request| {
    ///     (req.header("x-admin-token") != Some("s3cret")).then(|| Response::empty(StatusCode::NOT_FOUND))
    /// });
    /// ```
    #[track_caller]
    pub fn status_guarded<G>(self, path: &str, guard: G) -> Self
    where
        G: Fn(&Request) -> Option<Response> + 'static,
    {
        let guard: Guard = Rc::new(guard);
        self.observe_route(path, move |req: &Request| status(Some(&guard), req))
    }

    /// Serves a health check for load balancers at `path` (`GET`): `200 ok`
    /// while the server serves, rolling restarts, recycling and replaced
    /// workers included (they never leave an address without a worker),
    /// `503 starting` while no worker serves yet (answered by the
    /// [admin process](crate::App::admin_bind): the workers still start,
    /// or keep dying as they start), and `503 stopping` from the moment the master gets `SIGTERM`
    /// (or `SIGINT`). The workers then keep serving and accepting for the
    /// [`shutdown_delay`](crate::App::shutdown_delay) (default 5 s with a
    /// health route), so the load balancer sees the 503 and stops sending
    /// before connections would be refused; then they drain as usual.
    ///
    /// ```
    /// let app = tine::App::new().workers(2).health("/healthz");
    /// ```
    #[track_caller]
    pub fn health(mut self, path: &str) -> Self {
        self.config.health = true;
        self.observe_route(path, health)
    }

    /// How long a graceful stop (`SIGTERM`, `SIGINT`) keeps the workers
    /// serving before they stop accepting and drain; health checks answer
    /// 503 meanwhile ([`health`](crate::App::health)). It plays the part
    /// of Kubernetes' pre-stop sleep: set it a little above the load
    /// balancer's check interval times its failure threshold. Default: 5 s
    /// with a health route, zero without. A second `SIGTERM` during the
    /// delay starts the drain at once; `SIGQUIT` stops at once. Applies to
    /// servers with workers > 1 (the master keeps the time); a single
    /// process drains at once.
    ///
    /// ```
    /// let app = tine::App::new()
    ///     .health("/healthz")
    ///     .shutdown_delay(std::time::Duration::from_secs(10));
    /// ```
    pub fn shutdown_delay(mut self, delay: std::time::Duration) -> Self {
        self.config.shutdown_delay = Some(delay);
        self
    }

    /// Serves the metrics, status and health routes on `addr` from an
    /// admin process that never runs a user handler (nor the worker-start
    /// hooks), and no longer on the public listeners (there they answer
    /// 404). A scrape or health check then gets an answer even while every
    /// worker is stuck in a handler, and the routes are easy to keep off
    /// the public internet (bind a private or loopback address).
    ///
    /// The master forks the admin process after the first workers, forks
    /// it again if it exits (100 ms, doubling to 5 s while it keeps
    /// dying), and kills it when it exits itself. It is not a worker: no
    /// slot, no scoreboard entry, no part in restarts or scaling. It needs
    /// workers > 1 (binding fails otherwise: a single process has no
    /// master to run it). [`Server::admin_addr`](crate::Server::admin_addr)
    /// reads the bound address back (port 0 picks one).
    ///
    /// ```no_run
    /// tine::App::new()
    ///     .workers(4)
    ///     .metrics("/metrics")
    ///     .status("/status")
    ///     .health("/healthz")
    ///     .admin_bind("127.0.0.1:9090".parse().unwrap())
    ///     .serve("0.0.0.0:8080")
    ///     .unwrap();
    /// ```
    pub fn admin_bind(mut self, addr: std::net::SocketAddr) -> Self {
        self.config.admin_addr = Some(addr);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::scoreboard::Board;
    use std::time::Instant;

    fn served_board() -> Board {
        let b = Board::create().unwrap();
        for slot in 0..2 {
            let i = b.claim(slot).unwrap();
            let e = b.entry(i);
            e.attach(100 + slot as u32, Instant::now());
            e.begin(&http::Method::GET, "/a");
            e.count_response(200);
            e.end_fast(1);
        }
        b
    }

    #[test]
    fn metrics_sum_per_slot_and_survive_a_restart() {
        let b = served_board();
        // Slot 1's worker exits and is replaced: its count stays.
        let old = (0..scoreboard::MAX_ENTRIES)
            .find(|&i| b.entry(i).snapshot().slot == 1 && b.entry(i).snapshot().pid == 101)
            .unwrap();
        b.free(old);
        let i = b.claim(1).unwrap();
        b.entry(i).attach(201, Instant::now());
        b.entry(i)
            .begin(&http::Method::from_bytes(b"BREW").unwrap(), "/");
        b.entry(i).count_response(404);
        b.set_restarts(1, 0, 1);
        let text = encode_metrics(&b.view());
        assert!(
            text.contains("tine_http_requests_total{worker=\"1\",method=\"GET\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("tine_http_requests_total{worker=\"1\",method=\"OTHER\"} 1\n"));
        assert!(text.contains("tine_http_responses_total{worker=\"1\",class=\"2xx\"} 1\n"));
        assert!(text.contains("tine_http_responses_total{worker=\"1\",class=\"4xx\"} 1\n"));
        assert!(text.contains("tine_worker_restarts_total{worker=\"1\",reason=\"crash\"} 1\n"));
        assert!(text.contains("tine_worker_pid{worker=\"1\"} 201\n"));
        assert!(text
            .contains("tine_http_handler_duration_seconds_bucket{worker=\"0\",le=\"0.001\"} 1\n"));
    }

    /// A slot removed by a scale-down keeps its counters but loses its
    /// gauges once its process is gone; a slot still run whose worker is
    /// down (crashed, not replaced yet) shows `tine_worker_up 0`.
    #[test]
    fn a_removed_slot_keeps_its_counters_and_loses_its_gauges() {
        let b = served_board();
        b.set_workers(2);
        let text = encode_metrics(&b.view());
        assert!(text.contains("tine_worker_up{worker=\"1\"} 1\n"), "{text}");
        // `SIGTTOU`: slot 1 drains, then its worker exits.
        b.set_workers(1);
        let slot1 = (0..scoreboard::MAX_ENTRIES)
            .find(|&i| b.entry(i).snapshot().slot == 1 && b.entry(i).snapshot().pid == 101)
            .unwrap();
        let text = encode_metrics(&b.view());
        assert!(
            text.contains("tine_open_connections{worker=\"1\"}"),
            "draining: {text}"
        );
        b.free(slot1);
        let text = encode_metrics(&b.view());
        assert!(
            text.contains("tine_http_requests_total{worker=\"1\",method=\"GET\"} 1\n"),
            "{text}"
        );
        for gauge in [
            "tine_worker_up",
            "tine_open_connections",
            "tine_open_websockets",
        ] {
            assert!(
                !text.contains(&format!("{gauge}{{worker=\"1\"}}")),
                "{gauge}: {text}"
            );
        }
        assert!(text.contains("tine_worker_up{worker=\"0\"} 1\n"));
        // Slot 0's worker crashes: still a slot, and down.
        let slot0 = (0..scoreboard::MAX_ENTRIES)
            .find(|&i| b.entry(i).snapshot().slot == 0 && b.entry(i).snapshot().pid == 100)
            .unwrap();
        b.free(slot0);
        let text = encode_metrics(&b.view());
        assert!(text.contains("tine_worker_up{worker=\"0\"} 0\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut o = Out {
            text: String::new(),
        };
        o.sample("x", &[("a", "q\"b\\n\nl")], 1);
        assert_eq!(o.text, "x{a=\"q\\\"b\\\\n\\nl\"} 1\n");
    }

    #[test]
    fn status_page_escapes_the_request() {
        let b = Board::create().unwrap();
        let i = b.claim(0).unwrap();
        b.entry(i).attach(7, Instant::now());
        b.entry(i).begin(&http::Method::GET, "/<script>?a=\"1\"&b");
        let html = status_html(&b.view());
        assert!(
            html.contains("GET /&lt;script&gt;?a=&quot;1&quot;&amp;b"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        let json = status_json(&b.view()).to_json();
        assert_eq!(json["workers"][0]["pid"], 7);
        assert_eq!(json["workers"][0]["state"], "handler");
    }
}
