//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, HMAC-SHA256 with the endpoint
//! secret over `"<t>.<raw body>"`, compared in constant time, `t` within the tolerance; events
//! are JSON (`payment_intent.*`, `refund.*`). Its outbound side is here too: the request forms,
//! the calls (bearer secret key, `Idempotency-Key`) and the reading of its answers, which
//! [`crate::payments::gateway::Gateways`] dispatches to.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{EventKind, HeaderLookup, VerifiedEvent, VerifyError, str_at};
use crate::{
    config::StripeSettings,
    payments::gateway::{
        GatewayError, OrderRef, RefundRef, RemotePayment, RemoteRefund, transport,
    },
};

/// Verify a Stripe callback (header `Stripe-Signature`).
pub fn verify_callback(
    settings: &StripeSettings,
    header: HeaderLookup<'_, '_>,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<VerifiedEvent, VerifyError> {
    let h = header("stripe-signature")?;
    verify_stripe_signature(
        settings.webhook_secret.expose().as_bytes(),
        h,
        body,
        now,
        tolerance,
    )?;
    parse_stripe_event(body)
}

/// The connected account events must name (empty: none).
pub fn expected_merchant(settings: &StripeSettings) -> String {
    settings.account.clone()
}

/// Compute a `Stripe-Signature` header value (used by the sandbox to call back, and by tests).
pub fn stripe_signature_header(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(stripe_mac(secret, t, body)))
}

fn stripe_mac(secret: &[u8], t: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Verify a Stripe-style signature header over the raw body.
pub fn verify_stripe_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.push(v.to_string()),
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Missing("timestamp in signature header"))?;
    if v1.is_empty() {
        return Err(VerifyError::Missing("v1 signature"));
    }
    let expected = stripe_mac(secret, t, body);
    let ok = v1.iter().any(|sig| {
        hex::decode(sig).is_ok_and(|s| s.len() == expected.len() && bool::from(s.ct_eq(&expected)))
    });
    if !ok {
        return Err(VerifyError::BadSignature);
    }
    // Checked after the signature, so the timestamp is known to be the signer's.
    if (now - t).abs() > tolerance_s {
        return Err(VerifyError::Stale);
    }
    Ok(())
}

/// Parse a verified Stripe-style event body.
pub fn parse_stripe_event(body: &[u8]) -> Result<VerifiedEvent, VerifyError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let event_id = str_at(&v, "/id")?;
    let event_type = str_at(&v, "/type")?;
    let obj = &v["data"]["object"];
    let kind = match event_type.as_str() {
        "payment_intent.succeeded" => EventKind::PaymentSucceeded {
            order_ref: str_at(obj, "/metadata/order_id")?,
            amount: obj["amount"]
                .as_i64()
                .ok_or_else(|| VerifyError::Malformed("amount".into()))?,
            currency: str_at(obj, "/currency")?.to_ascii_uppercase(),
            merchant: v["account"].as_str().map(str::to_string),
            provider_ref: str_at(obj, "/id")?,
        },
        // Only a cancelled PaymentIntent is final: after `payment_failed` (a declined card)
        // it returns to `requires_payment_method` and the payer may try another card.
        "payment_intent.canceled" => EventKind::PaymentFailed {
            order_ref: str_at(obj, "/metadata/order_id")?,
        },
        "refund.created" | "refund.updated" | "charge.refund.updated" => {
            let refund_ref = str_at(obj, "/metadata/refund_id")?;
            match obj["status"].as_str() {
                Some("succeeded") => EventKind::RefundSucceeded { refund_ref },
                Some("failed") | Some("canceled") => EventKind::RefundFailed {
                    refund_ref,
                    reason: obj["failure_reason"]
                        .as_str()
                        .unwrap_or("failed")
                        .to_string(),
                },
                _ => EventKind::Ignored,
            }
        }
        _ => EventKind::Ignored,
    };
    Ok(VerifiedEvent {
        event_id,
        event_type,
        kind,
        payload: v,
    })
}

// ---------------------------------------------------------------------------------------------
// Outbound (form-encoded requests, bearer secret key, JSON answers)

/// The form of `POST /v1/payment_intents`.
pub fn stripe_intent_form(order: &OrderRef) -> Vec<(String, String)> {
    vec![
        ("amount".into(), order.amount.to_string()),
        ("currency".into(), order.currency.to_ascii_lowercase()),
        ("payment_method_types[0]".into(), "card".into()),
        ("metadata[order_id]".into(), order.reference()),
    ]
}

