//! Applying verified provider callbacks: de-duplicated by (provider, event id), re-checked
//! against the order (amount, currency, merchant), applied exactly once, in one short
//! transaction with no outbound calls (so the provider gets its answer fast).

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    PaymentError, PaymentSettings,
    orders::{self, Confirmed},
    providers::{EventKind, Provider, VerifiedEvent},
    refunds,
};
use crate::domain::{Page, PageLimit};

/// What became of a callback (stored in `payment_events.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Seen before (same provider and event id): nothing changed.
    Duplicate,
    /// Already in the state the event reports.
    AlreadyApplied,
    /// Verified, but it does not match our order (amount, currency, merchant, provider) or
    /// names one we don't have: recorded, not applied, logged for a person to look at.
    Rejected(&'static str),
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::AlreadyApplied => "already_applied",
            Outcome::Rejected(why) => why,
            Outcome::Ignored => "ignored",
        }
    }
}

pub async fn apply(
    pool: &PgPool,
    settings: &PaymentSettings,
    provider: &str,
    event: &VerifiedEvent,
) -> Result<Outcome, PaymentError> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query_scalar!(
        r#"INSERT INTO payment_events (provider, event_id, id, event_type, outcome, payload)
           VALUES ($1, $2, $3, $4, 'received', $5)
           ON CONFLICT (provider, event_id) DO NOTHING RETURNING id"#,
        provider,
        event.event_id,
        Uuid::now_v7(),
        event.event_type,
        event.payload
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row_id) = inserted else {
        return Ok(Outcome::Duplicate);
    };
    let (outcome, order_id, refund_id) = match &event.kind {
        EventKind::PaymentSucceeded {
            order_ref,
            amount,
            currency,
            merchant,
            provider_ref,
        } => match order_by_ref(&mut tx, order_ref).await? {
            None => (Outcome::Rejected("unknown_order"), None, None),
            Some(order) => {
                let merchant_ok =
                    match Provider::parse(provider).and_then(|p| p.expected_merchant(settings)) {
                        Some(expected) => merchant.as_deref().unwrap_or("") == expected,
                        None => true,
                    };
                if order.provider != provider {
                    (Outcome::Rejected("provider_mismatch"), Some(order.id), None)
                } else if *amount != order.amount.amount || currency != order.currency().as_str() {
                    (Outcome::Rejected("amount_mismatch"), Some(order.id), None)
                } else if !merchant_ok {
                    (Outcome::Rejected("merchant_mismatch"), Some(order.id), None)
                } else {
                    match orders::confirm(&mut tx, order.id, Some(provider_ref)).await {
                        Ok(Confirmed::Paid) => (Outcome::Applied, Some(order.id), None),
                        Ok(Confirmed::AlreadyPaid) => {
                            (Outcome::AlreadyApplied, Some(order.id), None)
                        }
                        Err(PaymentError::Conflict(..)) => {
                            (Outcome::Rejected("order_not_payable"), Some(order.id), None)
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        },
        EventKind::PaymentFailed { order_ref } => match order_by_ref(&mut tx, order_ref).await? {
            Some(order) if order.provider == provider => {
                let changed = orders::fail(&mut tx, order.id).await?;
                let o = if changed {
                    Outcome::Applied
                } else {
                    Outcome::AlreadyApplied
                };
                (o, Some(order.id), None)
            }
            Some(order) => (Outcome::Rejected("provider_mismatch"), Some(order.id), None),
            None => (Outcome::Rejected("unknown_order"), None, None),
        },
        EventKind::RefundSucceeded { refund_ref } | EventKind::RefundFailed { refund_ref, .. } => {
            let succeeded = matches!(event.kind, EventKind::RefundSucceeded { .. });
            match parse_ref(refund_ref) {
                None => (Outcome::Rejected("unknown_refund"), None, None),
                Some(id) => {
                    let reason = match &event.kind {
                        EventKind::RefundFailed { reason, .. } => reason.as_str(),
                        _ => "",
                    };
                    match refunds::resolve(&mut tx, id, provider, succeeded, reason).await {
                        Ok(true) => (Outcome::Applied, None, Some(id)),
                        Ok(false) => (Outcome::AlreadyApplied, None, Some(id)),
                        Err(PaymentError::NotFound(_)) => {
                            (Outcome::Rejected("unknown_refund"), None, None)
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        EventKind::Ignored => (Outcome::Ignored, None, None),
    };
    sqlx::query!(
        "UPDATE payment_events SET outcome = $2, order_id = $3, refund_id = $4 WHERE id = $1",
        row_id,
        outcome.as_str(),
        order_id,
        refund_id
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if let Outcome::Rejected(why) = outcome {
        tracing::warn!(provider, event_id = %event.event_id, why, "provider callback not applied");
    }
    Ok(outcome)
}

fn parse_ref(r: &str) -> Option<Uuid> {
    Uuid::parse_str(r).ok()
}

async fn order_by_ref(
    conn: &mut sqlx::PgConnection,
    order_ref: &str,
) -> Result<Option<orders::Order>, sqlx::Error> {
    match parse_ref(order_ref) {
        Some(id) => orders::get(conn, id).await,
        None => Ok(None),
    }
}

/// A verified provider callback as stored (one per provider event id).
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ProviderEvent {
    pub id: Uuid,
    pub provider: String,
    /// The provider's event id (what de-duplicates it).
    pub event_id: String,
    pub event_type: String,
    pub order_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    /// What became of it.
    pub outcome: String,
    /// The event as the provider sent it (after verification and, for WeChat Pay, decryption).
    #[schema(value_type = Object)]
    pub payload: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// Which stored callbacks: every filter is optional.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub provider: Option<String>,
    pub outcome: Option<String>,
    pub order_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    /// Events older than this one (the cursor).
    pub before: Option<Uuid>,
}

/// Stored callbacks matching `f`, newest first.
pub async fn list(
    conn: &mut PgConnection,
    f: &ListFilter,
    limit: PageLimit,
) -> Result<Page<ProviderEvent>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id, provider, event_id, event_type, order_id, refund_id, outcome, payload,
                  received_at
             FROM payment_events
            WHERE ($1::text IS NULL OR provider = $1) AND ($2::text IS NULL OR outcome = $2)
              AND ($3::uuid IS NULL OR order_id = $3) AND ($4::uuid IS NULL OR refund_id = $4)
              AND ($5::uuid IS NULL OR id < $5)
            ORDER BY id DESC LIMIT $6"#,
        f.provider,
        f.outcome,
        f.order_id,
        f.refund_id,
        f.before,
        limit.fetch()
    )
    .fetch_all(conn)
    .await?;
    let items = rows
        .into_iter()
        .map(|r| ProviderEvent {
            id: r.id,
            provider: r.provider,
            event_id: r.event_id,
            event_type: r.event_type,
            order_id: r.order_id,
            refund_id: r.refund_id,
            outcome: r.outcome,
            payload: r.payload,
            received_at: r.received_at,
        })
        .collect();
    Ok(Page::cut(items, limit, |e: &ProviderEvent| e.id))
}
