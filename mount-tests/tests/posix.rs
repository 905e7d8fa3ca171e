//! External POSIX suites on the mount: fsx (random reads, writes, truncates, mmaps checked
//! against a model) and pjdfstest (398 syscall-semantics tests). Both install from crates.io;
//! `.ci/run` installs them.

use std::process::Command;

use jit_mount_tests::*;

fn tool(name: &str) -> std::path::PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")))
        .expect("HOME");
    let installed = home.join("bin").join(name);
    assert!(
        installed.exists(),
        "{name} is not installed: cargo install {name} (.ci/run does this)"
    );
    installed
}

/// Seeds per location and operations per seed: 4 × 25,000 = 100,000 operations on each of
/// `head/` and an SWS.
const SEEDS: [u64; 4] = [1, 7, 42, 1234];
const OPS_PER_SEED: u32 = 25_000;

#[test]
fn fsx_on_head_and_on_an_sws() {
    if !fuse_ready("fsx") {
        return;
    }
    let fsx = tool("fsx");
    let universe = Universe::with_files(&[("README", "fsx\n")]);
    let daemon = universe.up();
    std::fs::create_dir(daemon.path("sws/fsx")).unwrap();
    let artifacts = universe.dir.path().join("fsx-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    // The two locations run side by side (fsx is single-threaded).
    let runs: Vec<_> = ["head", "sws/fsx"]
        .into_iter()
        .map(|place| {
            let dir = daemon.path(place);
            let fsx = fsx.clone();
            let artifacts = artifacts.clone();
            std::thread::spawn(move || {
                let mut total = 0;
                for seed in SEEDS {
                    let file = dir.join(format!("fsx-{seed}"));
                    let out = run(Command::new(&fsx)
                        .arg("-N")
                        .arg(OPS_PER_SEED.to_string())
                        .arg("-S")
                        .arg(seed.to_string())
                        .arg("-P")
                        .arg(&artifacts)
                        .arg(&file));
                    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
                    assert!(
                        out.status.success() && log.contains("All operations completed A-OK"),
                        "fsx seed {seed} in {}: {log}",
                        dir.display()
                    );
                    total += OPS_PER_SEED;
                }
                total
            })
        })
        .collect();
    for run in runs {
        let total = run.join().expect("fsx thread");
        assert!(total >= 100_000);
    }
    // The files fsx left are what the SWS holds after write-back.
    let changes = universe.changes("fsx");
    assert_eq!(changes.len(), SEEDS.len(), "{changes:?}");
}

#[test]
fn pjdfstest_on_an_sws() {
    if !fuse_ready("pjdfstest") {
        return;
    }
    let pjdfstest = tool("pjdfstest");
    let universe = Universe::with_files(&[("README", "pjdfstest\n")]);
    // pjdfstest acts as other users too.
    let daemon = universe.up_with(&["--allow-other"]);
    std::fs::create_dir(daemon.path("sws/posix")).unwrap();
    let dir = daemon.path("sws/posix/suite");
    std::fs::create_dir(&dir).unwrap();
    // Cross-device tests need a directory on another file system.
    let secondary = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    // The suite's configuration, compiled in and written to a scratch directory of its own.
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("pjdfstest.toml");
    std::fs::write(&config, include_str!("../pjdfstest.toml")).unwrap();
    let out = run(Command::new(&pjdfstest)
        .arg("-c")
        .arg(config)
        .arg("-s")
        .arg(secondary.path())
        .arg("-p")
        .arg(&dir));
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let summary = log
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or_else(|| panic!("no summary from pjdfstest:\n{log}"))
        .to_owned();
    println!("{summary}");
    let count = |word: &str| -> u32 {
        summary
            .split(',')
            .find(|part| part.contains(word))
            .and_then(|part| part.split_whitespace().find_map(|w| w.parse().ok()))
            .unwrap_or(0)
    };
    let failures: Vec<&str> = log.lines().filter(|l| l.ends_with("FAILED")).collect();
    assert_eq!(count("failed"), 0, "{summary}\n{}", failures.join("\n"));
    // 398 tests; the only skips are the 13 that remount read-only and LINK_MAX.
    assert!(count("passed") >= 384, "{summary}");
}
