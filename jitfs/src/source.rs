//! Node sources the mount layers: nodes it just built in memory over what the store has.

use std::collections::HashMap;

use jit_kernel::source::Source;
use jit_kernel::{NodeId, Result};

/// `extra` first, then each of `bases` in order.
pub struct Layered<'a> {
    /// Nodes not stored anywhere yet.
    pub extra: &'a HashMap<NodeId, Vec<u8>>,
    /// Stored sources.
    pub bases: Vec<&'a dyn Source>,
}

impl Source for Layered<'_> {
    fn bytes(&self, id: &NodeId) -> Result<Option<std::borrow::Cow<'_, [u8]>>> {
        if let Some(bytes) = self.extra.get(id) {
            return Ok(Some(bytes.as_slice().into()));
        }
        for base in &self.bases {
            if let Some(bytes) = base.bytes(id)? {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    fn has(&self, id: &NodeId) -> Result<bool> {
        if self.extra.contains_key(id) {
            return Ok(true);
        }
        for base in &self.bases {
            if base.has(id)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
