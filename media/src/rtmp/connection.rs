//! The server side of one RTMP connection, sans-IO.
//!
//! Bytes and the current time go in ([`Connection::feed`]); outputs come out of
//! [`Connection::poll`]: bytes to send, a publish request to decide, media frames, the end of a
//! publish. Deadlines are exposed by [`Connection::poll_timeout`] and enforced by
//! [`Connection::handle_timeout`]. The tokio task in `server.rs` only moves bytes and awaits
//! channels; the same core runs in tests against `rml_rtmp::sessions::ClientSession` with no
//! sockets, and under the fuzz target.
//!
//! ```text
//!  Handshake ──C0C1C2──▶ Connecting ──connect──▶ Connected ──publish──▶ Deciding
//!                                                 (createStream)            │ accept_publish
//!                                                                           ▼
//!            Done ◀── refuse_publish / deleteStream / error / timeout ── Publishing
//! ```
//!
//! Memory is bounded per connection: the unparsed input is at most what the caller fed since the
//! last time `poll` returned `None` (plus a partial chunk header), messages being assembled are
//! bounded by [`super::chunk::ChunkReader`], outputs are produced one message (or one tag of an
//! aggregate message) at a time and yield at most a handful of outputs, AMF messages are limited to
//! [`MAX_AMF_MESSAGE_BYTES`] and decoded with a depth limit, and at most [`MAX_STREAMS`] streams
//! may be created.
//!
//! Why one file of ~1,100 lines: it is one state machine. The states, the commands that move
//! between them and the media handling that runs while `Publishing` share the connection's
//! buffers, deadline and stream info, and the bounds above are checked by reading them together.
//! The parts that stand alone live beside it (`chunk`, `amf0`, `timestamps`, [`crate::flv`],
//! [`crate::codec`]).
//!
//! Size: about 1,050 lines of code, the rest tests; the state machine stays whole for the reason
//! above.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{PeerBandwidthLimitType, RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

use super::RtmpConfig;
use super::amf0::{self, AmfError};
use super::chunk::{ChunkError, ChunkReader, Message};
use super::timestamps::{Stamp, Timeline, Track};
use crate::codec::{self, VideoCodec};
use crate::flv::{self, VideoPacket};
use crate::frame::{AudioFrame, EndReason, MediaFrame, StreamInfo, VideoFrame};
use crate::ingest::RefuseReason;

/// Chunk size we send with (announced to the peer after `connect`).
pub const OUTBOUND_CHUNK_SIZE: u32 = 4096;
/// Window acknowledgement size and peer bandwidth we announce.
const WINDOW_ACK_SIZE: u32 = 5_000_000;
/// `createStream` calls allowed per connection (a publisher needs one).
pub const MAX_STREAMS: u32 = 8;
/// Largest command or data (AMF) message accepted; commands and metadata are a few hundred bytes.
pub const MAX_AMF_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest `encoder` string kept from metadata.
const MAX_ENCODER_CHARS: usize = 256;
/// Bound for the timestamp repair: forward steps larger than this are discontinuities.
const MAX_TIMESTAMP_JUMP: Duration = Duration::from_secs(10);

/// Something for the I/O layer to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write these bytes to the peer, in order.
    Send(Bytes),
    /// The peer asked to publish; answer with [`Connection::accept_publish`] or
    /// [`Connection::refuse_publish`]. Parsing pauses until then.
    PublishRequested { app: String, stream_key: String },
    /// A frame of the granted publish (never [`MediaFrame::End`]: the I/O layer sends that).
    Frame(MediaFrame),
    /// The publisher ended its publish (`deleteStream`/`closeStream`); close the connection.
    Unpublished,
}

/// Why the connection must close. Every variant except `Timeout` becomes
/// [`EndReason::ProtocolError`]; `Timeout` becomes [`EndReason::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("bad handshake: {0}")]
    Handshake(String),
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error("bogus AMF0 in {context}: {source}")]
    Amf {
        context: &'static str,
        source: AmfError,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Timeout(&'static str),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConnectionError {
    pub fn end_reason(&self) -> EndReason {
        match self {
            ConnectionError::Timeout(_) => EndReason::Timeout,
            other => EndReason::ProtocolError(other.to_string()),
        }
    }
}

enum State {
    Handshake(Box<Handshake>),
    /// Handshake done, waiting for `connect`.
    Connecting,
    Connected {
        app: String,
    },
    /// `publish` received, waiting for the authority. Input is not parsed meanwhile.
    Deciding {
        stream_id: u32,
    },
    Publishing {
        stream_id: u32,
    },
    /// Refused, unpublished or failed: no more input is parsed.
    Done,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Handshake(_) => "handshake",
            State::Connecting => "connecting",
            State::Connected { .. } => "connected",
            State::Deciding { .. } => "deciding",
            State::Publishing { .. } => "publishing",
            State::Done => "done",
        }
    }
}

