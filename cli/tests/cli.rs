//! End-to-end use of the `jit` binary: every verb of the kernel-core issue, text and JSON, and
//! the refusals users meet.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use common::*;

fn sample_tree(root: &std::path::Path) {
    fs::create_dir_all(root.join("src/util")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("README"), "hello\n").unwrap();
    fs::write(root.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
    fs::write(root.join("src/util/big.bin"), vec![42u8; 200_000]).unwrap();
    fs::write(root.join("build.sh"), "#!/bin/sh\necho build\n").unwrap();
    fs::set_permissions(root.join("build.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("src/lib.rs", root.join("lib-link")).unwrap();
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::write(root.join(".git/ignored"), "never imported").unwrap();
}

#[test]
fn init_import_log_show_ls_tree_cat() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let tree = work.path().join("tree");
    sample_tree(&tree);
    let out = ok(work.path(), &["init", "repo"]);
    assert!(out.contains("Initialized empty JIT universe"), "{out}");
    assert!(repo.join(".jit/store/data.mdb").exists());

    let first = import(&repo, &tree, "first import");
    assert_eq!(first["files"], 4);
    assert_eq!(first["symlinks"], 1);
    let snapshot = first["snapshot"].as_str().unwrap().to_owned();

    // Text log shows the snapshot with its declared author and date.
    let log = ok(&repo, &["log"]);
    assert!(log.contains(&format!("snapshot {snapshot}")), "{log}");
    assert!(
        log.contains(AUTHOR)
            && log.contains("2023-11-14T22:13:20Z")
            && log.contains("first import")
    );

    // ls-tree -r lists files with kinds, .git is skipped.
    let listing = json(&repo, &["ls-tree", "HEAD", "-r"]);
    let paths: Vec<(&str, &str)> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("README", "file"),
            ("build.sh", "exec"),
            ("lib-link", "symlink"),
            ("src/lib.rs", "file"),
            ("src/util/big.bin", "file"),
        ]
    );
    let top = json(&repo, &["ls-tree", "HEAD"]);
    assert!(top
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["path"] == "empty" && e["kind"] == "dir"));
    let sub = ok(&repo, &["ls-tree", "HEAD", "src"]);
    assert!(
        sub.contains("src/lib.rs") && sub.contains("src/util"),
        "{sub}"
    );

    // cat returns exact bytes, including chunked content and symlink targets.
    assert_eq!(ok(&repo, &["cat", "HEAD:README"]), "hello\n");
    let big = jit(&repo, &["cat", "HEAD:src/util/big.bin"]);
    assert_eq!(big.stdout, vec![42u8; 200_000]);
    assert_eq!(ok(&repo, &["cat", "HEAD:lib-link"]), "src/lib.rs");

    // A second import with one change: show lists exactly that change.
    fs::write(tree.join("README"), "hello again\n").unwrap();
    fs::remove_file(tree.join("build.sh")).unwrap();
    fs::write(tree.join("NEW"), "new\n").unwrap();
    let second = import(&repo, &tree, "second");
    let shown = json(&repo, &["show", "HEAD"]);
    assert_eq!(
        change_rows(&shown["changes"]),
        vec![
            ("A".into(), "NEW".into(), "file".into()),
            ("M".into(), "README".into(), "file".into()),
            ("D".into(), "build.sh".into(), "exec".into())
        ]
    );
    assert!(
        second["new_nodes"].as_u64().unwrap() < 10,
        "unchanged content is not stored again"
    );

    // Revisions: HEAD~1, abbreviated ids, full ids.
    let prev = json(&repo, &["show", "HEAD~1"]);
    assert_eq!(prev["id"], snapshot.as_str());
    let short = &snapshot[..10];
    assert_eq!(json(&repo, &["show", short])["id"], snapshot.as_str());
    assert_eq!(
        ok(&repo, &["cat", &format!("{snapshot}:README")]),
        "hello\n"
    );
    let log = json(&repo, &["log"]);
    assert_eq!(log.as_array().unwrap().len(), 2);
    assert_eq!(
        json(&repo, &["log", "-n", "1"]).as_array().unwrap().len(),
        1
    );

    // Importing the same tree again is refused as empty unless allowed.
    let err = fails(&repo, &["import", tree.to_str().unwrap(), "-m", "again"]);
    assert!(err.contains("nothing to commit"), "{err}");
    ok(
        &repo,
        &[
            "import",
            tree.to_str().unwrap(),
            "-m",
            "again",
            "--allow-empty",
            "-q",
        ],
    );

    assert!(ok(&repo, &["fsck"]).contains("clean"));
    let info = json(&repo, &["info"]);
    assert_eq!(info["head"], "main");
}

