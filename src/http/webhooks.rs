//! `/api/v1/admin/webhooks/*` (admins only): subscriptions of integrators' URLs to events, their
//! deliveries with every try, replays and test pings (docs/webhooks.md).

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    error::{ApiError, Problem},
    extract::{AdminOnly, AuthUser, Authorized, Client, Json, Path, Query},
};
use crate::{
    audit::{self, Event},
    domain::{InvalidInput, PageLimit},
    state::AppState,
    webhooks::{
        EventType,
        store::{self, Change, Delivery, DeliveryDetail, Endpoint, EndpointUrl},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(send_test))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(replay_delivery))
}

/// Every change to an endpoint goes to the audit log, in the change's transaction.
async fn audited(
    tx: &mut sqlx::PgConnection,
    admin: &AuthUser,
    client: &Client,
    action: &'static str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    audit::record(
        tx,
        Event {
            action,
            actor_id: Some(admin.id),
            subject_user_id: None,
            ip: client.0.ip.as_deref(),
            detail,
        },
    )
    .await?;
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct WebhookEndpointList {
    items: Vec<Endpoint>,
    /// Every event type an endpoint can subscribe to.
    event_types: Vec<EventType>,
}

/// Every webhook endpoint, with its pending and failed deliveries.
#[utoipa::path(get, path = "/admin/webhooks", tag = "webhooks", security(("bearer" = ["admin"])),
    responses((status = 200, body = WebhookEndpointList), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_endpoints(
    Authorized(_admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
) -> Result<Json<WebhookEndpointList>, ApiError> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(WebhookEndpointList {
        items: store::list(&mut conn).await?,
        event_types: EventType::ALL.to_vec(),
    }))
}

fn description(d: Option<String>) -> Result<Option<String>, InvalidInput> {
    match d {
        Some(d) if d.chars().count() > 500 => Err(InvalidInput {
            field: "description",
            reason: "must be at most 500 characters",
        }),
        d => Ok(d.map(|d| d.trim().to_owned())),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewWebhookEndpoint {
    /// Where to POST events: an absolute http(s) URL without a user name or password.
    #[serde(default)]
    url: String,
    /// What it is for (shown to admins), ≤ 500 characters.
    #[serde(default)]
    description: Option<String>,
    /// The event types to send, at least one.
    #[serde(default)]
    events: Vec<EventType>,
}

/// An endpoint and its signing secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct WebhookEndpointWithSecret {
    #[serde(flatten)]
    endpoint: Endpoint,
    /// `whsec_…`: the key of the HMAC-SHA256 signatures (Standard Webhooks). Shown only here
    /// and when rotated; keep it with the receiver.
    secret: String,
}

/// Subscribe a URL to events. Answers with the signing secret, shown this once.
#[utoipa::path(post, path = "/admin/webhooks", tag = "webhooks", security(("bearer" = ["admin"])),
    request_body = NewWebhookEndpoint,
    responses((status = 201, body = WebhookEndpointWithSecret), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_endpoint(
    Authorized(admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<NewWebhookEndpoint>,
) -> Result<(StatusCode, Json<WebhookEndpointWithSecret>), ApiError> {
    let url = EndpointUrl::parse_allowed(&req.url, &targets(&state))?;
    let events = store::event_list(&req.events)?;
    let description = description(req.description)?.unwrap_or_default();
    let mut tx = state.db.begin().await?;
    let (id, secret) = store::create(&mut tx, &url, &description, &events, admin.id).await?;
    audited(
        &mut tx,
        &admin,
        &client,
        "webhook.created",
        json!({"endpoint_id": id, "url": url.as_str(), "events": events}),
    )
    .await?;
    let endpoint = store::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookEndpointWithSecret { endpoint, secret }),
    ))
}

