//! Applying verified provider callbacks: de-duplicated by (provider, event id), re-checked
//! against the order (amount, currency, merchant), applied exactly once, in one short
//! transaction with no outbound calls (so the provider gets its answer fast).

use sqlx::PgPool;
use uuid::Uuid;

use super::{
    PaymentError, PaymentSettings,
    orders::{self, Confirmed},
    providers::{EventKind, VerifiedEvent},
    refunds,
};

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

/// The merchant we expect a provider's events to name.
pub fn expected_merchant(settings: &PaymentSettings, provider: &str) -> Option<String> {
    match provider {
        "stripe" => Some(settings.stripe.account.clone()),
        "alipay" => Some(format!(
            "{}/{}",
            settings.alipay.app_id, settings.alipay.seller_id
        )),
        "wechatpay" => Some(format!(
            "{}/{}",
            settings.wechatpay.mchid, settings.wechatpay.appid
        )),
        _ => None,
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
                let merchant_ok = match expected_merchant(settings, provider) {
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
