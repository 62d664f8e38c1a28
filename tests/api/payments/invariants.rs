//! The ledger: database invariants, holds, concurrent spending.

#[allow(unused_imports)]
use super::*;

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
        &app.settings.http.default_public_url(),
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
