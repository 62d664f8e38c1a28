//! The double-entry ledger: accounts, transfers of two or more legs, holds.
//!
//! The invariants live in PostgreSQL (migration `20261127000002_payments.sql`), so no code path
//! can break them: a wallet never goes below zero (a CHECK on the account row, holds included —
//! concurrent spends serialize on that row and the loser's INSERT fails), every transfer
//! balances (a deferred constraint trigger, checked at commit), balances change only through
//! legs (a trigger refuses direct updates), and transfers and legs are never updated or deleted
//! except a pending transfer's single move to `posted` or `voided`. Corrections are reversing
//! transfers ([`reverse`]).
//!
//! A transfer's id is its idempotency: callers derive it from what caused the movement
//! ([`transfer_id`]), so recording the same movement twice is a no-op ([`Recorded::Existing`]).

use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Currency, PaymentError};

/// Which account: one per (kind, owner or provider, currency), opened on first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountRef {
    UserWallet(Uuid),
    TeacherEarnings(Uuid),
    PlatformRevenue,
    ProviderClearing(String),
    RefundsPayable,
    /// Approved teacher payouts not yet sent (the platform owes them).
    PayoutsPayable,
    /// What a teacher owes the platform (course refunds their earnings could not cover): zero
    /// or below, the one account besides provider clearing allowed under zero.
    TeacherReceivable(Uuid),
}

impl AccountRef {
    fn parts(&self) -> (&'static str, Option<Uuid>, Option<&str>) {
        match self {
            AccountRef::UserWallet(u) => ("user_wallet", Some(*u), None),
            AccountRef::TeacherEarnings(u) => ("teacher_earnings", Some(*u), None),
            AccountRef::PlatformRevenue => ("platform_revenue", None, None),
            AccountRef::ProviderClearing(p) => ("provider_clearing", None, Some(p.as_str())),
            AccountRef::RefundsPayable => ("refunds_payable", None, None),
            AccountRef::PayoutsPayable => ("payouts_payable", None, None),
            AccountRef::TeacherReceivable(u) => ("teacher_receivable", Some(*u), None),
        }
    }
}

/// A deterministic transfer id derived from what caused the movement (e.g.
/// `"order:<id>:paid"`), so the same cause can never move money twice.
pub fn transfer_id(cause: &str) -> Uuid {
    let digest = Sha256::digest(cause.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The id of an account, opening it (at zero) if needed.
pub async fn account(
    conn: &mut PgConnection,
    which: &AccountRef,
    currency: &Currency,
) -> Result<Uuid, sqlx::Error> {
    let (kind, owner, provider) = which.parts();
    if let Some(id) = sqlx::query_scalar!(
        r#"SELECT id FROM ledger_accounts
            WHERE kind = $1 AND owner_id IS NOT DISTINCT FROM $2
              AND provider IS NOT DISTINCT FROM $3 AND currency = $4"#,
        kind,
        owner,
        provider,
        currency.as_str()
    )
    .fetch_optional(&mut *conn)
    .await?
    {
        return Ok(id);
    }
    sqlx::query!(
        r#"INSERT INTO ledger_accounts (id, kind, owner_id, provider, currency)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT ON CONSTRAINT ledger_accounts_unique DO NOTHING"#,
        Uuid::now_v7(),
        kind,
        owner,
        provider,
        currency.as_str()
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar!(
        r#"SELECT id FROM ledger_accounts
            WHERE kind = $1 AND owner_id IS NOT DISTINCT FROM $2
              AND provider IS NOT DISTINCT FROM $3 AND currency = $4"#,
        kind,
        owner,
        provider,
        currency.as_str()
    )
    .fetch_one(&mut *conn)
    .await
}

/// A balance: `posted` (settled), `held` (pending debits), `available` = posted - held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub posted: i64,
    pub held: i64,
}

impl Balance {
    pub fn available(&self) -> i64 {
        self.posted - self.held
    }
}

pub async fn balance(conn: &mut PgConnection, account_id: Uuid) -> Result<Balance, sqlx::Error> {
    let r = sqlx::query!(
        "SELECT posted, pending_out FROM ledger_accounts WHERE id = $1",
        account_id
    )
    .fetch_one(conn)
    .await?;
    Ok(Balance {
        posted: r.posted,
        held: r.pending_out,
    })
}

/// Lock accounts for the rest of the transaction and read their balances, so that amounts
/// computed from them (what a refund may take from earnings, what a sale repays) cannot be
/// raced. Rows are locked in id order, the order [`record`] and the hold triggers update them
/// in: a caller that locks every account its transfer moves before recording it keeps the
/// global lock order (no deadlocks). `FOR NO KEY UPDATE`, the lock an UPDATE takes, so the
/// foreign-key checks of other transactions' legs are not blocked.
pub async fn lock(
    conn: &mut PgConnection,
    accounts: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Balance>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT id, posted, pending_out FROM ledger_accounts WHERE id = ANY($1)
          ORDER BY id FOR NO KEY UPDATE",
        accounts
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.id,
                Balance {
                    posted: r.posted,
                    held: r.pending_out,
                },
            )
        })
        .collect())
}

