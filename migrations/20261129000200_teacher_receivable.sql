-- Clawback of course refunds after a payout (issue #9; docs/payments.md, "Refunds after a
-- payout").
--
-- A course refund takes the teacher's share back from their earnings up to what is available
-- there; the rest is debited to a new per-teacher account, `teacher_receivable`: what the
-- teacher owes the platform. Its balance is a debt, so it is the one account besides provider
-- clearing that may go below zero (holds included) — and, the other way round, it never goes
-- above zero: the platform never owes a teacher through it (the teacher's next sales repay the
-- debt, never more). Every other invariant of the ledger applies to it unchanged.

ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_check;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_kind_check CHECK (kind IN
    ('user_wallet', 'teacher_earnings', 'platform_revenue', 'provider_clearing', 'refunds_payable',
     'payouts_payable', 'teacher_receivable'));

-- A receivable belongs to one teacher, like their earnings.
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_owner;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_owner CHECK (
    (kind IN ('user_wallet', 'teacher_earnings', 'teacher_receivable')) = (owner_id IS NOT NULL));

-- Still: no account but provider clearing and the teachers' receivables goes below zero,
-- holds included (the constraint name is what the code maps to `insufficient_funds`).
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_non_negative;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_non_negative CHECK (
    kind IN ('provider_clearing', 'teacher_receivable') OR posted - pending_out >= 0);

-- A receivable is a debt or nothing: repaying more than is owed is refused.
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_receivable_not_positive CHECK (
    kind <> 'teacher_receivable' OR posted <= 0);
