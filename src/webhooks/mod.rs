//! Outgoing webhooks (docs/webhooks.md): what integrators (an LMS, a school's systems) hear
//! about — streams starting and ending, recordings ready, enrollments, payments confirmed and
//! refunded.
//!
//! - An event is written where its change is made, in the same transaction ([`stream_started`],
//!   [`payment_confirmed`], …: one function per event type, so every payload's shape is in this
//!   file), as one `webhook_events` row and a `webhook_deliveries` row per subscribed endpoint.
//!   Rolled back with the change, committed with it: at least once, never for a change that did
//!   not happen. Nothing is written when no endpoint wants the type (one indexed read).
//! - [`dispatch`] is the task that sends them, on every node: deliveries are claimed with
//!   `FOR UPDATE SKIP LOCKED`, so two nodes never send the same try.
//! - Signatures follow the Standard Webhooks specification (the one Svix, Supabase and others
//!   use, with reference verifiers in many languages): `webhook-id` (the event's id, the same on
//!   every retry: the receiver's de-duplication key), `webhook-timestamp` (Unix seconds) and
//!   `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, with the secret
//!   `whsec_<base64 key>`. During a rotation the previous secret signs too (two signatures).
//! - [`targets`]: internal addresses (loopback, private networks, the cloud's metadata address)
//!   are refused as destinations unless ops allow their network.

pub mod dispatch;
pub mod store;
pub mod targets;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgConnection;
use uuid::Uuid;

/// What an endpoint can subscribe to. `webhook.test` is not: it is sent on request to one
/// endpoint.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[schema(as = WebhookEventType)]
pub enum EventType {
    /// A live session started (the publisher's first frames): the lesson is live.
    #[serde(rename = "stream.started")]
    StreamStarted,
    /// A live session ended (the publisher left and the reconnect window closed).
    #[serde(rename = "stream.ended")]
    StreamEnded,
    /// A recording can be replayed (HLS; the MP4 follows shortly).
    #[serde(rename = "recording.ready")]
    RecordingReady,
    /// A student was enrolled in a course (free, granted or bought).
    #[serde(rename = "enrollment.created")]
    EnrollmentCreated,
    /// An order was paid (a course or a wallet top-up).
    #[serde(rename = "payment.confirmed")]
    PaymentConfirmed,
    /// A refund succeeded (in part or in full).
    #[serde(rename = "payment.refunded")]
    PaymentRefunded,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::StreamStarted,
        EventType::StreamEnded,
        EventType::RecordingReady,
        EventType::EnrollmentCreated,
        EventType::PaymentConfirmed,
        EventType::PaymentRefunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::StreamStarted => "stream.started",
            EventType::StreamEnded => "stream.ended",
            EventType::RecordingReady => "recording.ready",
            EventType::EnrollmentCreated => "enrollment.created",
            EventType::PaymentConfirmed => "payment.confirmed",
            EventType::PaymentRefunded => "payment.refunded",
        }
    }
}

/// The type of the ping an admin sends to check an endpoint.
pub const TEST_EVENT: &str = "webhook.test";

/// Does any enabled endpoint want `ty`? Checked before a payload is built, so events nobody
/// subscribed to cost one indexed read.
async fn wanted(conn: &mut PgConnection, ty: EventType) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled AND $1 = ANY (events)) AS "w!""#,
        ty.as_str()
    )
    .fetch_one(conn)
    .await
}

