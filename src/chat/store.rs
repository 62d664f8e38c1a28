//! PostgreSQL side of the chat: channels, messages, read markers and moderation.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Canonical, ChannelName, MessageView};
use crate::domain::{ChannelId, CourseId, UserId};

/// A channel row (what the socket and the persister need).
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: Uuid,
    pub name: Canonical,
    pub last_seq: i64,
    pub muted: bool,
    pub slow_mode_s: i32,
}

/// Find or create the channel `name` (channels exist from their first use).
pub async fn ensure_channel(
    conn: &mut PgConnection,
    name: ChannelName,
    me: Uuid,
    course_id: Option<Uuid>,
    lesson_id: Option<Uuid>,
) -> Result<Channel, sqlx::Error> {
    let canonical = name.canonical(me);
    if let Some(c) = channel_by_name(conn, &canonical).await? {
        return Ok(c);
    }
    let (user_a, user_b) = match name {
        ChannelName::Dm(_) => canonical
            .dm_members()
            .map(|(a, b)| (Some(a), Some(b)))
            .unwrap_or((None, None)),
        ChannelName::User(u) => (Some(u), None),
        _ => (None, None),
    };
    sqlx::query!(
        r#"INSERT INTO chat_channels (id, name, kind, course_id, lesson_id, user_a, user_b)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING"#,
        Uuid::now_v7(),
        canonical.as_str(),
        name.kind(),
        course_id,
        lesson_id,
        user_a,
        user_b,
    )
    .execute(&mut *conn)
    .await?;
    channel_by_name(conn, &canonical)
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

pub async fn channel_by_name(
    conn: &mut PgConnection,
    name: &Canonical,
) -> Result<Option<Channel>, sqlx::Error> {
    Ok(sqlx::query!(
        "SELECT id, name, last_seq, muted, slow_mode_s FROM chat_channels WHERE name = $1",
        name.as_str()
    )
    .fetch_optional(conn)
    .await?
    .map(|r| Channel {
        id: r.id,
        name: Canonical(r.name),
        last_seq: r.last_seq,
        muted: r.muted,
        slow_mode_s: r.slow_mode_s,
    }))
}

struct Row {
    id: Uuid,
    seq: i64,
    kind: String,
    sender_id: Option<Uuid>,
    client_id: String,
    body: String,
    html: String,
    refers_to: Option<Uuid>,
    data: Option<serde_json::Value>,
    created_at: OffsetDateTime,
    deleted_at: Option<OffsetDateTime>,
    deleted_by: Option<Uuid>,
}

impl From<Row> for MessageView {
    fn from(r: Row) -> MessageView {
        MessageView {
            id: r.id,
            seq: r.seq,
            kind: r.kind,
            sender_id: r.sender_id,
            client_id: r.client_id,
            body: r.body,
            html: r.html,
            refers_to: r.refers_to,
            data: r.data,
            created_at: r.created_at,
            deleted: r.deleted_at.is_some(),
            deleted_by: r.deleted_by,
            reactions: Vec::new(),
        }
    }
}

/// The message a sender already stored under `client_id`, with its channel's name.
pub async fn by_client_id(
    conn: &mut PgConnection,
    sender: Uuid,
    client_id: &str,
) -> Result<Option<(Canonical, MessageView)>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT c.name, m.id FROM chat_messages m JOIN chat_channels c ON c.id = m.channel_id
           WHERE m.sender_id = $1 AND m.client_id = $2"#,
        sender,
        client_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok(message(conn, r.id)
            .await?
            .map(|(_, _, m)| (Canonical(r.name), m))),
        None => Ok(None),
    }
}

