//! On-disk checkouts and the watcher, end to end: the real `jit` binary, real inotify through
//! `notify`, real files and a real LMDB store. Every check compares the checkout's SWS (read
//! straight from the store) with a walk of the directory on disk.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jit_kernel::node::EntryKind;
use jit_kernel::source::Source;
use jit_kernel::sws::SwsSource;
use jit_kernel::{checkout, content, sws, tree, Repository};

/// A running `jit watch`, killed with SIGKILL when dropped (also on panic).
struct Watcher {
    child: Child,
    stderr: PathBuf,
}

impl Watcher {
    fn start(co: &Path, stall: Option<&Path>) -> Watcher {
        Watcher::spawn(co, stall, Some("warn"))
    }

    /// With the logging a user gets (no `JIT_LOG`).
    fn start_as_a_user_would(co: &Path) -> Watcher {
        Watcher::spawn(co, None, None)
    }

    fn spawn(co: &Path, stall: Option<&Path>, log: Option<&str>) -> Watcher {
        let stderr = co.with_extension("watch.log");
        let mut command = jit_command(co);
        if let Some(log) = log {
            command.env("JIT_LOG", log);
        }
        command
            .args(["watch", "."])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("log file"));
        if let Some(stall) = stall {
            command.env("JIT_WATCH_TEST_STALL", stall);
        }
        let mut child = command.spawn().expect("start jit watch");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        assert!(
            line.starts_with("watching"),
            "watcher did not start: {line:?} {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        Watcher { child, stderr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A universe with a small first snapshot, checked out into `co`.
fn setup(work: &Path) -> (PathBuf, PathBuf) {
    let repo = work.join("repo");
    let tree = work.join("tree");
    std::fs::create_dir_all(tree.join("src/deep")).unwrap();
    for name in [
        "inplace",
        "sed",
        "python",
        "vim",
        "jetbrains",
        "git",
        "chmod",
    ] {
        std::fs::write(tree.join(format!("src/{name}.txt")), "base\nline two\n").unwrap();
    }
    std::fs::write(tree.join("README"), "readme\n").unwrap();
    std::fs::write(tree.join("src/deep/file.rs"), "fn main() {}\n").unwrap();
    std::fs::write(tree.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(tree.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("README", tree.join("link")).unwrap();
    ok(work, &["init", repo.to_str().unwrap()]);
    import(&repo, &tree, "base");
    let co = work.join("co");
    ok(
        &repo,
        &["checkout", "--into", co.to_str().unwrap(), "main", "-q"],
    );
    (repo, co)
}

type Files = BTreeMap<String, (&'static str, Vec<u8>)>;

/// The checkout's SWS as path → (kind, content), straight from the store.
fn sws_files(repo: &Path, co: &Path) -> Files {
    let repo = Repository::open(repo).expect("open repo");
    let store = repo.store();
    let txn = store.read().unwrap();
    let key = std::fs::canonicalize(co).unwrap();
    let state = checkout::get(store, &txn, key.to_str().unwrap())
        .unwrap()
        .expect("a checkout");
    let id = checkout::sws_of(store, &txn, &state)
        .unwrap()
        .expect("an SWS");
    let root = sws::get(store, &txn, id).unwrap().tree;
    let src = SwsSource::new(store, &txn, id);
    let mut out = Files::new();
    tree::walk(&src, &root, b"", true, &mut |path, entry| {
        let path = String::from_utf8_lossy(path).into_owned();
        let value = match entry.kind {
            EntryKind::Directory => ("dir", Vec::new()),
            EntryKind::Symlink => ("link", content::read_blob(&src as &dyn Source, &entry.id)?),
            EntryKind::Executable => ("exec", content::read_blob(&src, &entry.id)?),
            EntryKind::File => ("file", content::read_blob(&src, &entry.id)?),
        };
        out.insert(path, value);
        Ok(())
    })
    .unwrap();
    out
}

/// The directory on disk as path → (kind, content), without metadata and ignored directories.
fn disk_files(co: &Path) -> Files {
    fn walk(dir: &Path, prefix: &str, out: &mut Files) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().into_string().unwrap();
            if [".jit-checkout", ".git", "target", "node_modules"].contains(&name.as_str()) {
                continue;
            }
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                out.insert(rel.clone(), ("dir", Vec::new()));
                walk(&entry.path(), &rel, out);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(entry.path()).unwrap();
                out.insert(rel, ("link", target.into_os_string().into_encoded_bytes()));
            } else {
                let kind = if meta.mode() & 0o111 != 0 {
                    "exec"
                } else {
                    "file"
                };
                out.insert(rel, (kind, std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    let mut out = Files::new();
    walk(co, "", &mut out);
    out
}

/// Synchronized status in the checkout, as JSON.
fn status(co: &Path) -> serde_json::Value {
    json(co, &["status"])
}

fn changed(status: &serde_json::Value) -> Vec<(String, String)> {
    status["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_owned(),
                c["change"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Status (synchronized), then the SWS must equal the disk.
fn assert_converged(repo: &Path, co: &Path) -> serde_json::Value {
    let answer = status(co);
    let (sws, disk) = (sws_files(repo, co), disk_files(co));
    if sws != disk {
        let only_sws: Vec<_> = sws
            .keys()
            .filter(|k| disk.get(*k) != sws.get(*k))
            .take(5)
            .collect();
        let only_disk: Vec<_> = disk
            .keys()
            .filter(|k| disk.get(*k) != sws.get(*k))
            .take(5)
            .collect();
        panic!(
            "SWS ({} paths) differs from disk ({} paths): sws-side {only_sws:?}, disk-side {only_disk:?}",
            sws.len(),
            disk.len()
        );
    }
    answer
}

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@x")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@x")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn checkout_writes_the_tree_and_status_without_a_watcher_walks_it() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    let answer = assert_converged(&repo, &co);
    assert_eq!(answer["synchronized"], "stat-walk");
    assert!(changed(&answer).is_empty(), "{answer}");
    assert_eq!(
        std::fs::read_link(co.join("link")).unwrap(),
        Path::new("README")
    );
    assert!(std::fs::metadata(co.join("run.sh")).unwrap().mode() & 0o100 != 0);
    std::fs::write(co.join("README"), "edited\n").unwrap();
    let answer = assert_converged(&repo, &co);
    assert_eq!(changed(&answer), [("README".into(), "M".into())]);
    // A checkout into the universe itself, or into a non-empty directory, is refused.
    let err = fails(
        &repo,
        &["checkout", "--into", repo.to_str().unwrap(), "main"],
    );
    assert!(err.contains("separate directory"), "{err}");
    let other = work.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("x"), "x").unwrap();
    let err = fails(
        &repo,
        &["checkout", "--into", other.to_str().unwrap(), "main"],
    );
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn every_save_pattern_is_one_logical_change() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    let _watcher = Watcher::start(&co, None);
    let src = co.join("src");
    let mut expected: Vec<(String, String)> = Vec::new();
    let mut check = |name: &str, content: &str, kind: &'static str| {
        let path = format!("src/{name}.txt");
        expected.push((path.clone(), "M".into()));
        expected.sort();
        let answer = assert_converged(&repo, &co);
        assert_eq!(answer["synchronized"], "watcher");
        assert_eq!(changed(&answer), expected, "after the {name} save");
        let files = sws_files(&repo, &co);
        assert_eq!(files[&path], (kind, content.as_bytes().to_vec()), "{name}");
    };

    // In-place truncate and write.
    std::fs::write(src.join("inplace.txt"), "in place\n").unwrap();
    check("inplace", "in place\n", "file");

    // sed -i: write a temp file, rename it over the original.
    run(&src, "sed", &["-i", "s/base/sed/", "sed.txt"]);
    check("sed", "sed\nline two\n", "file");

    // Python's atomic write: tempfile in the same directory, fsync, os.replace.
    run(
        &src,
        "python3",
        &[
            "-c",
            "import os,tempfile\n\
             fd,tmp=tempfile.mkstemp(dir='.')\n\
             os.write(fd,b'python\\n'); os.fsync(fd); os.close(fd)\n\
             os.chmod(tmp,0o644); os.replace(tmp,'python.txt')",
        ],
    );
    check("python", "python\n", "file");

    // vim's default save: rename the original to a backup, write a new file, delete the backup.
    run(
        &src,
        "vim",
        &[
            "-u",
            "NONE",
            "-N",
            "-n",
            "-Es",
            "-c",
            "set backupcopy=no writebackup nobackup",
            "-c",
            "%s/base/vim/",
            "-c",
            "wq",
            "vim.txt",
        ],
    );
    check("vim", "vim\nline two\n", "file");

    // JetBrains safe write: temp file, rename the original away, rename the temp in, delete.
    std::fs::write(src.join("jetbrains.txt___jb_tmp___"), "jetbrains\n").unwrap();
    std::fs::rename(
        src.join("jetbrains.txt"),
        src.join("jetbrains.txt___jb_old___"),
    )
    .unwrap();
    std::fs::rename(
        src.join("jetbrains.txt___jb_tmp___"),
        src.join("jetbrains.txt"),
    )
    .unwrap();
    std::fs::remove_file(src.join("jetbrains.txt___jb_old___")).unwrap();
    check("jetbrains", "jetbrains\n", "file");

    // chmod +x: a mode change is one change, and the content stays.
    std::fs::set_permissions(
        src.join("chmod.txt"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    check("chmod", "base\nline two\n", "exec");

    // git checkout inside the checkout (.git itself is never recorded).
    run(&co, "git", &["init", "-q", "-b", "main"]);
    run(&co, "git", &["add", "-A"]);
    run(&co, "git", &["commit", "-qm", "mirror"]);
    run(&co, "git", &["checkout", "-qb", "other"]);
    std::fs::write(src.join("git.txt"), "from git\n").unwrap();
    run(&co, "git", &["commit", "-qam", "change"]);
    run(&co, "git", &["checkout", "-q", "main"]);
    let answer = assert_converged(&repo, &co);
    assert!(
        !changed(&answer).iter().any(|(p, _)| p == "src/git.txt"),
        "{answer}"
    );
    run(&co, "git", &["checkout", "-q", "other"]);
    check("git", "from git\n", "file");

    // Ignored: target/, node_modules/, and .gitignore patterns never reach the SWS.
    std::fs::create_dir_all(co.join("target/debug")).unwrap();
    std::fs::write(co.join("target/debug/out"), "x").unwrap();
    std::fs::write(co.join(".gitignore"), "*.o\n").unwrap();
    std::fs::write(co.join("src/main.o"), "obj").unwrap();
    let answer = status(&co);
    let paths: Vec<_> = changed(&answer).into_iter().map(|(p, _)| p).collect();
    assert!(paths.contains(&".gitignore".to_owned()), "{paths:?}");
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("target") || p.ends_with(".o")),
        "{paths:?}"
    );
}

/// Creates `count` files spread over freshly made nested directories.
fn storm(root: &Path, tag: &str, count: usize) {
    for i in 0..count {
        let dir = root.join(format!("{tag}{}/a/b/c/d{}", i / 1000, (i / 100) % 10));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::write(dir.join(format!("f{i}")), format!("{tag} {i}\n")).unwrap();
    }
}

#[test]
fn a_storm_of_100k_files_in_new_directories_all_arrive() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    let watcher = Watcher::start(&co, None);
    storm(&co, "s", 100_000);
    let answer = assert_converged(&repo, &co);
    assert_eq!(answer["synchronized"], "watcher");
    assert_eq!(changed(&answer).len(), 100_000);
    assert!(!watcher.log().contains("ERROR"), "{}", watcher.log());
}

#[test]
fn a_forced_queue_overflow_is_rescanned_and_reported() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    for d in 0..200 {
        std::fs::create_dir_all(co.join(format!("w/{d}"))).unwrap();
    }
    let stall = work.path().join("stall");
    let watcher = Watcher::start(&co, Some(&stall));
    // Stall the reader, then make far more events than the inotify queue holds (16384): files
    // in directories already watched (new directories get no watch while the reader stalls),
    // about four events each.
    std::fs::write(&stall, "").unwrap();
    std::fs::write(co.join("README"), "first\n").unwrap();
    for i in 0..20_000 {
        let path = co.join(format!("w/{}/f{i}", i % 200));
        std::fs::write(path, format!("{i}\n")).unwrap();
    }
    storm(&co, "o", 5_000);
    std::fs::remove_file(co.join("src/deep/file.rs")).unwrap();
    std::fs::remove_file(&stall).unwrap();
    let answer = assert_converged(&repo, &co);
    assert_eq!(answer["synchronized"], "watcher");
    assert!(
        watcher.log().contains("overflowed"),
        "not reported: {}",
        watcher.log()
    );
}

#[test]
fn hitting_the_inotify_watch_limit_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let (_repo, co) = setup(work.path());
    for d in 0..40 {
        std::fs::create_dir_all(co.join(format!("many/{d}"))).unwrap();
    }
    // A user namespace of its own gets its own inotify limit (/proc/sys/user is per
    // namespace): the watcher runs with a limit of 8 watches without touching the machine's.
    let script = format!(
        "echo 8 > /proc/sys/user/max_inotify_watches && exec {} watch .",
        env!("CARGO_BIN_EXE_jit")
    );
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &script])
        .current_dir(&co)
        .env("JIT_LOG", "warn")
        .output()
        .expect("run unshare (util-linux)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the watcher must stop: {stderr}");
    assert!(
        stderr.contains("inotify watch limit reached") && stderr.contains("= 8)"),
        "the error names the limit and the fix: {stderr}"
    );
    assert!(
        stderr.contains("max_user_watches") && stderr.contains(".jitignore"),
        "the error says how to get out: {stderr}"
    );
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line, no backtrace: {stderr}"
    );
}

