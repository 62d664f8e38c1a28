//! WHIP ingest (RFC 9725): a browser or OBS POSTs an SDP offer, we answer as an ICE-lite peer
//! with our UDP candidates, and the session's media becomes the same
//! [`crate::frame::MediaFrame`]s an RTMP publish produces.
//!
//! Layout:
//! - [`negotiate`]: sans-IO — offer text in, a ready `str0m::Rtc` and the answer out, or a
//!   [`WhipError`] saying why the offer is unusable. Nothing is registered until it succeeds, so
//!   a refused offer leaves nothing behind.
//! - [`h264`]: Annex B access units → FLV/AVCC video frames with sequence headers.
//! - [`audio`]: Opus → AAC in GStreamer (HLS/TS carries AAC).
//! - [`vp8`]: VP8 → H.264 in GStreamer, for browsers that only send VP8 (when allowed).
//! - `server`: [`WhipServer`], one UDP socket and one task owning every session's `Rtc`
//!   (packets are routed with `Rtc::accepts`), driving `poll_output`, turning media into frames.
//!   The same task serves WHEP viewers ([`crate::whep`]): one UDP port for all WebRTC.
//!
//! The HTTP route (in the service) authorises the stream key, calls [`negotiate`], obtains a
//! [`crate::ingest::PublishGrant`] from the supervisor and hands both to [`WhipServer::start`].

pub mod audio;
pub mod h264;
mod server;
mod viewer;
pub mod vp8;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, OnceLock},
    time::Instant,
};

use str0m::{Candidate, Rtc, change::SdpOffer, crypto::CryptoProvider};

pub use server::{WhipOptions, WhipServer};

/// The video codec a session receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestVideo {
    /// Passed through to HLS as it is.
    H264,
    /// Transcoded to H.264 ([`vp8`]).
    Vp8,
}

/// Why an offer cannot be used. Each variant says which HTTP status it becomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhipError {
    /// 400: not SDP str0m can parse.
    #[error("malformed SDP offer: {0}")]
    MalformedSdp(String),
    /// 400: no audio or video m-line.
    #[error("the SDP offer has no media")]
    NoMedia,
    /// 406: media we cannot ingest (no H.264 video, VP8 with transcoding off, ...).
    #[error("{0}")]
    Unsupported(String),
    /// 503: the WHIP server is not running or is shutting down.
    #[error("the WHIP server is not available")]
    Unavailable,
    /// 503: the node serves as many WebRTC viewers as it is configured for.
    #[error("{0}")]
    Busy(String),
}

impl WhipError {
    /// Stable machine code for problem+json.
    pub fn code(&self) -> &'static str {
        match self {
            WhipError::MalformedSdp(_) => "malformed_sdp",
            WhipError::NoMedia => "no_media",
            WhipError::Unsupported(_) => "unsupported_codec",
            WhipError::Unavailable => "unavailable",
            WhipError::Busy(_) => "busy",
        }
    }
}

/// An accepted offer: the peer connection, not yet attached to the socket.
pub struct Negotiated {
    pub(crate) rtc: Rtc,
    pub(crate) has_audio: bool,
    /// H.264 whenever the offer has it; VP8 only when it has no H.264 and VP8 is allowed.
    pub video: IngestVideo,
    /// The SDP answer (with our candidates) to send back.
    pub answer: String,
    pub(crate) created: Instant,
}

pub(crate) fn crypto() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(str0m::crypto::from_feature_flags()))
        .clone()
}

/// The m-line sections of an SDP: (kind, section text).
pub(crate) fn sections(sdp: &str) -> Vec<(&str, String)> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for line in sdp.lines() {
        if let Some(rest) = line.strip_prefix("m=") {
            let kind = rest.split(' ').next().unwrap_or("");
            out.push((kind, String::new()));
        } else if let Some((_, s)) = out.last_mut() {
            s.push_str(line);
            s.push('\n');
        }
    }
    out
}

