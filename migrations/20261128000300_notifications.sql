-- Notifications (issue #8): per-user choices per kind, and the log that makes every
-- notification idempotent.

-- A user's choice for one kind; no row means the default (both channels on).
-- `security` may not have both off (checked by the API and here).
CREATE TABLE notification_preferences (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('lesson_starting', 'live_now', 'replay_ready',
                                              'payment_confirmed', 'security')),
    in_app      boolean NOT NULL,
    email       boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, kind),
    CONSTRAINT notification_preferences_security_on CHECK (kind <> 'security' OR in_app OR email)
);

-- One row per notification sent: `key` names the event (`lesson_starting:<lesson>`,
-- `live_now:<event>`, ...). Inserted before anything is delivered: a retried event (a webhook
-- delivered twice, a job run on two nodes) finds its row and notifies nobody again.
CREATE TABLE notification_log (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    kind        text NOT NULL,
    -- Where it went: `in_app`, `email`, `both` or `none` (the user turned the kind off).
    delivered   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- The lesson-starting job remembers which lessons it has announced (once per lesson).
ALTER TABLE lessons ADD COLUMN starting_notified_at timestamptz;
