-- Live and recording events the notifications have handled. The Redis listener marks each event
-- it handled; a periodic scan of the events tables notifies what it missed (no node listening
-- when the event was published, a lost subscription). Per-user delivery stays deduplicated by
-- notification_log.
CREATE TABLE notification_sources (
    event_id   uuid PRIMARY KEY,
    handled_at timestamptz NOT NULL DEFAULT now()
);
