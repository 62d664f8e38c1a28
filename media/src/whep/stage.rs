//! One publisher's WHEP stage inside its [`crate::live::LiveOutput`]: the same frames the HLS
//! packagers get, turned into what WebRTC viewers take — H.264 access units from AVCC to Annex B
//! (parameter sets in front of every IDR), AAC through [`AacToOpus`] — once per stream, and
//! only while the feed has viewers. A stream nobody watches over WHEP costs an atomic load per
//! frame (and a copy of each sequence header).
//!
//! Timestamps stay the publisher's own (DTS + composition offset): the clock a WHIP session's
//! Opus, passed to the feed beside this stage, is stamped with too, so audio and video of one
//! publisher line up. A publisher that replaces another starts another clock; the socket task
//! re-anchors its RTP time at that jump (`whip::viewer::FeedState::clock`).

use std::{sync::Arc, time::Duration, time::Instant};

use bytes::Bytes;

use crate::codec::{VideoCodec, avc_has_idr};
use crate::flv;
use crate::frame::MediaFrame;
use crate::ts::{AvcParams, avcc_to_annexb};

use super::audio::AacToOpus;
use super::feed::{Sample, WhepFeed};

/// How long the AAC → Opus pipeline outlives the last viewer (a viewer reloading its page
/// should not pay for a new pipeline).
const TRANSCODER_IDLE: Duration = Duration::from_secs(15);

/// What a publisher's output needs to feed a session's WHEP viewers.
#[derive(Debug, Clone)]
pub struct WhepOutput {
    pub feed: Arc<WhepFeed>,
    /// The ingest hands its Opus to the feed itself (WHIP): no AAC → Opus here.
    pub opus_from_ingest: bool,
}

pub struct WhepStage {
    feed: Arc<WhepFeed>,
    opus_from_ingest: bool,
    /// The last AVCDecoderConfigurationRecord (FLV body) and its parsed form, once needed.
    avc_record: Option<Bytes>,
    params: Option<AvcParams>,
    /// The last AudioSpecificConfig.
    asc: Option<Bytes>,
    transcoder: Option<AacToOpus>,
    /// When the feed was last seen without viewers while the transcoder ran.
    idle_since: Option<Instant>,
    buf: Vec<u8>,
}

impl WhepStage {
    pub fn new(output: WhepOutput) -> WhepStage {
        WhepStage {
            feed: output.feed,
            opus_from_ingest: output.opus_from_ingest,
            avc_record: None,
            params: None,
            asc: None,
            transcoder: None,
            idle_since: None,
            buf: Vec::new(),
        }
    }

    pub fn push(&mut self, frame: &MediaFrame) {
        match frame {
            MediaFrame::Video(v) if v.codec == VideoCodec::H264 && v.sequence_header => {
                self.avc_record = Some(v.data.clone());
                self.params = None;
            }
            // A new configuration needs a new pipeline.
            MediaFrame::Audio(a) if a.sequence_header && self.asc.as_ref() != Some(&a.data) => {
                self.asc = Some(a.data.clone());
                self.stop_transcoder();
            }
            _ => {}
        }
        let watched = self.feed.has_viewers();
        if !watched {
            if self.transcoder.is_some() {
                let since = *self.idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= TRANSCODER_IDLE {
                    self.stop_transcoder();
                }
            }
            return;
        }
        self.idle_since = None;
        match frame {
            MediaFrame::Video(v) if v.codec == VideoCodec::H264 && !v.sequence_header => {
                self.video(&v.data, v.dts_ms, v.cts_ms);
            }
            MediaFrame::Audio(a) if !a.sequence_header && !self.opus_from_ingest => {
                self.audio(&a.data, a.dts_ms);
            }
            _ => {}
        }
    }

