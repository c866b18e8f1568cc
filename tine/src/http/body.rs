//! The chunked transfer-coding decoder (RFC 9112 §7.1), on buffers.
//!
//! Hand-written because no maintained crate decodes chunked bodies
//! incrementally from a caller-owned buffer; `httparse::parse_chunk_size`
//! does the chunk-size line (size, extensions) and this file does the rest.

use http::StatusCode;

/// Longest chunk-size line (with extensions) accepted, in bytes, whether
/// it arrives whole or in pieces.
const MAX_SIZE_LINE: usize = 4096;

/// Most bytes of chunk extensions in one body (what follows the size on
/// its lines; hyper's bound too). Extensions are read and dropped, and do
/// not count against the body's limit: without a bound of their own a
/// client could send megabytes of them with a body of a few bytes.
const MAX_EXTENSIONS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields until an empty line.
    Trailers,
    /// The body is complete.
    Done,
}

/// Incremental decoder of one chunked body.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
    trailer_bytes: usize,
    /// Chunk-extension bytes so far (see [`MAX_EXTENSIONS`]).
    extension_bytes: usize,
    /// Body bytes announced so far (the decoded output may have been
    /// moved elsewhere: spilled to a file).
    total: u64,
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            trailer_bytes: 0,
            extension_bytes: 0,
            total: 0,
        }
    }

    /// Decodes as much of `input` as possible, appending body bytes to `out`.
    ///
    /// Returns how many input bytes were consumed and whether the body is
    /// complete. Errors carry the status to answer: 400 for malformed
    /// framing, 413 when the decoded body would exceed `max_body`, 431 when
    /// the trailers exceed `max_trailers`.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_body: usize,
        max_trailers: usize,
    ) -> Result<(usize, bool), StatusCode> {
        self.run(input, max_body, max_trailers, |data| {
            out.extend_from_slice(data)
        })
    }

    /// Like [`decode`](Self::decode), dropping the body's bytes instead of
    /// copying them (a body passed over unread).
    pub(crate) fn skip(
        &mut self,
        input: &[u8],
        max_body: usize,
        max_trailers: usize,
    ) -> Result<(usize, bool), StatusCode> {
        self.run(input, max_body, max_trailers, |_| {})
    }

    /// The decoder: body bytes go to `data`.
    #[inline]
    fn run(
        &mut self,
        input: &[u8],
        max_body: usize,
        max_trailers: usize,
        mut data: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), StatusCode> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => return Ok((pos, true)),
                State::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        // httparse takes any octet inside a chunk extension,
                        // a bare LF included. A front proxy that ends the
                        // line at that LF would frame a different message
                        // (chunk-extension smuggling), so refuse every
                        // control character but HTAB in the line. `used`
                        // counts the final CRLF, which httparse checked.
                        if rest[..used - 2].iter().copied().any(is_ctl) {
                            return Err(StatusCode::BAD_REQUEST);
                        }
                        // httparse also reads a line without a digit (empty,
                        // or only an extension) as size 0, the last chunk:
                        // the body would end there for tine and not for a
                        // proxy that refuses such a line (RFC 9112 §7.1,
                        // `chunk-size = 1*HEXDIG`).
                        if !rest[0].is_ascii_hexdigit() {
                            return Err(StatusCode::BAD_REQUEST);
                        }
                        if used > MAX_SIZE_LINE {
                            return Err(StatusCode::BAD_REQUEST);
                        }
                        let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                        self.extension_bytes += used - 2 - digits;
                        if self.extension_bytes > MAX_EXTENSIONS {
                            return Err(StatusCode::BAD_REQUEST);
                        }
                        pos += used;
                        if size == 0 {
                            self.state = State::Trailers;
                        } else {
                            self.total = self.total.saturating_add(size);
                            if self.total > max_body as u64 {
                                return Err(StatusCode::PAYLOAD_TOO_LARGE);
                            }
                            self.state = State::Data(size);
                        }
                    }
                    Ok(httparse::Status::Partial) => {
                        if rest.len() > MAX_SIZE_LINE {
                            return Err(StatusCode::BAD_REQUEST);
                        }
                        return Ok((pos, false));
                    }
                    Err(_) => return Err(StatusCode::BAD_REQUEST),
                },
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok((pos, false));
                    }
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    data(&rest[..take]);
                    pos += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd => {
                    if rest.len() < 2 {
                        return Ok((pos, false));
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(StatusCode::BAD_REQUEST);
                    }
                    pos += 2;
                    self.state = State::Size;
                }
                State::Trailers => match memchr::memchr(b'\n', rest) {
                    // Every trailer line must end in CRLF: a bare LF could
                    // end the line for one parser and not for another.
                    Some(n) if n == 0 || rest[n - 1] != b'\r' => {
                        return Err(StatusCode::BAD_REQUEST);
                    }
                    Some(1) => {
                        pos += 2;
                        self.state = State::Done;
                    }
                    Some(n) => {
                        // Trailer fields are tolerated and dropped: none of
                        // them may change how the message is framed. Still,
                        // a control character (a bare CR among them) is
                        // malformed, as it is in a header field.
                        self.trailer_bytes += n + 1;
                        if self.trailer_bytes > max_trailers {
                            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                        }
                        let line = &rest[..n - 1];
                        if line.iter().copied().any(is_ctl) || !is_field_line(line) {
                            return Err(StatusCode::BAD_REQUEST);
                        }
                        pos += n + 1;
                    }
                    None => {
                        if self.trailer_bytes + rest.len() > max_trailers {
                            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                        }
                        return Ok((pos, false));
                    }
                },
            }
        }
    }
}

