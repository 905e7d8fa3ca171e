//! Enrolment: an agent whose key was made elsewhere asks to join, and the universe's owner
//! approves or denies it (`jit agent pending`, `approve`, `deny`).
//!
//! The request is a signed envelope like any plane message (key [`ENROL_KEY`]) whose payload
//! carries the public key it is signed with — so the request proves the sender holds the
//! secret half — and the permissions it asks for. Nothing else about the sender is known, so a
//! request grants nothing: it waits in this module's `agent_requests` table until the owner
//! decides. Asking again is idempotent and is how an agent learns it was approved.
//!
//! Because anyone who reaches the plane may ask, requests are bounded: at most
//! [`MAX_PENDING`] wait at once (more are refused `rate_limited`), and a name another key holds
//! or asked for is refused `name_taken` rather than replaced. A denied request is kept as such,
//! so the agent asking again learns it was denied (state `denied`) instead of waiting forever.

use ed25519_dalek::VerifyingKey;
use heed::types::{Bytes, Str};
use serde::{Deserialize, Serialize};

use super::registry::{register_in, validate_name, AgentRecord, AGENTS};
use super::CREATE_SWS;
use crate::cbor;
use crate::error::{Code, Error, Result};
use crate::log::LogOp;
use crate::store::{Declared, Op, Store, TableDef};
use jit_proto::envelope::{Envelope, MAX_MSG_ID};

/// Agent name → its enrolment request, until the owner approves or denies it.
const REQUESTS: TableDef<Str, Bytes> = TableDef::new("agent_requests", 14);
/// The enrolment requests' table, for the registry.
pub(crate) const REQUESTS_TABLE: Declared = REQUESTS.declared();

/// The plane key an enrolment request is sent (and signed) on.
pub const ENROL_KEY: &str = "jit/agent/enrol";

/// Most requests waiting at once.
pub const MAX_PENDING: usize = 64;

/// Most permissions one request may ask for, and the longest note.
const MAX_PERMISSIONS: usize = 16;
const MAX_NOTE: usize = 256;

/// A request waiting for the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The ed25519 public key the agent signs with.
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    /// What it asks to be allowed.
    pub permissions: Vec<String>,
    /// What it says about itself (for the owner's eyes only).
    pub note: Option<String>,
    /// When it first asked (milliseconds since the epoch, this machine's clock).
    pub at_ms: u64,
    /// The owner denied it: the same key asking again is answered `denied` (and not queued
    /// again); another key may ask for the name.
    #[serde(default)]
    pub denied: bool,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Waiting for the owner.
    Pending,
    /// The name is registered with this key: the agent may send messages.
    Approved,
    /// The owner denied this key's request.
    Denied,
}

/// The payload of an enrolment request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    #[serde(with = "serde_bytes")]
    public_key: Vec<u8>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    note: Option<String>,
}

fn refuse(code: Code, message: impl Into<String>) -> Error {
    Error::Remote {
        code: code.as_str().to_owned(),
        message: message.into(),
        details: None,
    }
}

/// The permissions an agent gets when nobody says otherwise.
pub fn default_permissions() -> Vec<String> {
    vec![CREATE_SWS.to_owned(), "commit:*".to_owned()]
}

fn check_permissions(permissions: &[String]) -> Result<()> {
    if permissions.len() > MAX_PERMISSIONS {
        return Err(refuse(
            Code::Malformed,
            format!("at most {MAX_PERMISSIONS} permissions"),
        ));
    }
    for permission in permissions {
        let known = permission == CREATE_SWS
            || permission
                .strip_prefix("commit:")
                .is_some_and(|branch| !branch.is_empty() && branch.len() <= 255);
        if !known {
            return Err(refuse(
                Code::Malformed,
                format!(
                    "unknown permission {:?} (sws.create, commit:<branch> or commit:*)",
                    permission.chars().take(80).collect::<String>()
                ),
            ));
        }
    }
    Ok(())
}

