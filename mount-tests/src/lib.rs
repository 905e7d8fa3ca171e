//! Harness for the mount tests: a fresh universe in a temporary directory, a `jit up` daemon
//! mounting it, and guards that always stop the daemon and detach the mount — also when a test
//! panics — so no run leaves a mount behind for the next.
//!
//! FUSE must work here. When it does not, every test fails loudly, unless
//! `JIT_SKIP_MOUNT_TESTS=1` is set, in which case each says it was skipped.

#![deny(missing_docs)]

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use jit_testutils::bin::{jit_bin, text};

/// True when the mount tests should run; false (with a message) when FUSE is unavailable and
/// `JIT_SKIP_MOUNT_TESTS=1` allows skipping. Panics when FUSE is unavailable otherwise.
pub fn fuse_ready(test: &str) -> bool {
    let problem = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/fuse cannot be opened: {e}")),
    };
    match problem {
        None => true,
        Some(problem) if std::env::var("JIT_SKIP_MOUNT_TESTS").as_deref() == Ok("1") => {
            eprintln!("SKIPPED {test}: {problem} (JIT_SKIP_MOUNT_TESTS=1)");
            false
        }
        Some(problem) => panic!(
            "FUSE is unavailable ({problem}); mount tests cannot run. \
             Set JIT_SKIP_MOUNT_TESTS=1 to skip them explicitly."
        ),
    }
}

/// A universe in a temporary directory.
pub struct Universe {
    /// The temporary directory (removed on drop, after the daemon is stopped).
    pub dir: TempDir,
    /// The repository's workdir.
    pub repo: PathBuf,
}

impl Universe {
    /// A new universe with one commit of `files` (path, content) on `main`.
    pub fn with_files(files: &[(&str, &str)]) -> Universe {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        let out = run(Command::new(jit_bin()).arg("init").arg(&repo));
        assert!(out.status.success(), "init: {}", text(&out.stderr));
        let universe = Universe { dir, repo };
        let tree = universe.dir.path().join("seed");
        for (path, content) in files {
            let file = tree.join(path);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(&file, content).expect("write");
        }
        std::fs::create_dir_all(&tree).expect("mkdir");
        universe.ok(&["import", tree.to_str().expect("utf-8"), "-m", "seed"]);
        universe
    }

    /// Runs `jit ARGS` in the repository.
    pub fn jit(&self, args: &[&str]) -> Output {
        self.jit_in(&self.repo, args)
    }

    /// Runs `jit ARGS` with `dir` as its current directory (a mounted view, say).
    pub fn jit_in(&self, dir: &Path, args: &[&str]) -> Output {
        run(Command::new(jit_bin())
            .args(args)
            .current_dir(dir)
            .env("USER", "tester")
            .env("JIT_AUTHOR", "Tester <tester@example.com>"))
    }

    /// Runs `jit ARGS` in `dir`, asserting success; returns stdout.
    pub fn ok_in(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.jit_in(dir, args);
        assert!(
            out.status.success(),
            "jit {args:?} in {} failed: {}{}",
            dir.display(),
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs `jit ARGS --json` in `dir`, parsed.
    pub fn json_in(&self, dir: &Path, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok_in(dir, &all)).expect("json output")
    }

    /// Runs `jit ARGS`, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_in(&self.repo, args)
    }

