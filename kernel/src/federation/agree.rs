//! Several sources must agree (issue #20, an optional policy): an import kept under a local name
//! may require that the published name resolves to the same snapshot in `k` of a set of
//! universes — the publisher and its mirrors — before its edge advances. Each source is asked
//! for its signed head and log (verified under its own key); a split moves nothing and the error
//! reports what each source said.
//!
//! Policies live in `meta` under `federation.agree.<local name>`: canonical CBOR of [`Policy`].

use jit_proto::head::SignedHead;
use jit_proto::merkle;
use serde::{Deserialize, Serialize};
use serde_bytes::{ByteArray, ByteBuf};
use uuid::Uuid;

use super::known;
use super::publish::Entry;
use super::wire::{HeadReply, HeadRequest, MAX_ENTRY};
use super::witness::Reach;
use super::{handshake, refusal, refused};
use crate::command::Operation;
use crate::error::{Code, Error, Result};
use crate::id::NodeId;
use crate::repo::Repository;
use crate::store::{ReadTxn, Store};
use crate::sync::wire as sync_wire;

/// How many of which universes must agree.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// How many sources must resolve the name to the same snapshot.
    pub k: u32,
    /// The sources (the publisher may be one of them).
    pub sources: Vec<ByteArray<16>>,
}

fn key(local: &str) -> String {
    format!("federation.agree.{local}")
}

/// The policy for the import kept as `local` (none: no agreement is required).
pub fn policy(store: &Store, txn: &ReadTxn<'_>, local: &str) -> Result<Policy> {
    match store.meta.get(txn, &key(local))? {
        None => Ok(Policy::default()),
        Some(bytes) => crate::cbor::from_canonical_bytes(bytes).map_err(|e| {
            Error::InvalidInput(format!("the agreement policy for {local} is damaged: {e}"))
        }),
    }
}

/// `jit federation agree LOCAL K SOURCE…`.
pub fn set_policy(store: &Store, local: &str, k: u32, sources: &[Uuid]) -> Result<Policy> {
    crate::refname::validate_short_name(local)?;
    if k as usize > sources.len() {
        return Err(Error::InvalidInput(format!(
            "{k} sources cannot agree among {}",
            sources.len()
        )));
    }
    let policy = Policy {
        k,
        sources: sources
            .iter()
            .map(|s| ByteArray::new(*s.as_bytes()))
            .collect(),
    };
    let bytes = crate::cbor::to_canonical_bytes(&policy)?;
    store.operation("federation.agree", |op| op.put_meta(&key(local), &bytes))?;
    Ok(policy)
}

/// Refuses unless `k` sources of the policy for `local` resolve `published` to `snapshot`, the
/// snapshot `universe` (already verified) names. The publisher counts without being asked again.
pub fn require(
    repo: &Repository,
    reach: Option<&dyn Reach>,
    local: &str,
    universe: Uuid,
    published: &str,
    snapshot: NodeId,
) -> Result<()> {
    let store = repo.store();
    let policy = policy(store, &store.read()?, local)?;
    if policy.k == 0 {
        return Ok(());
    }
    let mut agree = 0u32;
    let mut said = Vec::new();
    for source in &policy.sources {
        let source = Uuid::from_bytes(source.into_array());
        let answer = if source == universe {
            Ok(Some(snapshot))
        } else {
            resolve(repo, reach, source, published)
        };
        match answer {
            Ok(Some(found)) if found == snapshot => {
                agree += 1;
                said.push(format!("{source}: {found}"));
            }
            Ok(Some(found)) => said.push(format!("{source}: {found}")),
            Ok(None) => said.push(format!("{source}: nothing published as {published:?}")),
            Err(error) => said.push(format!("{source}: {error}")),
        }
    }
    if agree < policy.k {
        return Err(refusal(
            Code::Forbidden,
            format!(
                "the sources do not agree on {published:?}: {agree} of the {} required resolve it to {snapshot} ({}); nothing moved",
                policy.k,
                said.join("; ")
            ),
        ));
    }
    Ok(())
}

/// What `published` names in `source`'s verified head and log.
fn resolve(
    repo: &Repository,
    reach: Option<&dyn Reach>,
    source: Uuid,
    published: &str,
) -> Result<Option<NodeId>> {
    let store = repo.store();
    let endpoint = known::get(store, &store.read()?, source)?
        .and_then(|k| k.endpoint)
        .ok_or_else(|| refusal(Code::Forbidden, "never met (jit federation hello it)"))?;
    let reach = reach.ok_or_else(|| refusal(Code::Unsupported, "no transport to sources"))?;
    let mut remote = reach.reach(&endpoint)?;
    let session = handshake::hello(repo, remote.as_mut(), Some(&endpoint))?;
    if session.universe != source {
        return Err(refusal(
            Code::OtherUniverse,
            format!("{endpoint} serves universe {}", session.universe),
        ));
    }
    let request = HeadRequest {
        session: ByteBuf::from(session.token.clone()),
        from: 0,
    };
    let mut answers = remote.call(vec![(
        Operation::FederationHead,
        sync_wire::to_value(&request)?,
    )])?;
    let answer = answers
        .pop()
        .ok_or_else(|| refusal(Code::SyncFailed, "no answer"))?;
    let reply: HeadReply = sync_wire::from_value(answer, "head")?;
    let Some(head) = reply.head else {
        return Ok(None);
    };
    let head = SignedHead::decode(&head).map_err(refused)?;
    head.verify(&session.identity.public_key).map_err(refused)?;
    if reply.more || reply.entries.iter().any(|e| e.len() > MAX_ENTRY) {
        return Err(refusal(
            Code::TooLarge,
            "a publish log too long to check at once",
        ));
    }
    let leaves: Vec<_> = reply.entries.iter().map(|e| merkle::leaf_hash(e)).collect();
    if leaves.len() as u64 != head.head.size || merkle::root(&leaves) != head.head.root {
        return Err(refusal(
            Code::Equivocation,
            "its log does not hash to its signed head",
        ));
    }
    let mut found = None;
    for bytes in &reply.entries {
        let entry = Entry::decode(bytes)?;
        if entry.name == published {
            found = Some(entry.snapshot);
        }
    }
    Ok(found)
}
