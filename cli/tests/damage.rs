//! What a damaged universe does to the verbs (issue #17 items 1 and 8): a node whose stored
//! bytes no longer hash to its id is refused with code `corrupt` naming it — never served —
//! and damage that is not in a node (a full disk, a truncated store, an altered identity, key or
//! HEAD, a damaged plane-journal header) gets a clear message and a code of its own instead of a
//! misleading one, or a crash.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use jit_kernel::content;

fn store_file(repo: &Path) -> PathBuf {
    repo.join(".jit/store/data.mdb")
}

const SMALL_MARKER: &[u8] = b"JIT-VERIFY-SMALL-FILE-MARKER";
const CHUNK_MARKER: &[u8] = b"JIT-VERIFY-CHUNK-MARKER";
const TREE_NAME: &str = "jit-verify-tree-entry-name.txt";
const MESSAGE: &str = "jit-verify-snapshot-message";

/// 1 MiB of pseudo-random bytes (several FastCDC chunks) with [`CHUNK_MARKER`] in the middle.
fn large_content() -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut data: Vec<u8> = (0..1 << 20)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    data[500_000..500_000 + CHUNK_MARKER.len()].copy_from_slice(CHUNK_MARKER);
    data
}

/// A universe whose one snapshot holds a small file, a large multi-chunk file and an entry
/// with a distinctive name, under a distinctive message.
fn damaged_universe_fixture(work: &Path) -> PathBuf {
    let repo = work.join("repo");
    let tree = work.join("tree");
    fs::create_dir_all(&tree).unwrap();
    let mut small = SMALL_MARKER.to_vec();
    small.extend_from_slice(b" and some more text\n");
    fs::write(tree.join("small.txt"), small).unwrap();
    fs::write(tree.join("large.bin"), large_content()).unwrap();
    fs::write(tree.join(TREE_NAME), "named\n").unwrap();
    ok(work, &["init", "repo"]);
    import(&repo, &tree, MESSAGE);
    assert!(ok(&repo, &["fsck"]).contains("clean"));
    repo
}

/// The id of `path` in HEAD's tree.
fn entry_id(repo: &Path, path: &str) -> String {
    json(repo, &["ls-tree", "HEAD"])
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The id of the chunk of the large file that holds [`CHUNK_MARKER`].
fn marker_chunk_id() -> String {
    let (_, nodes) = content::split_bytes(&large_content()).unwrap();
    let chunks: Vec<_> = nodes
        .iter()
        .filter(|n| {
            n.bytes
                .windows(CHUNK_MARKER.len())
                .any(|w| w == CHUNK_MARKER)
        })
        .collect();
    assert_eq!(chunks.len(), 1, "the marker is in exactly one chunk");
    assert!(nodes.len() > 3, "the large file has several chunks");
    chunks[0].id.to_hex()
}

/// Runs `jit args… --json` and requires it to fail with code `corrupt` naming `node`.
fn refuses_as_corrupt(repo: &Path, args: &[&str], node: &str) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = jit(repo, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "jit {args:?} must fail (exit 1), not serve damaged bytes:\n{stdout}{stderr}"
    );
    let error: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("jit {args:?}: no JSON error on stdout:\n{stdout}{stderr}"));
    assert_eq!(
        error["error"]["code"], "corrupt",
        "jit {args:?}: {error}\n{stderr}"
    );
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(node),
        "jit {args:?} must name node {node}: {message}"
    );
}

#[test]
fn corrupt_content_is_refused_not_served_a_small_file() {
    let work = tempfile::tempdir().unwrap();
    let repo = damaged_universe_fixture(work.path());
    let blob = entry_id(&repo, "small.txt");
    assert!(flip_every(&store_file(&repo), SMALL_MARKER, 5) >= 1);

    refuses_as_corrupt(&repo, &["cat", "HEAD:small.txt"], &blob);
    refuses_as_corrupt(&repo, &["cat", &blob], &blob);
    let into = work.path().join("out");
    refuses_as_corrupt(
        &repo,
        &["checkout", "--into", into.to_str().unwrap(), "main"],
        &blob,
    );
    let git = work.path().join("export.git");
    refuses_as_corrupt(&repo, &["export-git", git.to_str().unwrap()], &blob);
    // What is intact is still served.
    assert_eq!(ok(&repo, &["cat", &format!("HEAD:{TREE_NAME}")]), "named\n");
}

