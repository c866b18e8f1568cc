//! Built-in middleware: CORS. (Request logging is
//! [`App::log_requests`](crate::App::log_requests).)

mod cors;

pub use cors::Cors;
