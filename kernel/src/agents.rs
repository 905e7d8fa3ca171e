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
//!   replays (a reused `msg_id` with other content, or a message older than what is remembered),
//!   and runs the write in one transaction together with the record of its `msg_id` and answer —
//!   so a retried message is answered with the original result and never applied twice. Answers
//!   are kept for each sender's last [`WINDOW`] messages; a message not remembered is applied if
//!   its `ts` is above the highest `ts` dropped from the window (it was never delivered: a
//!   request lost on the way and resent), and refused as `stale` otherwise.
//!   Every refusal is an error answer plus an audit record, with no partial effect.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::command::{self, At, Caller, Command};
use crate::error::{Code, Error, Result};
use crate::journal::{self, Journal};
use crate::log::LogOp;
use crate::repo::Repository;
use crate::rpc::protocol::{ErrorBody, Response};
use crate::store::{Op, Store};

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

pub use jit_proto::envelope::{Envelope, MAX_MESSAGE, MAX_MSG_ID};
pub use jit_proto::keyexpr::{SwsVerb, Target};

/// A refusal with its stable code.
fn refuse(code: Code, message: impl Into<String>) -> Response {
    Response::Err(ErrorBody::new(code, message))
}

/// A message that passed every check that does not need the kernel's state of its target;
/// its signer is the sender's registration.
pub type Verified = jit_proto::verify::Checked<AgentRecord>;

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
    let verdicts = check_all(store, messages);
    for (verdict, (key, _)) in verdicts.iter().zip(messages) {
        if let Err(response) = verdict {
            audit(store, key, response);
        }
    }
    verdicts
}

/// [`verify_all`] without the audit records: for a caller that writes them itself, inside an
/// operation of its own ([`audit_into`]) — one commit for many refusals instead of one each.
/// The checks are `jit_proto::verify`'s; the registry is this store's.
pub fn check_all(
    store: &Store,
    messages: &[(&str, &[u8])],
) -> Vec<std::result::Result<Verified, Response>> {
    jit_proto::verify::check_batch(messages, |sender| {
        let found = get(store, sender).map_err(|e| e.to_string())?;
        Ok(found.map(|agent| {
            let public_key = agent.public_key.clone();
            (agent, public_key)
        }))
    })
    .into_iter()
    .map(|verdict| verdict.map_err(|refusal| refuse(refusal.code, refusal.message)))
    .collect()
}

/// Writes an audit record for a refused message (best effort: the answer goes out regardless).
pub fn audit(store: &Store, key: &str, response: &Response) {
    if let Some(error) = refusal(key, response) {
        if let Err(e) = store.audit(AUDIT_ACTION, &error) {
            tracing::warn!(%e, "could not audit a refused message");
        }
    }
}

/// Appends to `op` the audit records of refusal answers, given with their messages' keys
/// (nothing for an answer that is not one); the batch form of [`audit`]. The records go in one
/// savepoint of their own: audits that do not fit (a full store) are logged and dropped, and
/// `op` goes on (unless LMDB fails to fold the savepoint back, which poisons `op`).
pub fn audit_into<'a>(
    op: &mut Op<'_>,
    refusals: impl IntoIterator<Item = (&'a str, &'a Response)>,
) {
    let written = op.savepoint(|child| {
        refusals
            .into_iter()
            .try_for_each(|(key, response)| try_audit_into(child, key, response))
    });
    if let Err(e) = written {
        tracing::warn!(%e, "could not audit refused messages");
    }
}

