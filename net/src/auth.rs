//! Who may talk to a node: a mutual challenge–response with HMAC-SHA256 at the start
//! of every connection.
//!
//! ```text
//! dialer → node   Hello     role (1: peer, 2: client) | dialer nonce (32)
//! node → dialer   Challenge node nonce (32) | HMAC(key, "cachesim-node"   | role | dialer nonce | node nonce)
//! dialer → node   Proof     HMAC(key, "cachesim-dialer" | role | node nonce | dialer nonce)
//! ```
//!
//! The key is the cluster secret for a peer and the client token for a client. Each
//! side proves it holds the key without sending it, over nonces the other side chose,
//! so a recorded handshake cannot be replayed. A node that cannot prove the cluster
//! secret is refused before any request of its is read: it cannot join the membership,
//! write or read. A client connection may send client requests only, never a peer's
//! (a replica write, a membership message).

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes in a nonce and in a proof.
pub const NONCE_BYTES: usize = 32;
/// The shortest secret accepted, in bytes.
pub const SECRET_BYTES_MIN: usize = 16;
/// The longest secret accepted, in bytes.
pub const SECRET_BYTES_MAX: usize = 4096;

/// A shared secret: the cluster's (between peers) or a client token.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Why a secret was refused.
#[derive(Debug)]
pub enum SecretError {
    /// The secret is shorter than [`SECRET_BYTES_MIN`] or longer than
    /// [`SECRET_BYTES_MAX`].
    Length {
        /// Where it came from (a path, a variable).
        source: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The file could not be read.
    Read {
        /// The path.
        path: String,
        /// The error.
        error: std::io::Error,
    },
    /// The environment variable is not set.
    Unset {
        /// The variable's name.
        variable: String,
    },
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Length { source, len } => write!(
                f,
                "secret from {source} is {len} bytes: use {SECRET_BYTES_MIN} to \
                 {SECRET_BYTES_MAX} (for example `openssl rand -hex 32`)"
            ),
            SecretError::Read { path, error } => {
                write!(f, "cannot read secret file {path}: {error}")
            }
            SecretError::Unset { variable } => {
                write!(f, "environment variable {variable} is not set: set it, or pass a file")
            }
        }
    }
}

impl std::error::Error for SecretError {}

impl Secret {
    /// A secret from its bytes.
    ///
    /// # Errors
    ///
    /// [`SecretError::Length`] outside `SECRET_BYTES_MIN..=SECRET_BYTES_MAX`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Secret, SecretError> {
        Secret::checked(bytes.into(), "the bytes given")
    }

    fn checked(bytes: Vec<u8>, source: &str) -> Result<Secret, SecretError> {
        if !(SECRET_BYTES_MIN..=SECRET_BYTES_MAX).contains(&bytes.len()) {
            return Err(SecretError::Length { source: source.to_owned(), len: bytes.len() });
        }
        Ok(Secret(bytes))
    }

    /// A secret from a file; one trailing newline (as an editor writes) is dropped.
    ///
    /// # Errors
    ///
    /// An unreadable file, or a secret of the wrong length.
    pub fn from_file(path: &Path) -> Result<Secret, SecretError> {
        let shown = path.display().to_string();
        let mut bytes = std::fs::read(path)
            .map_err(|error| SecretError::Read { path: shown.clone(), error })?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        Secret::checked(bytes, &shown)
    }

    /// A secret from an environment variable.
    ///
    /// # Errors
    ///
    /// An unset variable, or a secret of the wrong length.
    pub fn from_env(variable: &str) -> Result<Secret, SecretError> {
        // Any bytes will do for a secret, UTF-8 or not.
        let value = std::env::var_os(variable)
            .ok_or_else(|| SecretError::Unset { variable: variable.to_owned() })?;
        Secret::checked(value.into_encoded_bytes(), &format!("${variable}"))
    }
}

