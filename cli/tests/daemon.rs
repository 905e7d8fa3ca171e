//! The daemon and its RPC, end to end with the real binary: one daemon per universe, verbs over
//! the socket, the wire protocol's refusals, and `kill -9` storms that lose nothing acknowledged.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jit_kernel::command::args::{ApplyArgs, CommitArgs, CreateArgs, SwsArgs};
use jit_kernel::command::reply::StatusInfo;
use jit_kernel::command::Operation;
use jit_kernel::history::Declared;
use jit_kernel::patch::{Patch, PatchOp};
use jit_kernel::rpc::client::Kernel;
use jit_kernel::rpc::protocol::{read_frame, write_frame, Request, Response};
use serde_json::json;

fn declared(message: &str) -> Declared {
    Declared {
        author: AUTHOR.into(),
        message: message.into(),
        time: 1_700_000_000,
        tz: 0,
    }
}

fn repo_with_base(work: &Path) -> PathBuf {
    let repo = work.join("repo");
    let tree = work.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("README"), "base\n").unwrap();
    ok(work, &["init", "repo"]);
    import(&repo, &tree, "base");
    repo
}

#[test]
fn one_daemon_per_universe_and_verbs_go_through_it() {
    let work = tempfile::tempdir().unwrap();
    let repo = repo_with_base(work.path());
    let daemon = Daemon::start(&repo);
    let second = jit(&repo, &["up", "--no-mount"]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));

    // The CLI verbs talk to the daemon (same answers as in-process).
    let id = ok(&repo, &["sws", "new", "--name", "w1"]).trim().to_owned();
    let patch = work.path().join("p.json");
    std::fs::write(&patch, r#"{"id":"a","author":"cli","ops":[{"op":"put","path":"src/x.rs","content":"fn x() {}\n"}]}"#).unwrap();
    ok(&repo, &["sws", "apply", "w1", patch.to_str().unwrap()]);
    let status = json(&repo, &["sws", "status", &id]);
    assert_eq!(status["changes"][0]["path"], "src/x.rs");
    let diff = ok(&repo, &["sws", "diff", "w1"]);
    assert!(
        diff.contains("+++ b/src/x.rs") && diff.contains("+fn x() {}"),
        "{diff}"
    );
    let said = ok(
        &repo,
        &[
            "sws", "commit", "w1", "-m", "x", "--author", AUTHOR, "--date", DATE,
        ],
    );
    // As git says it: the branch and the new snapshot (issue #22).
    assert!(said.starts_with("[main "), "{said}");
    assert_eq!(ok(&repo, &["cat", "HEAD:src/x.rs"]), "fn x() {}\n");
    assert_eq!(
        json(&repo, &["sws", "ls"]).as_array().unwrap().len(),
        0,
        "a committed SWS is retired"
    );

    // The working SWS: status, commit.
    let working = json(&repo, &["status"]);
    assert_eq!(working["changes"].as_array().unwrap().len(), 0);
    let mut kernel = daemon.kernel();
    assert!(kernel.is_daemon());
    let patch = Patch {
        id: "w".into(),
        author: "human".into(),
        ts: 1,
        ops: vec![PatchOp::Put {
            path: "README".into(),
            content: b"edited\n".to_vec(),
            executable: false,
        }],
    };
    let working_id = working["id"].as_str().unwrap().to_owned();
    let _: jit_kernel::sws::Applied = kernel
        .invoke(
            Operation::ApplyPatch,
            &ApplyArgs {
                sws: working_id.clone(),
                patch,
            },
        )
        .unwrap();
    assert!(ok(&repo, &["status"]).contains("M README"));
    assert!(ok(&repo, &["diff"]).contains("+edited"));
    ok(
        &repo,
        &[
            "commit",
            "-m",
            "edit readme",
            "--author",
            AUTHOR,
            "--date",
            DATE,
        ],
    );
    assert_eq!(ok(&repo, &["cat", "HEAD:README"]), "edited\n");
    let fresh = json(&repo, &["status"]);
    assert_ne!(
        fresh["id"],
        working_id.as_str(),
        "a fresh working SWS starts on the new tip"
    );

    // checkout, reset and rebase through the daemon.
    ok(&repo, &["branch", "side", "HEAD~2"]);
    ok(&repo, &["checkout", "side"]);
    assert_eq!(json(&repo, &["info"])["head"], "side");
    ok(&repo, &["checkout", "main"]);
    assert!(fails(&repo, &["checkout", "nope"]).contains("no such ref"));
    ok(
        &repo,
        &["reset", "HEAD~1", "--author", AUTHOR, "--date", DATE],
    );
    assert_eq!(
        ok(&repo, &["cat", "HEAD:README"]),
        "base\n",
        "reset restores the content"
    );
    let log = json(&repo, &["log"]);
    assert_eq!(
        log[0]["rewrite"]["kind"], "reset",
        "the move is recorded as an inversion rewrite"
    );
    assert!(ok(&repo, &["fsck"]).contains("clean"));
}

