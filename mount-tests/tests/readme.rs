//! Issue #22: the README runs as written. Every `sh` block of the README, in order, runs as one
//! bash script with `set -euo pipefail` — real daemons, real mounts, real loopback TCP — and any
//! failing command fails the test, printing the script's output.
//!
//! The README's paths are absolute (`/tmp/demo`, `/tmp/replica`, …) and its ports fixed
//! (7447), so the script runs in private mount and network namespaces (`unshare`) with a fresh
//! tmpfs on /tmp and only loopback up: fresh directories, no clash with other tests, and
//! nothing left behind (the test kills the script's whole process group, and the namespaces'
//! mounts go with them). The binary is this build's `jit`, put first on PATH.
//!
//! The first block's run command (`cargo run --release -- -C /tmp/jit up`) is run with this
//! build's binary instead of through cargo: `jit -C /tmp/jit up` must make a universe there,
//! mount it and serve it. Blocks that cannot run in a test are named in [`NOT_RUN`], each with
//! why; the test fails if a block it skips is not one of those.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jit_mount_tests::*;

/// Blocks not run, by their first line, with the reason.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo run --release -- -C /tmp/jit up",
        "builds with cargo; run below as `jit -C /tmp/jit up` with this build's binary",
    ),
    (
        "packaging/build-deb.sh",
        "installs a system package and a systemd unit (packaging/test-deb.sh checks the package)",
    ),
    (
        "jit import-git /path/to/git/repo",
        "names a placeholder repository (cli/tests/git.rs runs import-git and export-git)",
    ),
    (
        "bench/run.sh",
        "the benchmarks take half an hour and are not tests",
    ),
];

/// The README's `sh` blocks, in order.
fn shell_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim_end() == "```sh" => current = Some(String::new()),
            Some(block) if line.trim_end() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// The script: the run command, then every runnable block, in order, each in a bash of its own
/// (as a reader pastes one block into a terminal: its own jobs, `%1` its own daemon), stopping
/// at the first block that fails.
fn script(blocks: &[String]) -> String {
    let mut out = String::from(
        "set -euo pipefail\n\
         # The README's first command, with this build's binary: a universe made, mounted, served.\n\
         jit -C /tmp/jit up > /tmp/jit-up.log 2>&1 &\n\
         for _ in $(seq 600); do [ -d /tmp/jit/.jit ] && break; sleep 0.1; done\n\
         jit -C /tmp/jit wait --timeout 60\n\
         test -d /tmp/jit/.jit/mnt/head || { cat /tmp/jit-up.log; exit 1; }\n\
         grep -q 'mount' /tmp/jit-up.log || { cat /tmp/jit-up.log; exit 1; }\n\
         kill %1; wait %1\n\
         cd \"$README_ROOT\"\n",
    );
    for (n, block) in blocks.iter().enumerate() {
        let first = block.lines().next().unwrap_or_default();
        if NOT_RUN.iter().any(|(start, _)| first.starts_with(start)) {
            continue;
        }
        // The block's text is passed as it is, through a quoted here-document.
        out.push_str(&format!(
            "\necho \"---- README block {n} $(date +%s)\" >&2\nbash -euo pipefail <<'JIT_README_BLOCK_END'\n{block}JIT_README_BLOCK_END\n"
        ));
    }
    out
}

#[test]
fn every_shell_block_of_the_readme_runs_in_order_as_written() {
    if !fuse_ready("every_shell_block_of_the_readme_runs_in_order_as_written") {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let blocks = shell_blocks(&readme);
    assert!(blocks.len() >= 8, "found {} sh blocks", blocks.len());
    // Every block the script leaves out is one of the named ones.
    let skipped: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b.lines().next())
        .filter(|first| NOT_RUN.iter().any(|(start, _)| first.starts_with(start)))
        .collect();
    assert_eq!(skipped.len(), NOT_RUN.len(), "skipped {skipped:?}");
    let script = script(&blocks);

    // The README runs from the repository's root and puts target/release first on PATH: a
    // stand-in root whose target/release/jit is this build's binary (outside /tmp, which the
    // script's namespace replaces).
    let bin = jit_testutils::bin::jit_bin();
    let bin_dir = bin.parent().expect("the binary's directory");
    let stand_in = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("readme-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&stand_in);
    std::fs::create_dir_all(stand_in.join("target/release")).expect("stand-in root");
    std::os::unix::fs::symlink(&bin, stand_in.join("target/release/jit")).expect("symlink");
    struct RemoveDir(std::path::PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _stand_in = RemoveDir(stand_in.clone());
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--net", "--propagation", "private", "--"])
        .args([
            "sh",
            "-c",
            "mount -t tmpfs tmpfs /tmp && ip link set lo up && exec bash -s",
        ])
        .env("PATH", path)
        .env("README_ROOT", &stand_in)
        .env("NO_COLOR", "1")
        .env_remove("JIT_AUTHOR")
        .env_remove("JIT_DATE")
        .env_remove("JIT_ZENOH_CONFIG")
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(stand_in.join("stdout")).expect("stdout file"))
        .stderr(std::fs::File::create(stand_in.join("stderr")).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("unshare");
    let group = child.id() as i32;
    /// Kills the script's process group (daemons and watchers it left) on every exit.
    struct KillGroup(i32);
    impl Drop for KillGroup {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.0)])
                .status();
        }
    }
    let _guard = KillGroup(group);
    child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write the script");
    // The script's stdin must close for bash to see its end.
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Whatever a failed block left running goes with the guard, at the end of the test; the
    // output is in files, so nothing left running can hold it up.
    let read = |name: &str| std::fs::read_to_string(stand_in.join(name)).unwrap_or_default();
    let (said, complained) = (read("stdout"), read("stderr"));
    assert!(
        status.is_some_and(|s| s.success()),
        "a README command failed ({status:?}):\n--- stdout\n{said}\n--- stderr\n{complained}\n--- script\n{script}"
    );
    // Which block took how long (the script marks each start on stderr), for the log.
    eprintln!("{complained}");
    // Spot checks that the blocks did what they say.
    assert!(said.contains("hello"), "the tour's cat: {said}");
    assert!(
        said.contains("edited in the mount"),
        "the mount's commit: {said}"
    );
    assert!(said.contains("hi"), "the agent's file: {said}");
    assert!(said.contains("Cloned universe"), "the replica: {said}");
    assert!(said.contains("verified: universe"), "the bundle: {said}");
    assert!(
        said.contains("edited on disk"),
        "the on-disk checkout's commit: {said}"
    );
}
