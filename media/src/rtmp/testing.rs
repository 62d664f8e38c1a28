//! Test and fuzz support (hidden from the docs): an in-memory loopback that drives
//! `rml_rtmp`'s `ClientSession` against our [`Connection`], a recorder of a valid publish session,
//! and the fuzz entry point used by `media/fuzz` (cargo-fuzz, nightly) and by a seeded stable test.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionError, ClientSessionEvent,
    ClientSessionResult, PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;

use super::RtmpConfig;
use super::connection::{Connection, ConnectionError, Output};
use crate::frame::MediaFrame;
use crate::ingest::RefuseReason;

/// Complete a real (digest) handshake against `conn`, as a client would.
pub fn client_handshake(conn: &mut Connection, now: Instant) -> Result<(), String> {
    let mut client = Handshake::new(PeerType::Client);
    let c0c1 = client
        .generate_outbound_p0_and_p1()
        .map_err(|e| e.to_string())?;
    conn.feed(&c0c1, now);
    let mut s0s1s2 = Vec::new();
    while let Some(output) = conn.poll().map_err(|e| e.to_string())? {
        if let Output::Send(bytes) = output {
            s0s1s2.extend_from_slice(&bytes);
        }
    }
    match client.process_bytes(&s0s1s2).map_err(|e| e.to_string())? {
        HandshakeProcessResult::Completed { response_bytes, .. } => {
            conn.feed(&response_bytes, now);
            while conn.poll().map_err(|e| e.to_string())?.is_some() {}
            Ok(())
        }
        HandshakeProcessResult::InProgress { .. } => Err("handshake did not complete".into()),
    }
}

/// How the loopback answers publish requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decide {
    Accept,
    Refuse(RefuseReason),
    /// Leave the request pending.
    Hold,
}

/// `ClientSession` ⇄ `Connection`, in memory, after a completed handshake.
pub struct Loopback {
    pub server: Connection,
    pub client: ClientSession,
    pub now: Instant,
    pub decide: Decide,
    /// Every byte the client sent after the handshake (a replayable session).
    pub sent: Vec<u8>,
    /// Server outputs other than `Send`, in order.
    pub outputs: Vec<Output>,
    /// Client events, in order.
    pub events: Vec<ClientSessionEvent>,
    /// The server's error, once it failed.
    pub error: Option<ConnectionError>,
}

impl Loopback {
    pub fn new(config: &RtmpConfig) -> Result<Self, String> {
        let now = Instant::now();
        let mut server = Connection::new(config, now);
        client_handshake(&mut server, now)?;
        let (client, _) = ClientSession::new(ClientSessionConfig::new()).map_err(cs)?;
        Ok(Self {
            server,
            client,
            now,
            decide: Decide::Accept,
            sent: Vec::new(),
            outputs: Vec::new(),
            events: Vec::new(),
            error: None,
        })
    }

    /// Send what a client call produced, then exchange until both sides are quiet.
    pub fn client(
        &mut self,
        result: Result<ClientSessionResult, ClientSessionError>,
    ) -> Result<(), String> {
        self.exchange(vec![result.map_err(cs)?])
    }

    /// Like [`Loopback::client`] for calls that produce several results.
    pub fn client_many(
        &mut self,
        results: Result<Vec<ClientSessionResult>, ClientSessionError>,
    ) -> Result<(), String> {
        self.exchange(results.map_err(cs)?)
    }

