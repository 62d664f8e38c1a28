//! HLS media playlists (RFC 8216), sans-IO: the live sliding window, and the lists of a
//! recording (an EVENT playlist while it grows, VOD once it is complete). Every playlist the
//! server writes is rendered here, by one writer.
//!
//! The playlist is the truth of what viewers may fetch, so it is owned here in Rust rather
//! than by a GStreamer sink: a reconnect continues the same playlist (media sequence keeps
//! counting, `#EXT-X-DISCONTINUITY` at the join), and the end writes `#EXT-X-ENDLIST`.
//! Durations are kept in nanoseconds and rendered with millisecond precision.
//!
//! RFC 8216 rules kept here, by construction:
//! - `EXT-X-TARGETDURATION` never changes in a playlist that is reloaded (§6.2.1): it is the
//!   configured maximum segment duration, which the packager never exceeds, and every
//!   `#EXTINF` rounded to the nearest second is at most it (§4.3.3.1).
//! - `EXT-X-PROGRAM-DATE-TIME` on every segment that has one: the wall-clock arrival of its
//!   first frame, so players can show the time and replays can line chat up with the picture.
//! - Media sequence and discontinuity sequence only grow (§6.2.2).

use std::collections::VecDeque;

use bytes::Bytes;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// One media segment as listed in a playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Sequence number (the media sequence of this segment).
    pub sequence: u64,
    /// URI relative to the playlist, e.g. `segment-00000003.ts`.
    pub uri: String,
    pub duration_ns: u64,
    /// A discontinuity precedes this segment (new publisher, new timestamps or encoder).
    pub discontinuity: bool,
    /// When the segment's first frame arrived (`EXT-X-PROGRAM-DATE-TIME`); `None` for segments
    /// recorded before the time was kept.
    pub program_date_time: Option<OffsetDateTime>,
}

/// Where a live playlist stopped: what a playlist continuing it needs
/// ([`LivePlaylist::resume_point`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResumePoint {
    pub next_sequence: u64,
    pub discontinuity_sequence: u64,
}

/// A live playlist with a sliding window.
#[derive(Debug, Clone)]
pub struct LivePlaylist {
    /// The longest segment the packager produces (its configured maximum):
    /// `EXT-X-TARGETDURATION`, fixed for the playlist's life.
    target_duration_ns: u64,
    /// How many segments the playlist lists.
    window: usize,
    segments: VecDeque<Segment>,
    next_sequence: u64,
    /// Discontinuities that slid out of the window (`EXT-X-DISCONTINUITY-SEQUENCE`).
    discontinuity_sequence: u64,
    /// The next segment pushed starts after a discontinuity.
    pending_discontinuity: bool,
    ended: bool,
    /// Longest segment ever listed: a safety net should one exceed the target (the target
    /// then grows rather than break the EXTINF rule; the packager prevents it).
    longest_ns: u64,
    /// The playlist without a query, rendered once per change ([`LivePlaylist::rendered`]):
    /// players poll it far more often than it changes (every segment).
    cached: Option<Bytes>,
}

impl LivePlaylist {
    pub fn new(target_duration_ns: u64, window: usize) -> LivePlaylist {
        LivePlaylist {
            target_duration_ns,
            window: window.max(1),
            segments: VecDeque::new(),
            next_sequence: 0,
            discontinuity_sequence: 0,
            pending_discontinuity: false,
            ended: false,
            longest_ns: 0,
            cached: None,
        }
    }

    /// A playlist that goes on from another's [`ResumePoint`] (the same lesson, its publisher
    /// now on another node): numbering continues where that one stopped, so a player reloading
    /// the same URL sees the next media sequence numbers, and the first segment follows a
    /// discontinuity.
    pub fn continued(target_duration_ns: u64, window: usize, from: ResumePoint) -> LivePlaylist {
        let mut p = LivePlaylist::new(target_duration_ns, window);
        p.next_sequence = from.next_sequence;
        p.discontinuity_sequence = from.discontinuity_sequence;
        p.pending_discontinuity = from.next_sequence > 0;
        p
    }