/// Issue #22: a directory that goes away under the watcher (its watch already gone with it)
/// is no warning on the user's terminal.
#[test]
fn a_removed_directory_tree_warns_nobody() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    let watcher = Watcher::start_as_a_user_would(&co);
    for round in 0..5 {
        std::fs::create_dir_all(co.join(format!("gone/a{round}/b/c"))).unwrap();
        std::fs::write(co.join(format!("gone/a{round}/b/c/f")), "x\n").unwrap();
        assert_converged(&repo, &co);
        std::fs::remove_dir_all(co.join("gone")).unwrap();
        assert_converged(&repo, &co);
    }
    let log = watcher.log();
    assert!(!log.contains("WARN"), "the terminal got: {log}");
}

#[test]
fn a_directory_rename_then_edits_under_the_new_name() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    let _watcher = Watcher::start(&co, None);
    std::fs::create_dir_all(co.join("pkg/sub")).unwrap();
    std::fs::write(co.join("pkg/a"), "a\n").unwrap();
    std::fs::write(co.join("pkg/sub/b"), "b\n").unwrap();
    assert_converged(&repo, &co);
    std::fs::rename(co.join("pkg"), co.join("lib")).unwrap();
    std::fs::write(co.join("lib/sub/b"), "b edited\n").unwrap();
    std::fs::write(co.join("lib/sub/c"), "new\n").unwrap();
    std::fs::rename(co.join("src"), co.join("source")).unwrap();
    std::fs::write(co.join("source/deep/file.rs"), "fn main() { edited }\n").unwrap();
    let answer = assert_converged(&repo, &co);
    assert_eq!(answer["synchronized"], "watcher");
    let files = sws_files(&repo, &co);
    assert!(!files.contains_key("pkg") && !files.contains_key("src"));
    assert_eq!(files["lib/sub/b"].1, b"b edited\n");
    // Later edits under the new names still arrive (the watches moved with the directories).
    std::fs::write(co.join("lib/sub/b"), "b again\n").unwrap();
    std::fs::write(co.join("source/deep/later"), "later\n").unwrap();
    assert_converged(&repo, &co);
}

