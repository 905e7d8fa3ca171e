//! The daemon's side of the plane: queryables for writes (answered only once durable) and a
//! publisher that tails the kernel's log onto the event topics.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use jit_kernel::agents::{self, Target, Verified};
use jit_kernel::journal::{self, Journal};
use jit_kernel::log::{verify_record, LogOp};
use jit_kernel::observe::Observer;
use jit_kernel::rpc::protocol::{ErrorBody, Response};
use jit_kernel::store::Op;
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
    /// Allow `listen` endpoints reachable from other machines without TLS (warned about).
    pub insecure_listen: bool,
    /// Namespace prefix of every key expression ("" for none).
    pub namespace: String,
    /// Messages per second per agent.
    pub rate: f64,
    /// Burst size per agent.
    pub burst: f64,
    /// Fault injection for tests: the next N write replies are dropped after the effect is
    /// durable (as a lost network reply would be).
    pub drop_replies: Arc<AtomicU32>,
    /// How long the deliverer keeps its transaction open after the last batch, waiting for
    /// the next (writes it acknowledged meanwhile are durable in the journal).
    pub idle: Duration,
    /// Longest the deliverer keeps one transaction open while batches keep coming.
    pub max_open: Duration,
    /// Fault injection for tests: closing the plane drops its open transaction instead of
    /// committing it, as a crash would; what it acknowledged is only in the journal.
    pub crash_on_close: bool,
    /// Fault injection for tests: when the plane closes, the deliverer meets this barrier (of
    /// two) once on reaching its final commit and once more before making it, so a test can act
    /// while the commit is held back.
    pub final_commit_gate: Option<Arc<std::sync::Barrier>>,
    /// Fault injection for tests: this many write requests are lost on arrival, as Zenoh drops
    /// a request under congestion control `Drop` — held unanswered until the plane closes, so
    /// the agent sees no reply. One in every [`PlaneOptions::drop_request_every`] arrivals is
    /// lost while the count lasts.
    pub drop_requests: Arc<AtomicU32>,
    /// See [`PlaneOptions::drop_requests`]; 0 loses none.
    pub drop_request_every: u32,
}

impl Default for PlaneOptions {
    fn default() -> Self {
        PlaneOptions {
            unix_socket: None,
            listen: Vec::new(),
            connect: Vec::new(),
            insecure_listen: false,
            namespace: String::new(),
            rate: 20_000.0,
            burst: 2_000.0,
            drop_replies: Arc::new(AtomicU32::new(0)),
            idle: IDLE,
            max_open: MAX_OPEN,
            crash_on_close: false,
            final_commit_gate: None,
            drop_requests: Arc::new(AtomicU32::new(0)),
            drop_request_every: 0,
        }
    }
}

/// Most messages handed over (and journaled) together.
const MAX_BATCH: usize = 256;

/// How long the deliverer keeps its transaction open after the last batch, waiting for the
/// next, by default: longer than an agent takes to send its next write once acknowledged.
const IDLE: Duration = Duration::from_millis(1);

/// Longest the deliverer keeps one transaction open while batches keep coming, by default:
/// bounds how long other writers wait for the store and how late readers elsewhere see
/// acknowledged patches.
const MAX_OPEN: Duration = Duration::from_millis(10);