/// One endpoint.
#[utoipa::path(get, path = "/admin/webhooks/{id}", tag = "webhooks", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Endpoint), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn get_endpoint(
    Authorized(_admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<Endpoint>, ApiError> {
    let mut conn = state.db.acquire().await?;
    store::get(&mut conn, id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("webhook endpoint"))
}

#[derive(Deserialize, ToSchema)]
pub struct WebhookEndpointChange {
    url: Option<String>,
    description: Option<String>,
    events: Option<Vec<EventType>>,
    /// Off: nothing is sent (deliveries wait); on again: they go out.
    enabled: Option<bool>,
}

/// Change an endpoint's URL, description, events or whether it is enabled.
#[utoipa::path(patch, path = "/admin/webhooks/{id}", tag = "webhooks", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)), request_body = WebhookEndpointChange,
    responses((status = 200, body = Endpoint), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_endpoint(
    Authorized(admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<Uuid>,
    Json(req): Json<WebhookEndpointChange>,
) -> Result<Json<Endpoint>, ApiError> {
    let change = Change {
        url: req
            .url
            .as_deref()
            .map(|u| EndpointUrl::parse_allowed(u, &targets(&state)))
            .transpose()?,
        description: description(req.description)?,
        events: req.events.as_deref().map(store::event_list).transpose()?,
        enabled: req.enabled,
    };
    let mut tx = state.db.begin().await?;
    if !store::update(&mut tx, id, &change).await? {
        return Err(ApiError::NotFound("webhook endpoint"));
    }
    audited(
        &mut tx,
        &admin,
        &client,
        "webhook.updated",
        json!({"endpoint_id": id, "url": change.url.as_ref().map(EndpointUrl::as_str),
                "events": change.events, "enabled": change.enabled}),
    )
    .await?;
    let endpoint = store::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    tx.commit().await?;
    Ok(Json(endpoint))
}

/// Delete an endpoint with its deliveries.
#[utoipa::path(delete, path = "/admin/webhooks/{id}", tag = "webhooks", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn delete_endpoint(
    Authorized(admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    if !store::delete(&mut tx, id).await? {
        return Err(ApiError::NotFound("webhook endpoint"));
    }
    audited(
        &mut tx,
        &admin,
        &client,
        "webhook.deleted",
        json!({"endpoint_id": id}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct WebhookSecret {
    /// The new `whsec_…` secret, shown this once.
    secret: String,
    /// How long the previous secret keeps signing beside it (a second signature), seconds.
    previous_valid_s: u64,
}

/// A new signing secret. The previous one keeps signing beside it for
/// `webhooks.previous_secret_valid_s`, so the receiver can switch without losing an event.
#[utoipa::path(post, path = "/admin/webhooks/{id}/secret", tag = "webhooks", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookSecret), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn rotate_secret(
    Authorized(admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<Uuid>,
) -> Result<Json<WebhookSecret>, ApiError> {
    let overlap = state.settings.webhooks.previous_secret_valid_s;
    let mut tx = state.db.begin().await?;
    let secret = store::rotate_secret(&mut tx, id, overlap)
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    audited(
        &mut tx,
        &admin,
        &client,
        "webhook.secret_rotated",
        json!({"endpoint_id": id}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(WebhookSecret {
        secret,
        previous_valid_s: overlap,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct WebhookQueued {
    /// The delivery to follow (`GET /admin/webhooks/deliveries/{id}`).
    delivery_id: Uuid,
}

/// Send a `webhook.test` event to this endpoint now (whatever it subscribes to).
#[utoipa::path(post, path = "/admin/webhooks/{id}/test", tag = "webhooks", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 202, body = WebhookQueued), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn send_test(
    Authorized(admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<WebhookQueued>), ApiError> {
    let mut tx = state.db.begin().await?;
    if store::get(&mut tx, id).await?.is_none() {
        return Err(ApiError::NotFound("webhook endpoint"));
    }
    let delivery_id = store::send_test(&mut tx, id, admin.id).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(WebhookQueued { delivery_id })))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookDeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl WebhookDeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            WebhookDeliveryStatus::Pending => "pending",
            WebhookDeliveryStatus::Delivered => "delivered",
            WebhookDeliveryStatus::Failed => "failed",
        }
    }
}

#[derive(Deserialize, IntoParams)]
pub struct WebhookDeliveryQuery {
    /// Only deliveries in this state.
    #[param(inline)]
    status: Option<WebhookDeliveryStatus>,
    cursor: Option<Uuid>,
    /// 1–100 (default 20).
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookDeliveryPage {
    items: Vec<Delivery>,
    #[schema(required = true)]
    next_cursor: Option<Uuid>,
}

/// An endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/admin/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path), WebhookDeliveryQuery),
    responses((status = 200, body = WebhookDeliveryPage), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn list_deliveries(
    Authorized(_admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(q): Query<WebhookDeliveryQuery>,
) -> Result<Json<WebhookDeliveryPage>, ApiError> {
    let limit = PageLimit::parse(q.limit)?;
    let mut conn = state.db.acquire().await?;
    if store::get(&mut conn, id).await?.is_none() {
        return Err(ApiError::NotFound("webhook endpoint"));
    }
    let status = q.status.map(WebhookDeliveryStatus::as_str);
    let page = store::deliveries(&mut conn, id, status, q.cursor, limit).await?;
    Ok(Json(WebhookDeliveryPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One delivery: the event's data as sent and every try (status, error, time taken, the start
/// of the receiver's answer).
#[utoipa::path(get, path = "/admin/webhooks/deliveries/{id}", tag = "webhooks", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = DeliveryDetail), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn get_delivery(
    Authorized(_admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let mut conn = state.db.acquire().await?;
    store::delivery(&mut conn, id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("webhook delivery"))
}

/// Send a delivery again now (delivered, failed or waiting): the receiver sees the same
/// `webhook-id`, and retries run for `webhooks.give_up_after_s` from now.
#[utoipa::path(post, path = "/admin/webhooks/deliveries/{id}/replay", tag = "webhooks", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 202, body = WebhookQueued), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
async fn replay_delivery(
    Authorized(_admin, ..): Authorized<AdminOnly>,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<WebhookQueued>), ApiError> {
    let mut conn = state.db.acquire().await?;
    if !store::replay(&mut conn, id, state.settings.webhooks.give_up_after_s).await? {
        return Err(ApiError::NotFound("webhook delivery"));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(WebhookQueued { delivery_id: id }),
    ))
}

/// Where endpoints may point (src/webhooks/targets.rs).
fn targets(state: &AppState) -> crate::webhooks::targets::Targets {
    crate::webhooks::targets::Targets::new(state.settings.webhooks.allow_internal_networks.clone())
}
