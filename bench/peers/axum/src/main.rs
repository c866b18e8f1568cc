//! axum 0.8 peer: tokio multi-thread runtime with `--workers N` worker threads.
//! `axum::serve` sets no hyper timer, so idle keep-alive connections never time out.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use bench_common::{Args, HELLO};
use tower_http::services::ServeDir;

async fn plaintext() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain")], "Hello, World!")
}

async fn json() -> impl IntoResponse {
    let body = serde_json::to_vec(&HELLO).expect("serialize");
    ([(CONTENT_TYPE, "application/json")], body)
}

async fn hello(Path(name): Path<String>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain")], format!("Hello, {name}!"))
}

/// `GET /sleep?ms=N`: the same blocking sleep as tine's hello, on the
/// runtime thread polling the handler (tokio's other threads steal the
/// rest of its queue meanwhile).
async fn sleep(RawQuery(query): RawQuery) -> impl IntoResponse {
    match bench_common::sleep_ms(query.as_deref().unwrap_or("")) {
        Some(ms) => {
            bench_common::blocking_sleep(ms);
            (StatusCode::OK, [(CONTENT_TYPE, "text/plain")], "slept")
        }
        None => (
            StatusCode::BAD_REQUEST,
            [(CONTENT_TYPE, "text/plain")],
            "ms must be a number of milliseconds",
        ),
    }
}

async fn ws_echo(ws: WebSocketUpgrade) -> impl IntoResponse {
    ws.on_upgrade(echo)
}

/// Echo text and binary messages; tungstenite answers pings and closes itself.
async fn echo(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        if matches!(msg, Message::Text(_) | Message::Binary(_)) && socket.send(msg).await.is_err() {
            return;
        }
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut app = Router::new()
        .route("/plaintext", get(plaintext))
        .route("/json", get(json))
        .route("/hello/{name}", get(hello))
        .route("/sleep", get(sleep))
        .route("/ws/echo", get(ws_echo));
    if let Some(dir) = &args.static_dir {
        app = app.nest_service("/static", ServeDir::new(dir));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr()).await?;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await
    })
}