    /// Where a playlist continuing this one starts ([`LivePlaylist::continued`]): the next
    /// sequence number, and the discontinuity sequence once every listed segment (with the
    /// discontinuities they carry) has slid out.
    pub fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            next_sequence: self.next_sequence,
            discontinuity_sequence: self.discontinuity_sequence
                + self.segments.iter().filter(|s| s.discontinuity).count() as u64,
        }
    }

    /// The next segment follows a break (a reconnect). No-op before the first segment.
    pub fn mark_discontinuity(&mut self) {
        self.cached = None;
        if self.next_sequence > 0 {
            self.pending_discontinuity = true;
        }
    }

    /// Append a closed segment; returns the segments that slid out of the window (their files
    /// may be removed once players can no longer be fetching them).
    pub fn push(
        &mut self,
        uri: impl Into<String>,
        duration_ns: u64,
        program_date_time: Option<OffsetDateTime>,
    ) -> Vec<Segment> {
        self.cached = None;
        let seg = Segment {
            sequence: self.next_sequence,
            uri: uri.into(),
            duration_ns,
            discontinuity: std::mem::take(&mut self.pending_discontinuity),
            program_date_time,
        };
        self.next_sequence += 1;
        self.longest_ns = self.longest_ns.max(duration_ns);
        self.segments.push_back(seg);
        let mut evicted = Vec::new();
        while self.segments.len() > self.window {
            if let Some(old) = self.segments.pop_front() {
                // The discontinuity that the dropped segment carried is counted, or the one on
                // the new first segment if the first one carried it.
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
                evicted.push(old);
            }
        }
        evicted
    }

    /// No more segments: the playlist gets `#EXT-X-ENDLIST`.
    pub fn end(&mut self) {
        self.cached = None;
        self.ended = true;
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Is this URI listed now (a viewer may fetch it)?
    pub fn contains(&self, uri: &str) -> bool {
        self.segments.iter().any(|s| s.uri == uri)
    }

    /// The playlist as [`LivePlaylist::render`] gives it without a query, rendered once per
    /// change and shared (a clone of the bytes per request).
    pub fn rendered(&mut self) -> Bytes {
        if let Some(bytes) = &self.cached {
            return bytes.clone();
        }
        let bytes = Bytes::from(self.render(None));
        self.cached = Some(bytes.clone());
        bytes
    }

    /// Render the playlist. `query` (e.g. `token=...`) is appended to every segment URI so a
    /// private stream's token travels on to its segments.
    pub fn render(&self, query: Option<&str>) -> String {
        let first = self
            .segments
            .front()
            .map_or(self.next_sequence, |s| s.sequence);
        render(
            &self.segments.iter().collect::<Vec<_>>(),
            first,
            self.discontinuity_sequence,
            target_seconds(self.target_duration_ns.max(self.longest_ns)),
            if self.ended {
                Kind::LiveEnded
            } else {
                Kind::Live
            },
            query,
        )
    }
}

/// A complete VOD playlist (`#EXT-X-PLAYLIST-TYPE:VOD`, `#EXT-X-ENDLIST`). `target_ns`: the
/// packager's maximum segment duration (the target of the EVENT list it completes).
pub fn render_vod(segments: &[Segment], query: Option<&str>, target_ns: u64) -> String {
    render_list(segments, query, target_ns, Kind::Vod)
}

/// A playlist that only grows (`#EXT-X-PLAYLIST-TYPE:EVENT`, no `#EXT-X-ENDLIST`): a recording
/// while it is being made. The same list becomes [`render_vod`]'s when it is complete. Its
/// target is `target_ns` (the packager's maximum), so it does not change as the list grows.
pub fn render_event(segments: &[Segment], query: Option<&str>, target_ns: u64) -> String {
    render_list(segments, query, target_ns, Kind::Event)
}

fn render_list(segments: &[Segment], query: Option<&str>, target_ns: u64, kind: Kind) -> String {
    // Recordings made before the maximum was enforced may hold longer segments.
    let longest = segments.iter().map(|s| s.duration_ns).max().unwrap_or(0);
    let first = segments.first().map_or(0, |s| s.sequence);
    render(
        &segments.iter().collect::<Vec<_>>(),
        first,
        0,
        target_seconds(longest.max(target_ns)),
        kind,
        query,
    )
}

#[derive(PartialEq)]
enum Kind {
    Live,
    LiveEnded,
    Event,
    Vod,
}

/// A segment's `#EXTINF` in milliseconds, as written (rounded half up).
fn extinf_ms(ns: u64) -> u64 {
    (ns + 500_000) / 1_000_000
}

/// `EXT-X-TARGETDURATION` for a longest segment of `ns` (RFC 8216 §4.3.3.1): the longest
/// `#EXTINF` as written, rounded to the nearest integer, at least 1. Every `#EXTINF` rounded to
/// the nearest integer is then at most the target, as the RFC requires.
fn target_seconds(ns: u64) -> u64 {
    ((extinf_ms(ns) + 500) / 1000).max(1)
}

/// `2026-12-02T08:00:00.040Z`: UTC, milliseconds (ISO 8601, as RFC 8216 §4.3.2.6 asks).
fn program_date_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let ms = at.millisecond();
    // Whole milliseconds, always three digits: players parse it with Date.parse.
    let at = at.replace_nanosecond(0).unwrap_or(at);
    let base = at.format(&Rfc3339).unwrap_or_default();
    match base.strip_suffix('Z') {
        Some(b) => format!("{b}.{ms:03}Z"),
        None => base,
    }
}

