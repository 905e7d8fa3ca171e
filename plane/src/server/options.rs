//! How the plane listens and limits, and the fault injection tests use to lose requests and
//! replies the way a congested network does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zenoh::query::Query;

/// How the plane listens and limits.
#[derive(Debug, Clone)]
pub struct PlaneOptions {
    /// Unix socket to listen on (normally `.jit/zenoh.sock`).
    pub unix_socket: Option<PathBuf>,
    /// Extra endpoints to listen on, e.g. `tcp/127.0.0.1:7447`.
    pub listen: Vec<String>,
    /// Routers or peers to connect to.
    pub connect: Vec<String>,
    /// Allow `listen` endpoints reachable from other machines without mutual TLS (warned
    /// about).
    pub insecure_listen: bool,
    /// A Zenoh configuration file (JSON5) to start from: TLS certificates, access control
    /// (default: the file `JIT_ZENOH_CONFIG` names, if any).
    pub zenoh_config: Option<PathBuf>,
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
    /// How often the daemon gossips the heads it verified of other universes and the
    /// equivocation proofs it holds (`jit/fed/…`); None: never, and it hears none either.
    pub gossip_every: Option<Duration>,
}

impl Default for PlaneOptions {
    fn default() -> Self {
        PlaneOptions {
            unix_socket: None,
            listen: Vec::new(),
            connect: Vec::new(),
            insecure_listen: false,
            zenoh_config: None,
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
            gossip_every: Some(Duration::from_secs(30)),
        }
    }
}

/// Most messages handed over (and journaled) together.
pub(super) const MAX_BATCH: usize = 256;

/// How long the deliverer keeps its transaction open after the last batch, waiting for the
/// next, by default: longer than an agent takes to send its next write once acknowledged.
const IDLE: Duration = Duration::from_millis(1);

/// Longest the deliverer keeps one transaction open while batches keep coming, by default:
/// bounds how long other writers wait for the store and how late readers elsewhere see
/// acknowledged patches.
const MAX_OPEN: Duration = Duration::from_millis(10);

/// The fault injection of [`PlaneOptions::drop_requests`]: loses requests on arrival, holding
/// them unanswered.
pub(super) struct Losses {
    left: Arc<AtomicU32>,
    every: u32,
    seen: u32,
    held: Vec<Query>,
}

impl Losses {
    pub(super) fn new(options: &PlaneOptions) -> Losses {
        Losses {
            left: options.drop_requests.clone(),
            every: options.drop_request_every,
            seen: 0,
            held: Vec::new(),
        }
    }

    /// The query, unless it is to be lost.
    pub(super) fn pass(&mut self, query: Query) -> Option<Query> {
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

pub(super) fn take_drop(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}
