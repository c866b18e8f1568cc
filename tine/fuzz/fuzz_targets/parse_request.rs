//! Feeds arbitrary bytes to tine's HTTP/1.1 request decoder.
//!
//! The first input byte picks the read size (1..=64 bytes), so the same
//! stream is exercised both whole-ish and fragmented, as the event loop would
//! see it arriving from a socket; the rest of the input is the stream. The
//! requests (and the error) decoded must not depend on how the stream was
//! split: it is decoded again whole, and the two must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let split = 1 + first as usize % 64;
    let pieces = tine::__fuzz::decode_requests(stream, split);
    let whole = tine::__fuzz::decode_requests(stream, stream.len());
    assert_eq!(pieces, whole, "split into {split}-byte pieces vs whole");
});
