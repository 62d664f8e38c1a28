//! WHEP playback (draft-ietf-wish-whep): a viewer POSTs an SDP offer (receive-only H.264 video
//! and Opus audio), we answer as an ICE-lite peer with the same UDP candidates as WHIP, and the
//! live session's media goes out to it without transcoding video.
//!
//! ```text
//!  publisher's LiveOutput ── WhepStage (AVCC → Annex B; AAC → Opus once per stream) ─┐
//!  WHIP ingest (Opus passed through) ────────────────────────────────────────────────┤ WhepFeed
//!                                           the WebRTC socket task (shared with WHIP) <┘
//!                                           └─> every viewer's Rtc ─> SRTP over the one socket
//! ```
//!
//! Layout:
//! - [`negotiate`]: sans-IO — the viewer's offer in, a ready `str0m::Rtc` and the answer out,
//!   or a [`WhipError`] saying why the offer is unusable (the same errors as WHIP's).
//! - [`feed`]: [`WhepFeed`], a live session's samples on their way to the socket task.
//! - [`stage`]: [`WhepStage`], the conversion inside a publisher's output.
//! - [`audio`]: AAC → Opus in GStreamer for RTMP sources.
//!
//! A viewer starts at the next keyframe: a WHIP publisher is asked for one at once (PLI), an
//! RTMP source's comes within its GOP. We keep no GOP cache: a burst of old frames would sit in
//! the browser's jitter buffer as latency for the whole session. A viewer that reports a
//! broken picture (PLI/FIR) gets no more inter frames until the next keyframe (sending them
//! would only add to the congestion that broke it); NACKs are answered from str0m's resend
//! buffer (RTX when negotiated).

pub mod audio;
pub mod feed;
pub mod stage;

use std::{net::SocketAddr, sync::OnceLock, time::Instant};

use str0m::{Rtc, change::SdpOffer};

pub use feed::{Sample, WhepFeed};
pub use stage::{WhepOutput, WhepStage};

use crate::whip::{WhipError, answer_with, crypto, has_codec, sections};

/// Video packets kept per viewer for retransmission: ~0.6 s of a 2.5 Mbit/s stream, room for a
/// NACK over any RTT a live viewer has. str0m's default of 1000 costs megabytes per viewer;
/// 300 measured ~1.15 MiB per viewer in all, 150 ~0.93 MiB (docs/benchmarks.md).
const RESEND_PACKETS: usize = 150;

/// One DTLS certificate for every viewer of this process (made at the first viewer, gone with
/// the process), as SFUs do: generating a key pair per viewer costs CPU at every join and
/// memory for as long as it watches, and the fingerprint in each answer still authenticates the
/// DTLS handshake. `None` (the provider cannot make one): each `Rtc` makes its own.
fn viewer_cert() -> Option<str0m::config::DtlsCert> {
    static CERT: OnceLock<Option<str0m::config::DtlsCert>> = OnceLock::new();
    CERT.get_or_init(|| crypto().dtls_provider.generate_certificate())
        .clone()
}

/// An accepted viewer offer: the peer connection, not yet attached to the socket.
pub struct Viewer {
    pub(crate) rtc: Rtc,
    /// The SDP answer (with our candidates) to send back.
    pub answer: String,
    pub has_audio: bool,
    pub(crate) created: Instant,
}

