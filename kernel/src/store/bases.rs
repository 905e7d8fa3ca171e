//! Recently resolved delta bases, so that reading many versions of one file (a sync's append,
//! `jit gc`, `log -p` over old history) resolves each chain step once rather than walking the
//! whole chain again for every version.
//!
//! Only bases are kept (a node resolved as another's base), first in first out, up to a byte
//! budget. What is kept are bytes already hashed against their id, held in memory; the disk is
//! still read and checked for every node served directly.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::id::NodeId;

/// Bytes of bases kept at most.
const BUDGET: usize = 64 << 20;

/// The cache (one per open store).
#[derive(Default)]
pub(crate) struct Bases {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    bytes: HashMap<NodeId, Arc<[u8]>>,
    order: VecDeque<NodeId>,
    held: usize,
}

impl Bases {
    /// A base's canonical bytes, if kept.
    pub(crate) fn get(&self, id: &NodeId) -> Option<Arc<[u8]>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.bytes.get(id).cloned()
    }

    /// Forgets every base (tests that damage the disk under a warm cache).
    #[cfg(test)]
    pub(crate) fn clear(&self) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = Inner::default();
    }

    /// Keeps a base's verified canonical bytes.
    pub(crate) fn insert(&self, id: NodeId, bytes: Arc<[u8]>) {
        if bytes.len() > BUDGET / 4 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.bytes.contains_key(&id) {
            return;
        }
        inner.held += bytes.len();
        inner.bytes.insert(id, bytes);
        inner.order.push_back(id);
        while inner.held > BUDGET {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(gone) = inner.bytes.remove(&old) {
                inner.held -= gone.len();
            }
        }
    }
}