/// Handles an enrolment request (the envelope's bytes, sent on [`ENROL_KEY`]): checks it and
/// its proof of possession, then records it unless it is already pending or approved. Answers
/// where it stands; refusals carry `malformed`, `bad_signature`, `name_taken` or
/// `rate_limited`, and are audited like other refused plane messages.
pub fn request(store: &Store, bytes: &[u8]) -> Result<Answer> {
    // Decoding and the signature are checked before the writer lock is taken: a flood of bad
    // requests must not hold up the writers. A refusal is audited naming who it claims to be.
    let (name, record) = check(bytes).inspect_err(|error| {
        let claimed = (bytes.len() <= MAX_REQUEST)
            .then(|| Envelope::decode(bytes).ok())
            .flatten()
            .map(|envelope| envelope.sender)
            .filter(|name| validate_name(name).is_ok());
        if let Err(audit_error) = store.audit_by("agent.enrol", claimed.as_deref(), error) {
            tracing::warn!(%audit_error, "could not audit a refused enrolment request");
        }
    })?;
    let public_key = hex::encode(&record.public_key);
    let state = store.operation_by("agent.enrol", Some(&name), |op| {
        record_request(op, &name, record)
    })?;
    Ok(Answer {
        name,
        state,
        public_key,
    })
}

/// The largest enrolment request read (a real one is a few hundred bytes).
const MAX_REQUEST: usize = 16 << 10;

/// The answer to an enrolment request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The name asked for.
    pub name: String,
    /// Where the request stands.
    pub state: State,
    /// The key it asked for (hex).
    pub public_key: String,
}

/// The request's name and what it asks, once its envelope, payload and proof of possession
/// hold.
fn check(bytes: &[u8]) -> Result<(String, Request)> {
    if bytes.len() > MAX_REQUEST {
        return Err(refuse(
            Code::TooLarge,
            format!(
                "an enrolment request of {} bytes exceeds {MAX_REQUEST}",
                bytes.len()
            ),
        ));
    }
    let envelope = Envelope::decode(bytes)
        .map_err(|e| refuse(Code::Malformed, format!("not a canonical envelope: {e}")))?;
    if envelope.msg_id.is_empty() || envelope.msg_id.len() > MAX_MSG_ID {
        return Err(refuse(Code::Malformed, "msg_id must be 1-128 bytes"));
    }
    let name = envelope.sender.clone();
    validate_name(&name).map_err(|e| refuse(Code::Malformed, e.to_string()))?;
    let ask: Ask = cbor::from_value(envelope.payload.clone())
        .map_err(|e| refuse(Code::Malformed, format!("bad enrolment request: {e}")))?;
    let key = <[u8; 32]>::try_from(ask.public_key.as_slice())
        .ok()
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| {
            refuse(
                Code::Malformed,
                "public_key must be an ed25519 key (32 bytes)",
            )
        })?;
    if envelope.sig.is_empty() {
        return Err(refuse(Code::Unsigned, "the envelope carries no signature"));
    }
    if !envelope.signature_holds(ENROL_KEY, &key) {
        return Err(refuse(
            Code::BadSignature,
            "the request is not signed by the key it asks to register",
        ));
    }
    let permissions = ask.permissions.unwrap_or_else(default_permissions);
    check_permissions(&permissions)?;
    if ask.note.as_ref().is_some_and(|note| note.len() > MAX_NOTE) {
        return Err(refuse(
            Code::Malformed,
            format!("the note is longer than {MAX_NOTE} bytes"),
        ));
    }
    let request = Request {
        public_key: key.as_bytes().to_vec(),
        permissions,
        note: ask.note,
        at_ms: now_ms(),
        denied: false,
    };
    Ok((name, request))
}