/// Store the event and one delivery per endpoint subscribed to it.
async fn enqueue(conn: &mut PgConnection, ty: EventType, data: Value) -> Result<(), sqlx::Error> {
    let deliveries = sqlx::query!(
        r#"WITH ev AS (INSERT INTO webhook_events (id, type, data) VALUES ($1, $2, $3) RETURNING id)
           INSERT INTO webhook_deliveries (id, event_id, endpoint_id)
           SELECT gen_random_uuid(), ev.id, e.id FROM ev, webhook_endpoints e
            WHERE e.enabled AND $2 = ANY (e.events)"#,
        Uuid::now_v7(),
        ty.as_str(),
        data
    )
    .execute(conn)
    .await?
    .rows_affected();
    metrics::counter!("webhook_events_total", "type" => ty.as_str()).increment(1);
    tracing::debug!(r#type = ty.as_str(), deliveries, "webhook event stored");
    Ok(())
}

/// A stream's lesson and course, when it belongs to one.
struct StreamInfo {
    title: String,
    owner_id: Uuid,
    lesson_id: Option<Uuid>,
    course_id: Option<Uuid>,
}

async fn stream_info(conn: &mut PgConnection, stream: Uuid) -> Result<StreamInfo, sqlx::Error> {
    sqlx::query_as!(
        StreamInfo,
        r#"SELECT s.title AS "title!", s.owner_id AS "owner_id!", l.id AS "lesson_id?",
                  l.course_id AS "course_id?"
             FROM live_streams s LEFT JOIN lessons l ON l.live_stream_id = s.id
            WHERE s.id = $1"#,
        stream
    )
    .fetch_one(conn)
    .await
}

/// `stream.started`: `{live_stream_id, session_id, title, owner_id, lesson_id, course_id}`.
pub async fn stream_started(
    conn: &mut PgConnection,
    stream: Uuid,
    session_id: Uuid,
) -> Result<(), sqlx::Error> {
    if !wanted(conn, EventType::StreamStarted).await? {
        return Ok(());
    }
    let s = stream_info(conn, stream).await?;
    let data = json!({"live_stream_id": stream, "session_id": session_id, "title": s.title,
        "owner_id": s.owner_id, "lesson_id": s.lesson_id, "course_id": s.course_id});
    enqueue(conn, EventType::StreamStarted, data).await
}

/// `stream.ended`: `stream.started`'s fields and `duration_s`, `reason` (`publisher_left` after
/// the reconnect window, `completed`, `disabled`, …).
pub async fn stream_ended(
    conn: &mut PgConnection,
    stream: Uuid,
    session_id: Uuid,
    reason: &str,
    duration_s: f64,
) -> Result<(), sqlx::Error> {
    if !wanted(conn, EventType::StreamEnded).await? {
        return Ok(());
    }
    let s = stream_info(conn, stream).await?;
    let data = json!({"live_stream_id": stream, "session_id": session_id, "title": s.title,
        "owner_id": s.owner_id, "lesson_id": s.lesson_id, "course_id": s.course_id,
        "reason": reason, "duration_s": duration_s});
    enqueue(conn, EventType::StreamEnded, data).await
}

/// `recording.ready`: `{recording_id, live_stream_id, session_id, lesson_id, course_id,
/// duration_s, size_bytes}`.
pub async fn recording_ready(conn: &mut PgConnection, recording: Uuid) -> Result<(), sqlx::Error> {
    if !wanted(conn, EventType::RecordingReady).await? {
        return Ok(());
    }
    let r = sqlx::query!(
        r#"SELECT r.live_stream_id AS "live_stream_id!", r.session_id AS "session_id!",
                  r.duration_ms AS "duration_ms!", r.size_bytes AS "size_bytes!",
                  l.id AS "lesson_id?", l.course_id AS "course_id?"
             FROM recordings r LEFT JOIN lessons l ON l.live_stream_id = r.live_stream_id
            WHERE r.id = $1"#,
        recording
    )
    .fetch_one(&mut *conn)
    .await?;
    let data = json!({"recording_id": recording, "live_stream_id": r.live_stream_id,
        "session_id": r.session_id, "lesson_id": r.lesson_id, "course_id": r.course_id,
        "duration_s": r.duration_ms as f64 / 1000.0, "size_bytes": r.size_bytes});
    enqueue(conn, EventType::RecordingReady, data).await
}

/// `enrollment.created`: `{enrollment_id, course_id, user_id, source, order_id}` (`source`:
/// `free`, `grant` or `order`).
pub async fn enrollment_created(
    conn: &mut PgConnection,
    course: Uuid,
    user: Uuid,
) -> Result<(), sqlx::Error> {
    if !wanted(conn, EventType::EnrollmentCreated).await? {
        return Ok(());
    }
    let e = sqlx::query!(
        "SELECT id, source, order_id FROM enrollments WHERE course_id = $1 AND user_id = $2",
        course,
        user
    )
    .fetch_one(&mut *conn)
    .await?;
    let data = json!({"enrollment_id": e.id, "course_id": course, "user_id": user,
        "source": e.source, "order_id": e.order_id});
    enqueue(conn, EventType::EnrollmentCreated, data).await
}

/// `payment.confirmed`: `{order_id, user_id, kind, course_id, amount: {amount, currency},
/// provider}` (`kind`: `course` or `wallet_topup`; `course_id` null for a top-up).
pub async fn payment_confirmed(conn: &mut PgConnection, order: Uuid) -> Result<(), sqlx::Error> {
    if !wanted(conn, EventType::PaymentConfirmed).await? {
        return Ok(());
    }
    let o = sqlx::query!(
        "SELECT user_id, kind, product_id, amount, currency, provider FROM orders WHERE id = $1",
        order
    )
    .fetch_one(&mut *conn)
    .await?;
    let data = json!({"order_id": order, "user_id": o.user_id, "kind": o.kind,
        "course_id": o.product_id, "amount": {"amount": o.amount, "currency": o.currency},
        "provider": o.provider});
    enqueue(conn, EventType::PaymentConfirmed, data).await
}

/// `payment.refunded`: `{order_id, refund_id, user_id, course_id, amount: {amount, currency},
/// order_status}` (`amount` is this refund's; `order_status` `partially_refunded` or
/// `refunded`).
pub async fn payment_refunded(conn: &mut PgConnection, refund: Uuid) -> Result<(), sqlx::Error> {
    if !wanted(conn, EventType::PaymentRefunded).await? {
        return Ok(());
    }
    let r = sqlx::query!(
        r#"SELECT r.order_id AS "order_id!", r.amount AS "amount!", r.currency AS "currency!",
                  o.user_id AS "user_id!", o.product_id, o.status AS "status!"
             FROM refunds r JOIN orders o ON o.id = r.order_id WHERE r.id = $1"#,
        refund
    )
    .fetch_one(&mut *conn)
    .await?;
    let data = json!({"order_id": r.order_id, "refund_id": refund, "user_id": r.user_id,
        "course_id": r.product_id, "amount": {"amount": r.amount, "currency": r.currency},
        "order_status": r.status});
    enqueue(conn, EventType::PaymentRefunded, data).await
}

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("whsec_{}", B64.encode(key))
}

/// The `webhook-signature` entry of one secret for one message: `v1,<base64 HMAC-SHA256>` of
/// `"{id}.{timestamp}.{body}"` keyed with the secret's decoded bytes.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|k| B64.decode(k).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_specifications_example() {
        // The example of the Standard Webhooks specification (spec/standard-webhooks.md).
        let sig = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_new_each_time_and_32_bytes() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(
            B64.decode(a.strip_prefix("whsec_").unwrap()).unwrap().len(),
            32
        );
    }

    #[test]
    fn event_types_serialize_as_their_names() {
        for t in EventType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }
}
