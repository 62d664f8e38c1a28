//! Inbound RTMP chunk stream: turns the bytes after the handshake into whole messages.
//!
//! RTMP splits each message into chunks of at most the peer's chunk size, each chunk prefixed
//! with a header that is compressed against the previous header on the same chunk stream id
//! (csid): type 0 carries everything, type 1 omits the message stream id, type 2 carries only a
//! timestamp delta, type 3 nothing. Chunks of different chunk streams may interleave, so every
//! chunk stream assembles its own message.
//!
//! Bounds (the reason this is not `rml_rtmp::chunk_io::ChunkDeserializer`, see `rtmp/mod.rs`):
//! - a message longer than `max_message` is refused when its header arrives;
//! - the bytes reserved for messages being assembled, over all chunk streams, never exceed
//!   `max_message` + min(`max_message`, 1 MiB) (one maximal video message plus interleaved
//!   audio); the reservation is virtual until bytes arrive (large buffers are mapped lazily);
//! - at most [`MAX_CHUNK_STREAMS`] chunk stream ids are remembered;
//! - the reader consumes its input as it goes: besides the messages being assembled it keeps
//!   at most one incomplete chunk header (≤ 18 bytes) in the caller's buffer.
//!
//! Timestamp semantics follow ffmpeg's reader (the writer Jibri uses): type 0 sets an absolute
//! timestamp and makes it the "delta" a following type 3 header re-applies; types 1/2 add their
//! delta; a type 3 header that starts a new message adds the stored delta again, and a type 3
//! continuation chunk keeps the message's timestamp. An extended (32-bit) timestamp follows the
//! header whenever the 24-bit field is 0xFFFFFF, including in type 3 chunks after such a header.
//! Timestamps wrap at 2^32; [`super::timestamps`] unwraps and repairs them.

use bytes::{Buf, Bytes, BytesMut};

/// Chunk size before the peer sends SetChunkSize (RTMP specification).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Distinct chunk stream ids remembered per connection. Encoders use a handful (ffmpeg 2–8).
pub const MAX_CHUNK_STREAMS: usize = 64;

/// A complete RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub csid: u32,
    /// Raw 32-bit timestamp in ms (wraps).
    pub timestamp: u32,
    pub type_id: u8,
    pub message_stream_id: u32,
    pub payload: Bytes,
}

/// Chunk-level protocol errors; each closes the connection as
/// [`super::EndReason::ProtocolError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("message of {length} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { length: usize, limit: usize },
    #[error("chunk size {size} is outside 1..={limit}")]
    InvalidChunkSize { size: u32, limit: usize },
    #[error("compressed chunk header (type {fmt}) on chunk stream {csid} with no previous header")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error("new message header on chunk stream {csid} before its previous message completed")]
    InterruptedMessage { csid: u32 },
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyChunkStreams,
    #[error("messages being assembled would hold more than {limit} bytes")]
    AssemblyBudgetExceeded { limit: usize },
}

/// State of one chunk stream id.
#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    /// Delta re-applied by a type 3 header that starts a new message (absolute after type 0).
    delta: u32,
    /// The raw 24-bit timestamp field of the last type 0/1/2 header; 0xFFFFFF means extended
    /// timestamps follow every header on this chunk stream.
    ts_field: u32,
    length: u32,
    type_id: u8,
    message_stream_id: u32,
    /// The message being assembled, if any (capacity = its full length, counted in `reserved`).
    partial: Option<BytesMut>,
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Expecting a chunk header.
    Header,
    /// Copying `left` more payload bytes of the current chunk into chunk stream `index`.
    Payload { index: usize, left: usize },
}

/// Sans-IO reader of the inbound chunk stream.
#[derive(Debug)]
pub struct ChunkReader {
    chunk_size: u32,
    max_message: usize,
    budget: usize,
    /// Bytes reserved by messages being assembled (sum of their full lengths).
    reserved: usize,
    streams: Vec<ChunkStream>,
    stage: Stage,
}

