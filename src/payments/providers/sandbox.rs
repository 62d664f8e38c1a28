//! The sandbox provider: after a short delay it calls our webhook like a real provider would,
//! signed with the sandbox secret (Stripe's scheme, header `Sandbox-Signature`), reporting
//! `payments.sandbox.outcome`; and the verification of those callbacks.

use std::sync::LazyLock;

use serde_json::{Value, json};
use time::OffsetDateTime;
use url::Url;
use uuid::Uuid;

use super::{HeaderLookup, VerifiedEvent, VerifyError, stripe};
use crate::config::SandboxSettings;

/// Verify a sandbox callback: Stripe's scheme with the sandbox secret, header
/// `Sandbox-Signature`.
pub fn verify_callback(
    settings: &SandboxSettings,
    header: HeaderLookup<'_, '_>,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<VerifiedEvent, VerifyError> {
    let h = header("sandbox-signature")?;
    stripe::verify_stripe_signature(settings.secret.expose().as_bytes(), h, body, now, tolerance)?;
    stripe::parse_stripe_event(body)
}

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(reqwest::Client::new);

fn send(settings: &SandboxSettings, public_url: &Url, event: Value) {
    let secret = settings.secret.expose().as_bytes().to_vec();
    let delay = std::time::Duration::from_millis(settings.callback_delay_ms);
    let url = public_url
        .join("api/v1/payments/webhooks/sandbox")
        .map(|u| u.to_string());
    tokio::spawn(async move {
        let Ok(url) = url else { return };
        tokio::time::sleep(delay).await;
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let sig = stripe::stripe_signature_header(&secret, now, &body);
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

/// Report the payment of a new order (unless the outcome is `none`).
pub fn payment(
    settings: &SandboxSettings,
    public_url: &Url,
    order_id: Uuid,
    amount: i64,
    currency: &str,
) {
    let ty = match settings.outcome.as_str() {
        "succeed" => "payment_intent.succeeded",
        "fail" => "payment_intent.canceled",
        _ => return,
    };
    send(
        settings,
        public_url,
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

/// Report the outcome of a new refund (unless the outcome is `none`).
pub fn refund(settings: &SandboxSettings, public_url: &Url, refund_id: Uuid) {
    let status = match settings.outcome.as_str() {
        "succeed" => "succeeded",
        "fail" => "failed",
        _ => return,
    };
    send(
        settings,
        public_url,
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
