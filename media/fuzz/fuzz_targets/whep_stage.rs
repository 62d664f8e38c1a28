//! Arbitrary publisher frames into a WHEP stage with a viewer: must never panic, and every video
//! sample it hands to the viewers must be an Annex B access unit (asserted in `fuzz_whep_stage`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wemaster_media::whep::stage::fuzz_whep_stage(data);
});
