//! The RTMP listener: an accept loop and one task per connection that moves bytes between the
//! socket and the sans-IO [`Connection`], asks the authority about publishes and forwards frames.
//!
//! A connection task ends on: peer EOF/reset, `deleteStream`, a protocol error, a deadline of the
//! core (handshake, publish, silence), a refusal, a kick, a closed frame receiver (or an ended
//! output), or shutdown. Whatever the cause, a granted publish ends exactly once: its inline
//! output is finished, or it gets one [`MediaFrame::End`] (best effort within
//! [`END_SEND_TIMEOUT`]; the frame sender is dropped right after, closing the channel).
//!
//! Per read of a publishing connection the task does: one `recv` into the core's input buffer
//! (no copy), parse, and for each frame a call of the inline [`LiveOutput`] (no channel send,
//! no other task woken). Shutdown and kick are watched by a small task per publish that raises
//! a flag ([`StopSignal`]), and the silence deadline is one timer armed for the whole publish:
//! polling either costs an atomic load, where re-creating cancellation futures and a timer at
//! every read cost more than the parsing (callgrind, docs/benchmarks.md).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BufMut;
use futures::task::AtomicWaker;
use metrics::{counter, gauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::RtmpConfig;
use super::connection::{Connection, Output};
use crate::frame::{EndReason, MediaFrame};
use crate::ingest::{PublishGrant, PublishRequest, RefuseReason};
use crate::live::LiveOutput;

/// Socket read size: one read is parsed completely before the next, bounding unparsed input.
const READ_BUFFER: usize = 64 * 1024;
/// How long the final `End` may wait for room in a full frame channel.
pub const END_SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// After a refusal: how long to wait for the publisher to close before dropping the socket
/// (closing with unread input would send a reset that can destroy our `onStatus` in flight).
const REFUSE_LINGER: Duration = Duration::from_secs(1);

/// Serve RTMP publishers on `listener` until `shutdown` is cancelled, then wait for every
/// connection to end (each granted publish receives its [`MediaFrame::End`]).
///
/// Each `publish` becomes a [`PublishRequest`] on `requests`; if that channel is closed or the
/// answer does not come within [`RtmpConfig::idle_timeout`], the publish is refused as
/// [`RefuseReason::Busy`].
pub async fn serve(
    listener: TcpListener,
    config: RtmpConfig,
    requests: mpsc::Sender<PublishRequest>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let config = Arc::new(config);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "RTMP listening");
    }
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "RTMP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        counter!("rtmp_connections_total").increment(1);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            counter!("rtmp_refused_total", "reason" => RefuseReason::Busy.as_str()).increment(1);
            tracing::warn!(%peer, reason = "max_connections reached", "RTMP connection refused");
            continue;
        };
        let task = run_connection(
            stream,
            peer,
            config.clone(),
            requests.clone(),
            shutdown.child_token(),
        );
        tracker.spawn(
            async move {
                task.await;
                drop(permit);
            }
            .instrument(tracing::info_span!("rtmp", %peer)),
        );
    }
    tracker.close();
    tracker.wait().await;
    tracing::info!("RTMP listener stopped");
}

/// How a connection ended.
enum Closed {
    /// `detail` is the human-readable cause (for logs), `reason` what the publish sees.
    End {
        reason: EndReason,
        detail: String,
    },
    Refused(RefuseReason),
}

impl Closed {
    fn end(reason: EndReason) -> Self {
        let detail = match &reason {
            EndReason::ProtocolError(msg) => msg.clone(),
            other => other.as_str().to_string(),
        };
        Closed::End { reason, detail }
    }
}

struct ActiveGuard;

