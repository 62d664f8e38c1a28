//! `[courses]`.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Courses (see `docs/courses.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CourseSettings {
    /// Largest cover image accepted, in bytes.
    pub cover_max_bytes: usize,
}

impl CourseSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1024..=50 * 1024 * 1024).contains(&self.cover_max_bytes) {
            return Err(ConfigError::new(
                "courses.cover_max_bytes",
                "must be between 1 KiB and 50 MiB",
            ));
        }
        Ok(())
    }
}
