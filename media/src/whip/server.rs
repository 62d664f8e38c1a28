//! The WHIP socket task: one UDP socket, every session's `Rtc`, one loop.
//!
//! ```text
//!  UDP datagram --(Rtc::accepts)--> session.rtc.handle_input --> poll_output until Timeout
//!       Transmit -> socket.try_send_to       Event::MediaData -> H264Framer / OpusToAac
//!  commands (start, end) and the earliest session deadline wake the loop too
//! ```
//!
//! A session ends when the client DELETEs it, its ICE connection drops (a client that
//! vanished), the supervisor kicks it, or the server shuts down; exactly one
//! [`MediaFrame::End`] follows its last frame.

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use str0m::{
    Event, IceConnectionState, Input, Output,
    format::Codec,
    media::{KeyframeRequestKind, MediaKind, Mid},
    net::{Protocol, Receive},
};
use tokio::{net::UdpSocket, sync::mpsc, sync::oneshot};
use tokio_util::sync::CancellationToken;

use super::{Negotiated, WhipError, audio::OpusToAac, h264::H264Framer};
use crate::rtmp::{AudioCodec, EndReason, MediaFrame, PublishGrant, StreamInfo, VideoCodec};

/// While no keyframe arrived, ask again this often.
const KEYFRAME_RETRY: Duration = Duration::from_millis(500);
/// The loop wakes at least this often (kicks, keyframe retries).
const MAX_SLEEP: Duration = Duration::from_millis(200);

enum Cmd {
    Start {
        id: String,
        negotiated: Negotiated,
        grant: PublishGrant,
        reply: oneshot::Sender<Result<(), WhipError>>,
    },
    End {
        id: String,
        reply: oneshot::Sender<bool>,
    },
}

/// Handle on the WHIP socket task.
#[derive(Clone)]
pub struct WhipServer {
    tx: mpsc::Sender<Cmd>,
    local: SocketAddr,
}

impl WhipServer {
    /// Start the socket task on `socket`; it stops (ending every session) on `shutdown`.
    /// `advertised` is the candidate address clients send to (the ICE agent matches datagrams
    /// against it: with a socket bound to 0.0.0.0 the real destination is not known).
    pub fn spawn(
        socket: UdpSocket,
        advertised: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<(WhipServer, tokio::task::JoinHandle<()>)> {
        let local = socket.local_addr()?;
        let (tx, rx) = mpsc::channel(256);
        let handle = tokio::spawn(run(socket, advertised, rx, shutdown));
        Ok((WhipServer { tx, local }, handle))
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Attach a negotiated session; its frames go to `grant.frames`.
    pub async fn start(
        &self,
        id: String,
        negotiated: Negotiated,
        grant: PublishGrant,
    ) -> Result<(), WhipError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Start {
                id,
                negotiated,
                grant,
                reply,
            })
            .await
            .map_err(|_| WhipError::Unavailable)?;
        rx.await.map_err(|_| WhipError::Unavailable)?
    }

    /// End a session (the client's DELETE). False when no such session runs.
    pub async fn end(&self, id: &str) -> bool {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Cmd::End {
                id: id.to_string(),
                reply,
            })
            .await
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

struct Session {
    rtc: str0m::Rtc,
    grant: PublishGrant,
    epoch: Instant,
    deadline: Instant,
    video_mid: Option<Mid>,
    framer: H264Framer,
    audio: Option<OpusToAac>,
    info: StreamInfo,
    video_clock: Clock,
    audio_clock: Clock,
    got_keyframe: bool,
    last_keyframe_request: Option<Instant>,
    want_keyframe: bool,
    dropped: u64,
}

#[derive(Default)]
struct Clock {
    base: Option<(u64, u64, u64)>,
    last: u64,
}

impl Clock {
    /// RTP time → ms on the session clock: the track's first packet is placed at its arrival
    /// time since the session started, later ones follow the RTP clock.
    fn at(&mut self, rtp: u64, freq: u64, arrival_ms: u64) -> u64 {
        let (r0, w0, f) = *self.base.get_or_insert((rtp, arrival_ms, freq.max(1)));
        let ms = w0 + rtp.saturating_sub(r0) * 1000 / f;
        self.last = self.last.max(ms);
        self.last
    }
}

impl Session {
    fn send(&mut self, frame: MediaFrame) {
        // The socket loop serves every session: never wait on one consumer.
        if self.grant.frames.try_send(frame).is_err() {
            self.dropped += 1;
            if self.dropped % 100 == 1 {
                tracing::warn!(
                    dropped = self.dropped,
                    "WHIP frame queue full: dropping frames"
                );
            }
        }
    }

