//! Git interop with the real `git` CLI: a history of hundreds of commits (merges, renames,
//! executable bits, symlinks, deletions) imported, shown by `jit log`, and exported back with the
//! same tree ids — and the same commit ids, since its committers equal its authors.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;

fn git(dir: &Path, args: &[&str], date: u64) -> String {
    let mut out = jit_testutils::git::git_at(dir, args, date);
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Builds a history: 300 commits on main with a merged side branch every 25, renames, chmods,
/// symlinks and deletions along the way.
fn build_history(repo: &Path) {
    fs::create_dir_all(repo).unwrap();
    let mut date = 1_700_000_000;
    let mut tick = || {
        date += 60;
        date
    };
    git(repo, &["init", "-q", "-b", "main"], tick());
    fs::create_dir_all(repo.join("src")).unwrap();
    for i in 0..300u32 {
        fs::write(
            repo.join(format!("src/file{:02}.txt", i % 40)),
            format!("line {i}\n").repeat((i % 7 + 1) as usize),
        )
        .unwrap();
        if i % 30 == 5 {
            let script = repo.join(format!("run{i}.sh"));
            fs::write(&script, "#!/bin/sh\necho run\n").unwrap();
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        }
        if i % 45 == 10 {
            symlink(
                format!("src/file{:02}.txt", i % 40),
                repo.join(format!("link{i}")),
            )
            .unwrap();
        }
        if i % 40 == 20
            && repo
                .join(format!("src/file{:02}.txt", (i + 1) % 40))
                .exists()
        {
            git(
                repo,
                &[
                    "mv",
                    &format!("src/file{:02}.txt", (i + 1) % 40),
                    &format!("src/moved{i}.txt"),
                ],
                tick(),
            );
        }
        if i % 50 == 30 && repo.join(format!("run{}.sh", i - 25)).exists() {
            git(repo, &["rm", "-q", &format!("run{}.sh", i - 25)], tick());
        }
        git(repo, &["add", "-A"], tick());
        git(
            repo,
            &["commit", "-q", "-m", &format!("commit {i}\n\nbody of {i}")],
            tick(),
        );
        if i % 25 == 24 {
            git(repo, &["checkout", "-q", "-b", &format!("side{i}")], tick());
            for j in 0..3 {
                fs::create_dir_all(repo.join("side")).unwrap();
                fs::write(
                    repo.join(format!("side/s{i}-{j}.txt")),
                    format!("side {i} {j}\n"),
                )
                .unwrap();
                git(repo, &["add", "-A"], tick());
                git(
                    repo,
                    &["commit", "-q", "-m", &format!("side {i}.{j}")],
                    tick(),
                );
            }
            git(repo, &["checkout", "-q", "main"], tick());
            fs::write(repo.join("main-only.txt"), format!("main {i}\n")).unwrap();
            git(repo, &["add", "-A"], tick());
            git(
                repo,
                &["commit", "-q", "-m", &format!("main before merge {i}")],
                tick(),
            );
            git(
                repo,
                &[
                    "merge",
                    "-q",
                    "--no-ff",
                    "-m",
                    &format!("Merge side{i}"),
                    &format!("side{i}"),
                ],
                tick(),
            );
        }
    }
}

#[test]
fn import_then_export_reproduces_git_trees_and_commits() {
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("original");
    build_history(&original);
    let total: u64 = git(&original, &["rev-list", "--count", "HEAD"], 0)
        .trim()
        .parse()
        .unwrap();
    let merges: u64 = git(&original, &["rev-list", "--merges", "--count", "HEAD"], 0)
        .trim()
        .parse()
        .unwrap();
    let first_parent: usize = git(
        &original,
        &["rev-list", "--first-parent", "--count", "HEAD"],
        0,
    )
    .trim()
    .parse()
    .unwrap();
    assert!(
        total == 360 && merges == 12,
        "history has {total} commits, {merges} merges"
    );

    ok(work.path(), &["init", "jit"]);
    let repo = work.path().join("jit");
    let report = json(&repo, &["import-git", original.to_str().unwrap(), "-q"]);
    assert_eq!(report["commits"], total);
    assert_eq!(report["merges"], merges);
    assert_eq!(report["branch"], "main");

    // jit log shows the whole history, merged side history included, as git log does.
    let everything = json(&repo, &["log"]);
    assert_eq!(everything.as_array().unwrap().len() as u64, total);
    // --first-parent: the mainline, with authors, times and messages.
    let log = json(&repo, &["log", "--first-parent"]);
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), first_parent);
    assert_eq!(entries[0]["message"], "Merge side299\n");
    assert_eq!(entries[1]["message"], "main before merge 299\n");
    assert_eq!(entries[2]["message"], "commit 299\n\nbody of 299\n");
    assert_eq!(entries[0]["author"], "Ada <ada@example.org>");
    assert_eq!(entries[0]["tz_minutes"], 60);
    assert!(
        entries
            .iter()
            .filter(|e| e["rewrite"]["kind"] == "merge")
            .count() as u64
            == merges
    );
    // Content, modes and symlinks came across.
    let files = json(&repo, &["ls-tree", "HEAD", "-r"]);
    let kinds: Vec<&str> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"exec") && kinds.contains(&"symlink"),
        "{kinds:?}"
    );
    assert_eq!(
        ok(&repo, &["cat", "HEAD:src/file19.txt"]),
        fs::read_to_string(original.join("src/file19.txt")).unwrap()
    );
    assert!(ok(&repo, &["fsck"]).contains("clean"));

    // Export into a fresh repository: the same trees, in the same order, and the same commits.
    let exported = work.path().join("exported");
    let out = json(&repo, &["export-git", exported.to_str().unwrap(), "-q"]);
    assert_eq!(out["commits"], total);
    let trees =
        |dir: &Path, rev: &str| git(dir, &["log", "--topo-order", "--format=%T %P", rev], 0);
    let original_trees: Vec<String> = trees(&original, "main")
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    let exported_trees: Vec<String> = trees(&exported, "refs/heads/main")
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(original_trees.len() as u64, total);
    assert_eq!(original_trees, exported_trees, "tree ids round-trip");
    assert_eq!(
        git(&original, &["rev-parse", "main"], 0),
        git(&exported, &["rev-parse", "refs/heads/main"], 0),
        "commit ids round-trip too (committer = author)"
    );
    // git itself finds the exported repository sound.
    git(&exported, &["fsck", "--strict", "--no-progress"], 0);

    // Importing again is idempotent: the same tip, no new nodes.
    ok(work.path(), &["init", "again"]);
    let again = json(
        &work.path().join("again"),
        &["import-git", original.to_str().unwrap(), "-q"],
    );
    assert_eq!(again["tip"], report["tip"], "deterministic ids");
}

