//! Where nodes are read from. Committed history reads the DAG; a Shadow Working Set reads the DAG
//! plus its own staged nodes (content and trees written by patches, not yet committed). Tree and
//! content readers take a [`Source`], so the same code serves both.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{Node, NodeView};
use crate::store::{NodeHeader, ReadTxn, Store};
use crate::treecache::TreeCache;

/// A place nodes can be read from.
pub trait Source {
    /// Canonical bytes of a node, if this source has it: borrowed where the source keeps them
    /// as they are, rebuilt where it keeps them compressed.
    fn bytes(&self, id: &NodeId) -> Result<Option<Cow<'_, [u8]>>>;

    /// A decoded node, or [`Error::NodeNotFound`].
    fn node(&self, id: &NodeId) -> Result<Node> {
        let bytes = self.bytes(id)?.ok_or(Error::NodeNotFound(*id))?;
        Ok(Node::decode(&bytes)?)
    }

    /// Canonical bytes of several nodes, in the order asked (`None` for one this source does
    /// not have). Stores verify the batch in parallel; the default asks one by one.
    fn bytes_many(&self, ids: &[NodeId]) -> Result<Vec<Option<Cow<'_, [u8]>>>> {
        ids.iter().map(|id| self.bytes(id)).collect()
    }

    /// Whether this source holds node `id`, without reading or verifying its bytes (a cheap
    /// index lookup where the source has one; the default asks for the header).
    fn has(&self, id: &NodeId) -> Result<bool> {
        Ok(self.header(id)?.is_some())
    }

    /// A node's type, clock and size, if this source has it. The default decodes the node;
    /// sources with an index answer without touching the payload.
    fn header(&self, id: &NodeId) -> Result<Option<NodeHeader>> {
        match self.bytes(id)? {
            Some(bytes) => Ok(Some(Node::decode(&bytes)?.header())),
            None => Ok(None),
        }
    }

    /// The cache of decoded trees this source's nodes may share ([`crate::treecache`]); `None`
    /// for sources outside a store.
    fn tree_cache(&self) -> Option<&TreeCache> {
        None
    }

    /// A zero-copy view of a node, or [`Error::NodeNotFound`].
    fn view(&self, id: &NodeId) -> Result<NodeView<'_>> {
        match self.bytes(id)?.ok_or(Error::NodeNotFound(*id))? {
            Cow::Borrowed(bytes) => Ok(NodeView::peek(bytes)?),
            Cow::Owned(bytes) => Ok(NodeView::peek(&bytes)?.into_owned()),
        }
    }
}

/// The committed DAG as of one read transaction.
pub struct Dag<'a, 't> {
    /// The store.
    pub store: &'a Store,
    /// The transaction fixing the view.
    pub txn: &'a ReadTxn<'t>,
}

impl<'a, 't> Dag<'a, 't> {
    /// The DAG as `txn` sees it.
    pub fn new(store: &'a Store, txn: &'a ReadTxn<'t>) -> Self {
        Dag { store, txn }
    }
}

impl Source for Dag<'_, '_> {
    fn bytes(&self, id: &NodeId) -> Result<Option<Cow<'_, [u8]>>> {
        self.store.node_bytes(self.txn, id)
    }

    fn bytes_many(&self, ids: &[NodeId]) -> Result<Vec<Option<Cow<'_, [u8]>>>> {
        self.store.node_bytes_many(self.txn, ids)
    }

    fn header(&self, id: &NodeId) -> Result<Option<NodeHeader>> {
        self.store.header(self.txn, id)
    }

    fn has(&self, id: &NodeId) -> Result<bool> {
        self.store.has_node(self.txn, id)
    }

    fn tree_cache(&self) -> Option<&TreeCache> {
        Some(&self.store.trees)
    }
}
