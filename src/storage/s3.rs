//! The S3 backend: one bucket of any S3-compatible service, through aws-sdk-s3 configured by
//! hand from [`S3Settings`] (no environment or profile lookup: the settings are the truth).
//!
//! Streams of unknown size go up as one `PutObject` when they fit in a part, otherwise as a
//! multipart upload with a bounded number of parts in flight; a failed multipart upload is
//! aborted so no orphan parts are billed. Errors carry the SDK's full context
//! ([`DisplayErrorContext`]) and never credentials.

use std::{sync::Arc, time::Duration};

use aws_sdk_s3::{
    Client,
    config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
        ResponseChecksumValidation, retry::RetryConfig, timeout::TimeoutConfig,
    },
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    operation::{
        create_bucket::CreateBucketError, get_object::GetObjectError, head_object::HeadObjectError,
    },
    presigning::PresigningConfig,
    primitives::ByteStream as SdkBody,
    types::{
        BucketLocationConstraint, CompletedMultipartUpload, CompletedPart,
        CreateBucketConfiguration, Delete, ObjectIdentifier,
    },
};
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::{io::AsyncReadExt, task::JoinSet};

use super::{
    BodyReader, ByteRange, GetObject, ObjectKey, ObjectMeta, PresignMethod, PutOptions,
    StorageError, content_type_for, key::prefix_dir,
};
use crate::config::S3Settings;

/// S3's smallest part (all but the last) and largest part.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's limit on parts per upload.
const MAX_PARTS: i32 = 10_000;
/// S3's limit on keys per `DeleteObjects`.
const DELETE_BATCH: usize = 1000;

