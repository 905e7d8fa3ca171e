//! Test support shared by every suite (jj's `lib/testutils` is the model): one definition of
//! the fixtures that each suite used to copy.
//!
//! - [`fixture`]: a fresh universe in a temporary directory, opened in-process.
//! - [`bin`]: the real `jit` binary of this build, run as a user would, with declared inputs
//!   fixed so ids are reproducible.
//! - [`damage`]: what tests do to stored bytes to check that damage is caught.
//! - [`git`]: the real `git` with a fixed identity and date.
//!
//! The key decision: tests drive the real binary and real stores, never mocks, so this crate
//! holds no fake of anything — only the set-up every suite needs.

#![deny(missing_docs)]

pub mod bin;
pub mod damage;
pub mod fixture;
pub mod git;