/// Longest a reader elsewhere in the process waits for the plane to commit what it
/// acknowledged ([`PlaneSettle`]).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running plane; closing it closes the Zenoh session.
pub struct Plane {
    session: zenoh::Session,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stages: Vec<std::thread::JoinHandle<()>>,
    repo: Arc<Repository>,
    settle: Arc<PlaneSettle>,
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

/// A write as it arrived: the query to answer, its key (namespace stripped) and its bytes
/// (none if there are more than [`agents::MAX_MESSAGE`]: it is refused unread).
struct Arrived {
    query: Query,
    key: String,
    bytes: Vec<u8>,
    /// The payload's size.
    size: usize,
}

/// A write that passed verification and rate limiting, waiting for its transaction.
struct Accepted {
    query: Query,
    key: String,
    bytes: Vec<u8>,
    verified: Verified,
}

/// Work for the deliverer.
enum Work {
    /// Writes to deliver, in arrival order.
    Deliver(Vec<Accepted>),
    /// Refusals the verifier answered, `(key, answer)`: their audit records go into the open
    /// transaction, so a flood of bad messages costs no commit each and the verifier never
    /// waits for one. Like any unacknowledged write, they are lost if the process dies first.
    Audit(Vec<(String, Response)>),
    /// Someone in this process wants to read what was acknowledged: commit, then answer.
    Settle(mpsc::SyncSender<jit_kernel::Result<()>>),
}

/// The plane as an observer of the store: settling the store (which an operation does before
/// it reads or commits an SWS as a whole) commits the transaction holding the writes the plane
/// acknowledged from its journal, so readers in this process see them.
struct PlaneSettle {
    work: Mutex<Option<mpsc::Sender<Work>>>,
    deliverer: OnceLock<ThreadId>,
    /// Once the deliverer has stopped, whether it stopped cleanly (after its final commit) or
    /// by a panic; and a signal when it stops: a settle that finds the plane closing waits.
    stopped: Mutex<Option<bool>>,
    stopping: Condvar,
}

impl PlaneSettle {
    /// Waits until the deliverer has stopped, so what it acknowledged is committed; an error
    /// if it takes too long or the deliverer died instead (its acknowledged writes are then
    /// only in the journal, delivered again when the universe is next opened).
    fn wait_stopped(&self) -> jit_kernel::Result<()> {
        let stopped = self
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (stopped, _) = self
            .stopping
            .wait_timeout_while(stopped, SETTLE_TIMEOUT, |stopped| stopped.is_none())
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *stopped {
            Some(true) => Ok(()),
            Some(false) => Err(jit_kernel::Error::InvalidInput(
                "the message plane's deliverer failed; what it acknowledged is in its journal"
                    .into(),
            )),
            None => Err(jit_kernel::Error::InvalidInput(
                "the message plane did not finish its last commit in time".into(),
            )),
        }
    }
}

/// Marks the deliverer stopped when dropped: cleanly when it returns, not if it panics.
struct StoppedOnDrop(Arc<PlaneSettle>);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        *self
            .0
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(!std::thread::panicking());
        self.0.stopping.notify_all();
    }
}

impl Observer for PlaneSettle {
    fn committed(&self) {}

    fn settle(&self) -> jit_kernel::Result<()> {
        // The deliverer settles the store itself before it opens a transaction.
        if self.deliverer.get() == Some(&std::thread::current().id()) {
            return Ok(());
        }
        let work = self.work.lock().ok().and_then(|work| work.clone());
        let Some(work) = work else {
            // The plane is closing: its deliverer commits everything before it stops.
            return self.wait_stopped();
        };
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if work.send(Work::Settle(done_tx)).is_err() {
            return self.wait_stopped();
        }
        match done_rx.recv_timeout(SETTLE_TIMEOUT) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Disconnected) => self.wait_stopped(),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(jit_kernel::Error::InvalidInput(
                "the message plane did not commit its acknowledged writes in time".into(),
            )),
        }
    }
}

