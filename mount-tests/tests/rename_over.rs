//! Rename over an existing file, the way git updates `.git/config`: create a lock file with
//! `O_CREAT|O_EXCL`, write it, close it, rename it over the target, reopen the target. Every
//! reopen must see exactly what was written — size, `read` and `mmap` — and so must the store
//! once the mount settles. Before inodes carried unique generations, a write-back result meant
//! for a forgotten inode could land on the next lock file given the same number: 0.2–0.5 % of
//! reopens saw an older size and no bytes, and that emptiness was committed.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;

use jit_mount_tests::*;

/// Content of round `i`: its size varies so a stale size is caught as well as stale bytes.
fn content(i: usize) -> Vec<u8> {
    let line = format!("round {i}\n");
    line.repeat(1 + i % 7).into_bytes()
}

fn cstr(path: &Path) -> CString {
    CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL in path")
}

/// One round in `dir`; returns a description of what was wrong, if anything.
fn round(dir: &Path, i: usize) -> Option<String> {
    let lock = cstr(&dir.join("config.lock"));
    let target = cstr(&dir.join("config"));
    let want = content(i);
    // SAFETY: plain libc calls on paths and buffers owned here; every result is checked.
    unsafe {
        let fd = libc::open(
            lock.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
            0o644,
        );
        if fd < 0 {
            return Some(format!("open lock: {}", std::io::Error::last_os_error()));
        }
        let n = libc::write(fd, want.as_ptr().cast(), want.len());
        libc::close(fd);
        if n != want.len() as isize {
            return Some(format!("short write {n}"));
        }
        if libc::rename(lock.as_ptr(), target.as_ptr()) != 0 {
            return Some(format!("rename: {}", std::io::Error::last_os_error()));
        }
        let fd = libc::open(target.as_ptr(), libc::O_RDONLY);
        if fd < 0 {
            return Some(format!("reopen: {}", std::io::Error::last_os_error()));
        }
        let mut stat: libc::stat = std::mem::zeroed();
        let mut problem = None;
        if libc::fstat(fd, &mut stat) != 0 || stat.st_size != want.len() as i64 {
            problem = Some(format!("fstat size {} want {}", stat.st_size, want.len()));
        }
        let mut buf = vec![0u8; want.len() + 64];
        let got = libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
        if problem.is_none() && (got != want.len() as isize || buf[..want.len()] != want[..]) {
            problem = Some(format!("read {got} bytes, want {}", want.len()));
        }
        if problem.is_none() {
            let map = libc::mmap(
                std::ptr::null_mut(),
                want.len(),
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            );
            if map == libc::MAP_FAILED {
                problem = Some(format!("mmap: {}", std::io::Error::last_os_error()));
            } else {
                // A short backing object would raise SIGBUS here rather than compare unequal:
                // the size check above runs first, so the mapping is only read when fstat
                // agrees with the length.
                let mapped = std::slice::from_raw_parts(map.cast::<u8>(), want.len());
                if mapped != &want[..] {
                    problem = Some("mmap content differs".into());
                }
                libc::munmap(map, want.len());
            }
        }
        libc::close(fd);
        problem
    }
}

fn rounds() -> usize {
    std::env::var("JIT_RENAME_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Runs the rounds in `dir`, returning every failure.
fn hammer(dir: PathBuf, rounds: usize) -> Vec<String> {
    std::fs::write(dir.join("config"), b"initial\n").expect("seed target");
    (0..rounds)
        .filter_map(|i| round(&dir, i).map(|p| format!("round {i}: {p}")))
        .collect()
}

#[test]
fn renaming_a_lock_file_over_its_target_never_shows_an_empty_or_stale_file() {
    if !fuse_ready("rename_over") {
        return;
    }
    let universe = Universe::with_files(&[("README", "seed\n")]);
    let daemon = universe.up();
    std::fs::create_dir(daemon.path("sws/side")).expect("mkdir sws/side");
    let n = rounds();
    let in_head = daemon.path("head");
    let in_sws = daemon.path("sws/side");
    let head = std::thread::spawn(move || hammer(in_head, n));
    let side = hammer(in_sws, n);
    let head = head.join().expect("head thread");
    assert!(
        head.is_empty(),
        "head/: {} failures: {:?}",
        head.len(),
        &head[..head.len().min(10)]
    );
    assert!(
        side.is_empty(),
        "sws/side: {} failures: {:?}",
        side.len(),
        &side[..side.len().min(10)]
    );

    // What was written back is the last round, in both SWS: committed one after the other
    // (the same content added on both sides merges cleanly).
    let last = String::from_utf8(content(n - 1)).expect("utf-8");
    universe.ok(&["commit", "-m", "from head"]);
    assert_eq!(
        universe.ok(&["cat", "HEAD:config"]),
        last,
        "head/ committed the last round"
    );
    universe.ok(&["sws", "commit", "side", "-m", "from side"]);
    assert_eq!(
        universe.ok(&["cat", "HEAD:config"]),
        last,
        "sws/side committed the last round"
    );
}

/// A source repository for the clone test: this checkout's own history when there is one,
/// else a small history made here.
fn source_repository(scratch: &Path) -> PathBuf {
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .current_dir(&own)
        .output();
    if out.is_ok_and(|o| o.status.success()) {
        return own;
    }
    let made = scratch.join("source");
    std::fs::create_dir_all(&made).expect("mkdir source");
    sh(
        &made,
        "git init -q && for i in $(seq 1 40); do echo $i > f$((i % 9)).txt; git add -A; \
         git -c user.name=T -c user.email=t@example.com commit -qm c$i; done",
    );
    made
}

#[test]
fn fifty_git_clones_into_head_are_each_whole() {
    if !fuse_ready("git_clones") {
        return;
    }
    let universe = Universe::with_files(&[("README", "seed\n")]);
    let daemon = universe.up();
    let source = source_repository(universe.dir.path());
    let url = format!(
        "file://{}",
        source.canonicalize().expect("source").display()
    );
    let clones: usize = std::env::var("JIT_CLONES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let head = daemon.path("head");
    let mut failures = Vec::new();
    for i in 0..clones {
        let name = format!("clone{i}");
        let out = run(Command::new("git")
            .args(["clone", "-q", "--no-hardlinks", &url, &name])
            .current_dir(&head));
        if !out.status.success() {
            failures.push(format!(
                "{name}: clone exit {:?}: {}",
                out.status.code(),
                text(&out.stderr)
            ));
            continue;
        }
        let dir = head.join(&name);
        let fsck = run(Command::new("git")
            .args(["fsck", "--strict"])
            .current_dir(&dir));
        if !fsck.status.success() {
            failures.push(format!("{name}: fsck: {}", text(&fsck.stderr)));
        }
        let origin = run(Command::new("git")
            .args(["config", "remote.origin.url"])
            .current_dir(&dir));
        if text(&origin.stdout).trim() != url {
            failures.push(format!(
                "{name}: remote.origin.url is {:?}",
                text(&origin.stdout)
            ));
        }
        // Keep the mount small: the clone was checked; remove it.
        std::fs::remove_dir_all(&dir).expect("remove clone");
    }
    assert!(
        failures.is_empty(),
        "{} of {clones} clones failed: {failures:#?}",
        failures.len()
    );
}