    /// Drain `poll_output`; `Some(reason)` when the session is over.
    fn drive(&mut self, socket: &UdpSocket) -> Option<EndReason> {
        loop {
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => return Some(EndReason::ProtocolError(e.to_string())),
            };
            match out {
                Output::Timeout(t) => {
                    self.deadline = t;
                    break;
                }
                Output::Transmit(t) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => {
                    if let Some(r) = self.event(e) {
                        return Some(r);
                    }
                }
            }
        }
        if !self.rtc.is_alive() {
            return Some(EndReason::Timeout);
        }
        None
    }

    fn event(&mut self, e: Event) -> Option<EndReason> {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Some(EndReason::Timeout);
            }
            Event::Connected => self.want_keyframe = true,
            Event::MediaAdded(m) if m.kind == MediaKind::Video => {
                self.video_mid = Some(m.mid);
                self.want_keyframe = true;
            }
            Event::MediaData(d) => {
                let arrival = d.network_time.saturating_duration_since(self.epoch);
                let arrival_ms = arrival.as_millis() as u64;
                match d.params.spec().codec {
                    Codec::H264 => {
                        let dts =
                            self.video_clock
                                .at(d.time.numer(), d.time.denom() as u64, arrival_ms);
                        if !d.contiguous {
                            self.want_keyframe = true;
                        }
                        let before = self.framer.profile;
                        for f in self.framer.push(&d.data, dts) {
                            if f.keyframe && !f.sequence_header {
                                self.got_keyframe = true;
                            }
                            self.send(MediaFrame::Video(f));
                        }
                        if self.framer.profile != before {
                            if let Some((p, l)) = self.framer.profile {
                                self.info.video_profile = Some(p);
                                self.info.video_level = Some(l);
                                let info = self.info.clone();
                                self.send(MediaFrame::Metadata(info));
                            }
                        }
                    }
                    Codec::Opus => {
                        let pts =
                            self.audio_clock
                                .at(d.time.numer(), d.time.denom() as u64, arrival_ms);
                        if let Some(a) = &self.audio {
                            a.push(&d.data, pts);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        None
    }

    /// Ask for a keyframe when needed (start, loss, none yet), throttled.
    fn request_keyframe(&mut self, now: Instant) {
        let due = self.want_keyframe
            || (!self.got_keyframe
                && self
                    .last_keyframe_request
                    .is_none_or(|t| now.duration_since(t) >= KEYFRAME_RETRY));
        let throttled = self
            .last_keyframe_request
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(250));
        if !due || throttled || !self.rtc.is_connected() {
            return;
        }
        let Some(mid) = self.video_mid else { return };
        if let Some(mut w) = self.rtc.writer(mid) {
            let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
            self.want_keyframe = false;
            self.last_keyframe_request = Some(now);
        }
    }

    /// Send `End` after the audio transcoder drained (off the runtime: it blocks briefly).
    fn finish(mut self, reason: EndReason) {
        self.rtc.disconnect();
        let audio = self.audio.take();
        let frames = self.grant.frames.clone();
        tokio::spawn(async move {
            if let Some(a) = audio {
                let _ = tokio::task::spawn_blocking(move || a.finish()).await;
            }
            let _ = frames.send(MediaFrame::End(reason)).await;
        });
    }
}

async fn run(
    socket: UdpSocket,
    local: SocketAddr,
    mut rx: mpsc::Receiver<Cmd>,
    shutdown: CancellationToken,
) {
    let mut sessions: HashMap<String, Session> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        let next = sessions
            .values()
            .map(|s| s.deadline)
            .min()
            .unwrap_or(now + MAX_SLEEP)
            .min(now + MAX_SLEEP);
        let mut ended: Vec<(String, EndReason)> = Vec::new();
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
                let Ok(contents) = buf[..n].try_into() else { continue };
                let input = Input::Receive(Instant::now(), Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: local,
                    contents,
                });
                if let Some((id, s)) = sessions.iter_mut().find(|(_, s)| s.rtc.accepts(&input)) {
                    if let Err(e) = s.rtc.handle_input(input) {
                        tracing::debug!(error = %e, "WHIP input refused");
                    }
                    if let Some(r) = s.drive(&socket) {
                        ended.push((id.clone(), r));
                    }
                }
            }
            cmd = rx.recv() => match cmd {
                Some(Cmd::Start { id, negotiated, grant, reply }) => {
                    match start_session(negotiated, grant) {
                        Ok(mut s) => {
                            if let Some(r) = s.drive(&socket) {
                                s.finish(r);
                            } else {
                                sessions.insert(id.clone(), s);
                                metrics::gauge!("whip_sessions_active").set(sessions.len() as f64);
                            }
                            let _ = reply.send(Ok(()));
                        }
                        Err(e) => { let _ = reply.send(Err(e)); }
                    }
                }
                Some(Cmd::End { id, reply }) => {
                    let found = sessions.contains_key(&id);
                    if found { ended.push((id, EndReason::PublisherClosed)); }
                    let _ = reply.send(found);
                }
                None => break,
            },
            () = tokio::time::sleep_until(next.into()) => {}
            () = shutdown.cancelled() => break,
        }
        let now = Instant::now();
        for (id, s) in sessions.iter_mut() {
            if ended.iter().any(|(e, _)| e == id) {
                continue;
            }
            if s.grant.kick.is_cancelled() || s.grant.frames.is_closed() {
                ended.push((id.clone(), EndReason::Kicked));
                continue;
            }
            if s.deadline <= now {
                if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                    ended.push((id.clone(), EndReason::ProtocolError(e.to_string())));
                    continue;
                }
                if let Some(r) = s.drive(&socket) {
                    ended.push((id.clone(), r));
                    continue;
                }
            }
            s.request_keyframe(now);
            if let Some(r) = s.drive(&socket) {
                ended.push((id.clone(), r));
            }
        }
        for (id, reason) in ended {
            if let Some(s) = sessions.remove(&id) {
                tracing::info!(session = %id, reason = reason.as_str(), "WHIP session ended");
                s.finish(reason);
                metrics::gauge!("whip_sessions_active").set(sessions.len() as f64);
            }
        }
    }
    for (_, s) in sessions.drain() {
        s.finish(EndReason::Shutdown);
    }
}