/// A bucket of an S3-compatible service. Cheap to clone.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: Arc<str>,
    part_size: usize,
    concurrency: usize,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the client: its configuration holds the credentials.
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Build the client; when `create_bucket` is set, create the bucket if it does not exist.
    pub async fn new(settings: &S3Settings) -> Result<Self, StorageError> {
        if settings.bucket.is_empty() {
            return Err(StorageError::Backend("storage.s3.bucket is empty".into()));
        }
        // Without aws-config there is no credentials chain to fall back on: say so now rather
        // than fail every request later.
        if settings.access_key_id.is_empty() || settings.secret_access_key.is_empty() {
            return Err(StorageError::Backend(
                "storage.s3.access_key_id and storage.s3.secret_access_key must both be set".into(),
            ));
        }
        let credentials = Credentials::new(
            settings.access_key_id.clone(),
            settings.secret_access_key.expose().to_owned(),
            None,
            None,
            "wemaster-settings",
        );
        let request_timeout = Duration::from_secs(settings.request_timeout_s.max(1));
        let mut config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(settings.force_path_style)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(request_timeout.min(Duration::from_secs(10)))
                    .operation_attempt_timeout(request_timeout)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            // Checksums only where the API demands them: S3-compatible servers vary in their
            // support of the newer flexible checksums, and presigned PUTs must not carry one
            // for a body the signer never saw.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if !settings.endpoint.is_empty() {
            config = config.endpoint_url(settings.endpoint.clone());
        }

        let part_size = settings
            .multipart_part_size_bytes
            .clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        if part_size != settings.multipart_part_size_bytes {
            tracing::warn!(
                configured = settings.multipart_part_size_bytes,
                used = part_size,
                "storage.s3.multipart_part_size_bytes out of S3's range, clamped"
            );
        }
        let store = Self {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.as_str().into(),
            part_size: usize::try_from(part_size).unwrap_or(usize::MAX),
            concurrency: settings.multipart_concurrency.max(1),
        };
        if settings.create_bucket {
            match store.create_bucket_if_missing(&settings.region).await {
                Ok(()) => {}
                // The service is down, not refusing: the server starts all the same (not
                // ready; recordings wait in the spool) and the bucket is made when it is back.
                // A refusal (credentials, a name taken by someone else) stops the start.
                Err((true, e)) => {
                    tracing::warn!(error = %e, "storage unreachable: the bucket is created when it answers");
                    let store = store.clone();
                    let region = settings.region.clone();
                    tokio::spawn(async move {
                        let mut delay = Duration::from_secs(1);
                        loop {
                            tokio::time::sleep(delay).await;
                            match store.create_bucket_if_missing(&region).await {
                                Ok(()) => return,
                                Err((true, _)) => {}
                                Err((false, e)) => {
                                    tracing::error!(error = %e, "cannot create the storage bucket");
                                    return;
                                }
                            }
                            delay = (delay * 2).min(Duration::from_secs(30));
                        }
                    });
                }
                Err((false, e)) => return Err(e),
            }
        }
        Ok(store)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `Err((unreachable, error))`: `unreachable` when the service did not answer (connection
    /// refused, timeout), as opposed to answering with a refusal.
    async fn create_bucket_if_missing(&self, region: &str) -> Result<(), (bool, StorageError)> {
        let mut request = self.client.create_bucket().bucket(&*self.bucket);
        // us-east-1 is the default location and S3 refuses it as an explicit constraint.
        if !region.is_empty() && region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => {
                tracing::info!(bucket = %self.bucket, "created storage bucket");
                Ok(())
            }
            Err(e) => match e.as_service_error() {
                Some(
                    CreateBucketError::BucketAlreadyOwnedByYou(_)
                    | CreateBucketError::BucketAlreadyExists(_),
                ) => Ok(()),
                _ => {
                    let unreachable =
                        matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_));
                    Err((unreachable, self.backend("create bucket", None, e)))
                }
            },
        }
    }

    /// Readiness: the bucket exists and our credentials reach it.
    pub async fn check(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&*self.bucket)
            .send()
            .await
            .map_err(|e| self.backend("head bucket", None, e))?;
        Ok(())
    }

    pub async fn put_bytes(
        &self,
        key: &ObjectKey,
        body: Bytes,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let size = body.len() as u64;
        let out = self
            .client
            .put_object()
            .bucket(&*self.bucket)
            .key(key.as_str())
            .body(SdkBody::from(body))
            .content_type(content_type(key, opts))
            .set_cache_control(opts.cache_control.clone())
            .send()
            .await
            .map_err(|e| self.backend("put", Some(key), e))?;
        Ok(self.put_meta(key, size, out.e_tag, opts))
    }

    /// One `PutObject` if the body ends within a part, else a multipart upload.
    pub async fn put_stream(
        &self,
        key: &ObjectKey,
        mut body: BodyReader,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let first = read_part(&mut body, self.part_size).await?;
        if first.len() < self.part_size {
            return self.put_bytes(key, first, opts).await;
        }
        // Exactly one part's worth so far: only a second read tells whether more follows.
        let second = read_part(&mut body, self.part_size).await?;
        if second.is_empty() {
            return self.put_bytes(key, first, opts).await;
        }

        let upload_id = self
            .client
            .create_multipart_upload()
            .bucket(&*self.bucket)
            .key(key.as_str())
            .content_type(content_type(key, opts))
            .set_cache_control(opts.cache_control.clone())
            .send()
            .await
            .map_err(|e| self.backend("start multipart upload", Some(key), e))?
            .upload_id
            .ok_or_else(|| {
                StorageError::Backend(format!(
                    "start multipart upload {key}: no upload id in the answer"
                ))
            })?;

        // Parts already stored would otherwise linger (and be billed) until a lifecycle rule
        // removes them: abort on error, and also if this future is dropped half-way.
        let mut guard = AbortOnDrop {
            store: Some(self.clone()),
            key: key.clone(),
            upload_id: upload_id.clone(),
        };
        let result = self
            .upload_parts(key, &upload_id, body, [first, second])
            .await;
        guard.store = None;
        match result {
            Ok((size, e_tag)) => Ok(self.put_meta(key, size, e_tag, opts)),
            Err(e) => {
                self.abort_upload(key, &upload_id).await;
                Err(e)
            }
        }
    }

    async fn abort_upload(&self, key: &ObjectKey, upload_id: &str) {
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&*self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(e) = aborted {
            tracing::warn!(%key, upload_id, error = %DisplayErrorContext(&e), "could not abort multipart upload");
        }
    }

    /// Upload `first` parts then the rest of `body`, at most `concurrency` parts in flight (so
    /// at most `concurrency + 1` parts in memory), and complete. Returns (size, ETag).
    async fn upload_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        mut body: BodyReader,
        first: [Bytes; 2],
    ) -> Result<(u64, Option<String>), StorageError> {
        let mut pending = first.into_iter();
        // Part uploads run as tasks so they progress while the next part is read. Dropping the
        // set (the caller gave up on this put) cancels them.
        let mut in_flight: JoinSet<Result<CompletedPart, StorageError>> = JoinSet::new();
        let mut completed = Vec::new();
        let mut size = 0u64;

        let uploaded: Result<(), StorageError> = async {
            let mut part_number = 0i32;
            let mut body_done = false;
            loop {
                while !body_done && in_flight.len() < self.concurrency {
                    let part = match pending.next() {
                        Some(part) => part,
                        None => read_part(&mut body, self.part_size).await?,
                    };
                    if part.is_empty() {
                        body_done = true;
                        break;
                    }
                    // A short part can only be the last one.
                    body_done = part.len() < self.part_size;
                    part_number += 1;
                    if part_number > MAX_PARTS {
                        return Err(StorageError::Backend(format!(
                            "put {key}: more than {MAX_PARTS} parts of {} bytes",
                            self.part_size
                        )));
                    }
                    size += part.len() as u64;
                    in_flight.spawn(self.clone().upload_part(
                        key.clone(),
                        upload_id.to_owned(),
                        part_number,
                        part,
                    ));
                }
                match in_flight.join_next().await {
                    Some(Ok(part)) => completed.push(part?),
                    Some(Err(join)) => {
                        return Err(StorageError::Backend(format!(
                            "put {key}: part upload task failed: {join}"
                        )));
                    }
                    None => return Ok(()),
                }
            }
        }
        .await;
        if let Err(e) = uploaded {
            // No part request may still be running when the caller aborts the upload, or the
            // part it stores would outlive the abort.
            in_flight.shutdown().await;
            return Err(e);
        }

        completed.sort_by_key(|p| p.part_number);
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&*self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.backend("complete multipart upload", Some(key), e))?;
        Ok((size, out.e_tag))
    }

    async fn upload_part(
        self,
        key: ObjectKey,
        upload_id: String,
        part_number: i32,
        part: Bytes,
    ) -> Result<CompletedPart, StorageError> {
        let out = self
            .client
            .upload_part()
            .bucket(&*self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(part_number)
            .body(SdkBody::from(part))
            .send()
            .await
            .map_err(|e| self.backend(&format!("upload part {part_number} of"), Some(&key), e))?;
        Ok(CompletedPart::builder()
            .set_e_tag(out.e_tag)
            .part_number(part_number)
            .build())
    }

    pub async fn get(
        &self,
        key: &ObjectKey,
        range: Option<ByteRange>,
    ) -> Result<GetObject, StorageError> {
        // S3 ignores a syntactically invalid Range and serves the whole object (as HTTP says);
        // we refuse such ranges like the local backend does, which needs the size.
        if let Some(r) = range
            && (matches!(r, ByteRange::FromTo(a, b) if a > b) || r == ByteRange::Suffix(0))
        {
            return Err(StorageError::InvalidRange {
                size: self.head(key).await?.size,
            });
        }
        let out = match self
            .client
            .get_object()
            .bucket(&*self.bucket)
            .key(key.as_str())
            .set_range(range.map(range_header))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if is_not_found(&e)
                    || matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) =>
            {
                return Err(StorageError::NotFound(key.to_string()));
            }
            Err(e) if status(&e) == Some(416) || e.code() == Some("InvalidRange") => {
                return Err(StorageError::InvalidRange {
                    size: self.head(key).await?.size,
                });
            }
            Err(e) => return Err(self.backend("get", Some(key), e)),
        };

        let length = out
            .content_length
            .and_then(|l| u64::try_from(l).ok())
            .unwrap_or(0);
        let (size, served) = match (range, out.content_range.as_deref()) {
            (None, _) => (length, None),
            (Some(_), Some(content_range)) => {
                let (start, end, total) = parse_content_range(content_range).ok_or_else(|| {
                    StorageError::Backend(format!(
                        "get {key}: unparsable Content-Range {content_range:?}"
                    ))
                })?;
                (total, Some((start, end)))
            }
            // A 200 with the whole body: some servers answer so when the range covers it all.
            // Anything else would hand the caller bytes it did not ask for.
            (Some(r), None) => match r.resolve(length) {
                Some((0, end)) if end + 1 == length => (length, Some((0, end))),
                _ => {
                    return Err(StorageError::Backend(format!(
                        "get {key}: the server ignored the Range header"
                    )));
                }
            },
        };
        let meta = ObjectMeta {
            key: key.clone(),
            size,
            last_modified: out.last_modified.as_ref().and_then(to_offset_date_time),
            content_type: out.content_type,
            etag: out.e_tag,
        };
        let body = futures::stream::unfold(out.body, |mut body| async move {
            let chunk = body.next().await?;
            Some((
                chunk.map_err(|e| StorageError::Backend(format!("reading object body: {e}"))),
                body,
            ))
        });
        Ok(GetObject {
            meta,
            range: served,
            body: Box::pin(body),
        })
    }

    pub async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let out = match self
            .client
            .head_object()
            .bucket(&*self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if is_not_found(&e)
                    || matches!(e.as_service_error(), Some(HeadObjectError::NotFound(_))) =>
            {
                return Err(StorageError::NotFound(key.to_string()));
            }
            Err(e) => return Err(self.backend("head", Some(key), e)),
        };
        Ok(ObjectMeta {
            key: key.clone(),
            size: out
                .content_length
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0),
            last_modified: out.last_modified.as_ref().and_then(to_offset_date_time),
            content_type: out.content_type,
            etag: out.e_tag,
        })
    }

    /// Objects under `prefix`, sorted by key. `content_type` is `None`: listing does not return it.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        if prefix_dir(prefix).is_none() {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&*self.bucket)
                .prefix(prefix)
                .set_continuation_token(continuation.take())
                .send()
                .await
                .map_err(|e| self.backend(&format!("list prefix {prefix:?} in"), None, e))?;
            for object in out.contents.unwrap_or_default() {
                // Checked here too: some compatible servers rewrite the prefix (s3s-fs strips a
                // leading '/'), and delete_prefix must never delete more than asked.
                let Some(raw) = object.key.filter(|k| k.starts_with(prefix)) else {
                    continue;
                };
                // The bucket may hold keys written by other tools that we could not address.
                let Ok(key) = ObjectKey::parse(raw.as_str()) else {
                    tracing::debug!(key = %raw, "skipping object whose key is not a valid ObjectKey");
                    continue;
                };
                found.push(ObjectMeta {
                    key,
                    size: object.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    last_modified: object.last_modified.as_ref().and_then(to_offset_date_time),
                    content_type: None,
                    etag: object.e_tag,
                });
            }
            match out.next_continuation_token {
                Some(token) if out.is_truncated == Some(true) => continuation = Some(token),
                _ => break,
            }
        }
        // S3 already lists in key order; servers that merely claim compatibility may not.
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// S3 answers a delete of a missing key with success; some compatible servers say 404.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match self
            .client
            .delete_object()
            .bucket(&*self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.backend("delete", Some(key), e)),
        }
    }

    /// List, then `DeleteObjects` in batches of 1000. Returns how many were deleted.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, StorageError> {
        let keys = self.list(prefix).await?;
        let mut deleted = 0u64;
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|m| ObjectIdentifier::builder().key(m.key.as_str()).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StorageError::Backend(format!("delete prefix {prefix:?}: {e}")))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StorageError::Backend(format!("delete prefix {prefix:?}: {e}")))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&*self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.backend(&format!("delete prefix {prefix:?} in"), None, e))?;
            let errors = out.errors.unwrap_or_default();
            if let Some(first) = errors.first() {
                return Err(StorageError::Backend(format!(
                    "delete prefix {prefix:?} in bucket {}: {} of {} keys failed, first {:?}: {} {}",
                    self.bucket,
                    errors.len(),
                    batch.len(),
                    first.key.as_deref().unwrap_or_default(),
                    first.code.as_deref().unwrap_or_default(),
                    first.message.as_deref().unwrap_or_default(),
                )));
            }
            deleted += batch.len() as u64;
        }
        Ok(deleted)
    }

    /// A SigV4 presigned URL of the service itself (at most 7 days, S3's limit).
    pub async fn presign(
        &self,
        method: PresignMethod,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<url::Url, StorageError> {
        let config = PresigningConfig::expires_in(expires_in).map_err(|e| {
            StorageError::Backend(format!("presign {key}: {}", DisplayErrorContext(&e)))
        })?;
        let request = match method {
            PresignMethod::Get => self
                .client
                .get_object()
                .bucket(&*self.bucket)
                .key(key.as_str())
                .presigned(config)
                .await
                .map_err(|e| self.backend("presign get", Some(key), e))?,
            PresignMethod::Put => self
                .client
                .put_object()
                .bucket(&*self.bucket)
                .key(key.as_str())
                .presigned(config)
                .await
                .map_err(|e| self.backend("presign put", Some(key), e))?,
        };
        url::Url::parse(request.uri())
            .map_err(|e| StorageError::Backend(format!("presign {key}: invalid URL: {e}")))
    }

    fn put_meta(
        &self,
        key: &ObjectKey,
        size: u64,
        etag: Option<String>,
        opts: &PutOptions,
    ) -> ObjectMeta {
        ObjectMeta {
            key: key.clone(),
            size,
            // PutObject does not return it; a head would cost a request per segment.
            last_modified: None,
            content_type: Some(content_type(key, opts)),
            etag,
        }
    }

    /// An SDK error as a backend error naming the operation, bucket and key, with the SDK's
    /// whole cause chain (code, message, request id; never credentials).
    fn backend<E, R>(&self, op: &str, key: Option<&ObjectKey>, err: SdkError<E, R>) -> StorageError
    where
        E: std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let target = match key {
            Some(key) => format!("{}/{key}", self.bucket),
            None => format!("bucket {}", self.bucket),
        };
        StorageError::Backend(format!("{op} {target}: {}", DisplayErrorContext(&err)))
    }
}

