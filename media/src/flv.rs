//! FLV tag bodies: the payload format of every [`crate::frame::VideoFrame`] and
//! [`crate::frame::AudioFrame`], whatever the ingest. RTMP carries them as they are in its video
//! (type 9) and audio (type 8) messages; WHIP builds them from RTP payloads.
//!
//! Video: legacy `frame type (4 bits) | codec id (4 bits)`, for H.264 (codec id 7) followed by
//! the AVC packet type (0 sequence header, 1 NALUs, 2 end of sequence) and a signed 24-bit
//! composition time; enhanced RTMP (`IsExHeader` bit set): `frame type (3 bits) | packet type
//! (4 bits)` then a FourCC (`avc1`, `hvc1`, `av01`, `vp09`), with a composition time only for
//! `CodedFrames` of `avc1`/`hvc1`.
//!
//! Audio: `sound format (4) | rate (2) | size (1) | type (1)`, for AAC (format 10) followed by the
//! AAC packet type (0 AudioSpecificConfig, 1 raw); enhanced audio (format 9): `packet type (4)`
//! then a FourCC.
//!
//! The decoder configuration records a sequence header carries are parsed in [`crate::codec`].
//! Everything is bounds-checked; nothing allocates.

use crate::codec::{
    AVC1, AudioCodec, CodecError, HVC1, VideoCodec, audio_codec_from_id, video_codec_from_id,
};

/// What a video tag carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoPacket {
    /// Decoder configuration (AVC packet type 0 / enhanced SequenceStart).
    SequenceHeader,
    /// Coded frames (AVC packet type 1 / enhanced CodedFrames, CodedFramesX).
    Frame,
    /// End of sequence (AVC packet type 2 / enhanced SequenceEnd).
    EndOfSequence,
    /// Video info/command frame (frame type 5), metadata or a packet type we do not use.
    Other,
}

/// The parsed head of a VIDEODATA body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTag {
    pub codec: VideoCodec,
    /// 1 keyframe, 2 inter frame, 3 disposable, 4 generated keyframe, 5 info/command.
    pub frame_type: u8,
    pub packet: VideoPacket,
    /// Composition time offset in ms (signed 24-bit), 0 if the format has none.
    pub cts_ms: i32,
    /// Offset of the codec payload (e.g. the AVCDecoderConfigurationRecord or NALUs) in the body.
    pub payload_offset: usize,
}

impl VideoTag {
    pub fn keyframe(&self) -> bool {
        self.frame_type == 1
    }
}

fn si24(b: &[u8]) -> i32 {
    // Sign-extend a big-endian 24-bit value.
    (i32::from_be_bytes([b[0], b[1], b[2], 0])) >> 8
}

/// Parse the head of a VIDEODATA body.
pub fn parse_video(body: &[u8]) -> Result<VideoTag, CodecError> {
    let truncated = CodecError::Truncated {
        what: "video tag",
        len: body.len(),
    };
    let first = *body.first().ok_or(truncated.clone())?;
    if first & 0x80 != 0 {
        // Enhanced RTMP.
        let frame_type = (first >> 4) & 0x07;
        let packet_type = first & 0x0F;
        let id = body.get(1..5).ok_or(truncated.clone())?;
        let four = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        let codec = video_codec_from_id(four);
        let (packet, cts_ms, payload_offset) = match packet_type {
            0 => (VideoPacket::SequenceHeader, 0, 5),
            1 if matches!(four, AVC1 | HVC1) => {
                let cts = body.get(5..8).ok_or(truncated)?;
                (VideoPacket::Frame, si24(cts), 8)
            }
            1 | 3 => (VideoPacket::Frame, 0, 5),
            2 => (VideoPacket::EndOfSequence, 0, 5),
            _ => (VideoPacket::Other, 0, 5),
        };
        let packet = if frame_type == 5 {
            VideoPacket::Other
        } else {
            packet
        };
        return Ok(VideoTag {
            codec,
            frame_type,
            packet,
            cts_ms,
            payload_offset,
        });
    }
    let frame_type = first >> 4;
    let codec = video_codec_from_id(u32::from(first & 0x0F));
    if frame_type == 5 {
        return Ok(VideoTag {
            codec,
            frame_type,
            packet: VideoPacket::Other,
            cts_ms: 0,
            payload_offset: 1,
        });
    }
    match codec {
        // H.264 and the unofficial HEVC id 12 share the AVC packet layout.
        VideoCodec::H264 | VideoCodec::Hevc => {
            let head = body.get(1..5).ok_or(truncated)?;
            let packet = match head[0] {
                0 => VideoPacket::SequenceHeader,
                1 => VideoPacket::Frame,
                2 => VideoPacket::EndOfSequence,
                _ => VideoPacket::Other,
            };
            Ok(VideoTag {
                codec,
                frame_type,
                packet,
                cts_ms: si24(&head[1..4]),
                payload_offset: 5,
            })
        }
        _ => Ok(VideoTag {
            codec,
            frame_type,
            packet: VideoPacket::Frame,
            cts_ms: 0,
            payload_offset: 1,
        }),
    }
}