#[test]
fn a_file_larger_than_an_rpc_frame_and_nested_ignore_rules_are_recorded_right() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    std::fs::create_dir_all(co.join("logs/keep")).unwrap();
    std::fs::write(co.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(co.join("logs/keep/.gitignore"), "!*.log\n").unwrap();
    let _watcher = Watcher::start(&co, None);
    // 80 MiB of varied bytes: more than the RPC's 64 MiB frame.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..80 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(co.join("big.bin"), &big).unwrap();
    std::fs::write(co.join("logs/noise.log"), "ignored\n").unwrap();
    std::fs::write(co.join("logs/keep/wanted.log"), "re-included\n").unwrap();
    let answer = status(&co);
    assert_eq!(answer["synchronized"], "watcher");
    let files = sws_files(&repo, &co);
    assert!(files["big.bin"].1 == big, "the large file arrived whole");
    assert!(
        !files.contains_key("logs/noise.log"),
        "ignored by the top .gitignore"
    );
    assert_eq!(
        files["logs/keep/wanted.log"].1, b"re-included\n",
        "a nested .gitignore's negation wins"
    );
}

#[test]
fn kill_9_during_a_storm_then_restart_converges() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    let mut watcher = Watcher::start(&co, None);
    let writer = {
        let co = co.clone();
        std::thread::spawn(move || storm(&co, "k", 30_000))
    };
    std::thread::sleep(Duration::from_millis(300));
    watcher.kill();
    writer.join().unwrap();
    std::fs::write(co.join("README"), "after the kill\n").unwrap();
    let _again = Watcher::start(&co, None);
    let answer = assert_converged(&repo, &co);
    assert_eq!(answer["synchronized"], "watcher");
}

