//! `multipart/form-data` request bodies (RFC 7578): text fields and files,
//! with limits on the number of parts and the size of each.
//!
//! The parsing is `multer`'s (the parser axum and warp use, kept up to
//! date, fuzzed, streaming: it never needs the whole body in memory),
//! except each part's `Content-Disposition`, read by its grammar in
//! `disposition.rs` (multer searches its text). It
//! is written for async streams; here it is fed the body, from memory or
//! from the temporary file a large body was spilled to, as a stream that
//! is always ready, and polled to completion on the spot (a tiny executor
//! with a no-op waker: nothing ever waits). The older synchronous
//! `multipart` crate is unmaintained, and `mime-multipart`/`formdata`
//! are hyper-0.x-era and unmaintained too.

mod disposition;

use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::StatusCode;

use crate::error::Error;
use crate::http::Request;
use crate::http::{read_file_at, read_memory_at};

/// Limits for [`Request::multipart_with`]. Over one of them the answer is
/// `413` naming it; a malformed body is a `400` saying what is wrong.
/// (The whole body is already bounded by the route's `max_body`.)
///
/// The form is parsed once the whole body has arrived (handlers run on
/// whole requests), so these limits are checked then: a file over
/// `max_file` has been uploaded by the time it is refused. To refuse large
/// uploads before they are sent, give their route a group with a
/// [`max_body`](crate::Group::max_body) (decided on the head, answered
/// before `100 Continue`).
///
/// ```
/// let limits = tine::MultipartLimits::default()
///     .max_parts(20)
///     .max_field(16 * 1024)
///     .max_file(50 << 20)
///     .file_memory(128 * 1024);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MultipartLimits {
    max_parts: usize,
    max_field: usize,
    max_file: u64,
    file_memory: usize,
}

impl Default for MultipartLimits {
    fn default() -> Self {
        MultipartLimits {
            max_parts: 100,
            max_field: 64 * 1024,
            max_file: u64::MAX,
            file_memory: 256 * 1024,
        }
    }
}

impl MultipartLimits {
    /// Most parts (fields and files together). Default 100.
    #[must_use]
    pub fn max_parts(mut self, n: usize) -> Self {
        self.max_parts = n;
        self
    }

    /// Largest text field (a part without a file name), in bytes.
    /// Default 64 KiB.
    #[must_use]
    pub fn max_field(mut self, bytes: usize) -> Self {
        self.max_field = bytes;
        self
    }

    /// Largest file part, in bytes. Default: no limit of its own (the
    /// route's `max_body` bounds it).
    #[must_use]
    pub fn max_file(mut self, bytes: u64) -> Self {
        self.max_file = bytes;
        self
    }

    /// Files up to this size are kept in memory; larger ones are written
    /// to an anonymous temporary file as they are parsed. Default 256 KiB.
    #[must_use]
    pub fn file_memory(mut self, bytes: usize) -> Self {
        self.file_memory = bytes;
        self
    }
}

/// A parsed `multipart/form-data` body: its parts in order. See
/// [`Request::multipart`].
#[derive(Debug)]
pub struct Multipart {
    parts: Vec<Part>,
}

impl Multipart {
    /// Every part, in the order sent.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The text fields (parts without a file name), as `(name, value)`.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.parts
            .iter()
            .filter_map(|p| Some((p.name(), p.text()?)))
    }

    /// The first text field called `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The file parts (those with a file name).
    pub fn files(&self) -> impl Iterator<Item = &Part> {
        self.parts.iter().filter(|p| p.file_name.is_some())
    }
}

/// One part of a multipart body: a text field, or a file kept in memory
/// or in a temporary file (deleted when the part is dropped).
#[derive(Debug)]
pub struct Part {
    name: String,
    file_name: Option<String>,
    content_type: Option<String>,
    data: Data,
}

#[derive(Debug)]
enum Data {
    Text(String),
    Memory(Bytes),
    File(std::fs::File, u64),
}

impl Part {
    /// The field name (`name=` of its `Content-Disposition`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file name the client sent, for a file part, as it sent it: it
    /// may hold `../`, an absolute path, a Windows path or any character a
    /// file name can. Never use it as a path to write to; take its last
    /// component and check it, or better, store the file under a name of
    /// your own and keep this one as data.
    pub fn file_name(&self) -> Option<&str> {
        self.file_name.as_deref()
    }

