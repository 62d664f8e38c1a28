//! `/orders`: create (with the payment's start at its provider), list, get, and resume the
//! payment.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Answer, idempotent, is_staff, parse_body};
use crate::{
    domain::{Page, PageLimit},
    http::{
        error::{ApiError, Problem},
        extract::{AuthUser, Json, Path, Query},
    },
    payments::status::OrderStatus,
    payments::{
        Money,
        orders::{self, NewOrder, Order, OrderKind},
        providers::{Provider, sandbox},
    },
    state::AppState,
    users::InvalidInput,
};

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
pub(super) async fn create_order(
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
        "course" => {
            let course_id = req.course_id.ok_or(InvalidInput {
                field: "course_id",
                reason: "is required for course orders",
            })?;
            let mut conn = state.db.acquire().await?;
            orders::course_order(
                &mut conn,
                course_id,
                user.id,
                &req.amount,
                settings.platform_fee_bps,
            )
            .await?
        }
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
    let provider = Provider::parse(&req.provider);
    if !provider.is_some_and(|p| p.enabled(settings)) && req.provider != "wallet" {
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
    if !answer.replayed
        && provider == Some(Provider::Sandbox)
        && let (Some(id), Some(amount)) = (
            answer.body["id"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok()),
            answer.body["amount"]["amount"].as_i64(),
        )
    {
        sandbox::payment(
            &settings.sandbox,
            &state.settings.http.default_public_url(),
            id,
            amount,
            &settings.currency,
        );
    }
    Ok(answer)
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
pub(super) async fn list_orders(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<OrderListParams>,
) -> Result<Json<OrderList>, ApiError> {
    let limit = PageLimit::parse(q.limit)?;
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
            limit: limit.fetch(),
        },
    )
    .await?;
    let Page { items, next_cursor } = Page::cut(items, limit, |o| o.id);
    Ok(Json(OrderList {
        items: items.into_iter().map(order_response).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/orders/{id}", tag = "payments",
    params(("id" = Uuid, Path, description = "order id")), security(("bearer" = [])),
    responses((status = 200, body = OrderResponse), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub(super) async fn get_order(
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
pub(super) async fn payment_instructions(
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
        Some(o) if o.status == OrderStatus::Pending => {
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
pub(super) async fn start_order_payment(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<PaymentInstructions>, ApiError> {
    let order = orders::get(&mut *state.db.acquire().await?, id)
        .await?
        .filter(|o| o.user_id == user.id)
        .ok_or(ApiError::NotFound("order"))?;
    if order.status != OrderStatus::Pending {
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
