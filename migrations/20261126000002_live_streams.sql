-- Live streams: the resource a teacher's app manages (`/api/v1/live-streams`, src/live/) and the
-- events of their lives.
--
-- Stream keys are stored only as their SHA-256. Keys are 256-bit random secrets, so a fast hash
-- cannot be brute-forced and a database leak does not reveal them; the key itself is shown once,
-- when the stream is created or its key reset. `stream_key_prefix` (the first characters) lets
-- people tell keys apart.
--
-- Deletion is soft (`deleted_at`): recordings and events keep their stream, the key stops
-- working at once, and the row disappears from every API answer.
CREATE TABLE live_streams (
    id                 uuid PRIMARY KEY,
    owner_id           uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    title              text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    -- `active` while a session runs (publisher connected or inside the reconnect window);
    -- `disabled` refuses publishers until enabled again.
    status             text NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'active', 'disabled')),
    stream_key_hash    bytea NOT NULL CHECK (length(stream_key_hash) = 32),
    stream_key_prefix  text NOT NULL CHECK (length(stream_key_prefix) BETWEEN 1 AND 16),
    record             boolean NOT NULL DEFAULT true,
    reconnect_window_s integer NOT NULL DEFAULT 60 CHECK (reconnect_window_s BETWEEN 0 AND 3600),
    -- `private` media takes a signed `?token=` on playback.
    visibility         text NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'private')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    CONSTRAINT live_streams_stream_key_hash_key UNIQUE (stream_key_hash)
);

-- A teacher's list, newest first (ids are UUID v7, so id order is creation order).
CREATE INDEX live_streams_owner_id_idx ON live_streams (owner_id, id DESC) WHERE deleted_at IS NULL;

-- What happened to a stream: `live_stream.created`, `.connected`, `.active`, `.disconnected`,
-- `.idle`, `.disabled`, `.enabled`, `.updated`, `.stream_key_reset`, `.deleted`. Each row is also
-- published on the Redis channel `wm:events:live_stream` (best effort; this table is the record).
CREATE TABLE live_stream_events (
    id             uuid PRIMARY KEY,
    live_stream_id uuid NOT NULL REFERENCES live_streams (id) ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind ~ '^live_stream\.[a-z_]+$'),
    payload        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX live_stream_events_stream_idx ON live_stream_events (live_stream_id, id DESC);
