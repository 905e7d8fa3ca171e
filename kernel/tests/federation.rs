//! Federation, issue #19: a universe's publish log and signed head, on a real store.

use jit_kernel::federation::publish::{self, Entry};
use jit_kernel::identity::UniverseIdentity;
use jit_kernel::patch::{Patch, PatchOp};
use jit_kernel::{collapse, history::CommitInfo, sws, DeclaredTime, Repository};
use jit_proto::merkle;
use jit_proto::Code;

fn commit(repo: &Repository, path: &str, content: &str) -> jit_kernel::NodeId {
    let branch = repo.head().unwrap();
    let id = sws::working(repo.store(), &branch, "me").unwrap();
    let patch = Patch {
        id: format!("{path}-{content}"),
        author: "me".into(),
        ts: 0,
        ops: vec![PatchOp::Put {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            executable: false,
        }],
    };
    sws::apply_patch(repo.store(), id, &patch).unwrap();
    let info = CommitInfo {
        author: "Me <me@x>".into(),
        message: content.into(),
        time: DeclaredTime {
            seconds: 1_700_000_000,
            tz_minutes: 0,
        },
    };
    match collapse::commit(repo.store(), id, &info).unwrap() {
        collapse::Outcome::Committed { snapshot, .. } => snapshot,
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_publish_appends_one_entry_and_signs_a_head_that_extends_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let repo = jit_testutils::fixture::init_universe(dir.path());
    let public = UniverseIdentity::load(repo.jit_dir())
        .unwrap()
        .document()
        .unwrap()
        .doc
        .public_key;
    let first = commit(&repo, "a.txt", "one\n");
    let (entry1, head1) = publish::publish(&repo, "main", "release").unwrap();
    assert_eq!(
        (entry1.seq, entry1.snapshot, entry1.name.as_str()),
        (0, first, "release")
    );
    assert_eq!((head1.head.epoch, head1.head.size), (1, 1));
    head1
        .verify_after(&public, None, &[])
        .expect("signed by the universe key");

    let second = commit(&repo, "b.txt", "two\n");
    let (entry2, head2) = publish::publish(&repo, &second.to_hex(), "nightly").unwrap();
    assert_eq!((entry2.seq, head2.head.epoch, head2.head.size), (1, 2, 2));
    // The stored log gives the root the head signs, and proves the second head extends the
    // first: what an importer will check.
    let txn = repo.store().read().unwrap();
    let log = publish::entries(repo.store(), &txn).unwrap();
    assert_eq!(log, vec![entry1.clone(), entry2]);
    let leaves: Vec<_> = log.iter().map(|e| e.leaf().unwrap()).collect();
    assert_eq!(merkle::root(&leaves), head2.head.root);
    let proof = merkle::consistency_proof(&leaves, 1).unwrap();
    head2
        .verify_after(&public, Some(&head1.head), &proof)
        .expect("the second head extends the first");
    let inclusion = merkle::inclusion_proof(&leaves, 0).unwrap();
    assert!(merkle::verify_inclusion(
        &Entry::leaf(&entry1).unwrap(),
        0,
        2,
        &inclusion,
        &head2.head.root
    ));
    assert_eq!(
        publish::head(repo.store(), &txn).unwrap().as_ref(),
        Some(&head2)
    );
    // The older head does not pass for a newer one.
    let rollback = head1
        .verify_after(&public, Some(&head2.head), &[])
        .unwrap_err();
    assert_eq!(jit_proto::Coded::code(&rollback), Code::Stale);
}

#[test]
fn only_snapshots_under_valid_names_are_published_and_a_refusal_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = jit_testutils::fixture::init_universe(dir.path());
    commit(&repo, "a.txt", "one\n");
    let tree = {
        let txn = repo.store().read().unwrap();
        let tip = repo.resolve("main").unwrap();
        jit_kernel::tree::tree_of(&jit_kernel::source::Dag::new(repo.store(), &txn), &tip).unwrap()
    };
    let not_a_snapshot = publish::publish(&repo, &tree.to_hex(), "tree").unwrap_err();
    assert_eq!(
        not_a_snapshot.code(),
        Code::WrongNodeType,
        "{not_a_snapshot}"
    );
    let bad_name = publish::publish(&repo, "main", "no spaces allowed").unwrap_err();
    assert_eq!(bad_name.code(), Code::BadRefName, "{bad_name}");
    let txn = repo.store().read().unwrap();
    assert!(publish::entries(repo.store(), &txn).unwrap().is_empty());
    assert_eq!(publish::head(repo.store(), &txn).unwrap(), None);
}

/// Issue #19 (trust policy): a universe's trust level is kept, a denied universe is refused
/// before anything of it is looked up — an audit record and nothing else — and trusting it again
/// lifts the deny.
#[test]
fn a_denied_universe_is_refused_with_only_an_audit_record_and_trust_lifts_it() {
    use jit_kernel::federation::peers;
    use jit_kernel::node::Trust;
    let dir = tempfile::tempdir().unwrap();
    let repo = jit_testutils::fixture::init_universe(dir.path());
    let store = repo.store();
    let them = uuid::Uuid::from_bytes([5; 16]);
    let stranger = uuid::Uuid::from_bytes([6; 16]);
    // Unknown: untrusted, admitted.
    let unknown = peers::admit(store, stranger).unwrap();
    assert_eq!((unknown.trust, unknown.denied), (Trust::Untrusted, false));
    peers::trust(store, them, Trust::SemiTrusted).unwrap();
    assert_eq!(peers::admit(store, them).unwrap().trust, Trust::SemiTrusted);
    let audits = |repo: &jit_kernel::Repository| {
        let txn = repo.store().read().unwrap();
        repo.store()
            .log_entries(&txn)
            .unwrap()
            .filter(|e| {
                let (seq, bytes) = e.as_ref().unwrap();
                matches!(
                    jit_kernel::log::verify_record(*seq, bytes).unwrap().0.op,
                    jit_kernel::log::LogOp::Audit { .. }
                )
            })
            .count()
    };
    let before = audits(&repo);
    peers::deny(store, them).unwrap();
    let refused = peers::admit(store, them).unwrap_err();
    assert_eq!(refused.code(), Code::Forbidden, "{refused}");
    assert_eq!(
        audits(&repo),
        before + 1,
        "one audit record for the refusal"
    );
    let txn = store.read().unwrap();
    let listed = peers::list(store, &txn).unwrap();
    assert_eq!(
        listed.len(),
        1,
        "only the universe with a policy: {listed:?}"
    );
    assert_eq!(
        (listed[0].universe, listed[0].trust, listed[0].denied),
        (them, Trust::SemiTrusted, true)
    );
    drop(txn);
    peers::trust(store, them, Trust::Trusted).unwrap();
    assert_eq!(peers::admit(store, them).unwrap().trust, Trust::Trusted);
}
