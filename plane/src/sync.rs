//! Sync and federation over the message plane: the daemon answers a replica's `jit/sync/<op>`
//! queries (`frontier`, `negotiate`, `fetch`) and another universe's `jit/federation/<op>`
//! queries (`hello`, `head`, `depend`, `fetch`); [`ZenohRemote`] is the asking side's transport
//! for both. Serving only reads the store. Whoever can reach the plane can read the universe as
//! a replica, which is why the plane listens on a Unix socket and loopback unless told
//! otherwise; another universe reaches published state only, within a signed session.

use std::sync::Arc;
use std::time::Duration;

use ciborium::value::Value;
use jit_kernel::command::{self, Caller, Operation};
use jit_kernel::rpc::protocol::Response;
use jit_kernel::sync::{Pending, Remote};
use jit_kernel::{cbor, Repository};
use zenoh::query::Query;
use zenoh::Wait;

use crate::{base_config, keyexpr, PlaneError, Result};

/// The key expression every sync query falls under.
pub const SYNC_KEYS: &str = "jit/sync/*";
/// The key expression every federation query falls under.
pub const FEDERATION_KEYS: &str = "jit/federation/*";

/// Which service a queryable answers: who asks, and which operations its keys name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Replicas of this universe (`jit/sync/<op>`).
    Sync,
    /// Other universes (`jit/federation/<op>`).
    Federation,
}

impl Service {
    fn prefix(self) -> &'static str {
        match self {
            Service::Sync => "jit/sync",
            Service::Federation => "jit/federation",
        }
    }

    fn operation(self, segment: &str) -> Option<Operation> {
        match self {
            Service::Sync => Operation::from_sync_key_segment(segment),
            Service::Federation => Operation::from_federation_key_segment(segment),
        }
    }

    fn segment(self, op: Operation) -> Option<&'static str> {
        match self {
            Service::Sync => op.sync_key_segment(),
            Service::Federation => op.federation_key_segment(),
        }
    }

    fn caller(self) -> Caller<'static> {
        match self {
            Service::Sync => Caller::Replica,
            Service::Federation => Caller::Universe,
        }
    }
}

/// Largest sync request accepted (fetch requests name at most 8,192 ids).
const MAX_REQUEST: usize = 1 << 20;

/// How long one sync query may take before the puller gives up on it.
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Answers `service`'s queries until the queryable closes. Each query runs on a blocking
/// thread: it reads LMDB and may copy megabytes of node bytes.
pub(crate) async fn serve(
    repo: Arc<Repository>,
    queryable: zenoh::query::Queryable<zenoh::handlers::FifoChannelHandler<Query>>,
    service: Service,
) {
    while let Ok(query) = queryable.recv_async().await {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || {
            let response = match answer(&repo, &query, service) {
                Ok(value) => Response::Ok(value),
                Err(error) => jit_kernel::rpc::protocol::error_response(&error),
            };
            match response.encode() {
                Ok(body) => {
                    if let Err(e) = query.reply(query.key_expr().clone(), body).wait() {
                        tracing::warn!(%e, "sync reply failed");
                    }
                }
                Err(e) => tracing::warn!(%e, "cannot encode a sync reply"),
            }
        });
    }
}

fn answer(repo: &Repository, query: &Query, service: Service) -> jit_kernel::Result<Value> {
    // `jit/sync/<op>` is the RPC's `sync.<op>`, `jit/federation/<op>` its `federation.<op>`;
    // nothing else is served on these keys.
    let segment = query
        .key_expr()
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let op = service.operation(segment).ok_or_else(|| {
        jit_kernel::Error::InvalidInput(format!("unknown {service:?} operation {segment:?}"))
    })?;
    let payload = match query.payload() {
        Some(bytes) if bytes.len() > MAX_REQUEST => {
            return Err(jit_kernel::Error::InvalidInput(format!(
                "a sync request is at most {MAX_REQUEST} bytes"
            )))
        }
        Some(bytes) if !bytes.is_empty() => cbor::decode(&bytes.to_bytes())?,
        _ => Value::Map(Vec::new()),
    };
    command::run(repo, &service.caller(), op, payload)
}

/// A replica (or, with [`ZenohRemote::federation`], another universe) reached over Zenoh: a
/// client session connected to its endpoint.
pub struct ZenohRemote {
    name: String,
    namespace: String,
    service: Service,
    session: zenoh::Session,
    runtime: tokio::runtime::Handle,
}

