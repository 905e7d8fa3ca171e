//! Node identity: `NodeId = BLAKE3-256(canonical CBOR bytes of the node)`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The 32-byte BLAKE3 hash that names a node. Ordering is bytewise, which is also the order of
/// parents inside a node and of keys in the store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// Length of an id in bytes.
    pub const LEN: usize = 32;

    /// Hashes canonical node bytes into their id.
    pub fn of_bytes(canonical: &[u8]) -> NodeId {
        NodeId(*blake3::hash(canonical).as_bytes())
    }

    /// Reads an id from a 32-byte slice.
    pub fn from_slice(bytes: &[u8]) -> Option<NodeId> {
        <[u8; 32]>::try_from(bytes).ok().map(NodeId)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Full lowercase hex (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The abbreviated form used in human output (12 hex characters).
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// Why a string is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a node id (expected 64 hex characters): {0:?}")]
pub struct ParseNodeIdError(pub String);

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseNodeIdError(s.to_owned()))?;
        Ok(NodeId(out))
    }
}

/// Bytes in binary formats (CBOR), 64 hex characters in human-readable ones (JSON).
impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

/// Accepts what arrives — 32 bytes or 64 hex characters — rather than trusting
/// `is_human_readable`, which serde's buffering of internally tagged enums reports as true even
/// inside CBOR.
impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;

        impl<'de> serde::de::Visitor<'de> for IdVisitor {
            type Value = NodeId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a node id: 32 bytes or 64 hex characters")
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<NodeId, E> {
                NodeId::from_slice(v).ok_or_else(|| E::invalid_length(v.len(), &self))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NodeId, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<NodeId, A::Error> {
                let mut out = [0u8; 32];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<u8>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(33, &self));
                }
                Ok(NodeId(out))
            }
        }

        deserializer.deserialize_any(IdVisitor)
    }
}

/// A hash map keyed by node id. Ids are BLAKE3 outputs, so a fast seeded hasher (foldhash)
/// spreads them as well as SipHash does; SipHash was a noticeable share of a clone, whose maps
/// hold every node it receives and every name in its trees.
pub type IdMap<V> = std::collections::HashMap<NodeId, V, foldhash::fast::RandomState>;

/// A hash set of node ids ([`IdMap`]'s hasher).
pub type IdSet = std::collections::HashSet<NodeId, foldhash::fast::RandomState>;
