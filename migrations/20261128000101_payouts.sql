-- Teacher payouts (issue #9; docs/payments.md, "Earnings and payouts").
--
-- A request holds the amount on the teacher's earnings account: a pending `payout` transfer
-- earnings -> payouts payable, expiring at `expires_at`. An admin approves it (the hold is
-- posted: the platform owes the teacher) and later records that the money left (`paid`: a
-- posted `payout_settle` transfer payouts payable -> provider clearing of the method), or
-- rejects it (voided). The teacher may cancel while it is pending; the reconciliation job
-- expires it when nobody decided in time (voided). The earnings account's CHECK
-- (ledger_accounts_non_negative, holds included) is what keeps a teacher from asking for more
-- than they have, also under concurrency; the triggers below keep each payout and its
-- transfers in agreement, checked at commit.

ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_check;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_kind_check CHECK (kind IN
    ('user_wallet', 'teacher_earnings', 'platform_revenue', 'provider_clearing', 'refunds_payable',
     'payouts_payable'));

ALTER TABLE ledger_transfers DROP CONSTRAINT ledger_transfers_kind_check;
ALTER TABLE ledger_transfers ADD CONSTRAINT ledger_transfers_kind_check CHECK (kind IN
    ('topup', 'purchase', 'refund', 'refund_settle', 'reversal', 'adjustment', 'payout', 'payout_settle'));

CREATE TABLE payouts (
    id uuid PRIMARY KEY,
    teacher_id uuid NOT NULL REFERENCES users (id),
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'approved', 'paid', 'rejected', 'cancelled', 'expired')),
    -- How the teacher wants to be paid, and where (an account number, an Alipay login...).
    method text NOT NULL CHECK (method IN ('bank_transfer', 'alipay', 'wechatpay')),
    destination text NOT NULL CHECK (length(destination) BETWEEN 1 AND 200),
    note text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    -- The pending transfer holding the amount, and (once paid) the settling transfer.
    hold_id uuid NOT NULL UNIQUE REFERENCES ledger_transfers (id),
    settle_id uuid UNIQUE REFERENCES ledger_transfers (id),
    expires_at timestamptz NOT NULL,
    decided_by uuid REFERENCES users (id),
    decided_at timestamptz,
    -- Why it was rejected (admins), or the provider's reference of the money sent (paid).
    reason text CHECK (length(reason) <= 500),
    paid_reference text CHECK (length(paid_reference) BETWEEN 1 AND 200),
    paid_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payouts_paid CHECK ((status = 'paid') = (settle_id IS NOT NULL)
                                   AND (status = 'paid') = (paid_at IS NOT NULL)
                                   AND (status = 'paid') = (paid_reference IS NOT NULL))
);
CREATE INDEX payouts_teacher ON payouts (teacher_id, id);
CREATE INDEX payouts_pending ON payouts (expires_at) WHERE status = 'pending';

-- Payouts are never deleted; their amount, teacher and transfers never change; their status
-- moves only pending -> approved | rejected | cancelled | expired, approved -> paid.
CREATE FUNCTION payouts_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'payouts are never deleted' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.id, NEW.teacher_id, NEW.amount, NEW.currency, NEW.method, NEW.destination, NEW.hold_id,
        NEW.expires_at, NEW.created_at)
        IS DISTINCT FROM (OLD.id, OLD.teacher_id, OLD.amount, OLD.currency, OLD.method,
        OLD.destination, OLD.hold_id, OLD.expires_at, OLD.created_at) THEN
        RAISE EXCEPTION 'a payout''s amount, teacher and hold are immutable' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
        (OLD.status = 'pending' AND NEW.status IN ('approved', 'rejected', 'cancelled', 'expired'))
        OR (OLD.status = 'approved' AND NEW.status = 'paid')) THEN
        RAISE EXCEPTION 'payout % cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.settle_id IS NOT NULL AND NEW.settle_id IS DISTINCT FROM OLD.settle_id THEN
        RAISE EXCEPTION 'a payout is settled once' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payouts_guard BEFORE UPDATE OR DELETE ON payouts
    FOR EACH ROW EXECUTE FUNCTION payouts_guard();
