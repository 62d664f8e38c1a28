//! Endpoints, deliveries and attempts in PostgreSQL (the admin API's side; the sending side is
//! [`super::dispatch`]).

use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::EventType;
use crate::domain::{InvalidInput, Page, PageLimit};

/// A subscription: where to POST which events.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = WebhookEndpoint)]
pub struct Endpoint {
    pub id: Uuid,
    /// Where events are POSTed (http or https).
    pub url: String,
    pub description: String,
    pub events: Vec<EventType>,
    /// A disabled endpoint gets nothing new; its pending deliveries wait until it is enabled.
    pub enabled: bool,
    /// The secret's first characters, to tell secrets apart (the whole secret is shown once,
    /// when it is made).
    pub secret_hint: String,
    /// Deliveries not yet made (waiting for their first try or a retry).
    pub pending: i64,
    /// Deliveries given up on (no 2xx before the give-up time).
    pub failed: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// An endpoint's URL, checked: http(s), a host, no user name or password (the signature is the
/// credential), at most 2,000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    pub fn parse(raw: &str) -> Result<EndpointUrl, InvalidInput> {
        let bad = |reason| InvalidInput {
            field: "url",
            reason,
        };
        if raw.len() > 2000 {
            return Err(bad("must be at most 2,000 characters"));
        }
        let url = url::Url::parse(raw).map_err(|_| bad("must be an absolute http(s) URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(bad("must be an absolute http(s) URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "must not carry a user name or password: receivers check the signature",
            ));
        }
        Ok(EndpointUrl(url.to_string()))
    }

    /// [`EndpointUrl::parse`], and the URL must not name an internal address `targets`
    /// refuses (a host name is checked at each delivery, where it resolves).
    pub fn parse_allowed(
        raw: &str,
        targets: &super::targets::Targets,
    ) -> Result<EndpointUrl, InvalidInput> {
        let url = EndpointUrl::parse(raw)?;
        let parsed = url::Url::parse(&url.0).map_err(|_| InvalidInput {
            field: "url",
            reason: "must be an absolute http(s) URL",
        })?;
        if targets.refused_literal(&parsed).is_some() {
            return Err(InvalidInput {
                field: "url",
                reason: "names an internal address (this machine, a private network, the cloud's metadata service): allow its network in webhooks.allow_internal_networks",
            });
        }
        Ok(url)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The event types of a subscription: at least one, no repeats.
pub fn event_list(events: &[EventType]) -> Result<Vec<String>, InvalidInput> {
    if events.is_empty() {
        return Err(InvalidInput {
            field: "events",
            reason: "must name at least one event type",
        });
    }
    let mut names: Vec<String> = events.iter().map(|e| e.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

fn hint(secret: &str) -> String {
    format!("{}…", secret.chars().take(10).collect::<String>())
}

fn parse_events(names: Vec<String>) -> Vec<EventType> {
    EventType::ALL
        .into_iter()
        .filter(|t| names.iter().any(|n| n == t.as_str()))
        .collect()
}

struct EndpointRow {
    id: Uuid,
    url: String,
    description: String,
    events: Vec<String>,
    enabled: bool,
    secret: String,
    pending: i64,
    failed: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<EndpointRow> for Endpoint {
    fn from(r: EndpointRow) -> Endpoint {
        Endpoint {
            id: r.id,
            url: r.url,
            description: r.description,
            events: parse_events(r.events),
            enabled: r.enabled,
            secret_hint: hint(&r.secret),
            pending: r.pending,
            failed: r.failed,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Every endpoint, oldest first (a site has a handful).
pub async fn list(conn: &mut PgConnection) -> Result<Vec<Endpoint>, sqlx::Error> {
    let rows = sqlx::query_as!(
        EndpointRow,
        r#"SELECT e.id, e.url, e.description, e.events, e.enabled, e.secret, e.created_at, e.updated_at,
                  (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending') AS "pending!",
                  (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'failed') AS "failed!"
             FROM webhook_endpoints e ORDER BY e.created_at, e.id LIMIT 1000"#
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Endpoint::from).collect())
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Endpoint>, sqlx::Error> {
    let row = sqlx::query_as!(
        EndpointRow,
        r#"SELECT e.id, e.url, e.description, e.events, e.enabled, e.secret, e.created_at, e.updated_at,
                  (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending') AS "pending!",
                  (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'failed') AS "failed!"
             FROM webhook_endpoints e WHERE e.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Endpoint::from))
}

/// A new endpoint with a new secret; returns it and the secret.
pub async fn create(
    conn: &mut PgConnection,
    url: &EndpointUrl,
    description: &str,
    events: &[String],
    created_by: Uuid,
) -> Result<(Uuid, String), sqlx::Error> {
    let id = Uuid::now_v7();
    let secret = super::new_secret();
    sqlx::query!(
        "INSERT INTO webhook_endpoints (id, url, description, events, secret, created_by)
         VALUES ($1, $2, $3, $4, $5, $6)",
        id,
        url.as_str(),
        description,
        events,
        secret,
        created_by
    )
    .execute(conn)
    .await?;
    Ok((id, secret))
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct Change {
    pub url: Option<EndpointUrl>,
    pub description: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

pub async fn update(conn: &mut PgConnection, id: Uuid, c: &Change) -> Result<bool, sqlx::Error> {
    let r = sqlx::query!(
        "UPDATE webhook_endpoints SET url = coalesce($2, url), description = coalesce($3, description),
                events = coalesce($4, events), enabled = coalesce($5, enabled), updated_at = now()
          WHERE id = $1",
        id,
        c.url.as_ref().map(EndpointUrl::as_str),
        c.description.as_deref(),
        c.events.as_deref(),
        c.enabled
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Delete an endpoint with its deliveries and their attempts (the events stay).
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query!("DELETE FROM webhook_endpoints WHERE id = $1", id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// A new secret; the current one keeps signing beside it for `overlap_s`.
pub async fn rotate_secret(
    conn: &mut PgConnection,
    id: Uuid,
    overlap_s: u64,
) -> Result<Option<String>, sqlx::Error> {
    let secret = super::new_secret();
    let r = sqlx::query!(
        "UPDATE webhook_endpoints SET previous_secret = secret, secret = $2,
                previous_secret_until = now() + make_interval(secs => $3), updated_at = now()
          WHERE id = $1",
        id,
        secret,
        overlap_s as f64
    )
    .execute(conn)
    .await?;
    Ok((r.rows_affected() == 1).then_some(secret))
}

/// A ping to one endpoint (`webhook.test`), whatever it subscribes to; returns the delivery.
pub async fn send_test(
    conn: &mut PgConnection,
    endpoint: Uuid,
    actor: Uuid,
) -> Result<Uuid, sqlx::Error> {
    let event = Uuid::now_v7();
    let delivery = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO webhook_events (id, type, data) VALUES ($1, $2, $3)",
        event,
        super::TEST_EVENT,
        serde_json::json!({"endpoint_id": endpoint, "requested_by": actor})
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id) VALUES ($1, $2, $3)",
        delivery,
        event,
        endpoint
    )
    .execute(conn)
    .await?;
    Ok(delivery)
}

/// One event sent (or to be sent) to one endpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = WebhookDelivery)]
pub struct Delivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    /// The event's id: the `webhook-id` header the receiver sees on every try.
    pub event_id: Uuid,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Tries so far.
    pub attempts: i32,
    /// The next try (pending deliveries).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The HTTP status of the last try (none when it got no answer).
    pub last_status: Option<i32>,
    /// Why the last try failed (time-out, refused connection, a non-2xx answer).
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// An endpoint's deliveries, newest first, optionally of one status, after `cursor`.
pub async fn deliveries(
    conn: &mut PgConnection,
    endpoint: Uuid,
    status: Option<&str>,
    cursor: Option<Uuid>,
    limit: PageLimit,
) -> Result<Page<Delivery>, sqlx::Error> {
    let items = sqlx::query_as!(
        Delivery,
        r#"SELECT d.id, d.endpoint_id, d.event_id, ev.type AS "event_type!", d.status, d.attempts,
                  CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
                  d.last_status, d.last_error, d.delivered_at, d.created_at
             FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id
            WHERE d.endpoint_id = $1 AND ($2::text IS NULL OR d.status = $2)
              AND ($3::uuid IS NULL OR (d.created_at, d.id) <
                   (SELECT created_at, id FROM webhook_deliveries WHERE id = $3))
            ORDER BY d.created_at DESC, d.id DESC
            LIMIT $4"#,
        endpoint,
        status,
        cursor,
        limit.fetch()
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::cut(items, limit, |d| d.id))
}

/// One try of a delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = WebhookAttempt)]
pub struct Attempt {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The receiver's HTTP status; none when it did not answer.
    pub status: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    /// The first bytes (≤ 1 KiB) of the receiver's answer.
    pub response: String,
}

/// A delivery with the event's body as sent and every try.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = WebhookDeliveryDetail)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: Delivery,
    /// The event's `data` (the body's `data` field).
    #[schema(value_type = Object)]
    pub data: Value,
    pub tries: Vec<Attempt>,
}

pub async fn delivery(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<DeliveryDetail>, sqlx::Error> {
    let Some(row) = sqlx::query!(
        r#"SELECT d.id, d.endpoint_id, d.event_id, ev.type AS "event_type!", d.status, d.attempts,
                  CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
                  d.last_status, d.last_error, d.delivered_at, d.created_at, ev.data AS "data!"
             FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id
            WHERE d.id = $1"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let tries = sqlx::query_as!(
        Attempt,
        "SELECT at, status, error, duration_ms, response FROM webhook_attempts
          WHERE delivery_id = $1 ORDER BY at LIMIT 200",
        id
    )
    .fetch_all(conn)
    .await?;
    Ok(Some(DeliveryDetail {
        delivery: Delivery {
            id: row.id,
            endpoint_id: row.endpoint_id,
            event_id: row.event_id,
            event_type: row.event_type,
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_status: row.last_status,
            last_error: row.last_error,
            delivered_at: row.delivered_at,
            created_at: row.created_at,
        },
        data: row.data,
        tries,
    }))
}

/// Send a delivery again now, whatever became of it (a receiver that lost it, or one that was
/// down past the give-up time); retries run for `give_up_after_s` from now. The receiver sees
/// the same `webhook-id`.
pub async fn replay(
    conn: &mut PgConnection,
    id: Uuid,
    give_up_after_s: u64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query!(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),
                give_up_at = now() + make_interval(secs => $2), delivered_at = NULL
          WHERE id = $1",
        id,
        give_up_after_s as f64
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Delete events older than `keep_days` whose deliveries are all done (their deliveries and
/// tries go with them). Returns how many events went.
pub async fn prune(conn: &mut PgConnection, keep_days: u32) -> Result<u64, sqlx::Error> {
    let r = sqlx::query!(
        "DELETE FROM webhook_events ev
          WHERE ev.created_at < now() - make_interval(days => $1)
            AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                             WHERE d.event_id = ev.id AND d.status = 'pending')",
        keep_days as i32
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_absolute_http_without_credentials() {
        assert!(EndpointUrl::parse("https://lms.example.com/hooks/wemaster?x=1").is_ok());
        assert!(EndpointUrl::parse("http://10.0.0.5:8080/in").is_ok());
        for bad in [
            "ftp://example.com/",
            "/relative",
            "https://user:pw@example.com/",
            "https://token@example.com/",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(EndpointUrl::parse(bad).unwrap_err().field, "url", "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2000));
        assert!(EndpointUrl::parse(&long).is_err());
    }

    #[test]
    fn event_lists_are_sorted_without_repeats_and_never_empty() {
        assert!(event_list(&[]).is_err());
        let l = event_list(&[
            EventType::StreamStarted,
            EventType::PaymentConfirmed,
            EventType::StreamStarted,
        ])
        .unwrap();
        assert_eq!(l, ["payment.confirmed", "stream.started"]);
    }
}
