//! What ops see of recording storage: usage by owner, stream and course with names, the
//! recordings table filtered by course, and usage over time rebuilt day by day — from
//! recordings written straight into the database at chosen times (days ago), so that the
//! figures of each day are known.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use wemaster::users::Role;

use crate::{
    chat::Class,
    helpers::{TestApp, assert_problem, unique_email},
};

const PW: &str = "correct horse battery staple";

/// `day` days before today (UTC), at `hour`:`min`.
fn at(day: i32, hour: i32, min: i32) -> String {
    format!(
        "(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
         - interval '{day} days' + interval '{hour} hours' + interval '{min} minutes'"
    )
}

/// A recording of `stream`: started, with closed segments `(minute, bytes)` after its start,
/// ready (with its final size) and deleted when given, each as an SQL time expression.
struct Rec<'a> {
    stream: &'a str,
    started: String,
    segments: &'a [(i32, i64)],
    ready: Option<(String, i64)>,
    deleted: Option<String>,
}

async fn insert(app: &TestApp, owner: uuid::Uuid, r: Rec<'_>) -> uuid::Uuid {
    let mut db = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let id = uuid::Uuid::now_v7();
    let (ready_at, size) = match &r.ready {
        Some((t, size)) => (t.clone(), *size),
        None => ("NULL".into(), 0),
    };
    let status = if r.ready.is_some() {
        "ready"
    } else {
        "recording"
    };
    let deleted = r.deleted.clone().unwrap_or_else(|| "NULL".into());
    let sql = format!(
        "INSERT INTO recordings (id, live_stream_id, owner_id, session_id, status, started_at,
                                 ended_at, ready_at, size_bytes, duration_ms, deleted_at)
         VALUES ($1, $2::uuid, $3, $1, '{status}', {started}, {ready_at}, {ready_at}, $4, 60000,
                 {deleted})",
        started = r.started,
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(r.stream)
        .bind(owner)
        .bind(size)
        .execute(&mut db)
        .await
        .unwrap();
    for (seq, (minute, bytes)) in r.segments.iter().enumerate() {
        let sql = format!(
            "INSERT INTO recording_segments (recording_id, seq, name, duration_ms, size_bytes,
                                             created_at, uploaded_at)
             VALUES ($1, $2, $3, 2000, $4, {started} + interval '{minute} minutes', now())",
            started = r.started,
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(seq as i32)
            .bind(format!("segment-{seq:08}.ts"))
            .bind(bytes)
            .execute(&mut db)
            .await
            .unwrap();
    }
    id
}

