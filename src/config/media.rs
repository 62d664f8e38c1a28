//! `[media]`: where pipeline templates and the spool live.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    /// Empty: the built-in templates only.
    pub pipelines_dir: PathBuf,
    pub spool_dir: PathBuf,
}

impl MediaSettings {
    /// The directory whose templates replace the built-in ones, if one is configured.
    pub fn pipelines_dir(&self) -> Option<&std::path::Path> {
        (!self.pipelines_dir.as_os_str().is_empty()).then_some(self.pipelines_dir.as_path())
    }
}
