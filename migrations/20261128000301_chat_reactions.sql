-- Chat reactions (issue #8): one row per user, message and emoji (of the served set,
-- assets/emoji/manifest.json; checked by the server).
CREATE TABLE chat_reactions (
    message_id  uuid NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji       text NOT NULL CHECK (length(emoji) BETWEEN 1 AND 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, emoji, user_id)
);
