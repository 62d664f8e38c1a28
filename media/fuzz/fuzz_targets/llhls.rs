//! Arbitrary frames into the LL-HLS packager and playlist: must never panic, every part must be
//! one well-formed `moof` + `mdat` no longer than the part target (asserted in `fuzz_llhls`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wemaster_media::llhls::fuzz_llhls(data);
});
