//! The local backend: objects are files under a root directory, keys are their relative paths.
//!
//! Writes go to a temporary file in `<root>/.tmp/`, are fsynced, then renamed into place, so a
//! reader sees either the old object or the whole new one, never a half-written file. `.tmp/` is
//! on the same filesystem as the objects (rename stays atomic), is hidden from `list`, and keys
//! under it are refused.
//!
//! Presigned URLs point at this server (`{public_url}/objects/{key}?method=&expires=&signature=`)
//! and carry an HMAC-SHA256 of `METHOD\nkey\nexpires`; the HTTP layer checks them with
//! [`LocalStore::verify_presigned`]. Content types are not stored: they follow from the key's
//! extension ([`content_type_for`]), which is how the media server names what it writes anyway.
//!
//! Size: over 800 lines with its unit tests (about 300 of them, from line 545); the store
//! itself is about 540.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::{
    fs,
    io::{AsyncReadExt, AsyncWriteExt, BufReader},
};
use tokio_util::io::ReaderStream;
use url::Url;

use super::{
    BodyReader, ByteRange, GetObject, InvalidKey, ObjectKey, ObjectMeta, PresignMethod, PutOptions,
    StorageError, key::prefix_dir,
};
use crate::config::LocalStorageSettings;

/// Directory under the root holding files being written. Not a valid first key segment here.
const TMP_DIR: &str = ".tmp";
/// Temporary files older than this at start were left by a crashed writer.
const STALE_TMP_AGE: Duration = Duration::from_secs(24 * 3600);
/// Chunk size of streamed reads and buffered writes.
const IO_CHUNK: usize = 256 * 1024;

type HmacSha256 = Hmac<Sha256>;

