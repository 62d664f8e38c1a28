//! WeChat Pay v3: RSA-SHA256 (PKCS#1 v1.5) with the platform key named by `Wechatpay-Serial`
//! over `"<Wechatpay-Timestamp>\n<Wechatpay-Nonce>\n<body>\n"`, signature base64 in
//! `Wechatpay-Signature`; the `resource` is AEAD_AES_256_GCM with the APIv3 key, the resource's
//! `nonce` and `associated_data` (ciphertext base64, tag appended). Acknowledged with 204.

use aws_lc_rs::aead;
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde_json::Value;

use super::{
    EventKind, HeaderLookup, VerifiedEvent, VerifyError, decode_public_key, rsa_sha256_verify,
    str_at,
};
use crate::config::WechatPaySettings;

/// Verify a WeChat Pay callback (`Wechatpay-*` headers, encrypted resource).
pub fn verify_callback(
    settings: &WechatPaySettings,
    header: HeaderLookup<'_, '_>,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<VerifiedEvent, VerifyError> {
    let key = decode_public_key(&settings.platform_public_key)?;
    let h = WechatHeaders {
        timestamp: header("wechatpay-timestamp")?.to_string(),
        nonce: header("wechatpay-nonce")?.to_string(),
        signature: header("wechatpay-signature")?.to_string(),
        serial: header("wechatpay-serial")?.to_string(),
    };
    verify_wechat(
        &[(settings.platform_serial.clone(), key)],
        settings.apiv3_key.expose().as_bytes(),
        &h,
        body,
        now,
        tolerance,
    )
}

/// The merchant callbacks must name: `<mchid>/<appid>`.
pub fn expected_merchant(settings: &WechatPaySettings) -> String {
    format!("{}/{}", settings.mchid, settings.appid)
}

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
