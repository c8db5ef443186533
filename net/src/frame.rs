//! The wire: length-prefixed frames with a protocol version.
//!
//! A frame is a 16-byte header and a payload:
//!
//! ```text
//! magic "CS" (2) | version (1) | kind (1) | request id (8, BE) | payload length (4, BE)
//! ```
//!
//! The payload is a `postcard` encoding of a [`PeerRequest`] (kind 1) or a
//! [`PeerResponse`] (kind 2). A reader checks the magic, the version, the kind and the
//! length from the header alone, before it waits for (or allocates) the payload: a
//! frame longer than [`FRAME_PAYLOAD_BYTES_MAX`] is refused on its header.

use bytes::{Buf, BufMut, BytesMut};
use cache::{PeerRequest, PeerResponse, VALUE_LEN_MAX};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The two bytes every frame starts with.
pub const MAGIC: [u8; 2] = *b"CS";
/// The protocol version this build speaks; a frame of another version is refused.
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes in a frame's header.
pub const HEADER_BYTES: usize = 16;
/// The largest payload accepted: one value at its largest plus room for the rest of
/// a message (keys, versions, a rebalance batch's other entries are sent in batches
/// that the cache bounds).
pub const FRAME_PAYLOAD_BYTES_MAX: usize = VALUE_LEN_MAX + (1 << 20);

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A [`PeerRequest`].
    Request = 1,
    /// A [`PeerResponse`] to the request with the same id.
    Response = 2,
    /// The dialer's opening of the handshake (`auth.rs`).
    Hello = 3,
    /// The node's nonce and proof.
    Challenge = 4,
    /// The dialer's proof.
    Proof = 5,
}

/// One frame, its payload not yet decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the payload is.
    pub kind: FrameKind,
    /// Pairs a response with its request, per connection.
    pub request_id: u64,
    /// The encoded message.
    pub payload: BytesMut,
}

/// Why bytes read from a peer are not a frame; the connection is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The first two bytes are not [`MAGIC`]: not this protocol.
    BadMagic {
        /// The bytes found.
        found: [u8; 2],
    },
    /// A version this build does not speak.
    UnknownVersion {
        /// The version found.
        version: u8,
    },
    /// A kind byte that is neither request nor response.
    UnknownKind {
        /// The byte found.
        kind: u8,
    },
    /// The header announces a payload over [`FRAME_PAYLOAD_BYTES_MAX`].
    Oversized {
        /// The length announced.
        len: u64,
    },
    /// The connection ended inside a frame.
    Truncated {
        /// Bytes of the frame received.
        received: usize,
    },
    /// The payload does not decode as the message its kind names.
    Malformed {
        /// The decoder's reason.
        reason: String,
    },
    /// A message to send encodes to more than [`FRAME_PAYLOAD_BYTES_MAX`].
    TooLargeToSend {
        /// Its encoded length.
        len: usize,
    },
    /// The handshake went wrong: a frame out of turn, a proof that does not check, or
    /// a dialer that took too long.
    Refused {
        /// Why, for the log.
        reason: &'static str,
    },
    /// A frame after the handshake whose tag does not check: altered, injected,
    /// replayed or reordered on the path (`session.rs`).
    BadTag,
    /// A client connection sent a request only peers may send.
    Forbidden {
        /// The request's kind.
        kind: &'static str,
    },
}

