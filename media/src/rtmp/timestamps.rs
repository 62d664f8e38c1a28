//! RTMP message timestamps → per-track 64-bit decode timestamps.
//!
//! RTMP timestamps are 32-bit milliseconds: they wrap after ~49.7 days (or sooner when an encoder
//! starts near the top), and encoders restart, jump or go backwards. Downstream muxers need a
//! DTS that never decreases. Per track (video, audio):
//! - the step from the previous raw timestamp is taken as a signed 32-bit difference, so a wrap
//!   from 0xFFFF_FFF0 to 0x10 is a step of +32 ms and the output stays continuous;
//! - a step within `-BACKWARD_JITTER_MS..=max_jump` is applied; a small step backwards is clamped
//!   (output holds at the last value) without moving the timeline, so jitter does not drift;
//! - anything else (backwards more than the jitter, forwards more than `max_jump`) is a
//!   discontinuity: the output continues from the last output plus the track's usual step (its
//!   last normal step, clamped to 1..=100 ms), and the caller is told so it can log.
//!
//! The first timestamp of a track is placed relative to the other track's latest raw timestamp
//! when the two are within `max_jump` of each other (keeping A/V sync across a wrap); otherwise
//! it starts at the other track's latest output.

use std::time::Duration;

/// Backward steps up to this size are jitter: clamped, not treated as a discontinuity.
pub const BACKWARD_JITTER_MS: i64 = 100;
/// Step used after a discontinuity when the track has no normal step yet.
const DEFAULT_STEP_MS: i64 = 10;

/// Which track a timestamp belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Video,
    Audio,
}

/// A repaired timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dts_ms: u64,
    /// Set when this timestamp was a discontinuity and has been rebased.
    pub discontinuity: Option<Discontinuity>,
}

/// A timestamp that jumped and was repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discontinuity {
    pub track: Track,
    pub previous_raw_ms: u32,
    pub raw_ms: u32,
    /// Signed step seen (raw − previous raw, as a 32-bit difference).
    pub step_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct TrackState {
    last_raw: u32,
    /// Unclamped position on the output timeline of `last_raw`.
    ideal: i64,
    /// Last output (the clamp floor).
    last_out: u64,
    /// Last normal positive step, used to continue after a discontinuity.
    step: i64,
}

/// Repairs the timestamps of one publish (both tracks).
#[derive(Debug, Clone)]
pub struct Timeline {
    max_jump_ms: i64,
    video: Option<TrackState>,
    audio: Option<TrackState>,
}

impl Timeline {
    /// `max_jump`: the largest forward step taken as is (10 s is a good bound).
    pub fn new(max_jump: Duration) -> Self {
        Self {
            max_jump_ms: max_jump.as_millis().min(i32::MAX as u128) as i64,
            video: None,
            audio: None,
        }
    }

