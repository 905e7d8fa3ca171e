//! The plane's delivery, window and journal recovery, on real stores.

use super::window::{window_key, MESSAGES, TRIM_EVERY};
use super::*;
use crate::cbor;
use crate::cbor::fields;
use crate::command::args::CreateArgs;
use crate::journal::{self, Journal};
use crate::log::LogOp;
use crate::patch::Patch;
use crate::patch::PatchOp;
use crate::repo::InitOptions;
use crate::repo::Repository;
use crate::rpc::protocol::Response;
use crate::sws::{self, SwsId};
use ciborium::value::Value;
use ed25519_dalek::SigningKey;

/// A signed message from `agent` with `ts` (its msg_id is `m<ts>`), as bytes for
/// [`verify_all`].
fn message(signing: &SigningKey, key: &str, ts: u64, payload: Value) -> Vec<u8> {
    Envelope::signed(key, "agent", ts, format!("m{ts:08}"), payload, signing)
        .and_then(|envelope| envelope.encode())
        .expect("a signed envelope")
}

/// Verifies and delivers `batch` in one committed operation, as the plane does.
fn deliver(repo: &Repository, batch: &[(String, Vec<u8>)]) -> Vec<Response> {
    let refs: Vec<(&str, &[u8])> = batch
        .iter()
        .map(|(key, bytes)| (key.as_str(), bytes.as_slice()))
        .collect();
    let verified = verify_all(repo.store(), &refs)
        .into_iter()
        .collect::<std::result::Result<Vec<_>, _>>()
        .expect("every message verifies");
    let mut op = repo.store().begin().expect("begin");
    let responses = deliver_into(repo, &mut op, &verified);
    op.commit().expect("commit");
    responses
}

fn window_records(repo: &Repository) -> u64 {
    let store = repo.store();
    let txn = store.read().expect("read");
    let count = store
        .table(&MESSAGES)
        .prefix_iter(&txn, &window_key("agent", ""))
        .expect("iterate")
        .count();
    count as u64
}

/// A universe with agent "agent" (key seed 3) and one SWS it owns; returns its patch topic.
fn universe_with_an_sws(dir: &std::path::Path) -> (Repository, SigningKey, String) {
    let repo = Repository::init(dir, &InitOptions::default()).expect("init");
    let signing = SigningKey::from_bytes(&[3; 32]);
    register(
        repo.store(),
        "agent",
        &signing.verifying_key(),
        vec![CREATE_SWS.into()],
    )
    .expect("register");
    let created = deliver(
        &repo,
        &[(
            "jit/kernel/create".into(),
            message(
                &signing,
                "jit/kernel/create",
                1,
                cbor::to_value(&CreateArgs {
                    owner: "agent".into(),
                    ..Default::default()
                })
                .expect("payload"),
            ),
        )],
    );
    let Response::Ok(Value::Map(answer)) = &created[0] else {
        panic!("create refused: {created:?}");
    };
    let id = fields::as_text(fields::require(answer, "id").expect("id"), "id")
        .expect("id text")
        .to_owned();
    (repo, signing, format!("jit/sws/{id}/patch"))
}

/// A signed patch message putting `path`.
fn put_message(signing: &SigningKey, key: &str, ts: u64, path: &str) -> Vec<u8> {
    let patch = Patch {
        id: format!("p{ts}"),
        author: "agent".into(),
        ts,
        ops: vec![PatchOp::Put {
            path: path.into(),
            content: ts.to_string().into_bytes(),
            executable: false,
        }],
    };
    message(signing, key, ts, cbor::to_value(&patch).expect("payload"))
}

/// The SWS a topic (`jit/sws/<id>/patch`) names.
fn sws_of(key: &str) -> SwsId {
    key.split('/')
        .nth(2)
        .expect("an SWS topic")
        .parse()
        .expect("sws id")
}

fn state_of(repo: &Repository, key: &str) -> sws::SwsState {
    let store = repo.store();
    let txn = store.read().expect("read");
    sws::get(store, &txn, sws_of(key)).expect("state")
}