#[test]
fn switching_revisions_is_incremental_and_keeps_or_refuses_local_edits() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    ok(&repo, &["tag", "v1"]);
    // v2: README changed, run.sh removed, a new file in a new directory.
    let tree = work.path().join("tree");
    std::fs::write(tree.join("README"), "readme v2\n").unwrap();
    std::fs::remove_file(tree.join("run.sh")).unwrap();
    std::fs::create_dir_all(tree.join("new/dir")).unwrap();
    std::fs::write(tree.join("new/dir/file"), "new\n").unwrap();
    import(&repo, &tree, "v2");
    ok(&repo, &["tag", "v2"]);
    ok(&co, &["checkout", "v1", "-q"]);
    assert_converged(&repo, &co);
    let before = std::fs::metadata(co.join("src/deep/file.rs")).unwrap();
    // A local edit the switch does not touch is kept and follows into the new SWS.
    std::fs::write(co.join("src/sed.txt"), "local edit\n").unwrap();
    let out = json(&co, &["checkout", "v2", "-q"]);
    assert_eq!(out["kept"], 1, "{out}");
    assert_eq!(out["written"], 2, "{out}");
    assert_eq!(out["removed"], 1, "{out}");
    let after = std::fs::metadata(co.join("src/deep/file.rs")).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );
    assert_eq!(std::fs::read(co.join("README")).unwrap(), b"readme v2\n");
    assert!(!co.join("run.sh").exists());
    let answer = assert_converged(&repo, &co);
    assert_eq!(changed(&answer), [("src/sed.txt".into(), "M".into())]);
    // A local edit of a path the switch changes is refused, and nothing is written.
    std::fs::write(co.join("README"), "mine\n").unwrap();
    let err = fails(&co, &["checkout", "v1"]);
    assert!(
        err.contains("uncommitted changes") && err.contains("README"),
        "{err}"
    );
    assert_eq!(std::fs::read(co.join("README")).unwrap(), b"mine\n");
    assert!(co.join("new/dir/file").exists());
}

