//! The agent registry: who may sign plane messages — a name, an ed25519 public key and
//! permissions — kept in this module's `agents` table.

use ed25519_dalek::VerifyingKey;
use heed::types::{Bytes, Str};
use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::error::{Error, Result};
use crate::log::LogOp;
use crate::store::{Declared, Op, Store, TableDef};

/// Agent name → registered identity and permissions.
pub(super) const AGENTS: TableDef<Str, Bytes> = TableDef::new("agents", 2);
/// The agents' table, for the registry.
pub(crate) const AGENTS_TABLE: Declared = AGENTS.declared();

/// The permission to create SWS.
pub const CREATE_SWS: &str = "sws.create";

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Its ed25519 public key.
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    /// What it may do: `sws.create`, `commit:<branch>` or `commit:*`.
    pub permissions: Vec<String>,
}

impl AgentRecord {
    /// Whether the agent holds `permission` (`commit:*` holds every `commit:<branch>`).
    pub fn may(&self, permission: &str) -> bool {
        self.permissions
            .iter()
            .any(|p| p == permission || (p == "commit:*" && permission.starts_with("commit:")))
    }
}

/// Checks an agent name: 1–64 of `[A-Za-z0-9._-]`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "invalid agent name {:?}: 1-64 letters, digits, '.', '_' or '-'",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// Registers (or re-keys) an agent.
pub fn register(
    store: &Store,
    name: &str,
    public_key: &VerifyingKey,
    permissions: Vec<String>,
) -> Result<()> {
    validate_name(name)?;
    let record = AgentRecord {
        public_key: public_key.as_bytes().to_vec(),
        permissions,
    };
    store.operation("agent.register", |op| register_in(op, name, &record))
}

/// Registers (or re-keys) `name` as `record` inside `op`, with its log record.
pub(super) fn register_in(op: &mut Op<'_>, name: &str, record: &AgentRecord) -> Result<()> {
    let bytes = cbor::to_canonical_bytes(record)?;
    let store = op.store();
    store.table(&AGENTS).put(op.wtxn(), name, &bytes)?;
    op.log(LogOp::AgentRegistered {
        name: name.to_owned(),
        public_key: hex::encode(&record.public_key),
    })?;
    Ok(())
}

/// Revokes an agent: its registration is removed, so its messages are refused
/// (`unknown_agent`) from now on. What it did stays.
pub fn revoke(store: &Store, name: &str) -> Result<()> {
    store.operation("agent.revoke", |op| {
        let store = op.store();
        if store.table(&AGENTS).get(op.txn(), name)?.is_none() {
            return Err(Error::InvalidInput(format!(
                "no agent is registered as {name:?}"
            )));
        }
        store.table(&AGENTS).delete(op.wtxn(), name)?;
        op.log(LogOp::AgentRevoked {
            name: name.to_owned(),
        })?;
        Ok(())
    })
}

/// Every registered agent, by name.
pub fn list(store: &Store) -> Result<Vec<(String, AgentRecord)>> {
    let txn = store.read()?;
    let mut out = Vec::new();
    for entry in store.table(&AGENTS).iter(&txn)? {
        let (name, raw) = entry?;
        out.push((name.to_owned(), cbor::from_canonical_bytes(raw)?));
    }
    Ok(out)
}

/// Looks an agent up.
pub fn get(store: &Store, name: &str) -> Result<Option<AgentRecord>> {
    let txn = store.read()?;
    match store.table(&AGENTS).get(&txn, name)? {
        Some(raw) => Ok(Some(cbor::from_canonical_bytes(raw)?)),
        None => Ok(None),
    }
}

/// A message that passed every check that does not need the kernel's state of its target;
/// its signer is the sender's registration.
pub type Verified = jit_proto::verify::Checked<AgentRecord>;

/// Every registered agent's name.
pub(super) fn names(store: &Store, txn: &heed::RoTxn<'_, heed::WithoutTls>) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in store.table(&AGENTS).iter(txn)? {
        names.push(entry?.0.to_owned());
    }
    Ok(names)
}
