//! API tokens for automation (ops scripts, CI): `wmt_` + 256 random bits, shown once, stored as
//! SHA-256. A token acts with its scopes — a subset of its owner's roles, intersected again with
//! the owner's current roles at each use — until it expires or is revoked.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{auth::token_hash, users::Role};

/// Prefix of API tokens (`wmt_` + 43 characters); the bearer extractor tells them from access
/// tokens by it.
pub const API_TOKEN_PREFIX: &str = "wmt_";

/// An API token as its owner sees it (never the secret, except once at creation).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the token, to tell tokens apart.
    pub token_prefix: String,
    pub scopes: Vec<Role>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
}

fn roles(names: Vec<String>) -> Vec<Role> {
    names.iter().filter_map(|r| r.parse().ok()).collect()
}

pub async fn create(
    conn: &mut PgConnection,
    user_id: Uuid,
    name: &str,
    scopes: &[Role],
    expires_at: Option<OffsetDateTime>,
) -> Result<(ApiToken, String), sqlx::Error> {
    let secret = crate::auth::random_token(API_TOKEN_PREFIX);
    let prefix: String = secret.chars().take(10).collect();
    let mut names: Vec<String> = scopes.iter().map(|r| r.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    let r = sqlx::query!(
        r#"INSERT INTO api_tokens (id, user_id, name, token_hash, token_prefix, scopes, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           RETURNING id, name, token_prefix, scopes, created_at, expires_at, last_used_at"#,
        Uuid::now_v7(),
        user_id,
        name,
        token_hash(&secret),
        prefix,
        &names,
        expires_at,
    )
    .fetch_one(conn)
    .await?;
    Ok((
        ApiToken {
            id: r.id,
            name: r.name,
            token_prefix: r.token_prefix,
            scopes: roles(r.scopes),
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
        },
        secret,
    ))
}

pub async fn list(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<ApiToken>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id, name, token_prefix, scopes, created_at, expires_at, last_used_at
           FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id DESC"#,
        user_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ApiToken {
            id: r.id,
            name: r.name,
            token_prefix: r.token_prefix,
            scopes: roles(r.scopes),
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
        })
        .collect())
}

/// Revoke; false when not the user's or already revoked.
pub async fn revoke(conn: &mut PgConnection, user_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query!(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        id,
        user_id
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Who a presented token (without its `wmt_` prefix) acts for, if it is live.
pub struct Authenticated {
    pub token_id: Uuid,
    pub user_id: Uuid,
    pub roles: Vec<Role>,
}

pub async fn authenticate(
    db: &PgPool,
    secret_tail: &str,
) -> Result<Option<Authenticated>, sqlx::Error> {
    if secret_tail.len() > 64 {
        return Ok(None);
    }
    let secret = format!("{}{secret_tail}", API_TOKEN_PREFIX);
    let r = sqlx::query!(
        r#"UPDATE api_tokens t SET last_used_at = now()
           FROM users u
           WHERE t.token_hash = $1 AND u.id = t.user_id AND t.revoked_at IS NULL
             AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.status = 'active'
           RETURNING t.id, t.user_id, t.scopes, u.roles"#,
        token_hash(&secret)
    )
    .fetch_optional(db)
    .await?;
    Ok(r.map(|r| {
        let held = roles(r.roles);
        Authenticated {
            token_id: r.id,
            user_id: r.user_id,
            roles: roles(r.scopes)
                .into_iter()
                .filter(|s| held.contains(s))
                .collect(),
        }
    }))
}
