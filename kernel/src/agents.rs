//! Agents on the message plane (RFC-0008, RFC-0017, RFC-0020): identities, signed envelopes, and
//! delivery with exactly-once effect.
//!
//! - An agent is a name with an ed25519 public key and permissions, registered in the store
//!   (`jit agent new`). Its secret key stays with the agent.
//! - Every message is a canonical CBOR envelope `{sender, ts, msg_id, payload, sig}`; `sig` signs
//!   the canonical CBOR of `{key, msg_id, payload, sender, ts}`, where `key` is the message's key
//!   expression (without namespace), binding it to its topic.
//! - Delivery verifies, authorizes (an SWS is written, committed, discarded and read only by its
//!   owner or a delegate; creating an SWS and committing to a branch are permissions), rejects
//!   replays (a reused `msg_id` with other content, or a `ts` not above the sender's last), and
//!   runs the write in one transaction together with the record of its `msg_id` and answer — so a
//!   retried message is answered with the original result and never applied twice.
//!   Every refusal is an error answer plus an audit record, with no partial effect.

use ciborium::value::Value;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::cbor::{self, fields};
use crate::collapse::{self, Outcome};
use crate::error::{Error, Result};
use crate::log::LogOp;
use crate::patch::Patch;
use crate::refs::RefName;
use crate::repo::Repository;
use crate::rpc::protocol::{ErrorBody, Response};
use crate::rpc::service::{Committed, CreateArgs, Declared};
use crate::store::{Op, Store};
use crate::sws::{self, SwsId};

/// Largest envelope accepted.
pub const MAX_MESSAGE: usize = 4 << 20;
/// Longest `msg_id` accepted.
const MAX_MSG_ID: usize = 128;
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
    fn may(&self, permission: &str) -> bool {
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
    store.operation("agent.register", |op| {
        let bytes = cbor::to_canonical_bytes(&record)?;
        let store = op.store();
        store.agents.put(op.wtxn(), name, &bytes)?;
        op.log(LogOp::AgentRegistered {
            name: name.to_owned(),
            public_key: hex::encode(public_key.as_bytes()),
        })?;
        Ok(())
    })
}

/// Looks an agent up.
pub fn get(store: &Store, name: &str) -> Result<Option<AgentRecord>> {
    let txn = store.read()?;
    match store.agents.get(&txn, name)? {
        Some(raw) => Ok(Some(cbor::from_canonical_bytes(raw)?)),
        None => Ok(None),
    }
}

/// A message on the plane.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The agent.
    pub sender: String,
    /// The sender's logical clock; strictly increasing per sender.
    pub ts: u64,
    /// Unique per sender; a retry repeats it.
    pub msg_id: String,
    /// The operation's arguments.
    pub payload: Value,
    /// ed25519 signature over [`Envelope::signing_bytes`].
    pub sig: Vec<u8>,
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

impl Envelope {
    /// The bytes the signature covers: canonical CBOR of `{key, msg_id, payload, sender, ts}`.
    pub fn signing_bytes(&self, key: &str) -> Result<Vec<u8>> {
        Ok(cbor::encode(&Value::Map(vec![
            (text("key"), text(key)),
            (text("msg_id"), text(&self.msg_id)),
            (text("payload"), self.payload.clone()),
            (text("sender"), text(&self.sender)),
            (text("ts"), Value::Integer(self.ts.into())),
        ]))?)
    }

    /// Builds and signs an envelope for topic `key`.
    pub fn signed(
        key: &str,
        sender: &str,
        ts: u64,
        msg_id: String,
        payload: Value,
        signing: &SigningKey,
    ) -> Result<Envelope> {
        let mut envelope = Envelope {
            sender: sender.to_owned(),
            ts,
            msg_id,
            payload,
            sig: Vec::new(),
        };
        envelope.sig = signing
            .sign(&envelope.signing_bytes(key)?)
            .to_bytes()
            .to_vec();
        Ok(envelope)
    }

    /// Canonical CBOR of the envelope.
    pub fn encode(&self) -> Result<Vec<u8>> {
        Ok(cbor::encode(&Value::Map(vec![
            (text("sender"), text(&self.sender)),
            (text("ts"), Value::Integer(self.ts.into())),
            (text("msg_id"), text(&self.msg_id)),
            (text("payload"), self.payload.clone()),
            (text("sig"), Value::Bytes(self.sig.clone())),
        ]))?)
    }

