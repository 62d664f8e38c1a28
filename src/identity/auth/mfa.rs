//! Two-factor authentication: TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, ±1 step of clock
//! skew) and single-use recovery codes.
//!
//! Enrolment stores a fresh secret unconfirmed; the first valid code confirms it and returns ten
//! recovery codes (shown once, stored as SHA-256: 80 random bits each). A code is accepted once
//! per time step: the last accepted step is kept and a code for it or an earlier step is refused,
//! which also stops replaying a code seen over someone's shoulder.

use base64::Engine;
use sqlx::PgConnection;
use totp_rs::{Builder, Secret, Totp};
use uuid::Uuid;

use super::{random_bytes, token_hash};

pub const ISSUER: &str = "WeMaster";
pub const RECOVERY_CODES: usize = 10;

/// What an enrolment shows the user.
pub struct Enrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
    pub qr_png: Vec<u8>,
}

fn totp(secret_base32: &str, account: &str) -> anyhow::Result<Totp> {
    let secret = Secret::try_from_base32(secret_base32)
        .map_err(|e| anyhow::anyhow!("stored TOTP secret: {e:?}"))?;
    Builder::new()
        .with_secret(secret)
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| anyhow::anyhow!("TOTP: {e:?}"))
}

/// A new secret for `account` (the user's email) with its `otpauth://` URI and QR code.
pub fn new_enrolment(account: &str) -> anyhow::Result<Enrolment> {
    let secret = Secret::generate().to_base32();
    let t = totp(&secret, account)?;
    Ok(Enrolment {
        otpauth_uri: t
            .to_url()
            .map_err(|e| anyhow::anyhow!("otpauth URI: {e:?}"))?,
        qr_png: t
            .to_qr_png()
            .map_err(|e| anyhow::anyhow!("QR code: {e:?}"))?,
        secret_base32: secret,
    })
}

/// The time step `code` is valid for now, if any.
pub fn check_code(secret_base32: &str, code: &str) -> anyhow::Result<Option<u64>> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    // `check` answers the counter (time / 30) of the matching step.
    Ok(totp(secret_base32, "x")?.check(&code, now))
}

/// The code of the current step (tests and tools; never sent anywhere).
pub fn current_code(secret_base32: &str) -> anyhow::Result<String> {
    code_in(secret_base32, 0)
}

/// The code of the step `steps` away from the current one (tests: the next step's code is
/// accepted as clock skew once the current one was used).
pub fn code_in(secret_base32: &str, steps: i64) -> anyhow::Result<String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() + steps * 30;
    Ok(totp(secret_base32, "x")?.generate(now as u64).to_string())
}

/// Accept a TOTP code for a user with two-factor on (or being confirmed): true when valid for a
/// step later than the last one accepted; records the step.
pub async fn accept_code(
    conn: &mut PgConnection,
    user_id: Uuid,
    secret_base32: &str,
    code: &str,
) -> anyhow::Result<bool> {
    let Some(step) = check_code(secret_base32, code)? else {
        return Ok(false);
    };
    // Compare-and-set in one statement: two requests with the same code cannot both win.
    let updated = sqlx::query!(
        r#"UPDATE users SET totp_last_step = $2
           WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)"#,
        user_id,
        step as i64,
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Turn a user's two-factor off: the secret and the recovery codes go (the user's own
/// `/me/two-factor/disable`, an admin's reset).
pub async fn turn_off(conn: &mut PgConnection, user_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET totp_secret = NULL, totp_enabled_at = NULL, totp_last_step = NULL WHERE id = $1",
        user_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Replace a user's recovery codes with ten new ones; returns them (shown once).
pub async fn new_recovery_codes(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> anyhow::Result<Vec<String>> {
    sqlx::query!("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
        .execute(&mut *conn)
        .await?;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        // 80 bits, base32 without padding, grouped for reading: xxxx-xxxx-xxxx-xxxx.
        let raw = base32_lower(&random_bytes(10));
        let code = format!(
            "{}-{}-{}-{}",
            &raw[0..4],
            &raw[4..8],
            &raw[8..12],
            &raw[12..16]
        );
        sqlx::query!(
            "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)",
            user_id,
            token_hash(&normalize_recovery(&code)),
        )
        .execute(&mut *conn)
        .await?;
        codes.push(code);
    }
    Ok(codes)
}

/// Use a recovery code: true once per code.
pub async fn use_recovery_code(
    conn: &mut PgConnection,
    user_id: Uuid,
    code: &str,
) -> anyhow::Result<bool> {
    let used = sqlx::query!(
        r#"UPDATE recovery_codes SET used_at = now()
           WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL"#,
        user_id,
        token_hash(&normalize_recovery(code)),
    )
    .execute(conn)
    .await?;
    Ok(used.rows_affected() == 1)
}

fn normalize_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The QR PNG as a `data:` URL.
pub fn png_data_url(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enrolment_gives_a_uri_a_qr_code_and_codes_that_check() {
        let e = new_enrolment("teacher@school.example").unwrap();
        assert!(
            e.otpauth_uri.starts_with("otpauth://totp/WeMaster:"),
            "{}",
            e.otpauth_uri
        );
        assert!(e.otpauth_uri.contains("issuer=WeMaster"));
        assert_eq!(&e.qr_png[..4], b"\x89PNG");
        let code = current_code(&e.secret_base32).unwrap();
        assert!(check_code(&e.secret_base32, &code).unwrap().is_some());
        assert!(check_code(&e.secret_base32, "12345").unwrap().is_none());
    }

    #[test]
    fn recovery_codes_normalize() {
        assert_eq!(
            normalize_recovery("ABCD-efgh 2345-6723"),
            "abcdefgh23456723"
        );
        assert_eq!(base32_lower(&[0u8; 10]).len(), 16);
    }
}
