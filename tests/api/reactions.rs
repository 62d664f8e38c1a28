//! Reactions on chat messages, and the emoji/sticker set they come from, against the real
//! server, PostgreSQL and Redis.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::chat::{Class, Client};

fn react(client_id: &str, message: &Value, emoji: &str, on: bool) -> Value {
    json!({"type": "react", "client_id": client_id, "message_id": message, "emoji": emoji, "on": on})
}

async fn ack_or_error(c: &mut Client, client_id: &str) -> Value {
    loop {
        let v = c.next_of_any(&["ack", "error"]).await;
        if v["client_id"] == client_id {
            return v;
        }
    }
}

#[tokio::test]
async fn reactions_are_counted_per_emoji_shared_with_the_room_and_kept_in_history() {
    let class = Class::new(|_| {}).await;
    let app = &class.app;
    let room = format!("lesson:{}", class.lesson);
    let mut teacher = Client::connect(app.addr, &class.teacher.1).await;
    let mut student = Client::connect(app.addr, &class.student.1).await;
    let mut stranger = Client::connect(app.addr, &class.stranger.1).await;
    teacher.subscribe(&room, None).await;
    student.subscribe(&room, None).await;
    let said = teacher.say(&room, "t-1", "who has a question?").await;
    let message = said["message"]["id"].clone();

    student.send(react("r-1", &message, "🙋", true)).await;
    let ack = ack_or_error(&mut student, "r-1").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["reaction"]["count"], 1);
    let seen = teacher.next_of("reaction").await;
    assert_eq!(seen["channel"], room);
    assert_eq!(seen["message_id"], message);
    assert_eq!(seen["emoji"], "🙋");
    assert_eq!(seen["count"], 1);
    assert_eq!(seen["user_id"], json!(class.student.0));

    teacher.send(react("r-2", &message, "🙋", true)).await;
    assert_eq!(
        ack_or_error(&mut teacher, "r-2").await["reaction"]["count"],
        2
    );
    // A retry sets the same state: nothing counted twice.
    student.send(react("r-1", &message, "🙋", true)).await;
    assert_eq!(
        ack_or_error(&mut student, "r-1").await["reaction"]["count"],
        2
    );
    student.send(react("r-3", &message, "👍", true)).await;
    assert_eq!(
        ack_or_error(&mut student, "r-3").await["reaction"]["count"],
        1
    );

    // Not in the set, or not in the room: refused.
    student.send(react("r-4", &message, "🦀", true)).await;
    assert_eq!(ack_or_error(&mut student, "r-4").await["code"], "invalid");
    stranger.send(react("s-1", &message, "👍", true)).await;
    assert_eq!(
        ack_or_error(&mut stranger, "s-1").await["code"],
        "not_found"
    );

    // History: counts per emoji, and whether the reader is among them.
    let page: Value = app
        .get_auth(
            &format!("/api/v1/chat/channels/{room}/messages"),
            &class.student.1,
        )
        .await
        .json()
        .await
        .unwrap();
    let m = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == message)
        .unwrap()
        .clone();
    assert_eq!(
        m["reactions"],
        json!([{"emoji": "🙋", "count": 2, "me": true}, {"emoji": "👍", "count": 1, "me": true}])
    );

    // Taken back.
    student.send(react("r-5", &message, "🙋", false)).await;
    assert_eq!(
        ack_or_error(&mut student, "r-5").await["reaction"]["count"],
        1
    );
    let page: Value = app
        .get_auth(
            &format!("/api/v1/chat/channels/{room}/messages"),
            &class.teacher.1,
        )
        .await
        .json()
        .await
        .unwrap();
    let m = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == message)
        .unwrap()
        .clone();
    assert_eq!(
        m["reactions"],
        json!([{"emoji": "🙋", "count": 1, "me": true}, {"emoji": "👍", "count": 1, "me": false}])
    );
}

#[tokio::test]
async fn the_emoji_set_and_its_stickers_are_public_cacheable_assets() {
    let class = Class::new(|_| {}).await;
    let app = &class.app;
    let r = app.get("/api/v1/chat/emoji").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let manifest: Value = r.json().await.unwrap();
    assert!(
        manifest["emoji"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["emoji"] == "👍")
    );
    for s in manifest["stickers"].as_array().unwrap() {
        let r = app
            .get(&format!(
                "/api/v1/chat/emoji/{}",
                s["file"].as_str().unwrap()
            ))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "image/svg+xml");
        assert!(r.text().await.unwrap().starts_with("<svg"));
    }
    assert_eq!(
        app.get("/api/v1/chat/emoji/stickers/nope.svg")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}
