//! The plane's publisher: tails the kernel's log onto the event topics.

use std::sync::Arc;
use std::time::Duration;

use jit_kernel::log::{verify_record, LogOp};
use jit_kernel::Repository;
use tokio::sync::Notify;

use crate::keyexpr;

/// Publishes every new log record: all on `events`, ref records on `ref_updates`, SWS lifecycle
/// records on `sws_lifecycle`. One task publishes in log order, so each topic is in order.
pub(super) async fn publish_events(
    session: zenoh::Session,
    repo: Arc<Repository>,
    namespace: String,
    notify: Arc<Notify>,
) {
    let mut next = match tail(&repo) {
        Ok(seq) => seq + 1,
        Err(e) => {
            tracing::warn!(%e, "cannot read the log; no events will be published");
            return;
        }
    };
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(20), notify.notified()).await;
        let records = match read_from(&repo, next) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(%e, "cannot read the log");
                continue;
            }
        };
        for (seq, body, op) in records {
            next = seq + 1;
            let mut topics = vec![EVENTS];
            match op {
                LogOp::RefCreated { .. } | LogOp::RefUpdated { .. } | LogOp::RefDeleted { .. } => {
                    topics.push("jit/kernel/ref_updates")
                }
                LogOp::SwsCreated { .. }
                | LogOp::SwsCommitted { .. }
                | LogOp::SwsDiscarded { .. } => topics.push("jit/kernel/sws_lifecycle"),
                LogOp::Synced { .. } => topics.push("jit/kernel/sync"),
                _ => {}
            }
            for topic in topics {
                if let Err(e) = session.put(keyexpr(&namespace, topic), body.clone()).await {
                    tracing::warn!(%e, "publish failed");
                }
            }
        }
    }
}

fn tail(repo: &Repository) -> jit_kernel::Result<u64> {
    let txn = repo.store().read()?;
    repo.store().log_tail(&txn)
}

/// Log records from `from` on: (seq, canonical body, op).
fn read_from(repo: &Repository, from: u64) -> jit_kernel::Result<Vec<(u64, Vec<u8>, LogOp)>> {
    let txn = repo.store().read()?;
    let mut out = Vec::new();
    for entry in repo.store().log_entries_from(&txn, from)? {
        let (seq, stored) = entry?;
        let (record, _) = verify_record(seq, stored)?;
        out.push((seq, stored[32..].to_vec(), record.op));
    }
    Ok(out)
}

/// The topic every log record is published on.
pub const EVENTS: &str = "jit/kernel/events";

/// The key of the query that reads events from a log position (`jit/log/since`).
pub const SINCE: &str = "jit/log/since";
/// Most events one `jit/log/since` answer carries (ask again from `next` for more).
pub const MAX_SINCE: usize = 1024;

/// `jit/log/since`'s request: events from log position `from` on.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinceRequest {
    /// The first log position wanted (the first record is 1).
    pub from: u64,
}

/// `jit/log/since`'s answer.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinceReply {
    /// The events from `from`, in log order: the same bytes `jit/kernel/events` carries.
    pub events: Vec<serde_bytes::ByteBuf>,
    /// The position to ask from next.
    pub next: u64,
    /// The log's last position when this was read.
    pub tail: u64,
}

fn since(repo: &Repository, payload: &[u8]) -> jit_kernel::Result<SinceReply> {
    let request: SinceRequest = jit_kernel::cbor::from_canonical_bytes(payload)
        .map_err(|e| jit_kernel::Error::InvalidInput(format!("bad jit/log/since request: {e}")))?;
    let from = request.from.max(1);
    let tail = tail(repo)?;
    let mut events = Vec::new();
    let mut next = from;
    for (seq, body, _) in read_from(repo, from)?.into_iter().take(MAX_SINCE) {
        events.push(serde_bytes::ByteBuf::from(body));
        next = seq + 1;
    }
    Ok(SinceReply { events, next, tail })
}

/// Answers a `jit/log/since` query: the log is the source of truth, so a subscriber that
/// connects late asks for what it missed (subscribe first, then ask from the position it
/// needs, and drop live events it already has by their position).
pub(super) fn answer_since(
    repo: &Repository,
    payload: &[u8],
) -> jit_kernel::Result<ciborium::value::Value> {
    Ok(jit_kernel::cbor::to_value(&since(repo, payload)?)?)
}
