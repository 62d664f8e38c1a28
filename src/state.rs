//! Shared application state handed to every handler (cheap to clone: an `Arc` inside).

use std::sync::Arc;

use sqlx::PgPool;
use wemaster_media::pipeline::TemplateSet;

use crate::{
    auth::{SessionService, TokenService},
    cache::Redis,
    config::Settings,
    email::Mailer,
    live::{runtime::LiveRuntime, supervisor::LiveRegistry},
    oidc::Oidc,
    ratelimit::Limiter,
    storage::Storage,
};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub db: PgPool,
    pub redis: Redis,
    pub storage: Storage,
    /// Signs and checks access tokens.
    pub tokens: TokenService,
    /// Login sessions and refresh tokens.
    pub sessions: SessionService,
    /// Renders and queues mail (the sender runs in the background).
    pub mailer: Mailer,
    /// Abuse limits (Redis).
    pub limiter: Limiter,
    /// OpenID Connect login providers.
    pub oidc: Oidc,
    /// Handle on the live sessions of this node.
    pub live: LiveRuntime,
    /// Playlists of the live sessions of this node, read by the HLS routes.
    pub live_views: LiveRegistry,
    /// Which node holds a live stream this node does not (live HLS from any node).
    pub peers: crate::live::peers::Peers,
    /// WHIP (WebRTC) ingest: the UDP socket task and the way to the supervisor.
    pub whip: crate::live::whip::WhipIngest,
    /// Signs and checks `?token=` of private playback.
    pub playback: crate::playback::PlaybackSigner,
    /// Signs Jitsi meeting tokens.
    pub jitsi: crate::meetings::Jitsi,
    /// This node's chat hub (subscriptions, fan-out, acks).
    pub chat: crate::chat::hub::Hub,
    /// This node's live counts: reactions per second, poll results, poll timers.
    pub tally: crate::interaction::tally::Tally,
    /// Sends system notifications (chat notice or email, per the user's choice).
    pub notifier: crate::notifications::Notifier,
    /// Outbound calls to payment providers (those with API credentials configured).
    pub gateways: Arc<crate::payments::gateway::Gateways>,
    /// Cancelled at shutdown: chat connections close with 1001 "going away".
    pub chat_shutdown: tokio_util::sync::CancellationToken,
    /// Pipeline templates loaded at start.
    pub pipelines: TemplateSet,
    /// Elements the templates need that GStreamer cannot create (empty when healthy).
    pub missing_elements: Vec<String>,
    /// The last hour of this node's key metrics (the ops console's System page).
    pub metric_history: crate::metric_history::MetricHistory,
}

impl AppState {
    pub fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
