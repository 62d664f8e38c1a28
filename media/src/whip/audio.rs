//! Opus (WebRTC) → AAC (HLS/MPEG-TS, recording) for one WHIP session, in GStreamer.
//!
//! ```text
//!  Opus packets (pts from RTP) --> appsrc ! opusdec ! audioconvert ! audioresample
//!      ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! appsink --> AudioFrame (raw AAC)
//! ```
//!
//! The output format is fixed (AAC-LC, 48 kHz, stereo), so the AudioSpecificConfig is known
//! before the first encoded frame: [`aac_sequence_header`] can go to the packager at the start,
//! before the first video keyframe decides whether the stream has audio. The appsink callback
//! runs on a GStreamer streaming thread: it only `try_send`s (never blocks, never panics). The
//! pipeline's life (build, push, drain, `Null`) is [`AppPipeline`]'s.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::codec::AudioCodec;
use crate::frame::{AudioFrame, MediaFrame};
use crate::pipeline::appsrc::AppPipeline;

/// AudioSpecificConfig of AAC-LC (object type 2), 48 kHz (index 3), 2 channels.
pub const AAC_ASC: [u8; 2] = [0x11, 0x90];

/// The FLV body of the AAC sequence header the transcoder's output matches.
pub fn aac_sequence_header(dts_ms: u64) -> AudioFrame {
    AudioFrame {
        dts_ms,
        sequence_header: true,
        codec: AudioCodec::Aac,
        data: Bytes::from_static(&[0xAF, 0, AAC_ASC[0], AAC_ASC[1]]),
    }
}

const PIPELINE: &str = "appsrc name=src format=time is-live=true \
    caps=audio/x-opus,channel-mapping-family=0,rate=48000,channels=2 \
    ! opusdec plc=true ! audioconvert ! audioresample \
    ! audio/x-raw,rate=48000,channels=2 ! avenc_aac bitrate=128000 aac-coder=fast \
    ! appsink name=sink sync=false";

// `aac-coder=fast`: GStreamer's avenc_aac defaults to FFmpeg's "twoloop" search, which FFmpeg's
// own documentation calls worse *and* much slower than "fast" above 64 kb/s. Measured here on
// 60 s of 48 kHz stereo (gst-launch, opusdec → avenc_aac at 128 kb/s, user CPU): 1.05 s with
// twoloop, 0.63 s with fast, 0.28 s of it decoding (docs/benchmarks.md, WHIP).

/// How long [`OpusToAac::finish`] waits for the frames in flight.
const DRAIN: Duration = Duration::from_millis(500);

/// A running Opus → AAC pipeline.
pub struct OpusToAac {
    pipeline: AppPipeline,
}

impl OpusToAac {
    /// Build and start the pipeline; AAC frames go to `frames` (dropped when it is full).
    pub fn start(frames: mpsc::Sender<MediaFrame>) -> Result<OpusToAac, String> {
        let mut last_ms = 0u64;
        let pipeline =
            AppPipeline::start("Opus → AAC", PIPELINE, DRAIN, move |_, buffer, aac| {
                let ms = buffer.pts().map_or(last_ms, |t| t.mseconds()).max(last_ms);
                last_ms = ms;
                let mut data = Vec::with_capacity(aac.len() + 2);
                data.extend_from_slice(&[0xAF, 1]);
                data.extend_from_slice(aac);
                // A full queue drops audio rather than stalling GStreamer's thread.
                let _ = frames.try_send(MediaFrame::Audio(AudioFrame {
                    dts_ms: ms,
                    sequence_header: false,
                    codec: AudioCodec::Aac,
                    data: Bytes::from(data),
                }));
            })?;
        Ok(OpusToAac { pipeline })
    }

    /// One Opus packet at `pts_ms` on the session clock.
    pub fn push(&self, opus: &[u8], pts_ms: u64) {
        self.pipeline.push(opus, pts_ms);
    }

    /// Drain what is in flight (bounded) and stop. Blocking: call off the async runtime.
    pub fn finish(self) {
        self.pipeline.finish();
    }
}
