//! Bundles (issue #20): one self-contained file that carries a published snapshot from one
//! universe to another with no network — and that anyone can verify offline.
//!
//! A bundle is a sequence of items, each an 8-byte big-endian length and that many bytes:
//! 1. the **header**, canonical CBOR of [`Header`]: the format, the universe, its identity
//!    chain, its signed head with the whole publish log under it, the published entry's index
//!    and its RFC 9162 inclusion proof, and the signed manifest of the entry's closure;
//! 2. the closure's **nodes**, each its canonical bytes, in the order of
//!    [`super::closure::walk`] from the snapshot — every node after one that names it;
//! 3. nothing more.
//!
//! [`verify`] checks it all while streaming: the identity chain, the head's signature, the log
//! against the head's root, the entry's inclusion, the manifest's signature and that it is for
//! that head and entry, then each node — its hash is the id expected next (so a reordered,
//! damaged or foreign node is named), its encoding canonical — and finally that exactly the
//! manifest's count arrived with its digest and nothing follows. Each damage has its own error:
//! truncated, reordered, padded, an extra node. [`import`] does the same into the importer's
//! store for that universe and commits exactly what a network import commits.

use std::collections::{HashSet, VecDeque};
use std::io::{Read, Write};

use jit_proto::federation::{closure_digest, Manifest, Statement, MAX_CLOSURE, MAX_CLOSURE_BYTES};
use jit_proto::head::SignedHead;
use jit_proto::identity::SignedIdentity;
use jit_proto::merkle;
use serde::{Deserialize, Serialize};
use serde_bytes::{ByteArray, ByteBuf};
use uuid::Uuid;

use super::import::{self, Finalize, ImportReport};
use super::known::{self, Known};
use super::publish::{self, Entry};
use super::serve::decode_chain;
use super::wire::{MAX_CHAIN, MAX_ENTRIES, MAX_ENTRY};
use super::{closure, foreign, handshake, peers, quarantine, refusal, refused, visible};
use crate::error::{Code, Error, Result};
use crate::id::NodeId;
use crate::identity::UniverseIdentity;
use crate::node::{Blob, Node, Payload};
use crate::repo::Repository;
use crate::source::Dag;

/// The format string every bundle's header starts with.
pub const FORMAT: &str = "jit-federation-bundle/v1";
/// Largest header accepted.
pub const MAX_HEADER: u64 = 8 << 20;
/// Largest node item accepted (a chunk, or a tree of many entries).
pub const MAX_NODE: u64 = 16 << 20;
/// Nodes staged per write while importing.
const BATCH: usize = 4096;

/// A bundle's first item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// [`FORMAT`].
    pub format: String,
    /// The publishing universe.
    pub universe: ByteArray<16>,
    /// Its signed identity documents, version 1 first.
    pub identity: Vec<ByteBuf>,
    /// Its signed head.
    pub head: ByteBuf,
    /// Its publish log, every entry the head covers.
    pub entries: Vec<ByteBuf>,
    /// The published entry this bundle carries.
    pub index: u64,
    /// The entry's inclusion proof against the head's root.
    pub inclusion: Vec<ByteArray<32>>,
    /// The signed manifest of the entry's snapshot's closure.
    pub manifest: ByteBuf,
    /// Witnesses' cosignatures of the head: (witness universe, sealed cosignature), checked by
    /// an importer whose policy requires witnesses.
    #[serde(default)]
    pub cosignatures: Vec<(ByteArray<16>, ByteBuf)>,
}

/// What a verified bundle carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The publishing universe.
    pub universe: Uuid,
    /// Its name (from its identity document).
    pub name: String,
    /// The published name.
    pub published: String,
    /// The snapshot.
    pub snapshot: NodeId,
    /// The epoch of the head.
    pub epoch: u64,
    /// Nodes in the closure.
    pub nodes: u64,
    /// Their bytes.
    pub bytes: u64,
}

fn damaged(message: impl Into<String>) -> Error {
    refusal(Code::Malformed, message)
}

fn write_item(out: &mut dyn Write, bytes: &[u8]) -> Result<()> {
    out.write_all(&(bytes.len() as u64).to_be_bytes())
        .and_then(|()| out.write_all(bytes))
        .map_err(|e| Error::io("bundle", e))
}

