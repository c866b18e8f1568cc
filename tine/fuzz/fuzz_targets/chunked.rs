//! Feeds arbitrary bytes to tine's chunked transfer-coding decoder.
//!
//! The first input byte picks the read size (1..=64 bytes); the rest of the
//! input is the body stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let split = 1 + first as usize % 64;
    tine::__fuzz::decode_chunked(stream, split);
});