    /// Strictly decodes an envelope (a missing `sig` decodes as empty: refused as unsigned).
    pub fn decode(bytes: &[u8]) -> Result<Envelope> {
        let value = cbor::decode(bytes)?;
        let map = fields::as_map(&value, "envelope")?;
        fields::only(map, &["sender", "ts", "msg_id", "payload", "sig"])?;
        Ok(Envelope {
            sender: fields::as_text(fields::require(map, "sender")?, "sender")?.to_owned(),
            ts: fields::as_u64(fields::require(map, "ts")?, "ts")?,
            msg_id: fields::as_text(fields::require(map, "msg_id")?, "msg_id")?.to_owned(),
            payload: fields::require(map, "payload")?.clone(),
            sig: match fields::get(map, "sig") {
                Some(sig) => fields::as_bytes(sig, "sig")?.to_vec(),
                None => Vec::new(),
            },
        })
    }
}

/// What a message asks for, from its key expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `jit/kernel/create`: a new SWS owned by the sender.
    Create,
    /// `jit/sws/<id>/<verb>` with verb `patch`, `commit`, `discard`, `status` or `analyze`.
    Sws(SwsId, String),
}

/// Parses a key expression (namespace already stripped).
pub fn target(key: &str) -> Option<Target> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["jit", "kernel", "create"] => Some(Target::Create),
        ["jit", "sws", id, verb]
            if matches!(*verb, "patch" | "commit" | "discard" | "status" | "analyze") =>
        {
            Some(Target::Sws(id.parse().ok()?, (*verb).to_owned()))
        }
        _ => None,
    }
}

/// A refusal with its stable code.
fn refuse(code: &str, message: impl Into<String>) -> Response {
    Response::Err(ErrorBody {
        code: code.into(),
        message: message.into(),
        details: None,
    })
}

/// A message that passed every check that does not need the kernel's state of its target.
pub struct Verified {
    /// The parsed envelope.
    pub envelope: Envelope,
    /// What it targets.
    pub target: Target,
    /// The sender's record.
    pub agent: AgentRecord,
    /// Digest of the signed content (to tell a retry from a replay).
    pub digest: [u8; 32],
}

/// Size, shape, signature, sender. Refusals are audited.
pub fn verify(store: &Store, key: &str, bytes: &[u8]) -> std::result::Result<Verified, Response> {
    verify_all(store, &[(key, bytes)])
        .pop()
        .unwrap_or_else(|| Err(refuse("internal", "no verdict")))
}

/// [`verify`] for many messages at once, answering in the same order. The signatures are
/// checked together with ed25519 batch verification (about twice as fast per message as one
/// by one); if the batch fails, each is checked alone to find the culprits. Every check —
/// batch or alone — uses the same (cofactored) equation, so whether a message is accepted
/// never depends on what it arrived with.
pub fn verify_all(
    store: &Store,
    messages: &[(&str, &[u8])],
) -> Vec<std::result::Result<Verified, Response>> {
    let mut verdicts: Vec<_> = messages
        .iter()
        .map(|(key, bytes)| prepare(store, key, bytes))
        .collect();
    let signed: Vec<&Prepared> = verdicts.iter().filter_map(|v| v.as_ref().ok()).collect();
    if signed.is_empty() || signatures_hold(&signed) {
        return verdicts
            .into_iter()
            .map(|verdict| verdict.map(Prepared::accept))
            .collect();
    }
    for (verdict, (key, _)) in verdicts.iter_mut().zip(messages) {
        let forged = match verdict {
            Ok(prepared) => !signatures_hold(&[prepared]),
            Err(_) => false,
        };
        if forged {
            let sender = verdict
                .as_ref()
                .map(|p| p.verified.envelope.sender.clone())
                .unwrap_or_default();
            let response = refuse(
                "bad_signature",
                format!("the signature does not verify for {sender:?}"),
            );
            audit(store, key, &response);
            *verdict = Err(response);
        }
    }
    verdicts
        .into_iter()
        .map(|verdict| verdict.map(Prepared::accept))
        .collect()
}