#[test]
fn branches_and_tags() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path();
    let tree = work.path().join("t");
    fs::create_dir(repo.join("t")).unwrap();
    ok(repo, &["init"]);
    fs::write(tree.join("a"), "1").unwrap();
    let one = import(repo, &tree, "one")["snapshot"]
        .as_str()
        .unwrap()
        .to_owned();
    fs::write(tree.join("a"), "2").unwrap();
    let two = import(repo, &tree, "two")["snapshot"]
        .as_str()
        .unwrap()
        .to_owned();

    ok(repo, &["branch", "old", "HEAD~1"]);
    ok(repo, &["branch", "feature/x"]);
    ok(repo, &["tag", "v1", &one]);
    ok(repo, &["tag", "v2"]);
    let branches = json(repo, &["branch"]);
    let listed: Vec<(&str, &str, bool)> = branches
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap(),
                b["target"].as_str().unwrap(),
                b["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("feature/x", two.as_str(), false),
            ("main", two.as_str(), true),
            ("old", one.as_str(), false)
        ]
    );
    assert!(ok(repo, &["branch"]).contains("* main"));
    let tags = json(repo, &["tag"]);
    assert_eq!(tags[0]["name"], "v1");
    assert_eq!(tags[0]["target"], one.as_str());
    assert_eq!(ok(repo, &["cat", "v1:a"]), "1");
    assert_eq!(ok(repo, &["cat", "old:a"]), "1");

    // Refusals: each one line, non-zero, nothing changed.
    assert!(fails(repo, &["branch", "old"]).contains("already exists"));
    assert!(fails(repo, &["branch", "bad..name"]).contains("invalid ref name"));
    assert!(fails(repo, &["tag", "v1", &two]).contains("already exists"));
    assert!(fails(repo, &["tag", "-d", "v1"]).contains("immutable"));
    assert!(fails(repo, &["branch", "-d", "main"]).contains("checked out"));
    assert!(fails(repo, &["branch", "x", "nonexistent"]).contains("unknown revision"));
    assert!(fails(repo, &["cat", "HEAD:missing"]).contains("not found"));
    assert_eq!(json(repo, &["tag"]).as_array().unwrap().len(), 2);

    ok(repo, &["tag", "-d", "--force", "v1"]);
    ok(repo, &["branch", "-d", "old"]);
    assert_eq!(json(repo, &["tag"]).as_array().unwrap().len(), 1);
    assert_eq!(json(repo, &["branch"]).as_array().unwrap().len(), 2);
    assert!(ok(repo, &["fsck"]).contains("clean"));
}

#[test]
fn errors_are_one_line_with_json_codes() {
    let work = tempfile::tempdir().unwrap();
    let err = fails(work.path(), &["log"]);
    assert!(err.contains("not a JIT repository"), "{err}");
    let out = jit(work.path(), &["log", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["error"]["code"], "not_a_repository");

    ok(work.path(), &["init"]);
    assert!(fails(work.path(), &["init"]).contains("already exists"));
    assert!(fails(work.path(), &["show", "nope"]).contains("unknown revision"));
    assert!(fails(work.path(), &["import", "missing-dir", "-m", "x"]).contains("missing-dir"));
    assert!(fails(
        work.path(),
        &["import", ".", "-m", "x", "--date", "yesterday"]
    )
    .contains("invalid date"));
    // -C runs elsewhere.
    let other = tempfile::tempdir().unwrap();
    assert!(ok(other.path(), &["-C", work.path().to_str().unwrap(), "fsck"]).contains("clean"));
    // Every verb has --help.
    for verb in [
        "init", "import", "log", "show", "ls-tree", "cat", "branch", "tag", "fsck", "info",
    ] {
        assert!(
            ok(work.path(), &[verb, "--help"]).contains("Usage"),
            "{verb}"
        );
    }
}

#[test]
fn two_repositories_importing_the_same_tree_get_the_same_snapshot_id() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    sample_tree(&tree);
    for name in ["a", "b"] {
        ok(work.path(), &["init", name]);
    }
    let a = import(&work.path().join("a"), &tree, "same");
    let b = import(&work.path().join("b"), &tree, "same");
    assert_eq!(a["snapshot"], b["snapshot"]);
    assert_eq!(a["tree"], b["tree"]);
    // Same via the environment (JIT_AUTHOR / JIT_DATE), in a third repository.
    ok(work.path(), &["init", "c"]);
    let out = jit_command(&work.path().join("c"))
        .args(["import", tree.to_str().unwrap(), "-m", "same", "--json"])
        .env("JIT_AUTHOR", AUTHOR)
        .env("JIT_DATE", DATE)
        .output()
        .unwrap();
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a["snapshot"], c["snapshot"]);
}

