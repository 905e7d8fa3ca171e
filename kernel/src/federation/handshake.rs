//! Stages 1–2, the importing side: a signed hello, a signed accept, and what it proves.
//!
//! 1. The hello names this universe, the version of its identity whose key signs it, the
//!    protocol, its capabilities and policy, and a fresh nonce; the chain of this universe's
//!    identity documents travels with it.
//! 2. The answer's claimed universe is checked against the deny list before anything of it is
//!    looked up. Its identity chain must continue the one held (each version signed by the one
//!    before: a rotated key is followed, a replayed older version is refused `replayed`, a
//!    second document for a version held is `equivocation` and quarantines); on first contact it
//!    must start at version 1.
//! 3. The accept must be signed by that identity's key, name this universe as its peer and the
//!    hello it answers by hash, and carry the capabilities both share.
//! 4. The verified identity and the endpoint are recorded ([`super::known`]).

use std::collections::BTreeMap;

use jit_proto::federation::{self as proto, Accept, Hello, Statement, CAPABILITIES, PROTOCOL};
use jit_proto::identity::{IdentityDoc, SignedIdentity};
use rand::RngCore;
use serde_bytes::{ByteArray, ByteBuf};
use uuid::Uuid;

use super::known::{self, Known};
use super::serve::decode_chain;
use super::wire::{HelloReply, HelloRequest};
use super::{peers, quarantine, refusal, refused};
use crate::command::Operation;
use crate::error::{Code, Error, Result};
use crate::identity::UniverseIdentity;
use crate::repo::Repository;
use crate::sync::{wire as sync_wire, Remote};

/// A session with another universe, after a verified accept.
#[derive(Debug, Clone)]
pub struct Session {
    /// The other universe.
    pub universe: Uuid,
    /// Its identity, verified.
    pub identity: IdentityDoc,
    /// The token its later requests carry.
    pub token: Vec<u8>,
    /// The accept, verified.
    pub accept: Accept,
    /// Whether this hello was the first contact with it.
    pub first_contact: bool,
}

/// The rules this universe applies as an importer, sent in every hello.
pub fn policy() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("imports".to_owned(), "published-closures".to_owned()),
        ("verifies".to_owned(), "every-node".to_owned()),
    ])
}

/// The identity a universe presents, checked against the one held: returns the verified
/// latest document and whether it is new (first contact or a rotation).
pub(crate) fn continue_chain(
    held: Option<&SignedIdentity>,
    chain: &[SignedIdentity],
) -> Result<(SignedIdentity, bool)> {
    let latest = chain
        .last()
        .ok_or_else(|| refusal(Code::Malformed, "an empty identity chain"))?;
    let Some(held) = held else {
        SignedIdentity::verify_chain(chain).map_err(refused)?;
        return Ok((latest.clone(), true));
    };
    if latest.doc.version == held.doc.version && latest == held {
        return Ok((held.clone(), false));
    }
    // Each version above the one held must be signed by its predecessor: a version at or below
    // it is refused (replayed, or equivocation when it differs from the one held).
    let mut known = held.doc.clone();
    let newer: Vec<&SignedIdentity> = chain
        .iter()
        .filter(|d| d.doc.version > held.doc.version)
        .collect();
    if newer.is_empty() {
        latest.verify_after(Some(&held.doc)).map_err(refused)?;
    }
    for next in newer {
        known = next.verify_after(Some(&known)).map_err(refused)?.clone();
    }
    Ok((latest.clone(), true))
}

