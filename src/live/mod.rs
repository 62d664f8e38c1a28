//! Live streams: the resource a teacher's app manages (`/api/v1/live-streams`), its stream
//! keys and events, and the runtime that turns an authenticated publisher into a live session
//! (pipeline, live HLS, reconnect window).
//!
//! - [`runtime`]: the supervisor task that owns every live session on this node; HTTP actions
//!   (disable, complete) reach it through [`runtime::LiveRuntime`].

pub mod runtime;