#[test]
fn import_never_records_jit_metadata_or_init_leftovers() {
    let work = tempfile::tempdir().unwrap();
    ok(work.path(), &["init"]);
    fs::create_dir_all(work.path().join(".jit-init-999/keys")).unwrap();
    fs::write(
        work.path().join(".jit-init-999/keys/universe.ed25519"),
        "secret",
    )
    .unwrap();
    fs::write(work.path().join("file"), "data").unwrap();
    fs::create_dir_all(work.path().join("docs/.git")).unwrap();
    fs::write(work.path().join("docs/.git/config"), "nested repo metadata").unwrap();
    fs::write(work.path().join("docs/.jit-notes"), "a user's file").unwrap();
    import(work.path(), work.path(), "self import");
    let listing = json(work.path(), &["ls-tree", "HEAD", "-r"]);
    let paths: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec!["docs/.jit-notes", "file"],
        "only metadata is skipped"
    );
}

/// `(change, path, kind)` of every entry in a `changes` array (status, show).
fn change_rows(changes: &serde_json::Value) -> Vec<(String, String, String)> {
    changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().into(),
                c["path"].as_str().unwrap().into(),
                c["kind"].as_str().unwrap_or_default().into(),
            )
        })
        .collect()
}

/// Applies a JSON patch to the working SWS.
fn apply_to_working(repo: &std::path::Path, id: &str, ops: serde_json::Value) {
    let working = json(repo, &["status"])["id"].as_str().unwrap().to_owned();
    let patch = repo.join(format!("../{id}.json"));
    fs::write(
        &patch,
        serde_json::json!({"id": id, "author": "t", "ts": 1, "ops": ops}).to_string(),
    )
    .unwrap();
    ok(repo, &["sws", "apply", &working, patch.to_str().unwrap()]);
}

#[test]
fn empty_directories_are_listed_committed_shown_and_checked_out() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("src")).unwrap();
    fs::write(tree.join("src/lib.rs"), "fn f() {}\n").unwrap();
    ok(work.path(), &["init", "repo"]);
    import(&repo, &tree, "first");
    let commit = |message: &str| {
        ok(
            &repo,
            &["commit", "-m", message, "--author", AUTHOR, "--date", DATE],
        )
    };

    // A new empty directory, and a new directory with a file (listed by its file only).
    apply_to_working(
        &repo,
        "p1",
        serde_json::json!([
            {"op": "mkdir", "path": "emptydir"},
            {"op": "put", "path": "full/a.txt", "content": "a\n"},
        ]),
    );
    let status = json(&repo, &["status"]);
    assert_eq!(
        change_rows(&status["changes"]),
        [
            ("A".into(), "emptydir".into(), "dir".into()),
            ("A".into(), "full/a.txt".into(), "file".into()),
        ],
        "{status}"
    );
    let text = ok(&repo, &["status"]);
    assert!(text.contains("  A emptydir/\n"), "{text}");
    assert!(!text.contains("no changes"), "{text}");
    let diff = ok(&repo, &["diff"]);
    assert!(
        diff.contains("diff --jit a/emptydir/ b/emptydir/\nnew directory\n"),
        "{diff}"
    );
    assert!(diff.contains("+a"), "{diff}");

    // Committed and shown.
    commit("add an empty directory");
    assert!(change_rows(&json(&repo, &["status"])["changes"]).is_empty());
    let shown = json(&repo, &["show", "HEAD"]);
    assert_eq!(
        change_rows(&shown["changes"]),
        [
            ("A".into(), "emptydir".into(), "dir".into()),
            ("A".into(), "full/a.txt".into(), "file".into()),
        ],
        "{shown}"
    );
    let text = ok(&repo, &["show", "HEAD"]);
    assert!(text.contains("\nA emptydir/\n"), "{text}");

    // A checkout creates it.
    let co = work.path().join("co");
    ok(&repo, &["checkout", "--into", co.to_str().unwrap(), "-q"]);
    assert!(co.join("emptydir").is_dir(), "checkout --into made it");
    assert!(
        change_rows(&json(&co, &["status"])["changes"]).is_empty(),
        "and the checkout is clean"
    );

    // A directory emptied of its files stays, as an empty directory.
    apply_to_working(
        &repo,
        "p2",
        serde_json::json!([{"op": "delete", "path": "full/a.txt"}]),
    );
    assert_eq!(
        change_rows(&json(&repo, &["status"])["changes"]),
        [
            ("A".into(), "full".into(), "dir".into()),
            ("D".into(), "full/a.txt".into(), "file".into()),
        ]
    );
    // Removing the empty directory: listed as deleted; the checkout follows.
    apply_to_working(
        &repo,
        "p3",
        serde_json::json!([{"op": "rmdir", "path": "emptydir"}]),
    );
    commit("empty full, remove emptydir");
    let shown = ok(&repo, &["show", "HEAD"]);
    assert!(
        shown.contains("\nA full/\n") && shown.contains("\nD emptydir/\n"),
        "{shown}"
    );
    ok(&co, &["checkout", "-q"]);
    assert!(!co.join("emptydir").exists(), "removed from the checkout");
    assert!(co.join("full").is_dir() && !co.join("full/a.txt").exists());
    assert!(change_rows(&json(&co, &["status"])["changes"]).is_empty());
}

