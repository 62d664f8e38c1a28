//! Arbitrary bytes after a valid handshake into the RTMP connection core: must never panic and
//! must keep its buffering within bounds (both asserted inside `fuzz_connection`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wemaster_media::rtmp::fuzz_connection(data);
});
