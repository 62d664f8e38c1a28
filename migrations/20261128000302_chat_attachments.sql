-- Chat attachments (issue #8): uploads into object storage (`chat/attachments/<id>/`) that a
-- message claims once. Unclaimed rows past `expires_at` are deleted with their objects by a
-- cleanup job.
CREATE TABLE chat_attachments (
    id             uuid PRIMARY KEY,
    uploader_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    content_type   text NOT NULL,
    size_bytes     bigint NOT NULL CHECK (size_bytes > 0),
    -- Set by the `send` frame that claimed it (its client_id and canonical channel): a retry
    -- of that frame may claim it again, any other cannot.
    client_id      text,
    channel        text,
    has_thumbnail  boolean NOT NULL DEFAULT false,
    expires_at     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX chat_attachments_expiry_idx ON chat_attachments (expires_at) WHERE client_id IS NULL;
