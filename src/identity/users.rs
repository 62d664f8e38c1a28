//! Users: parsed input types and the queries that create and find accounts.
//!
//! Parse, don't validate: an [`Email`], [`Password`] or [`Role`] exists only if it is valid,
//! so everything past the HTTP edge takes these types and never re-checks.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

pub use crate::domain::{InvalidInput, Role, TimeZone};

/// A syntactically plausible email address, trimmed, at most 254 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Email, InvalidInput> {
        let s = s.trim();
        let bad = |reason| InvalidInput {
            field: "email",
            reason,
        };
        if s.len() < 3 || s.len() > 254 {
            return Err(bad("must be between 3 and 254 characters"));
        }
        let (local, domain) = s.rsplit_once('@').ok_or(bad("must contain @"))?;
        if local.is_empty()
            || domain.is_empty()
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(bad("is not an email address"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain spaces"));
        }
        Ok(Email(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as the user chose it: 8 to 128 characters, no composition rules (NIST 800-63B).
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(s: String) -> Result<Password, InvalidInput> {
        let n = s.chars().count();
        if n < Self::MIN_CHARS {
            return Err(InvalidInput {
                field: "password",
                reason: "must be at least 8 characters",
            });
        }
        if n > Self::MAX_CHARS {
            return Err(InvalidInput {
                field: "password",
                reason: "must be at most 128 characters",
            });
        }
        if is_common_password(&s) {
            return Err(InvalidInput {
                field: "password",
                reason: "is one of the most common passwords; choose another",
            });
        }
        Ok(Password(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The 30,000 most common passwords (zxcvbn's list, MIT; `assets/common-passwords.txt`),
/// lowercased: a password matching one case-insensitively is refused.
static COMMON_PASSWORDS: std::sync::LazyLock<std::collections::HashSet<&'static str>> =
    std::sync::LazyLock::new(|| {
        include_str!("../../assets/common-passwords.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    });

pub fn is_common_password(s: &str) -> bool {
    COMMON_PASSWORDS.contains(s.trim().to_lowercase().as_str())
}

/// The language of a user's mail and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Locale {
    #[default]
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    ZhCn,
}

impl Locale {
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::ZhCn => "zh-CN",
        }
    }
}

impl FromStr for Locale {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Locale, InvalidInput> {
        match s {
            "en" => Ok(Locale::En),
            "zh-CN" => Ok(Locale::ZhCn),
            _ => Err(InvalidInput {
                field: "locale",
                reason: "must be en or zh-CN",
            }),
        }
    }
}

/// A display name: 1 to 100 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(s: &str) -> Result<DisplayName, InvalidInput> {
        let s = s.trim();
        let n = s.chars().count();
        if n == 0 || n > 100 || s.chars().any(char::is_control) {
            return Err(InvalidInput {
                field: "display_name",
                reason: "must be 1 to 100 printable characters",
            });
        }
        Ok(DisplayName(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user as the rest of the service sees it (no secrets).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    /// `active` or `disabled`.
    pub status: String,
    pub locale: Locale,
    pub email_verified: bool,
    pub two_factor_enabled: bool,
    /// A URL of the avatar image (presigned, expires), or null.
    #[schema(required = true)]
    pub avatar_url: Option<String>,
    #[serde(skip)]
    pub avatar_key: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// The IANA time zone the user plans in (the studio's schedule); null: the browser's.
    #[schema(required = true)]
    pub time_zone: Option<String>,
}

/// A user with the secrets login needs.
pub struct UserWithHash {
    pub user: User,
    pub password_hash: String,
    /// The confirmed TOTP secret, when two-factor is on.
    pub totp_secret: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// Registration answers 202 as for a free address and mails the owner (no status tells
    /// it apart); the admin CLI reports it.
    #[error("a user with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn roles_from_db(roles: Vec<String>) -> Vec<Role> {
    // The CHECK constraint guarantees known names; skip rather than fail on a future role.
    roles.iter().filter_map(|r| r.parse().ok()).collect()
}

fn role_names(roles: &[Role]) -> Vec<String> {
    let mut names: Vec<String> = roles.iter().map(|r| r.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    names
}

/// The columns every query below selects, in this order.
macro_rules! user_from_row {
    ($r:expr) => {
        User {
            id: $r.id,
            email: $r.email,
            display_name: $r.display_name,
            roles: roles_from_db($r.roles),
            status: $r.status,
            locale: $r.locale.parse().unwrap_or_default(),
            email_verified: $r.email_verified_at.is_some(),
            two_factor_enabled: $r.totp_enabled_at.is_some(),
            avatar_url: None,
            avatar_key: $r.avatar_key,
            created_at: $r.created_at,
            time_zone: $r.time_zone,
        }
    };
}

/// Insert a user. `password_hash` is an argon2id PHC string (see `auth::hash_password`).
pub async fn create_user(
    conn: &mut PgConnection,
    email: &Email,
    display_name: &DisplayName,
    password_hash: &str,
    roles: &[Role],
) -> Result<User, CreateUserError> {
    create_user_with_locale(conn, email, display_name, password_hash, roles, Locale::En).await
}

/// Insert a user with a locale.
pub async fn create_user_with_locale(
    conn: &mut PgConnection,
    email: &Email,
    display_name: &DisplayName,
    password_hash: &str,
    roles: &[Role],
    locale: Locale,
) -> Result<User, CreateUserError> {
    let r = sqlx::query!(
        r#"INSERT INTO users (id, email, display_name, password_hash, roles, locale)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id, email, display_name, roles, status, locale, email_verified_at,
                     totp_enabled_at, avatar_key, created_at, time_zone"#,
        Uuid::now_v7(),
        email.as_str(),
        display_name.as_str(),
        password_hash,
        &role_names(roles),
        locale.as_str(),
    )
    .fetch_one(conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.constraint() == Some("users_email_key") => {
            CreateUserError::EmailTaken
        }
        _ => CreateUserError::Db(e),
    })?;
    Ok(user_from_row!(r))
}

/// Find a user by email, case-insensitively, with the password hash.
pub async fn find_by_email(
    conn: &mut PgConnection,
    email: &str,
) -> Result<Option<UserWithHash>, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT id, email, display_name, roles, status, locale, email_verified_at,
                  totp_enabled_at, avatar_key, created_at, time_zone, password_hash, totp_secret
           FROM users WHERE lower(email) = lower($1)"#,
        email.trim(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(r.map(|r| UserWithHash {
        totp_secret: r.totp_secret.filter(|_| r.totp_enabled_at.is_some()),
        password_hash: r.password_hash,
        user: user_from_row!(r),
    }))
}

/// Find a user by id, with the secrets (re-authentication, two-factor).
pub async fn find_with_hash(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<UserWithHash>, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT id, email, display_name, roles, status, locale, email_verified_at,
                  totp_enabled_at, avatar_key, created_at, time_zone, password_hash, totp_secret
           FROM users WHERE id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(r.map(|r| UserWithHash {
        totp_secret: r.totp_secret.filter(|_| r.totp_enabled_at.is_some()),
        password_hash: r.password_hash,
        user: user_from_row!(r),
    }))
}

/// Find a user by id.
pub async fn find_by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<User>, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT id, email, display_name, roles, status, locale, email_verified_at,
                  totp_enabled_at, avatar_key, created_at, time_zone
           FROM users WHERE id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(r.map(|r| user_from_row!(r)))
}

/// Users for admins, newest first, optionally filtered by an email substring; keyset paging.
pub async fn list(
    conn: &mut PgConnection,
    email_contains: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<User>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id, email, display_name, roles, status, locale, email_verified_at,
                  totp_enabled_at, avatar_key, created_at, time_zone
           FROM users
           WHERE ($1::text IS NULL OR strpos(lower(email), lower($1)) > 0)
             AND ($2::uuid IS NULL OR id < $2)
           ORDER BY id DESC LIMIT $3"#,
        email_contains,
        before,
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| user_from_row!(r)).collect())
}

/// What the authorization extractor needs at each request.
pub struct Standing {
    pub roles: Vec<Role>,
    pub active: bool,
    /// The access token's session exists, belongs to the user, is not revoked and has not
    /// passed its absolute lifetime. (A revocation reaches every node through Redis at once;
    /// this also refuses a validly signed token naming a session that never existed.)
    pub session_live: bool,
}

/// The standing of user `id` calling with an access token of session `sid` (one query).
pub async fn standing(
    conn: &mut PgConnection,
    id: Uuid,
    sid: Uuid,
) -> Result<Option<Standing>, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT u.roles, u.status,
                  EXISTS (SELECT 1 FROM sessions s
                          WHERE s.id = $2 AND s.user_id = u.id AND s.revoked_at IS NULL
                            AND s.expires_at > now()) AS "session_live!"
           FROM users u WHERE u.id = $1"#,
        id,
        sid
    )
    .fetch_optional(conn)
    .await?;
    Ok(r.map(|r| Standing {
        roles: roles_from_db(r.roles),
        active: r.status == "active",
        session_live: r.session_live,
    }))
}

/// Replace a user's roles (at least one).
pub async fn set_roles(
    conn: &mut PgConnection,
    id: Uuid,
    roles: &[Role],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET roles = $2, updated_at = now() WHERE id = $1",
        id,
        &role_names(roles)
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    active: bool,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query!(
        "UPDATE users SET status = $2, updated_at = now() WHERE id = $1",
        id,
        if active { "active" } else { "disabled" }
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn set_password(
    conn: &mut PgConnection,
    id: Uuid,
    hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
        id,
        hash
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Change what is given; `time_zone`: `Some(None)` clears it (back to the browser's zone).
pub async fn update_profile(
    conn: &mut PgConnection,
    id: Uuid,
    display_name: Option<&DisplayName>,
    locale: Option<Locale>,
    time_zone: Option<Option<&TimeZone>>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE users SET display_name = coalesce($2, display_name),
                            locale = coalesce($3, locale),
                            time_zone = CASE WHEN $4 THEN $5 ELSE time_zone END,
                            updated_at = now()
           WHERE id = $1"#,
        id,
        display_name.map(DisplayName::as_str),
        locale.map(Locale::as_str),
        time_zone.is_some(),
        time_zone.flatten().map(TimeZone::as_str),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Does PostgreSQL know the zone? (Its database is the one the SQL converting times uses.)
pub async fn known_time_zone(conn: &mut PgConnection, tz: &TimeZone) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1) AS "known!""#,
        tz.as_str()
    )
    .fetch_one(conn)
    .await
}

/// Set the avatar key; returns the previous one (to delete).
pub async fn set_avatar(
    conn: &mut PgConnection,
    id: Uuid,
    key: &str,
) -> Result<Option<String>, sqlx::Error> {
    let old = sqlx::query_scalar!(
        r#"UPDATE users u SET avatar_key = $2, updated_at = now()
           FROM (SELECT avatar_key FROM users WHERE id = $1 FOR UPDATE) old
           WHERE u.id = $1 RETURNING old.avatar_key"#,
        id,
        key
    )
    .fetch_optional(conn)
    .await?;
    Ok(old.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_parsed_at_the_edge() {
        assert_eq!(
            Email::parse("  Teacher@School.example ").unwrap().as_str(),
            "Teacher@School.example"
        );
        for bad in [
            "",
            "no-at",
            "a@b",
            "@x.example",
            "a b@x.example",
            "a@.example",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords_have_length_rules_only() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("all lowercase words".into()).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
        assert!(Password::parse("x".repeat(128)).is_ok());
        // Common passwords are refused, whatever their case.
        assert!(Password::parse("password1".into()).is_err());
        assert!(Password::parse("Qwertyuiop".into()).is_err());
        assert!(COMMON_PASSWORDS.len() >= 10_000);
        assert_eq!(
            format!("{:?}", Password::parse("secret-pass".into()).unwrap()),
            "Password(<redacted>)"
        );
    }

    #[test]
    fn roles_round_trip_and_refuse_unknown_names() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