impl ActiveGuard {
    fn new() -> Self {
        gauge!("rtmp_connections_active").increment(1.0);
        ActiveGuard
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        gauge!("rtmp_connections_active").decrement(1.0);
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

async fn run_connection(
    mut io: TcpStream,
    peer: SocketAddr,
    config: Arc<RtmpConfig>,
    requests: mpsc::Sender<PublishRequest>,
    shutdown: CancellationToken,
) {
    let _active = ActiveGuard::new();
    let _ = io.set_nodelay(true);
    let mut conn = Connection::new(&config, now());
    let mut publish: Option<Publish> = None;
    let closed = drive(
        &mut io,
        peer,
        &config,
        &mut conn,
        &requests,
        &shutdown,
        &mut publish,
    )
    .await;

    let published = publish.is_some();
    match &closed {
        Closed::Refused(reason) => {
            counter!("rtmp_refused_total", "reason" => reason.as_str()).increment(1);
            tracing::warn!(%peer, reason = reason.as_str(), "RTMP publish refused");
            linger_close(io).await;
        }
        Closed::End { reason, detail } => {
            match reason {
                EndReason::ProtocolError(_) => {
                    counter!("rtmp_protocol_errors_total").increment(1);
                    tracing::warn!(%peer, reason = %detail, published, "RTMP connection closed: protocol error");
                }
                EndReason::Timeout => {
                    tracing::warn!(%peer, reason = %detail, published, "RTMP connection closed: timeout");
                }
                _ if published => {
                    tracing::info!(%peer, reason = %detail, bytes = conn.bytes_received(), "RTMP publish ended");
                }
                _ => {
                    tracing::debug!(%peer, reason = %detail, "RTMP connection closed before publishing");
                }
            }
            drop(io);
        }
    }
    if let Some(Publish { grant, output, .. }) = publish {
        let reason = match closed {
            Closed::End { reason, .. } => reason,
            Closed::Refused(_) => EndReason::PublisherClosed,
        };
        if let Some(mut output) = output {
            // Closes the last segment (a no-op if the output already ended).
            output.finish(reason);
            return;
        }
        let end = MediaFrame::End(reason);
        match tokio::time::timeout(END_SEND_TIMEOUT, grant.frames.send(end)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => tracing::debug!("frame receiver gone before End"),
            Err(_) => tracing::warn!("frame channel full: End not delivered, channel closed"),
        }
    }
}

/// A granted publish, as the connection task holds it.
struct Publish {
    grant: PublishGrant,
    /// The grant's output, run inline; `None`: frames go to `grant.frames`.
    output: Option<LiveOutput>,
    /// Shutdown or kick, raised by the watcher task.
    stop: StopSignal,
}

/// The connection loop: drain the core's outputs, then wait for input, a deadline, a kick or
/// shutdown.
async fn drive(
    io: &mut TcpStream,
    peer: SocketAddr,
    config: &RtmpConfig,
    conn: &mut Connection,
    requests: &mpsc::Sender<PublishRequest>,
    shutdown: &CancellationToken,
    publish: &mut Option<Publish>,
) -> Closed {
    // Registered once: a read only adds to it.
    let bytes_received = counter!("rtmp_bytes_received_total");
    // One timer for the core's deadline, re-armed only when it fires or the deadline moves
    // earlier: while media flows the silence deadline moves later at every message, and the
    // core re-checks the real deadline when the timer fires.
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    loop {
        loop {
            let output = match conn.poll() {
                Ok(Some(output)) => output,
                Ok(None) => break,
                Err(error) => {
                    return Closed::End {
                        reason: error.end_reason(),
                        detail: error.to_string(),
                    };
                }
            };
            match output {
                Output::Send(bytes) => {
                    if let Err(closed) = write(io, &bytes, config, shutdown).await {
                        return closed;
                    }
                }
                Output::PublishRequested { app, stream_key } => {
                    match decide(app, stream_key, peer, conn, requests, shutdown).await {
                        Decision::Granted(grant) => {
                            let output = grant.output.take();
                            let stop = StopSignal::watch(shutdown.clone(), grant.kick.clone());
                            *publish = Some(Publish {
                                grant,
                                output,
                                stop,
                            });
                            if let Err(error) = conn.accept_publish(now()) {
                                // The grant still gets its End.
                                return Closed::end(error.end_reason());
                            }
                            tracing::info!(%peer, "RTMP publish started");
                        }
                        Decision::Refused(reason) => {
                            if conn.refuse_publish(reason).is_ok() {
                                while let Ok(Some(Output::Send(bytes))) = conn.poll() {
                                    if write(io, &bytes, config, shutdown).await.is_err() {
                                        break;
                                    }
                                }
                            }
                            return Closed::Refused(reason);
                        }
                        Decision::Aborted(reason) => return Closed::end(reason),
                    }
                }
                Output::Frame(frame) => {
                    let Some(publish) = publish.as_mut() else {
                        continue;
                    };
                    if let Some(reason) = publish.stop.get() {
                        return Closed::end(reason);
                    }
                    if let Some(output) = publish.output.as_mut() {
                        if let Err(stopped) = output.push(frame) {
                            return output_stopped(stopped);
                        }
                        continue;
                    }
                    tokio::select! {
                        biased;
                        reason = publish.stop.wait() => return Closed::end(reason),
                        sent = publish.grant.frames.send(frame) => {
                            if sent.is_err() {
                                return Closed::End {
                                    reason: EndReason::Kicked,
                                    detail: "frame receiver dropped".to_string(),
                                };
                            }
                        }
                    }
                }
                Output::Unpublished => return Closed::end(EndReason::PublisherClosed),
            }
        }

        if let Some(deadline) = conn.poll_timeout().map(Instant::from_std)
            && armed.is_none_or(|at| deadline < at)
        {
            sleep.as_mut().reset(deadline);
            armed = Some(deadline);
        }
        let stop = publish.as_ref().map(|p| &p.stop);
        let mut buf = conn.read_buffer(READ_BUFFER).limit(READ_BUFFER);
        tokio::select! {
            biased;
            reason = stopped(shutdown, stop) => return Closed::end(reason),
            read = io.read_buf(&mut buf) => match read {
                Ok(0) => {
                    return Closed::End {
                        reason: EndReason::PublisherClosed,
                        detail: "peer closed the connection".to_string(),
                    };
                }
                Ok(n) => {
                    bytes_received.increment(n as u64);
                    conn.commit_read(n, now());
                }
                Err(error) => {
                    return Closed::End {
                        reason: EndReason::PublisherClosed,
                        detail: format!("read failed: {error}"),
                    };
                }
            },
            () = &mut sleep, if armed.is_some() => {
                armed = None;
                if let Err(error) = conn.handle_timeout(now()) {
                    return Closed::End {
                        reason: error.end_reason(),
                        detail: error.to_string(),
                    };
                }
            }
        }
    }
}

/// The inline output ended by itself (the packager refused the stream, the spool failed).
fn output_stopped(stopped: crate::live::Stopped) -> Closed {
    match (stopped.reason, stopped.error) {
        (reason @ EndReason::ProtocolError(_), _) => Closed::end(reason),
        (_, Some(error)) => Closed::End {
            reason: EndReason::Kicked,
            detail: format!("live output failed: {error}"),
        },
        (reason, None) => Closed::end(reason),
    }
}

/// Before a grant only shutdown stops the connection; after it the publish's [`StopSignal`].
async fn stopped(shutdown: &CancellationToken, stop: Option<&StopSignal>) -> EndReason {
    match stop {
        Some(stop) => stop.wait().await,
        None => {
            shutdown.cancelled().await;
            EndReason::Shutdown
        }
    }
}

/// Shutdown or kick of one publish as a flag: a watcher task awaits the two tokens once and
/// raises it; the connection loop checks it with an atomic load (and registers its waker)
/// instead of polling two cancellation futures (each a mutex round trip) at every read.
struct StopSignal {
    inner: Arc<StopInner>,
    watcher: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct StopInner {
    /// 0: running, 1: shutdown, 2: kicked.
    state: AtomicU8,
    waker: AtomicWaker,
}

impl StopSignal {
    fn watch(shutdown: CancellationToken, kick: CancellationToken) -> StopSignal {
        let inner = Arc::new(StopInner::default());
        let raise = inner.clone();
        let watcher = tokio::spawn(async move {
            let state = tokio::select! {
                biased;
                () = shutdown.cancelled() => 1,
                () = kick.cancelled() => 2,
            };
            raise.state.store(state, Ordering::Release);
            raise.waker.wake();
        });
        StopSignal { inner, watcher }
    }

    fn get(&self) -> Option<EndReason> {
        match self.inner.state.load(Ordering::Acquire) {
            0 => None,
            1 => Some(EndReason::Shutdown),
            _ => Some(EndReason::Kicked),
        }
    }

    fn wait(&self) -> StopWait<'_> {
        StopWait(self)
    }
}

impl Drop for StopSignal {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

struct StopWait<'a>(&'a StopSignal);

impl Future for StopWait<'_> {
    type Output = EndReason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<EndReason> {
        if let Some(reason) = self.0.get() {
            return Poll::Ready(reason);
        }
        self.0.inner.waker.register(cx.waker());
        match self.0.get() {
            Some(reason) => Poll::Ready(reason),
            None => Poll::Pending,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Write to the peer; a peer that does not read for `idle_timeout` is dropped.
async fn write(
    io: &mut TcpStream,
    bytes: &[u8],
    config: &RtmpConfig,
    shutdown: &CancellationToken,
) -> Result<(), Closed> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Err(Closed::end(EndReason::Shutdown)),
        written = tokio::time::timeout(config.idle_timeout, io.write_all(bytes)) => match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Closed::End {
                reason: EndReason::PublisherClosed,
                detail: format!("write failed: {error}"),
            }),
            Err(_) => Err(Closed::End {
                reason: EndReason::Timeout,
                detail: "peer does not read".to_string(),
            }),
        },
    }
}