    /// The part's `Content-Type`, if it had one.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The value of a text field (`None` for a file).
    pub fn text(&self) -> Option<&str> {
        match &self.data {
            Data::Text(t) => Some(t),
            _ => None,
        }
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        match &self.data {
            Data::Text(t) => t.len() as u64,
            Data::Memory(b) => b.len() as u64,
            Data::File(_, len) => *len,
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it was written to a temporary file (see
    /// [`MultipartLimits::file_memory`]).
    pub fn is_spilled(&self) -> bool {
        matches!(self.data, Data::File(..))
    }

    /// Reads its content from the start, wherever it is kept.
    pub fn reader(&self) -> PartReader<'_> {
        PartReader { part: self, pos: 0 }
    }
}

/// Reads a [`Part`]'s content: see [`Part::reader`].
#[derive(Debug)]
pub struct PartReader<'a> {
    part: &'a Part,
    pos: u64,
}

impl Read for PartReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &self.part.data {
            Data::Text(t) => read_memory_at(t.as_bytes(), self.pos, buf),
            Data::Memory(b) => read_memory_at(b, self.pos, buf),
            Data::File(file, len) => read_file_at(file, *len, self.pos, buf)?,
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// Bytes of the body handed to the parser at a time.
const CHUNK: usize = 64 * 1024;

/// Parses the body of `req` (see [`Request::multipart_with`]).
pub(crate) fn parse(req: &Request, limits: &MultipartLimits) -> Result<Multipart, Error> {
    let content_type = req.header(http::header::CONTENT_TYPE).unwrap_or("");
    let is_form = content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"));
    if !is_form {
        return Err(Error::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: multipart/form-data",
        ));
    }
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| Error::bad_request(format!("multipart: {e}")))?;
    let mut reader = req.body_reader();
    let in_memory = !req.body_is_spilled();
    // Not `body_bytes` for a spilled body: that reads it all into memory.
    let mut whole = in_memory.then(|| req.body_bytes());
    let chunks = std::iter::from_fn(move || {
        if in_memory {
            // A body in memory goes to the parser as it is, uncopied.
            return whole.take().filter(|b| !b.is_empty()).map(Ok);
        }
        let mut buf = vec![0u8; CHUNK];
        match reader.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some(Ok(Bytes::from(buf)))
            }
            Err(e) => Some(Err::<Bytes, io::Error>(e)),
        }
    });
    let stream = OneAtATime {
        chunks,
        handed: true,
    };
    let mut multipart = multer::Multipart::new(stream, boundary);
    // Every other poll hands the parser a chunk: bounded by the body.
    let polls = 2 * (req.body_len() / CHUNK as u64 + 1) + 1024;
    run(polls, async move {
        let mut parts = Vec::new();
        while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
            if parts.len() == limits.max_parts {
                return Err(too_large(format!(
                    "multipart: more than {} parts (max_parts)",
                    limits.max_parts
                )));
            }
            // Not `field.name()` and `field.file_name()`: see disposition.rs.
            let part = parts.len() + 1;
            // (multer keeps one `Content-Disposition` per part: the last.)
            let named = match field.headers().get(http::header::CONTENT_DISPOSITION) {
                None => disposition::Disposition::default(),
                Some(value) => disposition::parse(value.as_bytes()).map_err(|why| {
                    Error::bad_request(format!(
                        "multipart: part {part}: malformed Content-Disposition: {why}"
                    ))
                })?,
            };
            let name = named.name.unwrap_or_default();
            let file_name = named.file_name;
            let content_type = field.content_type().map(|m| m.to_string());
            let data = match &file_name {
                None => {
                    let mut text = Vec::new();
                    while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                        if text.len() + chunk.len() > limits.max_field {
                            return Err(too_large(format!(
                                "multipart: field {name:?} is larger than {} bytes (max_field)",
                                limits.max_field
                            )));
                        }
                        text.extend_from_slice(&chunk);
                    }
                    let text = String::from_utf8(text).map_err(|_| {
                        Error::bad_request(format!("multipart: field {name:?} is not UTF-8"))
                    })?;
                    Data::Text(text)
                }
                Some(_) => {
                    let mut memory = Vec::new();
                    let mut file: Option<std::fs::File> = None;
                    let mut len = 0u64;
                    while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                        len += chunk.len() as u64;
                        if len > limits.max_file {
                            return Err(too_large(format!(
                                "multipart: file {name:?} is larger than {} bytes (max_file)",
                                limits.max_file
                            )));
                        }
                        if file.is_none() && memory.len() + chunk.len() > limits.file_memory {
                            let mut f = tempfile::tempfile().map_err(storage)?;
                            f.write_all(&memory).map_err(storage)?;
                            memory = Vec::new();
                            file = Some(f);
                        }
                        match &mut file {
                            Some(f) => f.write_all(&chunk).map_err(storage)?,
                            None => memory.extend_from_slice(&chunk),
                        }
                    }
                    match file {
                        Some(f) => Data::File(f, len),
                        None => Data::Memory(Bytes::from(memory)),
                    }
                }
            };
            parts.push(Part {
                name,
                file_name,
                content_type,
                data,
            });
        }
        Ok(Multipart { parts })
    })
}

fn malformed(e: multer::Error) -> Error {
    Error::bad_request(format!("multipart: {e}"))
}

fn too_large(message: String) -> Error {
    Error::new(StatusCode::PAYLOAD_TOO_LARGE, message)
}

/// The body could not be read back, or a file part not stored.
#[cold]
fn storage(e: io::Error) -> Error {
    log::error!("multipart: cannot store or read a part: {e}");
    Error::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "multipart: cannot store the upload",
    )
}