/// The parsed head of an AUDIODATA body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTag {
    pub codec: AudioCodec,
    /// AudioSpecificConfig (AAC packet type 0) / enhanced SequenceStart.
    pub sequence_header: bool,
    /// Offset of the codec payload in the body.
    pub payload_offset: usize,
}

/// Parse the head of an AUDIODATA body.
pub fn parse_audio(body: &[u8]) -> Result<AudioTag, CodecError> {
    let truncated = CodecError::Truncated {
        what: "audio tag",
        len: body.len(),
    };
    let first = *body.first().ok_or(truncated.clone())?;
    let format = first >> 4;
    match format {
        10 => {
            let packet_type = *body.get(1).ok_or(truncated)?;
            Ok(AudioTag {
                codec: AudioCodec::Aac,
                sequence_header: packet_type == 0,
                payload_offset: 2,
            })
        }
        9 => {
            // Enhanced audio: packet type in the low nibble, then a FourCC.
            let id = body.get(1..5).ok_or(truncated)?;
            let four = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
            Ok(AudioTag {
                codec: audio_codec_from_id(four),
                sequence_header: first & 0x0F == 0,
                payload_offset: 5,
            })
        }
        other => Ok(AudioTag {
            codec: audio_codec_from_id(u32::from(other)),
            sequence_header: false,
            payload_offset: 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{AacConfig, parse_aac_config, parse_avc_config};

    #[test]
    fn h264_keyframe_sequence_header() {
        // keyframe | AVC, packet type 0, cts 0, then a config record.
        let body = [0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1F, 0xFF];
        let tag = parse_video(&body).unwrap();
        assert_eq!(tag.codec, VideoCodec::H264);
        assert!(tag.keyframe());
        assert_eq!(tag.packet, VideoPacket::SequenceHeader);
        assert_eq!(tag.payload_offset, 5);
        let config = parse_avc_config(&body[tag.payload_offset..]).unwrap();
        assert_eq!(
            (config.profile, config.level, config.nal_length_size),
            (100, 31, 4)
        );
    }

    #[test]
    fn h264_inter_frame_with_negative_composition_time() {
        let body = [0x27, 0x01, 0xFF, 0xFF, 0xDF, 0, 0, 0, 1, 0x41];
        let tag = parse_video(&body).unwrap();
        assert!(!tag.keyframe());
        assert_eq!(tag.packet, VideoPacket::Frame);
        assert_eq!(tag.cts_ms, -33);
        let body = [0x17, 0x01, 0x00, 0x00, 0x42, 0, 0, 0, 1, 0x65];
        assert_eq!(parse_video(&body).unwrap().cts_ms, 66);
    }

    #[test]
    fn h264_end_of_sequence_and_info_frames_are_recognised() {
        assert_eq!(
            parse_video(&[0x17, 0x02, 0, 0, 0]).unwrap().packet,
            VideoPacket::EndOfSequence
        );
        assert_eq!(
            parse_video(&[0x57, 0x00]).unwrap().packet,
            VideoPacket::Other
        );
    }

    #[test]
    fn enhanced_rtmp_hevc_and_av1() {
        // IsExHeader | keyframe(1) << 4 | SequenceStart(0), "hvc1"
        let seq = [0x90, b'h', b'v', b'c', b'1', 1, 0x01];
        let tag = parse_video(&seq).unwrap();
        assert_eq!(tag.codec, VideoCodec::Hevc);
        assert_eq!(tag.packet, VideoPacket::SequenceHeader);
        assert!(tag.keyframe());
        assert_eq!(tag.payload_offset, 5);
        // inter frame (2), CodedFrames(1), hvc1, cts 40
        let frame = [0xA1, b'h', b'v', b'c', b'1', 0, 0, 40, 0xAA];
        let tag = parse_video(&frame).unwrap();
        assert_eq!(
            (tag.packet, tag.cts_ms, tag.payload_offset),
            (VideoPacket::Frame, 40, 8)
        );
        // keyframe, CodedFramesX(3), av01: no composition time
        let frame = [0x93, b'a', b'v', b'0', b'1', 0x12];
        let tag = parse_video(&frame).unwrap();
        assert_eq!(tag.codec, VideoCodec::Av1);
        assert_eq!((tag.packet, tag.payload_offset), (VideoPacket::Frame, 5));
        assert!(tag.keyframe());
    }

    #[test]
    fn truncated_video_tags_are_errors() {
        assert!(parse_video(&[]).is_err());
        assert!(parse_video(&[0x17, 0x01, 0x00]).is_err());
        assert!(parse_video(&[0x91, b'h', b'v']).is_err());
        assert!(parse_video(&[0x91, b'h', b'v', b'c', b'1', 0]).is_err());
        assert!(parse_avc_config(&[1, 2]).is_err());
        assert!(parse_avc_config(&[0, 100, 0, 31, 0xFF]).is_err());
    }

    #[test]
    fn other_legacy_video_codecs_are_passed_through() {
        let tag = parse_video(&[0x22, 1, 2, 3]).unwrap();
        assert_eq!(tag.codec, VideoCodec::Other(2));
        assert_eq!(tag.packet, VideoPacket::Frame);
    }

    #[test]
    fn aac_sequence_header_and_raw_frames() {
        // AAC, 44 kHz, 16-bit, stereo; packet type 0; ASC: LC, 44100, 2 channels.
        let body = [0xAF, 0x00, 0x12, 0x10];
        let tag = parse_audio(&body).unwrap();
        assert_eq!(tag.codec, AudioCodec::Aac);
        assert!(tag.sequence_header);
        let asc = parse_aac_config(&body[tag.payload_offset..]).unwrap();
        assert_eq!(
            asc,
            AacConfig {
                object_type: 2,
                sample_rate: 44100,
                channels: 2
            }
        );
        let tag = parse_audio(&[0xAF, 0x01, 0x21]).unwrap();
        assert!(!tag.sequence_header);
        assert_eq!(tag.payload_offset, 2);
    }

    #[test]
    fn mp3_and_enhanced_opus_audio() {
        let tag = parse_audio(&[0x2F, 1, 2]).unwrap();
        assert_eq!(tag.codec, AudioCodec::Mp3);
        assert!(!tag.sequence_header);
        let tag = parse_audio(&[0x90, b'O', b'p', b'u', b's', 1]).unwrap();
        assert_eq!(tag.codec, AudioCodec::Opus);
        assert!(tag.sequence_header);
        assert!(parse_audio(&[0xA0]).is_err());
        assert!(parse_audio(&[]).is_err());
    }
}
