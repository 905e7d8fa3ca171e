//! `jit fsck`: replays the log against the stores and checks every invariant, naming exactly
//! which log record, node or ref is wrong ([`store`]), then the universe's files around the
//! store ([`universe`]), and federation's published and imported state ([`federation`]).

mod federation;
mod store;
mod universe;

pub use store::{fsck, journal_problems, FsckReport, Problem};
pub use universe::fsck_universe;
