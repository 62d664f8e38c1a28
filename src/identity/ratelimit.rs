//! Abuse limits kept in Redis, so every node counts together.
//!
//! - [`Limiter::hit`]: a fixed-window counter (`INCR` + `EXPIRE` on first hit); over the limit
//!   answers the seconds until the window ends (the `Retry-After`).
//! - Login failures: counted per account and per client IP over an hour; past
//!   `login_free_failures` each failure of an account also sets a delay that doubles (1 s, 2 s,
//!   4 s ... up to `login_max_delay_s`) during which its logins are refused with 429 before the
//!   password is even checked. A success clears the account's counters.
//! - Two-factor failures (a wrong TOTP or recovery code on any route that checks one): the
//!   same scheme with their own counters and `mfa_*` limits. A challenge allows a few tries,
//!   but whoever knows the password can open challenges without end; counting per account
//!   across challenges (and per IP across accounts) is what bounds the guessing of a 6-digit
//!   code. The account is the user id, so every route that checks a code counts together.

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
        self.allowed(&self.login_guard(), account, ip).await
    }

    /// After a failed login (unknown emails count too, so they look the same).
    pub async fn login_failed(&self, account: &str, ip: &str) -> anyhow::Result<()> {
        self.failed(&self.login_guard(), account, ip).await?;
        Ok(())
    }

    /// After a successful login: the account starts afresh (the IP counter stays).
    pub async fn login_succeeded(&self, account: &str) -> anyhow::Result<()> {
        self.succeeded(&self.login_guard(), account).await
    }

    /// Before checking a second factor (TOTP or recovery code) of user `account`: is this
    /// account or IP held back? Refused before the code is looked at, so that while held back
    /// even the right code does not work (it would otherwise tell a guesser they had hit it).
    pub async fn mfa_allowed(
        &self,
        account: &str,
        ip: &str,
    ) -> anyhow::Result<Result<(), RetryAfter>> {
        self.allowed(&self.mfa_guard(), account, ip).await
    }

    /// After a wrong second factor, on any route that checks one.
    pub async fn mfa_failed(&self, account: &str, ip: &str) -> anyhow::Result<Failure> {
        self.failed(&self.mfa_guard(), account, ip).await
    }

    /// After a right second factor: the account starts afresh (the IP counter stays).
    pub async fn mfa_succeeded(&self, account: &str) -> anyhow::Result<()> {
        self.succeeded(&self.mfa_guard(), account).await
    }

    fn login_guard(&self) -> Guard {
        let l = &self.limits;
        Guard {
            acct_fail: "login-fail-acct",
            ip_fail: "login-fail-ip",
            delay: "login-delay",
            per_account: l.login_failures_per_account_hour,
            per_ip: l.login_failures_per_ip_hour,
            free: l.login_free_failures,
            max_delay_s: l.login_max_delay_s,
        }
    }

    fn mfa_guard(&self) -> Guard {
        let l = &self.limits;
        Guard {
            acct_fail: "mfa-fail-acct",
            ip_fail: "mfa-fail-ip",
            delay: "mfa-delay",
            per_account: l.mfa_failures_per_account_hour,
            per_ip: l.mfa_failures_per_ip_hour,
            free: l.mfa_free_failures,
            max_delay_s: l.mfa_max_delay_s,
        }
    }

    async fn allowed(
        &self,
        g: &Guard,
        account: &str,
        ip: &str,
    ) -> anyhow::Result<Result<(), RetryAfter>> {
        let mut conn = self.redis.conn();
        let acct_fail = self.key(&[g.acct_fail, account]);
        let acct_delay = self.key(&[g.delay, account]);
        let ip_fail = self.key(&[g.ip_fail, ip]);
        let (af, delay_ms, ipf, af_ttl, ip_ttl): (Option<u64>, i64, Option<u64>, i64, i64) =
            redis::pipe()
                .get(&acct_fail)
                .pttl(&acct_delay)
                .get(&ip_fail)
                .ttl(&acct_fail)
                .ttl(&ip_fail)
                .query_async(&mut conn)
                .await?;
        if af.unwrap_or(0) >= g.per_account {
            return Ok(Err(RetryAfter(Duration::from_secs(af_ttl.max(1) as u64))));
        }
        if ipf.unwrap_or(0) >= g.per_ip {
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

    async fn failed(&self, g: &Guard, account: &str, ip: &str) -> anyhow::Result<Failure> {
        let mut conn = self.redis.conn();
        let acct_fail = self.key(&[g.acct_fail, account]);
        let ip_fail = self.key(&[g.ip_fail, ip]);
        let (n, _, _, _): (u64, i64, u64, i64) = redis::pipe()
            .incr(&acct_fail, 1u64)
            .expire(&acct_fail, HOUR as i64)
            .arg("NX")
            .incr(&ip_fail, 1u64)
            .expire(&ip_fail, HOUR as i64)
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        if n > g.free {
            let exp = (n - g.free - 1).min(30) as u32;
            let delay = 2u64.saturating_pow(exp).min(g.max_delay_s).max(1);
            let _: () = conn.set_ex(self.key(&[g.delay, account]), 1, delay).await?;
        }
        Ok(Failure {
            count: n,
            held_back: n == g.free + 1 || n == g.per_account,
        })
    }

    async fn succeeded(&self, g: &Guard, account: &str) -> anyhow::Result<()> {
        let mut conn = self.redis.conn();
        let _: () = conn
            .del(&[
                self.key(&[g.acct_fail, account]),
                self.key(&[g.delay, account]),
            ])
            .await?;
        Ok(())
    }
}

/// One kind of failure counted per account and per IP, with growing delays (see the header).
struct Guard {
    acct_fail: &'static str,
    ip_fail: &'static str,
    delay: &'static str,
    per_account: u64,
    per_ip: u64,
    free: u64,
    max_delay_s: u64,
}

/// What a counted failure did to its account.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// Failures of the account in the current hour window, this one included.
    pub count: u64,
    /// This failure is the one that started holding the account back (its first delay, or
    /// its hourly limit reached): the moment to tell the account's owner, once each.
    pub held_back: bool,
}
