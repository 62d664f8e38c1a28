//! A running transcoding pipeline fed by us and read by us: `appsrc name=src ! … ! appsink
//! name=sink`. WHIP's Opus → AAC and VP8 → H.264 transcoders are two of these; each only says
//! what goes in (the description, the timestamps it pushes) and what to do with a sample.
//!
//! ```text
//!  push(bytes, pts_ms) / send_event ──> appsrc name=src ! (the description) ! appsink name=sink
//!                                                  on_sample(sample, buffer, bytes) <──┘
//!                                                  (a GStreamer streaming thread)
//!  finish(): end-of-stream, wait (bounded) for EOS or an error on the bus, then Null
//!  drop: Null
//! ```
//!
//! Invariants: the pipeline always goes back to `Null` (in [`AppPipeline::finish`], on drop and
//! when starting fails halfway); `on_sample` runs on a streaming thread, so it must not block (a
//! full channel is a `try_send` that drops) and must not panic. The helper only reads samples it
//! can map: a sample without a readable buffer is skipped, as before.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// A started `appsrc ! … ! appsink` pipeline. Dropping it stops it without draining.
pub struct AppPipeline {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    /// How long [`AppPipeline::finish`] waits for what is in flight.
    drain: Duration,
}

impl AppPipeline {
    /// Build `description` (which must name an `appsrc name=src` and an `appsink name=sink`),
    /// hand every output sample to `on_sample` and start it. `what` names the pipeline in
    /// errors (`"Opus → AAC"`); `drain` bounds [`AppPipeline::finish`].
    pub fn start<F>(
        what: &str,
        description: &str,
        drain: Duration,
        mut on_sample: F,
    ) -> Result<AppPipeline, String>
    where
        F: FnMut(&gst::Sample, &gst::BufferRef, &[u8]) + Send + 'static,
    {
        gst::init().map_err(|e| e.to_string())?;
        let pipeline = gst::parse::launch(description)
            .map_err(|e| format!("cannot build the {what} pipeline: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| format!("the {what} description is not a pipeline"))?;
        // From here on, an early return drops `this`, which sets the pipeline to Null.
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| format!("the {what} pipeline has no `appsrc name=src`"))?;
        let this = AppPipeline {
            pipeline,
            src,
            drain,
        };
        let sink = this
            .pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| format!("the {what} pipeline has no `appsink name=sink`"))?;
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
                    on_sample(&sample, buffer, &map);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        this.pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("cannot start the {what} pipeline: {e}"))?;
        Ok(this)
    }

    /// One input buffer (copied) with its presentation time in ms on the session clock. A
    /// refused push (the pipeline failed or is stopping) is dropped: the bus says why.
    pub fn push(&self, data: &[u8], pts_ms: u64) {
        let mut buffer = gst::Buffer::from_slice(data.to_vec());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_mseconds(pts_ms));
        }
        let _ = self.src.push_buffer(buffer);
    }

    /// Send `event` downstream from the source, serialized with the buffers pushed so far.
    pub fn send_event(&self, event: gst::Event) {
        self.src.send_event(event);
    }

    /// Drain what is in flight (waiting at most the `drain` given to [`AppPipeline::start`]
    /// for end-of-stream or an error) and stop. Blocking: call off the async runtime.
    pub fn finish(self) {
        let _ = self.src.end_of_stream();
        if let Some(bus) = self.pipeline.bus() {
            let _ = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(self.drain.as_millis() as u64),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            );
        }
        // Drop sets the pipeline to Null.
    }
}

impl Drop for AppPipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
