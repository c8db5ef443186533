//! [`NodeId`]: the name of a cache node.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::Error;

/// The longest node id accepted, in bytes.
pub const NODE_ID_LEN_MAX: usize = 255;

/// The name of a cache node, such as `"node-1"`.
///
/// Ids are ordered as strings: the ring sorts its nodes by id, membership iterates in id
/// order, and a version tie is broken by the origin's id. The cache never uses the
/// simulator's node type, so the same code can run on a real network later.
///
/// Cloning is cheap (a reference count), because every version and every ring lookup
/// result names a node.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// A node id from its name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNodeId`] when the name is empty, longer than [`NODE_ID_LEN_MAX`]
    /// bytes, or holds a control character or whitespace (ids appear in logs and in
    /// `id@address` seed lists, so they must print as one word).
    pub fn new(name: &str) -> Result<NodeId, Error> {
        let printable = name.chars().all(|c| !c.is_control() && !c.is_whitespace());
        if name.is_empty() || name.len() > NODE_ID_LEN_MAX || !printable {
            return Err(Error::InvalidNodeId { id_len: name.len(), id_len_max: NODE_ID_LEN_MAX });
        }
        let id = NodeId(Arc::from(name));
        assert_eq!(id.as_str(), name);
        Ok(id)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's bytes: what the ring hashes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl FromStr for NodeId {
    type Err = Error;

    fn from_str(name: &str) -> Result<NodeId, Error> {
        NodeId::new(name)
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// On the wire a node id is its name; a name [`NodeId::new`] refuses is refused when
/// read, so a peer cannot smuggle in an id the cache would not make itself.
#[cfg(feature = "serde")]
impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<NodeId, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        NodeId::new(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        let id = NodeId::new("node-1").unwrap();
        assert_eq!(id.as_str(), "node-1");
        assert_eq!(id.to_string(), "node-1");
        assert_eq!(format!("{id:?}"), "\"node-1\"");
        assert_eq!("node-1".parse::<NodeId>().unwrap(), id);
    }

    #[test]
    fn rejects_empty_long_and_unprintable_names() {
        for name in ["", "a b", "a\nb", "\t"] {
            assert!(NodeId::new(name).is_err(), "{name:?} was accepted");
        }
        let long = "x".repeat(NODE_ID_LEN_MAX + 1);
        let error = NodeId::new(&long).unwrap_err();
        assert_eq!(error, Error::InvalidNodeId { id_len: 256, id_len_max: 255 });
        assert!(NodeId::new(&long[1..]).is_ok());
    }

    #[test]
    fn orders_as_strings() {
        let a = NodeId::new("a").unwrap();
        let b = NodeId::new("b").unwrap();
        let aa = NodeId::new("aa").unwrap();
        assert!(a < aa);
        assert!(aa < b);
    }
}
