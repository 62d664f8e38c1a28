//! H.264 access units from WebRTC (Annex B, as str0m depacketizes them) → FLV video tag bodies
//! the packager takes: a sequence header (AVCDecoderConfigurationRecord) whenever SPS/PPS first
//! appear or change, then AVCC frames (4-byte NAL lengths). Sans-IO; no allocation per NAL
//! beyond the output frame.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::VideoCodec;
use crate::frame::VideoFrame;
use crate::sps::{self, SpsInfo};

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// Split an Annex B byte stream into NAL units (without start codes, trailing zeros trimmed).
pub fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                nals.push(trim_zeros(&data[s..i]));
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    match start {
        Some(s) => nals.push(trim_zeros(&data[s..])),
        // No start code at all: a single NAL unit.
        None if !data.is_empty() => nals.push(data),
        None => {}
    }
    nals.retain(|n| !n.is_empty());
    nals
}

fn trim_zeros(mut n: &[u8]) -> &[u8] {
    while let [rest @ .., 0] = n {
        n = rest;
    }
    n
}

/// The AVCDecoderConfigurationRecord for one SPS and one PPS.
pub fn avc_config(sps: &[u8], pps: &[u8]) -> Option<Vec<u8>> {
    if sps.len() < 4 || pps.is_empty() || sps.len() > 0xFFFF || pps.len() > 0xFFFF {
        return None;
    }
    let mut out = Vec::with_capacity(11 + sps.len() + pps.len());
    out.extend_from_slice(&[1, sps[1], sps[2], sps[3], 0xFF, 0xE1]);
    out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    out.extend_from_slice(sps);
    out.push(1);
    out.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    out.extend_from_slice(pps);
    Some(out)
}

/// Turns access units into video frames; remembers the parameter sets it announced.
#[derive(Debug, Default)]
pub struct H264Framer {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    announced: Option<Vec<u8>>,
    /// `profile_idc`, `level_idc` of the current SPS.
    pub profile: Option<(u8, u8)>,
    /// Picture size and frame rate of the current SPS, when it parses.
    pub sps_info: Option<SpsInfo>,
}

impl H264Framer {
    /// One access unit at `dts_ms` → zero, one or two frames (a sequence header first when the
    /// parameter sets are new). Frames before any SPS/PPS are dropped (the packager could not
    /// decode them); the caller asks for a keyframe.
    pub fn push(&mut self, annexb: &[u8], dts_ms: u64) -> Vec<VideoFrame> {
        let mut out = Vec::new();
        let nals = annexb_nals(annexb);
        let mut keyframe = false;
        let mut body = BytesMut::with_capacity(annexb.len() + 16);
        for nal in &nals {
            match nal[0] & 0x1F {
                NAL_SPS => self.sps = Some(nal.to_vec()),
                NAL_PPS => self.pps = Some(nal.to_vec()),
                NAL_AUD => {}
                t => {
                    if t == NAL_IDR {
                        keyframe = true;
                    }
                    {
                        if body.is_empty() {
                            body.put_slice(&[0, 1, 0, 0, 0]);
                        }
                        body.put_u32(nal.len() as u32);
                        body.put_slice(nal);
                    }
                }
            }
        }
        if let (Some(sps), Some(pps)) = (&self.sps, &self.pps)
            && let Some(config) = avc_config(sps, pps)
            && self.announced.as_ref() != Some(&config)
        {
            self.profile = Some((sps[1], sps[3]));
            self.sps_info = sps::parse(sps);
            let mut data = Vec::with_capacity(5 + config.len());
            data.extend_from_slice(&[0x17, 0, 0, 0, 0]);
            data.extend_from_slice(&config);
            out.push(VideoFrame {
                dts_ms,
                cts_ms: 0,
                keyframe: true,
                sequence_header: true,
                codec: VideoCodec::H264,
                data: Bytes::from(data),
            });
            self.announced = Some(config);
        }
        if body.is_empty() || self.announced.is_none() {
            return out;
        }
        body[0] = if keyframe { 0x17 } else { 0x27 };
        out.push(VideoFrame {
            dts_ms,
            cts_ms: 0,
            keyframe,
            sequence_header: false,
            codec: VideoCodec::H264,
            data: body.freeze(),
        });
        out
    }

    /// Whether a sequence header went out (frames can be decoded).
    pub fn configured(&self) -> bool {
        self.announced.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xE0, 0x1F, 0xAA];
    const PPS: &[u8] = &[0x68, 0xCE, 0x3C, 0x80];

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, n) in nals.iter().enumerate() {
            v.extend_from_slice(if i == 0 {
                &[0, 0, 0, 1][..]
            } else {
                &[0, 0, 1][..]
            });
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn splits_annexb_with_three_and_four_byte_start_codes() {
        let data = annexb(&[SPS, PPS, &[0x65, 1, 2, 0]]);
        let nals = annexb_nals(&data);
        assert_eq!(nals, vec![SPS, PPS, &[0x65, 1, 2][..]]);
    }

    #[test]
    fn an_idr_with_parameter_sets_gives_a_sequence_header_then_a_keyframe() {
        let mut f = H264Framer::default();
        let out = f.push(&annexb(&[SPS, PPS, &[0x65, 9, 9]]), 40);
        assert_eq!(out.len(), 2);
        assert!(out[0].sequence_header && out[0].keyframe);
        assert_eq!(&out[0].data[..5], &[0x17, 0, 0, 0, 0]);
        assert_eq!(&out[0].data[5..9], &[1, 0x42, 0xE0, 0x1F]);
        assert!(out[1].keyframe && !out[1].sequence_header);
        assert_eq!(
            &out[1].data[..],
            &[0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 9, 9]
        );
        assert_eq!(f.profile, Some((0x42, 0x1F)));
    }

    #[test]
    fn the_same_parameter_sets_are_announced_once_and_changes_again() {
        let mut f = H264Framer::default();
        f.push(&annexb(&[SPS, PPS, &[0x65, 1]]), 0);
        let out = f.push(&annexb(&[SPS, PPS, &[0x65, 2]]), 33);
        assert_eq!(out.len(), 1);
        let out = f.push(&annexb(&[&[0x41, 7]]), 66);
        assert_eq!(out.len(), 1);
        assert!(!out[0].keyframe);
        assert_eq!(out[0].data[0], 0x27);
        let sps2 = [0x67, 0x64, 0x00, 0x28, 0xAC];
        let out = f.push(&annexb(&[&sps2, PPS, &[0x65, 3]]), 99);
        assert_eq!(out.len(), 2);
        assert!(out[0].sequence_header);
    }

    #[test]
    fn frames_before_parameter_sets_are_dropped() {
        let mut f = H264Framer::default();
        assert!(f.push(&annexb(&[&[0x41, 7]]), 0).is_empty());
        assert!(!f.configured());
    }
}
