//! One publisher's pipeline: frames from the ingest (RTMP today, WHIP later) → FLV → the
//! `live-hls` GStreamer pipeline → MPEG-TS segments in the session's spool directory.
//!
//! ```text
//!  frames (mpsc) --> pump (blocking thread) --FLV bytes--> appsrc ! flvdemux ! ... ! splitmuxsink
//!                                                                              |
//!  PublisherEvent (mpsc) <-- bus thread: fragment closed / EOS / error <-------+
//! ```
//!
//! The pump waits for the first video keyframe before it starts the pipeline (so every
//! segment starts decodable and the audio/video layout is known), pushes with back-pressure
//! (appsrc `block=true`: a slow pipeline slows the publisher's TCP, not our memory), and at the
//! end sends EOS so the last segment is closed properly, then takes the pipeline to `Null`.
//! GStreamer never runs on the async runtime's threads.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

use crate::rtmp::{AudioFrame, EndReason, MediaFrame, StreamInfo, VideoCodec, VideoFrame};

/// The two rendered pipeline descriptions a publisher may need.
#[derive(Debug, Clone)]
pub struct PublisherPipelines {
    /// H.264 + AAC.
    pub audio_video: String,
    /// H.264 only.
    pub video_only: String,
}

/// What happens to a publisher's pipeline, in order: `Started`, any number of
/// `SegmentClosed`, then exactly one `Ended`.
#[derive(Debug, Clone, PartialEq)]
pub enum PublisherEvent {
    Started {
        has_audio: bool,
    },
    SegmentClosed {
        path: PathBuf,
        duration_ns: u64,
    },
    Ended {
        reason: EndReason,
        error: Option<String>,
    },
}

/// Counters the session reads while the publisher runs.
#[derive(Debug, Default)]
pub struct PublisherStats {
    pub bytes_in: AtomicU64,
    pub video_frames: AtomicU64,
    pub audio_frames: AtomicU64,
    pub info: Mutex<Option<StreamInfo>>,
}

/// Frames buffered while waiting for the first keyframe; past this only headers are kept.
const MAX_PRE_KEYFRAME: usize = 2_000;
/// How long the pipeline may take to drain at the end before it is stopped anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Run a publisher's pipeline on a blocking thread until its frames end.
pub fn spawn_publisher(
    pipelines: PublisherPipelines,
    frames: mpsc::Receiver<MediaFrame>,
    events: mpsc::UnboundedSender<PublisherEvent>,
    stats: Arc<PublisherStats>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let (reason, error) = run(pipelines, frames, &events, &stats);
        let _ = events.send(PublisherEvent::Ended { reason, error });
    })
}

