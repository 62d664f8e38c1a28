//! Object storage behind one interface, two backends: `local` (a directory) and `s3` (any
//! S3-compatible service through aws-sdk-s3).
//!
//! Dispatch is an enum rather than a trait object: there are exactly two backends, the calls
//! stay plain `async fn`s, and adding a backend is a compile error everywhere it matters.
//!
//! Keys are [`ObjectKey`]s, parsed at the edge: relative, `/`-separated, no `..`, so a key can
//! never escape the local root nor address another bucket.

mod key;
mod local;
mod s3;

use std::{pin::Pin, time::Duration};

use bytes::Bytes;
use futures::Stream;
use time::OffsetDateTime;
use tokio::io::AsyncRead;

pub use key::{InvalidKey, ObjectKey};
pub use local::{LocalStore, content_type_for};
pub use s3::S3Store;

use crate::config::{StorageBackend, StorageSettings};

/// A body streamed out of storage.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>;
/// A body streamed into storage.
pub type BodyReader = Pin<Box<dyn AsyncRead + Send>>;

/// Errors of the storage layer. HTTP maps `NotFound` to 404, `InvalidRange` to 416,
/// `InvalidKey` to 400 and everything else to 503 (the store is unavailable).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object not found: {0}")]
    NotFound(String),
    #[error("range not satisfiable (object has {size} bytes)")]
    InvalidRange { size: u64 },
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// What a head or list says of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: ObjectKey,
    pub size: u64,
    pub last_modified: Option<OffsetDateTime>,
    pub content_type: Option<String>,
    pub etag: Option<String>,
}

/// A byte range as HTTP asks for it (inclusive ends, like `Range: bytes=a-b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b`, both inclusive.
    FromTo(u64, u64),
    /// `bytes=a-`
    From(u64),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Resolve against an object size into an inclusive `(start, end)`; `None` if unsatisfiable.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        if size == 0 {
            return None;
        }
        match self {
            ByteRange::FromTo(a, b) if a <= b && a < size => Some((a, b.min(size - 1))),
            ByteRange::From(a) if a < size => Some((a, size - 1)),
            ByteRange::Suffix(n) if n > 0 => Some((size.saturating_sub(n), size - 1)),
            _ => None,
        }
    }
}

/// The answer of a get: metadata of the whole object, the served inclusive range, the body.
pub struct GetObject {
    pub meta: ObjectMeta,
    /// `Some((start, end))` inclusive when a range was asked for.
    pub range: Option<(u64, u64)>,
    pub body: ByteStream,
}

impl GetObject {
    /// Read the whole body into memory (tests, small objects such as playlists).
    pub async fn bytes(self) -> Result<Bytes, StorageError> {
        use futures::TryStreamExt;
        let chunks: Vec<Bytes> = self.body.try_collect().await?;
        Ok(chunks.concat().into())
    }
}

/// Options of a put.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
}

/// The method a presigned URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresignMethod {
    Get,
    Put,
}

/// The configured object store.
#[derive(Clone)]
pub enum Storage {
    Local(LocalStore),
    S3(S3Store),
}

impl Storage {
    /// Build the configured backend. `public_url` is where this server is reached (local
    /// presigned URLs point at it). For S3, checks nothing remote: see [`Storage::check`].
    pub async fn from_settings(
        settings: &StorageSettings,
        public_url: &url::Url,
    ) -> Result<Storage, StorageError> {
        Ok(match settings.backend {
            StorageBackend::Local => {
                Storage::Local(LocalStore::new(&settings.local, public_url).await?)
            }
            StorageBackend::S3 => Storage::S3(S3Store::new(&settings.s3).await?),
        })
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Storage::Local(_) => "local",
            Storage::S3(_) => "s3",
        }
    }

    /// Readiness probe: the root is writable / the bucket answers.
    pub async fn check(&self) -> Result<(), StorageError> {
        match self {
            Storage::Local(s) => s.check().await,
            Storage::S3(s) => s.check().await,
        }
    }

    /// Store a small object held in memory (one request).
    pub async fn put_bytes(
        &self,
        key: &ObjectKey,
        body: Bytes,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        match self {
            Storage::Local(s) => s.put_bytes(key, body, opts).await,
            Storage::S3(s) => s.put_bytes(key, body, opts).await,
        }
    }

    /// Store an object of unknown size from a reader; large objects go up in parts (S3
    /// multipart, aborted on error) and never appear half-written under their key.
    pub async fn put_stream(
        &self,
        key: &ObjectKey,
        body: BodyReader,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        match self {
            Storage::Local(s) => s.put_stream(key, body, opts).await,
            Storage::S3(s) => s.put_stream(key, body, opts).await,
        }
    }

    /// Read an object, or the given byte range of it.
    pub async fn get(
        &self,
        key: &ObjectKey,
        range: Option<ByteRange>,
    ) -> Result<GetObject, StorageError> {
        match self {
            Storage::Local(s) => s.get(key, range).await,
            Storage::S3(s) => s.get(key, range).await,
        }
    }

    /// Metadata of one object; `NotFound` when absent.
    pub async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        match self {
            Storage::Local(s) => s.head(key).await,
            Storage::S3(s) => s.head(key).await,
        }
    }

    /// Every object whose key starts with `prefix` (a plain string prefix, as S3 does), sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        match self {
            Storage::Local(s) => s.list(prefix).await,
            Storage::S3(s) => s.list(prefix).await,
        }
    }

    /// Delete one object; deleting a missing object succeeds (idempotent).
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match self {
            Storage::Local(s) => s.delete(key).await,
            Storage::S3(s) => s.delete(key).await,
        }
    }

    /// Delete every object under `prefix`; returns how many were deleted.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, StorageError> {
        match self {
            Storage::Local(s) => s.delete_prefix(prefix).await,
            Storage::S3(s) => s.delete_prefix(prefix).await,
        }
    }

    /// A URL that allows `method` on `key` without other credentials until `expires_in` passes.
    pub async fn presign(
        &self,
        method: PresignMethod,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<url::Url, StorageError> {
        match self {
            Storage::Local(s) => s.presign(method, key, expires_in),
            Storage::S3(s) => s.presign(method, key, expires_in).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange;

    #[test]
    fn ranges_resolve_like_http() {
        assert_eq!(ByteRange::FromTo(0, 9).resolve(100), Some((0, 9)));
        assert_eq!(ByteRange::FromTo(90, 200).resolve(100), Some((90, 99)));
        assert_eq!(ByteRange::From(50).resolve(100), Some((50, 99)));
        assert_eq!(ByteRange::Suffix(10).resolve(100), Some((90, 99)));
        assert_eq!(ByteRange::Suffix(500).resolve(100), Some((0, 99)));
        assert_eq!(ByteRange::From(100).resolve(100), None);
        assert_eq!(ByteRange::FromTo(5, 4).resolve(100), None);
        assert_eq!(ByteRange::Suffix(0).resolve(100), None);
        assert_eq!(ByteRange::From(0).resolve(0), None);
    }
}
