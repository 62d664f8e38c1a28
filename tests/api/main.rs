//! The integration tests of the crate, in one binary (one link, shared helpers).

mod helpers;

mod access;
mod attachments;
mod auth;
mod backup;
mod chat;
mod chat_scale;
mod cli;
mod courses;
mod errors;
mod health;
mod http_limits;
mod identity;
mod interaction;
mod jobs;
mod live_rtmp;
mod live_streams;
mod live_whip;
mod ll_hls;
mod media_conformance;
mod notifications;
mod objects;
mod oidc;
mod payment_gateways;
mod payments;
mod payments_model;
mod playlists;
mod reactions;
mod recordings;
mod schemathesis;
mod storage;
mod storage_usage;
mod two_factor_limits;
mod web;
mod whep;
