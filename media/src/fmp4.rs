//! The fragmented MP4 (CMAF) muxer, sans-IO: an init segment (`ftyp` + `moov`) from the
//! decoder configurations, and fragments (`moof` + `mdat`) from samples. LL-HLS parts and
//! segments are made of these fragments ([`crate::llhls`]).
//!
//! Written here rather than taken from a crate: the boxes are about twenty fixed layouts
//! (ISO/IEC 14496-12, 14496-14, 14496-15), a fragment is written straight into the output
//! buffer without building a box tree per part, and the MP4 crates that encode fragments are
//! young 0.x APIs that changed shape from one minor version to the next. Independent
//! demuxers check what this writes: ffprobe and GStreamer's `qtdemux` in the tests
//! (tests/api/ll_hls.rs), and the fuzz target `llhls` checks every fragment it makes.
//!
//! Layout choices (CMAF, and what hls.js, Safari and ffmpeg expect):
//! - Track 1 is H.264 video at a 90 kHz timescale, track 2 (if any) AAC at its sample rate.
//! - `tfhd` uses default-base-is-moof, so every `trun` data offset is relative to its `moof`
//!   and a fragment is position independent: a part is a valid fragment anywhere.
//! - `tfdt` is version 1 (64-bit decode time); `trun` is version 1 (signed composition
//!   offsets), with per-sample duration, size, flags (video) and composition offset (video).

/// Video timescale (ticks per second), the MPEG-TS one: ms timestamps map exactly.
pub const VIDEO_TIMESCALE: u32 = 90_000;

const TRACK_VIDEO: u32 = 1;
const TRACK_AUDIO: u32 = 2;

/// The video track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrack {
    /// The AVCDecoderConfigurationRecord, as the publisher sent it (`avcC`'s body).
    pub avcc: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// The audio track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTrack {
    /// The AudioSpecificConfig (`esds`' decoder specific info).
    pub asc: Vec<u8>,
    pub sample_rate: u32,
    pub channels: u8,
}

/// One sample of a fragment: its bytes are in the `mdat` the caller supplies, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Duration in the track's timescale.
    pub duration: u32,
    pub size: u32,
    /// Presentation minus decode time, in the track's timescale (video).
    pub cts_offset: i32,
    /// A sync sample (an IDR for video; every AAC frame).
    pub sync: bool,
}

/// One track's run in a fragment.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// Decode time of the first sample, in the track's timescale.
    pub base_decode_time: u64,
    pub samples: &'a [Sample],
    /// The samples' bytes, in order (pieces written back to back: the publisher's frames
    /// are copied once, into the fragment).
    pub data: &'a [&'a [u8]],
}

impl Run<'_> {
    fn data_len(&self) -> usize {
        self.data.iter().map(|d| d.len()).sum()
    }
}

/// Writes a box: the size is patched when the box is closed.
struct BoxWriter<'a> {
    out: &'a mut Vec<u8>,
    open: Vec<usize>,
}

impl<'a> BoxWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> BoxWriter<'a> {
        BoxWriter {
            out,
            open: Vec::with_capacity(8),
        }
    }

    fn start(&mut self, kind: &[u8; 4]) -> &mut Self {
        self.open.push(self.out.len());
        self.out.extend_from_slice(&[0, 0, 0, 0]);
        self.out.extend_from_slice(kind);
        self
    }

    /// A full box: version and flags after the header.
    fn start_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> &mut Self {
        self.start(kind);
        self.u32((u32::from(version) << 24) | (flags & 0x00FF_FFFF))
    }

    fn end(&mut self) -> &mut Self {
        let start = self.open.pop().expect("a box is open");
        let size = (self.out.len() - start) as u32;
        self.out[start..start + 4].copy_from_slice(&size.to_be_bytes());
        self
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }

    fn zeros(&mut self, n: usize) -> &mut Self {
        self.out.resize(self.out.len() + n, 0);
        self
    }

    /// The unity transformation matrix of `mvhd`/`tkhd`.
    fn matrix(&mut self) -> &mut Self {
        for v in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000u32] {
            self.u32(v);
        }
        self
    }
}

