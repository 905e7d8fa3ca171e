//! Delivering verified plane messages: the checks (`jit_proto::verify` against the registry),
//! audit records of refusals, and running each message's command inside the caller's open
//! operation together with its record in the window, so a refused one leaves only its audit.

use crate::command::{self, At, Caller, Command};
use crate::error::{Code, Error, Result};
use crate::repo::Repository;
use crate::rpc::protocol::{ErrorBody, Response};
use crate::store::{Op, Store};

use super::registry::{get, Verified};
use super::window::deliver_in;
use jit_proto::keyexpr::Target;

/// A refusal with its stable code.
fn refuse(code: Code, message: impl Into<String>) -> Response {
    Response::Err(ErrorBody::new(code, message))
}

/// A message refused before it ran: the answer, and the sender its envelope named (who it
/// claims to be, when it did not verify), for its audit record.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The error answer.
    pub response: Response,
    /// The envelope's sender, when it could be decoded.
    pub sender: Option<String>,
}

/// Size, shape, signature, sender. Refusals are audited.
pub fn verify(store: &Store, key: &str, bytes: &[u8]) -> std::result::Result<Verified, Response> {
    verify_all(store, &[(key, bytes)])
        .pop()
        .unwrap_or_else(|| Err(refuse(Code::Internal, "no verdict")))
}

/// [`verify`] for many messages at once, answering in the same order (signatures checked as
/// one batch: `jit_proto::verify`).
pub fn verify_all(
    store: &Store,
    messages: &[(&str, &[u8])],
) -> Vec<std::result::Result<Verified, Response>> {
    check_all(store, messages)
        .into_iter()
        .zip(messages)
        .map(|(verdict, (key, _))| {
            verdict.map_err(|refused| {
                audit(store, key, refused.sender.as_deref(), &refused.response);
                refused.response
            })
        })
        .collect()
}

/// [`verify_all`] without the audit records: for a caller that writes them itself, inside an
/// operation of its own ([`audit_into`]) — one commit for many refusals instead of one each.
/// The checks are `jit_proto::verify`'s; the registry is this store's.
pub fn check_all(
    store: &Store,
    messages: &[(&str, &[u8])],
) -> Vec<std::result::Result<Verified, Refused>> {
    jit_proto::verify::check_batch(messages, |sender| {
        let found = get(store, sender).map_err(|e| e.to_string())?;
        Ok(found.map(|agent| {
            let public_key = agent.public_key.clone();
            (agent, public_key)
        }))
    })
    .into_iter()
    .map(|verdict| {
        verdict.map_err(|refusal| Refused {
            response: refuse(refusal.code, refusal.message),
            sender: refusal.sender,
        })
    })
    .collect()
}

/// Writes an audit record for a refused message, naming the sender it claimed (best effort:
/// the answer goes out regardless).
pub fn audit(store: &Store, key: &str, sender: Option<&str>, response: &Response) {
    let written = store.begin().and_then(|mut op| {
        try_audit_into(&mut op, key, sender, response).and_then(|()| op.commit())
    });
    if let Err(e) = written {
        tracing::warn!(%e, "could not audit a refused message");
    }
}

/// Appends to `op` the audit records of refusal answers, given with their messages' keys and
/// claimed senders (nothing for an answer that is not one); the batch form of [`audit`]. The records go in one
/// savepoint of their own: audits that do not fit (a full store) are logged and dropped, and
/// `op` goes on (unless LMDB fails to fold the savepoint back, which poisons `op`).
pub fn audit_into<'a>(
    op: &mut Op<'_>,
    refusals: impl IntoIterator<Item = (&'a str, Option<&'a str>, &'a Response)>,
) {
    let written = op.savepoint(|child| {
        refusals
            .into_iter()
            .try_for_each(|(key, sender, response)| try_audit_into(child, key, sender, response))
    });
    if let Err(e) = written {
        tracing::warn!(%e, "could not audit refused messages");
    }
}

/// [`audit_into`] without the savepoint, failing when the record cannot be written (after which
/// `op` must be dropped: LMDB refuses every further use of a transaction whose write failed).
fn try_audit_into(
    op: &mut Op<'_>,
    key: &str,
    sender: Option<&str>,
    response: &Response,
) -> Result<()> {
    if let Some(error) = refusal(key, response) {
        match sender {
            Some(sender) => op.acting_as(sender, |op| op.audit(AUDIT_ACTION, &error))?,
            None => op.audit(AUDIT_ACTION, &error)?,
        };
    }
    Ok(())
}