/// Accept `offer` for ingest: H.264 video (or VP8 when `allow_vp8` and the offer has no
/// H.264: it is transcoded) and Opus audio (optional). `candidates` are the addresses put in
/// the answer (our UDP socket as clients reach it).
pub fn negotiate(
    offer: &str,
    candidates: &[SocketAddr],
    allow_vp8: bool,
) -> Result<Negotiated, WhipError> {
    let parsed =
        SdpOffer::from_sdp_string(offer).map_err(|e| WhipError::MalformedSdp(e.to_string()))?;
    let secs = sections(offer);
    if secs.is_empty() {
        return Err(WhipError::NoMedia);
    }
    let has = |kind: &str, codec: &str| {
        secs.iter().any(|(k, s)| {
            *k == kind
                && s.lines()
                    .any(|l| l.starts_with("a=rtpmap:") && l.to_ascii_lowercase().contains(codec))
        })
    };
    if !secs.iter().any(|(k, _)| *k == "video") {
        return Err(WhipError::Unsupported(
            "a video track is required (H.264 or VP8); audio-only publishing is not supported"
                .into(),
        ));
    }
    // H.264 passes through untouched: prefer it whenever it is offered, whatever the order.
    let video = if has("video", "h264/90000") {
        IngestVideo::H264
    } else if has("video", "vp8/90000") {
        if !allow_vp8 {
            return Err(WhipError::Unsupported(
                "video must be H.264 (offered: VP8); VP8 → H.264 transcoding is turned off on \
                 this server (whip.transcode_vp8)"
                    .into(),
            ));
        }
        IngestVideo::Vp8
    } else {
        let offered = if has("video", "vp9/") {
            "VP9"
        } else if has("video", "av1") {
            "AV1"
        } else if has("video", "h265/") {
            "H.265"
        } else {
            "no known codec"
        };
        let accepted = if allow_vp8 { "H.264 or VP8" } else { "H.264" };
        return Err(WhipError::Unsupported(format!(
            "video must be {accepted} (offered: {offered})"
        )));
    };
    let now = Instant::now();
    let mut rtc = Rtc::builder()
        .set_crypto_provider(crypto())
        .set_ice_lite(true)
        .clear_codecs()
        .enable_h264(video == IngestVideo::H264)
        .enable_vp8(video == IngestVideo::Vp8)
        .enable_opus(true, false)
        .build(now);
    let answer = answer_with(&mut rtc, parsed, candidates)?;
    let answered = |kind: &str, codec: &str| has_codec(&answer, kind, codec);
    match video {
        IngestVideo::H264 if !answered("video", "h264/90000") => {
            return Err(WhipError::Unsupported(
                "no H.264 configuration in the offer can be received (packetization-mode=1 is \
                 required)"
                    .into(),
            ));
        }
        IngestVideo::Vp8 if !answered("video", "vp8/90000") => {
            return Err(WhipError::Unsupported(
                "the offered VP8 configuration cannot be received".into(),
            ));
        }
        _ => {}
    }
    let has_audio = answered("audio", "opus/48000");
    Ok(Negotiated {
        rtc,
        has_audio,
        video,
        answer,
        created: now,
    })
}

/// Put our host `candidates` on `rtc` and answer `offer` (ICE-lite peers for WHIP and WHEP).
pub(crate) fn answer_with(
    rtc: &mut Rtc,
    offer: SdpOffer,
    candidates: &[SocketAddr],
) -> Result<String, WhipError> {
    for addr in candidates {
        let c = Candidate::host(*addr, "udp")
            .map_err(|e| WhipError::Unsupported(format!("bad local candidate {addr}: {e}")))?;
        rtc.add_local_candidate(c);
    }
    Ok(rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| WhipError::MalformedSdp(e.to_string()))?
        .to_sdp_string())
}

/// Whether an m-line of `kind` in `sdp` maps a payload type to `codec` (`"h264/90000"`).
pub(crate) fn has_codec(sdp: &str, kind: &str, codec: &str) -> bool {
    sections(sdp).iter().any(|(k, s)| {
        *k == kind
            && s.lines()
                .any(|l| l.starts_with("a=rtpmap:") && l.to_ascii_lowercase().contains(codec))
    })
}

/// The addresses to advertise for a socket bound at `bound`: the configured public IPs, else
/// the bound IP, else loopback (a warning case: only local clients can reach it).
pub fn candidate_addrs(bound: SocketAddr, public_ips: &[IpAddr]) -> Vec<SocketAddr> {
    if !public_ips.is_empty() {
        return public_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, bound.port()))
            .collect();
    }
    let ip = if bound.ip().is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        bound.ip()
    };
    vec![SocketAddr::new(ip, bound.port())]
}

