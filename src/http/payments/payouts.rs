//! Teachers' `/earnings` (and their transactions), `/payouts` requests, and their decisions
//! by admins under `/admin/payouts/{id}/...`.

use crate::http::extract::RawBody;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    Answer, idempotent, is_staff, parse_body,
    wallet::{TransactionList, TransactionParams, transactions_response},
};
use crate::{
    domain::{Page, PageLimit},
    http::{
        error::{ApiError, Problem},
        extract::{AuthUser, Json, Path, Query},
    },
    payments::{
        Currency, Money, PaymentError, ledger,
        payouts::{self, Earnings, NewPayout, Payout},
    },
    state::AppState,
    users::{InvalidInput, Role},
};

/// The caller's earnings as a teacher: settled, held (payout requests and refunds in flight),
/// available to withdraw, and paid out (approved or sent).
#[utoipa::path(get, path = "/earnings", tag = "payments",
    security(("bearer" = ["teacher"])),
    responses((status = 200, body = Earnings), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub(super) async fn get_earnings(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Earnings>, ApiError> {
    user.require_any(&[Role::Teacher])?;
    let currency = Currency::try_from(state.settings.payments.currency.clone())?;
    let mut conn = state.db.acquire().await?;
    Ok(Json(
        payouts::earnings(&mut conn, user.id, &currency).await?,
    ))
}

/// The movements of the caller's earnings and receivable accounts (sales, refunds, payouts,
/// clawbacks and their repayment; `account_kind` tells which), newest first; `?format=csv`
/// exports the page.
#[utoipa::path(get, path = "/earnings/transactions", tag = "payments", params(TransactionParams),
    security(("bearer" = ["teacher"])),
    responses((status = 200, body = TransactionList), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn earnings_transactions(
    State(state): State<AppState>,
    user: AuthUser,
    Query(mut q): Query<TransactionParams>,
) -> Result<Response, ApiError> {
    user.require_any(&[Role::Teacher])?;
    let currency = Currency::try_from(state.settings.payments.currency.clone())?;
    let mut conn = state.db.acquire().await?;
    let earnings = ledger::account(
        &mut conn,
        &ledger::AccountRef::TeacherEarnings(user.id),
        &currency,
    )
    .await?;
    // The receivable too: a refund clawed back after a payout, and the part of a sale that
    // repaid it, explain why the earnings moved less than the price.
    let receivable = ledger::account(
        &mut conn,
        &ledger::AccountRef::TeacherReceivable(user.id),
        &currency,
    )
    .await?;
    q.user_id = None;
    q.account_kind = None;
    transactions_response(&mut conn, &q, Some(&[earnings, receivable])).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayout {
    /// What to withdraw (at most the available earnings; at least `payments.payout_min_amount`).
    pub amount: Money,
    /// `bank_transfer`, `alipay` or `wechatpay`.
    pub method: String,
    /// Where to send it: an account number, an Alipay login, ...
    pub destination: String,
    #[serde(default)]
    pub note: String,
}

/// Ask for a payout of earnings (teachers). The amount is held on the earnings at once (422
/// `insufficient_earnings` when it is not available) until an admin approves or rejects it,
/// the teacher cancels it, or it expires (`payments.payout_hold_s`). Honours
/// `Idempotency-Key`.
#[utoipa::path(post, path = "/payouts", tag = "payments", request_body = CreatePayout,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first answer for the same key and body")),
    security(("bearer" = ["teacher"])),
    responses((status = 201, body = Payout), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn create_payout(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Answer, ApiError> {
    user.require_any(&[Role::Teacher])?;
    let (req, raw): (CreatePayout, Value) = parse_body(&body)?;
    let settings = &state.settings.payments;
    crate::payments::positive(&req.amount, "amount")?;
    if req.amount.currency.as_str() != settings.currency {
        return Err(InvalidInput {
            field: "amount.currency",
            reason: "is not the platform's currency",
        }
        .into());
    }
    let new = NewPayout {
        teacher_id: user.id,
        amount: req.amount,
        method: req.method,
        destination: req.destination,
        note: req.note,
        hold_ttl: time::Duration::seconds(settings.payout_hold_s as i64),
    };
    new.validate(settings.payout_min_amount)?;
    idempotent(&state, &user, "POST /payouts", &headers, &raw, move |conn| {
        Box::pin(async move {
            let p = payouts::request(conn, new).await?;
            tracing::info!(payout_id = %p.id, teacher_id = %p.teacher_id, amount = p.amount.amount, "payout requested");
            let body = serde_json::to_value(p).map_err(anyhow::Error::from)?;
            Ok((StatusCode::CREATED, body))
        })
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PayoutListParams {
    /// Admins and ops: one teacher's payouts.
    pub teacher_id: Option<Uuid>,
    /// pending, approved, paid, rejected, cancelled, expired.
    pub status: Option<String>,
    pub cursor: Option<Uuid>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutList {
    pub items: Vec<Payout>,
    pub next_cursor: Option<Uuid>,
}

/// Payouts, newest first: a teacher's own; admins and ops see everyone's (`?teacher_id=`).
#[utoipa::path(get, path = "/payouts", tag = "payments", params(PayoutListParams),
    security(("bearer" = ["teacher", "admin", "ops"])),
    responses((status = 200, body = PayoutList), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn list_payouts(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<PayoutListParams>,
) -> Result<Json<PayoutList>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin, Role::Ops])?;
    let limit = PageLimit::parse(q.limit)?;
    let teacher = if is_staff(&user) {
        q.teacher_id
    } else {
        Some(user.id)
    };
    let mut conn = state.db.acquire().await?;
    let items = payouts::list(
        &mut conn,
        teacher,
        q.status.as_deref(),
        q.cursor,
        limit.fetch(),
    )
    .await?;
    let Page { items, next_cursor } = Page::cut(items, limit, |p| p.id);
    Ok(Json(PayoutList { items, next_cursor }))
}

#[utoipa::path(get, path = "/payouts/{id}", tag = "payments",
    params(("id" = Uuid, Path, description = "payout id")),
    security(("bearer" = ["teacher", "admin", "ops"])),
    responses((status = 200, body = Payout), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
pub(super) async fn get_payout(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Payout>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin, Role::Ops])?;
    let mut conn = state.db.acquire().await?;
    let p = payouts::get(&mut conn, id)
        .await?
        .filter(|p| p.teacher_id == user.id || is_staff(&user))
        .ok_or(ApiError::NotFound("payout"))?;
    Ok(Json(p))
}

/// A payout transition, guarded by `Idempotency-Key` like every money-moving POST.
pub(super) async fn payout_action<F>(
    state: &AppState,
    user: &AuthUser,
    route: &str,
    headers: &HeaderMap,
    raw: &Value,
    action: F,
) -> Result<Answer, ApiError>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<Payout, PaymentError>>
        + Send
        + 'static,
{
    idempotent(state, user, route, headers, raw, move |conn| {
        Box::pin(async move {
            let p = action(conn).await?;
            tracing::info!(payout_id = %p.id, status = %p.status, "payout changed");
            let body = serde_json::to_value(p).map_err(anyhow::Error::from)?;
            Ok((StatusCode::OK, body))
        })
    })
    .await
}

/// Withdraw one's pending payout request (the teacher): its hold is released.
#[utoipa::path(post, path = "/payouts/{id}/cancel", tag = "payments",
    params(("id" = Uuid, Path, description = "payout id"),
           ("Idempotency-Key" = Option<String>, Header, description = "replays the first answer")),
    security(("bearer" = ["teacher"])),
    responses((status = 200, body = Payout), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem, description = "payout_not_pending")))]
pub(super) async fn cancel_payout(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Answer, ApiError> {
    user.require_any(&[Role::Teacher])?;
    let teacher = user.id;
    payout_action(
        &state,
        &user,
        "POST /payouts/{id}/cancel",
        &headers,
        &json!({"payout_id": id}),
        move |conn| Box::pin(payouts::cancel(conn, id, teacher)),
    )
    .await
}

/// Approve a pending payout (admins): its hold is posted, earnings → payouts payable; pay it
/// out, then record it with `/paid`. 409 `payout_not_pending`, `payout_expired`.
#[utoipa::path(post, path = "/admin/payouts/{id}/approve", tag = "payments",
    params(("id" = Uuid, Path, description = "payout id"),
           ("Idempotency-Key" = Option<String>, Header, description = "replays the first answer")),
    security(("bearer" = ["admin"])),
    responses((status = 200, body = Payout), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(super) async fn approve_payout(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Answer, ApiError> {
    user.require_any(&[Role::Admin])?;
    let admin = user.id;
    payout_action(
        &state,
        &user,
        "POST /admin/payouts/{id}/approve",
        &headers,
        &json!({"payout_id": id}),
        move |conn| Box::pin(payouts::approve(conn, id, admin)),
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectPayout {
    /// Why (shown to the teacher).
    #[serde(default)]
    pub reason: String,
}

/// Reject a pending payout (admins): its hold is voided, the earnings are available again.
#[utoipa::path(post, path = "/admin/payouts/{id}/reject", tag = "payments", request_body = RejectPayout,
    params(("id" = Uuid, Path, description = "payout id"),
           ("Idempotency-Key" = Option<String>, Header, description = "replays the first answer for the same key and body")),
    security(("bearer" = ["admin"])),
    responses((status = 200, body = Payout), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(super) async fn reject_payout(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Answer, ApiError> {
    user.require_any(&[Role::Admin])?;
    let (req, mut raw): (RejectPayout, Value) = if body.is_empty() {
        (
            RejectPayout {
                reason: String::new(),
            },
            json!({}),
        )
    } else {
        parse_body(&body)?
    };
    if req.reason.chars().count() > 500 {
        return Err(InvalidInput {
            field: "reason",
            reason: "must be at most 500 characters",
        }
        .into());
    }
    raw["payout_id"] = json!(id);
    let admin = user.id;
    payout_action(
        &state,
        &user,
        "POST /admin/payouts/{id}/reject",
        &headers,
        &raw,
        move |conn| Box::pin(async move { payouts::reject(conn, id, admin, &req.reason).await }),
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayPayout {
    /// The provider's reference of the money sent (bank transfer id, Alipay order number...).
    pub reference: String,
}

/// Record that an approved payout was sent (admins): payouts payable → provider clearing of
/// the payout's method. 409 `payout_not_approved`.
#[utoipa::path(post, path = "/admin/payouts/{id}/paid", tag = "payments", request_body = PayPayout,
    params(("id" = Uuid, Path, description = "payout id"),
           ("Idempotency-Key" = Option<String>, Header, description = "replays the first answer for the same key and body")),
    security(("bearer" = ["admin"])),
    responses((status = 200, body = Payout), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 422, body = Problem)))]
pub(super) async fn pay_payout(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Answer, ApiError> {
    user.require_any(&[Role::Admin])?;
    let (req, mut raw): (PayPayout, Value) = parse_body(&body)?;
    let reference = req.reference.trim().to_string();
    if reference.is_empty()
        || reference.chars().count() > 200
        || reference.chars().any(char::is_control)
    {
        return Err(InvalidInput {
            field: "reference",
            reason: "must be 1 to 200 printable characters",
        }
        .into());
    }
    raw["payout_id"] = json!(id);
    payout_action(
        &state,
        &user,
        "POST /admin/payouts/{id}/paid",
        &headers,
        &raw,
        move |conn| Box::pin(async move { payouts::mark_paid(conn, id, &reference).await }),
    )
    .await
}
