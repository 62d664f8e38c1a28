//! A sans-IO MPEG-2 transport stream muxer (ISO/IEC 13818-1) for live HLS: one program, H.264
//! video and optional AAC audio, bytes appended to a caller's buffer.
//!
//! Why by hand and not GStreamer's `mpegtsmux`: the live path remuxes every frame of every
//! stream, and the benchmark against nginx-rtmp (docs/benchmarks.md) showed the GStreamer remux
//! — appsrc, demux, parsers, an aggregator and their threads, ~600 context switches a second per
//! stream — costing 2.8× nginx's CPU and holding each segment back by a GOP. Muxing TS is a
//! few hundred lines of well-specified byte layout; done inline where the frames arrive it costs
//! no thread hop at all. The crates on crates.io that do it are early (`mpeg-ts-core` says "not
//! for production") or allocate per packet. GStreamer keeps the media work that needs codecs
//! (MP4 remux of recordings, posters, WebRTC transcoding).
//!
//! Layout choices, as common players (hls.js, Safari, ffmpeg, VLC) expect them:
//! - PAT and PMT at the start of every segment, so each segment decodes on its own.
//! - Video on PID 0x100 carrying the PCR; audio (ADTS AAC) on 0x101; PMT on 0x1000.
//! - Each video access unit starts with an AUD, and keyframes carry SPS/PPS in band.
//! - Timestamps: 90 kHz, offset by [`TIMESTAMP_OFFSET_90K`] so that the PCR can run behind the
//!   DTS without going negative; wrapped at 33 bits.

use crate::codec::{self, CodecError};

pub const PACKET_SIZE: usize = 188;
pub const PID_PAT: u16 = 0x0000;
pub const PID_PMT: u16 = 0x1000;
pub const PID_VIDEO: u16 = 0x0100;
pub const PID_AUDIO: u16 = 0x0101;

const STREAM_TYPE_H264: u8 = 0x1B;
const STREAM_TYPE_AAC_ADTS: u8 = 0x0F;
const STREAM_ID_VIDEO: u8 = 0xE0;
const STREAM_ID_AUDIO: u8 = 0xC0;
const MASK_33: u64 = (1 << 33) - 1;

/// Added to every timestamp (1.4 s, as ffmpeg's muxer delays): room for the PCR to lead.
pub const TIMESTAMP_OFFSET_90K: u64 = 126_000;
/// How far the PCR runs behind the video DTS (the decoder's buffering allowance).
const PCR_DELAY_90K: u64 = 63_000;

/// Continuity counters of one transport stream. Start a new one per session; segments of the
/// same session continue the counters (players check them across segment boundaries).
#[derive(Debug, Clone, Default)]
pub struct TsMuxer {
    has_audio: bool,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
}

impl TsMuxer {
    pub fn new(has_audio: bool) -> TsMuxer {
        TsMuxer {
            has_audio,
            ..TsMuxer::default()
        }
    }

    pub fn has_audio(&self) -> bool {
        self.has_audio
    }

    /// PAT and PMT, one packet each.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        // PAT: program 1 → PMT PID.
        let mut pat = Vec::with_capacity(16);
        pat.extend_from_slice(&[0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01]);
        pat.extend_from_slice(&[0xE0 | (PID_PMT >> 8) as u8, PID_PMT as u8]);
        write_section(out, PID_PAT, &mut self.cc_pat, &mut pat);

