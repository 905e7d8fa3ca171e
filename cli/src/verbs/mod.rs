//! The verbs, one file per group; `crate::commands::run` dispatches to them.

pub(crate) mod config;
pub(crate) mod content;
pub(crate) mod diffs;
pub(crate) mod gc;
pub(crate) mod graph;
pub(crate) mod history;
pub(crate) mod oplog;
pub(crate) mod refs;
pub(crate) mod restore;
pub(crate) mod universe;