#[test]
fn import_git_refuses_a_non_repository_and_a_diverged_branch() {
    let work = tempfile::tempdir().unwrap();
    ok(work.path(), &["init", "jit"]);
    let repo = work.path().join("jit");
    let err = fails(
        &repo,
        &["import-git", work.path().join("nothing").to_str().unwrap()],
    );
    assert!(err.contains("git:"), "{err}");
    // A jit branch with its own history cannot be moved onto an unrelated git history.
    let tree = work.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("x"), "x").unwrap();
    import(&repo, &tree, "own work");
    let original = work.path().join("original");
    fs::create_dir_all(&original).unwrap();
    git(&original, &["init", "-q", "-b", "main"], 1_700_000_000);
    fs::write(original.join("y"), "y").unwrap();
    git(&original, &["add", "-A"], 1_700_000_001);
    git(&original, &["commit", "-q", "-m", "y"], 1_700_000_002);
    let err = fails(&repo, &["import-git", original.to_str().unwrap()]);
    assert!(err.contains("not a fast-forward"), "{err}");
    // Into a fresh branch it works.
    ok(
        &repo,
        &[
            "import-git",
            original.to_str().unwrap(),
            "--into",
            "from-git",
            "-q",
        ],
    );
    assert_eq!(ok(&repo, &["cat", "from-git:y"]), "y");
}

