//! Arbitrary text as a WHIP publisher's and a WHEP viewer's SDP offer (str0m's parser, then
//! our codec checks): must never panic; an accepted publisher offer has video and an answer
//! with our candidate (asserted in `fuzz_sdp_offer`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wemaster_media::whip::fuzz_sdp_offer(data);
});
