//! Orders: what a user buys, paid through one provider; confirming the payment writes the
//! ledger entries (and, for a course, the enrollment) in one transaction.
//!
//! Kinds: `wallet_topup` (provider clearing → the user's wallet) and `course` (provider clearing
//! or the user's wallet → platform revenue (fee) + the teacher's share, plus the enrollment).
//! The share repays what the teacher owes first ([`teacher_share`]), the rest is earnings.
//! Course orders are created by the courses module with [`create`] and
//! [`OrderKind::Course`]; [`fulfil`] is where it enrolls the buyer.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    Currency, Money, PaymentError,
    ledger::{self, AccountRef, NewTransfer, Recorded, Settlement, TransferKind},
    status::OrderStatus,
    teacher_share,
};

/// Providers an order can be paid through. `wallet` pays from the buyer's wallet at once.
pub const PROVIDERS: &[&str] = &["sandbox", "stripe", "alipay", "wechatpay", "wallet"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKind {
    WalletTopup,
    /// A course: its id, the teacher who earns, the platform's fee in basis points.
    Course {
        course_id: Uuid,
        payee_id: Uuid,
        platform_fee_bps: i32,
    },
}

/// The kind of an order for a course: the course must be published and paid, `amount` its
/// price, and the buyer not already enrolled.
pub async fn course_order(
    conn: &mut PgConnection,
    course_id: Uuid,
    buyer: Uuid,
    amount: &Money,
    platform_fee_bps: i32,
) -> Result<OrderKind, PaymentError> {
    let course = crate::courses::store::get_course(conn, course_id)
        .await?
        .filter(|c| c.visibility == crate::courses::CourseVisibility::Published)
        .ok_or(PaymentError::NotFound("course"))?;
    if course.price.amount == 0 {
        return Err(PaymentError::Unprocessable(
            "course_is_free",
            "this course is free: enroll directly".into(),
        ));
    }
    if course.price != *amount {
        return Err(PaymentError::Unprocessable(
            "amount_mismatch",
            format!(
                "the course costs {} {} (minor units)",
                course.price.amount, course.price.currency
            ),
        ));
    }
    if crate::courses::store::is_actively_enrolled(conn, course_id, buyer).await? {
        return Err(PaymentError::Conflict(
            "already_enrolled",
            "you are already enrolled in this course".into(),
        ));
    }
    Ok(OrderKind::Course {
        course_id,
        payee_id: course.owner_id,
        platform_fee_bps,
    })
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Order {
    pub id: Uuid,
    pub user_id: Uuid,
    /// `wallet_topup` or `course`.
    pub kind: String,
    /// The course, for `course` orders.
    pub product_id: Option<Uuid>,
    pub amount: Money,
    pub provider: String,
    /// The provider's payment id, once known.
    pub provider_ref: Option<String>,
    /// `pending`, `paid`, `expired`, `cancelled`, `refunded`, `partially_refunded`.
    #[schema(value_type = String)]
    pub status: OrderStatus,
    /// Refunded or being refunded, in minor units.
    pub refunded: Money,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub paid_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(skip)]
    pub payee_id: Option<Uuid>,
    #[serde(skip)]
    pub platform_fee_bps: Option<i32>,
}

struct OrderRow {
    id: Uuid,
    user_id: Uuid,
    kind: String,
    product_id: Option<Uuid>,
    payee_id: Option<Uuid>,
    platform_fee_bps: Option<i32>,
    amount: i64,
    currency: String,
    provider: String,
    provider_ref: Option<String>,
    status: String,
    refunded_amount: i64,
    expires_at: OffsetDateTime,
    paid_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
}

impl From<OrderRow> for Order {
    fn from(r: OrderRow) -> Order {
        let currency = Currency::from_db(r.currency);
        Order {
            id: r.id,
            user_id: r.user_id,
            kind: r.kind,
            product_id: r.product_id,
            amount: Money::new(r.amount, currency.clone()),
            provider: r.provider,
            provider_ref: r.provider_ref,
            status: OrderStatus::from_db(&r.status),
            refunded: Money::new(r.refunded_amount, currency),
            expires_at: r.expires_at,
            paid_at: r.paid_at,
            created_at: r.created_at,
            payee_id: r.payee_id,
            platform_fee_bps: r.platform_fee_bps,
        }
    }
}

impl Order {
    pub fn currency(&self) -> &Currency {
        &self.amount.currency
    }
}

pub struct NewOrder {
    pub user_id: Uuid,
    pub kind: OrderKind,
    pub amount: Money,
    pub provider: String,
    pub ttl: time::Duration,
}

/// Create a pending order. With provider `wallet` it is paid at once from the buyer's wallet
/// (refused with [`PaymentError::InsufficientFunds`]); run inside the caller's transaction.
pub async fn create(conn: &mut PgConnection, new: NewOrder) -> Result<Order, PaymentError> {
    if !PROVIDERS.contains(&new.provider.as_str()) {
        return Err(PaymentError::Unprocessable(
            "unknown_provider",
            format!("unknown provider {}", new.provider),
        ));
    }
    let (kind, product_id, payee_id, fee) = match &new.kind {
        OrderKind::WalletTopup => ("wallet_topup", None, None, None),
        OrderKind::Course {
            course_id,
            payee_id,
            platform_fee_bps,
        } => (
            "course",
            Some(*course_id),
            Some(*payee_id),
            Some(*platform_fee_bps),
        ),
    };
    if kind == "wallet_topup" && new.provider == "wallet" {
        return Err(PaymentError::Unprocessable(
            "invalid_provider",
            "a wallet cannot be topped up from itself".into(),
        ));
    }
    let id = Uuid::now_v7();
    let expires_at = OffsetDateTime::now_utc() + new.ttl;
    sqlx::query!(
        r#"INSERT INTO orders (id, user_id, kind, product_id, payee_id, platform_fee_bps, amount,
                               currency, provider, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"#,
        id,
        new.user_id,
        kind,
        product_id,
        payee_id,
        fee,
        new.amount.amount,
        new.amount.currency.as_str(),
        new.provider,
        expires_at
    )
    .execute(&mut *conn)
    .await?;
    if new.provider == "wallet" {
        confirm(conn, id, None).await?;
    }
    get(conn, id).await?.ok_or(PaymentError::NotFound("order"))
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    Ok(sqlx::query_as!(
        OrderRow,
        r#"SELECT id, user_id, kind, product_id, payee_id, platform_fee_bps, amount, currency,
                  provider, provider_ref, status, refunded_amount, expires_at, paid_at, created_at
             FROM orders WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .map(Order::from))
}

/// Lock an order for the rest of the transaction.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    Ok(sqlx::query_as!(
        OrderRow,
        r#"SELECT id, user_id, kind, product_id, payee_id, platform_fee_bps, amount, currency,
                  provider, provider_ref, status, refunded_amount, expires_at, paid_at, created_at
             FROM orders WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .map(Order::from))
}