/// A request body as read: in memory, or spilled to a temporary file
/// once it grew past [`Limits::body_buffer`](crate::Limits::body_buffer).
#[derive(Debug)]
pub(crate) enum ReadBody {
    Memory(bytes::Bytes),
    File(SpilledBody),
}

/// A body that was written to an anonymous temporary file (already
/// unlinked: closing it frees the space, whatever happens to the process).
#[derive(Debug)]
pub(crate) struct SpilledBody {
    pub(crate) file: std::fs::File,
    pub(crate) len: u64,
    /// The whole body read back, once something asked for it in memory
    /// ([`Request::body`](crate::Request::body)).
    pub(crate) loaded: std::cell::OnceCell<bytes::Bytes>,
}

impl SpilledBody {
    /// The body in memory, read from the file on first use (a read error
    /// is logged and gives an empty body).
    pub(crate) fn load(&self) -> &bytes::Bytes {
        self.loaded.get_or_init(|| {
            use std::os::unix::fs::FileExt;
            let mut data = vec![0u8; usize::try_from(self.len).unwrap_or(0)];
            match self.file.read_exact_at(&mut data, 0) {
                Ok(()) => bytes::Bytes::from(data),
                Err(e) => {
                    log::error!("cannot read a request body back from its temporary file: {e}");
                    bytes::Bytes::new()
                }
            }
        })
    }
}

/// A temporary file a body is being written to.
#[derive(Debug)]
pub(crate) struct SpillFile {
    file: Option<std::fs::File>,
    len: u64,
}

