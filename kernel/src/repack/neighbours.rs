//! Step 6 of `jit gc`: what branch heads hold, against its neighbours.
//!
//! Hot content is never made a delta of an older version (step 3), and a snapshot without
//! history — an import of the Linux tree — is all hot. Compressed one node at a time, its
//! files miss what they share with their neighbours: a directory of drivers repeats its
//! license header, includes and idioms; a large generated header's chunks repeat one another.
//! git's packs find such pairs by name and size; here two kinds, each chosen so that a read
//! stays a bounded, small number of decompressions:
//!
//! - **A directory's files against its hub.** The inline files of one directory with one
//!   extension become deltas against the largest of them, the *hub*, which stays whole. A
//!   read costs the file's own decompression and the hub's, and the store keeps resolved
//!   bases in memory, so reading the directory decompresses its hub once.
//! - **A chunked file's chunks against the chunk before**, every [`CHUNK_RUN`]th chunk
//!   whole: a read at any offset costs at most [`CHUNK_RUN`] decompressions, and a sequential
//!   read one per chunk (the previous chunk is the cached base).
//!
//! What stays whole: a hub, a node some stored delta already names as its base (its chain's
//! recorded depths must stay true), and a node that is already a delta. A delta is kept when
//! it saves at least [`MIN_SAVING`] of what is stored: it costs a read nothing but the cached
//! base.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::id::NodeId;
use crate::node::{Blob, EntryKind, NodeType, Payload, INLINE_MAX};
use crate::source::{Dag, Source};
use crate::store::repr::Stored;
use crate::store::{ReadTxn, Store};

/// A chunked file keeps every this-many-th chunk whole.
pub(super) const CHUNK_RUN: usize = 4;

/// A neighbour delta is kept if it saves at least this fraction (1/n) of the stored bytes.
pub(super) const MIN_SAVING: usize = 32;

/// `(node, base)` pairs for the nodes of every branch head: a directory's files against its
/// hub, a chunked file's chunks against the chunk before; bases come before the nodes that
/// name them.
pub(super) fn pairs(store: &Store, txn: &ReadTxn<'_>) -> Result<Vec<(NodeId, NodeId)>> {
    let (in_use, deltas) = bases_and_deltas(store, txn)?;
    let dag = Dag::new(store, txn);
    let mut groups: Vec<Vec<(NodeId, u64)>> = Vec::new();
    let mut runs: Vec<Vec<NodeId>> = Vec::new();
    let mut seen_trees = HashSet::new();
    for (_, target) in store.refs_with_prefix(txn, crate::refname::HEADS)? {
        if store.require_header(txn, &target)?.node_type != NodeType::Snapshot {
            continue;
        }
        let mut stack = vec![crate::tree::tree_of(&dag, &target)?];
        while let Some(tree) = stack.pop() {
            if !seen_trees.insert(tree) {
                continue;
            }
            let mut by_extension: HashMap<&[u8], Vec<(NodeId, u64)>> = HashMap::new();
            let tree = crate::tree::load(&dag, &tree)?;
            for entry in &tree.entries {
                match entry.kind {
                    EntryKind::Directory => stack.push(entry.id),
                    _ => {
                        let Some(header) = dag.header(&entry.id)? else {
                            continue;
                        };
                        if header.node_type != NodeType::Blob {
                            continue;
                        }
                        if header.size <= INLINE_MAX as u64 {
                            by_extension
                                .entry(extension(&entry.name))
                                .or_default()
                                .push((entry.id, header.size));
                        } else if let Payload::Blob(Blob::Chunked { chunks, .. }) =
                            dag.node(&entry.id)?.payload
                        {
                            runs.push(chunks.into_iter().map(|c| c.id).collect());
                        }
                    }
                }
            }
            let mut found: Vec<_> = by_extension.into_values().filter(|g| g.len() > 1).collect();
            // Deterministic order (the map's is not).
            found.sort_unstable();
            groups.extend(found);
        }
    }
    Ok(choose(groups, runs, &in_use, &deltas))
}

