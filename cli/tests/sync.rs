//! Replicas with the real binary: two daemons on loopback TCP, `jit clone` and `jit sync pull`
//! over their message planes — history and tags arrive, divergent work merges to the same
//! snapshot on both sides, HEAD stays local, a clone killed mid-transfer resumes, and another
//! universe is refused.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// A loopback endpoint on a port that was free a moment ago.
fn free_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    format!("tcp/127.0.0.1:{port}")
}

/// A universe at `dir` whose main branch holds `files`.
fn universe_with(dir: &Path, work: &Path, files: &[(&str, &str)]) {
    ok(dir.parent().unwrap(), &["init", dir.to_str().unwrap()]);
    write_tree(work, files);
    import(dir, work, "first import");
}

fn write_tree(work: &Path, files: &[(&str, &str)]) {
    let _ = std::fs::remove_dir_all(work);
    for (path, content) in files {
        let path = work.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

fn info(dir: &Path) -> serde_json::Value {
    json(dir, &["info"])
}

fn log_ids(dir: &Path) -> Vec<String> {
    json(dir, &["log"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// What a pull report says happened to the peer's ref `name`.
fn action_of<'r>(report: &'r serde_json::Value, name: &str) -> &'r serde_json::Value {
    &report["refs"]
        .as_array()
        .expect("refs in the report")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))["action"]
}

fn assert_fsck_clean(dir: &Path) {
    let report = json(dir, &["fsck"]);
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
}

#[test]
fn two_daemons_on_loopback_clone_diverge_and_converge() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, work) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("w"),
    );
    let common_files = [("README", "shared\n"), ("src/lib.rs", "pub fn f() {}\n")];
    universe_with(&a, &work, &common_files);
    ok(&a, &["tag", "v1"]);
    let (endpoint_a, endpoint_b) = (free_endpoint(), free_endpoint());
    let _daemon_a = Daemon::start_with(&a, &["--listen", &endpoint_a]);

    let cloned = json(tmp.path(), &["clone", &endpoint_a, "b"]);
    assert!(cloned["fetched_nodes"].as_u64().unwrap() >= 5, "{cloned}");
    assert_eq!(
        info(&b)["universe"],
        info(&a)["universe"],
        "one universe, two replicas"
    );
    assert_eq!(log_ids(&b), log_ids(&a));
    assert_eq!(ok(&b, &["cat", "v1:src/lib.rs"]), "pub fn f() {}\n");
    // Said for people: a clone creates its branches (issue #22: not "fast-forwarded").
    let said = ok(tmp.path(), &["clone", &endpoint_a, "b-text", "--quiet"]);
    let main_line = said
        .lines()
        .find(|l| l.contains("heads/main"))
        .unwrap_or_default();
    assert!(main_line.contains("created at"), "{said}");
    assert_eq!(
        ok(&b, &["sync", "list"]).trim(),
        format!("origin\t{endpoint_a}")
    );
    assert_fsck_clean(&b);
    let _daemon_b = Daemon::start_with(&b, &["--listen", &endpoint_b]);

    // Both sides commit different files; a also checks out another branch (HEAD is local).
    write_tree(
        &work,
        &[common_files[0], common_files[1], ("a.txt", "from a\n")],
    );
    import(&a, &work, "a's work");
    write_tree(
        &work,
        &[common_files[0], common_files[1], ("b.txt", "from b\n")],
    );
    import(&b, &work, "b's work");
    ok(&a, &["branch", "side"]);
    ok(&a, &["checkout", "side"]);

    let at_b = json(&b, &["sync", "pull"]);
    assert_eq!(action_of(&at_b, "heads/main"), "merged", "{at_b}");
    assert_eq!(info(&b)["head"], "main", "HEAD never syncs");

    ok(&a, &["sync", "add", "b", &endpoint_b]);
    let at_a = json(&a, &["sync", "pull", "b"]);
    assert_eq!(action_of(&at_a, "heads/main"), "fast-forwarded", "{at_a}");
    assert_eq!(info(&a)["head"], "side");
    assert_eq!(
        json(&a, &["log", "-n", "1", "main"])[0]["id"],
        json(&b, &["log", "-n", "1", "main"])[0]["id"],
        "converged on one merge snapshot"
    );
    for file in ["a.txt", "b.txt", "README"] {
        assert!(!ok(&a, &["cat", &format!("main:{file}")]).is_empty());
    }
    assert_fsck_clean(&a);
    assert_fsck_clean(&b);

    // Both change README's one line: the merge conflicts, so b's main stays and a's tip is
    // kept under remotes/, listed by `sync kept` and dropped by `sync forget`.
    for (dir, line) in [(&a, "a's line\n"), (&b, "b's line\n")] {
        write_tree(
            &work,
            &[
                ("README", line),
                common_files[1],
                ("a.txt", "from a\n"),
                ("b.txt", "from b\n"),
            ],
        );
        let imported = import_with(dir, &work, "readme", &["--branch", "main"]);
        assert!(imported.is_object(), "{imported}");
    }
    let tip_b = ok(&b, &["log", "-n", "1", "main"]);
    let diverged = json(&b, &["sync", "pull"]);
    assert_eq!(action_of(&diverged, "heads/main"), "diverged", "{diverged}");
    assert_eq!(
        ok(&b, &["log", "-n", "1", "main"]),
        tip_b,
        "a conflict moves nothing"
    );
    let kept = json(&b, &["sync", "kept"]);
    assert_eq!(kept[0]["name"], "origin/heads/main", "{kept}");
    assert_eq!(
        json(&b, &["sync", "kept", "origin"]),
        kept,
        "the names `sync forget` takes"
    );
    assert_eq!(
        json(&b, &["sync", "kept", "elsewhere"]),
        serde_json::json!([])
    );
    assert!(ok(&b, &["cat", "remotes/origin/heads/main:README"]).contains("a's line"));
    let forgotten = json(&b, &["sync", "forget", "origin/heads/main"]);
    assert_eq!(
        forgotten["deleted"], "remotes/origin/heads/main",
        "{forgotten}"
    );
    assert_eq!(json(&b, &["sync", "kept"]), serde_json::json!([]));
    let refused = fails(&b, &["sync", "forget", "origin/heads/main"]);
    assert!(refused.contains("origin/heads/main"), "{refused}");
    assert_fsck_clean(&b);
}

