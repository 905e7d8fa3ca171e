//! What the mount holds beyond its SWS: ignored build output (never a patch, never committed,
//! kept across restarts), attributes the DAG does not carry (mode, times, hard links, kept
//! across restarts and commits), and nothing left behind when an SWS is discarded.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use jit_mount_tests::*;

const PROJECT: &[(&str, &str)] = &[
    (".gitignore", "build/\n*.o\n"),
    (
        "Makefile",
        "build/app: main.o\n\tmkdir -p build && cc -o build/app main.o\n\nmain.o: main.c\n\tcc -c main.c\n",
    ),
    (
        "main.c",
        "#include <stdio.h>\nint main(void) { puts(\"built in the mount\"); return 0; }\n",
    ),
];

fn changed_paths(universe: &Universe) -> Vec<String> {
    let status = universe.json(&["status"]);
    status["changes"]
        .as_array()
        .map(|changes| {
            changes
                .iter()
                .filter_map(|c| c["path"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_build_in_head_never_commits_its_ignored_output_and_keeps_it_across_restarts() {
    if !fuse_ready("ignored_build_output") {
        return;
    }
    let universe = Universe::with_files(PROJECT);
    let mut daemon = universe.up();
    let head = daemon.path("head");
    sh(&head, "make -s");
    assert_eq!(sh(&head, "./build/app"), "built in the mount\n");
    // git's own directory is never written back either.
    sh(&head, "git init -q");
    let app = std::fs::read(head.join("build/app")).expect("build/app");
    let object = std::fs::read(head.join("main.o")).expect("main.o");
    assert_eq!(
        changed_paths(&universe),
        Vec::<String>::new(),
        "ignored output is no change"
    );

    // A tracked edit is a change, and only it is committed.
    sh(&head, "sed -i s/built/compiled/ main.c && make -s");
    assert_eq!(changed_paths(&universe), vec!["main.c".to_owned()]);
    let ignored = universe.json(&["status", "--ignored"]);
    let listed: Vec<&str> = ignored["ignored"]
        .as_array()
        .expect("ignored list")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert_eq!(listed, vec![".git/", "build/", "main.o"], "{ignored}");
    universe.ok(&["commit", "-m", "edit"]);
    let tree = universe.ok(&["ls-tree", "-r", "HEAD"]);
    assert!(
        !tree.contains("main.o") && !tree.contains("build/") && !tree.contains(".git/"),
        "{tree}"
    );

    // The output outlives the daemon, whole.
    daemon.stop();
    let again = universe.up();
    let head = again.path("head");
    assert_eq!(sh(&head, "./build/app"), "compiled in the mount\n");
    assert_ne!(
        std::fs::read(head.join("build/app")).expect("app"),
        app,
        "rebuilt after the edit"
    );
    assert_ne!(std::fs::read(head.join("main.o")).expect("main.o"), object);
    sh(&head, "git status --porcelain >/dev/null");
    assert_eq!(changed_paths(&universe), Vec::<String>::new());
}

#[test]
fn modes_times_and_hard_links_set_in_the_mount_survive_restarts_and_commits() {
    if !fuse_ready("attributes_kept") {
        return;
    }
    let universe = Universe::with_files(&[("key", "secret\n"), ("old.txt", "old\n")]);
    let mut daemon = universe.up();
    let head = daemon.path("head");
    sh(
        &head,
        "chmod 600 key && touch -d '2001-02-03 04:05:06' old.txt && echo a > a && ln a b",
    );
    let old_mtime = mtime(&head.join("old.txt"));
    universe.ok(&["commit", "-m", "files"]);
    for round in 0..2 {
        daemon.stop();
        daemon = universe.up();
        let head = daemon.path("head");
        let key = std::fs::metadata(head.join("key")).expect("key");
        assert_eq!(
            key.permissions().mode() & 0o7777,
            0o600,
            "round {round}: mode of key"
        );
        assert_eq!(
            mtime(&head.join("old.txt")),
            old_mtime,
            "round {round}: mtime of old.txt"
        );
        let (a, b) = (
            std::fs::metadata(head.join("a")).expect("a"),
            std::fs::metadata(head.join("b")).expect("b"),
        );
        assert_eq!(a.ino(), b.ino(), "round {round}: a and b are one file");
        assert_eq!(a.nlink(), 2, "round {round}: two names");
        std::fs::write(head.join("a"), "through a\n").expect("write a");
        assert_eq!(
            std::fs::read_to_string(head.join("b")).expect("b"),
            "through a\n"
        );
        std::fs::write(head.join("a"), "a\n").expect("write a back");
    }
}

#[test]
fn discarding_the_working_sws_leaves_no_ghost_in_head() {
    if !fuse_ready("discard_ghost") {
        return;
    }
    let universe = Universe::with_files(&[("README", "seed\n")]);
    let daemon = universe.up();
    let head = daemon.path("head");
    std::fs::write(head.join("new.txt"), "new content\n").expect("write");
    assert_eq!(changed_paths(&universe), vec!["new.txt".to_owned()]);
    universe.ok(&["sws", "discard", "working:main"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed = sh(&head, "ls");
        let exists = head.join("new.txt").exists();
        if !listed.contains("new.txt") && !exists {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new.txt still listed ({listed:?}) or present ({exists}) after the discard"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sh(&head, "ls"), "README\n");
    assert_eq!(sh(&head, "cat README"), "seed\n");
}

/// Sequences that once lost data in the overlay (found in review): each ends with a restart —
/// clean or `kill -9` — and checks what the mount and the SWS show after it.
#[test]
fn the_overlay_keeps_what_each_tricky_sequence_left() {
    if !fuse_ready("overlay_sequences") {
        return;
    }
    let universe = Universe::with_files(&[
        (".gitignore", "build/\n*.log\n"),
        ("README", "seed\n"),
        ("fixtures/kept.log", "tracked although ignored\n"),
        ("gone.txt", "to be removed\n"),
        ("d/sub/deep.txt", "deep\n"),
    ]);
    let mut daemon = universe.up();
    let head = daemon.path("head");
    // A new directory, a file in it, a symlink to it; an ignored file deep down; a tracked
    // file that matches an ignore pattern, edited.
    sh(&head, "mkdir n && echo x > n/f && ln -s n l");
    sh(
        &head,
        "mkdir -p build/sub && echo app > build/sub/app && touch -d '2001-01-01' build/sub/app",
    );
    sh(&head, "echo edited > fixtures/kept.log");
    universe.ok(&["status"]);
    daemon.stop();

    let mut daemon = universe.up();
    let head = daemon.path("head");
    assert_eq!(
        sh(&head, "cat n/f l/f build/sub/app fixtures/kept.log"),
        "x\nx\napp\nedited\n"
    );
    sh(&head, "echo again > README");
    universe.ok(&["status"]);
    // Removed, not yet written back, then killed; a directory with a changed mode and a new
    // file renamed, then killed.
    sh(
        &head,
        "rm gone.txt && chmod 700 d/sub && touch d/x && mv d e",
    );
    daemon.kill9();

    let daemon = universe.up();
    let head = daemon.path("head");
    assert!(
        !head.join("gone.txt").exists(),
        "a removal is kept across kill -9"
    );
    assert_eq!(
        sh(&head, "cat e/sub/deep.txt"),
        "deep\n",
        "a renamed directory keeps what it held"
    );
    assert!(head.join("e/x").exists());
    assert!(!head.join("d").exists());
    let mode = std::fs::metadata(head.join("e/sub"))
        .expect("e/sub")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(
        sh(&head, "cat build/sub/app"),
        "app\n",
        "ignored output outlives two restarts"
    );
    // Out of build/, the file is a change like any other, with its content.
    sh(&head, "mkdir dist && mv build/sub/app dist/app");
    let mut paths = changed_paths(&universe);
    paths.sort();
    assert_eq!(
        paths,
        [
            "README",
            "d/sub/deep.txt",
            "dist/app",
            "e/sub/deep.txt",
            "e/x",
            "fixtures/kept.log",
            "gone.txt",
            "l",
            "n/f"
        ],
    );
    universe.ok(&["commit", "-m", "all of it"]);
    assert_eq!(universe.ok(&["cat", "HEAD:dist/app"]), "app\n");
    assert_eq!(universe.ok(&["cat", "HEAD:fixtures/kept.log"]), "edited\n");
}

/// A directory renamed while a write-back of earlier edits is in flight, then `kill -9` before
/// the next write-back: the directory is kept whole at its new name. (Before the fix, the
/// write-back finishing after the rename found the moved directory clean, settled the records
/// of its new path away, and the restart showed neither `d` nor `e`.)
#[test]
fn a_directory_renamed_during_a_write_back_survives_kill_9() {
    if !fuse_ready("rename_racing_writeback") {
        return;
    }
    let universe = Universe::with_files(&[("README", "seed\n"), ("d/sub/deep.txt", "deep\n")]);
    let mut daemon = universe.up_with_env(&[("JIT_TEST_WRITEBACK_PAUSE_MS", "2000")]);
    let head = daemon.path("head");
    sh(&head, "chmod 700 d/sub && echo x > d/x");
    // fsync writes the view back: the snapshot is taken at once, applied 2 s later; the
    // pause announces itself once the snapshot is taken.
    let file = head.join("d/x");
    let syncing = std::thread::spawn(move || std::fs::File::open(file)?.sync_all());
    let paused = universe.repo.join(".jit/writeback-paused");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !paused.exists() {
        assert!(Instant::now() < deadline, "the write-back never paused");
        std::thread::sleep(Duration::from_millis(5));
    }
    sh(&head, "mv d e");
    assert!(
        paused.exists(),
        "the rename came after the write-back: the race was not run"
    );
    syncing.join().expect("fsync thread").expect("fsync");
    // The next write-back (which would store the rename) is still in its pause.
    daemon.kill9();

    let daemon = universe.up();
    let head = daemon.path("head");
    assert_eq!(
        sh(&head, "ls; cat e/sub/deep.txt e/x"),
        "README\ne\ndeep\nx\n",
        "the renamed directory and what it held"
    );
    let mode = std::fs::metadata(head.join("e/sub"))
        .expect("e/sub")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let mut paths = changed_paths(&universe);
    paths.sort();
    assert_eq!(paths, ["d/sub/deep.txt", "e/sub/deep.txt", "e/x"]);
}
