//! A fresh universe in a temporary directory, opened in-process.

use std::path::Path;

use jit_kernel::repo::InitOptions;
use jit_kernel::Repository;

/// Creates a universe at `dir` (named and owned by `t`).
pub fn init_universe(dir: &Path) -> Repository {
    Repository::init(
        dir,
        &InitOptions {
            name: "t".into(),
            owner: "t".into(),
            ..Default::default()
        },
    )
    .expect("init a universe")
}

/// A fresh universe in a new temporary directory (removed when the `TempDir` drops).
pub fn new_universe() -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = init_universe(dir.path());
    (dir, repo)
}
