//! The HTTP server: accepts connections and serves the router on them (HTTP/1.1 with upgrades
//! for WebSockets, and h2c), with the limits a public listener needs and `axum::serve` lacks.
//!
//! - **Connection cap** (`http.max_connections`): past it a connection is answered at once with
//!   `503 too_many_connections` (problem+json, `Retry-After`) and closed. The permit lives in
//!   the socket wrapper ([`Watched`]), so an upgraded WebSocket holds it until it closes.
//! - **Header-read timeout** (`http.header_read_timeout_s`): from the first byte of a request
//!   head (or from the accept, for a new connection) to its last. Slowloris is cut here.
//! - **Idle keep-alive timeout** (`http.keep_alive_timeout_s`): a connection with nothing in
//!   flight and nothing received since its last response is closed.
//! - **Body-read timeout** (`http.body_read_timeout_s`): the longest wait for the next chunk of a
//!   request body ([`tower_http::timeout::TimeoutBody`]); a slow but moving upload is fine.
//!
//! Requests in flight have no time limit: a long-poll or a slow handler is legitimate, and a
//! WebSocket leaves these timers once upgraded (the chat has its own ping and idle timeout).
//! The timers are one watchdog per connection reading [`Activity`], which the socket wrapper
//! (bytes received) and the service wrapper (requests begun, response bodies finished) keep.
//! Hyper's own header-read timer is armed too, at the longer of the two, as a backstop.
//!
//! Shutdown: the listener stops accepting; a connection with nothing in flight is closed at
//! once (an idle keep-alive or a half-sent head must not hold SIGTERM up); the others finish
//! their requests (HTTP/1.1 then closes, HTTP/2 sends GOAWAY) within `http.shutdown_grace_s`.

use std::{
    convert::Infallible,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{body::Body, extract::Request, response::Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::{Layer, Service, ServiceExt};

use crate::config::HttpSettings;

/// The connection limits, from `[http]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl Limits {
    pub fn from_settings(s: &HttpSettings) -> Limits {
        Limits {
            max_connections: s.max_connections,
            header_read_timeout: Duration::from_secs_f64(s.header_read_timeout_s),
            keep_alive_timeout: Duration::from_secs_f64(s.keep_alive_timeout_s),
            body_read_timeout: Duration::from_secs_f64(s.body_read_timeout_s),
        }
    }
}

/// Serve `app` on `listener` until `shutdown`, then give connections with requests in flight
/// `grace` to finish. Returns when every connection is closed or the grace period is over.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: Limits,
    shutdown: CancellationToken,
    grace: Duration,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("http_connections_refused_total").increment(1);
            connections.spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The peer's address for the `ConnectInfo` extractor, as axum's make-service adds it.
        let router = axum::Extension(axum::extract::ConnectInfo(peer)).layer(app.clone());
        connections.spawn(serve_connection(
            stream,
            permit,
            router,
            limits,
            shutdown.clone(),
        ));
    }
    drop(listener);
    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: finishing in-flight requests"
    );
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: dropping the remaining connections");
    }
}

/// Errors of `accept` that concern one connection are skipped; others (out of file
/// descriptors) are logged and wait a moment, as the next accept would fail the same way.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting an HTTP connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Over the connection cap: a 503 problem and the connection closed. The request is not read
/// (that is the work being refused), only drained briefly after the answer so that closing
/// with unread bytes does not reset the connection before the client reads the answer.
async fn refuse(mut stream: TcpStream) {
    let body = serde_json::json!({
        "type": "urn:wemaster:problem:too_many_connections",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "the server has as many connections open as it allows (http.max_connections); retry shortly",
        "code": "too_many_connections",
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}

async fn serve_connection<S>(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    router: S,
    limits: Limits,
    shutdown: CancellationToken,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let activity = Arc::new(Mutex::new(Activity::new()));
    let io = TokioIo::new(Watched::new(stream, permit, activity.clone()));
    let service = {
        let activity = activity.clone();
        tower::service_fn(move |req: hyper::Request<Incoming>| {
            let begun = RequestBegun::new(&activity);
            let req = req.map(|b| {
                Body::new(tower_http::timeout::TimeoutBody::new(
                    limits.body_read_timeout,
                    b,
                ))
            });
            let response = router.clone().oneshot(req);
            async move {
                let response = response.await?;
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(Tracked {
                        body,
                        _begun: begun,
                    })
                }))
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout.max(limits.keep_alive_timeout));
    // The CONNECT protocol carries WebSockets over HTTP/2 (as axum::serve enables it).
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    loop {
        let deadline = lock(&activity).deadline(&limits);
        // With a request in flight there is no deadline; look again after the shorter timeout.
        let wake = deadline.map_or_else(
            || Instant::now() + limits.header_read_timeout.min(limits.keep_alive_timeout),
            |(at, _)| at,
        );
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                if lock(&activity).in_flight == 0 {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep_until(wake) => {
                if let Some((at, reason)) = lock(&activity).deadline(&limits)
                    && at <= Instant::now()
                {
                    metrics::counter!("http_connections_timed_out_total", "reason" => reason)
                        .increment(1);
                    tracing::debug!(reason, "HTTP connection timed out");
                    return;
                }
            }
        }
    }
}

/// What a connection is doing, as far as its timers care.
#[derive(Debug)]
struct Activity {
    /// Requests whose response body has not finished yet.
    in_flight: usize,
    /// When the connection last had nothing in flight (the accept, or the end of a response).
    idle_since: Instant,
    /// When bytes of the next request head started arriving, with nothing in flight. A new
    /// connection is waiting for its first head from the start.
    head_started: Option<Instant>,
}

impl Activity {
    fn new() -> Activity {
        let now = Instant::now();
        Activity {
            in_flight: 0,
            idle_since: now,
            head_started: Some(now),
        }
    }

    /// When the connection must close if nothing changes, and why; `None` while in flight.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        if self.in_flight > 0 {
            return None;
        }
        Some(match self.head_started {
            Some(t) => (t + limits.header_read_timeout, "header_read"),
            None => (self.idle_since + limits.keep_alive_timeout, "idle"),
        })
    }
}

