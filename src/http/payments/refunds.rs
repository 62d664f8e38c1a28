//! `/refunds`: create (admins and ops; submitted to the provider after the commit), list, get.

use crate::http::extract::RawBody;
use axum::{
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
    payments::{
        Money, orders,
        providers::{Provider, sandbox},
        refunds::{self, Destination, NewRefund, Refund},
        status::RefundStatus,
    },
    state::AppState,
    users::{InvalidInput, Role},
};

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
pub(super) async fn create_refund(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    RawBody(body): RawBody,
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
    // A refund just created (not a replay) and still pending: its provider may be told now.
    let pending = |body: &Value| {
        body["status"]
            .as_str()
            .and_then(|s| s.parse::<RefundStatus>().ok())
            == Some(RefundStatus::Pending)
    };
    let id = |body: &Value| body["id"].as_str().and_then(|s| Uuid::parse_str(s).ok());
    if !answer.replayed
        && pending(&answer.body)
        && answer.body["provider"]
            .as_str()
            .is_some_and(|p| state.gateways.can_call(p))
        && let Some(id) = id(&answer.body)
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
    if !answer.replayed
        && answer.body["provider"].as_str().and_then(Provider::parse) == Some(Provider::Sandbox)
        && pending(&answer.body)
        && let Some(id) = id(&answer.body)
    {
        sandbox::refund(
            &state.settings.payments.sandbox,
            &state.settings.http.default_public_url(),
            id,
        );
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
pub(super) async fn list_refunds(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<RefundListParams>,
) -> Result<Json<RefundList>, ApiError> {
    let limit = PageLimit::parse(q.limit)?;
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
        limit.fetch(),
    )
    .await?;
    let Page { items, next_cursor } = Page::cut(items, limit, |r| r.id);
    Ok(Json(RefundList { items, next_cursor }))
}

#[utoipa::path(get, path = "/refunds/{id}", tag = "payments",
    params(("id" = Uuid, Path, description = "refund id")), security(("bearer" = [])),
    responses((status = 200, body = Refund), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub(super) async fn get_refund(
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