#[test]
fn a_checkout_killed_midway_is_finished_not_taken_for_edits() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    ok(&repo, &["tag", "v1"]);
    let tree = work.path().join("tree");
    std::fs::write(tree.join("README"), "readme v2\n").unwrap();
    std::fs::write(tree.join("src/vim.txt"), "v2\n").unwrap();
    import(&repo, &tree, "v2");
    ok(&repo, &["tag", "v2"]);
    ok(&co, &["checkout", "v1", "-q"]);
    assert_converged(&repo, &co);
    // Kill the switch to v2 after it wrote the files, before it recorded them.
    let stall = work.path().join("stalled");
    let mut child = jit_command(&co)
        .args(["checkout", "v2", "-q"])
        .env("JIT_CHECKOUT_TEST_STALL", &stall)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !stall.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the checkout never stalled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::read(co.join("README")).unwrap(), b"readme v2\n");
    // The half-switched directory is not taken for edits: the watcher and status refuse.
    let out = jit_command(&co).args(["watch", "."]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("interrupted") && err.contains("jit checkout v2"),
        "{err}"
    );
    let err = fails(&co, &["status"]);
    assert!(err.contains("interrupted"), "{err}");
    // `jit checkout` finishes the switch; nothing was recorded as an edit.
    ok(&co, &["checkout", "-q"]);
    let answer = assert_converged(&repo, &co);
    assert!(changed(&answer).is_empty(), "no edits: {answer}");
    assert_eq!(sws_files(&repo, &co)["src/vim.txt"].1, b"v2\n");
    // And the checkout goes on as usual.
    ok(&co, &["checkout", "v1", "-q"]);
    assert_eq!(std::fs::read(co.join("README")).unwrap(), b"readme\n");
    assert!(changed(&assert_converged(&repo, &co)).is_empty());
}