impl ChunkReader {
    pub fn new(max_message: usize) -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message,
            budget: max_message.saturating_add(max_message.min(1024 * 1024)),
            reserved: 0,
            streams: Vec::new(),
            stage: Stage::Header,
        }
    }

    /// Apply the peer's SetChunkSize. Sizes above `max_message` are refused: no encoder needs
    /// them and they only serve to probe buffering.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size as usize > self.max_message {
            return Err(ChunkError::InvalidChunkSize {
                size,
                limit: self.max_message,
            });
        }
        self.chunk_size = size;
        Ok(())
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Apply the peer's Abort message: drop the message being assembled on `csid`.
    pub fn abort(&mut self, csid: u32) {
        // Abort arrives as a message of its own, i.e. between chunks (`Stage::Header`).
        if let Some(stream) = self.streams.iter_mut().find(|s| s.csid == csid)
            && stream.partial.take().is_some()
        {
            self.reserved -= (stream.length as usize).min(self.reserved);
        }
    }

    /// Bytes held for messages being assembled.
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Consume bytes from the front of `input` until a message completes (returned) or `input`
    /// is exhausted (`Ok(None)`; an incomplete header stays in `input`).
    pub fn read(&mut self, input: &mut BytesMut) -> Result<Option<Message>, ChunkError> {
        loop {
            match self.stage {
                Stage::Header => {
                    let Some(header) = parse_header(input, &self.streams) else {
                        return Ok(None);
                    };
                    input.advance(header.len);
                    if let Some(message) = self.start_chunk(header)? {
                        return Ok(Some(message));
                    }
                }
                Stage::Payload { index, left } => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = left.min(input.len());
                    let stream = &mut self.streams[index];
                    if let Some(partial) = stream.partial.as_mut() {
                        partial.extend_from_slice(&input[..take]);
                    }
                    input.advance(take);
                    let left = left - take;
                    if left > 0 {
                        self.stage = Stage::Payload { index, left };
                        continue;
                    }
                    self.stage = Stage::Header;
                    if let Some(message) = self.finish_if_complete(index) {
                        return Ok(Some(message));
                    }
                }
            }
        }
    }

    /// Apply a parsed header; returns a message when it completes one (zero-length messages).
    fn start_chunk(&mut self, header: Header) -> Result<Option<Message>, ChunkError> {
        let index = match self.streams.iter().position(|s| s.csid == header.csid) {
            Some(index) => index,
            None => {
                if header.fmt != 0 {
                    return Err(ChunkError::NoPreviousHeader {
                        csid: header.csid,
                        fmt: header.fmt,
                    });
                }
                if self.streams.len() >= MAX_CHUNK_STREAMS {
                    return Err(ChunkError::TooManyChunkStreams);
                }
                self.streams.push(ChunkStream {
                    csid: header.csid,
                    timestamp: 0,
                    delta: 0,
                    ts_field: 0,
                    length: 0,
                    type_id: 0,
                    message_stream_id: 0,
                    partial: None,
                });
                self.streams.len() - 1
            }
        };
        let stream = &mut self.streams[index];
        let continuation = stream.partial.is_some();
        if continuation {
            // Spec: continuation chunks carry type 3 headers. Like ffmpeg's reader, accept a
            // fuller header that agrees with the message (rml_rtmp's serializer writes type 0
            // continuations when forced uncompressed); anything else is an interrupted message.
            let agrees = header.length.is_none_or(|l| l == stream.length)
                && header.type_id.is_none_or(|t| t == stream.type_id);
            if !agrees {
                return Err(ChunkError::InterruptedMessage { csid: header.csid });
            }
        } else {
            match header.fmt {
                0 => {
                    stream.timestamp = header.timestamp;
                    stream.delta = header.timestamp;
                }
                1 | 2 => {
                    stream.delta = header.timestamp;
                    stream.timestamp = stream.timestamp.wrapping_add(header.timestamp);
                }
                _ => stream.timestamp = stream.timestamp.wrapping_add(stream.delta),
            }
            if header.fmt != 3 {
                stream.ts_field = header.ts_field;
            }
            if let Some(length) = header.length {
                stream.length = length;
            }
            if let Some(type_id) = header.type_id {
                stream.type_id = type_id;
            }
            if let Some(id) = header.message_stream_id {
                stream.message_stream_id = id;
            }
        }

        let length = stream.length as usize;
        if !continuation {
            if length > self.max_message {
                return Err(ChunkError::MessageTooLarge {
                    length,
                    limit: self.max_message,
                });
            }
            if self.reserved + length > self.budget {
                return Err(ChunkError::AssemblyBudgetExceeded { limit: self.budget });
            }
            self.reserved += length;
            stream.partial = Some(BytesMut::with_capacity(length));
        }
        let have = stream.partial.as_ref().map_or(0, |p| p.len());
        let left = length.saturating_sub(have).min(self.chunk_size as usize);
        if left == 0 {
            // Zero-length message (complete at once).
            return Ok(self.finish_if_complete(index));
        }
        self.stage = Stage::Payload { index, left };
        Ok(None)
    }

    fn finish_if_complete(&mut self, index: usize) -> Option<Message> {
        let stream = &mut self.streams[index];
        let complete = stream
            .partial
            .as_ref()
            .is_some_and(|p| p.len() >= stream.length as usize);
        if !complete {
            return None;
        }
        let payload = stream.partial.take()?.freeze();
        self.reserved -= (stream.length as usize).min(self.reserved);
        Some(Message {
            csid: stream.csid,
            timestamp: stream.timestamp,
            type_id: stream.type_id,
            message_stream_id: stream.message_stream_id,
            payload,
        })
    }
}

