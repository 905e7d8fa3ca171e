//! The store's check: replays the log against the tables and checks every invariant, naming
//! exactly which log record, node or ref is wrong.

use std::collections::{BTreeMap, HashMap};

use crate::dag;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::log::{self, LogOp};
use crate::node::{Node, NodeType};
use crate::refs::{RefKind, RefName};
use crate::store::Store;

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where: `log record 12`, `node <id>`, `ref heads/main`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

/// The result of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FsckReport {
    /// Log records read.
    pub log_records: u64,
    /// Nodes checked.
    pub nodes: u64,
    /// Refs checked.
    pub refs: u64,
    /// Of the nodes, those a sync received and verified but has not appended yet (stored
    /// without a header: [`crate::sync::staging`]); their bytes are checked like any node's.
    pub received: u64,
    /// Everything found wrong; empty when the store is sound.
    pub problems: Vec<Problem>,
}

impl FsckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    pub(super) fn problem(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            location: location.into(),
            message: message.into(),
        });
    }
}

/// Problems outside the store in the universe's `.jit` directory `jit_dir`: damaged plane
/// journals that recovery kept aside (their unreadable records held acknowledged messages that
/// are lost), reported until the copy is removed.
pub fn journal_problems(jit_dir: &std::path::Path) -> Vec<Problem> {
    let copies = match crate::journal::damaged_copies(jit_dir) {
        Ok(copies) => copies,
        Err(error) => {
            return vec![Problem {
                location: "plane journal".into(),
                message: format!("cannot look for damaged journals: {error}"),
            }]
        }
    };
    copies
        .into_iter()
        .map(|(path, damaged)| Problem {
            location: "plane journal".into(),
            message: match damaged {
                Ok(records) => format!(
                    "{records} record(s) could not be read after a crash: the acknowledged \
                     messages in them are lost; the damaged journal is kept at {} (remove it \
                     once inspected)",
                    path.display()
                ),
                Err(error) => format!(
                    "a damaged journal is kept at {} and cannot be read ({error}); remove it \
                     once inspected",
                    path.display()
                ),
            },
        })
        .collect()
}