#[test]
fn commit_from_a_checkout_then_keep_editing() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    let _watcher = Watcher::start(&co, None);
    std::fs::write(co.join("README"), "committed\n").unwrap();
    ok(
        &co,
        &[
            "commit",
            "-m",
            "from the checkout",
            "--author",
            AUTHOR,
            "--date",
            DATE,
        ],
    );
    let answer = assert_converged(&repo, &co);
    assert!(changed(&answer).is_empty(), "{answer}");
    assert_eq!(ok(&repo, &["cat", "main:README"]), "committed\n");
    std::fs::write(co.join("README"), "after the commit\n").unwrap();
    let answer = assert_converged(&repo, &co);
    assert_eq!(changed(&answer), [("README".into(), "M".into())]);
    let _ = Instant::now();
}

#[test]
fn an_empty_directory_made_in_a_checkout_is_recorded_and_kept_across_a_switch() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    ok(&repo, &["tag", "v1"]);
    {
        // The watcher records a new empty directory as a mkdir.
        let _watcher = Watcher::start(&co, None);
        std::fs::create_dir(co.join("made")).unwrap();
        let answer = assert_converged(&repo, &co);
        assert_eq!(answer["synchronized"], "watcher");
        assert_eq!(changed(&answer), [("made".into(), "A".into())]);
        let text = ok(&co, &["status"]);
        assert!(text.contains("  A made/\n"), "{text}");
    }
    // A switch that does not touch it keeps it, as an uncommitted edit of the new SWS.
    let tree = work.path().join("tree");
    std::fs::write(tree.join("README"), "readme v2\n").unwrap();
    import(&repo, &tree, "v2");
    ok(&repo, &["tag", "v2"]);
    let out = json(&co, &["checkout", "v2", "-q"]);
    assert_eq!(out["kept"], 1, "{out}");
    assert!(co.join("made").is_dir());
    let answer = assert_converged(&repo, &co);
    assert_eq!(changed(&answer), [("made".into(), "A".into())]);
    // Removed again: nothing left to commit.
    std::fs::remove_dir(co.join("made")).unwrap();
    assert!(changed(&assert_converged(&repo, &co)).is_empty());
}