    /// Runs `jit ARGS --json`, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        self.json_in(&self.repo, args)
    }

    /// Starts `jit up` with its mount in this universe's temporary directory.
    pub fn up(&self) -> Daemon {
        Daemon::start(self, &self.dir.path().join("mnt"), false)
    }

    /// Starts `jit up` with its mount and extra arguments (e.g. `--allow-other`).
    pub fn up_with(&self, extra: &[&str]) -> Daemon {
        Daemon::start_with(self, &self.dir.path().join("mnt"), false, extra)
    }

    /// Starts `jit up` with its mount, without the plane, with extra environment variables
    /// (test hooks such as `JIT_TEST_WRITEBACK_PAUSE_MS`).
    pub fn up_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with_env(self, &self.dir.path().join("mnt"), false, &[], env)
    }

    /// Starts `jit up` with its mount and the message plane.
    pub fn up_with_plane(&self) -> Daemon {
        Daemon::start(self, &self.dir.path().join("mnt"), true)
    }

    /// The changed paths of an SWS as (change, path), e.g. ("M", "a.txt").
    pub fn changes(&self, sws: &str) -> Vec<(String, String)> {
        let status = self.json(&["sws", "status", sws]);
        status["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| {
                (
                    c["change"].as_str().unwrap_or_default().to_owned(),
                    c["path"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// A running `jit up` whose mount is detached, whatever happens, when dropped.
pub struct Daemon {
    child: Option<Child>,
    /// Where the projection is mounted.
    pub mnt: PathBuf,
}

impl Daemon {
    /// Starts the daemon mounting at `mnt` (with the message plane if `plane`) and waits for its
    /// banner.
    pub fn start(universe: &Universe, mnt: &Path, plane: bool) -> Daemon {
        Daemon::start_with(universe, mnt, plane, &[])
    }

    /// [`Daemon::start`] with extra `jit up` arguments.
    pub fn start_with(universe: &Universe, mnt: &Path, plane: bool, extra: &[&str]) -> Daemon {
        Daemon::start_with_env(universe, mnt, plane, extra, &[])
    }

    /// [`Daemon::start_with`] with extra environment variables.
    pub fn start_with_env(
        universe: &Universe,
        mnt: &Path,
        plane: bool,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut daemon = Daemon::spawn_with(universe, mnt, plane, Stdio::piped(), extra, env);
        let mut banner = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let stdout = daemon
            .child
            .as_mut()
            .and_then(|c| c.stdout.as_mut())
            .expect("stdout");
        let mut byte = [0u8; 1];
        while !(banner.contains("socket:") && banner.ends_with('\n')) {
            assert!(Instant::now() < deadline, "daemon did not start: {banner}");
            match stdout.read(&mut byte) {
                Ok(1) => banner.push(byte[0] as char),
                _ => panic!("daemon exited early: {banner}"),
            }
        }
        assert!(
            banner.contains(&mnt.display().to_string()),
            "banner does not name the mount: {banner}"
        );
        daemon
    }

    /// Starts `jit up` mounting at `mnt` without waiting for it to be ready (the caller finds
    /// out some other way, e.g. `jit wait`); its stdout goes to `stdout`.
    pub fn spawn(universe: &Universe, mnt: &Path, plane: bool, stdout: Stdio) -> Daemon {
        Daemon::spawn_with(universe, mnt, plane, stdout, &[], &[])
    }

    fn spawn_with(
        universe: &Universe,
        mnt: &Path,
        plane: bool,
        stdout: Stdio,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut command = Command::new(jit_bin());
        command.arg("up").args(extra).envs(env.iter().copied());
        if !plane {
            command.arg("--no-plane");
        }
        let child = command
            .arg("--mount")
            .arg(mnt)
            .current_dir(&universe.repo)
            .env("USER", "tester")
            .stdout(stdout)
            .stderr(daemon_log())
            .spawn()
            .expect("start jit up");
        Daemon {
            child: Some(child),
            mnt: mnt.to_path_buf(),
        }
    }

    /// A path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Kills the daemon with SIGKILL (its mount is left dead, as after a crash).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon with SIGTERM and waits for it to unmount and exit.
    pub fn stop(&mut self) {
        self.stop_with(nix::sys::signal::Signal::SIGTERM);
    }

    /// Stops the daemon with `signal` (SIGTERM, or SIGINT as Ctrl-C sends) and waits for it to
    /// exit (killing it after 20 s).
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) {
        self.stop_status(signal);
    }

    /// Stops the daemon with `signal` and returns its exit code (None if it had to be killed
    /// after 20 s, or died of a signal).
    pub fn stop_status(&mut self, signal: nix::sys::signal::Signal) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // The mount is this daemon's to detach if the daemon was still running, or if it is
        // dead (a killed daemon's, which cannot be stat'ed). A live mount after this daemon
        // was stopped or killed belongs to the next daemon at the same place (mount ids are
        // reused, so they cannot tell).
        let running = self.child.is_some();
        self.stop();
        if running || std::fs::metadata(&self.mnt).is_err() {
            detach_if_mounted(&self.mnt);
        }
    }
}

/// Where a daemon's log goes: appended to `$JIT_DAEMON_LOG` when set (for debugging a failing
/// test), else nowhere.
fn daemon_log() -> Stdio {
    match std::env::var_os("JIT_DAEMON_LOG") {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null()),
        None => Stdio::null(),
    }
}

/// Whether a FUSE file system is mounted at `dir`.
pub fn is_mounted(dir: &Path) -> bool {
    let target = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            fields.get(4) == Some(&target.as_str()) && line.contains(" - fuse")
        })
}

/// Detaches a mount left at `dir` (lazy unmount), so a failed test leaves nothing behind.
pub fn detach_if_mounted(dir: &Path) {
    while is_mounted(dir) {
        if nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

/// Runs a command to completion.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run command")
}

/// Runs a shell command in `dir`, asserting success; returns stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = run(Command::new("sh").arg("-c").arg(script).current_dir(dir));
    assert!(
        out.status.success(),
        "`{script}` failed in {}: {}{}",
        dir.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Reads `path` until it holds `expected` or `within` has passed, and returns what it read last
/// (empty when unreadable). For changes another process wrote to the store, which the mount
/// sees on its next poll rather than at once.
pub fn read_until(path: &Path, expected: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let found = std::fs::read_to_string(path).unwrap_or_default();
        if found == expected || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Inode number of a path.
pub fn ino(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

/// Modification time (seconds, nanoseconds) of a path.
pub fn mtime(path: &Path) -> (i64, i64) {
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (meta.mtime(), meta.mtime_nsec())
}