pub struct ListFilter {
    pub user_id: Option<Uuid>,
    pub status: Option<String>,
    pub kind: Option<String>,
    pub before: Option<Uuid>,
    pub limit: i64,
}

pub async fn list(conn: &mut PgConnection, f: &ListFilter) -> Result<Vec<Order>, sqlx::Error> {
    Ok(sqlx::query_as!(
        OrderRow,
        r#"SELECT id, user_id, kind, product_id, payee_id, platform_fee_bps, amount, currency,
                  provider, provider_ref, status, refunded_amount, expires_at, paid_at, created_at
             FROM orders
            WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::text IS NULL OR status = $2)
              AND ($3::text IS NULL OR kind = $3) AND ($4::uuid IS NULL OR id < $4)
            ORDER BY id DESC LIMIT $5"#,
        f.user_id,
        f.status,
        f.kind,
        f.before,
        f.limit
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(Order::from)
    .collect())
}

/// The outcome of confirming a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// Paid now: ledger entries written (and the enrollment, for a course).
    Paid,
    /// It was already paid: nothing changed.
    AlreadyPaid,
}

/// The payment of order `id` is confirmed: write the ledger entries and fulfil, exactly once.
/// The caller has checked amount, currency and merchant. Expired orders are still paid (the
/// money did move at the provider); cancelled or refunded ones are refused.
pub async fn confirm(
    conn: &mut PgConnection,
    id: Uuid,
    provider_ref: Option<&str>,
) -> Result<Confirmed, PaymentError> {
    let order = lock(conn, id)
        .await?
        .ok_or(PaymentError::NotFound("order"))?;
    match order.status {
        OrderStatus::Pending | OrderStatus::Expired => {}
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded => {
            return Ok(Confirmed::AlreadyPaid);
        }
        other @ OrderStatus::Cancelled => {
            return Err(PaymentError::Conflict(
                "order_not_payable",
                format!("the order is {other}"),
            ));
        }
    }
    let currency = order.currency().clone();
    let amount = order.amount.amount;
    let source = if order.provider == "wallet" {
        AccountRef::UserWallet(order.user_id)
    } else {
        AccountRef::ProviderClearing(order.provider.clone())
    };
    let source = ledger::account(conn, &source, &currency).await?;
    let (kind, legs) = match (&order.kind[..], order.payee_id, order.platform_fee_bps) {
        ("wallet_topup", _, _) => {
            let wallet =
                ledger::account(conn, &AccountRef::UserWallet(order.user_id), &currency).await?;
            (
                TransferKind::Topup,
                vec![(source, -amount), (wallet, amount)],
            )
        }
        ("course", Some(payee), Some(bps)) => {
            let fee = amount * i64::from(bps) / 10_000;
            let revenue = ledger::account(conn, &AccountRef::PlatformRevenue, &currency).await?;
            // The teacher's share repays what they owe first (refunds clawed back after a
            // payout), the rest lands on their earnings: one transfer.
            let mut legs = vec![(source, -amount)];
            legs.extend(
                teacher_share::sale_legs(conn, payee, &currency, amount - fee, &[source, revenue])
                    .await?,
            );
            if fee > 0 {
                legs.push((revenue, fee));
            }
            (TransferKind::Purchase, legs)
        }
        _ => {
            return Err(PaymentError::Conflict(
                "order_invalid",
                "malformed order".into(),
            ));
        }
    };
    let recorded = ledger::record(
        conn,
        &NewTransfer {
            id: ledger::transfer_id(&format!("order:{id}:paid")),
            kind,
            currency,
            settlement: Settlement::Posted,
            order_id: Some(id),
            refund_id: None,
            reverses: None,
            description: format!("order {id}"),
            legs,
        },
    )
    .await?;
    if recorded == Recorded::Existing {
        return Ok(Confirmed::AlreadyPaid);
    }
    fulfil(conn, &order).await?;
    sqlx::query!(
        "UPDATE orders SET status = 'paid', paid_at = now(), updated_at = now(),
                provider_ref = coalesce($2, provider_ref) WHERE id = $1",
        id,
        provider_ref
    )
    .execute(&mut *conn)
    .await?;
    crate::webhooks::payment_confirmed(conn, id).await?;
    Ok(Confirmed::Paid)
}

