//! Teacher payouts: a teacher asks to withdraw earnings; an admin approves (and later records
//! the money sent) or rejects; the teacher may cancel while it waits; the request expires when
//! nobody decides in time.
//!
//! Ledger: the request is a pending `payout` transfer (a hold) earnings → payouts payable that
//! expires at the payout's `expires_at`. Approving posts it; rejecting, cancelling and expiring
//! void it; paying settles payouts payable → provider clearing of the method. The earnings
//! account cannot go below zero, holds included (the ledger's CHECK), so a teacher never asks
//! for more than is available, also with concurrent requests. Triggers
//! (`migrations/20261128000101_payouts.sql`) refuse, at commit, any payout whose status does
//! not agree with its transfers, and any move of its status but pending → approved | rejected |
//! cancelled | expired and approved → paid.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    Currency, Money, PaymentError,
    ledger::{self, AccountRef, NewTransfer, Settlement, TransferKind},
    status::PayoutStatus,
};
use crate::users::InvalidInput;

/// How a teacher is paid: the provider clearing account the money leaves through.
pub const METHODS: &[&str] = &["bank_transfer", "alipay", "wechatpay"];

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Payout {
    pub id: Uuid,
    pub teacher_id: Uuid,
    pub amount: Money,
    /// `pending`, `approved`, `paid`, `rejected`, `cancelled`, `expired`.
    #[schema(value_type = String)]
    pub status: PayoutStatus,
    /// `bank_transfer`, `alipay` or `wechatpay`.
    pub method: String,
    /// Where to send the money (account number, Alipay login, ...).
    pub destination: String,
    pub note: String,
    /// A pending request not decided by then expires (its hold is released).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub decided_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The provider's reference of the money sent.
    pub paid_reference: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub paid_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(skip)]
    pub hold_id: Uuid,
}

