-- When each recorded segment's first frame arrived: `EXT-X-PROGRAM-DATE-TIME` in the
-- recording's playlist, so a replay can show wall-clock time and line chat up with the picture.
-- NULL for segments recorded before it was kept.
ALTER TABLE recording_segments ADD COLUMN started_at timestamptz;