/// A system notice already stored in `channel` under `client_id`.
async fn notice_by_client_id(
    conn: &mut PgConnection,
    channel: &Canonical,
    client_id: &str,
) -> Result<Option<(Canonical, MessageView)>, sqlx::Error> {
    let id = sqlx::query_scalar!(
        r#"SELECT m.id FROM chat_messages m JOIN chat_channels c ON c.id = m.channel_id
           WHERE c.name = $1 AND m.client_id = $2 AND m.sender_id IS NULL"#,
        channel.as_str(),
        client_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    match id {
        Some(id) => Ok(message(conn, id).await?.map(|(_, n, m)| (n, m))),
        None => Ok(None),
    }
}

/// One message with its channel (id, name).
pub async fn message(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<(Uuid, Canonical, MessageView)>, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT m.id, m.seq, m.kind, m.sender_id, m.client_id, m.body, m.html, m.refers_to,
                  m.data, m.created_at, m.deleted_at, m.deleted_by, m.channel_id, c.name
           FROM chat_messages m JOIN chat_channels c ON c.id = m.channel_id WHERE m.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(r.map(|r| {
        (
            r.channel_id,
            Canonical(r.name),
            Row {
                id: r.id,
                seq: r.seq,
                kind: r.kind,
                sender_id: r.sender_id,
                client_id: r.client_id,
                body: r.body,
                html: r.html,
                refers_to: r.refers_to,
                data: r.data,
                created_at: r.created_at,
                deleted_at: r.deleted_at,
                deleted_by: r.deleted_by,
            }
            .into(),
        )
    }))
}

/// Where a history page is anchored.
#[derive(Debug, Clone, Copy)]
pub enum Anchor {
    /// The newest messages.
    Latest,
    /// Older than this sequence number.
    Before(i64),
    /// Newer than this sequence number.
    After(i64),
    /// Centered on this sequence number (included).
    Around(i64),
}

/// A page of history in ascending `seq` order, and whether more exist beyond it in the
/// direction of the anchor.
pub async fn history(
    conn: &mut PgConnection,
    channel: Uuid,
    anchor: Anchor,
    limit: i64,
) -> Result<(Vec<MessageView>, bool), sqlx::Error> {
    let (lo, hi, newest_first) = match anchor {
        Anchor::Latest => (0, i64::MAX, true),
        Anchor::Before(s) => (0, s - 1, true),
        Anchor::After(s) => (s + 1, i64::MAX, false),
        Anchor::Around(s) => {
            let before = limit / 2;
            let (mut older, _) =
                Box::pin(history(conn, channel, Anchor::Before(s + 1), before + 1)).await?;
            let (newer, more) = Box::pin(history(
                conn,
                channel,
                Anchor::After(s),
                limit - older.len() as i64,
            ))
            .await?;
            older.extend(newer);
            return Ok((older, more));
        }
    };
    let mut rows: Vec<MessageView> = sqlx::query_as!(
        Row,
        r#"SELECT id, seq, kind, sender_id, client_id, body, html, refers_to, data, created_at,
                  deleted_at, deleted_by
           FROM chat_messages WHERE channel_id = $1 AND seq BETWEEN $2 AND $3
           ORDER BY CASE WHEN $4 THEN -seq ELSE seq END LIMIT $5"#,
        channel,
        lo,
        hi,
        newest_first,
        limit + 1,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(MessageView::from)
    .collect();
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if newest_first {
        rows.reverse();
    }
    Ok((rows, more))
}

/// Messages after `seq`, oldest first (resume).
pub async fn after(
    conn: &mut PgConnection,
    channel: Uuid,
    seq: i64,
    limit: i64,
) -> Result<Vec<MessageView>, sqlx::Error> {
    Ok(history(conn, channel, Anchor::After(seq), limit).await?.0)
}

/// Mark the channel joined by `user` (listed with unread counts from now on).
pub async fn join(
    conn: &mut PgConnection,
    user: UserId,
    channel: ChannelId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"INSERT INTO chat_reads (user_id, channel_id) VALUES ($1, $2)
           ON CONFLICT (user_id, channel_id) DO UPDATE SET read_seq = chat_reads.read_seq
           RETURNING read_seq"#,
        user.get(),
        channel.get()
    )
    .fetch_one(conn)
    .await
}

/// Move the "read up to" marker forward (never back, never past the last message).
pub async fn mark_read(
    conn: &mut PgConnection,
    user: UserId,
    channel: ChannelId,
    seq: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"INSERT INTO chat_reads (user_id, channel_id, read_seq)
           VALUES ($1, $2, LEAST($3, (SELECT last_seq FROM chat_channels WHERE id = $2)))
           ON CONFLICT (user_id, channel_id) DO UPDATE
           SET read_seq = GREATEST(chat_reads.read_seq, EXCLUDED.read_seq), updated_at = now()
           RETURNING read_seq"#,
        user.get(),
        channel.get(),
        seq.max(0)
    )
    .fetch_one(conn)
    .await
}

