-- Identity and access (issue #6): profile columns, sessions with rotating refresh tokens,
-- one-time email tokens, two-factor, API tokens, the email outbox and the audit log.

ALTER TABLE users
    ADD COLUMN locale          text NOT NULL DEFAULT 'en' CHECK (locale IN ('en', 'zh-CN')),
    -- Object key of the avatar in object storage (`avatars/<user id>/<random>`).
    ADD COLUMN avatar_key      text,
    -- TOTP shared secret (base32). Set at enrolment; in force only once `totp_enabled_at` is set.
    ADD COLUMN totp_secret     text,
    ADD COLUMN totp_enabled_at timestamptz,
    -- The last accepted TOTP time step: a code is accepted once per step (RFC 6238 §5.2).
    ADD COLUMN totp_last_step  bigint;

-- A login: one per device. Access tokens carry its id (`sid`); revoking it is also written to
-- Redis so every node refuses its access tokens at the next request.
CREATE TABLE sessions (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- How the user proved who they are: password, password+totp, password+recovery_code.
    auth_method     text NOT NULL,
    user_agent      text,
    ip              text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz NOT NULL DEFAULT now(),
    -- Idle lifetime: pushed forward at every refresh. Absolute lifetime: fixed at login.
    idle_expires_at timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    -- logout, user, password_change, password_reset, admin, user_disabled, refresh_token_reuse
    revoked_reason  text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id, id DESC);

-- Every refresh token ever issued to a session, by SHA-256 (tokens are 256 random bits, so a
-- fast hash is enough). A token is used once; presenting a used one again is reuse: the whole
-- session is revoked.
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

-- One-time tokens sent by email (verification link, password reset), by SHA-256.
CREATE TABLE user_tokens (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX user_tokens_user_idx ON user_tokens (user_id, purpose);

-- Two-factor recovery codes, by SHA-256 (80 random bits each), single use.
CREATE TABLE recovery_codes (
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash bytea NOT NULL CHECK (length(code_hash) = 32),
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- Tokens for automation (ops scripts, CI): shown once, stored by SHA-256, scoped to a subset of
-- the owner's roles, revocable.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    token_prefix text NOT NULL,
    scopes       text[] NOT NULL CHECK (scopes <@ ARRAY['student', 'teacher', 'admin', 'ops']::text[]),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id, id DESC);

-- Mail waiting to go out. Rendered when queued; a background sender delivers it and retries with
-- back-off, so an SMTP outage delays mail but loses none.
CREATE TABLE email_outbox (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL,
    to_address      text NOT NULL,
    subject         text NOT NULL,
    text_body       text NOT NULL,
    html_body       text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_outbox_due_idx ON email_outbox (next_attempt_at) WHERE sent_at IS NULL;

-- Security events. Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE.
CREATE TABLE audit_log (
    id              uuid PRIMARY KEY,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    -- Who acted (null when anonymous, e.g. a failed login) and whom it concerns.
    actor_id        uuid,
    subject_user_id uuid,
    action          text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    ip              text,
    detail          jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_subject_idx ON audit_log (subject_user_id, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, id DESC);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
