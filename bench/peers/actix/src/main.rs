//! actix-web 4 peer: `--workers N` worker threads, each with its own event loop.

use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bench_common::{Args, HELLO, KEEP_ALIVE_SECS};

async fn plaintext() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain")
        .body("Hello, World!")
}

async fn json() -> HttpResponse {
    let body = serde_json::to_vec(&HELLO).expect("serialize");
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

async fn hello(name: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain")
        .body(format!("Hello, {name}!"))
}

/// `GET /sleep?ms=N`: the same blocking sleep as tine's hello, on the
/// worker thread (it serves nobody else meanwhile).
async fn sleep(req: HttpRequest) -> HttpResponse {
    match bench_common::sleep_ms(req.query_string()) {
        Some(ms) => {
            bench_common::blocking_sleep(ms);
            HttpResponse::Ok().content_type("text/plain").body("slept")
        }
        None => HttpResponse::BadRequest().body("ms must be a number of milliseconds"),
    }
}

/// Echo text and binary messages back; answer pings; close when the client closes.
async fn ws_echo(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (response, mut session, mut stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(async move {
        while let Some(Ok(msg)) = stream.recv().await {
            let sent = match msg {
                actix_ws::Message::Text(text) => session.text(text).await,
                actix_ws::Message::Binary(bin) => session.binary(bin).await,
                actix_ws::Message::Ping(ping) => session.pong(&ping).await,
                actix_ws::Message::Close(reason) => {
                    let _ = session.close(reason).await;
                    return;
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let static_dir = args.static_dir.clone();
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .route("/plaintext", web::get().to(plaintext))
            .route("/json", web::get().to(json))
            .route("/hello/{name}", web::get().to(hello))
            .route("/sleep", web::get().to(sleep))
            .route("/ws/echo", web::get().to(ws_echo));
        if let Some(dir) = &static_dir {
            app = app.service(actix_files::Files::new("/static", dir));
        }
        app
    })
    .workers(args.workers)
    .tcp_nodelay(true)
    .keep_alive(Duration::from_secs(KEEP_ALIVE_SECS))
    .client_request_timeout(Duration::from_secs(KEEP_ALIVE_SECS))
    .bind(args.addr())?;
    actix_web::rt::System::new().block_on(server.run())
}
