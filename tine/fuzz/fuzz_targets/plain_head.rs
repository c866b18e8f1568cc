//! tine's one-pass reader of the common request head against `httparse`
//! and the checks after it: where the first reads a head, the two must
//! give the same answer (the parsed head, or the same refusal).
//!
//! The first input byte picks `max_headers` (0..=15, or 100), the rest is
//! the head (and whatever follows it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, head)) = data.split_first() else {
        return;
    };
    let max_headers = match first % 17 {
        16 => 100,
        n => usize::from(n),
    };
    tine::__fuzz::plain_head(head, max_headers);
});
