//! Sync between replicas of one universe (RFC-0011, SPEC §5).
//!
//! A pull runs in four steps, each in its own module:
//! 1. **Frontier** ([`wire::Frontier`]): the peer says which universe it holds and where its
//!    branches and tags point. A peer of another universe is refused: that is federation.
//! 2. **Negotiation** ([`serve::negotiate`]): we name the tips we lack (wants) and tips we hold
//!    (haves); the peer walks history back from the wants, newest first, and stops where it
//!    meets the haves' ancestry. Only history node ids travel, never whole DAGs.
//! 3. **Transfer** ([`pull`], [`transfer`], shared with federation): we fetch what we lack
//!    breadth first (what a batch needs is queued as soon as the batch is opened), asking only
//!    for ids that are neither stored nor staged, several requests in flight, each reply
//!    bounded in bytes. Every node is opened and checked (hash, canonical encoding, shape) as it arrives, on all
//!    cores, and kept in the node table without a header ([`staging`]), so an interrupted
//!    transfer resumes where it stopped. Each batch is kept on a thread of its own while the
//!    next is opened ([`keeper`]).
//! 4. **Integration** ([`integrate`]): one atomic operation appends every new node in
//!    dependency order with the DAG's full validation (each node's obligations, worked out
//!    when it was checked, against the headers of what it names), applies the ref rules
//!    (fast-forward, deterministic merge of divergent branches, tags never move, conflicts
//!    kept under `remotes/<peer>/`) and logs the sync. HEAD never syncs.
//!
//! The same requests are served over the message plane (`jit/sync/*`) and the RPC
//! (`sync.frontier`, `sync.negotiate`, `sync.fetch`).

mod holding;
pub mod integrate;
mod keeper;
pub mod peer;
pub mod pull;
pub mod serve;
pub mod staging;
pub(crate) mod transfer;
pub mod wire;

pub use integrate::{RefAction, RefChange};
pub use peer::{Pending, Quiet, Remote, SyncProgress};
pub use pull::{clone_info, pull, PullReport};
