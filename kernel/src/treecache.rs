//! Decoded trees shared by every edit of one store. A patch rewrites the directories above the
//! path it changes, and the next patch to the same directory reads them again: without a cache
//! each small patch decoded the same trees from CBOR, the largest cost of delivering it.
//!
//! Node ids name content, so a cached tree is never stale. The cache only spares the decoding:
//! callers still ask their [`crate::source::Source`] whether it holds the node, so a tree that
//! was cached by an edit whose transaction was dropped is never found through a source that
//! lacks it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::id::NodeId;
use crate::node::Tree;

/// Tree entries one generation of the cache holds before it becomes the old generation (two
/// generations: at most twice this many entries, about 10 MiB for short names).
const ENTRIES_PER_GENERATION: usize = 1 << 16;

/// A bounded map from tree id to decoded tree, evicting the least recently used generation.
#[derive(Default)]
pub struct TreeCache {
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<NodeId, Arc<Tree>>,
    previous: HashMap<NodeId, Arc<Tree>>,
    /// Tree entries (plus one per tree) in `current`.
    weight: usize,
}

impl Generations {
    fn insert(&mut self, id: NodeId, tree: Arc<Tree>) {
        self.weight += tree.entries.len() + 1;
        if self.weight > ENTRIES_PER_GENERATION {
            self.previous = std::mem::take(&mut self.current);
            self.weight = tree.entries.len() + 1;
        }
        self.current.insert(id, tree);
    }
}

impl TreeCache {
    /// The decoded tree `id`, if cached.
    pub fn get(&self, id: &NodeId) -> Option<Arc<Tree>> {
        let mut generations = self.lock();
        if let Some(tree) = generations.current.get(id) {
            return Some(tree.clone());
        }
        let tree = generations.previous.remove(id)?;
        generations.insert(*id, tree.clone());
        Some(tree)
    }

    /// Remembers that node `id` decodes to `tree`.
    pub fn insert(&self, id: NodeId, tree: Arc<Tree>) {
        let mut generations = self.lock();
        if !generations.current.contains_key(&id) {
            generations.insert(id, tree);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // The maps stay consistent whatever a panicking holder did: every update is one insert.
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{EntryKind, TreeEntry};

    fn tree(entries: usize) -> Arc<Tree> {
        Arc::new(Tree {
            entries: (0..entries)
                .map(|n| TreeEntry {
                    name: format!("f{n:06}").into_bytes(),
                    kind: EntryKind::File,
                    id: NodeId([n as u8; 32]),
                })
                .collect(),
        })
    }

    #[test]
    fn a_tree_in_use_survives_while_unused_ones_are_evicted() {
        let cache = TreeCache::default();
        let hot = NodeId([1; 32]);
        cache.insert(hot, tree(3));
        let big = ENTRIES_PER_GENERATION / 4;
        for n in 0..16u8 {
            cache.insert(NodeId([n.wrapping_add(100); 32]), tree(big));
            assert_eq!(cache.get(&hot).map(|t| t.entries.len()), Some(3));
        }
        assert!(
            cache.get(&NodeId([100; 32])).is_none(),
            "an old unused tree was evicted"
        );
        let generations = cache.lock();
        let held: usize = generations
            .current
            .values()
            .chain(generations.previous.values())
            .map(|tree| tree.entries.len() + 1)
            .sum();
        assert!(
            held <= 2 * ENTRIES_PER_GENERATION + big,
            "{held} entries held"
        );
    }
}
