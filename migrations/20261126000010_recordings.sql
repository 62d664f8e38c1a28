-- Recordings: one per recorded live session (every reconnect inside the window included), its
-- segments as stored in object storage, and what happened to it.
--
-- A recording's objects live under `recordings/<id>/`: `segment-N.ts`, `index.m3u8` (rewritten
-- only after the segments it names are stored), `recording.mp4`, `poster.jpg`.
CREATE TABLE recordings (
    id              uuid PRIMARY KEY,
    live_stream_id  uuid NOT NULL REFERENCES live_streams (id) ON DELETE RESTRICT,
    owner_id        uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    -- The live session recorded (one recording per session).
    session_id      uuid NOT NULL UNIQUE,
    status          text NOT NULL DEFAULT 'recording'
                    CHECK (status IN ('recording', 'processing', 'ready', 'failed')),
    failure_reason  text,
    -- Copied from the stream when the session started: replays of private streams need tokens.
    visibility      text NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'private')),
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    ready_at        timestamptz,
    duration_ms     bigint NOT NULL DEFAULT 0 CHECK (duration_ms >= 0),
    -- Bytes of every object of the recording (segments, playlist, MP4, poster).
    size_bytes      bigint NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
    segment_count   integer NOT NULL DEFAULT 0 CHECK (segment_count >= 0),
    video_codec     text,
    audio_codec     text,
    width           integer,
    height          integer,
    mp4_size_bytes  bigint,
    has_poster      boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Deletion removes the objects first, then sets this; the row stays for usage history.
    deleted_at      timestamptz
);

CREATE INDEX recordings_stream_idx ON recordings (live_stream_id, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX recordings_owner_idx ON recordings (owner_id, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX recordings_status_idx ON recordings (status) WHERE deleted_at IS NULL;

-- The segments of a recording in play order. A row is written when the segment closes (its file
-- is then in the spool), `uploaded_at` when it is in object storage: rows without it are the
-- upload queue, which survives a crash.
CREATE TABLE recording_segments (
    recording_id  uuid NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    seq           integer NOT NULL CHECK (seq >= 0),
    name          text NOT NULL CHECK (name ~ '^segment-[0-9]{8,20}\.ts$'),
    duration_ms   integer NOT NULL CHECK (duration_ms >= 0),
    size_bytes    bigint NOT NULL CHECK (size_bytes >= 0),
    -- First segment after a reconnect: `#EXT-X-DISCONTINUITY` before it.
    discontinuity boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    uploaded_at   timestamptz,
    -- The segment could not be recovered (its spool file vanished); left out of the playlist.
    lost          boolean NOT NULL DEFAULT false,
    PRIMARY KEY (recording_id, seq)
);

CREATE INDEX recording_segments_pending_idx ON recording_segments (created_at)
    WHERE uploaded_at IS NULL AND NOT lost;

-- Per-stream retention override, in days (NULL: the configured default applies).
ALTER TABLE live_streams
    ADD COLUMN recording_retention_days integer CHECK (recording_retention_days BETWEEN 1 AND 36500);

-- `recording.started`, `.ready`, `.failed`, `.deleted`, `.refused` (spool full). Also published
-- on the Redis channel `wm:events:recording`.
CREATE TABLE recording_events (
    id             uuid PRIMARY KEY,
    recording_id   uuid REFERENCES recordings (id) ON DELETE CASCADE,
    live_stream_id uuid NOT NULL REFERENCES live_streams (id) ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind ~ '^recording\.[a-z_]+$'),
    payload        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX recording_events_recording_idx ON recording_events (recording_id, id DESC);