/// Accept a viewer's `offer`: it must receive H.264 video (packetization-mode 1); Opus audio
/// is optional. `candidates` are the addresses put in the answer.
pub fn negotiate(offer: &str, candidates: &[SocketAddr]) -> Result<Viewer, WhipError> {
    let parsed =
        SdpOffer::from_sdp_string(offer).map_err(|e| WhipError::MalformedSdp(e.to_string()))?;
    let secs = sections(offer);
    if secs.is_empty() {
        return Err(WhipError::NoMedia);
    }
    let video = secs.iter().find(|(k, _)| *k == "video");
    let Some((_, video)) = video else {
        return Err(WhipError::Unsupported(
            "a video m-line is required (H.264): the stream is video with audio".into(),
        ));
    };
    if video
        .lines()
        .any(|l| l == "a=sendonly" || l == "a=inactive")
    {
        return Err(WhipError::Unsupported(
            "the video m-line must receive (recvonly or sendrecv): WHEP sends, it does not \
             take media"
                .into(),
        ));
    }
    let now = Instant::now();
    let mut config = Rtc::builder()
        .set_crypto_provider(crypto())
        .set_ice_lite(true)
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .set_send_buffer_video(RESEND_PACKETS);
    if let Some(cert) = viewer_cert() {
        config = config.set_dtls_cert(cert);
    }
    let mut rtc = config.build(now);
    let answer = answer_with(&mut rtc, parsed, candidates)?;
    if !has_codec(&answer, "video", "h264/90000") {
        return Err(WhipError::Unsupported(
            "the stream is H.264: the offer must accept H.264 with packetization-mode=1".into(),
        ));
    }
    Ok(Viewer {
        rtc,
        has_audio: has_codec(&answer, "audio", "opus/48000"),
        answer,
        created: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::media::{Direction, MediaKind};

    /// A viewer's offer made by str0m itself.
    fn offer(h264: bool, direction: Direction) -> String {
        let mut rtc = Rtc::builder()
            .set_crypto_provider(crypto())
            .clear_codecs()
            .enable_vp8(true)
            .enable_h264(h264)
            .enable_opus(true, false)
            .build(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Video, direction, None, None, None);
        api.add_media(MediaKind::Audio, direction, None, None, None);
        let (offer, _pending) = api.apply().unwrap();
        offer.to_sdp_string()
    }

    const HERE: &str = "127.0.0.1:8189";

    #[test]
    fn a_receive_only_offer_gets_a_send_only_h264_answer_with_our_candidate() {
        let v = negotiate(&offer(true, Direction::RecvOnly), &[HERE.parse().unwrap()]).unwrap();
        assert!(v.has_audio);
        let video = sections(&v.answer)
            .into_iter()
            .find(|(k, _)| *k == "video")
            .unwrap()
            .1;
        assert!(video.contains("a=sendonly"), "{video}");
        assert!(video.to_ascii_lowercase().contains("h264/90000"), "{video}");
        assert!(!video.to_ascii_lowercase().contains("vp8"), "{video}");
        assert!(v.answer.contains("127.0.0.1 8189 typ host"), "{}", v.answer);
    }

    #[test]
    fn every_viewer_gets_the_same_certificate() {
        let fingerprint = |answer: &str| {
            answer
                .lines()
                .find(|l| l.starts_with("a=fingerprint:"))
                .map(str::to_string)
        };
        let a = negotiate(&offer(true, Direction::RecvOnly), &[HERE.parse().unwrap()]).unwrap();
        let b = negotiate(&offer(true, Direction::RecvOnly), &[HERE.parse().unwrap()]).unwrap();
        assert!(fingerprint(&a.answer).is_some());
        assert_eq!(fingerprint(&a.answer), fingerprint(&b.answer));
    }

    #[test]
    fn offers_without_h264_or_that_only_send_are_refused_with_the_reason() {
        let e = negotiate(&offer(false, Direction::RecvOnly), &[HERE.parse().unwrap()]).err();
        let Some(WhipError::Unsupported(why)) = e else {
            panic!("{e:?}")
        };
        assert!(why.contains("H.264"), "{why}");
        let e = negotiate(&offer(true, Direction::SendOnly), &[HERE.parse().unwrap()]).err();
        let Some(WhipError::Unsupported(why)) = e else {
            panic!("{e:?}")
        };
        assert!(why.contains("recvonly"), "{why}");
        assert!(matches!(
            negotiate("v=0", &[HERE.parse().unwrap()]),
            Err(WhipError::MalformedSdp(_) | WhipError::NoMedia)
        ));
    }
}
