//! Arbitrary frames into the live TS packager: must never panic and must only output whole
//! transport stream packets (asserted inside `fuzz_packager`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wemaster_media::packager::fuzz_packager(data);
});