/// Objects as files under a directory. Cheap to clone.
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    signing_key: Vec<u8>,
    /// Base of presigned URLs; `new` checked it can take path segments.
    public_url: Url,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signing key stays out of logs.
        f.debug_struct("LocalStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl LocalStore {
    /// Create the root (and its temp dir) if missing. An empty signing key is replaced by a
    /// random one, valid for the life of this process only.
    pub async fn new(
        settings: &LocalStorageSettings,
        public_url: &Url,
    ) -> Result<Self, StorageError> {
        if public_url.cannot_be_a_base() {
            return Err(StorageError::Backend(format!(
                "public URL {public_url} cannot be the base of presigned object URLs"
            )));
        }
        let root = settings.root.clone();
        let tmp = root.join(TMP_DIR);
        fs::create_dir_all(&tmp)
            .await
            .map_err(|e| io_context("create storage root", &tmp, e))?;

        let signing_key = if settings.signing_key.is_empty() {
            tracing::warn!(
                "storage.local.signing_key is empty: using a random key, presigned object URLs die with this process"
            );
            let mut key = vec![0u8; 32];
            rand::rng().fill_bytes(&mut key);
            key
        } else {
            settings.signing_key.expose().as_bytes().to_vec()
        };

        let store = Self {
            inner: Arc::new(Inner {
                root,
                tmp,
                signing_key,
                public_url: public_url.clone(),
            }),
        };
        store.remove_stale_tmp_files().await;
        Ok(store)
    }

    /// The directory objects live under.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Readiness: a file can be created, written, synced and removed under the root.
    pub async fn check(&self) -> Result<(), StorageError> {
        let probe = self.temp_path();
        let result = async {
            let mut f = fs::File::create(&probe).await?;
            f.write_all(b"probe").await?;
            f.sync_all().await
        }
        .await;
        let removed = fs::remove_file(&probe).await;
        result.map_err(|e| io_context("write probe file", &probe, e))?;
        removed.map_err(|e| io_context("remove probe file", &probe, e))?;
        Ok(())
    }

    pub async fn put_bytes(
        &self,
        key: &ObjectKey,
        body: Bytes,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let reader: BodyReader = Box::pin(io::Cursor::new(body));
        self.put_stream(key, reader, opts).await
    }

    /// Write `body` to a temp file, fsync it, rename it to the key's path. `opts` are not stored
    /// (see the module docs).
    pub async fn put_stream(
        &self,
        key: &ObjectKey,
        body: BodyReader,
        _opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let dest = self.object_path(key)?;
        let tmp = self.temp_path();
        let written = write_synced(&tmp, body).await;
        let meta = match written {
            Ok(meta) => meta,
            Err(e) => {
                remove_quietly(&tmp).await;
                return Err(io_context("write", &tmp, e));
            }
        };
        if let Err(e) = self.rename_into_place(&tmp, &dest).await {
            remove_quietly(&tmp).await;
            return Err(io_context("store", &dest, e));
        }
        Ok(self.meta_of(key.clone(), &meta))
    }

    /// Read the object, or `range` of it: up to [`ONE_READ`] (1 MiB) in one blocking call (open,
    /// stat, seek and read together: one hop to the blocking pool instead of one per step and
    /// chunk — the replay Range GETs' profile was mostly such hops and their wake-ups), more
    /// streamed in chunks.
    pub async fn get(
        &self,
        key: &ObjectKey,
        range: Option<ByteRange>,
    ) -> Result<GetObject, StorageError> {
        let path = self.object_path(key)?;
        let k = key.clone();
        let opened = tokio::task::spawn_blocking(move || open_for_read(&k, &path, range))
            .await
            .map_err(|e| StorageError::Io(io::Error::other(e)))??;
        let meta = self.meta_of(key.clone(), &opened.md);
        let body: super::ByteStream = match opened.read {
            Read::Whole(bytes) => Box::pin(futures::stream::once(async move { Ok(bytes) })),
            Read::Stream(file, len) => {
                let reader: BodyReader = Box::pin(fs::File::from_std(file).take(len));
                Box::pin(ReaderStream::with_capacity(reader, IO_CHUNK).map_err(StorageError::Io))
            }
        };
        Ok(GetObject {
            meta,
            range: opened.served,
            body,
        })
    }

    pub async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let path = self.object_path(key)?;
        let md = fs::metadata(&path)
            .await
            .map_err(|e| not_found_or_io(key, &path, e))?;
        if !md.is_file() {
            return Err(StorageError::NotFound(key.to_string()));
        }
        Ok(self.meta_of(key.clone(), &md))
    }

    /// Every object whose key starts with `prefix` (plain string prefix, like S3), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        // Only the directory named by the prefix up to its last '/' can hold matches.
        let start_rel = match prefix_dir(prefix) {
            Some(dir) if first_segment(dir) == TMP_DIR => return Ok(Vec::new()),
            Some(dir) => dir.to_owned(),
            None => return Ok(Vec::new()),
        };

        let mut found = Vec::new();
        let mut stack = vec![start_rel];
        while let Some(rel) = stack.pop() {
            let dir = if rel.is_empty() {
                self.inner.root.clone()
            } else {
                self.inner.root.join(&rel)
            };
            let mut entries = match fs::read_dir(&dir).await {
                Ok(entries) => entries,
                // The prefix names no directory (or a file): nothing under it.
                Err(e) if is_absent(&e) => continue,
                Err(e) => return Err(io_context("list", &dir, e)),
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| io_context("list", &dir, e))?
            {
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    tracing::debug!(path = %entry.path().display(), "skipping non-UTF-8 file name in storage root");
                    continue;
                };
                if rel.is_empty() && name == TMP_DIR {
                    continue;
                }
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let mut file_type = entry
                    .file_type()
                    .await
                    .map_err(|e| io_context("list", &entry.path(), e))?;
                if file_type.is_symlink() {
                    // Follow links to files an operator placed here, never into directories
                    // (no loops, no walking outside the root).
                    match fs::metadata(entry.path()).await {
                        Ok(md) if md.is_file() => file_type = md.file_type(),
                        _ => continue,
                    }
                }
                if file_type.is_dir() {
                    let as_dir = format!("{child}/");
                    if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                        stack.push(child);
                    }
                } else if file_type.is_file() && child.starts_with(prefix) {
                    let Ok(key) = ObjectKey::parse(child) else {
                        tracing::debug!(path = %entry.path().display(), "skipping file whose path is not a valid key");
                        continue;
                    };
                    match entry.metadata().await {
                        Ok(md) => found.push(self.meta_of(key, &md)),
                        // Deleted while we walked: not listed.
                        Err(e) if is_absent(&e) => {}
                        Err(e) => return Err(io_context("list", &entry.path(), e)),
                    }
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// Remove the object; a missing one is fine. Directories it leaves empty are removed too.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.delete_counted(key).await.map(|_| ())
    }

    /// Remove every object under `prefix`; returns how many this call removed.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, StorageError> {
        let mut count = 0;
        for meta in self.list(prefix).await? {
            if self.delete_counted(&meta.key).await? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// A URL of this server allowing `method` on `key` until `expires_in` from now.
    pub fn presign(
        &self,
        method: PresignMethod,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<Url, StorageError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let expires = now.saturating_add(i64::try_from(expires_in.as_secs()).unwrap_or(i64::MAX));
        let mac = self
            .mac(method, key, expires)
            .ok_or_else(|| StorageError::Backend("invalid signing key".into()))?;
        let signature = hex::encode(mac.finalize().into_bytes());

        // Inside a request without a configured http.public_url: the request's own origin.
        let mut url =
            crate::http::origin::current().unwrap_or_else(|| self.inner.public_url.clone());
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| StorageError::Backend("public URL cannot take a path".into()))?;
            // Percent-encodes each segment; the '/' between them stay separators.
            segments
                .pop_if_empty()
                .push("objects")
                .extend(key.as_str().split('/'));
        }
        url.query_pairs_mut()
            .clear()
            .append_pair("method", method_name(method))
            .append_pair("expires", &expires.to_string())
            .append_pair("signature", &signature);
        Ok(url)
    }

    /// Whether a presigned URL's parameters allow `method` on `key` at `now`. Constant-time.
    pub fn verify_presigned(
        &self,
        method: PresignMethod,
        key: &ObjectKey,
        expires: i64,
        signature: &str,
        now: OffsetDateTime,
    ) -> bool {
        if now.unix_timestamp() > expires {
            return false;
        }
        let Ok(signature) = hex::decode(signature) else {
            return false;
        };
        match self.mac(method, key, expires) {
            Some(mac) => mac.verify_slice(&signature).is_ok(),
            None => false,
        }
    }

    fn mac(&self, method: PresignMethod, key: &ObjectKey, expires: i64) -> Option<HmacSha256> {
        // HMAC takes keys of any length, so this never fails in practice.
        let mut mac = HmacSha256::new_from_slice(&self.inner.signing_key).ok()?;
        mac.update(format!("{}\n{}\n{}", method_name(method), key.as_str(), expires).as_bytes());
        Some(mac)
    }

    /// The file of `key`; keys under the temp dir are refused.
    fn object_path(&self, key: &ObjectKey) -> Result<PathBuf, StorageError> {
        if first_segment(key.as_str()) == TMP_DIR {
            return Err(InvalidKey::Reserved(TMP_DIR).into());
        }
        // Validated keys are relative with no `.`/`..` segments: the join stays under the root.
        Ok(self.inner.root.join(key.as_str()))
    }

    fn temp_path(&self) -> PathBuf {
        self.inner.tmp.join(uuid::Uuid::new_v4().to_string())
    }

    fn meta_of(&self, key: ObjectKey, md: &std::fs::Metadata) -> ObjectMeta {
        let modified = md.modified().ok();
        let nanos = modified
            .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        // Every put renames a new file into place, so the inode changes even when a rewrite
        // keeps the size and lands in the same mtime tick (coarse on Linux).
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(md);
        #[cfg(not(unix))]
        let inode = 0u64;
        ObjectMeta {
            content_type: Some(content_type_for(&key).to_owned()),
            size: md.len(),
            last_modified: modified.map(OffsetDateTime::from),
            // Quoted, as HTTP writes it.
            etag: Some(format!("\"{:x}-{:x}-{:x}\"", md.len(), nanos, inode)),
            key,
        }
    }

    /// Create the parent directories and rename. A concurrent delete may remove a directory it
    /// found empty between the two steps; then create it again.
    async fn rename_into_place(&self, tmp: &Path, dest: &Path) -> io::Result<()> {
        let parent = dest.parent().unwrap_or(&self.inner.root);
        let mut attempts = 0;
        loop {
            fs::create_dir_all(parent).await?;
            match fs::rename(tmp, dest).await {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
        // Make the rename itself durable.
        fs::File::open(parent).await?.sync_all().await
    }

    /// Remove one object file; `true` when this call removed it.
    async fn delete_counted(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        let path = self.object_path(key)?;
        match fs::remove_file(&path).await {
            Ok(()) => {}
            // Absent, or the key names a directory (which no object is): nothing to delete.
            Err(e) if is_absent(&e) || e.kind() == io::ErrorKind::IsADirectory => return Ok(false),
            Err(e) => return Err(io_context("delete", &path, e)),
        }
        self.remove_empty_parents(&path).await;
        Ok(true)
    }

    /// Remove directories left empty above `path`, up to (not including) the root. Best effort:
    /// a directory someone just wrote into stays.
    async fn remove_empty_parents(&self, path: &Path) {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.inner.root || !d.starts_with(&self.inner.root) {
                break;
            }
            if fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    /// Temp files left by a crashed writer would otherwise accumulate forever. Only old ones go:
    /// another process may share the root and be writing right now.
    async fn remove_stale_tmp_files(&self) {
        let Ok(mut entries) = fs::read_dir(&self.inner.tmp).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let stale = entry
                .metadata()
                .await
                .ok()
                .and_then(|md| md.modified().ok())
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > STALE_TMP_AGE);
            if stale {
                tracing::info!(path = %entry.path().display(), "removing stale temporary storage file");
                remove_quietly(&entry.path()).await;
            }
        }
    }
}

