//! Damage and crashes: `jit fsck` names a flipped byte in a copy of the store, and a `kill -9`
//! during a large import leaves the branch on the old or the new snapshot, never in between.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn repo_with_canary(work: &Path) -> (PathBuf, String) {
    let repo = work.join("repo");
    let tree = work.join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("canary.txt"), "JIT-FSCK-CANARY-0123456789\n").unwrap();
    fs::write(tree.join("other.txt"), "other\n").unwrap();
    ok(work, &["init", "repo"]);
    import(&repo, &tree, "canary");
    let listing = json(&repo, &["ls-tree", "HEAD"]);
    let blob = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "canary.txt")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ok(&repo, &["fsck"]).contains("clean"));
    (repo, blob)
}

#[test]
fn fsck_names_a_node_whose_content_was_flipped() {
    let work = tempfile::tempdir().unwrap();
    let (repo, blob) = repo_with_canary(work.path());
    let copy = work.path().join("copy");
    copy_dir(&repo.join(".jit"), &copy.join(".jit"));
    let flipped = flip_every(&copy.join(".jit/store/data.mdb"), b"JIT-FSCK-CANARY", 4);
    assert!(flipped >= 1);

    let out = jit(&copy, &["fsck"]);
    assert!(!out.status.success(), "fsck must fail on a damaged store");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(&format!("node {blob}: content does not hash to its id")),
        "fsck should name node {blob}:\n{report}"
    );
    let value: serde_json::Value =
        serde_json::from_slice(&jit(&copy, &["fsck", "--json"]).stdout).unwrap();
    assert!(value["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["location"] == format!("node {blob}")));
    // The original is untouched.
    assert!(ok(&repo, &["fsck"]).contains("clean"));
}

#[test]
fn fsck_names_a_damaged_log_record() {
    let work = tempfile::tempdir().unwrap();
    let (repo, blob) = repo_with_canary(work.path());
    let copy = work.path().join("copy");
    copy_dir(&repo.join(".jit"), &copy.join(".jit"));
    // The log record creating the blob names its 32-byte id (alone, or in a list of the nodes
    // its operation created); the tree naming it may be hit too, which fsck also reports.
    let mut needle = vec![0x58, 0x20];
    needle.extend(hex::decode(&blob).unwrap());
    let flipped = flip_every(&copy.join(".jit/store/data.mdb"), &needle, 10);
    assert!(flipped >= 1);

    let out = jit(&copy, &["fsck", "--json"]);
    assert!(!out.status.success());
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = value["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(
            |p| p["location"].as_str().unwrap().starts_with("log record ")
                && p["message"] == "checksum mismatch"
        ),
        "{problems:?}"
    );
}

/// A tree big enough that importing it takes a while: many files plus a few large ones.
fn large_tree(root: &Path) {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = vec![0u8; 4 << 20];
    for b in noise.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    for d in 0..40 {
        let dir = root.join(format!("dir{d:02}/sub"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let start = (d * 100 + f) * 997 % (noise.len() - 40_000);
            let mut content = format!("file {d}/{f}\n").into_bytes();
            content.extend_from_slice(&noise[start..start + 30_000]);
            fs::write(dir.join(format!("f{f:03}.txt")), content).unwrap();
        }
    }
    for big in 0..4 {
        let mut content = Vec::with_capacity(48 << 20);
        for round in 0..12 {
            content.extend(format!("big {big} round {round}\n").bytes());
            content.extend_from_slice(&noise);
        }
        fs::write(root.join(format!("zz-big{big}.bin")), content).unwrap();
    }
}

fn branch_target(repo: &Path) -> String {
    let branches = json(repo, &["branch"]);
    branches.as_array().unwrap()[0]["target"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn node_count(repo: &Path) -> u64 {
    json(repo, &["info"])["nodes"].as_u64().unwrap()
}

#[test]
fn kill_9_during_a_large_import_leaves_the_old_or_the_new_snapshot() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    large_tree(&tree);
    let args = [
        "import",
        tree.to_str().unwrap(),
        "-m",
        "big",
        "--author",
        AUTHOR,
        "--date",
        DATE,
        "-q",
    ];

    // The snapshot a complete import produces (ids are deterministic).
    ok(work.path(), &["init", "reference"]);
    let reference = work.path().join("reference");
    let started = Instant::now();
    ok(&reference, &args);
    let full_time = started.elapsed();
    eprintln!("a full import takes {full_time:?}");
    let expected = branch_target(&reference);

    let mut killed_midway = 0;
    for round in 0..6u32 {
        let name = format!("victim{round}");
        ok(work.path(), &["init", &name]);
        let repo = work.path().join(&name);
        let old = branch_target(&repo);
        let nodes_before = node_count(&repo);
        let mut child = jit_command(&repo)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the import has durably written something, then let it run a little longer
        // (longer each round) before SIGKILL, so the kills spread over the whole import.
        let deadline = Instant::now() + Duration::from_secs(120);
        while node_count(&repo) == nodes_before && child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "import made no progress");
            std::thread::sleep(Duration::from_millis(10));
        }
        let delay = full_time.mul_f64(round as f64 / 8.0);
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();

        let report = ok(&repo, &["fsck"]);
        assert!(report.contains("clean"), "round {round}: {report}");
        let now = branch_target(&repo);
        eprintln!(
            "round {round}: delay {delay:?} exit {status:?} branch moved: {} nodes {} -> {}",
            now != old,
            nodes_before,
            node_count(&repo)
        );
        assert!(
            now == old || now == expected,
            "round {round}: branch at {now}, neither old nor new"
        );
        if now == old && !status.success() && node_count(&repo) > nodes_before {
            killed_midway += 1;
            // Resuming finishes the job and lands on exactly the same snapshot.
            ok(&repo, &args);
            assert_eq!(branch_target(&repo), expected);
            assert!(ok(&repo, &["fsck"]).contains("clean"));
        }
    }
    assert!(
        killed_midway >= 2,
        "only {killed_midway} kills landed mid-import; the test proved little"
    );
}
