//! Email: templates (minijinja, `zh-CN` and `en`, HTML and text parts), an outbox table and a
//! retrying sender (lettre SMTP).
//!
//! Queuing renders the mail and inserts it into `email_outbox`, in the caller's transaction when
//! it has one, so "the account exists" and "its verification mail will go out" commit together.
//! The sender task takes due rows (`FOR UPDATE SKIP LOCKED`, so several nodes share the work),
//! delivers them and either marks them sent or pushes `next_attempt_at` back (doubling from
//! `email.retry_base_s` up to `email.retry_max_s`). A dead SMTP server only delays mail.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::{
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
};
use minijinja::Environment;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    config::{EmailSettings, SmtpTls},
    users::Locale,
};

/// The mails this service sends; each has a subject, text and HTML template per locale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    VerifyEmail,
    /// To the owner of an address someone tried to register again (registration answers the
    /// same either way, so the address's owner is told instead of the caller).
    AccountExists,
    PasswordReset,
    SecurityAlert,
    /// A system notification (lesson starting, live now, replay ready, payment confirmed).
    Notification,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::VerifyEmail => "verify_email",
            MailKind::AccountExists => "account_exists",
            MailKind::PasswordReset => "password_reset",
            MailKind::SecurityAlert => "security_alert",
            MailKind::Notification => "notification",
        }
    }
}

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates!(
    "base.html",
    "en.verify_email.subject",
    "en.verify_email.txt",
    "en.verify_email.html",
    "zh-CN.verify_email.subject",
    "zh-CN.verify_email.txt",
    "zh-CN.verify_email.html",
    "en.account_exists.subject",
    "en.account_exists.txt",
    "en.account_exists.html",
    "zh-CN.account_exists.subject",
    "zh-CN.account_exists.txt",
    "zh-CN.account_exists.html",
    "en.password_reset.subject",
    "en.password_reset.txt",
    "en.password_reset.html",
    "zh-CN.password_reset.subject",
    "zh-CN.password_reset.txt",
    "zh-CN.password_reset.html",
    "en.security_alert.subject",
    "en.security_alert.txt",
    "en.security_alert.html",
    "zh-CN.security_alert.subject",
    "zh-CN.security_alert.txt",
    "zh-CN.security_alert.html",
    "en.notification.subject",
    "en.notification.txt",
    "en.notification.html",
    "zh-CN.notification.subject",
    "zh-CN.notification.txt",
    "zh-CN.notification.html",
);

/// A rendered mail.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Renders and queues mail; wakes the sender.
#[derive(Clone)]
pub struct Mailer {
    env: Arc<Environment<'static>>,
    wake: Arc<Notify>,
    app_url: url::Url,
}

impl Mailer {
    pub fn new(settings: &EmailSettings) -> anyhow::Result<Mailer> {
        let mut env = Environment::new();
        // `.html` templates escape HTML (minijinja's default by file name); others do not.
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .with_context(|| format!("email template {name}"))?;
        }
        Ok(Mailer {
            env: Arc::new(env),
            wake: Arc::new(Notify::new()),
            app_url: settings.app_url.clone(),
        })
    }

    /// `<email.app_url>/<path>?token=<token>`.
    /// A page of the web app (`path` without its leading slash).
    pub fn page(&self, path: &str) -> String {
        let mut url = self.app_url.clone();
        url.set_path(&format!(
            "{}/{path}",
            self.app_url.path().trim_end_matches('/')
        ));
        url.to_string()
    }

    pub fn link(&self, path: &str, token: &str) -> String {
        let mut url = self.app_url.clone();
        url.set_path(&format!(
            "{}/{path}",
            self.app_url.path().trim_end_matches('/')
        ));
        url.query_pairs_mut().append_pair("token", token);
        url.to_string()
    }

    pub fn render(
        &self,
        kind: MailKind,
        locale: Locale,
        ctx: impl Serialize,
    ) -> anyhow::Result<Rendered> {
        let lang = locale.as_str();
        let ctx = minijinja::Value::from(minijinja::value::Serde(&ctx));
        let get = |part: &str| -> anyhow::Result<String> {
            let name = format!("{lang}.{}.{part}", kind.as_str());
            let t = self.env.get_template(&name)?;
            Ok(t.render(&ctx)?)
        };
        let subject = get("subject")?.trim().to_string();
        let text = get("txt")?;
        let html_ctx =
            minijinja::context! { lang => lang, subject => subject.clone(), ..ctx.clone() };
        let html = self
            .env
            .get_template(&format!("{lang}.{}.html", kind.as_str()))?
            .render(html_ctx)?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }

    /// Render and insert into the outbox (in the caller's transaction); the sender is woken
    /// when the caller calls [`Mailer::wake`] after committing.
    pub async fn queue(
        &self,
        conn: &mut PgConnection,
        to: &str,
        kind: MailKind,
        locale: Locale,
        ctx: impl Serialize,
    ) -> anyhow::Result<Uuid> {
        let mail = self.render(kind, locale, ctx)?;
        let id = Uuid::now_v7();
        sqlx::query!(
            r#"INSERT INTO email_outbox (id, kind, to_address, subject, text_body, html_body)
               VALUES ($1, $2, $3, $4, $5, $6)"#,
            id,
            kind.as_str(),
            to,
            mail.subject,
            mail.text,
            mail.html,
        )
        .execute(conn)
        .await?;
        Ok(id)
    }

    /// Tell the sender there is new mail.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The background sender: delivers due mail until `shutdown`.
