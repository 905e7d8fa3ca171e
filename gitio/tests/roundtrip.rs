//! The git boundary on its own: a history made by the real `git` (a merge, an executable, a
//! symlink, a nested directory, a submodule-free tree) imported with `import_git` and written
//! back with `export_git` gives the same commit ids — git's own objects say the two sides agree.

use std::path::Path;

use jit_git::{export::export_git, import::import_git};
use jit_kernel::refs::RefName;

fn git(dir: &Path, args: &[&str]) -> String {
    jit_testutils::git::git_at(dir, args, 1_700_000_000)
}

/// A small history with a merge: main and a side branch, merged.
fn history(dir: &Path) -> String {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(dir.join("src/deep")).expect("mkdir");
    std::fs::write(dir.join("README"), "one\n").expect("write");
    std::fs::write(dir.join("src/deep/lib.rs"), "fn a() {}\n").expect("write");
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho run\n").expect("write");
    git(dir, &["update-index", "--add", "--chmod=+x", "run.sh"]);
    std::os::unix::fs::symlink("README", dir.join("link")).expect("symlink");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "first"]);
    git(dir, &["checkout", "-q", "-b", "side"]);
    std::fs::write(dir.join("side.txt"), "side\n").expect("write");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "side"]);
    git(dir, &["checkout", "-q", "main"]);
    std::fs::write(dir.join("README"), "one\ntwo\n").expect("write");
    git(dir, &["commit", "-q", "-am", "second"]);
    git(dir, &["merge", "-q", "--no-ff", "-m", "merge side", "side"]);
    git(dir, &["rev-parse", "HEAD"])
}

#[test]
fn a_git_history_imported_and_exported_keeps_its_commit_ids() {
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).expect("mkdir");
    let head = history(&source);

    let (_universe_dir, repo) = jit_testutils::fixture::new_universe();
    let branch = RefName::branch("main").expect("branch name");
    let report =
        import_git(repo.store(), &source, Some("main"), &branch, &|_, _| {}).expect("import");
    assert_eq!(report.commits, 4);
    assert_eq!(report.merges, 1);
    assert_eq!(report.skipped_reserved, 0);

    let exported = work.path().join("exported.git");
    let written = export_git(
        repo.store(),
        report.tip,
        &exported,
        "main",
        false,
        &|_, _| {},
    )
    .expect("export");
    assert_eq!(written.commit.to_string(), head, "the merge commit's id");
    assert_eq!(git(&exported, &["rev-parse", "refs/heads/main"]), head);
    assert_eq!(
        git(&exported, &["log", "--format=%H %P", "main"]),
        git(&source, &["log", "--format=%H %P", "main"]),
        "every commit and its parents"
    );
    git(&exported, &["fsck", "--strict"]);
}
