//! `wemaster::fuzzing::attachment_magic` under libFuzzer (what it asserts: src/fuzzing.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wemaster::fuzzing::attachment_magic(data);
});
