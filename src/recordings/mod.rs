//! Recordings: every live session of a stream with `record = true` becomes one recording in
//! object storage (every reconnect inside the window included), replayed as HLS and as an MP4,
//! and managed by ops (list, usage, delete, retention).
//!
//! - [`recorder`]: the task that uploads segments while the lesson runs and finalizes at the end.
//! - [`store`]: the queries.
//! - [`retention`]: the background job deleting expired recordings, and deletion itself.

pub mod recorder;
pub mod retention;
pub mod scan;
pub mod store;

use std::fmt::Write as _;

use wemaster_media::rtmp::StreamInfo;

use store::SegmentRow;

/// The recording's HLS playlist from its segments: those stored, in order, stopping at the
/// first one not stored yet (lost ones are skipped, with a discontinuity). `query` (a playback
/// token) is carried into every segment URI. `final_` makes it a VOD playlist with ENDLIST;
/// otherwise it is an EVENT playlist that grows.
pub fn render_playlist(segments: &[SegmentRow], query: Option<&str>, final_: bool) -> String {
    let listed: Vec<&SegmentRow> = segments
        .iter()
        .take_while(|s| s.uploaded || s.lost)
        .collect();
    let longest = listed
        .iter()
        .filter(|s| !s.lost)
        .map(|s| s.duration_ms)
        .max()
        .unwrap_or(0);
    let target = (i64::from(longest) + 999) / 1000;
    let mut out = String::with_capacity(64 + listed.len() * 48);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", target.max(1));
    out.push_str("#EXT-X-MEDIA-SEQUENCE:0\n");
    out.push_str(if final_ {
        "#EXT-X-PLAYLIST-TYPE:VOD\n"
    } else {
        "#EXT-X-PLAYLIST-TYPE:EVENT\n"
    });
    let mut gap = false;
    for s in listed {
        if s.lost {
            gap = true;
            continue;
        }
        if s.discontinuity || gap {
            out.push_str("#EXT-X-DISCONTINUITY\n");
            gap = false;
        }
        let _ = writeln!(out, "#EXTINF:{:.3},", f64::from(s.duration_ms) / 1000.0);
        match query {
            Some(q) => {
                let _ = writeln!(out, "{}?{q}", s.name);
            }
            None => {
                let _ = writeln!(out, "{}", s.name);
            }
        }
    }
    if final_ {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// Codec names as the API shows them (`h264`, `aac`), as live streams show them.
pub fn codec_names(info: &StreamInfo) -> (Option<String>, Option<String>) {
    use crate::live::supervisor::{audio_codec_name, video_codec_name};
    (
        info.video_codec.map(video_codec_name),
        info.audio_codec.map(audio_codec_name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: i32, uploaded: bool, lost: bool, discontinuity: bool) -> SegmentRow {
        SegmentRow {
            seq,
            name: format!("segment-{seq:08}.ts"),
            duration_ms: 2000 + seq,
            size_bytes: 1,
            discontinuity,
            uploaded,
            lost,
        }
    }

    #[test]
    fn the_playlist_names_only_stored_segments_in_order() {
        let segs = [
            seg(0, true, false, false),
            seg(1, false, true, false),
            seg(2, true, false, false),
            seg(3, true, false, true),
            seg(4, false, false, false),
            seg(5, true, false, false),
        ];
        let p = render_playlist(&segs, Some("token=a.b"), false);
        assert!(p.contains("segment-00000000.ts?token=a.b"));
        assert!(!p.contains("segment-00000001.ts"), "lost");
        assert!(p.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.002,\nsegment-00000002.ts"));
        assert!(p.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.003,\nsegment-00000003.ts"));
        assert!(
            !p.contains("segment-00000005.ts"),
            "after a segment not stored yet"
        );
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !p.contains("ENDLIST"));
        assert!(p.contains("#EXT-X-TARGETDURATION:3"));
        let done = render_playlist(&segs[..4], None, true);
        assert!(done.ends_with("segment-00000003.ts\n#EXT-X-ENDLIST\n"));
        assert!(done.contains("#EXT-X-PLAYLIST-TYPE:VOD"));
    }
}