pub fn spawn_sender(
    settings: EmailSettings,
    db: PgPool,
    mailer: &Mailer,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let transport = transport(&settings)?;
    let from: Mailbox = settings.from.parse().context("email.from")?;
    let wake = mailer.wake.clone();
    Ok(tokio::spawn(async move {
        let poll = Duration::from_millis(settings.poll_interval_ms);
        loop {
            if let Err(e) = deliver_due(&settings, &db, &transport, &from).await {
                tracing::warn!(error = format!("{e:#}"), "email outbox pass failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }))
}

fn transport(settings: &EmailSettings) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let host = settings.smtp_host.as_str();
    let tls = match settings.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(TlsParameters::new(host.into())?),
        SmtpTls::Tls => Tls::Wrapper(TlsParameters::new(host.into())?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(settings.smtp_port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(settings.timeout_s)));
    if !settings.username.is_empty() {
        builder = builder.credentials(Credentials::new(
            settings.username.clone(),
            settings.password.expose().to_string(),
        ));
    }
    Ok(builder.build())
}

/// One pass: take up to 20 due mails and try each once.
async fn deliver_due(
    settings: &EmailSettings,
    db: &PgPool,
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let due = sqlx::query!(
        r#"SELECT id, to_address, subject, text_body, html_body, attempts FROM email_outbox
           WHERE sent_at IS NULL AND next_attempt_at <= now() AND attempts < $1
           ORDER BY next_attempt_at LIMIT 20 FOR UPDATE SKIP LOCKED"#,
        settings.max_attempts,
    )
    .fetch_all(&mut *tx)
    .await?;
    for mail in due {
        let result = async {
            let message = Message::builder()
                .from(from.clone())
                .to(mail.to_address.parse().context("recipient")?)
                .subject(mail.subject.clone())
                .multipart(MultiPart::alternative_plain_html(
                    mail.text_body.clone(),
                    mail.html_body.clone(),
                ))
                .context("building the message")?;
            transport.send(message).await.context("SMTP delivery")?;
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                sqlx::query!(
                    "UPDATE email_outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1",
                    mail.id
                )
                .execute(&mut *tx)
                .await?;
                metrics::counter!("email_sent_total").increment(1);
            }
            Err(e) => {
                let backoff = settings
                    .retry_base_s
                    .saturating_mul(1u64 << mail.attempts.clamp(0, 20))
                    .min(settings.retry_max_s);
                tracing::warn!(mail_id = %mail.id, attempts = mail.attempts + 1, retry_in_s = backoff, error = format!("{e:#}"), "mail not delivered");
                sqlx::query!(
                    r#"UPDATE email_outbox SET attempts = attempts + 1, last_error = $2,
                         next_attempt_at = now() + make_interval(secs => $3)
                       WHERE id = $1"#,
                    mail.id,
                    format!("{e:#}"),
                    backoff as f64,
                )
                .execute(&mut *tx)
                .await?;
                metrics::counter!("email_failed_attempts_total").increment(1);
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailer() -> Mailer {
        let s = crate::config::Settings::load(&crate::config::Sources {
            local: None,
            file: None,
            env: Some(vec![]),
        })
        .unwrap();
        Mailer::new(&s.email).unwrap()
    }

    #[test]
    fn every_mail_renders_in_both_locales_and_html_is_escaped() {
        let m = mailer();
        for kind in [
            MailKind::VerifyEmail,
            MailKind::PasswordReset,
            MailKind::SecurityAlert,
            MailKind::Notification,
        ] {
            for locale in [Locale::En, Locale::ZhCn] {
                let r = m
                    .render(
                        kind,
                        locale,
                        serde_json::json!({"name": "<b>Li</b>", "link": "https://x.example/a?token=1&b=2",
                                           "hours": 24, "minutes": 30, "event": "x",
                                           "title": "<b>Li</b>", "text": "<b>Li</b>"}),
                    )
                    .unwrap();
                assert!(!r.subject.is_empty() && !r.subject.contains('\n'));
                assert!(r.text.contains("<b>Li</b>") || kind == MailKind::SecurityAlert);
                assert!(!r.html.contains("<b>Li</b>"), "{}", r.html);
            }
        }
        let zh = m
            .render(
                MailKind::VerifyEmail,
                Locale::ZhCn,
                serde_json::json!({"name": "李", "link": "l", "hours": 24}),
            )
            .unwrap();
        assert_eq!(zh.subject, "请验证您的邮箱地址");
    }

    #[test]
    fn links_carry_the_token() {
        assert_eq!(
            mailer().link("verify-email", "a+b"),
            "http://127.0.0.1:8080/verify-email?token=a%2Bb"
        );
    }
}