/// Kinds of transfer (the `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    Topup,
    Purchase,
    Refund,
    RefundSettle,
    Reversal,
    Adjustment,
    /// A teacher's payout request: a hold earnings -> payouts payable.
    Payout,
    /// A payout sent: payouts payable -> provider clearing.
    PayoutSettle,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Topup => "topup",
            TransferKind::Purchase => "purchase",
            TransferKind::Refund => "refund",
            TransferKind::RefundSettle => "refund_settle",
            TransferKind::Reversal => "reversal",
            TransferKind::Adjustment => "adjustment",
            TransferKind::Payout => "payout",
            TransferKind::PayoutSettle => "payout_settle",
        }
    }
}

/// Posted at once, or held until posted or voided (or `expires_at`, when the reconciliation
/// job voids it).
#[derive(Debug, Clone, Copy)]
pub enum Settlement {
    Posted,
    Pending { expires_at: OffsetDateTime },
}

/// A transfer to record: legs (account, signed amount) that must sum to zero.
#[derive(Debug, Clone)]
pub struct NewTransfer {
    pub id: Uuid,
    pub kind: TransferKind,
    pub currency: Currency,
    pub settlement: Settlement,
    pub order_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub reverses: Option<Uuid>,
    pub description: String,
    pub legs: Vec<(Uuid, i64)>,
}

impl NewTransfer {
    /// A plain two-leg transfer of `amount` from `from` to `to`, posted.
    pub fn simple(
        id: Uuid,
        kind: TransferKind,
        currency: Currency,
        from: Uuid,
        to: Uuid,
        amount: i64,
    ) -> NewTransfer {
        NewTransfer {
            id,
            kind,
            currency,
            settlement: Settlement::Posted,
            order_id: None,
            refund_id: None,
            reverses: None,
            description: String::new(),
            legs: vec![(from, -amount), (to, amount)],
        }
    }
}

/// Whether [`record`] wrote the transfer or found it already there (an idempotent retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Created,
    Existing,
}

/// Record a transfer and its legs. Run it inside the caller's transaction: the legs' balance
/// check runs at commit. Refused with [`PaymentError::InsufficientFunds`] when a debit would
/// take a non-clearing account below zero (the transaction is then aborted: roll it back).
pub async fn record(conn: &mut PgConnection, t: &NewTransfer) -> Result<Recorded, PaymentError> {
    let (state, expires_at) = match t.settlement {
        Settlement::Posted => ("posted", None),
        Settlement::Pending { expires_at } => ("pending", Some(expires_at)),
    };
    let inserted = sqlx::query_scalar!(
        r#"INSERT INTO ledger_transfers
             (id, kind, currency, state, expires_at, resolved_at, order_id, refund_id, reverses, description)
           VALUES ($1, $2, $3, $4, $5, CASE WHEN $4 = 'posted' THEN now() END, $6, $7, $8, $9)
           ON CONFLICT (id) DO NOTHING
           RETURNING id"#,
        t.id,
        t.kind.as_str(),
        t.currency.as_str(),
        state,
        expires_at,
        t.order_id,
        t.refund_id,
        t.reverses,
        t.description
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(PaymentError::from_db)?;
    if inserted.is_none() {
        return Ok(Recorded::Existing);
    }
    // Account order: concurrent transfers lock account rows in the same order (no deadlocks).
    let mut legs = t.legs.clone();
    legs.sort_by_key(|(a, _)| *a);
    for (account_id, amount) in legs {
        sqlx::query!(
            "INSERT INTO ledger_legs (id, transfer_id, account_id, amount) VALUES ($1, $2, $3, $4)",
            Uuid::now_v7(),
            t.id,
            account_id,
            amount
        )
        .execute(&mut *conn)
        .await
        .map_err(PaymentError::from_db)?;
    }
    Ok(Recorded::Created)
}

/// The outcome of resolving a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// It was pending and now has the state asked for.
    Done,
    /// It was already resolved (posted or voided): nothing changed.
    AlreadyResolved,
}

/// Post a pending transfer (its holds become balance movements). Refused by the database once
/// the hold has expired.
pub async fn post(conn: &mut PgConnection, id: Uuid) -> Result<Resolved, PaymentError> {
    resolve(conn, id, "posted").await
}