struct PayoutRow {
    id: Uuid,
    teacher_id: Uuid,
    amount: i64,
    currency: String,
    status: String,
    method: String,
    destination: String,
    note: String,
    hold_id: Uuid,
    expires_at: OffsetDateTime,
    decided_by: Option<Uuid>,
    decided_at: Option<OffsetDateTime>,
    reason: Option<String>,
    paid_reference: Option<String>,
    paid_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<PayoutRow> for Payout {
    fn from(r: PayoutRow) -> Payout {
        Payout {
            id: r.id,
            teacher_id: r.teacher_id,
            amount: Money::new(r.amount, Currency::from_db(r.currency)),
            status: PayoutStatus::from_db(&r.status),
            method: r.method,
            destination: r.destination,
            note: r.note,
            expires_at: r.expires_at,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            reason: r.reason,
            paid_reference: r.paid_reference,
            paid_at: r.paid_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            hold_id: r.hold_id,
        }
    }
}

/// A parsed request.
pub struct NewPayout {
    pub teacher_id: Uuid,
    pub amount: Money,
    pub method: String,
    pub destination: String,
    pub note: String,
    pub hold_ttl: time::Duration,
}

impl NewPayout {
    /// Check the fields a teacher sends (`min_amount` in minor units).
    pub fn validate(&self, min_amount: i64) -> Result<(), InvalidInput> {
        if self.amount.amount < min_amount.max(1) {
            return Err(InvalidInput {
                field: "amount",
                reason: "is below the smallest payout",
            });
        }
        if !METHODS.contains(&self.method.as_str()) {
            return Err(InvalidInput {
                field: "method",
                reason: "must be bank_transfer, alipay or wechatpay",
            });
        }
        let d = self.destination.trim();
        if d.is_empty() || d.chars().count() > 200 || d.chars().any(char::is_control) {
            return Err(InvalidInput {
                field: "destination",
                reason: "must be 1 to 200 printable characters",
            });
        }
        if self.note.chars().count() > 500 {
            return Err(InvalidInput {
                field: "note",
                reason: "must be at most 500 characters",
            });
        }
        Ok(())
    }
}

/// The hold of payout `id` (deterministic, like every transfer id).
fn hold_id(id: Uuid) -> Uuid {
    ledger::transfer_id(&format!("payout:{id}"))
}

/// A teacher asks for a payout: the amount is held on their earnings at once (422
/// `insufficient_earnings` when not available). Run inside the caller's transaction.
pub async fn request(conn: &mut PgConnection, new: NewPayout) -> Result<Payout, PaymentError> {
    let id = Uuid::now_v7();
    let hold = hold_id(id);
    let currency = new.amount.currency.clone();
    let expires_at = OffsetDateTime::now_utc() + new.hold_ttl;
    let earnings = ledger::account(
        conn,
        &AccountRef::TeacherEarnings(new.teacher_id),
        &currency,
    )
    .await?;
    let payable = ledger::account(conn, &AccountRef::PayoutsPayable, &currency).await?;
    ledger::record(
        conn,
        &NewTransfer {
            settlement: Settlement::Pending { expires_at },
            description: format!("payout {id}"),
            ..NewTransfer::simple(
                hold,
                TransferKind::Payout,
                currency.clone(),
                earnings,
                payable,
                new.amount.amount,
            )
        },
    )
    .await
    .map_err(|e| match e {
        PaymentError::InsufficientFunds => PaymentError::Unprocessable(
            "insufficient_earnings",
            "the available earnings are smaller than the amount asked for".into(),
        ),
        e => e,
    })?;
    sqlx::query!(
        r#"INSERT INTO payouts (id, teacher_id, amount, currency, method, destination, note,
                                hold_id, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"#,
        id,
        new.teacher_id,
        new.amount.amount,
        currency.as_str(),
        new.method,
        new.destination.trim(),
        new.note,
        hold,
        expires_at
    )
    .execute(&mut *conn)
    .await?;
    get(conn, id).await?.ok_or(PaymentError::NotFound("payout"))
}

/// Lock a payout; `expired` says whether its deadline has passed (by the database's clock).
async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<(Payout, bool), PaymentError> {
    let r = sqlx::query!(
        r#"SELECT id, expires_at <= now() AS "expired!" FROM payouts WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(PaymentError::NotFound("payout"))?;
    let p = get(conn, r.id)
        .await?
        .ok_or(PaymentError::NotFound("payout"))?;
    Ok((p, r.expired))
}

fn not_pending(p: &Payout) -> PaymentError {
    PaymentError::Conflict("payout_not_pending", format!("the payout is {}", p.status))
}

/// An admin approves a pending payout: its hold is posted (earnings → payouts payable).
/// 409 `payout_not_pending`, or `payout_expired` once its deadline has passed.
pub async fn approve(
    conn: &mut PgConnection,
    id: Uuid,
    admin: Uuid,
) -> Result<Payout, PaymentError> {
    let (p, expired) = lock(conn, id).await?;
    if p.status != PayoutStatus::Pending {
        return Err(not_pending(&p));
    }
    if expired {
        return Err(PaymentError::Conflict(
            "payout_expired",
            "the payout request expired before it was approved".into(),
        ));
    }
    ledger::post(conn, p.hold_id).await?;
    decide(conn, id, PayoutStatus::Approved, admin, None).await
}

/// An admin rejects a pending payout: its hold is voided, the earnings are available again.
pub async fn reject(
    conn: &mut PgConnection,
    id: Uuid,
    admin: Uuid,
    reason: &str,
) -> Result<Payout, PaymentError> {
    let (p, _) = lock(conn, id).await?;
    if p.status != PayoutStatus::Pending {
        return Err(not_pending(&p));
    }
    ledger::void(conn, p.hold_id).await?;
    decide(conn, id, PayoutStatus::Rejected, admin, Some(reason)).await
}

/// The teacher withdraws their pending request (404 for another teacher's payout).
pub async fn cancel(
    conn: &mut PgConnection,
    id: Uuid,
    teacher: Uuid,
) -> Result<Payout, PaymentError> {
    let (p, _) = lock(conn, id).await?;
    if p.teacher_id != teacher {
        return Err(PaymentError::NotFound("payout"));
    }
    if p.status != PayoutStatus::Pending {
        return Err(not_pending(&p));
    }
    ledger::void(conn, p.hold_id).await?;
    decide(conn, id, PayoutStatus::Cancelled, teacher, None).await
}

async fn decide(
    conn: &mut PgConnection,
    id: Uuid,
    status: PayoutStatus,
    by: Uuid,
    reason: Option<&str>,
) -> Result<Payout, PaymentError> {
    sqlx::query!(
        "UPDATE payouts SET status = $2, decided_by = $3, decided_at = now(), reason = $4,
                updated_at = now() WHERE id = $1",
        id,
        status.as_str(),
        by,
        reason
    )
    .execute(&mut *conn)
    .await?;
    get(conn, id).await?.ok_or(PaymentError::NotFound("payout"))
}

/// An admin records that an approved payout was sent (`reference`: the provider's id of the
/// transfer): payouts payable → provider clearing of the payout's method.
pub async fn mark_paid(
    conn: &mut PgConnection,
    id: Uuid,
    reference: &str,
) -> Result<Payout, PaymentError> {
    let (p, _) = lock(conn, id).await?;
    if p.status != PayoutStatus::Approved {
        return Err(PaymentError::Conflict(
            "payout_not_approved",
            format!("the payout is {}", p.status),
        ));
    }
    let currency = p.amount.currency.clone();
    let payable = ledger::account(conn, &AccountRef::PayoutsPayable, &currency).await?;
    let clearing = ledger::account(
        conn,
        &AccountRef::ProviderClearing(p.method.clone()),
        &currency,
    )
    .await?;
    let settle = ledger::transfer_id(&format!("payout:{id}:paid"));
    ledger::record(
        conn,
        &NewTransfer {
            description: format!("payout {id} sent ({reference})"),
            ..NewTransfer::simple(
                settle,
                TransferKind::PayoutSettle,
                currency,
                payable,
                clearing,
                p.amount.amount,
            )
        },
    )
    .await?;
    sqlx::query!(
        "UPDATE payouts SET status = 'paid', settle_id = $2, paid_reference = $3, paid_at = now(),
                updated_at = now() WHERE id = $1",
        id,
        settle,
        reference
    )
    .execute(&mut *conn)
    .await?;
    get(conn, id).await?.ok_or(PaymentError::NotFound("payout"))
}

/// Expire pending payouts past their deadline (their holds voided), each in its own short
/// transaction; returns how many.
pub async fn expire_stale(pool: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    loop {
        let mut tx = pool.begin().await?;
        let due = sqlx::query!(
            "SELECT id, hold_id FROM payouts WHERE status = 'pending' AND expires_at <= now()
              ORDER BY expires_at LIMIT 1 FOR UPDATE SKIP LOCKED"
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(p) = due else {
            return Ok(n);
        };
        sqlx::query!(
            "UPDATE ledger_transfers SET state = 'voided' WHERE id = $1 AND state = 'pending'",
            p.hold_id
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE payouts SET status = 'expired', updated_at = now() WHERE id = $1",
            p.id
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        n += 1;
    }
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Payout>, sqlx::Error> {
    Ok(sqlx::query_as!(
        PayoutRow,
        r#"SELECT id, teacher_id, amount, currency, status, method, destination, note, hold_id,
                  expires_at, decided_by, decided_at, reason, paid_reference, paid_at, created_at,
                  updated_at
             FROM payouts WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .map(Payout::from))
}

/// Payouts, newest first: one teacher's, or everyone's; optionally of one status.
pub async fn list(
    conn: &mut PgConnection,
    teacher: Option<Uuid>,
    status: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Payout>, sqlx::Error> {
    Ok(sqlx::query_as!(
        PayoutRow,
        r#"SELECT id, teacher_id, amount, currency, status, method, destination, note, hold_id,
                  expires_at, decided_by, decided_at, reason, paid_reference, paid_at, created_at,
                  updated_at
             FROM payouts
            WHERE ($1::uuid IS NULL OR teacher_id = $1) AND ($2::text IS NULL OR status = $2)
              AND ($3::uuid IS NULL OR id < $3)
            ORDER BY id DESC LIMIT $4"#,
        teacher,
        status,
        before,
        limit
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(Payout::from)
    .collect())
}

/// A teacher's earnings: posted, held (pending payouts and refunds in flight), the totals
/// paid out and waiting, and what they owe.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Earnings {
    /// Settled earnings still on the account.
    pub balance: Money,
    /// Held by pending payout requests and refunds in flight.
    pub held: Money,
    /// What can be asked for now: balance - held.
    pub available: Money,
    /// Approved payouts not sent yet, plus those sent.
    pub paid_out: Money,
    /// What the teacher owes the platform (zero when nothing): course refunds taken back after
    /// the earnings were paid out or held. The next sales repay it before earning anything.
    /// A refund still in flight counts once it succeeds.
    pub owed: Money,
}

pub async fn earnings(
    conn: &mut PgConnection,
    teacher: Uuid,
    currency: &Currency,
) -> Result<Earnings, sqlx::Error> {
    let account = ledger::account(conn, &AccountRef::TeacherEarnings(teacher), currency).await?;
    let b = ledger::balance(conn, account).await?;
    let receivable =
        ledger::account(conn, &AccountRef::TeacherReceivable(teacher), currency).await?;
    // The settled debt: what the next sales repay (teacher_share::split_sale).
    let owed = (-ledger::balance(conn, receivable).await?.posted).max(0);
    let paid_out = sqlx::query_scalar!(
        r#"SELECT coalesce(sum(amount), 0)::bigint AS "total!" FROM payouts
            WHERE teacher_id = $1 AND currency = $2 AND status IN ('approved', 'paid')"#,
        teacher,
        currency.as_str()
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Earnings {
        balance: Money::new(b.posted, currency.clone()),
        held: Money::new(b.held, currency.clone()),
        available: Money::new(b.available(), currency.clone()),
        paid_out: Money::new(paid_out, currency.clone()),
        owed: Money::new(owed, currency.clone()),
    })
}