/// A parsed chunk header; `None` fields are inherited from the chunk stream.
#[derive(Debug)]
struct Header {
    /// Bytes the header occupies in the input.
    len: usize,
    fmt: u8,
    csid: u32,
    /// Absolute (type 0) or delta (types 1/2); extended value when `ts_field` is 0xFFFFFF.
    timestamp: u32,
    ts_field: u32,
    length: Option<u32>,
    type_id: Option<u8>,
    message_stream_id: Option<u32>,
}

const EXTENDED: u32 = 0x00FF_FFFF;

/// Parse a complete chunk header at the start of `input`, or `None` if more bytes are needed.
fn parse_header(input: &[u8], streams: &[ChunkStream]) -> Option<Header> {
    let first = *input.first()?;
    let fmt = first >> 6;
    let (csid, mut pos) = match first & 0x3F {
        0 => (64 + u32::from(*input.get(1)?), 2),
        1 => (
            64 + u32::from(*input.get(1)?) + 256 * u32::from(*input.get(2)?),
            3,
        ),
        n => (u32::from(n), 1),
    };
    let mut header = Header {
        len: 0,
        fmt,
        csid,
        timestamp: 0,
        ts_field: 0,
        length: None,
        type_id: None,
        message_stream_id: None,
    };
    if fmt <= 2 {
        header.ts_field = be24(input.get(pos..pos + 3)?);
        header.timestamp = header.ts_field;
        pos += 3;
    }
    if fmt <= 1 {
        header.length = Some(be24(input.get(pos..pos + 3)?));
        header.type_id = Some(*input.get(pos + 3)?);
        pos += 4;
    }
    if fmt == 0 {
        let id = input.get(pos..pos + 4)?;
        header.message_stream_id = Some(u32::from_le_bytes([id[0], id[1], id[2], id[3]]));
        pos += 4;
    }
    let extended = if fmt == 3 {
        streams
            .iter()
            .find(|s| s.csid == csid)
            .is_some_and(|s| s.ts_field == EXTENDED)
    } else {
        header.ts_field == EXTENDED
    };
    if extended {
        let ext = input.get(pos..pos + 4)?;
        if fmt != 3 {
            header.timestamp = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
        }
        pos += 4;
    }
    header.len = pos;
    Some(header)
}

