//! The daemon's side of the plane: queryables for writes (answered only once durable) and a
//! publisher that tails the kernel's log onto the event topics.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jit_kernel::agents::{self, Verified};
use jit_kernel::log::{verify_record, LogOp};
use jit_kernel::rpc::protocol::{ErrorBody, Response};
use jit_kernel::Repository;
use tokio::sync::{Mutex, Notify};

use crate::ratelimit::RateLimiter;
use crate::{base_config, keyexpr, PlaneError, Result};

/// How the plane listens and limits.
#[derive(Debug, Clone)]
pub struct PlaneOptions {
    /// Unix socket to listen on (normally `.jit/zenoh.sock`).
    pub unix_socket: Option<PathBuf>,
    /// Extra endpoints to listen on, e.g. `tcp/127.0.0.1:7447`.
    pub listen: Vec<String>,
    /// Routers or peers to connect to.
    pub connect: Vec<String>,
    /// Namespace prefix of every key expression ("" for none).
    pub namespace: String,
    /// Messages per second per agent.
    pub rate: f64,
    /// Burst size per agent.
    pub burst: f64,
    /// Fault injection for tests: the next N write replies are dropped after the effect is
    /// durable (as a lost network reply would be).
    pub drop_replies: Arc<AtomicU32>,
}

impl Default for PlaneOptions {
    fn default() -> Self {
        PlaneOptions {
            unix_socket: None,
            listen: Vec::new(),
            connect: Vec::new(),
            namespace: String::new(),
            rate: 20_000.0,
            burst: 2_000.0,
            drop_replies: Arc::new(AtomicU32::new(0)),
        }
    }
}

/// Most messages delivered in one transaction.
const MAX_BATCH: usize = 64;

/// A running plane; closing it closes the Zenoh session.
pub struct Plane {
    session: zenoh::Session,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn endpoints(list: &[String]) -> String {
    format!(
        "[{}]",
        list.iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(",")
    )
}

impl Plane {
    /// Opens the session, declares the queryables and starts the event publisher.
    pub async fn start(repo: Arc<Repository>, options: PlaneOptions) -> Result<Plane> {
        let mut config = base_config("peer")?;
        let mut listen = options.listen.clone();
        if let Some(socket) = &options.unix_socket {
            let _ = std::fs::remove_file(socket);
            listen.push(format!("unixsock-stream/{}", socket.display()));
        }
        config
            .insert_json5("listen/endpoints", &endpoints(&listen))
            .map_err(PlaneError::zenoh)?;
        config
            .insert_json5("connect/endpoints", &endpoints(&options.connect))
            .map_err(PlaneError::zenoh)?;
        let session = zenoh::open(config).await.map_err(PlaneError::zenoh)?;

        let notify = Arc::new(Notify::new());
        let limiter = Arc::new(Mutex::new(RateLimiter::new(options.rate, options.burst)));
        let mut tasks = Vec::new();
        for key in ["jit/sws/*/*", "jit/kernel/create"] {
            let queryable = session
                .declare_queryable(keyexpr(&options.namespace, key))
                .await
                .map_err(PlaneError::zenoh)?;
            let (repo, notify, limiter, options) = (
                repo.clone(),
                notify.clone(),
                limiter.clone(),
                options.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while let Ok(first) = queryable.recv_async().await {
                    // Group commit: take whatever else is already waiting, deliver it all in one
                    // durable transaction, then answer each in arrival order.
                    let mut queries = vec![first];
                    while queries.len() < MAX_BATCH {
                        match queryable.try_recv() {
                            Ok(Some(query)) => queries.push(query),
                            _ => break,
                        }
                    }
                    let requests: Vec<(String, Vec<u8>)> = queries
                        .iter()
                        .map(|q| {
                            let key = strip(&options.namespace, q.key_expr().as_str()).to_owned();
                            (
                                key,
                                q.payload()
                                    .map(|p| p.to_bytes().to_vec())
                                    .unwrap_or_default(),
                            )
                        })
                        .collect();
                    let responses = handle_batch(&repo, &limiter, requests).await;
                    notify.notify_one();
                    for (query, response) in queries.iter().zip(responses) {
                        if matches!(response, Response::Ok(_)) && take_drop(&options.drop_replies) {
                            continue; // fault injection: the effect is durable, the reply is lost
                        }
                        match response.encode() {
                            Ok(body) => {
                                if let Err(e) = query.reply(query.key_expr().clone(), body).await {
                                    tracing::warn!(%e, "reply failed");
                                }
                            }
                            Err(e) => tracing::warn!(%e, "cannot encode a reply"),
                        }
                    }
                }
            }));
        }
        tasks.push(tokio::spawn(publish_events(
            session.clone(),
            repo,
            options.namespace.clone(),
            notify,
        )));
        Ok(Plane { session, tasks })
    }

    /// The Zenoh session (for a daemon that also wants to publish).
    pub fn session(&self) -> &zenoh::Session {
        &self.session
    }

    /// Stops the tasks and closes the session.
    pub async fn close(self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.session.close()).await;
    }
}

fn take_drop(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn strip<'k>(namespace: &str, key: &'k str) -> &'k str {
    if namespace.is_empty() {
        return key;
    }
    key.strip_prefix(namespace.trim_end_matches('/'))
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(key)
}

/// Verifies, rate-limits and delivers a batch of requests; answers in the same order.
async fn handle_batch(
    repo: &Arc<Repository>,
    limiter: &Mutex<RateLimiter>,
    requests: Vec<(String, Vec<u8>)>,
) -> Vec<Response> {
    let count = requests.len();
    let checked: Vec<std::result::Result<Verified, Response>> = {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || {
            requests
                .iter()
                .map(|(key, bytes)| agents::verify(repo.store(), key, bytes))
                .collect()
        })
        .await
        .unwrap_or_else(|e| (0..count).map(|_| Err(internal(&e))).collect())
    };
    let mut answers: Vec<Option<Response>> = Vec::with_capacity(count);
    let mut accepted = Vec::new();
    {
        let mut limiter = limiter.lock().await;
        for check in checked {
            match check {
                Err(response) => answers.push(Some(response)),
                Ok(verified) if !limiter.allow(&verified.envelope.sender) => {
                    let response = Response::Err(ErrorBody {
                        code: "rate_limited".into(),
                        message: format!("{} is over its rate limit", verified.envelope.sender),
                        details: None,
                    });
                    agents::audit(repo.store(), "rate limit", &response);
                    answers.push(Some(response));
                }
                Ok(verified) => {
                    accepted.push(verified);
                    answers.push(None);
                }
            }
        }
    }
    let delivered = if accepted.is_empty() {
        Vec::new()
    } else {
        let repo = repo.clone();
        let size = accepted.len();
        tokio::task::spawn_blocking(move || agents::execute_batch(&repo, accepted))
            .await
            .unwrap_or_else(|e| (0..size).map(|_| internal(&e)).collect())
    };
    let mut delivered = delivered.into_iter();
    answers
        .into_iter()
        .map(|answer| {
            answer
                .or_else(|| delivered.next())
                .unwrap_or_else(|| internal("lost answer"))
        })
        .collect()
}

fn internal(e: impl std::fmt::Display) -> Response {
    Response::Err(ErrorBody {
        code: "internal".into(),
        message: e.to_string(),
        details: None,
    })
}

/// Publishes every new log record: all on `events`, ref records on `ref_updates`, SWS lifecycle
/// records on `sws_lifecycle`. One task publishes in log order, so each topic is in order.
async fn publish_events(
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
