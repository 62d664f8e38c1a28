//! `[storage]`, `[storage.local]` and `[storage.s3]`: object storage.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

use super::{ConfigError, Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Local,
    S3,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    pub backend: StorageBackend,
    pub local: LocalStorageSettings,
    pub s3: S3Settings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalStorageSettings {
    pub root: PathBuf,
    pub signing_key: Secret,
    #[serde(default, skip_serializing)]
    pub signing_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    #[serde(default, skip_serializing)]
    pub secret_access_key_file: Option<PathBuf>,
    pub force_path_style: bool,
    pub multipart_part_size_bytes: u64,
    pub multipart_concurrency: usize,
    pub request_timeout_s: u64,
    pub create_bucket: bool,
}

const MIN_PART: u64 = 5 * 1024 * 1024;
const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;

impl StorageSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        fn err(key: &str, reason: impl Into<String>) -> ConfigError {
            ConfigError::new(key, reason)
        }
        if self.local.root.as_os_str().is_empty() {
            return Err(err("storage.local.root", "must not be empty"));
        }
        if !self.local.signing_key.is_empty() && self.local.signing_key.expose().len() < 32 {
            return Err(err(
                "storage.local.signing_key",
                "must be at least 32 bytes (or empty for a random one)",
            ));
        }
        let s3 = &self.s3;
        if !s3.endpoint.is_empty()
            && !s3
                .endpoint
                .parse::<Url>()
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            return Err(err(
                "storage.s3.endpoint",
                "must be an http:// or https:// URL, or empty for AWS",
            ));
        }
        if !(MIN_PART..=MAX_PART).contains(&s3.multipart_part_size_bytes) {
            return Err(err(
                "storage.s3.multipart_part_size_bytes",
                "must be between 5 MiB and 5 GiB",
            ));
        }
        if s3.multipart_concurrency == 0 || s3.multipart_concurrency > 64 {
            return Err(err(
                "storage.s3.multipart_concurrency",
                "must be between 1 and 64",
            ));
        }
        if s3.request_timeout_s == 0 {
            return Err(err("storage.s3.request_timeout_s", "must be at least 1"));
        }
        if self.backend == StorageBackend::S3 {
            if s3.bucket.is_empty() {
                return Err(err(
                    "storage.s3.bucket",
                    "must be set when storage.backend = \"s3\"",
                ));
            }
            if s3.region.is_empty() {
                return Err(err(
                    "storage.s3.region",
                    "must be set when storage.backend = \"s3\"",
                ));
            }
            if s3.access_key_id.is_empty() != s3.secret_access_key.is_empty() {
                return Err(err(
                    "storage.s3.secret_access_key",
                    "access_key_id and secret_access_key go together",
                ));
            }
        }
        Ok(())
    }
}
