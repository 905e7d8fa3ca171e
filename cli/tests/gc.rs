//! `jit gc`: old versions become deltas and the file shrinks; every node still reads back;
//! and `jit gc` killed with SIGKILL at random points leaves a store `jit fsck` passes, which
//! a later `jit gc` finishes.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=T", "-c", "user.email=t@example.org"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

/// A git history of 40 commits over 12 text files and one chunked file, imported into a new
/// universe `u` under `work`.
fn universe(work: &Path) -> PathBuf {
    let src = work.join("src");
    fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    let mut files: Vec<Vec<String>> = (0..12)
        .map(|f| (0..150).map(|l| format!("file {f} line {l}\n")).collect())
        .collect();
    let mut large: Vec<u8> = (0..400_000u32).map(|i| (i * 7 % 253) as u8).collect();
    for n in 0..40usize {
        for k in 0..3 {
            let f = (n * 5 + k) % files.len();
            files[f][(n * 13 + k) % 150] = format!("edited by commit {n}\n");
        }
        for (f, lines) in files.iter().enumerate() {
            let dir = src.join(format!("dir{}", f % 3));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format!("f{f}.txt")), lines.concat()).unwrap();
        }
        if n % 5 == 0 {
            large[n * 5000] ^= 0x55;
            fs::write(src.join("large.bin"), &large).unwrap();
        }
        git(&src, &["add", "-A"]);
        git(&src, &["commit", "-q", "-m", &format!("commit {n}")]);
    }
    ok(work, &["init", "u"]);
    let u = work.join("u");
    ok(
        &u,
        &["import-git", src.to_str().unwrap(), "--branch", "main"],
    );
    u
}

fn allocated(universe: &Path) -> u64 {
    fs::metadata(universe.join(".jit/store/data.mdb"))
        .unwrap()
        .blocks()
        * 512
}

/// Everything the history shows: every commit's patch.
fn whole_history(universe: &Path) -> String {
    ok(universe, &["log", "-p", "--color", "never"])
}

#[test]
fn gc_stores_old_versions_as_deltas_shrinks_the_file_and_every_node_reads_back() {
    let work = tempfile::tempdir().unwrap();
    let u = universe(work.path());
    let (before, history) = (allocated(&u), whole_history(&u));
    let report = json(&u, &["gc"]);
    assert!(report["rewritten"].as_u64().unwrap() >= 100, "{report}");
    assert_eq!(report["compacted"], true, "{report}");
    let after = allocated(&u);
    assert!(
        after * 2 < before,
        "the store went from {before} to {after} bytes"
    );
    assert!(ok(&u, &["fsck"]).contains("clean"));
    assert_eq!(
        whole_history(&u),
        history,
        "every version reads back the same"
    );
    // A daemon holding the store open: gc repacks but leaves the file, saying why.
    let _daemon = Daemon::start(&u);
    let text = ok(&u, &["gc"]);
    assert!(text.contains("open in another process"), "{text}");
}

#[test]
fn gc_killed_at_random_points_leaves_a_store_fsck_passes_and_a_rerun_finishes() {
    let work = tempfile::tempdir().unwrap();
    let base = universe(work.path());
    let history = whole_history(&base);
    // How long a whole run takes here, on a copy.
    let timing = work.path().join("timing");
    copy_dir(&base.join(".jit"), &timing.join(".jit"));
    let started = Instant::now();
    ok(&timing, &["gc", "--batch", "2"]);
    let whole = started.elapsed();

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20 {
        let copy = work.path().join(format!("round{round}"));
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // A random point within a whole run; if the run ended first (a loaded machine runs
        // faster or slower than the timing run), again on a fresh copy with half the delay.
        let mut delay = whole.mul_f64((seed % 1000) as f64 / 1000.0 * 0.9);
        let mut landed = false;
        for _ in 0..12 {
            if copy.exists() {
                fs::remove_dir_all(&copy).unwrap();
            }
            copy_dir(&base.join(".jit"), &copy.join(".jit"));
            let mut child = jit_command(&copy)
                .args(["gc", "--batch", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(delay);
            landed = child.try_wait().unwrap().is_none();
            child.kill().unwrap();
            child.wait().unwrap();
            if landed {
                break;
            }
            delay /= 2;
        }
        assert!(landed, "round {round}: gc always ended before the kill");
        // fsck rebuilds and hashes every node.
        let out = jit(&copy, &["fsck"]);
        assert!(
            out.status.success(),
            "round {round} (killed after {delay:?}): {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_eq!(whole_history(&copy), history, "round {round}");
        // A rerun finishes the job.
        ok(&copy, &["gc", "--batch", "2"]);
        assert!(ok(&copy, &["fsck"]).contains("clean"), "round {round}");
        assert!(!copy.join(".jit/store/data.mdb.compact").exists());
        assert_eq!(whole_history(&copy), history, "round {round}");
        fs::remove_dir_all(&copy).unwrap();
    }
}
