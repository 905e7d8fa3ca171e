//! Helpers for driving the real `jit` binary in tests.

#![allow(dead_code, unused_imports)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jit_kernel::rpc::client::Kernel;

pub use jit_testutils::bin::*;
pub use jit_testutils::damage::flip_every;

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

/// Copies a directory tree (a universe's `.jit`, for tests that damage or kill a copy).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