fn be24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a chunk: basic header for `csid`, then the raw message-header bytes and payload.
    fn basic(fmt: u8, csid: u32) -> Vec<u8> {
        match csid {
            2..=63 => vec![(fmt << 6) | csid as u8],
            64..=319 => vec![fmt << 6, (csid - 64) as u8],
            _ => {
                let v = csid - 64;
                vec![(fmt << 6) | 1, (v & 0xFF) as u8, (v >> 8) as u8]
            }
        }
    }

    fn type0(csid: u32, ts: u32, len: u32, type_id: u8, msid: u32) -> Vec<u8> {
        let mut b = basic(0, csid);
        let field = ts.min(EXTENDED);
        b.extend_from_slice(&field.to_be_bytes()[1..]);
        b.extend_from_slice(&len.to_be_bytes()[1..]);
        b.push(type_id);
        b.extend_from_slice(&msid.to_le_bytes());
        if field == EXTENDED {
            b.extend_from_slice(&ts.to_be_bytes());
        }
        b
    }

    fn type1(csid: u32, delta: u32, len: u32, type_id: u8) -> Vec<u8> {
        let mut b = basic(1, csid);
        b.extend_from_slice(&delta.to_be_bytes()[1..]);
        b.extend_from_slice(&len.to_be_bytes()[1..]);
        b.push(type_id);
        b
    }

    fn type2(csid: u32, delta: u32) -> Vec<u8> {
        let mut b = basic(2, csid);
        b.extend_from_slice(&delta.to_be_bytes()[1..]);
        b
    }

    fn read_all(reader: &mut ChunkReader, bytes: &[u8]) -> Result<Vec<Message>, ChunkError> {
        let mut input = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = reader.read(&mut input)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn a_message_split_over_chunks_is_reassembled() {
        let mut r = ChunkReader::new(1 << 20);
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut bytes = type0(4, 1000, 300, 9, 1);
        bytes.extend_from_slice(&payload[..128]);
        bytes.extend(basic(3, 4));
        bytes.extend_from_slice(&payload[128..256]);
        bytes.extend(basic(3, 4));
        bytes.extend_from_slice(&payload[256..]);
        let msgs = read_all(&mut r, &bytes).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].payload, payload);
        assert_eq!(msgs[0].timestamp, 1000);
        assert_eq!(msgs[0].type_id, 9);
        assert_eq!(msgs[0].message_stream_id, 1);
        assert_eq!(r.reserved(), 0);
    }

    #[test]
    fn bytes_fed_one_at_a_time_give_the_same_messages() {
        let mut r = ChunkReader::new(1 << 20);
        let mut bytes = type0(300, 5, 200, 8, 1);
        bytes.extend(std::iter::repeat_n(7u8, 128));
        bytes.extend(basic(3, 300));
        bytes.extend(std::iter::repeat_n(7u8, 72));
        let mut input = BytesMut::new();
        let mut got = Vec::new();
        for b in bytes {
            input.extend_from_slice(&[b]);
            while let Some(m) = r.read(&mut input).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].csid, 300);
        assert_eq!(got[0].payload.len(), 200);
    }

    #[test]
    fn interleaved_chunk_streams_assemble_separately() {
        let mut r = ChunkReader::new(1 << 20);
        let mut bytes = type0(6, 40, 200, 9, 1);
        bytes.extend(std::iter::repeat_n(1u8, 128));
        bytes.extend(type0(4, 40, 10, 8, 1));
        bytes.extend(std::iter::repeat_n(2u8, 10));
        bytes.extend(basic(3, 6));
        bytes.extend(std::iter::repeat_n(1u8, 72));
        let msgs = read_all(&mut r, &bytes).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].type_id, msgs[0].payload.len()), (8, 10));
        assert_eq!((msgs[1].type_id, msgs[1].payload.len()), (9, 200));
        assert!(msgs[1].payload.iter().all(|&b| b == 1));
    }

    #[test]
    fn compressed_headers_apply_deltas() {
        let mut r = ChunkReader::new(1 << 20);
        let mut bytes = type0(6, 100, 2, 9, 1);
        bytes.extend([0, 0]);
        bytes.extend(type1(6, 33, 3, 9));
        bytes.extend([0, 0, 0]);
        bytes.extend(type2(6, 34));
        bytes.extend([0, 0, 0]);
        bytes.extend(basic(3, 6)); // new message: +34 again
        bytes.extend([0, 0, 0]);
        let ts: Vec<u32> = read_all(&mut r, &bytes)
            .unwrap()
            .iter()
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(ts, vec![100, 133, 167, 201]);
    }

    #[test]
    fn extended_timestamps_are_read_in_every_chunk_of_the_message() {
        let mut r = ChunkReader::new(1 << 20);
        let ts = 0x0100_0000;
        let mut bytes = type0(6, ts, 130, 9, 1);
        bytes.extend(std::iter::repeat_n(0u8, 128));
        bytes.extend(basic(3, 6));
        bytes.extend_from_slice(&ts.to_be_bytes());
        bytes.extend([9, 9]);
        let msgs = read_all(&mut r, &bytes).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].timestamp, ts);
        assert_eq!(&msgs[0].payload[128..], &[9, 9]);
    }

    #[test]
    fn timestamps_wrap_at_32_bits() {
        let mut r = ChunkReader::new(1 << 20);
        let mut bytes = type0(6, u32::MAX - 10, 1, 9, 1);
        bytes.push(0);
        bytes.extend(type2(6, 20));
        bytes.push(0);
        let msgs = read_all(&mut r, &bytes).unwrap();
        assert_eq!(msgs[1].timestamp, 9);
    }

    #[test]
    fn a_message_longer_than_the_limit_is_refused_at_its_header() {
        let mut r = ChunkReader::new(1000);
        let err = read_all(&mut r, &type0(6, 0, 1001, 9, 1)).unwrap_err();
        assert_eq!(
            err,
            ChunkError::MessageTooLarge {
                length: 1001,
                limit: 1000
            }
        );
        assert_eq!(r.reserved(), 0);
    }

    #[test]
    fn absurd_chunk_sizes_are_refused() {
        let mut r = ChunkReader::new(1000);
        assert!(r.set_chunk_size(0).is_err());
        assert!(r.set_chunk_size(0x7FFF_FFFF).is_err());
        assert!(r.set_chunk_size(1000).is_ok());
    }

    #[test]
    fn announced_lengths_over_many_chunk_streams_exhaust_the_budget() {
        let mut r = ChunkReader::new(1000);
        r.set_chunk_size(1).unwrap();
        let mut bytes = Vec::new();
        for csid in 3..6 {
            bytes.extend(type0(csid, 0, 900, 9, 1));
            bytes.push(0); // one byte of each, never completed
        }
        let err = read_all(&mut r, &bytes).unwrap_err();
        assert_eq!(err, ChunkError::AssemblyBudgetExceeded { limit: 2000 });
        assert!(r.reserved() <= 2000);
    }

    #[test]
    fn compressed_header_without_history_is_an_error() {
        let mut r = ChunkReader::new(1000);
        assert!(matches!(
            read_all(&mut r, &type2(5, 1)),
            Err(ChunkError::NoPreviousHeader { csid: 5, fmt: 2 })
        ));
    }

    #[test]
    fn a_new_message_header_mid_message_is_an_error() {
        let mut r = ChunkReader::new(1000);
        let mut bytes = type0(6, 0, 200, 9, 1);
        bytes.extend(std::iter::repeat_n(0u8, 128));
        bytes.extend(type1(6, 1, 50, 9));
        assert_eq!(
            read_all(&mut r, &bytes).unwrap_err(),
            ChunkError::InterruptedMessage { csid: 6 }
        );
    }

    #[test]
    fn a_full_header_that_agrees_with_the_message_continues_it() {
        let mut r = ChunkReader::new(1000);
        let mut bytes = type0(6, 7, 200, 9, 1);
        bytes.extend(std::iter::repeat_n(1u8, 128));
        bytes.extend(type0(6, 7, 200, 9, 1));
        bytes.extend(std::iter::repeat_n(2u8, 72));
        let msgs = read_all(&mut r, &bytes).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].payload.len(), 200);
        assert_eq!(msgs[0].payload[199], 2);
    }

    #[test]
    fn too_many_chunk_streams_is_an_error() {
        let mut r = ChunkReader::new(1000);
        let mut bytes = Vec::new();
        for csid in 2..(2 + MAX_CHUNK_STREAMS as u32 + 1) {
            bytes.extend(type0(csid, 0, 0, 9, 1));
        }
        assert_eq!(
            read_all(&mut r, &bytes).unwrap_err(),
            ChunkError::TooManyChunkStreams
        );
    }

    #[test]
    fn abort_releases_the_partial_message() {
        let mut r = ChunkReader::new(1000);
        let mut bytes = type0(6, 0, 500, 9, 1);
        bytes.extend(std::iter::repeat_n(0u8, 128));
        assert!(read_all(&mut r, &bytes).unwrap().is_empty());
        assert_eq!(r.reserved(), 500);
        r.abort(6);
        assert_eq!(r.reserved(), 0);
        // A fresh message on the same chunk stream works afterwards.
        let mut bytes = type0(6, 0, 1, 9, 1);
        bytes.push(1);
        assert_eq!(read_all(&mut r, &bytes).unwrap().len(), 1);
    }

    #[test]
    fn an_incomplete_header_stays_in_the_input() {
        let mut r = ChunkReader::new(1000);
        let bytes = type0(6, 0, 1, 9, 1);
        let mut input = BytesMut::from(&bytes[..5]);
        assert_eq!(r.read(&mut input).unwrap(), None);
        assert_eq!(input.len(), 5);
        input.extend_from_slice(&bytes[5..]);
        input.extend_from_slice(&[42]);
        let m = r.read(&mut input).unwrap().unwrap();
        assert_eq!(&m.payload[..], &[42]);
    }
}
