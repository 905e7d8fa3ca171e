//! Property tests for the decoders that read bytes from outside (issue #17, hostile input): the
//! canonical CBOR decoder and the patch decoder. A fixed number of cases runs in the normal test
//! run (set `PROPTEST_CASES` for more). Properties:
//! - arbitrary bytes never panic the decoder, and whatever it accepts re-encodes to the same
//!   bytes (it accepts canonical encodings only);
//! - every value round-trips through the canonical encoder;
//! - non-canonical spellings of a value (a wider integer or length head, an indefinite length,
//!   unsorted map keys, trailing bytes) are refused;
//! - patches round-trip, and arbitrary bytes or CBOR values never panic the patch decoder;
//! - a decoded patch of arbitrary operations applies whole or not at all, and applying its
//!   operations in one patch gives the tree that applying them one patch each gives.

use ciborium::value::Value;
use jit_kernel::cbor;
use jit_kernel::patch::{Hunk, Patch, PatchOp};
use jit_kernel::refs::RefName;
use jit_kernel::sws;
use jit_kernel::{NodeId, Repository};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Values the canonical encoder accepts: integers, byte and text strings, booleans, null,
/// arrays and maps with text keys.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(|n| Value::Integer(n.into())),
        any::<i64>().prop_map(|n| Value::Integer(n.into())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        ".{0,20}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{0,6}", inner, 0..6).prop_map(|m| {
                Value::Map(m.into_iter().map(|(k, v)| (Value::Text(k), v)).collect())
            }),
        ]
    })
}

/// A head of major type `major` for `n`, `extra` bytes wider than the shortest.
fn wide_head(major: u8, n: u64, extra: usize) -> Option<Vec<u8>> {
    let shortest = match n {
        0..=23 => 0,
        24..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    };
    let width = [1usize, 2, 4, 8]
        .into_iter()
        .filter(|w| *w > shortest)
        .nth(extra)?;
    let info = match width {
        1 => 24,
        2 => 25,
        4 => 26,
        _ => 27,
    };
    let mut out = vec![(major << 5) | info];
    out.extend_from_slice(&n.to_be_bytes()[8 - width..]);
    Some(out)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_and_only_canonical_bytes_are_accepted(
        bytes in proptest::collection::vec(any::<u8>(), 0..256)
    ) {
        if let Ok(value) = cbor::decode(&bytes) {
            prop_assert_eq!(cbor::encode(&value).unwrap(), bytes);
        }
    }

    #[test]
    fn canonical_round_trip_holds(value in value()) {
        let bytes = cbor::encode(&value).unwrap();
        let back = cbor::decode(&bytes).unwrap();
        prop_assert_eq!(cbor::encode(&back).unwrap(), bytes);
    }

    #[test]
    fn a_wider_integer_or_length_head_is_refused(
        n in any::<u64>(), major in prop_oneof![Just(0u8), Just(1)], extra in 0usize..3
    ) {
        if let Some(head) = wide_head(major, n, extra) {
            prop_assert!(cbor::decode(&head).is_err(), "{:02x?} accepted", head);
        }
        // A byte string whose length head is wider than needed.
        let len = (n % 300) as usize;
        if let Some(mut bytes) = wide_head(2, len as u64, extra) {
            bytes.extend(std::iter::repeat_n(0u8, len));
            prop_assert!(cbor::decode(&bytes).is_err(), "wide length accepted");
        }
    }

    #[test]
    fn indefinite_lengths_unsorted_keys_and_trailing_bytes_are_refused(
        items in proptest::collection::vec(value(), 1..5),
        keys in proptest::collection::btree_set("[a-z]{1,4}", 2..5),
        trailing in any::<u8>(),
    ) {
        // An indefinite-length array of the same items.
        let mut indefinite = vec![0x9f];
        for item in &items {
            indefinite.extend(cbor::encode(item).unwrap());
        }
        indefinite.push(0xff);
        prop_assert!(cbor::decode(&indefinite).is_err());
        // A map with its keys in descending order of their encodings (canonical is ascending).
        let mut encoded: Vec<Vec<u8>> =
            keys.into_iter().map(|k| cbor::encode(&Value::Text(k)).unwrap()).collect();
        encoded.sort_by(|a, b| b.cmp(a));
        let mut unsorted = vec![0xa0 | encoded.len() as u8];
        for key in &encoded {
            unsorted.extend(key);
            unsorted.extend(cbor::encode(&Value::Null).unwrap());
        }
        prop_assert!(cbor::decode(&unsorted).is_err());
        // Anything after the item.
        let mut bytes = cbor::encode(&Value::Array(items)).unwrap();
        bytes.push(trailing);
        prop_assert!(cbor::decode(&bytes).is_err());
    }
}