fn run(
    pipelines: PublisherPipelines,
    mut frames: mpsc::Receiver<MediaFrame>,
    events: &mpsc::UnboundedSender<PublisherEvent>,
    stats: &PublisherStats,
) -> (EndReason, Option<String>) {
    // 1. Wait for the first keyframe.
    let mut pending: Vec<MediaFrame> = Vec::new();
    let mut has_audio = false;
    loop {
        let Some(frame) = frames.blocking_recv() else {
            return (EndReason::PublisherClosed, None);
        };
        account(stats, &frame);
        match &frame {
            MediaFrame::End(reason) => return (reason.clone(), None),
            MediaFrame::Metadata(info) => {
                if let Ok(mut i) = stats.info.lock() {
                    *i = Some(info.clone());
                }
            }
            MediaFrame::Audio(_) => has_audio = true,
            MediaFrame::Video(v) if v.codec != VideoCodec::H264 => {
                return (
                    EndReason::ProtocolError(format!(
                        "unsupported video codec {:?}: H.264 is required",
                        v.codec
                    )),
                    None,
                );
            }
            MediaFrame::Video(_) => {}
        }
        let is_keyframe =
            matches!(&frame, MediaFrame::Video(v) if v.keyframe && !v.sequence_header);
        pending.push(frame);
        if is_keyframe {
            break;
        }
        if pending.len() > MAX_PRE_KEYFRAME {
            pending.retain(|f| match f {
                MediaFrame::Video(v) => v.sequence_header,
                MediaFrame::Audio(a) => a.sequence_header,
                _ => true,
            });
        }
    }

    // 2. Start the pipeline.
    let description = if has_audio {
        &pipelines.audio_video
    } else {
        &pipelines.video_only
    };
    let running = match Running::start(description, events.clone()) {
        Ok(r) => r,
        Err(e) => {
            return (
                EndReason::ProtocolError("pipeline failed to start".into()),
                Some(e),
            );
        }
    };
    let _ = events.send(PublisherEvent::Started { has_audio });
    let mut result = (EndReason::PublisherClosed, None);
    let mut ok = running.push(flv_header(has_audio));
    for frame in pending {
        if ok {
            ok = push_frame(&running, &frame, has_audio);
        }
    }

    // 3. Pump until the publisher ends or the pipeline fails.
    while ok {
        let Some(frame) = frames.blocking_recv() else {
            break;
        };
        account(stats, &frame);
        match frame {
            MediaFrame::End(reason) => {
                result.0 = reason;
                break;
            }
            MediaFrame::Metadata(info) => {
                if let Ok(mut i) = stats.info.lock() {
                    *i = Some(info);
                }
            }
            frame => ok = push_frame(&running, &frame, has_audio),
        }
    }
    drop(frames);

    // 4. Drain: EOS closes the last segment; then Null whatever happened.
    let error = running.finish();
    result.1 = error;
    result
}

