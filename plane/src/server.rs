//! The daemon's side of the plane: queryables for writes (answered only once durable) and a
//! publisher that tails the kernel's log onto the event topics.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use jit_kernel::agents::{self, Verified};
use jit_kernel::log::{verify_record, LogOp};
use jit_kernel::rpc::protocol::{ErrorBody, Response};
use jit_kernel::Repository;
use tokio::sync::Notify;
use zenoh::query::Query;
use zenoh::Wait;

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
const MAX_BATCH: usize = 256;

/// A running plane; closing it closes the Zenoh session.
pub struct Plane {
    session: zenoh::Session,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stages: Vec<std::thread::JoinHandle<()>>,
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

/// A write as it arrived: the query to answer, its key (namespace stripped) and its bytes.
struct Arrived {
    query: Query,
    key: String,
    bytes: Vec<u8>,
}

/// A write that passed verification and rate limiting, waiting for its transaction.
struct Accepted {
    query: Query,
    verified: Verified,
}

impl Plane {
    /// Opens the session, declares the queryables and starts the delivery pipeline and the
    /// event publisher.
    ///
    /// Writes flow through three stages so that none waits for another's work: the queryable
    /// tasks hand arrivals over as they come; a verifier thread checks signatures and rate
    /// limits (answering refusals at once); a deliverer thread runs everything accepted so
    /// far in one durable transaction (group commit) and then answers each in arrival order.
    /// While the deliverer waits for an fsync, the next messages are being verified.
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
        let (arrived_tx, arrived_rx) = mpsc::channel::<Vec<Arrived>>();
        let (accepted_tx, accepted_rx) = mpsc::channel::<Vec<Accepted>>();
        let stages = vec![
            spawn_stage("jit-plane-verify", {
                let (repo, options) = (repo.clone(), options.clone());
                move || verify_stage(&repo, &options, arrived_rx, accepted_tx)
            })?,
            spawn_stage("jit-plane-deliver", {
                let (repo, options, notify) = (repo.clone(), options.clone(), notify.clone());
                move || deliver_stage(&repo, &options, &notify, accepted_rx)
            })?,
        ];
        let mut tasks = Vec::new();
        for key in ["jit/sws/*/*", "jit/kernel/create"] {
            let queryable = session
                .declare_queryable(keyexpr(&options.namespace, key))
                .await
                .map_err(PlaneError::zenoh)?;
            let (namespace, arrived_tx) = (options.namespace.clone(), arrived_tx.clone());
            tasks.push(tokio::spawn(async move {
                while let Ok(first) = queryable.recv_async().await {
                    // Hand over whatever else has already arrived along with it.
                    let mut batch = vec![arrived(&namespace, first)];
                    while batch.len() < MAX_BATCH {
                        match queryable.try_recv() {
                            Ok(Some(query)) => batch.push(arrived(&namespace, query)),
                            _ => break,
                        }
                    }
                    if arrived_tx.send(batch).is_err() {
                        break; // the pipeline has stopped
                    }
                }
            }));
        }
        let sync_queries = session
            .declare_queryable(keyexpr(&options.namespace, crate::sync::SYNC_KEYS))
            .await
            .map_err(PlaneError::zenoh)?;
        tasks.push(tokio::spawn(crate::sync::serve(repo.clone(), sync_queries)));
        tasks.push(tokio::spawn(publish_events(
            session.clone(),
            repo,
            options.namespace.clone(),
            notify,
        )));
        Ok(Plane {
            session,
            tasks,
            stages,
        })
    }

    /// The Zenoh session (for a daemon that also wants to publish).
    pub fn session(&self) -> &zenoh::Session {
        &self.session
    }

    /// Stops the tasks and the pipeline (after the batch in hand is delivered and answered)
    /// and closes the session.
    pub async fn close(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        // The queryable tasks held the only senders: the stages drain and stop.
        let stages = self.stages;
        let _ = tokio::task::spawn_blocking(move || {
            for stage in stages {
                let _ = stage.join();
            }
        })
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.session.close()).await;
    }
}

fn spawn_stage(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|e| PlaneError::Zenoh(format!("cannot start the {name} thread: {e}")))
}

fn arrived(namespace: &str, query: Query) -> Arrived {
    let key = strip(namespace, query.key_expr().as_str()).to_owned();
    let bytes = query
        .payload()
        .map(|p| p.to_bytes().to_vec())
        .unwrap_or_default();
    Arrived { query, key, bytes }
}

/// Receives everything queued on `rx` behind `first`, up to `limit` items in all.
fn drain<T>(rx: &mpsc::Receiver<Vec<T>>, mut first: Vec<T>, limit: usize) -> Vec<T> {
    while first.len() < limit {
        match rx.try_recv() {
            Ok(more) => first.extend(more),
            Err(_) => break,
        }
    }
    first
}

/// Signatures, shapes and rate limits; refusals are answered here, the rest go on in order.
fn verify_stage(
    repo: &Repository,
    options: &PlaneOptions,
    arrived: mpsc::Receiver<Vec<Arrived>>,
    accepted: mpsc::Sender<Vec<Accepted>>,
) {
    let mut limiter = RateLimiter::new(options.rate, options.burst);
    while let Ok(first) = arrived.recv() {
        let batch = drain(&arrived, first, MAX_BATCH);
        let messages: Vec<(&str, &[u8])> = batch
            .iter()
            .map(|a| (a.key.as_str(), a.bytes.as_slice()))
            .collect();
        let verdicts = agents::verify_all(repo.store(), &messages);
        let mut passed = Vec::with_capacity(batch.len());
        for (Arrived { query, key, .. }, verdict) in batch.into_iter().zip(verdicts) {
            match verdict {
                Err(refusal) => answer(&query, &refusal),
                Ok(verified) if !limiter.allow(&verified.envelope.sender) => {
                    let refusal = Response::Err(ErrorBody {
                        code: "rate_limited".into(),
                        message: format!("{} is over its rate limit", verified.envelope.sender),
                        details: None,
                    });
                    agents::audit(repo.store(), &key, &refusal);
                    answer(&query, &refusal);
                }
                Ok(verified) => passed.push(Accepted { query, verified }),
            }
        }
        if !passed.is_empty() && accepted.send(passed).is_err() {
            break;
        }
    }
}

/// Group commit: everything accepted so far in one durable transaction, then the answers.
fn deliver_stage(
    repo: &Repository,
    options: &PlaneOptions,
    notify: &Notify,
    accepted: mpsc::Receiver<Vec<Accepted>>,
) {
    while let Ok(first) = accepted.recv() {
        let batch = drain(&accepted, first, MAX_BATCH);
        let (queries, verified): (Vec<Query>, Vec<Verified>) =
            batch.into_iter().map(|a| (a.query, a.verified)).unzip();
        let responses = agents::execute_batch(repo, verified);
        for (query, response) in queries.iter().zip(responses) {
            if matches!(response, Response::Ok(_)) && take_drop(&options.drop_replies) {
                continue; // fault injection: the effect is durable, the reply is lost
            }
            answer(query, &response);
        }
        // Events go out after the acknowledgements, so publishing never delays them.
        notify.notify_one();
    }
}

/// Sends the kernel's answer as the query's reply (the acknowledgement).
fn answer(query: &Query, response: &Response) {
    match response.encode() {
        Ok(body) => {
            if let Err(e) = query.reply(query.key_expr().clone(), body).wait() {
                tracing::warn!(%e, "reply failed");
            }
        }
        Err(e) => tracing::warn!(%e, "cannot encode a reply"),
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
