//! The README's first example as a binary (the address and the static
//! directory may be given as arguments), so tests can check what its
//! `main` prints when serving fails: one readable line, from
//! `tine::ServeError`.

use tine::{App, Request, Response};

fn hello(req: &Request) -> Response {
    Response::text(format!("Hello, {}!", req.param("name").unwrap_or("world")))
}

fn main() -> Result<(), tine::ServeError> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let public = args.next().unwrap_or_else(|| "./public".to_string());
    App::new()
        .get("/hello/:name", hello)
        .post("/echo", |req: &Request| Response::bytes(req.body_bytes()))
        .static_dir("/static", public)
        .log_requests()
        .serve(addr)
}