/// The init segment: `ftyp` + `moov` with one video track and, if given, one audio track.
pub fn init_segment(video: &VideoTrack, audio: Option<&AudioTrack>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut w = BoxWriter::new(&mut out);
    w.start(b"ftyp").bytes(b"iso6").u32(0);
    for brand in [b"iso6", b"cmfc", b"isom", b"mp41"] {
        w.bytes(brand);
    }
    w.end();
    w.start(b"moov");
    // mvhd: no duration (fragments carry the media), next track id after ours.
    w.start_full(b"mvhd", 0, 0)
        .u32(0)
        .u32(0)
        .u32(1000)
        .u32(0)
        .u32(0x0001_0000)
        .u16(0x0100)
        .zeros(10)
        .matrix()
        .zeros(24)
        .u32(TRACK_AUDIO + 1)
        .end();
    video_trak(&mut w, video);
    if let Some(audio) = audio {
        audio_trak(&mut w, audio);
    }
    w.start(b"mvex");
    for track in [Some(TRACK_VIDEO), audio.map(|_| TRACK_AUDIO)]
        .into_iter()
        .flatten()
    {
        w.start_full(b"trex", 0, 0)
            .u32(track)
            .u32(1)
            .u32(0)
            .u32(0)
            .u32(0)
            .end();
    }
    w.end().end();
    out
}

fn tkhd(w: &mut BoxWriter<'_>, track: u32, volume: u16, width: u32, height: u32) {
    // Flags: enabled, in movie, in preview.
    w.start_full(b"tkhd", 0, 0x7)
        .u32(0)
        .u32(0)
        .u32(track)
        .u32(0)
        .u32(0)
        .zeros(8)
        .u16(0)
        .u16(0)
        .u16(volume)
        .u16(0)
        .matrix()
        .u32(width << 16)
        .u32(height << 16)
        .end();
}

fn mdhd_hdlr(w: &mut BoxWriter<'_>, timescale: u32, handler: &[u8; 4], name: &[u8]) {
    // Language "und" packed as three 5-bit letters.
    w.start_full(b"mdhd", 0, 0)
        .u32(0)
        .u32(0)
        .u32(timescale)
        .u32(0)
        .u16(0x55C4)
        .u16(0)
        .end();
    w.start_full(b"hdlr", 0, 0)
        .u32(0)
        .bytes(handler)
        .zeros(12)
        .bytes(name)
        .u8(0)
        .end();
}

/// `dinf` (self-contained data reference) and the empty sample tables of a fragmented track;
/// `stsd` is written by the caller between `start_stbl` and `end_stbl`.
fn start_stbl(w: &mut BoxWriter<'_>) {
    w.start(b"dinf")
        .start_full(b"dref", 0, 0)
        .u32(1)
        .start_full(b"url ", 0, 1)
        .end()
        .end()
        .end();
    w.start(b"stbl").start_full(b"stsd", 0, 0).u32(1);
}

fn end_stbl(w: &mut BoxWriter<'_>) {
    w.end(); // stsd
    for kind in [b"stts", b"stsc", b"stco"] {
        w.start_full(kind, 0, 0).u32(0).end();
    }
    w.start_full(b"stsz", 0, 0).u32(0).u32(0).end();
    w.end(); // stbl
}

fn video_trak(w: &mut BoxWriter<'_>, v: &VideoTrack) {
    w.start(b"trak");
    tkhd(w, TRACK_VIDEO, 0, v.width, v.height);
    w.start(b"mdia");
    mdhd_hdlr(w, VIDEO_TIMESCALE, b"vide", b"WeMaster video");
    w.start(b"minf");
    w.start_full(b"vmhd", 0, 1).u16(0).zeros(6).end();
    start_stbl(w);
    let width = v.width.min(u32::from(u16::MAX)) as u16;
    let height = v.height.min(u32::from(u16::MAX)) as u16;
    w.start(b"avc1")
        .zeros(6)
        .u16(1) // data reference index
        .zeros(16)
        .u16(width)
        .u16(height)
        .u32(0x0048_0000) // 72 dpi
        .u32(0x0048_0000)
        .u32(0)
        .u16(1) // frames per sample
        .zeros(32) // compressor name
        .u16(0x0018)
        .u16(0xFFFF);
    w.start(b"avcC").bytes(&v.avcc).end();
    w.end(); // avc1
    end_stbl(w);
    w.end().end().end(); // minf, mdia, trak
}

fn audio_trak(w: &mut BoxWriter<'_>, a: &AudioTrack) {
    w.start(b"trak");
    tkhd(w, TRACK_AUDIO, 0x0100, 0, 0);
    w.start(b"mdia");
    mdhd_hdlr(w, a.sample_rate, b"soun", b"WeMaster audio");
    w.start(b"minf");
    w.start_full(b"smhd", 0, 0).u16(0).u16(0).end();
    start_stbl(w);
    w.start(b"mp4a")
        .zeros(6)
        .u16(1)
        .zeros(8)
        .u16(u16::from(a.channels.max(1)))
        .u16(16)
        .u16(0)
        .u16(0)
        // 16.16 fixed point; rates above 65535 Hz do not fit (the timescale has the truth).
        .u32(a.sample_rate.min(0xFFFF) << 16);
    esds(w, &a.asc);
    w.end(); // mp4a
    end_stbl(w);
    w.end().end().end();
}

