//! Admin views of payments: every ledger leg, a reconciliation run on demand, and the
//! provider callbacks received.

use axum::{extract::State, response::Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::wallet::{TransactionList, TransactionParams, transactions_response};
use crate::{
    domain::{Page, PageLimit},
    http::{
        error::{ApiError, Problem},
        extract::{AuthUser, Json, Query},
    },
    payments::{
        events::{self, ProviderEvent},
        reconcile,
    },
    state::AppState,
    users::Role,
};

#[utoipa::path(get, path = "/admin/payments/transactions", tag = "payments", params(TransactionParams),
    security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = TransactionList), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub(super) async fn admin_transactions(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<TransactionParams>,
) -> Result<Response, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let mut conn = state.db.acquire().await?;
    transactions_response(&mut conn, &q, None).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileReport {
    /// Pending orders asked about at their provider, and what became of them.
    pub orders_checked: u64,
    pub orders_paid: u64,
    pub orders_closed: u64,
    /// Pending refunds asked about, and how many reached a final state.
    pub refunds_checked: u64,
    pub refunds_resolved: u64,
    /// Provider calls that failed (retried at the next run).
    pub provider_errors: u64,
    pub orders_expired: u64,
    pub payouts_expired: u64,
    pub holds_voided: u64,
    pub keys_purged: u64,
    pub ledger_mismatches: usize,
}

#[utoipa::path(post, path = "/admin/payments/reconcile", tag = "payments",
    security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = ReconcileReport), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub(super) async fn admin_reconcile(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<ReconcileReport>, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let notifier = state.notifier.clone();
    let on_paid = move |order: Uuid| notifier.payment_confirmed(&order.to_string());
    let r = reconcile::run_once(
        &state.db,
        &state.settings.payments,
        &state.gateways,
        &on_paid,
    )
    .await?;
    Ok(Json(ReconcileReport {
        orders_checked: r.providers.orders_checked,
        orders_paid: r.providers.orders_paid,
        orders_closed: r.providers.orders_closed,
        refunds_checked: r.providers.refunds_checked,
        refunds_resolved: r.providers.refunds_resolved,
        provider_errors: r.providers.provider_errors,
        orders_expired: r.orders_expired,
        payouts_expired: r.payouts_expired,
        holds_voided: r.holds_voided,
        keys_purged: r.keys_purged,
        ledger_mismatches: r.ledger_mismatches,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct EventListParams {
    /// sandbox, stripe, alipay, wechatpay.
    pub provider: Option<String>,
    /// applied, already_applied, ignored, or why it was not applied: unknown_order,
    /// amount_mismatch, merchant_mismatch, ... (a replay is not stored again).
    pub outcome: Option<String>,
    pub order_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub cursor: Option<Uuid>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderEventList {
    pub items: Vec<ProviderEvent>,
    pub next_cursor: Option<Uuid>,
}

/// Provider callbacks received (admins and ops), newest first: the audit trail of every
/// verified event and what was done with it.
#[utoipa::path(get, path = "/admin/payments/events", tag = "payments", params(EventListParams),
    security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = ProviderEventList), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn admin_events(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<EventListParams>,
) -> Result<Json<ProviderEventList>, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let limit = PageLimit::parse(q.limit)?;
    let mut conn = state.db.acquire().await?;
    let filter = events::ListFilter {
        provider: q.provider,
        outcome: q.outcome,
        order_id: q.order_id,
        refund_id: q.refund_id,
        before: q.cursor,
    };
    let Page { items, next_cursor } = events::list(&mut conn, &filter, limit).await?;
    Ok(Json(ProviderEventList { items, next_cursor }))
}
