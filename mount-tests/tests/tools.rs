//! Real tools inside an SWS directory: editors' save patterns, git, cargo and rsync. Each
//! save pattern must leave exactly one logical change in the SWS, with the right content and
//! no trace of its temporary files.

use std::path::Path;

use jit_mount_tests::*;

const FILES: &[(&str, &str)] = &[
    ("notes.txt", "alpha\nbeta\ngamma\n"),
    ("lib/code.rs", "fn old() {}\n"),
];

fn sws(daemon: &Daemon, name: &str) -> std::path::PathBuf {
    std::fs::create_dir(daemon.path(&format!("sws/{name}"))).unwrap();
    daemon.path(&format!("sws/{name}"))
}

fn assert_one_change(universe: &Universe, sws: &str, dir: &Path, path: &str, want: &str) {
    assert_eq!(
        std::fs::read_to_string(dir.join(path)).unwrap(),
        want,
        "content through the mount"
    );
    assert_eq!(
        universe.changes(sws),
        vec![("M".to_owned(), path.to_owned())],
        "exactly one logical change"
    );
    let listing = sh(dir, "ls -a");
    assert_eq!(
        listing.split_whitespace().collect::<Vec<_>>(),
        vec![".", "..", "lib", "notes.txt"],
        "no temporary or backup file left"
    );
}

#[test]
fn save_patterns_each_yield_one_change() {
    if !fuse_ready("save_patterns") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let daemon = universe.up();

    // In-place truncate and write.
    let dir = sws(&daemon, "inplace");
    sh(&dir, "printf 'alpha\\nBETA\\ngamma\\n' > notes.txt");
    assert_one_change(
        &universe,
        "inplace",
        &dir,
        "notes.txt",
        "alpha\nBETA\ngamma\n",
    );

    // sed -i: write a temporary file, rename it over the original.
    let dir = sws(&daemon, "sed");
    sh(&dir, "sed -i s/beta/BETA/ notes.txt");
    assert_one_change(&universe, "sed", &dir, "notes.txt", "alpha\nBETA\ngamma\n");

    // Python's atomic write: temp file, fsync, os.replace.
    let dir = sws(&daemon, "atomic");
    sh(
        &dir,
        "python3 -c \"import os,tempfile\n\
         fd,tmp=tempfile.mkstemp(dir='.')\n\
         os.write(fd,b'alpha\\nBETA\\ngamma\\n'); os.fsync(fd); os.close(fd)\n\
         os.chmod(tmp,0o644); os.replace(tmp,'notes.txt')\"",
    );
    assert_one_change(
        &universe,
        "atomic",
        &dir,
        "notes.txt",
        "alpha\nBETA\ngamma\n",
    );

    // vim's rename-to-backup save: the original becomes notes.txt~, a new file is written,
    // the backup is removed.
    let dir = sws(&daemon, "vim");
    sh(
        &dir,
        "vim -u NONE -N -es -c 'set backupcopy=no writebackup nobackup' \
         -c '%s/beta/BETA/' -c 'wq' notes.txt",
    );
    assert_one_change(&universe, "vim", &dir, "notes.txt", "alpha\nBETA\ngamma\n");

    // JetBrains safe write: temp file, original renamed away, temp renamed in, old deleted.
    let dir = sws(&daemon, "jetbrains");
    sh(
        &dir,
        "printf 'alpha\\nBETA\\ngamma\\n' > notes.txt___jb_tmp___ && \
         mv notes.txt notes.txt___jb_old___ && \
         mv notes.txt___jb_tmp___ notes.txt && rm notes.txt___jb_old___",
    );
    assert_one_change(
        &universe,
        "jetbrains",
        &dir,
        "notes.txt",
        "alpha\nBETA\ngamma\n",
    );

    // Executable bit through chmod is a change of its own kind, kept by the SWS.
    let dir = sws(&daemon, "chmod");
    sh(&dir, "chmod +x notes.txt");
    assert_eq!(
        universe.changes("chmod"),
        vec![("M".to_owned(), "notes.txt".to_owned())]
    );
    assert!(sh(&dir, "ls -l notes.txt").starts_with("-rwx"));
}