/// Checks the whole store.
pub fn fsck(store: &Store) -> Result<FsckReport> {
    let txn = store.read()?;
    let mut report = FsckReport::default();

    // 1. Replay the log: checksums, order, chain, and the ref history it implies.
    let mut created: HashMap<NodeId, u64> = HashMap::new();
    let mut replayed_refs: BTreeMap<String, NodeId> = BTreeMap::new();
    let mut expected_seq = 1u64;
    let mut prev = [0u8; 32];
    let mut moves = Vec::new();
    for entry in store.log_entries_raw(&txn)? {
        let (key, stored) = entry?;
        report.log_records += 1;
        let Ok(seq_bytes) = <[u8; 8]>::try_from(key) else {
            report.problem(
                format!("log key {}", hex::encode(key)),
                "key is not a sequence number",
            );
            continue;
        };
        let seq = u64::from_be_bytes(seq_bytes);
        let at = format!("log record {seq}");
        if seq != expected_seq {
            report.problem(
                &at,
                format!("expected record {expected_seq} here: records are missing"),
            );
        }
        expected_seq = seq.saturating_add(1);
        let (record, checksum) = match log::verify_record(seq, stored) {
            Ok(ok) => ok,
            Err(Error::CorruptLog { reason, .. }) => {
                report.problem(&at, reason);
                if stored.len() >= 32 {
                    prev.copy_from_slice(&stored[..32]);
                }
                continue;
            }
            Err(other) => return Err(other),
        };
        if record.prev != prev {
            report.problem(&at, "does not chain to the previous record's checksum");
        }
        prev = checksum;
        if let LogOp::RefUpdated { from, to, .. } = &record.op {
            moves.push((seq, *from, *to));
        }
        for target in ref_targets(&record.op) {
            if !created.contains_key(&target) {
                report.problem(
                    &at,
                    format!("points a ref at {target} before the log created it"),
                );
            }
        }
        replay(
            &mut report,
            &at,
            seq,
            record.op,
            &mut created,
            &mut replayed_refs,
        );
    }

    // 2. Every node: hash, canonical encoding, invariants, and that the log created it in order.
    for entry in store.node_entries(&txn)? {
        let (key, stored) = entry?;
        report.nodes += 1;
        let Some(id) = NodeId::from_slice(key) else {
            report.problem(
                format!("node key {}", hex::encode(key)),
                "key is not a 32-byte id",
            );
            continue;
        };
        let at = format!("node {id}");
        // The stored representation is rebuilt (its delta bases with it) and hashed.
        let bytes = match store.node_bytes(&txn, &id) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            Err(Error::Corrupt { actual, .. }) => {
                report.problem(
                    &at,
                    format!("content does not hash to its id (hashes to {actual})"),
                );
                continue;
            }
            Err(e) => {
                report.problem(&at, format!("{e} ({} bytes stored)", stored.len()));
                continue;
            }
        };
        let node = match Node::decode(&bytes) {
            Ok(node) => node,
            Err(e) => {
                report.problem(&at, e.to_string());
                continue;
            }
        };
        match store.header(&txn, &id) {
            Ok(Some(header)) if header == node.header() => {}
            Ok(Some(header)) => report.problem(
                &at,
                format!(
                    "header index says {header:?}, the node is {:?}",
                    node.header()
                ),
            ),
            Ok(None) => {
                report.received += 1;
                continue;
            }
            Err(e) => report.problem(&at, e.to_string()),
        }
        if let Err(e) = dag::validate_in_store(store, &txn, &id, &node) {
            report.problem(&at, e.to_string());
        }
        let Some(&born) = created.get(&id) else {
            report.problem(&at, "stored but never logged as created");
            continue;
        };
        let deps = node
            .parents
            .iter()
            .copied()
            .chain(node.references().into_iter().map(|(t, _)| t));
        for dep in deps {
            if created.get(&dep).is_some_and(|&dep_born| dep_born > born) {
                report.problem(&at, format!("logged before {dep}, which it depends on"));
            }
        }
    }
    for entry in store.header_entries(&txn)? {
        let (key, _) = entry?;
        if store.nodes.get(&txn, key)?.is_none() {
            report.problem(
                format!("header {}", hex::encode(key)),
                "indexes a node that is not stored",
            );
        }
    }
    for (id, seq) in &created {
        if !store.holds_bytes(&txn, id.as_bytes())? {
            report.problem(
                format!("log record {seq}"),
                format!("created node {id}, which is missing from the store"),
            );
        }
    }

    // Branch moves in the log are fast-forwards.
    for (seq, from, to) in moves {
        let forward = store.has_node(&txn, &from)?
            && store.has_node(&txn, &to)?
            && dag::is_ancestor(store, &txn, &from, &to).unwrap_or(false);
        if !forward {
            report.problem(
                format!("log record {seq}"),
                format!("moves a branch from {from} to {to}, which is not a fast-forward"),
            );
        }
    }

    // 3. Refs: valid names, existing targets of the right type, and exactly the state the log
    //    replays to.
    let mut stored_refs = Vec::new();
    for entry in store.ref_entries_raw(&txn)? {
        let (key, raw) = entry?;
        report.refs += 1;
        let name = String::from_utf8_lossy(key).into_owned();
        let at = format!("ref {name}");
        let Some(target) = NodeId::from_slice(raw) else {
            report.problem(&at, "holds a malformed target");
            continue;
        };
        stored_refs.push((name.clone(), target));
        let kind = match RefName::parse_full(&name) {
            Ok(parsed) => Some(parsed.kind()),
            Err(e) => {
                report.problem(&at, e.to_string());
                None
            }
        };
        match (store.header(&txn, &target)?, kind) {
            (None, _) => report.problem(&at, format!("points at missing node {target}")),
            (Some(h), Some(RefKind::Branch))
                if !matches!(h.node_type, NodeType::Snapshot | NodeType::Root) =>
            {
                report.problem(
                    &at,
                    format!("a branch points at a {}", h.node_type.as_str()),
                )
            }
            (Some(h), Some(RefKind::Tag))
                if !matches!(
                    h.node_type,
                    NodeType::Snapshot | NodeType::Rewrite | NodeType::Provenance
                ) =>
            {
                report.problem(&at, format!("a tag points at a {}", h.node_type.as_str()))
            }
            _ => {}
        }
        match replayed_refs.get(&name) {
            Some(expected) if *expected == target => {}
            Some(expected) => {
                report.problem(&at, format!("is {target} but the log says {expected}"))
            }
            None => report.problem(&at, "exists but the log never created it"),
        }
    }
    for (name, target) in &replayed_refs {
        if !stored_refs.iter().any(|(n, _)| n == name) {
            report.problem(
                format!("ref {name}"),
                format!("missing; the log says it points at {target}"),
            );
        }
    }
    Ok(report)
}

