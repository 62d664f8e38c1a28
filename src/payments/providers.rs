//! Provider callbacks, verified as each provider documents it. Sans-IO: functions take the
//! headers/body/params, the keys and the current time, and return a [`VerifiedEvent`] or why
//! not. Nothing here touches the database; [`super::events`] applies what these accept.
//!
//! - Stripe style (also the built-in `sandbox`, with its own secret and header
//!   `Sandbox-Signature`): `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, HMAC-SHA256 with the
//!   endpoint secret over `"<t>.<raw body>"`, compared in constant time, `t` within the
//!   tolerance (300 s).
//! - Alipay (async notify, form-encoded): RSA2 = RSA-SHA256 (PKCS#1 v1.5) with Alipay's public
//!   key over every parameter but `sign` and `sign_type`, empty values left out, sorted by name,
//!   joined as `k=v&k=v` (values URL-decoded). Amounts arrive in yuan as "88.88".
//! - WeChat Pay v3: RSA-SHA256 (PKCS#1 v1.5) with the platform key named by `Wechatpay-Serial`
//!   over `"<Wechatpay-Timestamp>\n<Wechatpay-Nonce>\n<body>\n"`, signature base64 in
//!   `Wechatpay-Signature`; the `resource` is AEAD_AES_256_GCM with the APIv3 key, the resource's
//!   `nonce` and `associated_data` (ciphertext base64, tag appended).

use aws_lc_rs::{aead, signature};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a callback was refused (all answer 400 `invalid_callback`; none is applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("signature does not verify")]
    BadSignature,
    #[error("timestamp outside the tolerance")]
    Stale,
    #[error("unknown signing key {0}")]
    UnknownKey(String),
    #[error("malformed callback: {0}")]
    Malformed(String),
    #[error("resource does not decrypt")]
    Decrypt,
}

/// What a verified callback says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    PaymentSucceeded {
        /// Our order id as sent to the provider (simple or hyphenated UUID).
        order_ref: String,
        amount: i64,
        currency: String,
        /// The merchant the payment went to (Stripe account, Alipay app id + seller, WeChat mchid).
        merchant: Option<String>,
        provider_ref: String,
    },
    PaymentFailed {
        order_ref: String,
    },
    RefundSucceeded {
        refund_ref: String,
    },
    RefundFailed {
        refund_ref: String,
        reason: String,
    },
    /// Verified, but of a type we do not act on (recorded and acknowledged).
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEvent {
    pub event_id: String,
    pub event_type: String,
    pub kind: EventKind,
    /// The event as stored (decrypted resource included for WeChat).
    pub payload: Value,
}

// ---------------------------------------------------------------------------------------------
// Stripe style

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

fn str_at(v: &Value, pointer: &str) -> Result<String, VerifyError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| VerifyError::Malformed(format!("missing {pointer}")))
}

// ---------------------------------------------------------------------------------------------
// Alipay

/// The string Alipay signs: params but `sign`/`sign_type` and empty values, sorted, `k=v&...`.
pub fn alipay_sign_content(params: &[(String, String)]) -> String {
    let mut kv: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| k != "sign" && k != "sign_type" && !v.is_empty())
        .collect();
    kv.sort_by(|a, b| a.0.cmp(&b.0));
    kv.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Parse a public key given as base64 DER (SubjectPublicKeyInfo or PKCS#1, as Alipay shows
/// it) or as PEM.
pub fn decode_public_key(text: &str) -> Result<Vec<u8>, VerifyError> {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    B64.decode(body.trim())
        .map_err(|_| VerifyError::Malformed("public key is not base64 DER or PEM".into()))
}

fn rsa_sha256_verify(public_key_der: &[u8], message: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
    signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(message, sig)
        .map_err(|_| VerifyError::BadSignature)
}

/// Verify an Alipay async notification (form parameters, URL-decoded).
pub fn verify_alipay(
    public_key_der: &[u8],
    params: &[(String, String)],
) -> Result<VerifiedEvent, VerifyError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let sign = get("sign").ok_or(VerifyError::Missing("sign"))?;
    if get("sign_type").as_deref().unwrap_or("RSA2") != "RSA2" {
        return Err(VerifyError::Malformed("sign_type must be RSA2".into()));
    }
    let sig = B64
        .decode(sign.as_bytes())
        .map_err(|_| VerifyError::Malformed("sign is not base64".into()))?;
    rsa_sha256_verify(public_key_der, alipay_sign_content(params).as_bytes(), &sig)?;
    let event_id = get("notify_id").ok_or(VerifyError::Missing("notify_id"))?;
    let status = get("trade_status").unwrap_or_default();
    let order_ref = get("out_trade_no").ok_or(VerifyError::Missing("out_trade_no"))?;
    let kind = match status.as_str() {
        "TRADE_SUCCESS" | "TRADE_FINISHED" => EventKind::PaymentSucceeded {
            order_ref,
            amount: get("total_amount")
                .as_deref()
                .and_then(super::parse_major_units)
                .ok_or_else(|| VerifyError::Malformed("total_amount".into()))?,
            currency: get("trans_currency").unwrap_or_else(|| "CNY".into()),
            merchant: Some(format!(
                "{}/{}",
                get("app_id").unwrap_or_default(),
                get("seller_id").unwrap_or_default()
            )),
            provider_ref: get("trade_no").unwrap_or_default(),
        },
        "TRADE_CLOSED" => EventKind::PaymentFailed { order_ref },
        _ => EventKind::Ignored,
    };
    let payload = Value::Object(
        params
            .iter()
            .filter(|(k, _)| k != "sign")
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    );
    Ok(VerifiedEvent {
        event_id,
        event_type: format!("trade_status.{status}"),
        kind,
        payload,
    })
}

