//! The real `git`, run with a fixed identity and date and no user or system configuration, so
//! the histories tests build have the same commit ids on every machine.

use std::path::Path;
use std::process::Command;

/// Runs `git args…` in `dir` as author and committer "Ada <ada@example.org>" at `date` (seconds
/// since the epoch, zone +0100); requires success and returns stdout, trimmed of its final
/// newline.
pub fn git_at(dir: &Path, args: &[&str], date: u64) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.org")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.org")
        .env("GIT_AUTHOR_DATE", format!("@{date} +0100"))
        .env("GIT_COMMITTER_DATE", format!("@{date} +0100"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if stdout.ends_with('\n') {
        stdout.pop();
    }
    stdout
}
