//! Codecs, independent of the ingest that carried them: the codec enums every frame names, their
//! FLV codec ids and FourCCs (shared by RTMP's tags and `onMetaData`), and the decoder
//! configuration records the packager and the stream description read — the
//! AVCDecoderConfigurationRecord, the head of the HEVCDecoderConfigurationRecord and the AAC
//! AudioSpecificConfig — plus [`CodecError`], the one error for malformed codec bytes.
//!
//! Everything is bounds-checked; nothing allocates.

/// Why a frame's bytes could not be parsed: an FLV tag body, a decoder configuration record, an
/// AudioSpecificConfig or an access unit. The frame is dropped (and counted), the stream goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{what} truncated: {len} bytes")]
    Truncated { what: &'static str, len: usize },
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion { what: &'static str, version: u8 },
    #[error("invalid AudioSpecificConfig sample rate index {0}")]
    InvalidSampleRate(u8),
}

/// Video codecs recognised in FLV tags (codec id) and enhanced RTMP (FourCC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// Legacy codec id 7 or FourCC `avc1`.
    H264,
    /// FourCC `hvc1` (enhanced RTMP) or the unofficial codec id 12.
    Hevc,
    /// FourCC `av01`.
    Av1,
    /// FourCC `vp09`.
    Vp9,
    /// A legacy codec id (e.g. 2 = Sorenson H.263) or an unknown FourCC (big-endian u32).
    Other(u32),
}

/// Audio codecs recognised in FLV tags (sound format) and enhanced RTMP (FourCC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// Sound format 10 or FourCC `mp4a`.
    Aac,
    /// Sound format 2 or FourCC `.mp3`.
    Mp3,
    /// FourCC `Opus`.
    Opus,
    /// Any other sound format or FourCC (big-endian u32).
    Other(u32),
}

const fn fourcc(s: &[u8; 4]) -> u32 {
    u32::from_be_bytes(*s)
}

pub(crate) const AVC1: u32 = fourcc(b"avc1");
pub(crate) const HVC1: u32 = fourcc(b"hvc1");
const AV01: u32 = fourcc(b"av01");
const VP09: u32 = fourcc(b"vp09");
const MP4A: u32 = fourcc(b"mp4a");
const OPUS: u32 = fourcc(b"Opus");
const MP3: u32 = fourcc(b".mp3");

/// Map a legacy codec id or a FourCC (as found in `onMetaData` `videocodecid`) to a codec.
pub fn video_codec_from_id(id: u32) -> VideoCodec {
    match id {
        7 | AVC1 => VideoCodec::H264,
        12 | HVC1 => VideoCodec::Hevc,
        AV01 => VideoCodec::Av1,
        VP09 => VideoCodec::Vp9,
        other => VideoCodec::Other(other),
    }
}

/// Map a legacy sound format or a FourCC (as in `onMetaData` `audiocodecid`) to a codec.
pub fn audio_codec_from_id(id: u32) -> AudioCodec {
    match id {
        10 | MP4A => AudioCodec::Aac,
        2 | 14 | MP3 => AudioCodec::Mp3,
        OPUS => AudioCodec::Opus,
        other => AudioCodec::Other(other),
    }
}

/// Map a FourCC string from `onMetaData` (`"avc1"`) to a codec, if it is one.
pub fn fourcc_from_str(s: &str) -> Option<u32> {
    let b: [u8; 4] = s.as_bytes().try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// The fields of a decoder configuration record we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoConfig {
    /// `AVCProfileIndication` / `general_profile_idc`.
    pub profile: u8,
    /// `profile_compatibility` (H.264 constraint flags); 0 for HEVC.
    pub compatibility: u8,
    /// `AVCLevelIndication` / `general_level_idc`.
    pub level: u8,
    /// Bytes of each NAL unit length prefix (1, 2 or 4).
    pub nal_length_size: u8,
}

/// Parse an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1).
pub fn parse_avc_config(record: &[u8]) -> Result<VideoConfig, CodecError> {
    let head = record.get(0..5).ok_or(CodecError::Truncated {
        what: "AVCDecoderConfigurationRecord",
        len: record.len(),
    })?;
    if head[0] != 1 {
        return Err(CodecError::UnsupportedVersion {
            what: "AVCDecoderConfigurationRecord",
            version: head[0],
        });
    }
    Ok(VideoConfig {
        profile: head[1],
        compatibility: head[2],
        level: head[3],
        nal_length_size: (head[4] & 0x03) + 1,
    })
}

/// Whether a length-prefixed (AVCC) H.264 access unit holds an IDR slice (NAL type 5), the
/// only frame a decoder can start from. The FLV keyframe flag is not enough: GStreamer's
/// `flvmux` sets it on every I-frame, IDR or not. A truncated unit answers from what was read.
pub fn avc_has_idr(data: &[u8], nal_length_size: usize) -> bool {
    nal_types(data, nal_length_size).any(|t| t & 0x1F == 5)
}

/// Whether a length-prefixed (HVCC) H.265 access unit holds an IRAP picture (NAL types
/// 16..=23: BLA, IDR, CRA), where a decoder can start.
pub fn hevc_has_irap(data: &[u8], nal_length_size: usize) -> bool {
    nal_types(data, nal_length_size).any(|t| (16..=23).contains(&((t >> 1) & 0x3F)))
}

