//! VP8 (what browsers prefer to send) → H.264 (what HLS/MPEG-TS and the recordings carry) for
//! one WHIP session, in GStreamer. The pipeline is the `whip-vp8-h264` template under
//! `pipelines/` (ops may tune the encoder there):
//!
//! ```text
//!  VP8 frames (pts from RTP) --> appsrc name=src ! vp8dec ! videoconvert ! x264enc ...
//!      ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink
//!      --> H264Framer (sequence header + AVCC frames) --> the session's frame queue
//! ```
//!
//! Keyframes: the encoder is told to make one (a `GstForceKeyUnit` event travelling with the
//! frames) whenever a segment's worth of time has passed since the last one, so HLS segments
//! are cut at the configured duration whatever the publisher's own keyframe interval. The
//! publisher is only asked for VP8 keyframes (PLI) at the start and after a loss.
//!
//! The appsink callback runs on a GStreamer streaming thread: it only `try_send`s (a full queue
//! drops the frame, as the socket task does), never blocks, never panics. The pipeline's life
//! (build, push, drain, `Null`) is [`AppPipeline`]'s.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use gstreamer as gst;
use tokio::sync::mpsc;

use super::h264::H264Framer;
use crate::frame::{MediaFrame, StreamInfo};
use crate::pipeline::appsrc::AppPipeline;

/// How long [`Vp8ToH264::finish`] waits for the frames in flight (the encoder holds a few).
const DRAIN: Duration = Duration::from_millis(1000);

/// The size a VP8 keyframe announces (RFC 6386 §9.1), `None` for interframes or garbage.
pub fn keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    // 3-byte frame tag (bit 0 clear = keyframe), start code 9d 01 2a, 14-bit width, 14-bit height.
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3FFF;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3FFF;
    (w > 0 && h > 0).then_some((w as u32, h as u32))
}

/// A running VP8 → H.264 pipeline.
pub struct Vp8ToH264 {
    pipeline: AppPipeline,
    segment_ms: u64,
    /// Input time at or after which the next frame is encoded as a keyframe.
    next_keyframe_ms: Option<u64>,
}

impl Vp8ToH264 {
    /// Build and start `description` (the rendered template); H.264 frames go to `frames`.
    /// `info` is the session's stream description: the encoder's profile and level are put in
    /// it and a `Metadata` frame sent when its SPS first appears or changes.
    pub fn start(
        description: &str,
        segment: Duration,
        frames: mpsc::Sender<MediaFrame>,
        info: Arc<Mutex<StreamInfo>>,
    ) -> Result<Vp8ToH264, String> {
        let mut framer = H264Framer::default();
        let mut last_ms = 0u64;
        let mut dropped = 0u64;
        let on_sample = move |sample: &gst::Sample, buffer: &gst::BufferRef, h264: &[u8]| {
            // x264enc with tune=zerolatency has no B-frames: DTS = PTS. It shifts timestamps by
            // 1000 h (so DTS never goes negative) and its segment with them: the running time
            // is the input's time.
            let running = sample
                .segment()
                .and_then(|s| s.downcast_ref::<gst::ClockTime>())
                .and_then(|s| buffer.pts().and_then(|p| s.to_running_time(p)));
            let ms = running.map_or(last_ms, |t| t.mseconds()).max(last_ms);
            last_ms = ms;
            let before = framer.profile;
            for f in framer.push(h264, ms) {
                if frames.try_send(MediaFrame::Video(f)).is_err() {
                    dropped += 1;
                    if dropped % 100 == 1 {
                        tracing::warn!(dropped, "WHIP frame queue full: dropping video");
                    }
                }
            }
            if framer.profile != before
                && let (Some((p, l)), Ok(mut i)) = (framer.profile, info.lock())
            {
                i.video_profile = Some(p);
                i.video_level = Some(l);
                let _ = frames.try_send(MediaFrame::Metadata(i.clone()));
            }
        };
        let pipeline = AppPipeline::start("VP8 → H.264", description, DRAIN, on_sample)?;
        Ok(Vp8ToH264 {
            pipeline,
            segment_ms: (segment.as_millis() as u64).max(1),
            next_keyframe_ms: None,
        })
    }

