-- Payments: a double-entry ledger whose invariants the database enforces, orders, provider
-- events, refunds and idempotency keys. See docs/payments.md.
--
-- Sign convention: a leg's amount is signed; a transfer's legs sum to zero. An account's
-- `posted` balance is the sum of the legs of its posted transfers. Only provider clearing
-- accounts (money outside the platform) may go below zero.

CREATE TABLE ledger_accounts (
    id uuid PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN
        ('user_wallet', 'teacher_earnings', 'platform_revenue', 'provider_clearing', 'refunds_payable')),
    owner_id uuid REFERENCES users (id),
    provider text,
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Sum of the legs of posted transfers.
    posted bigint NOT NULL DEFAULT 0,
    -- Sum of the negative legs of pending transfers (a positive number): held, not spendable.
    pending_out bigint NOT NULL DEFAULT 0 CHECK (pending_out >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_accounts_owner CHECK (
        (kind IN ('user_wallet', 'teacher_earnings')) = (owner_id IS NOT NULL)),
    CONSTRAINT ledger_accounts_provider CHECK ((kind = 'provider_clearing') = (provider IS NOT NULL)),
    -- A wallet (and every account but provider clearing) never goes below zero, holds included.
    CONSTRAINT ledger_accounts_non_negative CHECK (
        kind = 'provider_clearing' OR posted - pending_out >= 0),
    CONSTRAINT ledger_accounts_unique UNIQUE NULLS NOT DISTINCT (kind, owner_id, provider, currency)
);

-- A transfer: one journal entry of two or more legs, committed atomically. `id` is the
-- idempotent id chosen by the caller (deterministic from what caused it), so a retry that
-- inserts it again conflicts instead of moving money twice.
CREATE TABLE ledger_transfers (
    id uuid PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('topup', 'purchase', 'refund', 'refund_settle', 'reversal', 'adjustment')),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    state text NOT NULL CHECK (state IN ('pending', 'posted', 'voided')),
    -- Pending holds expire: the reconciliation job voids them, and posting one refuses.
    expires_at timestamptz,
    resolved_at timestamptz,
    order_id uuid,
    refund_id uuid,
    -- A correction names the transfer it reverses (at most one reversal each).
    reverses uuid UNIQUE REFERENCES ledger_transfers (id),
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Legs may only be added in the transaction that created the transfer.
    created_tx bigint NOT NULL DEFAULT txid_current(),
    CONSTRAINT ledger_transfers_hold CHECK ((state = 'pending') = (resolved_at IS NULL))
);
CREATE INDEX ledger_transfers_order ON ledger_transfers (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX ledger_transfers_pending ON ledger_transfers (expires_at) WHERE state = 'pending';

CREATE TABLE ledger_legs (
    id uuid PRIMARY KEY,
    transfer_id uuid NOT NULL REFERENCES ledger_transfers (id),
    account_id uuid NOT NULL REFERENCES ledger_accounts (id),
    amount bigint NOT NULL CHECK (amount <> 0),
    UNIQUE (transfer_id, account_id)
);
CREATE INDEX ledger_legs_account ON ledger_legs (account_id, id);

-- Balances may change only through the triggers below (trigger depth > 1), never by a direct
-- UPDATE; accounts are never deleted.
CREATE FUNCTION ledger_accounts_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger accounts cannot be deleted' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.posted, NEW.pending_out) IS DISTINCT FROM (OLD.posted, OLD.pending_out)
        AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'ledger balances change only through transfers' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.id, NEW.kind, NEW.owner_id, NEW.provider, NEW.currency)
        IS DISTINCT FROM (OLD.id, OLD.kind, OLD.owner_id, OLD.provider, OLD.currency) THEN
        RAISE EXCEPTION 'ledger accounts are immutable' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_accounts_guard BEFORE UPDATE OR DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_accounts_guard();

CREATE FUNCTION ledger_accounts_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.posted <> 0 OR NEW.pending_out <> 0 THEN
        RAISE EXCEPTION 'ledger accounts open at zero' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_accounts_open BEFORE INSERT ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_accounts_open();