/// The server side of one RTMP connection. See the module docs.
pub struct Connection {
    idle_timeout: Duration,
    state: State,
    /// Bytes fed but not parsed yet.
    input: BytesMut,
    reader: ChunkReader,
    writer: ChunkSerializer,
    queue: VecDeque<Output>,
    /// Time of the latest `feed`.
    now: Instant,
    deadline: Option<(Instant, &'static str)>,
    next_stream_id: u32,
    bytes_received: u64,
    /// Peer's window acknowledgement size, once it has announced one.
    ack_window: Option<u32>,
    unacked: u64,
    timeline: Timeline,
    info: StreamInfo,
    aggregate: Option<Aggregate>,
    malformed_media: u64,
    discontinuities: u64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("state", &self.state.name())
            .field("buffered", &self.buffered_bytes())
            .field("bytes_received", &self.bytes_received)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection accepted at `now`; the handshake must complete within
    /// [`RtmpConfig::handshake_timeout`].
    pub fn new(config: &RtmpConfig, now: Instant) -> Self {
        Self {
            idle_timeout: config.idle_timeout,
            state: State::Handshake(Box::new(Handshake::new(PeerType::Server))),
            input: BytesMut::new(),
            reader: ChunkReader::new(config.max_message_bytes),
            writer: ChunkSerializer::new(),
            queue: VecDeque::new(),
            now,
            deadline: Some((
                now + config.handshake_timeout,
                "handshake not completed in time",
            )),
            next_stream_id: 1,
            bytes_received: 0,
            ack_window: None,
            unacked: 0,
            timeline: Timeline::new(MAX_TIMESTAMP_JUMP),
            info: StreamInfo::default(),
            aggregate: None,
            malformed_media: 0,
            discontinuities: 0,
        }
    }

    /// Hand over bytes read from the peer at `now`. Call [`Connection::poll`] until it returns
    /// `Ok(None)` before feeding more: that is what keeps the unparsed input bounded.
    pub fn feed(&mut self, data: &[u8], now: Instant) {
        if matches!(self.state, State::Done) {
            self.now = now;
            return;
        }
        self.input.extend_from_slice(data);
        self.received(data.len(), now);
    }

    /// Where to read the peer's next bytes directly (saves [`Connection::feed`]'s copy): the
    /// unparsed input, with room for at least `additional` more bytes. Append at most that
    /// many, then call [`Connection::commit_read`] with the count; the same rule as for `feed`
    /// applies (poll until `Ok(None)` first).
    pub fn read_buffer(&mut self, additional: usize) -> &mut BytesMut {
        self.input.reserve(additional);
        &mut self.input
    }

    /// `n` bytes were appended to [`Connection::read_buffer`] at `now`.
    pub fn commit_read(&mut self, n: usize, now: Instant) {
        if matches!(self.state, State::Done) {
            self.now = now;
            self.input.clear();
            return;
        }
        self.received(n, now);
    }

    fn received(&mut self, n: usize, now: Instant) {
        self.now = now;
        self.bytes_received += n as u64;
        if let Some(window) = self.ack_window {
            self.unacked += n as u64;
            if self.unacked >= u64::from(window) {
                self.unacked = 0;
                let ack = RtmpMessage::Acknowledgement {
                    sequence_number: self.bytes_received as u32,
                };
                // An acknowledgement that fails to serialize is not worth closing for.
                let _ = self.send(ack, 0);
            }
        }
    }

    /// The next thing to do, or `Ok(None)` when all fed input has been parsed (or parsing is
    /// paused for a publish decision). After an error the connection must be closed; further
    /// calls return `Ok(None)`.
    pub fn poll(&mut self) -> Result<Option<Output>, ConnectionError> {
        loop {
            if let Some(output) = self.queue.pop_front() {
                return Ok(Some(output));
            }
            let step = match &mut self.state {
                State::Done | State::Deciding { .. } => return Ok(None),
                State::Handshake(handshake) => {
                    if self.input.is_empty() {
                        return Ok(None);
                    }
                    let data = self.input.split();
                    Step::Handshake(handshake.process_bytes(&data))
                }
                _ if self.aggregate.is_some() => Step::AggregateTag,
                _ => match self.reader.read(&mut self.input) {
                    Ok(Some(message)) => Step::Message(message),
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(self.fail(e.into())),
                },
            };
            let result = match step {
                Step::Handshake(Ok(HandshakeProcessResult::InProgress { response_bytes })) => {
                    self.queue_bytes(response_bytes);
                    Ok(())
                }
                Step::Handshake(Ok(HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                })) => {
                    self.queue_bytes(response_bytes);
                    self.input.extend_from_slice(&remaining_bytes);
                    self.state = State::Connecting;
                    self.deadline = Some((self.now + self.idle_timeout, "no publish in time"));
                    Ok(())
                }
                Step::Handshake(Err(e)) => Err(ConnectionError::Handshake(e.to_string())),
                Step::Message(message) => self.on_message(message),
                Step::AggregateTag => self.next_aggregate_tag(),
            };
            if let Err(e) = result {
                return Err(self.fail(e));
            }
        }
    }

