//! Presigned URLs of the local storage backend, served by `/objects/{key}`.

use std::time::Duration;

use reqwest::StatusCode;
use wemaster::storage::{ObjectKey, PresignMethod};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn presigned_put_then_get_round_trips_with_ranges() {
    let app = spawn_app().await;
    let storage = &app_state_storage(&app).await;
    let key = ObjectKey::parse("uploads/lesson-1/notes.txt").unwrap();
    let put = storage
        .presign(PresignMethod::Put, &key, Duration::from_secs(60))
        .await
        .unwrap();
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let r = app
        .client
        .put(put.as_str())
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let get = storage
        .presign(PresignMethod::Get, &key, Duration::from_secs(60))
        .await
        .unwrap();
    let r = app.client.get(get.as_str()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.bytes().await.unwrap().as_ref(), body.as_slice());

    let r = app
        .client
        .get(get.as_str())
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &body[100..200]);

    let r = app
        .client
        .get(get.as_str())
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &body[9_990..]);

    let r = app
        .client
        .get(get.as_str())
        .header("range", "bytes=20000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */10000");
}

#[tokio::test]
async fn presigned_urls_refuse_tampering_expiry_and_the_other_method() {
    let app = spawn_app().await;
    let storage = &app_state_storage(&app).await;
    let key = ObjectKey::parse("private/a.bin").unwrap();
    let get = storage
        .presign(PresignMethod::Get, &key, Duration::from_secs(60))
        .await
        .unwrap();

    // The GET URL does not allow a PUT.
    let r = app.client.put(get.as_str()).body("x").send().await.unwrap();
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    // Another key with the same signature.
    let other = get.as_str().replace("private/a.bin", "private/b.bin");
    assert_problem(
        app.client.get(other).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // A later expiry with the same signature.
    let mut later = get.clone();
    let pairs: Vec<(String, String)> = get
        .query_pairs()
        .map(|(k, v)| {
            if k == "expires" {
                (k.into_owned(), "99999999999".to_string())
            } else {
                (k.into_owned(), v.into_owned())
            }
        })
        .collect();
    later.query_pairs_mut().clear().extend_pairs(pairs);
    assert_problem(
        app.client.get(later.as_str()).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Expired.
    let expired = storage
        .presign(PresignMethod::Get, &key, Duration::from_secs(0))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_problem(
        app.client.get(expired.as_str()).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // No signature at all.
    let r = app.get("/objects/private/a.bin").await;
    assert_problem(r, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_and_leave_nothing() {
    let app = crate::helpers::spawn_app_with(|s| s.http.upload_limit_bytes = 1000).await;
    let storage = &app_state_storage(&app).await;
    let key = ObjectKey::parse("big/file.bin").unwrap();
    let put = storage
        .presign(PresignMethod::Put, &key, Duration::from_secs(60))
        .await
        .unwrap();
    let r = app
        .client
        .put(put.as_str())
        .body(vec![7u8; 5000])
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(matches!(
        storage.head(&key).await,
        Err(wemaster::storage::StorageError::NotFound(_))
    ));
}

/// A second handle on the app's local storage (same root and signing key).
async fn app_state_storage(app: &crate::helpers::TestApp) -> wemaster::storage::Storage {
    wemaster::storage::Storage::from_settings(
        &app.settings.storage,
        &app.settings.http.default_public_url(),
    )
    .await
    .unwrap()
}
