//! System notifications (issue #8): lesson starting soon, live now, replay ready, payment
//! confirmed, security alerts.
//!
//! A notification goes to the user's chat channel `user:<id>` as a `notice` (Markdown body, and
//! `data` with `kind` and the ids it is about) and, when the user is not connected, by email
//! through the outbox (templates `notification` and `security_alert`, in the user's locale).
//! Users choose per kind which of the two they get; security alerts cannot be turned off
//! entirely (one of the two stays on).
//!
//! Routing, per user and notification (see [`route`]):
//! - connected (the chat's `online:<user>` key, refreshed by every connection) and `in_app` on:
//!   the notice only;
//! - otherwise: an email when `email` is on, and the notice too when `in_app` is on (it waits in
//!   the channel for the next connection).
//!
//! Idempotency: every notification has a key naming its event (`live_now:<event id>`,
//! `payment_confirmed:<order id>` …). A row in `notification_log` is inserted, the mail queued
//! and the notice enqueued in one transaction; a retried event (a webhook delivered twice, two
//! nodes hearing one Redis event, a job rerun) finds the row and notifies nobody again. The
//! notice's `client_id` is derived from the same key, so even a notice enqueued by a
//! transaction that then failed to commit is stored once.
//!
//! Sources: hooks call [`Notifier::spawn`] once (security: `http/auth.rs`, `http/me.rs`;
//! payments: the webhook route); live and recording events are heard on their Redis channels
//! ([`spawn`]), and a job announces lessons starting within `notifications.lesson_starting_min`.
//! A notification never fails the action that caused it: [`Notifier::spawn`] runs it in its
//! own task and only logs a failure.
//!
//! Size: about 830 lines of code plus tests: the router, the event sources and the jobs of one
//! feature; a split by source (lessons, live, payments, security) is the next step if it grows.

use std::time::Duration;

use anyhow::Context;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    cache::Redis,
    chat::Keys,
    email::{MailKind, Mailer},
    users::{self, Locale},
};

use crate::config::NotificationSettings;

/// The kinds a user chooses channels for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    LessonStarting,
    LiveNow,
    ReplayReady,
    PaymentConfirmed,
    Security,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::LessonStarting,
        Kind::LiveNow,
        Kind::ReplayReady,
        Kind::PaymentConfirmed,
        Kind::Security,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::LessonStarting => "lesson_starting",
            Kind::LiveNow => "live_now",
            Kind::ReplayReady => "replay_ready",
            Kind::PaymentConfirmed => "payment_confirmed",
            Kind::Security => "security",
        }
    }
}

/// A user's choice for one kind (default: both on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Preference {
    pub kind: Kind,
    /// A notice in the chat channel `user:<id>`.
    pub in_app: bool,
    /// An email when not connected.
    pub email: bool,
}

/// Refused preference: HTTP 422 `validation_failed` on `preferences` (security needs one channel on).
pub const SECURITY_NEEDS_A_CHANNEL: crate::users::InvalidInput = crate::users::InvalidInput {
    field: "preferences",
    reason: "security alerts cannot be turned off: keep in_app or email on",
};

/// Every kind's preference for `user` (defaults filled in).
pub async fn preferences(
    conn: &mut PgConnection,
    user: Uuid,
) -> Result<Vec<Preference>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT kind, in_app, email FROM notification_preferences WHERE user_id = $1",
        user
    )
    .fetch_all(conn)
    .await?;
    Ok(Kind::ALL
        .into_iter()
        .map(|kind| {
            rows.iter()
                .find(|r| r.kind == kind.as_str())
                .map(|r| Preference {
                    kind,
                    in_app: r.in_app,
                    email: r.email,
                })
                .unwrap_or(Preference {
                    kind,
                    in_app: true,
                    email: true,
                })
        })
        .collect())
}

