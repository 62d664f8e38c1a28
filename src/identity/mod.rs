//! Identity: who a caller is and what they may do.
//!
//! - [`users`]: accounts and their parsed inputs (email, password, display name, locale);
//! - [`auth`]: access tokens (Ed25519 JWTs and their keys), sessions and refresh, two-factor
//!   authentication, password hashing;
//! - [`oidc`]: sign-in through OpenID Connect providers;
//! - [`api_tokens`]: long-lived tokens for automation;
//! - [`audit`]: the security audit log;
//! - [`ratelimit`]: the abuse limits (login failures, registrations, mails);
//! - [`setup`]: the first admin, created through the link the server prints at start.
//!
//! The crate root re-exports each module (`crate::users`, `crate::auth`, ...), the paths the
//! rest of the service uses. `docs/identity.md` tells the whole story.

pub mod api_tokens;
pub mod audit;
pub mod auth;
pub mod oidc;
pub mod ratelimit;
pub mod setup;
pub mod users;
