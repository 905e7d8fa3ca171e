//! Fuzzing the kernel's federation decoders (issue #20): bundles, gossip notes, compressed
//! fetch replies and every federation request an RPC or plane caller can send, fed arbitrary
//! bytes and mutations of valid inputs, a fixed number of cases in CI. None may panic; a
//! mutated bundle is never accepted; sizes past each cap are refused before allocating.

use jit_kernel::command::{Command, Operation};
use jit_kernel::federation::gossip::{self, HeadNote, ProofNote};
use jit_kernel::federation::wire::{FetchAnswer, PackedFetchReply};
use jit_kernel::federation::{bundle, publish};
use jit_kernel::patch::{Patch, PatchOp};
use jit_kernel::{cbor, collapse, history::CommitInfo, sws, DeclaredTime, Repository};
use proptest::prelude::*;
use serde_bytes::ByteBuf;

/// A bundle of a small published snapshot.
fn bundle_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let repo: Repository = jit_testutils::fixture::init_universe(dir.path());
    let branch = repo.head().unwrap();
    let id = sws::working(repo.store(), &branch, "me").unwrap();
    let patch = Patch {
        id: "p".into(),
        author: "me".into(),
        ts: 0,
        ops: ["a.txt", "dir/b.txt", "dir/c.txt"]
            .iter()
            .map(|p| PatchOp::Put {
                path: (*p).into(),
                content: format!("content of {p}\n").into_bytes(),
                executable: false,
            })
            .collect(),
    };
    sws::apply_patch(repo.store(), id, &patch).unwrap();
    let info = CommitInfo {
        author: "Me <me@x>".into(),
        message: "m".into(),
        time: DeclaredTime {
            seconds: 0,
            tz_minutes: 0,
        },
    };
    collapse::commit(repo.store(), id, &info).unwrap();
    publish::publish(&repo, "main", "release").unwrap();
    let mut bytes = Vec::new();
    bundle::export(&repo, "release", &mut bytes).unwrap();
    bytes
}

fn mutate(mut bytes: Vec<u8>, at: usize, how: u8, byte: u8) -> Vec<u8> {
    let i = at % bytes.len().max(1);
    match how % 4 {
        0 if !bytes.is_empty() => bytes[i] ^= byte | 1,
        1 => bytes.insert(i.min(bytes.len()), byte),
        2 if !bytes.is_empty() => {
            bytes.remove(i);
        }
        _ => bytes.truncate(i),
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_mutated_bundle_is_refused_never_accepted(
        at in any::<usize>(), how in any::<u8>(), byte in any::<u8>(),
    ) {
        let original = bundle_bytes_cached();
        let bytes = mutate(original.clone(), at, how, byte);
        let verified = bundle::verify(&mut &bytes[..]);
        prop_assert!(verified.is_err() || bytes == *original);
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_bundle_a_note_or_a_packed_reply(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        size in any::<u64>(),
    ) {
        prop_assert!(bundle::verify(&mut &bytes[..]).is_err());
        let _ = gossip::decode_note::<HeadNote>(&bytes);
        let _ = gossip::decode_note::<ProofNote>(&bytes);
        let packed = FetchAnswer::Packed(PackedFetchReply { zstd: ByteBuf::from(bytes.clone()), size });
        let _ = packed.open();
        if let Ok(value) = cbor::decode(&bytes) {
            for op in [
                Operation::FederationHello,
                Operation::FederationHead,
                Operation::FederationDepend,
                Operation::FederationFetch,
            ] {
                let _ = Command::decode(op, value.clone());
            }
        }
    }
}

fn bundle_bytes_cached() -> &'static Vec<u8> {
    static BUNDLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BUNDLE.get_or_init(bundle_bytes)
}

#[test]
fn the_valid_bundle_verifies_and_length_claims_past_the_caps_are_refused_unread() {
    let bytes = bundle_bytes_cached();
    bundle::verify(&mut &bytes[..]).unwrap();
    // A header that claims 2^63 bytes, and a packed reply that claims more than any reply.
    let mut claim = (1u64 << 63).to_be_bytes().to_vec();
    claim.extend_from_slice(&[0; 16]);
    assert!(bundle::verify(&mut &claim[..])
        .unwrap_err()
        .to_string()
        .contains("more than"));
    let packed = FetchAnswer::Packed(PackedFetchReply {
        zstd: ByteBuf::from(vec![0; 8]),
        size: u64::MAX,
    });
    assert!(packed.open().is_err());
    assert!(gossip::decode_note::<HeadNote>(&vec![0; gossip::MAX_NOTE + 1]).is_err());
}
