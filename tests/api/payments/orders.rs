//! Orders: top-ups, validation, expiry, course purchases, and the admin views.

#[allow(unused_imports)]
use super::*;

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

#[tokio::test]
async fn admins_see_provider_events_orders_and_refunds() {
    let app = app_with(|_| {}).await;
    let (student_id, student) = app
        .user_with(&unique_email("topup"), PW, &[Role::Student])
        .await;
    let (_, admin) = app
        .user_with(&unique_email("admin"), PW, &[Role::Admin])
        .await;
    let id = paid_topup(&app, &student, 500).await;

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
