//! The log (RFC-0006's WAL): an append-only, totally ordered, checksummed record of every kernel
//! operation. Each stored record is `checksum (32 bytes) || canonical CBOR body`, where the
//! checksum is BLAKE3 of the body and the body names the previous record's checksum, so a
//! flipped byte, a dropped record or a reordering are all caught by [`verify_record`].

use ciborium::value::Value;
use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::error::{Error, Result};
use crate::id::NodeId;

/// Most ids one [`LogOp::NodesCreated`] record names.
pub const NODES_PER_RECORD: usize = 1024;

/// A checksum: BLAKE3 of a record body.
pub type Checksum = [u8; 32];

/// One kernel operation, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LogOp {
    /// A node was appended to the DAG.
    NodeCreated {
        /// Its id.
        id: NodeId,
        /// Its type name.
        node_type: String,
    },
    /// Nodes were appended to the DAG, in this order: the record of several creations in a row
    /// within one operation (a commit, an import batch, a sync), where one [`LogOp::NodeCreated`]
    /// each would cost the log more than the nodes themselves once they are stored as deltas.
    NodesCreated {
        /// Their ids, in the order they were appended (at most [`NODES_PER_RECORD`]).
        ids: Vec<NodeId>,
    },
    /// A ref came into existence.
    RefCreated {
        /// Full ref name (`heads/main`, `tags/v1`).
        name: String,
        /// Its target.
        target: NodeId,
    },
    /// A branch moved.
    RefUpdated {
        /// Full ref name.
        name: String,
        /// The previous target.
        from: NodeId,
        /// The new target.
        to: NodeId,
    },
    /// A ref was deleted.
    RefDeleted {
        /// Full ref name.
        name: String,
        /// Its target at deletion.
        target: NodeId,
        /// Whether a tag was deleted with the explicit override.
        forced: bool,
    },
    /// A Shadow Working Set was created.
    SwsCreated {
        /// Its id (hex).
        sws: String,
        /// The branch it commits to.
        branch: String,
        /// The snapshot it is anchored on.
        base: NodeId,
        /// Its owner.
        owner: String,
    },
    /// A patch was applied to an SWS.
    SwsPatched {
        /// The SWS.
        sws: String,
        /// The patch's position in the micro-history.
        seq: u64,
        /// The patch id.
        patch_id: String,
    },
    /// A commit of an SWS met conflicts; the SWS now shows them.
    SwsConflicted {
        /// The SWS.
        sws: String,
        /// How many paths conflict.
        conflicts: u64,
    },
    /// A branch's working SWS with no work followed its branch: it is now anchored on the new
    /// tip and shows its tree ([`crate::sws::follow_branch`]).
    SwsReanchored {
        /// The SWS.
        sws: String,
        /// The snapshot it was anchored on.
        from: NodeId,
        /// The branch's new tip, which it is anchored on now.
        to: NodeId,
    },
    /// An SWS was collapsed into a snapshot and retired.
    SwsCommitted {
        /// The SWS.
        sws: String,
        /// The resulting snapshot.
        snapshot: NodeId,
    },
    /// An SWS was discarded.
    SwsDiscarded {
        /// The SWS.
        sws: String,
    },
    /// An agent identity was registered (or re-keyed).
    AgentRegistered {
        /// The agent's name.
        name: String,
        /// Its ed25519 public key (hex).
        public_key: String,
    },
    /// A key made elsewhere asked to enrol as an agent; the owner approves or denies it
    /// ([`crate::agents::enrol`]).
    AgentRequested {
        /// The name it asked for.
        name: String,
        /// Its ed25519 public key (hex).
        public_key: String,
    },
    /// An enrolment request was denied and dropped.
    AgentDenied {
        /// The name it asked for.
        name: String,
    },
    /// An agent's registration was revoked: its messages are refused from now on.
    AgentRevoked {
        /// The agent's name.
        name: String,
    },
    /// An agent was made a delegate of an SWS (it may write and commit it).
    SwsDelegated {
        /// The SWS.
        sws: String,
        /// The agent.
        agent: String,
    },
    /// Nodes and refs arrived from a replica in one atomic append.
    Synced {
        /// The peer's name (or its endpoint when it has none).
        remote: String,
        /// Nodes that were new to this store.
        nodes: u64,
        /// Refs that changed (created, moved, merged or kept for the peer).
        refs: u64,
    },
    /// Something was refused; nothing else of the operation was written.
    Audit {
        /// The refused operation.
        action: String,
        /// The stable error code.
        code: String,
        /// The human message.
        reason: String,
    },
}

