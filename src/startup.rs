//! The application: connects its dependencies, binds its listeners and serves until a shutdown
//! signal. Tests build it with port 0 and read the bound address back.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wemaster_media::pipeline::TemplateSet;

use wemaster_media::rtmp::RtmpConfig;

use crate::{
    auth::{SessionService, TokenService},
    cache::Redis,
    config::Settings,
    db,
    email::Mailer,
    http,
    live::{
        backend::PgLiveBackend,
        supervisor::{self, LiveConfig, LiveRegistry},
    },
    oidc::Oidc,
    ratelimit::Limiter,
    state::{AppState, Inner},
    storage::Storage,
};

pub struct Application {
    listener: TcpListener,
    rtmp_listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    /// The live supervisor: awaited at shutdown so live sessions end cleanly.
    supervisor: tokio::task::JoinHandle<()>,
    /// The recorder: awaited after the supervisor so ending recordings are finalized.
    recorder_task: tokio::task::JoinHandle<()>,
    publish_requests: tokio::sync::mpsc::Sender<wemaster_media::ingest::PublishRequest>,
    /// The email outbox sender (stops with the shutdown token).
    mail_sender: tokio::task::JoinHandle<()>,
    /// The chat persister: awaited so a batch in flight commits and hands the lease over.
    chat_persister: tokio::task::JoinHandle<()>,
    /// Periodic jobs (recording retention, payments reconciliation, notifications, attachment
    /// clean-up, metric sampling): each stops on the shutdown token and is awaited, so none is
    /// cut mid-run.
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Connect PostgreSQL (and migrate when configured), Redis and storage, load the pipeline
    /// templates, check GStreamer, and bind the HTTP listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        telemetry_init();
        let pool = db::connect(&settings.database).await?;
        if settings.database.migrate_on_start {
            db::migrate(&settings.database, &pool).await?;
        } else {
            db::check_schema(&pool).await?;
        }
        let redis = Redis::connect(&settings.redis).await?;
        let storage =
            Storage::from_settings(&settings.storage, &settings.http.default_public_url())
                .await
                .context("cannot open object storage (storage.*)")?;
        let pipelines = pipeline_templates(&settings.media)?;
        let missing_elements = check_gstreamer(&pipelines);
        let tokens = TokenService::new(&settings.auth, redis.clone())
            .context("loading the access-token keys (auth.keys_dir)")?;
        let sessions = SessionService::new(pool.clone(), tokens.clone(), &settings.auth);
        let mailer = Mailer::new(&settings.email)?;
        let limiter = Limiter::new(redis.clone(), &settings.auth.limits);
        let oidc = Oidc::new(&settings, redis.clone())?;
        let listener = TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("cannot listen on http.listen = {}", settings.http.listen))?;
        let rtmp_listener = TcpListener::bind(settings.rtmp.listen)
            .await
            .with_context(|| format!("cannot listen on rtmp.listen = {}", settings.rtmp.listen))?;
        // With port 0 (tests) the API must advertise the port actually bound.
        let mut settings = settings;
        let playback = crate::playback::PlaybackSigner::new(&settings.playback.secret);
        settings.rtmp.listen = rtmp_listener.local_addr()?;
        let whip_socket = tokio::net::UdpSocket::bind(settings.whip.udp_listen)
            .await
            .with_context(|| {
                format!("cannot bind whip.udp_listen = {}", settings.whip.udp_listen)
            })?;
        settings.whip.udp_listen = whip_socket.local_addr()?;
        let shutdown = CancellationToken::new();
        let live_views = LiveRegistry::default();
        let webrtc = crate::live::whip::WhipIngest::spawn_socket(
            whip_socket,
            &settings.whip,
            &settings.whep,
            Duration::from_secs_f64(settings.live.segment_duration_s),
            &pipelines,
            shutdown.child_token(),
        )?;
        let live_config = LiveConfig {
            segments: settings.live.segment_limits(),
            window_segments: settings.live.window_segments,
            spool_dir: settings.media.spool_dir.clone(),
            frame_queue: settings.live.frame_queue,
            ll: settings.live.ll(),
            whep: settings.whep.enabled.then(|| webrtc.server.clone()),
        };
        // This node among others on the database (src/node.rs): named by its spool.
        let node = crate::node::Node::load_or_create(
            &settings.media.spool_dir,
            settings.live.internal_url(listener.local_addr()?),
        )?;
        let node_id = node.id;
        // Sessions die with the process: streams this node's crashed process left `active` are
        // idle now (other nodes' are theirs).
        match pool.acquire().await {
            Ok(mut conn) => match crate::live::store::reset_active(&mut conn, node.id).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    streams = n,
                    "live streams left active by a previous process set to idle"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot reset stale live stream statuses"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot reset stale live stream statuses"),
        }
        let (recorder, recorder_task) = crate::recordings::recorder::start(
            crate::recordings::recorder::RecorderConfig {
                spool_dir: settings.media.spool_dir.join("recordings"),
                max_spool_bytes: settings.recordings.max_spool_bytes,
                min_free_bytes: settings.recordings.min_free_bytes,
                upload_concurrency: settings.recordings.upload_concurrency,
                finalize_concurrency: settings.recordings.finalize_concurrency,
                mp4_retry: std::time::Duration::from_secs(settings.recordings.mp4_retry_s),
                segment_max: settings.live.segment_limits().max,
                node: node.id,
            },
            pool.clone(),
            redis.clone(),
            storage.clone(),
            pipelines.clone(),
            shutdown.child_token(),
        );
        // Periodic jobs run on one node of the cluster per interval (src/jobs.rs).
        let lease = crate::jobs::Lease::new(pool.clone());
        let retention = crate::recordings::retention::spawn(
            pool.clone(),
            redis.clone(),
            storage.clone(),
            settings.recordings.retention_days,
            Duration::from_secs(settings.recordings.retention_interval_s),
            lease.clone(),
            shutdown.child_token(),
        );
        let gateways = Arc::new(
            crate::payments::gateway::Gateways::new(
                &settings.payments,
                &settings.http.default_public_url(),
            )
            .context("payments: provider API credentials")?,
        );
        let (live, publish_requests, supervisor) = supervisor::start(
            live_config,
            PgLiveBackend::new(pool.clone(), redis.clone(), playback.clone(), node.id),
            live_views.clone(),
            recorder.clone(),
            shutdown.child_token(),
        )?;
        // Actions for sessions other nodes hold go to them, and theirs come here.
        let live = live.clustered(redis.clone(), node.id);
        let live_orders = crate::live::cluster::spawn_listener(
            redis.clone(),
            node.id,
            live.clone(),
            shutdown.child_token(),
        );
        let live_figures = crate::live::cluster::spawn_session_publisher(
            redis.clone(),
            live.clone(),
            shutdown.child_token(),
        );
        let whip = crate::live::whip::WhipIngest::new(
            webrtc,
            &settings.whip,
            &settings.whep,
            publish_requests.clone(),
        );
        let mail_sender = crate::email::spawn_sender(
            settings.email.clone(),
            pool.clone(),
            &mailer,
            shutdown.child_token(),
        )?;
        let jitsi = crate::meetings::Jitsi::new(&settings.jitsi).context("jitsi settings")?;
        let chat_shutdown = shutdown.child_token();
        let chat = crate::chat::hub::Hub::start(
            crate::chat::hub::KeepAlive {
                redis: redis.clone(),
                keys: settings.chat.keys(),
                db: pool.clone(),
                every: Duration::from_secs(settings.chat.ping_interval_s.max(1)),
            },
            chat_shutdown.clone(),
        );
        let tally = crate::interaction::tally::Tally::start(
            pool.clone(),
            redis.clone(),
            settings.chat.keys(),
            chat_shutdown.clone(),
        );
        let chat_persister = crate::chat::persist::spawn(
            pool.clone(),
            redis.clone(),
            settings.chat.keys(),
            settings.chat.persist_batch,
            shutdown.child_token(),
        );
        let notifier = crate::notifications::Notifier::new(
            pool.clone(),
            redis.clone(),
            settings.chat.keys(),
            mailer.clone(),
        );
        let paid_notifier = notifier.clone();
        let reconcile = crate::payments::reconcile::spawn(
            pool.clone(),
            settings.payments.clone(),
            gateways.clone(),
            Arc::new(move |order: uuid::Uuid| paid_notifier.payment_confirmed(&order.to_string())),
            lease.clone(),
            shutdown.child_token(),
        );
        let notifications = crate::notifications::spawn(
            notifier.clone(),
            settings.notifications.clone(),
            lease.clone(),
            shutdown.child_token(),
        );
        let attachment_cleanup = crate::chat::attachments::spawn_cleanup(
            pool.clone(),
            storage.clone(),
            Duration::from_secs(60),
            lease.clone(),
            shutdown.child_token(),
        );
        let metric_history = crate::metric_history::MetricHistory::new(
            Duration::from_secs(settings.log.metric_history_interval_s),
            settings.log.metric_history_samples,
        );
        let metric_sampler =
            crate::metric_history::spawn(metric_history.clone(), shutdown.child_token());
        let node_task = crate::node::spawn(
            node,
            crate::node::Timing {
                heartbeat: Duration::from_secs(settings.live.node_heartbeat_s),
                lost_after: Duration::from_secs(settings.live.node_lost_after_s),
            },
            pool.clone(),
            redis.clone(),
            lease.clone(),
            // Dropped when the task stops at shutdown, so the recorder still ends with the
            // supervisor's handle.
            recorder,
            shutdown.child_token(),
        );
        // Every node sends webhooks; deliveries are claimed row by row (src/webhooks/dispatch.rs).
        let webhook_sender = crate::webhooks::dispatch::spawn(
            settings.webhooks.clone(),
            pool.clone(),
            lease,
            shutdown.child_token(),
        );
        let peers = crate::live::peers::Peers::new(
            pool.clone(),
            node_id,
            Duration::from_secs(settings.live.node_lost_after_s),
        )
        .context("the HTTP client of live HLS forwarding")?;
        let state = AppState::new(Inner {
            settings,
            db: pool,
            redis,
            storage,
            tokens,
            sessions,
            mailer,
            limiter,
            oidc,
            live,
            live_views,
            peers,
            whip,
            playback,
            jitsi,
            chat,
            tally,
            notifier,
            gateways,
            chat_shutdown,
            pipelines,
            missing_elements,
            metric_history,
        });
        // Before `build` returns, so the link in the log is the one that works.
        offer_setup(&state, listener.local_addr()?).await;
        Ok(Application {
            listener,
            rtmp_listener,
            state,
            shutdown,
            supervisor,
            recorder_task,
            publish_requests,
            mail_sender,
            chat_persister,
            workers: vec![
                retention,
                reconcile,
                notifications,
                attachment_cleanup,
                metric_sampler,
                webhook_sender,
                node_task,
                live_orders,
                live_figures,
            ],
        })
    }

    /// The bound RTMP address (tests bind port 0).
    pub fn rtmp_addr(&self) -> SocketAddr {
        self.rtmp_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancel this to stop the server gracefully (tests; signals do it in `serve`).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serve until the shutdown token is cancelled, then give in-flight requests
    /// `http.shutdown_grace_s` to finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            rtmp_listener,
            state,
            shutdown,
            supervisor,
            recorder_task,
            publish_requests,
            mail_sender,
            chat_persister,
            workers,
        } = self;
        let grace = Duration::from_secs(state.settings.http.shutdown_grace_s);
        let addr = listener.local_addr()?;
        let rtmp_config = RtmpConfig {
            max_message_bytes: state.settings.rtmp.max_message_bytes,
            idle_timeout: Duration::from_secs(state.settings.rtmp.idle_timeout_s),
            max_connections: state.settings.rtmp.max_connections,
            frame_queue: state.settings.live.frame_queue,
            ..RtmpConfig::default()
        };
        let rtmp = tokio::spawn(wemaster_media::rtmp::serve(
            rtmp_listener,
            rtmp_config,
            publish_requests,
            shutdown.child_token(),
        ));
        let pool = state.db.clone();
        let limits = http::server::Limits::from_settings(&state.settings.http);
        let app = http::router(state);
        tracing::info!(%addr, "HTTP listening");
        http::server::serve(listener, app, limits, shutdown.clone(), grace).await;
        // Publishers were told to stop by the same token; live sessions finish their last
        // segment and end their playlists (bounded inside the supervisor).
        let _ = tokio::time::timeout(grace + Duration::from_secs(10), async {
            let _ = rtmp.await;
            let _ = supervisor.await;
            let _ = mail_sender.await;
            let _ = chat_persister.await;
            for worker in workers {
                let _ = worker.await;
            }
        })
        .await;
        // With the supervisor gone, the recorder finalizes the recordings of the sessions that
        // just ended (uploads are done as they go, so this is the playlist, MP4 and poster).
        // Whatever does not finish in time is finalized by the next start.
        if tokio::time::timeout(Duration::from_secs(30), recorder_task)
            .await
            .is_err()
        {
            tracing::warn!("recordings still finalizing at exit; the next start completes them");
        }
        pool.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