/// [`audit_into`] without the savepoint, failing when the record cannot be written (after which
/// `op` must be dropped: LMDB refuses every further use of a transaction whose write failed).
fn try_audit_into(op: &mut Op<'_>, key: &str, response: &Response) -> Result<()> {
    if let Some(error) = refusal(key, response) {
        op.audit(AUDIT_ACTION, &error)?;
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

/// How many of a sender's latest delivered messages keep their answers for retries. A retry of
/// an older message is refused as `stale` (its `ts` is at or below the sender's floor,
/// `Clock::floor`), so a client must keep fewer messages than this unanswered; the Rust
/// library keeps at most a quarter.
pub const WINDOW: u64 = 4096;

/// Every this many deliveries of a sender, the answers that fell out of its window are dropped:
/// a sender's window holds at most `WINDOW + TRIM_EVERY` answers (once the records an earlier
/// version kept without limit are gone).
const TRIM_EVERY: u64 = 1024;

/// Most answers one trim drops: twice what a trim period adds, so a window inherited from an
/// earlier version shrinks step by step instead of stalling one delivery.
const TRIM_MAX: usize = 2 * TRIM_EVERY as usize;

/// A remembered answer to one message.
#[derive(Debug, Serialize, Deserialize)]
struct Delivered {
    #[serde(with = "serde_bytes")]
    digest: Vec<u8>,
    #[serde(with = "serde_bytes")]
    response: Vec<u8>,
    /// The message's place among its sender's deliveries (1, 2, …); 0 in records written before
    /// windows were trimmed, which the first trim drops.
    #[serde(default)]
    n: u64,
    /// The message's `ts`; absent in records written before unanswered messages were taken
    /// late ([`Clock::floor`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ts: Option<u64>,
}

/// Key of a delivered message's record in the sender's window: `sender || 0 || msg_id`.
fn window_key(sender: &str, msg_id: &str) -> Vec<u8> {
    [sender.as_bytes(), &[0], msg_id.as_bytes()].concat()
}

/// Key of the sender's [`Clock`]: `sender || 1`, right after the sender's window records. A
/// sender whose `msg_id`s grow with its `ts` (the Rust library's do) writes its newest window
/// record next to its clock, so a delivery usually dirties one leaf of the table, not two.
pub(crate) fn clock_key(sender: &str) -> Vec<u8> {
    [sender.as_bytes(), &[1]].concat()
}

/// Where a sender stands: its highest delivered `ts`, how many of its messages were delivered,
/// and below which `ts` a message no longer in its window may have been delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clock {
    /// The highest `ts` delivered.
    pub(crate) ts: u64,
    /// How many messages of the sender were delivered.
    pub(crate) delivered: u64,
    /// The highest `ts` among the answers dropped from the window (or, for a clock an earlier
    /// version stored, its `ts` then): every delivered message above it is still in the
    /// window, so one above it that is not was never delivered — a request lost on the way,
    /// resent — and is taken now. One at or below it is refused as `stale`.
    pub(crate) floor: u64,
}

impl Clock {
    /// Reads a stored clock: `ts || delivered || floor` (big-endian), or `ts || delivered`, or
    /// `ts` alone as earlier versions stored it (their floor is their `ts`: which older
    /// messages they delivered is no longer known); `None` for anything else.
    pub(crate) fn decode(raw: &[u8]) -> Option<Clock> {
        let word = |at: usize| {
            raw.get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
        };
        match raw.len() {
            8 => Some(Clock {
                ts: word(0)?,
                delivered: 0,
                floor: word(0)?,
            }),
            16 => Some(Clock {
                ts: word(0)?,
                delivered: word(8)?,
                floor: word(0)?,
            }),
            24 => Some(Clock {
                ts: word(0)?,
                delivered: word(8)?,
                floor: word(16)?,
            }),
            _ => None,
        }
    }

    /// The stored form.
    pub(crate) fn encode(&self) -> [u8; 24] {
        let mut out = [0; 24];
        out[..8].copy_from_slice(&self.ts.to_be_bytes());
        out[8..16].copy_from_slice(&self.delivered.to_be_bytes());
        out[16..].copy_from_slice(&self.floor.to_be_bytes());
        out
    }
}

/// Drops up to [`TRIM_MAX`] of the sender's remembered answers with a place at or below
/// `last_dropped`. Records that cannot be read are left alone (and reported). Returns the
/// sender's floor after the trim: the highest `ts` dropped, or `clock_ts` if a dropped record
/// does not say its `ts` (written by an earlier version).
fn trim_window(
    op: &mut Op<'_>,
    sender: &str,
    last_dropped: u64,
    floor: u64,
    clock_ts: u64,
) -> Result<u64> {
    let store = op.store();
    let prefix = window_key(sender, "");
    let mut stale = Vec::new();
    let mut floor = floor;
    for entry in store.agent_msgs.prefix_iter(op.txn(), &prefix)? {
        if stale.len() == TRIM_MAX {
            break;
        }
        let (key, raw) = entry?;
        match cbor::from_canonical_bytes::<Delivered>(raw) {
            Ok(record) if record.n <= last_dropped => {
                floor = floor.max(record.ts.unwrap_or(clock_ts));
                stale.push(key.to_vec());
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, sender, "an unreadable window record is kept");
            }
        }
    }
    for key in &stale {
        store.agent_msgs.delete(op.wtxn(), key)?;
    }
    Ok(floor)
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
        let response = match deliver_in(repo, op, verified) {
            Ok(response) => response,
            Err(error) if op.writes() == writes => error_response(error),
            Err(error) => return Err(error),
        };
        if matches!(response, Response::Err(_)) {
            try_audit_into(op, &key_of(&verified.target), &response)?;
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
                .savepoint(|child| deliver_in(repo, child, verified))
                .unwrap_or_else(error_response);
            if matches!(response, Response::Err(_)) {
                audit_into(op, [(key_of(&verified.target).as_str(), &response)]);
            }
            response
        })
        .collect()
}