enum Decision {
    Granted(PublishGrant),
    Refused(RefuseReason),
    Aborted(EndReason),
}

/// Ask the authority, within the core's decision deadline.
async fn decide(
    app: String,
    stream_key: String,
    peer: SocketAddr,
    conn: &Connection,
    requests: &mpsc::Sender<PublishRequest>,
    shutdown: &CancellationToken,
) -> Decision {
    let deadline = conn.poll_timeout().map(Instant::from_std);
    let (reply, mut answer) = oneshot::channel();
    let request = PublishRequest {
        app,
        stream_key,
        peer,
        protocol: "rtmp",
        reply,
    };
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => return Decision::Aborted(EndReason::Shutdown),
        sent = requests.send(request) => {
            if sent.is_err() {
                tracing::warn!("no publish authority: refusing");
                return Decision::Refused(RefuseReason::Busy);
            }
        }
        _ = sleep_until(deadline) => {
            tracing::warn!("publish authority overloaded: refusing");
            return Decision::Refused(RefuseReason::Busy);
        }
    }
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {}
        decided = &mut answer => {
            return match decided {
                Ok(Ok(granted)) => Decision::Granted(granted),
                Ok(Err(reason)) => Decision::Refused(reason),
                Err(_) => Decision::Refused(RefuseReason::Busy),
            };
        }
        _ = sleep_until(deadline) => {}
    }
    // Shut down or timed out. A grant that raced in still gets its End.
    answer.close();
    let aborted = if shutdown.is_cancelled() {
        EndReason::Shutdown
    } else {
        tracing::warn!("publish authority did not answer in time: refusing");
        EndReason::Timeout
    };
    if let Ok(Ok(granted)) = answer.try_recv() {
        let _ = granted.frames.try_send(MediaFrame::End(aborted.clone()));
    }
    match aborted {
        EndReason::Shutdown => Decision::Aborted(aborted),
        _ => Decision::Refused(RefuseReason::Busy),
    }
}

/// Close after a refusal without resetting: stop writing, then drain what the peer still sends
/// until it closes (or briefly, at most).
async fn linger_close(mut io: TcpStream) {
    let _ = io.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut total = 0usize;
        while let Ok(n) = io.read(&mut sink).await {
            total += n;
            if n == 0 || total > READ_BUFFER {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(REFUSE_LINGER, drain).await;
}
