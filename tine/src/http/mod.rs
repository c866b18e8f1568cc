//! The HTTP/1.1 wire format and the request/response types. Nothing in
//! here touches a socket: parsing and encoding work on buffers.

pub(crate) mod body;
pub(crate) mod cookies;
pub(crate) mod date;
pub(crate) mod encode;
pub(crate) mod parse;
mod request;
mod response;

#[cfg(test)]
pub(crate) use request::HeadBytes;
pub(crate) use request::{read_file_at, read_memory_at, Capture, Captures};
pub use request::{BodyReader, Extensions, HeaderValues, Params, Request, RequestBuilder};
pub(crate) use response::{add_header, fill_stream, Body, Chunks, FileBody, Fill};
pub use response::{IntoResponse, Response};