/// `esds`: the MPEG-4 elementary stream descriptor around the AudioSpecificConfig.
fn esds(w: &mut BoxWriter<'_>, asc: &[u8]) {
    // Descriptor lengths use the one-byte form: an ASC is a few bytes.
    let asc = &asc[..asc.len().min(100)];
    let dsi_len = asc.len() as u8;
    let dcd_len = 13 + 2 + dsi_len;
    let es_len = 3 + 2 + dcd_len + 3;
    w.start_full(b"esds", 0, 0)
        .u8(0x03)
        .u8(es_len)
        .u16(u16::try_from(TRACK_AUDIO).unwrap_or(0))
        .u8(0)
        .u8(0x04)
        .u8(dcd_len)
        .u8(0x40) // MPEG-4 audio
        .u8(0x15) // audio stream, upstream 0, reserved 1
        .bytes(&[0, 0, 0]) // buffer size
        .u32(0)
        .u32(0)
        .u8(0x05)
        .u8(dsi_len)
        .bytes(asc)
        .u8(0x06)
        .u8(1)
        .u8(0x02)
        .end();
}

/// Sample flags (ISO/IEC 14496-12 §8.8.3.1): a sync sample depends on no other; the others
/// depend on earlier ones and are not sync samples.
fn sample_flags(sync: bool) -> u32 {
    if sync { 0x0200_0000 } else { 0x0101_0000 }
}