#[test]
fn corrupt_content_is_refused_not_served_a_chunk_of_a_large_file() {
    let work = tempfile::tempdir().unwrap();
    let repo = damaged_universe_fixture(work.path());
    let chunk = marker_chunk_id();
    assert!(flip_every(&store_file(&repo), CHUNK_MARKER, 3) >= 1);

    refuses_as_corrupt(&repo, &["cat", "HEAD:large.bin"], &chunk);
    let into = work.path().join("out");
    refuses_as_corrupt(
        &repo,
        &["checkout", "--into", into.to_str().unwrap(), "main"],
        &chunk,
    );
    let git = work.path().join("export.git");
    refuses_as_corrupt(&repo, &["export-git", git.to_str().unwrap()], &chunk);
}

#[test]
fn corrupt_content_is_refused_not_served_a_tree() {
    let work = tempfile::tempdir().unwrap();
    let repo = damaged_universe_fixture(work.path());
    let tree = json(&repo, &["show", "HEAD"])["tree"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(flip_every(&store_file(&repo), TREE_NAME.as_bytes(), 4) >= 1);

    refuses_as_corrupt(&repo, &["ls-tree", "HEAD"], &tree);
    refuses_as_corrupt(&repo, &["cat", "HEAD:small.txt"], &tree);
    refuses_as_corrupt(&repo, &["show", "HEAD"], &tree);
    let into = work.path().join("out");
    refuses_as_corrupt(
        &repo,
        &["checkout", "--into", into.to_str().unwrap(), "main"],
        &tree,
    );
    let git = work.path().join("export.git");
    refuses_as_corrupt(&repo, &["export-git", git.to_str().unwrap()], &tree);
}

#[test]
fn corrupt_content_is_refused_not_served_a_snapshot() {
    let work = tempfile::tempdir().unwrap();
    let repo = damaged_universe_fixture(work.path());
    let snapshot = json(&repo, &["show", "HEAD"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(flip_every(&store_file(&repo), MESSAGE.as_bytes(), 4) >= 1);

    refuses_as_corrupt(&repo, &["log"], &snapshot);
    refuses_as_corrupt(&repo, &["show", "HEAD"], &snapshot);
    refuses_as_corrupt(&repo, &["ls-tree", "HEAD"], &snapshot);
    let git = work.path().join("export.git");
    refuses_as_corrupt(&repo, &["export-git", git.to_str().unwrap()], &snapshot);
}

#[test]
fn corrupt_content_fsck_names_every_corrupt_node() {
    let work = tempfile::tempdir().unwrap();
    let repo = damaged_universe_fixture(work.path());
    let blob = entry_id(&repo, "small.txt");
    let chunk = marker_chunk_id();
    let tree = json(&repo, &["show", "HEAD"])["tree"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(flip_every(&store_file(&repo), SMALL_MARKER, 5) >= 1);
    assert!(flip_every(&store_file(&repo), CHUNK_MARKER, 3) >= 1);
    assert!(flip_every(&store_file(&repo), TREE_NAME.as_bytes(), 4) >= 1);

    let out = jit(&repo, &["fsck", "--json"]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    for node in [&blob, &chunk, &tree] {
        assert!(
            problems
                .iter()
                .any(|p| p["location"] == format!("node {node}")
                    && p["message"]
                        .as_str()
                        .unwrap()
                        .contains("does not hash to its id")),
            "fsck must name {node}: {problems:?}"
        );
    }
}

// ---- Item 8: errors that mislead ----------------------------------------------------------------

/// Requires `jit args… --json` to fail (exit 1, no signal) with `code`; returns the message.
fn fails_with_code(repo: &Path, args: &[&str], code: &str) -> String {
    let mut all = args.to_vec();
    all.push("--json");
    let out = jit(repo, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "jit {args:?} must fail with exit 1 ({:?}):\n{stdout}{stderr}",
        out.status
    );
    let error: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("jit {args:?}: no JSON error on stdout:\n{stdout}{stderr}"));
    assert_eq!(error["error"]["code"], code, "jit {args:?}: {error}");
    error["error"]["message"].as_str().unwrap().to_owned()
}

/// A small tmpfs mounted for the test's lifetime; unmounted when dropped, also on panic.
struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    fn mount(dir: PathBuf, size: &str) -> SmallFs {
        fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and must run as root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs { dir }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[test]
fn errors_that_mislead_disk_full_says_no_space() {
    let work = tempfile::tempdir().unwrap();
    let small = SmallFs::mount(work.path().join("small"), "6m");
    ok(&small.dir, &["init", "repo"]);
    let repo = small.dir.join("repo");
    // More content than fits, made outside the small file system.
    let tree = work.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    let mut data = large_content();
    for i in 0..12u8 {
        data[0] = i; // a new first chunk each time; the rest dedups, so vary all of it
        for b in data.iter_mut().skip(1).step_by(4096) {
            *b = b.wrapping_add(i);
        }
        let mut shifted = data.clone();
        shifted.rotate_left(i as usize * 7919);
        fs::write(tree.join(format!("f{i}.bin")), shifted).unwrap();
    }
    let message = fails_with_code(
        &repo,
        &[
            "import",
            tree.to_str().unwrap(),
            "-m",
            "too big",
            "--author",
            AUTHOR,
            "--date",
            DATE,
        ],
        "no_space",
    );
    assert!(message.contains("no space"), "{message}");
    // Nothing half-done: the universe is as it was.
    assert!(ok(&repo, &["fsck"]).contains("clean"));
    drop(small);
}

#[test]
fn errors_that_mislead_a_truncated_store_is_refused_clearly() {
    let work = tempfile::tempdir().unwrap();
    let repo = damaged_universe_fixture(work.path());
    let file = store_file(&repo);
    let len = fs::metadata(&file).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2 / 4096 * 4096)
        .unwrap();
    for args in [
        &["log"][..],
        &["cat", "HEAD:small.txt"],
        &["ls-tree", "HEAD"],
        &["fsck"],
        &["info"],
    ] {
        let message = fails_with_code(&repo, args, "store_truncated");
        assert!(message.contains("truncated"), "{message}");
    }
}

#[test]
fn errors_that_mislead_fsck_reports_an_altered_universe_id() {
    let work = tempfile::tempdir().unwrap();
    let repo = damaged_universe_fixture(work.path());
    let path = repo.join(".jit/universe.toml");
    let text = fs::read_to_string(&path).unwrap();
    let id = json(&repo, &["info"])["universe"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = "00000000-0000-4000-8000-000000000000";
    assert!(text.contains(&id), "{text}");
    fs::write(&path, text.replace(&id, other)).unwrap();

    let out = jit(&repo, &["fsck", "--json"]);
    assert!(!out.status.success(), "fsck must not call this clean");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["location"] == "universe.toml"
            && p["message"].as_str().unwrap().contains(&id)
            && p["message"].as_str().unwrap().contains(other)),
        "{problems:?}"
    );
}

#[test]
fn errors_that_mislead_fsck_reports_a_key_that_does_not_match() {
    let work = tempfile::tempdir().unwrap();
    let repo = damaged_universe_fixture(work.path());
    let key = repo.join(".jit/keys/universe.ed25519");
    // Another valid secret key: the pair no longer matches.
    fs::write(&key, "11".repeat(32)).unwrap();

    let out = jit(&repo, &["fsck", "--json"]);
    assert!(!out.status.success(), "fsck must not call this clean");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["location"] == "keys/universe.ed25519"
                && p["message"]
                    .as_str()
                    .unwrap()
                    .contains("does not match the public key")),
        "{problems:?}"
    );
}

#[test]
fn errors_that_mislead_fsck_reports_a_head_that_names_no_branch() {
    let work = tempfile::tempdir().unwrap();
    let repo = damaged_universe_fixture(work.path());
    for head in ["tags/v1\n", "heads/\u{1}bad\n", "\n"] {
        fs::write(repo.join(".jit/HEAD"), head).unwrap();
        let out = jit(&repo, &["fsck", "--json"]);
        assert!(
            !out.status.success(),
            "fsck must not call HEAD {head:?} clean"
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let problems = report["problems"].as_array().unwrap();
        assert!(
            problems.iter().any(|p| p["location"] == "HEAD"),
            "HEAD {head:?}: {problems:?}"
        );
    }
}

#[test]
fn errors_that_mislead_a_damaged_journal_header_does_not_block_reading() {
    let work = tempfile::tempdir().unwrap();
    let repo = damaged_universe_fixture(work.path());
    let path = repo.join(".jit").join(jit_kernel::agents::JOURNAL_FILE);
    {
        let mut journal = jit_kernel::journal::Journal::open(&path).unwrap();
        journal
            .append(&[("jit/kernel/noop", b"not applied".as_slice())])
            .unwrap();
    }
    let mut bytes = fs::read(&path).unwrap();
    bytes[3] ^= 0x40; // inside the header's magic
    fs::write(&path, bytes).unwrap();

    // Read-only verbs run.
    assert!(ok(&repo, &["log"]).contains(MESSAGE));
    assert!(ok(&repo, &["cat", "HEAD:small.txt"]).contains("and some more text"));
    assert!(ok(&repo, &["ls-tree", "HEAD"]).contains(TREE_NAME));
    ok(&repo, &["info"]);
    // fsck runs and reports it.
    let out = jit(&repo, &["fsck", "--json"]);
    assert!(!out.status.success(), "fsck must report the damaged header");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["location"] == "plane.journal"
            && p["message"].as_str().unwrap().contains("header")),
        "{problems:?}"
    );
}