/// Issue #19 (identity, RFC-0021 §3): `jit federation whoami` shows this universe's signed
/// identity document — version 1, signed by the universe key — whose fields are the universe's
/// (as `jit info` shows them), which verifies with `jit-proto` alone, and which is the same bytes
/// every time it is made.
#[test]
fn federation_whoami_shows_a_signed_identity_document_that_verifies() {
    use jit_proto::identity::SignedIdentity;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ok(
        dir.path(),
        &["init", repo.to_str().unwrap(), "--name", "upstream"],
    );
    let who = json(&repo, &["federation", "whoami"]);
    let info = json(&repo, &["info"]);
    assert_eq!(who["universe"], info["universe"]);
    assert_eq!(who["public_key"], info["public_key"]);
    assert_eq!(who["name"], "upstream");
    assert_eq!(who["version"], 1);
    let bytes = hex::decode(who["document"].as_str().unwrap()).unwrap();
    assert_eq!(
        who["fingerprint"].as_str().unwrap(),
        blake3::hash(&bytes).to_hex().as_str()
    );
    let signed = SignedIdentity::decode(&bytes).unwrap();
    let doc = signed.verify_after(None).expect("the document verifies");
    assert_eq!(
        hex::encode(doc.public_key),
        info["public_key"].as_str().unwrap()
    );
    // Deterministic: made again, the same bytes.
    assert_eq!(
        json(&repo, &["federation", "whoami"])["document"],
        who["document"]
    );
    // The text form names the universe and its fingerprint.
    let text = ok(&repo, &["federation", "whoami"]);
    assert!(
        text.contains(who["fingerprint"].as_str().unwrap()),
        "{text}"
    );
    // Another universe's document does not pass for this one's next version.
    let other = dir.path().join("other");
    ok(
        dir.path(),
        &["init", other.to_str().unwrap(), "--name", "upstream"],
    );
    let theirs = hex::decode(
        json(&other, &["federation", "whoami"])["document"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let theirs = SignedIdentity::decode(&theirs).unwrap();
    assert!(theirs.verify_after(Some(doc)).is_err());
}

/// The universe key `jit federation whoami` shows.
fn universe_key(repo: &std::path::Path) -> [u8; 32] {
    let who = json(repo, &["federation", "whoami"]);
    hex::decode(who["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// Issue #19 (published vs internal): `jit publish` appends to the publish log and answers the
/// signed head, which verifies under the key `jit federation whoami` shows; a second publish
/// raises the epoch; a tree cannot be published.
#[test]
fn publish_signs_a_head_that_verifies_under_the_universe_key() {
    use jit_proto::head::SignedHead;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ok(dir.path(), &["init", repo.to_str().unwrap()]);
    let tree = dir.path().join("tree");
    sample_tree(&tree);
    import(&repo, &tree, "first");
    let key = universe_key(&repo);
    let first = json(&repo, &["publish", "main", "--as", "release"]);
    assert_eq!(
        (first["epoch"].as_u64(), first["size"].as_u64()),
        (Some(1), Some(1))
    );
    let second = json(&repo, &["publish", "main"]);
    assert_eq!(
        (second["name"].as_str(), second["epoch"].as_u64()),
        (Some("main"), Some(2))
    );
    let head = |v: &serde_json::Value| {
        SignedHead::decode(&hex::decode(v["head"].as_str().unwrap()).unwrap()).unwrap()
    };
    let (h1, h2) = (head(&first), head(&second));
    h1.verify_after(&key, None, &[])
        .expect("signed by the universe key");
    // Another universe's key does not verify it.
    let other = dir.path().join("other");
    ok(dir.path(), &["init", other.to_str().unwrap()]);
    let other_key = universe_key(&other);
    assert!(h2.verify(&other_key).is_err());
    let tree_id = json(&repo, &["show", "HEAD"])["tree"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = fails(&repo, &["publish", &tree_id, "--as", "t"]);
    assert!(refused.contains("is a tree, not a snapshot"), "{refused}");
}

/// Issue #19 (trust policy): `jit federation trust`, `deny` and `ls`; a bad id or level is a
/// one-line `invalid_input`.
#[test]
fn federation_trust_deny_and_ls_keep_the_policy_for_other_universes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ok(dir.path(), &["init", repo.to_str().unwrap()]);
    let them = "05050505-0505-0505-0505-050505050505";
    assert_eq!(json(&repo, &["federation", "ls"]), serde_json::json!([]));
    json(&repo, &["federation", "trust", them, "semi-trusted"]);
    json(&repo, &["federation", "deny", them]);
    let listed = json(&repo, &["federation", "ls"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let row = &listed[0];
    assert_eq!(
        (&row["universe"], &row["trust"], &row["denied"]),
        (
            &serde_json::json!(them),
            &serde_json::json!("semi-trusted"),
            &serde_json::json!(true)
        )
    );
    // Never met: no identity, head or imports are held of it.
    assert_eq!(row["epoch"], serde_json::Value::Null);
    assert_eq!(row["imports"], serde_json::json!([]));
    json(&repo, &["federation", "trust", them, "trusted"]);
    assert_eq!(
        json(&repo, &["federation", "ls"])[0]["denied"],
        serde_json::json!(false)
    );
    assert!(fails(&repo, &["federation", "trust", "nope", "trusted"])
        .contains("no known universe is named \"nope\""));
    assert!(fails(&repo, &["federation", "trust", them, "wobbly"]).contains("not a trust level"));
}

/// Issue #22: a reader that closes the pipe early (`jit ls-tree -r HEAD | head -1`,
/// `jit cat FILE | head -1`) ends the command quietly, with success, instead of a panic
/// ("failed printing to stdout") or an error. Both outputs are far larger than a pipe's buffer,
/// so the writes after the close must meet EPIPE.
#[test]
fn a_closed_pipe_ends_a_long_listing_quietly() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ok(dir.path(), &["init", repo.to_str().unwrap()]);
    let tree = dir.path().join("tree");
    for d in 0..50 {
        let sub = tree.join(format!("directory-with-a-long-name-{d:03}"));
        fs::create_dir_all(&sub).unwrap();
        for f in 0..100 {
            fs::write(
                sub.join(format!("file-with-a-long-name-{f:03}.txt")),
                format!("{d} {f}\n"),
            )
            .unwrap();
        }
    }
    let big: String = (0..40_000).map(|i| format!("line {i}\n")).collect();
    fs::write(tree.join("big.txt"), &big).unwrap();
    import(&repo, &tree, "many files");
    // `jit ARGS | head -1`: the first line, then the reader is gone and the rest of the output
    // meets a closed pipe. The command must end with success and say nothing.
    let first_line_then_close = |args: &[&str]| {
        let mut child = jit_command(&repo)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {:?}: {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: nothing on stderr: {stderr}");
        first
    };
    assert_eq!(first_line_then_close(&["cat", "HEAD:big.txt"]), "line 0\n");
    let first = first_line_then_close(&["ls-tree", "-r", "HEAD"]);
    assert!(first.ends_with("big.txt\n"), "{first}");
}

/// Issue #20 (bundles): `jit federation export --bundle` writes what a universe published to
/// one file; `jit federation verify` checks it outside any universe, with no network; `jit
/// federation import FILE` imports it; a truncated copy is refused by both.
#[test]
fn federation_bundles_export_verify_anywhere_and_import_with_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(dir.path(), &["init", a.to_str().unwrap()]);
    ok(dir.path(), &["init", b.to_str().unwrap()]);
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("src")).unwrap();
    std::fs::write(tree.join("README"), "from a\n").unwrap();
    std::fs::write(tree.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
    import(&a, &tree, "first");
    ok(&a, &["publish", "main", "--as", "release"]);
    let bundle = dir.path().join("release.jitbundle");
    let exported = json(
        &a,
        &[
            "federation",
            "export",
            "--bundle",
            bundle.to_str().unwrap(),
            "release",
        ],
    );
    let verified = json(
        dir.path(),
        &["federation", "verify", bundle.to_str().unwrap()],
    );
    assert_eq!(verified["universe"], json(&a, &["info"])["universe"]);
    assert_eq!(verified["nodes"], exported["nodes"]);
    assert_eq!(verified["published"], "release");
    let imported = json(
        &b,
        &[
            "federation",
            "import",
            bundle.to_str().unwrap(),
            "--as",
            "up",
        ],
    );
    assert_eq!(imported["epoch"], 1);
    assert_eq!(imported["snapshot"], exported["snapshot"]);
    let listed = json(&b, &["federation", "ls"]);
    assert_eq!(listed[0]["imports"][0]["local"], "up");
    let truncated = dir.path().join("truncated.jitbundle");
    let bytes = std::fs::read(&bundle).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    assert!(fails(
        dir.path(),
        &["federation", "verify", truncated.to_str().unwrap()]
    )
    .contains("truncated"));
    assert!(
        fails(&b, &["federation", "import", truncated.to_str().unwrap()]).contains("truncated")
    );
}

/// Issue #22: `jit commit` without `-m` opens the editor git would ($GIT_EDITOR, $VISUAL,
/// $EDITOR; comment lines dropped; an empty message aborts and commits nothing), the author
/// falls back to git's user.name and user.email when JIT has none, and counts agree with their
/// nouns ("1 file").
#[test]
fn commit_without_a_message_opens_the_editor_and_the_author_comes_from_git() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let tree = work.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("one.txt"), "1\n").unwrap();
    ok(work.path(), &["init", "repo"]);
    let imported = ok(
        &repo,
        &[
            "import",
            tree.to_str().unwrap(),
            "-m",
            "first",
            "--author",
            AUTHOR,
            "--date",
            DATE,
        ],
    );
    assert!(
        imported.contains(" 1 file, 1 directory, 0 symlinks, 2 bytes"),
        "{imported}"
    );

    let gitconfig = work.path().join("gitconfig");
    fs::write(
        &gitconfig,
        "[user]\n\tname = Git Person\n\temail = git@example.org\n",
    )
    .unwrap();
    let editor = work.path().join("editor.sh");
    fs::write(
        &editor,
        "#!/bin/sh\n# the template is there, with its comment lines\ngrep -q '^# Please enter' \"$1\" || exit 3\nprintf 'Written in the editor\\n\\nWith a body.\\n# dropped\\n' > \"$1\"\n",
    )
    .unwrap();
    fs::set_permissions(&editor, fs::Permissions::from_mode(0o755)).unwrap();
    let empty_editor = work.path().join("empty.sh");
    fs::write(&empty_editor, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&empty_editor, fs::Permissions::from_mode(0o755)).unwrap();
    apply_to_working(
        &repo,
        "p1",
        serde_json::json!([{"op": "put", "path": "two.txt", "content": "2\n"}]),
    );
    let commit = |editor: &std::path::Path| {
        jit_testutils::bin::jit_command(&repo)
            .args(["commit", "--date", DATE, "--json"])
            .env("GIT_EDITOR", editor)
            .env("GIT_CONFIG_GLOBAL", &gitconfig)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap()
    };
    // An empty message aborts, and nothing is committed.
    let before = json(&repo, &["log"]).as_array().unwrap().len();
    let aborted = commit(&empty_editor);
    assert!(!aborted.status.success());
    let error: serde_json::Value = serde_json::from_slice(&aborted.stderr).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&aborted.stderr);
    assert!(
        stderr.contains("message is empty") || error["error"]["code"] == "invalid_input",
        "{stderr}"
    );
    assert_eq!(
        json(&repo, &["log"]).as_array().unwrap().len(),
        before,
        "nothing committed"
    );

    let committed = commit(&editor);
    assert!(
        committed.status.success(),
        "{}",
        String::from_utf8_lossy(&committed.stderr)
    );
    let log = json(&repo, &["log", "-n", "1"]);
    let head = &log.as_array().unwrap()[0];
    assert_eq!(head["message"], "Written in the editor\n\nWith a body.");
    assert_eq!(head["author"], "Git Person <git@example.org>");
    // The man page says -m is optional, as it is.
    let man = work.path().join("man");
    ok(work.path(), &["man", man.to_str().unwrap()]);
    let page = fs::read_to_string(man.join("jit-commit.1")).unwrap();
    assert!(
        page.contains("[\\fB\\-m\\fR|\\fB\\-\\-message\\fR]"),
        "{page}"
    );
}

/// Issue #22: checking out a tag or an expression says why HEAD cannot name it and what does
/// what was meant; a mistyped branch gets the nearest name.
#[test]
fn checkout_of_a_tag_an_expression_or_a_typo_says_what_to_do() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let tree = work.path().join("tree");
    sample_tree(&tree);
    ok(work.path(), &["init", "repo"]);
    import(&repo, &tree, "first");
    fs::write(tree.join("README"), "again\n").unwrap();
    import(&repo, &tree, "second");
    ok(&repo, &["tag", "v1", "HEAD~1"]);
    for rev in ["v1", "HEAD~1"] {
        let said = fails(&repo, &["checkout", rev]);
        assert!(said.contains("is not a branch"), "{said}");
        assert!(
            said.contains(&format!("jit checkout --into DIR {rev}")),
            "{said}"
        );
        assert!(said.contains(&format!("jit branch NEW {rev}")), "{said}");
    }
    let typo = fails(&repo, &["checkout", "mian"]);
    assert!(typo.contains("did you mean main?"), "{typo}");
    // Any verb that reads a revision suggests the nearest name, in an expression too.
    let typo = fails(&repo, &["log", "mian~1"]);
    assert!(typo.contains("did you mean main?"), "{typo}");
    let typo = fails(&repo, &["cat", "v2:README"]);
    assert!(typo.contains("did you mean v1?"), "{typo}");
    assert!(!fails(&repo, &["show", "nonsense"]).contains("did you mean"));
    let code = json_error(&repo, &["checkout", "v1"]);
    assert_eq!(code, "invalid_input");
    // A real branch still switches.
    ok(&repo, &["branch", "topic"]);
    assert!(ok(&repo, &["checkout", "topic"]).contains("Switched to branch topic"));
}

/// The error code a failing `jit … --json` prints.
fn json_error(repo: &std::path::Path, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--json");
    let out = jit_testutils::bin::jit(repo, &all);
    assert!(!out.status.success());
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    value["error"]["code"].as_str().unwrap().to_owned()
}

/// Issue #22: `jit config` reads and sets the configuration by dotted key, refuses keys the
/// configuration does not have (leaving the file as it was), and what it sets is used: the
/// configured author wins over git's.
#[test]
fn config_reads_sets_refuses_unknown_keys_and_is_used() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let tree = work.path().join("tree");
    sample_tree(&tree);
    ok(work.path(), &["init", "repo"]);
    let unset = jit_testutils::bin::jit(&repo, &["config", "user.name"]);
    assert!(
        !unset.status.success() && unset.stdout.is_empty(),
        "an unset key prints nothing and fails"
    );
    ok(&repo, &["config", "user.name", "Ada Lovelace"]);
    ok(&repo, &["config", "user.email", "ada@example.org"]);
    assert_eq!(ok(&repo, &["config", "user.name"]).trim(), "Ada Lovelace");
    let listed = json(&repo, &["config"]);
    assert_eq!(listed["user.email"], "ada@example.org", "{listed}");
    let before = fs::read_to_string(repo.join(".jit/config.toml")).unwrap();
    let refused = fails(&repo, &["config", "user.nickname", "ada"]);
    assert!(refused.contains("user.nickname cannot be set"), "{refused}");
    assert_eq!(
        json_error(&repo, &["config", "colour.ui", "x"]),
        "invalid_input"
    );
    assert_eq!(
        fs::read_to_string(repo.join(".jit/config.toml")).unwrap(),
        before
    );
    // Used: the configured author, over git's user.name.
    let gitconfig = work.path().join("gitconfig");
    fs::write(&gitconfig, "[user]\n\tname = Git Person\n").unwrap();
    let imported = jit_testutils::bin::jit_command(&repo)
        .args([
            "import",
            tree.to_str().unwrap(),
            "-m",
            "first",
            "--date",
            DATE,
            "--json",
        ])
        .env("GIT_CONFIG_GLOBAL", &gitconfig)
        .output()
        .unwrap();
    assert!(imported.status.success());
    assert_eq!(
        json(&repo, &["show"])["author"],
        "Ada Lovelace <ada@example.org>"
    );
    ok(&repo, &["config", "--unset", "user.email"]);
    assert!(!jit_testutils::bin::jit(&repo, &["config", "user.email"])
        .status
        .success());
}

/// Issue #22: `jit restore` drops the working set's changes to a path (a file, a directory
/// whole) or takes it from another revision, as one patch; `jit status` speaks to people and
/// keeps the internals for `-v`.
#[test]
fn restore_drops_changes_or_takes_a_path_from_a_revision_and_status_reads_well() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("dir/sub")).unwrap();
    fs::write(tree.join("a.txt"), "a1\n").unwrap();
    fs::write(tree.join("dir/b.txt"), "b1\n").unwrap();
    fs::write(tree.join("dir/sub/c.txt"), "c1\n").unwrap();
    ok(work.path(), &["init", "repo"]);
    import(&repo, &tree, "first");
    fs::write(tree.join("a.txt"), "a2\n").unwrap();
    import(&repo, &tree, "second");

    let clean = ok(&repo, &["status"]);
    assert!(clean.starts_with("On branch main\n"), "{clean}");
    assert!(clean.contains("nothing to commit"), "{clean}");
    assert!(
        !clean.contains("patches:"),
        "internals only with -v: {clean}"
    );
    assert!(ok(&repo, &["status", "-v"]).contains("patches: 0"));

    apply_to_working(
        &repo,
        "p1",
        serde_json::json!([
            {"op": "put", "path": "a.txt", "content": "edited\n"},
            {"op": "put", "path": "dir/new.txt", "content": "new\n"},
            {"op": "delete", "path": "dir/sub/c.txt"},
            {"op": "put", "path": "keep.txt", "content": "keep\n"},
        ]),
    );
    let dirty = ok(&repo, &["status"]);
    assert!(
        dirty.contains("Changes (5 paths):") || dirty.contains("Changes ("),
        "{dirty}"
    );
    assert!(
        dirty.contains("jit restore PATH"),
        "the next step is hinted: {dirty}"
    );

    // A file: back to the base.
    ok(&repo, &["restore", "a.txt"]);
    assert_eq!(ok(&repo, &["cat", &format!("{}:a.txt", "HEAD")]), "a2\n");
    let rows = change_rows(&json(&repo, &["status"])["changes"]);
    assert!(!rows.iter().any(|(_, p, _)| p == "a.txt"), "{rows:?}");
    // A directory, whole: the added file goes, the deleted one comes back.
    ok(&repo, &["restore", "dir"]);
    let rows = change_rows(&json(&repo, &["status"])["changes"]);
    assert_eq!(
        rows,
        [("A".into(), "keep.txt".into(), "file".into())],
        "only the change outside the restored paths is left"
    );
    // From another revision: a.txt as the first snapshot had it.
    ok(&repo, &["restore", "--source", "HEAD~1", "a.txt"]);
    let rows = change_rows(&json(&repo, &["status"])["changes"]);
    assert!(
        rows.contains(&("M".into(), "a.txt".into(), "file".into())),
        "{rows:?}"
    );
    let diff = ok(&repo, &["diff", "--", "a.txt"]);
    assert!(diff.contains("-a2\n+a1\n"), "{diff}");
    // Nothing there on either side: refused.
    assert_eq!(
        json_error(&repo, &["restore", "nowhere.txt"]),
        "path_not_found"
    );
    // Restoring what is already so does nothing.
    assert!(ok(&repo, &["restore", "dir"]).contains("nothing to restore"));
}