/// Issue #17 item 4: a git history may hold `.git`, `.jit` or `.jit-checkout` entries (git's own
/// commands refuse to make them, `git mktree` does not). The import skips them, says how many,
/// and keeps everything else.
#[test]
fn patches_can_plant_git_and_jit_checkout_not_through_git_import() {
    let work = tempfile::tempdir().unwrap();
    ok(work.path(), &["init", "jit"]);
    let repo = work.path().join("jit");
    let original = work.path().join("original");
    fs::create_dir_all(&original).unwrap();
    let date = 1_700_000_000;
    git(&original, &["init", "-q", "-b", "main"], date);
    let blob = |text: &str| {
        let path = original.join("blob.tmp");
        fs::write(&path, text).unwrap();
        let id = git(&original, &["hash-object", "-w", "blob.tmp"], date);
        fs::remove_file(path).unwrap();
        id.trim().to_owned()
    };
    let mktree = |lines: &str| {
        let out = Command::new("git")
            .current_dir(&original)
            .arg("mktree")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(lines.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let config = blob("[core]\n\tfsmonitor = touch pwned\n");
    let text = blob("kept\n");
    let inner = mktree(&format!("100644 blob {config}\tconfig\n"));
    let sub = mktree(&format!(
        "040000 tree {inner}\t.GIT\n100644 blob {text}\tok.txt\n"
    ));
    let root = mktree(&format!(
        "040000 tree {inner}\t.jit-checkout\n100644 blob {text}\tkeep.txt\n040000 tree {sub}\tsub\n"
    ));
    let commit = git(&original, &["commit-tree", &root, "-m", "planted"], date);
    git(
        &original,
        &["update-ref", "refs/heads/main", commit.trim()],
        date,
    );

    let report = json(&repo, &["import-git", original.to_str().unwrap()]);
    let listing = json(&repo, &["ls-tree", "main", "-r"]);
    let paths: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["keep.txt", "sub/ok.txt"], "{listing}");
    assert_eq!(report["skipped_reserved"], 2, "{report}");
}

/// Issue #22: `export-git DEST REV` names the git branch after REV (not the checked-out jit
/// branch), a new repository's HEAD names it, a revision that is no branch needs `--branch`, and
/// an existing git branch is only ever moved forward — backwards or sideways needs `--force`.
#[test]
fn export_git_names_the_branch_it_exports_and_never_moves_a_ref_back_without_force() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("u");
    ok(work.path(), &["init", "u"]);
    let tree = work.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("a.txt"), "one\n").unwrap();
    jit_testutils::bin::import(&repo, &tree, "main 1");
    fs::write(tree.join("a.txt"), "two\n").unwrap();
    jit_testutils::bin::import(&repo, &tree, "main 2");
    ok(&repo, &["branch", "jitsrc", "main~1"]);
    ok(&repo, &["checkout", "jitsrc"]);
    fs::write(tree.join("a.txt"), "side\n").unwrap();
    jit_testutils::bin::import(&repo, &tree, "jitsrc 1");

    // With jitsrc checked out, exporting main writes refs/heads/main, and HEAD names it.
    let out = work.path().join("out.git");
    let dest = out.to_str().unwrap();
    let exported = json(&repo, &["export-git", dest, "main", "-q"]);
    assert_eq!(exported["reference"], "refs/heads/main");
    assert_eq!(
        git(&out, &["symbolic-ref", "HEAD"], 0).trim(),
        "refs/heads/main"
    );
    let main_commit = git(&out, &["rev-parse", "refs/heads/main"], 0);
    assert!(git(&out, &["branch", "--list"], 0).trim().ends_with("main"));

    // An older revision onto the same branch: backwards, refused, and the ref stays.
    let refused = fails(
        &repo,
        &["export-git", dest, "main~1", "--branch", "main", "-q"],
    );
    assert!(refused.contains("backwards or sideways"), "{refused}");
    assert_eq!(git(&out, &["rev-parse", "refs/heads/main"], 0), main_commit);
    // An unrelated history onto it: sideways, refused too.
    let sideways = fails(
        &repo,
        &["export-git", dest, "jitsrc", "--branch", "main", "-q"],
    );
    assert!(sideways.contains("--force"), "{sideways}");
    assert_eq!(git(&out, &["rev-parse", "refs/heads/main"], 0), main_commit);
    // A revision that is no branch needs a name.
    let unnamed = fails(&repo, &["export-git", dest, "main~1", "-q"]);
    assert!(unnamed.contains("--branch"), "{unnamed}");
    // The checked-out branch exports under its own name and leaves main alone.
    let side = json(&repo, &["export-git", dest, "-q"]);
    assert_eq!(side["reference"], "refs/heads/jitsrc");
    assert_eq!(git(&out, &["rev-parse", "refs/heads/main"], 0), main_commit);
    // Forward is fine; --force moves it anyway.
    json(
        &repo,
        &["export-git", dest, "main~1", "--branch", "old", "-q"],
    );
    let forward = json(
        &repo,
        &["export-git", dest, "main", "--branch", "old", "-q"],
    );
    assert_eq!(
        format!("{}\n", forward["commit"].as_str().unwrap()),
        main_commit
    );
    let forced = json(
        &repo,
        &[
            "export-git",
            dest,
            "jitsrc",
            "--branch",
            "main",
            "--force",
            "-q",
        ],
    );
    assert_eq!(
        git(&out, &["rev-parse", "refs/heads/main"], 0).trim(),
        forced["commit"].as_str().unwrap()
    );
    git(&out, &["fsck", "--strict", "--no-progress"], 0);
}

