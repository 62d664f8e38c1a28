-- Users and their roles. The identity issue builds sessions, two-factor and audit on this.
CREATE TABLE users (
    id                uuid PRIMARY KEY,
    -- Stored as the user typed it (trimmed); uniqueness is case-insensitive.
    email             text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    display_name      text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 100),
    -- argon2id PHC string.
    password_hash     text NOT NULL,
    -- A user may hold several roles.
    roles             text[] NOT NULL DEFAULT ARRAY['student']::text[]
                      CHECK (roles <@ ARRAY['student', 'teacher', 'admin', 'ops']::text[]
                             AND cardinality(roles) >= 1),
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    email_verified_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email_key ON users (lower(email));
