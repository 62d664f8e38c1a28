//! Abuse limits kept in Redis, so every node counts together.
//!
//! - [`Limiter::hit`]: a fixed-window counter (`INCR` + `EXPIRE` on first hit); over the limit
//!   answers the seconds until the window ends (the `Retry-After`).
//! - Login failures: counted per account and per client IP over an hour; past
//!   `login_free_failures` each failure of an account also sets a delay that doubles (1 s, 2 s,
//!   4 s ... up to `login_max_delay_s`) during which its logins are refused with 429 before the
//!   password is even checked. A success clears the account's counters.

use std::time::Duration;

use redis::AsyncCommands;
use sha2::{Digest, Sha256};

use crate::{cache::Redis, config::AuthLimits};

#[derive(Clone)]
pub struct Limiter {
    redis: Redis,
    limits: AuthLimits,
}

/// Refused: try again after this long.
#[derive(Debug, Clone, Copy)]
pub struct RetryAfter(pub Duration);

const HOUR: u64 = 3600;

impl Limiter {
    pub fn new(redis: Redis, limits: &AuthLimits) -> Limiter {
        Limiter {
            redis,
            limits: limits.clone(),
        }
    }

    pub fn limits(&self) -> &AuthLimits {
        &self.limits
    }

    fn key(&self, parts: &[&str]) -> String {
        // Hash the caller-supplied part (an email) so keys stay short and carry no PII.
        let tail = hex::encode(&Sha256::digest(parts[1..].join("\u{0}").as_bytes())[..16]);
        format!("{}{}:{tail}", self.limits.key_prefix, parts[0])
    }

    /// Count one event in the hour window of `kind`/`subject`; `Err` once past `limit`.
    pub async fn hit(
        &self,
        kind: &str,
        subject: &str,
        limit: u64,
    ) -> anyhow::Result<Result<(), RetryAfter>> {
        let key = self.key(&[kind, subject]);
        let mut conn = self.redis.conn();
        let (count, ttl): (u64, i64) = redis::pipe()
            .atomic()
            .incr(&key, 1u64)
            .expire(&key, HOUR as i64)
            .arg("NX")
            .ttl(&key)
            .query_async::<(u64, i64, i64)>(&mut conn)
            .await
            .map(|(c, _, t)| (c, t))?;
        if count > limit {
            return Ok(Err(RetryAfter(Duration::from_secs(ttl.max(1) as u64))));
        }
        Ok(Ok(()))
    }

    /// Before checking a password: is this account or IP held back?
    pub async fn login_allowed(
        &self,
        account: &str,
        ip: &str,
    ) -> anyhow::Result<Result<(), RetryAfter>> {
        let mut conn = self.redis.conn();
        let acct_fail = self.key(&["login-fail-acct", account]);
        let acct_delay = self.key(&["login-delay", account]);
        let ip_fail = self.key(&["login-fail-ip", ip]);
        let (af, delay_ms, ipf, af_ttl, ip_ttl): (Option<u64>, i64, Option<u64>, i64, i64) =
            redis::pipe()
                .get(&acct_fail)
                .pttl(&acct_delay)
                .get(&ip_fail)
                .ttl(&acct_fail)
                .ttl(&ip_fail)
                .query_async(&mut conn)
                .await?;
        if af.unwrap_or(0) >= self.limits.login_failures_per_account_hour {
            return Ok(Err(RetryAfter(Duration::from_secs(af_ttl.max(1) as u64))));
        }
        if ipf.unwrap_or(0) >= self.limits.login_failures_per_ip_hour {
            return Ok(Err(RetryAfter(Duration::from_secs(ip_ttl.max(1) as u64))));
        }
        if delay_ms > 0 {
            // Round up: answering `Retry-After: 1` for 1.9 s would invite an early retry.
            return Ok(Err(RetryAfter(Duration::from_secs(
                (delay_ms as u64).div_ceil(1000),
            ))));
        }
        Ok(Ok(()))
    }

    /// After a failed login (unknown emails count too, so they look the same).
    pub async fn login_failed(&self, account: &str, ip: &str) -> anyhow::Result<()> {
        let mut conn = self.redis.conn();
        let acct_fail = self.key(&["login-fail-acct", account]);
        let ip_fail = self.key(&["login-fail-ip", ip]);
        let (n, _, _, _): (u64, i64, u64, i64) = redis::pipe()
            .incr(&acct_fail, 1u64)
            .expire(&acct_fail, HOUR as i64)
            .arg("NX")
            .incr(&ip_fail, 1u64)
            .expire(&ip_fail, HOUR as i64)
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        if n > self.limits.login_free_failures {
            let exp = (n - self.limits.login_free_failures - 1).min(30) as u32;
            let delay = 2u64
                .saturating_pow(exp)
                .min(self.limits.login_max_delay_s)
                .max(1);
            let _: () = conn
                .set_ex(self.key(&["login-delay", account]), 1, delay)
                .await?;
        }
        Ok(())
    }

    /// After a successful login: the account starts afresh (the IP counter stays).
    pub async fn login_succeeded(&self, account: &str) -> anyhow::Result<()> {
        let mut conn = self.redis.conn();
        let _: () = conn
            .del(&[
                self.key(&["login-fail-acct", account]),
                self.key(&["login-delay", account]),
            ])
            .await?;
        Ok(())
    }
}
