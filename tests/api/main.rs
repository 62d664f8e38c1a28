//! The integration tests of the crate, in one binary (one link, shared helpers).

mod helpers;

mod auth;
mod cli;
mod errors;
mod health;
mod objects;
mod storage;
