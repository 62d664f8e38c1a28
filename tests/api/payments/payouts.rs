//! Teachers' payouts: requests, decisions, concurrency, expiry.

#[allow(unused_imports)]
use super::*;

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
        &app.settings.http.default_public_url(),
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