/// The next item, at most `limit` bytes; None at a clean end of the stream.
fn read_item(input: &mut dyn Read, limit: u64, what: &str) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(damaged(format!(
                    "the bundle ends inside the length of {what}"
                )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("bundle", e)),
        }
    }
    let len = u64::from_be_bytes(len);
    if len > limit {
        return Err(damaged(format!(
            "{what} claims {len} bytes, more than the {limit} it may have"
        )));
    }
    let mut bytes = Vec::new();
    input
        .take(len)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("bundle", e))?;
    if bytes.len() as u64 != len {
        return Err(damaged(format!(
            "the bundle is truncated inside {what} ({} of {len} bytes)",
            bytes.len()
        )));
    }
    Ok(Some(bytes))
}

/// `jit federation export --bundle FILE NAME`: writes the snapshot this universe published
/// last as `name`, with everything needed to verify it, to `out`.
pub fn export(repo: &Repository, name: &str, out: &mut dyn Write) -> Result<Summary> {
    export_cosigned(repo, name, &[], None, out)
}

/// [`export`], carrying the cosignatures of the head by `witnesses` (asked over `reach`).
pub fn export_cosigned(
    repo: &Repository,
    name: &str,
    witnesses: &[Uuid],
    reach: Option<&dyn super::witness::Reach>,
    out: &mut dyn Write,
) -> Result<Summary> {
    let identity = UniverseIdentity::load(repo.jit_dir())?;
    let store = repo.store();
    let txn = store.read()?;
    let head = publish::head(store, &txn)?
        .ok_or_else(|| refusal(Code::RefNotFound, "this universe has published nothing"))?;
    let log = publish::entries(store, &txn)?;
    let entry = log.iter().rev().find(|e| e.name == name).ok_or_else(|| {
        refusal(
            Code::RefNotFound,
            format!("nothing is published as {name:?}"),
        )
    })?;
    let leaves = log.iter().map(Entry::leaf).collect::<Result<Vec<_>>>()?;
    let inclusion = merkle::inclusion_proof(&leaves, entry.seq as usize).unwrap_or_default();
    let (ids, total) =
        closure::walk_with_bytes(&Dag::new(store, &txn), &[entry.snapshot], |_| Ok(false))?;
    let summary = visible::Summary {
        count: ids.len() as u64,
        digest: closure_digest(ids.iter().map(|id| &id.0)),
        bytes: total,
    };
    let manifest = Manifest {
        universe: ByteArray::new(*identity.info.id.as_bytes()),
        epoch: head.head.epoch,
        head_root: ByteArray::new(head.head.root),
        roots: vec![ByteArray::new(entry.snapshot.0)],
        count: summary.count,
        bytes: summary.bytes,
        digest: ByteArray::new(summary.digest),
    };
    let header = Header {
        format: FORMAT.into(),
        universe: ByteArray::new(*identity.info.id.as_bytes()),
        identity: identity
            .chain()?
            .iter()
            .map(|d| d.encode().map(ByteBuf::from))
            .collect::<std::result::Result<_, _>>()?,
        head: ByteBuf::from(head.encode()?),
        entries: log
            .iter()
            .map(|e| e.encode().map(ByteBuf::from))
            .collect::<Result<_>>()?,
        index: entry.seq,
        inclusion: inclusion.into_iter().map(ByteArray::new).collect(),
        manifest: ByteBuf::from(identity.seal(&manifest)?),
        cosignatures: Vec::new(),
    };
    let mut header = header;
    if !witnesses.is_empty() {
        let entries: Vec<Vec<u8>> = header.entries.iter().map(|e| e.to_vec()).collect();
        for witness in witnesses {
            let sealed = super::witness::collect(
                repo,
                reach,
                *witness,
                identity.info.id,
                &header.head,
                &entries,
            )?;
            header
                .cosignatures
                .push((ByteArray::new(*witness.as_bytes()), ByteBuf::from(sealed)));
        }
    }
    write_item(out, &crate::cbor::to_canonical_bytes(&header)?)?;
    let mut bytes = 0u64;
    for id in &ids {
        let node = store
            .node_bytes(&txn, id)?
            .ok_or(Error::NodeNotFound(*id))?;
        bytes += node.len() as u64;
        write_item(out, &node)?;
    }
    out.flush().map_err(|e| Error::io("bundle", e))?;
    Ok(Summary {
        universe: identity.info.id,
        name: identity.info.name.clone(),
        published: name.to_owned(),
        snapshot: entry.snapshot,
        epoch: head.head.epoch,
        nodes: ids.len() as u64,
        bytes,
    })
}