/// Copy `body` into a new file at `path`, fsync it, return its metadata.
async fn write_synced(path: &Path, body: BodyReader) -> io::Result<std::fs::Metadata> {
    let mut file = fs::File::create(path).await?;
    let mut reader = BufReader::with_capacity(IO_CHUNK, body);
    tokio::io::copy_buf(&mut reader, &mut file).await?;
    file.flush().await?;
    file.sync_all().await?;
    file.metadata().await
}

async fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path).await
        && !is_absent(&e)
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove temporary storage file");
    }
}

fn first_segment(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

fn method_name(method: PresignMethod) -> &'static str {
    match method {
        PresignMethod::Get => "GET",
        PresignMethod::Put => "PUT",
    }
}

/// Absent: the path does not exist, or one of its parents is a file (`a/b` when `a` is an object).
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Objects or ranges up to this size are read whole in [`LocalStorage::get`]'s one blocking call
/// (an HLS segment, a player's range of an MP4). It is also what one such GET holds in memory
/// until it is sent, so it stays small: 10,000 connections reading at once hold at most 10 GiB
/// this way, as they would hold a few 256 KiB chunks each when streamed.
const ONE_READ: u64 = 1 << 20;

struct Opened {
    md: std::fs::Metadata,
    /// `Some((start, end))` inclusive when a range was asked for.
    served: Option<(u64, u64)>,
    read: Read,
}

