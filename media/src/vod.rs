//! One-shot GStreamer jobs on finished recordings: the replay MP4 (a remux of the recording's
//! MPEG-TS segments, no re-encoding) and the poster JPEG. Both run a pipeline rendered from a
//! template in `pipelines/` to EOS, on the calling (blocking) thread, with a deadline.
//!
//! The MP4 template reads from `appsrc name=src`: the segments are fed in order from the
//! spool, so a recording of any length is remuxed without first being concatenated on disk.
//! Their timestamps form one continuous timeline (the live packager rebases every publisher of
//! a session onto it), so reconnects do not make the muxer see time go backwards.

use std::{
    io::Read,
    path::PathBuf,
    time::{Duration, Instant},
};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Feed `inputs` (in order) into the pipeline's `appsrc name=src`, if it has one, and run the
/// pipeline to EOS. Fails on a pipeline error or when `timeout` passes.
pub fn run_to_eos(description: &str, inputs: &[PathBuf], timeout: Duration) -> Result<(), String> {
    crate::init().map_err(|e| e.to_string())?;
    let pipeline = gst::parse::launch(description)
        .map_err(|e| format!("pipeline description: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the description is not a pipeline".to_string())?;
    let result = run(&pipeline, inputs, timeout);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn run(pipeline: &gst::Pipeline, inputs: &[PathBuf], timeout: Duration) -> Result<(), String> {
    let appsrc = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok());
    if let Some(src) = &appsrc {
        src.set_property("block", true);
        src.set_max_bytes(4 * 1024 * 1024);
        src.set_stream_type(gst_app::AppStreamType::Stream);
    }
    let bus = pipeline.bus().ok_or("pipeline without bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start the pipeline: {e}"))?;
    let feeder = appsrc.map(|src| {
        let inputs = inputs.to_vec();
        std::thread::Builder::new()
            .name("wm-vod-feed".into())
            .spawn(move || feed(&src, &inputs))
    });
    let deadline = Instant::now() + timeout;
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(format!("did not finish within {timeout:?}"));
        }
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(left.as_millis() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(err) => {
                break Err(format!(
                    "{} ({})",
                    err.error(),
                    err.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default()
                ));
            }
            _ => {}
        }
    };
    // Unblock a feeder stuck in a full appsrc, then collect its verdict.
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(Ok(handle)) = feeder {
        if let Ok(Err(e)) = handle.join() {
            if outcome.is_ok() {
                return Err(e);
            }
        }
    }
    outcome
}

fn feed(src: &gst_app::AppSrc, inputs: &[PathBuf]) -> Result<(), String> {
    let mut buf = vec![0u8; 1024 * 1024];
    for path in inputs {
        let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            if src
                .push_buffer(gst::Buffer::from_slice(buf[..n].to_vec()))
                .is_err()
            {
                // Flushing: the pipeline failed or was stopped; the bus says why.
                return Ok(());
            }
        }
    }
    let _ = src.end_of_stream();
    Ok(())
}