/// Issue #22: `jit restore` in an on-disk checkout writes the paths back on disk (relative to
/// the current directory, as git takes them) — a file, a directory whole — and the checkout's
/// working set records that; `--source` takes them from another revision.
#[test]
fn restore_in_a_checkout_writes_the_files_back_and_the_working_set_follows() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    std::fs::write(co.join("src/sed.txt"), "mangled\n").unwrap();
    std::fs::write(co.join("src/deep/file.rs"), "broken\n").unwrap();
    std::fs::write(co.join("src/deep/extra.rs"), "extra\n").unwrap();
    std::fs::write(co.join("README"), "kept edit\n").unwrap();
    let paths: Vec<String> = changed(&status(&co)).into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths.len(), 4, "{paths:?}");

    ok(&co, &["restore", "src/sed.txt"]);
    assert_eq!(
        std::fs::read_to_string(co.join("src/sed.txt")).unwrap(),
        "base\nline two\n"
    );
    // From a subdirectory, a relative path, and a directory whole.
    ok(&co.join("src"), &["restore", "deep"]);
    assert_eq!(
        std::fs::read_to_string(co.join("src/deep/file.rs")).unwrap(),
        "fn main() {}\n"
    );
    assert!(
        !co.join("src/deep/extra.rs").exists(),
        "what the base lacks is removed"
    );
    let left = changed(&assert_converged(&repo, &co));
    assert_eq!(
        left,
        vec![("README".to_owned(), "M".to_owned())],
        "only the kept edit is left"
    );
    // From another revision: the file as it is nowhere else is refused, a path the base has
    // comes back.
    std::fs::remove_file(co.join("run.sh")).unwrap();
    ok(&co, &["restore", "--source", "main", "run.sh"]);
    assert!(co.join("run.sh").exists());
    let mode = std::fs::metadata(co.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable as committed");
    assert!(fails(&co, &["restore", "nowhere"]).contains("nowhere"));
    assert_converged(&repo, &co);
}

/// A `jit status` that writes its cookie after the watcher took its lock but before it watched
/// `.jit-checkout/` (the README's `jit watch DIR &` then `jit status` at once) is answered by
/// the watcher's first scan — it used to wait out the five-minute cookie timeout.
#[test]
fn a_cookie_written_before_the_watcher_watches_is_answered() {
    let work = tempfile::tempdir().unwrap();
    let (repo, co) = setup(work.path());
    let hold = work.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let mut watcher = jit_command(&co)
        .args(["watch", "."])
        .env("JIT_WATCH_TEST_HOLD", &hold)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'c>(&'c mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let watcher = Kill(&mut watcher);
    // Wait until it holds its lock (status then trusts it to answer the cookie).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !jit_watcher::marker::watcher_running(&co).unwrap() {
        assert!(Instant::now() < deadline, "the watcher never took its lock");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(co.join("README"), "edited while the watcher starts\n").unwrap();
    let status = jit_command(&co)
        .args(["status", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The cookie is on disk before the watcher watches anything.
    let cookie_seen = Instant::now() + Duration::from_secs(30);
    while jit_watcher::marker::cookies(&co).unwrap().is_empty() {
        assert!(Instant::now() < cookie_seen, "status wrote no cookie");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::remove_file(&hold).unwrap();
    // Answered by the watcher: a cookie it never answers makes status give up and compare the
    // tree itself ("stat-walk").
    let out = status.wait_with_output().unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["synchronized"], "watcher", "{answer}");
    assert_eq!(
        changed(&answer),
        vec![("README".to_owned(), "M".to_owned())]
    );
    assert_converged(&repo, &co);
    drop(watcher);
}