#[test]
fn rebase_replays_the_branch_onto_another() {
    let work = tempfile::tempdir().unwrap();
    let repo = repo_with_base(work.path());
    let _daemon = Daemon::start(&repo);
    ok(&repo, &["branch", "feature"]);
    // main gains a commit; feature gains two.
    let commit_on = |branch: &str, path: &str, content: &str| {
        let id = ok(&repo, &["sws", "new", "--branch", branch])
            .trim()
            .to_owned();
        let patch = json!({"id": format!("{branch}-{path}"), "author": "t", "ops": [{"op": "put", "path": path, "content": content}]});
        let file = work
            .path()
            .join(format!("{branch}-{}.json", path.replace('/', "_")));
        std::fs::write(&file, patch.to_string()).unwrap();
        ok(&repo, &["sws", "apply", &id, file.to_str().unwrap()]);
        ok(
            &repo,
            &[
                "sws",
                "commit",
                &id,
                "-m",
                &format!("{branch}: {path}"),
                "--author",
                AUTHOR,
                "--date",
                DATE,
            ],
        );
    };
    commit_on("main", "main.txt", "main\n");
    commit_on("feature", "f1.txt", "one\n");
    commit_on("feature", "f2.txt", "two\n");
    ok(&repo, &["checkout", "feature"]);
    ok(
        &repo,
        &["rebase", "main", "--author", AUTHOR, "--date", DATE],
    );
    for (path, content) in [
        ("main.txt", "main\n"),
        ("f1.txt", "one\n"),
        ("f2.txt", "two\n"),
        ("README", "base\n"),
    ] {
        assert_eq!(ok(&repo, &["cat", &format!("HEAD:{path}")]), content);
    }
    let log = json(&repo, &["log"]);
    let messages: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages[0], "rebase onto main");
    assert_eq!(log[0]["rewrite"]["kind"], "rebase");
    // The replayed line sits on main: HEAD^2 is the replayed f2 commit, whose parent is f1's.
    assert_eq!(
        json(&repo, &["show", "HEAD^2"])["message"],
        "feature: f2.txt"
    );
    assert_eq!(
        json(&repo, &["show", "HEAD^2~1"])["message"],
        "feature: f1.txt"
    );
    assert_eq!(
        json(&repo, &["show", "HEAD^2~2"])["message"],
        "main: main.txt"
    );
    assert!(ok(&repo, &["fsck"]).contains("clean"));
}

fn raw_call(socket: &Path, body: &[u8]) -> Response {
    let mut stream = UnixStream::connect(socket).unwrap();
    write_frame(&mut stream, body).unwrap();
    Response::decode(&read_frame(&mut stream).unwrap().unwrap()).unwrap()
}

fn code(response: &Response) -> &str {
    match response {
        Response::Err(e) => &e.code,
        Response::Ok(_) => "ok",
    }
}

