//! Helpers for driving the real `jit` binary in tests.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use jit_kernel::rpc::client::Kernel;

/// Fixed declared inputs, so ids are reproducible across runs.
pub const AUTHOR: &str = "Test <test@example.org>";
/// Declared date used by every test commit.
pub const DATE: &str = "@1700000000 +0000";

/// A `jit` command running in `dir` with a clean environment for declared inputs.
pub fn jit_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jit"));
    command
        .current_dir(dir)
        .env_remove("JIT_AUTHOR")
        .env_remove("JIT_DATE")
        .env_remove("JIT_LOG");
    command
}

/// Runs `jit args…` in `dir`.
pub fn jit(dir: &Path, args: &[&str]) -> Output {
    jit_command(dir).args(args).output().expect("run jit")
}

/// Runs `jit args…` and requires success; returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = jit(dir, args);
    assert!(
        out.status.success(),
        "jit {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs `jit args…` and requires failure; returns stderr.
pub fn fails(dir: &Path, args: &[&str]) -> String {
    let out = jit(dir, args);
    assert!(!out.status.success(), "jit {args:?} should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "errors are one line: {stderr:?}");
    assert!(stderr.starts_with("jit: error: "), "{stderr:?}");
    stderr
}

/// Parses `--json` output.
pub fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(dir, &all)).expect("valid JSON")
}

/// Imports `tree` into the repository at `repo` with fixed declared inputs.
pub fn import(repo: &Path, tree: &Path, message: &str) -> serde_json::Value {
    import_with(repo, tree, message, &[])
}

/// [`import`] with extra `jit import` arguments (e.g. `--branch main`).
pub fn import_with(repo: &Path, tree: &Path, message: &str, extra: &[&str]) -> serde_json::Value {
    let tree = tree.to_str().unwrap();
    let mut args = vec![
        "import", tree, "-m", message, "--author", AUTHOR, "--date", DATE,
    ];
    args.extend_from_slice(extra);
    json(repo, &args)
}

/// A running `jit up --no-mount`, killed (SIGKILL) when dropped, also on panic.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Its RPC socket.
    pub socket: PathBuf,
}

impl Daemon {
    /// Starts the daemon of the universe at `repo` and waits until it serves.
    pub fn start(repo: &Path) -> Daemon {
        Daemon::start_with(repo, &[])
    }

    /// Starts it with extra `jit up` arguments (e.g. `--listen tcp/127.0.0.1:PORT`).
    pub fn start_with(repo: &Path, extra: &[&str]) -> Daemon {
        let mut command = jit_command(repo);
        command.args(["up", "--no-mount"]).args(extra);
        Daemon::start_command(repo, command)
    }

    /// Starts the daemon `command` runs (a `jit up` of the universe at `repo`, perhaps wrapped)
    /// and waits until it serves.
    pub fn start_command(repo: &Path, mut command: Command) -> Daemon {
        let socket = repo.join(".jit/jit.sock");
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start jit up");
        let mut daemon = Daemon { child, socket };
        // Ready when the banner names the socket (printed after bind).
        let mut banner = String::new();
        let stdout = daemon.child.stdout.as_mut().expect("stdout");
        let mut byte = [0u8; 1];
        let deadline = Instant::now() + Duration::from_secs(20);
        while !banner.contains("socket:") || !banner.ends_with('\n') {
            assert!(Instant::now() < deadline, "daemon did not start: {banner}");
            match stdout.read(&mut byte) {
                Ok(1) => banner.push(byte[0] as char),
                _ => panic!("daemon exited early: {banner}"),
            }
        }
        assert!(daemon.socket.exists());
        daemon
    }

    /// A kernel connection through the daemon's socket.
    pub fn kernel(&self) -> Kernel {
        Kernel::daemon(&self.socket).expect("connect")
    }

    /// SIGKILLs it and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Flips one bit of every occurrence of `needle` in `file` (LMDB may keep stale page copies, so
/// the live one is hit whichever it is). Returns how many were flipped.
pub fn flip_every(file: &Path, needle: &[u8], offset_in_needle: usize) -> usize {
    let mut data = std::fs::read(file).expect("read the file to damage");
    let positions: Vec<usize> = data
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    for &p in &positions {
        data[p + offset_in_needle] ^= 0x01;
    }
    std::fs::write(file, data).expect("write the damaged file");
    positions.len()
}