-- Legs: insert-only, only while their transfer is new, in the transfer's currency; each leg
-- moves its account's balance (posted) or hold (pending debit).
CREATE FUNCTION ledger_legs_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t ledger_transfers;
    acct_currency text;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'ledger legs are immutable; post a reversing transfer' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT * INTO t FROM ledger_transfers WHERE id = NEW.transfer_id;
    IF t.created_tx <> txid_current() THEN
        RAISE EXCEPTION 'legs can only be added in the transaction that creates the transfer' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT currency INTO acct_currency FROM ledger_accounts WHERE id = NEW.account_id;
    IF acct_currency <> t.currency THEN
        RAISE EXCEPTION 'leg currency % does not match account currency %', t.currency, acct_currency USING ERRCODE = 'check_violation';
    END IF;
    IF t.state = 'posted' THEN
        UPDATE ledger_accounts SET posted = posted + NEW.amount WHERE id = NEW.account_id;
    ELSIF t.state = 'pending' AND NEW.amount < 0 THEN
        UPDATE ledger_accounts SET pending_out = pending_out - NEW.amount WHERE id = NEW.account_id;
    ELSIF t.state = 'voided' THEN
        RAISE EXCEPTION 'a transfer cannot be created voided' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_legs_apply BEFORE INSERT OR UPDATE OR DELETE ON ledger_legs
    FOR EACH ROW EXECUTE FUNCTION ledger_legs_apply();
CREATE TRIGGER ledger_legs_no_truncate BEFORE TRUNCATE ON ledger_legs
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_legs_apply();

-- Every transfer balances: checked at commit (deferred), when all its legs are in.
CREATE FUNCTION ledger_transfer_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n int;
    total numeric;
BEGIN
    SELECT count(*), coalesce(sum(amount), 0) INTO n, total FROM ledger_legs WHERE transfer_id = NEW.id;
    IF n < 2 THEN
        RAISE EXCEPTION 'transfer % has % legs; a transfer needs at least two', NEW.id, n USING ERRCODE = 'check_violation';
    END IF;
    IF total <> 0 THEN
        RAISE EXCEPTION 'transfer % does not balance (legs sum to %)', NEW.id, total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_transfer_balances AFTER INSERT ON ledger_transfers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transfer_balances();

CREATE FUNCTION ledger_leg_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
BEGIN
    SELECT coalesce(sum(amount), 0) INTO total FROM ledger_legs WHERE transfer_id = NEW.transfer_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'transfer % does not balance (legs sum to %)', NEW.transfer_id, total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_leg_balances AFTER INSERT ON ledger_legs
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_leg_balances();

-- Transfers: immutable but for one state change, pending -> posted | voided, which moves the
-- holds into balances (posted) or releases them (voided). No deletes, no truncation.
CREATE FUNCTION ledger_transfers_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'ledger transfers are immutable; post a reversing transfer' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.id, NEW.kind, NEW.currency, NEW.expires_at, NEW.order_id, NEW.refund_id, NEW.reverses,
        NEW.description, NEW.created_at, NEW.created_tx)
        IS DISTINCT FROM (OLD.id, OLD.kind, OLD.currency, OLD.expires_at, OLD.order_id, OLD.refund_id,
        OLD.reverses, OLD.description, OLD.created_at, OLD.created_tx) THEN
        RAISE EXCEPTION 'ledger transfers are immutable; post a reversing transfer' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.state = OLD.state THEN
        IF NEW.resolved_at IS DISTINCT FROM OLD.resolved_at THEN
            RAISE EXCEPTION 'ledger transfers are immutable' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.state <> 'pending' THEN
        RAISE EXCEPTION 'transfer % is already %', OLD.id, OLD.state USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.state = 'posted' AND OLD.expires_at IS NOT NULL AND OLD.expires_at <= now() THEN
        RAISE EXCEPTION 'hold % has expired', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    NEW.resolved_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_transfers_guard BEFORE UPDATE OR DELETE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_transfers_guard();
CREATE TRIGGER ledger_transfers_no_truncate BEFORE TRUNCATE ON ledger_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_transfers_guard();
CREATE TRIGGER ledger_legs_no_truncate_accounts BEFORE TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_transfers_guard();