fn patches_of(repo: &Repository, key: &str) -> u64 {
    state_of(repo, key).patches
}

/// The codes of the audit records in the log, oldest first.
fn audit_codes(repo: &Repository) -> Vec<String> {
    let store = repo.store();
    let txn = store.read().expect("read");
    let codes = store
        .log_entries(&txn)
        .expect("log")
        .filter_map(|entry| {
            let (seq, bytes) = entry.expect("log entry");
            match crate::log::verify_record(seq, bytes).expect("record").0.op {
                LogOp::Audit { code, .. } => Some(code),
                _ => None,
            }
        })
        .collect();
    codes
}

#[test]
fn opening_a_universe_delivers_what_a_dead_daemon_journaled_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, signing, key) = universe_with_an_sws(dir.path());
    let path = repo.jit_dir().join(JOURNAL_FILE);
    {
        // A daemon acknowledged two batches from its journal and died before committing.
        let mut journal = Journal::open(&path).expect("journal");
        for ts in [2, 3] {
            let bytes = put_message(&signing, &key, ts, &format!("f{ts}.txt"));
            journal.append(&[(key.as_str(), &bytes)]).expect("append");
        }
    }
    drop(repo);
    let repo = Repository::open(dir.path()).expect("open");
    assert_eq!(patches_of(&repo, &key), 2, "both journaled patches landed");
    drop(repo);
    let repo = Repository::open(dir.path()).expect("reopen");
    assert_eq!(patches_of(&repo, &key), 2, "and only once");

    // A live owner keeps it: opening the universe meanwhile leaves the journal alone.
    let mut journal = Journal::open(&path).expect("journal");
    let bytes = put_message(&signing, &key, 4, "f4.txt");
    journal.append(&[(key.as_str(), &bytes)]).expect("append");
    drop(repo);
    let other = Repository::open(dir.path()).expect("open while held");
    assert_eq!(
        patches_of(&other, &key),
        2,
        "the owner's journal is not touched"
    );
    assert!(!journal.is_empty());
}

#[test]
fn batches_a_committed_mark_covers_are_not_delivered_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, signing, key) = universe_with_an_sws(dir.path());
    let mut journal = Journal::open(&repo.jit_dir().join(JOURNAL_FILE)).expect("journal");
    // Delivered and journaled like the plane does; one message is refused (its path is
    // not a valid name), so no record of its id is kept. The mark commits with the batch;
    // the journal is not reset, as if the process died before that.
    let good = put_message(&signing, &key, 2, "good.txt");
    let bad = put_message(&signing, &key, 3, "../escape");
    let batch = [
        (key.as_str(), good.as_slice()),
        (key.as_str(), bad.as_slice()),
    ];
    let verified: Vec<Verified> = verify_all(repo.store(), &batch)
        .into_iter()
        .collect::<std::result::Result<_, _>>()
        .expect("verified");
    let mut op = repo.store().begin().expect("begin");
    let answers = deliver_into(&repo, &mut op, &verified);
    assert!(matches!(answers[0], Response::Ok(_)), "{answers:?}");
    assert!(matches!(answers[1], Response::Err(_)), "{answers:?}");
    journal.append(&batch).expect("append");
    journal::record_mark(&mut op, journal.mark()).expect("mark");
    op.commit().expect("commit");
    assert_eq!(
        recover_in(&repo, repo.store().begin().expect("begin"), &mut journal).expect("recover"),
        0,
        "the mark covers the batch: nothing is delivered again"
    );
    assert!(journal.is_empty(), "and the journal is reset");
    assert_eq!(patches_of(&repo, &key), 1);
}