/// The body as a stream that says `Pending` (and is ready again at once)
/// after each chunk. `multer` pulls from a stream until it is pending, so
/// a stream that is always ready would have it buffer the whole body in
/// memory before handing out the first part; this way it holds about one
/// chunk at a time, and the file parts go to disk as they are parsed.
struct OneAtATime<I> {
    chunks: I,
    /// A chunk was handed out since the last `Pending`.
    handed: bool,
}

impl<I: Iterator<Item = io::Result<Bytes>> + Unpin> futures_util::Stream for OneAtATime<I> {
    type Item = io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        if self.handed {
            self.handed = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.handed = true;
        Poll::Ready(self.chunks.next())
    }
}

/// Polls `future` to completion on the spot: its only source is a stream
/// that is never really waited on, so polling again at once always makes
/// progress. More than `polls` polls would be a bug, answered `500`
/// rather than spun on.
fn run<T>(polls: u64, future: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
    log::error!("multipart: the parser made no progress on a body that is all there");
    Err(Error::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "multipart: internal error",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn request(body: &str) -> Request {
        Request::builder(Method::POST, "/")
            .header("content-type", "multipart/form-data; boundary=XX")
            .body(body.replace('\n', "\r\n"))
            .finish()
    }

    const FORM: &str = "--XX
Content-Disposition: form-data; name=\"title\"

hello
--XX
Content-Disposition: form-data; name=\"doc\"; filename=\"a.txt\"
Content-Type: text/plain

0123456789
--XX--
";

    #[test]
    fn fields_and_files() {
        let m = request(FORM).multipart().unwrap();
        assert_eq!(m.field("title"), Some("hello"));
        let files: Vec<_> = m.files().collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].file_name(), Some("a.txt"));
        assert_eq!(files[0].content_type(), Some("text/plain"));
        assert_eq!(files[0].len(), 10);
        let mut s = String::new();
        files[0].reader().read_to_string(&mut s).unwrap();
        assert_eq!(s, "0123456789");
        assert!(!files[0].is_spilled());
        // Spilled past file_memory, read back the same.
        let m = request(FORM)
            .multipart_with(&MultipartLimits::default().file_memory(4))
            .unwrap();
        let file = m.files().next().unwrap();
        assert!(file.is_spilled());
        let mut s = String::new();
        file.reader().read_to_string(&mut s).unwrap();
        assert_eq!(s, "0123456789");
    }

    #[test]
    fn limits_name_themselves() {
        let req = request(FORM);
        let e = req
            .multipart_with(&MultipartLimits::default().max_parts(1))
            .unwrap_err();
        assert_eq!(e.status(), 413);
        assert!(e.message().contains("max_parts"), "{}", e.message());
        let e = req
            .multipart_with(&MultipartLimits::default().max_field(4))
            .unwrap_err();
        assert_eq!(e.status(), 413);
        assert!(e.message().contains("\"title\"") && e.message().contains("max_field"));
        let e = req
            .multipart_with(&MultipartLimits::default().max_file(9))
            .unwrap_err();
        assert!(e.message().contains("max_file"), "{}", e.message());
    }

    #[test]
    fn names_are_read_by_the_headers_grammar() {
        let form = "--XX
Content-Disposition: form-data; filename=\"a;name=evil\"; name=\"real\"

x
--XX
Content-Disposition: form-data; name=\"upload\"; note=\"x; filename=evil.exe \"; filename=\"safe.txt\"

y
--XX
Content-Disposition: form-data; name=\"u\"; filename*=UTF-8''evil.php

z
--XX--
";
        let m = request(form).multipart().unwrap();
        let files: Vec<_> = m.files().map(|f| (f.name(), f.file_name())).collect();
        assert_eq!(
            files,
            [("real", Some("a;name=evil")), ("upload", Some("safe.txt"))]
        );
        // `filename*` is not read (RFC 7578 forbids it): a text field.
        assert_eq!(m.field("u"), Some("z"));
        // File names as browsers send them: backslashes as they are.
        let windows = r#"--XX
Content-Disposition: form-data; name="f"; filename="C:\Users\me\x.txt"

x
--XX
Content-Disposition: form-data; name="g"; filename="dir\"

y
--XX--
"#;
        let m = request(windows).multipart().unwrap();
        let names: Vec<_> = m.files().map(|f| f.file_name()).collect();
        assert_eq!(names, [Some(r"C:\Users\me\x.txt"), Some(r"dir\")]);
        let twice = "--XX
Content-Disposition: form-data; name=\"a\"; name=\"b\"

x
--XX--
";
        let e = request(twice).multipart().unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.message()
                .contains("part 1: malformed Content-Disposition"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn malformed_bodies_are_400() {
        let e = request("--XX\nContent-Disposition: form-data; name=\"a\"\n\nunterminated")
            .multipart()
            .unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message().starts_with("multipart: "), "{}", e.message());
        let no_boundary = Request::builder(Method::POST, "/")
            .header("content-type", "multipart/form-data")
            .finish();
        assert_eq!(no_boundary.multipart().unwrap_err().status(), 400);
        let json = Request::builder(Method::POST, "/")
            .header("content-type", "application/json")
            .finish();
        assert_eq!(json.multipart().unwrap_err().status(), 415);
    }
}