#[test]
fn git_works_inside_an_sws() {
    if !fuse_ready("git_in_sws") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let daemon = universe.up();
    let dir = sws(&daemon, "gitwork");
    sh(
        &dir,
        "git init -q && git add -A && \
         git -c user.name=T -c user.email=t@example.com commit -qm first && \
         echo more >> notes.txt && git add notes.txt && \
         git -c user.name=T -c user.email=t@example.com commit -qm second",
    );
    assert_eq!(
        sh(&dir, "git status --porcelain"),
        "",
        "git status is clean"
    );
    assert_eq!(sh(&dir, "git log --oneline | wc -l").trim(), "2");
    sh(&dir, "git fsck --strict");
    // git's own directory lives in the mount's overlay, never in the SWS: a commit can never
    // carry `.git/config` to someone else's checkout.
    let changes = universe.changes("gitwork");
    assert_eq!(changes, vec![("M".to_owned(), "notes.txt".to_owned())]);
}

#[test]
fn cargo_builds_a_crate_inside_an_sws() {
    if !fuse_ready("cargo_in_sws") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let daemon = universe.up();
    let dir = sws(&daemon, "crate");
    let out = run(std::process::Command::new("cargo")
        .args(["new", "--offline", "--vcs", "none", "-q", "hello"])
        .current_dir(&dir));
    assert!(out.status.success(), "cargo new: {}", text(&out.stderr));
    let project = dir.join("hello");
    std::fs::write(
        project.join("src/main.rs"),
        "mod greet;\nfn main() { println!(\"{}\", greet::hello()); }\n",
    )
    .unwrap();
    std::fs::write(
        project.join("src/greet.rs"),
        "pub fn hello() -> &'static str { \"hello from the mount\" }\n",
    )
    .unwrap();
    let out = run(std::process::Command::new("cargo")
        .args(["run", "--offline", "-q"])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .current_dir(&project));
    assert!(out.status.success(), "cargo run: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from the mount\n");
    // An incremental rebuild after an edit picks the edit up.
    std::fs::write(
        project.join("src/greet.rs"),
        "pub fn hello() -> &'static str { \"edited\" }\n",
    )
    .unwrap();
    let out = run(std::process::Command::new("cargo")
        .args(["run", "--offline", "-q"])
        .env_remove("CARGO_TARGET_DIR")
        .current_dir(&project));
    assert!(out.status.success(), "cargo run: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "edited\n");
}

#[test]
fn rsync_a_tree_in_and_diff_is_clean() {
    if !fuse_ready("rsync_in_sws") {
        return;
    }
    let universe = Universe::with_files(FILES);
    let source = universe.dir.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    sh(
        &source,
        "mkdir -p a/b/c empty && for i in $(seq 1 200); do echo line $i > a/b/c/f$i.txt; done && \
         head -c 3000000 /dev/urandom > big.bin && printf '#!/bin/sh\\necho hi\\n' > run.sh && \
         chmod +x run.sh && ln -s a/b/c/f1.txt link && touch -d '2001-02-03 04:05:06' a/b/c/f7.txt",
    );
    let daemon = universe.up();
    let dir = sws(&daemon, "synced");
    let target = dir.join("copy");
    let out = run(std::process::Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", source.display()))
        .arg(&target));
    assert!(out.status.success(), "rsync: {}", text(&out.stderr));
    let diff = run(std::process::Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&source)
        .arg(&target));
    assert!(diff.status.success(), "diff -r: {}", text(&diff.stdout));
    assert_eq!(
        sh(&target, "stat -c %Y a/b/c/f7.txt").trim(),
        sh(&source, "stat -c %Y a/b/c/f7.txt").trim(),
        "rsync -a kept the mtime"
    );
    // Everything is in the SWS, byte for byte: compare the kernel's view after a commit.
    universe.ok(&["sws", "commit", "synced", "-m", "rsync"]);
    let committed = daemon.path("refs/heads/main/copy");
    let diff = run(std::process::Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&source)
        .arg(&committed));
    assert!(
        diff.status.success(),
        "committed tree differs: {}",
        text(&diff.stdout)
    );
}
