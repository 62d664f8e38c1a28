//! Payments API: orders, the wallet and its transactions, refunds, teachers' earnings and
//! payouts, provider callbacks, and the admin views. Money-moving POSTs (`/orders`, `/refunds`,
//! the payout requests and decisions) honour `Idempotency-Key`.
//!
//! Access: a user sees their own orders, refunds and wallet, a teacher their earnings and
//! payouts; admins and ops see all (filter by `user_id` / `teacher_id`). Refunds are created by
//! admins and ops; payouts are decided by admins. Callbacks are public and verified by
//! signature (400 `invalid_callback` when not).

use std::sync::LazyLock;

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    error::{ApiError, Problem},
    extract::{AuthUser, Json, Path, Query},
};
use crate::{
    live::model::PageLimit,
    payments::{
        Currency, Money, PaymentError, events, idempotency, ledger,
        orders::{self, NewOrder, Order, OrderKind},
        payouts::{self, Earnings, NewPayout, Payout},
        providers::{self, VerifyError},
        reconcile,
        refunds::{self, Destination, NewRefund, Refund},
    },
    state::AppState,
    users::{InvalidInput, Role},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(start_order_payment))
        .routes(routes!(get_wallet))
        .routes(routes!(wallet_transactions))
        .routes(routes!(create_refund, list_refunds))
        .routes(routes!(get_refund))
        .routes(routes!(webhook))
        .routes(routes!(admin_transactions))
        .routes(routes!(admin_reconcile))
        .routes(routes!(admin_events))
        .routes(routes!(get_earnings))
        .routes(routes!(earnings_transactions))
        .routes(routes!(create_payout, list_payouts))
        .routes(routes!(get_payout))
        .routes(routes!(cancel_payout))
        .routes(routes!(approve_payout))
        .routes(routes!(reject_payout))
        .routes(routes!(pay_payout))
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::InsufficientFunds => ApiError::Unprocessable(
                "insufficient_funds",
                "the wallet's available balance is too small".into(),
            ),
            PaymentError::NotFound(what) => ApiError::NotFound(what),
            PaymentError::Conflict(code, m) => ApiError::Conflict(code, m),
            PaymentError::Invalid(v) => ApiError::Validation(v),
            PaymentError::Unprocessable(code, m) => ApiError::Unprocessable(code, m),
            PaymentError::Db(e) => e.into(),
        }
    }
}

fn is_staff(user: &AuthUser) -> bool {
    user.has_role(Role::Admin) || user.has_role(Role::Ops)
}

// ------------------------------------------------------------------------------------------
// Idempotency

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Result of an idempotent POST: the answer, and whether it was replayed.
struct Answer {
    status: StatusCode,
    body: Value,
    replayed: bool,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if self.replayed {
            r.headers_mut().insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
        }
        r
    }
}

/// Run `work` in a transaction guarded by the request's `Idempotency-Key` (when given).
async fn idempotent<F>(
    state: &AppState,
    user: &AuthUser,
    route: &str,
    headers: &HeaderMap,
    body: &Value,
    work: F,
) -> Result<Answer, ApiError>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<(StatusCode, Value), ApiError>>,
{
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => {
            let k = v.to_str().unwrap_or("");
            if k.is_empty() || k.len() > 255 {
                return Err(InvalidInput {
                    field: "Idempotency-Key",
                    reason: "must be 1 to 255 visible characters",
                }
                .into());
            }
            Some(k.to_string())
        }
    };
    let mut tx = state.db.begin().await?;
    if let Some(key) = &key {
        // serde_json maps are sorted: the same JSON however formatted hashes the same.
        let canonical = serde_json::to_vec(body).unwrap_or_default();
        let hash = idempotency::request_hash(route, &canonical);
        match idempotency::begin(&mut tx, user.id, route, key, &hash).await? {
            idempotency::Begin::New => {}
            idempotency::Begin::Replay(status, body) => {
                return Ok(Answer {
                    status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                    body,
                    replayed: true,
                });
            }
            idempotency::Begin::Mismatch => {
                return Err(ApiError::Unprocessable(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request".into(),
                ));
            }
        }
    }
    let (status, body) = work(&mut tx).await?;
    if let Some(key) = &key {
        idempotency::finish(&mut tx, user.id, route, key, status.as_u16(), &body).await?;
    }
    tx.commit().await?;
    Ok(Answer {
        status,
        body,
        replayed: false,
    })
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<(T, Value), ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let t = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok((t, value))
}