/// A message that passed every check but its signature.
struct Prepared {
    verified: Verified,
    signed: Vec<u8>,
    public: VerifyingKey,
    sig: Signature,
}

impl Prepared {
    fn accept(self) -> Verified {
        self.verified
    }
}

/// Checks the signatures of `batch` together.
fn signatures_hold(batch: &[&Prepared]) -> bool {
    let messages: Vec<&[u8]> = batch.iter().map(|p| p.signed.as_slice()).collect();
    let sigs: Vec<Signature> = batch.iter().map(|p| p.sig).collect();
    let keys: Vec<VerifyingKey> = batch.iter().map(|p| p.public).collect();
    ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok()
}

/// Size, shape and sender; the signature's parts parsed but not yet checked.
fn prepare(store: &Store, key: &str, bytes: &[u8]) -> std::result::Result<Prepared, Response> {
    let refused = |code: &str, message: String| {
        let response = refuse(code, message);
        audit(store, key, &response);
        response
    };
    if bytes.len() > MAX_MESSAGE {
        return Err(refused(
            "too_large",
            format!("message of {} bytes exceeds {MAX_MESSAGE}", bytes.len()),
        ));
    }
    let Some(target) = target(key) else {
        return Err(refused("unknown_topic", format!("no operation on {key:?}")));
    };
    let envelope = Envelope::decode(bytes)
        .map_err(|e| refused("malformed", format!("not a canonical envelope: {e}")))?;
    if envelope.msg_id.is_empty() || envelope.msg_id.len() > MAX_MSG_ID {
        return Err(refused("malformed", "msg_id must be 1-128 bytes".into()));
    }
    if envelope.sig.is_empty() {
        return Err(refused(
            "unsigned",
            "the envelope carries no signature".into(),
        ));
    }
    let agent = match get(store, &envelope.sender) {
        Ok(Some(agent)) => agent,
        Ok(None) => {
            return Err(refused(
                "unknown_agent",
                format!("no agent named {:?}", envelope.sender),
            ))
        }
        Err(e) => return Err(refused("internal", e.to_string())),
    };
    let signed = envelope
        .signing_bytes(key)
        .map_err(|e| refused("malformed", e.to_string()))?;
    let parts = VerifyingKey::try_from(agent.public_key.as_slice())
        .ok()
        .zip(Signature::from_slice(&envelope.sig).ok());
    let Some((public, sig)) = parts else {
        return Err(refused(
            "bad_signature",
            format!("the signature does not verify for {:?}", envelope.sender),
        ));
    };
    Ok(Prepared {
        verified: Verified {
            digest: *blake3::hash(&signed).as_bytes(),
            envelope,
            target,
            agent,
        },
        signed,
        public,
        sig,
    })
}

/// Writes an audit record for a refused message (best effort: the answer goes out regardless).
pub fn audit(store: &Store, key: &str, response: &Response) {
    if let Response::Err(body) = response {
        let error = Error::Remote {
            code: body.code.clone(),
            message: format!("{key}: {}", body.message),
            details: None,
        };
        if let Err(e) = store.audit("plane.message", &error) {
            tracing::warn!(%e, "could not audit a refused message");
        }
    }
}

/// A remembered answer to one message.
#[derive(Debug, Serialize, Deserialize)]
struct Delivered {
    #[serde(with = "serde_bytes")]
    digest: Vec<u8>,
    #[serde(with = "serde_bytes")]
    response: Vec<u8>,
}

/// Key of a delivered message's record in the sender's window: `sender || 0 || msg_id`.
fn window_key(sender: &str, msg_id: &str) -> Vec<u8> {
    [sender.as_bytes(), &[0], msg_id.as_bytes()].concat()
}

/// Key of the sender's last delivered `ts`: the window slot of the empty msg id, which no
/// message can use. Kept in the window's table so a delivery writes one table, not two.
fn clock_key(sender: &str) -> Vec<u8> {
    window_key(sender, "")
}

fn key_of(target: &Target) -> String {
    match target {
        Target::Create => "jit/kernel/create".to_owned(),
        Target::Sws(id, verb) => format!("jit/sws/{id}/{verb}"),
    }
}