/// Append one fragment (`moof` + `mdat`) with the video run and, if any, the audio run.
/// `sequence` is the `mfhd` sequence number (increasing per fragment).
pub fn write_fragment(out: &mut Vec<u8>, sequence: u32, video: Run<'_>, audio: Option<Run<'_>>) {
    let start = out.len();
    let mut w = BoxWriter::new(out);
    w.start(b"moof");
    w.start_full(b"mfhd", 0, 0).u32(sequence).end();
    // The offsets of each trun's data_offset field, patched once the moof's size is known.
    let mut patches: [(usize, usize); 2] = [(0, 0); 2];
    let runs = [
        Some((TRACK_VIDEO, video, true)),
        audio.map(|a| (TRACK_AUDIO, a, false)),
    ];
    let mut data_before = 0usize;
    let mut n = 0;
    for (track, run, is_video) in runs.into_iter().flatten() {
        if run.samples.is_empty() {
            continue;
        }
        w.start(b"traf");
        w.start_full(b"tfhd", 0, 0x02_0000).u32(track).end();
        w.start_full(b"tfdt", 1, 0).u64(run.base_decode_time).end();
        // data offset, duration, size; flags and composition offsets for video.
        let flags = if is_video { 0x0F01 } else { 0x0301 };
        w.start_full(b"trun", 1, flags)
            .u32(run.samples.len() as u32);
        patches[n] = (w.out.len(), data_before);
        n += 1;
        w.u32(0);
        for s in run.samples {
            w.u32(s.duration).u32(s.size);
            if is_video {
                w.u32(sample_flags(s.sync)).u32(s.cts_offset as u32);
            }
        }
        w.end().end(); // trun, traf
        data_before += run.data_len();
    }
    w.end(); // moof
    let moof_len = w.out.len() - start;
    let mdat_len = 8 + data_before;
    // The data starts after the mdat header.
    for &(at, before) in &patches[..n] {
        let offset = (moof_len + 8 + before) as u32;
        w.out[at..at + 4].copy_from_slice(&offset.to_be_bytes());
    }
    w.u32(mdat_len as u32).bytes(b"mdat");
    for run in [Some(video), audio].into_iter().flatten() {
        if !run.samples.is_empty() {
            for piece in run.data {
                w.bytes(piece);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (kind, body) of the boxes at the top of `b`.
    fn boxes(mut b: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        while b.len() >= 8 {
            let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            assert!(
                size >= 8 && size <= b.len(),
                "box size {size} of {}",
                b.len()
            );
            out.push(([b[4], b[5], b[6], b[7]], &b[8..size]));
            b = &b[size..];
        }
        assert!(b.is_empty(), "trailing bytes");
        out
    }

    fn find<'a>(b: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
        boxes(b)
            .into_iter()
            .find(|(k, _)| k == kind)
            .map(|(_, body)| body)
            .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(kind)))
    }

    fn video() -> VideoTrack {
        VideoTrack {
            avcc: vec![
                1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 4, 0x67, 0x64, 0, 0x1F, 1, 0, 2, 0x68, 0xEE,
            ],
            width: 1280,
            height: 720,
        }
    }

    #[test]
    fn init_segment_nests_the_boxes_players_look_for() {
        let audio = AudioTrack {
            asc: vec![0x12, 0x10],
            sample_rate: 44_100,
            channels: 2,
        };
        let init = init_segment(&video(), Some(&audio));
        let top: Vec<_> = boxes(&init).into_iter().map(|(k, _)| k).collect();
        assert_eq!(top, [*b"ftyp", *b"moov"]);
        let moov = find(&init, b"moov");
        let kinds: Vec<_> = boxes(moov).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, [*b"mvhd", *b"trak", *b"trak", *b"mvex"]);
        let traks: Vec<_> = boxes(moov)
            .into_iter()
            .filter(|(k, _)| k == b"trak")
            .collect();
        let stsd = |trak: &[u8]| {
            let stbl = find(find(find(trak, b"mdia"), b"minf"), b"stbl");
            find(stbl, b"stsd").to_vec()
        };
        // stsd: version/flags, count, then the sample entry.
        let v = stsd(traks[0].1);
        assert_eq!(&v[12..16], b"avc1");
        let avc1_body = &v[16..];
        assert_eq!(u16::from_be_bytes([avc1_body[24], avc1_body[25]]), 1280);
        assert_eq!(u16::from_be_bytes([avc1_body[26], avc1_body[27]]), 720);
        assert_eq!(find(&avc1_body[78..], b"avcC"), &video().avcc[..]);
        let a = stsd(traks[1].1);
        assert_eq!(&a[12..16], b"mp4a");
        let esds = find(&a[16 + 28..], b"esds");
        assert!(
            esds.windows(4).any(|w| w == [0x05, 2, 0x12, 0x10]),
            "ASC in esds"
        );
        let mdhd = find(find(traks[1].1, b"mdia"), b"mdhd");
        assert_eq!(u32::from_be_bytes(mdhd[12..16].try_into().unwrap()), 44_100);
    }

    #[test]
    fn fragment_offsets_point_at_each_tracks_samples() {
        let v = [
            Sample {
                duration: 3000,
                size: 3,
                cts_offset: 6000,
                sync: true,
            },
            Sample {
                duration: 3000,
                size: 2,
                cts_offset: -3000,
                sync: false,
            },
        ];
        let a = [Sample {
            duration: 1024,
            size: 4,
            cts_offset: 0,
            sync: true,
        }];
        let mut out = vec![0xAA]; // fragments are appended: offsets are relative to the moof
        write_fragment(
            &mut out,
            7,
            Run {
                base_decode_time: 90_000,
                samples: &v,
                data: &[b"VVV", b"vv"],
            },
            Some(Run {
                base_decode_time: 44_100,
                samples: &a,
                data: &[b"AAAA"],
            }),
        );
        let frag = &out[1..];
        let top = boxes(frag);
        assert_eq!(top[0].0, *b"moof");
        assert_eq!(top[1], (*b"mdat", &b"VVVvvAAAA"[..]));
        let moof = top[0].1;
        assert_eq!(&find(moof, b"mfhd")[4..], 7u32.to_be_bytes());
        let trafs: Vec<_> = boxes(moof)
            .into_iter()
            .filter(|(k, _)| k == b"traf")
            .collect();
        assert_eq!(trafs.len(), 2);
        let moof_len = 8 + moof.len();
        for (traf, data_at, tfdt) in [(trafs[0].1, 0, 90_000u64), (trafs[1].1, 5, 44_100)] {
            let trun = find(traf, b"trun");
            let offset = u32::from_be_bytes(trun[8..12].try_into().unwrap()) as usize;
            assert_eq!(offset, moof_len + 8 + data_at);
            assert_eq!(
                &frag[offset..offset + 1],
                if data_at == 0 { b"V" } else { b"A" }
            );
            let t = find(traf, b"tfdt");
            assert_eq!(u64::from_be_bytes(t[4..12].try_into().unwrap()), tfdt);
        }
        // The second video sample: not sync, negative composition offset kept.
        let trun = find(trafs[0].1, b"trun");
        let second = &trun[12 + 16..12 + 32];
        assert_eq!(&second[8..12], 0x0101_0000u32.to_be_bytes());
        assert_eq!(
            i32::from_be_bytes(second[12..16].try_into().unwrap()),
            -3000
        );
    }
}
