//! Refunds: full or partial, to the original provider or to the wallet, `pending` →
//! `succeeded` | `failed`.
//!
//! The order's `refunded_amount` counts refunds pending and succeeded; a CHECK keeps it within
//! the order's amount, so a refund larger than what was paid (all refunds together) is refused
//! by the database as well as here.
//!
//! Ledger: to the original provider, a pending hold moves the money from where the payment put
//! it (the wallet for a top-up; revenue and the teacher's share for a course) to refunds
//! payable; on the provider's success it is posted and settled (refunds payable → provider
//! clearing); on failure it is voided. To the wallet (course orders, or anything paid from the
//! wallet), one posted transfer back into the wallet, succeeded at once. A course's teacher
//! share comes from the available earnings and, for the rest, the teacher's receivable (a debt
//! their next sales repay; [`teacher_share`]), so a refund after a payout still succeeds.
//! Enrollment on a course refund: the courses module decides in [`on_refunded`] (see
//! docs/payments.md).

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    Currency, Money, PaymentError,
    ledger::{self, AccountRef, NewTransfer, Settlement, TransferKind},
    orders,
    status::{OrderStatus, RefundStatus},
    teacher_share,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// Back through the provider that took the payment.
    Original,
    /// Into the buyer's wallet.
    Wallet,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Refund {
    pub id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub amount: Money,
    pub destination: String,
    /// `pending`, `succeeded`, `failed`.
    #[schema(value_type = String)]
    pub status: RefundStatus,
    pub reason: String,
    pub failure_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    /// The provider that carries the refund (`wallet` for wallet refunds).
    pub provider: String,
}

pub struct NewRefund {
    pub order_id: Uuid,
    pub amount: Option<i64>,
    pub destination: Destination,
    pub reason: String,
    pub requested_by: Uuid,
    pub hold_ttl: time::Duration,
}

/// Ledger legs moving `amount` of a paid order back out of where the payment put it, into
/// `to`.
async fn reversal_legs(
    conn: &mut PgConnection,
    order: &orders::Order,
    amount: i64,
    to: Uuid,
) -> Result<Vec<(Uuid, i64)>, PaymentError> {
    let c = order.currency().clone();
    let mut legs = vec![(to, amount)];
    match (order.kind.as_str(), order.payee_id, order.platform_fee_bps) {
        ("wallet_topup", _, _) => {
            let wallet = ledger::account(conn, &AccountRef::UserWallet(order.user_id), &c).await?;
            legs.push((wallet, -amount));
        }
        ("course", Some(payee), Some(bps)) => {
            let fee = amount * i64::from(bps) / 10_000;
            let revenue = ledger::account(conn, &AccountRef::PlatformRevenue, &c).await?;
            // The teacher's share comes back from what is available on their earnings, the
            // rest becomes their debt (the receivable): the student's refund never waits on
            // the teacher's balance.
            let others = if fee > 0 { vec![to, revenue] } else { vec![to] };
            legs.extend(teacher_share::refund_legs(conn, payee, &c, amount - fee, &others).await?);
            if fee > 0 {
                legs.push((revenue, -fee));
            }
        }
        _ => {
            return Err(PaymentError::Conflict(
                "order_invalid",
                "malformed order".into(),
            ));
        }
    }
    Ok(legs)
}

