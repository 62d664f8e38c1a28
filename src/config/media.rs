//! `[media]`: where pipeline templates and the spool live.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    pub pipelines_dir: PathBuf,
    pub spool_dir: PathBuf,
}
