//! Feeds arbitrary client bytes to a WebSocket session (tine's framing:
//! headers, unmasking, reassembly, UTF-8, close codes, limits), with an
//! echoing handler.
//!
//! The first input byte picks the read size (1..=64 bytes); the rest of the
//! input is the stream after the handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let split = 1 + first as usize % 64;
    tine::__fuzz::ws_session(stream, split);
});