    /// Feed raw bytes to the server as if the client sent them.
    pub fn raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut to_client = VecDeque::new();
        self.deliver_to_server(bytes, &mut to_client)?;
        self.pump(VecDeque::new(), to_client)
    }

    fn exchange(&mut self, results: Vec<ClientSessionResult>) -> Result<(), String> {
        let mut to_server = VecDeque::new();
        for result in results {
            self.client_result(result, &mut to_server);
        }
        self.pump(to_server, VecDeque::new())
    }

    fn client_result(&mut self, result: ClientSessionResult, to_server: &mut VecDeque<Vec<u8>>) {
        match result {
            ClientSessionResult::OutboundResponse(packet) => to_server.push_back(packet.bytes),
            ClientSessionResult::RaisedEvent(event) => self.events.push(event),
            ClientSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }

    fn pump(
        &mut self,
        mut to_server: VecDeque<Vec<u8>>,
        mut to_client: VecDeque<Bytes>,
    ) -> Result<(), String> {
        loop {
            if let Some(bytes) = to_server.pop_front() {
                self.deliver_to_server(&bytes, &mut to_client)?;
            } else if let Some(bytes) = to_client.pop_front() {
                for result in self.client.handle_input(&bytes).map_err(cs)? {
                    self.client_result(result, &mut to_server);
                }
            } else {
                return Ok(());
            }
        }
    }

    fn deliver_to_server(
        &mut self,
        bytes: &[u8],
        to_client: &mut VecDeque<Bytes>,
    ) -> Result<(), String> {
        if self.error.is_some() {
            return Ok(());
        }
        self.sent.extend_from_slice(bytes);
        self.server.feed(bytes, self.now);
        loop {
            match self.server.poll() {
                Ok(Some(Output::Send(bytes))) => to_client.push_back(bytes),
                Ok(Some(output)) => {
                    let request = matches!(output, Output::PublishRequested { .. });
                    self.outputs.push(output);
                    if request {
                        let answered = match self.decide {
                            Decide::Accept => self.server.accept_publish(self.now),
                            Decide::Refuse(reason) => self.server.refuse_publish(reason),
                            Decide::Hold => Ok(()),
                        };
                        answered.map_err(|e| e.to_string())?;
                    }
                }
                Ok(None) => return Ok(()),
                Err(error) => {
                    self.error = Some(error);
                    return Ok(());
                }
            }
        }
    }

    /// Frames the server produced so far.
    pub fn frames(&self) -> Vec<&MediaFrame> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Frame(frame) => Some(frame),
                _ => None,
            })
            .collect()
    }
}

fn cs(e: ClientSessionError) -> String {
    e.to_string()
}

/// A tiny H.264 sequence header (AVCDecoderConfigurationRecord, High 3.1) as an FLV body.
pub fn avc_sequence_header() -> Bytes {
    Bytes::from_static(&[
        0x17, 0x00, 0, 0, 0, // keyframe/AVC, sequence header, cts 0
        0x01, 0x64, 0x00, 0x1F, 0xFF, // version, High, compat, 3.1, 4-byte NAL lengths
        0xE1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1F, // 1 SPS (stub)
        0x01, 0x00, 0x02, 0x68, 0xEE, // 1 PPS (stub)
    ])
}

/// An AAC-LC 44.1 kHz stereo AudioSpecificConfig as an FLV body.
pub fn aac_sequence_header() -> Bytes {
    Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10])
}

/// An FLV video body with one NAL unit of `size` bytes.
pub fn avc_frame(keyframe: bool, cts: i32, size: usize) -> Bytes {
    let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 0x01];
    body.extend_from_slice(&cts.to_be_bytes()[1..]);
    body.extend_from_slice(&(size as u32).to_be_bytes());
    body.extend(std::iter::repeat_n(
        if keyframe { 0x65 } else { 0x41 },
        size,
    ));
    Bytes::from(body)
}

/// An FLV AAC raw frame body.
pub fn aac_frame(size: usize) -> Bytes {
    let mut body = vec![0xAF, 0x01];
    body.extend(std::iter::repeat_n(0x21, size));
    Bytes::from(body)
}

/// Metadata as ffmpeg would send it.
pub fn sample_metadata() -> StreamMetadata {
    let mut metadata = StreamMetadata::new();
    metadata.video_width = Some(640);
    metadata.video_height = Some(360);
    metadata.video_codec_id = Some(7);
    metadata.video_frame_rate = Some(30.0);
    metadata.video_bitrate_kbps = Some(800);
    metadata.audio_codec_id = Some(10);
    metadata.audio_sample_rate = Some(44100);
    metadata.audio_channels = Some(2);
    metadata.encoder = Some("Lavf59.27.100".to_string());
    metadata
}