#[test]
fn the_wire_protocol_refuses_bad_input_with_stable_codes() {
    let work = tempfile::tempdir().unwrap();
    let repo = repo_with_base(work.path());
    let daemon = Daemon::start(&repo);
    // Malformed CBOR, non-canonical CBOR, a request of the wrong shape.
    assert_eq!(
        code(&raw_call(&daemon.socket, &[0xff, 0x00])),
        "bad_request"
    );
    assert_eq!(
        code(&raw_call(&daemon.socket, &[0xbf, 0xff])),
        "bad_request"
    );
    assert_eq!(code(&raw_call(&daemon.socket, &[0x01])), "bad_request");
    let request = |op: &str, payload: ciborium::value::Value| {
        Request {
            op: op.into(),
            payload,
            ts: 1,
        }
        .encode()
        .unwrap()
    };
    let empty = ciborium::value::Value::Map(vec![]);
    assert_eq!(
        code(&raw_call(
            &daemon.socket,
            &request("no.such.op", empty.clone())
        )),
        "invalid_input"
    );
    assert_eq!(
        code(&raw_call(
            &daemon.socket,
            &request(Operation::SwsStatus.as_str(), empty.clone())
        )),
        "invalid_input"
    );
    let missing = jit_kernel::cbor::to_value(&SwsArgs {
        sws: "00".repeat(16),
    })
    .unwrap();
    assert_eq!(
        code(&raw_call(
            &daemon.socket,
            &request(Operation::SwsStatus.as_str(), missing)
        )),
        "sws_not_found"
    );
    assert_eq!(
        code(&raw_call(
            &daemon.socket,
            &request(Operation::Info.as_str(), empty)
        )),
        "ok"
    );
    // An oversized frame is answered, and the daemon keeps serving.
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let answer = Response::decode(&read_frame(&mut stream).unwrap().unwrap()).unwrap();
    assert_eq!(code(&answer), "frame_too_large");
    // A merge conflict carries the structured conflicts.
    let mut kernel = daemon.kernel();
    let mk = |kernel: &mut Kernel, content: &str, pid: &str| -> String {
        let s: StatusInfo = kernel
            .invoke(
                Operation::CreateSws,
                &CreateArgs {
                    owner: "t".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let patch = Patch {
            id: pid.into(),
            author: "t".into(),
            ts: 1,
            ops: vec![PatchOp::Put {
                path: "README".into(),
                content: content.as_bytes().to_vec(),
                executable: false,
            }],
        };
        let _: jit_kernel::sws::Applied = kernel
            .invoke(
                Operation::ApplyPatch,
                &ApplyArgs {
                    sws: s.id.clone(),
                    patch,
                },
            )
            .unwrap();
        s.id
    };
    let a = mk(&mut kernel, "a\n", "pa");
    let b = mk(&mut kernel, "b\n", "pb");
    let _: jit_kernel::history::Committed = kernel
        .invoke(
            Operation::Commit,
            &CommitArgs {
                sws: a,
                declared: declared("a"),
            },
        )
        .unwrap();
    let error = kernel
        .invoke::<_, jit_kernel::history::Committed>(
            Operation::Commit,
            &CommitArgs {
                sws: b,
                declared: declared("b"),
            },
        )
        .unwrap_err();
    match error {
        jit_kernel::Error::Remote {
            code,
            details: Some(details),
            ..
        } => {
            assert_eq!(code, "merge_conflict");
            let conflicts: Vec<jit_kernel::merge::Conflict> =
                jit_kernel::cbor::from_value(details).unwrap();
            assert_eq!(conflicts[0].path, "README");
        }
        other => panic!("expected a merge conflict, got {other:?}"),
    }
}

/// What the storm client saw acknowledged.
#[derive(Default)]
struct Acked {
    /// (sws, path, content) of every acknowledged patch.
    patches: Vec<(String, String, String)>,
    /// Every acknowledged commit's snapshot.
    commits: Vec<jit_kernel::NodeId>,
}

/// Sends patches (and a commit every few) until the daemon dies.
fn storm(socket: &Path, round: usize, acked: &mut Acked) {
    let Ok(mut kernel) = Kernel::daemon(socket) else {
        return;
    };
    let mut sws: Option<String> = None;
    for n in 0.. {
        let id = match &sws {
            Some(id) => id.clone(),
            None => match kernel.invoke::<_, StatusInfo>(
                Operation::CreateSws,
                &CreateArgs {
                    owner: "storm".into(),
                    ..Default::default()
                },
            ) {
                Ok(status) => {
                    sws = Some(status.id.clone());
                    status.id
                }
                Err(_) => return,
            },
        };
        let path = format!("r{round:02}/f{n:04}.txt");
        let content = format!("round {round} file {n}\n");
        let patch = Patch {
            id: format!("{round}-{n}"),
            author: "storm".into(),
            ts: n,
            ops: vec![PatchOp::Put {
                path: path.clone(),
                content: content.clone().into_bytes(),
                executable: false,
            }],
        };
        match kernel.invoke::<_, jit_kernel::sws::Applied>(
            Operation::ApplyPatch,
            &ApplyArgs {
                sws: id.clone(),
                patch,
            },
        ) {
            Ok(_) => acked.patches.push((id.clone(), path, content)),
            Err(_) => return,
        }
        if n % 7 == 6 {
            match kernel.invoke::<_, jit_kernel::history::Committed>(
                Operation::Commit,
                &CommitArgs {
                    sws: id,
                    declared: declared(&format!("storm {round}/{n}")),
                },
            ) {
                Ok(done) => {
                    acked.commits.push(done.snapshot);
                    sws = None;
                }
                Err(_) => return,
            }
        }
    }
}

#[test]
fn kill_9_during_a_storm_of_patches_and_commits_loses_nothing_acknowledged() {
    let work = tempfile::tempdir().unwrap();
    let repo = repo_with_base(work.path());
    let mut acked = Acked::default();
    for round in 0..20 {
        let mut daemon = Daemon::start(&repo);
        let socket = daemon.socket.clone();
        let mut round_acked = Acked::default();
        std::thread::scope(|scope| {
            let client = scope.spawn(|| storm(&socket, round, &mut round_acked));
            // Kill at a different point each round.
            std::thread::sleep(Duration::from_millis(30 + (round as u64 * 37) % 400));
            daemon.kill();
            client.join().unwrap();
        });
        acked.patches.extend(round_acked.patches);
        acked.commits.extend(round_acked.commits);
        let report = ok(&repo, &["fsck"]);
        assert!(report.contains("clean"), "round {round}: {report}");
    }
    assert!(
        acked.patches.len() > 100,
        "the storm acknowledged only {} patches",
        acked.patches.len()
    );
    assert!(
        acked.commits.len() > 10,
        "the storm acknowledged only {} commits",
        acked.commits.len()
    );

    // Every acknowledged commit is on the branch.
    let lineage: Vec<String> = json(&repo, &["log"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    for snapshot in &acked.commits {
        assert!(
            lineage.contains(&snapshot.to_hex()),
            "acknowledged commit {snapshot} is missing"
        );
    }
    // Every acknowledged patch is in the branch (its SWS was committed) or in its live SWS.
    let mut kernel = Kernel::connect(&repo).unwrap();
    assert!(!kernel.is_daemon());
    let tip = json(&repo, &["ls-tree", "HEAD", "-r"]);
    let in_tip: std::collections::HashSet<&str> = tip
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for (sws, path, content) in &acked.patches {
        if in_tip.contains(path.as_str()) {
            assert_eq!(&ok(&repo, &["cat", &format!("HEAD:{path}")]), content);
            continue;
        }
        let read = kernel.call(
            Operation::ReadFile,
            jit_kernel::cbor::to_value(&jit_kernel::command::args::ReadArgs {
                path: path.clone(),
                sws: Some(sws.clone()),
                rev: None,
            })
            .unwrap(),
        );
        let value =
            read.unwrap_or_else(|e| panic!("acknowledged patch {path} in {sws} is lost: {e}"));
        let map = jit_kernel::cbor::fields::as_map(&value, "read").unwrap();
        let data = jit_kernel::cbor::fields::as_bytes(
            jit_kernel::cbor::fields::require(map, "content").unwrap(),
            "content",
        )
        .unwrap();
        assert_eq!(data, content.as_bytes());
    }
}

#[test]
fn sigterm_stops_the_daemon_cleanly_as_systemd_does() {
    let work = tempfile::tempdir().unwrap();
    let repo = repo_with_base(work.path());
    let mut daemon = Daemon::start(&repo);
    let pid = daemon.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "a SIGTERM'd daemon exits 0: {status:?}");
    assert!(!daemon.socket.exists(), "and removes its socket");
    // The next start is unhindered.
    let _again = Daemon::start(&repo);
}

#[test]
fn agents_work_through_the_daemons_message_plane() {
    let work = tempfile::tempdir().unwrap();
    let repo = repo_with_base(work.path());
    let _daemon = Daemon::start(&repo);
    let created = json(&repo, &["agent", "new", "bot"]);
    assert_eq!(created["permissions"], json!(["sws.create", "commit:*"]));
    assert!(fails(&repo, &["agent", "new", "bot"]).contains("already has a key"));
    assert!(fails(&repo, &["agent", "new", "bad name!"]).contains("invalid agent name"));
    let events = jit_command(&repo)
        .args(["agent", "events", "--count", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // No sleep for the follower to subscribe: make events (new SWS) until it has seen three.
    let mut events = events;
    let deadline = Instant::now() + Duration::from_secs(60);
    while events.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the event follower saw nothing");
        ok(&repo, &["sws", "new"]);
        std::thread::sleep(Duration::from_millis(50));
    }
    let sws = json(&repo, &["agent", "create"])["sws"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = work.path().join("bot.json");
    std::fs::write(
        &patch,
        r#"{"id":"b1","author":"bot","ops":[{"op":"put","path":"bot.txt","content":"hi\n"}]}"#,
    )
    .unwrap();
    let applied = json(&repo, &["agent", "push", &sws, patch.to_str().unwrap()]);
    assert_eq!(applied["seq"], 1);
    let again = json(&repo, &["agent", "push", &sws, patch.to_str().unwrap()]);
    assert_eq!(
        again["duplicate"], true,
        "the same patch id is applied once"
    );
    json(
        &repo,
        &[
            "agent", "commit", &sws, "-m", "from bot", "--author", AUTHOR, "--date", DATE,
        ],
    );
    assert_eq!(ok(&repo, &["cat", "HEAD:bot.txt"]), "hi\n");
    // The owner rule: the CLI's own SWS is not the bot's.
    let human = ok(&repo, &["sws", "new"]).trim().to_owned();
    let err = fails(&repo, &["agent", "push", &human, patch.to_str().unwrap()]);
    assert!(err.contains("neither the owner nor a delegate"), "{err}");
    let output = events.wait_with_output().unwrap();
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .any(|l| l["record"]["op"]["op"] == "sws-created"),
        "{lines:?}"
    );
    // From the log: the last events, then live ones, each position once and in order — no
    // subscriber race, so no sleep. The agent's own records name it.
    let read_back = |args: &[&str]| -> Vec<serde_json::Value> {
        ok(&repo, args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let last = read_back(&["agent", "events", "--last", "4", "--count", "4"]);
    let seqs: Vec<u64> = last
        .iter()
        .map(|l| l["record"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 4);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let since = read_back(&[
        "agent",
        "events",
        "--since",
        &seqs[0].to_string(),
        "--count",
        "2",
    ]);
    assert_eq!(since, last[..2].to_vec());
    let tail = seqs[3].to_string();
    let everything = read_back(&["agent", "events", "--since", "1", "--count", &tail]);
    assert_eq!(
        everything.len() as u64,
        seqs[3],
        "every record from the first"
    );
    let bot: Vec<&str> = everything
        .iter()
        .filter(|l| l["record"]["by"] == "bot")
        .map(|l| l["record"]["op"]["op"].as_str().unwrap())
        .collect();
    assert!(
        bot.contains(&"sws-created")
            && bot.contains(&"sws-patched")
            && bot.contains(&"sws-committed"),
        "the bot's events name it: {bot:?}"
    );
}

#[test]
fn an_agent_rides_out_a_kill_9_and_restart_of_the_daemon() {
    let work = tempfile::tempdir().unwrap();
    let repo = repo_with_base(work.path());
    let mut daemon = Daemon::start(&repo);
    json(&repo, &["agent", "new", "rider"]);
    let key_hex = std::fs::read_to_string(repo.join(".jit/agents/rider.key")).unwrap();
    let mut secret = [0u8; 32];
    hex::decode_to_slice(key_hex.trim(), &mut secret).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let jit_dir = repo.join(".jit");
    let (sws, seqs) = runtime.block_on(async {
        let mut options = jit_plane::agent::AgentOptions::local(&jit_dir);
        options.attempt_timeout = Duration::from_millis(500);
        let mut agent = jit_plane::agent::Agent::connect(
            "rider",
            ed25519_dalek::SigningKey::from_bytes(&secret),
            options,
        )
        .await
        .unwrap();
        let sws = agent.create_sws(None).await.unwrap().id;
        let mut seqs = Vec::new();
        for i in 0..20u64 {
            if i == 10 {
                daemon.kill(); // SIGKILL mid-stream…
                daemon = Daemon::start(&repo); // …and a new daemon on the same sockets.
            }
            let patch = Patch {
                id: format!("r{i}"),
                author: "rider".into(),
                ts: i,
                ops: vec![PatchOp::Put {
                    path: format!("r{i:02}"),
                    content: vec![b'x'],
                    executable: false,
                }],
            };
            seqs.push(agent.push(&sws, &patch).await.unwrap().seq);
        }
        agent.close().await;
        (sws, seqs)
    });
    assert_eq!(
        seqs,
        (1..=20).collect::<Vec<u64>>(),
        "every patch acknowledged once, in order"
    );
    let history = json(&repo, &["sws", "log", &sws]);
    let ids: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["patch_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, (0..20).map(|i| format!("r{i}")).collect::<Vec<_>>());
    assert!(ok(&repo, &["fsck"]).contains("clean"));
}

/// The daemon closes connections idle past `--rpc-idle-timeout`; a long-lived client (the
/// watcher holds one connection for its whole life) connects again instead of failing.
#[test]
fn a_client_idle_past_the_daemons_idle_timeout_is_served_on_a_new_connection() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    ok(work.path(), &["init", "repo"]);
    let daemon = Daemon::start_with(&repo, &["--no-plane", "--rpc-idle-timeout", "1"]);
    let mut kernel = daemon.kernel();
    let info =
        |kernel: &mut Kernel| kernel.call(Operation::Info, ciborium::value::Value::Map(vec![]));
    info(&mut kernel).expect("served on the first connection");
    // Past the idle timeout: the daemon has closed the connection.
    std::thread::sleep(Duration::from_millis(2500));
    for round in 0..3 {
        info(&mut kernel).unwrap_or_else(|e| panic!("call {round} after the idle close: {e}"));
    }
}

/// Issue #22: `jit up` outside any universe makes one (as `jit init` would, creating the
/// directory) and serves it — one command brings a universe up on a fresh machine.
#[test]
fn up_outside_a_universe_creates_one_and_serves_it() {
    let work = tempfile::tempdir().unwrap();
    let fresh = work.path().join("not/yet/there");
    // `jit wait` started first waits for the universe to appear, then for its daemon.
    let waiting = jit_command(work.path())
        .arg("-C")
        .arg(&fresh)
        .args(["wait", "--timeout", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut command = jit_command(work.path());
    command
        .arg("-C")
        .arg(&fresh)
        .args(["up", "--no-mount", "--no-plane"]);
    let daemon = Daemon::start_command(&fresh, command);
    let waited = waiting.wait_with_output().unwrap();
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    let info = json(&fresh, &["info"]);
    assert_eq!(info["head"], "main", "{info}");
    assert!(fresh.join(".jit/universe.toml").exists());
    drop(daemon);
    // Inside one, it serves that one and makes nothing new.
    let again = Daemon::start_command(&fresh, {
        let mut command = jit_command(&fresh);
        command.args(["up", "--no-mount", "--no-plane"]);
        command
    });
    assert_eq!(json(&fresh, &["info"])["universe"], info["universe"]);
    drop(again);
    // With --json it prints one JSON value, saying whether it made the universe.
    let other = work.path().join("json-one");
    let mut up = jit_command(work.path())
        .arg("-C")
        .arg(&other)
        .args(["up", "--no-mount", "--no-plane", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(up.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = up.kill();
    let _ = up.wait();
    let said: serde_json::Value = serde_json::from_str(&line).expect("one JSON value first");
    assert_eq!(said["created"], true, "{said}");
    assert!(said["socket"].as_str().is_some(), "{said}");
}