CREATE TRIGGER payouts_no_truncate BEFORE TRUNCATE ON payouts
    FOR EACH STATEMENT EXECUTE FUNCTION payouts_guard();

-- A payout agrees with its transfers: the hold is a `payout` transfer of exactly two legs
-- (the teacher's earnings -amount, payouts payable +amount, in the payout's currency), pending
-- while the payout is pending, posted once approved (or paid), voided once rejected, cancelled
-- or expired; a paid payout's settlement is a posted `payout_settle` transfer payouts payable
-- -amount -> provider clearing of the method +amount.
CREATE FUNCTION payout_check(p_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    p payouts;
    h ledger_transfers;
    s ledger_transfers;
    ok boolean;
BEGIN
    SELECT * INTO p FROM payouts WHERE id = p_id;
    SELECT * INTO h FROM ledger_transfers WHERE id = p.hold_id;
    IF h.kind <> 'payout' OR h.currency <> p.currency OR h.expires_at IS DISTINCT FROM p.expires_at THEN
        RAISE EXCEPTION 'payout % does not match its hold %', p.id, h.id USING ERRCODE = 'check_violation';
    END IF;
    SELECT count(*) = 2
           AND bool_and((a.kind = 'teacher_earnings' AND a.owner_id = p.teacher_id AND l.amount = -p.amount)
                     OR (a.kind = 'payouts_payable' AND l.amount = p.amount))
      INTO ok
      FROM ledger_legs l JOIN ledger_accounts a ON a.id = l.account_id
     WHERE l.transfer_id = h.id;
    IF NOT coalesce(ok, false) THEN
        RAISE EXCEPTION 'the legs of hold % do not move payout % from earnings to payouts payable', h.id, p.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NOT ((p.status = 'pending' AND h.state = 'pending')
         OR (p.status IN ('approved', 'paid') AND h.state = 'posted')
         OR (p.status IN ('rejected', 'cancelled', 'expired') AND h.state = 'voided')) THEN
        RAISE EXCEPTION 'payout % is % but its hold is %', p.id, p.status, h.state USING ERRCODE = 'check_violation';
    END IF;
    IF p.settle_id IS NOT NULL THEN
        SELECT * INTO s FROM ledger_transfers WHERE id = p.settle_id;
        SELECT s.kind = 'payout_settle' AND s.state = 'posted' AND s.currency = p.currency
               AND count(*) = 2
               AND bool_and((a.kind = 'payouts_payable' AND l.amount = -p.amount)
                         OR (a.kind = 'provider_clearing' AND a.provider = p.method AND l.amount = p.amount))
          INTO ok
          FROM ledger_legs l JOIN ledger_accounts a ON a.id = l.account_id
         WHERE l.transfer_id = s.id;
        IF NOT coalesce(ok, false) THEN
            RAISE EXCEPTION 'settlement % does not pay out payout %', s.id, p.id USING ERRCODE = 'check_violation';
        END IF;
    END IF;
END $$;

CREATE FUNCTION payouts_agree() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM payout_check(NEW.id);
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER payouts_agree AFTER INSERT OR UPDATE ON payouts
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION payouts_agree();

-- From the ledger's side: a payout transfer always belongs to a payout (created with it), and
-- resolving its hold without moving the payout's status is refused at commit.
CREATE FUNCTION ledger_payout_transfers_agree() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p_id uuid;
BEGIN
    SELECT id INTO p_id FROM payouts WHERE hold_id = NEW.id OR settle_id = NEW.id;
    IF p_id IS NULL THEN
        RAISE EXCEPTION '% transfer % belongs to no payout', NEW.kind, NEW.id USING ERRCODE = 'check_violation';
    END IF;
    PERFORM payout_check(p_id);
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_payout_transfers_agree AFTER INSERT OR UPDATE ON ledger_transfers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.kind IN ('payout', 'payout_settle'))
    EXECUTE FUNCTION ledger_payout_transfers_agree();