/// A joined channel with its unread count.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ChannelSummary {
    /// As the caller names it (`dm:<other user>` for a DM).
    pub channel: String,
    pub kind: String,
    pub last_seq: i64,
    pub read_seq: i64,
    /// Messages after `read_seq` not sent by the caller.
    pub unread: i64,
}

pub async fn joined(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<Vec<ChannelSummary>, sqlx::Error> {
    let user = user.get();
    let rows = sqlx::query!(
        r#"SELECT c.name, c.kind, c.last_seq, r.read_seq,
                  (SELECT count(*) FROM chat_messages m
                   WHERE m.channel_id = c.id AND m.seq > r.read_seq AND m.kind <> 'tombstone'
                     AND m.sender_id IS DISTINCT FROM $1) AS "unread!"
           FROM chat_reads r JOIN chat_channels c ON c.id = r.channel_id
           WHERE r.user_id = $1 ORDER BY c.last_seq DESC, c.name LIMIT 500"#,
        user
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ChannelSummary {
            channel: Canonical(r.name).display_for(user),
            kind: r.kind,
            last_seq: r.last_seq,
            read_seq: r.read_seq,
            unread: r.unread,
        })
        .collect())
}

/// Is `user` muted in `channel` now?
pub async fn is_muted(
    conn: &mut PgConnection,
    channel: ChannelId,
    user: UserId,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM chat_mutes WHERE channel_id = $1 AND user_id = $2
                          AND (until IS NULL OR until > now())) AS "m!""#,
        channel.get(),
        user.get()
    )
    .fetch_one(conn)
    .await?)
}