    fn video(&mut self, body: &[u8], dts_ms: u64, cts_ms: i32) {
        if self.params.is_none() {
            self.params = self.avc_record.as_ref().and_then(|r| {
                let tag = flv::parse_video(r).ok()?;
                AvcParams::from_record(r.get(tag.payload_offset..)?).ok()
            });
        }
        let Some(params) = &self.params else { return };
        let Some(nalus) = flv::parse_video(body)
            .ok()
            .and_then(|tag| body.get(tag.payload_offset..))
        else {
            return;
        };
        let keyframe = avc_has_idr(nalus, params.nal_length_size);
        self.buf.clear();
        if avcc_to_annexb(&mut self.buf, nalus, params, keyframe).is_err() {
            return;
        }
        let pts = dts_ms.saturating_add_signed(i64::from(cts_ms));
        self.feed.send(Sample::Video {
            data: Arc::from(&self.buf[..]),
            ms: pts,
            keyframe,
        });
    }

    fn audio(&mut self, body: &[u8], dts_ms: u64) {
        // Raw AAC only (FLV sound format 10, packet type 1).
        if body.first().map(|b| b >> 4) != Some(10) {
            return;
        }
        let Some(aac) = body.get(2..) else { return };
        if self.transcoder.is_none() {
            let Some(asc) = self.asc.as_ref().and_then(|a| a.get(2..)) else {
                return;
            };
            match AacToOpus::start(asc, self.feed.clone()) {
                Ok(t) => self.transcoder = Some(t),
                Err(e) => {
                    // Video still flows; try again with the next configuration.
                    tracing::error!(error = %e, "WHEP AAC → Opus transcoder unavailable");
                    self.asc = None;
                    return;
                }
            }
        }
        if let Some(t) = &self.transcoder {
            t.push(aac, dts_ms);
        }
    }

    fn stop_transcoder(&mut self) {
        self.idle_since = None;
        if let Some(t) = self.transcoder.take() {
            // Stopping waits on GStreamer's threads: not on the publisher's task.
            std::thread::spawn(move || drop(t));
        }
    }

    /// The publisher is gone. The feed stays (it is the session's).
    pub fn finish(&mut self) {
        self.stop_transcoder();
    }
}

