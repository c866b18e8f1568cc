//! Feeds arbitrary bytes to one whole connection: decoder, routing,
//! hooks, limits, forms, multipart, cookies, compression, static files,
//! SSE and WebSocket, as a client would send them (see
//! `tine/src/server/conn/fuzz.rs` for the app it serves).
//!
//! The first input byte picks the read size (1..=256 bytes); the rest of
//! the input is what the client sends.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let split = 1 + first as usize;
    tine::__fuzz::connection(stream, split);
});
