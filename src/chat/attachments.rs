//! Attachments: a file a user uploads straight to object storage (a presigned PUT), then names
//! in one message (`send` with `attachment_id`).
//!
//! Life of one: `POST /api/v1/chat/uploads` checks the declared size and type against
//! `chat.attachment_max_bytes` / `chat.attachment_types` and stores a `pending` row that
//! expires after `chat.attachment_ttl_s` → the client PUTs the bytes to the presigned URL →
//! a `send` frame claims it ([`claim`]: only the uploader, only once — a retry of the same
//! `client_id` may claim it again —, only when the object exists with the declared size) →
//! the message's `data.attachment` describes it, with URLs of the authorized route
//! `GET /api/v1/chat/attachments/{id}` (read access to the message's channel, then a redirect
//! to a short presigned GET). Images get a JPEG thumbnail when claimed (GStreamer, see
//! [`thumbnail`]). A cleanup job deletes expired unclaimed uploads and their objects.

use std::time::Duration;

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::storage::{ObjectKey, Storage};

/// Types an attachment may have, and the extension its object key gets (the local backend
/// serves content types by extension).
pub const KNOWN_TYPES: &[(&str, &str)] = &[
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/webp", "webp"),
    ("image/gif", "gif"),
    ("application/pdf", "pdf"),
    ("text/plain", "txt"),
    ("application/zip", "zip"),
    ("audio/mpeg", "mp3"),
    ("video/mp4", "mp4"),
];

pub fn extension(content_type: &str) -> Option<&'static str> {
    KNOWN_TYPES
        .iter()
        .find(|(t, _)| *t == content_type)
        .map(|(_, e)| *e)
}

/// Whether the first bytes of a file are what its declared type says. Attachments are served
/// with the declared type, so a file that is not what it claims (an HTML page declared
/// `image/png`, an executable declared `application/pdf`) is refused before any message carries
/// it. `head` is the first 512 bytes (or the whole file when shorter).
pub fn content_matches(declared: &str, head: &[u8]) -> bool {
    let at = |off: usize, magic: &[u8]| {
        head.len() >= off + magic.len() && &head[off..off + magic.len()] == magic
    };
    match declared {
        "image/png" => at(0, b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => at(0, &[0xff, 0xd8, 0xff]),
        "image/webp" => at(0, b"RIFF") && at(8, b"WEBP"),
        "image/gif" => at(0, b"GIF87a") || at(0, b"GIF89a"),
        "application/pdf" => at(0, b"%PDF-"),
        // A local file header, or the end record of an empty archive.
        "application/zip" => at(0, b"PK\x03\x04") || at(0, b"PK\x05\x06"),
        // An ID3v2 tag, or an MPEG audio frame sync (11 bits set).
        "audio/mpeg" => {
            at(0, b"ID3") || (head.len() >= 2 && head[0] == 0xff && head[1] & 0xe0 == 0xe0)
        }
        // ISO BMFF: the first box is `ftyp`.
        "video/mp4" => at(4, b"ftyp"),
        // Text: UTF-8 (a multi-byte character may be cut at the 512th byte) without NUL or
        // other control characters than tab, newline, carriage return and form feed.
        "text/plain" => {
            let valid = match std::str::from_utf8(head) {
                Ok(_) => true,
                Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
            };
            valid
                && !head
                    .iter()
                    .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
        }
        _ => false,
    }
}

pub fn is_image(content_type: &str) -> bool {
    content_type.starts_with("image/")
}

/// The object of an attachment, and of its thumbnail.
pub fn object_key(id: Uuid, content_type: &str) -> ObjectKey {
    let ext = extension(content_type).unwrap_or("bin");
    ObjectKey::parse(format!("chat/attachments/{id}/file.{ext}")).expect("valid key")
}

pub fn thumb_key(id: Uuid) -> ObjectKey {
    ObjectKey::parse(format!("chat/attachments/{id}/thumb.jpg")).expect("valid key")
}

/// A file name as shown: 1 to 200 characters, no path, no control characters.
pub fn parse_name(s: &str) -> Result<String, crate::users::InvalidInput> {
    let name = s.rsplit(['/', '\\']).next().unwrap_or("").trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(crate::users::InvalidInput {
            field: "name",
            reason: "must be a file name of 1 to 200 characters",
        });
    }
    Ok(name.to_owned())
}

#[derive(Debug, Clone)]
pub struct Attachment {
    pub id: Uuid,
    pub uploader_id: Uuid,
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub channel: Option<String>,
    pub client_id: Option<String>,
    pub has_thumbnail: bool,
    pub expires_at: OffsetDateTime,
}

