//! The daemon's side of the plane: queryables for writes (answered only once durable) and a
//! publisher that tails the kernel's log onto the event topics.
//!
//! A write goes through stages, one file each, so that none waits for another's work:
//!
//! 1. arrival (here): the queryable tasks hand what arrived over as it comes;
//! 2. [`verify`]: a thread checks size, signature and rate, answering refusals at once;
//! 3. [`deliver`]: a thread runs the accepted writes in its open transaction, journals them,
//!    answers, and commits when there is a reason to;
//! 4. [`publish`]: a task puts every new log record on the event topics.
//!
//! [`queries`] answers what is asked outside that pipeline (events since a position, enrolment
//! requests). [`work`] is what the stages hand each other; [`settle`] lets readers elsewhere in the process wait for the deliverer's commit;
//! [`options`] holds the knobs and the fault injection tests use.

mod deliver;
mod options;
pub mod publish;
mod queries;
mod settle;
mod verify;
mod work;

use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use jit_kernel::agents;
use jit_kernel::observe::Observer;
use jit_kernel::Repository;
use tokio::sync::Notify;

pub use options::PlaneOptions;

use crate::{base_config, keyexpr, PlaneError, Result};
use deliver::Deliverer;
use options::{Losses, MAX_BATCH};
use publish::publish_events;
use settle::{PlaneSettle, StoppedOnDrop};
use verify::{arrived, verify_stage, Arrived};
use work::Work;

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
        let mut config = base_config("peer", options.zenoh_config.as_deref())?;
        crate::listen::check(
            &options.listen,
            crate::listen::MutualTls::of(&config),
            options.insecure_listen,
        )?;
        let (journal, _) = agents::open_journal(&repo)?;
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
        let since_queries = session
            .declare_queryable(keyexpr(&options.namespace, publish::SINCE))
            .await
            .map_err(PlaneError::zenoh)?;
        let enrol_queries = session
            .declare_queryable(keyexpr(
                &options.namespace,
                jit_kernel::agents::enrol::ENROL_KEY,
            ))
            .await
            .map_err(PlaneError::zenoh)?;
        let federation_queries = session
            .declare_queryable(keyexpr(&options.namespace, crate::sync::FEDERATION_KEYS))
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
        tasks.push(tokio::spawn(crate::sync::serve(
            repo.clone(),
            sync_queries,
            crate::sync::Service::Sync,
        )));
        tasks.push(tokio::spawn(crate::sync::serve(
            repo.clone(),
            federation_queries,
            crate::sync::Service::Federation,
        )));
        if let Some(every) = options.gossip_every {
            tasks.push(tokio::spawn(crate::gossip::run(
                session.clone(),
                repo.clone(),
                options.namespace.clone(),
                every,
            )));
        }
        tasks.push(tokio::spawn(queries::serve(
            repo.clone(),
            since_queries,
            queries::Asked::Since,
        )));
        tasks.push(tokio::spawn(queries::serve(
            repo.clone(),
            enrol_queries,
            queries::Asked::Enrol,
        )));
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

fn spawn_stage(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|e| PlaneError::Zenoh(format!("cannot start the {name} thread: {e}")))
}