/// The header's statements, verified.
struct Verified {
    universe: Uuid,
    cosignatures: Vec<(ByteArray<16>, ByteBuf)>,
    chain: Vec<SignedIdentity>,
    head: SignedHead,
    head_bytes: Vec<u8>,
    entries: Vec<Vec<u8>>,
    leaves: Vec<merkle::Hash>,
    entry: Entry,
    manifest: Manifest,
}

/// Checks the header on its own: identity chain, head, log, inclusion, manifest.
fn verify_header(bytes: &[u8]) -> Result<Verified> {
    let header: Header = crate::cbor::from_canonical_bytes(bytes)
        .map_err(|e| damaged(format!("the bundle's header is malformed: {e}")))?;
    if header.format != FORMAT {
        return Err(refusal(
            Code::Unsupported,
            format!("a bundle of format {:?}, not {FORMAT}", header.format),
        ));
    }
    let universe = Uuid::from_bytes(header.universe.into_array());
    if header.identity.len() > MAX_CHAIN || header.entries.len() > MAX_ENTRIES {
        return Err(damaged(
            "the bundle's header holds too many documents or entries",
        ));
    }
    let chain = decode_chain(&header.identity)?;
    let doc = SignedIdentity::verify_chain(&chain).map_err(refused)?;
    if doc.universe != *universe.as_bytes() {
        return Err(refusal(
            Code::OtherUniverse,
            "the identity is of another universe",
        ));
    }
    let key = doc.public_key;
    let head = SignedHead::decode(&header.head).map_err(refused)?;
    head.verify(&key).map_err(refused)?;
    if head.head.universe != *universe.as_bytes() {
        return Err(refusal(
            Code::OtherUniverse,
            "the head is of another universe",
        ));
    }
    if header.entries.iter().any(|e| e.len() > MAX_ENTRY) {
        return Err(damaged("an oversized publish log entry"));
    }
    let leaves: Vec<_> = header
        .entries
        .iter()
        .map(|e| merkle::leaf_hash(e))
        .collect();
    if leaves.len() as u64 != head.head.size || merkle::root(&leaves) != head.head.root {
        return Err(damaged(
            "the publish log does not hash to the signed head's root",
        ));
    }
    let index = header.index as usize;
    let entry_bytes = header
        .entries
        .get(index)
        .ok_or_else(|| damaged(format!("entry {index} is not in the publish log")))?;
    let inclusion: Vec<_> = header.inclusion.iter().map(|h| h.into_array()).collect();
    if !merkle::verify_inclusion(
        &leaves[index],
        header.index,
        head.head.size,
        &inclusion,
        &head.head.root,
    ) {
        return Err(damaged(format!(
            "entry {index}'s inclusion proof does not verify"
        )));
    }
    let entry = Entry::decode(entry_bytes)?;
    if entry.seq != header.index {
        return Err(damaged(format!(
            "entry {index} says it is entry {}",
            entry.seq
        )));
    }
    let manifest = Manifest::open(&header.manifest, &key).map_err(refused)?;
    if manifest.universe.into_array() != *universe.as_bytes()
        || manifest.epoch != head.head.epoch
        || manifest.head_root.into_array() != head.head.root
        || manifest.roots.len() != 1
        || manifest.roots[0].into_array() != entry.snapshot.0
    {
        return Err(damaged(
            "the signed manifest is not for this head and entry",
        ));
    }
    if manifest.count > MAX_CLOSURE || manifest.bytes > MAX_CLOSURE_BYTES {
        return Err(refusal(
            Code::TooLarge,
            format!(
                "a closure of {} nodes and {} bytes exceeds {MAX_CLOSURE} nodes or {MAX_CLOSURE_BYTES} bytes",
                manifest.count, manifest.bytes
            ),
        ));
    }
    if header.cosignatures.len() > MAX_CHAIN {
        return Err(damaged("the bundle carries too many cosignatures"));
    }
    Ok(Verified {
        universe,
        cosignatures: header.cosignatures.clone(),
        chain,
        head,
        head_bytes: header.head.into_vec(),
        entries: header.entries.into_iter().map(ByteBuf::into_vec).collect(),
        leaves,
        entry,
        manifest,
    })
}