impl Plane {
    /// Opens the session, declares the queryables and starts the delivery pipeline and the
    /// event publisher.
    ///
    /// Writes flow through three stages so that none waits for another's work: the queryable
    /// tasks hand arrivals over as they come; a verifier thread checks signatures and rate
    /// limits (answering refusals at once); a deliverer thread applies everything accepted so
    /// far in its open transaction, makes the batch durable in the journal
    /// ([`jit_kernel::journal`]) and answers each in arrival order, committing the transaction
    /// when the plane goes idle, after [`PlaneOptions::max_open`], before it answers a create,
    /// commit or discard, or when a reader in this process settles the store. While the
    /// deliverer waits for a flush, the next messages are being verified.
    ///
    /// Writes a previous run acknowledged but did not commit (it crashed) are delivered again
    /// from the journal before anything is served. If the store or the journal fails while
    /// acknowledged writes are not committed yet, the process aborts, so that the next start
    /// recovers them before anything else writes.
    pub async fn start(repo: Arc<Repository>, options: PlaneOptions) -> Result<Plane> {
        crate::listen::check(&options.listen, options.insecure_listen)?;
        let (journal, _) = agents::open_journal(&repo)?;
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

        // Everything that can fail comes before anything starts, so a failed start leaves no
        // thread, task or observer behind (and releases the journal).
        let mut queryables = Vec::new();
        // Every key below `jit/sws/` and `jit/kernel/`, so that a request on a key with no
        // operation (`jit/kernel/frobnicate`) is answered `unknown_topic`, not left to time out.
        for key in ["jit/sws/**", "jit/kernel/**"] {
            queryables.push(
                session
                    .declare_queryable(keyexpr(&options.namespace, key))
                    .await
                    .map_err(PlaneError::zenoh)?,
            );
        }
        let sync_queries = session
            .declare_queryable(keyexpr(&options.namespace, crate::sync::SYNC_KEYS))
            .await
            .map_err(PlaneError::zenoh)?;

        let notify = Arc::new(Notify::new());
        let (arrived_tx, arrived_rx) = mpsc::channel::<Vec<Arrived>>();
        let (work_tx, work_rx) = mpsc::channel::<Work>();
        let settle = Arc::new(PlaneSettle {
            work: Mutex::new(Some(work_tx.clone())),
            deliverer: OnceLock::new(),
            stopped: Mutex::new(None),
            stopping: Condvar::new(),
        });
        let verifier = spawn_stage("jit-plane-verify", {
            let (repo, options) = (repo.clone(), options.clone());
            move || verify_stage(&repo, &options, arrived_rx, work_tx)
        })?;
        let deliverer = spawn_stage("jit-plane-deliver", {
            let (repo, options, notify) = (repo.clone(), options.clone(), notify.clone());
            let settle = settle.clone();
            move || {
                let _ = settle.deliverer.set(std::thread::current().id());
                let _stopped = StoppedOnDrop(settle);
                Deliverer {
                    repo: &repo,
                    options: &options,
                    notify: &notify,
                    journal,
                }
                .run(work_rx)
            }
        })?;
        let stages = vec![verifier, deliverer];
        repo.store().observe(settle.clone());
        let mut tasks = Vec::new();
        for queryable in queryables {
            let (namespace, arrived_tx) = (options.namespace.clone(), arrived_tx.clone());
            let mut losses = Losses::new(&options);
            tasks.push(tokio::spawn(async move {
                while let Ok(first) = queryable.recv_async().await {
                    // Hand over whatever else has already arrived along with it.
                    let mut batch = Vec::new();
                    let mut next = Some(first);
                    while let Some(query) = next.take() {
                        if let Some(query) = losses.pass(query) {
                            batch.push(arrived(&namespace, query));
                        }
                        if batch.len() < MAX_BATCH {
                            next = queryable.try_recv().ok().flatten();
                        }
                    }
                    if batch.is_empty() {
                        continue;
                    }
                    if arrived_tx.send(batch).is_err() {
                        break; // the pipeline has stopped
                    }
                }
            }));
        }
        drop(arrived_tx);
        tasks.push(tokio::spawn(crate::sync::serve(repo.clone(), sync_queries)));
        tasks.push(tokio::spawn(publish_events(
            session.clone(),
            repo.clone(),
            options.namespace.clone(),
            notify,
        )));
        Ok(Plane {
            session,
            tasks,
            stages,
            repo,
            settle,
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
        // The queryable tasks and the settle hook held the only senders: the stages drain,
        // the deliverer commits, and they stop. Until then a settle waits for that commit; the
        // hook is removed only once it is done.
        if let Ok(mut work) = self.settle.work.lock() {
            work.take();
        }
        let stages = self.stages;
        let _ = tokio::task::spawn_blocking(move || {
            for stage in stages {
                let _ = stage.join();
            }
        })
        .await;
        let observer: Arc<dyn Observer> = self.settle.clone();
        self.repo.store().unobserve(&observer);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.session.close()).await;
    }
}

/// The fault injection of [`PlaneOptions::drop_requests`]: loses requests on arrival, holding
/// them unanswered.
struct Losses {
    left: Arc<AtomicU32>,
    every: u32,
    seen: u32,
    held: Vec<Query>,
}

impl Losses {
    fn new(options: &PlaneOptions) -> Losses {
        Losses {
            left: options.drop_requests.clone(),
            every: options.drop_request_every,
            seen: 0,
            held: Vec::new(),
        }
    }