/// Delivers journaled messages again inside `op` (after a crash, or after a transaction that
/// held acknowledged messages failed to commit): each is verified and run as it was the first
/// time. Those whose effect is already in the store are answered from the record of delivered
/// ids and change nothing; the others take effect now, in their original order. Returns how
/// many messages were replayed.
pub fn replay_into(repo: &Repository, op: &mut Op<'_>, messages: &[(String, Vec<u8>)]) -> usize {
    let refs: Vec<(&str, &[u8])> = messages
        .iter()
        .map(|(key, bytes)| (key.as_str(), bytes.as_slice()))
        .collect();
    let mut verified = Vec::with_capacity(refs.len());
    for (verdict, (key, _)) in check_all(repo.store(), &refs).into_iter().zip(&refs) {
        match verdict {
            Ok(message) => verified.push(message),
            Err(response) => {
                tracing::warn!(key, ?response, "a journaled message no longer verifies")
            }
        }
    }
    deliver_into(repo, op, &verified);
    verified.len()
}

/// Name of the plane journal in a universe's `.jit` directory.
pub const JOURNAL_FILE: &str = "plane.journal";

/// Opens and locks this universe's plane journal for this process, after delivering again,
/// in one committed transaction, the journaled batches no committed transaction covers
/// ([`recover_in`]); returns the journal and how many messages were delivered. The daemon's
/// plane does this as it starts, before anything is served.
///
/// The store's writer lock is taken before the journal's: a process that finds the journal
/// held then knows its holder has recovered it or holds the writer lock, so its own writes
/// come after that recovery ([`recover_unowned_journal`]). The plane then keeps the journal
/// locked and takes the writer lock for each batch; that reversed order is safe only because
/// nothing ever waits for the journal's lock ([`Journal::open_patiently`] retries, briefly).
pub fn open_journal(repo: &Repository) -> Result<(Journal, usize)> {
    let op = repo.store().begin()?;
    let mut journal = Journal::open_patiently(&repo.jit_dir().join(JOURNAL_FILE))?;
    let delivered = recover_in(repo, op, &mut journal)?;
    Ok((journal, delivered))
}

/// Delivers again in `op`, and commits, the batches of `journal` no committed transaction
/// covers, then resets the journal; returns how many messages were delivered. `op` must have
/// begun before anything else could write, and is dropped unused when nothing is pending.
///
/// Records that could not be read (damage, not a write cut short at the end) do not stop the
/// others: what follows them is delivered too. Then a copy of the damaged journal is kept
/// aside, an error is logged and an audit record (action `plane.journal`, code
/// `journal_damaged`) says how many records were lost; `jit fsck` reports the copy.
pub fn recover_in(repo: &Repository, mut op: Op<'_>, journal: &mut Journal) -> Result<usize> {
    let committed = journal::committed_mark(repo.store(), op.txn())?;
    let pending = journal.recovery(committed)?;
    let mut delivered = 0;
    if pending.batches.is_empty() && pending.damaged.is_empty() {
        drop(op);
    } else {
        if !pending.damaged.is_empty() {
            report_damage(&mut op, journal, &pending)?;
        }
        for batch in &pending.batches {
            delivered += replay_into(repo, &mut op, batch);
        }
        journal::record_mark(&mut op, journal.mark())?;
        op.commit()?;
        tracing::info!(
            messages = delivered,
            "delivered again the messages the plane acknowledged before it stopped"
        );
    }
    // Always a new generation, even when nothing was read: whatever a write cut short left
    // past the records (or inside a damaged one) is then of an older generation, never read
    // again, so a later scan cannot resynchronise onto it.
    journal.reset()?;
    Ok(delivered)
}

