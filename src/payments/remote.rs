//! Where provider calls meet the database: starting a payment, submitting a refund, and the
//! reconciliation checks of open orders and refunds. Calls happen outside any transaction
//! (a slow provider never holds a row lock); what they learn is applied through
//! [`events::apply`] as a synthetic event, so it is recorded in `payment_events`, re-checked
//! against the order (amount, currency, merchant) and applied exactly once — whichever of
//! the callback and the question comes first.

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    PaymentError, PaymentSettings, events,
    gateway::{GatewayError, Gateways, OrderRef, RefundRef, RemotePayment, RemoteRefund},
    orders::{self, Order},
    providers::{EventKind, VerifiedEvent},
    refunds,
    status::RefundStatus,
};

pub fn order_ref(order: &Order) -> OrderRef {
    OrderRef {
        id: order.id,
        amount: order.amount.amount,
        currency: order.currency().as_str().to_string(),
        provider_ref: order.provider_ref.clone(),
        description: match order.kind.as_str() {
            "course" => "WeMaster course".to_string(),
            _ => "WeMaster wallet top-up".to_string(),
        },
        expires_at: order.expires_at,
    }
}

/// Start or resume the payment of a pending order at its provider: the instructions for the
/// payer (Stripe `client_secret`, Alipay `qr_code`, WeChat Pay `code_url`).
pub async fn start_payment(
    pool: &PgPool,
    gateways: &Gateways,
    order: &Order,
) -> Result<Value, GatewayError> {
    let started = gateways
        .start_payment(&order.provider, &order_ref(order))
        .await?;
    if let Some(r) = &started.provider_ref {
        if order.provider_ref.as_deref() != Some(r) {
            let mut conn = pool
                .acquire()
                .await
                .map_err(|e| GatewayError::Transport(e.to_string()))?;
            orders::set_provider_ref(&mut conn, order.id, r)
                .await
                .map_err(|e| GatewayError::Transport(e.to_string()))?;
        }
    }
    Ok(started.instructions)
}

/// Apply what a provider said about a refund. `NotFound` is left to the caller.
async fn apply_refund_state(
    pool: &PgPool,
    settings: &PaymentSettings,
    provider: &str,
    refund_id: Uuid,
    state: &RemoteRefund,
) -> Result<Option<events::Outcome>, PaymentError> {
    // The provider's id of the refund, whenever it gives one (later queries use it).
    if let RemoteRefund::Succeeded {
        provider_ref: Some(r),
    }
    | RemoteRefund::Pending {
        provider_ref: Some(r),
    } = state
    {
        refunds::set_provider_ref(&mut *pool.acquire().await?, refund_id, r).await?;
    }
    let kind = match state {
        RemoteRefund::Succeeded { .. } => EventKind::RefundSucceeded {
            refund_ref: refund_id.to_string(),
        },
        RemoteRefund::Failed { reason } => EventKind::RefundFailed {
            refund_ref: refund_id.to_string(),
            reason: reason.clone(),
        },
        RemoteRefund::Pending { .. } | RemoteRefund::NotFound => return Ok(None),
    };
    let event = VerifiedEvent {
        event_id: format!("wemaster:refund:{refund_id}"),
        event_type: "wemaster.refund_state".into(),
        payload: json!({"source": "provider_api", "state": format!("{state:?}")}),
        kind,
    };
    Ok(Some(events::apply(pool, settings, provider, &event).await?))
}

/// Ask the provider to carry a pending refund out (first attempt, or again when it says it
/// never got it); apply the answer when it is final.
pub async fn submit_refund(
    pool: &PgPool,
    gateways: &Gateways,
    settings: &PaymentSettings,
    refund_id: Uuid,
) -> Result<(), PaymentError> {
    let mut conn = pool.acquire().await?;
    let Some(refund) = refunds::get(&mut conn, refund_id).await? else {
        return Err(PaymentError::NotFound("refund"));
    };
    let Some(order) = orders::get(&mut conn, refund.order_id).await? else {
        return Err(PaymentError::NotFound("order"));
    };
    drop(conn);
    if refund.status != RefundStatus::Pending || !gateways.can_call(&order.provider) {
        return Ok(());
    }
    let r = RefundRef {
        id: refund.id,
        amount: refund.amount.amount,
        provider_ref: None,
        reason: refund.reason.clone(),
    };
    match gateways
        .refund(&order.provider, &order_ref(&order), &r)
        .await
    {
        Ok(state) => {
            apply_refund_state(pool, settings, &order.provider, refund.id, &state).await?;
        }
        // Left pending: reconciliation asks again (the refund id keeps it from happening twice).
        Err(e) => tracing::warn!(refund = %refund.id, provider = %order.provider, error = %e,
                                 "refund request to the provider failed; will retry"),
    }
    Ok(())
}

/// Failed calls to one provider after which a reconciliation run stops asking it.
const MAX_FAILURES_PER_RUN: u32 = 3;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckReport {
    pub orders_checked: u64,
    pub orders_paid: u64,
    pub orders_closed: u64,
    pub orders_expired: u64,
    pub refunds_checked: u64,
    pub refunds_resolved: u64,
    pub provider_errors: u64,
}

/// What to do when asking found an order paid (notify the buyer, as a callback would).
pub type OnPaid = dyn Fn(Uuid) + Send + Sync;

