//! `jit fsck` of federation, offline: what this universe publishes and what it imported.
//!
//! - The publish log hashes to the root of the signed head, which verifies under this universe's
//!   key, and every published closure is indexed as visible.
//! - For every universe imported from: its identity document and last verified head verify,
//!   the log held hashes to that head's root, every node kept of it hashes to its id and
//!   decodes, every import's closure is complete and well typed in its store, and every import's
//!   `federation-edge` node is in the DAG and names that universe and snapshot.

use jit_proto::head::SignedHead;
use jit_proto::identity::SignedIdentity;
use jit_proto::merkle;

use super::store::FsckReport;
use crate::error::Result;
use crate::federation::foreign::{self, Foreign};
use crate::federation::{closure, known, publish, visible};
use crate::id::NodeId;
use crate::identity::UniverseIdentity;
use crate::node::{Node, Payload};
use crate::repo::Repository;
use crate::source::Dag;

/// Adds what is wrong with this universe's federation state to `report`.
pub fn check(repo: &Repository, report: &mut FsckReport) -> Result<()> {
    check_published(repo, report)?;
    let store = repo.store();
    let txn = store.read()?;
    for (universe, record) in known::list(store, &txn)? {
        let at = format!("federation {universe}");
        let identity = match SignedIdentity::decode(&record.identity) {
            Ok(identity) => identity,
            Err(e) => {
                report.problem(&at, format!("the identity held is damaged: {e}"));
                continue;
            }
        };
        if identity.doc.version == 1 {
            if let Err(e) = identity.verify_after(None) {
                report.problem(&at, format!("the identity held does not verify: {e}"));
            }
        }
        if let Some(bytes) = &record.head {
            match SignedHead::decode(bytes) {
                Ok(head) => {
                    if let Err(e) = head.verify(&identity.doc.public_key) {
                        report.problem(&at, format!("the head held does not verify: {e}"));
                    }
                    let leaves: Vec<_> = record
                        .entries
                        .iter()
                        .map(|e| merkle::leaf_hash(e))
                        .collect();
                    if leaves.len() as u64 != head.head.size
                        || merkle::root(&leaves) != head.head.root
                    {
                        report
                            .problem(&at, "the publish log held does not hash to its head's root");
                    }
                }
                Err(e) => report.problem(&at, format!("the head held is damaged: {e}")),
            }
        }
        for (id, bytes) in foreign::entries(store, &txn, universe)? {
            report.nodes += 1;
            if NodeId::of_bytes(bytes) != id {
                report.problem(format!("{at} node {id}"), "its bytes do not hash to its id");
            } else if let Err(e) = Node::decode(bytes) {
                report.problem(format!("{at} node {id}"), format!("does not decode: {e}"));
            }
        }
        // Every node was just hashed above; the closure walk only needs their references.
        let source = Foreign::checking(store, &txn, universe);
        for (name, import) in &record.imports {
            let at = format!("federation/{universe}/{name}");
            if let Err(e) = closure::walk(&source, &[import.snapshot], |_| Ok(false)) {
                report.problem(&at, format!("the imported closure is not whole: {e}"));
            }
            match store.node(&txn, &import.edge) {
                Ok(Node {
                    payload: Payload::FederationEdge(edge),
                    ..
                }) if edge.universe == *universe.as_bytes() && edge.remote == import.snapshot => {}
                Ok(_) => report.problem(&at, format!("{} is not its federation edge", import.edge)),
                Err(e) => report.problem(&at, format!("its federation edge is unreadable: {e}")),
            }
        }
    }
    Ok(())
}

/// The publish log against the signed head, and the published closures against the index.
fn check_published(repo: &Repository, report: &mut FsckReport) -> Result<()> {
    let store = repo.store();
    let txn = store.read()?;
    let Some(head) = publish::head(store, &txn)? else {
        return Ok(());
    };
    let at = "publish log";
    let log = match publish::entries(store, &txn) {
        Ok(log) => log,
        Err(e) => {
            report.problem(at, e.to_string());
            return Ok(());
        }
    };
    let leaves = log
        .iter()
        .map(publish::Entry::leaf)
        .collect::<Result<Vec<_>>>()?;
    if leaves.len() as u64 != head.head.size || merkle::root(&leaves) != head.head.root {
        report.problem(at, "the log does not hash to the signed head's root");
    }
    // A replica holds no key: it checks the head against the recorded public key only.
    if let Ok(identity) = UniverseIdentity::load(repo.jit_dir()) {
        if let Err(e) = head.verify(&identity.verifying_key().to_bytes()) {
            report.problem(at, format!("the signed head does not verify: {e}"));
        }
    }
    let dag = Dag::new(store, &txn);
    for entry in &log {
        match closure::walk(&dag, &[entry.snapshot], |_| Ok(false)) {
            Ok(ids) => {
                for id in ids {
                    if !visible::contains(store, &txn, &id)? {
                        report.problem(
                            format!("{at} entry {}", entry.seq),
                            format!("{id} supports it but is not shown to other universes"),
                        );
                        break;
                    }
                }
            }
            Err(e) => report.problem(format!("{at} entry {}", entry.seq), e.to_string()),
        }
    }
    Ok(())
}