    /// One VP8 frame at `pts_ms` on the session clock.
    pub fn push(&mut self, vp8: &[u8], pts_ms: u64) {
        if self.next_keyframe_ms.is_none_or(|k| pts_ms >= k) {
            // Serialized with the data: the encoder makes this frame (or the next) a keyframe.
            let s = gst::Structure::builder("GstForceKeyUnit")
                .field("all-headers", true)
                .field("count", 0u32)
                .build();
            self.pipeline
                .send_event(gst::event::CustomDownstream::new(s));
            self.next_keyframe_ms = Some(pts_ms + self.segment_ms);
        }
        self.pipeline.push(vp8, pts_ms);
    }

    /// Drain what is in flight (bounded) and stop. Blocking: call off the async runtime.
    pub fn finish(self) {
        self.pipeline.finish();
    }
}

#[cfg(test)]
mod tests {
    use gstreamer::prelude::*;
    use gstreamer_app as gst_app;

    use super::*;

    #[test]
    fn keyframe_headers_give_the_picture_size() {
        // Frame tag of a keyframe (show_frame, first partition size), start code, 640 x 480
        // with the 2-bit scale fields set (they are not part of the size).
        let kf = [
            0x50, 0x2d, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x42, 0xe0, 0xc1, 0x00,
        ];
        assert_eq!(keyframe_size(&kf), Some((640, 480)));
        let mut inter = kf;
        inter[0] |= 1;
        assert_eq!(keyframe_size(&inter), None);
        assert_eq!(keyframe_size(&kf[..8]), None);
    }

    /// A real encoder's VP8 through the shipped template: H.264 frames come out, the first
    /// with a sequence header, keyframes at the segment interval.
    #[tokio::test(flavor = "multi_thread")]
    async fn vp8_from_vp8enc_becomes_h264_with_keyframes_every_segment() {
        crate::init().unwrap();
        if gst::ElementFactory::find("vp8enc").is_none()
            || gst::ElementFactory::find("x264enc").is_none()
        {
            panic!("vp8enc and x264enc are needed (scripts/test installs the plugins)");
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
        let set = crate::pipeline::TemplateSet::load_dir(&dir).unwrap();
        let desc = set
            .get("whip-vp8-h264")
            .unwrap()
            .render(&Default::default())
            .unwrap();
        // 3 s of 320x240 at 30 fps from vp8enc, one VP8 keyframe only (at the start).
        let enc = gst::parse::launch(
            "videotestsrc num-buffers=90 pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 \
             ! vp8enc deadline=1 keyframe-max-dist=1000 ! appsink name=out sync=false",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let out = enc
            .by_name("out")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        enc.set_state(gst::State::Playing).unwrap();
        let mut vp8 = Vec::new();
        while let Ok(s) = out.pull_sample() {
            let b = s.buffer().unwrap();
            vp8.push((
                b.map_readable().unwrap().to_vec(),
                b.pts().unwrap().mseconds(),
            ));
        }
        enc.set_state(gst::State::Null).unwrap();
        assert_eq!(vp8.len(), 90);
        assert_eq!(keyframe_size(&vp8[0].0), Some((320, 240)));

        let (tx, mut rx) = mpsc::channel(1000);
        let info = Arc::new(Mutex::new(StreamInfo::default()));
        let mut t = Vp8ToH264::start(&desc, Duration::from_secs(1), tx, info.clone()).unwrap();
        for (data, ms) in &vp8 {
            t.push(data, *ms);
        }
        tokio::task::spawn_blocking(move || t.finish())
            .await
            .unwrap();
        let mut video = Vec::new();
        let mut metadata = 0;
        while let Ok(f) = rx.try_recv() {
            match f {
                MediaFrame::Video(v) => video.push(v),
                MediaFrame::Metadata(_) => metadata += 1,
                _ => {}
            }
        }
        assert!(video[0].sequence_header, "a sequence header first");
        assert_eq!(metadata, 1);
        assert!(info.lock().unwrap().video_profile.is_some());
        let frames: Vec<_> = video.iter().filter(|v| !v.sequence_header).collect();
        assert!(frames.len() >= 85, "{} frames out of 90", frames.len());
        let keys: Vec<u64> = frames
            .iter()
            .filter(|v| v.keyframe)
            .map(|v| v.dts_ms)
            .collect();
        // Forced at 0, ~1000, ~2000 ms (one VP8 keyframe in; x264's own interval is longer).
        assert_eq!(keys[0], frames[0].dts_ms);
        for forced in [1000, 2000] {
            assert!(
                keys.iter().any(|k| (forced..forced + 40).contains(k)),
                "no keyframe forced at {forced} ms: keyframes at {keys:?}"
            );
        }
        assert!(keys.len() <= 4, "keyframes at {keys:?}");
    }
}