pub async fn mute(
    conn: &mut PgConnection,
    channel: ChannelId,
    user: UserId,
    until: Option<OffsetDateTime>,
    by: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO chat_mutes (channel_id, user_id, until, muted_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (channel_id, user_id) DO UPDATE SET until = $3, muted_by = $4"#,
        channel.get(),
        user.get(),
        until,
        by.get()
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn unmute(
    conn: &mut PgConnection,
    channel: ChannelId,
    user: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM chat_mutes WHERE channel_id = $1 AND user_id = $2",
        channel.get(),
        user.get()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Room-wide moderation settings.
pub async fn set_room(
    conn: &mut PgConnection,
    channel: Uuid,
    muted: Option<bool>,
    slow_mode_s: Option<i32>,
) -> Result<(bool, i32), sqlx::Error> {
    let r = sqlx::query!(
        r#"UPDATE chat_channels SET muted = COALESCE($2, muted),
                  slow_mode_s = COALESCE($3, slow_mode_s)
           WHERE id = $1 RETURNING muted, slow_mode_s"#,
        channel,
        muted,
        slow_mode_s
    )
    .fetch_one(conn)
    .await?;
    Ok((r.muted, r.slow_mode_s))
}

pub async fn ban(
    conn: &mut PgConnection,
    course: CourseId,
    user: UserId,
    by: UserId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO chat_bans (course_id, user_id, banned_by, reason) VALUES ($1, $2, $3, $4)
           ON CONFLICT (course_id, user_id) DO UPDATE SET banned_by = $3, reason = $4"#,
        course.get(),
        user.get(),
        by.get(),
        reason
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn unban(
    conn: &mut PgConnection,
    course: CourseId,
    user: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM chat_bans WHERE course_id = $1 AND user_id = $2",
        course.get(),
        user.get()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A user muted in a channel, for moderators' lists.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatMute {
    pub user_id: Uuid,
    pub display_name: String,
    /// When the mute ends by itself; absent: until lifted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    pub muted_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub muted_at: OffsetDateTime,
}

/// Who is muted in `channel` now, newest first (at most 1,000).
pub async fn mutes(
    conn: &mut PgConnection,
    channel: ChannelId,
) -> Result<Vec<ChatMute>, sqlx::Error> {
    sqlx::query_as!(
        ChatMute,
        r#"SELECT m.user_id, u.display_name, m.until, m.muted_by, m.created_at AS muted_at
           FROM chat_mutes m JOIN users u ON u.id = m.user_id
           WHERE m.channel_id = $1 AND (m.until IS NULL OR m.until > now())
           ORDER BY m.created_at DESC, m.user_id LIMIT 1000"#,
        channel.get()
    )
    .fetch_all(conn)
    .await
}

/// A user banned from a course's chat, for moderators' lists.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatBan {
    pub user_id: Uuid,
    pub display_name: String,
    pub reason: String,
    pub banned_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub banned_at: OffsetDateTime,
}

/// Who is banned from `course`'s chat, newest first (at most 1,000).
pub async fn bans(conn: &mut PgConnection, course: CourseId) -> Result<Vec<ChatBan>, sqlx::Error> {
    sqlx::query_as!(
        ChatBan,
        r#"SELECT b.user_id, u.display_name, b.reason, b.banned_by, b.created_at AS banned_at
           FROM chat_bans b JOIN users u ON u.id = b.user_id
           WHERE b.course_id = $1
           ORDER BY b.created_at DESC, b.user_id LIMIT 1000"#,
        course.get()
    )
    .fetch_all(conn)
    .await
}

/// What the persister writes: a new message, or the removal of one.
#[derive(Debug, Clone)]
pub enum Write {
    Send {
        channel: Canonical,
        sender: Option<Uuid>,
        client_id: String,
        kind: &'static str,
        body: String,
        html: String,
        data: Option<serde_json::Value>,
    },
    Remove {
        sender: Uuid,
        client_id: String,
        message: Uuid,
    },
}

/// What became of one write.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Stored now with the next sequence number.
    Stored(Canonical, MessageView),
    /// Stored before (a retried frame): the first row.
    Duplicate(Canonical, MessageView),
    /// Cannot ever be stored (the channel or message is gone).
    Rejected(&'static str),
}

/// Apply one write inside the persister's transaction. The `UPDATE ... RETURNING last_seq`
/// locks the channel row until commit: numbers are gap-free and in commit order.
pub async fn apply(conn: &mut PgConnection, w: &Write) -> Result<Outcome, sqlx::Error> {
    match w {
        Write::Send {
            channel,
            sender,
            client_id,
            kind,
            body,
            html,
            data,
        } => {
            let earlier = match sender {
                Some(s) => by_client_id(conn, *s, client_id).await?,
                None => notice_by_client_id(conn, channel, client_id).await?,
            };
            if let Some((name, m)) = earlier {
                return Ok(Outcome::Duplicate(name, m));
            }
            // A user's notification channel exists from its first notice.
            if let Some(user) = channel.as_str().strip_prefix("user:")
                && let Ok(user) = Uuid::parse_str(user)
            {
                ensure_channel(conn, ChannelName::User(user), user, None, None).await?;
            }
            let Some(seq) = sqlx::query!(
                "UPDATE chat_channels SET last_seq = last_seq + 1 WHERE name = $1 RETURNING id, last_seq",
                channel.as_str()
            )
            .fetch_optional(&mut *conn)
            .await?
            else {
                return Ok(Outcome::Rejected("channel_gone"));
            };
            let id = Uuid::now_v7();
            let created_at = sqlx::query_scalar!(
                r#"INSERT INTO chat_messages (id, channel_id, seq, sender_id, client_id, kind, body, html, data)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING created_at"#,
                id,
                seq.id,
                seq.last_seq,
                *sender,
                client_id,
                *kind,
                body,
                html,
                data.clone(),
            )
            .fetch_one(&mut *conn)
            .await?;
            Ok(Outcome::Stored(
                channel.clone(),
                MessageView {
                    id,
                    seq: seq.last_seq,
                    kind: (*kind).to_owned(),
                    sender_id: *sender,
                    client_id: client_id.clone(),
                    body: body.clone(),
                    html: html.clone(),
                    refers_to: None,
                    data: data.clone(),
                    created_at,
                    deleted: false,
                    deleted_by: None,
                    reactions: Vec::new(),
                },
            ))
        }
        Write::Remove {
            sender,
            client_id,
            message: target,
        } => {
            if let Some((name, m)) = by_client_id(conn, *sender, client_id).await? {
                return Ok(Outcome::Duplicate(name, m));
            }
            let Some((channel_id, name, target_view)) = message(conn, *target).await? else {
                return Ok(Outcome::Rejected("not_found"));
            };
            if target_view.deleted || target_view.kind != "text" {
                return Ok(Outcome::Rejected("gone"));
            }
            let seq = sqlx::query_scalar!(
                "UPDATE chat_channels SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
                channel_id
            )
            .fetch_one(&mut *conn)
            .await?;
            sqlx::query!(
                r#"UPDATE chat_messages SET body = '', html = '', data = NULL,
                          deleted_at = COALESCE(deleted_at, now()), deleted_by = COALESCE(deleted_by, $2)
                   WHERE id = $1"#,
                target,
                sender
            )
            .execute(&mut *conn)
            .await?;
            let id = Uuid::now_v7();
            let created_at = sqlx::query_scalar!(
                r#"INSERT INTO chat_messages (id, channel_id, seq, sender_id, client_id, kind, body, html, refers_to)
                   VALUES ($1, $2, $3, $4, $5, 'tombstone', '', '', $6) RETURNING created_at"#,
                id,
                channel_id,
                seq,
                sender,
                client_id,
                target
            )
            .fetch_one(&mut *conn)
            .await?;
            Ok(Outcome::Stored(
                name,
                MessageView {
                    id,
                    seq,
                    kind: "tombstone".into(),
                    sender_id: Some(*sender),
                    client_id: client_id.clone(),
                    body: String::new(),
                    html: String::new(),
                    refers_to: Some(*target),
                    data: None,
                    created_at,
                    deleted: false,
                    deleted_by: None,
                    reactions: Vec::new(),
                },
            ))
        }
    }
}

/// Set (`on`) or clear `user`'s reaction `emoji` on a message; returns how many users now
/// react with that emoji. Setting twice or clearing twice changes nothing (retries are safe).
pub async fn react(
    conn: &mut PgConnection,
    message: Uuid,
    user: Uuid,
    emoji: &str,
    on: bool,
) -> Result<i64, sqlx::Error> {
    if on {
        sqlx::query!(
            "INSERT INTO chat_reactions (message_id, user_id, emoji) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            message,
            user,
            emoji
        )
        .execute(&mut *conn)
        .await?;
    } else {
        sqlx::query!(
            "DELETE FROM chat_reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3",
            message,
            user,
            emoji
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM chat_reactions WHERE message_id = $1 AND emoji = $2"#,
        message,
        emoji
    )
    .fetch_one(conn)
    .await?)
}

/// Fill `reactions` of `messages` as `me` sees them (counts per emoji, first used first).
pub async fn with_reactions(
    conn: &mut PgConnection,
    messages: &mut [MessageView],
    me: Uuid,
) -> Result<(), sqlx::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    let rows = sqlx::query!(
        r#"SELECT message_id, emoji, count(*) AS "count!", bool_or(user_id = $2) AS "me!"
           FROM chat_reactions WHERE message_id = ANY($1)
           GROUP BY message_id, emoji ORDER BY message_id, min(created_at)"#,
        &ids,
        me
    )
    .fetch_all(conn)
    .await?;
    for r in rows {
        if let Some(m) = messages.iter_mut().find(|m| m.id == r.message_id) {
            m.reactions.push(super::ReactionCount {
                emoji: r.emoji,
                count: r.count,
                me: r.me,
            });
        }
    }
    Ok(())
}