// ---------------------------------------------------------------------------------------------
// WeChat Pay v3

/// The `Wechatpay-*` headers of a callback.
#[derive(Debug, Clone)]
pub struct WechatHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub serial: String,
}

/// The message WeChat Pay signs.
pub fn wechat_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{timestamp}\n{nonce}\n").into_bytes();
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// Decrypt a v3 `resource` (AEAD_AES_256_GCM with the 32-byte APIv3 key).
pub fn wechat_decrypt(apiv3_key: &[u8], resource: &Value) -> Result<Vec<u8>, VerifyError> {
    if resource["algorithm"].as_str() != Some("AEAD_AES_256_GCM") {
        return Err(VerifyError::Malformed("resource.algorithm".into()));
    }
    let nonce = resource["nonce"]
        .as_str()
        .ok_or(VerifyError::Missing("resource.nonce"))?;
    let aad = resource["associated_data"].as_str().unwrap_or("");
    let mut data = B64
        .decode(
            resource["ciphertext"]
                .as_str()
                .ok_or(VerifyError::Missing("resource.ciphertext"))?,
        )
        .map_err(|_| VerifyError::Malformed("resource.ciphertext".into()))?;
    let key =
        aead::UnboundKey::new(&aead::AES_256_GCM, apiv3_key).map_err(|_| VerifyError::Decrypt)?;
    let key = aead::LessSafeKey::new(key);
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce.as_bytes())
        .map_err(|_| VerifyError::Decrypt)?;
    let plain = key
        .open_in_place(nonce, aead::Aad::from(aad.as_bytes()), &mut data)
        .map_err(|_| VerifyError::Decrypt)?;
    Ok(plain.to_vec())
}

/// Verify a WeChat Pay v3 callback and decrypt its resource. `keys` are the platform public
/// keys (DER) by serial.
pub fn verify_wechat(
    keys: &[(String, Vec<u8>)],
    apiv3_key: &[u8],
    h: &WechatHeaders,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<VerifiedEvent, VerifyError> {
    let key = keys
        .iter()
        .find(|(serial, _)| *serial == h.serial)
        .ok_or_else(|| VerifyError::UnknownKey(h.serial.clone()))?;
    let sig = B64
        .decode(h.signature.as_bytes())
        .map_err(|_| VerifyError::Malformed("Wechatpay-Signature".into()))?;
    rsa_sha256_verify(&key.1, &wechat_message(&h.timestamp, &h.nonce, body), &sig)?;
    let ts: i64 = h
        .timestamp
        .parse()
        .map_err(|_| VerifyError::Malformed("Wechatpay-Timestamp".into()))?;
    if (now - ts).abs() > tolerance_s {
        return Err(VerifyError::Stale);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let event_id = str_at(&v, "/id")?;
    let event_type = str_at(&v, "/event_type")?;
    let resource: Value = serde_json::from_slice(&wechat_decrypt(apiv3_key, &v["resource"])?)
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let merchant = Some(format!(
        "{}/{}",
        resource["mchid"].as_str().unwrap_or(""),
        resource["appid"].as_str().unwrap_or("")
    ));
    let kind = match event_type.as_str() {
        "TRANSACTION.SUCCESS" if resource["trade_state"].as_str() == Some("SUCCESS") => {
            EventKind::PaymentSucceeded {
                order_ref: str_at(&resource, "/out_trade_no")?,
                amount: resource["amount"]["total"]
                    .as_i64()
                    .ok_or_else(|| VerifyError::Malformed("amount.total".into()))?,
                currency: resource["amount"]["currency"]
                    .as_str()
                    .unwrap_or("CNY")
                    .to_string(),
                merchant,
                provider_ref: resource["transaction_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            }
        }
        "REFUND.SUCCESS" => EventKind::RefundSucceeded {
            refund_ref: str_at(&resource, "/out_refund_no")?,
        },
        "REFUND.ABNORMAL" | "REFUND.CLOSED" => EventKind::RefundFailed {
            refund_ref: str_at(&resource, "/out_refund_no")?,
            reason: event_type.clone(),
        },
        _ => EventKind::Ignored,
    };
    let mut payload = v;
    payload["resource"] = resource;
    Ok(VerifiedEvent {
        event_id,
        event_type,
        kind,
        payload,
    })
}