/// Fuzzing entry: bytes → frames (records as [`crate::frame::fuzz_records`] reads them; kind
/// bit 0 audio, bit 1 or packet type 0 a sequence header, the body as the publisher's FLV tag
/// body) into a
/// [`WhepStage`] with a viewer (Opus from the ingest: no GStreamer). A publisher's bytes reach
/// the stage unchecked beyond the FLV head: it must never panic, and every video sample it
/// sends is an Annex B access unit (starting with its access unit delimiter). Returns how many
/// video samples were sent (the smoke test checks that the conversion is reached).
#[doc(hidden)]
pub fn fuzz_whep_stage(data: &[u8]) -> usize {
    let mut sent = 0;
    use crate::codec::AudioCodec;
    use crate::frame::{AudioFrame, VideoFrame};
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let feed = WhepFeed::new(1, Arc::from(vec![tx]));
    feed.viewers[0].store(1, std::sync::atomic::Ordering::Relaxed);
    let mut stage = WhepStage::new(WhepOutput {
        feed,
        opus_from_ingest: true,
    });
    for (kind, dts, raw) in crate::frame::fuzz_records(data) {
        // As the packagers' fuzz entries read it (packet type 0), or forced by kind bit 1.
        let sequence_header = kind & 2 != 0 || raw.get(1) == Some(&0);
        let frame = if kind & 1 != 0 {
            MediaFrame::Audio(AudioFrame {
                dts_ms: dts,
                sequence_header,
                codec: AudioCodec::Aac,
                data: Bytes::copy_from_slice(raw),
            })
        } else {
            MediaFrame::Video(VideoFrame {
                dts_ms: dts,
                cts_ms: i32::from(kind as i8 >> 2),
                keyframe: kind & 4 != 0,
                sequence_header,
                codec: VideoCodec::H264,
                data: Bytes::copy_from_slice(raw),
            })
        };
        stage.push(&frame);
        while let Ok(msg) = rx.try_recv() {
            if let Sample::Video { data, .. } = msg.sample {
                assert!(data.starts_with(&[0, 0, 0, 1, 9]), "{data:02x?}");
                sent += 1;
            }
        }
    }
    stage.finish();
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VideoFrame;

    fn video(dts_ms: u64, keyframe: bool, sequence_header: bool, data: Vec<u8>) -> MediaFrame {
        MediaFrame::Video(VideoFrame {
            dts_ms,
            cts_ms: 0,
            keyframe,
            sequence_header,
            codec: VideoCodec::H264,
            data: Bytes::from(data),
        })
    }

    /// FLV AVC sequence header with one SPS (`67 42 ..`) and one PPS (`68 ..`).
    fn record() -> Vec<u8> {
        let mut r = vec![0x17, 0, 0, 0, 0];
        r.extend_from_slice(&[
            1, 0x42, 0xC0, 0x1F, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1F,
        ]);
        r.extend_from_slice(&[1, 0, 2, 0x68, 0xCE]);
        r
    }

    fn frame(nal_type: u8) -> Vec<u8> {
        let mut f = vec![0x17, 1, 0, 0, 0];
        f.extend_from_slice(&[0, 0, 0, 3, 0x60 | nal_type, 0xAA, 0xBB]);
        f
    }

    #[test]
    fn nothing_is_sent_without_viewers_and_idrs_carry_the_parameter_sets_with_them() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let feed = WhepFeed::new(7, Arc::from(vec![tx]));
        let mut stage = WhepStage::new(WhepOutput {
            feed: feed.clone(),
            opus_from_ingest: true,
        });
        stage.push(&video(1_000, true, true, record()));
        stage.push(&video(1_000, true, false, frame(5)));
        assert!(rx.try_recv().is_err(), "no viewer, nothing sent");

        feed.viewers[0].store(1, std::sync::atomic::Ordering::Relaxed);
        stage.push(&video(1_033, false, false, frame(1)));
        stage.push(&video(3_000, true, false, frame(5)));
        let msgs: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(msgs.len(), 2);
        let Sample::Video { data, ms, keyframe } = &msgs[0].sample else {
            panic!()
        };
        // The publisher's own clock, as its Opus is stamped.
        assert_eq!((*ms, *keyframe), (1_033, false));
        assert!(!data.windows(4).any(|w| w == [0, 0, 1, 0x67]));
        let Sample::Video { data, ms, keyframe } = &msgs[1].sample else {
            panic!()
        };
        assert_eq!((*ms, *keyframe), (3_000, true));
        let sps = data.windows(5).position(|w| w == [0, 0, 0, 1, 0x67]);
        let idr = data.windows(5).position(|w| w == [0, 0, 0, 1, 0x65]);
        assert!(sps.is_some() && sps < idr, "{data:02x?}");
    }

    /// The fuzz entry on seeded random input (libFuzzer runs it for longer: media/fuzz).
    #[test]
    fn the_fuzz_entry_holds_on_random_publishers() {
        let mut next = crate::frame::samples::xorshift(0x5DEE_CE66_D1CE_4E5Bu64);
        let header = crate::frame::samples::FUZZ_HEADER;
        let mut sent = 0;
        for _ in 0..2_000 {
            let mut data = header.to_vec();
            for _ in 0..(next() % 60) {
                let kind = match next() % 8 {
                    0 => 0x04, // a keyframe
                    1 => 0x02, // a sequence header (random bytes)
                    2 => 0x01, // audio
                    3 => next() as u8,
                    _ => 0x00, // an inter frame
                };
                let n = (next() % 40) as usize;
                let body: Vec<u8> = if kind & 3 == 0 && !next().is_multiple_of(4) {
                    // A well-formed access unit (one NAL unit), so the conversion is reached.
                    let idr = kind & 4 != 0;
                    let mut b = vec![if idr { 0x17 } else { 0x27 }, 1, 0, 0, 0];
                    b.extend_from_slice(&(n as u32 + 1).to_be_bytes());
                    b.push(if idr { 0x65 } else { 0x41 });
                    b.extend((0..n).map(|_| next() as u8));
                    b
                } else {
                    (0..n).map(|_| next() as u8).collect()
                };
                data.extend_from_slice(&[kind, (next() % 70) as u8]);
                data.extend_from_slice(&(body.len() as u16).to_be_bytes());
                data.extend_from_slice(&body);
            }
            sent += super::fuzz_whep_stage(&data);
        }
        assert!(sent > 1_000, "the conversion was reached {sent} times");
    }
}