/// What a node names, in the walk's order.
fn named(node: &Node) -> Vec<NodeId> {
    match &node.payload {
        Payload::Blob(Blob::Chunked { chunks, .. }) => chunks.iter().map(|c| c.id).collect(),
        _ => node.references().into_iter().map(|(id, _)| id).collect(),
    }
}

/// Streams the nodes after the header, checking each is the one expected next; hands each to
/// `keep`. Returns the ids in order and their total bytes.
fn read_nodes(
    input: &mut dyn Read,
    verified: &Verified,
    keep: &mut dyn FnMut(NodeId, Vec<u8>) -> Result<()>,
) -> Result<(Vec<NodeId>, u64)> {
    let count = verified.manifest.count;
    let mut queue: VecDeque<NodeId> = VecDeque::from([verified.entry.snapshot]);
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut ids = Vec::new();
    let mut total = 0u64;
    loop {
        let expected = loop {
            match queue.pop_front() {
                Some(id) if seen.contains(&id) => continue,
                other => break other,
            }
        };
        let Some(expected) = expected else { break };
        let at = ids.len();
        let Some(bytes) = read_item(input, MAX_NODE, &format!("node {at}"))? else {
            return Err(damaged(format!(
                "the bundle is truncated: it ends after {at} of {count} nodes"
            )));
        };
        let id = NodeId::of_bytes(&bytes);
        if id != expected {
            return Err(damaged(if queue.contains(&id) {
                format!("the nodes are out of order: node {at} is {id}, which comes later; {expected} comes first")
            } else {
                format!("node {at} is damaged or foreign: its bytes hash to {id}, not to {expected}, the node expected next")
            }));
        }
        let node = crate::sync::transfer::verify(id, &bytes)?;
        seen.insert(id);
        queue.extend(named(&node));
        ids.push(id);
        total += bytes.len() as u64;
        if ids.len() as u64 > count || total > verified.manifest.bytes {
            return Err(damaged(format!(
                "the closure holds more than the {count} nodes signed"
            )));
        }
        keep(id, bytes)?;
    }
    if ids.len() as u64 != count || total != verified.manifest.bytes {
        return Err(damaged(format!(
            "the closure holds {} nodes of {total} bytes, the signed manifest says {count} of {}",
            ids.len(),
            verified.manifest.bytes
        )));
    }
    if closure_digest(ids.iter().map(|id| &id.0)) != verified.manifest.digest.into_array() {
        return Err(damaged("the closure's digest is not the signed manifest's"));
    }
    // Nothing may follow: a node the closure does not need, or bytes that are no item.
    match read_item(input, MAX_NODE, "what follows the closure") {
        Ok(None) => Ok((ids, total)),
        Ok(Some(extra)) => Err(damaged(format!(
            "an extra node after the closure ({} bytes, {})",
            extra.len(),
            NodeId::of_bytes(&extra)
        ))),
        Err(_) => Err(damaged("trailing bytes after the closure")),
    }
}

/// `jit federation verify FILE`: checks a bundle offline, needing nothing but the file.
pub fn verify(input: &mut dyn Read) -> Result<Summary> {
    let header = read_item(input, MAX_HEADER, "the header")?
        .ok_or_else(|| damaged("the bundle is empty"))?;
    let verified = verify_header(&header)?;
    let (ids, bytes) = read_nodes(input, &verified, &mut |_, _| Ok(()))?;
    Ok(summary(&verified, ids.len() as u64, bytes))
}

fn summary(verified: &Verified, nodes: u64, bytes: u64) -> Summary {
    Summary {
        universe: verified.universe,
        name: verified
            .chain
            .last()
            .map(|d| d.doc.name.clone())
            .unwrap_or_default(),
        published: verified.entry.name.clone(),
        snapshot: verified.entry.snapshot,
        epoch: verified.head.head.epoch,
        nodes,
        bytes,
    }
}