fn lock(a: &Mutex<Activity>) -> std::sync::MutexGuard<'_, Activity> {
    // The state is a few counters: a panic elsewhere cannot leave it inconsistent.
    a.lock().unwrap_or_else(|e| e.into_inner())
}

/// One request in flight on its connection, from its head until its response body is done
/// (or dropped): the guard is carried by the response body.
struct RequestBegun(Arc<Mutex<Activity>>);

impl RequestBegun {
    fn new(activity: &Arc<Mutex<Activity>>) -> RequestBegun {
        let mut a = lock(activity);
        a.in_flight += 1;
        a.head_started = None;
        drop(a);
        RequestBegun(activity.clone())
    }
}

impl Drop for RequestBegun {
    fn drop(&mut self) {
        let mut a = lock(&self.0);
        a.in_flight = a.in_flight.saturating_sub(1);
        if a.in_flight == 0 {
            a.idle_since = Instant::now();
            a.head_started = None;
        }
    }
}

/// A response body carrying its request's [`RequestBegun`]: hyper drops it once the last
/// frame is written (or the connection goes), which ends the request for the timers.
struct Tracked {
    body: Body,
    _begun: RequestBegun,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket of one connection: notes when bytes of a new request head arrive, and holds the
/// connection's permit (and the open-connections gauge) until the socket is dropped — after
/// an upgrade, that is when the WebSocket closes.
struct Watched {
    stream: TcpStream,
    activity: Arc<Mutex<Activity>>,
    _permit: OwnedSemaphorePermit,
}

impl Watched {
    fn new(
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        activity: Arc<Mutex<Activity>>,
    ) -> Self {
        metrics::gauge!("http_connections_open").increment(1.0);
        Watched {
            stream,
            activity,
            _permit: permit,
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let mut a = lock(&self.activity);
            if a.in_flight == 0 && a.head_started.is_none() {
                a.head_started = Some(Instant::now());
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 10,
            header_read_timeout: Duration::from_secs(5),
            keep_alive_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_connection_waits_for_a_head_then_idles_then_waits_for_the_next_head() {
        let activity = Arc::new(Mutex::new(Activity::new()));
        let start = lock(&activity).idle_since;
        // A new connection: its first head is due within the header timeout.
        assert_eq!(
            lock(&activity).deadline(&limits()),
            Some((start + Duration::from_secs(5), "header_read"))
        );
        // In flight: no deadline, however long it takes.
        let begun = RequestBegun::new(&activity);
        assert_eq!(lock(&activity).deadline(&limits()), None);
        let second = RequestBegun::new(&activity);
        drop(begun);
        assert_eq!(lock(&activity).deadline(&limits()), None);
        // Done: idle, closed after the keep-alive timeout unless a new head starts.
        drop(second);
        let idle = lock(&activity).idle_since;
        assert!(idle >= start);
        assert_eq!(
            lock(&activity).deadline(&limits()),
            Some((idle + Duration::from_secs(30), "idle"))
        );
        let head = idle + Duration::from_secs(7);
        lock(&activity).head_started = Some(head);
        assert_eq!(
            lock(&activity).deadline(&limits()),
            Some((head + Duration::from_secs(5), "header_read"))
        );
    }
}
