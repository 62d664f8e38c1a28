//! The live stream resource as the rest of the service sees it, and its parsed inputs.
//!
//! Parse, don't validate: a [`Title`] or [`ReconnectWindow`] exists only if valid, so the store
//! and everything past the HTTP edge take these types and never re-check. The database's CHECK
//! constraints state the same bounds, as a last line.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

pub use crate::domain::{Page, PageLimit};
use crate::users::InvalidInput;

/// The id of a live stream (UUID v7). A newtype so it cannot be swapped with a user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LiveStreamId(pub Uuid);

impl LiveStreamId {
    pub fn new() -> LiveStreamId {
        LiveStreamId(Uuid::now_v7())
    }
    pub fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl Default for LiveStreamId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for LiveStreamId {
    fn from(id: Uuid) -> Self {
        LiveStreamId(id)
    }
}

impl fmt::Display for LiveStreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamStatus {
    /// No session: waiting for a publisher.
    Idle,
    /// A session runs: a publisher is connected, or the reconnect window is open.
    Active,
    /// Publishers are refused until the stream is enabled again.
    Disabled,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Idle => "idle",
            StreamStatus::Active => "active",
            StreamStatus::Disabled => "disabled",
        }
    }
}

impl FromStr for StreamStatus {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "idle" => Ok(StreamStatus::Idle),
            "active" => Ok(StreamStatus::Active),
            "disabled" => Ok(StreamStatus::Disabled),
            _ => Err(InvalidInput {
                field: "status",
                reason: "must be one of idle, active, disabled",
            }),
        }
    }
}

/// Who may watch. `private` playback takes a signed `?token=` (see the playback routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }
}

impl FromStr for Visibility {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "public" => Ok(Visibility::Public),
            "private" => Ok(Visibility::Private),
            _ => Err(InvalidInput {
                field: "visibility",
                reason: "must be public or private",
            }),
        }
    }
}

/// A stream title: 1 to 200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(s: &str) -> Result<Title, InvalidInput> {
        let s = s.trim();
        let n = s.chars().count();
        if n == 0 || n > Self::MAX_CHARS || s.chars().any(char::is_control) {
            return Err(InvalidInput {
                field: "title",
                reason: "must be 1 to 200 printable characters",
            });
        }
        Ok(Title(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How long a live session waits for its publisher to come back before it ends, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReconnectWindow(u16);

impl ReconnectWindow {
    pub const MAX_S: u16 = 3600;
    pub const DEFAULT: ReconnectWindow = ReconnectWindow(60);

    /// Takes an `i64` so that negative and huge inputs get this message, not a JSON type error.
    pub fn parse(s: i64) -> Result<ReconnectWindow, InvalidInput> {
        match u16::try_from(s) {
            Ok(v) if v <= Self::MAX_S => Ok(ReconnectWindow(v)),
            _ => Err(InvalidInput {
                field: "reconnect_window_s",
                reason: "must be between 0 and 3600 seconds",
            }),
        }
    }
    pub fn seconds(self) -> u16 {
        self.0
    }
    pub fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0.into())
    }
}

impl Default for ReconnectWindow {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A live stream (never its key: only the key's display prefix is kept).
#[derive(Debug, Clone)]
pub struct LiveStream {
    pub id: LiveStreamId,
    pub owner_id: Uuid,
    pub title: String,
    pub status: StreamStatus,
    /// The first characters of the current key (`wmk_AbCd`), to tell keys apart.
    pub stream_key_prefix: String,
    /// Record sessions to object storage.
    pub record: bool,
    pub reconnect_window: ReconnectWindow,
    pub visibility: Visibility,
    /// Days its recordings are kept; `None`: `recordings.retention_days` applies.
    pub recording_retention_days: Option<u16>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewLiveStream {
    pub owner_id: Uuid,
    pub title: Title,
    pub record: bool,
    pub reconnect_window: ReconnectWindow,
    pub visibility: Visibility,
}

/// A partial update: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct LiveStreamPatch {
    pub title: Option<Title>,
    pub record: Option<bool>,
    pub reconnect_window: Option<ReconnectWindow>,
    pub visibility: Option<Visibility>,
    /// `Some(None)` clears the override.
    pub recording_retention_days: Option<Option<u16>>,
}

impl LiveStreamPatch {
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.record.is_none()
            && self.reconnect_window.is_none()
            && self.visibility.is_none()
            && self.recording_retention_days.is_none()
    }
}

/// A recording retention override in days: 1 to 36500.
pub fn parse_retention_days(days: i64) -> Result<u16, InvalidInput> {
    u16::try_from(days)
        .ok()
        .filter(|d| (1..=36_500).contains(d))
        .ok_or(InvalidInput {
            field: "recording_retention_days",
            reason: "must be between 1 and 36500, or null for the default",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(Title::parse("  Algebra 1 ").unwrap().as_str(), "Algebra 1");
        assert_eq!(
            Title::parse(&"é".repeat(200))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            200
        );
        for bad in ["", "   ", "line\nbreak"] {
            assert_eq!(Title::parse(bad).unwrap_err().field, "title");
        }
        assert!(Title::parse(&"x".repeat(201)).is_err());
    }

    #[test]
    fn reconnect_windows_are_bounded() {
        assert_eq!(ReconnectWindow::parse(0).unwrap().seconds(), 0);
        assert_eq!(ReconnectWindow::parse(3600).unwrap().seconds(), 3600);
        for bad in [-1, 3601, i64::MAX, i64::MIN] {
            assert_eq!(
                ReconnectWindow::parse(bad).unwrap_err().field,
                "reconnect_window_s"
            );
        }
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            StreamStatus::Idle,
            StreamStatus::Active,
            StreamStatus::Disabled,
        ] {
            assert_eq!(s.as_str().parse::<StreamStatus>().unwrap(), s);
        }
        assert!("live".parse::<StreamStatus>().is_err());
    }
}