/// Publish `key` on app `live` and push metadata, sequence headers and `video_frames` frames of
/// video (every 30th a keyframe of 5000 bytes, more than one 4096-byte chunk; others 1000 bytes)
/// with interleaved audio. Returns the loopback; its `sent` holds the replayable client bytes.
pub fn publish_session(
    config: &RtmpConfig,
    key: &str,
    video_frames: u32,
) -> Result<Loopback, String> {
    let mut lb = Loopback::new(config)?;
    let connect = lb.client.request_connection("live".to_string());
    lb.client(connect)?;
    let publish = lb
        .client
        .request_publishing(key.to_string(), PublishRequestType::Live);
    lb.client(publish)?;
    if !lb.server.is_publishing() {
        return Ok(lb);
    }
    let metadata = lb.client.publish_metadata(&sample_metadata());
    lb.client(metadata)?;
    let t0 = RtmpTimestamp::new(0);
    let video = lb
        .client
        .publish_video_data(avc_sequence_header(), t0, false);
    lb.client(video)?;
    let audio = lb
        .client
        .publish_audio_data(aac_sequence_header(), t0, false);
    lb.client(audio)?;
    for i in 0..video_frames {
        let keyframe = i % 30 == 0;
        let ts = RtmpTimestamp::new(i * 33);
        let video = lb.client.publish_video_data(
            avc_frame(keyframe, 66, if keyframe { 5000 } else { 1000 }),
            ts,
            false,
        );
        lb.client(video)?;
        let ts = RtmpTimestamp::new(i * 33 + 5);
        let audio = lb.client.publish_audio_data(aac_frame(200), ts, false);
        lb.client(audio)?;
    }
    Ok(lb)
}

/// The client bytes (after the handshake) of a valid publish of `good-key` with `video_frames`
/// video frames: the seed for the fuzz target and its stable mutation test.
pub fn recorded_publish_session(video_frames: u32) -> Vec<u8> {
    publish_session(&RtmpConfig::default(), "good-key", video_frames)
        .map(|lb| lb.sent)
        .unwrap_or_default()
}

/// Limit used by [`fuzz_connection`], small so that the limits are reached.
pub const FUZZ_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest piece fed at once by [`fuzz_connection`].
const FUZZ_MAX_PIECE: usize = 8 * 1024;

/// Fuzz entry point: a fresh connection, a valid handshake, then `data` fed in pieces of varying
/// size; publish requests are accepted (refused for keys starting with `x`). Panics only on a
/// bug: a panic inside the core, or buffering beyond its bound.
pub fn fuzz_connection(data: &[u8]) {
    let config = RtmpConfig {
        max_message_bytes: FUZZ_MAX_MESSAGE_BYTES,
        ..RtmpConfig::default()
    };
    let bound = 2 * FUZZ_MAX_MESSAGE_BYTES + FUZZ_MAX_PIECE + 64 * 1024;
    let mut now = Instant::now();
    let mut conn = Connection::new(&config, now);
    if let Err(e) = client_handshake(&mut conn, now) {
        panic!("valid handshake failed: {e}");
    }
    const PIECES: [usize; 8] = [1, 7, 64, 300, 4096, 17, 8192, 2];
    let mut rest = data;
    let mut i = data.len();
    while !rest.is_empty() {
        let n = PIECES[i % PIECES.len()].min(rest.len()).min(FUZZ_MAX_PIECE);
        i += 1;
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        now += Duration::from_millis(1);
        conn.feed(piece, now);
        loop {
            match conn.poll() {
                Ok(Some(Output::PublishRequested { stream_key, .. })) => {
                    let answered = if stream_key.starts_with('x') {
                        conn.refuse_publish(RefuseReason::UnknownKey)
                    } else {
                        conn.accept_publish(now)
                    };
                    assert!(answered.is_ok(), "answering a publish request failed");
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
            let buffered = conn.buffered_bytes();
            assert!(buffered <= bound, "{buffered} bytes buffered > {bound}");
        }
        let buffered = conn.buffered_bytes();
        assert!(buffered <= bound, "{buffered} bytes buffered > {bound}");
    }
    let _ = conn.handle_timeout(now + Duration::from_secs(3600));
}