/// The nodes a log record points refs at.
fn ref_targets(op: &LogOp) -> Vec<NodeId> {
    match op {
        LogOp::RefCreated { target, .. } => vec![*target],
        LogOp::RefUpdated { to, .. } => vec![*to],
        _ => Vec::new(),
    }
}

fn replay(
    report: &mut FsckReport,
    at: &str,
    seq: u64,
    op: LogOp,
    created: &mut HashMap<NodeId, u64>,
    refs: &mut BTreeMap<String, NodeId>,
) {
    match op {
        LogOp::NodeCreated { id, .. } => {
            if created.insert(id, seq).is_some() {
                report.problem(at, format!("node {id} is created a second time"));
            }
        }
        LogOp::NodesCreated { ids } => {
            for id in ids {
                if created.insert(id, seq).is_some() {
                    report.problem(at, format!("node {id} is created a second time"));
                }
            }
        }
        LogOp::RefCreated { name, target } => {
            if refs.insert(name.clone(), target).is_some() {
                report.problem(at, format!("creates ref {name}, which already exists"));
            }
        }
        LogOp::RefUpdated { name, from, to } => {
            if RefName::parse_full(&name).is_ok_and(|n| n.kind() == RefKind::Tag) {
                report.problem(at, format!("moves tag {name}"));
            }
            match refs.insert(name.clone(), to) {
                Some(current) if current == from => {}
                Some(current) => report.problem(
                    at,
                    format!("moves {name} from {from}, but it was at {current}"),
                ),
                None => report.problem(at, format!("moves {name}, which does not exist")),
            }
        }
        LogOp::RefDeleted {
            name,
            target,
            forced,
        } => {
            if RefName::parse_full(&name).is_ok_and(|n| n.kind() == RefKind::Tag) && !forced {
                report.problem(at, format!("deletes tag {name} without the override"));
            }
            match refs.remove(&name) {
                Some(current) if current == target => {}
                Some(current) => report.problem(
                    at,
                    format!("deletes {name} at {target}, but it was at {current}"),
                ),
                None => report.problem(at, format!("deletes {name}, which does not exist")),
            }
        }
        LogOp::Audit { .. }
        | LogOp::SwsCreated { .. }
        | LogOp::SwsPatched { .. }
        | LogOp::SwsConflicted { .. }
        | LogOp::SwsReanchored { .. }
        | LogOp::SwsCommitted { .. }
        | LogOp::SwsDiscarded { .. }
        | LogOp::AgentRegistered { .. }
        | LogOp::AgentRevoked { .. }
        | LogOp::AgentRequested { .. }
        | LogOp::AgentDenied { .. }
        | LogOp::SwsDelegated { .. }
        | LogOp::Synced { .. } => {}
    }
}
