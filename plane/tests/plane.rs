//! The message plane with real Zenoh sessions in one process over a Unix socket.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ciborium::value::Value;
use ed25519_dalek::SigningKey;
use jit_kernel::agents::{self, Envelope};
use jit_kernel::cbor;
use jit_kernel::history::CommitInfo;
use jit_kernel::patch::{Patch, PatchOp};
use jit_kernel::rpc::protocol::Response;
use jit_kernel::source::Dag;
use jit_kernel::{content, tree, DeclaredTime, Repository};
use jit_plane::agent::{Agent, AgentOptions};
use jit_plane::server::{Plane, PlaneOptions};

const T: Duration = Duration::from_secs(30);

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn setup(agent_names: &[&str]) -> (tempfile::TempDir, Arc<Repository>) {
    let dir = tempfile::tempdir().unwrap();
    let repo = jit_testutils::fixture::init_universe(dir.path());
    for (i, name) in agent_names.iter().enumerate() {
        agents::register(
            repo.store(),
            name,
            &key(i as u8 + 1).verifying_key(),
            vec!["sws.create".into(), "commit:*".into()],
        )
        .unwrap();
    }
    (dir, Arc::new(repo))
}

fn socket(dir: &Path) -> PathBuf {
    dir.join(".jit/zenoh.sock")
}

async fn plane(repo: &Arc<Repository>, dir: &Path, tweak: impl FnOnce(&mut PlaneOptions)) -> Plane {
    let mut options = PlaneOptions {
        unix_socket: Some(socket(dir)),
        ..Default::default()
    };
    tweak(&mut options);
    tokio::time::timeout(T, Plane::start(repo.clone(), options))
        .await
        .unwrap()
        .unwrap()
}

async fn agent(dir: &Path, name: &str, seed: u8) -> Agent {
    let mut options = AgentOptions::local(&dir.join(".jit"));
    options.attempt_timeout = Duration::from_millis(500);
    tokio::time::timeout(T, Agent::connect(name, key(seed), options))
        .await
        .unwrap()
        .unwrap()
}

/// Creates an SWS owned by `agent` on the checked-out branch.
async fn create_sws(agent: &mut Agent) -> jit_plane::agent::Created {
    tokio::time::timeout(T, agent.create_sws(None))
        .await
        .unwrap()
        .unwrap()
}

fn put(path: &str, content: &str, id: &str) -> Patch {
    Patch {
        id: id.into(),
        author: "agent".into(),
        ts: 0,
        ops: vec![PatchOp::Put {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            executable: false,
        }],
    }
}

fn info(message: &str) -> CommitInfo {
    CommitInfo {
        author: "Agent <a@x>".into(),
        message: message.into(),
        time: DeclaredTime {
            seconds: 1_700_000_000,
            tz_minutes: 0,
        },
    }
}