/// Records a checked request unless the name is already registered or asked for.
fn record_request(op: &mut Op<'_>, name: &str, request: Request) -> Result<State> {
    let store = op.store();
    if let Some(raw) = store.table(&AGENTS).get(op.txn(), name)? {
        let agent: AgentRecord = cbor::from_canonical_bytes(raw)?;
        return if agent.public_key == request.public_key {
            Ok(State::Approved)
        } else {
            Err(refuse(
                Code::NameTaken,
                format!("an agent named {name:?} is registered with another key"),
            ))
        };
    }
    if let Some(raw) = store.table(&REQUESTS).get(op.txn(), name)? {
        let earlier: Request = cbor::from_canonical_bytes(raw)?;
        match (earlier.public_key == request.public_key, earlier.denied) {
            (true, true) => return Ok(State::Denied),
            (true, false) => return Ok(State::Pending),
            (false, false) => {
                return Err(refuse(
                    Code::NameTaken,
                    format!("another key already asked to enrol as {name:?}"),
                ))
            }
            // Denied for another key: the name is free again.
            (false, true) => {}
        }
    }
    if pending_in(store, op.txn())?.len() >= MAX_PENDING {
        return Err(refuse(
            Code::RateLimited,
            format!("{MAX_PENDING} enrolment requests are already waiting for the owner"),
        ));
    }
    let bytes = cbor::to_canonical_bytes(&request)?;
    store.table(&REQUESTS).put(op.wtxn(), name, &bytes)?;
    op.log(LogOp::AgentRequested {
        name: name.to_owned(),
        public_key: hex::encode(&request.public_key),
    })?;
    Ok(State::Pending)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every waiting request, by name (denied ones are not waiting).
pub fn pending(store: &Store) -> Result<Vec<(String, Request)>> {
    pending_in(store, &store.read()?)
}

/// [`pending`], read in `txn`.
fn pending_in(store: &Store, txn: &crate::store::ReadTxn<'_>) -> Result<Vec<(String, Request)>> {
    let mut out = Vec::new();
    for entry in store.table(&REQUESTS).iter(txn)? {
        let (name, raw) = entry?;
        let request: Request = cbor::from_canonical_bytes(raw)?;
        if !request.denied {
            out.push((name.to_owned(), request));
        }
    }
    Ok(out)
}

fn no_request(name: &str) -> Error {
    Error::InvalidInput(format!(
        "no enrolment request from {name:?} is waiting (jit agent pending lists them)"
    ))
}

/// Approves `name`'s request: registers its key with the permissions it asked for (or
/// `permissions`, when the owner gives them) and drops the request, in one operation.
pub fn approve(store: &Store, name: &str, permissions: Option<Vec<String>>) -> Result<Request> {
    if let Some(permissions) = &permissions {
        check_permissions(permissions)?;
    }
    store.operation("agent.approve", |op| {
        let mut request = waiting(op, name)?;
        if let Some(permissions) = permissions {
            request.permissions = permissions;
        }
        let record = AgentRecord {
            public_key: request.public_key.clone(),
            permissions: request.permissions.clone(),
        };
        op.store().table(&REQUESTS).delete(op.wtxn(), name)?;
        register_in(op, name, &record)?;
        Ok(request)
    })
}

/// `name`'s request, if it is waiting (not denied).
fn waiting(op: &Op<'_>, name: &str) -> Result<Request> {
    let raw = op
        .store()
        .table(&REQUESTS)
        .get(op.txn(), name)?
        .ok_or_else(|| no_request(name))?;
    let request: Request = cbor::from_canonical_bytes(raw)?;
    if request.denied {
        return Err(no_request(name));
    }
    Ok(request)
}

/// Denies `name`'s request: it waits no more, the same key asking again is answered `denied`,
/// and another key may ask for the name.
pub fn deny(store: &Store, name: &str) -> Result<()> {
    store.operation("agent.deny", |op| {
        let mut request = waiting(op, name)?;
        request.denied = true;
        let bytes = cbor::to_canonical_bytes(&request)?;
        op.store().table(&REQUESTS).put(op.wtxn(), name, &bytes)?;
        op.log(LogOp::AgentDenied {
            name: name.to_owned(),
        })?;
        Ok(())
    })
}
