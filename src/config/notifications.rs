//! `[notifications]`: system notifications (docs/chat.md).

use serde::{Deserialize, Serialize};

/// The `[notifications]` configuration section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// Lessons starting within this many minutes are announced (once per lesson).
    pub lesson_starting_min: u32,
    /// How often the lesson-starting job looks (seconds).
    pub scan_interval_s: u64,
}
