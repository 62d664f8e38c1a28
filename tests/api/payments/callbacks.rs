//! Provider callbacks: Stripe, Alipay and WeChat Pay verification, de-duplication, checks.

#[allow(unused_imports)]
use super::*;

#[test]
fn stripe_signatures_verify_as_documented() {
    let body = br#"{"id":"evt_1"}"#;
    let now = 1_700_000_000;
    let h = providers::stripe_signature_header(b"whsec", now, body);
    assert!(providers::verify_stripe_signature(b"whsec", &h, body, now + 299, 300).is_ok());
    // A second v1 (secret rotation) is accepted when one matches.
    let rotated = format!("{h},v1={}", "00".repeat(32));
    assert!(providers::verify_stripe_signature(b"whsec", &rotated, body, now, 300).is_ok());
    assert_eq!(
        providers::verify_stripe_signature(b"whsec", &h, body, now + 301, 300),
        Err(providers::VerifyError::Stale)
    );
    assert_eq!(
        providers::verify_stripe_signature(b"other", &h, body, now, 300),
        Err(providers::VerifyError::BadSignature)
    );
    assert_eq!(
        providers::verify_stripe_signature(b"whsec", &h, br#"{"id":"evt_2"}"#, now, 300),
        Err(providers::VerifyError::BadSignature)
    );
}

#[tokio::test]
async fn stripe_callbacks_are_verified_deduplicated_and_checked_against_the_order() {
    let app = app_with(|s| {
        s.payments.stripe.enabled = true;
        s.payments.stripe.webhook_secret = wemaster::config::Secret::new(STRIPE_SECRET);
    })
    .await;
    let (_, token) = app
        .user_with(&unique_email("stripe"), PW, &[Role::Student])
        .await;
    let body = json!({"kind": "wallet_topup", "amount": {"amount": 500, "currency": "CNY"}, "provider": "stripe"});
    let order: Value = post(&app, "/api/v1/orders", &token, None, &body)
        .await
        .json()
        .await
        .unwrap();
    let order_ref = order["payment"]["reference"].as_str().unwrap().to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    // Forged: wrong secret, tampered body, stale timestamp, no header.
    let good = stripe_event("evt_1", &order_ref, 500);
    let forged = providers::stripe_signature_header(b"not the secret", now, &good);
    assert_problem(
        send_stripe(&app, &good, &forged).await,
        StatusCode::BAD_REQUEST,
        "invalid_callback",
    )
    .await;
    let signed = providers::stripe_signature_header(STRIPE_SECRET.as_bytes(), now, &good);
    let tampered = stripe_event("evt_1", &order_ref, 50_000);
    assert_problem(
        send_stripe(&app, &tampered, &signed).await,
        StatusCode::BAD_REQUEST,
        "invalid_callback",
    )
    .await;
    let stale = providers::stripe_signature_header(STRIPE_SECRET.as_bytes(), now - 301, &good);
    assert_problem(
        send_stripe(&app, &good, &stale).await,
        StatusCode::BAD_REQUEST,
        "invalid_callback",
    )
    .await;
    // Signed but for another amount: recorded, not applied.
    let wrong = stripe_event("evt_0", &order_ref, 499);
    let r = send_stripe(
        &app,
        &wrong,
        &providers::stripe_signature_header(STRIPE_SECRET.as_bytes(), now, &wrong),
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["outcome"],
        "amount_mismatch"
    );
    assert_eq!(wallet_of(&app, &token).await["balance"]["amount"], 0);

    // Genuine: applied once; replayed: changes nothing.
    let r = send_stripe(&app, &good, &signed).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "applied");
    let r = send_stripe(&app, &good, &signed).await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "duplicate");
    // The same payment under a new event id is recognised as already applied.
    let again = stripe_event("evt_2", &order_ref, 500);
    let r = send_stripe(
        &app,
        &again,
        &providers::stripe_signature_header(STRIPE_SECRET.as_bytes(), now, &again),
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["outcome"],
        "already_applied"
    );
    assert_eq!(wallet_of(&app, &token).await["balance"]["amount"], 500);
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn alipay_notifications_are_verified_with_rsa2_over_the_sorted_parameters() {
    let (key, public_b64) = rsa_key();
    let app = app_with(|s| {
        s.payments.alipay.enabled = true;
        s.payments.alipay.app_id = "2021000000000001".into();
        s.payments.alipay.seller_id = "2088000000000001".into();
        s.payments.alipay.public_key = public_b64.clone();
    })
    .await;
    let (_, token) = app
        .user_with(&unique_email("alipay"), PW, &[Role::Student])
        .await;
    let body = json!({"kind": "wallet_topup", "amount": {"amount": 8888, "currency": "CNY"}, "provider": "alipay"});
    let order: Value = post(&app, "/api/v1/orders", &token, None, &body)
        .await
        .json()
        .await
        .unwrap();
    let out_trade_no = order["payment"]["reference"].as_str().unwrap().to_string();

    // The async notification as Alipay's docs show it (form-encoded, amount in yuan).
    let mut params: Vec<(String, String)> = [
        ("notify_time", "2026-11-27 10:00:00"),
        ("notify_type", "trade_status_sync"),
        ("notify_id", "ac05099524730693a8b330c5ecf72da9786"),
        ("app_id", "2021000000000001"),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("trade_no", "2026112722001400000000000001"),
        ("out_trade_no", out_trade_no.as_str()),
        ("seller_id", "2088000000000001"),
        ("total_amount", "88.88"),
        ("trade_status", "TRADE_SUCCESS"),
        ("subject", "钱包充值"),
        ("buyer_logon_id", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let content = providers::alipay_sign_content(&params);
    assert!(content.starts_with("app_id=2021000000000001&charset=utf-8&notify_id="));
    assert!(
        !content.contains("buyer_logon_id"),
        "empty values are left out"
    );
    params.push(("sign".into(), rsa_sign(&key, content.as_bytes())));
    params.push(("sign_type".into(), "RSA2".into()));
    let form = |p: &[(String, String)]| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(p)
            .finish()
    };
    let send = |f: String| {
        app.client
            .post(app.url("/api/v1/payments/webhooks/alipay"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(f)
            .send()
    };

    // Tampered amount: refused.
    let mut tampered = params.clone();
    tampered
        .iter_mut()
        .find(|(k, _)| k == "total_amount")
        .unwrap()
        .1 = "0.01".into();
    assert_eq!(
        send(form(&tampered)).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    // Signed with another key: refused.
    let (other, _) = rsa_key();
    let mut forged = params.clone();
    forged.iter_mut().find(|(k, _)| k == "sign").unwrap().1 = rsa_sign(&other, content.as_bytes());
    assert_eq!(
        send(form(&forged)).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );

    let r = send(form(&params)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "success");
    assert_eq!(
        send(form(&params)).await.unwrap().text().await.unwrap(),
        "success"
    );
    wait_order(&app, &token, order["id"].as_str().unwrap(), "paid").await;
    assert_eq!(wallet_of(&app, &token).await["balance"]["amount"], 8888);
    assert_ledger_sound(&app).await;
}

// ------------------------------------------------------------------------------------------
// WeChat Pay v3

#[tokio::test]
async fn wechat_pay_callbacks_are_verified_and_their_resource_decrypted() {
    let (key, public_b64) = rsa_key();
    let apiv3_key = "0123456789abcdef0123456789abcdef";
    let app = app_with(|s| {
        s.payments.wechatpay.enabled = true;
        s.payments.wechatpay.mchid = "1900000001".into();
        s.payments.wechatpay.appid = "wxd678efh567hg6787".into();
        s.payments.wechatpay.apiv3_key = wemaster::config::Secret::new(apiv3_key);
        s.payments.wechatpay.platform_serial = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into();
        s.payments.wechatpay.platform_public_key = public_b64.clone();
    })
    .await;
    let (_, token) = app
        .user_with(&unique_email("wechat"), PW, &[Role::Student])
        .await;
    let body = json!({"kind": "wallet_topup", "amount": {"amount": 100, "currency": "CNY"}, "provider": "wechatpay"});
    let order: Value = post(&app, "/api/v1/orders", &token, None, &body)
        .await
        .json()
        .await
        .unwrap();
    let out_trade_no = order["payment"]["reference"].as_str().unwrap().to_string();

    let build = |mchid: &str, total: i64, event_id: &str| -> Vec<u8> {
        let transaction = json!({
            "mchid": mchid, "appid": "wxd678efh567hg6787", "out_trade_no": out_trade_no,
            "transaction_id": "1217752501201407033233368018", "trade_type": "JSAPI",
            "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
            "success_time": "2026-11-27T10:34:56+08:00",
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"}
        });
        let nonce = "fdasflkja484";
        let aad = "transaction";
        let k = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, apiv3_key.as_bytes()).unwrap(),
        );
        let mut data = serde_json::to_vec(&transaction).unwrap();
        k.seal_in_place_append_tag(
            aead::Nonce::try_assume_unique_for_key(nonce.as_bytes()).unwrap(),
            aead::Aad::from(aad.as_bytes()),
            &mut data,
        )
        .unwrap();
        serde_json::to_vec(&json!({
            "id": event_id, "create_time": "2026-11-27T10:34:56+08:00",
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
            "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": B64.encode(&data), "associated_data": aad, "nonce": nonce}
        }))
        .unwrap()
    };
    let send = |body: Vec<u8>, signer: &RsaKeyPair, serial: &str, ts: i64| {
        let ts = ts.to_string();
        let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
        let sig = rsa_sign(signer, &providers::wechat_message(&ts, nonce, &body));
        app.client
            .post(app.url("/api/v1/payments/webhooks/wechatpay"))
            .header("content-type", "application/json")
            .header("Wechatpay-Timestamp", ts)
            .header("Wechatpay-Nonce", nonce)
            .header("Wechatpay-Signature", sig)
            .header("Wechatpay-Serial", serial)
            .body(body)
            .send()
    };
    let serial = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (other, _) = rsa_key();
    assert_eq!(
        send(build("1900000001", 100, "EV-1"), &other, serial, now)
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(build("1900000001", 100, "EV-1"), &key, "UNKNOWN", now)
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(build("1900000001", 100, "EV-1"), &key, serial, now - 400)
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    // Another merchant's payment, properly signed: acknowledged, not applied.
    assert_eq!(
        send(build("1900000999", 100, "EV-0"), &key, serial, now)
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(wallet_of(&app, &token).await["balance"]["amount"], 0);

    assert_eq!(
        send(build("1900000001", 100, "EV-1"), &key, serial, now)
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(build("1900000001", 100, "EV-1"), &key, serial, now)
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    wait_order(&app, &token, order["id"].as_str().unwrap(), "paid").await;
    assert_eq!(wallet_of(&app, &token).await["balance"]["amount"], 100);
    assert_ledger_sound(&app).await;
}