/// Create a refund (inside the caller's transaction). Wallet refunds succeed at once; refunds to
/// a provider stay pending until its callback.
pub async fn create(conn: &mut PgConnection, new: NewRefund) -> Result<Refund, PaymentError> {
    let order = orders::lock(conn, new.order_id)
        .await?
        .ok_or(PaymentError::NotFound("order"))?;
    if !order.status.is_refundable() {
        return Err(PaymentError::Conflict(
            "order_not_refundable",
            format!("the order is {}", order.status),
        ));
    }
    let remaining = order.amount.amount - order.refunded.amount;
    let amount = new.amount.unwrap_or(remaining);
    if amount <= 0 {
        return Err(PaymentError::Unprocessable(
            "validation_failed",
            "amount must be positive".into(),
        ));
    }
    if amount > remaining {
        return Err(PaymentError::Unprocessable(
            "refund_exceeds_paid",
            format!("at most {remaining} can still be refunded"),
        ));
    }
    let destination = if order.provider == "wallet" {
        Destination::Wallet
    } else {
        new.destination
    };
    if destination == Destination::Wallet && order.kind == "wallet_topup" {
        return Err(PaymentError::Unprocessable(
            "invalid_destination",
            "a top-up is already in the wallet; refund it to the original provider".into(),
        ));
    }
    let id = Uuid::now_v7();
    let currency: Currency = order.currency().clone();
    let dest_str = match destination {
        Destination::Original => "original",
        Destination::Wallet => "wallet",
    };
    sqlx::query!(
        r#"INSERT INTO refunds (id, order_id, user_id, amount, currency, destination, reason, requested_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"#,
        id,
        order.id,
        order.user_id,
        amount,
        currency.as_str(),
        dest_str,
        new.reason,
        new.requested_by
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE orders SET refunded_amount = refunded_amount + $2, updated_at = now() WHERE id = $1",
        order.id,
        amount
    )
    .execute(&mut *conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("orders_refund_le_amount") => {
            PaymentError::Unprocessable("refund_exceeds_paid", "refund exceeds what was paid".into())
        }
        _ => PaymentError::Db(e),
    })?;
    match destination {
        Destination::Wallet => {
            let wallet =
                ledger::account(conn, &AccountRef::UserWallet(order.user_id), &currency).await?;
            let legs = reversal_legs(conn, &order, amount, wallet).await?;
            ledger::record(
                conn,
                &NewTransfer {
                    id: ledger::transfer_id(&format!("refund:{id}")),
                    kind: TransferKind::Refund,
                    currency,
                    settlement: Settlement::Posted,
                    order_id: Some(order.id),
                    refund_id: Some(id),
                    reverses: None,
                    description: format!("refund {id} to wallet"),
                    legs,
                },
            )
            .await?;
            mark(conn, id, true, None).await?;
            on_refunded(conn, &order, id).await?;
        }
        Destination::Original => {
            let payable = ledger::account(conn, &AccountRef::RefundsPayable, &currency).await?;
            let legs = reversal_legs(conn, &order, amount, payable).await?;
            ledger::record(
                conn,
                &NewTransfer {
                    id: ledger::transfer_id(&format!("refund:{id}")),
                    kind: TransferKind::Refund,
                    currency,
                    settlement: Settlement::Pending {
                        expires_at: OffsetDateTime::now_utc() + new.hold_ttl,
                    },
                    order_id: Some(order.id),
                    refund_id: Some(id),
                    reverses: None,
                    description: format!("refund {id} to {}", order.provider),
                    legs,
                },
            )
            .await?;
        }
    }
    get(conn, id).await?.ok_or(PaymentError::NotFound("refund"))
}

