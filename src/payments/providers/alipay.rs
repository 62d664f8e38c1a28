//! Alipay (async notify, form-encoded): RSA2 = RSA-SHA256 (PKCS#1 v1.5) with Alipay's public
//! key over every parameter but `sign` and `sign_type`, empty values left out, sorted by name,
//! joined as `k=v&k=v` (values URL-decoded). Amounts arrive in yuan as "88.88". Acknowledged
//! with the text `success`.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde_json::Value;

use super::{EventKind, VerifiedEvent, VerifyError, decode_public_key, rsa_sha256_verify};
use crate::config::AlipaySettings;

/// Verify an Alipay notification (the form body carries its signature).
pub fn verify_callback(
    settings: &AlipaySettings,
    body: &[u8],
) -> Result<VerifiedEvent, VerifyError> {
    let key = decode_public_key(&settings.public_key)?;
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    verify_alipay(&key, &params)
}

/// The merchant notifications must name: `<app_id>/<seller_id>`.
pub fn expected_merchant(settings: &AlipaySettings) -> String {
    format!("{}/{}", settings.app_id, settings.seller_id)
}

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
                .and_then(crate::payments::parse_major_units)
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
