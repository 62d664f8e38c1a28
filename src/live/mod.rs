//! Live streams: the resource a teacher's app manages (`/api/v1/live-streams`), its stream
//! keys and events, and the runtime that turns an authenticated publisher into a live session
//! (pipeline, live HLS, reconnect window).
//!
//! - [`runtime`]: the supervisor task that owns every live session on this node; HTTP actions
//!   (disable, complete) reach it through [`runtime::LiveRuntime`].
//! - [`supervisor`]: live sessions (publisher → pipeline → playlist, reconnect window);
//!   [`backend`]: its PostgreSQL/Redis side (key checks, ordered events).
//! - [`model`], [`store`]: the live stream resource and its queries (soft delete, scoped access,
//!   `find_by_stream_key` for the ingest); [`keys`]: stream keys (random, stored hashed);
//!   [`events`]: `live_stream.*` events, stored and published on Redis.
//! - [`cluster`], [`peers`], [`resume`]: several nodes — orders to the node holding a session,
//!   live HLS from any node, a session continued on another node after its node died.

pub mod backend;
pub mod cluster;
pub mod events;
pub mod keys;
pub mod model;
pub mod peers;
pub mod publish_token;
pub mod resume;
pub mod runtime;
pub mod store;
pub mod supervisor;
pub mod whip;
