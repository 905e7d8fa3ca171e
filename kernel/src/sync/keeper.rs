//! Keeps each batch of received nodes durably on a thread of its own, while the transfer asks
//! the peer for the next batch: a clone spends as long writing what it received as waiting for
//! the peer, and the two need not take turns.
//!
//! At most one batch is being kept at a time: keeping the next waits for it, and so does the
//! end of the transfer ([`Keeper::finish`]). Deltas in the batch being opened may name bases
//! in the batch still being kept; [`Keeper::recent`] lends them from memory, and every older
//! batch is in the store. A batch is reported received ([`SyncProgress::received`]) only once
//! it is kept, so what progress counts survives a kill.

use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use super::holding::{Holding, Received};
use super::peer::SyncProgress;
use crate::error::Result;
use crate::id::{IdMap, NodeId};

/// The batch being kept, if any.
pub(crate) struct Keeper<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    holding: &'env dyn Holding,
    progress: &'env dyn SyncProgress,
    /// The batch's keeping, and its node and byte counts for the progress report.
    pending: Option<(ScopedJoinHandle<'scope, Result<()>>, u64, u64)>,
    /// The last batch handed over (kept or being kept).
    recent: Option<Recent>,
}

/// The nodes of the last batch handed to the keeper, by id.
pub(crate) struct Recent {
    nodes: Arc<Vec<Received>>,
    at: IdMap<usize>,
}

impl Recent {
    /// The canonical bytes of `id`, if it was in the batch.
    pub(crate) fn get(&self, id: &NodeId) -> Option<&[u8]> {
        self.at.get(id).map(|&i| self.nodes[i].canonical.as_slice())
    }
}

impl<'scope, 'env> Keeper<'scope, 'env> {
    /// A keeper writing into `holding` on threads of `scope`, reporting to `progress`.
    pub(crate) fn new(
        scope: &'scope Scope<'scope, 'env>,
        holding: &'env dyn Holding,
        progress: &'env dyn SyncProgress,
    ) -> Self {
        Keeper {
            scope,
            holding,
            progress,
            pending: None,
            recent: None,
        }
    }

    /// The last batch handed over, which may still be being kept.
    pub(crate) fn recent(&self) -> Option<&Recent> {
        self.recent.as_ref()
    }

    /// Starts keeping `nodes` (which came in `bytes` bytes) once the batch before them is
    /// kept.
    pub(crate) fn keep(&mut self, nodes: Vec<Received>, bytes: u64) -> Result<()> {
        self.wait()?;
        let holding = self.holding;
        let count = nodes.len() as u64;
        let at = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        let nodes = Arc::new(nodes);
        let shared = Arc::clone(&nodes);
        let keeping = self.scope.spawn(move || holding.keep(&shared));
        self.pending = Some((keeping, count, bytes));
        self.recent = Some(Recent { nodes, at });
        Ok(())
    }

    /// Waits until every batch handed over is kept; the first failure is the error.
    fn wait(&mut self) -> Result<()> {
        let Some((keeping, nodes, bytes)) = self.pending.take() else {
            return Ok(());
        };
        // A panic there is a bug here: it carries on in this thread.
        keeping
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        self.progress.received(nodes, bytes);
        Ok(())
    }

    /// [`Keeper::wait`], at the end of a transfer.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.wait()
    }
}
