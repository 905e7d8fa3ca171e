//! The real `jit` binary of this build, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Fixed declared author, so ids are reproducible across runs.
pub const AUTHOR: &str = "Test <test@example.org>";
/// Declared date used by every test commit.
pub const DATE: &str = "@1700000000 +0000";

/// The `jit` binary: `$JIT_BIN`, else the one next to the test executable's `deps/` directory
/// (where cargo puts the binaries of the workspace it built the tests with).
pub fn jit_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("JIT_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("jit");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (cargo build)",
        bin.display()
    );
    bin
}

/// A `jit` command running in `dir` with a clean environment for declared inputs.
pub fn jit_command(dir: &Path) -> Command {
    let mut command = Command::new(jit_bin());
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
        text(&out.stdout),
        text(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs `jit args…` and requires failure with one `jit: error: …` line; returns stderr.
pub fn fails(dir: &Path, args: &[&str]) -> String {
    let out = jit(dir, args);
    assert!(!out.status.success(), "jit {args:?} should have failed");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "errors are one line: {stderr:?}");
    assert!(stderr.starts_with("jit: error: "), "{stderr:?}");
    stderr
}

/// Runs `jit args… --json` and parses its output.
pub fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(dir, &all)).expect("valid JSON")
}

/// Imports `tree` into the universe at `repo` with fixed declared inputs.
pub fn import(repo: &Path, tree: &Path, message: &str) -> serde_json::Value {
    import_with(repo, tree, message, &[])
}

/// [`import`] with extra `jit import` arguments (e.g. `--branch main`).
pub fn import_with(repo: &Path, tree: &Path, message: &str, extra: &[&str]) -> serde_json::Value {
    let tree = tree.to_str().expect("a UTF-8 path");
    let mut args = vec![
        "import", tree, "-m", message, "--author", AUTHOR, "--date", DATE,
    ];
    args.extend_from_slice(extra);
    json(repo, &args)
}

/// Bytes as text, lossily (for messages).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
