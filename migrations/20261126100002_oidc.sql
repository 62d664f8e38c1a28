-- OpenID Connect logins: which account a provider's subject signs in to. Keyed by the issuer
-- (not the configured name), so renaming a provider in the configuration keeps its links.
CREATE TABLE user_identities (
    issuer        text NOT NULL,
    subject       text NOT NULL,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The configured provider name, and the email the provider gave when linked.
    provider      text NOT NULL,
    email         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user_idx ON user_identities (user_id);