fn render(
    segments: &[&Segment],
    first_sequence: u64,
    disc_seq: u64,
    target: u64,
    kind: Kind,
    query: Option<&str>,
) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(128 + segments.len() * 64);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_sequence}");
    if disc_seq > 0 {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{disc_seq}");
    }
    match kind {
        Kind::Vod => out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
        Kind::Event => out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
        Kind::Live | Kind::LiveEnded => {}
    }
    for s in segments {
        // EXT-X-DISCONTINUITY-SEQUENCE counts only the tags that slid out; listed ones stay.
        if s.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(at) = s.program_date_time {
            out.push_str("#EXT-X-PROGRAM-DATE-TIME:");
            out.push_str(&program_date_time(at));
            out.push('\n');
        }
        // Milliseconds, rounded half up, in integers (float formatting was a visible share
        // of a playlist request).
        let ms = extinf_ms(s.duration_ns);
        let _ = writeln!(out, "#EXTINF:{}.{:03},", ms / 1000, ms % 1000);
        out.push_str(&s.uri);
        if let Some(q) = query {
            out.push(if s.uri.contains('?') { '&' } else { '?' });
            out.push_str(q);
        }
        out.push('\n');
    }
    if matches!(kind, Kind::LiveEnded | Kind::Vod) {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// Segments `0.ts`, `1.ts`, … of `duration_ns` each, numbered from 0.
    fn segments(n: u64, duration_ns: u64) -> Vec<Segment> {
        (0..n)
            .map(|i| Segment {
                sequence: i,
                uri: format!("{i}.ts"),
                duration_ns,
                discontinuity: false,
                program_date_time: None,
            })
            .collect()
    }

    #[test]
    fn a_live_playlist_slides_and_counts_sequence() {
        let mut p = LivePlaylist::new(2 * S, 3);
        for i in 0..5 {
            let evicted = p.push(format!("s{i}.ts"), 2 * S, None);
            if i < 3 {
                assert!(evicted.is_empty());
            } else {
                assert_eq!(evicted[0].uri, format!("s{}.ts", i - 3));
            }
        }
        let text = p.render(None);
        assert!(text.starts_with("#EXTM3U\n"));
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"));
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{text}");
        assert!(
            text.contains("#EXTINF:2.000,\ns2.ts\n#EXTINF:2.000,\ns3.ts\n#EXTINF:2.000,\ns4.ts\n")
        );
        assert!(!text.contains("ENDLIST"));
        assert!(p.contains("s4.ts") && !p.contains("s1.ts"));
    }

    #[test]
    fn a_reconnect_gives_one_discontinuity_that_is_counted_once_it_slides_out() {
        let mut p = LivePlaylist::new(2 * S, 2);
        p.mark_discontinuity(); // before any segment: nothing to mark
        p.push("a.ts", 2 * S, None);
        p.mark_discontinuity();
        p.push("b.ts", 2 * S, None);
        let text = p.render(None);
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
        assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\nb.ts"));
        p.push("c.ts", 2 * S, None); // a.ts slides out; b keeps its tag
        assert!(
            p.render(None)
                .contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\nb.ts")
        );
        p.push("d.ts", 2 * S, None); // b.ts (with the discontinuity) slides out
        let text = p.render(None);
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
    }

    #[test]
    fn ending_writes_endlist_and_target_never_shrinks() {
        let mut p = LivePlaylist::new(2 * S, 5);
        p.push("a.ts", 3_400_000_000, None);
        p.push("b.ts", 2 * S, None);
        p.end();
        let text = p.render(None);
        assert!(text.contains("#EXT-X-TARGETDURATION:3\n"), "{text}");
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert!(p.is_ended());
    }

    #[test]
    fn the_shared_rendering_follows_every_change() {
        let mut p = LivePlaylist::new(2 * S, 2);
        p.push("a.ts", 2_002_499_999, None);
        let first = p.rendered();
        assert_eq!(first, p.render(None).as_bytes());
        assert!(p.render(None).contains("#EXTINF:2.002,\na.ts\n"));
        assert_eq!(p.rendered(), first, "unchanged: the same bytes");
        p.push("b.ts", 1_999_500_000, None);
        assert!(p.rendered().ends_with(b"#EXTINF:2.000,\nb.ts\n"));
        p.mark_discontinuity();
        p.push("c.ts", 33_000_000, None);
        assert!(
            p.rendered()
                .ends_with(b"#EXT-X-DISCONTINUITY\n#EXTINF:0.033,\nc.ts\n")
        );
        p.end();
        assert!(p.rendered().ends_with(b"#EXT-X-ENDLIST\n"));
        assert_eq!(p.rendered(), p.render(None).as_bytes());
    }

    #[test]
    fn the_token_travels_to_every_segment() {
        let mut p = LivePlaylist::new(2 * S, 5);
        p.push("a.ts", 2 * S, None);
        p.push("b.ts?x=1", 2 * S, None);
        let text = p.render(Some("token=abc"));
        assert!(text.contains("a.ts?token=abc\n") && text.contains("b.ts?x=1&token=abc\n"));
    }

    #[test]
    fn vod_lists_everything_with_type_and_endlist() {
        let mut segs = segments(3, 2 * S);
        segs[2].discontinuity = true;
        let text = render_vod(&segs, None, 0);
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\n2.ts"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    }

    #[test]
    fn an_event_list_grows_without_endlist() {
        let text = render_event(&segments(2, 2 * S), Some("token=t"), 2 * S);
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        assert!(text.ends_with("#EXTINF:2.000,\n1.ts?token=t\n"), "{text}");
        assert!(!text.contains("ENDLIST"));
    }

    #[test]
    fn target_duration_is_the_longest_extinf_rounded_to_the_nearest_second() {
        let list = |ns: u64| render_vod(&segments(1, ns), None, 0);
        assert!(list(2_003_000_000).contains("#EXT-X-TARGETDURATION:2\n"));
        assert!(list(2_500_000_000).contains("#EXT-X-TARGETDURATION:3\n"));
        // Written as 2.500, which rounds to 3: the target follows what is written.
        assert!(list(2_499_600_000).contains("#EXTINF:2.500,\n0.ts"));
        assert!(list(2_499_600_000).contains("#EXT-X-TARGETDURATION:3\n"));
        assert!(list(0).contains("#EXT-X-TARGETDURATION:1\n"));
    }

    #[test]
    fn every_segment_carries_its_wall_clock_start_in_utc_milliseconds() {
        let at = time::macros::datetime!(2026-12-02 09:00:00.04 +08:00);
        let mut p = LivePlaylist::new(2 * S, 3);
        p.push("a.ts", 2 * S, Some(at));
        p.mark_discontinuity();
        p.push("b.ts", 2 * S, Some(at + time::Duration::seconds(2)));
        let text = p.render(None);
        assert!(
            text.contains(
                "#EXT-X-PROGRAM-DATE-TIME:2026-12-02T01:00:00.040Z\n#EXTINF:2.000,\na.ts\n"
            ),
            "{text}"
        );
        // After a discontinuity the date follows the tag (it dates the next segment).
        assert!(text.contains(
            "#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-12-02T01:00:02.040Z\n#EXTINF"
        ));
        let whole = time::macros::datetime!(2026-12-02 01:00:05 UTC);
        assert_eq!(program_date_time(whole), "2026-12-02T01:00:05.000Z");
    }

    #[test]
    fn a_growing_recording_keeps_the_configured_target() {
        let short = render_event(&segments(1, S), None, 4 * S);
        let longer = render_event(&segments(3, 3_900_000_000), None, 4 * S);
        assert!(short.contains("#EXT-X-TARGETDURATION:4\n"), "{short}");
        assert!(longer.contains("#EXT-X-TARGETDURATION:4\n"), "{longer}");
        // An old recording with longer segments still obeys the EXTINF rule.
        assert!(render_vod(&segments(1, 9 * S), None, 4 * S).contains("#EXT-X-TARGETDURATION:9\n"));
    }

    #[test]
    fn a_continued_playlist_goes_on_with_the_next_numbers_after_a_discontinuity() {
        let mut a = LivePlaylist::new(4 * S, 3);
        for i in 0..5 {
            if i == 3 {
                a.mark_discontinuity();
            }
            a.push(format!("a{i}.ts"), 2 * S, None);
        }
        // a2, a3 (after a discontinuity), a4 listed; nothing has slid out with a tag yet.
        let at = a.resume_point();
        assert_eq!(at.next_sequence, 5);
        assert_eq!(
            at.discontinuity_sequence, 1,
            "a3's discontinuity counts once a3 is gone"
        );
        let mut b = LivePlaylist::continued(4 * S, 3, at);
        b.push("b0.ts", 2 * S, None);
        let text = b.render(None);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:5\n"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(
            text.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\nb0.ts"),
            "{text}"
        );
        // b0's tag counts once b0 slides out.
        for i in 1..4 {
            b.push(format!("b{i}.ts"), 2 * S, None);
        }
        let text = b.render(None);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:6\n"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"), "{text}");
        // A playlist that had no segment yet continues without a tag.
        let fresh = LivePlaylist::new(4 * S, 3).resume_point();
        let mut c = LivePlaylist::continued(4 * S, 3, fresh);
        c.push("c0.ts", 2 * S, None);
        assert!(!c.render(None).contains("#EXT-X-DISCONTINUITY\n"));
    }
}