#[test]
fn a_senders_window_is_trimmed_and_older_retries_are_refused_by_ts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, signing, key) = universe_with_an_sws(dir.path());
    let patch = |ts: u64| put_message(&signing, &key, ts, &format!("f{}.txt", ts % 8));

    // 1 create + 5,199 patches = 5,200 deliveries. The one trim ran at delivery 5,120 (at
    // 1,024 … 4,096 the window was not full yet) and dropped deliveries 1 … 1,024.
    let last = WINDOW + TRIM_EVERY + 79;
    let all: Vec<(String, Vec<u8>)> = (2..=last + 1).map(|ts| (key.clone(), patch(ts))).collect();
    for batch in all.chunks(256) {
        for response in deliver(&repo, batch) {
            assert!(matches!(response, Response::Ok(_)), "{response:?}");
        }
    }
    let kept = window_records(&repo);
    assert!(
        (WINDOW..=WINDOW + TRIM_EVERY).contains(&kept),
        "the window keeps between {WINDOW} and {} answers, not {kept}",
        WINDOW + TRIM_EVERY
    );
    assert_eq!(kept, 5_200 - 1_024, "deliveries 1 … 1,024 were dropped");

    let state = |repo: &Repository| state_of(repo, &key);
    let before = state(&repo);
    // A retry inside the window: the original answer, nothing applied again.
    let recent = all.last().expect("messages").clone();
    let again = deliver(&repo, &[recent]);
    assert!(matches!(again[0], Response::Ok(_)), "{again:?}");
    // A retry from before the window: refused by its ts, nothing applied.
    let old = all[10].clone();
    let refused = deliver(&repo, &[old]);
    let Response::Err(body) = &refused[0] else {
        panic!("an old retry was accepted: {refused:?}");
    };
    assert_eq!(body.code, "stale");
    assert_eq!(state(&repo), before, "neither retry applied anything");
}

/// Issue #17 item 9: with congestion control `Drop`, Zenoh may drop request n while
/// n+1 … n+k arrive and are applied; the agent then resends n (and, go-back-N, everything
/// after it). The resend must be applied once, and the others answered from the record.
#[test]
fn plane_a_request_zenoh_drops_mid_window_is_applied_when_resent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, signing, key) = universe_with_an_sws(dir.path());
    let patch = |ts: u64| {
        (
            key.clone(),
            put_message(&signing, &key, ts, &format!("f{ts}.txt")),
        )
    };
    // ts 2 … 11 are sent; 2 and 6 are dropped on the way, the rest arrive and are applied.
    let arrived: Vec<_> = (3..=11).filter(|ts| *ts != 6).map(patch).collect();
    for response in deliver(&repo, &arrived) {
        assert!(matches!(response, Response::Ok(_)), "{response:?}");
    }
    // The agent resends every unanswered message, oldest first: 2 … 11.
    let resent: Vec<_> = (2..=11).map(patch).collect();
    let answers = deliver(&repo, &resent);
    let codes: Vec<String> = answers
        .iter()
        .map(|answer| match answer {
            Response::Ok(_) => "ok".to_owned(),
            Response::Err(body) => body.code.clone(),
        })
        .collect();
    assert_eq!(codes, vec!["ok"; 10], "every resend is answered ok");
    assert_eq!(
        patches_of(&repo, &key),
        10,
        "each of the 10 applied exactly once"
    );
    let store = repo.store();
    let txn = store.read().expect("read");
    let mut applied: Vec<String> = sws::history(store, &txn, sws_of(&key))
        .expect("history")
        .into_iter()
        .map(|record| record.patch_id)
        .collect();
    drop(txn);
    applied.sort_by_key(|id| id[1..].parse::<u64>().unwrap_or(0));
    let expected: Vec<String> = (2..=11).map(|ts| format!("p{ts}")).collect();
    assert_eq!(applied, expected);
    // A third copy of everything changes nothing, and a message that reuses an applied
    // msg_id for other content is still refused as a replay.
    let again = deliver(&repo, &resent);
    assert!(
        again.iter().all(|a| matches!(a, Response::Ok(_))),
        "{again:?}"
    );
    assert_eq!(patches_of(&repo, &key), 10);
    let other = put_message(&signing, &key, 2, "other.txt");
    let replay = deliver(&repo, &[(key.clone(), other)]);
    let Response::Err(body) = &replay[0] else {
        panic!("a reused msg_id was accepted: {replay:?}");
    };
    assert_eq!(body.code, "replayed");
    assert_eq!(patches_of(&repo, &key), 10);
}