/// The form of `POST /v1/refunds`.
pub fn stripe_refund_form(payment_intent: &str, refund: &RefundRef) -> Vec<(String, String)> {
    vec![
        ("payment_intent".into(), payment_intent.into()),
        ("amount".into(), refund.amount.to_string()),
        ("metadata[refund_id]".into(), refund.id.to_string()),
    ]
}

/// A PaymentIntent as a [`RemotePayment`].
pub fn stripe_payment_state(pi: &Value, account: &str) -> Result<RemotePayment, GatewayError> {
    let status = pi["status"]
        .as_str()
        .ok_or_else(|| GatewayError::Malformed("payment_intent.status".into()))?;
    Ok(match status {
        "succeeded" => RemotePayment::Paid {
            amount: pi["amount"]
                .as_i64()
                .ok_or_else(|| GatewayError::Malformed("payment_intent.amount".into()))?,
            currency: pi["currency"].as_str().unwrap_or("").to_ascii_uppercase(),
            // Asked with our own key: the merchant is the one configured.
            merchant: Some(account.to_string()),
            provider_ref: pi["id"].as_str().unwrap_or("").to_string(),
            raw: pi.clone(),
        },
        "canceled" => RemotePayment::Closed { raw: pi.clone() },
        _ => RemotePayment::Open,
    })
}

/// A Stripe Refund as a [`RemoteRefund`].
pub fn stripe_refund_state(r: &Value) -> Result<RemoteRefund, GatewayError> {
    let provider_ref = r["id"].as_str().map(str::to_string);
    Ok(match r["status"].as_str() {
        Some("succeeded") => RemoteRefund::Succeeded { provider_ref },
        Some("failed") | Some("canceled") => RemoteRefund::Failed {
            reason: r["failure_reason"].as_str().unwrap_or("failed").to_string(),
        },
        Some(_) => RemoteRefund::Pending { provider_ref },
        None => return Err(GatewayError::Malformed("refund.status".into())),
    })
}

/// The outbound client, built from `[payments.stripe]` when a secret key is set.
pub(crate) struct Stripe {
    pub(crate) api_base: String,
    pub(crate) secret_key: String,
    pub(crate) account: String,
}

pub(crate) async fn stripe_get(
    http: &reqwest::Client,
    s: &Stripe,
    path: &str,
) -> Result<Value, GatewayError> {
    let r = http
        .get(format!("{}{path}", s.api_base))
        .bearer_auth(&s.secret_key)
        .send()
        .await
        .map_err(transport)?;
    stripe_answer(r).await
}

pub(crate) async fn stripe_post(
    http: &reqwest::Client,
    s: &Stripe,
    path: &str,
    idempotency_key: &str,
    form: &[(String, String)],
) -> Result<Value, GatewayError> {
    let r = http
        .post(format!("{}{path}", s.api_base))
        .bearer_auth(&s.secret_key)
        .header("Idempotency-Key", idempotency_key)
        .form(form)
        .send()
        .await
        .map_err(transport)?;
    stripe_answer(r).await
}

async fn stripe_answer(r: reqwest::Response) -> Result<Value, GatewayError> {
    let status = r.status();
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 409 {
        // 409: an idempotent request still in flight at Stripe; 429: rate limited.
        return Err(GatewayError::Transport(format!("HTTP {status}")));
    }
    let v: Value = r.json().await.map_err(transport)?;
    if !status.is_success() {
        return Err(GatewayError::Refused {
            code: v["error"]["code"]
                .as_str()
                .or(v["error"]["type"].as_str())
                .unwrap_or("error")
                .to_string(),
            message: v["error"]["message"].as_str().unwrap_or("").to_string(),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stripe_states() {
        let pi = json!({"id": "pi_1", "status": "succeeded", "amount": 900, "currency": "cny"});
        assert!(matches!(
            stripe_payment_state(&pi, "").unwrap(),
            RemotePayment::Paid { amount: 900, ref currency, .. } if currency == "CNY"
        ));
        assert_eq!(
            stripe_payment_state(&json!({"status": "requires_payment_method"}), "").unwrap(),
            RemotePayment::Open
        );
        assert!(matches!(
            stripe_refund_state(&json!({"id": "re_1", "status": "pending"})).unwrap(),
            RemoteRefund::Pending { .. }
        ));
    }
}