/// Aborts a multipart upload from a task when dropped armed (`store` is `Some`): the put was
/// cancelled between starting the upload and finishing or aborting it.
struct AbortOnDrop {
    store: Option<S3Store>,
    key: ObjectKey,
    upload_id: String,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        let (key, upload_id) = (self.key.clone(), std::mem::take(&mut self.upload_id));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { store.abort_upload(&key, &upload_id).await });
            }
            Err(_) => {
                tracing::warn!(%key, upload_id, "multipart upload left pending: no runtime to abort it")
            }
        }
    }
}

/// The content type stored with an object: the caller's, or the one its extension implies (so
/// both backends serve the same type for the same key).
fn content_type(key: &ObjectKey, opts: &PutOptions) -> String {
    opts.content_type
        .clone()
        .unwrap_or_else(|| content_type_for(key).to_owned())
}

/// Read until `part_size` bytes or the end of the body; shorter only at the end.
async fn read_part(body: &mut BodyReader, part_size: usize) -> Result<Bytes, StorageError> {
    let mut buf = vec![0u8; part_size];
    let mut filled = 0;
    while filled < part_size {
        let n = body.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

fn range_header(range: ByteRange) -> String {
    match range {
        ByteRange::FromTo(a, b) => format!("bytes={a}-{b}"),
        ByteRange::From(a) => format!("bytes={a}-"),
        ByteRange::Suffix(n) => format!("bytes=-{n}"),
    }
}

/// `bytes a-b/total` → (a, b, total).
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let (start, end, total) = (
        start.trim().parse().ok()?,
        end.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (start <= end && end < total).then_some((start, end, total))
}

fn status<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn is_not_found<E: ProvideErrorMetadata>(
    err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    status(err) == Some(404) || matches!(err.code(), Some("NoSuchKey" | "NotFound"))
}

fn to_offset_date_time(dt: &aws_smithy_types::DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(dt.as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_are_http_syntax() {
        assert_eq!(range_header(ByteRange::FromTo(0, 9)), "bytes=0-9");
        assert_eq!(range_header(ByteRange::From(5)), "bytes=5-");
        assert_eq!(range_header(ByteRange::Suffix(7)), "bytes=-7");
    }

    #[test]
    fn content_range_is_parsed_or_refused() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 9, 100)));
        assert_eq!(parse_content_range("bytes 90-99/100"), Some((90, 99, 100)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("bytes 0-9/*"), None);
        assert_eq!(parse_content_range("bytes 9-0/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("items 0-9/100"), None);
    }

    #[tokio::test]
    async fn read_part_fills_whole_parts_from_short_reads() {
        // A reader that hands out 3 bytes at a time, like a slow socket.
        let data: Vec<u8> = (0..=255).collect();
        let (client, mut server) = tokio::io::duplex(3);
        let mut body: BodyReader = Box::pin(client);
        let writer = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut server, &data)
                .await
                .unwrap();
        });

        let first = read_part(&mut body, 100).await.unwrap();
        let second = read_part(&mut body, 100).await.unwrap();
        let third = read_part(&mut body, 100).await.unwrap();
        writer.await.unwrap();
        let fourth = read_part(&mut body, 100).await.unwrap();

        assert_eq!(
            (first.len(), second.len(), third.len(), fourth.len()),
            (100, 100, 56, 0)
        );
        assert_eq!(first[0], 0);
        assert_eq!(third[55], 255);
    }
}
