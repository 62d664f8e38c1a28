-- Outgoing webhooks (docs/webhooks.md): admins subscribe an integrator's URL to events; each
-- event is stored once, with one delivery row per subscribed endpoint, in the transaction of the
-- change it reports (so an event is sent if and only if the change committed). Deliveries are
-- claimed by any node (`FOR UPDATE SKIP LOCKED` + a lease in `next_attempt_at`), signed as the
-- Standard Webhooks specification says, and retried with back-off for `webhooks.give_up_after_s`.
CREATE TABLE webhook_endpoints (
    id          uuid PRIMARY KEY,
    url         text NOT NULL CHECK (length(url) BETWEEN 8 AND 2000),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    -- Event types this endpoint receives, e.g. {stream.started, payment.confirmed}.
    events      text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 50),
    enabled     boolean NOT NULL DEFAULT true,
    -- `whsec_` + base64 of 32 random bytes: the HMAC key. The previous one still signs (as a
    -- second signature) until `previous_secret_until`, so receivers can switch without a gap.
    secret                text NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    created_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per event that had at least one subscriber when it happened. `id` is the
-- `webhook-id` every receiver sees (the same for each endpoint and each retry): their key for
-- de-duplication.
CREATE TABLE webhook_events (
    id         uuid PRIMARY KEY,
    type       text NOT NULL CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    event_id        uuid NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- pending: to be sent at next_attempt_at (also while a node holds it: the claim pushes
    -- next_attempt_at past the send's timeout); delivered: a 2xx answer; failed: no 2xx
    -- before the give-up time (a replay makes it pending again).
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- When retries stop: null means the event's time + webhooks.give_up_after_s; a replay sets
    -- it to the replay's time + that.
    give_up_at      timestamptz,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_deliveries_once UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);

-- Every try, for the console and for a receiver's support questions.
CREATE TABLE webhook_attempts (
    id          uuid PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    status      integer,
    error       text,
    duration_ms integer NOT NULL,
    -- The first bytes of the receiver's answer (≤ 1 KiB), for debugging.
    response    text NOT NULL DEFAULT ''
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, at);