    /// The query, unless it is to be lost.
    fn pass(&mut self, query: Query) -> Option<Query> {
        if self.every == 0 {
            return Some(query);
        }
        self.seen += 1;
        if self.seen.is_multiple_of(self.every) && take_drop(&self.left) {
            self.held.push(query);
            return None;
        }
        Some(query)
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
    let size = query.payload().map_or(0, |p| p.len());
    // An oversized payload is not copied: it is refused by its size.
    let bytes = match query.payload() {
        Some(payload) if size <= agents::MAX_MESSAGE => payload.to_bytes().to_vec(),
        _ => Vec::new(),
    };
    Arrived {
        query,
        key,
        bytes,
        size,
    }
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
/// A refusal's audit record is queued for the deliverer before the refusal is answered, so a
/// settle that follows the answer finds the record committed.
fn verify_stage(
    repo: &Repository,
    options: &PlaneOptions,
    arrived: mpsc::Receiver<Vec<Arrived>>,
    accepted: mpsc::Sender<Work>,
) {
    let mut limiter = RateLimiter::new(options.rate, options.burst);
    while let Ok(first) = arrived.recv() {
        let batch = drain(&arrived, first, MAX_BATCH);
        let mut refused = Vec::new();
        let mut answers = Vec::new();
        let batch: Vec<Arrived> = batch
            .into_iter()
            .filter_map(|arrived| {
                if arrived.size <= agents::MAX_MESSAGE {
                    return Some(arrived);
                }
                let refusal = Response::Err(ErrorBody {
                    code: jit_kernel::Code::TooLarge.as_str().to_owned(),
                    message: format!(
                        "message of {} bytes exceeds {}",
                        arrived.size,
                        agents::MAX_MESSAGE
                    ),
                    details: None,
                });
                answers.push((arrived.query, refusal.clone()));
                refused.push((arrived.key, refusal));
                None
            })
            .collect();
        let messages: Vec<(&str, &[u8])> = batch
            .iter()
            .map(|a| (a.key.as_str(), a.bytes.as_slice()))
            .collect();
        let verdicts = agents::check_all(repo.store(), &messages);
        let mut passed = Vec::with_capacity(batch.len());
        for (
            Arrived {
                query, key, bytes, ..
            },
            verdict,
        ) in batch.into_iter().zip(verdicts)
        {
            match verdict {
                Err(refusal) => {
                    answers.push((query, refusal.clone()));
                    refused.push((key, refusal));
                }
                Ok(verified) if !limiter.allow(&verified.envelope.sender) => {
                    let refusal = Response::Err(ErrorBody {
                        code: jit_kernel::Code::RateLimited.as_str().to_owned(),
                        message: format!("{} is over its rate limit", verified.envelope.sender),
                        details: None,
                    });
                    answers.push((query, refusal.clone()));
                    refused.push((key, refusal));
                }
                Ok(verified) => passed.push(Accepted {
                    query,
                    key,
                    bytes,
                    verified,
                }),
            }
        }
        let stopped = !refused.is_empty() && accepted.send(Work::Audit(refused)).is_err();
        for (query, refusal) in &answers {
            answer(query, refusal);
        }
        if stopped {
            break;
        }
        if !passed.is_empty() && accepted.send(Work::Deliver(passed)).is_err() {
            break;
        }
    }
}

/// Whether a write must be committed before it is answered rather than journaled: creating an
/// SWS (its id is random, so delivering it again would make another), and committing or
/// discarding one (others must see the branch move, and a commit delivered again could meet a
/// branch that moved meanwhile).
fn commits_at_once(verified: &Verified) -> bool {
    match &verified.target {
        Target::Create => true,
        Target::Sws { verb, .. } => verb.ends_the_sws(),
    }
}

/// Acknowledged writes could not be made durable in the store, or a batch could not be made
/// durable in the journal after earlier ones were acknowledged from it: stop the process as a
/// crash would. Nothing else may write before the journal is delivered again, and the next
/// start does that first; going on would let other writers overtake acknowledged patches.
fn fail_stop(what: &str, error: &jit_kernel::Error) -> ! {
    tracing::error!(%error, "{what}; stopping so that the next start recovers the journal");
    eprintln!("jit: {what}: {error}; stopping so that the next start recovers the journal");
    std::process::abort()
}

/// What the deliverer takes from its queue at once ([`gather`]).
struct Gathered {
    /// Writes to deliver, in arrival order.
    batch: Vec<Accepted>,
    /// Settle requests, answered once this batch is committed.
    settles: Vec<mpsc::SyncSender<jit_kernel::Result<()>>>,
    /// Refusals to audit (already answered, so writing them after the batch reorders nothing).
    refused: Vec<(String, Response)>,
}

/// Everything already queued behind `first`, up to [`MAX_BATCH`] writes.
fn gather(work: &mpsc::Receiver<Work>, mut batch: Vec<Accepted>) -> Gathered {
    let mut settles = Vec::new();
    let mut refused = Vec::new();
    while batch.len() < MAX_BATCH {
        match work.try_recv() {
            Ok(Work::Deliver(more)) => batch.extend(more),
            Ok(Work::Settle(done)) => settles.push(done),
            Ok(Work::Audit(more)) => refused.extend(more),
            Err(_) => break,
        }
    }
    Gathered {
        batch,
        settles,
        refused,
    }
}

/// The deliverer thread: applies batches in one open transaction, journals them, answers, and
/// commits when there is a reason to.
struct Deliverer<'r> {
    repo: &'r Repository,
    options: &'r PlaneOptions,
    notify: &'r Notify,
    journal: Journal,
}

/// The deliverer's open transaction.
struct Open<'s> {
    op: Op<'s>,
    /// When it began.
    since: Instant,
    /// Whether it holds batches already acknowledged from the journal: then it must commit,
    /// or the process stops ([`fail_stop`]).
    journaled: bool,
}

impl<'r> Deliverer<'r> {
    fn run(mut self, work: mpsc::Receiver<Work>) {
        let mut open: Option<Open<'r>> = None;
        loop {
            let next = match &open {
                None => work
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(open) => work.recv_timeout(
                    (self.options.idle)
                        .min(self.options.max_open.saturating_sub(open.since.elapsed())),
                ),
            };
            match next {
                Ok(Work::Audit(refused)) => {
                    open = self.audit(open, &refused);
                }
                Ok(Work::Deliver(first)) => {
                    let Gathered {
                        batch,
                        settles,
                        refused,
                    } = gather(&work, first);
                    let (left_open, committed) = self.deliver(open, batch, !settles.is_empty());
                    open = left_open;
                    if !refused.is_empty() {
                        open = self.audit(open, &refused);
                    }
                    for done in settles {
                        let _ = done.send(match &committed {
                            Ok(()) => Ok(()),
                            Err(error) => Err(jit_kernel::Error::InvalidInput(format!(
                                "the message plane could not commit: {error}"
                            ))),
                        });
                    }
                }
                Ok(Work::Settle(done)) => {
                    let result = self.commit(open.take());
                    let _ = done.send(result);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.commit(open.take());
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Some(gate) = &self.options.final_commit_gate {
                        gate.wait(); // reached
                        gate.wait(); // proceed
                    }
                    if self.options.crash_on_close {
                        drop(open.take());
                    } else {
                        let _ = self.commit(open.take());
                    }
                    break;
                }
            }
        }
    }