/// Issue #22: `jit op log` lists the operations that moved refs, from the kernel's log, and
/// `jit undo` undoes the latest (or a given one) by its inverse — a commit through an inversion
/// rewrite, a created branch deleted, a deleted one created again — and refuses one whose ref
/// moved since.
#[test]
fn op_log_lists_ref_operations_and_undo_inverts_them() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let tree = work.path().join("tree");
    sample_tree(&tree);
    ok(work.path(), &["init", "repo"]);
    import(&repo, &tree, "first");
    fs::write(tree.join("README"), "second\n").unwrap();
    import(&repo, &tree, "second");
    let first_tree = json(&repo, &["show", "HEAD~1"])["tree"].clone();

    let ops = json(&repo, &["op", "log"]);
    assert_eq!(ops[0]["ref"], "heads/main", "{ops}");
    assert!(ops[0]["description"]
        .as_str()
        .unwrap()
        .starts_with("move heads/main"));
    let text = ok(&repo, &["op", "log", "-n", "1"]);
    assert!(text.contains("move heads/main"), "{text}");

    // Undo the second import: main gets the first's content back, through a rewrite.
    let undone = json(&repo, &["undo", "--author", AUTHOR, "--date", DATE]);
    assert!(undone["description"]
        .as_str()
        .unwrap()
        .starts_with("move heads/main"));
    let head = json(&repo, &["show"]);
    assert_eq!(
        head["tree"], first_tree,
        "the content before the undone operation"
    );
    assert!(
        head["message"]
            .as_str()
            .unwrap()
            .starts_with("undo operation"),
        "{head}"
    );
    assert_eq!(
        json(&repo, &["log", "-n", "1"])[0]["rewrite"]["kind"],
        "reset"
    );
    assert_eq!(ok(&repo, &["cat", "HEAD:README"]), "hello\n");
    // Undoing the undo brings the second's content back (it is an operation too).
    json(&repo, &["undo", "--author", AUTHOR, "--date", DATE]);
    assert_eq!(ok(&repo, &["cat", "HEAD:README"]), "second\n");

    // A created branch is deleted; a deleted one comes back where it was.
    ok(&repo, &["branch", "topic", "HEAD~1"]);
    ok(&repo, &["undo"]);
    assert!(!ok(&repo, &["branch"]).contains("topic"));
    ok(&repo, &["undo"]);
    assert!(
        ok(&repo, &["branch"]).contains("topic"),
        "undoing the deletion"
    );

    // An operation whose ref moved since is refused, naming what to undo first.
    let ops = json(&repo, &["op", "log"]);
    let older = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["ref"] == "heads/main")
        .unwrap()["seq"]
        .as_u64()
        .unwrap();
    fs::write(tree.join("README"), "third\n").unwrap();
    import(&repo, &tree, "third");
    let seq = older.to_string();
    assert_eq!(json_error(&repo, &["undo", &seq]), "ref_changed");
    let said = fails(&repo, &["undo", &seq]);
    assert!(said.contains("undo the later operation first"), "{said}");
}