    /// Answer a [`Output::PublishRequested`]: the publisher gets `NetStream.Publish.Start` and
    /// frames start flowing. `now` starts the silence timeout.
    pub fn accept_publish(&mut self, now: Instant) -> Result<(), ConnectionError> {
        let State::Deciding { stream_id } = self.state else {
            return Err(ConnectionError::Internal(format!(
                "accept_publish in state {}",
                self.state.name()
            )));
        };
        self.now = now;
        let begin = RtmpMessage::UserControl {
            event_type: UserControlEventType::StreamBegin,
            stream_id: Some(stream_id),
            buffer_length: None,
            timestamp: None,
        };
        self.send(begin, 0)?;
        self.send_status(stream_id, "status", "NetStream.Publish.Start", "Publishing")?;
        self.state = State::Publishing { stream_id };
        self.deadline = Some((now + self.idle_timeout, "no media in time"));
        Ok(())
    }

    /// Answer a [`Output::PublishRequested`] with a refusal: an `onStatus` error is queued (send
    /// it, then close the connection).
    pub fn refuse_publish(&mut self, reason: RefuseReason) -> Result<(), ConnectionError> {
        let State::Deciding { stream_id } = self.state else {
            return Err(ConnectionError::Internal(format!(
                "refuse_publish in state {}",
                self.state.name()
            )));
        };
        let (code, description) = super::refusal_status(reason);
        self.send_status(stream_id, "error", code, description)?;
        self.state = State::Done;
        self.deadline = None;
        Ok(())
    }