    /// Writes the audit records of refusals into the open transaction (opening one if
    /// needed); they commit with it. Returns the transaction left open.
    fn audit(
        &mut self,
        open: Option<Open<'r>>,
        refused: &[(String, Response)],
    ) -> Option<Open<'r>> {
        let mut open = match self.open_or_begin(open) {
            Ok(open) => open,
            Err(error) => {
                tracing::warn!(%error, "cannot audit refused messages");
                return None;
            }
        };
        agents::audit_into(
            &mut open.op,
            refused
                .iter()
                .map(|(key, response)| (key.as_str(), response)),
        );
        Some(open)
    }

    /// Applies `batch` in the open transaction (opening one if needed), makes it durable — in
    /// the journal, or by committing when `settle` asks for it or the batch needs it — and
    /// answers. Returns the transaction left open and, when it committed, how that went.
    fn deliver(
        &mut self,
        mut open: Option<Open<'r>>,
        batch: Vec<Accepted>,
        settle: bool,
    ) -> (Option<Open<'r>>, jit_kernel::Result<()>) {
        let at_once = batch.iter().any(|a| commits_at_once(&a.verified));
        if at_once && open.is_some() {
            // A create, commit or discard runs on a freshly settled store, as it would alone.
            if let Err(error) = self.commit(open.take()) {
                self.refuse_all(&batch, &error);
                return (None, Err(error));
            }
        }
        let mut open = match self.open_or_begin(open) {
            Ok(open) => open,
            Err(error) => {
                tracing::error!(%error, "cannot start a transaction for the plane's writes");
                self.refuse_all(&batch, &error);
                return (None, Err(error));
            }
        };
        let responses =
            agents::deliver_into(self.repo, &mut open.op, batch.iter().map(|a| &a.verified));
        if open.op.is_poisoned() {
            // The transaction can no longer commit, so no answer of this batch may be sent.
            let error = jit_kernel::Error::InvalidInput(
                "the plane's transaction failed while delivering a batch".into(),
            );
            if open.journaled {
                fail_stop("cannot keep the plane's acknowledged writes", &error);
            }
            drop(open);
            self.refuse_all(&batch, &error);
            return (None, Err(error));
        }
        let (left_open, committed) =
            if at_once || settle || open.since.elapsed() >= self.options.max_open {
                match self.commit(Some(open)) {
                    Ok(()) => (None, Ok(())),
                    Err(error) => {
                        // Nothing of this transaction was acknowledged (else the commit
                        // would have stopped the process): the batch is refused whole.
                        self.refuse_all(&batch, &error);
                        return (None, Err(error));
                    }
                }
            } else {
                let messages: Vec<(&str, &[u8])> = batch
                    .iter()
                    .map(|a| (a.key.as_str(), a.bytes.as_slice()))
                    .collect();
                match self.journal.append(&messages) {
                    Ok(()) => open.journaled = true,
                    Err(error) if open.journaled => {
                        fail_stop("cannot append to the plane journal", &error)
                    }
                    Err(error) => {
                        // Nothing was acknowledged yet; what the append may have left on disk
                        // lies past the journal's end and is never read back.
                        drop(open);
                        tracing::error!(%error, "cannot append to the plane journal");
                        self.refuse_all(&batch, &error);
                        return (None, Err(error));
                    }
                }
                (Some(open), Ok(()))
            };
        for (accepted, response) in batch.iter().zip(responses) {
            if matches!(response, Response::Ok(_)) && take_drop(&self.options.drop_replies) {
                continue; // fault injection: the effect is durable, the reply is lost
            }
            answer(&accepted.query, &response);
        }
        (left_open, committed)
    }