/// Post a hold even when it has expired: an expired hold cannot be posted (PostgreSQL refuses),
/// so it is voided and an identical posted transfer `replacement` is recorded in its place, in
/// the caller's transaction. For money that did move after we stopped waiting for it (a
/// provider's refund confirmed after the hold's deadline).
pub async fn post_late(
    conn: &mut PgConnection,
    id: Uuid,
    replacement: Uuid,
) -> Result<Resolved, PaymentError> {
    let expired = sqlx::query_scalar!(
        r#"SELECT coalesce(expires_at <= now(), false) AS "expired!" FROM ledger_transfers
            WHERE id = $1 AND state = 'pending' FOR UPDATE"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if expired != Some(true) {
        return post(conn, id).await;
    }
    void(conn, id).await?;
    sqlx::query!(
        r#"INSERT INTO ledger_transfers
             (id, kind, currency, state, resolved_at, order_id, refund_id, reverses, description)
           SELECT $2, kind, currency, 'posted', now(), order_id, refund_id, reverses,
                  description || ' (posted after its hold expired)'
             FROM ledger_transfers WHERE id = $1"#,
        id,
        replacement
    )
    .execute(&mut *conn)
    .await
    .map_err(PaymentError::from_db)?;
    let legs = sqlx::query!(
        "SELECT account_id, amount FROM ledger_legs WHERE transfer_id = $1 ORDER BY account_id",
        id
    )
    .fetch_all(&mut *conn)
    .await?;
    for l in legs {
        sqlx::query!(
            "INSERT INTO ledger_legs (id, transfer_id, account_id, amount) VALUES ($1, $2, $3, $4)",
            Uuid::now_v7(),
            replacement,
            l.account_id,
            l.amount
        )
        .execute(&mut *conn)
        .await
        .map_err(PaymentError::from_db)?;
    }
    Ok(Resolved::Done)
}

/// Void a pending transfer (its holds are released).
pub async fn void(conn: &mut PgConnection, id: Uuid) -> Result<Resolved, PaymentError> {
    resolve(conn, id, "voided").await
}

async fn resolve(conn: &mut PgConnection, id: Uuid, state: &str) -> Result<Resolved, PaymentError> {
    let done = sqlx::query_scalar!(
        "UPDATE ledger_transfers SET state = $2 WHERE id = $1 AND state = 'pending' RETURNING id",
        id,
        state
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(PaymentError::from_db)?;
    if done.is_some() {
        return Ok(Resolved::Done);
    }
    let exists = sqlx::query_scalar!("SELECT id FROM ledger_transfers WHERE id = $1", id)
        .fetch_optional(&mut *conn)
        .await?;
    match exists {
        Some(_) => Ok(Resolved::AlreadyResolved),
        None => Err(PaymentError::NotFound("transfer")),
    }
}

/// Reverse a posted transfer: a new posted transfer with every leg negated, naming the one it
/// reverses (at most one reversal each, by a unique constraint).
pub async fn reverse(
    conn: &mut PgConnection,
    original: Uuid,
    description: &str,
) -> Result<Recorded, PaymentError> {
    let t = sqlx::query!(
        "SELECT currency, state, order_id, refund_id FROM ledger_transfers WHERE id = $1",
        original
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(PaymentError::NotFound("transfer"))?;
    if t.state != "posted" {
        return Err(PaymentError::Conflict(
            "transfer_not_posted",
            "only posted transfers are reversed; void a pending one".into(),
        ));
    }
    let legs = sqlx::query!(
        "SELECT account_id, amount FROM ledger_legs WHERE transfer_id = $1",
        original
    )
    .fetch_all(&mut *conn)
    .await?;
    let currency = Currency::try_from(t.currency)?;
    record(
        conn,
        &NewTransfer {
            id: transfer_id(&format!("reversal:{original}")),
            kind: TransferKind::Reversal,
            currency,
            settlement: Settlement::Posted,
            order_id: t.order_id,
            refund_id: t.refund_id,
            reverses: Some(original),
            description: description.to_string(),
            legs: legs
                .into_iter()
                .map(|l| (l.account_id, -l.amount))
                .collect(),
        },
    )
    .await
}

/// Void every pending transfer whose hold has expired; returns how many. Payout holds are left
/// to [`super::payouts::expire_stale`], which moves the payout's status with them (the database
/// refuses one without the other).
pub async fn void_expired(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let r = sqlx::query!(
        "UPDATE ledger_transfers SET state = 'voided'
          WHERE state = 'pending' AND expires_at IS NOT NULL AND expires_at <= now()
            AND kind NOT IN ('payout', 'refund')"
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Accounts whose balances differ from the sum of their transfers (empty when healthy), and
/// the total of all posted legs per currency (zero when healthy).
pub async fn audit(
    conn: &mut PgConnection,
) -> Result<(Vec<Uuid>, Vec<(String, i64)>), sqlx::Error> {
    let mismatched = sqlx::query_scalar!(r#"SELECT id AS "id!" FROM ledger_mismatches"#)
        .fetch_all(&mut *conn)
        .await?;
    let sums = sqlx::query!(
        r#"SELECT t.currency, sum(l.amount)::bigint AS "total!"
             FROM ledger_legs l JOIN ledger_transfers t ON t.id = l.transfer_id
            WHERE t.state = 'posted' GROUP BY t.currency HAVING sum(l.amount) <> 0"#
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok((
        mismatched,
        sums.into_iter().map(|r| (r.currency, r.total)).collect(),
    ))
}
