//! The encoders behind [`Compression`](super::Compression): one per
//! response, writing into a byte vector the middleware takes from.

use std::io::{self, Write};

use super::accept::Coding;
use super::Compression;

/// Brotli's window (log2 bytes). The format's default is 22 (4 MiB of
/// ring buffer per encoder); 18 (256 KiB) keeps a streamed response's
/// encoder small at a small cost in ratio for bodies past 256 KiB.
const BROTLI_WINDOW: u32 = 18;
/// Brotli's internal input buffer.
const BROTLI_BUFFER: usize = 4096;

/// One response's encoder.
pub(super) enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    #[cfg(feature = "zstd")]
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    pub(super) fn new(coding: Coding, config: &Compression, size_hint: usize) -> io::Result<Self> {
        let out = Vec::with_capacity(size_hint.min(64 * 1024));
        Ok(match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(config.gzip_level),
            )),
            Coding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                out,
                BROTLI_BUFFER,
                config.brotli_quality,
                BROTLI_WINDOW,
            ))),
            #[cfg(feature = "zstd")]
            Coding::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, config.zstd_level)?;
                // A 2 MiB window whatever the level: bounded memory per
                // encoder, and within the 8 MiB that browsers accept for
                // `Content-Encoding: zstd` (RFC 8878 §3.1.1.1.2).
                enc.window_log(21)?;
                Encoder::Zstd(enc)
            }
        })
    }

    pub(super) fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Br(e) => e.write_all(data),
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    /// Emits everything written so far as a decodable block (gzip's sync
    /// flush, brotli's and zstd's flush), so a streamed chunk reaches the
    /// client whole instead of waiting in the encoder.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Br(e) => e.flush(),
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.flush(),
        }
    }

    /// Takes the compressed bytes produced so far.
    pub(super) fn take(&mut self) -> Vec<u8> {
        let out = match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.get_mut(),
        };
        std::mem::take(out)
    }

    /// Ends the compressed stream; returns the bytes not yet taken.
    pub(super) fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            // Writing into memory cannot fail, so `into_inner` (which
            // finishes the stream and drops the error) loses nothing.
            Encoder::Br(e) => Ok(e.into_inner()),
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.finish(),
        }
    }
}
