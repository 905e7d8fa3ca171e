//! The projection's layout and its link to the kernel: commits from `head/`, agents' patches
//! seen at once, refs and snapshots read-only, inodes and mtimes that stay put, and recovery
//! from a killed daemon.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;

use jit_mount_tests::*;
use std::time::Duration;

const FILES: &[(&str, &str)] = &[
    ("README", "hello\n"),
    ("src/main.c", "int main(void) { return 0; }\n"),
    ("src/util.c", "int util(void) { return 1; }\n"),
    ("docs/guide.md", "# Guide\n"),
];

#[test]
fn commit_from_head_moves_the_branch_and_keeps_untouched_inodes() {
    if !fuse_ready("commit_from_head") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let daemon = universe.up();
    let head = daemon.path("head");
    let untouched = ["README", "src/util.c", "docs/guide.md"];
    let before: Vec<(u64, (i64, i64))> = untouched
        .iter()
        .map(|p| (ino(&head.join(p)), mtime(&head.join(p))))
        .collect();
    std::fs::write(head.join("src/main.c"), "int main(void) { return 42; }\n").unwrap();
    // No sleep: status asks the mount to write back first.
    let status = universe.json(&["status"]);
    assert_eq!(status["changes"][0]["path"], "src/main.c", "{status}");
    assert_eq!(
        status["changes"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    universe.ok(&["commit", "-m", "edit through the mount"]);
    let shown = universe.ok(&["show", "main"]);
    assert!(shown.contains("edit through the mount"), "{shown}");
    let tip = std::fs::read_to_string(daemon.path("refs/heads/main/src/main.c")).unwrap();
    assert_eq!(tip, "int main(void) { return 42; }\n");
    assert_eq!(
        std::fs::read_to_string(head.join("src/main.c")).unwrap(),
        "int main(void) { return 42; }\n"
    );
    let after: Vec<(u64, (i64, i64))> = untouched
        .iter()
        .map(|p| (ino(&head.join(p)), mtime(&head.join(p))))
        .collect();
    assert_eq!(
        before, after,
        "untouched files kept inode numbers and mtimes"
    );
    // The status after the commit is clean.
    let status = universe.json(&["status"]);
    assert_eq!(
        status["changes"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );
}

#[test]
fn an_agents_patch_is_visible_at_once_even_to_a_reader_that_cached_it() {
    if !fuse_ready("agent_patch_visible") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let daemon = universe.up();
    std::fs::create_dir(daemon.path("sws/agent-work")).unwrap();
    let file = daemon.path("sws/agent-work/README");
    let mut reader = std::fs::File::open(&file).unwrap();
    let mut first = String::new();
    reader.read_to_string(&mut first).unwrap();
    assert_eq!(first, "hello\n");
    assert_eq!(sh(&daemon.mnt, "cat sws/agent-work/README"), "hello\n");
    let patch = universe.dir.path().join("patch.json");
    let content: Vec<u8> = b"hello from the agent\n".to_vec();
    std::fs::write(
        &patch,
        serde_json::json!({"id": "agent-1", "author": "agent", "ops": [
            {"op": "put", "path": "README", "content": content},
            {"op": "put", "path": "new/file.txt", "content": b"new\n".to_vec()},
        ]})
        .to_string(),
    )
    .unwrap();
    universe.ok(&["sws", "apply", "agent-work", patch.to_str().unwrap()]);
    // No sleep: the acknowledgement comes after the kernel's caches were invalidated.
    reader.seek(SeekFrom::Start(0)).unwrap();
    let mut again = String::new();
    reader.read_to_string(&mut again).unwrap();
    assert_eq!(
        again, "hello from the agent\n",
        "the open reader sees the patch"
    );
    assert_eq!(
        sh(&daemon.mnt, "cat sws/agent-work/README"),
        "hello from the agent\n"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        "hello from the agent\n".len() as u64
    );
    assert_eq!(
        sh(&daemon.mnt, "cat sws/agent-work/new/file.txt"),
        "new\n",
        "a new directory appears too"
    );
    // head/ is a different SWS: untouched.
    assert_eq!(sh(&daemon.mnt, "cat head/README"), "hello\n");
}

#[test]
fn refs_and_snapshots_are_read_only_and_follow_their_targets() {
    if !fuse_ready("refs_read_only") {
        return;
    }
    let universe = Universe::with_files(FILES);
    universe.ok(&["tag", "v1"]);
    let first = universe.json(&["show", "main"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let daemon = universe.up();
    let listing = sh(&daemon.mnt, "ls refs/heads refs/tags");
    assert!(
        listing.contains("main") && listing.contains("v1"),
        "{listing}"
    );
    let err = std::fs::write(daemon.path("refs/heads/main/README"), "no").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_erofs()), "{err}");
    let err = std::fs::create_dir(daemon.path("refs/tags/v1/new")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_erofs()), "{err}");
    // A snapshot by id, looked up though never listed.
    assert_eq!(sh(&daemon.mnt, "ls nodes"), "");
    assert_eq!(
        std::fs::read_to_string(daemon.path(&format!("nodes/{first}/README"))).unwrap(),
        "hello\n"
    );
    // Moving the branch: refs/heads/main follows, the tag and the snapshot do not.
    std::fs::write(daemon.path("head/README"), "changed\n").unwrap();
    universe.ok(&["commit", "-m", "change"]);
    assert_eq!(sh(&daemon.mnt, "cat refs/heads/main/README"), "changed\n");
    assert_eq!(sh(&daemon.mnt, "cat refs/tags/v1/README"), "hello\n");
    assert_eq!(
        sh(&daemon.mnt, &format!("cat nodes/{first}/README")),
        "hello\n"
    );
    // A new branch appears; a deleted one disappears.
    universe.ok(&["branch", "topic"]);
    assert!(sh(&daemon.mnt, "ls refs/heads").contains("topic"));
    assert_eq!(sh(&daemon.mnt, "cat refs/heads/topic/README"), "changed\n");
    universe.ok(&["branch", "-d", "topic"]);
    assert!(!daemon.path("refs/heads/topic").exists());
}

fn libc_erofs() -> i32 {
    30
}

#[test]
fn checkout_switches_head_and_unchanged_files_keep_inodes() {
    if !fuse_ready("checkout_inodes") {
        return;
    }
    let universe = Universe::with_files(FILES);
    universe.ok(&["branch", "other"]);
    let daemon = universe.up();
    // A commit on `other` through an SWS created in the mount.
    universe.ok(&["checkout", "other"]);
    std::fs::write(daemon.path("head/src/main.c"), "// other\n").unwrap();
    std::fs::remove_file(daemon.path("head/docs/guide.md")).unwrap();
    universe.ok(&["commit", "-m", "other work"]);
    universe.ok(&["checkout", "main"]);
    let head = daemon.path("head");
    assert_eq!(
        std::fs::read_to_string(head.join("src/main.c")).unwrap(),
        "int main(void) { return 0; }\n"
    );
    assert!(head.join("docs/guide.md").exists());
    let readme = (ino(&head.join("README")), mtime(&head.join("README")));
    let util = ino(&head.join("src/util.c"));
    universe.ok(&["checkout", "other"]);
    assert_eq!(
        std::fs::read_to_string(head.join("src/main.c")).unwrap(),
        "// other\n"
    );
    assert!(!head.join("docs/guide.md").exists(), "deleted on other");
    assert_eq!(
        (ino(&head.join("README")), mtime(&head.join("README"))),
        readme
    );
    assert_eq!(ino(&head.join("src/util.c")), util);
}

#[test]
fn a_killed_daemon_leaves_no_mount_that_blocks_the_next_start() {
    if !fuse_ready("kill9_restart") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let mut daemon = universe.up();
    std::fs::write(daemon.path("head/README"), "before the crash\n").unwrap();
    // fsync is the durability point: after it returns, the change is in the store.
    std::fs::File::open(daemon.path("head/README"))
        .unwrap()
        .sync_all()
        .unwrap();
    daemon.kill9();
    assert!(is_mounted(&daemon.mnt), "the kernel keeps the dead mount");
    let mut again = universe.up();
    assert_eq!(again.mnt, daemon.mnt);
    assert_eq!(sh(&again.mnt, "cat head/README"), "before the crash\n");
    let meta = std::fs::metadata(again.path("head/README")).unwrap();
    assert!(meta.ino() > 1);
    // Ctrl-C: the daemon writes back, unmounts and exits by itself (checked before the guard
    // would detach anything).
    std::fs::write(again.path("head/README"), "written just before Ctrl-C\n").unwrap();
    again.stop_with(nix::sys::signal::Signal::SIGINT);
    assert!(!is_mounted(&again.mnt), "Ctrl-C unmounts");
    let status = universe.json(&["status"]);
    assert_eq!(
        status["changes"][0]["path"], "README",
        "the last edit was written back before exit: {status}"
    );
}

#[test]
fn an_agent_on_the_message_plane_sees_its_work_in_the_mount() {
    if !fuse_ready("agent_plane_mount") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let daemon = universe.up_with_plane();
    universe.ok(&["agent", "new", "bot"]);
    let sws = universe.ok(&["agent", "create"]).trim().to_owned();
    let patch = universe.dir.path().join("bot.json");
    std::fs::write(
        &patch,
        r#"{"id":"b1","author":"bot","ops":[{"op":"put","path":"bot.txt","content":"from the bot\n"}]}"#,
    )
    .unwrap();
    universe.ok(&["agent", "push", &sws, patch.to_str().unwrap()]);
    // Acknowledged over Zenoh means durable (in the plane's journal); the mount shows it once
    // the plane commits, within milliseconds.
    let pushed = daemon.path(&format!("sws/{sws}/bot.txt"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_to_string(&pushed).ok().as_deref() != Some("from the bot\n") {
        assert!(
            std::time::Instant::now() < deadline,
            "the pushed file never showed in the mount"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    universe.ok(&["agent", "commit", &sws, "-m", "from bot"]);
    assert_eq!(
        std::fs::read_to_string(daemon.path("refs/heads/main/bot.txt")).unwrap(),
        "from the bot\n"
    );
    assert_eq!(sh(&daemon.mnt, "cat head/bot.txt"), "from the bot\n");
    assert!(
        !daemon.path(&format!("sws/{sws}")).exists(),
        "the committed SWS is retired from sws/"
    );
}

#[test]
fn jit_wait_returns_once_the_mount_and_the_socket_serve() {
    if !fuse_ready("jit_wait_returns_once_the_mount_and_the_socket_serve") {
        return;
    }
    let universe = Universe::with_files(&[("README", "hello\n")]);
    let refused = universe.jit(&["wait", "--timeout", "0.3"]);
    assert!(!refused.status.success(), "no daemon runs yet");
    assert!(
        text(&refused.stderr).contains("no daemon served"),
        "{}",
        text(&refused.stderr)
    );

    let mnt = universe.dir.path().join("mnt");
    let daemon = Daemon::spawn(&universe, &mnt, true, std::process::Stdio::null());
    let ready = universe.json(&["wait", "--timeout", "30"]);
    assert_eq!(ready["ready"], true, "{ready}");
    // No banner read, no sleep: once `jit wait` returns, the mount serves.
    assert!(is_mounted(&daemon.mnt));
    assert_eq!(
        std::fs::read_to_string(daemon.path("head/README")).expect("head/README"),
        "hello\n"
    );
}

/// `(change, path, kind)` of each entry of a status's or a show's `changes`.
fn change_rows(changes: &serde_json::Value) -> Vec<(String, String, String)> {
    changes
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            let field = |name: &str| c[name].as_str().unwrap_or_default().to_owned();
            (field("change"), field("path"), field("kind"))
        })
        .collect()
}

fn row(change: &str, path: &str, kind: &str) -> (String, String, String) {
    (change.into(), path.into(), kind.into())
}

#[test]
fn an_empty_directory_made_in_the_mount_is_listed_committed_checked_out_and_kept() {
    if !fuse_ready("empty_directory_in_the_mount") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let mut daemon = universe.up();
    std::fs::create_dir(daemon.path("head/emptydir")).unwrap();
    let status = universe.json(&["status"]);
    assert_eq!(
        change_rows(&status["changes"]),
        [row("A", "emptydir", "dir")],
        "{status}"
    );
    let text = universe.ok(&["status"]);
    assert!(text.contains("  A emptydir/\n"), "{text}");
    universe.ok(&["commit", "-m", "an empty directory"]);
    let shown = universe.json(&["show", "main"]);
    assert_eq!(
        change_rows(&shown["changes"]),
        [row("A", "emptydir", "dir")],
        "{shown}"
    );
    assert!(daemon.path("refs/heads/main/emptydir").is_dir());
    assert!(daemon.path("head/emptydir").is_dir());
    let co = universe.dir.path().join("co");
    universe.ok(&["checkout", "--into", co.to_str().unwrap(), "-q"]);
    assert!(co.join("emptydir").is_dir(), "checkout --into makes it");
    // One more, not committed; both survive a restart.
    std::fs::create_dir(daemon.path("head/pending")).unwrap();
    daemon.stop();
    let again = universe.up();
    assert!(again.path("head/emptydir").is_dir(), "committed one kept");
    assert!(again.path("head/pending").is_dir(), "uncommitted one kept");
    let status = universe.json(&["status"]);
    assert_eq!(
        change_rows(&status["changes"]),
        [row("A", "pending", "dir")],
        "{status}"
    );
}

/// The paths an SWS status lists.
fn paths(status: &serde_json::Value) -> Vec<String> {
    change_rows(&status["changes"])
        .into_iter()
        .map(|(_, path, _)| path)
        .collect()
}

#[test]
fn verbs_run_inside_a_view_act_on_that_views_sws() {
    if !fuse_ready("verbs_inside_a_view") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let daemon = universe.up();
    std::fs::create_dir(daemon.path("sws/feat")).unwrap();
    std::fs::write(daemon.path("head/in-head.txt"), "head\n").unwrap();
    std::fs::write(daemon.path("sws/feat/in-feat.txt"), "feat\n").unwrap();
    let working = universe.json(&["status"]);
    assert_eq!(paths(&working), ["in-head.txt"], "{working}");

    // head/ (and below it): the checked-out branch's working SWS.
    for dir in ["head", "head/src", ""] {
        let status = universe.json_in(&daemon.path(dir), &["status"]);
        assert_eq!(status["id"], working["id"], "in {dir:?}: {status}");
        assert_eq!(paths(&status), ["in-head.txt"], "in {dir:?}");
    }
    // sws/feat/ (and below it): feat.
    for dir in ["sws/feat", "sws/feat/src"] {
        let status = universe.json_in(&daemon.path(dir), &["status"]);
        assert_eq!(status["name"], "feat", "in {dir}: {status}");
        assert_eq!(paths(&status), ["in-feat.txt"], "in {dir}");
        let sws = universe.json_in(&daemon.path(dir), &["sws", "status"]);
        assert_eq!(
            sws["name"], "feat",
            "sws status defaults to the view: {sws}"
        );
    }
    let diff = universe.jit_in(&daemon.path("sws/feat"), &["diff"]);
    let diff = text(&diff.stdout);
    assert!(
        diff.contains("+++ b/in-feat.txt") && !diff.contains("in-head.txt"),
        "{diff}"
    );
    // Read-only views say so.
    for dir in ["refs/heads/main", "refs/heads/main/src"] {
        let out = universe.jit_in(&daemon.path(dir), &["status"]);
        let err = text(&out.stderr);
        assert!(!out.status.success() && err.contains("read-only"), "{err}");
    }
    // A commit inside sws/feat commits feat, not head's working SWS.
    universe.json_in(&daemon.path("sws/feat"), &["commit", "-m", "from feat"]);
    assert_eq!(universe.ok(&["cat", "main:in-feat.txt"]), "feat\n");
    assert_eq!(paths(&universe.json(&["status"])), ["in-head.txt"]);
}

#[test]
fn inside_the_default_mount_the_view_wins_over_the_universe_around_it() {
    if !fuse_ready("default_mount_view") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let daemon = Daemon::start(&universe, &universe.repo.join(".jit/mnt"), false);
    std::fs::create_dir(daemon.path("sws/feat")).unwrap();
    std::fs::write(daemon.path("head/in-head.txt"), "head\n").unwrap();
    std::fs::write(daemon.path("sws/feat/in-feat.txt"), "feat\n").unwrap();
    let status = universe.json_in(&daemon.path("sws/feat"), &["status"]);
    assert_eq!(status["name"], "feat", "{status}");
    assert_eq!(paths(&status), ["in-feat.txt"]);
    let status = universe.json_in(&daemon.path("head"), &["status"]);
    assert_eq!(paths(&status), ["in-head.txt"], "{status}");
}

#[test]
fn head_follows_its_branch_when_a_reset_another_sws_or_an_import_moves_it() {
    if !fuse_ready("head_follows_branch") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let daemon = universe.up();
    let head = daemon.path("head");
    std::fs::write(head.join("README"), "one\n").unwrap();
    universe.ok(&["commit", "-m", "one"]);
    std::fs::write(head.join("README"), "two\n").unwrap();
    universe.ok(&["commit", "-m", "two"]);
    // The working SWS exists again, clean, on "two": what head/ shows from now on.
    universe.ok(&["status"]);
    assert_eq!(sh(&daemon.mnt, "cat head/README"), "two\n");

    // No sleep: the reset runs in the daemon, which refreshes the mount before it answers.
    universe.ok(&["reset", "HEAD~1"]);
    assert_eq!(sh(&daemon.mnt, "cat head/README"), "one\n");
    let co = universe.dir.path().join("co");
    universe.ok(&["checkout", "--into", co.to_str().unwrap(), "-q"]);
    assert_eq!(
        std::fs::read_to_string(co.join("README")).unwrap(),
        "one\n",
        "a checkout writes the reset content"
    );

    // A commit from another SWS moves main: head/ follows it too.
    std::fs::create_dir(daemon.path("sws/other")).unwrap();
    std::fs::write(daemon.path("sws/other/src/util.c"), "// other\n").unwrap();
    universe.ok(&["sws", "commit", "other", "-m", "from another SWS"]);
    assert_eq!(sh(&daemon.mnt, "cat head/src/util.c"), "// other\n");
    assert_eq!(sh(&daemon.mnt, "cat head/README"), "one\n");

    // An import runs in its own process, not in the daemon: the mount sees it on its next poll.
    let tree = universe.dir.path().join("imported");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("README"), "imported\n").unwrap();
    universe.ok(&["import", tree.to_str().unwrap(), "-m", "import"]);
    assert_eq!(
        read_until(&head.join("README"), "imported\n", Duration::from_secs(5)),
        "imported\n"
    );
    assert!(
        !head.join("src").exists(),
        "the imported tree replaced the old one"
    );
    let status = universe.json(&["status"]);
    assert_eq!(
        status["changes"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );
}

/// `rmdir sws/NAME` discards the SWS and answers at once, written-back changes and all. (It
/// once took about 5 s: the discard's commit made the mount refresh itself on the FUSE thread
/// serving the `rmdir` and wait there for the kernel to drop `sws/NAME`, which needs the lock
/// on `sws/` that the `rmdir` holds, until the wait timed out.)
#[test]
fn rmdir_of_an_sws_directory_discards_it_without_stalling() {
    if !fuse_ready("rmdir_sws") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let daemon = universe.up();
    for (round, content) in [None, Some("draft\n")].into_iter().enumerate() {
        let name = format!("scratch-{round}");
        let dir = daemon.path(&format!("sws/{name}"));
        std::fs::create_dir(&dir).expect("mkdir sws/NAME");
        if let Some(content) = content {
            let file = dir.join("notes.txt");
            std::fs::write(&file, content).expect("write notes.txt");
            std::fs::File::open(&file)
                .and_then(|f| f.sync_all())
                .expect("fsync notes.txt");
            assert_eq!(
                universe.changes(&name),
                vec![("A".to_owned(), "notes.txt".to_owned())]
            );
        }
        let started = std::time::Instant::now();
        std::fs::remove_dir(&dir).expect("rmdir sws/NAME");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "rmdir sws/{name} took {took:?}"
        );
        assert!(!dir.exists(), "sws/{name} is still there");
        assert!(
            !sh(&daemon.path("sws"), "ls").contains(&name),
            "sws/{name} is still listed"
        );
        let live = universe.json(&["sws", "ls"]);
        assert!(
            !live.to_string().contains(&name),
            "the SWS {name} is still live: {live}"
        );
    }
}