    /// When [`Connection::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.map(|(at, _)| at)
    }

    /// Check the deadline at `now`; an expired one fails the connection.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ConnectionError> {
        match self.deadline {
            Some((at, reason)) if now >= at => Err(self.fail(ConnectionError::Timeout(reason))),
            _ => Ok(()),
        }
    }

    pub fn is_publishing(&self) -> bool {
        matches!(self.state, State::Publishing { .. })
    }

    /// Total bytes fed.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Bytes held by the connection: unparsed input, messages being assembled, queued outputs.
    pub fn buffered_bytes(&self) -> usize {
        let queued: usize = self
            .queue
            .iter()
            .map(|o| match o {
                Output::Send(b) => b.len(),
                Output::Frame(MediaFrame::Video(v)) => v.data.len(),
                Output::Frame(MediaFrame::Audio(a)) => a.data.len(),
                _ => 64,
            })
            .sum();
        let aggregate = self.aggregate.as_ref().map_or(0, |a| a.rest.len());
        self.input.len() + self.reader.reserved() + aggregate + queued
    }

    /// Media messages dropped because their FLV header could not be parsed.
    pub fn malformed_media(&self) -> u64 {
        self.malformed_media
    }

    fn fail(&mut self, error: ConnectionError) -> ConnectionError {
        self.state = State::Done;
        self.deadline = None;
        self.queue.clear();
        self.input.clear();
        self.aggregate = None;
        error
    }

    fn queue_bytes(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.queue.push_back(Output::Send(Bytes::from(bytes)));
        }
    }

    fn send(&mut self, message: RtmpMessage, stream_id: u32) -> Result<(), ConnectionError> {
        let payload = message
            .into_message_payload(RtmpTimestamp::new(0), stream_id)
            .map_err(|e| ConnectionError::Internal(e.to_string()))?;
        let packet = self
            .writer
            .serialize(&payload, false, false)
            .map_err(|e| ConnectionError::Internal(e.to_string()))?;
        self.queue_bytes(packet.bytes);
        Ok(())
    }

    fn send_command(
        &mut self,
        name: &str,
        transaction_id: f64,
        command_object: Amf0Value,
        arguments: Vec<Amf0Value>,
        stream_id: u32,
    ) -> Result<(), ConnectionError> {
        let message = RtmpMessage::Amf0Command {
            command_name: name.to_string(),
            transaction_id,
            command_object,
            additional_arguments: arguments,
        };
        self.send(message, stream_id)
    }

    fn send_status(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
    ) -> Result<(), ConnectionError> {
        let info = status_object(level, code, description);
        self.send_command("onStatus", 0.0, Amf0Value::Null, vec![info], stream_id)
    }

    fn on_message(&mut self, message: Message) -> Result<(), ConnectionError> {
        match message.type_id {
            // Set Chunk Size
            1 => {
                let size = be32(&message.payload).ok_or_else(|| {
                    ConnectionError::Protocol("truncated SetChunkSize".to_string())
                })?;
                self.reader.set_chunk_size(size & 0x7FFF_FFFF)?;
            }
            // Abort
            2 => {
                if let Some(csid) = be32(&message.payload) {
                    self.reader.abort(csid);
                }
            }
            // User Control: answer pings.
            4 => {
                let p = &message.payload;
                if p.len() >= 6 && p[0] == 0 && p[1] == 6 {
                    let response = RtmpMessage::UserControl {
                        event_type: UserControlEventType::PingResponse,
                        stream_id: None,
                        buffer_length: None,
                        timestamp: be32(&p[2..]).map(RtmpTimestamp::new),
                    };
                    self.send(response, 0)?;
                }
            }
            // Window Acknowledgement Size
            5 => {
                if let Some(size) = be32(&message.payload)
                    && size > 0
                {
                    self.ack_window = Some(size.max(4096));
                }
            }
            8 => self.on_audio(
                message.message_stream_id,
                message.timestamp,
                message.payload,
            )?,
            9 => self.on_video(
                message.message_stream_id,
                message.timestamp,
                message.payload,
            )?,
            // AMF0 data, or "AMF3" data that is AMF0 behind a zero byte.
            18 | 15 => {
                let payload = amf_payload(&message)?;
                self.on_data(message.message_stream_id, payload)?;
            }
            // AMF0 command, or "AMF3" command that is AMF0 behind a zero byte.
            20 | 17 => {
                let payload = amf_payload(&message)?;
                self.on_command(message.message_stream_id, payload)?;
            }
            22 => {
                self.aggregate = Some(Aggregate {
                    stream_id: message.message_stream_id,
                    timestamp: message.timestamp,
                    first_tag_ts: None,
                    rest: message.payload,
                });
            }
            // Acknowledgement, Set Peer Bandwidth, shared objects, unknown: nothing to do.
            _ => {}
        }
        Ok(())
    }

    fn on_command(&mut self, stream_id: u32, payload: &[u8]) -> Result<(), ConnectionError> {
        let values = amf0::decode_all(payload).map_err(|source| ConnectionError::Amf {
            context: "command",
            source,
        })?;
        let mut values = values.into_iter();
        let Some(Amf0Value::Utf8String(name)) = values.next() else {
            return Err(ConnectionError::Protocol(
                "command without a name".to_string(),
            ));
        };
        let transaction_id = match values.next() {
            Some(Amf0Value::Number(n)) if n.is_finite() => n,
            _ => 0.0,
        };
        let command_object = values.next().unwrap_or(Amf0Value::Null);
        let arguments: Vec<Amf0Value> = values.collect();

        match name.as_str() {
            "connect" => self.on_connect(transaction_id, command_object),
            "createStream" => self.on_create_stream(transaction_id),
            "publish" => self.on_publish(stream_id, arguments),
            "deleteStream" => {
                let id = match arguments.first() {
                    Some(Amf0Value::Number(n)) => *n as u32,
                    _ => stream_id,
                };
                self.on_unpublish(id);
                Ok(())
            }
            "closeStream" => {
                self.on_unpublish(stream_id);
                Ok(())
            }
            "play" | "play2" => Err(ConnectionError::Protocol(
                "playback is not offered on this server".to_string(),
            )),
            // releaseStream, FCPublish, FCUnpublish, _checkbw, getStreamLength, _result, ...:
            // nothing publishers wait for.
            other => {
                tracing::trace!(command = other, "ignored RTMP command");
                Ok(())
            }
        }
    }

    fn on_connect(
        &mut self,
        transaction_id: f64,
        command_object: Amf0Value,
    ) -> Result<(), ConnectionError> {
        if !matches!(self.state, State::Connecting) {
            return Err(ConnectionError::Protocol(format!(
                "connect in state {}",
                self.state.name()
            )));
        }
        let app = match command_object {
            Amf0Value::Object(mut properties) => match properties.remove("app") {
                Some(Amf0Value::Utf8String(app)) => app,
                _ => {
                    return Err(ConnectionError::Protocol(
                        "connect without an app name".to_string(),
                    ));
                }
            },
            _ => {
                return Err(ConnectionError::Protocol(
                    "connect without a command object".to_string(),
                ));
            }
        };
        self.send(
            RtmpMessage::WindowAcknowledgement {
                size: WINDOW_ACK_SIZE,
            },
            0,
        )?;
        self.send(
            RtmpMessage::SetPeerBandwidth {
                size: WINDOW_ACK_SIZE,
                limit_type: PeerBandwidthLimitType::Dynamic,
            },
            0,
        )?;
        let chunk_size = self
            .writer
            .set_max_chunk_size(OUTBOUND_CHUNK_SIZE, RtmpTimestamp::new(0))
            .map_err(|e| ConnectionError::Internal(e.to_string()))?;
        self.queue_bytes(chunk_size.bytes);

        let mut properties = HashMap::new();
        properties.insert(
            "fmsVer".to_string(),
            Amf0Value::Utf8String("FMS/3,0,1,123".to_string()),
        );
        properties.insert("capabilities".to_string(), Amf0Value::Number(31.0));
        let mut info = match status_object(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        ) {
            Amf0Value::Object(map) => map,
            _ => HashMap::new(),
        };
        info.insert("objectEncoding".to_string(), Amf0Value::Number(0.0));
        self.send_command(
            "_result",
            transaction_id,
            Amf0Value::Object(properties),
            vec![Amf0Value::Object(info)],
            0,
        )?;
        self.state = State::Connected {
            app: normalize_app(&app),
        };
        Ok(())
    }

    fn on_create_stream(&mut self, transaction_id: f64) -> Result<(), ConnectionError> {
        if matches!(self.state, State::Connecting) {
            return Err(ConnectionError::Protocol(
                "createStream before connect".to_string(),
            ));
        }
        if self.next_stream_id > MAX_STREAMS {
            return Err(ConnectionError::Protocol(format!(
                "more than {MAX_STREAMS} createStream calls"
            )));
        }
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        self.send_command(
            "_result",
            transaction_id,
            Amf0Value::Null,
            vec![Amf0Value::Number(f64::from(id))],
            0,
        )
    }

    fn on_publish(
        &mut self,
        stream_id: u32,
        arguments: Vec<Amf0Value>,
    ) -> Result<(), ConnectionError> {
        let State::Connected { app } = &self.state else {
            return Err(ConnectionError::Protocol(format!(
                "publish in state {}",
                self.state.name()
            )));
        };
        if stream_id == 0 || stream_id >= self.next_stream_id {
            return Err(ConnectionError::Protocol(format!(
                "publish on stream {stream_id}, which was not created"
            )));
        }
        let Some(Amf0Value::Utf8String(name)) = arguments.into_iter().next() else {
            return Err(ConnectionError::Protocol(
                "publish without a stream name".to_string(),
            ));
        };
        let (app, stream_key) = split_publish_name(app, &name);
        self.state = State::Deciding { stream_id };
        self.deadline = Some((self.now + self.idle_timeout, "no publish decision in time"));
        self.queue
            .push_back(Output::PublishRequested { app, stream_key });
        Ok(())
    }

    fn on_unpublish(&mut self, stream_id: u32) {
        if let State::Publishing { stream_id: current } = self.state
            && current == stream_id
        {
            self.state = State::Done;
            self.deadline = None;
            self.queue.push_back(Output::Unpublished);
        }
    }

    fn publishing_on(&self, stream_id: u32) -> bool {
        matches!(self.state, State::Publishing { stream_id: s } if s == stream_id)
    }

    fn on_data(&mut self, stream_id: u32, payload: &[u8]) -> Result<(), ConnectionError> {
        let values = amf0::decode_all(payload).map_err(|source| ConnectionError::Amf {
            context: "data message",
            source,
        })?;
        if !self.publishing_on(stream_id) {
            return Ok(());
        }
        let mut values = values.into_iter().peekable();
        if matches!(values.peek(), Some(Amf0Value::Utf8String(s)) if s == "@setDataFrame") {
            values.next();
        }
        if !matches!(values.next(), Some(Amf0Value::Utf8String(s)) if s == "onMetaData") {
            return Ok(());
        }
        let Some(Amf0Value::Object(properties)) = values.next() else {
            return Ok(());
        };
        let mut info = self.info.clone();
        apply_metadata(&mut info, properties);
        // onMetaData is always forwarded, even if unchanged: it marks a (re)configuration.
        self.info = info.clone();
        self.queue
            .push_back(Output::Frame(MediaFrame::Metadata(info)));
        Ok(())
    }

    fn update_info(&mut self, info: StreamInfo) {
        if info != self.info {
            self.info = info.clone();
            self.queue
                .push_back(Output::Frame(MediaFrame::Metadata(info)));
        }
    }

    fn touch_media(&mut self) {
        self.deadline = Some((self.now + self.idle_timeout, "no media in time"));
    }

    fn note(&mut self, stamp: Stamp) -> u64 {
        if let Some(d) = stamp.discontinuity {
            self.discontinuities += 1;
            if self.discontinuities == 1 {
                tracing::warn!(
                    track = ?d.track,
                    previous_ms = d.previous_raw_ms,
                    raw_ms = d.raw_ms,
                    step_ms = d.step_ms,
                    "RTMP timestamp discontinuity repaired (further ones logged at debug)"
                );
            } else {
                tracing::debug!(track = ?d.track, step_ms = d.step_ms, "timestamp repaired");
            }
        }
        stamp.dts_ms
    }

    fn malformed(&mut self, kind: &'static str, error: codec::CodecError) {
        self.malformed_media += 1;
        if self.malformed_media == 1 {
            tracing::warn!(kind, %error, "malformed media message dropped (further ones at debug)");
        } else {
            tracing::debug!(kind, %error, "malformed media message dropped");
        }
    }

    fn on_video(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        data: Bytes,
    ) -> Result<(), ConnectionError> {
        if !self.publishing_on(stream_id) {
            return Ok(());
        }
        self.touch_media();
        if data.is_empty() {
            return Ok(());
        }
        let tag = match flv::parse_video(&data) {
            Ok(tag) => tag,
            Err(e) => {
                self.malformed("video", e);
                return Ok(());
            }
        };
        let sequence_header = match tag.packet {
            VideoPacket::SequenceHeader => true,
            VideoPacket::Frame => false,
            VideoPacket::EndOfSequence | VideoPacket::Other => return Ok(()),
        };
        if sequence_header || self.info.video_codec.is_none() {
            let mut info = self.info.clone();
            info.video_codec = Some(tag.codec);
            if sequence_header {
                let record = data.get(tag.payload_offset..).unwrap_or_default();
                let config = match tag.codec {
                    VideoCodec::H264 => codec::parse_avc_config(record).ok(),
                    VideoCodec::Hevc => codec::parse_hevc_config(record).ok(),
                    _ => None,
                };
                if let Some(config) = config {
                    info.video_profile = Some(config.profile);
                    info.video_level = Some(config.level);
                }
            }
            self.update_info(info);
        }
        let stamp = self.timeline.stamp(Track::Video, timestamp);
        let dts_ms = self.note(stamp);
        self.queue
            .push_back(Output::Frame(MediaFrame::Video(VideoFrame {
                dts_ms,
                cts_ms: tag.cts_ms,
                keyframe: tag.keyframe(),
                sequence_header,
                codec: tag.codec,
                data,
            })));
        Ok(())
    }

    fn on_audio(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        data: Bytes,
    ) -> Result<(), ConnectionError> {
        if !self.publishing_on(stream_id) {
            return Ok(());
        }
        self.touch_media();
        if data.is_empty() {
            return Ok(());
        }
        let tag = match flv::parse_audio(&data) {
            Ok(tag) => tag,
            Err(e) => {
                self.malformed("audio", e);
                return Ok(());
            }
        };
        if tag.sequence_header || self.info.audio_codec.is_none() {
            let mut info = self.info.clone();
            info.audio_codec = Some(tag.codec);
            if tag.sequence_header && tag.codec == super::AudioCodec::Aac {
                let asc = data.get(tag.payload_offset..).unwrap_or_default();
                if let Ok(config) = codec::parse_aac_config(asc) {
                    info.audio_sample_rate = Some(config.sample_rate);
                    if config.channels > 0 {
                        info.audio_channels = Some(config.channels);
                    }
                }
            }
            self.update_info(info);
        }
        let stamp = self.timeline.stamp(Track::Audio, timestamp);
        let dts_ms = self.note(stamp);
        self.queue
            .push_back(Output::Frame(MediaFrame::Audio(AudioFrame {
                dts_ms,
                sequence_header: tag.sequence_header,
                codec: tag.codec,
                data,
            })));
        Ok(())
    }

    /// Next tag of an aggregate message: FLV tags (11-byte header, body, 4-byte previous tag
    /// size), timestamps relative to the first tag and rebased on the message's timestamp.
    fn next_aggregate_tag(&mut self) -> Result<(), ConnectionError> {
        let Some(aggregate) = self.aggregate.as_mut() else {
            return Ok(());
        };
        let rest = &mut aggregate.rest;
        if rest.len() < 11 {
            self.aggregate = None;
            return Ok(());
        }
        let kind = rest[0];
        let size = ((rest[1] as usize) << 16) | ((rest[2] as usize) << 8) | rest[3] as usize;
        let tag_ts = u32::from_be_bytes([rest[7], rest[4], rest[5], rest[6]]);
        if rest.len() < 11 + size {
            self.aggregate = None;
            return Err(ConnectionError::Protocol(
                "truncated tag in aggregate message".to_string(),
            ));
        }
        rest.advance(11);
        let body = rest.split_to(size);
        rest.advance(rest.len().min(4));
        let first = *aggregate.first_tag_ts.get_or_insert(tag_ts);
        let timestamp = aggregate.timestamp.wrapping_add(tag_ts.wrapping_sub(first));
        let stream_id = aggregate.stream_id;
        if rest.is_empty() {
            self.aggregate = None;
        }
        match kind {
            8 => self.on_audio(stream_id, timestamp, body),
            9 => self.on_video(stream_id, timestamp, body),
            18 => {
                if body.len() > MAX_AMF_MESSAGE_BYTES {
                    return Err(ConnectionError::Protocol(format!(
                        "AMF data of {} bytes exceeds {MAX_AMF_MESSAGE_BYTES}",
                        body.len()
                    )));
                }
                self.on_data(stream_id, &body)
            }
            _ => Ok(()),
        }
    }
}

