//! WeMaster: live teaching server.
//!
//! Module tour (docs/architecture.md has the map and the direction of dependencies):
//! - [`startup`]: the [`startup::Application`] that connects the backends, starts the workers,
//!   binds and serves until shut down; [`cli`]: the `wemaster` commands; [`state`]: what every
//!   handler gets; [`telemetry`]: logs and metrics.
//! - [`config`]: the typed settings, one file per section (a leaf: it imports no domain);
//!   [`domain`]: shared value types (money, roles, paging, input errors; a leaf too).
//! - [`http`]: one router per domain (payments and courses as folders of one file per
//!   resource), problem+json errors, extractors, middleware; the OpenAPI document.
//! - Domains: [`identity`] (users, auth, OIDC, API tokens, audit, rate limits; re-exported at
//!   the crate root), [`courses`], [`payments`] (ledger, orders, refunds, payouts, one module
//!   per provider), [`live`] (live streams and their supervisor), [`recordings`], [`meetings`]
//!   (Jitsi), [`chat`], [`notifications`], [`playback`] (signed media URLs), [`email`],
//!   [`webhooks`] (events to integrators, signed and retried).
//! - Infrastructure: [`db`] (PostgreSQL), [`cache`] (Redis), [`storage`] (local and S3).
//! - `fuzzing`: fuzz entries for every parser of outside bytes in this crate (fuzz/).
//!
//! Media work (ingest, the packager, HLS, GStreamer pipelines) lives in the `wemaster-media`
//! crate, which knows nothing of HTTP or SQL.

pub mod backup;
pub mod cache;
pub mod chat;
pub mod cli;
pub mod config;
pub mod courses;
pub mod db;
pub mod doctor;
pub mod domain;
pub mod email;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod identity;
pub mod interaction;
pub mod jobs;
pub mod live;
pub mod meetings;
pub mod metric_history;
pub mod node;
pub mod notifications;
pub mod payments;
pub mod playback;
pub mod recordings;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod webhooks;

// Identity's modules at the paths the rest of the crate (and the tests) use.
pub use identity::{api_tokens, audit, auth, oidc, ratelimit, users};
