//! AAC (RTMP sources) → Opus (WebRTC) for a live session's WHEP viewers, in GStreamer: one
//! pipeline per stream, whatever the number of viewers, and only while it has viewers.
//!
//! ```text
//!  raw AAC frames (pts = session ms) --> appsrc ! avdec_aac ! audioconvert ! audioresample
//!      ! audio/x-raw,rate=48000,channels=2 ! opusenc ! appsink --> Sample::Audio (feed)
//! ```
//!
//! The appsink callback runs on a GStreamer streaming thread and only `try_send`s into the
//! feed ([`WhepFeed::send`]); the pipeline's life is [`AppPipeline`]'s.

use std::{sync::Arc, time::Duration};

use crate::codec::parse_aac_config;
use crate::pipeline::appsrc::AppPipeline;

use super::feed::{Sample, WhepFeed};

/// How long [`AacToOpus::finish`] waits for the frames in flight.
const DRAIN: Duration = Duration::from_millis(300);

/// A running AAC → Opus pipeline.
pub struct AacToOpus {
    pipeline: AppPipeline,
}

/// The pipeline for the AudioSpecificConfig `asc`; `Err` for AAC it cannot describe.
fn description(asc: &[u8]) -> Result<String, String> {
    let config = parse_aac_config(asc).map_err(|e| e.to_string())?;
    let hex: String = asc.iter().map(|b| format!("{b:02x}")).collect();
    let channels = config.channels.max(1);
    // 20 ms frames (WebRTC's usual packet time); audio-type=generic keeps music (a teacher's
    // demo) as well as speech; 64 kbit/s stereo is transparent for a lesson.
    Ok(format!(
        "appsrc name=src format=time is-live=true \
         caps=audio/mpeg,mpegversion=4,stream-format=raw,rate={},channels={},codec_data=(buffer){hex} \
         ! avdec_aac ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 \
         ! opusenc bitrate=64000 frame-size=20 ! appsink name=sink sync=false",
        config.sample_rate, channels
    ))
}

impl AacToOpus {
    /// Start a pipeline for AAC with the AudioSpecificConfig `asc`; Opus packets go to `feed`.
    pub fn start(asc: &[u8], feed: Arc<WhepFeed>) -> Result<AacToOpus, String> {
        let description = description(asc)?;
        let mut last_ms = 0u64;
        let pipeline = AppPipeline::start(
            "AAC → Opus",
            &description,
            DRAIN,
            move |_, buffer, opus| {
                let ms = buffer.pts().map_or(last_ms, |t| t.mseconds()).max(last_ms);
                last_ms = ms;
                feed.send(Sample::Audio {
                    data: Arc::from(opus),
                    ms,
                });
            },
        )?;
        Ok(AacToOpus { pipeline })
    }

    /// One raw AAC frame at `pts_ms` on the session clock.
    pub fn push(&self, aac: &[u8], pts_ms: u64) {
        self.pipeline.push(aac, pts_ms);
    }

    /// Drain what is in flight (bounded) and stop. Blocking: call off the async runtime.
    pub fn finish(self) {
        self.pipeline.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_carries_the_streams_config() {
        let d = description(&[0x12, 0x10]).unwrap(); // AAC-LC 44.1 kHz stereo
        assert!(
            d.contains("rate=44100,channels=2,codec_data=(buffer)1210"),
            "{d}"
        );
        assert!(description(&[]).is_err());
    }

    /// A real AAC stream (from GStreamer's own encoder) becomes Opus packets 20 ms apart.
    #[test]
    fn aac_from_an_encoder_becomes_opus() {
        use gstreamer as gst;
        use gstreamer::prelude::*;
        use gstreamer_app as gst_app;
        gst::init().unwrap();
        // 1 s of AAC-LC 48 kHz stereo from avenc_aac, as raw frames (what FLV carries).
        let enc = gst::parse::launch(
            "audiotestsrc num-buffers=47 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 \
             ! avenc_aac ! appsink name=sink sync=false",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let sink = enc
            .by_name("sink")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        enc.set_state(gst::State::Playing).unwrap();
        let mut frames = Vec::new();
        let mut asc = None;
        while let Ok(s) = sink.pull_sample() {
            if asc.is_none() {
                let caps = s.caps().unwrap().structure(0).unwrap().to_owned();
                asc = Some(caps.get::<gst::Buffer>("codec_data").unwrap());
            }
            let b = s.buffer().unwrap();
            let ms = b.pts().unwrap().mseconds();
            frames.push((b.map_readable().unwrap().to_vec(), ms));
        }
        enc.set_state(gst::State::Null).unwrap();
        let asc = asc.unwrap().map_readable().unwrap().to_vec();

        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let feed = WhepFeed::new(1, Arc::from(vec![tx]));
        feed.viewers[0].store(1, std::sync::atomic::Ordering::Relaxed);
        let t = AacToOpus::start(&asc, feed).unwrap();
        for (f, ms) in &frames {
            t.push(f, *ms);
        }
        t.finish();
        let mut times = Vec::new();
        while let Ok(m) = rx.try_recv() {
            match m.sample {
                Sample::Audio { data, ms } => {
                    // An Opus TOC byte: config 16..=31 is CELT (what opusenc's generic mode
                    // uses at 64 kbit/s) or 12..=15 hybrid; never an empty packet.
                    assert!(!data.is_empty());
                    times.push(ms);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(times.len() >= 40, "{} Opus packets", times.len());
        let steps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            steps.iter().filter(|s| (19..=21).contains(*s)).count() >= steps.len() - 2,
            "{steps:?}"
        );
    }
}
