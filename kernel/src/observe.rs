//! Observers of the store: components that keep a view of the truth outside LMDB (the FUSE
//! mount's caches) and must hear of every change, and that may hold writes the kernel has not
//! seen yet (the mount's write-back) which whole-SWS operations must wait for.
//!
//! Notification is synchronous: [`Observer::committed`] runs in the thread that committed,
//! right after the fsync and before that thread answers its client. So when a write committed
//! through the kernel is acknowledged, every cache that could show the old content has already
//! been told.
//!
//! The message plane is the one writer that acknowledges before it commits: it makes agents'
//! patches durable in its journal ([`crate::journal`]) and commits them within milliseconds. It
//! is an observer too, and settling the store commits them: an operation that settles sees
//! every acknowledged patch.

use std::sync::{Arc, RwLock};

use crate::error::Result;

/// Something that mirrors or buffers store state.
pub trait Observer: Send + Sync {
    /// A write transaction has just become durable. Implementations re-read what they mirror;
    /// they must not start a write transaction from here.
    fn committed(&self);

    /// Push every buffered write into the store now: an operation that reads or commits an SWS
    /// as a whole is about to run. Called outside any transaction.
    fn settle(&self) -> Result<()>;
}

/// The registered observers of one store.
#[derive(Default)]
pub struct Observers {
    list: RwLock<Vec<Arc<dyn Observer>>>,
}

impl Observers {
    /// Registers `observer` until [`Observers::remove`].
    pub fn add(&self, observer: Arc<dyn Observer>) {
        if let Ok(mut list) = self.list.write() {
            list.push(observer);
        }
    }

    /// Unregisters `observer` (compared by identity).
    pub fn remove(&self, observer: &Arc<dyn Observer>) {
        if let Ok(mut list) = self.list.write() {
            list.retain(|o| !Arc::ptr_eq(o, observer));
        }
    }

    fn snapshot(&self) -> Vec<Arc<dyn Observer>> {
        self.list.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// Tells every observer that a transaction committed.
    pub(crate) fn committed(&self) {
        for observer in self.snapshot() {
            observer.committed();
        }
    }

    /// Asks every observer to push its buffered writes.
    pub(crate) fn settle(&self) -> Result<()> {
        for observer in self.snapshot() {
            observer.settle()?;
        }
        Ok(())
    }
}
