//! Federation through the real binary (issue #19): two daemons on loopback TCP — A publishes,
//! B says hello, imports, and reads the import read-only in its mount under
//! `federation/<universe>/<name>/`; once A is trusted, a refresh after A publishes again shows
//! the new epoch; `jit
//! federation ls` says what was verified; `jit fsck` re-verifies the imported nodes offline, and a
//! damaged one is refused through the mount (EIO) and named by fsck.

use std::net::TcpListener;
use std::time::Duration;

use jit_mount_tests::*;
use jit_testutils::damage::flip_every;

const MARKER: &str = "JIT-FEDERATION-IMPORTED-MARKER";

/// A loopback endpoint on a port that was free a moment ago.
fn free_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    format!("tcp/127.0.0.1:{port}")
}

fn errno_of(result: std::io::Result<()>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

#[test]
fn an_import_reads_read_only_under_federation_refreshes_and_is_checked_by_fsck() {
    if !fuse_ready("an_import_reads_read_only_under_federation_refreshes_and_is_checked_by_fsck") {
        return;
    }
    let a = Universe::with_files(&[
        ("README", "alpha one\n"),
        ("src/lib.rs", &format!("// {MARKER}\npub fn f() {{}}\n")),
    ]);
    let b = Universe::with_files(&[("mine.txt", "beta\n")]);
    let endpoint = free_endpoint();
    let a_daemon = Daemon::start_with(
        &a,
        &a.dir.path().join("mnt"),
        true,
        &["--listen", &endpoint],
    );
    let published = a.json(&["publish", "main", "--as", "release"]);
    assert_eq!(published["epoch"], 1);

    let mut b_daemon = b.up();
    let hello = b.json(&["federation", "hello", &endpoint]);
    let id = hello["universe"].as_str().expect("universe id").to_owned();
    assert_eq!(hello["first_contact"], true);
    let report = b.json(&[
        "federation",
        "import",
        &id,
        "release",
        "--as",
        "upstream",
        "-q",
    ]);
    assert_eq!(report["epoch"], 1);
    assert_eq!(report["snapshot"], published["snapshot"]);

    // Readable in B's mount, read-only.
    let view = b_daemon.path(&format!("federation/{id}/upstream"));
    assert_eq!(
        read_until(&view.join("README"), "alpha one\n", Duration::from_secs(10)),
        "alpha one\n"
    );
    let listed: Vec<String> = std::fs::read_dir(b_daemon.path("federation"))
        .expect("federation/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, vec![id.clone()]);
    assert_eq!(
        errno_of(std::fs::write(view.join("README"), "changed")),
        Some(libc::EROFS),
        "an import is read-only"
    );
    assert_eq!(
        errno_of(std::fs::create_dir(view.join("new"))),
        Some(libc::EROFS)
    );
    assert_eq!(
        std::fs::read_to_string(b_daemon.path("head/mine.txt")).expect("B's own head"),
        "beta\n"
    );

    // A publishes a new epoch; B refreshes it by name and the view follows.
    let next = a.dir.path().join("next");
    std::fs::create_dir_all(next.join("src")).expect("mkdir");
    std::fs::write(next.join("README"), "alpha two\n").expect("write");
    std::fs::write(
        next.join("src/lib.rs"),
        format!("// {MARKER}\npub fn f() {{}}\n"),
    )
    .expect("write");
    a.ok(&["import", next.to_str().expect("utf-8"), "-m", "two"]);
    assert_eq!(a.json(&["publish", "main", "--as", "release"])["epoch"], 2);
    // Only a trusted universe is refreshed without being named.
    assert_eq!(
        b.json(&["federation", "refresh", "-q"]),
        serde_json::json!([])
    );
    b.ok(&["federation", "trust", &id, "trusted"]);
    let refreshed = b.json(&["federation", "refresh", "-q"]);
    let refreshed = &refreshed.as_array().expect("reports")[0];
    assert_eq!(refreshed["epoch"], 2);
    // The snapshot, its root tree and README's blob are new; src/ is held already.
    assert_eq!(refreshed["fetched_nodes"], 3, "{refreshed}");
    assert_eq!(
        read_until(&view.join("README"), "alpha two\n", Duration::from_secs(10)),
        "alpha two\n"
    );
    let ls = b.json(&["federation", "ls"]);
    let row = &ls.as_array().expect("rows")[0];
    assert_eq!(row["universe"], id);
    assert_eq!(row["epoch"], 2);
    assert_eq!(row["trust"], "trusted");
    assert_eq!(row["imports"][0]["local"], "upstream");
    assert!(row["quarantine"].is_null());
    drop(a_daemon);

    // fsck re-verifies the imported nodes, head and edges offline.
    let clean = b.json(&["fsck"]);
    assert_eq!(clean["problems"], serde_json::json!([]), "{clean}");
    b_daemon.stop();
    drop(b_daemon);
    let store = b.repo.join(".jit/store/data.mdb");
    assert!(flip_every(&store, MARKER.as_bytes(), 4) >= 1);
    let out = b.jit(&["fsck", "--json"]);
    assert!(!out.status.success(), "fsck must fail on a damaged import");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains(&format!("federation {id} node")),
        "{problems}"
    );
    let b_daemon = b.up();
    let damaged = std::fs::read(b_daemon.path(&format!("federation/{id}/upstream/src/lib.rs")));
    assert_eq!(
        damaged.err().and_then(|e| e.raw_os_error()),
        Some(libc::EIO),
        "a damaged imported node is refused, never served"
    );
}
