//! The JIT kernel: the single source of truth.
//!
//! Truth is an append-only causal DAG of immutable nodes ([`node`]), each named by the BLAKE3 hash
//! of its canonical CBOR encoding ([`cbor`], [`id`]). Nodes, refs and the checksummed log live in
//! one LMDB environment ([`store`]), so every kernel operation is one atomic, durable write
//! transaction. [`dag`] enforces the DAG invariants on every append, [`refs`] the ref rules,
//! [`history`] moves branches (forward only; other moves through inversion rewrites), and
//! [`fsck`] replays the log to prove it all still holds.

#![deny(missing_docs)]

pub mod agents;
pub mod batch;
pub use jit_proto::cbor;
pub mod checkout;
pub mod collapse;
pub mod command;
pub mod content;
pub mod dag;
pub mod draft;
pub mod durable;
pub mod error;
pub mod federation;
pub mod filelock;
pub mod fsck;
pub mod history;
pub mod id;
pub mod identity;
pub mod import;
pub mod journal;
pub mod log;
pub mod merge;
pub mod mounts;
pub mod node;
pub mod observe;
pub mod patch;
pub mod path;
pub mod refname;
pub mod refs;
pub mod repack;
pub mod repo;
pub mod reserved;
pub mod revparse;
pub mod rpc;
pub mod source;
pub mod store;
pub mod sws;
pub mod sync;
mod tables;
pub mod tree;
pub mod treecache;
pub mod treeedit;
pub mod treepatch;
pub mod universe;
mod upgrade;

pub use error::{Code, Coded, Error, Result, Violation};
pub use id::NodeId;
pub use node::{DeclaredTime, Node, NodeType};
pub use repo::Repository;
