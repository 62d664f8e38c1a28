//! Refunds after the teacher was paid: the receivable, its repayment, and races with payouts.

#[allow(unused_imports)]
use super::*;

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