/// Issue #22: history read the way git users read it — `log` with merged side history,
/// `--graph`, `--oneline`, `--all`, labels, `-p`, `--stat`, `--name-only`; `show` with its
/// diff; `diff REV REV -- PATH`; no pager and no color when stdout is not a terminal, color on
/// request unless NO_COLOR.
#[test]
fn history_reads_as_git_users_read_it() {
    let work = tempfile::tempdir().unwrap();
    let origin = work.path().join("origin");
    fs::create_dir_all(&origin).unwrap();
    let g = |args: &[&str], date: u64| git(&origin, args, date);
    g(&["init", "-q", "-b", "main"], 0);
    fs::write(origin.join("README"), "one\ntwo\nthree\n").unwrap();
    fs::write(origin.join("other.txt"), "other\n").unwrap();
    g(&["add", "."], 0);
    g(&["commit", "-q", "-m", "base"], 1_700_000_000);
    g(&["checkout", "-q", "-b", "side"], 0);
    fs::write(origin.join("side.txt"), "from the side\n").unwrap();
    g(&["add", "."], 0);
    g(&["commit", "-q", "-m", "side work"], 1_700_000_100);
    g(&["checkout", "-q", "main"], 0);
    fs::write(origin.join("README"), "one\nTWO\nthree\n").unwrap();
    g(&["commit", "-q", "-am", "main work"], 1_700_000_200);
    g(
        &["merge", "-q", "--no-ff", "-m", "merge side", "side"],
        1_700_000_300,
    );

    ok(work.path(), &["init", "u"]);
    let repo = work.path().join("u");
    json(&repo, &["import-git", origin.to_str().unwrap(), "-q"]);
    ok(&repo, &["tag", "v1", "HEAD"]);

    // The whole history, side work included, with the graph git would draw.
    let graph = ok(&repo, &["log", "--graph", "--oneline"]);
    let lines: Vec<&str> = graph.lines().collect();
    assert!(
        lines[0].starts_with("* ") && lines[0].contains("(HEAD -> main, tag: v1) merge side"),
        "{graph}"
    );
    assert!(lines.contains(&"|\\"), "a merge opens a lane: {graph}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("| * ") && l.ends_with("side work")),
        "{graph}"
    );
    assert!(lines.contains(&"|/"), "the lanes join at the fork: {graph}");
    assert!(lines.last().unwrap().ends_with("base"), "{graph}");
    assert_eq!(json(&repo, &["log"]).as_array().unwrap().len(), 4);
    assert_eq!(
        json(&repo, &["log", "--first-parent"])
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // --all reaches a branch HEAD does not.
    ok(&repo, &["branch", "elsewhere", "HEAD~1"]);
    let all = ok(&repo, &["log", "--all", "--oneline"]);
    assert!(all.contains("(elsewhere) main work"), "{all}");

    // -p, --stat and --name-only on the log; show defaults to HEAD with its diff.
    let patch = ok(&repo, &["log", "-p", "-n", "2", "--first-parent"]);
    assert!(patch.contains("-two\n+TWO\n"), "{patch}");
    let stat = ok(&repo, &["log", "--stat", "-n", "1", "HEAD~1"]);
    assert!(stat.contains(" README | "), "{stat}");
    assert!(
        stat.contains("1 file changed, 1 insertion(+), 1 deletion(-)"),
        "{stat}"
    );
    let names = ok(
        &repo,
        &["log", "--name-only", "--oneline", "-n", "1", "HEAD~1"],
    );
    assert!(names.lines().any(|l| l == "README"), "{names}");
    let shown = ok(&repo, &["show"]);
    assert!(
        shown.contains("merge side") && shown.contains("+from the side"),
        "{shown}"
    );

    // diff between revisions, limited to a path.
    let both = ok(&repo, &["diff", "HEAD~1", "HEAD"]);
    assert!(both.contains("+++ b/side.txt"), "{both}");
    let limited = ok(&repo, &["diff", "v1~2", "v1", "--", "README"]);
    assert!(
        limited.contains("--- a/README") && limited.contains("+TWO"),
        "{limited}"
    );
    assert!(
        !limited.contains("side.txt"),
        "only the path asked: {limited}"
    );
    let stat = ok(&repo, &["diff", "--stat", "v1~2", "v1"]);
    assert!(
        stat.contains("2 files changed, 2 insertions(+), 1 deletion(-)"),
        "{stat}"
    );
    let rows = json(&repo, &["diff", "--name-status", "v1~2", "v1"]);
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");

    // Not a terminal: no pager runs and nothing is colored; color on request, not over NO_COLOR.
    let marker = work.path().join("pager-ran");
    let pager = format!("touch {}; cat", marker.display());
    let plain = jit_testutils::bin::jit_command(&repo)
        .args(["log", "--oneline"])
        .env("PAGER", &pager)
        .env("JIT_PAGER", &pager)
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(plain.status.success());
    assert!(!marker.exists(), "the pager ran with stdout not a terminal");
    assert!(!String::from_utf8_lossy(&plain.stdout).contains('\x1b'));
    let colored = jit_testutils::bin::jit_command(&repo)
        .args(["log", "--oneline", "--color", "always"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&colored.stdout).contains("\x1b[33m"));
    let refused = jit_testutils::bin::jit_command(&repo)
        .args(["log", "--oneline", "--color", "always"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&refused.stdout).contains('\x1b'));
}