/// The keys one node holds: what it proves to peers and asks of whoever dials it.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    /// The cluster secret; `None` runs the cluster open (every peer accepted).
    pub cluster: Option<Secret>,
    /// The token clients must prove; `None` lets any client in (clients still may
    /// send client requests only).
    pub client_token: Option<Secret>,
}

/// What a dialer says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Another node of the cluster.
    Peer = 1,
    /// A client of the cache's client protocol.
    Client = 2,
}

impl Role {
    pub(crate) fn from_byte(byte: u8) -> Option<Role> {
        match byte {
            1 => Some(Role::Peer),
            2 => Some(Role::Client),
            _ => None,
        }
    }
}

impl Keys {
    /// The key for `role` (empty when the role is open).
    pub(crate) fn key(&self, role: Role) -> &[u8] {
        let secret = match role {
            Role::Peer => self.cluster.as_ref(),
            Role::Client => self.client_token.as_ref(),
        };
        secret.map_or(&[], |secret| &secret.0)
    }
}

fn mac(key: &[u8], label: &[u8], role: Role, first: &[u8], second: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(label);
    mac.update(&[role as u8]);
    mac.update(first);
    mac.update(second);
    mac
}

/// The node's proof: it holds `key`, answering the dialer's nonce.
pub(crate) fn node_proof(key: &[u8], role: Role, dialer: &[u8], node: &[u8]) -> [u8; 32] {
    mac(key, b"cachesim-node", role, dialer, node).finalize().into_bytes().into()
}

/// The dialer's proof: it holds `key`, answering the node's nonce.
pub(crate) fn dialer_proof(key: &[u8], role: Role, node: &[u8], dialer: &[u8]) -> [u8; 32] {
    mac(key, b"cachesim-dialer", role, node, dialer).finalize().into_bytes().into()
}

/// Checks a proof in constant time.
pub(crate) fn verify(
    expected_label: &[u8],
    key: &[u8],
    role: Role,
    first: &[u8],
    second: &[u8],
    proof: &[u8],
) -> bool {
    mac(key, expected_label, role, first, second).verify_slice(proof).is_ok()
}

/// A fresh nonce from the OS.
pub(crate) fn nonce() -> [u8; NONCE_BYTES] {
    let mut bytes = [0u8; NONCE_BYTES];
    getrandom::fill(&mut bytes).expect("the OS supplies random bytes");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_check_only_with_the_same_key_role_and_nonces() {
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        let key = b"0123456789abcdef";
        let proof = node_proof(key, Role::Peer, &a, &b);
        assert!(verify(b"cachesim-node", key, Role::Peer, &a, &b, &proof));
        assert!(!verify(b"cachesim-node", b"0123456789abcdeX", Role::Peer, &a, &b, &proof));
        assert!(!verify(b"cachesim-node", key, Role::Client, &a, &b, &proof));
        assert!(!verify(b"cachesim-node", key, Role::Peer, &b, &a, &proof));
        // A node's proof is not a dialer's: the labels differ.
        assert!(!verify(b"cachesim-dialer", key, Role::Peer, &a, &b, &proof));
        assert_eq!(dialer_proof(key, Role::Peer, &b, &a).len(), NONCE_BYTES);
    }

    #[test]
    fn secrets_have_bounded_lengths_and_files_lose_one_newline() {
        assert!(matches!(Secret::new(b"short".to_vec()), Err(SecretError::Length { len: 5, .. })));
        let dir = std::env::temp_dir().join(format!("cache-net-secret-{}", std::process::id()));
        std::fs::write(&dir, b"0123456789abcdef\n").unwrap();
        assert_eq!(
            Secret::from_file(&dir).unwrap(),
            Secret::new(b"0123456789abcdef".to_vec()).unwrap()
        );
        std::fs::remove_file(&dir).unwrap();
        let missing = Secret::from_file(&dir).unwrap_err().to_string();
        assert!(missing.starts_with("cannot read secret file"), "{missing}");
        assert!(format!("{:?}", Secret::new(vec![7; 20]).unwrap()).contains("20 bytes"));
    }
}
