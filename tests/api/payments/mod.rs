//! Payments: the ledger's database-enforced invariants (each attacked directly in SQL), a
//! concurrency test on one wallet, orders paid through the sandbox, Stripe, Alipay and WeChat
//! Pay callbacks (keys generated here, payloads built as each provider documents), idempotency
//! keys, refunds and the reconciliation job. Every test ends by auditing the ledger.
//!
//! One file per topic; the helpers every topic shares are here.

mod callbacks;
mod clawback;
mod invariants;
mod orders;
mod payouts;
mod refunds;

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

pub(super) const PW: &str = "a fine passphrase";

pub(super) async fn app_with(tweak: impl FnOnce(&mut wemaster::config::Settings)) -> TestApp {
    spawn_app_with(tweak).await
}

pub(super) async fn pool(app: &TestApp) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(20)
        .connect(&app.database_url)
        .await
        .unwrap()
}

/// The ledger audit: stored balances equal the sum of transfers; posted legs sum to zero.
pub(super) async fn assert_ledger_sound(app: &TestApp) {
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
pub(super) async fn fund(pool: &PgPool, user: Uuid, amount: i64) -> (Uuid, Uuid) {
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

pub(crate) async fn wallet_of(app: &TestApp, token: &str) -> Value {
    let r = app.get_auth("/api/v1/wallet", token).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

pub(crate) async fn post(
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

pub(crate) async fn wait_order(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
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

/// A wallet top-up of `amount` fen through the sandbox, waited for until paid; its order id.
pub(crate) async fn paid_topup(app: &TestApp, token: &str, amount: i64) -> String {
    let body = json!({"kind": "wallet_topup", "amount": {"amount": amount, "currency": "CNY"},
                      "provider": "sandbox"});
    let order: Value = post(app, "/api/v1/orders", token, None, &body)
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().expect("an order").to_string();
    wait_order(app, token, &id, "paid").await;
    id
}

pub(super) fn db_error(e: sqlx::Error) -> String {
    e.as_database_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

// ------------------------------------------------------------------------------------------
// Stripe

pub(super) const STRIPE_SECRET: &str = "whsec_test_0123456789";

pub(super) fn stripe_event(event_id: &str, order_ref: &str, amount: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": event_id, "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_3Mtw", "object": "payment_intent", "amount": amount,
                 "currency": "cny", "status": "succeeded", "metadata": {"order_id": order_ref}}}
    }))
    .unwrap()
}

pub(super) async fn send_stripe(app: &TestApp, body: &[u8], header: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/payments/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("Stripe-Signature", header)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

// ------------------------------------------------------------------------------------------
// Alipay

pub(super) fn rsa_key() -> (RsaKeyPair, String) {
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let spki = key.public_key().as_der().unwrap();
    let b64 = B64.encode(spki.as_ref());
    (key, b64)
}

pub(super) fn rsa_sign(key: &RsaKeyPair, msg: &[u8]) -> String {
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
        .unwrap();
    B64.encode(sig)
}

// ------------------------------------------------------------------------------------------
// Teacher earnings and payouts

/// A teacher whose course a student bought from the wallet: 9900 paid, 8910 earned (10 % fee).
pub(super) async fn teacher_with_earnings(app: &TestApp) -> (Uuid, String) {
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

pub(super) async fn earnings_of(app: &TestApp, token: &str) -> Value {
    let r = app.get_auth("/api/v1/earnings", token).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

pub(super) async fn account_posted(pool: &PgPool, kind: &str, provider: Option<&str>) -> i64 {
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

pub(super) fn payout_body(amount: i64) -> Value {
    json!({"amount": {"amount": amount, "currency": "CNY"}, "method": "bank_transfer",
           "destination": "CN12 3456 7890", "note": "November"})
}

// ------------------------------------------------------------------------------------------
// Refunds after a payout: clawed back into the teacher's receivable, repaid by the next sales

/// A published course of `teacher` at `price`; its id.
pub(super) async fn course_at(app: &TestApp, teacher: &str, price: i64) -> Value {
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
pub(super) async fn sell(
    app: &TestApp,
    pool: &PgPool,
    course: &Value,
    price: i64,
) -> (String, String) {
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
pub(super) async fn pay_out(app: &TestApp, teacher: &str, admin: &str, amount: i64) {
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
pub(super) fn amounts(e: &Value, fields: &[&str]) -> Vec<i64> {
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
pub(super) async fn receivable_of(pool: &PgPool, teacher: Uuid) -> (i64, i64) {
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
pub(super) async fn teacher_legs(app: &TestApp, teacher: &str, query: &str) -> Vec<(String, i64)> {
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

pub(super) fn leg(kind: &str, amount: i64) -> (String, i64) {
    (kind.to_string(), amount)
}
