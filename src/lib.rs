//! WeMaster: live teaching server.
//!
//! Layout: [`config`] (typed settings), [`startup`] (the [`startup::Application`] that binds
//! and serves), [`http`] (one router per domain, problem+json errors, middleware),
//! [`storage`] (local and S3 object storage), [`db`] and [`cache`] (PostgreSQL and Redis),
//! domain modules ([`users`], [`auth`], [`audit`], [`api_tokens`], [`email`], [`ratelimit`], [`oidc`], [`payments`]), and [`cli`] (the `wemaster` commands).
//! Media work (ingest, GStreamer pipelines, HLS) lives in the `wemaster-media` crate.

pub mod api_tokens;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod chat;
pub mod cli;
pub mod config;
pub mod courses;
pub mod db;
pub mod domain;
pub mod email;
pub mod http;
pub mod live;
pub mod meetings;
pub mod notifications;
pub mod oidc;
pub mod payments;
pub mod playback;
pub mod ratelimit;
pub mod recordings;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod users;
