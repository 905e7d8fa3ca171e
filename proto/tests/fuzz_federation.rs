//! Fuzzing every federation decoder of the wire vocabulary (issue #20): signed heads, identity
//! documents, sealed hellos, accepts and manifests, and equivocation proofs, each fed arbitrary
//! bytes and mutations of a valid encoding, a fixed number of cases in CI. None may panic; any
//! input accepted must be canonical (it re-encodes to the same bytes); inputs beyond each
//! decoder's size cap are refused unread, so memory stays bounded by the caps.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use jit_proto::equivocation::EquivocationProof;
use jit_proto::federation::{Accept, Hello, Manifest, Statement, MAX_SEALED};
use jit_proto::head::{PublishedHead, SignedHead, MAX_HEAD};
use jit_proto::identity::{IdentityDoc, SignedIdentity, MAX_IDENTITY};
use jit_proto::merkle;
use proptest::prelude::*;
use serde_bytes::{ByteArray, ByteBuf};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

fn head(epoch: u64, names: &[&str]) -> (SignedHead, Vec<merkle::Hash>) {
    let leaves: Vec<_> = names
        .iter()
        .map(|n| merkle::leaf_hash(n.as_bytes()))
        .collect();
    let head = SignedHead::sign(
        PublishedHead {
            universe: [7; 16],
            epoch,
            size: leaves.len() as u64,
            root: merkle::root(&leaves),
        },
        &key(),
    )
    .unwrap();
    (head, leaves)
}

/// A valid encoding of every decoder's input.
fn valid() -> Vec<(&'static str, Vec<u8>)> {
    let (h1, l1) = head(1, &["a", "b"]);
    let (h2, l2) = head(3, &["a", "B", "c"]);
    let identity = SignedIdentity::first(
        IdentityDoc {
            universe: [7; 16],
            version: 1,
            public_key: [0; 32],
            name: "n".into(),
            owner: "o".into(),
            description: "d".into(),
            created: 1,
        },
        &key(),
    )
    .unwrap();
    let hello = Hello {
        universe: ByteArray::new([1; 16]),
        identity_version: 1,
        protocol: 1,
        capabilities: vec!["head/v1".into()],
        policy: BTreeMap::from([("k".into(), "v".into())]),
        nonce: ByteArray::new([2; 16]),
    };
    let accept = Accept {
        universe: ByteArray::new([7; 16]),
        identity_version: 1,
        peer: ByteArray::new([1; 16]),
        hello: ByteArray::new([3; 32]),
        session: ByteBuf::from(vec![4; 57]),
        epoch: 2,
        policy_hash: ByteArray::new([5; 32]),
        policy: BTreeMap::new(),
        capabilities: vec!["fetch/v1".into()],
    };
    let manifest = Manifest {
        universe: ByteArray::new([7; 16]),
        epoch: 2,
        head_root: ByteArray::new([6; 32]),
        roots: vec![ByteArray::new([8; 32])],
        count: 12,
        bytes: 3456,
        digest: ByteArray::new([9; 32]),
    };
    vec![
        ("head", h1.encode().unwrap()),
        ("identity", identity.encode().unwrap()),
        ("hello", hello.seal(&key()).unwrap()),
        ("accept", accept.seal(&key()).unwrap()),
        ("manifest", manifest.seal(&key()).unwrap()),
        (
            "proof",
            EquivocationProof::between(&h1, &l1, &h2, &l2)
                .unwrap()
                .encode()
                .unwrap(),
        ),
    ]
}

/// Decodes `bytes` as `what`; on success, the input must be canonical.
fn decode(what: &str, bytes: &[u8]) {
    let public = key().verifying_key().to_bytes();
    match what {
        "head" => {
            if let Ok(head) = SignedHead::decode(bytes) {
                assert!(bytes.len() <= MAX_HEAD);
                assert_eq!(
                    head.encode().unwrap(),
                    bytes,
                    "a head decoded from non-canonical bytes"
                );
                let _ = head.verify(&public);
            }
        }
        "identity" => {
            if let Ok(doc) = SignedIdentity::decode(bytes) {
                assert!(bytes.len() <= MAX_IDENTITY);
                assert_eq!(doc.encode().unwrap(), bytes);
                let _ = doc.verify_after(None);
            }
        }
        "hello" => {
            let _ = Hello::open(bytes, &public);
            let _ = Hello::claimed(bytes);
        }
        "accept" => {
            let _ = Accept::open(bytes, &public);
        }
        "manifest" => {
            if Manifest::open(bytes, &public).is_ok() {
                assert!(bytes.len() <= MAX_SEALED);
            }
        }
        "proof" => {
            if let Ok(proof) = EquivocationProof::decode(bytes) {
                assert_eq!(proof.encode().unwrap(), bytes);
                let _ = proof.verify(&public);
            }
        }
        other => panic!("no decoder {other}"),
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip(i, b) if !bytes.is_empty() => bytes[i % len] ^= b,
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Mutation::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i % len);
            }
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_a_federation_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        for (what, _) in valid() {
            decode(what, &bytes);
        }
    }

    #[test]
    fn mutated_encodings_are_refused_or_canonical(
        which in 0usize..6,
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let (what, bytes) = valid().swap_remove(which);
        decode(what, &mutate(bytes, &mutations));
    }
}

#[test]
fn every_valid_encoding_decodes_and_oversized_input_is_refused_unread() {
    for (what, bytes) in valid() {
        decode(what, &bytes);
    }
    // A length prefix claiming far more than the input holds, and inputs past each cap.
    let huge_bstr = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    for what in ["head", "identity", "hello", "accept", "manifest", "proof"] {
        decode(what, &huge_bstr);
        decode(what, &vec![0xa0; 64 * 1024]);
    }
    assert!(SignedHead::decode(&vec![0; MAX_HEAD + 1]).is_err());
    assert!(SignedIdentity::decode(&vec![0; MAX_IDENTITY + 1]).is_err());
    assert!(Manifest::claimed(&vec![0; MAX_SEALED + 1]).is_err());
}
