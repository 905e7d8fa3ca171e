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

/// Approximate bytes of decoded trees one generation holds before it becomes the old one. Two
/// generations are kept, so the cache holds at most twice this.
const BYTES_PER_GENERATION: usize = 16 << 20;

/// Trees weighing more than this are not cached, so one huge directory cannot evict everything.
const LARGEST_CACHED: usize = BYTES_PER_GENERATION / 4;

/// Approximate memory a decoded tree holds: its names, and per entry the id, kind and vector.
fn weight(tree: &Tree) -> usize {
    64 + tree
        .entries
        .iter()
        .map(|entry| entry.name.len() + 64)
        .sum::<usize>()
}

/// A bounded map from tree id to decoded tree, evicting the least recently used generation.
#[derive(Default)]
pub struct TreeCache {
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<NodeId, Arc<Tree>>,
    previous: HashMap<NodeId, Arc<Tree>>,
    /// The [`weight`] of the trees in `current`.
    weight: usize,
}

impl Generations {
    /// Puts a tree absent from `current` there, turning `current` into `previous` first if it
    /// would grow past its bound.
    fn insert(&mut self, id: NodeId, tree: Arc<Tree>, weight: usize) {
        if self.weight + weight > BYTES_PER_GENERATION {
            self.previous = std::mem::take(&mut self.current);
            self.weight = 0;
        }
        self.weight += weight;
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
        generations.insert(*id, tree.clone(), weight(&tree));
        Some(tree)
    }

    /// Remembers that node `id` decodes to `tree` (unless the tree is too large to cache).
    pub fn insert(&self, id: NodeId, tree: Arc<Tree>) {
        let weight = weight(&tree);
        if weight > LARGEST_CACHED {
            return;
        }
        let mut generations = self.lock();
        if generations.current.contains_key(&id) {
            return;
        }
        generations.previous.remove(&id);
        generations.insert(id, tree, weight);
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

    /// The weight of everything cached, and how many trees are held twice.
    fn held(cache: &TreeCache) -> (usize, usize) {
        let generations = cache.lock();
        let weight = generations
            .current
            .values()
            .chain(generations.previous.values())
            .map(|tree| weight(tree))
            .sum();
        let twice = generations
            .current
            .keys()
            .filter(|id| generations.previous.contains_key(id))
            .count();
        (weight, twice)
    }

    #[test]
    fn a_tree_in_use_survives_while_unused_ones_are_evicted() {
        let cache = TreeCache::default();
        let hot = NodeId([1; 32]);
        cache.insert(hot, tree(3));
        // Each of these weighs about a fifth of a generation.
        let entries = BYTES_PER_GENERATION / 5 / (7 + 64);
        for n in 0..16u8 {
            let id = NodeId([n + 100; 32]);
            cache.insert(id, tree(entries));
            // Again, and one from three steps back (at times in the old generation by now).
            cache.insert(id, tree(entries));
            if n >= 3 {
                cache.insert(NodeId([n + 97; 32]), tree(entries));
            }
            assert_eq!(cache.get(&hot).map(|t| t.entries.len()), Some(3));
            assert_eq!(held(&cache).1, 0, "no tree is held in both generations");
        }
        assert!(
            cache.get(&NodeId([100; 32])).is_none(),
            "an old unused tree was evicted"
        );
        let (weight, twice) = held(&cache);
        assert!(weight <= 2 * BYTES_PER_GENERATION, "{weight} bytes held");
        assert_eq!(twice, 0);
    }

    #[test]
    fn a_tree_too_large_to_cache_is_not_cached() {
        let cache = TreeCache::default();
        let huge = NodeId([2; 32]);
        cache.insert(huge, tree(LARGEST_CACHED / 64 + 1));
        assert!(cache.get(&huge).is_none());
        let small = NodeId([3; 32]);
        cache.insert(small, tree(1));
        assert!(cache.get(&small).is_some());
    }
}