fn start_session(n: Negotiated, grant: PublishGrant) -> Result<Session, WhipError> {
    let audio = if n.has_audio {
        match OpusToAac::start(grant.frames.clone()) {
            Ok(a) => Some(a),
            Err(e) => {
                // Video still flows: HLS without sound beats no lesson.
                tracing::error!(error = %e, "WHIP audio transcoder unavailable: video only");
                None
            }
        }
    } else {
        None
    };
    let info = StreamInfo {
        video_codec: Some(VideoCodec::H264),
        audio_codec: audio.as_ref().map(|_| AudioCodec::Aac),
        audio_sample_rate: audio.as_ref().map(|_| 48_000),
        audio_channels: audio.as_ref().map(|_| 2),
        encoder: Some("whip".into()),
        ..StreamInfo::default()
    };
    let mut s = Session {
        rtc: n.rtc,
        grant,
        epoch: n.created,
        deadline: Instant::now(),
        video_mid: None,
        framer: H264Framer::default(),
        audio,
        info: info.clone(),
        video_clock: Clock::default(),
        audio_clock: Clock::default(),
        got_keyframe: false,
        last_keyframe_request: None,
        want_keyframe: true,
        dropped: 0,
    };
    s.send(MediaFrame::Metadata(info));
    if s.audio.is_some() {
        // Before any video: the packager decides at the first keyframe whether there is audio.
        s.send(MediaFrame::Audio(super::audio::aac_sequence_header(0)));
    }
    Ok(s)
}