/// Says hello to the universe behind `remote` and verifies its accept. `endpoint` is recorded
/// as where it was reached. A denied universe is refused (`forbidden`) before anything of it is
/// looked up; a quarantined one is refused after the accept verifies.
pub fn hello(
    repo: &Repository,
    remote: &mut dyn Remote,
    endpoint: Option<&str>,
) -> Result<Session> {
    let store = repo.store();
    let me = UniverseIdentity::load(repo.jit_dir())?;
    let my_chain = me.chain()?;
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let hello = Hello {
        universe: ByteArray::new(*me.info.id.as_bytes()),
        identity_version: my_chain.last().map_or(1, |d| d.doc.version),
        protocol: PROTOCOL,
        capabilities: CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
        policy: policy(),
        nonce: ByteArray::new(nonce),
    };
    let sealed = me.seal(&hello)?;
    let request = HelloRequest {
        hello: ByteBuf::from(sealed.clone()),
        identity: my_chain
            .iter()
            .map(|d| d.encode().map(ByteBuf::from))
            .collect::<std::result::Result<_, _>>()?,
    };
    let mut answers = remote.call(vec![(
        Operation::FederationHello,
        sync_wire::to_value(&request)?,
    )])?;
    let answer = answers
        .pop()
        .ok_or_else(|| refusal(Code::SyncFailed, "no answer to the hello"))?;
    let reply: HelloReply = sync_wire::from_value(answer, "federation accept")?;
    let claimed = Accept::claimed(&reply.accept).map_err(refused)?;
    let universe = Uuid::from_bytes(claimed.universe.into_array());
    peers::admit(store, universe)?;

    let chain = decode_chain(&reply.identity)?;
    let held_known = known::get(store, &store.read()?, universe)?;
    let held = match &held_known {
        Some(k) => Some(SignedIdentity::decode(&k.identity).map_err(refused)?),
        None => None,
    };
    let verified = continue_chain(held.as_ref(), &chain);
    let (identity, new_identity) = match verified {
        Ok(found) => found,
        Err(error) => {
            // A second document for a version held is two identities: quarantine. Anything else
            // (a replay, a gap, a bad chain) is refused.
            if held_known.is_some() && error.code() == Code::Equivocation {
                return Err(quarantine::impose(
                    store,
                    universe,
                    &error,
                    chain.last().and_then(|d| d.encode().ok()),
                )?);
            }
            return Err(error);
        }
    };
    if identity.doc.universe != *universe.as_bytes() {
        return Err(refusal(
            Code::OtherUniverse,
            "the accept's identity documents are of another universe",
        ));
    }
    let accept = match Accept::open(&reply.accept, &identity.doc.public_key) {
        Ok(accept) => accept,
        Err(error) => {
            let error = refused(error);
            if held_known.is_some() {
                return Err(quarantine::impose(
                    store,
                    universe,
                    &error,
                    Some(reply.accept.to_vec()),
                )?);
            }
            return Err(error);
        }
    };
    let mismatch = if accept.peer.into_array() != *me.info.id.as_bytes() {
        Some("the accept answers another universe")
    } else if accept.hello.into_array() != *blake3::hash(&sealed).as_bytes() {
        Some("the accept answers another hello")
    } else if accept.identity_version != identity.doc.version {
        Some("the accept is signed under another identity version")
    } else if accept.policy_hash.into_array() != proto::policy_hash(&accept.policy)? {
        Some("the accept's policy hash is not its policy's")
    } else {
        None
    };
    if let Some(reason) = mismatch {
        return Err(refusal(Code::BadSignature, reason));
    }
    quarantine::check(store, universe)?;

    let identity_bytes = identity.encode()?;
    let first_contact = held_known.is_none();
    if new_identity || held_known.as_ref().and_then(|k| k.endpoint.as_deref()) != endpoint {
        store.operation("federation.hello", |op| {
            let mut record = known::get(op.store(), op.txn(), universe)?
                .unwrap_or_else(|| Known::first(identity_bytes.clone(), None));
            record.identity = ByteBuf::from(identity_bytes.clone());
            if let Some(endpoint) = endpoint {
                record.endpoint = Some(endpoint.to_owned());
            }
            known::put(op, universe, &record)
        })?;
    }
    Ok(Session {
        universe,
        identity: identity.doc,
        token: accept.session.to_vec(),
        accept,
        first_contact,
    })
}

impl Session {
    /// Refuses (`unsupported`) unless both sides share `capability`.
    pub fn require(&self, capability: &str) -> Result<()> {
        if self.accept.capabilities.iter().any(|c| c == capability) {
            return Ok(());
        }
        Err(Error::Federation {
            code: Code::Unsupported,
            message: format!(
                "universe {} does not share the capability {capability}",
                self.universe
            ),
        })
    }
}