        // PMT: PCR on the video PID, then the elementary streams.
        let streams: &[(u8, u16)] = if self.has_audio {
            &[
                (STREAM_TYPE_H264, PID_VIDEO),
                (STREAM_TYPE_AAC_ADTS, PID_AUDIO),
            ]
        } else {
            &[(STREAM_TYPE_H264, PID_VIDEO)]
        };
        let section_length = 9 + 5 * streams.len() + 4;
        let mut pmt = Vec::with_capacity(32);
        pmt.extend_from_slice(&[
            0x02,
            0xB0 | (section_length >> 8) as u8,
            section_length as u8,
            0x00,
            0x01,
            0xC1,
            0x00,
            0x00,
            0xE0 | (PID_VIDEO >> 8) as u8,
            PID_VIDEO as u8,
            0xF0,
            0x00,
        ]);
        for &(stream_type, pid) in streams {
            pmt.extend_from_slice(&[stream_type, 0xE0 | (pid >> 8) as u8, pid as u8, 0xF0, 0x00]);
        }
        write_section(out, PID_PMT, &mut self.cc_pmt, &mut pmt);
    }

    /// One video access unit in Annex B form. `dts_ms` on the session timeline (may be
    /// slightly negative for frames just before the first keyframe), `cts_ms` as RTMP gives it.
    pub fn write_video(
        &mut self,
        out: &mut Vec<u8>,
        dts_ms: i64,
        cts_ms: i32,
        keyframe: bool,
        annexb: &[u8],
    ) {
        self.write_video_parts(out, dts_ms, cts_ms, keyframe, &[annexb]);
    }

    /// [`TsMuxer::write_video`] with the access unit given as pieces, in order (see
    /// [`AnnexB`]): the payload goes straight from the publisher's frame into the packets.
    pub fn write_video_parts(
        &mut self,
        out: &mut Vec<u8>,
        dts_ms: i64,
        cts_ms: i32,
        keyframe: bool,
        parts: &[&[u8]],
    ) {
        let dts = to_90k(dts_ms);
        // A negative composition offset would put PTS before DTS, which no decoder accepts.
        let pts = (dts + u64::from(cts_ms.max(0) as u32) * 90) & MASK_33;
        let pcr = dts.wrapping_sub(PCR_DELAY_90K) & MASK_33;
        let len = parts.iter().map(|p| p.len()).sum();
        let header = PesHeader::new(STREAM_ID_VIDEO, pts, (pts != dts).then_some(dts), len);
        packetize(
            out,
            PID_VIDEO,
            &mut self.cc_video,
            header.bytes(),
            parts,
            Some(pcr),
            keyframe,
        );
    }

    /// One AAC frame with its ADTS header already in front.
    pub fn write_audio(&mut self, out: &mut Vec<u8>, dts_ms: i64, adts: &[u8]) {
        self.write_audio_parts(out, dts_ms, &[adts]);
    }

    /// [`TsMuxer::write_audio`] with the frame as pieces (the ADTS header, the raw frame).
    pub fn write_audio_parts(&mut self, out: &mut Vec<u8>, dts_ms: i64, parts: &[&[u8]]) {
        let pts = to_90k(dts_ms);
        let len = parts.iter().map(|p| p.len()).sum();
        let header = PesHeader::new(STREAM_ID_AUDIO, pts, None, len);
        packetize(
            out,
            PID_AUDIO,
            &mut self.cc_audio,
            header.bytes(),
            parts,
            None,
            false,
        );
    }
}

fn to_90k(ms: i64) -> u64 {
    // Anything before −1.4 s is clamped to 0 (it would wrap to the far end of the clock).
    ((ms.wrapping_mul(90)
        .wrapping_add(TIMESTAMP_OFFSET_90K as i64))
    .max(0) as u64)
        & MASK_33
}

