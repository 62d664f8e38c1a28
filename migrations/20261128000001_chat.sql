-- Chat (issue #8): channels, messages with a per-channel sequence, read markers, moderation.
--
-- Messages reach this table through the Redis stream `wm:chat:in` and the persister (see
-- src/chat/persist.rs): a message is acknowledged to its sender and fanned out only after its
-- row is committed here.

CREATE TABLE chat_channels (
    id            uuid PRIMARY KEY,
    -- Canonical name: `lesson:<id>`, `course:<id>`, `dm:<low user id>:<high user id>`,
    -- `user:<id>`. A DM is `dm:<other>` as each side sees it; stored once, sorted.
    name          text NOT NULL UNIQUE CHECK (length(name) BETWEEN 6 AND 100),
    kind          text NOT NULL CHECK (kind IN ('lesson', 'course', 'dm', 'user')),
    course_id     uuid REFERENCES courses (id) ON DELETE CASCADE,
    lesson_id     uuid REFERENCES lessons (id) ON DELETE CASCADE,
    -- The two members of a DM (low, high) or the owner of a user channel (user_a).
    user_a        uuid REFERENCES users (id) ON DELETE CASCADE,
    user_b        uuid REFERENCES users (id) ON DELETE CASCADE,
    -- Highest sequence number given out; the persister bumps it under the row lock, which is
    -- what makes `seq` gap-free and ordered per channel.
    last_seq      bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    -- Moderation: only moderators may post; a minimum interval between two messages of one user.
    muted         boolean NOT NULL DEFAULT false,
    slow_mode_s   integer NOT NULL DEFAULT 0 CHECK (slow_mode_s BETWEEN 0 AND 3600),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX chat_channels_dm_a_idx ON chat_channels (user_a) WHERE kind = 'dm';
CREATE INDEX chat_channels_dm_b_idx ON chat_channels (user_b) WHERE kind = 'dm';

CREATE TABLE chat_messages (
    id           uuid PRIMARY KEY,
    channel_id   uuid NOT NULL REFERENCES chat_channels (id) ON DELETE CASCADE,
    seq          bigint NOT NULL CHECK (seq > 0),
    -- NULL for system notifications.
    sender_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    -- The sender's idempotency key: a retried frame finds its first row.
    client_id    text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 64),
    -- `text`: a chat message; `tombstone`: the event that removed message `refers_to`;
    -- `notice`: a system notification.
    kind         text NOT NULL DEFAULT 'text' CHECK (kind IN ('text', 'tombstone', 'notice')),
    body         text NOT NULL CHECK (length(body) <= 8000),
    html         text NOT NULL,
    refers_to    uuid REFERENCES chat_messages (id) ON DELETE CASCADE,
    -- Optional structured payload (attachments, notification data).
    data         jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Removed (recalled by its sender or by a moderator): the body is cleared, the row stays.
    deleted_at   timestamptz,
    deleted_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT chat_messages_channel_seq_key UNIQUE (channel_id, seq),
    CONSTRAINT chat_messages_sender_client_key UNIQUE (sender_id, client_id)
);

-- System notices have no sender: their idempotency key is per channel.
CREATE UNIQUE INDEX chat_messages_notice_key ON chat_messages (channel_id, client_id)
    WHERE sender_id IS NULL;

-- "Read up to": per user and channel. A row also means the user joined the channel (it lists
-- in their channels with an unread count).
CREATE TABLE chat_reads (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id  uuid NOT NULL REFERENCES chat_channels (id) ON DELETE CASCADE,
    read_seq    bigint NOT NULL DEFAULT 0 CHECK (read_seq >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, channel_id)
);

CREATE INDEX chat_reads_channel_idx ON chat_reads (channel_id);

-- A user muted in one channel until `until` (NULL: until unmuted).
CREATE TABLE chat_mutes (
    channel_id  uuid NOT NULL REFERENCES chat_channels (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    until       timestamptz,
    muted_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id)
);

-- Banned from a course's chat: the course channel and every lesson room of the course.
CREATE TABLE chat_bans (
    course_id   uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    banned_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    reason      text NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (course_id, user_id)
);