CREATE FUNCTION ledger_transfers_resolve() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    leg record;
BEGIN
    -- In account order, so concurrent resolutions lock rows in the same order.
    FOR leg IN SELECT account_id, amount FROM ledger_legs WHERE transfer_id = NEW.id ORDER BY account_id LOOP
        IF NEW.state = 'posted' THEN
            UPDATE ledger_accounts
               SET posted = posted + leg.amount,
                   pending_out = pending_out - CASE WHEN leg.amount < 0 THEN -leg.amount ELSE 0 END
             WHERE id = leg.account_id;
        ELSIF leg.amount < 0 THEN
            UPDATE ledger_accounts SET pending_out = pending_out + leg.amount WHERE id = leg.account_id;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_transfers_resolve AFTER UPDATE OF state ON ledger_transfers
    FOR EACH ROW WHEN (OLD.state = 'pending' AND NEW.state <> 'pending')
    EXECUTE FUNCTION ledger_transfers_resolve();

-- Accounts whose stored balances differ from the sum of their transfers (empty when healthy);
-- the tests and the reconciliation job check it.
CREATE VIEW ledger_mismatches AS
SELECT a.id, a.posted, a.pending_out,
       coalesce(sum(l.amount) FILTER (WHERE t.state = 'posted'), 0)::bigint AS posted_from_legs,
       coalesce(sum(-l.amount) FILTER (WHERE t.state = 'pending' AND l.amount < 0), 0)::bigint AS pending_from_legs
  FROM ledger_accounts a
  LEFT JOIN ledger_legs l ON l.account_id = a.id
  LEFT JOIN ledger_transfers t ON t.id = l.transfer_id
 GROUP BY a.id
HAVING a.posted <> coalesce(sum(l.amount) FILTER (WHERE t.state = 'posted'), 0)
    OR a.pending_out <> coalesce(sum(-l.amount) FILTER (WHERE t.state = 'pending' AND l.amount < 0), 0);

-- Orders: what a user buys. `wallet_topup` credits the wallet; `course` (product_id = the
-- course) is created by the courses module, which enrolls in the transaction that pays it.
CREATE TABLE orders (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    kind text NOT NULL CHECK (kind IN ('wallet_topup', 'course')),
    product_id uuid,
    -- For course orders: who earns, and the platform's fee in basis points, fixed at order time.
    payee_id uuid REFERENCES users (id),
    platform_fee_bps int CHECK (platform_fee_bps BETWEEN 0 AND 10000),
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    provider text NOT NULL,
    provider_ref text,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'paid', 'expired', 'cancelled', 'refunded', 'partially_refunded')),
    refunded_amount bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL,
    paid_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_course CHECK (kind <> 'course' OR (product_id IS NOT NULL AND payee_id IS NOT NULL AND platform_fee_bps IS NOT NULL)),
    CONSTRAINT orders_refund_le_amount CHECK (refunded_amount BETWEEN 0 AND amount)
);
CREATE INDEX orders_user ON orders (user_id, id);
CREATE INDEX orders_pending ON orders (expires_at) WHERE status = 'pending';

-- Provider callbacks, one row per (provider, event id): the de-duplication and the audit trail.
CREATE TABLE payment_events (
    provider text NOT NULL,
    event_id text NOT NULL,
    id uuid NOT NULL UNIQUE,
    event_type text NOT NULL,
    order_id uuid,
    refund_id uuid,
    outcome text NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

CREATE TABLE refunds (
    id uuid PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id),
    user_id uuid NOT NULL REFERENCES users (id),
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL,
    destination text NOT NULL CHECK (destination IN ('original', 'wallet')),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    reason text NOT NULL DEFAULT '',
    requested_by uuid REFERENCES users (id),
    failure_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);
CREATE INDEX refunds_order ON refunds (order_id);

-- Idempotency-Key of money-moving POSTs: the first answer, replayed for the same key and body.
CREATE TABLE idempotency_keys (
    user_id uuid NOT NULL,
    route text NOT NULL,
    key text NOT NULL,
    request_hash bytea NOT NULL,
    status smallint,
    body jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, route, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
