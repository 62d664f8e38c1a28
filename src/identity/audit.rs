//! The audit log: security events in an append-only table (a trigger refuses UPDATE, DELETE and
//! TRUNCATE). Actions are dotted names: `auth.login`, `auth.login_failed`, `auth.mfa_failed`,
//! `auth.refresh_reuse`, `user.registered`, `user.registration_repeated`, `user.email_verified`,
//! `user.password_changed`, `user.password_reset_requested`, `user.password_reset`,
//! `user.two_factor_enabled`, `user.two_factor_disabled`, `user.two_factor_reset` (by an admin), `user.roles_changed`, `user.disabled`,
//! `user.enabled`, `session.revoked`, `session.revoked_all`, `api_token.created`,
//! `api_token.revoked`.
//!
//! Recording is part of the action: it runs on the caller's connection (in its transaction
//! when it has one) and its failure fails the request, so no event goes unrecorded.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// One event to record.
pub struct Event<'a> {
    pub action: &'a str,
    pub actor_id: Option<Uuid>,
    pub subject_user_id: Option<Uuid>,
    pub ip: Option<&'a str>,
    pub detail: serde_json::Value,
}

impl<'a> Event<'a> {
    /// An event a user did to themselves.
    pub fn by(user_id: Uuid, action: &'a str) -> Event<'a> {
        Event {
            action,
            actor_id: Some(user_id),
            subject_user_id: Some(user_id),
            ip: None,
            detail: serde_json::json!({}),
        }
    }
    pub fn ip(mut self, ip: Option<&'a str>) -> Self {
        self.ip = ip;
        self
    }
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

pub async fn record(conn: &mut PgConnection, e: Event<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO audit_log (id, actor_id, subject_user_id, action, ip, detail)
           VALUES ($1, $2, $3, $4, $5, $6)"#,
        Uuid::now_v7(),
        e.actor_id,
        e.subject_user_id,
        e.action,
        e.ip,
        e.detail,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An audit entry as admins read it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: OffsetDateTime,
    pub actor_id: Option<Uuid>,
    pub subject_user_id: Option<Uuid>,
    pub action: String,
    pub ip: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Filters of the admin query; all optional.
#[derive(Debug, Default)]
pub struct Filter {
    pub user_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    /// Exact action, or a prefix ending in `.` (e.g. `auth.`).
    pub action: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Keyset cursor: entries older than this id.
    pub before: Option<Uuid>,
    pub limit: i64,
}

pub async fn query(conn: &mut PgConnection, f: &Filter) -> Result<Vec<Entry>, sqlx::Error> {
    let (exact, prefix) = match f.action.as_deref() {
        Some(a) if a.ends_with('.') => (None, Some(format!("{a}%"))),
        Some(a) => (Some(a.to_string()), None),
        None => (None, None),
    };
    sqlx::query_as!(
        Entry,
        r#"SELECT id, occurred_at, actor_id, subject_user_id, action, ip, detail
           FROM audit_log
           WHERE ($1::uuid IS NULL OR subject_user_id = $1)
             AND ($2::uuid IS NULL OR actor_id = $2)
             AND ($3::text IS NULL OR action = $3)
             AND ($4::text IS NULL OR action LIKE $4)
             AND ($5::timestamptz IS NULL OR occurred_at >= $5)
             AND ($6::timestamptz IS NULL OR occurred_at < $6)
             AND ($7::uuid IS NULL OR id < $7)
           ORDER BY id DESC LIMIT $8"#,
        f.user_id,
        f.actor_id,
        exact,
        prefix,
        f.since,
        f.until,
        f.before,
        f.limit,
    )
    .fetch_all(conn)
    .await
}