// ------------------------------------------------------------------------------------------
// Orders

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    /// `wallet_topup`, or `course` (with `course_id`; the amount must be the course's price).
    pub kind: String,
    /// The course bought, for `course` orders.
    #[serde(default)]
    pub course_id: Option<Uuid>,
    pub amount: Money,
    /// `sandbox`, `stripe`, `alipay`, `wechatpay` (or `wallet`, for course orders).
    pub provider: String,
}

/// How to pay a pending order at its provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentInstructions {
    pub provider: String,
    /// Our order reference at the provider (`out_trade_no`, `metadata.order_id`).
    pub reference: String,
    /// What the payer needs, from the provider, for providers with API credentials:
    /// `{"client_secret", "payment_intent"}` (Stripe), `{"qr_code"}` (Alipay), `{"code_url"}`
    /// (WeChat Pay). Absent when nothing was asked of the provider (sandbox, wallet,
    /// callbacks-only configuration) or, with `error`, when it could not be reached —
    /// `POST /orders/{id}/payment` asks again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub instructions: Option<Value>,
    /// Why `instructions` are missing: `provider_unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderResponse {
    #[serde(flatten)]
    pub order: Order,
    pub payment: PaymentInstructions,
}

fn order_response(order: Order) -> OrderResponse {
    let payment = PaymentInstructions {
        provider: order.provider.clone(),
        reference: order.id.simple().to_string(),
        instructions: None,
        error: None,
    };
    OrderResponse { order, payment }
}

#[utoipa::path(post, path = "/orders", tag = "payments", request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first answer for the same key and body")),
    security(("bearer" = [])),
    responses((status = 201, body = OrderResponse), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 422, body = Problem)))]
async fn create_order(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Answer, ApiError> {
    let (req, raw): (CreateOrder, Value) = parse_body(&body)?;
    let settings = &state.settings.payments;
    crate::payments::positive(&req.amount, "amount")?;
    if req.amount.currency.as_str() != settings.currency {
        return Err(InvalidInput {
            field: "amount.currency",
            reason: "is not the platform's currency",
        }
        .into());
    }
    let kind = match req.kind.as_str() {
        "wallet_topup" => OrderKind::WalletTopup,
        "course" => course_order(&state, &user, &req).await?,
        _ => {
            return Err(InvalidInput {
                field: "kind",
                reason: "must be wallet_topup or course",
            }
            .into());
        }
    };
    if matches!(kind, OrderKind::WalletTopup) && req.amount.amount > settings.max_topup {
        return Err(InvalidInput {
            field: "amount",
            reason: "is larger than the largest top-up",
        }
        .into());
    }
    if !provider_enabled(&state, &req.provider) && req.provider != "wallet" {
        return Err(ApiError::Unprocessable(
            "provider_unavailable",
            format!("provider {} is not enabled", req.provider),
        ));
    }
    let new = NewOrder {
        user_id: user.id,
        kind,
        amount: req.amount,
        provider: req.provider.clone(),
        ttl: time::Duration::seconds(settings.order_ttl_s as i64),
    };
    let answer = idempotent(&state, &user, "POST /orders", &headers, &raw, move |conn| {
        Box::pin(async move {
            let order = orders::create(conn, new).await?;
            let body = serde_json::to_value(order_response(order)).map_err(anyhow::Error::from)?;
            Ok((StatusCode::CREATED, body))
        })
    })
    .await?;
    let mut answer = answer;
    if state.gateways.can_call(&req.provider) && answer.status == StatusCode::CREATED {
        // Outside the order's transaction: the order exists whatever the provider does; a
        // replay (same Idempotency-Key) resumes the same payment (provider-side idempotency).
        if let Some(id) = answer.body["id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            let (instructions, error) = match payment_instructions(&state, id).await {
                Ok(i) => (i, None),
                Err(e) => {
                    tracing::warn!(order = %id, error = %e, "starting the payment at the provider failed");
                    (Value::Null, Some("provider_unavailable"))
                }
            };
            answer.body["payment"]["instructions"] = instructions;
            if let Some(e) = error {
                answer.body["payment"]["error"] = e.into();
            }
        }
    }
    if !answer.replayed && req.provider == "sandbox" {
        if let (Some(id), Some(amount)) = (
            answer.body["id"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok()),
            answer.body["amount"]["amount"].as_i64(),
        ) {
            sandbox::payment(&state, id, amount, &settings.currency);
        }
    }
    Ok(answer)
}