/// A PSI section (without pointer field and CRC) → CRC appended, one packet, stuffed with 0xFF.
fn write_section(out: &mut Vec<u8>, pid: u16, cc: &mut u8, section: &mut Vec<u8>) {
    let crc = crc32_mpeg2(section);
    section.extend_from_slice(&crc.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(&[
        0x47,
        0x40 | (pid >> 8) as u8,
        pid as u8,
        0x10 | (*cc & 0x0F),
        0,
    ]);
    *cc = (*cc + 1) & 0x0F;
    out.extend_from_slice(section);
    out.resize(start + PACKET_SIZE, 0xFF);
}

/// CRC-32/MPEG-2 (poly 0x04C11DB7, init all ones, no reflection): PSI sections only, a few
/// dozen bytes per segment, so bitwise is fast enough.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A PES header (at most 19 bytes, on the stack).
struct PesHeader {
    buf: [u8; 19],
    len: usize,
}

impl PesHeader {
    /// The header for `payload_len` bytes. Video longer than a PES length can say uses 0
    /// ("unbounded"), which the standard allows for video in transport streams.
    fn new(stream_id: u8, pts: u64, dts: Option<u64>, payload_len: usize) -> PesHeader {
        let header_data = if dts.is_some() { 10 } else { 5 };
        let pes_len = 3 + header_data + payload_len;
        let pes_len = if pes_len > 0xFFFF { 0 } else { pes_len as u16 };
        let mut buf = [0u8; 19];
        buf[..4].copy_from_slice(&[0x00, 0x00, 0x01, stream_id]);
        buf[4..6].copy_from_slice(&pes_len.to_be_bytes());
        // '10', not scrambled, no priority, data aligned, no copyright, copy.
        buf[6] = 0x84;
        buf[7] = if dts.is_some() { 0xC0 } else { 0x80 };
        buf[8] = header_data as u8;
        match dts {
            Some(dts) => {
                buf[9..14].copy_from_slice(&timestamp(0x3, pts));
                buf[14..19].copy_from_slice(&timestamp(0x1, dts));
            }
            None => buf[9..14].copy_from_slice(&timestamp(0x2, pts)),
        }
        PesHeader {
            buf,
            len: 9 + header_data,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn timestamp(prefix: u8, ts: u64) -> [u8; 5] {
    [
        (prefix << 4) | (((ts >> 29) & 0x0E) as u8) | 1,
        (ts >> 22) as u8,
        (((ts >> 14) & 0xFE) as u8) | 1,
        (ts >> 7) as u8,
        (((ts << 1) & 0xFE) as u8) | 1,
    ]
}

/// Split a PES (header + payload pieces) into 188-byte packets. The first packet carries the
/// PCR and the random-access flag when asked; the last is padded with adaptation-field
/// stuffing. Each payload byte is copied once, from its piece into the output.
fn packetize(
    out: &mut Vec<u8>,
    pid: u16,
    cc: &mut u8,
    header: &[u8],
    parts: &[&[u8]],
    pcr: Option<u64>,
    random_access: bool,
) {
    let total = header.len() + parts.iter().map(|p| p.len()).sum::<usize>();
    out.reserve(total.div_ceil(184) * PACKET_SIZE);
    // The bytes left of the piece being copied, then the pieces after it.
    let mut current = header;
    let mut next = parts.iter();
    let mut written = 0;
    let mut first = true;
    while written < total {
        let mut flags = 0u8;
        let mut af_body = 0usize; // adaptation field bytes after its length byte
        if first {
            if pcr.is_some() {
                flags |= 0x10;
                af_body = 1 + 6;
            }
            if random_access {
                flags |= 0x40;
                af_body = af_body.max(1);
            }
        }
        let mut af_total = if flags != 0 { 1 + af_body } else { 0 };
        let left = total - written;
        let mut chunk = 184 - af_total;
        if left < chunk {
            af_total += chunk - left;
            chunk = left;
        }
        out.extend_from_slice(&[
            0x47,
            (if first { 0x40 } else { 0 }) | ((pid >> 8) as u8 & 0x1F),
            pid as u8,
            (if af_total > 0 { 0x30 } else { 0x10 }) | (*cc & 0x0F),
        ]);
        *cc = (*cc + 1) & 0x0F;
        if af_total > 0 {
            let len = af_total - 1;
            out.push(len as u8);
            if len > 0 {
                out.push(flags);
                let mut used = 1;
                if flags & 0x10 != 0 {
                    let base = pcr.unwrap_or(0);
                    out.extend_from_slice(&[
                        (base >> 25) as u8,
                        (base >> 17) as u8,
                        (base >> 9) as u8,
                        (base >> 1) as u8,
                        (((base & 1) as u8) << 7) | 0x7E,
                        0x00,
                    ]);
                    used += 6;
                }
                out.resize(out.len() + (len - used), 0xFF);
            }
        }
        // The chunk may straddle the PES header and several pieces.
        let mut need = chunk;
        while need > 0 {
            if current.is_empty() {
                match next.next() {
                    Some(part) => current = part,
                    None => break,
                }
                continue;
            }
            let n = need.min(current.len());
            out.extend_from_slice(&current[..n]);
            current = &current[n..];
            need -= n;
        }
        written += chunk;
        first = false;
    }
}

/// H.264 parameters from an AVCDecoderConfigurationRecord: the NAL length size and the SPS/PPS
/// as Annex B, ready to put in front of a keyframe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcParams {
    pub nal_length_size: usize,
    pub parameter_sets: Vec<u8>,
}

impl AvcParams {
    pub fn from_record(record: &[u8]) -> Result<AvcParams, CodecError> {
        let truncated = || CodecError::Truncated {
            what: "AVCDecoderConfigurationRecord",
            len: record.len(),
        };
        let config = codec::parse_avc_config(record)?;
        let mut pos = 5;
        let mut parameter_sets = Vec::new();
        for mask in [0x1F, 0xFF] {
            let count = *record.get(pos).ok_or_else(truncated)? & mask;
            pos += 1;
            for _ in 0..count {
                let len = record.get(pos..pos + 2).ok_or_else(truncated)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let nal = record.get(pos + 2..pos + 2 + len).ok_or_else(truncated)?;
                parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
                parameter_sets.extend_from_slice(nal);
                pos += 2 + len;
            }
        }
        Ok(AvcParams {
            nal_length_size: usize::from(config.nal_length_size),
            parameter_sets,
        })
    }
}

/// Length-prefixed NAL units (AVCC) → Annex B access unit: an AUD first, SPS/PPS before a
/// keyframe that does not carry its own, the publisher's AUDs dropped (we wrote one).
pub fn avcc_to_annexb(
    out: &mut Vec<u8>,
    data: &[u8],
    params: &AvcParams,
    keyframe: bool,
) -> Result<(), CodecError> {
    let size = params.nal_length_size;
    let truncated = || CodecError::Truncated {
        what: "NAL unit",
        len: data.len(),
    };
    out.reserve(data.len() + AUD.len() + params.parameter_sets.len() + 16);
    out.extend_from_slice(&AUD);
    let mut in_band_sps = false;
    let mut pos = 0;
    let mut nals = Vec::with_capacity(4);
    while pos < data.len() {
        let len_bytes = data.get(pos..pos + size).ok_or_else(truncated)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let nal = data
            .get(pos + size..pos + size + len)
            .ok_or_else(truncated)?;
        pos += size + len;
        let Some(&first) = nal.first() else { continue };
        match first & 0x1F {
            9 => continue,
            7 => in_band_sps = true,
            _ => {}
        }
        nals.push(nal);
    }
    if keyframe && !in_band_sps {
        out.extend_from_slice(&params.parameter_sets);
    }
    for nal in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    Ok(())
}

/// An access unit in Annex B form as pieces pointing into the publisher's AVCC frame (what
/// [`avcc_to_annexb`] writes, without copying it): the AUD, SPS/PPS before a keyframe that does
/// not carry its own, then a start code and each NAL unit (the publisher's AUDs dropped).
/// Frames with more NAL units than fit on the stack are copied into `spill` instead.
pub struct AnnexB<'a> {
    parts: [&'a [u8]; ANNEXB_MAX_PARTS],
    len: usize,
}

/// Pieces an [`AnnexB`] holds: AUD + parameter sets + 2 per NAL unit (x264 and OBS send one
/// to a few slices per frame, plus an SEI now and then).
const ANNEXB_MAX_PARTS: usize = 34;
const START_CODE: [u8; 4] = [0, 0, 0, 1];
const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xF0];

impl<'a> AnnexB<'a> {
    /// Split `data` (length-prefixed NAL units) as [`avcc_to_annexb`] converts it. When the
    /// frame has too many NAL units for the stack, `spill` receives the converted copy and
    /// the result is that one piece.
    pub fn new(
        data: &'a [u8],
        params: &'a AvcParams,
        keyframe: bool,
        spill: &'a mut Vec<u8>,
    ) -> Result<AnnexB<'a>, CodecError> {
        let size = params.nal_length_size;
        let truncated = || CodecError::Truncated {
            what: "NAL unit",
            len: data.len(),
        };
        let mut au = AnnexB {
            parts: [&[]; ANNEXB_MAX_PARTS],
            len: 0,
        };
        au.push(&AUD);
        // Parameter sets go right after the AUD; the slot is filled once we know whether the
        // frame carries its own.
        let params_slot = au.len;
        au.push(&[]);
        let mut in_band_sps = false;
        let mut pos = 0;
        while pos < data.len() {
            let len_bytes = data.get(pos..pos + size).ok_or_else(truncated)?;
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            let nal = data
                .get(pos + size..pos + size + len)
                .ok_or_else(truncated)?;
            pos += size + len;
            let Some(&first) = nal.first() else { continue };
            match first & 0x1F {
                9 => continue,
                7 => in_band_sps = true,
                _ => {}
            }
            if au.len + 2 > ANNEXB_MAX_PARTS {
                spill.clear();
                avcc_to_annexb(spill, data, params, keyframe)?;
                let spill: &'a Vec<u8> = spill;
                let mut au = AnnexB {
                    parts: [&[]; ANNEXB_MAX_PARTS],
                    len: 0,
                };
                au.push(spill);
                return Ok(au);
            }
            au.push(&START_CODE);
            au.push(nal);
        }
        if keyframe && !in_band_sps {
            au.parts[params_slot] = &params.parameter_sets;
        }
        Ok(au)
    }

    fn push(&mut self, part: &'a [u8]) {
        self.parts[self.len] = part;
        self.len += 1;
    }

    /// The pieces, in order (some may be empty).
    pub fn parts(&self) -> &[&'a [u8]] {
        &self.parts[..self.len]
    }
}

/// What an ADTS header needs from the AudioSpecificConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsParams {
    /// ADTS profile (object type − 1; HE-AAC is signalled as LC with implicit SBR).
    profile: u8,
    sample_rate_index: u8,
    channels: u8,
}

