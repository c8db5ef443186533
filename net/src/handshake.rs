//! The handshake of `auth.rs` over a fresh connection, for each side.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::auth::{self, Keys, NONCE_BYTES, Role};
use crate::frame::{self, Frame, FrameError, FrameKind};
use crate::session::Session;

/// How long a dialer has to finish the handshake before the node hangs up.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 2_000;

const NODE_LABEL: &[u8] = b"cachesim-node";
const DIALER_LABEL: &[u8] = b"cachesim-dialer";

/// A whole header, of this protocol and within the frame limit, that is not the
/// handshake frame expected (`kind`, `len` bytes of payload). Checked before the
/// decoder reserves room for the payload a header announces, so that a dialer that
/// has not proved anything cannot make the node reserve more than a handshake's
/// bytes. (A header of another protocol or version, or over the limit, is left to the
/// decoder, which refuses it without reserving.)
fn misfit(buffer: &BytesMut, kind: FrameKind, len: usize) -> Option<FrameError> {
    if buffer.len() < frame::HEADER_BYTES || buffer[..2] != frame::MAGIC {
        return None;
    }
    let announced = u32::from_be_bytes(buffer[12..16].try_into().expect("4 bytes"));
    let announced = usize::try_from(announced).unwrap_or(usize::MAX);
    if buffer[2] != frame::PROTOCOL_VERSION || announced > frame::FRAME_PAYLOAD_BYTES_MAX {
        return None;
    }
    if buffer[3] != kind as u8 {
        return Some(FrameError::Refused { reason: "a frame out of turn" });
    }
    (announced != len)
        .then_some(FrameError::Refused { reason: "a handshake frame of the wrong size" })
}

/// Reads one frame of `kind`; anything else is refused.
async fn read_kind<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
    kind: FrameKind,
    len: usize,
) -> Result<Frame, FrameError> {
    loop {
        // Before the generic decoder reserves room for the payload its header
        // announces: an unauthenticated dialer gets no more than the handshake's size.
        if let Some(refused) = misfit(buffer, kind, len) {
            return Err(refused);
        }
        if let Some(frame) = frame::decode(buffer)? {
            if frame.kind != kind {
                return Err(FrameError::Refused { reason: "a frame out of turn" });
            }
            if frame.payload.len() != len {
                return Err(FrameError::Refused { reason: "a handshake frame of the wrong size" });
            }
            return Ok(frame);
        }
        match stream.read_buf(buffer).await {
            Ok(0) => {
                frame::finish(buffer)?;
                return Err(FrameError::Refused {
                    reason: "the connection ended in the handshake",
                });
            }
            Ok(_) => {}
            Err(_) => return Err(FrameError::Refused { reason: "the connection failed" }),
        }
    }
}

async fn write<S: AsyncWrite + Unpin>(
    stream: &mut S,
    kind: FrameKind,
    payload: &[u8],
) -> Result<(), FrameError> {
    let mut out = BytesMut::new();
    frame::encode_raw(kind, payload, &mut out);
    stream
        .write_all(&out)
        .await
        .map_err(|_| FrameError::Refused { reason: "the connection failed" })
}

/// The dialer's side: proves `role`'s key and checks the node's proof; returns the
/// session that seals and opens the connection's frames from then on.
///
/// # Errors
///
/// [`FrameError::Refused`] when the node cannot prove the key (an impostor, or a
/// cluster with another secret), or the node refuses this side.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &Keys,
    role: Role,
) -> Result<Session, FrameError> {
    let dialer_nonce = auth::nonce();
    let mut hello = vec![role as u8];
    hello.extend_from_slice(&dialer_nonce);
    write(stream, FrameKind::Hello, &hello).await?;
    let mut buffer = BytesMut::new();
    let challenge = read_kind(stream, &mut buffer, FrameKind::Challenge, 2 * NONCE_BYTES).await?;
    let (node_nonce, node_proof) = challenge.payload.split_at(NONCE_BYTES);
    let key = keys.key(role);
    if !auth::verify(NODE_LABEL, key, role, &dialer_nonce, node_nonce, node_proof) {
        return Err(FrameError::Refused { reason: "the node could not prove the shared secret" });
    }
    let proof = auth::dialer_proof(key, role, node_nonce, &dialer_nonce);
    write(stream, FrameKind::Proof, &proof).await?;
    Ok(Session::dialer(key, role, &dialer_nonce, node_nonce))
}

/// The node's side: learns the dialer's role and checks its proof; returns the role
/// and the connection's session. Frames that follow the handshake stay in `buffer`.
///
/// # Errors
///
/// [`FrameError::Refused`] for a dialer that cannot prove its role's key, sends frames
/// out of turn, or takes longer than [`HANDSHAKE_TIMEOUT_MS`]; a header error as
/// [`frame::decode`] finds it.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
    keys: &Keys,
) -> Result<(Role, Session), FrameError> {
    let steps = async {
        let hello = read_kind(stream, buffer, FrameKind::Hello, 1 + NONCE_BYTES).await?;
        let role = Role::from_byte(hello.payload[0])
            .ok_or(FrameError::Refused { reason: "an unknown role" })?;
        let dialer_nonce = &hello.payload[1..];
        let node_nonce = auth::nonce();
        let key = keys.key(role);
        let mut challenge = node_nonce.to_vec();
        challenge.extend_from_slice(&auth::node_proof(key, role, dialer_nonce, &node_nonce));
        write(stream, FrameKind::Challenge, &challenge).await?;
        let proof = read_kind(stream, buffer, FrameKind::Proof, NONCE_BYTES).await?;
        if !auth::verify(DIALER_LABEL, key, role, &node_nonce, dialer_nonce, &proof.payload) {
            return Err(FrameError::Refused {
                reason: "the dialer could not prove the shared secret",
            });
        }
        Ok((role, Session::node(key, role, dialer_nonce, &node_nonce)))
    };
    match tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), steps).await {
        Ok(outcome) => outcome,
        Err(_) => Err(FrameError::Refused { reason: "the handshake took too long" }),
    }
}