fn tip_file(repo: &Repository, path: &str) -> Option<String> {
    let txn = repo.store().read().unwrap();
    let dag = Dag::new(repo.store(), &txn);
    let tip = repo.resolve("main").unwrap();
    let root = tree::tree_of(&dag, &tip).unwrap();
    let entry = tree::lookup(&dag, &root, path.as_bytes()).unwrap()?;
    Some(String::from_utf8(content::read_blob(&dag, &entry.id).unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_creates_pushes_and_commits() {
    let (dir, repo) = setup(&["alice"]);
    let plane = plane(&repo, dir.path(), |_| {}).await;
    let mut alice = agent(dir.path(), "alice", 1).await;
    let sws = create_sws(&mut alice).await;
    for i in 0..5 {
        let applied = tokio::time::timeout(
            T,
            alice.push(
                &sws.id,
                &put(&format!("f{i}.txt"), &format!("{i}\n"), &format!("p{i}")),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(applied.seq, i + 1);
    }
    let done = tokio::time::timeout(T, alice.commit(&sws.id, &info("from alice")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repo.resolve("main").unwrap(), done.snapshot);
    for i in 0..5 {
        assert_eq!(
            tip_file(&repo, &format!("f{i}.txt")).as_deref(),
            Some(format!("{i}\n").as_str())
        );
    }
    alice.close().await;
    plane.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_replies_and_a_plane_restart_leave_every_patch_applied_once_in_order() {
    let (dir, repo) = setup(&["bob"]);
    let mut current = Some(
        plane(&repo, dir.path(), |o| {
            o.drop_replies.store(3, Ordering::SeqCst)
        })
        .await,
    );
    let mut bob = agent(dir.path(), "bob", 1).await;
    let sws = create_sws(&mut bob).await;
    for i in 0..30u64 {
        if i == 15 {
            // Restart the plane mid-stream; the agent's session reconnects by itself.
            if let Some(old) = current.take() {
                old.close().await;
            }
            current = Some(
                plane(&repo, dir.path(), |o| {
                    o.drop_replies.store(2, Ordering::SeqCst)
                })
                .await,
            );
        }
        let patch = put(&format!("n{i:02}.txt"), &format!("{i}\n"), &format!("q{i}"));
        let applied = tokio::time::timeout(T, bob.push(&sws.id, &patch))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            applied.seq,
            i + 1,
            "acknowledged exactly once, in order (duplicate={})",
            applied.duplicate
        );
    }
    // The last patches are acknowledged from the journal; settling commits them.
    repo.store().settle().unwrap();
    let txn = repo.store().read().unwrap();
    let history = jit_kernel::sws::history(repo.store(), &txn, sws.id.parse().unwrap()).unwrap();
    let ids: Vec<String> = history.iter().map(|r| r.patch_id.clone()).collect();
    let expected: Vec<String> = (0..30).map(|i| format!("q{i}")).collect();
    assert_eq!(ids, expected, "every patch once, in the sender's order");
    drop(txn);
    bob.close().await;
    if let Some(plane) = current {
        plane.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipelined_agent_survives_lost_replies_and_a_restart_with_every_patch_once_in_order() {
    let (dir, repo) = setup(&["dora"]);
    let dropped_first = Arc::new(std::sync::atomic::AtomicU32::new(4));
    let dropped_second = Arc::new(std::sync::atomic::AtomicU32::new(3));
    let first = plane(&repo, dir.path(), |o| {
        o.drop_replies = dropped_first.clone()
    })
    .await;
    let mut dora = agent(dir.path(), "dora", 1).await;
    let sws = create_sws(&mut dora).await;
    let sws_id: jit_kernel::sws::SwsId = sws.id.parse().unwrap();
    let applied_so_far = {
        let repo = repo.clone();
        move || {
            let txn = repo.store().read().unwrap();
            jit_kernel::sws::history(repo.store(), &txn, sws_id)
                .unwrap()
                .len()
        }
    };
    // Restart the plane while the window is full, once 100 patches have landed.
    let restarter = {
        let (repo, dir, dropped) = (repo.clone(), dir.path().to_owned(), dropped_second.clone());
        tokio::spawn(async move {
            while applied_so_far() < 100 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            first.close().await;
            let at_restart = applied_so_far();
            (
                at_restart,
                plane(&repo, &dir, |o| o.drop_replies = dropped).await,
            )
        })
    };
    let patches: Vec<Patch> = (0..300)
        .map(|i| put(&format!("w{i:03}.txt"), &format!("{i}\n"), &format!("w{i}")))
        .collect();
    let answers = tokio::time::timeout(T, dora.push_many(&sws.id, &patches, 16))
        .await
        .unwrap()
        .unwrap();
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap().seq, i as u64 + 1, "answer {i} in order");
    }
    repo.store().settle().unwrap();
    let txn = repo.store().read().unwrap();
    let history = jit_kernel::sws::history(repo.store(), &txn, sws_id).unwrap();
    let ids: Vec<String> = history.iter().map(|r| r.patch_id.clone()).collect();
    let expected: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
    assert_eq!(ids, expected, "every patch once, in the sender's order");
    drop(txn);
    dora.close().await;
    let (at_restart, second) = tokio::time::timeout(T, restarter).await.unwrap().unwrap();
    assert!(
        at_restart < 300,
        "the restart came mid-stream ({at_restart} applied)"
    );
    assert_eq!(
        dropped_first.load(Ordering::SeqCst),
        0,
        "replies were lost before"
    );
    assert_eq!(
        dropped_second.load(Ordering::SeqCst),
        0,
        "and after the restart"
    );
    second.close().await;
}

/// Makes the deliverer keep its transaction open until the plane closes: what it acknowledges
/// meanwhile is only in the journal.
fn keep_open_until_close(options: &mut PlaneOptions) {
    options.idle = Duration::from_secs(600);
    options.max_open = Duration::from_secs(600);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_acknowledged_from_the_journal_survive_a_crash_before_their_commit() {
    let (dir, repo) = setup(&["erin"]);
    // The transaction stays open until the plane closes, and closing drops it as a crash
    // would: every acknowledged patch is then only in the journal.
    let first = plane(&repo, dir.path(), |o| {
        keep_open_until_close(o);
        o.crash_on_close = true;
    })
    .await;
    let mut erin = agent(dir.path(), "erin", 1).await;
    let sws = create_sws(&mut erin).await;
    let topic = format!("jit/sws/{}/patch", sws.id);
    let envelopes: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            let patch = put(&format!("j{i:02}.txt"), &format!("{i}\n"), &format!("j{i}"));
            erin.envelope(&topic, cbor::to_value(&patch).unwrap())
                .unwrap()
                .encode()
                .unwrap()
        })
        .collect();
    let mut answers = Vec::new();
    for bytes in &envelopes {
        let answer = raw(&erin, &topic, bytes.clone()).await;
        assert_eq!(code(&answer), "ok", "{answer:?}");
        answers.push(answer);
    }
    erin.close().await;
    first.close().await;
    let sws_id: jit_kernel::sws::SwsId = sws.id.parse().unwrap();
    let history = |repo: &Repository| {
        let txn = repo.store().read().unwrap();
        jit_kernel::sws::history(repo.store(), &txn, sws_id)
            .unwrap()
            .into_iter()
            .map(|r| r.patch_id)
            .collect::<Vec<_>>()
    };
    assert!(
        history(&repo).is_empty(),
        "the crash lost the transaction: the patches are only in the journal"
    );

    // The next plane delivers the journal again before it serves.
    let second = plane(&repo, dir.path(), |_| {}).await;
    let expected: Vec<String> = (0..20).map(|i| format!("j{i}")).collect();
    assert_eq!(
        history(&repo),
        expected,
        "every acknowledged patch once, in order"
    );
    // A retry of an acknowledged message gets its original answer and applies nothing.
    let erin = agent(dir.path(), "erin", 1).await;
    let again = raw(&erin, &topic, envelopes[19].clone()).await;
    assert_eq!(again, answers[19], "the original answer");
    repo.store().settle().unwrap();
    assert_eq!(history(&repo), expected, "and no second effect");
    erin.close().await;
    second.close().await;
}

/// Sends raw bytes on a key and returns the decoded answer.
async fn raw(agent: &Agent, key: &str, bytes: Vec<u8>) -> Response {
    let replies = agent
        .session()
        .get(key)
        .payload(bytes)
        .timeout(Duration::from_secs(5))
        .await
        .unwrap();
    let reply = tokio::time::timeout(T, replies.recv_async())
        .await
        .unwrap()
        .unwrap();
    Response::decode(&reply.result().unwrap().payload().to_bytes()).unwrap()
}

fn code(response: &Response) -> String {
    match response {
        Response::Err(e) => e.code.clone(),
        Response::Ok(_) => "ok".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_have_their_own_codes_and_apply_nothing() {
    let (dir, repo) = setup(&["carol", "mallory"]);
    let plane = plane(&repo, dir.path(), |o| {
        o.rate = 0.0;
        o.burst = 12.0;
    })
    .await;
    let mut carol = agent(dir.path(), "carol", 1).await;
    let sws = create_sws(&mut carol).await;
    let topic = format!("jit/sws/{}/patch", sws.id);
    let patch_value = cbor::to_value(&put("x.txt", "x\n", "px")).unwrap();
    let patches = || {
        // Acknowledged writes may still be in the plane's open transaction: settle first.
        repo.store().settle().unwrap();
        let txn = repo.store().read().unwrap();
        jit_kernel::sws::get(repo.store(), &txn, sws.id.parse().unwrap())
            .unwrap()
            .patches
    };

    // Malformed CBOR, unsigned, unknown agent, forged signature, too large.
    assert_eq!(
        code(&raw(&carol, &topic, vec![0xff, 0x13]).await),
        "malformed"
    );
    let mut unsigned = carol.envelope(&topic, patch_value.clone()).unwrap();
    unsigned.sig.clear();
    assert_eq!(
        code(&raw(&carol, &topic, unsigned.encode().unwrap()).await),
        "unsigned"
    );
    let stranger = Envelope::signed(
        &topic,
        "nobody",
        1,
        "m1".into(),
        patch_value.clone(),
        &key(9),
    )
    .unwrap();
    assert_eq!(
        code(&raw(&carol, &topic, stranger.encode().unwrap()).await),
        "unknown_agent"
    );
    let forged = Envelope::signed(
        &topic,
        "carol",
        u64::MAX / 2,
        "f1".into(),
        patch_value.clone(),
        &key(9),
    )
    .unwrap();
    assert_eq!(
        code(&raw(&carol, &topic, forged.encode().unwrap()).await),
        "bad_signature"
    );
    let huge = Value::Bytes(vec![0u8; agents::MAX_MESSAGE + 1]);
    let big = carol.envelope(&topic, huge).unwrap();
    assert_eq!(
        code(&raw(&carol, &topic, big.encode().unwrap()).await),
        "too_large"
    );
    // Wrong owner: mallory is registered but does not own carol's SWS.
    let mallory = agent(dir.path(), "mallory", 2).await;
    let intrusion = mallory.envelope(&topic, patch_value.clone()).unwrap();
    assert_eq!(
        code(&raw(&mallory, &topic, intrusion.encode().unwrap()).await),
        "not_owner"
    );
    assert_eq!(patches(), 0, "nothing applied so far");

    // A good message, its retry (the original answer) and replays.
    let good = carol.envelope(&topic, patch_value.clone()).unwrap();
    assert_eq!(
        code(&raw(&carol, &topic, good.encode().unwrap()).await),
        "ok"
    );
    let again = raw(&carol, &topic, good.encode().unwrap()).await;
    assert_eq!(code(&again), "ok", "a retry gets the original answer");
    assert_eq!(patches(), 1, "and no second effect");
    let mut reused = carol
        .envelope(&topic, cbor::to_value(&put("y.txt", "y\n", "py")).unwrap())
        .unwrap();
    reused.msg_id = good.msg_id.clone();
    reused.ts = good.ts;
    reused.sig = Envelope::signed(
        &topic,
        "carol",
        reused.ts,
        reused.msg_id.clone(),
        reused.payload.clone(),
        &key(1),
    )
    .unwrap()
    .sig;
    assert_eq!(
        code(&raw(&carol, &topic, reused.encode().unwrap()).await),
        "replayed"
    );
    // A message older than the last delivered one but never delivered itself (a request lost
    // on the way, resent) is taken late; `stale` is for messages older than the remembered
    // window (agents::tests::a_senders_window_is_trimmed_and_older_retries_are_refused_by_ts).
    let late = Envelope::signed(
        &topic,
        "carol",
        good.ts - 1,
        "older".into(),
        patch_value.clone(),
        &key(1),
    )
    .unwrap();
    assert_eq!(
        code(&raw(&carol, &topic, late.encode().unwrap()).await),
        "ok"
    );
    assert_eq!(patches(), 1, "the same patch id: nothing changes");

    // Over the rate limit (burst of 12, no refill).
    let mut limited = None;
    for i in 0..20 {
        let envelope = carol
            .envelope(
                &topic,
                cbor::to_value(&put(&format!("r{i}"), "r", &format!("r{i}"))).unwrap(),
            )
            .unwrap();
        let answer = raw(&carol, &topic, envelope.encode().unwrap()).await;
        if code(&answer) == "rate_limited" {
            limited = Some(i);
            break;
        }
    }
    assert!(
        limited.is_some(),
        "the rate limit must bite within 20 messages"
    );

    // Every refusal left an audit record (written into the plane's open transaction).
    repo.store().settle().unwrap();
    let txn = repo.store().read().unwrap();
    let audits: Vec<String> = repo
        .store()
        .log_entries(&txn)
        .unwrap()
        .filter_map(|e| {
            let (seq, bytes) = e.unwrap();
            match jit_kernel::log::verify_record(seq, bytes).unwrap().0.op {
                jit_kernel::log::LogOp::Audit { code, .. } => Some(code),
                _ => None,
            }
        })
        .collect();
    for expected in [
        "malformed",
        "unsigned",
        "unknown_agent",
        "bad_signature",
        "too_large",
        "not_owner",
        "replayed",
        "rate_limited",
    ] {
        assert!(
            audits.iter().any(|c| c == expected),
            "no audit record for {expected}: {audits:?}"
        );
    }
    drop(txn);
    carol.close().await;
    mallory.close().await;
    plane.close().await;
}

/// Publishes probes from the daemon's session until `subscriber` receives one; probes are not
/// CBOR log records, so the event assertions skip them.
async fn await_route(
    plane: &Plane,
    subscriber: &zenoh::pubsub::Subscriber<
        zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>,
    >,
) {
    let key = subscriber.key_expr().clone();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        plane.session().put(&key, b"probe".to_vec()).await.unwrap();
        if let Ok(Ok(sample)) =
            tokio::time::timeout(Duration::from_millis(100), subscriber.recv_async()).await
        {
            if sample.payload().to_bytes().as_ref() == b"probe" {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscription never became routable"
        );
    }
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(50), subscriber.recv_async()).await
    {}
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_agents_push_while_a_ninth_watches_every_event_in_order() {
    let names: Vec<String> = (0..8).map(|i| format!("agent{i}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("watcher");
    let (dir, repo) = setup(&all);
    let plane = plane(&repo, dir.path(), |_| {}).await;
    let watcher = agent(dir.path(), "watcher", 9).await;
    let events = watcher
        .session()
        .declare_subscriber("jit/kernel/events")
        .await
        .unwrap();
    let lifecycle = watcher
        .session()
        .declare_subscriber("jit/kernel/sws_lifecycle")
        .await
        .unwrap();
    // Readiness, not a sleep: a probe published through the daemon's peer reaches the watcher
    // only once the peer knows its subscriptions.
    await_route(&plane, &events).await;
    await_route(&plane, &lifecycle).await;
    let start = repo
        .store()
        .log_tail(&repo.store().read().unwrap())
        .unwrap();

    let mut handles = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (dir, name) = (dir.path().to_owned(), name.clone());
        handles.push(tokio::spawn(async move {
            let mut a = agent(&dir, &name, i as u8 + 1).await;
            let sws = a.create_sws(None).await.unwrap();
            for n in 0..10 {
                a.push(
                    &sws.id,
                    &put(&format!("{name}/{n}.txt"), "x\n", &format!("{name}-{n}")),
                )
                .await
                .unwrap();
            }
            a.close().await;
        }));
    }
    for handle in handles {
        tokio::time::timeout(T, handle).await.unwrap().unwrap();
    }
    repo.store().settle().unwrap();
    let end = repo
        .store()
        .log_tail(&repo.store().read().unwrap())
        .unwrap();
    assert_eq!(end - start, 8 * 11, "8 creations and 80 patches logged");

    let mut seen = Vec::new();
    while seen.len() < (end - start) as usize {
        let sample = tokio::time::timeout(T, events.recv_async())
            .await
            .expect("an event is missing")
            .unwrap();
        let body = sample.payload().to_bytes();
        let Ok(value) = cbor::decode(&body) else {
            continue; // a late readiness probe
        };
        let map = cbor::fields::as_map(&value, "event").unwrap();
        seen.push(cbor::fields::as_u64(cbor::fields::require(map, "seq").unwrap(), "seq").unwrap());
    }
    let expected: Vec<u64> = (start + 1..=end).collect();
    assert_eq!(seen, expected, "every event, in log order");
    let mut created = 0;
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(500), lifecycle.recv_async()).await
    {
        created += 1;
    }
    assert_eq!(created, 8, "one lifecycle event per SWS created");
    watcher.close().await;
    plane.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_settle_while_the_plane_closes_waits_for_its_last_commit() {
    let (dir, repo) = setup(&["erin"]);
    // The transaction stays open until the plane closes, and its final commit waits for us.
    let gate = Arc::new(std::sync::Barrier::new(2));
    let first = plane(&repo, dir.path(), |o| {
        keep_open_until_close(o);
        o.final_commit_gate = Some(gate.clone());
    })
    .await;
    let mut erin = agent(dir.path(), "erin", 1).await;
    let sws = create_sws(&mut erin).await;
    for i in 0..5 {
        let patch = put(&format!("k{i}.txt"), "k\n", &format!("k{i}"));
        tokio::time::timeout(T, erin.push(&sws.id, &patch))
            .await
            .unwrap()
            .unwrap();
    }
    erin.close().await;
    let closing = tokio::spawn(first.close());
    // The plane has stopped taking work and holds its last commit back.
    let waiter = gate.clone();
    tokio::time::timeout(T, tokio::task::spawn_blocking(move || waiter.wait()))
        .await
        .unwrap()
        .unwrap();
    let sws_id: jit_kernel::sws::SwsId = sws.id.parse().unwrap();
    let reader = repo.clone();
    let mut settled = tokio::task::spawn_blocking(move || {
        reader.store().settle().unwrap();
        let txn = reader.store().read().unwrap();
        jit_kernel::sws::history(reader.store(), &txn, sws_id)
            .unwrap()
            .len()
    });
    // While the commit is held, the settle must not return (if it does, it saw nothing).
    if let Ok(early) = tokio::time::timeout(Duration::from_millis(300), &mut settled).await {
        panic!(
            "a settle returned while the last commit was held back, seeing {} patches",
            early.unwrap()
        );
    }
    let waiter = gate.clone();
    tokio::task::spawn_blocking(move || waiter.wait())
        .await
        .unwrap();
    let seen = tokio::time::timeout(T, settled).await.unwrap().unwrap();
    assert_eq!(seen, 5, "the settle saw every acknowledged patch");
    tokio::time::timeout(T, closing).await.unwrap().unwrap();
}

/// The codes of a batch of answers, counted.
fn tally<T>(answers: &[jit_plane::Result<T>]) -> std::collections::BTreeMap<String, usize> {
    let mut tally = std::collections::BTreeMap::new();
    for answer in answers {
        let code = match answer {
            Ok(_) => "ok".to_owned(),
            Err(jit_plane::PlaneError::Kernel(error)) => error.code().as_str().to_owned(),
            Err(other) => other.to_string(),
        };
        *tally.entry(code).or_insert(0) += 1;
    }
    tally
}

/// Issue #17 item 9: requests Zenoh drops mid-window (here: one in every 37 arrivals, 20 in
/// all, held unanswered as a dropped query is) are resent by the agent's go-back-N retry and
/// applied exactly once; none is refused `stale`. 1,000 patches of 32 KiB, 256 in flight.
#[tokio::test(flavor = "multi_thread")]
async fn plane_a_request_zenoh_drops_mid_window_is_applied_when_resent() {
    let (dir, repo) = setup(&["gail"]);
    let dropped = Arc::new(std::sync::atomic::AtomicU32::new(20));
    let plane = plane(&repo, dir.path(), |o| {
        o.drop_requests = dropped.clone();
        o.drop_request_every = 37;
    })
    .await;
    let mut gail = agent(dir.path(), "gail", 1).await;
    let sws = create_sws(&mut gail).await;
    let body = "x".repeat(32 << 10);
    let patches: Vec<Patch> = (0..1000)
        .map(|i| {
            put(
                &format!("d/{i:04}.txt"),
                &format!("{i}{body}"),
                &format!("d{i}"),
            )
        })
        .collect();
    let answers = tokio::time::timeout(
        Duration::from_secs(120),
        gail.push_many(&sws.id, &patches, 256),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        0,
        "the plane dropped 20 requests on the way"
    );
    let tally = tally(&answers);
    assert_eq!(
        tally,
        [("ok".to_owned(), 1000)].into_iter().collect(),
        "every patch acknowledged, none refused"
    );
    repo.store().settle().unwrap();
    let txn = repo.store().read().unwrap();
    let history = jit_kernel::sws::history(repo.store(), &txn, sws.id.parse().unwrap()).unwrap();
    let mut ids: Vec<String> = history.iter().map(|r| r.patch_id.clone()).collect();
    assert_eq!(ids.len(), 1000, "1,000 applied, none twice");
    ids.sort_by_key(|id| id[1..].parse::<u32>().unwrap());
    let expected: Vec<String> = (0..1000).map(|i| format!("d{i}")).collect();
    assert_eq!(ids, expected, "each patch exactly once");
    drop(txn);
    gail.close().await;
    plane.close().await;
}

/// Issue #17 item 10: `jit/kernel/create` takes its documented payload `{branch?, from?,
/// name?}`: the owner is the signing agent; an `owner` naming the sender is accepted, one
/// naming anybody else is refused, not ignored.
#[tokio::test(flavor = "multi_thread")]
async fn plane_create_takes_its_documented_payload() {
    let (dir, repo) = setup(&["hank"]);
    let plane = plane(&repo, dir.path(), |_| {}).await;
    let hank = agent(dir.path(), "hank", 1).await;
    let create = "jit/kernel/create";
    let text = |s: &str| Value::Text(s.to_owned());
    let send = |payload: Value| {
        let bytes = hank.envelope(create, payload).unwrap().encode().unwrap();
        raw(&hank, create, bytes)
    };
    let empty = send(Value::Map(Vec::new())).await;
    assert_eq!(code(&empty), "ok", "{empty:?}");
    let named = send(Value::Map(vec![
        (text("branch"), text("main")),
        (text("name"), text("scratch")),
    ]))
    .await;
    assert_eq!(code(&named), "ok", "{named:?}");
    let from = send(Value::Map(vec![(text("from"), text("main"))])).await;
    assert_eq!(code(&from), "ok", "{from:?}");
    let own = send(Value::Map(vec![(text("owner"), text("hank"))])).await;
    assert_eq!(code(&own), "ok", "{own:?}");
    let other = send(Value::Map(vec![(text("owner"), text("ivy"))])).await;
    assert_eq!(code(&other), "not_owner", "{other:?}");
    let unknown = send(Value::Map(vec![(text("colour"), text("red"))])).await;
    assert_eq!(code(&unknown), "invalid_input", "{unknown:?}");
    // Every SWS created is owned by hank.
    let txn = repo.store().read().unwrap();
    let owners: Vec<String> = jit_kernel::sws::list(repo.store(), &txn)
        .unwrap()
        .into_iter()
        .map(|(_, state)| state.owner)
        .collect();
    assert_eq!(
        owners.iter().filter(|owner| *owner == "hank").count(),
        4,
        "four created, all hank's: {owners:?}"
    );
    assert!(!owners.iter().any(|owner| owner == "ivy"), "{owners:?}");
    drop(txn);
    hank.close().await;
    plane.close().await;
}

/// Issue #17 item 10: a request to a key with no operation (`jit/kernel/frobnicate`, or
/// below `jit/sws/` with the wrong shape) is answered `unknown_topic`, so a retrying agent
/// stops.
#[tokio::test(flavor = "multi_thread")]
async fn plane_an_unknown_key_is_answered_unknown_topic() {
    let (dir, repo) = setup(&["jane"]);
    let plane = plane(&repo, dir.path(), |_| {}).await;
    let jane = agent(dir.path(), "jane", 1).await;
    let id = "0123456789abcdef0123456789abcdef";
    for key in [
        "jit/kernel/frobnicate".to_owned(),
        format!("jit/sws/{id}/frobnicate"),
        format!("jit/sws/{id}"),
        format!("jit/sws/{id}/patch/extra"),
    ] {
        let bytes = jane
            .envelope(&key, Value::Map(Vec::new()))
            .unwrap()
            .encode()
            .unwrap();
        let answer = raw(&jane, &key, bytes).await;
        assert_eq!(code(&answer), "unknown_topic", "{key}: {answer:?}");
    }
    jane.close().await;
    plane.close().await;
}

/// Issue #18 item 2: the plane's `status` and `analyze` answer exactly what the RPC's
/// `shadow.status` and `collapse.validate` answer for the same SWS: one command layer serves
/// both, so the structures cannot drift apart.
#[tokio::test(flavor = "multi_thread")]
async fn plane_status_and_analyze_answer_what_the_rpc_answers() {
    use jit_kernel::command::args::SwsArgs;
    use jit_kernel::command::reply::StatusInfo;
    use jit_kernel::command::Operation;
    use jit_kernel::rpc::protocol::Request;
    use jit_kernel::rpc::service::Service;

    let (dir, repo) = setup(&["kate"]);
    let plane = plane(&repo, dir.path(), |_| {}).await;
    let mut kate = agent(dir.path(), "kate", 1).await;
    let sws = create_sws(&mut kate).await;
    for (i, path) in ["a.txt", "dir/b.txt"].iter().enumerate() {
        tokio::time::timeout(T, kate.push(&sws.id, &put(path, "x\n", &format!("p{i}"))))
            .await
            .unwrap()
            .unwrap();
    }
    // Compared as canonical bytes (the plane's answer crossed the wire; the RPC's did not).
    let rpc = Service::new(repo.clone());
    let rpc_answer = |op: Operation| match rpc.handle(Request {
        op: op.as_str().into(),
        payload: cbor::to_value(&SwsArgs {
            sws: sws.id.clone(),
        })
        .unwrap(),
        ts: 1,
    }) {
        Response::Ok(value) => cbor::encode(&value).unwrap(),
        Response::Err(e) => panic!("{op}: {e:?}"),
    };
    let status_key = format!("jit/sws/{}/status", sws.id);
    let plane_status = tokio::time::timeout(T, kate.request(&status_key, Value::Map(Vec::new())))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cbor::encode(&plane_status).unwrap(),
        rpc_answer(Operation::SwsStatus)
    );
    let status: StatusInfo = cbor::from_value(plane_status).unwrap();
    assert_eq!((status.patches, status.changes.len()), (2, 2), "{status:?}");
    assert_eq!(status.owner, "kate");
    let typed = tokio::time::timeout(T, kate.status(&sws.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(typed, status);
    let analyze_key = format!("jit/sws/{}/analyze", sws.id);
    let plane_analyze = tokio::time::timeout(T, kate.request(&analyze_key, Value::Map(Vec::new())))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cbor::encode(&plane_analyze).unwrap(),
        rpc_answer(Operation::Validate)
    );
    kate.close().await;
    plane.close().await;
}

/// The `seq` of an event's bytes (None for a readiness probe).
fn event_seq(body: &[u8]) -> Option<u64> {
    let value = cbor::decode(body).ok()?;
    let map = cbor::fields::as_map(&value, "event").ok()?;
    cbor::fields::as_u64(cbor::fields::require(map, "seq").ok()?, "seq").ok()
}

/// Issue #23 (events from a log position): a subscriber that connects after 100 events asks
/// `jit/log/since` for what it missed and receives all 100, then the live ones, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plane_a_late_subscriber_reads_every_event_since_a_position_then_live_ones() {
    let (dir, repo) = setup(&["watcher"]);
    let plane = plane(&repo, dir.path(), |_| {}).await;
    let start = repo
        .store()
        .log_tail(&repo.store().read().unwrap())
        .unwrap();
    for i in 0..100 {
        agents::register(
            repo.store(),
            &format!("early{i}"),
            &key(100).verifying_key(),
            vec![],
        )
        .unwrap();
    }
    // Late: subscribe first, then ask from the position wanted.
    let watcher = agent(dir.path(), "watcher", 1).await;
    let live = watcher
        .session()
        .declare_subscriber("jit/kernel/events")
        .await
        .unwrap();
    await_route(&plane, &live).await;
    let mut seen: Vec<u64> = Vec::new();
    let mut from = start + 1;
    loop {
        let reply = tokio::time::timeout(T, watcher.events_since(from))
            .await
            .unwrap()
            .unwrap();
        seen.extend(reply.events.iter().filter_map(|e| event_seq(e)));
        if reply.next > reply.tail {
            break;
        }
        from = reply.next;
    }
    let expected: Vec<u64> = (start + 1..=start + 100).collect();
    assert_eq!(seen, expected, "all 100 events it missed, in order");
    // Then live ones, from the position after the last one read; nothing twice.
    for i in 0..5 {
        agents::register(
            repo.store(),
            &format!("late{i}"),
            &key(101).verifying_key(),
            vec![],
        )
        .unwrap();
    }
    let mut fresh = Vec::new();
    while fresh.len() < 5 {
        let sample = tokio::time::timeout(T, live.recv_async())
            .await
            .expect("a live event is missing")
            .unwrap();
        if let Some(seq) = event_seq(&sample.payload().to_bytes()) {
            if seq > *seen.last().unwrap() {
                fresh.push(seq);
            }
        }
    }
    assert_eq!(fresh, (start + 101..=start + 105).collect::<Vec<_>>());
    // Asking from beyond the log's end gives nothing, and says where the end is.
    let beyond = watcher.events_since(u64::MAX).await.unwrap();
    assert!(beyond.events.is_empty());
    assert_eq!(beyond.tail, start + 105);
    plane.close().await;
}

/// Issue #23 (reads over the plane): an agent reads a file of its SWS (its blob id and size, a
/// range of a large one), lists a directory, reads the SWS's diff and micro-history; another
/// agent may not read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plane_an_agent_reads_its_sws_files_directories_diff_and_history() {
    let (dir, repo) = setup(&["reader", "stranger"]);
    let plane = plane(&repo, dir.path(), |_| {}).await;
    let mut reader = agent(dir.path(), "reader", 1).await;
    let mut stranger = agent(dir.path(), "stranger", 2).await;
    let sws = create_sws(&mut reader).await.id;
    let large: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let patch = Patch {
        id: "p1".into(),
        author: "reader".into(),
        ts: 0,
        ops: vec![
            PatchOp::Put {
                path: "small.txt".into(),
                content: b"hello\n".to_vec(),
                executable: false,
            },
            PatchOp::Put {
                path: "big.bin".into(),
                content: large.clone(),
                executable: false,
            },
        ],
    };
    tokio::time::timeout(T, reader.push(&sws, &patch))
        .await
        .unwrap()
        .unwrap();
    let read = |path: &str, range: Option<(u64, u64)>| {
        let mut args = vec![(Value::Text("path".into()), Value::Text(path.into()))];
        if let Some((offset, len)) = range {
            args.push((Value::Text("offset".into()), Value::Integer(offset.into())));
            args.push((Value::Text("len".into()), Value::Integer(len.into())));
        }
        Value::Map(args)
    };
    let key = format!("jit/sws/{sws}/read");
    let small = reader.request(&key, read("small.txt", None)).await.unwrap();
    let field = |v: &Value, k: &str| {
        cbor::fields::require(cbor::fields::as_map(v, "r").unwrap(), k)
            .unwrap()
            .clone()
    };
    assert_eq!(field(&small, "content"), Value::Bytes(b"hello\n".to_vec()));
    // The plane acknowledges from its journal; the id follows from the content alone.
    let blob = content::split_bytes(b"hello\n").unwrap().0;
    assert_eq!(
        field(&small, "blob"),
        Value::Text(blob.to_hex()),
        "the id an edit's base needs"
    );
    let range = reader
        .request(&key, read("big.bin", Some((100_000, 50))))
        .await
        .unwrap();
    assert_eq!(
        field(&range, "content"),
        Value::Bytes(large[100_000..100_050].to_vec())
    );
    assert_eq!(field(&range, "size"), Value::Integer(300_000u64.into()));
    let diff = reader
        .request(&format!("jit/sws/{sws}/diff"), Value::Map(vec![]))
        .await
        .unwrap();
    assert_eq!(
        cbor::fields::as_array(&diff, "diff").unwrap().len(),
        2,
        "{diff:?}"
    );
    let history = reader
        .request(&format!("jit/sws/{sws}/history"), Value::Map(vec![]))
        .await
        .unwrap();
    assert_eq!(
        cbor::fields::as_array(&history, "history").unwrap().len(),
        1
    );
    let listed = reader
        .request(&format!("jit/sws/{sws}/list"), Value::Map(vec![]))
        .await
        .unwrap();
    let entries = cbor::fields::as_array(&field(&listed, "entries"), "entries")
        .unwrap()
        .iter()
        .map(|e| (field(e, "name"), field(e, "size")))
        .collect::<Vec<_>>();
    assert_eq!(
        entries,
        vec![
            (
                Value::Text("big.bin".into()),
                Value::Integer(300_000u64.into())
            ),
            (Value::Text("small.txt".into()), Value::Integer(6u64.into())),
        ]
    );
    let missing = reader
        .request(&key, read("nope.txt", None))
        .await
        .unwrap_err();
    assert_eq!(
        jit_kernel::Coded::code(&missing).as_str(),
        "path_not_found",
        "{missing}"
    );
    let refused = stranger
        .request(&key, read("small.txt", None))
        .await
        .unwrap_err();
    assert_eq!(
        jit_kernel::Coded::code(&refused).as_str(),
        "not_owner",
        "{refused}"
    );
    reader.close().await;
    stranger.close().await;
    plane.close().await;
}

fn field(value: &Value, name: &str) -> Value {
    cbor::fields::require(cbor::fields::as_map(value, "answer").unwrap(), name)
        .unwrap()
        .clone()
}

fn code_of(error: &jit_plane::PlaneError) -> String {
    jit_kernel::Coded::code(error).as_str().to_owned()
}

/// Issue #23 (reads over the plane): any registered agent reads a revision's tree and files —
/// HEAD by default, a branch, an expression, a tag — with the snapshot each resolved to; a
/// missing path and a missing revision get their codes, and a revoked agent is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plane_an_agent_reads_a_revision_tree_and_files_at_any_revision() {
    let (dir, repo) = setup(&["writer", "reader"]);
    let plane = plane(&repo, dir.path(), |_| {}).await;
    let mut writer = agent(dir.path(), "writer", 1).await;
    let mut reader = agent(dir.path(), "reader", 2).await;
    for (n, text) in ["one\n", "two\n"].iter().enumerate() {
        let sws = create_sws(&mut writer).await.id;
        let mut patch = put("docs/notes.txt", text, &format!("p{n}"));
        patch.ops.push(PatchOp::Put {
            path: "top.txt".into(),
            content: b"top\n".to_vec(),
            executable: false,
        });
        writer.push(&sws, &patch).await.unwrap();
        writer.commit(&sws, &info(&format!("c{n}"))).await.unwrap();
    }
    repo.create_tag("v1", repo.resolve("main~1").unwrap())
        .unwrap();
    let tip = repo.resolve("main").unwrap().to_hex();
    let first = repo.resolve("main~1").unwrap().to_hex();

    let root = reader.tree(None, "").await.unwrap();
    assert_eq!(field(&root, "snapshot"), Value::Text(tip.clone()));
    let names: Vec<Value> = cbor::fields::as_array(&field(&root, "entries"), "entries")
        .unwrap()
        .iter()
        .map(|e| field(e, "name"))
        .collect();
    assert_eq!(
        names,
        vec![Value::Text("docs".into()), Value::Text("top.txt".into())]
    );
    let docs = reader.tree(Some("main"), "docs").await.unwrap();
    let entries = field(&docs, "entries");
    let entry = &cbor::fields::as_array(&entries, "entries").unwrap()[0];
    assert_eq!(field(entry, "size"), Value::Integer(4u64.into()));

    for (rev, snapshot, text) in [
        (None, &tip, "two\n"),
        (Some("main~1"), &first, "one\n"),
        (Some("v1"), &first, "one\n"),
        (Some(first.as_str()), &first, "one\n"),
    ] {
        let read = reader
            .read_at(rev, "docs/notes.txt", 0, None)
            .await
            .unwrap();
        assert_eq!(
            field(&read, "snapshot"),
            Value::Text(snapshot.clone()),
            "{rev:?}"
        );
        assert_eq!(
            field(&read, "content"),
            Value::Bytes(text.as_bytes().to_vec())
        );
        let blob = content::split_bytes(text.as_bytes()).unwrap().0;
        assert_eq!(field(&read, "blob"), Value::Text(blob.to_hex()));
    }
    let ranged = reader
        .read_at(None, "docs/notes.txt", 1, Some(2))
        .await
        .unwrap();
    assert_eq!(field(&ranged, "content"), Value::Bytes(b"wo".to_vec()));

    let missing = reader.read_at(None, "nope", 0, None).await.unwrap_err();
    assert_eq!(code_of(&missing), "path_not_found", "{missing}");
    let no_rev = reader.tree(Some("no-such-branch"), "").await.unwrap_err();
    assert_eq!(code_of(&no_rev), "unknown_revision", "{no_rev}");
    let not_dir = reader.tree(None, "top.txt").await.unwrap_err();
    assert_eq!(code_of(&not_dir), "invalid_input", "{not_dir}");
    // A field the operation does not take is refused, not ignored.
    let odd = reader
        .request(
            "jit/kernel/tree",
            Value::Map(vec![(Value::Text("sws".into()), Value::Text("x".into()))]),
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&odd), "invalid_input", "{odd}");

    agents::revoke(repo.store(), "reader").unwrap();
    let revoked = reader.tree(None, "").await.unwrap_err();
    assert_eq!(code_of(&revoked), "unknown_agent", "{revoked}");
    writer.close().await;
    reader.close().await;
    plane.close().await;
}

/// The log records from `from` on, decoded: `(by, op name, op map)`.
fn records_since(repo: &Repository, from: u64) -> Vec<(Option<String>, String, Value)> {
    let txn = repo.store().read().unwrap();
    let mut out = Vec::new();
    for entry in repo.store().log_entries_from(&txn, from).unwrap() {
        let (_, stored) = entry.unwrap();
        let value = cbor::decode(&stored[32..]).unwrap();
        let map = cbor::fields::as_map(&value, "record").unwrap();
        let by = cbor::fields::get(map, "by").map(|v| match v {
            Value::Text(t) => t.clone(),
            other => panic!("by is {other:?}"),
        });
        let op = cbor::fields::require(map, "op").unwrap().clone();
        let name = match field(&op, "op") {
            Value::Text(t) => t,
            other => panic!("op is {other:?}"),
        };
        out.push((by, name, op));
    }
    out
}

/// Issue #23 (enrolment, and events that name their sender): a key made elsewhere asks to
/// join over the plane; the request waits (asking again changes nothing) until the owner
/// approves it, after which the agent works — and its events name it. Another key asking for
/// the same name, a request not signed by the key it names, and more requests than may wait
/// each get their code; a denied request frees the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plane_a_key_made_elsewhere_enrols_waits_for_approval_then_works_and_events_name_it() {
    let (dir, repo) = setup(&[]);
    let plane = plane(&repo, dir.path(), |_| {}).await;
    let start = repo
        .store()
        .log_tail(&repo.store().read().unwrap())
        .unwrap();
    let mut remote = agent(dir.path(), "remote-bot", 42).await;
    let asked = remote
        .enrol(
            Some(vec!["sws.create".into(), "commit:main".into()]),
            Some("CI host 7"),
        )
        .await
        .unwrap();
    assert_eq!(asked.state, agents::enrol::State::Pending);
    assert_eq!(
        asked.public_key,
        hex::encode(key(42).verifying_key().as_bytes())
    );
    // Not registered yet: its messages are refused as an unknown agent's.
    let early = remote.create_sws(None).await.unwrap_err();
    assert_eq!(code_of(&early), "unknown_agent");
    // Idempotent while it waits.
    let again = remote.enrol(None, None).await.unwrap();
    assert_eq!(again.state, agents::enrol::State::Pending);
    let pending = agents::enrol::pending(repo.store()).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0, "remote-bot");
    assert_eq!(pending[0].1.note.as_deref(), Some("CI host 7"));

    // Another key may not take the name, waiting or registered.
    let squatter = agent(dir.path(), "remote-bot", 43).await;
    let taken = squatter.enrol(None, None).await.unwrap_err();
    assert_eq!(code_of(&taken), "name_taken", "{taken}");
    // A request must be signed by the key it asks to register.
    let forged = {
        let payload = Value::Map(vec![(
            Value::Text("public_key".into()),
            Value::Bytes(key(44).verifying_key().as_bytes().to_vec()),
        )]);
        let envelope = squatter
            .envelope(agents::enrol::ENROL_KEY, payload)
            .unwrap();
        raw(
            &squatter,
            agents::enrol::ENROL_KEY,
            envelope.encode().unwrap(),
        )
        .await
    };
    assert_eq!(code(&forged), "bad_signature");
    assert_eq!(agents::enrol::pending(repo.store()).unwrap().len(), 1);

    let approved = agents::enrol::approve(repo.store(), "remote-bot", None).unwrap();
    assert_eq!(approved.permissions, vec!["sws.create", "commit:main"]);
    assert!(agents::enrol::pending(repo.store()).unwrap().is_empty());
    let now = remote.enrol(None, None).await.unwrap();
    assert_eq!(now.state, agents::enrol::State::Approved);
    let sws = create_sws(&mut remote).await.id;
    remote.push(&sws, &put("a.txt", "a\n", "p1")).await.unwrap();
    remote.commit(&sws, &info("from elsewhere")).await.unwrap();
    assert_eq!(tip_file(&repo, "a.txt").as_deref(), Some("a\n"));
    // A refused message's audit names the sender it claimed.
    let mut stranger = agent(dir.path(), "nobody", 45).await;
    let unknown = stranger.create_sws(None).await.unwrap_err();
    assert_eq!(code_of(&unknown), "unknown_agent");

    // Denied: dropped, and the name is free for another key.
    let other = agent(dir.path(), "second", 46).await;
    other.enrol(None, None).await.unwrap();
    agents::enrol::deny(repo.store(), "second").unwrap();
    // The denied key asking again learns it, and is not queued again.
    assert_eq!(
        other.enrol(None, None).await.unwrap().state,
        agents::enrol::State::Denied
    );
    assert!(agents::enrol::pending(repo.store()).unwrap().is_empty());
    let denied_again = agents::enrol::deny(repo.store(), "second").unwrap_err();
    assert_eq!(denied_again.code().as_str(), "invalid_input");
    let retaker = agent(dir.path(), "second", 47).await;
    assert_eq!(
        retaker.enrol(None, None).await.unwrap().state,
        agents::enrol::State::Pending
    );

    // Bounded: no more than MAX_PENDING wait at once.
    for i in 0..agents::enrol::MAX_PENDING {
        let asker = agent(dir.path(), &format!("flood{i}"), 50).await;
        let answer = asker.enrol(None, None).await;
        asker.close().await;
        if i + 1 < agents::enrol::MAX_PENDING {
            answer.unwrap();
        } else {
            assert_eq!(code_of(&answer.unwrap_err()), "rate_limited");
        }
    }

    let records = records_since(&repo, start + 1);
    let by_of = |op: &str| -> Vec<Option<String>> {
        records
            .iter()
            .filter(|(_, name, _)| name == op)
            .map(|(by, _, _)| by.clone())
            .collect()
    };
    assert_eq!(by_of("agent-requested")[0].as_deref(), Some("remote-bot"));
    assert_eq!(by_of("agent-registered"), vec![None], "the owner approved");
    assert_eq!(by_of("sws-created"), vec![Some("remote-bot".to_owned())]);
    assert_eq!(by_of("sws-patched"), vec![Some("remote-bot".to_owned())]);
    assert_eq!(by_of("sws-committed"), vec![Some("remote-bot".to_owned())]);
    assert_eq!(by_of("agent-denied"), vec![None]);
    let audits: Vec<(Option<String>, String)> = records
        .iter()
        .filter(|(_, name, _)| name == "audit")
        .map(|(by, _, op)| {
            let Value::Text(code) = field(op, "code") else {
                panic!()
            };
            (by.clone(), code)
        })
        .collect();
    for expected in [
        (Some("remote-bot".to_owned()), "unknown_agent".to_owned()),
        (Some("remote-bot".to_owned()), "name_taken".to_owned()),
        (Some("nobody".to_owned()), "unknown_agent".to_owned()),
    ] {
        assert!(audits.contains(&expected), "{expected:?} in {audits:?}");
    }
    remote.close().await;
    squatter.close().await;
    stranger.close().await;
    other.close().await;
    retaker.close().await;
    plane.close().await;
}

/// A daemon down for longer than a few retries: the agent keeps resending the same bytes until
/// it is back (its retries run on a time budget, not only a count — a refused connection fails
/// at once, so thirty attempts used to be over in about a second and a half), and the patch is
/// applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plane_an_agent_waits_out_a_daemon_that_is_down_for_seconds() {
    let (dir, repo) = setup(&["patient"]);
    let first = plane(&repo, dir.path(), |_| {}).await;
    let mut patient = agent(dir.path(), "patient", 1).await;
    let sws = create_sws(&mut patient).await.id;
    first.close().await;
    let pushing = tokio::spawn(async move {
        let applied = patient.push(&sws, &put("late.txt", "late\n", "l1")).await;
        (patient, sws, applied)
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    let second = plane(&repo, dir.path(), |_| {}).await;
    let (patient, sws, applied) = tokio::time::timeout(T, pushing).await.unwrap().unwrap();
    let applied = applied.expect("acknowledged once the daemon is back");
    assert_eq!(applied.seq, 1);
    repo.store().settle().unwrap();
    let txn = repo.store().read().unwrap();
    let history = jit_kernel::sws::history(repo.store(), &txn, sws.parse().unwrap()).unwrap();
    assert_eq!(history.len(), 1, "applied once");
    drop(txn);
    patient.close().await;
    second.close().await;
}
