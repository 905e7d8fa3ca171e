//! Queries the plane answers outside the signed-write pipeline, each on a blocking thread with
//! the kernel's answer as its reply: `jit/log/since` (events from a log position) and
//! `jit/agent/enrol` (a key made elsewhere asks to join). Neither runs as a registered agent:
//! the log is what any reader of the plane sees, and an enrolment request proves possession of
//! its own key and grants nothing until the owner approves it.

use std::sync::Arc;

use ciborium::value::Value;
use jit_kernel::agents::enrol;
use jit_kernel::rpc::protocol::{error_response, Response};
use jit_kernel::Repository;
use zenoh::handlers::FifoChannelHandler;
use zenoh::query::{Query, Queryable};
use zenoh::Wait;

/// A query the plane answers here.
#[derive(Debug, Clone, Copy)]
pub(super) enum Asked {
    /// `jit/log/since`.
    Since,
    /// `jit/agent/enrol`.
    Enrol,
}

impl Asked {
    fn answer(self, repo: &Repository, payload: &[u8]) -> jit_kernel::Result<Value> {
        match self {
            Asked::Since => super::publish::answer_since(repo, payload),
            Asked::Enrol => Ok(jit_kernel::cbor::to_value(&enrol::request(
                repo.store(),
                payload,
            )?)?),
        }
    }
}

/// Answers `asked` queries until the queryable closes.
pub(super) async fn serve(
    repo: Arc<Repository>,
    queryable: Queryable<FifoChannelHandler<Query>>,
    asked: Asked,
) {
    while let Ok(query) = queryable.recv_async().await {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || {
            let payload = query
                .payload()
                .map(|p| p.to_bytes().to_vec())
                .unwrap_or_default();
            let response = match asked.answer(&repo, &payload) {
                Ok(value) => Response::Ok(value),
                Err(error) => error_response(&error),
            };
            match response.encode() {
                Ok(body) => {
                    if let Err(e) = query.reply(query.key_expr().clone(), body).wait() {
                        tracing::warn!(%e, ?asked, "reply failed");
                    }
                }
                Err(e) => tracing::warn!(%e, ?asked, "cannot encode a reply"),
            }
        });
    }
}