/// The first byte of each NAL unit of a length-prefixed access unit.
fn nal_types(data: &[u8], size: usize) -> impl Iterator<Item = u8> + '_ {
    let size = size.clamp(1, 4);
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let len_bytes = data.get(pos..pos + size)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let first = *data.get(pos + size)?;
        pos = pos.saturating_add(size).saturating_add(len);
        Some(first)
    })
}

/// Parse the head of an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1).
pub fn parse_hevc_config(record: &[u8]) -> Result<VideoConfig, CodecError> {
    let head = record.get(0..22).ok_or(CodecError::Truncated {
        what: "HEVCDecoderConfigurationRecord",
        len: record.len(),
    })?;
    if head[0] != 1 {
        return Err(CodecError::UnsupportedVersion {
            what: "HEVCDecoderConfigurationRecord",
            version: head[0],
        });
    }
    Ok(VideoConfig {
        profile: head[1] & 0x1F,
        compatibility: 0,
        level: head[12],
        nal_length_size: (head[21] & 0x03) + 1,
    })
}

/// The fields of an AAC AudioSpecificConfig we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type (2 = AAC LC, 5 = HE-AAC/SBR, 29 = HE-AACv2).
    pub object_type: u8,
    pub sample_rate: u32,
    /// Channel configuration (1 mono, 2 stereo, …; 0 = defined in the stream).
    pub channels: u8,
}

const AAC_SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Parse an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1), without extensions.
pub fn parse_aac_config(data: &[u8]) -> Result<AacConfig, CodecError> {
    let mut bits = Bits { data, pos: 0 };
    let truncated = CodecError::Truncated {
        what: "AudioSpecificConfig",
        len: data.len(),
    };
    let mut object_type = bits.read(5).ok_or(truncated.clone())? as u8;
    if object_type == 31 {
        object_type = 32 + bits.read(6).ok_or(truncated.clone())? as u8;
    }
    let index = bits.read(4).ok_or(truncated.clone())? as u8;
    let sample_rate = if index == 15 {
        bits.read(24).ok_or(truncated.clone())?
    } else {
        *AAC_SAMPLE_RATES
            .get(index as usize)
            .ok_or(CodecError::InvalidSampleRate(index))?
    };
    let channels = bits.read(4).ok_or(truncated)? as u8;
    Ok(AacConfig {
        object_type,
        sample_rate,
        channels,
    })
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            let bit = (byte >> (7 - (self.pos % 8))) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_an_idr_slice_makes_an_h264_random_access_point() {
        // SEI + non-IDR I slice (type 1): what flvmux flags as a keyframe.
        let non_idr = [0, 0, 0, 2, 0x06, 0x05, 0, 0, 0, 3, 0x21, 0x88, 0x84];
        // AUD + SPS + IDR slice, two-byte lengths.
        let idr = [0, 2, 0x09, 0xF0, 0, 2, 0x67, 0x64, 0, 3, 0x65, 0x88, 0x84];
        assert!(!avc_has_idr(&non_idr, 4));
        assert!(avc_has_idr(&idr, 2));
        // Truncated after the NAL header: the type that was read still counts.
        assert!(avc_has_idr(&[0, 0, 0, 9, 0x65], 4));
        assert!(!avc_has_idr(&[], 4));
        // HEVC: a CRA (21) is an IRAP, a TRAIL_R (1) is not.
        assert!(hevc_has_irap(&[0, 0, 0, 2, 21 << 1, 1], 4));
        assert!(!hevc_has_irap(&[0, 0, 0, 2, 1 << 1, 1], 4));
    }

    use super::*;

    #[test]
    fn hevc_config_gives_profile_and_level() {
        let mut record = [0u8; 23];
        record[0] = 1;
        record[1] = 0x01; // Main
        record[12] = 93; // level 3.1
        record[21] = 0x03;
        let config = parse_hevc_config(&record).unwrap();
        assert_eq!(
            (config.profile, config.level, config.nal_length_size),
            (1, 93, 4)
        );
    }

    #[test]
    fn aac_config_with_explicit_rate_and_escape_object_type() {
        // object type 2, index 15 → 24-bit rate 48000, channels 1
        let mut bits: u64 = 2;
        bits = (bits << 4) | 15;
        bits = (bits << 24) | 48000;
        bits = (bits << 4) | 1;
        // 37 bits → left-align in 40 bits (5 bytes)
        let v = bits << 3;
        let bytes = &v.to_be_bytes()[3..];
        let asc = parse_aac_config(bytes).unwrap();
        assert_eq!(
            (asc.object_type, asc.sample_rate, asc.channels),
            (2, 48000, 1)
        );
        // object type 31 → 32 + 6 bits
        let asc = parse_aac_config(&[0xF8, 0x02, 0x20, 0x00]).unwrap();
        assert_eq!(asc.object_type, 32);
        assert!(parse_aac_config(&[0x16]).is_err());
        assert_eq!(
            parse_aac_config(&[0x16, 0x90]),
            Err(CodecError::InvalidSampleRate(13))
        );
    }

    #[test]
    fn metadata_codec_ids_and_fourccs() {
        assert_eq!(video_codec_from_id(7), VideoCodec::H264);
        assert_eq!(
            video_codec_from_id(fourcc_from_str("hvc1").unwrap()),
            VideoCodec::Hevc
        );
        assert_eq!(audio_codec_from_id(10), AudioCodec::Aac);
        assert_eq!(fourcc_from_str("toolong"), None);
    }
}
