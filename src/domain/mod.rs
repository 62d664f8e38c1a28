//! Shared value types: what more than one domain (and the configuration) speaks in.
//!
//! This module is a leaf: it imports nothing from the rest of the crate, so config, every
//! domain and the HTTP layer may all depend on it.

mod ids;
mod money;
mod page;
mod role;
mod text;
mod time_zone;

pub use self::{
    ids::{ChannelId, CourseId, LessonId, OrderId, RecordingId, UserId},
    money::{Currency, Money},
    page::{Page, PageLimit},
    role::Role,
    text::json_has_nul,
    time_zone::TimeZone,
};

/// Why an input was refused; HTTP answers 422 naming `field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub reason: &'static str,
}
