//! The publishing side: answers another universe's hello, head, depend and fetch requests from
//! a read transaction. Serving never writes (a refused, denied universe leaves one audit
//! record). Requests reach these through the command layer, which lets other universes (and
//! local callers) ask nothing else.
//!
//! Order of checks, the same in every request: who asks (the hello's claimed universe, or the
//! session token's peer) is checked against the deny list before anything else is looked up;
//! then the statement's signature or the token; then the capability; only then the store. What
//! another universe may read is the closure of published snapshots ([`super::visible`]): any
//! other id gets the reply a nonexistent id gets, through the same lookup.

use std::collections::BTreeMap;

use jit_proto::federation::{
    self as proto, Accept, Hello, Manifest, Statement, CAPABILITIES, CAP_FETCH, CAP_HEAD,
    CAP_MANIFEST, CAP_ZSTD, MAX_ROOTS, PROTOCOL,
};
use jit_proto::identity::SignedIdentity;
use jit_proto::merkle;
use serde_bytes::{ByteArray, ByteBuf};
use uuid::Uuid;

use super::wire::{
    DependReply, DependRequest, FetchAnswer, FetchRequest, HeadReply, HeadRequest, HelloReply,
    HelloRequest, MAX_CHAIN, MAX_ENTRIES, MAX_HAVES,
};
use super::{closure, peers, publish, refused, session, visible};
use crate::error::{Code, Error, Result};
use crate::id::NodeId;
use crate::identity::UniverseIdentity;
use crate::repo::Repository;
use crate::source::Dag;

/// The rules this universe applies as a publisher, sent (and hashed) in every accept.
pub fn policy() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("serves".to_owned(), "published-closures".to_owned()),
        ("protocol".to_owned(), PROTOCOL.to_string()),
    ])
}

/// Decodes an identity chain (at most [`MAX_CHAIN`] documents, each bounded) and verifies it
/// from version 1; returns the chain.
pub(crate) fn decode_chain(chain: &[ByteBuf]) -> Result<Vec<SignedIdentity>> {
    if chain.is_empty() || chain.len() > MAX_CHAIN {
        return Err(Error::Federation {
            code: Code::Malformed,
            message: format!(
                "an identity chain holds 1 to {MAX_CHAIN} documents, not {}",
                chain.len()
            ),
        });
    }
    let decoded = chain
        .iter()
        .map(|bytes| SignedIdentity::decode(bytes).map_err(refused))
        .collect::<Result<Vec<_>>>()?;
    Ok(decoded)
}

/// The universe key's owner, or a clear refusal on a replica without it.
pub(crate) fn publisher(repo: &Repository) -> Result<UniverseIdentity> {
    UniverseIdentity::load(repo.jit_dir())
}

/// Stage 1–2: verifies another universe's hello and answers with a sealed accept.
pub fn hello(repo: &Repository, request: &HelloRequest) -> Result<HelloReply> {
    let claimed = Hello::claimed(&request.hello).map_err(refused)?;
    let peer = Uuid::from_bytes(claimed.universe.into_array());
    peers::admit(repo.store(), peer)?;
    let chain = decode_chain(&request.identity)?;
    let doc = SignedIdentity::verify_chain(&chain).map_err(refused)?;
    if doc.universe != *peer.as_bytes() {
        return Err(Error::Federation {
            code: Code::OtherUniverse,
            message: "the hello's identity documents are of another universe".into(),
        });
    }
    if claimed.identity_version != doc.version {
        return Err(Error::Federation {
            code: Code::IdentityGap,
            message: format!(
                "the hello is signed with identity version {}, the chain ends at {}",
                claimed.identity_version, doc.version
            ),
        });
    }
    let hello = Hello::open(&request.hello, &doc.public_key).map_err(refused)?;
    if hello.protocol != PROTOCOL {
        return Err(Error::Federation {
            code: Code::Unsupported,
            message: format!(
                "this universe speaks federation protocol {PROTOCOL}, not {}",
                hello.protocol
            ),
        });
    }
    let identity = publisher(repo)?;
    let ours = identity.chain()?;
    let shared = proto::intersect(CAPABILITIES, &hello.capabilities);
    let epoch = {
        let txn = repo.store().read()?;
        publish::head(repo.store(), &txn)?.map_or(0, |h| h.head.epoch)
    };
    let policy = policy();
    let accept = Accept {
        universe: ByteArray::new(*identity.info.id.as_bytes()),
        identity_version: ours.last().map_or(1, |d| d.doc.version),
        peer: ByteArray::new(*peer.as_bytes()),
        hello: ByteArray::new(*blake3::hash(&request.hello).as_bytes()),
        session: ByteBuf::from(session::issue(
            &identity.session_key(),
            peer,
            &shared,
            session::now(),
        )),
        epoch,
        policy_hash: ByteArray::new(proto::policy_hash(&policy)?),
        policy,
        capabilities: shared,
    };
    Ok(HelloReply {
        accept: ByteBuf::from(identity.seal(&accept)?),
        identity: ours
            .iter()
            .map(|d| d.encode().map(ByteBuf::from))
            .collect::<std::result::Result<_, _>>()?,
    })
}