enum Read {
    /// The bytes, read already (at most [`ONE_READ`]).
    Whole(Bytes),
    /// The file at the first byte to send, and how many to send.
    Stream(std::fs::File, u64),
}

/// Open `path`, check it, resolve `range` and read it when small (blocking: runs on the
/// blocking pool).
fn open_for_read(
    key: &ObjectKey,
    path: &Path,
    range: Option<ByteRange>,
) -> Result<Opened, StorageError> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::open(path).map_err(|e| not_found_or_io(key, path, e))?;
    let md = file.metadata().map_err(|e| io_context("stat", path, e))?;
    if !md.is_file() {
        return Err(StorageError::NotFound(key.to_string()));
    }
    let size = md.len();
    let served = match range {
        None => None,
        Some(r) => Some(r.resolve(size).ok_or(StorageError::InvalidRange { size })?),
    };
    let (start, len) = served.map_or((0, size), |(s, e)| (s, e - s + 1));
    if start > 0 {
        file.seek(io::SeekFrom::Start(start))
            .map_err(|e| io_context("seek", path, e))?;
    }
    let read = if len <= ONE_READ {
        let mut buf = Vec::with_capacity(len as usize);
        (&mut file)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(|e| io_context("read", path, e))?;
        Read::Whole(Bytes::from(buf))
    } else {
        Read::Stream(file, len)
    };
    Ok(Opened { md, served, read })
}

