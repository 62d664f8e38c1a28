//! One-shot GStreamer jobs on finished recordings: the replay MP4 (a remux of the recording's
//! MPEG-TS segments, no re-encoding) and the poster JPEG. Both run a pipeline rendered from a
//! template in `pipelines/` to EOS, on the calling (blocking) thread, with a deadline.
//!
//! The MP4 template reads from `appsrc name=src`: the segments are fed in order from the
//! spool, so a recording of any length is remuxed without first being concatenated on disk.
//! Their timestamps form one continuous timeline (the live packager rebases every publisher of
//! a session onto it), so reconnects do not make the muxer see time go backwards.
//!
//! A recording whose picture size changes (a WebRTC publisher ramps from 320×180 to 1280×720)
//! cannot keep one `avc1` sample description: `mp4mux` keeps the first, and decoders then
//! read the later pictures with the wrong parameters. [`picture_size`] tells the service the
//! size each segment starts with, so it can pick the template that writes `avc3` (parameter
//! sets in band, so every size decodes) with the final size in the track header.

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

/// The picture size of the first SPS in the first video access unit of an MPEG-TS segment
/// as the live packager writes it (PAT/PMT, then an IDR with its parameter sets); `None` when
/// the segment does not start with one (a cut forced by the maximum segment length).
pub fn picture_size(path: &std::path::Path) -> Option<(u32, u32)> {
    let mut head = vec![0u8; 256 * 1024];
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = 0;
    while len < head.len() {
        match file.read(&mut head[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    first_sps_size(&head[..len - len % crate::ts::PACKET_SIZE])
}

/// [`picture_size`] on bytes.
pub fn first_sps_size(ts: &[u8]) -> Option<(u32, u32)> {
    let au = first_access_unit(ts)?;
    // The SPS comes before the first slice.
    for nal in annexb_nal_units(&au) {
        match nal.first().map(|b| b & 0x1F) {
            Some(7) => {
                let info = crate::sps::parse(nal)?;
                return Some((info.width, info.height));
            }
            Some(1 | 5) => return None,
            _ => {}
        }
    }
    None
}

/// The Annex B bytes of the first video PES of an MPEG-TS stream as [`crate::ts`] writes it
/// (one access unit per PES), if there is one.
pub fn first_access_unit(ts: &[u8]) -> Option<Vec<u8>> {
    let mut pes = Vec::new();
    for p in ts.chunks_exact(crate::ts::PACKET_SIZE) {
        let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        if p[0] != 0x47 || pid != crate::ts::PID_VIDEO {
            continue;
        }
        let start = p[1] & 0x40 != 0;
        if start && !pes.is_empty() {
            break;
        }
        if !start && pes.is_empty() {
            continue;
        }
        let mut pos = 4;
        if p[3] & 0x20 != 0 {
            pos += 1 + usize::from(p[4]);
        }
        if p[3] & 0x10 != 0 && pos < p.len() {
            pes.extend_from_slice(&p[pos..]);
        }
    }
    let header_len = 9 + usize::from(*pes.get(8)?);
    pes.get(header_len..).map(<[u8]>::to_vec)
}

/// The NAL units of Annex B bytes (between start codes; a 4-byte start code's leading zero
/// stays on the previous unit, which parsers ignore as trailing data).
pub fn annexb_nal_units(au: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= au.len() {
        if au[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(n, &at)| {
            let end = starts.get(n + 1).map_or(au.len(), |&next| next - 3);
            &au[at..end.max(at)]
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use crate::codec::VideoCodec;
    use crate::frame::{MediaFrame, VideoFrame};
    use crate::packager::{Packager, SegmentLimits, Step};

    /// x264's SPS for 320×180 and its PPS.
    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x06, 0x7e, 0x7c, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00,
        0x40, 0x00, 0x00, 0x0f, 0x03, 0xc5, 0x0a, 0xa8,
    ];
    const PPS: &[u8] = &[0x68, 0xce, 0x0f, 0xc8];

    fn frame(body: Vec<u8>, dts_ms: u64, keyframe: bool, header: bool) -> MediaFrame {
        MediaFrame::Video(VideoFrame {
            dts_ms,
            cts_ms: 0,
            keyframe,
            sequence_header: header,
            codec: VideoCodec::H264,
            data: Bytes::from(body),
        })
    }

    #[test]
    fn the_picture_size_of_a_segment_comes_from_its_first_sps() {
        let mut record = vec![
            0x17,
            0,
            0,
            0,
            0,
            1,
            0x42,
            0xc0,
            0x0d,
            0xFF,
            0xE1,
            0,
            SPS.len() as u8,
        ];
        record.extend_from_slice(SPS);
        record.extend_from_slice(&[1, 0, PPS.len() as u8]);
        record.extend_from_slice(PPS);
        let idr = vec![0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x84];
        let limits = SegmentLimits {
            target: Duration::from_secs(2),
            max: Duration::from_secs(4),
        };
        let mut p = Packager::new(limits, 0, 0);
        p.push(frame(record, 0, true, true)).unwrap();
        assert!(matches!(
            p.push(frame(idr, 0, true, false)).unwrap(),
            Step::Started { .. }
        ));
        p.finish();
        let mut ts = Vec::new();
        p.take_output(&mut ts);
        assert_eq!(super::first_sps_size(&ts), Some((320, 180)));
        // A segment that starts without parameter sets (a forced cut) has no size to tell.
        let mut p = Packager::new(limits, 0, 0);
        let mut record = vec![0x17, 0, 0, 0, 0, 1, 0x42, 0xc0, 0x0d, 0xFF, 0xE0];
        record.extend_from_slice(&[1, 0, PPS.len() as u8]);
        record.extend_from_slice(PPS);
        p.push(frame(record, 0, true, true)).unwrap();
        p.push(frame(
            vec![0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x84],
            0,
            true,
            false,
        ))
        .unwrap();
        p.finish();
        p.take_output(&mut ts);
        assert_eq!(super::first_sps_size(&ts), None);
        assert_eq!(super::first_sps_size(&[]), None);
    }
}
