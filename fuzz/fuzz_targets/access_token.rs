//! `wemaster::fuzzing::access_token` under libFuzzer (what it asserts: src/fuzzing.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wemaster::fuzzing::access_token(data);
});
