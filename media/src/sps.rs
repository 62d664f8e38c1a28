//! H.264 sequence parameter set (ITU-T H.264 §7.3.2.1.1), sans-IO: the picture size and, when
//! the encoder signals it (VUI timing info), the frame rate. WHIP publishers send no
//! `onMetaData`, so this is where a WebRTC stream's width, height and frame rate come from.
//!
//! Only what leads to those fields is interpreted; everything after the VUI timing info is
//! ignored. A truncated or inconsistent SPS gives `None`, never a panic.

/// What an SPS says about the pictures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub level_idc: u8,
    /// Displayed size: coded macroblocks minus the cropping window.
    pub width: u32,
    pub height: u32,
    /// Frames per second from the VUI timing info (`time_scale / (2 · num_units_in_tick)`),
    /// when present.
    pub frame_rate: Option<f64>,
}

/// Parse an SPS NAL unit (with its one-byte NAL header, without a start code).
pub fn parse(nal: &[u8]) -> Option<SpsInfo> {
    if nal.len() < 4 || nal[0] & 0x1F != 7 {
        return None;
    }
    let rbsp = unescape(&nal[1..]);
    let mut r = Bits::new(&rbsp);
    let profile_idc = r.u(8)? as u8;
    r.u(8)?; // constraint flags + reserved
    let level_idc = r.u(8)? as u8;
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.flag()?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            // seq_scaling_matrix_present_flag
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.flag()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let n = r.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                r.se()?; // offset_for_ref_frame
            }
        }
        2 => {}
        _ => return None,
    }
    r.ue()?; // max_num_ref_frames
    r.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? as u64 + 1;
    let height_map_units = r.ue()? as u64 + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.flag()?; // mb_adaptive_frame_field_flag
    }
    r.flag()?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.flag()? {
        crop_l = r.ue()? as u64;
        crop_r = r.ue()? as u64;
        crop_t = r.ue()? as u64;
        crop_b = r.ue()? as u64;
    }
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_x, crop_y) = match chroma_array_type {
        0 => (1, field_factor),
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let coded_w = width_mbs * 16;
    let coded_h = field_factor * height_map_units * 16;
    let width = coded_w.checked_sub(crop_x * (crop_l + crop_r))?;
    let height = coded_h.checked_sub(crop_y * (crop_t + crop_b))?;
    if width == 0 || height == 0 || width > 16_384 || height > 16_384 {
        return None;
    }
    let frame_rate = if r.flag().unwrap_or(false) {
        vui_frame_rate(&mut r)
    } else {
        None
    };
    Some(SpsInfo {
        profile_idc,
        level_idc,
        width: width as u32,
        height: height as u32,
        frame_rate,
    })
}

/// The VUI fields up to `timing_info`; `None` when absent or implausible.
fn vui_frame_rate(r: &mut Bits) -> Option<f64> {
    if r.flag()? {
        // aspect_ratio_info_present_flag
        if r.u(8)? == 255 {
            r.u(16)?; // sar_width
            r.u(16)?; // sar_height
        }
    }
    if r.flag()? {
        r.flag()?; // overscan_appropriate_flag
    }
    if r.flag()? {
        // video_signal_type_present_flag
        r.u(3)?; // video_format
        r.flag()?; // video_full_range_flag
        if r.flag()? {
            r.u(24)?; // colour_primaries, transfer_characteristics, matrix_coefficients
        }
    }
    if r.flag()? {
        r.ue()?; // chroma_sample_loc_type_top_field
        r.ue()?; // chroma_sample_loc_type_bottom_field
    }
    if !r.flag()? {
        return None; // no timing_info
    }
    let num_units_in_tick = r.u(32)?;
    let time_scale = r.u(32)?;
    if num_units_in_tick == 0 || time_scale == 0 {
        return None;
    }
    let fps = time_scale as f64 / (2.0 * num_units_in_tick as f64);
    // Round to 3 decimals (29.97, not 29.970029970029973); refuse nonsense.
    let fps = (fps * 1000.0).round() / 1000.0;
    (0.5..=1000.0).contains(&fps).then_some(fps)
}