/// Pairs from the directory groups and chunk runs: hubs first decided, so no hub is made a
/// delta; every node paired once.
fn choose(
    groups: Vec<Vec<(NodeId, u64)>>,
    runs: Vec<Vec<NodeId>>,
    in_use: &HashSet<NodeId>,
    deltas: &HashSet<NodeId>,
) -> Vec<(NodeId, NodeId)> {
    let whole = |id: &NodeId| !deltas.contains(id);
    let hubs: Vec<Option<NodeId>> = groups
        .iter()
        .map(|group| {
            group
                .iter()
                .filter(|(id, _)| whole(id))
                .max_by_key(|(id, size)| (*size, *id))
                .map(|(id, _)| *id)
        })
        .collect();
    let mut kept_whole: HashSet<NodeId> = hubs.iter().flatten().copied().collect();
    kept_whole.extend(in_use);
    let mut paired = HashSet::new();
    let mut out = Vec::new();
    let mut pair = |id: NodeId, base: NodeId, out: &mut Vec<(NodeId, NodeId)>| {
        if id != base && whole(&id) && !kept_whole.contains(&id) && paired.insert(id) {
            out.push((id, base));
        }
    };
    for (group, hub) in groups.iter().zip(&hubs) {
        if let Some(hub) = hub {
            for (id, _) in group {
                pair(*id, *hub, &mut out);
            }
        }
    }
    for run in &runs {
        for (i, window) in run.windows(2).enumerate() {
            if (i + 1) % CHUNK_RUN != 0 {
                pair(window[1], window[0], &mut out);
            }
        }
    }
    out
}

/// Nodes some stored delta names as its base, and nodes stored as deltas.
fn bases_and_deltas(
    store: &Store,
    txn: &ReadTxn<'_>,
) -> Result<(HashSet<NodeId>, HashSet<NodeId>)> {
    let (mut bases, mut deltas) = (HashSet::new(), HashSet::new());
    for entry in store.node_entries(txn)? {
        let (key, value) = entry?;
        let Some(id) = NodeId::from_slice(key) else {
            continue;
        };
        if let Stored::Delta { base, .. } = Stored::parse(&id, store.unpacked(txn, &id, value)?)? {
            bases.insert(base);
            deltas.insert(id);
        }
    }
    Ok((bases, deltas))
}

/// What follows a file name's last dot (the whole name without one: `Makefile`, `Kconfig`).
fn extension(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => &name[dot + 1..],
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_slice(&[n; 32]).expect("id")
    }

    #[test]
    fn extensions_group_like_files() {
        assert_eq!(extension(b"mod.rs"), b"rs");
        assert_eq!(extension(b"a.tar.gz"), b"gz");
        assert_eq!(extension(b"Makefile"), b"Makefile");
        assert_eq!(extension(b".gitignore"), b".gitignore");
    }

    #[test]
    fn hubs_stay_whole_and_chunks_chain_in_runs() {
        // Group one: 1 (largest) is the hub; 4 is also the hub of group two, so it stays whole.
        let groups = vec![
            vec![(id(1), 900), (id(2), 100), (id(3), 200), (id(4), 50)],
            vec![(id(4), 800), (id(5), 10)],
        ];
        let run: Vec<NodeId> = (10..19).map(id).collect();
        let in_use: HashSet<NodeId> = [id(2)].into();
        let deltas: HashSet<NodeId> = [id(5)].into();
        let pairs = choose(groups, vec![run], &in_use, &deltas);
        // 2 is some delta's base, 5 already a delta: neither is paired.
        let expected = vec![
            (id(3), id(1)),
            (id(11), id(10)),
            (id(12), id(11)),
            (id(13), id(12)),
            (id(15), id(14)),
            (id(16), id(15)),
            (id(17), id(16)),
        ];
        assert_eq!(pairs, expected);
    }
}
