//! The agent library: a Zenoh client that signs its messages and retries each write, with the
//! same envelope, until it is acknowledged (at-least-once; the kernel makes the effect
//! exactly-once).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ciborium::value::Value;
use ed25519_dalek::SigningKey;
use jit_kernel::agents::{self, Envelope};
use jit_kernel::cbor;
use jit_kernel::command::reply::StatusInfo;
use jit_kernel::history::CommitInfo;
use jit_kernel::history::{Committed, Declared};
use jit_kernel::patch::Patch;
use jit_kernel::rpc::protocol::Response;
use jit_kernel::sws::Applied;

use crate::{keyexpr, PlaneError, Result};

/// Most messages kept unanswered at once: well inside the kernel's window of remembered
/// answers ([`agents::WINDOW`]), so every retry is answered with its original result.
pub const MAX_IN_FLIGHT: usize = (agents::WINDOW / 4) as usize;

/// How long an agent keeps resending an unanswered write by default.
pub const RETRY_FOR: Duration = Duration::from_secs(60);

/// How an agent reaches the plane.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Endpoints to connect to, e.g. `unixsock-stream/<repo>/.jit/zenoh.sock`.
    pub connect: Vec<String>,
    /// Namespace prefix ("" for none).
    pub namespace: String,
    /// How long to wait for one acknowledgement.
    pub attempt_timeout: Duration,
    /// How many times to send a write, at least, before giving up…
    pub attempts: u32,
    /// …and for how long, at least, since the oldest unanswered write first went unanswered:
    /// a daemon that is down refuses a connection at once, so a count alone runs out in a
    /// second or two, while a restart takes longer.
    pub retry_for: Duration,
    /// A Zenoh configuration file (JSON5) to start from: TLS certificates for a daemon across
    /// machines (default: the file `JIT_ZENOH_CONFIG` names, if any).
    pub zenoh_config: Option<std::path::PathBuf>,
}

impl AgentOptions {
    /// Options for the plane of the universe whose `.jit` is `jit_dir`.
    pub fn local(jit_dir: &std::path::Path) -> AgentOptions {
        AgentOptions {
            connect: vec![format!(
                "unixsock-stream/{}",
                jit_dir.join("zenoh.sock").display()
            )],
            namespace: String::new(),
            attempt_timeout: Duration::from_secs(2),
            attempts: 30,
            retry_for: RETRY_FOR,
            zenoh_config: None,
        }
    }
}

/// A connected agent.
pub struct Agent {
    session: zenoh::Session,
    name: String,
    key: SigningKey,
    ts: AtomicU64,
    options: AgentOptions,
}

/// The replies to one query.
type Replies = zenoh::handlers::FifoChannelHandler<zenoh::query::Reply>;

/// A message sent and not yet acknowledged.
struct InFlight {
    key: String,
    bytes: Vec<u8>,
    replies: Option<Replies>,
}

/// The payload of the first good reply, or `None` if none came in time.
async fn answer_of(replies: Replies) -> Option<Vec<u8>> {
    let reply = replies.recv_async().await.ok()?;
    let sample = reply.result().ok()?;
    Some(sample.payload().to_bytes().to_vec())
}

/// An answer as a result: a refusal becomes [`jit_kernel::Error::Remote`].
fn into_result(response: Response) -> Result<Value> {
    match response {
        Response::Ok(value) => Ok(value),
        Response::Err(body) => Err(jit_kernel::Error::Remote {
            code: body.code,
            message: body.message,
            details: body.details,
        }
        .into()),
    }
}