#[test]
fn a_message_that_fails_after_writing_leaves_no_trace_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, signing, key) = universe_with_an_sws(dir.path());
    let huge = Patch {
        id: "huge".into(),
        author: "agent".into(),
        ts: 3,
        ops: vec![PatchOp::Put {
            path: "huge.bin".into(),
            content: vec![7; 2 << 20],
            executable: false,
        }],
    };
    let batch = vec![
        (key.clone(), put_message(&signing, &key, 2, "before.txt")),
        (
            key.clone(),
            message(&signing, &key, 3, cbor::to_value(&huge).expect("payload")),
        ),
        (key.clone(), put_message(&signing, &key, 4, "after.txt")),
    ];
    // Room for the small patches, not for 2 MiB: the huge one fails after its first writes.
    repo.store().limit_growth(64).expect("limit the map");
    let responses = deliver(&repo, &batch);

    assert!(matches!(responses[0], Response::Ok(_)), "{responses:?}");
    let Response::Err(body) = &responses[1] else {
        panic!("a patch larger than the store was accepted: {responses:?}");
    };
    assert_eq!(body.code, "store_error", "{body:?}");
    assert!(matches!(responses[2], Response::Ok(_)), "{responses:?}");
    assert_eq!(
        patches_of(&repo, &key),
        2,
        "the two small patches, not the huge one"
    );

    let store = repo.store();
    let txn = store.read().expect("read");
    let id = sws_of(&key);
    let state = sws::get(store, &txn, id).expect("state");
    let source = sws::SwsSource::new(store, &txn, id);
    let paths: Vec<String> = crate::tree::diff(
        &source,
        &crate::tree::tree_of(&source, &state.base).expect("base tree"),
        &state.tree,
    )
    .expect("diff")
    .into_iter()
    .map(|change| String::from_utf8_lossy(&change.path).into_owned())
    .collect();
    assert_eq!(paths, ["after.txt", "before.txt"], "nothing of huge.bin");
    assert!(
        store
            .table(&MESSAGES)
            .get(&txn, &window_key("agent", "m00000003"))
            .expect("read the window")
            .is_none(),
        "the failed message is not recorded as delivered, so a retry runs it again"
    );
    assert_eq!(
        audit_codes(&repo),
        ["store_error"],
        "the refusal is audited once"
    );
}

#[test]
fn a_refusal_whose_audit_does_not_fit_is_still_answered_and_the_rest_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, signing, key) = universe_with_an_sws(dir.path());
    repo.store().limit_growth(0).expect("limit the map");
    // Fill the store: patches until one no longer fits.
    let mut ts = 2;
    loop {
        assert!(ts < 10_000, "the store never filled up");
        let message = put_message(&signing, &key, ts, &format!("f{ts}.txt"));
        ts += 1;
        if let Response::Err(body) = &deliver(&repo, &[(key.clone(), message)])[0] {
            assert_eq!(body.code, "store_error", "{body:?}");
            break;
        }
    }
    // Messages whose payload is no patch, refused before any write, until one's audit
    // record no longer fits either: each is still answered, and each batch commits.
    for n in 0.. {
        assert!(n < 10_000, "the audits never filled the store");
        let bad = Envelope::signed(
            &key,
            "agent",
            ts + n,
            format!("again{n}"),
            Value::Null,
            &signing,
        )
        .and_then(|envelope| envelope.encode())
        .expect("envelope");
        let before = audit_codes(&repo).len();
        let responses = deliver(&repo, &[(key.clone(), bad)]);
        let Response::Err(body) = &responses[0] else {
            panic!("a message with no patch was accepted: {responses:?}");
        };
        assert_eq!(body.code, "invalid_input", "{body:?}");
        if audit_codes(&repo).len() == before {
            break;
        }
    }
}
