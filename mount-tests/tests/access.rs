//! Issue #17 item 6, who may talk to the daemon: the mount is private to the daemon's user
//! unless `jit up --allow-other` asks otherwise. Another user is played by `setpriv` to uid
//! 65534 (the tests run as root).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use jit_mount_tests::*;

/// Whether uid 65534 can read `path`.
fn nobody_reads(path: &std::path::Path) -> bool {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "cat",
        ])
        .arg(path)
        .output()
        .expect("run setpriv")
        .status
        .success()
}

#[test]
fn who_may_talk_to_the_daemon_the_mount_is_private_unless_allow_other() {
    if !fuse_ready("who_may_talk_to_the_daemon_the_mount_is_private_unless_allow_other") {
        return;
    }
    let universe = Universe::with_files(&[("README", "secret\n")]);
    // Everything up to the mount is open to others: only the mount itself may stop them.
    std::fs::set_permissions(universe.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut daemon = universe.up();
    let readme = daemon.path("head/README");
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), "secret\n");
    assert!(!nobody_reads(&readme), "another user read the mount");
    daemon.stop();
    drop(daemon);

    let daemon = universe.up_with(&["--allow-other"]);
    let readme = daemon.path("head/README");
    assert!(nobody_reads(&readme), "--allow-other lets other users in");
}