fn error_response(error: Error) -> Response {
    match error {
        Error::Remote {
            code,
            message,
            details,
        } => Response::Err(ErrorBody {
            code,
            message,
            details,
        }),
        other => Response::from_error(&other),
    }
}

/// Runs a verified message against the kernel: exactly-once for writes.
pub fn execute(repo: &Repository, verified: Verified) -> Response {
    execute_batch(repo, vec![verified]).remove(0)
}

/// Runs verified messages in order, all in one durable transaction (group commit): each in its
/// own savepoint, so a refused one leaves no trace and the others still land. Answers come
/// back in the same order; they are only valid to send once this returns (after the fsync).
pub fn execute_batch(repo: &Repository, batch: Vec<Verified>) -> Vec<Response> {
    let store = repo.store();
    // Writes buffered by the mount land before the agents' patches and commits.
    if let Err(error) = store.settle() {
        tracing::warn!(%error, "could not settle the mount's buffered writes");
    }
    let outcome = match batch.as_slice() {
        [only] => deliver_alone(repo, only),
        _ => store.operation("plane.batch", |op| {
            Ok(batch
                .iter()
                .map(|verified| {
                    op.savepoint(|child| deliver_in(repo, child, verified))
                        .unwrap_or_else(error_response)
                })
                .collect::<Vec<_>>())
        }),
    };
    let responses = match outcome {
        Ok(responses) => responses,
        Err(error) => {
            let response = error_response(error);
            batch.iter().map(|_| response.clone()).collect()
        }
    };
    for (verified, response) in batch.iter().zip(&responses) {
        if let Response::Err(body) = response {
            if body.code != "merge_conflict" {
                audit(store, &key_of(&verified.target), response);
            }
        }
    }
    responses
}

/// A batch of one message, without the savepoint a batch gives each message (LMDB allocates a
/// 2 MiB dirty-page list for every nested transaction): if the message is refused, nothing is
/// committed at all, not even an empty transaction.
fn deliver_alone(repo: &Repository, verified: &Verified) -> Result<Vec<Response>> {
    let mut op = repo.store().begin()?;
    match deliver_in(repo, &mut op, verified) {
        Ok(response) => {
            op.commit()?;
            Ok(vec![response])
        }
        Err(error) => Ok(vec![error_response(error)]),
    }
}

fn plane_error(code: &str, message: String) -> Error {
    Error::Remote {
        code: code.into(),
        message,
        details: None,
    }
}

fn deliver_in(repo: &Repository, op: &mut Op<'_>, verified: &Verified) -> Result<Response> {
    let envelope = &verified.envelope;
    let store = op.store();
    let slot = window_key(&envelope.sender, &envelope.msg_id);
    if let Some(raw) = store.agent_msgs.get(op.txn(), &slot)? {
        let delivered: Delivered = cbor::from_canonical_bytes(raw)?;
        if delivered.digest == verified.digest {
            // A retry: the original answer, no second effect.
            return Response::decode(&delivered.response);
        }
        return Err(plane_error(
            "replayed",
            format!(
                "msg_id {:?} was already used for other content",
                envelope.msg_id
            ),
        ));
    }
    let clock = clock_key(&envelope.sender);
    let last = store
        .agent_msgs
        .get(op.txn(), &clock)?
        .and_then(|raw| <[u8; 8]>::try_from(raw).ok())
        .map(u64::from_be_bytes);
    if last.is_some_and(|last| envelope.ts <= last) {
        return Err(plane_error(
            "stale",
            format!(
                "ts {} is not after the sender's last ({})",
                envelope.ts,
                last.unwrap_or(0)
            ),
        ));
    }
    let response = run(repo, op, verified)?;
    let record = Delivered {
        digest: verified.digest.to_vec(),
        response: response.encode()?,
    };
    let bytes = cbor::to_canonical_bytes(&record)?;
    store.agent_msgs.put(op.wtxn(), &slot, &bytes)?;
    store
        .agent_msgs
        .put(op.wtxn(), &clock, &envelope.ts.to_be_bytes())?;
    Ok(response)
}

fn payload<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T> {
    cbor::from_value(value.clone()).map_err(|e| Error::InvalidInput(format!("bad payload: {e}")))
}

