//! What `write(2)` accepted survives the daemon: `kill -9` right after a file's `close` (0, 1,
//! 5 and 50 ms after) or while the file is still open, and a SIGTERM while a writer is still
//! writing. Every byte is there after the next `jit up` — written back into the SWS from the
//! overlay's data files and records.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use jit_mount_tests::*;

/// Content of round `round`: sizes from a few bytes to ~300 KiB, each byte tied to the round.
fn payload(round: usize) -> Vec<u8> {
    let size = 1 + (round * 7919) % 300_000;
    (0..size)
        .map(|i| ((i * 31 + round * 17) % 251) as u8)
        .collect()
}

fn rounds() -> usize {
    std::env::var("JIT_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

/// Checks that every file written so far reads back whole through the mount.
fn check_all(daemon: &Daemon, written: &[(String, Vec<u8>)]) {
    for (rel, want) in written {
        let got = std::fs::read(daemon.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(
            got == *want,
            "{rel}: {} bytes after restart, {} written",
            got.len(),
            want.len()
        );
    }
}

#[test]
fn kill_9_after_close_or_with_the_file_open_loses_no_accepted_byte() {
    if !fuse_ready("kill9_durability") {
        return;
    }
    let universe = Universe::with_files(&[("README", "seed\n")]);
    let mut daemon = universe.up();
    std::fs::create_dir(daemon.path("sws/a")).expect("mkdir sws/a");
    let mut written: Vec<(String, Vec<u8>)> = Vec::new();
    let delays = [Some(0u64), Some(1), Some(5), Some(50), None];
    let mut round = 0;
    for delay in delays {
        for _ in 0..rounds() {
            let view = if round % 2 == 0 { "head" } else { "sws/a" };
            let rel = format!("{view}/round-{round}.bin");
            let data = payload(round);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(daemon.path(&rel))
                .unwrap_or_else(|e| panic!("create {rel}: {e}"));
            file.write_all(&data).expect("write");
            match delay {
                Some(ms) => {
                    drop(file);
                    std::thread::sleep(Duration::from_millis(ms));
                    daemon.kill9();
                }
                None => {
                    // Still open: the bytes went to the kernel, never through a close.
                    daemon.kill9();
                    drop(file);
                }
            }
            written.push((rel, data));
            round += 1;
            daemon = universe.up();
            check_all(&daemon, &written[written.len() - 1..]);
        }
    }
    check_all(&daemon, &written);
    // The recovered files are ordinary changes of their SWS, and nothing else is.
    let head_changes = universe.changes("working:main");
    assert_eq!(
        head_changes.len(),
        written
            .iter()
            .filter(|(r, _)| r.starts_with("head/"))
            .count()
    );
    assert!(head_changes.iter().all(|(c, _)| c == "A"));
}

#[test]
fn sigterm_while_a_file_is_being_written_exits_cleanly_and_keeps_every_accepted_byte() {
    if !fuse_ready("sigterm_open_writer") {
        return;
    }
    let universe = Universe::with_files(&[("README", "seed\n")]);
    let mut daemon = universe.up();
    let path = daemon.path("head/big.bin");
    let total = 200usize << 20;
    let chunk = 1usize << 20;
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&path).expect("create big.bin");
            let mut accepted = 0usize;
            while accepted < total {
                let data = vec![(accepted / chunk) as u8; chunk];
                match file.write(&data) {
                    Ok(n) => accepted += n,
                    Err(_) => break,
                }
                // Slowly: the daemon is stopped halfway.
                std::thread::sleep(Duration::from_millis(50));
            }
            accepted
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < (20 << 20) {
        assert!(Instant::now() < deadline, "the writer never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = daemon.stop_status(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(status, Some(0), "the daemon exits 0 with a file open");
    assert!(!is_mounted(&daemon.mnt), "no dead mount is left");
    assert!(
        !writer.is_finished(),
        "the daemon stopped while the file was being written"
    );
    let accepted = writer.join().expect("writer");
    let again = universe.up();
    let got = std::fs::read(again.path("head/big.bin")).expect("big.bin after restart");
    assert_eq!(got.len(), accepted, "every accepted byte, and no more");
    for (i, block) in got.chunks(chunk).enumerate() {
        assert!(block.iter().all(|&b| b == i as u8), "block {i} is whole");
    }
}
