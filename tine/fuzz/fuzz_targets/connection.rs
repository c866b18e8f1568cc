//! Feeds arbitrary bytes to one whole connection: decoder, routing,
//! hooks, limits, forms, multipart, cookies, compression, static files,
//! SSE and WebSocket, as a client would send them (see
//! `tine/src/server/conn/fuzz.rs` for the app it serves).
//!
//! The first input byte picks the read size (its low 7 bits: 1 to 255
//! bytes, odd) and, with its high bit, a PROXY protocol listener (the
//! stream then starts with the header); the rest of the input is what the
//! client (or its balancer) sends.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let split = 1 + 2 * (first & 0x7f) as usize;
    tine::__fuzz::connection(stream, split, first & 0x80 != 0);
});