    pub fn stamp(&mut self, track: Track, raw: u32) -> Stamp {
        let (this, other) = match track {
            Track::Video => (&mut self.video, &self.audio),
            Track::Audio => (&mut self.audio, &self.video),
        };
        let Some(state) = this.as_mut() else {
            let (ideal, discontinuity) = match other {
                Some(o) => {
                    let step = i64::from(raw.wrapping_sub(o.last_raw) as i32);
                    if step.abs() <= self.max_jump_ms {
                        (o.ideal + step, None)
                    } else {
                        let d = Discontinuity {
                            track,
                            previous_raw_ms: o.last_raw,
                            raw_ms: raw,
                            step_ms: step,
                        };
                        (o.last_out as i64, Some(d))
                    }
                }
                None => (i64::from(raw), None),
            };
            let out = ideal.max(0) as u64;
            *this = Some(TrackState {
                last_raw: raw,
                ideal,
                last_out: out,
                step: 0,
            });
            return Stamp {
                dts_ms: out,
                discontinuity,
            };
        };

        let step = i64::from(raw.wrapping_sub(state.last_raw) as i32);
        let previous_raw = state.last_raw;
        state.last_raw = raw;
        if (-BACKWARD_JITTER_MS..=self.max_jump_ms).contains(&step) {
            state.ideal += step;
            if (1..=100).contains(&step) {
                state.step = step;
            }
            let out = (state.ideal.max(0) as u64).max(state.last_out);
            state.last_out = out;
            return Stamp {
                dts_ms: out,
                discontinuity: None,
            };
        }
        let resume = if state.step > 0 {
            state.step
        } else {
            DEFAULT_STEP_MS
        };
        let out = state.last_out + resume as u64;
        state.ideal = out as i64;
        state.last_out = out;
        Stamp {
            dts_ms: out,
            discontinuity: Some(Discontinuity {
                track,
                previous_raw_ms: previous_raw,
                raw_ms: raw,
                step_ms: step,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline() -> Timeline {
        Timeline::new(Duration::from_secs(10))
    }

    fn video(t: &mut Timeline, raws: &[u32]) -> Vec<u64> {
        raws.iter()
            .map(|&r| t.stamp(Track::Video, r).dts_ms)
            .collect()
    }

    #[test]
    fn normal_timestamps_pass_through() {
        let mut t = timeline();
        assert_eq!(video(&mut t, &[0, 33, 66, 100]), vec![0, 33, 66, 100]);
    }

    #[test]
    fn the_32_bit_wrap_is_continuous() {
        let mut t = timeline();
        let start = u32::MAX - 40;
        let out = video(&mut t, &[start, start.wrapping_add(33), 25, 58]);
        let s = u64::from(start);
        assert_eq!(out, vec![s, s + 33, s + 66, s + 99]);
        assert!(out[3] > u64::from(u32::MAX));
    }

    #[test]
    fn a_big_backwards_jump_continues_from_the_last_timestamp() {
        let mut t = timeline();
        video(&mut t, &[10_000, 10_033, 10_066]);
        let s = t.stamp(Track::Video, 500);
        assert_eq!(s.dts_ms, 10_099);
        let d = s.discontinuity.unwrap();
        assert_eq!(
            (d.previous_raw_ms, d.raw_ms, d.step_ms),
            (10_066, 500, -9_566)
        );
        // and goes on from the new base
        assert_eq!(video(&mut t, &[533, 566]), vec![10_132, 10_165]);
    }

    #[test]
    fn a_forward_jump_beyond_the_bound_is_repaired() {
        let mut t = timeline();
        video(&mut t, &[0, 40]);
        let s = t.stamp(Track::Video, 40 + 3_600_000);
        assert_eq!(s.dts_ms, 80);
        assert!(s.discontinuity.is_some());
        assert_eq!(t.stamp(Track::Video, 3_600_080).dts_ms, 120);
        // A jump just inside the bound is taken as is.
        assert_eq!(t.stamp(Track::Video, 3_610_080).dts_ms, 10_120);
    }

    #[test]
    fn small_backward_jitter_is_clamped_without_drift() {
        let mut t = timeline();
        assert_eq!(
            video(&mut t, &[100, 140, 130, 180]),
            vec![100, 140, 140, 180]
        );
        assert!(t.stamp(Track::Video, 220).discontinuity.is_none());
    }

    #[test]
    fn interleaved_audio_and_video_keep_their_relation() {
        let mut t = timeline();
        let mut out = Vec::new();
        for i in 0..10u32 {
            out.push(t.stamp(Track::Video, 1000 + i * 33).dts_ms);
            out.push(t.stamp(Track::Audio, 1000 + i * 23).dts_ms);
        }
        assert_eq!(out[0], 1000);
        assert_eq!(out[1], 1000);
        assert_eq!(out[18], 1000 + 9 * 33);
        assert_eq!(out[19], 1000 + 9 * 23);
        // Both jump together by an hour: each track continues smoothly and they stay close.
        let v = t.stamp(Track::Video, 3_601_000).dts_ms;
        let a = t.stamp(Track::Audio, 3_601_000).dts_ms;
        assert_eq!(v, 1000 + 9 * 33 + 33);
        assert_eq!(a, 1000 + 9 * 23 + 23);
    }

    #[test]
    fn a_second_track_starting_after_the_wrap_joins_the_first_one() {
        let mut t = timeline();
        let start = u32::MAX - 10;
        t.stamp(Track::Video, start);
        let a = t.stamp(Track::Audio, 20); // 31 ms later, across the wrap
        assert_eq!(a.dts_ms, u64::from(start) + 31);
        assert!(a.discontinuity.is_none());
    }

    #[test]
    fn a_second_track_far_from_the_first_starts_at_its_position() {
        let mut t = timeline();
        video(&mut t, &[5_000_000, 5_000_033]);
        let a = t.stamp(Track::Audio, 0);
        assert_eq!(a.dts_ms, 5_000_033);
        assert!(a.discontinuity.is_some());
        assert_eq!(t.stamp(Track::Audio, 23).dts_ms, 5_000_056);
    }

    #[test]
    fn output_never_decreases_on_hostile_sequences() {
        let mut t = timeline();
        let mut seed = 0x1234_5678u32;
        let mut last = 0;
        for _ in 0..10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let out = t.stamp(Track::Video, seed).dts_ms;
            assert!(out >= last);
            last = out;
        }
    }
}
