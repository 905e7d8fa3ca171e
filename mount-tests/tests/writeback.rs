//! Write-backs of one view run one at a time, in the order of their snapshots: a write-back
//! that took its snapshot before a newer write never commits after the write-back that carries
//! that write. Patches replace whole files, so the older one committing last would put the
//! older content back into the SWS, and the bytes `fsync` (or a settle) had acknowledged would
//! be lost.
//!
//! The first test forces the order with the `JIT_TEST_WRITEBACK_HOLD` hook, which holds the
//! write-back thread between its snapshot and its apply; the second runs the race as a user
//! would, without a hook, for a few seconds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jit_mount_tests::*;

/// Waits until `path` exists (panics after 10 s, naming `what`).
fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Removes the hook's files when dropped (before the daemon, declared earlier, stops).
struct Release(Vec<PathBuf>);

impl Drop for Release {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// How the newer write is written back while the older write-back is held.
#[derive(Clone, Copy, Debug)]
enum Settle {
    /// `fsync` on the file: the view is written back on the FUSE thread.
    Fsync,
    /// `jit status`: the daemon settles its observers (the mount writes back) before answering.
    Status,
}

#[test]
fn a_write_back_overtaken_by_a_newer_one_never_puts_the_older_content_back() {
    if !fuse_ready("writeback_order") {
        return;
    }
    let universe = Universe::with_files(&[("README", "seed\n"), ("f.txt", "zero\n")]);
    let daemon = universe.up_with_env(&[("JIT_TEST_WRITEBACK_HOLD", "1")]);
    let jit_dir = universe.repo.join(".jit");
    let hold = jit_dir.join("writeback-hold");
    let held = jit_dir.join("writeback-held");
    let queued = jit_dir.join("writeback-queued");
    // A failing round must not leave a write-back held while the daemon stops.
    let _release = Release(vec![hold.clone(), held.clone()]);
    let file = daemon.path("head/f.txt");
    for (round, settle) in [Settle::Fsync, Settle::Status].into_iter().enumerate() {
        let older = format!("older {round}\n");
        let newer = format!("newer, the last bytes written, round {round}\n");
        // The write-back thread (woken by the write) takes its snapshot with the older
        // content, or none yet, and is held before it applies it.
        std::fs::write(&hold, b"").expect("arm the hold");
        std::fs::write(&file, &older).expect("write the older content");
        wait_for(&held, "the write-back thread never took the hold");
        // The newer content, written back by another thread meanwhile.
        std::fs::write(&file, &newer).expect("write the newer content");
        let _ = std::fs::remove_file(&queued);
        let settling = settle_in_background(settle, &file, &universe.repo);
        // Serialized, the second write-back queues behind the held one (and says so);
        // unserialized (the defect), it commits and the settle ends. Wait for either.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !settling.is_finished() && !queued.exists() {
            assert!(
                Instant::now() < deadline,
                "the settle neither queued nor ended"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let overtaken = settling.is_finished();
        std::fs::remove_file(&held).expect("release the held write-back");
        settling
            .join()
            .expect("settling thread")
            .unwrap_or_else(|e| panic!("{settle:?}: {e}"));
        // `jit commit` settles the mount, then commits the SWS as it is.
        universe.ok(&["commit", "-m", &format!("round {round}")]);
        assert_eq!(
            universe.ok(&["cat", "main:f.txt"]),
            newer,
            "round {round} ({settle:?}): the committed file is not the last content written \
             (the newer write-back {} the held older one)",
            if overtaken {
                "committed before"
            } else {
                "waited for"
            }
        );
        assert_eq!(
            std::fs::read_to_string(&file).expect("read f.txt"),
            newer,
            "round {round} ({settle:?}): the mount shows other content than the last written"
        );
    }
}

/// `jit status` in `repo`: the daemon settles the mount (writes it back) before it answers.
/// (A free function: the settling threads cannot borrow the `Universe`.)
fn jit_status(repo: &Path) -> Result<(), String> {
    let out = run(std::process::Command::new(jit_bin())
        .arg("status")
        .current_dir(repo)
        .env("USER", "tester"));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("jit status: {}", text(&out.stderr)))
    }
}

/// Starts writing the view back the way `settle` says, on a thread of its own.
fn settle_in_background(
    settle: Settle,
    file: &Path,
    repo: &Path,
) -> std::thread::JoinHandle<Result<(), String>> {
    let file: PathBuf = file.to_path_buf();
    let repo = repo.to_path_buf();
    std::thread::spawn(move || match settle {
        Settle::Fsync => std::fs::File::open(&file)
            .and_then(|f| f.sync_all())
            .map_err(|e| format!("fsync: {e}")),
        Settle::Status => jit_status(&repo),
    })
}

/// The same race without a hook, as a user meets it: a file rewritten and `fsync`ed over and
/// over while two `jit status` loops settle the mount from the daemon and the write-back thread
/// wakes after every write, for `JIT_WRITEBACK_STRESS_SECS` (default 10). After each `fsync`
/// the file reads back as written, and once the writer stops, the commit holds the last bytes
/// written. (Before write-backs of a view were serialized, a read after `fsync` came back
/// empty, or failed with ENOENT, within seconds in seven runs of eight.)
#[test]
fn a_file_rewritten_with_fsync_while_the_mount_is_settled_reads_back_and_commits_as_written() {
    if !fuse_ready("writeback_stress") {
        return;
    }
    let seconds: u64 = std::env::var("JIT_WRITEBACK_STRESS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let universe = Universe::with_files(&[("README", "seed\n"), ("f.txt", "zero\n")]);
    let daemon = universe.up();
    let file = daemon.path("head/f.txt");
    let stop = Arc::new(AtomicBool::new(false));
    let settlers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            let repo = universe.repo.clone();
            std::thread::spawn(move || {
                let mut settles = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    jit_status(&repo).unwrap_or_else(|e| panic!("{e}"));
                    settles += 1;
                }
                settles
            })
        })
        .collect();
    // Stops the settlers also when an assertion below fails.
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stopping = Stop(stop);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut last = String::new();
    let mut writes = 0u64;
    while Instant::now() < deadline {
        writes += 1;
        last = format!("write {writes} {}\n", "x".repeat((writes % 64) as usize));
        let written = std::fs::File::create(&file).and_then(|mut f| {
            std::io::Write::write_all(&mut f, last.as_bytes())?;
            f.sync_all()
        });
        written.unwrap_or_else(|e| panic!("write {writes}: {e}"));
        // Lets the write-back thread, woken by the write, end what it started meanwhile.
        std::thread::sleep(Duration::from_millis(3));
        let read = std::fs::read_to_string(&file).unwrap_or_else(|e| format!("<{e}>"));
        assert_eq!(
            read, last,
            "write {writes} reads back otherwise after its fsync"
        );
    }
    drop(stopping);
    let settles: u64 = settlers
        .into_iter()
        .map(|s| s.join().expect("settler"))
        .sum();
    universe.ok(&["commit", "-m", "after the race"]);
    assert_eq!(
        universe.ok(&["cat", "main:f.txt"]),
        last,
        "the commit after {writes} writes and {settles} settles"
    );
}