impl FrameError {
    /// A short name for logs and counters.
    pub fn name(&self) -> &'static str {
        match self {
            FrameError::BadMagic { .. } => "bad-magic",
            FrameError::UnknownVersion { .. } => "unknown-version",
            FrameError::UnknownKind { .. } => "unknown-kind",
            FrameError::Oversized { .. } => "oversized",
            FrameError::Truncated { .. } => "truncated",
            FrameError::Malformed { .. } => "malformed",
            FrameError::TooLargeToSend { .. } => "too-large-to-send",
            FrameError::Refused { .. } => "auth-refused",
            FrameError::BadTag => "bad-tag",
            FrameError::Forbidden { .. } => "forbidden",
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadMagic { found } => {
                write!(f, "not a cache frame: starts with {found:02x?}, expected \"CS\"")
            }
            FrameError::UnknownVersion { version } => write!(
                f,
                "protocol version {version} is not spoken here (this build speaks \
                 {PROTOCOL_VERSION}): run the same cachesim version on every node"
            ),
            FrameError::UnknownKind { kind } => write!(f, "unknown frame kind {kind}"),
            FrameError::Oversized { len } => write!(
                f,
                "frame payload of {len} bytes is over the limit of {FRAME_PAYLOAD_BYTES_MAX}"
            ),
            FrameError::Truncated { received } => {
                write!(f, "connection ended inside a frame, after {received} bytes")
            }
            FrameError::Malformed { reason } => write!(f, "malformed frame payload: {reason}"),
            FrameError::TooLargeToSend { len } => write!(
                f,
                "message encodes to {len} bytes, over the frame limit of \
                 {FRAME_PAYLOAD_BYTES_MAX}"
            ),
            FrameError::Refused { reason } => write!(f, "handshake refused: {reason}"),
            FrameError::BadTag => f.write_str(
                "a frame's tag does not check: altered, injected, replayed or out of order",
            ),
            FrameError::Forbidden { kind } => {
                write!(f, "a client connection sent a {kind} request, which only peers may send")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Appends one frame carrying raw `payload` bytes (the handshake's) to `out`.
pub fn encode_raw(kind: FrameKind, payload: &[u8], out: &mut BytesMut) {
    assert!(payload.len() <= FRAME_PAYLOAD_BYTES_MAX);
    let len = u32::try_from(payload.len()).expect("the payload limit fits in u32");
    out.reserve(HEADER_BYTES + payload.len());
    out.put_slice(&MAGIC);
    out.put_u8(PROTOCOL_VERSION);
    out.put_u8(kind as u8);
    out.put_u64(0);
    out.put_u32(len);
    out.put_slice(payload);
}

/// Appends one frame carrying `message` to `out`.
///
/// # Errors
///
/// [`FrameError::TooLargeToSend`] when the encoding is over the limit (nothing is
/// appended).
pub fn encode<M: Serialize>(
    kind: FrameKind,
    request_id: u64,
    message: &M,
    out: &mut BytesMut,
) -> Result<(), FrameError> {
    let payload = postcard::to_allocvec(message)
        .map_err(|error| FrameError::Malformed { reason: error.to_string() })?;
    // Room for the tag a session appends.
    if payload.len() + crate::session::TAG_BYTES > FRAME_PAYLOAD_BYTES_MAX {
        return Err(FrameError::TooLargeToSend { len: payload.len() });
    }
    let len = u32::try_from(payload.len()).expect("the payload limit fits in u32");
    out.reserve(HEADER_BYTES + payload.len());
    out.put_slice(&MAGIC);
    out.put_u8(PROTOCOL_VERSION);
    out.put_u8(kind as u8);
    out.put_u64(request_id);
    out.put_u32(len);
    out.put_slice(&payload);
    Ok(())
}

/// Takes one whole frame off the front of `buffer`, or `None` if it holds less than
/// one frame so far. Header errors are found as soon as the header's bytes are in,
/// before the payload is awaited.
///
/// # Errors
///
/// A [`FrameError`] for a header that is not this protocol's or announces too much.
pub fn decode(buffer: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    if buffer.len() >= 2 && buffer[..2] != MAGIC {
        return Err(FrameError::BadMagic { found: [buffer[0], buffer[1]] });
    }
    if buffer.len() >= 3 && buffer[2] != PROTOCOL_VERSION {
        return Err(FrameError::UnknownVersion { version: buffer[2] });
    }
    if buffer.len() < HEADER_BYTES {
        return Ok(None);
    }
    let kind = match buffer[3] {
        1 => FrameKind::Request,
        2 => FrameKind::Response,
        3 => FrameKind::Hello,
        4 => FrameKind::Challenge,
        5 => FrameKind::Proof,
        kind => return Err(FrameError::UnknownKind { kind }),
    };
    let request_id = u64::from_be_bytes(buffer[4..12].try_into().expect("8 bytes"));
    let len = u32::from_be_bytes(buffer[12..16].try_into().expect("4 bytes"));
    let len = usize::try_from(len).expect("u32 fits in usize");
    if len > FRAME_PAYLOAD_BYTES_MAX {
        return Err(FrameError::Oversized { len: len as u64 });
    }
    if buffer.len() < HEADER_BYTES + len {
        // Room for the rest of this frame only: never more than the limit allows.
        buffer.reserve(HEADER_BYTES + len - buffer.len());
        return Ok(None);
    }
    buffer.advance(HEADER_BYTES);
    let payload = buffer.split_to(len);
    Ok(Some(Frame { kind, request_id, payload }))
}

/// The bytes left in `buffer` when the connection ends: a frame cut short, or none.
///
/// # Errors
///
/// [`FrameError::Truncated`] when part of a frame is left.
pub fn finish(buffer: &BytesMut) -> Result<(), FrameError> {
    if buffer.is_empty() { Ok(()) } else { Err(FrameError::Truncated { received: buffer.len() }) }
}

/// Decodes a payload as `M`; trailing bytes are refused.
///
/// # Errors
///
/// [`FrameError::Malformed`] with the decoder's reason.
pub fn payload<M: DeserializeOwned>(payload: &[u8]) -> Result<M, FrameError> {
    let (message, rest) = postcard::take_from_bytes::<M>(payload)
        .map_err(|error| FrameError::Malformed { reason: error.to_string() })?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed {
            reason: format!("{} bytes after the message", rest.len()),
        });
    }
    Ok(message)
}

/// Decodes a request payload.
///
/// # Errors
///
/// As [`payload`].
pub fn request(frame: &Frame) -> Result<PeerRequest, FrameError> {
    payload(&frame.payload)
}

/// Decodes a response payload.
///
/// # Errors
///
/// As [`payload`].
pub fn response(frame: &Frame) -> Result<PeerResponse, FrameError> {
    payload(&frame.payload)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use cache::{ClientRequest, Consistency, PeerRequest};
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    use super::*;

    fn sample_request() -> PeerRequest {
        PeerRequest::Client(ClientRequest::Set {
            key: "user:42".into(),
            value: Bytes::from_static(b"alice"),
            ttl: Some(std::time::Duration::from_secs(5)),
            consistency: Some(Consistency::Quorum),
        })
    }

    #[test]
    fn a_frame_round_trips_and_splits_anywhere() {
        let mut wire = BytesMut::new();
        encode(FrameKind::Request, 7, &sample_request(), &mut wire).unwrap();
        encode(FrameKind::Request, 8, &sample_request(), &mut wire).unwrap();
        let whole = wire.clone();
        for cut in 0..whole.len() {
            let mut buffer = BytesMut::from(&whole[..cut]);
            let mut frames = Vec::new();
            while let Some(frame) = decode(&mut buffer).unwrap() {
                frames.push(frame);
            }
            buffer.extend_from_slice(&whole[cut..]);
            while let Some(frame) = decode(&mut buffer).unwrap() {
                frames.push(frame);
            }
            assert_eq!(frames.len(), 2, "cut at {cut}");
            assert_eq!(frames[1].request_id, 8);
            assert_eq!(request(&frames[0]).unwrap(), sample_request());
            assert!(finish(&buffer).is_ok());
        }
    }

    #[test]
    fn bad_headers_are_refused_before_the_payload() {
        let mut wire = BytesMut::new();
        encode(FrameKind::Request, 1, &sample_request(), &mut wire).unwrap();
        let mut other_version = wire.clone();
        other_version[2] = 9;
        assert_eq!(decode(&mut other_version), Err(FrameError::UnknownVersion { version: 9 }));
        let mut not_ours = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(matches!(decode(&mut not_ours), Err(FrameError::BadMagic { .. })));
        let mut huge = wire.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        huge.truncate(HEADER_BYTES);
        assert_eq!(decode(&mut huge), Err(FrameError::Oversized { len: u64::from(u32::MAX) }));
        assert!(huge.capacity() < 1 << 16, "nothing allocated for an oversized frame");
        let mut kind = wire.clone();
        kind[3] = 6;
        assert_eq!(decode(&mut kind), Err(FrameError::UnknownKind { kind: 6 }));
        let mut cut = BytesMut::from(&wire[..wire.len() - 1]);
        assert_eq!(decode(&mut cut), Ok(None));
        assert_eq!(finish(&cut), Err(FrameError::Truncated { received: wire.len() - 1 }));
    }

    /// Random bytes, and valid frames with random payloads or flipped bytes, never
    /// panic the decoder and never make it reserve past one frame's limit.
    #[test]
    fn random_input_never_panics_or_over_allocates() {
        let mut rng = ChaCha8Rng::seed_from_u64(14);
        let mut valid = BytesMut::new();
        encode(FrameKind::Request, 3, &sample_request(), &mut valid).unwrap();
        let mut malformed_count = 0;
        for round in 0..20_000 {
            let mut input = match round % 3 {
                0 => {
                    let mut bytes = vec![0u8; (rng.next_u32() % 64) as usize];
                    rng.fill_bytes(&mut bytes);
                    BytesMut::from(&bytes[..])
                }
                1 => {
                    // A well-formed header around random payload bytes.
                    let mut bytes = vec![0u8; (rng.next_u32() % 48) as usize];
                    rng.fill_bytes(&mut bytes);
                    let mut frame = BytesMut::from(&valid[..HEADER_BYTES]);
                    frame[12..16].copy_from_slice(&(bytes.len() as u32).to_be_bytes());
                    frame.extend_from_slice(&bytes);
                    frame
                }
                _ => {
                    let mut frame = valid.clone();
                    let at =
                        HEADER_BYTES + (rng.next_u32() as usize % (frame.len() - HEADER_BYTES));
                    frame[at] ^= 1 << (rng.next_u32() % 8);
                    frame
                }
            };
            while let Ok(Some(frame)) = decode(&mut input) {
                assert!(frame.payload.len() <= FRAME_PAYLOAD_BYTES_MAX);
                if request(&frame).is_err() {
                    malformed_count += 1;
                }
                let _ = response(&frame);
            }
            assert!(input.capacity() <= HEADER_BYTES + FRAME_PAYLOAD_BYTES_MAX);
        }
        assert!(malformed_count > 1_000, "the decoder refused {malformed_count} payloads");
    }
}
