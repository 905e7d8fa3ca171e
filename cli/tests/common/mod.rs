//! Helpers for driving the real `jit` binary in tests.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

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
    json(
        repo,
        &[
            "import",
            tree.to_str().unwrap(),
            "-m",
            message,
            "--author",
            AUTHOR,
            "--date",
            DATE,
        ],
    )
}
