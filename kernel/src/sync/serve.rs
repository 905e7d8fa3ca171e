//! The serving side of sync: answers a replica's frontier, negotiation and fetch requests from
//! a read transaction. Serving never writes. Requests reach these through the command layer
//! ([`crate::command`]), which only lets replicas (and local callers) ask.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::wire::{
    self, FetchReply, FetchRequest, FetchedNode, Frontier, NegotiateReply, NegotiateRequest,
};
use crate::dag;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::refs::{HEADS, TAGS};
use crate::repo::Repository;
use crate::store::{ReadTxn, Store};

/// This universe and where its branches and tags point (refs kept for peers are not shared).
pub fn frontier(repo: &Repository) -> Result<Frontier> {
    let txn = repo.store().read()?;
    let mut refs = std::collections::BTreeMap::new();
    for prefix in [HEADS, TAGS] {
        refs.extend(repo.store().refs_with_prefix(&txn, prefix)?);
    }
    Ok(Frontier {
        universe: repo.universe()?,
        head: repo.head().ok().map(|h| h.short().to_owned()),
        refs,
        nodes: Some(repo.store().header_count(&txn)?),
        stored: true,
    })
}

/// Which history nodes the asker lacks: every ancestor of a want (the wants included) that is
/// not an ancestor of a have we hold, parents first.
///
/// The walk pops nodes newest first (by logical clock). A child's clock exceeds its parents',
/// so when a node is popped every path to it has been walked and its mark — "common" if a
/// have reaches it, "send" otherwise — is final. The walk stops as soon as nothing left in the
/// queue is marked "send".
pub fn negotiate(
    store: &Store,
    txn: &ReadTxn<'_>,
    request: &NegotiateRequest,
) -> Result<NegotiateReply> {
    if request.wants.len() > wire::MAX_NEGOTIATE_IDS
        || request.haves.len() > wire::MAX_NEGOTIATE_IDS
    {
        return Err(Error::InvalidInput(format!(
            "a negotiation names at most {} wants and {} haves",
            wire::MAX_NEGOTIATE_IDS,
            wire::MAX_NEGOTIATE_IDS
        )));
    }
    let mut common: HashMap<NodeId, bool> = HashMap::new();
    let mut queue = BinaryHeap::new();
    let mut sending = 0usize;
    for have in &request.haves {
        if let Some(header) = store.header(txn, have)? {
            if common.insert(*have, true).is_none() {
                queue.push((header.clock, Reverse(*have)));
            }
        }
    }
    for want in &request.wants {
        let header = store.header(txn, want)?.ok_or(Error::NodeNotFound(*want))?;
        if header.node_type.is_content() {
            return Err(Error::InvalidInput(format!(
                "{want} is a {}, not a history node",
                header.node_type.as_str()
            )));
        }
        if !common.contains_key(want) {
            common.insert(*want, false);
            queue.push((header.clock, Reverse(*want)));
            sending += 1;
        }
    }
    let mut history = Vec::new();
    while sending > 0 {
        let Some((_, Reverse(id))) = queue.pop() else {
            break;
        };
        let is_common = common.get(&id).copied().unwrap_or(true);
        if !is_common {
            sending -= 1;
            history.push(id);
        }
        for parent in store.view(txn, &id)?.parents {
            match common.get(&parent).copied() {
                None => {
                    common.insert(parent, is_common);
                    queue.push((dag::clock_of(store, txn, &parent)?, Reverse(parent)));
                    if !is_common {
                        sending += 1;
                    }
                }
                Some(false) if is_common => {
                    common.insert(parent, true);
                    sending -= 1;
                }
                Some(_) => {}
            }
        }
    }
    history.reverse();
    Ok(NegotiateReply { history })
}

/// The requested nodes' bytes, in request order, until the byte budget is spent (at least
/// one node is always sent).
pub fn fetch(store: &Store, txn: &ReadTxn<'_>, request: &FetchRequest) -> Result<FetchReply> {
    if request.stored {
        return fetch_stored(store, txn, request);
    }
    fetch_where(store, txn, &request.ids, request.max_bytes, |_| Ok(true))
}

/// [`fetch`] of the nodes as this store keeps them: compressed, or deltas, sent as they are.
/// Only nodes of the DAG are sent, and a representation that does not parse is refused as
/// corrupt. A node kept raw is checked against its id first (hashing is cheap); a compressed
/// frame or a delta is checked by the asker, which must rebuild and hash it anyway (it trusts
/// no peer) and refuses the pull, naming the node, if the bytes are damaged. Rebuilding each
/// here too doubled the work of a clone.
fn fetch_stored(store: &Store, txn: &ReadTxn<'_>, request: &FetchRequest) -> Result<FetchReply> {
    use crate::store::Stored;
    if request.ids.len() > wire::MAX_FETCH_IDS {
        return Err(Error::InvalidInput(format!(
            "a fetch names at most {} ids, not {}",
            wire::MAX_FETCH_IDS,
            request.ids.len()
        )));
    }
    let budget = request.max_bytes.min(wire::MAX_REPLY_BYTES);
    let mut reply = FetchReply {
        nodes: Vec::new(),
        missing: Vec::new(),
    };
    let mut spent = 0u64;
    for id in &request.ids {
        let stored = match store.has_node(txn, id)? {
            true => store.stored(txn, id)?,
            false => None,
        };
        let Some(stored) = stored else {
            reply.missing.push(*id);
            continue;
        };
        let len = stored.len() as u64;
        if !reply.nodes.is_empty() && spent + len > budget {
            break;
        }
        let bytes = match Stored::parse(id, stored)? {
            Stored::Delta { .. } if request.whole => {
                let bytes = store.node_bytes(txn, id)?.ok_or(Error::NodeNotFound(*id))?;
                crate::store::repr::compressed(&bytes, crate::store::repr::WRITE_LEVEL)?
                    .unwrap_or_else(|| bytes.into_owned())
            }
            Stored::Delta { .. } | Stored::Zstd(_) => stored.to_vec(),
            Stored::Raw(raw) => crate::store::verified(id, raw)?.to_vec(),
        };
        spent += len;
        reply.nodes.push(FetchedNode { id: *id, bytes });
    }
    Ok(reply)
}

/// [`fetch`] of only the nodes `shown` admits: any other is answered as missing, through the
/// same path as a node this store does not hold (federation serves published closures so).
pub(crate) fn fetch_where(
    store: &Store,
    txn: &ReadTxn<'_>,
    ids: &[NodeId],
    max_bytes: u64,
    shown: impl Fn(&NodeId) -> Result<bool>,
) -> Result<FetchReply> {
    if ids.len() > wire::MAX_FETCH_IDS {
        return Err(Error::InvalidInput(format!(
            "a fetch names at most {} ids, not {}",
            wire::MAX_FETCH_IDS,
            ids.len()
        )));
    }
    let budget = max_bytes.min(wire::MAX_REPLY_BYTES);
    let mut reply = FetchReply {
        nodes: Vec::new(),
        missing: Vec::new(),
    };
    let mut spent = 0u64;
    for id in ids {
        let bytes = if shown(id)? {
            store.node_bytes(txn, id)?
        } else {
            None
        };
        match bytes {
            Some(bytes) => {
                let len = bytes.len() as u64;
                if !reply.nodes.is_empty() && spent + len > budget {
                    break;
                }
                spent += len;
                reply.nodes.push(FetchedNode {
                    id: *id,
                    bytes: bytes.to_vec(),
                });
            }
            None => reply.missing.push(*id),
        }
    }
    Ok(reply)
}
