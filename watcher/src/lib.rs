//! The watcher (SPEC §3): on-disk checkouts whose every edit becomes a patch for the checkout's
//! working SWS, with no event lost.
//!
//! - [`materialize`]: `jit checkout --into DIR [REV]`, incremental, with a tree index in the
//!   kernel.
//! - [`session`]: the one routine that compares the disk with the index and records the
//!   differences (used by the watcher, by status without a watcher and by checkouts).
//! - [`watch`]: the daemon — `notify` events, a dirty-path set, flushes, rescans, cookies.
//! - [`sync`]: synchronized status.
//! - [`marker`], [`ignore`], [`disk`]: the checkout's metadata directory, what is never
//!   watched, and `lstat`/stable reads.

#![deny(missing_docs)]

pub mod disk;
pub mod error;
pub mod ignore;
pub mod marker;
pub mod materialize;
pub mod session;
pub mod sync;
pub mod watch;

pub use error::{Result, WatchError};
