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

use wemaster_media::{frame::StreamInfo, hls};

use store::SegmentRow;

/// The recording's HLS playlist from its segments: those stored, in order, stopping at the
/// first one not stored yet (lost ones are skipped, with a discontinuity). `query` (a playback
/// token) is carried into every segment URI. `final_` makes it a VOD playlist with ENDLIST;
/// otherwise it is an EVENT playlist that grows. Rendered by the media crate's one playlist
/// writer ([`hls`]), which sets the target duration by RFC 8216's rule: `target_ns` is the
/// packager's maximum segment duration, so the growing EVENT list never changes it.
pub fn render_playlist(
    segments: &[SegmentRow],
    query: Option<&str>,
    final_: bool,
    target_ns: u64,
) -> String {
    let mut listed = Vec::with_capacity(segments.len());
    let mut gap = false;
    for s in segments.iter().take_while(|s| s.uploaded || s.lost) {
        if s.lost {
            gap = true;
            continue;
        }
        let after_gap = std::mem::take(&mut gap);
        listed.push(hls::Segment {
            sequence: listed.len() as u64,
            uri: s.name.clone(),
            duration_ns: u64::try_from(s.duration_ms).unwrap_or(0) * 1_000_000,
            discontinuity: s.discontinuity || after_gap,
            program_date_time: s.started_at,
        });
    }
    if final_ {
        hls::render_vod(&listed, query, target_ns)
    } else {
        hls::render_event(&listed, query, target_ns)
    }
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
            started_at: None,
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
        let p = render_playlist(&segs, Some("token=a.b"), false, 0);
        assert!(p.contains("segment-00000000.ts?token=a.b"));
        assert!(!p.contains("segment-00000001.ts"), "lost");
        assert!(p.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.002,\nsegment-00000002.ts"));
        assert!(p.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.003,\nsegment-00000003.ts"));
        assert!(
            !p.contains("segment-00000005.ts"),
            "after a segment not stored yet"
        );
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !p.contains("ENDLIST"));
        // The longest listed is 2.003 s: RFC 8216 §4.3.3.1 rounds it to the nearest second (it
        // was rounded up to 3 before the media crate's writer rendered this playlist).
        assert!(p.contains("#EXT-X-TARGETDURATION:2\n"), "{p}");
        let done = render_playlist(&segs[..4], None, true, 0);
        assert!(done.ends_with("segment-00000003.ts\n#EXT-X-ENDLIST\n"));
        assert!(done.contains("#EXT-X-PLAYLIST-TYPE:VOD"));
    }
}
