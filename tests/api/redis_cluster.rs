//! WeMaster on a Redis Cluster (3 masters on loopback, started by scripts/test): what the
//! cluster changes — pipelines whose keys lie in several slots, pub/sub across nodes, finding a
//! node to start from. The behaviour on top (chat across two server nodes, the persister dying,
//! live interaction, notifications, sessions, rate limits) is the other suites' tests, which
//! scripts/test runs a second time on this cluster (`WEMASTER_TEST_REDIS=cluster`).

use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::json;
use wemaster::{cache::Redis, config::Secret};

use crate::helpers::{base_settings, free_port, redis_cluster_url, spawn_app_with};

fn cluster_settings(url: String, seeds: Vec<String>) -> wemaster::config::RedisSettings {
    let mut r = base_settings().redis;
    r.url = Secret::new(url);
    r.cluster = true;
    r.cluster_seeds = seeds;
    r
}

/// The masters' addresses, as the cluster itself lists them.
async fn masters() -> Vec<String> {
    let mut c = redis::Client::open(redis_cluster_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut c)
        .await
        .unwrap();
    nodes
        .lines()
        .filter(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("master")))
        .map(|l| {
            let addr = l.split(' ').nth(1).unwrap();
            format!("redis://{}", addr.split('@').next().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn pipelines_over_keys_of_every_master_answer_in_order_and_publishes_keep_their_order() {
    let masters = masters().await;
    assert_eq!(
        masters.len(),
        3,
        "the test cluster has 3 masters: {masters:?}"
    );
    let redis = Redis::connect(&cluster_settings(redis_cluster_url(), vec![]))
        .await
        .unwrap();
    assert!(redis.is_cluster());
    redis.ping().await.expect("every master answers PING");
    let tag = uuid::Uuid::new_v4().simple().to_string();
    // 64 keys: each master holds a third of the slots, so all three get some (the chance that
    // one gets none is 3·(2/3)^64 ≈ 2·10⁻¹¹).
    let keys: Vec<String> = (0..64).map(|i| format!("wm:test:{tag}:{i}")).collect();
    let mut conn = redis.conn();
    let mut set = redis::pipe();
    for (i, k) in keys.iter().enumerate() {
        set.set_ex(k, i, 60).ignore();
    }
    let () = set.query_async(&mut conn).await.unwrap();
    let mut get = redis::pipe();
    for k in &keys {
        get.get(k);
    }
    let got: Vec<usize> = get.query_async(&mut conn).await.unwrap();
    assert_eq!(
        got,
        (0..64).collect::<Vec<_>>(),
        "answers in the pipeline's order"
    );
    // The keys really are spread: every master holds some of them.
    for m in &masters {
        let mut c = redis::Client::open(m.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut held = 0;
        for k in &keys {
            // A master answers MOVED for keys it does not own; count the ones it has.
            if let Ok(Some(_)) = c.get::<_, Option<usize>>(k).await {
                held += 1;
            }
        }
        assert!(held > 0, "{m} holds none of the 64 keys");
    }

    // PUBLISH is routed by its channel; mixed with keys of other slots (as the chat persister's
    // batch is: its events and its acknowledgements), a channel's messages stay in order, and a
    // subscriber on another master hears them (classic pub/sub crosses the cluster).
    let channel = format!("wm:test:{tag}:events");
    let mut ps = redis::Client::open(masters[2].as_str())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    ps.subscribe(&channel).await.unwrap();
    let mut heard = ps.into_on_message();
    let mut mixed = redis::pipe();
    for (i, k) in keys.iter().enumerate().take(20) {
        mixed.publish(&channel, i).ignore().incr(k, 100).ignore();
    }
    let () = mixed.query_async(&mut conn).await.unwrap();
    for i in 0..20 {
        let m = tokio::time::timeout(Duration::from_secs(5), heard.next())
            .await
            .expect("the publish reached a subscriber on another master")
            .unwrap();
        assert_eq!(m.get_payload::<usize>().unwrap(), i, "in order");
    }
    let first: usize = conn.get(&keys[0]).await.unwrap();
    assert_eq!(first, 100);

    // A transaction within one slot (a rate limit's INCR + EXPIRE + TTL) works as on one Redis.
    let counter = format!("wm:test:{tag}:counter");
    let (n, ttl): (u64, i64) = redis::pipe()
        .atomic()
        .incr(&counter, 1u64)
        .expire(&counter, 60)
        .ignore()
        .ttl(&counter)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((n, ttl > 0), (1, true));
}

#[tokio::test]
async fn a_server_starts_from_any_seed_that_answers_and_reports_the_cluster_ready() {
    // The first node named is down; the second seed is a live node of the cluster.
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let settings = cluster_settings(dead.clone(), vec![redis_cluster_url()]);
    let app = spawn_app_with(move |s| s.redis = settings).await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    let redis = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "redis")
        .cloned()
        .unwrap_or(json!(null));
    assert_eq!(redis["status"], "ok", "{body}");
    assert_eq!(body["status"], "ok", "{body}");

    // Sessions and rate limits on the cluster: a login, its logout revoking the access token
    // (the revocation key), failed logins counted per account and address (keys in several
    // slots in one request).
    app.register("seed@school.example", "a fine passphrase")
        .await;
    let t = app.login("seed@school.example", "a fine passphrase").await;
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_auth("/api/v1/me", access).await.status(),
        StatusCode::OK
    );
    let r = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .bearer_auth(access)
        .json(&json!({"refresh_token": t["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_auth("/api/v1/me", access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Without any seed that answers, the server does not start, and says which setting.
    let mut s = base_settings();
    s.redis = cluster_settings(dead, vec![]);
    s.redis.timeout_s = 1;
    let e = match wemaster::startup::Application::build(s).await {
        Ok(_) => panic!("started without Redis"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("redis.url"), "{e}");
    app.stop().await;
}