    /// The open transaction, or a new one.
    fn open_or_begin(&mut self, open: Option<Open<'r>>) -> jit_kernel::Result<Open<'r>> {
        match open {
            Some(open) => Ok(open),
            None => self.begin(),
        }
    }

    /// Opens the transaction for the next batches, after the mount's buffered writes landed
    /// (they go before the agents' writes).
    fn begin(&mut self) -> jit_kernel::Result<Open<'r>> {
        let store = self.repo.store();
        if let Err(error) = store.settle() {
            tracing::warn!(%error, "could not settle the mount's buffered writes");
        }
        Ok(Open {
            op: store.begin()?,
            since: Instant::now(),
            journaled: false,
        })
    }

    /// Commits the open transaction, if any, with the journal mark it covers, and resets the
    /// journal. A failure with acknowledged writes at stake stops the process.
    fn commit(&mut self, open: Option<Open<'r>>) -> jit_kernel::Result<()> {
        let Some(mut open) = open else {
            return Ok(());
        };
        if open.journaled {
            if let Err(error) = journal::record_mark(&mut open.op, self.journal.mark()) {
                fail_stop("cannot record the plane journal's mark", &error);
            }
        }
        if let Err(error) = open.op.commit() {
            if open.journaled {
                fail_stop("cannot commit the plane's acknowledged writes", &error);
            }
            return Err(error);
        }
        if open.journaled {
            if let Err(error) = self.journal.reset() {
                fail_stop("cannot reset the plane journal", &error);
            }
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Answers every write of `batch` with `error`: none of it took effect.
    fn refuse_all(&self, batch: &[Accepted], error: &jit_kernel::Error) {
        let response = jit_kernel::rpc::protocol::error_response(error);
        for accepted in batch {
            answer(&accepted.query, &response);
        }
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