/// A created SWS, as the plane answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Its id (hex).
    pub id: String,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Agent {
    /// Opens a client session as agent `name` with its signing key.
    pub async fn connect(name: &str, key: SigningKey, options: AgentOptions) -> Result<Agent> {
        let config = crate::client_config_from(&options.connect, options.zenoh_config.as_deref())?;
        let session = zenoh::open(config).await.map_err(PlaneError::zenoh)?;
        Ok(Agent {
            session,
            name: name.to_owned(),
            key,
            ts: AtomicU64::new(0),
            options,
        })
    }

    /// The Zenoh session (to subscribe to kernel topics).
    pub fn session(&self) -> &zenoh::Session {
        &self.session
    }

    /// The next logical timestamp: strictly increasing, also across restarts of the agent.
    fn next_ts(&self) -> u64 {
        let now = now_micros();
        let previous = self
            .ts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |ts| {
                Some((ts + 1).max(now))
            })
            .unwrap_or(0);
        (previous + 1).max(now)
    }

    /// The kernel's events from log position `from` on (at most
    /// [`crate::server::publish::MAX_SINCE`] per call; ask again from the returned `next`):
    /// the same bytes `jit/kernel/events` carries, so a late subscriber misses nothing.
    pub async fn events_since(&self, from: u64) -> Result<crate::server::publish::SinceReply> {
        let request = crate::server::publish::SinceRequest { from };
        let body = jit_kernel::cbor::to_canonical_bytes(&request)?;
        let key = keyexpr(&self.options.namespace, crate::server::publish::SINCE);
        let replies = self
            .session
            .get(key)
            .payload(body)
            .timeout(self.options.attempt_timeout)
            .await
            .map_err(PlaneError::zenoh)?;
        let reply = replies
            .recv_async()
            .await
            .map_err(|_| PlaneError::Zenoh("no answer to jit/log/since".into()))?;
        let sample = reply
            .result()
            .map_err(|e| PlaneError::Zenoh(format!("error reply: {:?}", e.payload().to_bytes())))?;
        match Response::decode(&sample.payload().to_bytes())? {
            Response::Ok(value) => Ok(jit_kernel::cbor::from_value(value)?),
            Response::Err(body) => Err(PlaneError::Kernel(jit_kernel::Error::Remote {
                code: body.code,
                message: body.message,
                details: body.details,
            })),
        }
    }

    /// Builds a signed envelope for `key` (without namespace).
    pub fn envelope(&self, key: &str, payload: Value) -> Result<Envelope> {
        let ts = self.next_ts();
        let msg_id = format!("{}-{ts}", self.name);
        Ok(Envelope::signed(
            key, &self.name, ts, msg_id, payload, &self.key,
        )?)
    }

    /// Sends an envelope until a reply arrives; returns the kernel's answer.
    pub async fn send(&self, key: &str, envelope: &Envelope) -> Result<Response> {
        let message = (keyexpr(&self.options.namespace, key), envelope.encode()?);
        let mut answers = self.deliver(std::iter::once(Ok(message)), 1).await?;
        answers
            .pop()
            .ok_or_else(|| PlaneError::Zenoh("no answer".into()))
    }

    /// Sends prepared messages `(full key, envelope bytes)` in order with up to `window` of
    /// them unacknowledged at a time (at most [`MAX_IN_FLIGHT`]), retrying until each is
    /// acknowledged; answers in order.
    ///
    /// Order is kept on the wire: answers are awaited oldest first, and when the oldest goes
    /// unanswered every unacknowledged message is sent again, oldest first (go-back-N), so the
    /// kernel sees them in their order again; those it had already applied are answered from
    /// its record of message ids without a second effect. Each message is still its own
    /// request: a refused one does not stop those behind it.
    async fn deliver(
        &self,
        messages: impl Iterator<Item = Result<(String, Vec<u8>)>>,
        window: usize,
    ) -> Result<Vec<Response>> {
        let window = window.clamp(1, MAX_IN_FLIGHT);
        let mut messages = messages.peekable();
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut answers = Vec::new();
        let mut failures = 0u32;
        let mut unanswered_since: Option<std::time::Instant> = None;
        loop {
            while in_flight.len() < window {
                let Some(message) = messages.next() else {
                    break;
                };
                let (key, bytes) = message?;
                let replies = self.dispatch(&key, &bytes).await;
                in_flight.push_back(InFlight {
                    key,
                    bytes,
                    replies,
                });
            }
            let Some(oldest) = in_flight.front_mut() else {
                break;
            };
            let answer = match oldest.replies.take() {
                Some(replies) => answer_of(replies).await,
                None => None,
            };
            if let Some(bytes) = answer {
                answers.push(Response::decode(&bytes)?);
                in_flight.pop_front();
                failures = 0;
                unanswered_since = None;
                continue;
            }
            failures += 1;
            let since = *unanswered_since.get_or_insert_with(std::time::Instant::now);
            if failures >= self.options.attempts && since.elapsed() >= self.options.retry_for {
                return Err(PlaneError::NoAck {
                    key: oldest.key.clone(),
                    attempts: failures,
                });
            }
            // Back off while nothing answers: 50 ms, doubling to a second.
            let pause = 50u64.saturating_mul(1 << failures.min(5)).min(1000);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            for message in in_flight.iter_mut() {
                message.replies = self.dispatch(&message.key, &message.bytes).await;
            }
        }
        Ok(answers)
    }

    /// Sends one query; `None` if it could not be sent (the caller retries). Sent with
    /// congestion control `Drop`, which its reply inherits: the daemon answers while it holds
    /// the store's write transaction, and a stalled agent must not hold it up (a dropped reply
    /// is retried like a lost one).
    async fn dispatch(&self, key: &str, bytes: &[u8]) -> Option<Replies> {
        match self
            .session
            .get(key)
            .payload(bytes.to_vec())
            .congestion_control(zenoh::qos::CongestionControl::Drop)
            .timeout(self.options.attempt_timeout)
            .await
        {
            Ok(replies) => Some(replies),
            Err(e) => {
                tracing::debug!(%e, "get failed; will retry");
                None
            }
        }
    }

    /// Signs, sends until acknowledged, and turns an error answer into [`jit_kernel::Error::Remote`].
    pub async fn request(&mut self, key: &str, payload: Value) -> Result<Value> {
        let mut answers = self
            .request_many(vec![(key.to_owned(), payload)], 1)
            .await?;
        answers
            .pop()
            .ok_or_else(|| PlaneError::Zenoh("no answer".into()))?
    }

    /// Signs and sends many writes `(key, payload)` in order, keeping up to `window` of them
    /// in flight (see [`Agent::deliver`] for the order and retry guarantees). Each answer is
    /// the kernel's value or its refusal as [`jit_kernel::Error::Remote`]; the outer error is
    /// a message that was never acknowledged.
    pub async fn request_many(
        &mut self,
        writes: Vec<(String, Value)>,
        window: usize,
    ) -> Result<Vec<Result<Value>>> {
        // Signed lazily, as the window opens.
        let prepared = writes.into_iter().map(|(key, payload)| {
            let envelope = self.envelope(&key, payload)?;
            Ok((keyexpr(&self.options.namespace, &key), envelope.encode()?))
        });
        let answers = self.deliver(prepared, window).await?;
        Ok(answers.into_iter().map(into_result).collect())
    }

    /// Creates an SWS owned by this agent on `branch` (default: the checked-out branch).
    pub async fn create_sws(&mut self, branch: Option<&str>) -> Result<Created> {
        // `{branch?}`: the owner is this agent, the signer.
        let args = match branch {
            Some(branch) => vec![(Value::Text("branch".into()), Value::Text(branch.to_owned()))],
            None => Vec::new(),
        };
        let value = self.request("jit/kernel/create", Value::Map(args)).await?;
        let map = cbor::fields::as_map(&value, "create answer").map_err(jit_kernel::Error::from)?;
        let id = cbor::fields::as_text(
            cbor::fields::require(map, "id").map_err(jit_kernel::Error::from)?,
            "id",
        )
        .map_err(jit_kernel::Error::from)?;
        Ok(Created { id: id.to_owned() })
    }

    /// An SWS's status: the same structure `jit status --json` and the RPC's `shadow.status`
    /// give.
    pub async fn status(&mut self, sws: &str) -> Result<StatusInfo> {
        let value = self
            .request(&format!("jit/sws/{sws}/status"), Value::Map(Vec::new()))
            .await?;
        Ok(cbor::from_value(value).map_err(jit_kernel::Error::from)?)
    }

    /// Pushes a patch to an SWS.
    pub async fn push(&mut self, sws: &str, patch: &Patch) -> Result<Applied> {
        let value = self
            .request(
                &format!("jit/sws/{sws}/patch"),
                cbor::to_value(patch).map_err(jit_kernel::Error::from)?,
            )
            .await?;
        Ok(cbor::from_value(value).map_err(jit_kernel::Error::from)?)
    }

    /// Pushes patches to an SWS in order with up to `window` unacknowledged at a time: the
    /// throughput path for an agent with many small edits. One answer per patch, in order.
    pub async fn push_many(
        &mut self,
        sws: &str,
        patches: &[Patch],
        window: usize,
    ) -> Result<Vec<Result<Applied>>> {
        let key = format!("jit/sws/{sws}/patch");
        let writes = patches
            .iter()
            .map(|patch| Ok((key.clone(), cbor::to_value(patch)?)))
            .collect::<jit_kernel::Result<Vec<_>>>()?;
        let answers = self.request_many(writes, window).await?;
        Ok(answers
            .into_iter()
            .map(|answer| Ok(cbor::from_value(answer?).map_err(jit_kernel::Error::from)?))
            .collect())
    }

    /// Commits an SWS.
    pub async fn commit(&mut self, sws: &str, info: &CommitInfo) -> Result<Committed> {
        let declared = Declared::from(info);
        let value = self
            .request(
                &format!("jit/sws/{sws}/commit"),
                cbor::to_value(&declared).map_err(jit_kernel::Error::from)?,
            )
            .await?;
        Ok(cbor::from_value(value).map_err(jit_kernel::Error::from)?)
    }

    /// Discards an SWS.
    pub async fn discard(&mut self, sws: &str) -> Result<()> {
        self.request(&format!("jit/sws/{sws}/discard"), Value::Map(Vec::new()))
            .await?;
        Ok(())
    }

    /// Asks the universe's owner to enrol this agent's key (made anywhere) under its name,
    /// with `permissions` (default: create SWS and commit to any branch) and a `note` for the
    /// owner. Idempotent: ask again to learn whether `jit agent approve` let it in
    /// ([`agents::enrol::State::Approved`]).
    pub async fn enrol(
        &self,
        permissions: Option<Vec<String>>,
        note: Option<&str>,
    ) -> Result<agents::enrol::Answer> {
        let text = |s: &str| Value::Text(s.to_owned());
        let mut payload = vec![(
            text("public_key"),
            Value::Bytes(self.key.verifying_key().as_bytes().to_vec()),
        )];
        if let Some(permissions) = permissions {
            let list = permissions.iter().map(|p| text(p)).collect();
            payload.push((text("permissions"), Value::Array(list)));
        }
        if let Some(note) = note {
            payload.push((text("note"), text(note)));
        }
        let key = agents::enrol::ENROL_KEY;
        let envelope = self.envelope(key, Value::Map(payload))?;
        let value = into_result(self.send(key, &envelope).await?)?;
        Ok(cbor::from_value(value).map_err(jit_kernel::Error::from)?)
    }

    /// A directory of a revision's tree (`rev`: a ref, id or expression; `None`: HEAD; `path`
    /// `""`: the root): `{snapshot, entries: [{name, kind, id, size?}]}`.
    pub async fn tree(&mut self, rev: Option<&str>, path: &str) -> Result<Value> {
        let mut args = vec![(Value::Text("path".into()), Value::Text(path.to_owned()))];
        if let Some(rev) = rev {
            args.push((Value::Text("rev".into()), Value::Text(rev.to_owned())));
        }
        self.request("jit/kernel/tree", Value::Map(args)).await
    }

    /// A file of a revision's tree, `len` bytes (at most 4 MiB; `None`: as many as fit) from
    /// `offset`: `{snapshot, kind, blob, size, offset, content}`.
    pub async fn read_at(
        &mut self,
        rev: Option<&str>,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Value> {
        let text = |s: &str| Value::Text(s.to_owned());
        let mut args = vec![
            (text("path"), text(path)),
            (text("offset"), Value::Integer(offset.into())),
        ];
        if let Some(rev) = rev {
            args.push((text("rev"), text(rev)));
        }
        if let Some(len) = len {
            args.push((text("len"), Value::Integer(len.into())));
        }
        self.request("jit/kernel/read", Value::Map(args)).await
    }

    /// Closes the session.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.session.close()).await;
    }
}