async fn json(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

#[tokio::test]
async fn ops_see_usage_by_name_per_course_and_day_by_day_over_time() {
    let class = Class::new(|_| {}).await;
    let app = &class.app;
    let (_, ops) = app
        .user_with(&unique_email("ops-usage"), PW, &[Role::Ops])
        .await;
    let teacher = class.teacher.0;
    let lesson: Value = json(
        app.get_auth(
            &format!("/api/v1/lessons/{}", class.lesson),
            &class.teacher.1,
        )
        .await,
    )
    .await;
    let lesson_stream = lesson["live_stream_id"].as_str().unwrap().to_string();
    // A stream of the teacher's own, outside any course.
    let own = app
        .send(
            Method::POST,
            "/api/v1/live-streams",
            Some(&class.teacher.1),
            Some(&json!({"title": "Office hours"})),
        )
        .await;
    assert_eq!(own.status(), StatusCode::CREATED);
    let own_stream = own.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // A: recorded 3 days ago (300 bytes of segments), ready 2 days ago at 1,000 bytes (HLS,
    // MP4, poster). B: recorded and ready 2 days ago (800 bytes), deleted yesterday. C: being
    // recorded since yesterday on the other stream (400 bytes of segments so far).
    insert(
        app,
        teacher,
        Rec {
            stream: &lesson_stream,
            started: at(3, 10, 0),
            segments: &[(1, 100), (2, 200)],
            ready: Some((at(2, 9, 0), 1000)),
            deleted: None,
        },
    )
    .await;
    insert(
        app,
        teacher,
        Rec {
            stream: &lesson_stream,
            started: at(2, 10, 0),
            segments: &[(1, 500)],
            ready: Some((at(2, 11, 0), 800)),
            deleted: Some(at(1, 12, 0)),
        },
    )
    .await;
    let c = insert(
        app,
        teacher,
        Rec {
            stream: &own_stream,
            started: at(1, 10, 0),
            segments: &[(1, 150), (3, 250)],
            ready: None,
            deleted: None,
        },
    )
    .await;

    let h = json(
        app.get_auth("/api/v1/admin/storage/history?days=5", &ops)
            .await,
    )
    .await;
    let days = h["days"].as_array().unwrap();
    assert_eq!(days.len(), 5, "{h}");
    let today = time::OffsetDateTime::now_utc().date();
    assert_eq!(days[4]["day"], today.to_string(), "{h}");
    assert_eq!(
        days[0]["day"],
        (today - time::Duration::days(4)).to_string()
    );
    let series: Vec<(i64, i64)> = days
        .iter()
        .map(|d| {
            (
                d["bytes"].as_i64().unwrap(),
                d["recordings"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        series,
        [(0, 0), (300, 1), (1800, 2), (1400, 2), (1400, 2)],
        "held bytes and kept recordings at the end of each day: {h}"
    );

    // Now: the two kept recordings, C by its segments so far; the same figure as today's.
    let by_course = json(
        app.get_auth("/api/v1/admin/storage/usage?group_by=course", &ops)
            .await,
    )
    .await;
    assert_eq!(by_course["total"]["bytes"], 1400, "{by_course}");
    assert_eq!(by_course["total"]["recordings"], 2);
    let groups = by_course["groups"].as_array().unwrap();
    let course = groups.iter().find(|g| g["key"] == class.course).unwrap();
    assert_eq!(
        (course["label"].clone(), course["bytes"].clone()),
        (json!("Chatty course"), json!(1000))
    );
    let none = groups.iter().find(|g| g["key"] == "none").unwrap();
    assert_eq!(none["bytes"], 400, "{by_course}");
    let by_stream = json(
        app.get_auth("/api/v1/admin/storage/usage?group_by=stream", &ops)
            .await,
    )
    .await;
    let labels: Vec<&str> = by_stream["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["Live one", "Office hours"],
        "largest first: {by_stream}"
    );
    let by_owner = json(app.get_auth("/api/v1/admin/storage/usage", &ops).await).await;
    assert_eq!(by_owner["groups"][0]["key"], teacher.to_string());
    assert!(!by_owner["groups"][0]["label"].as_str().unwrap().is_empty());

    // The recordings table filtered by the course, with names.
    let list = json(
        app.get_auth(
            &format!("/api/v1/recordings?course_id={}", class.course),
            &ops,
        )
        .await,
    )
    .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        1,
        "the deleted one and the other stream's are not listed: {list}"
    );
    assert_eq!(items[0]["course_title"], "Chatty course");
    assert_eq!(items[0]["lesson_title"], "Live one");
    assert_eq!(items[0]["course_id"], class.course);
    let all = json(app.get_auth("/api/v1/recordings", &ops).await).await;
    let other = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == c.to_string())
        .unwrap();
    assert_eq!(other["stream_title"], "Office hours");
    assert!(
        other["course_id"].is_null() && other["lesson_title"].is_null(),
        "{other}"
    );
    assert!(!other["owner_name"].as_str().unwrap().is_empty());

    // Bounds, and who may ask.
    for bad in ["days=0", "days=367", "days=x"] {
        let r = app
            .get_auth(&format!("/api/v1/admin/storage/history?{bad}"), &ops)
            .await;
        assert!(
            r.status() == StatusCode::BAD_REQUEST || r.status() == StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.status()
        );
    }
    assert_problem(
        app.get_auth("/api/v1/admin/storage/history", &class.teacher.1)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}