/// Runs the operation. A merge conflict is an answer (the SWS now shows it), not an abort.
fn run(repo: &Repository, op: &mut Op<'_>, verified: &Verified) -> Result<Response> {
    match run_value(repo, op, verified) {
        Ok(value) => Ok(Response::Ok(value)),
        Err(Error::MergeConflict(conflicts)) => Ok(Response::Err(ErrorBody {
            code: "merge_conflict".into(),
            message: Error::MergeConflict(conflicts.clone()).to_string(),
            details: cbor::to_value(&conflicts).ok(),
        })),
        Err(e) => Err(e),
    }
}

fn run_value(repo: &Repository, op: &mut Op<'_>, verified: &Verified) -> Result<Value> {
    let envelope = &verified.envelope;
    let sender = envelope.sender.as_str();
    match &verified.target {
        Target::Create => {
            if !verified.agent.may(CREATE_SWS) {
                return Err(plane_error(
                    "forbidden",
                    format!("{sender} may not create shadow working sets"),
                ));
            }
            let args: CreateArgs = payload(&envelope.payload)?;
            let branch = match args.branch.as_deref() {
                Some(name) => RefName::parse_full(name).or_else(|_| RefName::branch(name))?,
                None => repo.head()?,
            };
            let base = args
                .from
                .as_deref()
                .map(|rev| repo.resolve(rev))
                .transpose()?;
            let (id, state) = sws::create_in(op, &branch, base, sender, args.name.as_deref())?;
            Ok(Value::Map(vec![
                (text("id"), text(&id.to_string())),
                (text("base"), Value::Bytes(state.base.0.to_vec())),
                (text("tree"), Value::Bytes(state.tree.0.to_vec())),
            ]))
        }
        Target::Sws(id, verb) => {
            let state = sws::get(op.store(), op.txn(), *id)?;
            if state.owner != sender && !state.delegates.iter().any(|d| d == sender) {
                return Err(plane_error(
                    "not_owner",
                    format!("{sender} is neither the owner nor a delegate of {id}"),
                ));
            }
            match verb.as_str() {
                "patch" => {
                    let patch: Patch = payload(&envelope.payload)?;
                    Ok(cbor::to_value(&sws::apply_in(op, *id, &patch)?)?)
                }
                "commit" => {
                    let permission =
                        format!("commit:{}", RefName::parse_full(&state.branch)?.short());
                    if !verified.agent.may(&permission) {
                        return Err(plane_error(
                            "forbidden",
                            format!("{sender} may not commit to {}", state.branch),
                        ));
                    }
                    let declared: Declared = payload(&envelope.payload)?;
                    let info = crate::history::CommitInfo {
                        author: declared.author,
                        message: declared.message,
                        time: crate::DeclaredTime {
                            seconds: declared.time,
                            tz_minutes: declared.tz,
                        },
                    };
                    match collapse::commit_in(op, *id, &info)? {
                        Outcome::Committed { snapshot, rewrite } => {
                            Ok(cbor::to_value(&Committed { snapshot, rewrite })?)
                        }
                        Outcome::Conflicted { conflicts } => Err(Error::MergeConflict(conflicts)),
                    }
                }
                "discard" => {
                    sws::remove(op, *id)?;
                    op.log(LogOp::SwsDiscarded {
                        sws: id.to_string(),
                    })?;
                    Ok(Value::Map(Vec::new()))
                }
                "analyze" => {
                    let conflicts = collapse::validate_at(op.store(), op.txn(), *id)?;
                    Ok(cbor::to_value(&conflicts)?)
                }
                _ => {
                    let changes = crate::tree::diff(
                        &sws::SwsSource::new(op.store(), op.txn(), *id),
                        &crate::tree::tree_of(
                            &sws::SwsSource::new(op.store(), op.txn(), *id),
                            &state.base,
                        )?,
                        &state.tree,
                    )?;
                    Ok(Value::Map(vec![
                        (text("base"), Value::Bytes(state.base.0.to_vec())),
                        (text("tree"), Value::Bytes(state.tree.0.to_vec())),
                        (text("patches"), Value::Integer(state.patches.into())),
                        (
                            text("changes"),
                            Value::Integer((changes.len() as u64).into()),
                        ),
                    ]))
                }
            }
        }
    }
}
