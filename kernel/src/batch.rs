//! Bulk appends of content nodes (imports of directories and git histories).

use crate::content::EncodedNode;
use crate::dag;
use crate::error::Result;
use crate::store::Store;

/// An operation is committed after roughly this many bytes of nodes.
const COMMIT_BYTES: usize = 32 << 20;

/// Appends many nodes in operations of bounded size: content is content-addressed, so batches
/// committed before a crash are harmless; the operation that moves a ref comes separately.
pub struct NodeWriter<'s> {
    store: &'s Store,
    op: Option<crate::store::Op<'s>>,
    op_bytes: usize,
    created: u64,
}

impl<'s> NodeWriter<'s> {
    /// A writer on `store`.
    pub fn new(store: &'s Store) -> Self {
        NodeWriter {
            store,
            op: None,
            op_bytes: 0,
            created: 0,
        }
    }

    /// Appends nodes (parents and references first), committing whenever a batch is full.
    pub fn append(&mut self, nodes: Vec<EncodedNode>) -> Result<()> {
        for node in nodes {
            self.append_one(&node)?;
        }
        if self.op_bytes >= COMMIT_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    fn append_one(&mut self, node: &EncodedNode) -> Result<()> {
        let op = match &mut self.op {
            Some(op) => op,
            slot => slot.insert(self.store.begin()?),
        };
        if dag::insert_validated(op, node.id, &node.node, &node.bytes)? {
            self.created += 1;
        }
        // Count existing nodes too, so even a re-import of unchanged content commits (and lets
        // other writers in) every batch instead of holding the write lock for the whole run.
        self.op_bytes += node.bytes.len();
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
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
