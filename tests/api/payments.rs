//! Payments: the ledger's database-enforced invariants (each attacked directly in SQL), a
//! concurrency test on one wallet, orders paid through the sandbox, Stripe, Alipay and WeChat
//! Pay callbacks (keys generated here, payloads built as each provider documents), idempotency
//! keys, refunds and the reconciliation job. Every test ends by auditing the ledger.

use std::time::Duration;

use aws_lc_rs::{
    aead,
    encoding::AsDer,
    rand::SystemRandom,
    rsa::KeySize,
    signature::KeyPair as _,
    signature::{RSA_PKCS1_SHA256, RsaKeyPair},
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;
use wemaster::{
    payments::{
        Currency, PaymentError,
        ledger::{self, AccountRef, NewTransfer, TransferKind},
        providers,
    },
    users::Role,
};

use crate::helpers::{TestApp, assert_problem, spawn_app_with, unique_email};

const PW: &str = "a fine passphrase";

async fn app_with(tweak: impl FnOnce(&mut wemaster::config::Settings)) -> TestApp {
    spawn_app_with(tweak).await
}

async fn pool(app: &TestApp) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(20)
        .connect(&app.database_url)
        .await
        .unwrap()
}

/// The ledger audit: stored balances equal the sum of transfers; posted legs sum to zero.
async fn assert_ledger_sound(app: &TestApp) {
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let (mismatched, unbalanced) = ledger::audit(&mut conn).await.unwrap();
    assert!(
        mismatched.is_empty(),
        "balances differ from transfers: {mismatched:?}"
    );
    assert!(
        unbalanced.is_empty(),
        "posted legs do not sum to zero: {unbalanced:?}"
    );
}

/// Fund a user's wallet from the sandbox clearing account directly through the ledger.
async fn fund(pool: &PgPool, user: Uuid, amount: i64) -> (Uuid, Uuid) {
    let mut tx = pool.begin().await.unwrap();
    let c = Currency::cny();
    let wallet = ledger::account(&mut tx, &AccountRef::UserWallet(user), &c)
        .await
        .unwrap();
    let clearing = ledger::account(&mut tx, &AccountRef::ProviderClearing("sandbox".into()), &c)
        .await
        .unwrap();
    let t = NewTransfer::simple(
        Uuid::now_v7(),
        TransferKind::Topup,
        c,
        clearing,
        wallet,
        amount,
    );
    ledger::record(&mut tx, &t).await.unwrap();
    tx.commit().await.unwrap();
    (wallet, clearing)
}

async fn wallet_of(app: &TestApp, token: &str) -> Value {
    let r = app.get_auth("/api/v1/wallet", token).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn post(
    app: &TestApp,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).bearer_auth(token).json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.unwrap()
}