enum Step {
    Handshake(Result<HandshakeProcessResult, rml_rtmp::handshake::HandshakeError>),
    Message(Message),
    AggregateTag,
}

/// An aggregate message being unpacked, one tag per step so outputs stay few.
struct Aggregate {
    stream_id: u32,
    timestamp: u32,
    first_tag_ts: Option<u32>,
    rest: Bytes,
}

fn be32(b: &[u8]) -> Option<u32> {
    let b = b.get(0..4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The AMF0 bytes of a command/data message, bounded; "AMF3" types 15/17 carry AMF0 behind a
/// zero format byte.
fn amf_payload(message: &Message) -> Result<&[u8], ConnectionError> {
    if message.payload.len() > MAX_AMF_MESSAGE_BYTES {
        return Err(ConnectionError::Protocol(format!(
            "AMF message of {} bytes exceeds {MAX_AMF_MESSAGE_BYTES}",
            message.payload.len()
        )));
    }
    let payload = &message.payload[..];
    Ok(match (message.type_id, payload.first()) {
        (15 | 17, Some(0)) => &payload[1..],
        _ => payload,
    })
}

fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    let mut map = HashMap::new();
    map.insert(
        "level".to_string(),
        Amf0Value::Utf8String(level.to_string()),
    );
    map.insert("code".to_string(), Amf0Value::Utf8String(code.to_string()));
    map.insert(
        "description".to_string(),
        Amf0Value::Utf8String(description.to_string()),
    );
    Amf0Value::Object(map)
}

/// The application name without a trailing `/` or a `?query` (some clients put tokens there).
pub fn normalize_app(app: &str) -> String {
    let app = app.split('?').next().unwrap_or_default();
    app.trim_end_matches('/').to_string()
}

/// Split `(app, publish name)` into `(app, stream key)`: the key loses any `?query` suffix, and a
/// name with slashes (`live/key` published on app ``) moves its prefix into the app.
pub fn split_publish_name(app: &str, name: &str) -> (String, String) {
    let name = name.split('?').next().unwrap_or_default();
    match name.rsplit_once('/') {
        Some((prefix, key)) => {
            let app = [app, prefix]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            (normalize_app(&app), key.to_string())
        }
        None => (app.to_string(), name.to_string()),
    }
}

fn number(value: &Amf0Value) -> Option<f64> {
    match value {
        Amf0Value::Number(n) if n.is_finite() => Some(*n),
        _ => None,
    }
}

fn in_range(value: &Amf0Value, min: f64, max: f64) -> Option<f64> {
    number(value).filter(|n| (min..=max).contains(n))
}

fn apply_metadata(info: &mut StreamInfo, properties: HashMap<String, Amf0Value>) {
    // Values out of range are ignored (the previous value, if any, stays).
    fn set<T>(field: &mut Option<T>, value: Option<T>) {
        if value.is_some() {
            *field = value;
        }
    }
    for (key, value) in &properties {
        match key.as_str() {
            "width" => set(
                &mut info.width,
                in_range(value, 1.0, 65535.0).map(|n| n as u32),
            ),
            "height" => set(
                &mut info.height,
                in_range(value, 1.0, 65535.0).map(|n| n as u32),
            ),
            "framerate" | "fps" => set(&mut info.frame_rate, in_range(value, 0.001, 1000.0)),
            "videodatarate" => set(
                &mut info.video_bitrate_kbps,
                in_range(value, 0.0, 1e7).map(|n| n.round() as u32),
            ),
            "audiodatarate" => set(
                &mut info.audio_bitrate_kbps,
                in_range(value, 0.0, 1e7).map(|n| n.round() as u32),
            ),
            "audiosamplerate" => set(
                &mut info.audio_sample_rate,
                in_range(value, 1.0, 768_000.0).map(|n| n as u32),
            ),
            "audiochannels" => set(
                &mut info.audio_channels,
                in_range(value, 1.0, 64.0).map(|n| n as u8),
            ),
            "stereo" => {
                if !properties.contains_key("audiochannels")
                    && let Amf0Value::Boolean(stereo) = value
                {
                    info.audio_channels = Some(if *stereo { 2 } else { 1 });
                }
            }
            "videocodecid" => set(
                &mut info.video_codec,
                codec_id(value).map(codec::video_codec_from_id),
            ),
            "audiocodecid" => set(
                &mut info.audio_codec,
                codec_id(value).map(codec::audio_codec_from_id),
            ),
            "encoder" => {
                if let Amf0Value::Utf8String(s) = value {
                    info.encoder = Some(s.chars().take(MAX_ENCODER_CHARS).collect());
                }
            }
            _ => {}
        }
    }
}

fn codec_id(value: &Amf0Value) -> Option<u32> {
    match value {
        Amf0Value::Utf8String(s) => codec::fourcc_from_str(s),
        other => in_range(other, 0.0, f64::from(u32::MAX)).map(|n| n as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_names_split_into_app_and_key() {
        assert_eq!(
            split_publish_name("live", "good-key"),
            ("live".into(), "good-key".into())
        );
        assert_eq!(
            split_publish_name("live", "good-key?token=x&y=1"),
            ("live".into(), "good-key".into())
        );
        assert_eq!(
            split_publish_name("", "live/good-key"),
            ("live".into(), "good-key".into())
        );
        assert_eq!(
            split_publish_name("live", "sub/k"),
            ("live/sub".into(), "k".into())
        );
        assert_eq!(split_publish_name("live", ""), ("live".into(), "".into()));
    }

    #[test]
    fn app_names_lose_trailing_slash_and_query() {
        assert_eq!(normalize_app("live/"), "live");
        assert_eq!(normalize_app("live?token=1"), "live");
        assert_eq!(normalize_app("live"), "live");
    }

    #[test]
    fn metadata_fills_stream_info_and_ignores_nonsense() {
        let mut props = HashMap::new();
        props.insert("width".to_string(), Amf0Value::Number(1280.0));
        props.insert("height".to_string(), Amf0Value::Number(f64::NAN));
        props.insert("framerate".to_string(), Amf0Value::Number(30.0));
        props.insert("videocodecid".to_string(), Amf0Value::Number(7.0));
        props.insert(
            "audiocodecid".to_string(),
            Amf0Value::Utf8String("mp4a".to_string()),
        );
        props.insert("videodatarate".to_string(), Amf0Value::Number(2500.4));
        props.insert("audiosamplerate".to_string(), Amf0Value::Number(-1.0));
        props.insert("stereo".to_string(), Amf0Value::Boolean(true));
        props.insert(
            "encoder".to_string(),
            Amf0Value::Utf8String("x".repeat(1000)),
        );
        let mut info = StreamInfo::default();
        apply_metadata(&mut info, props);
        assert_eq!(info.width, Some(1280));
        assert_eq!(info.height, None);
        assert_eq!(info.frame_rate, Some(30.0));
        assert_eq!(info.video_codec, Some(VideoCodec::H264));
        assert_eq!(info.audio_codec, Some(super::super::AudioCodec::Aac));
        assert_eq!(info.video_bitrate_kbps, Some(2500));
        assert_eq!(info.audio_sample_rate, None);
        assert_eq!(info.audio_channels, Some(2));
        assert_eq!(info.encoder.as_ref().map(|s| s.len()), Some(256));
    }
}
