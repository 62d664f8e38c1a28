//! Periodic jobs once per cluster (src/jobs.rs): a lease per job in PostgreSQL.

use std::time::Duration;

use sqlx::PgPool;
use wemaster::jobs::Lease;

use crate::helpers::{spawn_app, spawn_app_with};

async fn holders(db: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as("SELECT name, holder FROM job_leases ORDER BY name")
        .fetch_all(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_node_of_many_runs_a_job_per_interval_and_a_dead_nodes_lease_runs_out() {
    let app = spawn_app().await;
    let db = PgPool::connect(&app.database_url).await.unwrap();
    let nodes: Vec<Lease> = (0..20)
        .map(|i| Lease::with_holder(db.clone(), format!("node-{i}")))
        .collect();

    // Twenty nodes tick at the same moment: one of them runs the job.
    let claims = futures::future::join_all(
        nodes
            .iter()
            .map(|n| n.claim("test.job", Duration::from_secs(60))),
    )
    .await;
    assert_eq!(claims.iter().filter(|c| **c).count(), 1, "{claims:?}");
    let winner = claims.iter().position(|c| *c).unwrap();
    // Within its span nobody runs it again, the winner included; other jobs are apart.
    assert!(
        !nodes[winner]
            .claim("test.job", Duration::from_secs(60))
            .await
    );
    assert!(
        nodes[(winner + 1) % 20]
            .claim("other.job", Duration::from_secs(60))
            .await
    );
    let (holder,): (String,) =
        sqlx::query_as("SELECT holder FROM job_leases WHERE name = 'test.job'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(holder, format!("node-{winner}"));

    // A node that dies mid-run never gives its lease back: it runs out, another takes over.
    assert!(
        nodes[0]
            .claim("short.job", Duration::from_millis(800))
            .await
    );
    assert!(
        !nodes[1]
            .claim("short.job", Duration::from_millis(800))
            .await
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        nodes[1]
            .claim("short.job", Duration::from_millis(800))
            .await
    );
}

#[tokio::test]
async fn a_second_node_on_the_same_database_leaves_the_periodic_jobs_to_the_first() {
    let a = spawn_app().await;
    let db = PgPool::connect(&a.database_url).await.unwrap();
    let jobs = [
        "chat.upload_cleanup",
        "live.lost_nodes",
        "notifications.scan",
        "payments.reconcile",
        "recordings.retention",
        "webhooks.prune",
    ];
    // Each job's first tick comes at start.
    let mut first = Vec::new();
    for _ in 0..100 {
        first = holders(&db).await;
        if first.len() == jobs.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, jobs, "every periodic job runs under a lease");
    let node_a = first[0].1.clone();
    assert!(first.iter().all(|(_, h)| *h == node_a), "{first:?}");

    // Node B starts on the same database: its first ticks find the jobs taken for their
    // interval (a minute, an hour) and skip them.
    let url = a.database_url.clone();
    let keys = a.settings.auth.keys_dir.clone();
    let b = spawn_app_with(move |s| {
        s.database.url = wemaster::config::Secret::new(url);
        s.auth.keys_dir = keys;
    })
    .await;
    assert_eq!(b.get("/readyz").await.status(), reqwest::StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(holders(&db).await, first, "node B ran none of them");
}