/// `jit federation import FILE [--as LOCAL]`: imports a bundle with no network, storing exactly
/// what a network import of the same snapshot stores. Any damage stores nothing.
pub fn import(
    repo: &Repository,
    input: &mut dyn Read,
    local: Option<&str>,
    into: Option<&import::Into>,
) -> Result<ImportReport> {
    let store = repo.store();
    let header = read_item(input, MAX_HEADER, "the header")?
        .ok_or_else(|| damaged("the bundle is empty"))?;
    let verified = verify_header(&header)?;
    let universe = verified.universe;
    let peer = peers::admit(store, universe)?;
    quarantine::check(store, universe)?;
    import::check_trust(universe, peer.trust, into)?;
    let carried: Vec<(Uuid, Vec<u8>)> = verified
        .cosignatures
        .iter()
        .map(|(w, c)| (Uuid::from_bytes(w.into_array()), c.to_vec()))
        .collect();
    super::witness::require_carried(store, universe, peer.trust, &verified.head_bytes, &carried)?;
    let local = local.unwrap_or(&verified.entry.name).to_owned();
    crate::refname::validate_short_name(&local)?;
    // Identity continuity and the head against what is held, as a network import checks them.
    let record = known::get(store, &store.read()?, universe)?;
    let held_identity = match &record {
        Some(k) => Some(SignedIdentity::decode(&k.identity).map_err(refused)?),
        None => None,
    };
    let (identity, _) = handshake::continue_chain(held_identity.as_ref(), &verified.chain)?;
    if let Some(held) = record.as_ref().and_then(|k| k.head.as_ref()) {
        let held = SignedHead::decode(held).map_err(refused)?;
        let proof = merkle::consistency_proof(&verified.leaves, held.head.size as usize)
            .unwrap_or_default();
        verified
            .head
            .verify_after(&identity.doc.public_key, Some(&held.head), &proof)
            .map_err(refused)?;
    }
    if record.is_none() {
        store.operation("federation.hello", |op| {
            known::put(op, universe, &Known::first(identity.encode()?, None))
        })?;
    }
    let holding =
        |id: &NodeId| -> Result<bool> { foreign::holds(store, &store.read()?, universe, id) };
    let mut batch: Vec<(NodeId, Vec<u8>)> = Vec::new();
    let mut fetched = (0u64, 0u64);
    let streamed = read_nodes(input, &verified, &mut |id, bytes| {
        if !holding(&id)? {
            fetched.0 += 1;
            fetched.1 += bytes.len() as u64;
            batch.push((id, bytes));
            if batch.len() >= BATCH {
                foreign::stage(store, universe, &std::mem::take(&mut batch))?;
            }
        }
        Ok(())
    })
    .and_then(|ids| {
        foreign::stage(store, universe, &batch)?;
        Ok(ids)
    });
    // Every reference of the right type and every chunk of its length, as a network import
    // checks its closure.
    let checked = streamed.and_then(|found| {
        let txn = store.read()?;
        let source = foreign::Foreign::checking(store, &txn, universe);
        closure::walk(&source, &[verified.entry.snapshot], |_| Ok(false))?;
        Ok(found)
    });
    let (ids, _) = match checked {
        Ok(found) => found,
        Err(error) => {
            store.operation("federation.refused", |op| {
                foreign::clear_staged(op, universe)
            })?;
            return Err(error);
        }
    };
    let (edge, new_nodes) = import::finalize(&Finalize {
        repo,
        from: Some("a bundle"),
        universe,
        snapshot: verified.entry.snapshot,
        published: &verified.entry.name,
        local: &local,
        trust: peer.trust,
        into,
        closure: &ids,
        head: &verified.head_bytes,
        entries: &verified.entries,
    })?;
    Ok(ImportReport {
        universe,
        published: verified.entry.name.clone(),
        local,
        snapshot: verified.entry.snapshot,
        epoch: verified.head.head.epoch,
        edge,
        closure: verified.manifest.count,
        fetched_nodes: fetched.0,
        fetched_bytes: fetched.1,
        resumed_nodes: 0,
        new_nodes,
        trust: peer.trust.as_str(),
    })
}
