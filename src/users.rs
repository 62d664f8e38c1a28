//! Users: parsed input types and the queries that create and find accounts.
//!
//! Parse, don't validate: an [`Email`], [`Password`] or [`Role`] exists only if it is valid,
//! so everything past the HTTP edge takes these types and never re-checks.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// Why an input was refused; HTTP answers 422 naming `field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub reason: &'static str,
}

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
            || domain.len() < 1
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

/// What a user may do. A user holds one or more.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Student,
    Teacher,
    Admin,
    Ops,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Student, Role::Teacher, Role::Admin, Role::Ops];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Teacher => "teacher",
            Role::Admin => "admin",
            Role::Ops => "ops",
        }
    }
}

impl FromStr for Role {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Role, InvalidInput> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(InvalidInput {
                field: "role",
                reason: "must be one of student, teacher, admin, ops",
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// A user as the rest of the service sees it (no password hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// A user with the password hash, for login only.
pub struct UserWithHash {
    pub user: User,
    pub password_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// HTTP 409 `email_taken`.
    #[error("a user with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn roles_from_db(roles: Vec<String>) -> Vec<Role> {
    // The CHECK constraint guarantees known names; skip rather than fail on a future role.
    roles.iter().filter_map(|r| r.parse().ok()).collect()
}

/// Insert a user. `password_hash` is an argon2id PHC string (see `auth::hash_password`).
pub async fn create_user(
    conn: &mut PgConnection,
    email: &Email,
    display_name: &DisplayName,
    password_hash: &str,
    roles: &[Role],
) -> Result<User, CreateUserError> {
    let mut names: Vec<String> = roles.iter().map(|r| r.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    let row = sqlx::query!(
        r#"INSERT INTO users (id, email, display_name, password_hash, roles)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING id, email, display_name, roles, status, created_at"#,
        Uuid::now_v7(),
        email.as_str(),
        display_name.as_str(),
        password_hash,
        &names,
    )
    .fetch_one(conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.constraint() == Some("users_email_key") => {
            CreateUserError::EmailTaken
        }
        _ => CreateUserError::Db(e),
    })?;
    Ok(User {
        id: row.id,
        email: row.email,
        display_name: row.display_name,
        roles: roles_from_db(row.roles),
        status: row.status,
        created_at: row.created_at,
    })
}

/// Find a user by email, case-insensitively, with the password hash.
pub async fn find_by_email(
    conn: &mut PgConnection,
    email: &str,
) -> Result<Option<UserWithHash>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id, email, display_name, roles, status, created_at, password_hash
           FROM users WHERE lower(email) = lower($1)"#,
        email.trim(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| UserWithHash {
        user: User {
            id: r.id,
            email: r.email,
            display_name: r.display_name,
            roles: roles_from_db(r.roles),
            status: r.status,
            created_at: r.created_at,
        },
        password_hash: r.password_hash,
    }))
}

/// Find a user by id.
pub async fn find_by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id, email, display_name, roles, status, created_at FROM users WHERE id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| User {
        id: r.id,
        email: r.email,
        display_name: r.display_name,
        roles: roles_from_db(r.roles),
        status: r.status,
        created_at: r.created_at,
    }))
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
