//! The other universes this one knows, and what it allows them: a trust level per universe
//! (`trusted`, `semi-trusted`, `untrusted`; RFC-0021's trust levels) and a deny list. A denied
//! universe is refused before anything of it is looked up ([`admit`]): the refusal leaves an
//! audit record and nothing else.
//!
//! Kept in this module's `federation_peers` table: universe id (16 bytes) → canonical CBOR
//! `{denied: bool, trust: text}`.

use ciborium::value::Value;
use heed::types::Bytes;
use uuid::Uuid;

use crate::cbor::{self, fields};
use crate::error::{Code, Error, Result};
use crate::node::Trust;
use crate::store::{Declared, ReadTxn, Store, TableDef};

/// Universe id → the policy for it.
const PEERS: TableDef<Bytes, Bytes> = TableDef::new("federation_peers", 8);
/// The peers table, for the registry.
pub(crate) const PEERS_TABLE: Declared = PEERS.declared();

/// The audit action of a refused universe.
const REFUSED: &str = "federation.refused";

/// What this universe allows another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The other universe.
    pub universe: Uuid,
    /// How far it is trusted (an unknown universe is untrusted).
    pub trust: Trust,
    /// Whether it is refused outright.
    pub denied: bool,
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

impl Peer {
    fn encode(&self) -> Result<Vec<u8>> {
        Ok(cbor::encode(&Value::Map(vec![
            (text("denied"), Value::Bool(self.denied)),
            (text("trust"), text(self.trust.as_str())),
        ]))?)
    }

    fn decode(universe: Uuid, bytes: &[u8]) -> Result<Peer> {
        let value = cbor::decode(bytes)?;
        let map = fields::as_map(&value, "federation peer")?;
        fields::only(map, &["denied", "trust"])?;
        let denied = matches!(fields::require(map, "denied")?, Value::Bool(true));
        let trust = fields::as_text(fields::require(map, "trust")?, "trust")?;
        let trust = Trust::parse(trust).ok_or_else(|| {
            Error::InvalidInput(format!("the stored trust level {trust:?} is unknown"))
        })?;
        Ok(Peer {
            universe,
            trust,
            denied,
        })
    }
}

/// The policy for `universe` (an unknown universe: untrusted, not denied).
pub fn get(store: &Store, txn: &ReadTxn<'_>, universe: Uuid) -> Result<Peer> {
    match store.table(&PEERS).get(txn, universe.as_bytes())? {
        Some(bytes) => Peer::decode(universe, bytes),
        None => Ok(Peer {
            universe,
            trust: Trust::Untrusted,
            denied: false,
        }),
    }
}

/// Every universe with a policy, by id.
pub fn list(store: &Store, txn: &ReadTxn<'_>) -> Result<Vec<Peer>> {
    let mut out = Vec::new();
    for item in store.table(&PEERS).iter(txn)? {
        let (key, bytes) = item?;
        let id = Uuid::from_slice(key)
            .map_err(|_| Error::InvalidInput("a federation peer key is not a UUID".into()))?;
        out.push(Peer::decode(id, bytes)?);
    }
    Ok(out)
}

fn put(store: &Store, action: &str, peer: Peer) -> Result<Peer> {
    store.operation(action, |op| {
        let bytes = peer.encode()?;
        op.store()
            .table(&PEERS)
            .put(op.wtxn(), peer.universe.as_bytes(), &bytes)?;
        Ok(peer)
    })
}

/// `jit federation trust UNIVERSE LEVEL`: sets the trust level (and lifts a deny).
pub fn trust(store: &Store, universe: Uuid, trust: Trust) -> Result<Peer> {
    put(
        store,
        "federation.trust",
        Peer {
            universe,
            trust,
            denied: false,
        },
    )
}

/// `jit federation deny UNIVERSE`: refuses the universe from now on.
pub fn deny(store: &Store, universe: Uuid) -> Result<Peer> {
    let trust = get(store, &store.read()?, universe)?.trust;
    put(
        store,
        "federation.deny",
        Peer {
            universe,
            trust,
            denied: true,
        },
    )
}

/// Admits `universe` to any exchange, or refuses it (`forbidden`) with an audit record if it is
/// denied. Called first, before anything of it is looked up or read.
pub fn admit(store: &Store, universe: Uuid) -> Result<Peer> {
    let peer = get(store, &store.read()?, universe)?;
    if peer.denied {
        let error = Error::Remote {
            code: Code::Forbidden.as_str().to_owned(),
            message: format!("universe {universe} is denied (jit federation trust lifts it)"),
            details: None,
        };
        store.audit(REFUSED, &error)?;
        return Err(error);
    }
    Ok(peer)
}