fn skip_scaling_list(r: &mut Bits, size: usize) -> Option<()> {
    let mut last = 8i64;
    let mut next = 8i64;
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Remove emulation prevention bytes (`00 00 03` → `00 00`).
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A big-endian bit reader with Exp-Golomb codes.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Bits<'a> {
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(b as u32)
    }

    fn flag(&mut self) -> Option<bool> {
        Some(self.bit()? == 1)
    }

    /// `n` ≤ 32 bits.
    fn u(&mut self, n: u32) -> Option<u32> {
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()? as u64;
        }
        Some(v as u32)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.u(zeros)? as u64;
        u32::try_from((1u64 << zeros) - 1 + rest).ok()
    }

    fn se(&mut self) -> Option<i64> {
        let k = self.ue()? as i64;
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPSs written by x264 (ffmpeg -c:v libx264), checked against ffprobe.
    /// Constrained Baseline 1280x720, VUI timing 30 fps.
    const SPS_720P_BASELINE: &[u8] = &[
        0x67, 0x42, 0xC0, 0x1F, 0xDA, 0x01, 0x40, 0x16, 0xEC, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00,
        0x40, 0x00, 0x00, 0x0F, 0x03, 0xC6, 0x0C, 0xA8,
    ];
    /// High 1920x1080 (1088 coded, cropped), scaling matrices (cqm=jvt), 25 fps.
    const SPS_1080P_HIGH_CQM: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xAC, 0xD9, 0x40, 0x78, 0x02, 0x27, 0xE5, 0xC0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xC8, 0x3C, 0x60, 0xC6, 0x58,
    ];
    /// High 854x480 interlaced (frame_mbs_only = 0, horizontal crop), 30000/1001.
    const SPS_480I_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x1F, 0xAC, 0xD9, 0x40, 0xD8, 0x7B, 0xCD, 0xE0, 0x22, 0x00, 0x00, 0x07,
        0xD2, 0x00, 0x01, 0xD4, 0xC1, 0x3E, 0x2C, 0x5B, 0x2C,
    ];

    #[test]
    fn baseline_720p_with_emulation_prevention_and_timing() {
        assert_eq!(
            parse(SPS_720P_BASELINE),
            Some(SpsInfo {
                profile_idc: 66,
                level_idc: 31,
                width: 1280,
                height: 720,
                frame_rate: Some(30.0),
            })
        );
    }

    #[test]
    fn high_1080p_with_scaling_matrices_and_cropping() {
        let i = parse(SPS_1080P_HIGH_CQM).unwrap();
        assert_eq!((i.profile_idc, i.level_idc), (100, 40));
        assert_eq!((i.width, i.height), (1920, 1080));
        assert_eq!(i.frame_rate, Some(25.0));
    }

    #[test]
    fn interlaced_field_pairs_double_the_map_units() {
        let i = parse(SPS_480I_HIGH).unwrap();
        assert_eq!((i.width, i.height), (854, 480));
        assert_eq!(i.frame_rate, Some(29.97));
    }

    #[test]
    fn no_vui_means_no_frame_rate() {
        // Baseline 640x480, no cropping, no VUI (vui_parameters_present_flag = 0):
        // profile 66, level 30, sps_id 0, log2_max_frame_num-4 = 0, poc type 2, refs 1, gaps 0,
        // width_mbs-1 = 39, height-1 = 29, frame_mbs_only 1, direct8x8 1, crop 0, vui 0.
        let mut bits = String::new();
        for (v, n) in [(66u32, 8), (0, 8), (30, 8)] {
            bits.push_str(&format!("{v:0n$b}"));
        }
        let ue = |v: u32| {
            let x = v + 1;
            let len = 32 - x.leading_zeros();
            format!("{}{:b}", "0".repeat(len as usize - 1), x)
        };
        for s in [ue(0), ue(0), ue(2), ue(1), "0".into(), ue(39), ue(29)] {
            bits.push_str(&s);
        }
        bits.push_str("1100"); // frame_mbs_only, direct_8x8, no cropping, no VUI
        bits.push('1'); // rbsp_stop_one_bit
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let mut nal = vec![0x67];
        for chunk in bits.as_bytes().chunks(8) {
            nal.push(u8::from_str_radix(std::str::from_utf8(chunk).unwrap(), 2).unwrap());
        }
        assert_eq!(
            parse(&nal),
            Some(SpsInfo {
                profile_idc: 66,
                level_idc: 30,
                width: 640,
                height: 480,
                frame_rate: None,
            })
        );
    }

    #[test]
    fn truncated_or_foreign_input_is_none_not_a_panic() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x68, 0xCE, 0x3C, 0x80]), None, "a PPS");
        for n in 0..SPS_1080P_HIGH_CQM.len() - 6 {
            // Cut before the picture size: nothing usable.
            let _ = parse(&SPS_1080P_HIGH_CQM[..n]);
        }
        // Every prefix and every byte value at every position: never a panic.
        for i in 1..SPS_720P_BASELINE.len() {
            for b in [0x00, 0xFF, 0x03, 0x80] {
                let mut s = SPS_720P_BASELINE.to_vec();
                s[i] = b;
                let _ = parse(&s);
            }
        }
        assert_eq!(parse(&SPS_720P_BASELINE[..8]), None);
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(
            unescape(&[1, 0, 0, 3, 1, 0, 0, 3, 0, 3]),
            [1, 0, 0, 1, 0, 0, 0, 3]
        );
    }

    #[test]
    fn exp_golomb() {
        // 1 → 0; 010 → 1; 011 → 2; 00100 → 3 / se: -1 ... packed: 1 010 011 00100 00101
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = Bits::new(&data);
        assert_eq!(r.ue(), Some(0));
        assert_eq!(r.ue(), Some(1));
        assert_eq!(r.ue(), Some(2));
        assert_eq!(r.se(), Some(2)); // ue 3 → se +2
        assert_eq!(r.se(), Some(-2)); // ue 4 → se -2
    }
}