/// A course order: the course must be published and paid, the amount its price, and the buyer
/// not already enrolled.
async fn course_order(
    state: &AppState,
    user: &AuthUser,
    req: &CreateOrder,
) -> Result<OrderKind, ApiError> {
    let course_id = req.course_id.ok_or(InvalidInput {
        field: "course_id",
        reason: "is required for course orders",
    })?;
    let mut conn = state.db.acquire().await?;
    let course = crate::courses::store::get_course(&mut conn, course_id)
        .await?
        .filter(|c| c.visibility.as_str() == "published")
        .ok_or(ApiError::NotFound("course"))?;
    if course.price.amount == 0 {
        return Err(ApiError::Unprocessable(
            "course_is_free",
            "this course is free: enroll directly".into(),
        ));
    }
    if course.price.amount != req.amount.amount
        || course.price.currency != req.amount.currency.as_str()
    {
        return Err(ApiError::Unprocessable(
            "amount_mismatch",
            format!(
                "the course costs {} {} (minor units)",
                course.price.amount, course.price.currency
            ),
        ));
    }
    let enrolled: Option<String> = sqlx::query_scalar!(
        "SELECT status FROM enrollments WHERE course_id = $1 AND user_id = $2",
        course_id,
        user.id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if enrolled.as_deref() == Some("active") {
        return Err(ApiError::Conflict(
            "already_enrolled",
            "you are already enrolled in this course".into(),
        ));
    }
    Ok(OrderKind::Course {
        course_id,
        payee_id: course.owner_id,
        platform_fee_bps: state.settings.payments.platform_fee_bps,
    })
}

fn provider_enabled(state: &AppState, provider: &str) -> bool {
    let p = &state.settings.payments;
    match provider {
        "sandbox" => p.sandbox.enabled,
        "stripe" => p.stripe.enabled,
        "alipay" => p.alipay.enabled,
        "wechatpay" => p.wechatpay.enabled,
        _ => false,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct OrderListParams {
    /// Admins and ops: another user's orders.
    pub user_id: Option<Uuid>,
    pub status: Option<String>,
    pub kind: Option<String>,
    pub cursor: Option<Uuid>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    pub items: Vec<OrderResponse>,
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(get, path = "/orders", tag = "payments", params(OrderListParams),
    security(("bearer" = [])),
    responses((status = 200, body = OrderList), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn list_orders(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<OrderListParams>,
) -> Result<Json<OrderList>, ApiError> {
    let limit = PageLimit::parse(q.limit)?.get() as i64;
    let user_id = if is_staff(&user) {
        q.user_id
    } else {
        Some(user.id)
    };
    let mut conn = state.db.acquire().await?;
    let items = orders::list(
        &mut conn,
        &orders::ListFilter {
            user_id,
            status: q.status,
            kind: q.kind,
            before: q.cursor,
            limit: limit + 1,
        },
    )
    .await?;
    let (items, next_cursor) = page(items, limit, |o| o.id);
    Ok(Json(OrderList {
        items: items.into_iter().map(order_response).collect(),
        next_cursor,
    }))
}

fn page<T>(mut items: Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> (Vec<T>, Option<Uuid>) {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next = if more { items.last().map(id) } else { None };
    (items, next)
}

#[utoipa::path(get, path = "/orders/{id}", tag = "payments",
    params(("id" = Uuid, Path, description = "order id")), security(("bearer" = [])),
    responses((status = 200, body = OrderResponse), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<OrderResponse>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let order = orders::get(&mut conn, id)
        .await?
        .filter(|o| o.user_id == user.id || is_staff(&user))
        .ok_or(ApiError::NotFound("order"))?;
    Ok(Json(order_response(order)))
}

/// Start or resume an order's payment at its provider.
async fn payment_instructions(
    state: &AppState,
    id: Uuid,
) -> Result<Value, crate::payments::gateway::GatewayError> {
    let order = {
        let mut conn = state
            .db
            .acquire()
            .await
            .map_err(|e| crate::payments::gateway::GatewayError::Transport(e.to_string()))?;
        orders::get(&mut conn, id)
            .await
            .map_err(|e| crate::payments::gateway::GatewayError::Transport(e.to_string()))?
    };
    match order {
        Some(o) if o.status == "pending" => {
            crate::payments::remote::start_payment(&state.db, &state.gateways, &o).await
        }
        _ => Ok(Value::Null),
    }
}

/// Ask the provider again for what the payer needs (after `payment.error` in the order's
/// answer, or to resume a payment on another device). Only for the order's owner, while it is
/// pending, and for providers with API credentials (409 `provider_not_callable` otherwise).
#[utoipa::path(post, path = "/orders/{id}/payment", tag = "payments",
    params(("id" = Uuid, Path, description = "order id")), security(("bearer" = [])),
    responses((status = 200, body = PaymentInstructions), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
async fn start_order_payment(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<PaymentInstructions>, ApiError> {
    let order = orders::get(&mut *state.db.acquire().await?, id)
        .await?
        .filter(|o| o.user_id == user.id)
        .ok_or(ApiError::NotFound("order"))?;
    if order.status != "pending" {
        return Err(ApiError::Conflict(
            "order_not_payable",
            format!("the order is {}", order.status),
        ));
    }
    if !state.gateways.can_call(&order.provider) {
        return Err(ApiError::Conflict(
            "provider_not_callable",
            format!("provider {} is paid without a call from us", order.provider),
        ));
    }
    let instructions = crate::payments::remote::start_payment(&state.db, &state.gateways, &order)
        .await
        .map_err(|e| {
            tracing::warn!(order = %id, error = %e, "starting the payment at the provider failed");
            ApiError::Unavailable("payment provider")
        })?;
    Ok(Json(PaymentInstructions {
        provider: order.provider.clone(),
        reference: order.id.simple().to_string(),
        instructions: Some(instructions),
        error: None,
    }))
}

// ------------------------------------------------------------------------------------------
// Wallet

#[derive(Debug, Serialize, ToSchema)]
pub struct Wallet {
    /// Settled balance.
    pub balance: Money,
    /// Held by pending transfers (e.g. refunds in flight).
    pub held: Money,
    /// What can be spent: balance - held.
    pub available: Money,
}

#[utoipa::path(get, path = "/wallet", tag = "payments", security(("bearer" = [])),
    responses((status = 200, body = Wallet), (status = 401, body = Problem)))]
async fn get_wallet(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Wallet>, ApiError> {
    let currency = Currency::try_from(state.settings.payments.currency.clone())?;
    let mut conn = state.db.acquire().await?;
    let account = ledger::account(
        &mut conn,
        &ledger::AccountRef::UserWallet(user.id),
        &currency,
    )
    .await?;
    let b = ledger::balance(&mut conn, account).await?;
    Ok(Json(Wallet {
        balance: Money::new(b.posted, currency.clone()),
        held: Money::new(b.held, currency.clone()),
        available: Money::new(b.available(), currency),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct TransactionParams {
    /// Transfer kind: topup, purchase, refund, refund_settle, reversal, adjustment, payout,
    /// payout_settle.
    pub kind: Option<String>,
    /// pending, posted, voided.
    pub state: Option<String>,
    pub order_id: Option<Uuid>,
    /// Admin view only: the account owner.
    pub user_id: Option<Uuid>,
    /// Admin view only: account kind (user_wallet, teacher_earnings, teacher_receivable,
    /// platform_revenue, ...).
    pub account_kind: Option<String>,
    /// `csv` for a CSV export of the page.
    pub format: Option<String>,
    pub cursor: Option<Uuid>,
    pub limit: Option<i64>,
}

/// One leg of a transfer, as seen from one account.
#[derive(Debug, Serialize, ToSchema)]
pub struct Transaction {
    pub id: Uuid,
    pub transfer_id: Uuid,
    pub account_id: Uuid,
    pub account_kind: String,
    pub owner_id: Option<Uuid>,
    pub provider: Option<String>,
    pub kind: String,
    pub state: String,
    /// Signed: positive into the account, negative out of it.
    pub amount: Money,
    pub order_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub reverses: Option<Uuid>,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionList {
    pub items: Vec<Transaction>,
    pub next_cursor: Option<Uuid>,
}

/// Legs of `accounts` (all accounts when `None`) matching the filters, newest first.
async fn transactions(
    conn: &mut PgConnection,
    q: &TransactionParams,
    accounts: Option<&[Uuid]>,
) -> Result<(Vec<Transaction>, Option<Uuid>), ApiError> {
    let limit = PageLimit::parse(q.limit)?.get() as i64;
    let rows = sqlx::query!(
        r#"SELECT l.id, l.transfer_id, l.account_id, l.amount, a.kind AS account_kind, a.owner_id,
                  a.provider, t.kind, t.state, t.currency, t.order_id, t.refund_id, t.reverses,
                  t.description, t.created_at
             FROM ledger_legs l
             JOIN ledger_transfers t ON t.id = l.transfer_id
             JOIN ledger_accounts a ON a.id = l.account_id
            WHERE ($1::uuid[] IS NULL OR l.account_id = ANY($1))
              AND ($2::text IS NULL OR t.kind = $2) AND ($3::text IS NULL OR t.state = $3)
              AND ($4::uuid IS NULL OR t.order_id = $4) AND ($5::uuid IS NULL OR a.owner_id = $5)
              AND ($6::text IS NULL OR a.kind = $6) AND ($7::uuid IS NULL OR l.id < $7)
            ORDER BY l.id DESC LIMIT $8"#,
        accounts,
        q.kind,
        q.state,
        q.order_id,
        q.user_id,
        q.account_kind,
        q.cursor,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    let items = rows
        .into_iter()
        .map(|r| Transaction {
            id: r.id,
            transfer_id: r.transfer_id,
            account_id: r.account_id,
            account_kind: r.account_kind,
            owner_id: r.owner_id,
            provider: r.provider,
            kind: r.kind,
            state: r.state,
            amount: Money::new(r.amount, Currency::from_db(r.currency)),
            order_id: r.order_id,
            refund_id: r.refund_id,
            reverses: r.reverses,
            description: r.description,
            created_at: r.created_at,
        })
        .collect();
    Ok(page(items, limit, |t: &Transaction| t.id))
}

fn transactions_response(
    items: Vec<Transaction>,
    next_cursor: Option<Uuid>,
    csv: bool,
) -> Response {
    if !csv {
        return Json(TransactionList { items, next_cursor }).into_response();
    }
    // `account_kind` last, so the columns before it keep their places: the earnings export
    // mixes the earnings and the receivable.
    let mut out = String::from(
        "id,created_at,kind,state,amount,currency,order_id,refund_id,description,account_kind\n",
    );
    for t in &items {
        let created = t
            .created_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let desc = t.description.replace('"', "\"\"");
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},\"{}\",{}\n",
            t.id,
            created,
            t.kind,
            t.state,
            t.amount.amount,
            t.amount.currency.as_str(),
            t.order_id.map(|u| u.to_string()).unwrap_or_default(),
            t.refund_id.map(|u| u.to_string()).unwrap_or_default(),
            desc,
            t.account_kind
        ));
    }
    let mut r = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response();
    if let Some(c) = next_cursor {
        if let Ok(v) = header::HeaderValue::from_str(&format!("<?cursor={c}>; rel=\"next\"")) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

#[utoipa::path(get, path = "/wallet/transactions", tag = "payments", params(TransactionParams),
    security(("bearer" = [])),
    responses((status = 200, body = TransactionList), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn wallet_transactions(
    State(state): State<AppState>,
    user: AuthUser,
    Query(mut q): Query<TransactionParams>,
) -> Result<Response, ApiError> {
    let currency = Currency::try_from(state.settings.payments.currency.clone())?;
    let mut conn = state.db.acquire().await?;
    let account = ledger::account(
        &mut conn,
        &ledger::AccountRef::UserWallet(user.id),
        &currency,
    )
    .await?;
    q.user_id = None;
    q.account_kind = None;
    let (items, next) = transactions(&mut conn, &q, Some(&[account])).await?;
    Ok(transactions_response(
        items,
        next,
        q.format.as_deref() == Some("csv"),
    ))
}

#[utoipa::path(get, path = "/admin/payments/transactions", tag = "payments", params(TransactionParams),
    security(("bearer" = ["admin", "ops"])),
    responses((status = 200, body = TransactionList), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn admin_transactions(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<TransactionParams>,
) -> Result<Response, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let mut conn = state.db.acquire().await?;
    let (items, next) = transactions(&mut conn, &q, None).await?;
    Ok(transactions_response(
        items,
        next,
        q.format.as_deref() == Some("csv"),
    ))
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
async fn admin_reconcile(
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

// ------------------------------------------------------------------------------------------
// Refunds

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefund {
    pub order_id: Uuid,
    /// Defaults to everything not yet refunded.
    pub amount: Option<Money>,
    /// `original` (default) or `wallet`.
    #[serde(default = "default_destination")]
    pub destination: Destination,
    #[serde(default)]
    pub reason: String,
}

fn default_destination() -> Destination {
    Destination::Original
}

#[utoipa::path(post, path = "/refunds", tag = "payments", request_body = CreateRefund,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first answer for the same key and body")),
    security(("bearer" = ["admin", "ops"])),
    responses((status = 201, body = Refund), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 422, body = Problem)))]
async fn create_refund(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Answer, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let (req, raw): (CreateRefund, Value) = parse_body(&body)?;
    if let Some(m) = &req.amount {
        crate::payments::positive(m, "amount")?;
    }
    let amount = req.amount.as_ref().map(|m| m.amount);
    let currency = req.amount.as_ref().map(|m| m.currency.clone());
    let new = NewRefund {
        order_id: req.order_id,
        amount,
        destination: req.destination,
        reason: req.reason,
        requested_by: user.id,
        hold_ttl: time::Duration::seconds(state.settings.payments.refund_hold_s as i64),
    };
    let answer = idempotent(
        &state,
        &user,
        "POST /refunds",
        &headers,
        &raw,
        move |conn| {
            Box::pin(async move {
                if let Some(c) = currency {
                    let order = orders::get(conn, new.order_id)
                        .await?
                        .ok_or(ApiError::NotFound("order"))?;
                    if order.currency() != &c {
                        return Err(InvalidInput {
                            field: "amount.currency",
                            reason: "must be the order's currency",
                        }
                        .into());
                    }
                }
                let refund = refunds::create(conn, new).await?;
                let body = serde_json::to_value(refund).map_err(anyhow::Error::from)?;
                Ok((StatusCode::CREATED, body))
            })
        },
    )
    .await?;
    let mut answer = answer;
    if !answer.replayed
        && answer.body["status"] == "pending"
        && answer.body["provider"]
            .as_str()
            .is_some_and(|p| state.gateways.can_call(p))
    {
        if let Some(id) = answer.body["id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            // After the commit: the refund and its hold exist whatever the provider answers; a
            // final answer is applied now, anything else is left to reconciliation.
            crate::payments::remote::submit_refund(
                &state.db,
                &state.gateways,
                &state.settings.payments,
                id,
            )
            .await?;
            if let Some(now) = refunds::get(&mut *state.db.acquire().await?, id).await? {
                answer.body = serde_json::to_value(now).map_err(anyhow::Error::from)?;
            }
        }
    }
    if !answer.replayed
        && answer.body["provider"] == "sandbox"
        && answer.body["status"] == "pending"
    {
        if let Some(id) = answer.body["id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            sandbox::refund(&state, id);
        }
    }
    Ok(answer)
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct RefundListParams {
    /// Admins and ops: another user's refunds.
    pub user_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    pub status: Option<String>,
    pub cursor: Option<Uuid>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundList {
    pub items: Vec<Refund>,
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(get, path = "/refunds", tag = "payments", params(RefundListParams),
    security(("bearer" = [])),
    responses((status = 200, body = RefundList), (status = 401, body = Problem)))]
async fn list_refunds(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<RefundListParams>,
) -> Result<Json<RefundList>, ApiError> {
    let limit = PageLimit::parse(q.limit)?.get() as i64;
    let user_id = if is_staff(&user) {
        q.user_id
    } else {
        Some(user.id)
    };
    let mut conn = state.db.acquire().await?;
    let items = refunds::list(
        &mut conn,
        user_id,
        q.order_id,
        q.status,
        q.cursor,
        limit + 1,
    )
    .await?;
    let (items, next_cursor) = page(items, limit, |r| r.id);
    Ok(Json(RefundList { items, next_cursor }))
}

#[utoipa::path(get, path = "/refunds/{id}", tag = "payments",
    params(("id" = Uuid, Path, description = "refund id")), security(("bearer" = [])),
    responses((status = 200, body = Refund), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_refund(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Refund>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let r = refunds::get(&mut conn, id)
        .await?
        .filter(|r| r.user_id == user.id || is_staff(&user))
        .ok_or(ApiError::NotFound("refund"))?;
    Ok(Json(r))
}

// ------------------------------------------------------------------------------------------
// Earnings and payouts

/// The caller's earnings as a teacher: settled, held (payout requests and refunds in flight),
/// available to withdraw, and paid out (approved or sent).
#[utoipa::path(get, path = "/earnings", tag = "payments",
    security(("bearer" = ["teacher"])),
    responses((status = 200, body = Earnings), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn get_earnings(
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
async fn earnings_transactions(
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
    let (items, next) = transactions(&mut conn, &q, Some(&[earnings, receivable])).await?;
    Ok(transactions_response(
        items,
        next,
        q.format.as_deref() == Some("csv"),
    ))
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
async fn create_payout(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Bytes,
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
async fn list_payouts(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<PayoutListParams>,
) -> Result<Json<PayoutList>, ApiError> {
    user.require_any(&[Role::Teacher, Role::Admin, Role::Ops])?;
    let limit = PageLimit::parse(q.limit)?.get() as i64;
    let teacher = if is_staff(&user) {
        q.teacher_id
    } else {
        Some(user.id)
    };
    let mut conn = state.db.acquire().await?;
    let items = payouts::list(&mut conn, teacher, q.status.as_deref(), q.cursor, limit + 1).await?;
    let (items, next_cursor) = page(items, limit, |p| p.id);
    Ok(Json(PayoutList { items, next_cursor }))
}

#[utoipa::path(get, path = "/payouts/{id}", tag = "payments",
    params(("id" = Uuid, Path, description = "payout id")),
    security(("bearer" = ["teacher", "admin", "ops"])),
    responses((status = 200, body = Payout), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn get_payout(
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
async fn payout_action<F>(
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
async fn cancel_payout(
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
async fn approve_payout(
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
async fn reject_payout(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
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
async fn pay_payout(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
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

// ------------------------------------------------------------------------------------------
// Admin: provider events

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

/// A verified provider callback as stored (one per provider event id).
#[derive(Debug, Serialize, ToSchema)]
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
async fn admin_events(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<EventListParams>,
) -> Result<Json<ProviderEventList>, ApiError> {
    user.require_any(&[Role::Admin, Role::Ops])?;
    let limit = PageLimit::parse(q.limit)?.get() as i64;
    let mut conn = state.db.acquire().await?;
    let rows = sqlx::query!(
        r#"SELECT id, provider, event_id, event_type, order_id, refund_id, outcome, payload,
                  received_at
             FROM payment_events
            WHERE ($1::text IS NULL OR provider = $1) AND ($2::text IS NULL OR outcome = $2)
              AND ($3::uuid IS NULL OR order_id = $3) AND ($4::uuid IS NULL OR refund_id = $4)
              AND ($5::uuid IS NULL OR id < $5)
            ORDER BY id DESC LIMIT $6"#,
        q.provider,
        q.outcome,
        q.order_id,
        q.refund_id,
        q.cursor,
        limit + 1
    )
    .fetch_all(&mut *conn)
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
    let (items, next_cursor) = page(items, limit, |e: &ProviderEvent| e.id);
    Ok(Json(ProviderEventList { items, next_cursor }))
}

// ------------------------------------------------------------------------------------------
// Provider callbacks

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or(VerifyError::Missing(name))
}

fn refuse(e: VerifyError) -> ApiError {
    tracing::warn!(error = %e, "provider callback refused");
    ApiError::BadRequestCode("invalid_callback", e.to_string())
}

/// Verify a callback as its provider documents; `None` for an unknown or disabled provider.
fn verify(
    state: &AppState,
    provider: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Result<providers::VerifiedEvent, VerifyError>> {
    let p = &state.settings.payments;
    let tol = p.webhook_tolerance_s;
    Some(match provider {
        "sandbox" if p.sandbox.enabled => header_str(headers, "sandbox-signature").and_then(|h| {
            providers::verify_stripe_signature(
                p.sandbox.secret.expose().as_bytes(),
                h,
                body,
                now_unix(),
                tol,
            )?;
            providers::parse_stripe_event(body)
        }),
        "stripe" if p.stripe.enabled => header_str(headers, "stripe-signature").and_then(|h| {
            providers::verify_stripe_signature(
                p.stripe.webhook_secret.expose().as_bytes(),
                h,
                body,
                now_unix(),
                tol,
            )?;
            providers::parse_stripe_event(body)
        }),
        "alipay" if p.alipay.enabled => providers::decode_public_key(&p.alipay.public_key)
            .and_then(|key| {
                let params: Vec<(String, String)> =
                    url::form_urlencoded::parse(body).into_owned().collect();
                providers::verify_alipay(&key, &params)
            }),
        "wechatpay" if p.wechatpay.enabled => (|| {
            let key = providers::decode_public_key(&p.wechatpay.platform_public_key)?;
            let h = providers::WechatHeaders {
                timestamp: header_str(headers, "wechatpay-timestamp")?.to_string(),
                nonce: header_str(headers, "wechatpay-nonce")?.to_string(),
                signature: header_str(headers, "wechatpay-signature")?.to_string(),
                serial: header_str(headers, "wechatpay-serial")?.to_string(),
            };
            providers::verify_wechat(
                &[(p.wechatpay.platform_serial.clone(), key)],
                p.wechatpay.apiv3_key.expose().as_bytes(),
                &h,
                body,
                now_unix(),
                tol,
            )
        })(),
        _ => return None,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    pub received: bool,
    /// applied, duplicate, already_applied, ignored, or why it was not applied.
    pub outcome: String,
}

/// A provider callback. Verified by signature; answered 200 (Alipay: `success`, WeChat: 204)
/// once recorded, even when it is a duplicate or does not match the order (then not applied).
#[utoipa::path(post, path = "/payments/webhooks/{provider}", tag = "payments",
    request_body(content = String, description = "the provider's raw callback (JSON or form)"),
    params(("provider" = String, Path, description = "sandbox, stripe, alipay or wechatpay")),
    security(()),
    responses((status = 200, body = WebhookAck), (status = 204), (status = 400, body = Problem),
              (status = 404, body = Problem)))]
async fn webhook(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let event = match verify(&state, &provider, &headers, &body) {
        None => return Err(ApiError::NotFound("payment provider")),
        Some(Err(e)) => return Err(refuse(e)),
        Some(Ok(ev)) => ev,
    };
    let outcome = events::apply(&state.db, &state.settings.payments, &provider, &event).await?;
    if let (
        events::Outcome::Applied,
        crate::payments::providers::EventKind::PaymentSucceeded { order_ref, .. },
    ) = (&outcome, &event.kind)
    {
        state.notifier.payment_confirmed(order_ref);
    }
    Ok(match provider.as_str() {
        "alipay" => ([(header::CONTENT_TYPE, "text/plain")], "success").into_response(),
        "wechatpay" => StatusCode::NO_CONTENT.into_response(),
        _ => Json(WebhookAck {
            received: true,
            outcome: outcome.as_str().to_string(),
        })
        .into_response(),
    })
}

/// The sandbox provider: after a short delay it calls our webhook like a real provider would,
/// signed with the sandbox secret, reporting `payments.sandbox.outcome`.
mod sandbox {
    use super::*;

    static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(reqwest::Client::new);

    fn send(state: &AppState, event: Value) {
        let s = &state.settings.payments.sandbox;
        let secret = s.secret.expose().as_bytes().to_vec();
        let delay = std::time::Duration::from_millis(s.callback_delay_ms);
        let url = state
            .settings
            .http
            .public_url
            .join("api/v1/payments/webhooks/sandbox")
            .map(|u| u.to_string());
        tokio::spawn(async move {
            let Ok(url) = url else { return };
            tokio::time::sleep(delay).await;
            let body = serde_json::to_vec(&event).unwrap_or_default();
            let sig = providers::stripe_signature_header(&secret, now_unix(), &body);
            let r = CLIENT
                .post(url)
                .header("content-type", "application/json")
                .header("sandbox-signature", sig)
                .body(body)
                .send()
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "sandbox callback failed");
            }
        });
    }

    pub fn payment(state: &AppState, order_id: Uuid, amount: i64, currency: &str) {
        let ty = match state.settings.payments.sandbox.outcome.as_str() {
            "succeed" => "payment_intent.succeeded",
            "fail" => "payment_intent.canceled",
            _ => return,
        };
        send(
            state,
            json!({
                "id": format!("evt_{}", Uuid::now_v7().simple()),
                "type": ty,
                "data": {"object": {
                    "id": format!("pi_{}", order_id.simple()),
                    "amount": amount,
                    "currency": currency.to_ascii_lowercase(),
                    "metadata": {"order_id": order_id.simple().to_string()},
                }},
            }),
        );
    }

    pub fn refund(state: &AppState, refund_id: Uuid) {
        let status = match state.settings.payments.sandbox.outcome.as_str() {
            "succeed" => "succeeded",
            "fail" => "failed",
            _ => return,
        };
        send(
            state,
            json!({
                "id": format!("evt_{}", Uuid::now_v7().simple()),
                "type": "refund.updated",
                "data": {"object": {
                    "id": format!("re_{}", refund_id.simple()),
                    "status": status,
                    "metadata": {"refund_id": refund_id.to_string()},
                }},
            }),
        );
    }
}