/// The answer when a temporary file cannot be made: `503` when out of
/// descriptors, else `500`.
fn failed_open(e: &std::io::Error) -> StatusCode {
    if crate::server::sys::out_of_descriptors(e) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

impl SpillFile {
    /// An anonymous file in the temporary directory (`TMPDIR`, else
    /// `/tmp`; `O_TMPFILE` where the system has it). A failure is logged
    /// and answered `500`, or `503` when the process or the system is out
    /// of file descriptors (a passing condition, answered as a static file
    /// that cannot be opened for that reason is).
    pub(crate) fn new() -> Result<Self, StatusCode> {
        Self::new_in(&std::env::temp_dir())
    }

    /// [`new`](Self::new) in `dir`. The log line names the directory: an
    /// error such as `No such file or directory` says nothing of which
    /// (a `TMPDIR` that does not exist, say).
    fn new_in(dir: &std::path::Path) -> Result<Self, StatusCode> {
        match tempfile::tempfile_in(dir) {
            Ok(file) => Ok(SpillFile {
                file: Some(file),
                len: 0,
            }),
            Err(e) => {
                log::error!(
                    "cannot create a temporary file for a request body in {} (TMPDIR): {e}",
                    dir.display()
                );
                Err(failed_open(&e))
            }
        }
    }

    /// Appends `data` (blocking on the disk, like nginx's body buffering).
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<(), StatusCode> {
        use std::io::Write;
        let Some(file) = &mut self.file else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        };
        match file.write_all(data) {
            Ok(()) => {
                self.len += data.len() as u64;
                Ok(())
            }
            Err(e) => {
                log::error!("cannot write a request body to its temporary file: {e}");
                Err(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// The finished body.
    pub(crate) fn take(&mut self) -> SpilledBody {
        SpilledBody {
            file: self.file.take().expect("a spill file is taken once"),
            len: self.len,
            loaded: std::cell::OnceCell::new(),
        }
    }
}

/// A control character other than HTAB (RFC 5234 CTL minus HTAB): never
/// valid inside a chunk-size line or a trailer field.
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Whether a trailer line is a field line, `name: value` with a token for
/// a name (RFC 9112 §7.1.2, §5): not a line folded onto the one before
/// (it starts with whitespace) nor a request line, which a proxy that
/// reads the trailers differently might take for the end of them.
fn is_field_line(line: &[u8]) -> bool {
    match memchr::memchr(b':', line) {
        Some(colon) if colon > 0 => line[..colon].iter().copied().all(super::parse::is_token),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `TMPDIR=/nonexistent`: the log line named no directory.
    #[test]
    fn a_temporary_directory_that_fails_is_named() {
        testkit::logs::capture();
        let dir = "/nonexistent/tine-spill-test";
        let err = SpillFile::new_in(std::path::Path::new(dir))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err, StatusCode::INTERNAL_SERVER_ERROR);
        let lines = testkit::logs::matching(dir);
        assert!(
            lines.iter().any(|l| l.contains(&format!(
                "cannot create a temporary file for a request body in {dir} (TMPDIR): No such file"
            ))),
            "{lines:?}"
        );
        assert!(SpillFile::new_in(&std::env::temp_dir()).is_ok());
    }

    #[test]
    fn out_of_descriptors_is_503_and_other_failures_500() {
        let errno = |e: rustix::io::Errno| std::io::Error::from_raw_os_error(e.raw_os_error());
        for e in [rustix::io::Errno::MFILE, rustix::io::Errno::NFILE] {
            assert_eq!(failed_open(&errno(e)), StatusCode::SERVICE_UNAVAILABLE);
        }
        for e in [
            rustix::io::Errno::NOSPC,
            rustix::io::Errno::NOENT,
            rustix::io::Errno::ACCESS,
        ] {
            assert_eq!(failed_open(&errno(e)), StatusCode::INTERNAL_SERVER_ERROR);
        }
    }

    /// Asserts that each input is refused with 400.
    fn assert_refused(inputs: &[&[u8]]) {
        for input in inputs {
            assert_eq!(
                decode_all(input).unwrap_err(),
                StatusCode::BAD_REQUEST,
                "{}",
                input.escape_ascii()
            );
        }
    }

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), StatusCode> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let (used, done) = d.decode(input, &mut out, 1 << 20, 1024)?;
        Ok((out, used, done))
    }

    #[test]
    fn simple_body() {
        let (out, used, done) = decode_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT").unwrap();
        assert_eq!(out, b"hello world");
        assert!(done);
        assert_eq!(used, 26);
    }

    #[test]
    fn extensions_and_trailers_tolerated() {
        let (out, _, done) =
            decode_all(b"3;name=val\r\nabc\r\n0;x\r\nX-Trailer: 1\r\nY: 2\r\n\r\n").unwrap();
        assert_eq!(out, b"abc");
        assert!(done);
    }

    #[test]
    fn byte_at_a_time() {
        let input = b"A\r\n0123456789\r\n2\r\nab\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let mut done = false;
        for &b in input.iter() {
            buf.push(b);
            let (used, fin) = d.decode(&buf, &mut out, 100, 100).unwrap();
            buf.drain(..used);
            done = fin;
        }
        assert!(done);
        assert_eq!(out, b"0123456789ab");
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed_is_400() {
        assert_eq!(decode_all(b"zz\r\n").unwrap_err(), StatusCode::BAD_REQUEST);
        assert_eq!(
            decode_all(b"3\r\nabcX\r\n").unwrap_err(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            decode_all(b"ffffffffffffffffffff\r\n").unwrap_err(),
            StatusCode::BAD_REQUEST
        );
        let long = vec![b'1'; MAX_SIZE_LINE + 10];
        assert_eq!(decode_all(&long).unwrap_err(), StatusCode::BAD_REQUEST);
    }

    /// A size line over the limit is refused whole as in pieces (it was
    /// taken when it arrived in one read), and a body's extensions have a
    /// bound of their own.
    #[test]
    fn long_size_lines_and_many_extensions_are_400_however_they_arrive() {
        let mut body = b"5;".to_vec();
        body.extend(std::iter::repeat_n(b'a', MAX_SIZE_LINE));
        body.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(decode_all(&body).unwrap_err(), StatusCode::BAD_REQUEST);
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut refused = false;
        let mut buf = Vec::new();
        for piece in body.chunks(1000) {
            // As the connection does: what was not used waits for more.
            buf.extend_from_slice(piece);
            match d.decode(&buf, &mut out, 1 << 20, 1024) {
                Ok((used, _)) => drop(buf.drain(..used)),
                Err(s) => {
                    assert_eq!(s, StatusCode::BAD_REQUEST);
                    refused = true;
                    break;
                }
            }
        }
        assert!(refused);
        // Lines within the limit, but too many extensions in all.
        let line = format!("1;{}\r\nx\r\n", "e".repeat(4000));
        let mut body = line.repeat(4).into_bytes();
        body.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(decode_all(&body).unwrap().0, b"xxxx");
        let mut body = line.repeat(5).into_bytes();
        body.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(decode_all(&body).unwrap_err(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn too_large_is_413_before_reading_data() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(
            d.decode(b"100\r\n", &mut out, 10, 100).unwrap_err(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn oversized_trailers_rejected() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut input = b"0\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'a', 200));
        assert_eq!(
            d.decode(&input, &mut out, 10, 100).unwrap_err(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn control_characters_in_a_chunk_extension_are_400() {
        assert_refused(&[
            &b"1;\nZ\r\nA\r\n0\r\n\r\n"[..],
            b"1;a\nb=c\r\nA\r\n0\r\n\r\n",
            b"1;a\rb\r\nA\r\n0\r\n\r\n",
            b"1;a=\"\x00\"\r\nA\r\n0\r\n\r\n",
            b"1;a\x7f\r\nA\r\n0\r\n\r\n",
            b"0;\nZ\r\n\r\n",
        ]);
        // HTAB and visible octets stay fine.
        let (out, _, done) = decode_all(b"1;a=\"x\ty\"\t;b\r\nA\r\n0\r\n\r\n").unwrap();
        assert_eq!(out, b"A");
        assert!(done);
    }

    #[test]
    fn bare_lf_or_cr_in_trailers_is_400() {
        assert_refused(&[
            &b"0\r\n\n"[..],
            b"0\r\nX: 1\n\r\n",
            b"0\r\nX: 1\r\n\n",
            b"0\r\nX: a\rb\r\n\r\n",
            b"0\r\nX: a\x00b\r\n\r\n",
        ]);
        // The bare LF is seen even when it arrives on its own.
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(d.decode(b"0\r\nX: 1", &mut out, 10, 100), Ok((3, false)));
        assert_eq!(
            d.decode(b"X: 1\n", &mut out, 10, 100).unwrap_err(),
            StatusCode::BAD_REQUEST
        );
        // Lines that are not fields: folded, a request line, no name.
        assert_refused(&[
            &b"0\r\nX: 1\r\n folded\r\n\r\n"[..],
            b"0\r\nGET /x HTTP/1.1\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
            b"0\r\nX : v\r\n\r\n",
        ]);
        // A tab inside a trailer value is fine.
        let (_, used, done) = decode_all(b"0\r\nX: a\tb\r\n\r\n").unwrap();
        assert!(done);
        assert_eq!(used, 13);
    }

    /// A chunk-size line without a hex digit is no last chunk (httparse
    /// reads it as size 0): the body would end early for tine alone.
    #[test]
    fn a_chunk_size_line_without_a_digit_is_400() {
        assert_refused(&[
            &b"5\r\nhello\r\n\r\n\r\n"[..],
            b"\r\n\r\n",
            b";x=1\r\n\r\n",
            b" 0\r\n\r\n",
        ]);
        let (body, _, done) = decode_all(b"a;x=1\r\n0123456789\r\n0;y\r\n\r\n").unwrap();
        assert!(done);
        assert_eq!(body, b"0123456789");
    }
}