/// What paying an order grants, in the paying transaction. A top-up is the ledger entry
/// itself. A course order enrolls the buyer: the courses module plugs its enrollment in here
/// (`courses::enroll_paid(conn, order.user_id, course_id, order.id)`); until it does, course
/// orders cannot be created through the API.
pub async fn fulfil(conn: &mut PgConnection, order: &Order) -> Result<(), PaymentError> {
    match (order.kind.as_str(), order.product_id) {
        ("wallet_topup", _) => Ok(()),
        ("course", Some(course_id)) => crate::courses::store::enroll_paid(
            conn,
            &crate::courses::store::PaidOrder {
                order_id: order.id,
                course_id,
                user_id: order.user_id,
            },
        )
        .await
        .map_err(PaymentError::Db),
        _ => Err(PaymentError::Unprocessable(
            "unknown_order_kind",
            format!("order {} has no product to deliver", order.id),
        )),
    }
}

/// A provider reported the payment failed: the order is cancelled (if still pending).
pub async fn fail(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query!(
        "UPDATE orders SET status = 'cancelled', updated_at = now() WHERE id = $1 AND status = 'pending'",
        id
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Expire pending orders past their deadline; returns how many.
///
/// Orders of `asked` providers are left to [`super::reconcile`], which closes them at the
/// provider first (an order expired here while its payment is still open there could be paid
/// after we gave up on it).
pub async fn expire_stale(conn: &mut PgConnection, asked: &[&str]) -> Result<u64, sqlx::Error> {
    let asked: Vec<String> = asked.iter().map(|p| p.to_string()).collect();
    let r = sqlx::query!(
        "UPDATE orders SET status = 'expired', updated_at = now()
          WHERE status = 'pending' AND expires_at <= now() AND provider <> ALL($1)",
        &asked
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Remember the provider's payment id of a pending order (Stripe's PaymentIntent, known when
/// the payment is started, before anything is paid).
pub async fn set_provider_ref(
    conn: &mut PgConnection,
    id: Uuid,
    provider_ref: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE orders SET provider_ref = $2, updated_at = now()
          WHERE id = $1 AND status = 'pending' AND provider_ref IS DISTINCT FROM $2",
        id,
        provider_ref
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Pending orders of `providers` at least `min_age` old, least recently checked first; they
/// are marked checked now (so a slow provider does not keep the same ones at the head).
pub async fn take_for_check(
    conn: &mut PgConnection,
    providers: &[&str],
    min_age: time::Duration,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    let providers: Vec<String> = providers.iter().map(|p| p.to_string()).collect();
    let cutoff = OffsetDateTime::now_utc() - min_age;
    Ok(sqlx::query_as!(
        OrderRow,
        r#"UPDATE orders SET checked_at = now()
            WHERE id IN (SELECT id FROM orders
                          WHERE status = 'pending' AND provider = ANY($1) AND created_at <= $2
                          ORDER BY checked_at NULLS FIRST, created_at LIMIT $3
                          FOR UPDATE SKIP LOCKED)
        RETURNING id, user_id, kind, product_id, payee_id, platform_fee_bps, amount, currency,
                  provider, provider_ref, status, refunded_amount, expires_at, paid_at, created_at"#,
        &providers,
        cutoff,
        limit
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(Order::from)
    .collect())
}

/// Expire one pending order past its deadline (after its provider closed the payment).
pub async fn expire(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query!(
        "UPDATE orders SET status = 'expired', updated_at = now()
          WHERE id = $1 AND status = 'pending' AND expires_at <= now()",
        id
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
