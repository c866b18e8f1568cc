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
    .client_request_timeout(Duration::from_secs(KEEP_ALIVE_SECS));
    let server = match (&args.tls_cert, &args.tls_key) {
        #[cfg(feature = "tls")]
        (Some(cert), Some(key)) => server.bind_rustls_0_23(args.addr(), tls_config(cert, key))?,
        #[cfg(not(feature = "tls"))]
        (Some(_), Some(_)) => panic!("built without the tls feature"),
        _ => server.bind(args.addr())?,
    };
    actix_web::rt::System::new().block_on(server.run())
}

/// rustls with ring, TLS 1.2 and 1.3, ALPN http/1.1, session tickets
/// (rustls' own rotating ticketer, per process: actix runs one process).
#[cfg(feature = "tls")]
fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new().expect("ticketer");
    config
}