pub async fn create(
    conn: &mut PgConnection,
    uploader: Uuid,
    name: &str,
    content_type: &str,
    size: i64,
    ttl: Duration,
) -> Result<Attachment, sqlx::Error> {
    let id = Uuid::now_v7();
    let expires_at = OffsetDateTime::now_utc() + ttl;
    sqlx::query!(
        r#"INSERT INTO chat_attachments (id, uploader_id, name, content_type, size_bytes, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)"#,
        id,
        uploader,
        name,
        content_type,
        size,
        expires_at
    )
    .execute(conn)
    .await?;
    Ok(Attachment {
        id,
        uploader_id: uploader,
        name: name.to_owned(),
        content_type: content_type.to_owned(),
        size_bytes: size,
        channel: None,
        client_id: None,
        has_thumbnail: false,
        expires_at,
    })
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Attachment>, sqlx::Error> {
    sqlx::query_as!(
        Attachment,
        r#"SELECT id, uploader_id, name, content_type, size_bytes, channel, client_id,
                  has_thumbnail, expires_at
           FROM chat_attachments WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Why an attachment cannot go with a message (`error` code `invalid` / `not_found`).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("no such upload")]
    NotFound,
    #[error("this upload is attached to another message already")]
    Used,
    #[error("the upload expired")]
    Expired,
    #[error("the file was not uploaded (or not with the declared size)")]
    NotUploaded,
    #[error("the file is not of its declared type")]
    WrongType,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Claim `id` for the message `client_id` of `user` in `channel` (canonical). A second claim
/// with the same `client_id` succeeds again (the frame was retried); any other fails.
pub async fn claim(
    db: &PgPool,
    storage: &Storage,
    user: Uuid,
    id: Uuid,
    client_id: &str,
    channel: &str,
    thumbnail_px: u32,
) -> Result<Attachment, ClaimError> {
    let mut conn = db.acquire().await?;
    let a = get(&mut conn, id).await?.ok_or(ClaimError::NotFound)?;
    if a.uploader_id != user {
        return Err(ClaimError::NotFound);
    }
    if let Some(cid) = &a.client_id {
        return if cid == client_id && a.channel.as_deref() == Some(channel) {
            Ok(a)
        } else {
            Err(ClaimError::Used)
        };
    }
    if a.expires_at < OffsetDateTime::now_utc() {
        return Err(ClaimError::Expired);
    }
    let key = object_key(id, &a.content_type);
    match storage.head(&key).await {
        Ok(meta) if meta.size as i64 == a.size_bytes => {}
        _ => return Err(ClaimError::NotUploaded),
    }
    let head = match storage
        .get(
            &key,
            (a.size_bytes > 0)
                .then(|| crate::storage::ByteRange::FromTo(0, (a.size_bytes.min(512) - 1) as u64)),
        )
        .await
    {
        Ok(obj) => obj.bytes().await.map_err(|_| ClaimError::NotUploaded)?,
        Err(_) => return Err(ClaimError::NotUploaded),
    };
    if !content_matches(&a.content_type, &head) {
        return Err(ClaimError::WrongType);
    }
    drop(conn);
    let has_thumbnail = if is_image(&a.content_type) {
        thumbnail(storage, id, &key, thumbnail_px).await
    } else {
        false
    };
    let mut conn = db.acquire().await?;
    let claimed = sqlx::query!(
        r#"UPDATE chat_attachments SET client_id = $2, channel = $3, has_thumbnail = $4
           WHERE id = $1 AND client_id IS NULL"#,
        id,
        client_id,
        channel,
        has_thumbnail
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if claimed == 0 {
        // Someone else's frame won the race: only a retry of that same frame may go on.
        let now = get(&mut conn, id).await?.ok_or(ClaimError::NotFound)?;
        return if now.client_id.as_deref() == Some(client_id) {
            Ok(now)
        } else {
            Err(ClaimError::Used)
        };
    }
    Ok(Attachment {
        client_id: Some(client_id.to_owned()),
        channel: Some(channel.to_owned()),
        has_thumbnail,
        ..a
    })
}

/// `data.attachment` of a message.
#[derive(Debug, Serialize)]
pub struct AttachmentData {
    pub id: Uuid,
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// The authorized route (redirects to the object).
    pub url: String,
    pub thumbnail_url: Option<String>,
}

impl From<&Attachment> for AttachmentData {
    fn from(a: &Attachment) -> AttachmentData {
        AttachmentData {
            id: a.id,
            name: a.name.clone(),
            content_type: a.content_type.clone(),
            size_bytes: a.size_bytes,
            url: format!("/api/v1/chat/attachments/{}", a.id),
            thumbnail_url: a
                .has_thumbnail
                .then(|| format!("/api/v1/chat/attachments/{}/thumbnail", a.id)),
        }
    }
}

/// A JPEG `px` pixels wide next to the image. GStreamer rather than an image crate:
/// it is already linked (recordings' posters), decodes PNG, JPEG, GIF and WebP with the
/// installed plugins and runs on a blocking thread with a deadline, so a hostile image cannot
/// stall the async runtime. A failure only means no thumbnail.
///
/// ```text
/// filesrc -> decodebin -> videoconvert -> videoscale -> video/x-raw,width=W -> jpegenc -> filesink
/// ```
async fn thumbnail(storage: &Storage, id: Uuid, key: &ObjectKey, px: u32) -> bool {
    let made = async {
        let bytes = storage.get(key, None).await?.bytes().await?;
        let dir = std::env::temp_dir().join(format!("wm-thumb-{}", Uuid::new_v4().simple()));
        tokio::fs::create_dir_all(&dir).await?;
        let _cleanup = RemoveDir(dir.clone());
        let input = dir.join("in");
        let output = dir.join("thumb.jpg");
        tokio::fs::write(&input, &bytes).await?;
        let desc = format!(
            "filesrc location={} ! decodebin ! videoconvert ! videoscale ! \
             video/x-raw,width={px},pixel-aspect-ratio=1/1 ! jpegenc quality=80 snapshot=true ! \
             filesink location={}",
            input.display(),
            output.display()
        );
        tokio::task::spawn_blocking(move || {
            wemaster_media::vod::run_to_eos(&desc, &[], Duration::from_secs(10))
        })
        .await?
        .map_err(|e| anyhow::anyhow!(e))?;
        let jpeg = tokio::fs::read(&output).await?;
        anyhow::ensure!(!jpeg.is_empty(), "empty thumbnail");
        let opts = crate::storage::PutOptions {
            content_type: Some("image/jpeg".into()),
            cache_control: None,
        };
        storage
            .put_bytes(&thumb_key(id), jpeg.into(), &opts)
            .await?;
        anyhow::Ok(())
    }
    .await;
    match made {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(attachment_id = %id, error = format!("{e:#}"), "no thumbnail");
            false
        }
    }
}

/// Removes a scratch directory when dropped.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Delete expired uploads no message claimed, objects first, every `every`.
pub fn spawn_cleanup(
    db: PgPool,
    storage: Storage,
    every: Duration,
    lease: crate::jobs::Lease,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if lease.claim_every("chat.upload_cleanup", every).await {
                match cleanup(&db, &storage).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(uploads = n, "expired chat uploads deleted"),
                    Err(e) => {
                        tracing::warn!(error = format!("{e:#}"), "chat upload cleanup failed")
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => break,
            }
        }
    })
}