/// Says loudly that records of acknowledged messages could not be read: keeps the journal
/// aside, logs an error and writes an audit record into `op`.
fn report_damage(op: &mut Op<'_>, journal: &Journal, pending: &journal::Pending) -> Result<()> {
    let records = pending.damaged_records();
    let mut stretches: Vec<String> = pending
        .damaged
        .iter()
        .take(8)
        .map(|d| format!("bytes {}..{}", d.start, d.end))
        .collect();
    if pending.damaged.len() > 8 {
        stretches.push(format!("and {} more stretches", pending.damaged.len() - 8));
    }
    let kept = journal.keep_aside()?;
    tracing::error!(
        records,
        kept = %kept.display(),
        "{records} record(s) of the plane journal could not be read ({}): the acknowledged \
         messages in them are lost; the records after them were delivered",
        stretches.join(", ")
    );
    op.log(LogOp::Audit {
        action: JOURNAL_AUDIT_ACTION.to_owned(),
        code: JOURNAL_DAMAGED.to_owned(),
        reason: format!(
            "{records} record(s) of the plane journal could not be read ({}); the damaged \
             journal is kept at {}",
            stretches.join(", "),
            kept.display()
        ),
    })?;
    Ok(())
}

/// The action of the audit record a damaged journal leaves.
pub const JOURNAL_AUDIT_ACTION: &str = "plane.journal";
/// The code of the audit record a damaged journal leaves.
pub const JOURNAL_DAMAGED: &str = Code::JournalDamaged.as_str();

/// Recovers a journal a dead daemon left behind ([`open_journal`]), unless a live process (the
/// daemon) holds it or it holds nothing. Opening a universe calls this, so a `jit` verb run
/// without the daemon never works on a store that lacks acknowledged patches.
pub fn recover_unowned_journal(repo: &Repository) -> Result<usize> {
    let path = repo.jit_dir().join(JOURNAL_FILE);
    if !path.exists() || Journal::is_held(&path) {
        return Ok(0);
    }
    let result = Journal::may_hold_records(&path).and_then(|pending| {
        if pending {
            open_journal(repo).map(|(_, delivered)| delivered)
        } else {
            Ok(0)
        }
    });
    match result {
        Err(Error::InvalidInput(_)) if Journal::is_held(&path) => Ok(0),
        // A reader without write access to the universe can still read it; the next writer
        // recovers the journal.
        Err(Error::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            tracing::warn!(%source, "cannot open the plane journal to recover it");
            Ok(0)
        }
        other => other,
    }
}

fn plane_error(code: Code, message: String) -> Error {
    Error::Remote {
        code: code.as_str().to_owned(),
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
            return Ok(Response::decode(&delivered.response)?);
        }
        return Err(plane_error(
            Code::Replayed,
            format!(
                "msg_id {:?} was already used for other content",
                envelope.msg_id
            ),
        ));
    }
    let clock_slot = clock_key(&envelope.sender);
    let clock = match store.agent_msgs.get(op.txn(), &clock_slot)? {
        None => None,
        Some(raw) => Some(Clock::decode(raw).ok_or_else(|| {
            Error::InvalidInput(format!(
                "the stored clock of {:?} is damaged ({} bytes)",
                envelope.sender,
                raw.len()
            ))
        })?),
    };
    // Not in the window: never delivered, unless its ts is at or below the floor (delivered
    // answers older than the window are dropped; past it only the ts tells).
    if let Some(last) = clock.filter(|clock| envelope.ts <= clock.floor) {
        return Err(plane_error(
            Code::Stale,
            format!(
                "ts {} is not after the sender's last remembered ({}); a message this old is no \
                 longer told from a replay",
                envelope.ts, last.floor
            ),
        ));
    }
    let response = run(repo, op, verified)?;
    let n = clock.map_or(0, |clock| clock.delivered) + 1;
    let record = Delivered {
        digest: verified.digest.to_vec(),
        response: response.encode()?,
        n,
        ts: Some(envelope.ts),
    };
    let bytes = cbor::to_canonical_bytes(&record)?;
    store.agent_msgs.put(op.wtxn(), &slot, &bytes)?;
    let mut clock = Clock {
        ts: clock.map_or(envelope.ts, |clock| clock.ts.max(envelope.ts)),
        delivered: n,
        floor: clock.map_or(0, |clock| clock.floor),
    };
    store
        .agent_msgs
        .put(op.wtxn(), &clock_slot, &clock.encode())?;
    if n % TRIM_EVERY == 0 && n > WINDOW {
        // In a savepoint of its own: a trim that fails (a store too full for the deletions)
        // leaves the window (and the floor) as it was and the message goes on.
        let sender = envelope.sender.as_str();
        let trimmed = op.savepoint(|child| {
            let floor = trim_window(child, sender, n - WINDOW, clock.floor, clock.ts)?;
            if floor != clock.floor {
                clock.floor = floor;
                child
                    .store()
                    .agent_msgs
                    .put(child.wtxn(), &clock_slot, &clock.encode())?;
            }
            Ok(())
        });
        if let Err(error) = trimmed {
            tracing::warn!(%error, sender, "could not trim the message window");
        }
    }
    Ok(response)
}