/// Store the given kinds' choices (others keep theirs).
pub async fn set_preferences(
    conn: &mut PgConnection,
    user: Uuid,
    prefs: &[Preference],
) -> Result<(), SetError> {
    if prefs
        .iter()
        .any(|p| p.kind == Kind::Security && !p.in_app && !p.email)
    {
        return Err(SetError::SecurityOff);
    }
    for p in prefs {
        sqlx::query!(
            r#"INSERT INTO notification_preferences (user_id, kind, in_app, email)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (user_id, kind) DO UPDATE
               SET in_app = EXCLUDED.in_app, email = EXCLUDED.email, updated_at = now()"#,
            user,
            p.kind.as_str(),
            p.in_app,
            p.email
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// HTTP 422 `validation_failed`.
    #[error("security alerts cannot be turned off")]
    SecurityOff,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What happened, with what the texts need.
#[derive(Debug, Clone)]
pub enum Event {
    LessonStarting {
        lesson_id: Uuid,
        course_id: Uuid,
        lesson: String,
        course: String,
        starts_at: OffsetDateTime,
    },
    LiveNow {
        /// The `live_stream.active` event (one per live session).
        event_id: Uuid,
        lesson_id: Uuid,
        course_id: Uuid,
        lesson: String,
        course: String,
    },
    ReplayReady {
        recording_id: Uuid,
        lesson_id: Uuid,
        course_id: Uuid,
        lesson: String,
        course: String,
    },
    PaymentConfirmed {
        order_id: Uuid,
        /// Minor units.
        amount: i64,
        currency: String,
    },
    Security {
        /// `new_login`, `password_changed`, `password_reset`, `two_factor_enabled`,
        /// `two_factor_disabled`, `two_factor_failures`, `api_token_created`.
        what: &'static str,
        /// What makes this occurrence unique (a session, a token, an audit event).
        occurrence: Uuid,
    },
}

impl Event {
    pub fn kind(&self) -> Kind {
        match self {
            Event::LessonStarting { .. } => Kind::LessonStarting,
            Event::LiveNow { .. } => Kind::LiveNow,
            Event::ReplayReady { .. } => Kind::ReplayReady,
            Event::PaymentConfirmed { .. } => Kind::PaymentConfirmed,
            Event::Security { .. } => Kind::Security,
        }
    }

    /// The idempotency key: the same event always has the same key.
    pub fn key(&self) -> String {
        match self {
            Event::LessonStarting { lesson_id, .. } => format!("lesson_starting:{lesson_id}"),
            Event::LiveNow { event_id, .. } => format!("live_now:{event_id}"),
            Event::ReplayReady { recording_id, .. } => format!("replay_ready:{recording_id}"),
            Event::PaymentConfirmed { order_id, .. } => format!("payment_confirmed:{order_id}"),
            Event::Security { what, occurrence } => format!("security:{what}:{occurrence}"),
        }
    }

    /// `data` of the notice: the kind and the ids it is about.
    pub fn data(&self) -> serde_json::Value {
        let mut d = match self {
            Event::LessonStarting {
                lesson_id,
                course_id,
                starts_at,
                ..
            } => json!({"lesson_id": lesson_id, "course_id": course_id,
                        "starts_at": starts_at.format(&time::format_description::well_known::Rfc3339).ok()}),
            Event::LiveNow {
                lesson_id,
                course_id,
                ..
            } => json!({"lesson_id": lesson_id, "course_id": course_id}),
            Event::ReplayReady {
                recording_id,
                lesson_id,
                course_id,
                ..
            } => {
                json!({"recording_id": recording_id, "lesson_id": lesson_id, "course_id": course_id})
            }
            Event::PaymentConfirmed {
                order_id,
                amount,
                currency,
            } => json!({"order_id": order_id, "amount": amount, "currency": currency}),
            Event::Security { what, .. } => json!({"event": what}),
        };
        d["kind"] = json!(self.kind().as_str());
        d
    }

    /// (title, one-line text) in `locale`. Titles and names are user text: the Markdown body
    /// escapes them, the mail templates escape them for HTML.
    fn text(&self, locale: Locale) -> (String, String) {
        let zh = locale == Locale::ZhCn;
        match self {
            Event::LessonStarting {
                lesson,
                course,
                starts_at,
                ..
            } => {
                let mins = ((*starts_at - OffsetDateTime::now_utc())
                    .whole_seconds()
                    .max(0)
                    + 59)
                    / 60;
                if zh {
                    (
                        format!("课程即将开始：{lesson}"),
                        format!("《{course}》的课程「{lesson}」将在 {mins} 分钟后开始。"),
                    )
                } else {
                    (
                        format!("Starting soon: {lesson}"),
                        format!("The lesson \"{lesson}\" of {course} starts in {mins} minutes."),
                    )
                }
            }
            Event::LiveNow { lesson, course, .. } => {
                if zh {
                    (
                        format!("正在直播：{lesson}"),
                        format!("《{course}》的课程「{lesson}」正在直播。"),
                    )
                } else {
                    (
                        format!("Live now: {lesson}"),
                        format!("The lesson \"{lesson}\" of {course} is live now."),
                    )
                }
            }
            Event::ReplayReady { lesson, course, .. } => {
                if zh {
                    (
                        format!("回放已就绪：{lesson}"),
                        format!("《{course}》的课程「{lesson}」的回放可以观看了。"),
                    )
                } else {
                    (
                        format!("Replay ready: {lesson}"),
                        format!("The replay of \"{lesson}\" ({course}) is ready to watch."),
                    )
                }
            }
            Event::PaymentConfirmed {
                order_id,
                amount,
                currency,
            } => {
                let money = format!("{}.{:02} {currency}", amount / 100, amount % 100);
                if zh {
                    (
                        "付款成功".into(),
                        format!("您的订单 {order_id} 已付款：{money}。"),
                    )
                } else {
                    (
                        "Payment confirmed".into(),
                        format!("Your order {order_id} is paid: {money}."),
                    )
                }
            }
            Event::Security { what, .. } => {
                let t = security_text(what, locale);
                if zh {
                    ("安全提醒".into(), t.into())
                } else {
                    ("Security alert".into(), t.into())
                }
            }
        }
    }
}

fn security_text(what: &str, locale: Locale) -> &'static str {
    match (what, locale) {
        ("new_login", Locale::En) => "a new sign-in to your account from a new device",
        ("new_login", Locale::ZhCn) => "您的账号在新设备上登录",
        ("password_changed", Locale::En) => "your password was changed",
        ("password_changed", Locale::ZhCn) => "您的密码已更改",
        ("password_reset", Locale::En) => "your password was reset",
        ("password_reset", Locale::ZhCn) => "您的密码已重置",
        ("two_factor_enabled", Locale::En) => "two-factor authentication was turned on",
        ("two_factor_enabled", Locale::ZhCn) => "已开启两步验证",
        ("two_factor_disabled", Locale::En) => "two-factor authentication was turned off",
        ("two_factor_disabled", Locale::ZhCn) => "已关闭两步验证",
        ("two_factor_failures", Locale::En) => {
            "wrong two-factor codes were entered for your account, so its codes are refused for \
             a while; someone may know your password: if it was not you, change it now"
        }
        ("two_factor_failures", Locale::ZhCn) => {
            "您的账号多次输入了错误的两步验证码，验证码暂时不再受理；可能有人知道您的密码：如非本人操作，请立即修改密码"
        }
        ("api_token_created", Locale::En) => "a new API token was created",
        ("api_token_created", Locale::ZhCn) => "已创建新的 API 令牌",
        (_, Locale::En) => "a change to your account",
        (_, Locale::ZhCn) => "您的账号发生了变更",
    }
}

/// Escape Markdown's punctuation in user text (titles) put into a notice.
fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\`*_{}[]()#+-.!<>|~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Where one notification goes, given the user's choice and whether they are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub in_app: bool,
    pub email: bool,
}

pub fn route(pref: Preference, online: bool) -> Route {
    Route {
        in_app: pref.in_app,
        email: pref.email && !(online && pref.in_app),
    }
}

/// Sends notifications (cheap to clone).
#[derive(Clone)]
pub struct Notifier {
    db: PgPool,
    redis: Redis,
    keys: Keys,
    mailer: Mailer,
}

impl Notifier {
    pub fn new(db: PgPool, redis: Redis, keys: Keys, mailer: Mailer) -> Notifier {
        Notifier {
            db,
            redis,
            keys,
            mailer,
        }
    }

    /// Notify in the background: the caller's action never waits for it nor fails with it.
    pub fn spawn(&self, user: Uuid, event: Event) {
        let n = self.clone();
        tokio::spawn(async move { n.notify(user, &event).await });
    }

    /// Notify `user` of `event`; failures are logged, never returned.
    pub async fn notify(&self, user: Uuid, event: &Event) {
        match self.try_notify(user, event).await {
            Ok(_) => {}
            Err(e) => {
                metrics::counter!("notifications_failed_total", "kind" => event.kind().as_str())
                    .increment(1);
                tracing::warn!(%user, key = event.key(), error = format!("{e:#}"), "notification failed");
            }
        }
    }

    /// Returns where it went, or `None` when it had been sent already (or the user is gone).
    pub async fn try_notify(&self, user: Uuid, event: &Event) -> anyhow::Result<Option<Route>> {
        let kind = event.kind();
        let key = event.key();
        let mut tx = self.db.begin().await?;
        let Some(u) = users::find_by_id(&mut tx, user).await? else {
            return Ok(None);
        };
        if u.status != "active" {
            return Ok(None);
        }
        let pref = preferences(&mut tx, user)
            .await?
            .into_iter()
            .find(|p| p.kind == kind)
            .expect("every kind has a preference");
        // Unknown presence (Redis down) counts as offline: better a mail than nothing.
        let online: bool = self
            .redis
            .conn()
            .exists(self.keys.online(user))
            .await
            .unwrap_or(false);
        let to = route(pref, online);
        let delivered = match (to.in_app, to.email) {
            (true, true) => "both",
            (true, false) => "in_app",
            (false, true) => "email",
            (false, false) => "none",
        };
        let fresh = sqlx::query_scalar!(
            r#"INSERT INTO notification_log (user_id, key, kind, delivered) VALUES ($1, $2, $3, $4)
               ON CONFLICT (user_id, key) DO NOTHING RETURNING 1 AS "one!""#,
            user,
            key,
            kind.as_str(),
            delivered
        )
        .fetch_optional(&mut *tx)
        .await?;
        if fresh.is_none() {
            return Ok(None);
        }
        let (title, text) = event.text(u.locale);
        if to.email {
            match event {
                Event::Security { .. } => {
                    self.mailer
                        .queue(
                            &mut tx,
                            &u.email,
                            MailKind::SecurityAlert,
                            u.locale,
                            json!({"name": u.display_name, "event": text}),
                        )
                        .await?
                }
                _ => {
                    self.mailer
                        .queue(
                            &mut tx,
                            &u.email,
                            MailKind::Notification,
                            u.locale,
                            json!({"name": u.display_name, "kind": kind.as_str(),
                                   "title": title, "text": text}),
                        )
                        .await?
                }
            };
        }
        if to.in_app {
            // Enqueued before the commit: if the commit fails, the retry's notice has the same
            // client_id and is stored once.
            let body = format!("**{}**\n\n{}", md_escape(&title), md_escape(&text));
            crate::chat::notify::notice(
                &self.redis,
                &self.keys,
                user,
                &client_id(&key),
                &body,
                event.data(),
            )
            .await
            .context("queue the notice")?;
        }
        tx.commit().await?;
        if to.email {
            self.mailer.wake();
        }
        metrics::counter!("notifications_total", "kind" => kind.as_str(), "to" => delivered)
            .increment(1);
        Ok(Some(to))
    }

    /// Security alert for a login, when it comes from a device (address and browser) none of
    /// the user's earlier sessions used. The very first login is not news.
    pub fn new_login(&self, user: Uuid, session: Uuid) {
        let n = self.clone();
        tokio::spawn(async move {
            let new_device = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM sessions o WHERE o.user_id = $1 AND o.id <> $2)
                      AND NOT EXISTS (SELECT 1 FROM sessions o, sessions s
                                      WHERE s.id = $2 AND o.user_id = $1 AND o.id <> $2
                                        AND o.ip IS NOT DISTINCT FROM s.ip
                                        AND o.user_agent IS NOT DISTINCT FROM s.user_agent)
                      AS "new!""#,
                user,
                session
            )
            .fetch_one(&n.db)
            .await;
            match new_device {
                Ok(true) => {
                    n.notify(
                        user,
                        &Event::Security {
                            what: "new_login",
                            occurrence: session,
                        },
                    )
                    .await
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "new-login check failed"),
            }
        });
    }

    /// The order's buyer learns it is paid (called after a payment event was applied).
    pub fn payment_confirmed(&self, order_ref: &str) {
        let Ok(order_id) = Uuid::parse_str(order_ref) else {
            return;
        };
        let n = self.clone();
        tokio::spawn(async move {
            let order = sqlx::query!(
                "SELECT user_id, amount, currency FROM orders WHERE id = $1 AND paid_at IS NOT NULL",
                order_id
            )
            .fetch_optional(&n.db)
            .await;
            match order {
                Ok(Some(o)) => {
                    n.notify(
                        o.user_id,
                        &Event::PaymentConfirmed {
                            order_id,
                            amount: o.amount,
                            currency: o.currency,
                        },
                    )
                    .await
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "payment notification: order lookup failed"),
            }
        });
    }
}

/// A notice's `client_id` (≤ 64 characters) from its key.
fn client_id(key: &str) -> String {
    if key.len() <= 64 {
        key.to_owned()
    } else {
        format!(
            "n:{}",
            &hex::encode(sha2::Sha256::digest(key.as_bytes()))[..48]
        )
    }
}

/// A lesson with its course, and who is in it.
struct LessonRow {
    id: Uuid,
    course_id: Uuid,
    title: String,
    course_title: String,
    starts_at: OffsetDateTime,
}

async fn lesson_by_stream(db: &PgPool, stream: Uuid) -> Result<Option<LessonRow>, sqlx::Error> {
    sqlx::query_as!(
        LessonRow,
        r#"SELECT l.id, l.course_id, l.title, c.title AS course_title, l.starts_at
           FROM lessons l JOIN courses c ON c.id = l.course_id
           WHERE l.live_stream_id = $1 AND l.deleted_at IS NULL"#,
        stream
    )
    .fetch_optional(db)
    .await
}

/// Active students of a course, and (with `staff`) its owner and members.
async fn audience(db: &PgPool, course: Uuid, staff: bool) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT user_id AS "u!" FROM enrollments WHERE course_id = $1 AND status = 'active'
           UNION SELECT owner_id FROM courses WHERE id = $1 AND $2
           UNION SELECT user_id FROM course_members WHERE course_id = $1 AND $2"#,
        course,
        staff
    )
    .fetch_all(db)
    .await
}

/// Start the background parts: the lesson-starting job (with the catch-up on missed events; one
/// node of the cluster per interval: `lease`) and the listener of live and recording events
/// (every node; the log makes them notify once).
pub fn spawn(
    notifier: Notifier,
    settings: NotificationSettings,
    lease: crate::jobs::Lease,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let n = notifier.clone();
    let stop = shutdown.clone();
    let listener = tokio::spawn(async move { listen(n, stop).await });
    tokio::spawn(async move {
        let every = Duration::from_secs(settings.scan_interval_s.max(1));
        loop {
            if lease.claim_every("notifications.scan", every).await {
                scan(&notifier, settings.lesson_starting_min).await;
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => break,
            }
        }
        // The listener stops on the same token: the returned handle covers both tasks.
        let _ = listener.await;
    })
}

/// The periodic pass: lessons starting soon, then the events the listener missed.
async fn scan(notifier: &Notifier, lesson_starting_min: u32) {
    if let Err(e) = lessons_starting(notifier, lesson_starting_min).await {
        tracing::warn!(error = %e, "lesson-starting notifications failed");
    }
    match missed_events(notifier).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            events = n,
            "notified live/recording events the listener missed"
        ),
        Err(e) => tracing::warn!(error = %e, "catching up on missed events failed"),
    }
}

/// One pass: announce lessons starting within `minutes` that were not announced yet. They are
/// marked after their notifications were sent (a crash in between repeats the pass, which the
/// log makes harmless).
pub async fn lessons_starting(n: &Notifier, minutes: u32) -> anyhow::Result<usize> {
    let due = sqlx::query_as!(
        LessonRow,
        r#"SELECT l.id, l.course_id, l.title, c.title AS course_title, l.starts_at
           FROM lessons l JOIN courses c ON c.id = l.course_id
           WHERE l.starting_notified_at IS NULL AND l.deleted_at IS NULL AND l.ended_at IS NULL
             AND l.starts_at > now() AND l.starts_at <= now() + make_interval(mins => $1)
           ORDER BY l.starts_at LIMIT 100"#,
        minutes as i32
    )
    .fetch_all(&n.db)
    .await?;
    for l in &due {
        let event = Event::LessonStarting {
            lesson_id: l.id,
            course_id: l.course_id,
            lesson: l.title.clone(),
            course: l.course_title.clone(),
            starts_at: l.starts_at,
        };
        for user in audience(&n.db, l.course_id, true).await? {
            n.notify(user, &event).await;
        }
        sqlx::query!(
            "UPDATE lessons SET starting_notified_at = now() WHERE id = $1",
            l.id
        )
        .execute(&n.db)
        .await?;
    }
    Ok(due.len())
}

#[derive(Deserialize)]
struct HeardEvent {
    id: Uuid,
    kind: String,
    live_stream_id: Uuid,
    #[serde(default)]
    recording_id: Option<Uuid>,
}

/// Events the Redis listener did not handle (published while no node listened, or lost with a
/// subscription): `live_stream.active` of the last 30 minutes (older ones are no longer
/// news) and `recording.ready` of the last day, at least 10 s old (the listener's turn first),
/// 100 per pass. Returns how many were handled.
pub async fn missed_events(n: &Notifier) -> anyhow::Result<usize> {
    let missed = sqlx::query_as!(
        HeardEvent,
        r#"SELECT e.id AS "id!", e.kind AS "kind!", e.live_stream_id AS "live_stream_id!",
                  e.recording_id
             FROM (SELECT id, kind, live_stream_id, NULL::uuid AS recording_id, created_at
                     FROM live_stream_events
                    WHERE kind = 'live_stream.active' AND created_at > now() - interval '30 minutes'
                   UNION ALL
                   SELECT id, kind, live_stream_id, recording_id, created_at
                     FROM recording_events
                    WHERE kind = 'recording.ready' AND created_at > now() - interval '1 day') e
            WHERE e.created_at < now() - interval '10 seconds'
              AND NOT EXISTS (SELECT 1 FROM notification_sources s WHERE s.event_id = e.id)
            ORDER BY e.created_at LIMIT 100"#
    )
    .fetch_all(&n.db)
    .await?;
    let count = missed.len();
    for ev in missed {
        heard(n, ev).await?;
    }
    Ok(count)
}

/// Listen to `live_stream.active` and `recording.ready` (Redis pub/sub; what it misses,
/// [`missed_events`] finds in the events tables).
async fn listen(n: Notifier, shutdown: CancellationToken) {
    let channels = [
        crate::live::events::CHANNEL,
        crate::recordings::store::EVENTS_CHANNEL,
    ];
    let redis = n.redis.clone();
    // A gap in the subscription is what [`missed_events`] covers.
    redis
        .listen("notifications", &channels, &shutdown, |what| {
            if let crate::cache::Heard::Message(payload) = what
                && let Ok(ev) = serde_json::from_str::<HeardEvent>(&payload)
                && (ev.kind == "live_stream.active" || ev.kind == "recording.ready")
            {
                let n = n.clone();
                tokio::spawn(async move {
                    if let Err(e) = heard(&n, ev).await {
                        tracing::warn!(error = %e, "notifications: event not handled");
                    }
                });
            }
            std::future::ready(std::ops::ControlFlow::Continue(()))
        })
        .await;
}

async fn heard(n: &Notifier, ev: HeardEvent) -> anyhow::Result<()> {
    let ev_id = ev.id;
    let Some(l) = lesson_by_stream(&n.db, ev.live_stream_id).await? else {
        return mark_handled(n, ev_id).await;
    };
    let event = match (ev.kind.as_str(), ev.recording_id) {
        ("live_stream.active", _) => Event::LiveNow {
            event_id: ev.id,
            lesson_id: l.id,
            course_id: l.course_id,
            lesson: l.title,
            course: l.course_title,
        },
        ("recording.ready", Some(recording_id)) => Event::ReplayReady {
            recording_id,
            lesson_id: l.id,
            course_id: l.course_id,
            lesson: l.title,
            course: l.course_title,
        },
        _ => return mark_handled(n, ev_id).await,
    };
    for user in audience(&n.db, l.course_id, false).await? {
        n.notify(user, &event).await;
    }
    mark_handled(n, ev_id).await
}

/// Remember that an event's notifications went out (every recipient was tried; each one's
/// delivery is deduplicated by the log anyway).
async fn mark_handled(n: &Notifier, event_id: Uuid) -> anyhow::Result<()> {
    sqlx::query!(
        "INSERT INTO notification_sources (event_id) VALUES ($1) ON CONFLICT DO NOTHING",
        event_id
    )
    .execute(&n.db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pref(in_app: bool, email: bool) -> Preference {
        Preference {
            kind: Kind::LiveNow,
            in_app,
            email,
        }
    }

    #[test]
    fn connected_users_get_the_notice_and_others_an_email_too() {
        assert_eq!(
            route(pref(true, true), true),
            Route {
                in_app: true,
                email: false
            }
        );
        assert_eq!(
            route(pref(true, true), false),
            Route {
                in_app: true,
                email: true
            }
        );
        // In-app turned off: mail even while connected.
        assert_eq!(
            route(pref(false, true), true),
            Route {
                in_app: false,
                email: true
            }
        );
        assert_eq!(
            route(pref(false, false), false),
            Route {
                in_app: false,
                email: false
            }
        );
    }

    #[test]
    fn notice_client_ids_fit_and_stay_stable() {
        let long = format!("security:two_factor_disabled:{}", Uuid::now_v7());
        let id = client_id(&long);
        assert!(id.len() <= 64);
        assert_eq!(id, client_id(&long));
        assert_eq!(client_id("live_now:x"), "live_now:x");
    }

    #[test]
    fn titles_cannot_inject_markdown() {
        assert_eq!(md_escape("[x](javascript:y)"), "\\[x\\]\\(javascript:y\\)");
    }
}