pub async fn cleanup(db: &PgPool, storage: &Storage) -> anyhow::Result<usize> {
    let expired = sqlx::query_scalar!(
        "SELECT id FROM chat_attachments WHERE client_id IS NULL AND expires_at < now() LIMIT 500"
    )
    .fetch_all(db)
    .await?;
    for id in &expired {
        storage
            .delete_prefix(&format!("chat/attachments/{id}/"))
            .await?;
        sqlx::query!(
            "DELETE FROM chat_attachments WHERE id = $1 AND client_id IS NULL",
            id
        )
        .execute(db)
        .await?;
    }
    Ok(expired.len())
}

#[cfg(test)]
mod tests {
    use super::content_matches;

    #[test]
    fn files_must_be_what_they_claim() {
        assert!(content_matches(
            "image/png",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"
        ));
        assert!(!content_matches(
            "image/png",
            b"<html><script>alert(1)</script>"
        ));
        assert!(content_matches(
            "image/jpeg",
            &[0xff, 0xd8, 0xff, 0xe0, 0, 0x10]
        ));
        assert!(content_matches("image/webp", b"RIFF\x10\0\0\0WEBPVP8 "));
        assert!(!content_matches("image/webp", b"RIFF\x10\0\0\0WAVEfmt "));
        assert!(content_matches("image/gif", b"GIF89a\x01\0"));
        assert!(content_matches("application/pdf", b"%PDF-1.7\n"));
        assert!(!content_matches("application/pdf", b"MZ\x90\0"));
        assert!(content_matches("application/zip", b"PK\x03\x04\x14\0"));
        assert!(content_matches("audio/mpeg", b"ID3\x04\0"));
        assert!(content_matches("audio/mpeg", &[0xff, 0xfb, 0x90, 0x64]));
        assert!(content_matches("video/mp4", b"\0\0\0\x20ftypisom"));
        assert!(content_matches(
            "text/plain",
            "Notes: 二次方程\r\n\tx² = 4\n".as_bytes()
        ));
        // A multi-byte character cut by the 512-byte window is still text.
        assert!(content_matches("text/plain", &"二".as_bytes()[..2]));
        assert!(!content_matches("text/plain", b"ELF\0\x02\x01"));
        assert!(!content_matches("text/plain", &[0xc3, 0x28]));
        assert!(!content_matches("application/x-unknown", b"anything"));
        assert!(!content_matches("image/png", b""));
    }
}
