//! The RTMP connection core driven without sockets: `rml_rtmp`'s `ClientSession` against our
//! `Connection` in memory, hand-built hostile input, deadlines with synthetic time, and a seeded
//! stable stand-in for the fuzz target (mutations of a recorded publish session).

use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::MessagePayload;
use rml_rtmp::sessions::ClientSessionEvent;
use rml_rtmp::time::RtmpTimestamp;
use wemaster_media::rtmp::testing::{
    Decide, Loopback, aac_frame, avc_frame, client_handshake, publish_session,
};
use wemaster_media::rtmp::{
    AudioCodec, Connection, ConnectionError, EndReason, MediaFrame, Output, RefuseReason,
    RtmpConfig, VideoCodec, fuzz_connection, recorded_publish_session,
};

fn config() -> RtmpConfig {
    RtmpConfig::default()
}

/// Raw chunk bytes for one message with a full (type 0) header, chunked at 4096 bytes (the chunk
/// size `ClientSession` announces after `connect`).
fn chunked(type_id: u8, stream_id: u32, timestamp: u32, data: &[u8]) -> Vec<u8> {
    let payload = MessagePayload {
        timestamp: RtmpTimestamp::new(timestamp),
        type_id,
        message_stream_id: stream_id,
        data: Bytes::copy_from_slice(data),
    };
    let mut serializer = ChunkSerializer::new();
    serializer
        .set_max_chunk_size(4096, RtmpTimestamp::new(0))
        .unwrap();
    serializer.serialize(&payload, true, false).unwrap().bytes
}

fn connected() -> Loopback {
    let mut lb = Loopback::new(&config()).unwrap();
    let connect = lb.client.request_connection("live".to_string());
    lb.client(connect).unwrap();
    assert!(
        lb.events
            .contains(&ClientSessionEvent::ConnectionRequestAccepted)
    );
    lb
}

