//! `jit agent …`: agent identities, and an agent's patches and commits over the message plane.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use ed25519_dalek::SigningKey;
use jit_kernel::agents;
use jit_kernel::Repository;
use jit_plane::agent::{Agent, AgentOptions};
use serde_json::json;

use crate::args::AgentCommand;
use crate::declared;
use crate::place::Place;

fn keys_dir(jit_dir: &Path) -> PathBuf {
    jit_dir.join("agents")
}

/// Which agent acts: `--as`, then $JIT_AGENT, then the only key on disk.
fn acting(jit_dir: &Path, explicit: Option<String>) -> Result<String> {
    if let Some(name) = explicit.or_else(|| std::env::var("JIT_AGENT").ok()) {
        return Ok(name);
    }
    let mut names: Vec<String> = std::fs::read_dir(keys_dir(jit_dir))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".key")
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    match names.len() {
        1 => Ok(names.remove(0)),
        0 => bail!("no agent: create one with `jit agent new NAME`"),
        _ => bail!("several agents exist: choose one with --as NAME or $JIT_AGENT"),
    }
}

fn load_key(jit_dir: &Path, name: &str) -> Result<SigningKey> {
    agents::validate_name(name)?;
    let path = keys_dir(jit_dir).join(format!("{name}.key"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no key for agent {name} at {}", path.display()))?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret)
        .with_context(|| format!("{} is not a key", path.display()))?;
    Ok(SigningKey::from_bytes(&secret))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn connect(jit_dir: &Path, name: &str) -> Result<Agent> {
    let key = load_key(jit_dir, name)?;
    Ok(Agent::connect(name, key, AgentOptions::local(jit_dir)).await?)
}

/// Runs one `jit agent` verb.
pub fn run(place: &Place, command: AgentCommand, json: bool) -> Result<ExitCode> {
    let repo = Repository::discover(&place.universe)?;
    let jit_dir = repo.jit_dir().to_path_buf();
    match command {
        AgentCommand::New { name, allow } => {
            agents::validate_name(&name)?;
            let dir = keys_dir(&jit_dir);
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(format!("{name}.key"));
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("agent {name} already has a key at {}", path.display()))?;
            file.write_all(hex::encode(key.to_bytes()).as_bytes())?;
            file.sync_all()?;
            let permissions = if allow.is_empty() {
                agents::enrol::default_permissions()
            } else {
                allow
            };
            agents::register(
                repo.store(),
                &name,
                &key.verifying_key(),
                permissions.clone(),
            )?;
            let public = hex::encode(key.verifying_key().as_bytes());
            if json {
                println!(
                    "{}",
                    json!({ "agent": name, "public_key": public, "permissions": permissions, "key_file": path.display().to_string() })
                );
            } else {
                println!(
                    "agent {name}\n  public key  {public}\n  secret key  {}\n  may         {}",
                    path.display(),
                    permissions.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Add {
            name,
            public_key,
            allow,
        } => {
            agents::validate_name(&name)?;
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(public_key.trim(), &mut bytes)
                .ok()
                .and_then(|()| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
                .with_context(|| {
                    format!("{public_key:?} is not an ed25519 public key (64 hex characters)")
                })?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)?;
            let permissions = if allow.is_empty() {
                agents::enrol::default_permissions()
            } else {
                allow
            };
            agents::register(repo.store(), &name, &key, permissions.clone())?;
            if json {
                println!(
                    "{}",
                    json!({ "agent": name, "public_key": hex::encode(bytes), "permissions": permissions })
                );
            } else {
                println!(
                    "agent {name} registered (key {}), may {}",
                    hex::encode(bytes),
                    permissions.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Revoke { name } => {
            agents::revoke(repo.store(), &name)?;
            if json {
                println!("{}", json!({ "revoked": name }));
            } else {
                println!("agent {name} revoked: its messages are refused from now on");
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Ls => {
            let all = agents::list(repo.store())?;
            if json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|(name, record)| {
                        json!({ "agent": name, "public_key": hex::encode(&record.public_key), "permissions": record.permissions })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for (name, record) in &all {
                    println!(
                        "{name}\t{}\t{}",
                        hex::encode(&record.public_key),
                        record.permissions.join(",")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Pending => {
            let all = agents::enrol::pending(repo.store())?;
            if json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|(name, request)| {
                        json!({ "agent": name, "public_key": hex::encode(&request.public_key), "permissions": request.permissions, "note": request.note, "requested_at_ms": request.at_ms })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else if all.is_empty() {
                println!("no enrolment requests are waiting");
            } else {
                for (name, request) in &all {
                    println!(
                        "{name}\t{}\t{}\t{}",
                        hex::encode(&request.public_key),
                        request.permissions.join(","),
                        request.note.as_deref().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Approve { name, allow } => {
            let permissions = (!allow.is_empty()).then_some(allow);
            let request = agents::enrol::approve(repo.store(), &name, permissions)?;
            let public = hex::encode(&request.public_key);
            if json {
                println!(
                    "{}",
                    json!({ "agent": name, "public_key": public, "permissions": request.permissions })
                );
            } else {
                println!(
                    "agent {name} registered (key {public}), may {}",
                    request.permissions.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Deny { name } => {
            agents::enrol::deny(repo.store(), &name)?;
            if json {
                println!("{}", json!({ "denied": name }));
            } else {
                println!("enrolment request from {name} denied");
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Create { branch, agent } => {
            let name = acting(&jit_dir, agent)?;
            drop(repo);
            runtime()?.block_on(async {
                let mut agent = connect(&jit_dir, &name).await?;
                let created = agent.create_sws(branch.as_deref()).await;
                agent.close().await;
                let created = created?;
                if json {
                    println!("{}", json!({ "sws": created.id }));
                } else {
                    println!("{}", created.id);
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        AgentCommand::Push { sws, patch, agent } => {
            let name = acting(&jit_dir, agent)?;
            let patch = crate::work::read_patch(&place.cwd, &patch)?;
            drop(repo);
            runtime()?.block_on(async {
                let mut agent = connect(&jit_dir, &name).await?;
                let applied = agent.push(&sws, &patch).await;
                agent.close().await;
                crate::work::print_applied(&applied?, json)
            })
        }
        AgentCommand::Commit { sws, commit, agent } => {
            let name = acting(&jit_dir, agent)?;
            let info = declared::commit_info(&commit, repo.config().author())?;
            drop(repo);
            runtime()?.block_on(async {
                let mut agent = connect(&jit_dir, &name).await?;
                let branch = agent
                    .status(&sws)
                    .await
                    .map(|status| status.branch.trim_start_matches("heads/").to_owned())
                    .unwrap_or_default();
                let done = agent.commit(&sws, &info).await;
                agent.close().await;
                let done = done?;
                if json {
                    println!("{}", serde_json::to_string(&done)?);
                } else {
                    println!(
                        "[{branch} {}] {}",
                        done.snapshot.short(),
                        info.message.lines().next().unwrap_or_default()
                    );
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        AgentCommand::Events { count, since, last } => {
            let tail = repo.store().log_tail(&repo.store().read()?)?;
            let from = match (since, last) {
                (Some(since), _) => Some(since.max(1)),
                (None, Some(last)) => Some(tail.saturating_sub(last) + 1),
                (None, None) => None,
            };
            runtime()?.block_on(async {
                let session = {
                    let socket =
                        format!("unixsock-stream/{}", jit_dir.join("zenoh.sock").display());
                    let config = jit_plane::client_config(&[socket])?;
                    zenoh::open(config).await.map_err(anyhow::Error::msg)?
                };
                let subscriber = session
                    .declare_subscriber(jit_plane::server::publish::EVENTS)
                    .await
                    .map_err(anyhow::Error::msg)?;
                let mut printer = EventPrinter {
                    count,
                    seen: 0,
                    last_seq: 0,
                };
                // Subscribed first, then the log from the position asked: nothing between the
                // two is missed, and live events already read from the log are dropped.
                if let Some(from) = from {
                    let txn = repo.store().read()?;
                    for entry in repo.store().log_entries_from(&txn, from)? {
                        let (_, stored) = entry?;
                        if !printer.print(stored.get(32..).unwrap_or_default())? {
                            break;
                        }
                    }
                }
                while !printer.done() {
                    let sample = subscriber.recv_async().await.map_err(anyhow::Error::msg)?;
                    printer.print(&sample.payload().to_bytes())?;
                }
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), session.close()).await;
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

/// Prints events as JSON lines, each log position once, up to a count.
struct EventPrinter {
    count: Option<usize>,
    seen: usize,
    last_seq: u64,
}

impl EventPrinter {
    fn done(&self) -> bool {
        self.count.is_some_and(|max| self.seen >= max)
    }

    /// Prints one record body unless its position was printed already; false once done.
    fn print(&mut self, body: &[u8]) -> Result<bool> {
        let value = jit_kernel::cbor::decode(body)?;
        let seq = jit_kernel::cbor::fields::as_map(&value, "event")
            .ok()
            .and_then(|map| jit_kernel::cbor::fields::get(map, "seq"))
            .and_then(|seq| jit_kernel::cbor::fields::as_u64(seq, "seq").ok())
            .unwrap_or(0);
        if seq <= self.last_seq {
            return Ok(!self.done());
        }
        self.last_seq = seq;
        println!(
            "{}",
            json!({ "topic": jit_plane::server::publish::EVENTS, "record": event_json(&value) })
        );
        std::io::stdout().flush()?;
        self.seen += 1;
        Ok(!self.done())
    }
}

/// A log record as JSON (byte strings as hex).
fn event_json(value: &ciborium::value::Value) -> serde_json::Value {
    use ciborium::value::Value;
    match value {
        Value::Integer(i) => json!(i128::from(*i)),
        Value::Bytes(b) => json!(hex::encode(b)),
        Value::Text(t) => json!(t),
        Value::Bool(b) => json!(b),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(event_json).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_text().unwrap_or("?").to_owned(), event_json(v)))
                .collect(),
        ),
        _ => serde_json::Value::Null,
    }
}
