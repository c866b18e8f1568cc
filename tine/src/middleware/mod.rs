//! Built-in middleware: CORS and response compression. (Request logging
//! is [`App::log_requests`](crate::App::log_requests).)

mod compression;
mod cors;

pub use compression::Compression;
pub use cors::Cors;
