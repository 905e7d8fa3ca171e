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
            let mut topics = vec!["jit/kernel/events"];
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