impl AdtsParams {
    pub fn from_config(asc: &[u8]) -> Result<AdtsParams, CodecError> {
        let config = codec::parse_aac_config(asc)?;
        let index = [
            96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
        ]
        .iter()
        .position(|&r| r == config.sample_rate)
        .ok_or(CodecError::InvalidSampleRate(15))?;
        let profile = match config.object_type {
            1..=4 => config.object_type - 1,
            _ => 1,
        };
        Ok(AdtsParams {
            profile,
            sample_rate_index: index as u8,
            channels: config.channels & 0x07,
        })
    }

    /// The 7-byte ADTS header (no CRC) for a raw frame of `raw_len` bytes.
    pub fn header(&self, raw_len: usize) -> [u8; 7] {
        let len = raw_len + 7;
        [
            0xFF,
            0xF1,
            (self.profile << 6) | (self.sample_rate_index << 2) | (self.channels >> 2),
            ((self.channels & 3) << 6) | ((len >> 11) & 0x03) as u8,
            (len >> 3) as u8,
            (((len & 7) as u8) << 5) | 0x1F,
            0xFC,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(ts: &[u8]) -> Vec<&[u8]> {
        assert_eq!(ts.len() % PACKET_SIZE, 0);
        ts.chunks(PACKET_SIZE).collect()
    }

    fn pid(p: &[u8]) -> u16 {
        (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2])
    }

    /// Reassemble a PID's payload bytes (after adaptation fields).
    fn payload_of(ts: &[u8], want: u16) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets(ts) {
            if pid(p) != want {
                continue;
            }
            let afc = (p[3] >> 4) & 0x3;
            let start = if afc == 3 { 5 + usize::from(p[4]) } else { 4 };
            out.extend_from_slice(&p[start..]);
        }
        out
    }