/// The action audit records of refused messages name.
const AUDIT_ACTION: &str = "plane.message";

/// The error an audit record keeps for a refusal answer; `None` for an answer that is not one
/// (success, or a merge conflict — an outcome the SWS shows, not a refusal).
fn refusal(key: &str, response: &Response) -> Option<Error> {
    match response {
        Response::Err(body) if body.code != Code::MergeConflict.as_str() => Some(Error::Remote {
            code: body.code.clone(),
            message: format!("{key}: {}", body.message),
            details: None,
        }),
        _ => None,
    }
}

fn key_of(target: &Target) -> String {
    target.to_string()
}

fn error_response(error: Error) -> Response {
    crate::rpc::protocol::error_response(&error)
}

/// Runs verified messages in order inside `op`: a refused one leaves no trace but its audit
/// record (written into `op`) and the others go on. The answers are only valid to send once
/// `op`'s effects are durable: committed, or journaled ([`crate::journal`]) and committed later.
///
/// A savepoint per message would cost a nested LMDB transaction each (LMDB allocates megabytes
/// for one), so the batch runs in a single savepoint and each message directly in it: nearly
/// every refusal (a stale or replayed message, a wrong owner, a patch that does not apply)
/// comes before the message's first write, and leaves nothing to undo. Only a message that
/// fails after it wrote (a full store) needs one; then the batch's savepoint is dropped, with
/// every answer of that attempt unsent, and the batch runs again from the same state with a
/// savepoint per message. If even that leaves `op` poisoned ([`Op::is_poisoned`]: LMDB could
/// not fold a savepoint back), `op` must not be committed and the answers must not be sent.
pub fn deliver_into<'v>(
    repo: &Repository,
    op: &mut Op<'_>,
    batch: impl IntoIterator<Item = &'v Verified>,
) -> Vec<Response> {
    let batch: Vec<&Verified> = batch.into_iter().collect();
    match op.savepoint(|child| deliver_unless_one_fails_after_writing(repo, child, &batch)) {
        Ok(responses) => responses,
        Err(error) => {
            tracing::debug!(%error, "delivering the batch again, one savepoint per message");
            deliver_each_in_a_savepoint(repo, op, &batch)
        }
    }
}

/// Delivers `batch` directly in `op`; fails, for the caller to drop `op`, as soon as a message
/// fails after it wrote.
fn deliver_unless_one_fails_after_writing(
    repo: &Repository,
    op: &mut Op<'_>,
    batch: &[&Verified],
) -> Result<Vec<Response>> {
    let mut responses = Vec::with_capacity(batch.len());
    for verified in batch {
        let writes = op.writes();
        let response = match deliver_in(op, verified, |op| run(repo, op, verified)) {
            Ok(response) => response,
            Err(error) if op.writes() == writes => error_response(error),
            Err(error) => return Err(error),
        };
        if matches!(response, Response::Err(_)) {
            let sender = Some(verified.envelope.sender.as_str());
            try_audit_into(op, &key_of(&verified.target), sender, &response)?;
        }
        responses.push(response);
    }
    Ok(responses)
}

/// Delivers `batch` with a savepoint around each message, so one that fails after it wrote
/// leaves no trace either.
fn deliver_each_in_a_savepoint(
    repo: &Repository,
    op: &mut Op<'_>,
    batch: &[&Verified],
) -> Vec<Response> {
    batch
        .iter()
        .map(|verified| {
            let response = op
                .savepoint(|child| deliver_in(child, verified, |op| run(repo, op, verified)))
                .unwrap_or_else(error_response);
            if matches!(response, Response::Err(_)) {
                let sender = Some(verified.envelope.sender.as_str());
                audit_into(op, [(key_of(&verified.target).as_str(), sender, &response)]);
            }
            response
        })
        .collect()
}

/// Runs the message's command for its sender inside `op`. A merge conflict is an answer (the
/// SWS now shows it), not an abort.
fn run(repo: &Repository, op: &mut Op<'_>, verified: &Verified) -> Result<Response> {
    let sender = verified.envelope.sender.as_str();
    let caller = Caller::Agent {
        name: sender,
        record: &verified.signer,
    };
    let executed = op.acting_as(sender, |op| {
        Command::from_plane(verified.target, &verified.envelope.payload, sender)
            .and_then(|command| command::execute(repo, At::Within(op), &caller, command))
    });
    match executed {
        Ok(value) => Ok(Response::Ok(value)),
        Err(conflict @ Error::MergeConflict(_)) => Ok(error_response(conflict)),
        Err(e) => Err(e),
    }
}