fn not_found_or_io(key: &ObjectKey, path: &Path, e: io::Error) -> StorageError {
    if is_absent(&e) {
        StorageError::NotFound(key.to_string())
    } else {
        io_context("read", path, e)
    }
}

/// Keep the kind (callers match on it) and add what was done to which path.
fn io_context(op: &str, path: &Path, e: io::Error) -> StorageError {
    StorageError::Io(io::Error::new(
        e.kind(),
        format!("{op} {}: {e}", path.display()),
    ))
}

/// The content type served for a key, from its extension (case-insensitive).
pub fn content_type_for(key: &ObjectKey) -> &'static str {
    let name = key.as_str().rsplit('/').next().unwrap_or_default();
    let Some((_, ext)) = name.rsplit_once('.') else {
        return "application/octet-stream";
    };
    match ext.to_ascii_lowercase().as_str() {
        "m3u8" => "application/vnd.apple.mpegurl",
        "ts" => "video/mp2t",
        "mp4" => "video/mp4",
        "m4s" => "video/iso.segment",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "vtt" => "text/vtt",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    async fn store_with_key(dir: &Path, signing_key: &str) -> LocalStore {
        let settings = LocalStorageSettings {
            root: dir.join("objects"),
            signing_key: Secret::new(signing_key),
            signing_key_file: None,
        };
        let public_url = Url::parse("https://media.example.com").unwrap();
        LocalStore::new(&settings, &public_url).await.unwrap()
    }

    fn key(s: &str) -> ObjectKey {
        ObjectKey::parse(s).unwrap()
    }

    /// The (expires, signature) pair a presigned URL carries.
    fn params(url: &Url) -> (String, i64, String) {
        let get = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap()
        };
        (
            get("method"),
            get("expires").parse().unwrap(),
            get("signature"),
        )
    }

    #[tokio::test]
    async fn presigned_url_points_at_objects_route_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_key(dir.path(), "test-signing-key").await;
        let k = key("rec/a b/index.m3u8");

        let url = store
            .presign(PresignMethod::Get, &k, Duration::from_secs(60))
            .unwrap();

        assert_eq!(url.path(), "/objects/rec/a%20b/index.m3u8");
        let (method, expires, signature) = params(&url);
        assert_eq!(method, "GET");
        let now = OffsetDateTime::now_utc();
        assert!(
            (expires - now.unix_timestamp() - 60).abs() <= 1,
            "expires {expires}"
        );
        assert_eq!(signature.len(), 64);
        assert!(store.verify_presigned(PresignMethod::Get, &k, expires, &signature, now));
    }

    #[tokio::test]
    async fn tampered_presigned_parameters_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_key(dir.path(), "test-signing-key").await;
        let k = key("rec/x.mp4");
        let url = store
            .presign(PresignMethod::Get, &k, Duration::from_secs(60))
            .unwrap();
        let (_, expires, signature) = params(&url);
        let now = OffsetDateTime::now_utc();

        let mut flipped = signature.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();

        assert!(
            !store.verify_presigned(PresignMethod::Get, &k, expires, &flipped, now),
            "signature changed"
        );
        assert!(
            !store.verify_presigned(
                PresignMethod::Get,
                &key("rec/y.mp4"),
                expires,
                &signature,
                now
            ),
            "key changed"
        );
        assert!(
            !store.verify_presigned(PresignMethod::Get, &k, expires + 3600, &signature, now),
            "expiry extended"
        );
        assert!(
            !store.verify_presigned(PresignMethod::Get, &k, expires, "not hex", now),
            "garbage signature"
        );
        assert!(
            !store.verify_presigned(PresignMethod::Get, &k, expires, "", now),
            "empty signature"
        );
    }

    #[tokio::test]
    async fn expired_presigned_url_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_key(dir.path(), "test-signing-key").await;
        let k = key("rec/x.mp4");
        let url = store
            .presign(PresignMethod::Get, &k, Duration::from_secs(60))
            .unwrap();
        let (_, expires, signature) = params(&url);
        let at_expiry = OffsetDateTime::from_unix_timestamp(expires).unwrap();

        assert!(store.verify_presigned(PresignMethod::Get, &k, expires, &signature, at_expiry));
        let after = at_expiry + time::Duration::seconds(1);
        assert!(!store.verify_presigned(PresignMethod::Get, &k, expires, &signature, after));
    }

    #[tokio::test]
    async fn presigned_url_for_one_method_is_refused_for_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_key(dir.path(), "test-signing-key").await;
        let k = key("uploads/x.mp4");
        let url = store
            .presign(PresignMethod::Put, &k, Duration::from_secs(60))
            .unwrap();
        let (method, expires, signature) = params(&url);
        let now = OffsetDateTime::now_utc();

        assert_eq!(method, "PUT");
        assert!(store.verify_presigned(PresignMethod::Put, &k, expires, &signature, now));
        assert!(!store.verify_presigned(PresignMethod::Get, &k, expires, &signature, now));
    }

    #[tokio::test]
    async fn presigned_url_from_another_key_is_refused_and_configured_key_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = store_with_key(dir.path(), "key-a").await;
        let a_again = store_with_key(dir.path(), "key-a").await;
        let b = store_with_key(dir.path(), "key-b").await;
        let random = store_with_key(dir.path(), "").await;
        let k = key("x.ts");
        let url = a
            .presign(PresignMethod::Get, &k, Duration::from_secs(60))
            .unwrap();
        let (_, expires, signature) = params(&url);
        let now = OffsetDateTime::now_utc();

        assert!(a_again.verify_presigned(PresignMethod::Get, &k, expires, &signature, now));
        assert!(!b.verify_presigned(PresignMethod::Get, &k, expires, &signature, now));
        assert!(!random.verify_presigned(PresignMethod::Get, &k, expires, &signature, now));
    }

    #[tokio::test]
    async fn public_url_path_is_kept_as_a_base() {
        let dir = tempfile::tempdir().unwrap();
        let settings = LocalStorageSettings {
            root: dir.path().join("objects"),
            signing_key: Secret::new("k"),
            signing_key_file: None,
        };
        let store = LocalStore::new(&settings, &Url::parse("http://h:8080/base/").unwrap())
            .await
            .unwrap();

        let url = store
            .presign(PresignMethod::Get, &key("a/b.ts"), Duration::from_secs(5))
            .unwrap();

        assert_eq!(
            url.as_str().split('?').next().unwrap(),
            "http://h:8080/base/objects/a/b.ts"
        );
    }

    #[tokio::test]
    async fn keys_under_the_temp_dir_are_refused_and_temp_files_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_key(dir.path(), "k").await;
        store
            .put_bytes(
                &key("a.txt"),
                Bytes::from_static(b"x"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        std::fs::write(store.root().join(TMP_DIR).join("half-written"), b"partial").unwrap();

        let put = store
            .put_bytes(
                &key(".tmp/x"),
                Bytes::from_static(b"x"),
                &PutOptions::default(),
            )
            .await;
        let listed: Vec<String> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key.into_string())
            .collect();

        assert!(
            matches!(put, Err(StorageError::InvalidKey(InvalidKey::Reserved(_)))),
            "{put:?}"
        );
        assert_eq!(listed, ["a.txt"]);
        assert!(store.list(".tmp/").await.unwrap().is_empty());
        assert!(store.list(".t").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn put_leaves_no_temp_file_and_delete_removes_emptied_directories() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_key(dir.path(), "k").await;
        let k = key("a/b/c/seg.ts");

        store
            .put_bytes(&k, Bytes::from_static(b"0123"), &PutOptions::default())
            .await
            .unwrap();
        let tmp_entries = std::fs::read_dir(store.root().join(TMP_DIR))
            .unwrap()
            .count();
        store.delete(&k).await.unwrap();

        assert_eq!(tmp_entries, 0);
        assert!(
            !store.root().join("a").exists(),
            "emptied directories should be gone"
        );
        assert!(store.root().exists(), "the root stays");
    }

    #[tokio::test]
    async fn a_failing_body_leaves_no_object_and_no_temp_file() {
        struct Failing;
        impl tokio::io::AsyncRead for Failing {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                std::task::Poll::Ready(Err(io::Error::other("client went away")))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_key(dir.path(), "k").await;
        let k = key("x.mp4");
        let body: BodyReader =
            Box::pin(tokio::io::AsyncReadExt::chain(&b"some bytes"[..], Failing));

        let put = store.put_stream(&k, body, &PutOptions::default()).await;

        assert!(matches!(put, Err(StorageError::Io(_))), "{put:?}");
        assert!(matches!(
            store.head(&k).await,
            Err(StorageError::NotFound(_))
        ));
        assert_eq!(
            std::fs::read_dir(store.root().join(TMP_DIR))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn etag_changes_when_the_object_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_key(dir.path(), "k").await;
        let k = key("p.json");
        // Same size, written back to back: likely the same mtime tick.
        let first = store
            .put_bytes(&k, Bytes::from_static(b"{\"a\":1}"), &PutOptions::default())
            .await
            .unwrap();
        let second = store
            .put_bytes(&k, Bytes::from_static(b"{\"a\":2}"), &PutOptions::default())
            .await
            .unwrap();

        assert_ne!(first.etag, second.etag);
        assert_eq!(store.head(&k).await.unwrap().etag, second.etag);
    }

    #[test]
    fn content_types_follow_the_extension() {
        let ct = |k: &str| content_type_for(&key(k));
        assert_eq!(ct("live/x/index.m3u8"), "application/vnd.apple.mpegurl");
        assert_eq!(ct("live/x/seg1.TS"), "video/mp2t");
        assert_eq!(ct("r/full.mp4"), "video/mp4");
        assert_eq!(ct("r/seg.m4s"), "video/iso.segment");
        assert_eq!(ct("thumb.jpg"), "image/jpeg");
        assert_eq!(ct("a.png"), "image/png");
        assert_eq!(ct("meta.json"), "application/json");
        assert_eq!(ct("notes.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("noext"), "application/octet-stream");
        assert_eq!(ct("dir.m3u8/file"), "application/octet-stream");
        assert_eq!(ct("x.bin"), "application/octet-stream");
    }
}
