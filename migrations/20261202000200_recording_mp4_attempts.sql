-- The replay MP4 is made after a recording is ready; when it fails the recording stays
-- playable as HLS, and the MP4 is tried again (at the next start, up to three attempts).
-- `mp4_failed_at` says the last attempt failed: the API's `mp4_status` = `failed`.
ALTER TABLE recordings
    ADD COLUMN mp4_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN mp4_failed_at timestamptz;
