//! Property tests of the plane's envelope decoding and verification (`Envelope::decode` and
//! `agents::check_all` over a real store), for a fixed number of cases: any input is either
//! refused with one of the documented codes or is the canonical encoding of a signed envelope,
//! and no change to a signed envelope is ever accepted as something else.

use ciborium::value::Value;
use ed25519_dalek::SigningKey;
use jit_kernel::agents::{self, Envelope};
use jit_kernel::cbor;
use jit_kernel::repo::InitOptions;
use jit_kernel::rpc::protocol::Response;
use jit_kernel::Repository;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const KEY: &str = "jit/sws/0123456789abcdef0123456789abcdef/patch";

/// The refusal codes the verification of an envelope may answer (docs/plane.md).
const CODES: [&str; 6] = [
    "too_large",
    "malformed",
    "unsigned",
    "unknown_agent",
    "bad_signature",
    "unknown_topic",
];

fn universe() -> (tempfile::TempDir, Repository, SigningKey) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(dir.path(), &InitOptions::default()).unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    agents::register(repo.store(), "pat", &key.verifying_key(), vec![]).unwrap();
    (dir, repo, key)
}

fn signed(key: &SigningKey, payload: Value) -> Vec<u8> {
    Envelope::signed(KEY, "pat", 42, "m42".into(), payload, key)
        .unwrap()
        .encode()
        .unwrap()
}

/// A payload: a small CBOR value of any shape.
fn payload() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(|n| Value::Integer(n.into())),
        any::<bool>().prop_map(Value::Bool),
        ".{0,12}".prop_map(Value::Text),
        vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4).prop_map(|entries| {
                Value::Map(
                    entries
                        .into_iter()
                        .map(|(k, v)| (Value::Text(k), v))
                        .collect(),
                )
            }),
        ]
    })
}

fn verdict(repo: &Repository, bytes: &[u8]) -> Result<[u8; 32], String> {
    agents::check_all(repo.store(), &[(KEY, bytes)])
        .pop()
        .unwrap()
        .map(|verified| verified.digest)
        .map_err(|refused| match refused.response {
            Response::Err(body) => body.code,
            Response::Ok(_) => "ok".into(),
        })
}

#[test]
fn any_bytes_are_refused_with_a_code_or_are_a_canonical_envelope() {
    let (_dir, repo, _) = universe();
    let mut runner = TestRunner::new(Config::with_cases(512));
    runner
        .run(&vec(any::<u8>(), 0..256), |bytes| {
            if let Ok(envelope) = Envelope::decode(&bytes) {
                prop_assert_eq!(envelope.encode().unwrap(), bytes.clone(), "not canonical");
            }
            match verdict(&repo, &bytes) {
                Ok(_) => prop_assert!(false, "random bytes verified"),
                Err(code) => prop_assert!(CODES.contains(&code.as_str()), "code {}", code),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_changed_signed_envelope_is_refused_never_taken_for_another() {
    let (_dir, repo, key) = universe();
    let mut runner = TestRunner::new(Config::with_cases(512));
    let change = prop_oneof![
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(at, bits)| (0u8, at, bits)),
        any::<prop::sample::Index>().prop_map(|at| (1u8, at, 0)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, byte)| (2u8, at, byte)),
    ];
    runner
        .run(&(payload(), change), |(payload, (kind, at, byte))| {
            let original = signed(&key, payload);
            let digest = verdict(&repo, &original).expect("the original verifies");
            let mut changed = original.clone();
            match kind {
                0 => changed[at.index(original.len())] ^= byte, // flip bits
                1 => changed.truncate(at.index(original.len())), // cut short
                _ => changed.insert(at.index(original.len() + 1), byte), // insert a byte
            }
            match verdict(&repo, &changed) {
                Ok(other) => {
                    // Only a change that is no change may verify, as the same message.
                    prop_assert_eq!(&changed, &original);
                    prop_assert_eq!(other, digest);
                }
                Err(code) => prop_assert!(CODES.contains(&code.as_str()), "code {}", code),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_signed_envelope_round_trips() {
    let (_dir, _repo, key) = universe();
    let mut runner = TestRunner::new(Config::with_cases(256));
    runner
        .run(&payload(), |payload| {
            let bytes = signed(&key, payload.clone());
            let envelope = Envelope::decode(&bytes).unwrap();
            prop_assert_eq!(
                cbor::encode(&envelope.payload).unwrap(),
                cbor::encode(&payload).unwrap()
            );
            prop_assert_eq!(envelope.encode().unwrap(), bytes);
            Ok(())
        })
        .unwrap();
}