fn telemetry_init() {
    // The recorder must exist before the first metric is recorded.
    let _ = crate::telemetry::metrics_handle();
}

/// Initialise GStreamer and list the template elements it cannot create. A missing element
/// does not stop the platform routes from serving: `/readyz` reports it instead.
fn check_gstreamer(pipelines: &TemplateSet) -> Vec<String> {
    if let Err(e) = wemaster_media::init() {
        tracing::error!(error = %e, "GStreamer failed to initialise");
        return vec!["gstreamer".into()];
    }
    let elements: std::collections::BTreeSet<String> =
        pipelines.iter().flat_map(|t| t.elements()).collect();
    let missing = wemaster_media::doctor::missing_elements(elements.iter().map(String::as_str));
    for m in &missing {
        tracing::error!(element = %m.element, package = m.package.unwrap_or("unknown"), "GStreamer element missing");
    }
    missing.into_iter().map(|m| m.element).collect()
}

/// Resolve when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

/// The pipeline templates: the built-in ones, each replaced by the file of its name in
/// `media.pipelines_dir` when one is configured.
pub fn pipeline_templates(media: &crate::config::MediaSettings) -> anyhow::Result<TemplateSet> {
    let mut set = TemplateSet::builtin();
    if let Some(dir) = media.pipelines_dir() {
        let read = set
            .overlay_dir(dir)
            .with_context(|| format!("media.pipelines_dir = {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), templates = ?read, "pipeline templates from the configured directory replace the built-in ones");
    }
    Ok(set)
}

/// While no admin account exists: a new setup token, and the link to the web app's `/setup`
/// page with it, in the log (crate::identity::setup). The token rides in the fragment, which
/// browsers never send: it stays out of access logs and `Referer`.
async fn offer_setup(state: &AppState, addr: SocketAddr) {
    use crate::identity::setup;
    match setup::admin_exists(&state.db).await {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether an admin exists; no setup link");
            return;
        }
    }
    let key = setup::token_key(&state.settings.auth.limits);
    match setup::issue(&state.redis, &key).await {
        Ok(token) => {
            let mut base = state.settings.http.default_public_url();
            if state.settings.http.public_url.is_none() {
                // The port actually bound (http.listen may say 0).
                let _ = base.set_port(Some(addr.port()));
            }
            let link = format!("{}setup#token={token}", base);
            tracing::warn!(
                setup_link = %link,
                valid_h = setup::TOKEN_TTL.as_secs() / 3600,
                "no admin account yet: open the setup link to create the first admin (or run `wemaster admin create-user --role admin`)"
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot issue a setup token"),
    }
}
