//! The agent library: a Zenoh client that signs its messages and retries each write, with the
//! same envelope, until it is acknowledged (at-least-once; the kernel makes the effect
//! exactly-once).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ciborium::value::Value;
use ed25519_dalek::SigningKey;
use jit_kernel::agents::Envelope;
use jit_kernel::cbor;
use jit_kernel::history::CommitInfo;
use jit_kernel::patch::Patch;
use jit_kernel::rpc::protocol::Response;
use jit_kernel::rpc::service::{Committed, CreateArgs, Declared};
use jit_kernel::sws::Applied;

use crate::{base_config, keyexpr, PlaneError, Result};

/// How an agent reaches the plane.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Endpoints to connect to, e.g. `unixsock-stream/<repo>/.jit/zenoh.sock`.
    pub connect: Vec<String>,
    /// Namespace prefix ("" for none).
    pub namespace: String,
    /// How long to wait for one acknowledgement.
    pub attempt_timeout: Duration,
    /// How many times to send a write before giving up.
    pub attempts: u32,
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
        }
    }
}

/// A connected agent.
pub struct Agent {
    session: zenoh::Session,
    name: String,
    key: SigningKey,
    ts: u64,
    options: AgentOptions,
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
        let mut config = base_config("client")?;
        let list = format!(
            "[{}]",
            options
                .connect
                .iter()
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        config
            .insert_json5("connect/endpoints", &list)
            .map_err(PlaneError::zenoh)?;
        let session = zenoh::open(config).await.map_err(PlaneError::zenoh)?;
        Ok(Agent {
            session,
            name: name.to_owned(),
            key,
            ts: 0,
            options,
        })
    }

    /// The Zenoh session (to subscribe to kernel topics).
    pub fn session(&self) -> &zenoh::Session {
        &self.session
    }

    /// The next logical timestamp: strictly increasing, also across restarts of the agent.
    fn next_ts(&mut self) -> u64 {
        self.ts = (self.ts + 1).max(now_micros());
        self.ts
    }

    /// Builds a signed envelope for `key` (without namespace).
    pub fn envelope(&mut self, key: &str, payload: Value) -> Result<Envelope> {
        let ts = self.next_ts();
        let msg_id = format!("{}-{ts}", self.name);
        Ok(Envelope::signed(
            key, &self.name, ts, msg_id, payload, &self.key,
        )?)
    }

    /// Sends an envelope until a reply arrives; returns the kernel's answer.
    pub async fn send(&self, key: &str, envelope: &Envelope) -> Result<Response> {
        let bytes = envelope.encode()?;
        let full = keyexpr(&self.options.namespace, key);
        for _ in 0..self.options.attempts {
            let replies = match self
                .session
                .get(&full)
                .payload(bytes.clone())
                .timeout(self.options.attempt_timeout)
                .await
            {
                Ok(replies) => replies,
                Err(e) => {
                    tracing::debug!(%e, "get failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if let Ok(reply) = replies.recv_async().await {
                if let Ok(sample) = reply.result() {
                    return Ok(Response::decode(&sample.payload().to_bytes())?);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(PlaneError::NoAck {
            key: full,
            attempts: self.options.attempts,
        })
    }

    /// Signs, sends until acknowledged, and turns an error answer into [`jit_kernel::Error::Remote`].
    pub async fn request(&mut self, key: &str, payload: Value) -> Result<Value> {
        let envelope = self.envelope(key, payload)?;
        match self.send(key, &envelope).await? {
            Response::Ok(value) => Ok(value),
            Response::Err(body) => Err(jit_kernel::Error::Remote {
                code: body.code,
                message: body.message,
                details: body.details,
            }
            .into()),
        }
    }

    /// Creates an SWS owned by this agent on `branch` (default: the checked-out branch).
    pub async fn create_sws(&mut self, branch: Option<&str>) -> Result<Created> {
        let args = CreateArgs {
            branch: branch.map(str::to_owned),
            owner: self.name.clone(),
            ..Default::default()
        };
        let value = self
            .request(
                "jit/kernel/create",
                cbor::to_value(&args).map_err(jit_kernel::Error::from)?,
            )
            .await?;
        let map = cbor::fields::as_map(&value, "create answer").map_err(jit_kernel::Error::from)?;
        let id = cbor::fields::as_text(
            cbor::fields::require(map, "id").map_err(jit_kernel::Error::from)?,
            "id",
        )
        .map_err(jit_kernel::Error::from)?;
        Ok(Created { id: id.to_owned() })
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

    /// Commits an SWS.
    pub async fn commit(&mut self, sws: &str, info: &CommitInfo) -> Result<Committed> {
        let declared = Declared {
            author: info.author.clone(),
            message: info.message.clone(),
            time: info.time.seconds,
            tz: info.time.tz_minutes,
        };
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

    /// Closes the session.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.session.close()).await;
    }
}