/// Fuzz entry (media/fuzz `sdp_offer`): any text as a WHIP publisher's offer and as a WHEP
/// viewer's — str0m's SDP parser, then our section scan and codec checks. Never panics; an
/// accepted publisher offer has a video section. (Whether the answer carries our candidate is
/// not asserted: libFuzzer found malformed offers — `m=Audio`, a broken fingerprint — that
/// str0m answers without one; such a client cannot connect, which harms nobody else.)
#[doc(hidden)]
pub fn fuzz_sdp_offer(data: &[u8]) {
    let offer = String::from_utf8_lossy(data);
    let candidate: SocketAddr = "127.0.0.1:9".parse().expect("an address");
    if negotiate(&offer, &[candidate], true).is_ok() {
        assert!(
            sections(&offer).iter().any(|(k, _)| *k == "video"),
            "an offer without video was accepted"
        );
    }
    let _ = crate::whep::negotiate(&offer, &[candidate]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::media::{Direction, MediaKind};

    #[test]
    fn garbage_is_malformed_sdp() {
        let e = negotiate("hello", &["127.0.0.1:9".parse().unwrap()], true).err();
        assert!(matches!(e, Some(WhipError::MalformedSdp(_))), "{e:?}");
    }

    /// A publisher's offer made by str0m itself: video with `h264`/`vp8`, Opus audio.
    fn offer(h264: bool, vp8: bool, vp9: bool) -> String {
        let mut rtc = Rtc::builder()
            .set_crypto_provider(crypto())
            .clear_codecs()
            .enable_vp8(vp8)
            .enable_vp9(vp9)
            .enable_h264(h264)
            .enable_opus(true, false)
            .build(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, _pending) = api.apply().unwrap();
        offer.to_sdp_string()
    }

    fn video_codecs(answer: &str) -> Vec<String> {
        sections(answer)
            .into_iter()
            .filter(|(k, _)| *k == "video")
            .flat_map(|(_, s)| {
                s.lines()
                    .filter_map(|l| l.strip_prefix("a=rtpmap:"))
                    .filter_map(|l| l.split(' ').nth(1))
                    .map(|c| c.split('/').next().unwrap().to_ascii_uppercase())
                    .filter(|c| c != "RTX")
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    const HERE: &str = "127.0.0.1:8189";

    #[test]
    fn h264_is_chosen_whenever_offered_even_after_vp8() {
        let n = negotiate(&offer(true, true, false), &[HERE.parse().unwrap()], true).unwrap();
        assert_eq!(n.video, IngestVideo::H264);
        assert!(n.has_audio);
        let codecs = video_codecs(&n.answer);
        assert!(
            !codecs.is_empty() && codecs.iter().all(|c| c == "H264"),
            "{codecs:?}"
        );
    }

    #[test]
    fn vp8_only_is_accepted_for_transcoding_when_allowed() {
        let n = negotiate(&offer(false, true, false), &[HERE.parse().unwrap()], true).unwrap();
        assert_eq!(n.video, IngestVideo::Vp8);
        assert_eq!(video_codecs(&n.answer), ["VP8"]);
    }

    #[test]
    fn vp8_only_is_refused_with_the_reason_when_transcoding_is_off() {
        let e = negotiate(&offer(false, true, false), &[HERE.parse().unwrap()], false).err();
        let Some(WhipError::Unsupported(why)) = e else {
            panic!("{e:?}")
        };
        assert!(why.contains("VP8") && why.contains("turned off"), "{why}");
    }

    #[test]
    fn other_codecs_are_named_in_the_refusal() {
        let e = negotiate(&offer(false, false, true), &[HERE.parse().unwrap()], true).err();
        let Some(WhipError::Unsupported(why)) = e else {
            panic!("{e:?}")
        };
        assert!(why.contains("VP9") && why.contains("H.264 or VP8"), "{why}");
    }

    #[test]
    fn unbound_sockets_advertise_public_ips_first() {
        let b: SocketAddr = "0.0.0.0:8189".parse().unwrap();
        assert_eq!(
            candidate_addrs(b, &["203.0.113.5".parse().unwrap()]),
            vec!["203.0.113.5:8189".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            candidate_addrs(b, &[]),
            vec!["127.0.0.1:8189".parse::<SocketAddr>().unwrap()]
        );
    }

    /// The SDP fuzz entry over offers made by str0m and mutated line by line (lines dropped,
    /// repeated, cut, characters changed): it never panics, and real offers are accepted.
    #[test]
    fn sdp_offers_survive_mutation() {
        let seeds = [
            offer(true, true, false),
            offer(false, true, false),
            offer(false, false, true),
        ];
        for seed in &seeds[..2] {
            assert!(negotiate(seed, &["127.0.0.1:9".parse().unwrap()], true).is_ok());
        }
        let mut next = crate::frame::samples::xorshift(0x5d9_1e55);
        for _ in 0..600 {
            let seed = &seeds[next() as usize % seeds.len()];
            let mut lines: Vec<String> = seed.lines().map(str::to_owned).collect();
            for _ in 0..1 + next() % 4 {
                let at = next() as usize % lines.len().max(1);
                match next() % 5 {
                    0 if !lines.is_empty() => {
                        lines.remove(at);
                    }
                    1 if !lines.is_empty() => {
                        let l = lines[at].clone();
                        lines.insert(at, l);
                    }
                    2 if !lines.is_empty() => {
                        let cut = next() as usize % (lines[at].len() + 1);
                        let cut = lines[at].floor_char_boundary(cut);
                        lines[at].truncate(cut);
                    }
                    3 if !lines.is_empty() => {
                        let mut b = lines[at].clone().into_bytes();
                        if !b.is_empty() {
                            let i = next() as usize % b.len();
                            let pool = b" :=/0123456789abcxyz\r\n-+";
                            b[i] = pool[next() as usize % pool.len()];
                        }
                        lines[at] = String::from_utf8_lossy(&b).into_owned();
                    }
                    _ => lines.insert(at, format!("a=rtpmap:{} H264/90000", next() % 200)),
                }
            }
            fuzz_sdp_offer((lines.join("\r\n") + "\r\n").as_bytes());
        }
    }
}
