//! Issue #17 item 6, who may talk to the daemon: its socket and the plane journal are the
//! owner's alone whatever the umask, every connection's peer is checked (`SO_PEERCRED`), and a
//! plane endpoint off loopback without TLS is refused unless forced. Other users are played by
//! `setpriv` to uid 65534 (the tests run as root).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

/// `jit args…` run under umask 000; requires success.
fn ok_under_umask_000(dir: &Path, args: &[&str]) {
    let out = Command::new("sh")
        .current_dir(dir)
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_jit"))
        .args(args)
        .env_remove("JIT_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "jit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A universe made under umask 000 (its store world-writable, as in the issue) in a
/// world-traversable directory, so another user reaches it.
fn shared_universe(work: &Path) -> std::path::PathBuf {
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o777)).unwrap();
    let tree = work.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("README"), "base\n").unwrap();
    ok_under_umask_000(work, &["init", "repo"]);
    let repo = work.join("repo");
    let tree = tree.to_str().unwrap();
    ok_under_umask_000(
        &repo,
        &[
            "import", tree, "-m", "base", "--author", AUTHOR, "--date", DATE,
        ],
    );
    repo
}

/// `jit up` started under umask 000 with `extra` arguments.
fn daemon_under_umask_000(repo: &Path, extra: &[&str]) -> Daemon {
    let mut command = Command::new("sh");
    command
        .current_dir(repo)
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_jit"))
        .args(["up", "--no-mount"])
        .args(extra)
        .env_remove("JIT_LOG");
    Daemon::start_command(repo, command)
}

/// Env var that turns [`client_as_another_user`] into a client of this socket.
const CLIENT_SOCKET: &str = "JIT_TEST_ACCESS_SOCKET";

/// The raw client another user runs: this test binary again, under `setpriv` as uid/gid 65534
/// with no supplementary groups, asking the daemon to create tag `name`. Prints what happened:
/// `connect_refused` (the socket let it not even connect), the error code, or `ok`.
fn as_nobody_create_tag(socket: &Path, name: &str) -> String {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "client_as_another_user", "--nocapture"])
        .env(CLIENT_SOCKET, socket)
        .env("JIT_TEST_ACCESS_TAG", name)
        .output()
        .expect("run setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("outcome: "))
        .unwrap_or_else(|| {
            panic!(
                "the client as another user said nothing: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned()
}

/// Not a test of its own: the client [`as_nobody_create_tag`] runs (does nothing otherwise).
#[test]
fn client_as_another_user() {
    let Some(socket) = std::env::var_os(CLIENT_SOCKET) else {
        return;
    };
    let name = std::env::var("JIT_TEST_ACCESS_TAG").unwrap();
    let outcome = match jit_kernel::rpc::client::Kernel::daemon(Path::new(&socket)) {
        Err(_) => "connect_refused".to_owned(),
        Ok(mut kernel) => {
            let args = jit_kernel::command::args::RefArgs {
                name,
                target: None,
                expected: None,
                force: false,
            };
            match kernel.invoke::<_, ciborium::value::Value>(
                jit_kernel::command::Operation::CreateTag,
                &args,
            ) {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.code().as_str().to_owned(),
            }
        }
    };
    println!("outcome: {outcome}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn has_tag(repo: &Path, name: &str) -> bool {
    json(repo, &["tag"])
        .as_array()
        .unwrap()
        .iter()
        .any(|tag| tag["name"] == name)
}

#[test]
fn who_may_talk_to_the_daemon_only_its_owner_root_or_an_allowed_group() {
    let work = tempfile::tempdir().unwrap();
    let repo = shared_universe(work.path());
    let mut daemon = daemon_under_umask_000(&repo, &[]);
    let socket = repo.join(".jit/jit.sock");
    assert_eq!(mode(&socket), 0o600, "jit.sock under umask 000");
    assert_eq!(
        mode(&repo.join(".jit/plane.journal")),
        0o600,
        "plane.journal under umask 000"
    );
    // Another user cannot reach the socket.
    assert_eq!(as_nobody_create_tag(&socket, "mallory"), "connect_refused");
    assert!(!has_tag(&repo, "mallory"));
    // Even on a socket someone opened up, the daemon checks who connects.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        as_nobody_create_tag(&socket, "mallory"),
        "permission_denied"
    );
    assert!(!has_tag(&repo, "mallory"));
    // The owner (root here) is served.
    ok(&repo, &["tag", "v1"]);
    assert!(has_tag(&repo, "v1"));
    daemon.kill();

    // A group the owner allows gets in (the socket is the group's, 0660).
    let mut daemon = daemon_under_umask_000(&repo, &["--allow-group", "65534"]);
    assert_eq!(mode(&socket), 0o660);
    assert_eq!(as_nobody_create_tag(&socket, "friend"), "ok");
    assert!(has_tag(&repo, "friend"));
    daemon.kill();
}

#[test]
fn who_may_talk_to_the_daemon_a_plain_listen_off_loopback_is_refused_unless_forced() {
    let work = tempfile::tempdir().unwrap();
    let repo = shared_universe(work.path());
    let out = jit(
        &repo,
        &["up", "--no-mount", "--listen", "tcp/0.0.0.0:0", "--json"],
    );
    assert!(!out.status.success(), "an open listen was accepted");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"insecure_listen\""), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--insecure-listen"),
        "the refusal says how to force it"
    );
    assert!(!repo.join(".jit/jit.sock").exists());
    // Forced, it runs (with a warning in the log).
    let _daemon = Daemon::start_with(&repo, &["--listen", "tcp/0.0.0.0:0", "--insecure-listen"]);
}