    #[test]
    fn crc_matches_the_known_check_value() {
        // CRC-32/MPEG-2 check value for "123456789".
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn tables_are_one_packet_each_with_valid_crcs() {
        let mut m = TsMuxer::new(true);
        let mut out = Vec::new();
        m.write_tables(&mut out);
        let ps = packets(&out);
        assert_eq!(ps.len(), 2);
        assert_eq!(pid(ps[0]), PID_PAT);
        assert_eq!(pid(ps[1]), PID_PMT);
        for p in ps {
            assert_eq!(p[0], 0x47);
            assert_eq!(p[1] & 0x40, 0x40, "payload unit start");
            let section = &p[5..];
            let len = (usize::from(section[1] & 0x0F) << 8) | usize::from(section[2]);
            let whole = &section[..3 + len];
            assert_eq!(
                crc32_mpeg2(whole),
                0,
                "a section with its CRC checks to zero"
            );
        }
        // The PMT lists H.264 and AAC.
        let pmt = &out[PACKET_SIZE + 5..];
        assert_eq!(pmt[12], STREAM_TYPE_H264);
        assert_eq!(pmt[17], STREAM_TYPE_AAC_ADTS);
        // Counters advance per segment.
        let mut again = Vec::new();
        m.write_tables(&mut again);
        assert_eq!(again[3] & 0x0F, 1);
    }

    #[test]
    fn a_pes_survives_packetization_for_every_size() {
        for len in [
            0usize, 1, 150, 166, 167, 168, 169, 170, 183, 184, 185, 400, 70_000,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut m = TsMuxer::new(false);
            let mut out = Vec::new();
            m.write_video(&mut out, 1000, 40, true, &payload);
            let ps = packets(&out);
            // Continuity counters count up from 0.
            for (i, p) in ps.iter().enumerate() {
                assert_eq!(usize::from(p[3] & 0x0F), i % 16, "len {len}");
                assert_eq!(p[1] & 0x40 != 0, i == 0, "PUSI only on the first");
            }
            // The first packet has the PCR and random access flags.
            assert_eq!(ps[0][3] >> 4, 3);
            assert_eq!(ps[0][5] & 0x50, 0x50);
            let pes = payload_of(&out, PID_VIDEO);
            assert_eq!(&pes[..4], &[0, 0, 1, STREAM_ID_VIDEO]);
            let header_len = 9 + usize::from(pes[8]);
            assert_eq!(&pes[header_len..], &payload[..], "len {len}");
        }
    }

    #[test]
    fn timestamps_and_pcr_are_encoded_as_the_standard_says() {
        let mut m = TsMuxer::new(false);
        let mut out = Vec::new();
        m.write_video(&mut out, 2_000, 80, false, &[0xAB; 10]);
        let pes = payload_of(&out, PID_VIDEO);
        assert_eq!(pes[7], 0xC0, "PTS and DTS");
        let read = |b: &[u8]| -> u64 {
            (u64::from(b[0] >> 1 & 0x07) << 30)
                | (u64::from(b[1]) << 22)
                | (u64::from(b[2] >> 1) << 15)
                | (u64::from(b[3]) << 7)
                | u64::from(b[4] >> 1)
        };
        let pts = read(&pes[9..14]);
        let dts = read(&pes[14..19]);
        assert_eq!(dts, 2_000 * 90 + TIMESTAMP_OFFSET_90K);
        assert_eq!(pts, dts + 80 * 90);
        let p = &out[..PACKET_SIZE];
        let base = (u64::from(p[6]) << 25)
            | (u64::from(p[7]) << 17)
            | (u64::from(p[8]) << 9)
            | (u64::from(p[9]) << 1)
            | u64::from(p[10] >> 7);
        assert_eq!(base, dts - PCR_DELAY_90K);
        // No random access flag on a delta frame.
        assert_eq!(p[5] & 0x40, 0);
    }

    fn avc_record() -> Vec<u8> {
        let sps = [0x67, 0x64, 0x00, 0x1F, 0xAC];
        let pps = [0x68, 0xEE, 0x3C, 0x80];
        let mut r = vec![1, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0, sps.len() as u8];
        r.extend_from_slice(&sps);
        r.extend_from_slice(&[1, 0, pps.len() as u8]);
        r.extend_from_slice(&pps);
        r
    }

    #[test]
    fn avcc_becomes_annexb_with_aud_and_parameter_sets_on_keyframes() {
        let params = AvcParams::from_record(&avc_record()).unwrap();
        assert_eq!(params.nal_length_size, 4);
        assert_eq!(
            params.parameter_sets,
            [
                0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1F, 0xAC, 0, 0, 0, 1, 0x68, 0xEE, 0x3C, 0x80
            ]
        );
        // An AUD (dropped), an IDR slice.
        let avcc = [0, 0, 0, 2, 0x09, 0xF0, 0, 0, 0, 3, 0x65, 0x88, 0x84];
        let mut out = Vec::new();
        avcc_to_annexb(&mut out, &avcc, &params, true).unwrap();
        let mut want = vec![0, 0, 0, 1, 0x09, 0xF0];
        want.extend_from_slice(&params.parameter_sets);
        want.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
        assert_eq!(out, want);
        // A delta frame gets no parameter sets.
        out.clear();
        avcc_to_annexb(&mut out, &[0, 0, 0, 2, 0x41, 0x9A], &params, false).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x41, 0x9A]);
        // A NAL length past the end is an error, not a panic.
        assert!(avcc_to_annexb(&mut out, &[0, 0, 0, 9, 0x41], &params, false).is_err());
        assert!(AvcParams::from_record(&avc_record()[..9]).is_err());
    }

    #[test]
    fn annexb_pieces_mux_to_the_same_packets_as_the_copied_access_unit() {
        let params = AvcParams::from_record(&avc_record()).unwrap();
        // An AUD (dropped), an SEI, two slices of sizes around packet boundaries; with and
        // without in-band SPS; and one frame with more NAL units than the stack holds.
        let mut frames: Vec<(Vec<u8>, bool)> = Vec::new();
        for (sizes, keyframe) in [
            (vec![2usize, 30, 170, 400], true),
            (vec![5, 183, 1], false),
            (vec![1; 40], true),
        ] {
            let mut avcc = vec![0, 0, 0, 2, 0x09, 0xF0];
            for (i, n) in sizes.into_iter().enumerate() {
                avcc.extend_from_slice(&(n as u32).to_be_bytes());
                let kind = if i == 0 { 0x06 } else { 0x65 };
                avcc.push(kind);
                avcc.extend((1..n).map(|b| (b * 7) as u8));
            }
            frames.push((avcc, keyframe));
        }
        let mut sps = vec![0, 0, 0, 5, 0x67, 1, 2, 3, 4];
        sps.extend_from_slice(&frames[0].0[6..]);
        frames.push((sps, true));
        for (avcc, keyframe) in &frames {
            let mut annexb = Vec::new();
            avcc_to_annexb(&mut annexb, avcc, &params, *keyframe).unwrap();
            let mut spill = Vec::new();
            let au = AnnexB::new(avcc, &params, *keyframe, &mut spill).unwrap();
            assert_eq!(au.parts().concat(), annexb);
            let (mut a, mut b) = (TsMuxer::new(true), TsMuxer::new(true));
            let (mut copied, mut pieces) = (Vec::new(), Vec::new());
            a.write_video(&mut copied, 1_000, 40, *keyframe, &annexb);
            b.write_video_parts(&mut pieces, 1_000, 40, *keyframe, au.parts());
            assert_eq!(copied, pieces);
        }
        // Broken lengths are still an error, not a panic.
        let mut spill = Vec::new();
        assert!(AnnexB::new(&[0, 0, 0, 9, 0x41], &params, false, &mut spill).is_err());
        // Audio as pieces (ADTS header, raw frame) equals the copied frame.
        let (mut a, mut b) = (TsMuxer::new(true), TsMuxer::new(true));
        let (mut copied, mut pieces) = (Vec::new(), Vec::new());
        let header = [0xFF, 0xF1, 0x50, 0x80, 0x2F, 0x5F, 0xFC];
        let raw = [0x21u8; 371];
        a.write_audio(&mut copied, 500, &[&header[..], &raw[..]].concat());
        b.write_audio_parts(&mut pieces, 500, &[&header, &raw]);
        assert_eq!(copied, pieces);
    }

    #[test]
    fn adts_headers_describe_the_frame() {
        // AAC LC, 44.1 kHz, stereo.
        let p = AdtsParams::from_config(&[0x12, 0x10]).unwrap();
        let h = p.header(371);
        assert_eq!(h, [0xFF, 0xF1, 0x50, 0x80, 0x2F, 0x5F, 0xFC]);
        let len =
            (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        assert_eq!(len, 378);
    }
}