/// Checks a request's token: denied universes first, then the MAC and expiry, then the
/// capability the request needs.
pub(crate) fn open_session(
    repo: &Repository,
    identity: &UniverseIdentity,
    token: &[u8],
    capability: &str,
) -> Result<session::Session> {
    // The peer named in the token is checked against the deny list before the token itself:
    // a denied universe is refused with its audit record whatever it sends.
    if token.len() == session::TOKEN_LEN {
        if let Ok(peer) = Uuid::from_slice(&token[..16]) {
            peers::admit(repo.store(), peer)?;
        }
    }
    let session = session::check(&identity.session_key(), token, session::now())?;
    session.require(capability)?;
    Ok(session)
}

/// The signed head and the log entries after `from`.
pub fn head(repo: &Repository, request: &HeadRequest) -> Result<HeadReply> {
    let identity = publisher(repo)?;
    open_session(repo, &identity, &request.session, CAP_HEAD)?;
    let store = repo.store();
    let txn = store.read()?;
    let Some(head) = publish::head(store, &txn)? else {
        return Ok(HeadReply {
            head: None,
            entries: Vec::new(),
            more: false,
            consistency: Vec::new(),
        });
    };
    let log = publish::entries(store, &txn)?;
    let size = log.len() as u64;
    if request.from > size {
        return Err(Error::InvalidInput(format!(
            "the publish log holds {size} entries, not {}",
            request.from
        )));
    }
    let from = request.from as usize;
    let until = log.len().min(from + MAX_ENTRIES);
    let entries = log[from..until]
        .iter()
        .map(|e| e.encode().map(ByteBuf::from))
        .collect::<Result<Vec<_>>>()?;
    let consistency = if from > 0 && from < log.len() {
        let leaves = log
            .iter()
            .map(publish::Entry::leaf)
            .collect::<Result<Vec<_>>>()?;
        merkle::consistency_proof(&leaves, from)
            .unwrap_or_default()
            .into_iter()
            .map(ByteArray::new)
            .collect()
    } else {
        Vec::new()
    };
    Ok(HeadReply {
        head: Some(ByteBuf::from(head.encode()?)),
        entries,
        more: until < log.len(),
        consistency,
    })
}

/// Stage 3–4: the signed manifest of the closure of published snapshots. A root that is not
/// a published snapshot is answered as a node that does not exist.
pub fn depend(repo: &Repository, request: &DependRequest) -> Result<DependReply> {
    let identity = publisher(repo)?;
    open_session(repo, &identity, &request.session, CAP_MANIFEST)?;
    if request.roots.is_empty() || request.roots.len() > MAX_ROOTS {
        return Err(Error::InvalidInput(format!(
            "a dependency declaration names 1 to {MAX_ROOTS} snapshots, not {}",
            request.roots.len()
        )));
    }
    let store = repo.store();
    let txn = store.read()?;
    let log = publish::entries(store, &txn)?;
    for root in &request.roots {
        if !log.iter().any(|entry| entry.snapshot == *root) {
            return Err(Error::NodeNotFound(*root));
        }
    }
    let head = publish::head(store, &txn)?.ok_or(Error::NodeNotFound(request.roots[0]))?;
    // One root's summary was recorded when it was published; several are walked together.
    let summary = match request.roots.as_slice() {
        [root] => visible::summary(store, &txn, root)?,
        _ => None,
    };
    let summary = match summary {
        Some(summary) => summary,
        None => {
            let (ids, bytes) =
                closure::walk_with_bytes(&Dag::new(store, &txn), &request.roots, |_| Ok(false))?;
            visible::Summary {
                count: ids.len() as u64,
                digest: proto::closure_digest(ids.iter().map(|id| &id.0)),
                bytes,
            }
        }
    };
    let manifest = Manifest {
        universe: ByteArray::new(*identity.info.id.as_bytes()),
        epoch: head.head.epoch,
        head_root: ByteArray::new(head.head.root),
        roots: request.roots.iter().map(|r| ByteArray::new(r.0)).collect(),
        count: summary.count,
        bytes: summary.bytes,
        digest: ByteArray::new(summary.digest),
    };
    // What the importer lacks, given what it holds: only published snapshots count as held
    // (anything else is ignored, exactly as an id that does not exist).
    let haves: Vec<NodeId> = request
        .haves
        .iter()
        .take(MAX_HAVES)
        .filter(|have| log.iter().any(|entry| entry.snapshot == **have))
        .copied()
        .collect();
    let missing = match request.roots.as_slice() {
        [root] if !haves.is_empty() => closure::missing(&Dag::new(store, &txn), *root, &haves)?,
        _ => Vec::new(),
    };
    Ok(DependReply {
        manifest: ByteBuf::from(identity.seal(&manifest)?),
        missing,
    })
}

/// Stage 4: node bytes of published closures; anything else is reported missing, exactly as a
/// node this universe does not hold.
pub fn fetch(repo: &Repository, request: &FetchRequest) -> Result<FetchAnswer> {
    let identity = publisher(repo)?;
    let session = open_session(repo, &identity, &request.session, CAP_FETCH)?;
    let store = repo.store();
    let txn = store.read()?;
    let reply =
        crate::sync::serve::fetch_where(store, &txn, &request.ids, request.max_bytes, |id| {
            visible::contains(store, &txn, id)
        })?;
    FetchAnswer::new(reply, request.zstd && session.shares(CAP_ZSTD))
}

/// Whether `id` is one this universe shows others (for tests and `jit federation ls`).
pub fn shows(repo: &Repository, id: &NodeId) -> Result<bool> {
    visible::contains(repo.store(), &repo.store().read()?, id)
}