async fn wait_order(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    for _ in 0..100 {
        let o: Value = app
            .get_auth(&format!("/api/v1/orders/{id}"), token)
            .await
            .json()
            .await
            .unwrap();
        if o["status"] == status {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("order {id} never became {status}");
}

fn db_error(e: sqlx::Error) -> String {
    e.as_database_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

// ------------------------------------------------------------------------------------------
// Ledger invariants, attacked directly in SQL

#[tokio::test]
async fn the_database_refuses_every_direct_attempt_to_break_the_ledger() {
    let app = app_with(|_| {}).await;
    let pool = pool(&app).await;
    let (user, _) = app
        .user_with(&unique_email("ledger"), PW, &[Role::Student])
        .await;
    let (wallet, clearing) = fund(&pool, user, 1000).await;

    // A balance edited by hand.
    let e = sqlx::query("UPDATE ledger_accounts SET posted = posted + 1000000 WHERE id = $1")
        .bind(wallet)
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(db_error(e).contains("only through transfers"));

    // A transfer edited or deleted; a leg edited or deleted.
    let t: Uuid = sqlx::query_scalar("SELECT transfer_id FROM ledger_legs WHERE account_id = $1")
        .bind(wallet)
        .fetch_one(&pool)
        .await
        .unwrap();
    for sql in [
        "UPDATE ledger_transfers SET description = 'x' WHERE id = $1",
        "UPDATE ledger_transfers SET state = 'voided' WHERE id = $1",
        "DELETE FROM ledger_transfers WHERE id = $1",
        "UPDATE ledger_legs SET amount = amount * 2 WHERE transfer_id = $1",
        "DELETE FROM ledger_legs WHERE transfer_id = $1",
    ] {
        let e = sqlx::query(sql).bind(t).execute(&pool).await.unwrap_err();
        let msg = db_error(e);
        assert!(
            msg.contains("immutable") || msg.contains("already"),
            "{sql}: {msg}"
        );
    }
    assert!(
        sqlx::query("TRUNCATE ledger_legs, ledger_transfers, ledger_accounts CASCADE")
            .execute(&pool)
            .await
            .is_err()
    );

    // A transfer that does not balance is refused at commit.
    let mut tx = pool.begin().await.unwrap();
    let bad = Uuid::now_v7();
    sqlx::query("INSERT INTO ledger_transfers (id, kind, currency, state, resolved_at) VALUES ($1, 'adjustment', 'CNY', 'posted', now())")
        .bind(bad).execute(&mut *tx).await.unwrap();
    sqlx::query(
        "INSERT INTO ledger_legs (id, transfer_id, account_id, amount) VALUES ($1, $2, $3, 500)",
    )
    .bind(Uuid::now_v7())
    .bind(bad)
    .bind(wallet)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO ledger_legs (id, transfer_id, account_id, amount) VALUES ($1, $2, $3, -400)",
    )
    .bind(Uuid::now_v7())
    .bind(bad)
    .bind(clearing)
    .execute(&mut *tx)
    .await
    .unwrap();
    let e = tx.commit().await.unwrap_err();
    assert!(db_error(e).contains("does not balance"));

    // A transfer with a single leg, or none.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO ledger_transfers (id, kind, currency, state, resolved_at) VALUES ($1, 'adjustment', 'CNY', 'posted', now())")
        .bind(Uuid::now_v7()).execute(&mut *tx).await.unwrap();
    assert!(db_error(tx.commit().await.unwrap_err()).contains("at least two"));

    // A balanced transfer that would take the wallet below zero.
    let mut tx = pool.begin().await.unwrap();
    let over = NewTransfer::simple(
        Uuid::now_v7(),
        TransferKind::Purchase,
        Currency::cny(),
        wallet,
        clearing,
        1001,
    );
    assert!(matches!(
        ledger::record(&mut tx, &over).await,
        Err(PaymentError::InsufficientFunds)
    ));
    tx.rollback().await.unwrap();

    // Legs added later to an existing transfer.
    let e = sqlx::query(
        "INSERT INTO ledger_legs (id, transfer_id, account_id, amount) VALUES ($1, $2, $3, 1)",
    )
    .bind(Uuid::now_v7())
    .bind(t)
    .bind(wallet)
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(db_error(e).contains("transaction that creates"));

    // The same transfer id twice moves money once.
    let mut tx = pool.begin().await.unwrap();
    let again = NewTransfer::simple(
        t,
        TransferKind::Topup,
        Currency::cny(),
        clearing,
        wallet,
        1000,
    );
    assert_eq!(
        ledger::record(&mut tx, &again).await.unwrap(),
        ledger::Recorded::Existing
    );
    tx.commit().await.unwrap();

    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(
        ledger::balance(&mut conn, wallet).await.unwrap().posted,
        1000
    );
    // A correction is a reversing transfer, at most once.
    let mut tx = pool.begin().await.unwrap();
    ledger::reverse(&mut tx, t, "test correction")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(
        ledger::reverse(&mut tx, t, "again").await.unwrap(),
        ledger::Recorded::Existing
    );
    tx.commit().await.unwrap();
    assert_eq!(ledger::balance(&mut conn, wallet).await.unwrap().posted, 0);
    drop(conn);
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn holds_reserve_funds_and_post_void_or_expire_once() {
    let app = app_with(|_| {}).await;
    let pool = pool(&app).await;
    let (user, _) = app
        .user_with(&unique_email("hold"), PW, &[Role::Student])
        .await;
    let (wallet, clearing) = fund(&pool, user, 1000).await;
    let hold = |id: Uuid, amount: i64, secs: i64| NewTransfer {
        settlement: ledger::Settlement::Pending {
            expires_at: time::OffsetDateTime::now_utc() + time::Duration::seconds(secs),
        },
        ..NewTransfer::simple(
            id,
            TransferKind::Purchase,
            Currency::cny(),
            wallet,
            clearing,
            amount,
        )
    };
    let (h1, h2, h3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut tx = pool.begin().await.unwrap();
    ledger::record(&mut tx, &hold(h1, 600, 60)).await.unwrap();
    tx.commit().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let b = ledger::balance(&mut conn, wallet).await.unwrap();
    assert_eq!((b.posted, b.held, b.available()), (1000, 600, 400));
    // The held money cannot be spent again.
    let mut tx = pool.begin().await.unwrap();
    assert!(matches!(
        ledger::record(&mut tx, &hold(h2, 500, 60)).await,
        Err(PaymentError::InsufficientFunds)
    ));
    tx.rollback().await.unwrap();
    // Void releases it; posting after that changes nothing.
    assert_eq!(
        ledger::void(&mut conn, h1).await.unwrap(),
        ledger::Resolved::Done
    );
    assert_eq!(
        ledger::post(&mut conn, h1).await.unwrap(),
        ledger::Resolved::AlreadyResolved
    );
    assert_eq!(
        ledger::balance(&mut conn, wallet).await.unwrap(),
        ledger::Balance {
            posted: 1000,
            held: 0
        }
    );
    // Post moves it.
    let mut tx = pool.begin().await.unwrap();
    ledger::record(&mut tx, &hold(h2, 300, 60)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        ledger::post(&mut conn, h2).await.unwrap(),
        ledger::Resolved::Done
    );
    assert_eq!(
        ledger::balance(&mut conn, wallet).await.unwrap(),
        ledger::Balance {
            posted: 700,
            held: 0
        }
    );
    // An expired hold cannot be posted, and the job voids it.
    let mut tx = pool.begin().await.unwrap();
    ledger::record(&mut tx, &hold(h3, 100, -1)).await.unwrap();
    tx.commit().await.unwrap();
    assert!(ledger::post(&mut conn, h3).await.is_err());
    let gateways = wemaster::payments::gateway::Gateways::new(
        &app.settings.payments,
        &app.settings.http.public_url,
    )
    .unwrap();
    let r =
        wemaster::payments::reconcile::run_once(&pool, &app.settings.payments, &gateways, &|_| {})
            .await
            .unwrap();
    assert_eq!((r.holds_voided, r.ledger_mismatches), (1, 0));
    assert_eq!(
        ledger::balance(&mut conn, wallet).await.unwrap(),
        ledger::Balance {
            posted: 700,
            held: 0
        }
    );
    drop(conn);
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn a_hundred_concurrent_spends_never_overdraw_one_wallet() {
    let app = app_with(|_| {}).await;
    let pool = pool(&app).await;
    let (user, _) = app
        .user_with(&unique_email("race"), PW, &[Role::Student])
        .await;
    let (wallet, _) = fund(&pool, user, 5000).await;
    let mut conn = pool.acquire().await.unwrap();
    let revenue = ledger::account(&mut conn, &AccountRef::PlatformRevenue, &Currency::cny())
        .await
        .unwrap();
    drop(conn);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            // Every spend is tried twice with the same id: a retry must not spend again.
            let id = ledger::transfer_id(&format!("spend:{i}"));
            let t = NewTransfer::simple(
                id,
                TransferKind::Purchase,
                Currency::cny(),
                wallet,
                revenue,
                100,
            );
            let mut spent = 0;
            for _ in 0..2 {
                let mut tx = pool.begin().await.unwrap();
                match ledger::record(&mut tx, &t).await {
                    Ok(ledger::Recorded::Created) => {
                        tx.commit().await.unwrap();
                        spent += 1;
                    }
                    Ok(ledger::Recorded::Existing) => tx.commit().await.unwrap(),
                    Err(PaymentError::InsufficientFunds) => tx.rollback().await.unwrap(),
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            spent
        }));
    }
    let mut succeeded = 0;
    for t in tasks {
        succeeded += t.await.unwrap();
    }
    assert_eq!(
        succeeded, 50,
        "exactly the funded number of spends goes through"
    );
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(ledger::balance(&mut conn, wallet).await.unwrap().posted, 0);
    assert_eq!(
        ledger::balance(&mut conn, revenue).await.unwrap().posted,
        5000
    );
    drop(conn);
    assert_ledger_sound(&app).await;
}

// ------------------------------------------------------------------------------------------
// Orders through the sandbox, idempotency

#[tokio::test]
async fn a_sandbox_top_up_is_paid_by_a_signed_callback_and_credits_the_wallet_once() {
    let app = app_with(|_| {}).await;
    let (_, token) = app
        .user_with(&unique_email("topup"), PW, &[Role::Student])
        .await;
    let body = json!({"kind": "wallet_topup", "amount": {"amount": 8888, "currency": "CNY"}, "provider": "sandbox"});
    let r = post(&app, "/api/v1/orders", &token, Some("topup-1"), &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let order: Value = r.json().await.unwrap();
    assert_eq!(order["status"], "pending");
    assert_eq!(order["amount"], json!({"amount": 8888, "currency": "CNY"}));
    let id = order["id"].as_str().unwrap().to_string();
    let paid = wait_order(&app, &token, &id, "paid").await;
    assert!(paid["provider_ref"].as_str().unwrap().starts_with("pi_"));

    // The same key and body: the first answer, no second order.
    let r = post(&app, "/api/v1/orders", &token, Some("topup-1"), &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let replay: Value = r.json().await.unwrap();
    assert_eq!(replay["id"], order["id"]);
    // The same key, another body: refused.
    let other = json!({"kind": "wallet_topup", "amount": {"amount": 1, "currency": "CNY"}, "provider": "sandbox"});
    assert_problem(
        post(&app, "/api/v1/orders", &token, Some("topup-1"), &other).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    let w = wallet_of(&app, &token).await;
    assert_eq!(w["balance"], json!({"amount": 8888, "currency": "CNY"}));
    assert_eq!(w["available"]["amount"], 8888);
    let list: Value = app
        .get_auth("/api/v1/orders", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let tx: Value = app
        .get_auth("/api/v1/wallet/transactions?kind=topup", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tx["items"].as_array().unwrap().len(), 1);
    assert_eq!(tx["items"][0]["amount"]["amount"], 8888);
    assert_eq!(tx["items"][0]["order_id"].as_str().unwrap(), id);
    let csv = app
        .get_auth("/api/v1/wallet/transactions?format=csv", &token)
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("id,created_at,kind") && csv.contains(",topup,posted,8888,CNY,"));
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn orders_refuse_floats_other_currencies_and_unknown_providers() {
    let app = app_with(|_| {}).await;
    let (_, token) = app
        .user_with(&unique_email("bad"), PW, &[Role::Student])
        .await;
    let float = json!({"kind": "wallet_topup", "amount": {"amount": 10.5, "currency": "CNY"}, "provider": "sandbox"});
    assert_eq!(
        post(&app, "/api/v1/orders", &token, None, &float)
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    let usd = json!({"kind": "wallet_topup", "amount": {"amount": 100, "currency": "USD"}, "provider": "sandbox"});
    assert_problem(
        post(&app, "/api/v1/orders", &token, None, &usd).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let stripe = json!({"kind": "wallet_topup", "amount": {"amount": 100, "currency": "CNY"}, "provider": "stripe"});
    assert_problem(
        post(&app, "/api/v1/orders", &token, None, &stripe).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "provider_unavailable",
    )
    .await;
    // A course order names its course, and the course must exist.
    let course = json!({"kind": "course", "amount": {"amount": 100, "currency": "CNY"}, "provider": "wallet"});
    let body = assert_problem(
        post(&app, "/api/v1/orders", &token, None, &course).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["field"], "course_id");
    let unknown = json!({"kind": "course", "course_id": Uuid::now_v7(),
                         "amount": {"amount": 100, "currency": "CNY"}, "provider": "wallet"});
    assert_problem(
        post(&app, "/api/v1/orders", &token, None, &unknown).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

// ------------------------------------------------------------------------------------------
// Stripe

const STRIPE_SECRET: &str = "whsec_test_0123456789";

fn stripe_event(event_id: &str, order_ref: &str, amount: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": event_id, "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_3Mtw", "object": "payment_intent", "amount": amount,
                 "currency": "cny", "status": "succeeded", "metadata": {"order_id": order_ref}}}
    }))
    .unwrap()
}

async fn send_stripe(app: &TestApp, body: &[u8], header: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/payments/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("Stripe-Signature", header)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

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

// ------------------------------------------------------------------------------------------
// Alipay

fn rsa_key() -> (RsaKeyPair, String) {
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let spki = key.public_key().as_der().unwrap();
    let b64 = B64.encode(spki.as_ref());
    (key, b64)
}

fn rsa_sign(key: &RsaKeyPair, msg: &[u8]) -> String {
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
        .unwrap();
    B64.encode(sig)
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

// ------------------------------------------------------------------------------------------
// Refunds and reconciliation

#[tokio::test]
async fn refunds_are_partial_or_full_never_more_than_paid_and_reverse_the_ledger() {
    let app = app_with(|_| {}).await;
    let (user, token) = app
        .user_with(&unique_email("refund"), PW, &[Role::Student])
        .await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let body = json!({"kind": "wallet_topup", "amount": {"amount": 1000, "currency": "CNY"}, "provider": "sandbox"});
    let order: Value = post(&app, "/api/v1/orders", &token, None, &body)
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap().to_string();
    wait_order(&app, &token, &id, "paid").await;

    // Students cannot refund.
    let partial =
        json!({"order_id": id, "amount": {"amount": 300, "currency": "CNY"}, "reason": "asked"});
    assert_eq!(
        post(&app, "/api/v1/refunds", &token, None, &partial)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    // More than paid: refused.
    let too_much = json!({"order_id": id, "amount": {"amount": 1001, "currency": "CNY"}});
    assert_problem(
        post(&app, "/api/v1/refunds", &admin, None, &too_much).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "refund_exceeds_paid",
    )
    .await;
    // A top-up cannot be refunded into the wallet it is already in.
    let to_wallet = json!({"order_id": id, "destination": "wallet"});
    assert_problem(
        post(&app, "/api/v1/refunds", &admin, None, &to_wallet).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_destination",
    )
    .await;

    let r = post(&app, "/api/v1/refunds", &admin, Some("refund-1"), &partial).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let refund: Value = r.json().await.unwrap();
    assert_eq!(refund["status"], "pending");
    // The refund holds the money at once.
    let w = wallet_of(&app, &token).await;
    assert_eq!(
        (
            w["balance"]["amount"].as_i64(),
            w["available"]["amount"].as_i64()
        ),
        (Some(1000), Some(700))
    );
    // Retried with the same key: the same refund, not a second one.
    let again: Value = post(&app, "/api/v1/refunds", &admin, Some("refund-1"), &partial)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], refund["id"]);
    let rid = refund["id"].as_str().unwrap();
    for _ in 0..100 {
        let r: Value = app
            .get_auth(&format!("/api/v1/refunds/{rid}"), &token)
            .await
            .json()
            .await
            .unwrap();
        if r["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let o = wait_order(&app, &token, &id, "partially_refunded").await;
    assert_eq!(o["refunded"]["amount"], 300);
    assert_eq!(wallet_of(&app, &token).await["balance"]["amount"], 700);

    // Only 700 remain refundable; the rest in full.
    assert_problem(
        post(
            &app,
            "/api/v1/refunds",
            &admin,
            None,
            &json!({"order_id": id, "amount": {"amount": 701, "currency": "CNY"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "refund_exceeds_paid",
    )
    .await;
    assert_eq!(
        post(
            &app,
            "/api/v1/refunds",
            &admin,
            None,
            &json!({"order_id": id})
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    wait_order(&app, &token, &id, "refunded").await;
    assert_eq!(wallet_of(&app, &token).await["balance"]["amount"], 0);
    let list: Value = app
        .get_auth(&format!("/api/v1/refunds?user_id={user}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let tx: Value = app
        .get_auth(
            "/api/v1/wallet/transactions?kind=refund&state=posted",
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tx["items"].as_array().unwrap().len(), 2);
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn a_late_callback_for_a_resolved_refund_changes_nothing() {
    let app = app_with(|_| {}).await;
    let (_, token) = app
        .user_with(&unique_email("rfail"), PW, &[Role::Student])
        .await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let body = json!({"kind": "wallet_topup", "amount": {"amount": 1000, "currency": "CNY"}, "provider": "sandbox"});
    let order: Value = post(&app, "/api/v1/orders", &token, None, &body)
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap().to_string();
    wait_order(&app, &token, &id, "paid").await;
    // Sign the refund's failure ourselves, as the sandbox would.
    let refund: Value = {
        let pool = pool(&app).await;
        sqlx::query("SELECT 1").execute(&pool).await.unwrap();
        post(
            &app,
            "/api/v1/refunds",
            &admin,
            None,
            &json!({"order_id": id, "amount": {"amount": 400, "currency": "CNY"}}),
        )
        .await
        .json()
        .await
        .unwrap()
    };
    let rid = refund["id"].as_str().unwrap();
    // The sandbox reports success by default; wait for that, then check a forged failure
    // for an already-resolved refund changes nothing.
    for _ in 0..100 {
        let r: Value = app
            .get_auth(&format!("/api/v1/refunds/{rid}"), &admin)
            .await
            .json()
            .await
            .unwrap();
        if r["status"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ev = serde_json::to_vec(&json!({"id": "evt_late", "type": "refund.updated",
        "data": {"object": {"id": "re_1", "status": "failed", "metadata": {"refund_id": rid}}}}))
    .unwrap();
    let secret = app.settings.payments.sandbox.secret.expose().to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let r = app
        .client
        .post(app.url("/api/v1/payments/webhooks/sandbox"))
        .header(
            "Sandbox-Signature",
            providers::stripe_signature_header(secret.as_bytes(), now, &ev),
        )
        .body(ev)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["outcome"],
        "already_applied"
    );
    assert_eq!(wallet_of(&app, &token).await["balance"]["amount"], 600);
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn a_failing_provider_refund_voids_the_hold_and_frees_the_amount() {
    let app = app_with(|s| s.payments.sandbox.outcome = "fail".into()).await;
    let pool = pool(&app).await;
    let (user, token) = app
        .user_with(&unique_email("rfail2"), PW, &[Role::Student])
        .await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    // Pay the order through the ledger path a successful callback takes.
    let body = json!({"kind": "wallet_topup", "amount": {"amount": 1000, "currency": "CNY"}, "provider": "sandbox"});
    let order: Value = post(&app, "/api/v1/orders", &token, None, &body)
        .await
        .json()
        .await
        .unwrap();
    let id = Uuid::parse_str(order["id"].as_str().unwrap()).unwrap();
    wait_order(&app, &token, &id.to_string(), "cancelled").await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE orders SET status = 'pending' WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    wemaster::payments::orders::confirm(&mut tx, id, Some("pi_manual"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let _ = user;
    let refund: Value = post(
        &app,
        "/api/v1/refunds",
        &admin,
        None,
        &json!({"order_id": id}),
    )
    .await
    .json()
    .await
    .unwrap();
    let rid = refund["id"].as_str().unwrap();
    let mut last = Value::Null;
    for _ in 0..100 {
        last = app
            .get_auth(&format!("/api/v1/refunds/{rid}"), &admin)
            .await
            .json()
            .await
            .unwrap();
        if last["status"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "failed");
    let w = wallet_of(&app, &token).await;
    assert_eq!(
        (
            w["balance"]["amount"].as_i64(),
            w["held"]["amount"].as_i64()
        ),
        (Some(1000), Some(0))
    );
    let o = wait_order(&app, &token, &id.to_string(), "paid").await;
    assert_eq!(o["refunded"]["amount"], 0);
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn the_reconciliation_job_expires_stale_pending_orders() {
    let app = app_with(|s| {
        s.payments.order_ttl_s = 0;
        s.payments.sandbox.outcome = "none".into();
    })
    .await;
    let (_, token) = app
        .user_with(&unique_email("stale"), PW, &[Role::Student])
        .await;
    let (_, ops) = app.user_with(&unique_email("ops"), PW, &[Role::Ops]).await;
    let body = json!({"kind": "wallet_topup", "amount": {"amount": 100, "currency": "CNY"}, "provider": "sandbox"});
    let order: Value = post(&app, "/api/v1/orders", &token, None, &body)
        .await
        .json()
        .await
        .unwrap();
    let r: Value = post(
        &app,
        "/api/v1/admin/payments/reconcile",
        &ops,
        None,
        &json!({}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(r["orders_expired"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["ledger_mismatches"], 0);
    wait_order(&app, &token, order["id"].as_str().unwrap(), "expired").await;
    let listed: Value = app
        .get_auth("/api/v1/admin/payments/transactions", &ops)
        .await
        .json()
        .await
        .unwrap();
    assert!(listed["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_student_buys_a_paid_course_from_the_wallet_and_a_full_refund_ends_the_access() {
    let app = app_with(|_| {}).await;
    let (teacher_id, teacher) = app
        .user_with(&unique_email("seller"), PW, &[Role::Teacher])
        .await;
    let (student_id, student) = app
        .user_with(&unique_email("buyer"), PW, &[Role::Student])
        .await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let course: Value = app
        .client
        .post(app.url("/api/v1/courses"))
        .bearer_auth(&teacher)
        .json(
            &json!({"title": "Paid algebra", "price": {"amount": 9900, "currency": "CNY"},
                      "visibility": "published"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cid = course["id"].as_str().unwrap().to_string();
    let lesson: Value = app
        .client
        .post(app.url(&format!("/api/v1/courses/{cid}/lessons")))
        .bearer_auth(&teacher)
        .json(
            &json!({"title": "One", "kind": "broadcast", "starts_at": "2026-12-01T09:00:00Z",
                      "duration_minutes": 45, "time_zone": "UTC"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lid = lesson["id"].as_str().unwrap().to_string();
    let playback = |token: String| {
        let client = app.client.clone();
        let url = app.url(&format!("/api/v1/lessons/{lid}/playback"));
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(playback(student.clone()).await, StatusCode::FORBIDDEN);

    // The wrong price, and not enough money, are refused; nothing is enrolled.
    let wrong = json!({"kind": "course", "course_id": cid, "provider": "wallet",
                       "amount": {"amount": 100, "currency": "CNY"}});
    assert_problem(
        post(&app, "/api/v1/orders", &student, None, &wrong).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "amount_mismatch",
    )
    .await;
    let buy = json!({"kind": "course", "course_id": cid, "provider": "wallet",
                     "amount": {"amount": 9900, "currency": "CNY"}});
    assert_problem(
        post(&app, "/api/v1/orders", &student, Some("buy-1"), &buy).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "insufficient_funds",
    )
    .await;

    // With money in the wallet the order is paid at once, and the student is enrolled.
    let pool = pool(&app).await;
    fund(&pool, student_id, 10_000).await;
    let r = post(&app, "/api/v1/orders", &student, Some("buy-2"), &buy).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let order: Value = r.json().await.unwrap();
    assert_eq!(order["status"], "paid", "{order}");
    assert_eq!(playback(student.clone()).await, StatusCode::OK);
    assert_eq!(wallet_of(&app, &student).await["balance"]["amount"], 100);
    // Buying again is refused: already enrolled.
    assert_problem(
        post(&app, "/api/v1/orders", &student, Some("buy-3"), &buy).await,
        StatusCode::CONFLICT,
        "already_enrolled",
    )
    .await;
    // The teacher earned the price less the platform fee (10 %).
    let (earned,): (i64,) = sqlx::query_as(
        "SELECT posted FROM ledger_accounts WHERE owner_id = $1 AND kind = 'teacher_earnings'",
    )
    .bind(teacher_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(earned, 8910);

    // A full refund to the wallet ends the enrollment the order created.
    let id = order["id"].as_str().unwrap();
    let refund = json!({"order_id": id, "destination": "wallet", "reason": "changed mind"});
    let r = post(
        &app,
        "/api/v1/refunds",
        &admin,
        Some("refund-course"),
        &refund,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    assert_eq!(playback(student.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(wallet_of(&app, &student).await["balance"]["amount"], 10_000);
    // The teacher's roster says so, with the order that paid for it.
    let roster: Value = app
        .get_auth(
            &format!("/api/v1/courses/{cid}/enrollments?status=refunded"),
            &teacher,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(roster["items"].as_array().unwrap().len(), 1, "{roster}");
    assert_eq!(roster["items"][0]["user_id"], student_id.to_string());
    assert_eq!(roster["items"][0]["source"], "order");
    assert_eq!(roster["items"][0]["order_id"], id);
    assert_ledger_sound(&app).await;
}

// ------------------------------------------------------------------------------------------
// Teacher earnings and payouts

/// A teacher whose course a student bought from the wallet: 9900 paid, 8910 earned (10 % fee).
async fn teacher_with_earnings(app: &TestApp) -> (Uuid, String) {
    let (teacher_id, teacher) = app
        .user_with(&unique_email("earner"), PW, &[Role::Teacher])
        .await;
    let (student_id, student) = app
        .user_with(&unique_email("payer"), PW, &[Role::Student])
        .await;
    let course: Value = post(
        app,
        "/api/v1/courses",
        &teacher,
        None,
        &json!({"title": "Sold", "price": {"amount": 9900, "currency": "CNY"}, "visibility": "published"}),
    )
    .await
    .json()
    .await
    .unwrap();
    fund(&pool(app).await, student_id, 9900).await;
    let r = post(
        app,
        "/api/v1/orders",
        &student,
        None,
        &json!({"kind": "course", "course_id": course["id"], "provider": "wallet",
                "amount": {"amount": 9900, "currency": "CNY"}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    (teacher_id, teacher)
}

async fn earnings_of(app: &TestApp, token: &str) -> Value {
    let r = app.get_auth("/api/v1/earnings", token).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn account_posted(pool: &PgPool, kind: &str, provider: Option<&str>) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(posted), 0)::bigint FROM ledger_accounts
          WHERE kind = $1 AND ($2::text IS NULL OR provider = $2)",
    )
    .bind(kind)
    .bind(provider)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn payout_body(amount: i64) -> Value {
    json!({"amount": {"amount": amount, "currency": "CNY"}, "method": "bank_transfer",
           "destination": "CN12 3456 7890", "note": "November"})
}

#[tokio::test]
async fn a_teacher_withdraws_earnings_through_payouts_an_admin_approves_pays_or_rejects() {
    let app = app_with(|_| {}).await;
    let pool = pool(&app).await;
    let (teacher_id, teacher) = teacher_with_earnings(&app).await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let (_, other) = app
        .user_with(&unique_email("other"), PW, &[Role::Teacher])
        .await;
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(e["balance"]["amount"], 8910);
    assert_eq!(e["available"]["amount"], 8910);
    let tx: Value = app
        .get_auth("/api/v1/earnings/transactions", &teacher)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tx["items"][0]["kind"], "purchase");
    assert_eq!(tx["items"][0]["amount"]["amount"], 8910);

    // A request holds the amount; the same key and body replay it; another body is refused.
    let r = post(
        &app,
        "/api/v1/payouts",
        &teacher,
        Some("p-1"),
        &payout_body(5000),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], "pending");
    assert_eq!(p["teacher_id"], teacher_id.to_string());
    let r = post(
        &app,
        "/api/v1/payouts",
        &teacher,
        Some("p-1"),
        &payout_body(5000),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.json::<Value>().await.unwrap()["id"], p["id"]);
    assert_problem(
        post(
            &app,
            "/api/v1/payouts",
            &teacher,
            Some("p-1"),
            &payout_body(1000),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(
        (
            e["balance"]["amount"].as_i64(),
            e["held"]["amount"].as_i64(),
            e["available"]["amount"].as_i64()
        ),
        (Some(8910), Some(5000), Some(3910))
    );
    // More than is available, less than the minimum, a bad method: refused.
    assert_problem(
        post(&app, "/api/v1/payouts", &teacher, None, &payout_body(4000)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "insufficient_earnings",
    )
    .await;
    assert_problem(
        post(&app, "/api/v1/payouts", &teacher, None, &payout_body(99)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let mut bad = payout_body(100);
    bad["method"] = json!("cash");
    assert_problem(
        post(&app, "/api/v1/payouts", &teacher, None, &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    // Another teacher neither sees it nor cancels it; the admin sees everyone's.
    let pid = p["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.get_auth(&format!("/api/v1/payouts/{pid}"), &other)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_problem(
        post(
            &app,
            &format!("/api/v1/payouts/{pid}/cancel"),
            &other,
            None,
            &json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let theirs: Value = app
        .get_auth("/api/v1/payouts", &other)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["items"], json!([]));
    let all: Value = app
        .get_auth(
            &format!("/api/v1/payouts?teacher_id={teacher_id}&status=pending"),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);

    // Approve: the hold is posted into payouts payable. Paying it: payouts payable → the
    // bank transfer clearing account. Both idempotent by key; a second approval is refused.
    let r = post(
        &app,
        &format!("/api/v1/admin/payouts/{pid}/approve"),
        &admin,
        Some("ap-1"),
        &json!({}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "approved");
    let r = post(
        &app,
        &format!("/api/v1/admin/payouts/{pid}/approve"),
        &admin,
        Some("ap-1"),
        &json!({}),
    )
    .await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_problem(
        post(
            &app,
            &format!("/api/v1/admin/payouts/{pid}/approve"),
            &admin,
            None,
            &json!({}),
        )
        .await,
        StatusCode::CONFLICT,
        "payout_not_pending",
    )
    .await;
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(
        (
            e["balance"]["amount"].as_i64(),
            e["held"]["amount"].as_i64(),
            e["paid_out"]["amount"].as_i64()
        ),
        (Some(3910), Some(0), Some(5000))
    );
    assert_eq!(account_posted(&pool, "payouts_payable", None).await, 5000);
    // (A refund of the course now would be clawed back: see the tests below.)
    let paid: Value = post(
        &app,
        &format!("/api/v1/admin/payouts/{pid}/paid"),
        &admin,
        Some("paid-1"),
        &json!({"reference": "BANK-2026-0001"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["paid_reference"], "BANK-2026-0001");
    assert_eq!(account_posted(&pool, "payouts_payable", None).await, 0);
    assert_eq!(
        account_posted(&pool, "provider_clearing", Some("bank_transfer")).await,
        5000
    );
    assert_problem(
        post(
            &app,
            &format!("/api/v1/admin/payouts/{pid}/paid"),
            &admin,
            None,
            &json!({"reference": "again"}),
        )
        .await,
        StatusCode::CONFLICT,
        "payout_not_approved",
    )
    .await;

    // Rejected: the hold is voided and the money available again. Cancelled: likewise.
    let p2: Value = post(&app, "/api/v1/payouts", &teacher, None, &payout_body(1000))
        .await
        .json()
        .await
        .unwrap();
    let p2id = p2["id"].as_str().unwrap();
    assert_problem(
        post(
            &app,
            &format!("/api/v1/admin/payouts/{p2id}/paid"),
            &admin,
            None,
            &json!({"reference": "x"}),
        )
        .await,
        StatusCode::CONFLICT,
        "payout_not_approved",
    )
    .await;
    let rejected: Value = post(
        &app,
        &format!("/api/v1/admin/payouts/{p2id}/reject"),
        &admin,
        None,
        &json!({"reason": "destination account closed"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["reason"], "destination account closed");
    assert_eq!(
        earnings_of(&app, &teacher).await["available"]["amount"],
        3910
    );
    let p3: Value = post(&app, "/api/v1/payouts", &teacher, None, &payout_body(3910))
        .await
        .json()
        .await
        .unwrap();
    let p3id = p3["id"].as_str().unwrap();
    assert_eq!(earnings_of(&app, &teacher).await["available"]["amount"], 0);
    let cancelled: Value = post(
        &app,
        &format!("/api/v1/payouts/{p3id}/cancel"),
        &teacher,
        None,
        &json!({}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_problem(
        post(
            &app,
            &format!("/api/v1/admin/payouts/{p3id}/approve"),
            &admin,
            None,
            &json!({}),
        )
        .await,
        StatusCode::CONFLICT,
        "payout_not_pending",
    )
    .await;
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(
        (
            e["balance"]["amount"].as_i64(),
            e["available"]["amount"].as_i64()
        ),
        (Some(3910), Some(3910))
    );
    let mine: Value = app
        .get_auth("/api/v1/payouts", &teacher)
        .await
        .json()
        .await
        .unwrap();
    let statuses: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["cancelled", "rejected", "paid"]);
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn concurrent_payout_requests_never_take_more_than_the_earnings() {
    let app = app_with(|_| {}).await;
    let (_, teacher) = teacher_with_earnings(&app).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let client = app.client.clone();
        let url = app.url("/api/v1/payouts");
        let token = teacher.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", format!("race-{i}"))
                .json(&payout_body(1000))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::UNPROCESSABLE_ENTITY => {}
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(created, 8, "8910 of earnings hold eight payouts of 1000");
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(
        (
            e["held"]["amount"].as_i64(),
            e["available"]["amount"].as_i64()
        ),
        (Some(8000), Some(910))
    );
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn payout_requests_expire_and_the_database_keeps_payouts_and_holds_in_agreement() {
    use wemaster::payments::payouts::{self, NewPayout};
    let app = app_with(|_| {}).await;
    let pool = pool(&app).await;
    let (teacher_id, teacher) = teacher_with_earnings(&app).await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let request = |amount: i64, ttl_s: i64| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let p = payouts::request(
                &mut tx,
                NewPayout {
                    teacher_id,
                    amount: wemaster::payments::Money::new(amount, Currency::cny()),
                    method: "alipay".into(),
                    destination: "teacher@alipay".into(),
                    note: String::new(),
                    hold_ttl: time::Duration::seconds(ttl_s),
                },
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            p
        }
    };

    // A request nobody decided in time: approving it is refused, the job expires it and the
    // earnings are available again.
    let stale = request(2000, -1).await;
    assert_eq!(
        earnings_of(&app, &teacher).await["available"]["amount"],
        6910
    );
    assert_problem(
        post(
            &app,
            &format!("/api/v1/admin/payouts/{}/approve", stale.id),
            &admin,
            None,
            &json!({}),
        )
        .await,
        StatusCode::CONFLICT,
        "payout_expired",
    )
    .await;
    // The generic hold expiry leaves payout holds to the payout expiry (which moves both).
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(ledger::void_expired(&mut conn).await.unwrap(), 0);
    drop(conn);
    let gateways = wemaster::payments::gateway::Gateways::new(
        &app.settings.payments,
        &app.settings.http.public_url,
    )
    .unwrap();
    let r =
        wemaster::payments::reconcile::run_once(&pool, &app.settings.payments, &gateways, &|_| {})
            .await
            .unwrap();
    assert_eq!((r.payouts_expired, r.ledger_mismatches), (1, 0));
    let p: Value = app
        .get_auth(&format!("/api/v1/payouts/{}", stale.id), &teacher)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["status"], "expired");
    assert_eq!(
        earnings_of(&app, &teacher).await["available"]["amount"],
        8910
    );

    // Attacks in SQL: a status that disagrees with the hold, a hold resolved behind the
    // payout's back, an edit, a delete, a status going back, a payout transfer with no payout.
    let live = request(1000, 600).await;
    let commit_err = |sql: &'static str, id: Uuid| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            match sqlx::query(sql).bind(id).execute(&mut *tx).await {
                Err(e) => db_error(e),
                Ok(_) => db_error(tx.commit().await.unwrap_err()),
            }
        }
    };
    let msg = commit_err(
        "UPDATE payouts SET status = 'approved' WHERE id = $1",
        live.id,
    )
    .await;
    assert!(msg.contains("is approved but its hold is pending"), "{msg}");
    let msg = commit_err(
        "UPDATE ledger_transfers SET state = 'voided' WHERE id = $1",
        live.hold_id,
    )
    .await;
    assert!(msg.contains("is pending but its hold is voided"), "{msg}");
    let msg = commit_err(
        "UPDATE ledger_transfers SET state = 'posted' WHERE id = $1",
        live.hold_id,
    )
    .await;
    assert!(msg.contains("is pending but its hold is posted"), "{msg}");
    let msg = commit_err("UPDATE payouts SET amount = 1 WHERE id = $1", live.id).await;
    assert!(msg.contains("immutable"), "{msg}");
    let msg = commit_err("DELETE FROM payouts WHERE id = $1", live.id).await;
    assert!(msg.contains("never deleted"), "{msg}");
    let msg = commit_err(
        "UPDATE payouts SET status = 'pending' WHERE id = $1",
        stale.id,
    )
    .await;
    assert!(msg.contains("cannot go from expired to pending"), "{msg}");
    let mut tx = pool.begin().await.unwrap();
    let c = Currency::cny();
    let earnings = ledger::account(&mut tx, &AccountRef::TeacherEarnings(teacher_id), &c)
        .await
        .unwrap();
    let payable = ledger::account(&mut tx, &AccountRef::PayoutsPayable, &c)
        .await
        .unwrap();
    ledger::record(
        &mut tx,
        &NewTransfer::simple(
            Uuid::now_v7(),
            TransferKind::Payout,
            c,
            earnings,
            payable,
            100,
        ),
    )
    .await
    .unwrap();
    let msg = db_error(tx.commit().await.unwrap_err());
    assert!(msg.contains("belongs to no payout"), "{msg}");

    // Nothing of that stuck: the live request is still pending and holding its amount.
    let p: Value = app
        .get_auth(&format!("/api/v1/payouts/{}", live.id), &teacher)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["status"], "pending");
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(
        (
            e["held"]["amount"].as_i64(),
            e["available"]["amount"].as_i64()
        ),
        (Some(1000), Some(7910))
    );
    assert_ledger_sound(&app).await;
}

// ------------------------------------------------------------------------------------------
// Refunds after a payout: clawed back into the teacher's receivable, repaid by the next sales

/// A published course of `teacher` at `price`; its id.
async fn course_at(app: &TestApp, teacher: &str, price: i64) -> Value {
    let course: Value = post(
        app,
        "/api/v1/courses",
        teacher,
        None,
        &json!({"title": "Sold", "price": {"amount": price, "currency": "CNY"}, "visibility": "published"}),
    )
    .await
    .json()
    .await
    .unwrap();
    course["id"].clone()
}

/// A new student buys `course` (at `price`) from their wallet: (their token, the order id).
async fn sell(app: &TestApp, pool: &PgPool, course: &Value, price: i64) -> (String, String) {
    let (student_id, student) = app
        .user_with(&unique_email("buyer"), PW, &[Role::Student])
        .await;
    fund(pool, student_id, price).await;
    let r = post(
        app,
        "/api/v1/orders",
        &student,
        None,
        &json!({"kind": "course", "course_id": course, "provider": "wallet",
                "amount": {"amount": price, "currency": "CNY"}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let order: Value = r.json().await.unwrap();
    assert_eq!(order["status"], "paid", "{order}");
    (student, order["id"].as_str().unwrap().to_string())
}

/// A payout of `amount` requested, approved and paid: the money has left the earnings.
async fn pay_out(app: &TestApp, teacher: &str, admin: &str, amount: i64) {
    let p: Value = post(app, "/api/v1/payouts", teacher, None, &payout_body(amount))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["status"], "pending", "{p}");
    let id = p["id"].as_str().unwrap();
    let r = post(
        app,
        &format!("/api/v1/admin/payouts/{id}/approve"),
        admin,
        None,
        &json!({}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = post(
        app,
        &format!("/api/v1/admin/payouts/{id}/paid"),
        admin,
        None,
        &json!({"reference": "BANK-CLAW"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Fields of an earnings answer, in minor units.
fn amounts(e: &Value, fields: &[&str]) -> Vec<i64> {
    fields
        .iter()
        .map(|f| {
            e[*f]["amount"]
                .as_i64()
                .unwrap_or_else(|| panic!("no {f} in {e}"))
        })
        .collect()
}

/// The teacher's receivable as stored: (posted, held).
async fn receivable_of(pool: &PgPool, teacher: Uuid) -> (i64, i64) {
    sqlx::query_as(
        "SELECT posted, pending_out FROM ledger_accounts
          WHERE kind = 'teacher_receivable' AND owner_id = $1",
    )
    .bind(teacher)
    .fetch_optional(pool)
    .await
    .unwrap()
    .unwrap_or((0, 0))
}

/// The legs the teacher sees on `/earnings/transactions?{query}`: (account kind, amount),
/// sorted.
async fn teacher_legs(app: &TestApp, teacher: &str, query: &str) -> Vec<(String, i64)> {
    let tx: Value = app
        .get_auth(&format!("/api/v1/earnings/transactions?{query}"), teacher)
        .await
        .json()
        .await
        .unwrap();
    let mut legs: Vec<(String, i64)> = tx["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{tx}"))
        .iter()
        .map(|t| {
            (
                t["account_kind"].as_str().unwrap().to_string(),
                t["amount"]["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    legs.sort();
    legs
}

fn leg(kind: &str, amount: i64) -> (String, i64) {
    (kind.to_string(), amount)
}

#[tokio::test]
async fn a_refund_after_a_payout_is_owed_by_the_teacher_and_repaid_by_the_next_sale() {
    let app = app_with(|_| {}).await;
    let pool = pool(&app).await;
    let (teacher_id, teacher) = app
        .user_with(&unique_email("clawed"), PW, &[Role::Teacher])
        .await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let cheap = course_at(&app, &teacher, 9900).await;
    let dear = course_at(&app, &teacher, 19_900).await;
    let (student, order) = sell(&app, &pool, &cheap, 9900).await;
    pay_out(&app, &teacher, &admin, 8910).await;
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(amounts(&e, &["balance", "available", "owed"]), [0, 0, 0]);

    // The full refund to the wallet succeeds: the student gets the whole price back, the fee
    // comes from the platform's revenue, and the teacher owes their share.
    let r = post(
        &app,
        "/api/v1/refunds",
        &admin,
        Some("claw-1"),
        &json!({"order_id": order, "destination": "wallet", "reason": "course cancelled"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let refund: Value = r.json().await.unwrap();
    assert_eq!(refund["status"], "succeeded", "{refund}");
    assert_eq!(wallet_of(&app, &student).await["balance"]["amount"], 9900);
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(
        amounts(&e, &["balance", "held", "available", "owed", "paid_out"]),
        [0, 0, 0, 8910, 8910]
    );
    assert_eq!(receivable_of(&pool, teacher_id).await, (-8910, 0));
    assert_eq!(account_posted(&pool, "platform_revenue", None).await, 0);
    assert_ledger_sound(&app).await;

    // The teacher sees why, in JSON and in the CSV export.
    assert_eq!(
        teacher_legs(&app, &teacher, "kind=refund").await,
        [leg("teacher_receivable", -8910)]
    );
    let csv = app
        .get_auth("/api/v1/earnings/transactions?format=csv", &teacher)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.starts_with(
            "id,created_at,kind,state,amount,currency,order_id,refund_id,description,account_kind\n"
        ),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.contains(",refund,posted,-8910,CNY,") && l.ends_with(",teacher_receivable")),
        "{csv}"
    );

    // The next sale (share 17,910) repays the 8,910 owed first; 9,000 is earned.
    let (_, second) = sell(&app, &pool, &dear, 19_900).await;
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(
        amounts(&e, &["balance", "available", "owed"]),
        [9000, 9000, 0]
    );
    assert_eq!(receivable_of(&pool, teacher_id).await, (0, 0));
    assert_eq!(
        teacher_legs(&app, &teacher, &format!("order_id={second}")).await,
        [
            leg("teacher_earnings", 9000),
            leg("teacher_receivable", 8910)
        ]
    );

    // PostgreSQL keeps a receivable a debt or nothing, and a teacher's.
    let receivable: Uuid = sqlx::query_scalar(
        "SELECT id FROM ledger_accounts WHERE kind = 'teacher_receivable' AND owner_id = $1",
    )
    .bind(teacher_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let mut tx = pool.begin().await.unwrap();
    let clearing = ledger::account(
        &mut tx,
        &AccountRef::ProviderClearing("sandbox".into()),
        &Currency::cny(),
    )
    .await
    .unwrap();
    let credit = NewTransfer::simple(
        Uuid::now_v7(),
        TransferKind::Adjustment,
        Currency::cny(),
        clearing,
        receivable,
        1,
    );
    let e = ledger::record(&mut tx, &credit).await.unwrap_err();
    assert!(
        format!("{e:?}").contains("ledger_accounts_receivable_not_positive"),
        "{e:?}"
    );
    tx.rollback().await.unwrap();
    let e = sqlx::query(
        "INSERT INTO ledger_accounts (id, kind, currency) VALUES ($1, 'teacher_receivable', 'CNY')",
    )
    .bind(Uuid::now_v7())
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(db_error(e).contains("ledger_accounts_owner"));
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn a_refund_while_a_payout_request_holds_earnings_takes_only_what_is_available() {
    let app = app_with(|_| {}).await;
    let pool = pool(&app).await;
    let (teacher_id, teacher) = app
        .user_with(&unique_email("held"), PW, &[Role::Teacher])
        .await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let course = course_at(&app, &teacher, 9900).await;
    let (student, order) = sell(&app, &pool, &course, 9900).await;
    let p: Value = post(&app, "/api/v1/payouts", &teacher, None, &payout_body(5000))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["status"], "pending");

    // 3,910 is available: that much comes from the earnings, 5,000 is owed; the request's
    // hold is untouched.
    let r = post(
        &app,
        "/api/v1/refunds",
        &admin,
        None,
        &json!({"order_id": order, "destination": "wallet"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "succeeded");
    assert_eq!(wallet_of(&app, &student).await["balance"]["amount"], 9900);
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(
        amounts(&e, &["balance", "held", "available", "owed"]),
        [5000, 5000, 0, 5000]
    );
    assert_eq!(
        teacher_legs(&app, &teacher, "kind=refund").await,
        [
            leg("teacher_earnings", -3910),
            leg("teacher_receivable", -5000)
        ]
    );
    assert_ledger_sound(&app).await;

    // The payout still goes through; the debt waits for the next sale.
    let pid = p["id"].as_str().unwrap();
    for (path, body) in [
        ("approve", json!({})),
        ("paid", json!({"reference": "BANK-HELD"})),
    ] {
        let r = post(
            &app,
            &format!("/api/v1/admin/payouts/{pid}/{path}"),
            &admin,
            None,
            &body,
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(
        amounts(&e, &["balance", "held", "owed", "paid_out"]),
        [0, 0, 5000, 5000]
    );
    assert_eq!(receivable_of(&pool, teacher_id).await, (-5000, 0));
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn a_course_refund_through_the_provider_holds_the_clawback_until_the_provider_answers() {
    // No sandbox callbacks: the test decides the payment and the refunds' outcomes.
    let app = app_with(|s| s.payments.sandbox.outcome = "none".into()).await;
    let pool = pool(&app).await;
    let (teacher_id, teacher) = app
        .user_with(&unique_email("provider"), PW, &[Role::Teacher])
        .await;
    let (_, student) = app
        .user_with(&unique_email("card"), PW, &[Role::Student])
        .await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let course = course_at(&app, &teacher, 9900).await;
    let r = post(
        &app,
        "/api/v1/orders",
        &student,
        None,
        &json!({"kind": "course", "course_id": course, "provider": "sandbox",
                "amount": {"amount": 9900, "currency": "CNY"}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let order: Value = r.json().await.unwrap();
    let order_id = Uuid::parse_str(order["id"].as_str().unwrap()).unwrap();
    let mut tx = pool.begin().await.unwrap();
    wemaster::payments::orders::confirm(&mut tx, order_id, Some("pi_course"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    pay_out(&app, &teacher, &admin, 8910).await;

    let refund = |body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let r = post(app, "/api/v1/refunds", &admin, None, &body).await;
            assert_eq!(r.status(), StatusCode::CREATED);
            let refund: Value = r.json().await.unwrap();
            assert_eq!(
                (refund["status"].as_str(), refund["provider"].as_str()),
                (Some("pending"), Some("sandbox"))
            );
            Uuid::parse_str(refund["id"].as_str().unwrap()).unwrap()
        }
    };
    let resolve = |id: Uuid, succeeded: bool| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let done =
                wemaster::payments::refunds::resolve(&mut tx, id, "sandbox", succeeded, "declined")
                    .await
                    .unwrap();
            tx.commit().await.unwrap();
            assert!(done);
        }
    };

    // A partial refund of 5,000: its teacher share (4,500) is held on the receivable, not owed
    // yet; the provider declines it and the hold is voided, as if nothing happened.
    let partial = refund(json!({"order_id": order_id, "destination": "original",
                                "amount": {"amount": 5000, "currency": "CNY"}}))
    .await;
    assert_eq!(receivable_of(&pool, teacher_id).await, (0, 4500));
    assert_eq!(earnings_of(&app, &teacher).await["owed"]["amount"], 0);
    resolve(partial, false).await;
    assert_eq!(receivable_of(&pool, teacher_id).await, (0, 0));
    let o = wait_order(&app, &student, &order_id.to_string(), "paid").await;
    assert_eq!(o["refunded"]["amount"], 0);
    assert_ledger_sound(&app).await;

    // The full refund succeeds at the provider: the hold is posted, the teacher owes the whole
    // share, and refunds payable is settled against the provider.
    let full = refund(json!({"order_id": order_id, "destination": "original"})).await;
    assert_eq!(receivable_of(&pool, teacher_id).await, (0, 8910));
    resolve(full, true).await;
    assert_eq!(receivable_of(&pool, teacher_id).await, (-8910, 0));
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(amounts(&e, &["balance", "held", "owed"]), [0, 0, 8910]);
    assert_eq!(account_posted(&pool, "refunds_payable", None).await, 0);
    assert_eq!(account_posted(&pool, "platform_revenue", None).await, 0);
    wait_order(&app, &student, &order_id.to_string(), "refunded").await;
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn a_refund_racing_payout_requests_never_overdraws_the_earnings() {
    let app = app_with(|_| {}).await;
    let pool = pool(&app).await;
    let (_, teacher) = app
        .user_with(&unique_email("racer"), PW, &[Role::Teacher])
        .await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let course = course_at(&app, &teacher, 9900).await;
    let (_, order) = sell(&app, &pool, &course, 9900).await;
    let send = |token: String, path: &'static str, body: Value| {
        let client = app.client.clone();
        let url = app.url(path);
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let mut payouts = Vec::new();
    for _ in 0..5 {
        payouts.push(send(teacher.clone(), "/api/v1/payouts", payout_body(1000)));
    }
    let refund = send(
        admin.clone(),
        "/api/v1/refunds",
        json!({"order_id": order, "destination": "wallet"}),
    );
    for _ in 0..5 {
        payouts.push(send(teacher.clone(), "/api/v1/payouts", payout_body(1000)));
    }
    assert_eq!(refund.await.unwrap(), StatusCode::CREATED);
    let mut held = 0;
    for p in payouts {
        match p.await.unwrap() {
            StatusCode::CREATED => held += 1000,
            StatusCode::UNPROCESSABLE_ENTITY => {}
            s => panic!("unexpected {s}"),
        }
    }
    // Whatever the order: the refund took what was not held, the rest is owed, and what the
    // requests hold is still on the account.
    let e = earnings_of(&app, &teacher).await;
    assert_eq!(
        amounts(&e, &["balance", "held", "available", "owed"]),
        [held, held, 0, held]
    );
    assert_ledger_sound(&app).await;
}

#[tokio::test]
async fn admins_see_provider_events_orders_and_refunds() {
    let app = app_with(|_| {}).await;
    let (student_id, student) = app
        .user_with(&unique_email("topup"), PW, &[Role::Student])
        .await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let body = json!({"kind": "wallet_topup", "amount": {"amount": 500, "currency": "CNY"}, "provider": "sandbox"});
    let order: Value = post(&app, "/api/v1/orders", &student, None, &body)
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap().to_string();
    wait_order(&app, &student, &id, "paid").await;

    let events: Value = app
        .get_auth("/api/v1/admin/payments/events?provider=sandbox", &admin)
        .await
        .json()
        .await
        .unwrap();
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{events}");
    assert_eq!(items[0]["order_id"], id.as_str());
    assert_eq!(items[0]["outcome"], "applied");
    assert_eq!(items[0]["event_type"], "payment_intent.succeeded");
    assert_eq!(items[0]["payload"]["data"]["object"]["amount"], 500);
    let none: Value = app
        .get_auth(
            "/api/v1/admin/payments/events?outcome=amount_mismatch",
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["items"], json!([]));
    assert_eq!(
        app.get_auth("/api/v1/admin/payments/events", &student)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    // Orders and refunds: staff see everyone's, filtered by user.
    let orders: Value = app
        .get_auth(
            &format!("/api/v1/orders?user_id={student_id}&status=paid"),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(orders["items"][0]["id"], id.as_str());
    let r = post(
        &app,
        "/api/v1/refunds",
        &admin,
        None,
        &json!({"order_id": id, "amount": {"amount": 100, "currency": "CNY"}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let refunds: Value = app
        .get_auth(&format!("/api/v1/refunds?order_id={id}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refunds["items"].as_array().unwrap().len(), 1);
    assert_ledger_sound(&app).await;
}
