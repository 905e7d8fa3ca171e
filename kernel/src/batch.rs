//! Bulk appends of content nodes (imports of directories and git histories).

use crate::content::EncodedNode;
use crate::dag;
use crate::error::Result;
use crate::store::{repr, Store};

/// An operation is committed after roughly this many bytes of nodes.
const COMMIT_BYTES: usize = 32 << 20;
/// Nodes are buffered (and compressed together) up to this many bytes…
const PENDING_BYTES: usize = 4 << 20;
/// …or this many nodes.
const PENDING_NODES: usize = 4096;

/// Appends many nodes in operations of bounded size: content is content-addressed, so batches
/// committed before a crash are harmless; the operation that moves a ref comes separately.
pub struct NodeWriter<'s> {
    store: &'s Store,
    op: Option<crate::store::Op<'s>>,
    op_bytes: usize,
    created: u64,
    /// Nodes not appended yet, in order, and their canonical bytes.
    pending: Vec<EncodedNode>,
    pending_bytes: usize,
    /// The batch handed to other threads to compress, inserted at the next flush.
    compressing: Option<std::sync::mpsc::Receiver<Result<Compressed>>>,
}

/// A batch of nodes and, for each one new to the store, its stored representation.
type Compressed = (Vec<EncodedNode>, Vec<Option<Vec<u8>>>);

impl<'s> NodeWriter<'s> {
    /// A writer on `store`.
    pub fn new(store: &'s Store) -> Self {
        NodeWriter {
            store,
            op: None,
            op_bytes: 0,
            created: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            compressing: None,
        }
    }

    /// Appends nodes (parents and references first), committing whenever a batch is full.
    /// Nodes wait in a buffer so that new ones are compressed on all cores at once.
    pub fn append(&mut self, nodes: Vec<EncodedNode>) -> Result<()> {
        for node in nodes {
            self.pending_bytes += node.bytes.len();
            self.pending.push(node);
        }
        if self.pending_bytes >= PENDING_BYTES || self.pending.len() >= PENDING_NODES {
            self.flush()?;
        }
        if self.op_bytes >= COMMIT_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    /// Hands the buffered nodes to other threads to compress those not stored yet, and inserts
    /// the batch handed over before (each node after what it names, batches in order): the
    /// caller reads and encodes the next batch while this one is compressed.
    fn flush(&mut self) -> Result<()> {
        use rayon::prelude::*;
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.insert_compressed()?;
        if pending.is_empty() {
            return Ok(());
        }
        let op = match &mut self.op {
            Some(op) => op,
            slot => slot.insert(self.store.begin()?),
        };
        let new = pending
            .iter()
            .map(|node| Ok(!op.store().has_node(op.txn(), &node.id)?))
            .collect::<Result<Vec<bool>>>()?;
        let (done, compressed) = std::sync::mpsc::channel();
        rayon::spawn(move || {
            let stored = pending
                .par_iter()
                .zip(&new)
                .map(|(node, new)| match new {
                    true => repr::for_writing(&node.bytes).map(|s| Some(s.into_owned())),
                    false => Ok(None),
                })
                .collect::<Result<Vec<_>>>();
            let _ = done.send(stored.map(|stored| (pending, stored)));
        });
        self.compressing = Some(compressed);
        Ok(())
    }

    /// Waits for the batch being compressed, if any, and inserts it.
    fn insert_compressed(&mut self) -> Result<()> {
        let Some(compressed) = self.compressing.take() else {
            return Ok(());
        };
        let (nodes, stored) = compressed.recv().map_err(|_| {
            crate::error::Error::InvalidInput("the compressing thread stopped".into())
        })??;
        let op = match &mut self.op {
            Some(op) => op,
            slot => slot.insert(self.store.begin()?),
        };
        for (node, stored) in nodes.iter().zip(&stored) {
            let inserted = match stored {
                Some(stored) => dag::insert_validated_as(
                    op,
                    node.id,
                    &node.node,
                    dag::Representation::Stored(stored),
                )?,
                // Stored already, or earlier in this run (the same content twice).
                None => false,
            };
            if inserted {
                self.created += 1;
            }
            // Count existing nodes too, so even a re-import of unchanged content commits (and
            // lets other writers in) every batch instead of holding the write lock for the run.
            self.op_bytes += node.bytes.len();
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        self.flush()?;
        self.insert_compressed()?;
        if let Some(op) = self.op.take() {
            op.commit()?;
        }
        self.op_bytes = 0;
        Ok(())
    }

    /// Commits the last batch; returns how many nodes were new.
    pub fn finish(mut self) -> Result<u64> {
        self.commit()?;
        Ok(self.created)
    }
}