/// Paths from a small alphabet, so operations meet each other (and sometimes a reserved name).
fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![Just("a"), Just("b"), Just("d"), Just(".git")],
        1..4,
    )
    .prop_map(|parts| parts.join("/"))
}

fn op() -> impl Strategy<Value = PatchOp> {
    prop_oneof![
        4 => (path(), "[a-z\n]{0,12}", any::<bool>()).prop_map(|(path, text, executable)| {
            PatchOp::Put { path, content: text.into_bytes(), executable }
        }),
        1 => (path(), any::<[u8; 32]>(), any::<bool>()).prop_map(|(path, id, executable)| {
            PatchOp::PutBlob { path, blob: NodeId(id), executable }
        }),
        2 => path().prop_map(|path| PatchOp::Delete { path }),
        2 => (path(), path()).prop_map(|(from, to)| PatchOp::Rename { from, to }),
        1 => path().prop_map(|path| PatchOp::Mkdir { path }),
        1 => path().prop_map(|path| PatchOp::Rmdir { path }),
        1 => (path(), "[a-z/]{0,8}").prop_map(|(path, target)| PatchOp::Symlink { path, target }),
        1 => (path(), any::<bool>()).prop_map(|(path, executable)| PatchOp::Chmod { path, executable }),
        1 => (path(), any::<[u8; 32]>(), proptest::collection::vec(
            (0u64..4, 0u64..3, proptest::collection::vec("[a-z]{0,4}\n", 0..3)), 0..3
        )).prop_map(|(path, base, hunks)| PatchOp::Edit {
            path,
            base: NodeId(base),
            hunks: hunks.into_iter().map(|(start, remove, insert)| Hunk { start, remove, insert }).collect(),
        }),
    ]
}

fn patch_of(id: &str, ops: Vec<PatchOp>) -> Patch {
    Patch {
        id: id.into(),
        author: "agent".into(),
        ts: 1,
        ops,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn patches_round_trip_through_canonical_cbor(
        id in ".{0,12}", author in ".{0,12}", ts in any::<u64>(),
        ops in proptest::collection::vec(op(), 0..8)
    ) {
        let patch = Patch { id, author, ts, ops };
        let bytes = cbor::to_canonical_bytes(&patch).unwrap();
        let back: Patch = cbor::from_canonical_bytes(&bytes).unwrap();
        prop_assert_eq!(back, patch);
    }

    #[test]
    fn arbitrary_bytes_and_values_never_panic_the_patch_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        value in value(),
    ) {
        let _ = cbor::from_canonical_bytes::<Patch>(&bytes);
        let _ = cbor::from_value::<Patch>(value.clone());
        // The same value dressed as a patch's operations, or as one operation.
        let dressed = Value::Map(vec![
            (Value::Text("author".into()), Value::Text("a".into())),
            (Value::Text("id".into()), Value::Text("p".into())),
            (Value::Text("ops".into()), Value::Array(vec![value])),
        ]);
        let _ = cbor::from_value::<Patch>(dressed);
    }
}

fn new_repo() -> (tempfile::TempDir, Repository) {
    jit_testutils::fixture::new_universe()
}

fn tree_of(repo: &Repository, id: sws::SwsId) -> NodeId {
    let txn = repo.store().read().unwrap();
    sws::get(repo.store(), &txn, id).unwrap().tree
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..config() })]

    #[test]
    fn a_patch_applies_whole_or_not_at_all_and_as_its_operations_one_by_one(
        ops in proptest::collection::vec(op(), 1..12)
    ) {
        let (_dir, repo) = new_repo();
        let main = RefName::branch("main").unwrap();
        let (whole, _) = sws::create(repo.store(), &main, None, "agent", None).unwrap();
        let (stepwise, _) = sws::create(repo.store(), &main, None, "agent", None).unwrap();
        let before = tree_of(&repo, whole);
        let at_once = sws::apply_patch(repo.store(), whole, &patch_of("all", ops.clone()));
        let mut one_by_one = Ok(());
        for (i, op) in ops.iter().enumerate() {
            if let Err(e) = sws::apply_patch(repo.store(), stepwise, &patch_of(&i.to_string(), vec![op.clone()])) {
                one_by_one = Err(e);
                break;
            }
        }
        match (at_once, one_by_one) {
            (Ok(applied), Ok(())) => {
                prop_assert_eq!(applied.tree, tree_of(&repo, stepwise));
            }
            (Err(whole_error), Err(step_error)) => {
                prop_assert_eq!(whole_error.code(), step_error.code());
                prop_assert_eq!(tree_of(&repo, whole), before, "a refused patch changed nothing");
            }
            (at_once, one_by_one) => {
                prop_assert!(false, "one patch: {:?}; one by one: {:?}", at_once.map(|a| a.tree), one_by_one);
            }
        }
    }
}