/// A source universe `a` of `count` files (in `dirs` directories, `lines` lines each) tagged
/// `tags`, served on loopback, and a clone of it into `b` killed (SIGKILL) mid-transfer, held
/// there by the pull's test hook. Returns a, b and the running source daemon with its endpoint.
fn a_clone_killed_at_the_stall(
    tmp: &Path,
    count: usize,
    dirs: usize,
    lines: usize,
    tags: &[&str],
) -> (PathBuf, PathBuf, (Daemon, String)) {
    let (a, b, work) = (tmp.join("a"), tmp.join("b"), tmp.join("w"));
    let files: Vec<(String, String)> = (0..count)
        .map(|i| {
            (
                format!("d{}/f{i}.txt", i % dirs),
                format!("{i}\n").repeat(lines),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    universe_with(&a, &work, &refs);
    for tag in tags {
        ok(&a, &["tag", tag]);
    }
    let endpoint = free_endpoint();
    let daemon = Daemon::start_with(&a, &["--listen", &endpoint]);

    let stall = tmp.join("stalled");
    let mut clone = jit_command(tmp)
        .args(["clone", &endpoint, "b", "--quiet"])
        .env("JIT_SYNC_TEST_STALL", &stall)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start clone");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stall.exists() {
        assert!(
            Instant::now() < deadline,
            "the clone never reached the stall"
        );
        assert!(clone.try_wait().unwrap().is_none(), "the clone ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    clone.kill().unwrap();
    clone.wait().unwrap();
    (a, b, (daemon, endpoint))
}

#[test]
fn a_clone_killed_mid_transfer_resumes_with_what_it_had_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, _daemon) = a_clone_killed_at_the_stall(tmp.path(), 4000, 20, 200, &[]);
    // The replica exists, its branch still at the root: nothing was appended.
    assert_eq!(json(&b, &["log"]), serde_json::json!([]));

    let resumed = json(&b, &["sync", "pull"]);
    let (kept, fetched, new) = (
        resumed["resumed_nodes"].as_u64().unwrap(),
        resumed["fetched_nodes"].as_u64().unwrap(),
        resumed["new_nodes"].as_u64().unwrap(),
    );
    assert!(kept > 0, "{resumed}");
    assert_eq!(kept + fetched, new, "nothing fetched twice: {resumed}");
    assert_eq!(log_ids(&b), log_ids(&a));
    assert_fsck_clean(&b);
}

#[test]
fn a_clone_killed_midway_resumes_when_the_clone_is_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, (_daemon, endpoint)) =
        a_clone_killed_at_the_stall(tmp.path(), 1500, 10, 100, &["v1"]);

    // Rerunning the clone resumes it.
    let resumed = jit(tmp.path(), &["clone", &endpoint, "b", "--quiet"]);
    assert!(
        resumed.status.success(),
        "rerunning the clone: {}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(
        String::from_utf8_lossy(&resumed.stdout).contains("Resumed the clone"),
        "{}",
        String::from_utf8_lossy(&resumed.stdout)
    );
    assert_eq!(log_ids(&b), log_ids(&a));
    assert_eq!(json(&b, &["tag"]), json(&a, &["tag"]));
    assert_eq!(info(&b)["universe"], info(&a)["universe"]);
    assert_fsck_clean(&b);

    // A finished clone is not redone: it says it exists, with its code.
    let again = jit(tmp.path(), &["clone", &endpoint, "b", "--json"]);
    assert!(!again.status.success());
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(out.contains("\"already_initialized\""), "{out}");
    assert!(out.contains("sync pull"), "{out}");
}

#[test]
fn another_universe_and_a_missing_daemon_are_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, c, work) = (
        tmp.path().join("a"),
        tmp.path().join("c"),
        tmp.path().join("w"),
    );
    universe_with(&a, &work, &[("x", "y\n")]);
    universe_with(&c, &work, &[("x", "z\n")]);
    let refused = fails(&c, &["sync", "pull", a.to_str().unwrap()]);
    assert!(refused.contains("daemon is not running"), "{refused}");
    let endpoint = free_endpoint();
    let _daemon = Daemon::start_with(&a, &["--listen", &endpoint]);
    let before = log_ids(&c);
    let refused = fails(&c, &["sync", "pull", a.to_str().unwrap()]);
    assert!(refused.contains("not this universe"), "{refused}");
    assert_eq!(log_ids(&c), before);
    let refused = fails(&c, &["sync", "pull", "nowhere"]);
    assert!(refused.contains("neither a configured remote"), "{refused}");
}