fn account(stats: &PublisherStats, frame: &MediaFrame) {
    match frame {
        MediaFrame::Video(v) => {
            stats
                .bytes_in
                .fetch_add(v.data.len() as u64, Ordering::Relaxed);
            stats.video_frames.fetch_add(1, Ordering::Relaxed);
        }
        MediaFrame::Audio(a) => {
            stats
                .bytes_in
                .fetch_add(a.data.len() as u64, Ordering::Relaxed);
            stats.audio_frames.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

fn push_frame(running: &Running, frame: &MediaFrame, has_audio: bool) -> bool {
    match frame {
        MediaFrame::Video(VideoFrame { dts_ms, data, .. }) => {
            running.push(flv_tag(9, *dts_ms, data))
        }
        // Audio that starts after the pipeline was built without an audio branch is dropped.
        MediaFrame::Audio(AudioFrame { dts_ms, data, .. }) if has_audio => {
            running.push(flv_tag(8, *dts_ms, data))
        }
        _ => true,
    }
}

/// The 9-byte FLV header and the first PreviousTagSize (0).
pub fn flv_header(has_audio: bool) -> Bytes {
    let flags = 0x01 | if has_audio { 0x04 } else { 0 };
    Bytes::from(vec![b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0])
}

/// One FLV tag (header, body, PreviousTagSize). Timestamps past 2^32 ms wrap, as FLV does.
pub fn flv_tag(tag_type: u8, ts_ms: u64, body: &[u8]) -> Bytes {
    let ts = ts_ms as u32;
    let size = body.len() as u32;
    let mut b = BytesMut::with_capacity(11 + body.len() + 4);
    b.put_u8(tag_type);
    b.put_uint(u64::from(size & 0x00FF_FFFF), 3);
    b.put_uint(u64::from(ts & 0x00FF_FFFF), 3);
    b.put_u8((ts >> 24) as u8);
    b.put_uint(0, 3);
    b.put_slice(body);
    b.put_u32(11 + size);
    b.freeze()
}

/// A running pipeline and the thread that watches its bus.
struct Running {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    done: std::sync::mpsc::Receiver<Option<String>>,
    bus_thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(
        description: &str,
        events: mpsc::UnboundedSender<PublisherEvent>,
    ) -> Result<Running, String> {
        crate::init().map_err(|e| e.to_string())?;
        let pipeline = gst::parse::launch(description)
            .map_err(|e| format!("pipeline description: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "the description is not a pipeline".to_string())?;
        let appsrc = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or("the pipeline has no appsrc named src")?;
        let bus = pipeline.bus().ok_or("pipeline without bus")?;
        let (done_tx, done) = std::sync::mpsc::channel();
        let bus_thread = std::thread::Builder::new()
            .name("wm-live-bus".into())
            .spawn(move || watch_bus(bus, events, done_tx))
            .map_err(|e| e.to_string())?;
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(format!("cannot start the pipeline: {e}"));
        }
        Ok(Running {
            pipeline,
            appsrc,
            done,
            bus_thread: Some(bus_thread),
        })
    }

    /// Push bytes; false once the pipeline no longer accepts data (error or flushing).
    fn push(&self, bytes: Bytes) -> bool {
        self.appsrc
            .push_buffer(gst::Buffer::from_slice(bytes))
            .is_ok()
    }

    /// EOS, wait for the pipeline to drain (bounded), then `Null`. Returns the error, if any.
    fn finish(mut self) -> Option<String> {
        let _ = self.appsrc.end_of_stream();
        let error = match self.done.recv_timeout(DRAIN_TIMEOUT) {
            Ok(err) => err,
            Err(_) => Some("the pipeline did not drain in time".into()),
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(bus) = self.pipeline.bus() {
            // Wake the bus thread if it is still waiting.
            let _ = bus.post(gst::message::Application::new(gst::Structure::new_empty(
                "wm-stop",
            )));
        }
        if let Some(t) = self.bus_thread.take() {
            let _ = t.join();
        }
        error
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Forward segment boundaries; report EOS (`None`) or the first error (`Some`), then stop.
fn watch_bus(
    bus: gst::Bus,
    events: mpsc::UnboundedSender<PublisherEvent>,
    done: std::sync::mpsc::Sender<Option<String>>,
) {
    let mut opened_at: Option<u64> = None;
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Element(el) => {
                let Some(s) = el.structure() else { continue };
                match s.name().as_str() {
                    "splitmuxsink-fragment-opened" => opened_at = s.get::<u64>("running-time").ok(),
                    "splitmuxsink-fragment-closed" => {
                        let end = s.get::<u64>("running-time").unwrap_or(0);
                        let start = opened_at.take().unwrap_or(0);
                        if let Ok(location) = s.get::<String>("location") {
                            let _ = events.send(PublisherEvent::SegmentClosed {
                                path: PathBuf::from(location),
                                duration_ns: end.saturating_sub(start),
                            });
                        }
                    }
                    _ => {}
                }
            }
            gst::MessageView::Eos(_) => {
                let _ = done.send(None);
                return;
            }
            gst::MessageView::Error(err) => {
                let text = format!(
                    "{} ({})",
                    err.error(),
                    err.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default()
                );
                tracing::warn!(error = %text, "live pipeline error");
                let _ = done.send(Some(text));
                return;
            }
            gst::MessageView::Application(a)
                if a.structure().is_some_and(|s| s.name() == "wm-stop") =>
            {
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flv_tags_are_laid_out_as_the_spec_says() {
        let tag = flv_tag(9, 0x0123_4567, &[0x17, 0x01]);
        assert_eq!(tag.len(), 11 + 2 + 4);
        assert_eq!(tag[0], 9);
        assert_eq!(&tag[1..4], &[0, 0, 2]);
        assert_eq!(&tag[4..7], &[0x23, 0x45, 0x67]);
        assert_eq!(tag[7], 0x01);
        assert_eq!(&tag[13..17], &13u32.to_be_bytes());
        assert_eq!(flv_header(false)[4], 0x01);
        assert_eq!(flv_header(true)[4], 0x05);
    }
}