/// A decoded log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Position in the total order, from 1.
    pub seq: u64,
    /// The previous record's checksum (zeros for the first).
    pub prev: Checksum,
    /// Local wall-clock time of the write in milliseconds, for audit only (never hashed into
    /// the DAG).
    pub at_ms: u64,
    /// Who the operation was for, when it came from someone the kernel can name: the agent
    /// whose plane message it ran (or, for a refused message, the sender it claimed). Absent
    /// for the local user's operations and in records written before it existed.
    pub by: Option<String>,
    /// The operation.
    pub op: LogOp,
}

impl LogRecord {
    /// Encodes the record as stored: checksum followed by the canonical body.
    pub fn to_stored(&self) -> Result<(Checksum, Vec<u8>)> {
        let mut fields = vec![
            (Value::Text("seq".into()), Value::Integer(self.seq.into())),
            (Value::Text("prev".into()), Value::Bytes(self.prev.to_vec())),
            (Value::Text("at".into()), Value::Integer(self.at_ms.into())),
            (Value::Text("op".into()), cbor::to_value(&self.op)?),
        ];
        if let Some(by) = &self.by {
            fields.push((Value::Text("by".into()), Value::Text(by.clone())));
        }
        let body = cbor::encode(&Value::Map(fields))?;
        let checksum = *blake3::hash(&body).as_bytes();
        let mut stored = Vec::with_capacity(32 + body.len());
        stored.extend_from_slice(&checksum);
        stored.extend_from_slice(&body);
        Ok((checksum, stored))
    }
}

/// Checks a stored record's checksum and decodes it; `seq` is the key it was stored under.
pub fn verify_record(seq: u64, stored: &[u8]) -> Result<(LogRecord, Checksum)> {
    let corrupt = |reason: String| Error::CorruptLog { seq, reason };
    if stored.len() < 33 {
        return Err(corrupt("record is truncated".into()));
    }
    let (checksum, body) = stored.split_at(32);
    if blake3::hash(body).as_bytes() != checksum {
        return Err(corrupt("checksum mismatch".into()));
    }
    let value = cbor::decode(body).map_err(|e| corrupt(e.to_string()))?;
    let map = cbor::fields::as_map(&value, "log record").map_err(|e| corrupt(e.to_string()))?;
    let field = |name: &str| cbor::fields::require(map, name).map_err(|e| corrupt(e.to_string()));
    let record_seq =
        cbor::fields::as_u64(field("seq")?, "seq").map_err(|e| corrupt(e.to_string()))?;
    if record_seq != seq {
        return Err(corrupt(format!("record says seq {record_seq}")));
    }
    let prev = <[u8; 32]>::try_from(
        cbor::fields::as_bytes(field("prev")?, "prev").map_err(|e| corrupt(e.to_string()))?,
    )
    .map_err(|_| corrupt("prev checksum must be 32 bytes".into()))?;
    let at_ms = cbor::fields::as_u64(field("at")?, "at").map_err(|e| corrupt(e.to_string()))?;
    let op = cbor::from_value(field("op")?.clone()).map_err(|e| corrupt(e.to_string()))?;
    let by = match cbor::fields::get(map, "by") {
        Some(Value::Text(by)) => Some(by.clone()),
        Some(_) => return Err(corrupt("by must be text".into())),
        None => None,
    };
    let mut sum = [0u8; 32];
    sum.copy_from_slice(checksum);
    Ok((
        LogRecord {
            seq,
            prev,
            at_ms,
            by,
            op,
        },
        sum,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LogRecord {
        LogRecord {
            seq: 7,
            prev: [1; 32],
            at_ms: 42,
            by: Some("agent-7".into()),
            op: LogOp::RefUpdated {
                name: "heads/main".into(),
                from: NodeId([2; 32]),
                to: NodeId([3; 32]),
            },
        }
    }

    #[test]
    fn records_round_trip() {
        let (sum, stored) = record().to_stored().unwrap();
        let (back, back_sum) = verify_record(7, &stored).unwrap();
        assert_eq!(back, record());
        assert_eq!(sum, back_sum);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let (_, stored) = record().to_stored().unwrap();
        for i in 0..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= 0x01;
            assert!(
                verify_record(7, &bad).is_err(),
                "flip at {i} went unnoticed"
            );
        }
    }

    #[test]
    fn a_record_under_the_wrong_key_is_detected() {
        let (_, stored) = record().to_stored().unwrap();
        assert!(verify_record(8, &stored).is_err());
    }
}
