//! `/payments/webhooks/{provider}`: provider callbacks, verified ([`Provider::verify_callback`]),
//! recorded and applied ([`events::apply`]), and answered the way each provider expects.

use crate::http::extract::RawBody;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{
    http::{
        error::{ApiError, Problem},
        extract::{Json, Path},
    },
    payments::{
        events,
        providers::{CallbackReply, EventKind, Provider, VerifyError},
    },
    state::AppState,
};

fn refuse(e: VerifyError) -> ApiError {
    tracing::warn!(error = %e, "provider callback refused");
    ApiError::BadRequestCode("invalid_callback", e.to_string())
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
pub(super) async fn webhook(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let settings = &state.settings.payments;
    let Some(parsed) = Provider::parse(&provider).filter(|p| p.enabled(settings)) else {
        return Err(ApiError::NotFound("payment provider"));
    };
    let header = |name: &'static str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let event = parsed
        .verify_callback(settings, &header, &body, now)
        .map_err(refuse)?;
    let outcome = events::apply(&state.db, &state.settings.payments, &provider, &event).await?;
    if let (events::Outcome::Applied, EventKind::PaymentSucceeded { order_ref, .. }) =
        (&outcome, &event.kind)
    {
        state.notifier.payment_confirmed(order_ref);
    }
    Ok(match parsed.callback_reply() {
        CallbackReply::Text(text) => ([(header::CONTENT_TYPE, "text/plain")], text).into_response(),
        CallbackReply::NoContent => StatusCode::NO_CONTENT.into_response(),
        CallbackReply::Ack => Json(WebhookAck {
            received: true,
            outcome: outcome.as_str().to_string(),
        })
        .into_response(),
    })
}
