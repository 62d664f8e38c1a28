//! Opus (WebRTC) → AAC (HLS/MPEG-TS, recording) for one WHIP session, in GStreamer.
//!
//! ```text
//!  Opus packets (pts from RTP) --> appsrc ! opusdec ! audioconvert ! audioresample
//!      ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! appsink --> AudioFrame (raw AAC)
//! ```
//!
//! The output format is fixed (AAC-LC, 48 kHz, stereo), so the AudioSpecificConfig is known
//! before the first encoded frame: [`AAC_SEQUENCE_HEADER`] can go to the packager at the start,
//! before the first video keyframe decides whether the stream has audio. The appsink callback
//! runs on a GStreamer streaming thread: it only `try_send`s (never blocks, never panics).

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

use crate::codec::AudioCodec;
use crate::frame::{AudioFrame, MediaFrame};

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
    ! audio/x-raw,rate=48000,channels=2 ! avenc_aac bitrate=128000 \
    ! appsink name=sink sync=false";

/// A running Opus → AAC pipeline.
pub struct OpusToAac {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
}

impl OpusToAac {
    /// Build and start the pipeline; AAC frames go to `frames` (dropped when it is full).
    pub fn start(frames: mpsc::Sender<MediaFrame>) -> Result<OpusToAac, String> {
        gst::init().map_err(|e| e.to_string())?;
        let pipeline = gst::parse::launch(PIPELINE)
            .map_err(|e| format!("cannot build the Opus → AAC pipeline: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "not a pipeline".to_string())?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or("no appsrc")?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or("no appsink")?;
        let mut last_ms = 0u64;
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let Ok(sample) = sink.pull_sample() else {
                        return Err(gst::FlowError::Eos);
                    };
                    let Some(buffer) = sample.buffer() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let Ok(map) = buffer.map_readable() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let ms = buffer.pts().map_or(last_ms, |t| t.mseconds()).max(last_ms);
                    last_ms = ms;
                    let mut data = Vec::with_capacity(map.len() + 2);
                    data.extend_from_slice(&[0xAF, 1]);
                    data.extend_from_slice(&map);
                    // A full queue drops audio rather than stalling GStreamer's thread.
                    let _ = frames.try_send(MediaFrame::Audio(AudioFrame {
                        dts_ms: ms,
                        sequence_header: false,
                        codec: AudioCodec::Aac,
                        data: Bytes::from(data),
                    }));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("cannot start the Opus → AAC pipeline: {e}"))?;
        Ok(OpusToAac { pipeline, src })
    }

    /// One Opus packet at `pts_ms` on the session clock.
    pub fn push(&self, opus: &[u8], pts_ms: u64) {
        let mut buffer = gst::Buffer::from_slice(opus.to_vec());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_mseconds(pts_ms));
        }
        let _ = self.src.push_buffer(buffer);
    }

    /// Drain what is in flight (bounded) and stop. Blocking: call off the async runtime.
    pub fn finish(self) {
        let _ = self.src.end_of_stream();
        if let Some(bus) = self.pipeline.bus() {
            let _ = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(500),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            );
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for OpusToAac {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