#[test]
fn a_client_session_publish_yields_metadata_headers_and_frames() {
    let lb = publish_session(&config(), "good-key", 60).unwrap();
    assert!(lb.error.is_none(), "{:?}", lb.error);
    assert!(
        lb.events
            .contains(&ClientSessionEvent::PublishRequestAccepted)
    );
    assert_eq!(
        lb.outputs[0],
        Output::PublishRequested {
            app: "live".into(),
            stream_key: "good-key".into()
        }
    );
    let frames = lb.frames();
    let MediaFrame::Metadata(info) = frames[0] else {
        panic!("first frame is {:?}", frames[0]);
    };
    assert_eq!((info.width, info.height), (Some(640), Some(360)));
    assert_eq!(info.frame_rate, Some(30.0));
    assert_eq!(info.video_codec, Some(VideoCodec::H264));
    assert_eq!(info.audio_codec, Some(AudioCodec::Aac));
    assert_eq!(info.encoder.as_deref(), Some("Lavf59.27.100"));

    // The AVC sequence header adds profile and level: a second, fuller Metadata.
    let last_info = frames
        .iter()
        .rev()
        .find_map(|f| match f {
            MediaFrame::Metadata(i) => Some(i),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (last_info.video_profile, last_info.video_level),
        (Some(100), Some(31))
    );
    assert_eq!(
        (last_info.audio_sample_rate, last_info.audio_channels),
        (Some(44100), Some(2))
    );

    let video: Vec<_> = frames
        .iter()
        .filter_map(|f| match f {
            MediaFrame::Video(v) => Some(v),
            _ => None,
        })
        .collect();
    let audio: Vec<_> = frames
        .iter()
        .filter_map(|f| match f {
            MediaFrame::Audio(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(video.len(), 61);
    assert_eq!(audio.len(), 61);
    assert!(video[0].sequence_header && audio[0].sequence_header);
    assert_eq!(
        video
            .iter()
            .filter(|v| v.keyframe && !v.sequence_header)
            .count(),
        2
    );
    assert!(video.windows(2).all(|w| w[0].dts_ms <= w[1].dts_ms));
    assert!(audio.windows(2).all(|w| w[0].dts_ms <= w[1].dts_ms));
    assert_eq!(video[60].dts_ms, 59 * 33);
    assert_eq!(video[60].cts_ms, 66);
    assert_eq!(video[60].data, avc_frame(false, 66, 1000));
    assert_eq!(video[31].data, avc_frame(true, 66, 5000));
    assert_eq!(audio[60].data, aac_frame(200));
}

#[test]
fn a_refused_publish_gets_an_error_status_and_no_frames() {
    let mut lb = connected();
    lb.decide = Decide::Refuse(RefuseReason::UnknownKey);
    let publish = lb.client.request_publishing(
        "bad-key".into(),
        rml_rtmp::sessions::PublishRequestType::Live,
    );
    lb.client(publish).unwrap();
    assert!(
        lb.events
            .contains(&ClientSessionEvent::UnhandleableOnStatusCode {
                code: "NetStream.Publish.BadName".into()
            })
    );
    assert!(!lb.server.is_publishing());
    // Whatever comes next is ignored.
    lb.raw(&chunked(9, 1, 0, &avc_frame(true, 0, 10))).unwrap();
    assert!(lb.frames().is_empty());
    assert!(lb.error.is_none());
}

#[test]
fn the_query_suffix_of_a_stream_key_is_dropped() {
    let lb = publish_session(&config(), "good-key?token=abc", 0).unwrap();
    assert_eq!(
        lb.outputs[0],
        Output::PublishRequested {
            app: "live".into(),
            stream_key: "good-key".into()
        }
    );
}

#[test]
fn delete_stream_ends_the_publish() {
    let mut lb = publish_session(&config(), "good-key", 3).unwrap();
    let stop = lb.client.stop_publishing();
    lb.client_many(stop).unwrap();
    assert_eq!(lb.outputs.last(), Some(&Output::Unpublished));
    assert!(!lb.server.is_publishing());
}

#[test]
fn pings_are_answered() {
    let mut lb = connected();
    let ping = lb
        .client
        .send_ping_request()
        .map(|(packet, _)| rml_rtmp::sessions::ClientSessionResult::OutboundResponse(packet));
    lb.client(ping).unwrap();
    assert!(
        lb.events
            .iter()
            .any(|e| matches!(e, ClientSessionEvent::PingResponseReceived { .. }))
    );
}

#[test]
fn handshake_timeout_closes_a_connection_that_sends_nothing() {
    let t0 = Instant::now();
    let mut conn = Connection::new(&config(), t0);
    assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    assert!(conn.handle_timeout(t0 + Duration::from_secs(4)).is_ok());
    let err = conn
        .handle_timeout(t0 + Duration::from_secs(5))
        .unwrap_err();
    assert_eq!(err.end_reason(), EndReason::Timeout);
}

#[test]
fn a_connection_that_never_publishes_times_out() {
    let mut lb = connected();
    let deadline = lb.server.poll_timeout().unwrap();
    assert!(deadline <= lb.now + Duration::from_secs(10));
    let err = lb.server.handle_timeout(deadline).unwrap_err();
    assert_eq!(err, ConnectionError::Timeout("no publish in time"));
}

#[test]
fn a_silent_publisher_times_out_and_media_postpones_the_deadline() {
    let mut lb = publish_session(&config(), "good-key", 1).unwrap();
    let first = lb.server.poll_timeout().unwrap();
    lb.now += Duration::from_secs(8);
    lb.raw(&chunked(8, 1, 100, &aac_frame(10))).unwrap();
    let later = lb.server.poll_timeout().unwrap();
    assert!(later > first);
    assert!(lb.server.handle_timeout(first).is_ok());
    let err = lb.server.handle_timeout(later).unwrap_err();
    assert_eq!(err, ConnectionError::Timeout("no media in time"));
}

#[test]
fn a_bad_handshake_is_refused() {
    let mut conn = Connection::new(&config(), Instant::now());
    conn.feed(&[6u8; 1537], Instant::now());
    assert!(matches!(conn.poll(), Err(ConnectionError::Handshake(_))));
    assert_eq!(conn.poll(), Ok(None));
}

#[test]
fn an_absurd_chunk_size_closes_the_connection() {
    let mut lb = connected();
    lb.raw(&chunked(1, 0, 0, &0x7FFF_FFFFu32.to_be_bytes()))
        .unwrap();
    let err = lb.error.unwrap();
    assert!(err.to_string().contains("chunk size 2147483647"), "{err}");
}

#[test]
fn a_message_larger_than_the_limit_closes_the_connection() {
    let mut lb = connected();
    // Type 0 header on csid 6 announcing 9 MiB of video; no payload needed.
    let len = 9 * 1024 * 1024u32;
    let mut header = vec![0x06, 0, 0, 0];
    header.extend_from_slice(&len.to_be_bytes()[1..]);
    header.extend_from_slice(&[9, 1, 0, 0, 0]);
    lb.raw(&header).unwrap();
    let err = lb.error.unwrap();
    assert!(matches!(err, ConnectionError::Chunk(_)), "{err}");
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
}

#[test]
fn bogus_amf_in_a_command_closes_the_connection() {
    let mut lb = connected();
    lb.raw(&chunked(20, 0, 0, &[0x02, 0xFF, 0xFF, b'x']))
        .unwrap();
    assert!(matches!(lb.error, Some(ConnectionError::Amf { .. })));
}

#[test]
fn deeply_nested_amf_is_refused_without_overflowing_the_stack() {
    let mut lb = connected();
    let mut command = vec![0x02, 0, 1, b'x', 0x00];
    command.extend_from_slice(&0f64.to_be_bytes());
    for _ in 0..15_000 {
        command.extend_from_slice(&[0x03, 0, 1, b'a']);
    }
    lb.raw(&chunked(20, 0, 0, &command)).unwrap();
    assert!(
        lb.error
            .as_ref()
            .is_some_and(|e| e.to_string().contains("nested deeper")),
        "{:?}",
        lb.error
    );
}

#[test]
fn a_lone_set_data_frame_is_ignored() {
    // rml_rtmp's ServerSession indexes past the end of these and panics.
    let mut lb = publish_session(&config(), "good-key", 0).unwrap();
    let before = lb.frames().len();
    let mut data = vec![0x02, 0, 13];
    data.extend_from_slice(b"@setDataFrame");
    lb.raw(&chunked(18, 1, 0, &data)).unwrap();
    data.extend_from_slice(&[0x02, 0, 10]);
    data.extend_from_slice(b"onMetaData");
    lb.raw(&chunked(18, 1, 0, &data)).unwrap();
    assert!(lb.error.is_none(), "{:?}", lb.error);
    assert_eq!(lb.frames().len(), before);
}

#[test]
fn create_stream_spam_is_bounded() {
    let mut lb = connected();
    let mut command = vec![0x02, 0, 12];
    command.extend_from_slice(b"createStream");
    command.push(0x00);
    command.extend_from_slice(&2f64.to_be_bytes());
    command.push(0x05);
    for _ in 0..20 {
        lb.raw(&chunked(20, 0, 0, &command)).unwrap();
    }
    assert!(
        lb.error
            .as_ref()
            .is_some_and(|e| e.to_string().contains("createStream")),
        "{:?}",
        lb.error
    );
}

#[test]
fn timestamps_that_jump_back_are_repaired_to_stay_monotonic() {
    let mut lb = publish_session(&config(), "good-key", 3).unwrap();
    for ts in [100_000u32, 100_033, 50, 83, u32::MAX - 5, 20] {
        lb.raw(&chunked(9, 1, ts, &avc_frame(false, 0, 10)))
            .unwrap();
    }
    assert!(lb.error.is_none());
    let dts: Vec<u64> = lb
        .frames()
        .iter()
        .filter_map(|f| match f {
            MediaFrame::Video(v) if !v.sequence_header => Some(v.dts_ms),
            _ => None,
        })
        .collect();
    assert!(dts.windows(2).all(|w| w[0] <= w[1]), "{dts:?}");
    // Nothing jumped by more than the repair step after the first frames.
    assert!(dts.windows(2).all(|w| w[1] - w[0] <= 10_000), "{dts:?}");
}

/// An FLV tag as carried inside an aggregate message.
fn flv_tag(kind: u8, ts: u32, body: &[u8]) -> Vec<u8> {
    let mut tag = vec![kind];
    tag.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    tag.extend_from_slice(&ts.to_be_bytes()[1..]);
    tag.push((ts >> 24) as u8);
    tag.extend_from_slice(&[0, 0, 0]);
    tag.extend_from_slice(body);
    tag.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
    tag
}

#[test]
fn aggregate_messages_are_unpacked_with_rebased_timestamps() {
    let mut lb = publish_session(&config(), "good-key", 0).unwrap();
    let before = lb.frames().len();
    let mut aggregate = flv_tag(9, 5000, &avc_frame(true, 0, 10));
    aggregate.extend(flv_tag(8, 5010, &aac_frame(5)));
    aggregate.extend(flv_tag(9, 5033, &avc_frame(false, 0, 10)));
    lb.raw(&chunked(22, 1, 1000, &aggregate)).unwrap();
    assert!(lb.error.is_none(), "{:?}", lb.error);
    let got: Vec<(char, u64)> = lb.frames()[before..]
        .iter()
        .filter_map(|f| match f {
            MediaFrame::Video(v) => Some(('v', v.dts_ms)),
            MediaFrame::Audio(a) => Some(('a', a.dts_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![('v', 1000), ('a', 1010), ('v', 1033)]);
}

#[test]
fn media_on_a_stream_that_is_not_published_is_ignored() {
    let mut lb = publish_session(&config(), "good-key", 0).unwrap();
    let before = lb.frames().len();
    lb.raw(&chunked(9, 7, 0, &avc_frame(true, 0, 10))).unwrap();
    assert_eq!(lb.frames().len(), before);
}

#[test]
fn malformed_media_is_dropped_and_counted_without_closing() {
    let mut lb = publish_session(&config(), "good-key", 0).unwrap();
    lb.raw(&chunked(9, 1, 0, &[0x17, 0x01])).unwrap();
    lb.raw(&chunked(8, 1, 0, &[0xAF])).unwrap();
    assert!(lb.error.is_none());
    assert_eq!(lb.server.malformed_media(), 2);
    assert!(lb.server.is_publishing());
}

#[test]
fn garbage_after_the_handshake_closes_the_connection_with_bounded_memory() {
    let mut conn = Connection::new(&config(), Instant::now());
    client_handshake(&mut conn, Instant::now()).unwrap();
    let mut seed = 0x9E37_79B9u32;
    let mut garbage = vec![0u8; 64 * 1024];
    for b in garbage.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        *b = seed as u8;
    }
    let mut failed = false;
    for piece in garbage.chunks(4096) {
        conn.feed(piece, Instant::now());
        loop {
            match conn.poll() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(conn.buffered_bytes() <= 2 * config().max_message_bytes + 4096);
        if failed {
            break;
        }
    }
    assert!(failed, "64 KiB of random bytes parsed as valid RTMP");
}

/// Deterministic PRNG for the mutation test (no extra dependency).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(seed: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        if data.is_empty() {
            data.push(rng.next() as u8);
        }
        let at = rng.below(data.len());
        match rng.below(7) {
            0 => data[at] ^= 1 << rng.below(8),
            1 => data[at] = rng.next() as u8,
            2 => {
                let n = rng.below(16).min(data.len() - at);
                data.drain(at..at + n);
            }
            3 => {
                let bytes: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            4 => {
                // Interesting values: lengths and sizes at their limits.
                let v: [u8; 4] = match rng.below(4) {
                    0 => [0xFF; 4],
                    1 => [0x00; 4],
                    2 => [0x7F, 0xFF, 0xFF, 0xFF],
                    _ => [0x00, 0xFF, 0xFF, 0xFF],
                };
                let end = (at + 4).min(data.len());
                data[at..end].copy_from_slice(&v[..end - at]);
            }
            5 => {
                // Duplicate a slice (replays chunks).
                let n = rng.below(256).min(data.len() - at);
                let copy = data[at..at + n].to_vec();
                let to = rng.below(data.len());
                data.splice(to..to, copy);
            }
            _ => data.truncate(at),
        }
    }
    data
}

#[test]
fn fuzz_mutations_of_a_recorded_publish_session_never_panic() {
    let seed = recorded_publish_session(8);
    assert!(
        seed.len() > 10_000,
        "recorded session is {} bytes",
        seed.len()
    );
    // Seed corpus for the cargo-fuzz target (see media/fuzz/README.md).
    if let Ok(dir) = std::env::var("WEMASTER_FUZZ_SEED_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/publish-session"), &seed).unwrap();
    }
    // The unmutated session runs through the fuzz entry point too.
    fuzz_connection(&seed);
    let mut rng = XorShift(0x5EED_0FF2);
    let started = Instant::now();
    let mut runs = 0;
    while runs < 10_000 && started.elapsed() < Duration::from_secs(4) {
        let input = mutate(&seed, &mut rng);
        fuzz_connection(&input);
        runs += 1;
    }
    // Plain random inputs as well.
    for len in [0usize, 1, 2, 3, 11, 12, 100, 5000] {
        let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        fuzz_connection(&input);
    }
    assert!(runs >= 1000, "only {runs} runs in 4 s");
    eprintln!("fuzz: {runs} mutated sessions in {:?}", started.elapsed());
}