/// Runs the message's command for its sender inside `op`. A merge conflict is an answer (the
/// SWS now shows it), not an abort.
fn run(repo: &Repository, op: &mut Op<'_>, verified: &Verified) -> Result<Response> {
    let sender = verified.envelope.sender.as_str();
    let caller = Caller::Agent {
        name: sender,
        record: &verified.signer,
    };
    let executed = Command::from_plane(verified.target, &verified.envelope.payload, sender)
        .and_then(|command| command::execute(repo, At::Within(op), &caller, command));
    match executed {
        Ok(value) => Ok(Response::Ok(value)),
        Err(conflict @ Error::MergeConflict(_)) => Ok(error_response(conflict)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbor::fields;
    use crate::command::args::CreateArgs;
    use crate::patch::Patch;
    use crate::patch::PatchOp;
    use crate::repo::InitOptions;
    use crate::sws::{self, SwsId};
    use ciborium::value::Value;
    use ed25519_dalek::SigningKey;

    /// A signed message from `agent` with `ts` (its msg_id is `m<ts>`), as bytes for
    /// [`verify_all`].
    fn message(signing: &SigningKey, key: &str, ts: u64, payload: Value) -> Vec<u8> {
        Envelope::signed(key, "agent", ts, format!("m{ts:08}"), payload, signing)
            .and_then(|envelope| envelope.encode())
            .expect("a signed envelope")
    }

    /// Verifies and delivers `batch` in one committed operation, as the plane does.
    fn deliver(repo: &Repository, batch: &[(String, Vec<u8>)]) -> Vec<Response> {
        let refs: Vec<(&str, &[u8])> = batch
            .iter()
            .map(|(key, bytes)| (key.as_str(), bytes.as_slice()))
            .collect();
        let verified = verify_all(repo.store(), &refs)
            .into_iter()
            .collect::<std::result::Result<Vec<_>, _>>()
            .expect("every message verifies");
        let mut op = repo.store().begin().expect("begin");
        let responses = deliver_into(repo, &mut op, &verified);
        op.commit().expect("commit");
        responses
    }

    fn window_records(repo: &Repository) -> u64 {
        let store = repo.store();
        let txn = store.read().expect("read");
        let count = store
            .agent_msgs
            .prefix_iter(&txn, &window_key("agent", ""))
            .expect("iterate")
            .count();
        count as u64
    }

    /// A universe with agent "agent" (key seed 3) and one SWS it owns; returns its patch topic.
    fn universe_with_an_sws(dir: &std::path::Path) -> (Repository, SigningKey, String) {
        let repo = Repository::init(dir, &InitOptions::default()).expect("init");
        let signing = SigningKey::from_bytes(&[3; 32]);
        register(
            repo.store(),
            "agent",
            &signing.verifying_key(),
            vec![CREATE_SWS.into()],
        )
        .expect("register");
        let created = deliver(
            &repo,
            &[(
                "jit/kernel/create".into(),
                message(
                    &signing,
                    "jit/kernel/create",
                    1,
                    cbor::to_value(&CreateArgs {
                        owner: "agent".into(),
                        ..Default::default()
                    })
                    .expect("payload"),
                ),
            )],
        );
        let Response::Ok(Value::Map(answer)) = &created[0] else {
            panic!("create refused: {created:?}");
        };
        let id = fields::as_text(fields::require(answer, "id").expect("id"), "id")
            .expect("id text")
            .to_owned();
        (repo, signing, format!("jit/sws/{id}/patch"))
    }

    /// A signed patch message putting `path`.
    fn put_message(signing: &SigningKey, key: &str, ts: u64, path: &str) -> Vec<u8> {
        let patch = Patch {
            id: format!("p{ts}"),
            author: "agent".into(),
            ts,
            ops: vec![PatchOp::Put {
                path: path.into(),
                content: ts.to_string().into_bytes(),
                executable: false,
            }],
        };
        message(signing, key, ts, cbor::to_value(&patch).expect("payload"))
    }

    /// The SWS a topic (`jit/sws/<id>/patch`) names.
    fn sws_of(key: &str) -> SwsId {
        key.split('/')
            .nth(2)
            .expect("an SWS topic")
            .parse()
            .expect("sws id")
    }

    fn state_of(repo: &Repository, key: &str) -> sws::SwsState {
        let store = repo.store();
        let txn = store.read().expect("read");
        sws::get(store, &txn, sws_of(key)).expect("state")
    }

    fn patches_of(repo: &Repository, key: &str) -> u64 {
        state_of(repo, key).patches
    }

    /// The codes of the audit records in the log, oldest first.
    fn audit_codes(repo: &Repository) -> Vec<String> {
        let store = repo.store();
        let txn = store.read().expect("read");
        let codes = store
            .log_entries(&txn)
            .expect("log")
            .filter_map(|entry| {
                let (seq, bytes) = entry.expect("log entry");
                match crate::log::verify_record(seq, bytes).expect("record").0.op {
                    LogOp::Audit { code, .. } => Some(code),
                    _ => None,
                }
            })
            .collect();
        codes
    }

    #[test]
    fn opening_a_universe_delivers_what_a_dead_daemon_journaled_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (repo, signing, key) = universe_with_an_sws(dir.path());
        let path = repo.jit_dir().join(JOURNAL_FILE);
        {
            // A daemon acknowledged two batches from its journal and died before committing.
            let mut journal = Journal::open(&path).expect("journal");
            for ts in [2, 3] {
                let bytes = put_message(&signing, &key, ts, &format!("f{ts}.txt"));
                journal.append(&[(key.as_str(), &bytes)]).expect("append");
            }
        }
        drop(repo);
        let repo = Repository::open(dir.path()).expect("open");
        assert_eq!(patches_of(&repo, &key), 2, "both journaled patches landed");
        drop(repo);
        let repo = Repository::open(dir.path()).expect("reopen");
        assert_eq!(patches_of(&repo, &key), 2, "and only once");

        // A live owner keeps it: opening the universe meanwhile leaves the journal alone.
        let mut journal = Journal::open(&path).expect("journal");
        let bytes = put_message(&signing, &key, 4, "f4.txt");
        journal.append(&[(key.as_str(), &bytes)]).expect("append");
        drop(repo);
        let other = Repository::open(dir.path()).expect("open while held");
        assert_eq!(
            patches_of(&other, &key),
            2,
            "the owner's journal is not touched"
        );
        assert!(!journal.is_empty());
    }

    #[test]
    fn batches_a_committed_mark_covers_are_not_delivered_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (repo, signing, key) = universe_with_an_sws(dir.path());
        let mut journal = Journal::open(&repo.jit_dir().join(JOURNAL_FILE)).expect("journal");
        // Delivered and journaled like the plane does; one message is refused (its path is
        // not a valid name), so no record of its id is kept. The mark commits with the batch;
        // the journal is not reset, as if the process died before that.
        let good = put_message(&signing, &key, 2, "good.txt");
        let bad = put_message(&signing, &key, 3, "../escape");
        let batch = [
            (key.as_str(), good.as_slice()),
            (key.as_str(), bad.as_slice()),
        ];
        let verified: Vec<Verified> = verify_all(repo.store(), &batch)
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .expect("verified");
        let mut op = repo.store().begin().expect("begin");
        let answers = deliver_into(&repo, &mut op, &verified);
        assert!(matches!(answers[0], Response::Ok(_)), "{answers:?}");
        assert!(matches!(answers[1], Response::Err(_)), "{answers:?}");
        journal.append(&batch).expect("append");
        journal::record_mark(&mut op, journal.mark()).expect("mark");
        op.commit().expect("commit");
        assert_eq!(
            recover_in(&repo, repo.store().begin().expect("begin"), &mut journal).expect("recover"),
            0,
            "the mark covers the batch: nothing is delivered again"
        );
        assert!(journal.is_empty(), "and the journal is reset");
        assert_eq!(patches_of(&repo, &key), 1);
    }

    #[test]
    fn a_senders_window_is_trimmed_and_older_retries_are_refused_by_ts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (repo, signing, key) = universe_with_an_sws(dir.path());
        let patch = |ts: u64| put_message(&signing, &key, ts, &format!("f{}.txt", ts % 8));

        // 1 create + 5,199 patches = 5,200 deliveries. The one trim ran at delivery 5,120 (at
        // 1,024 … 4,096 the window was not full yet) and dropped deliveries 1 … 1,024.
        let last = WINDOW + TRIM_EVERY + 79;
        let all: Vec<(String, Vec<u8>)> =
            (2..=last + 1).map(|ts| (key.clone(), patch(ts))).collect();
        for batch in all.chunks(256) {
            for response in deliver(&repo, batch) {
                assert!(matches!(response, Response::Ok(_)), "{response:?}");
            }
        }
        let kept = window_records(&repo);
        assert!(
            (WINDOW..=WINDOW + TRIM_EVERY).contains(&kept),
            "the window keeps between {WINDOW} and {} answers, not {kept}",
            WINDOW + TRIM_EVERY
        );
        assert_eq!(kept, 5_200 - 1_024, "deliveries 1 … 1,024 were dropped");

        let state = |repo: &Repository| state_of(repo, &key);
        let before = state(&repo);
        // A retry inside the window: the original answer, nothing applied again.
        let recent = all.last().expect("messages").clone();
        let again = deliver(&repo, &[recent]);
        assert!(matches!(again[0], Response::Ok(_)), "{again:?}");
        // A retry from before the window: refused by its ts, nothing applied.
        let old = all[10].clone();
        let refused = deliver(&repo, &[old]);
        let Response::Err(body) = &refused[0] else {
            panic!("an old retry was accepted: {refused:?}");
        };
        assert_eq!(body.code, "stale");
        assert_eq!(state(&repo), before, "neither retry applied anything");
    }

    /// Issue #17 item 9: with congestion control `Drop`, Zenoh may drop request n while
    /// n+1 … n+k arrive and are applied; the agent then resends n (and, go-back-N, everything
    /// after it). The resend must be applied once, and the others answered from the record.
    #[test]
    fn plane_a_request_zenoh_drops_mid_window_is_applied_when_resent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (repo, signing, key) = universe_with_an_sws(dir.path());
        let patch = |ts: u64| {
            (
                key.clone(),
                put_message(&signing, &key, ts, &format!("f{ts}.txt")),
            )
        };
        // ts 2 … 11 are sent; 2 and 6 are dropped on the way, the rest arrive and are applied.
        let arrived: Vec<_> = (3..=11).filter(|ts| *ts != 6).map(patch).collect();
        for response in deliver(&repo, &arrived) {
            assert!(matches!(response, Response::Ok(_)), "{response:?}");
        }
        // The agent resends every unanswered message, oldest first: 2 … 11.
        let resent: Vec<_> = (2..=11).map(patch).collect();
        let answers = deliver(&repo, &resent);
        let codes: Vec<String> = answers
            .iter()
            .map(|answer| match answer {
                Response::Ok(_) => "ok".to_owned(),
                Response::Err(body) => body.code.clone(),
            })
            .collect();
        assert_eq!(codes, vec!["ok"; 10], "every resend is answered ok");
        assert_eq!(
            patches_of(&repo, &key),
            10,
            "each of the 10 applied exactly once"
        );
        let store = repo.store();
        let txn = store.read().expect("read");
        let mut applied: Vec<String> = sws::history(store, &txn, sws_of(&key))
            .expect("history")
            .into_iter()
            .map(|record| record.patch_id)
            .collect();
        drop(txn);
        applied.sort_by_key(|id| id[1..].parse::<u64>().unwrap_or(0));
        let expected: Vec<String> = (2..=11).map(|ts| format!("p{ts}")).collect();
        assert_eq!(applied, expected);
        // A third copy of everything changes nothing, and a message that reuses an applied
        // msg_id for other content is still refused as a replay.
        let again = deliver(&repo, &resent);
        assert!(
            again.iter().all(|a| matches!(a, Response::Ok(_))),
            "{again:?}"
        );
        assert_eq!(patches_of(&repo, &key), 10);
        let other = put_message(&signing, &key, 2, "other.txt");
        let replay = deliver(&repo, &[(key.clone(), other)]);
        let Response::Err(body) = &replay[0] else {
            panic!("a reused msg_id was accepted: {replay:?}");
        };
        assert_eq!(body.code, "replayed");
        assert_eq!(patches_of(&repo, &key), 10);
    }

    #[test]
    fn a_message_that_fails_after_writing_leaves_no_trace_and_the_batch_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (repo, signing, key) = universe_with_an_sws(dir.path());
        let huge = Patch {
            id: "huge".into(),
            author: "agent".into(),
            ts: 3,
            ops: vec![PatchOp::Put {
                path: "huge.bin".into(),
                content: vec![7; 2 << 20],
                executable: false,
            }],
        };
        let batch = vec![
            (key.clone(), put_message(&signing, &key, 2, "before.txt")),
            (
                key.clone(),
                message(&signing, &key, 3, cbor::to_value(&huge).expect("payload")),
            ),
            (key.clone(), put_message(&signing, &key, 4, "after.txt")),
        ];
        // Room for the small patches, not for 2 MiB: the huge one fails after its first writes.
        repo.store().limit_growth(64).expect("limit the map");
        let responses = deliver(&repo, &batch);

        assert!(matches!(responses[0], Response::Ok(_)), "{responses:?}");
        let Response::Err(body) = &responses[1] else {
            panic!("a patch larger than the store was accepted: {responses:?}");
        };
        assert_eq!(body.code, "store_error", "{body:?}");
        assert!(matches!(responses[2], Response::Ok(_)), "{responses:?}");
        assert_eq!(
            patches_of(&repo, &key),
            2,
            "the two small patches, not the huge one"
        );

        let store = repo.store();
        let txn = store.read().expect("read");
        let id = sws_of(&key);
        let state = sws::get(store, &txn, id).expect("state");
        let source = sws::SwsSource::new(store, &txn, id);
        let paths: Vec<String> = crate::tree::diff(
            &source,
            &crate::tree::tree_of(&source, &state.base).expect("base tree"),
            &state.tree,
        )
        .expect("diff")
        .into_iter()
        .map(|change| String::from_utf8_lossy(&change.path).into_owned())
        .collect();
        assert_eq!(paths, ["after.txt", "before.txt"], "nothing of huge.bin");
        assert!(
            store
                .agent_msgs
                .get(&txn, &window_key("agent", "m00000003"))
                .expect("read the window")
                .is_none(),
            "the failed message is not recorded as delivered, so a retry runs it again"
        );
        assert_eq!(
            audit_codes(&repo),
            ["store_error"],
            "the refusal is audited once"
        );
    }

    #[test]
    fn a_refusal_whose_audit_does_not_fit_is_still_answered_and_the_rest_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (repo, signing, key) = universe_with_an_sws(dir.path());
        repo.store().limit_growth(0).expect("limit the map");
        // Fill the store: patches until one no longer fits.
        let mut ts = 2;
        loop {
            assert!(ts < 10_000, "the store never filled up");
            let message = put_message(&signing, &key, ts, &format!("f{ts}.txt"));
            ts += 1;
            if let Response::Err(body) = &deliver(&repo, &[(key.clone(), message)])[0] {
                assert_eq!(body.code, "store_error", "{body:?}");
                break;
            }
        }
        // Messages whose payload is no patch, refused before any write, until one's audit
        // record no longer fits either: each is still answered, and each batch commits.
        for n in 0.. {
            assert!(n < 10_000, "the audits never filled the store");
            let bad = Envelope::signed(
                &key,
                "agent",
                ts + n,
                format!("again{n}"),
                Value::Null,
                &signing,
            )
            .and_then(|envelope| envelope.encode())
            .expect("envelope");
            let before = audit_codes(&repo).len();
            let responses = deliver(&repo, &[(key.clone(), bad)]);
            let Response::Err(body) = &responses[0] else {
                panic!("a message with no patch was accepted: {responses:?}");
            };
            assert_eq!(body.code, "invalid_input", "{body:?}");
            if audit_codes(&repo).len() == before {
                break;
            }
        }
    }
}