impl ZenohRemote {
    /// Connects to `endpoint` (`tcp/127.0.0.1:7447`, `unixsock-stream//…/.jit/zenoh.sock`).
    /// `name` is how the peer is recorded; `runtime` runs the session's I/O.
    pub fn connect(
        name: &str,
        endpoint: &str,
        namespace: &str,
        runtime: tokio::runtime::Handle,
    ) -> Result<ZenohRemote> {
        let session = runtime.block_on(async {
            let mut config = base_config("client", None)?;
            config
                .insert_json5("connect/endpoints", &format!("[{endpoint:?}]"))
                .map_err(PlaneError::zenoh)?;
            zenoh::open(config).await.map_err(|e| {
                PlaneError::Zenoh(format!("cannot reach the replica at {endpoint}: {e}"))
            })
        })?;
        Ok(ZenohRemote {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            service: Service::Sync,
            session,
            runtime,
        })
    }

    /// Asks federation's operations (`jit/federation/<op>`) instead of sync's.
    pub fn federation(mut self) -> ZenohRemote {
        self.service = Service::Federation;
        self
    }

    /// Closes the session.
    pub fn close(self) {
        let session = self.session;
        self.runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(5), session.close()).await;
        });
    }
}

fn failed(remote: &str, reason: impl std::fmt::Display) -> jit_kernel::Error {
    jit_kernel::Error::Sync {
        remote: remote.to_owned(),
        reason: reason.to_string(),
    }
}

impl Remote for ZenohRemote {
    fn name(&self) -> &str {
        &self.name
    }

    /// Sends every request at once (they are answered concurrently) and waits for the answers
    /// in order.
    fn call(&mut self, requests: Vec<(Operation, Value)>) -> jit_kernel::Result<Vec<Value>> {
        self.send(requests)?.wait()
    }

    /// Sends every request at once; the answers are awaited, in order, by the [`Pending`].
    fn send(&mut self, requests: Vec<(Operation, Value)>) -> jit_kernel::Result<Pending> {
        let mut pending = Vec::with_capacity(requests.len());
        for (op, payload) in requests {
            let segment = self.service.segment(op).ok_or_else(|| {
                jit_kernel::Error::InvalidInput(format!("{op} is not served on the plane"))
            })?;
            let prefix = self.service.prefix();
            let key = keyexpr(&self.namespace, &format!("{prefix}/{segment}"));
            let body = cbor::encode(&payload)?;
            let session = self.session.clone();
            pending.push(self.runtime.spawn(async move {
                let replies = session
                    .get(key)
                    .payload(body)
                    .timeout(QUERY_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?;
                let reply = replies
                    .recv_async()
                    .await
                    .map_err(|_| "no answer (is the replica's daemon running?)".to_owned())?;
                let sample = reply
                    .result()
                    .map_err(|e| format!("error reply: {:?}", e.payload().to_bytes()))?;
                Ok::<_, String>(sample.payload().to_bytes().to_vec())
            }));
        }
        let (name, service, runtime) = (self.name.clone(), self.service, self.runtime.clone());
        Ok(Pending::new(move || {
            let mut answers = Vec::with_capacity(pending.len());
            for task in pending {
                let bytes = runtime
                    .block_on(task)
                    .map_err(|e| failed(&name, e))?
                    .map_err(|e| failed(&name, e))?;
                match jit_kernel::sync::wire::decode_reply(&name, &bytes)? {
                    Response::Ok(value) => answers.push(value),
                    Response::Err(body) => {
                        return Err(jit_kernel::Error::Remote {
                            code: body.code,
                            message: format!(
                                "{} {} refused: {}",
                                match service {
                                    Service::Sync => "the replica",
                                    Service::Federation => "the universe at",
                                },
                                name,
                                body.message
                            ),
                            details: body.details,
                        })
                    }
                }
            }
            Ok(answers)
        }))
    }
}

/// Reaches witnesses (`jit_kernel::federation::witness`) over Zenoh: each endpoint gets its
/// own client session on `runtime`.
pub struct ZenohReach {
    runtime: tokio::runtime::Handle,
}

impl ZenohReach {
    /// Witnesses reached on `runtime`.
    pub fn new(runtime: tokio::runtime::Handle) -> ZenohReach {
        ZenohReach { runtime }
    }
}

impl jit_kernel::federation::witness::Reach for ZenohReach {
    fn reach(&self, endpoint: &str) -> jit_kernel::Result<Box<dyn Remote>> {
        let remote = ZenohRemote::connect(endpoint, endpoint, "", self.runtime.clone())
            .map_err(|e| failed(endpoint, e))?;
        Ok(Box::new(remote.federation()))
    }
}