/// Ask providers about open orders and refunds old enough to have had their callback.
pub async fn check_open(
    pool: &PgPool,
    gateways: &Gateways,
    settings: &PaymentSettings,
    on_paid: &OnPaid,
) -> Result<CheckReport, PaymentError> {
    let mut rep = CheckReport::default();
    let min_age = time::Duration::seconds(settings.reconcile_min_age_s as i64);
    let callable = gateways.callable();
    let open = {
        let mut conn = pool.acquire().await?;
        orders::take_for_check(&mut conn, &callable, min_age, 200).await?
    };
    // A provider that keeps failing is left alone for the rest of this run: with a 10 s timeout
    // per call, 200 calls to a dead provider would hold the job for half an hour.
    let mut failures: std::collections::HashMap<String, u32> = Default::default();
    let given_up = |f: &std::collections::HashMap<String, u32>, p: &str| {
        f.get(p).copied().unwrap_or(0) >= MAX_FAILURES_PER_RUN
    };
    for order in open {
        if given_up(&failures, &order.provider) {
            continue;
        }
        rep.orders_checked += 1;
        if let Err(e) = check_order(pool, gateways, settings, &order, &mut rep, on_paid).await {
            rep.provider_errors += 1;
            *failures.entry(order.provider.clone()).or_default() += 1;
            tracing::warn!(order = %order.id, provider = %order.provider, error = %e,
                           "cannot reconcile order with its provider");
        }
    }
    let open = {
        let mut conn = pool.acquire().await?;
        refunds::take_for_check(&mut conn, min_age, 200).await?
    };
    for r in open {
        if given_up(&failures, &r.provider) {
            continue;
        }
        rep.refunds_checked += 1;
        match check_refund(pool, gateways, settings, &r).await {
            Ok(true) => rep.refunds_resolved += 1,
            Ok(false) => {}
            Err(e) => {
                rep.provider_errors += 1;
                *failures.entry(r.provider.clone()).or_default() += 1;
                tracing::warn!(refund = %r.id, provider = %r.provider, error = %e,
                               "cannot reconcile refund with its provider");
            }
        }
    }
    Ok(rep)
}

#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

async fn check_order(
    pool: &PgPool,
    gateways: &Gateways,
    settings: &PaymentSettings,
    order: &Order,
    rep: &mut CheckReport,
    on_paid: &OnPaid,
) -> Result<(), CheckError> {
    let remote = gateways
        .query_payment(&order.provider, &order_ref(order))
        .await?;
    let reference = order.id.simple().to_string();
    let event = match remote {
        RemotePayment::Paid {
            amount,
            currency,
            merchant,
            provider_ref,
            raw,
        } => VerifiedEvent {
            event_id: format!("wemaster:paid:{}", order.id),
            event_type: "wemaster.payment_state".into(),
            payload: json!({"source": "provider_api", "answer": raw}),
            kind: EventKind::PaymentSucceeded {
                order_ref: reference,
                amount,
                currency,
                merchant,
                provider_ref,
            },
        },
        RemotePayment::Closed { raw } => VerifiedEvent {
            event_id: format!("wemaster:closed:{}", order.id),
            event_type: "wemaster.payment_state".into(),
            payload: json!({"source": "provider_api", "answer": raw}),
            kind: EventKind::PaymentFailed {
                order_ref: reference,
            },
        },
        RemotePayment::Open | RemotePayment::NotFound => {
            if order.expires_at <= time::OffsetDateTime::now_utc() {
                // Close it there first: an order we expire must not be payable any more.
                gateways
                    .close_payment(&order.provider, &order_ref(order))
                    .await?;
                if orders::expire(&mut *pool.acquire().await?, order.id).await? {
                    rep.orders_expired += 1;
                }
            }
            return Ok(());
        }
    };
    let paid = matches!(event.kind, EventKind::PaymentSucceeded { .. });
    let outcome = events::apply(pool, settings, &order.provider, &event).await?;
    if outcome == events::Outcome::Applied {
        if paid {
            rep.orders_paid += 1;
            on_paid(order.id);
        } else {
            rep.orders_closed += 1;
        }
    }
    Ok(())
}

/// Returns whether the refund reached a final state.
async fn check_refund(
    pool: &PgPool,
    gateways: &Gateways,
    settings: &PaymentSettings,
    r: &refunds::OpenRefund,
) -> Result<bool, CheckError> {
    if !gateways.can_call(&r.provider) {
        // Nobody to ask: past the hold's deadline the refund has failed as far as we know.
        if !r.overdue {
            return Ok(false);
        }
        let mut tx = pool.begin().await?;
        let done = refunds::resolve(
            &mut tx,
            r.id,
            &r.provider,
            false,
            "no answer from the provider before the deadline",
        )
        .await?;
        tx.commit().await?;
        return Ok(done);
    }
    let order = orders::get(&mut *pool.acquire().await?, r.order_id)
        .await?
        .ok_or(PaymentError::NotFound("order"))?;
    let refund = RefundRef {
        id: r.id,
        amount: r.amount,
        provider_ref: r.provider_ref.clone(),
        reason: r.reason.clone(),
    };
    let oref = order_ref(&order);
    let mut state = gateways.query_refund(&r.provider, &oref, &refund).await?;
    if state == RemoteRefund::NotFound {
        // Never reached the provider (or our first call failed): ask again, same refund id.
        state = gateways.refund(&r.provider, &oref, &refund).await?;
    }
    let outcome = apply_refund_state(pool, settings, &r.provider, r.id, &state).await?;
    Ok(matches!(
        outcome,
        Some(events::Outcome::Applied) | Some(events::Outcome::AlreadyApplied)
    ))
}
