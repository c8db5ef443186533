//! After the handshake: every frame carries a MAC.
//!
//! Both sides derive a session key from the handshake's key and both nonces. Each
//! frame then ends with a 32-byte tag, HMAC-SHA256 over the direction, the frame's
//! sequence number in that direction, and the frame (its header counting the tag). A
//! frame altered, injected, replayed or reordered on the path fails its tag, and the
//! connection is closed: the handshake's proof holds for the whole connection, not
//! its first bytes only. (Frames are authenticated, not encrypted.)

use bytes::{BufMut, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::auth::Role;
use crate::frame::{Frame, FrameError, HEADER_BYTES, MAGIC, PROTOCOL_VERSION};

/// Bytes of the tag at the end of every frame after the handshake.
pub const TAG_BYTES: usize = 32;

/// Frames from the dialer to the node.
const TO_NODE: u8 = 1;
/// Frames from the node to the dialer.
const TO_DIALER: u8 = 2;

/// One side's keys for one connection: it seals what it sends and opens what it
/// receives.
#[derive(Debug)]
pub struct Session {
    /// Seals outgoing frames.
    pub sealer: Sealer,
    /// Opens incoming frames.
    pub opener: Opener,
}

/// Seals frames in the order they are written.
#[derive(Debug)]
pub struct Sealer {
    key: [u8; 32],
    direction: u8,
    sequence: u64,
}

/// Opens frames in the order they are read.
#[derive(Debug)]
pub struct Opener {
    key: [u8; 32],
    direction: u8,
    sequence: u64,
}

/// The session key both sides derive from the handshake.
fn session_key(key: &[u8], role: Role, dialer_nonce: &[u8], node_nonce: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(b"cachesim-session");
    mac.update(&[role as u8]);
    mac.update(dialer_nonce);
    mac.update(node_nonce);
    mac.finalize().into_bytes().into()
}

impl Session {
    /// The dialer's session.
    pub(crate) fn dialer(key: &[u8], role: Role, dialer_nonce: &[u8], node_nonce: &[u8]) -> Self {
        let key = session_key(key, role, dialer_nonce, node_nonce);
        Session::with(key, TO_NODE, TO_DIALER)
    }

    /// The node's session.
    pub(crate) fn node(key: &[u8], role: Role, dialer_nonce: &[u8], node_nonce: &[u8]) -> Self {
        let key = session_key(key, role, dialer_nonce, node_nonce);
        Session::with(key, TO_DIALER, TO_NODE)
    }

    fn with(key: [u8; 32], sending: u8, receiving: u8) -> Session {
        Session {
            sealer: Sealer { key, direction: sending, sequence: 0 },
            opener: Opener { key, direction: receiving, sequence: 0 },
        }
    }
}

fn tag(key: &[u8; 32], direction: u8, sequence: u64, header: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(&[direction]);
    mac.update(&sequence.to_be_bytes());
    mac.update(header);
    mac.update(body);
    mac
}

impl Sealer {
    /// Seals one whole encoded frame (header and payload) in place: its length grows
    /// by the tag, which is appended.
    ///
    /// # Panics
    ///
    /// When `frame` is not one whole frame.
    pub fn seal(&mut self, frame: &mut BytesMut) {
        assert!(frame.len() >= HEADER_BYTES && frame[..2] == MAGIC, "a whole frame");
        let len = u32::from_be_bytes(frame[12..16].try_into().expect("4 bytes"));
        assert_eq!(len as usize, frame.len() - HEADER_BYTES, "one whole frame");
        let sealed_len = len.checked_add(TAG_BYTES as u32).expect("the frame limit leaves room");
        frame[12..16].copy_from_slice(&sealed_len.to_be_bytes());
        let (header, body) = frame.split_at(HEADER_BYTES);
        let tag = tag(&self.key, self.direction, self.sequence, header, body).finalize();
        frame.put_slice(&tag.into_bytes());
        self.sequence += 1;
    }
}

impl Opener {
    /// Checks and strips the tag of the next frame read.
    ///
    /// # Errors
    ///
    /// [`FrameError::BadTag`] for a frame without a tag, or whose tag does not check
    /// (altered, injected, replayed or out of order); the connection must close.
    pub fn open(&mut self, frame: &mut Frame) -> Result<(), FrameError> {
        let Some(body_len) = frame.payload.len().checked_sub(TAG_BYTES) else {
            return Err(FrameError::BadTag);
        };
        let len = u32::try_from(frame.payload.len()).map_err(|_| FrameError::BadTag)?;
        let mut header = BytesMut::with_capacity(HEADER_BYTES);
        header.put_slice(&MAGIC);
        header.put_u8(PROTOCOL_VERSION);
        header.put_u8(frame.kind as u8);
        header.put_u64(frame.request_id);
        header.put_u32(len);
        let (body, received) = frame.payload.split_at(body_len);
        let expected = tag(&self.key, self.direction, self.sequence, &header, body);
        expected.verify_slice(received).map_err(|_| FrameError::BadTag)?;
        frame.payload.truncate(body_len);
        self.sequence += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{self, FrameKind};

    fn sealed(sealer: &mut Sealer, id: u64) -> BytesMut {
        let mut out = BytesMut::new();
        frame::encode(FrameKind::Request, id, &"a request", &mut out).unwrap();
        sealer.seal(&mut out);
        out
    }

    #[test]
    fn frames_open_once_in_order_and_only_unaltered() {
        let (dialer_nonce, node_nonce) = ([1; 32], [2; 32]);
        let mut dialer = Session::dialer(b"secret", Role::Peer, &dialer_nonce, &node_nonce);
        let mut node = Session::node(b"secret", Role::Peer, &dialer_nonce, &node_nonce);
        let (first, second) = (sealed(&mut dialer.sealer, 1), sealed(&mut dialer.sealer, 2));
        let mut wire = first.clone();
        wire.extend_from_slice(&second);
        let mut frame_one = frame::decode(&mut wire).unwrap().unwrap();
        node.opener.open(&mut frame_one).unwrap();
        assert_eq!(frame::payload::<String>(&frame_one.payload).unwrap(), "a request");
        // Replaying the first frame in the second's place fails.
        let mut replayed = frame::decode(&mut first.clone()).unwrap().unwrap();
        assert_eq!(node.opener.open(&mut replayed), Err(FrameError::BadTag));
        // A flipped bit fails; the node's own direction does not open its own frames.
        let mut flipped = second.clone();
        let last = flipped.len() - TAG_BYTES - 1;
        flipped[last] ^= 1;
        let mut flipped = frame::decode(&mut flipped).unwrap().unwrap();
        assert_eq!(node.opener.open(&mut flipped), Err(FrameError::BadTag));
        let mut reflected = frame::decode(&mut second.clone()).unwrap().unwrap();
        assert_eq!(node.sealer.direction, TO_DIALER);
        let mut own = Opener { key: node.opener.key, direction: TO_DIALER, sequence: 1 };
        assert_eq!(own.open(&mut reflected), Err(FrameError::BadTag));
        // The right frame, in order, opens; another key does not.
        let mut frame_two = frame::decode(&mut second.clone()).unwrap().unwrap();
        let mut stranger = Session::node(b"other", Role::Peer, &dialer_nonce, &node_nonce);
        stranger.opener.sequence = 1;
        assert_eq!(stranger.opener.open(&mut frame_two.clone()), Err(FrameError::BadTag));
        node.opener.open(&mut frame_two).unwrap();
        // Too short to hold a tag.
        let mut bare = BytesMut::new();
        frame::encode(FrameKind::Request, 3, &0u8, &mut bare).unwrap();
        let mut bare = frame::decode(&mut bare).unwrap().unwrap();
        assert_eq!(node.opener.open(&mut bare), Err(FrameError::BadTag));
    }
}