/// The provider reported the refund's outcome. Returns false when it was already resolved.
pub async fn resolve(
    conn: &mut PgConnection,
    id: Uuid,
    provider: &str,
    succeeded: bool,
    reason: &str,
) -> Result<bool, PaymentError> {
    let r = sqlx::query!(
        r#"SELECT r.status, r.amount, r.currency, r.order_id, o.provider
             FROM refunds r JOIN orders o ON o.id = r.order_id WHERE r.id = $1 FOR UPDATE OF r"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(PaymentError::NotFound("refund"))?;
    if r.provider != provider {
        return Err(PaymentError::NotFound("refund"));
    }
    if RefundStatus::from_db(&r.status) != RefundStatus::Pending {
        return Ok(false);
    }
    let hold = ledger::transfer_id(&format!("refund:{id}"));
    if succeeded {
        let currency = Currency::try_from(r.currency)?;
        let payable = ledger::account(conn, &AccountRef::RefundsPayable, &currency).await?;
        let clearing = ledger::account(
            conn,
            &AccountRef::ProviderClearing(r.provider.clone()),
            &currency,
        )
        .await?;
        // Every account of the hold and of the settlement, locked up front in id order: posting
        // first and locking the provider's clearing afterwards could deadlock with a sale
        // through the same provider (which locks clearing, earnings and revenue in id order).
        let mut accounts = sqlx::query_scalar!(
            "SELECT account_id FROM ledger_legs WHERE transfer_id = $1",
            hold
        )
        .fetch_all(&mut *conn)
        .await?;
        accounts.extend([payable, clearing]);
        ledger::lock(conn, &accounts).await?;
        // The provider has the last word: money it refunded after our hold's deadline is
        // still booked (the hold is re-posted, see ledger::post_late).
        ledger::post_late(
            conn,
            hold,
            ledger::transfer_id(&format!("refund:{id}:late")),
        )
        .await?;
        let mut settle = NewTransfer::simple(
            ledger::transfer_id(&format!("refund:{id}:settled")),
            TransferKind::RefundSettle,
            currency,
            payable,
            clearing,
            r.amount,
        );
        settle.order_id = Some(r.order_id);
        settle.refund_id = Some(id);
        ledger::record(conn, &settle).await?;
        mark(conn, id, true, None).await?;
        let order = orders::get(conn, r.order_id)
            .await?
            .ok_or(PaymentError::NotFound("order"))?;
        on_refunded(conn, &order, id).await?;
    } else {
        ledger::void(conn, hold).await?;
        sqlx::query!(
            "UPDATE orders SET refunded_amount = refunded_amount - $2, updated_at = now() WHERE id = $1",
            r.order_id,
            r.amount
        )
        .execute(&mut *conn)
        .await?;
        mark(conn, id, false, Some(reason)).await?;
    }
    Ok(true)
}

async fn mark(
    conn: &mut PgConnection,
    id: Uuid,
    succeeded: bool,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE refunds SET status = $2, failure_reason = $3, resolved_at = now() WHERE id = $1",
        id,
        if succeeded {
            RefundStatus::Succeeded
        } else {
            RefundStatus::Failed
        }
        .as_str(),
        reason
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// After a refund succeeded: the order's status follows what was refunded in full. (A course
/// order's enrollment is the courses module's call here: it should end the enrollment on a full
/// refund and keep it on a partial one.)
async fn on_refunded(
    conn: &mut PgConnection,
    order: &orders::Order,
    refund: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE orders SET updated_at = now(), status = CASE
             WHEN (SELECT coalesce(sum(amount), 0) FROM refunds WHERE order_id = $1 AND status = 'succeeded') >= amount
             THEN 'refunded' ELSE 'partially_refunded' END
           WHERE id = $1"#,
        order.id
    )
    .execute(&mut *conn)
    .await?;
    // A course bought and fully refunded: the access it gave ends with it.
    if order.kind == "course" {
        let refunded: Option<String> =
            sqlx::query_scalar!("SELECT status FROM orders WHERE id = $1", order.id)
                .fetch_optional(&mut *conn)
                .await?;
        if refunded.as_deref().map(OrderStatus::from_db) == Some(OrderStatus::Refunded) {
            crate::courses::store::refund_paid(conn, order.id).await?;
        }
    }
    crate::webhooks::payment_refunded(conn, refund).await
}

struct RefundRow {
    id: Uuid,
    order_id: Uuid,
    user_id: Uuid,
    amount: i64,
    currency: String,
    destination: String,
    status: String,
    reason: String,
    failure_reason: Option<String>,
    created_at: OffsetDateTime,
    resolved_at: Option<OffsetDateTime>,
    provider: String,
}

impl From<RefundRow> for Refund {
    fn from(r: RefundRow) -> Refund {
        Refund {
            id: r.id,
            order_id: r.order_id,
            user_id: r.user_id,
            amount: Money::new(r.amount, Currency::from_db(r.currency)),
            provider: if r.destination == "wallet" {
                "wallet".into()
            } else {
                r.provider
            },
            destination: r.destination,
            status: RefundStatus::from_db(&r.status),
            reason: r.reason,
            failure_reason: r.failure_reason,
            created_at: r.created_at,
            resolved_at: r.resolved_at,
        }
    }
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Refund>, sqlx::Error> {
    Ok(sqlx::query_as!(
        RefundRow,
        r#"SELECT r.id, r.order_id, r.user_id, r.amount, r.currency, r.destination, r.status,
                  r.reason, r.failure_reason, r.created_at, r.resolved_at, o.provider
             FROM refunds r JOIN orders o ON o.id = r.order_id WHERE r.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .map(Refund::from))
}

pub async fn list(
    conn: &mut PgConnection,
    user_id: Option<Uuid>,
    order_id: Option<Uuid>,
    status: Option<String>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Refund>, sqlx::Error> {
    Ok(sqlx::query_as!(
        RefundRow,
        r#"SELECT r.id, r.order_id, r.user_id, r.amount, r.currency, r.destination, r.status,
                  r.reason, r.failure_reason, r.created_at, r.resolved_at, o.provider
             FROM refunds r JOIN orders o ON o.id = r.order_id
            WHERE ($1::uuid IS NULL OR r.user_id = $1) AND ($2::uuid IS NULL OR r.order_id = $2)
              AND ($3::text IS NULL OR r.status = $3) AND ($4::uuid IS NULL OR r.id < $4)
            ORDER BY r.id DESC LIMIT $5"#,
        user_id,
        order_id,
        status,
        before,
        limit
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(Refund::from)
    .collect())
}

/// Remember the provider's id of a refund (Stripe's `re_…`) for later queries.
pub async fn set_provider_ref(
    conn: &mut PgConnection,
    id: Uuid,
    provider_ref: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE refunds SET provider_ref = $2 WHERE id = $1 AND provider_ref IS DISTINCT FROM $2",
        id,
        provider_ref
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A pending refund to a provider, as reconciliation sees it.
pub struct OpenRefund {
    pub id: Uuid,
    pub order_id: Uuid,
    pub provider: String,
    pub amount: i64,
    pub reason: String,
    pub provider_ref: Option<String>,
    /// Its hold's deadline has passed.
    pub overdue: bool,
}

/// Pending refunds to a provider at least `min_age` old, least recently checked first (marked
/// checked now).
pub async fn take_for_check(
    conn: &mut PgConnection,
    min_age: time::Duration,
    limit: i64,
) -> Result<Vec<OpenRefund>, sqlx::Error> {
    let cutoff = OffsetDateTime::now_utc() - min_age;
    let rows = sqlx::query!(
        r#"WITH picked AS (
             UPDATE refunds SET checked_at = now()
              WHERE id IN (SELECT id FROM refunds
                            WHERE status = 'pending' AND destination = 'original' AND created_at <= $1
                            ORDER BY checked_at NULLS FIRST, created_at LIMIT $2
                            FOR UPDATE SKIP LOCKED)
          RETURNING id, order_id, amount, reason, provider_ref)
           SELECT p.id AS "id!", p.order_id AS "order_id!", p.amount AS "amount!",
                  p.reason AS "reason!", p.provider_ref, o.provider AS "provider!",
                  coalesce(t.expires_at <= now(), false) AS "overdue!"
             FROM picked p JOIN orders o ON o.id = p.order_id
             LEFT JOIN ledger_transfers t ON t.refund_id = p.id AND t.kind = 'refund'"#,
        cutoff,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| OpenRefund {
            id: r.id,
            order_id: r.order_id,
            provider: r.provider,
            amount: r.amount,
            reason: r.reason,
            provider_ref: r.provider_ref,
            overdue: r.overdue,
        })
        .collect())
}
