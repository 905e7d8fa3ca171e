//! Step 1: the wire into a [`Command`]. An RPC request names its operation ([`Operation`], parsed
//! from text by `jit-proto` alone) and carries a payload map; a plane message's key names its
//! target ([`Target`]) and its signed payload carries the arguments. A payload that does not fit
//! the operation is `invalid_input`, and nothing has run.

use ciborium::value::Value;
use jit_proto::keyexpr::{SwsVerb, Target};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::args::{ApplyArgs, CommitArgs, CreateArgs, DelegateArgs, StageArgs, SwsArgs};
use super::typed::Command;
use crate::cbor;
use crate::error::{Error, Result};
use crate::sws::SwsId;
use crate::sync::wire;
use jit_proto::Operation;

fn payload<T: DeserializeOwned>(value: Value) -> Result<T> {
    cbor::from_value(value).map_err(|e| Error::InvalidInput(format!("bad payload: {e}")))
}

fn sws(args: SwsArgs) -> Result<SwsId> {
    args.sws.parse()
}

/// The payload of `jit/kernel/create`: `{branch?, from?, name?, owner?}`. The owner is the
/// signing agent; an `owner` field naming anyone else is refused when the command is authorized
/// (never ignored), and any other field is refused here.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaneCreate {
    branch: Option<String>,
    from: Option<String>,
    name: Option<String>,
    owner: Option<String>,
}

impl Command {
    /// The command an RPC request (or a sync query) asks for.
    pub fn decode(operation: Operation, value: Value) -> Result<Command> {
        Ok(match operation {
            Operation::Info => Command::Info,
            Operation::CreateSws => Command::CreateSws(payload(value)?),
            Operation::WorkingSws => Command::WorkingSws(payload(value)?),
            Operation::ApplyPatch => {
                let args: ApplyArgs = payload(value)?;
                Command::ApplyPatch {
                    sws: args.sws.parse()?,
                    patch: args.patch,
                }
            }
            Operation::Stage => {
                let args: StageArgs = payload(value)?;
                Command::Stage {
                    sws: args.sws.parse()?,
                    nodes: args.nodes.into_iter().map(|b| b.into_vec()).collect(),
                }
            }
            Operation::SwsStatus => Command::SwsStatus(sws(payload(value)?)?),
            Operation::SwsDiff => Command::SwsDiff(sws(payload(value)?)?),
            Operation::ListSws => Command::ListSws,
            Operation::SwsHistory => Command::SwsHistory(sws(payload(value)?)?),
            Operation::Discard => Command::Discard(sws(payload(value)?)?),
            Operation::ListSwsDir => {
                let args: super::args::SwsListArgs = payload(value)?;
                let id = args
                    .sws
                    .as_deref()
                    .ok_or_else(|| Error::InvalidInput("shadow.ls needs sws".into()))?
                    .parse()?;
                Command::ListSwsDir { sws: id, args }
            }
            Operation::ReadSws => {
                let args: super::args::SwsReadArgs = payload(value)?;
                let id = args
                    .sws
                    .as_deref()
                    .ok_or_else(|| Error::InvalidInput("shadow.read needs sws".into()))?
                    .parse()?;
                Command::ReadSws { sws: id, args }
            }
            Operation::DelegateSws => {
                let args: DelegateArgs = payload(value)?;
                Command::DelegateSws {
                    sws: args.sws.parse()?,
                    agent: args.agent,
                }
            }
            Operation::Commit => {
                let args: CommitArgs = payload(value)?;
                Command::Commit {
                    sws: args.sws.parse()?,
                    declared: args.declared,
                }
            }
            Operation::Validate => Command::Validate(sws(payload(value)?)?),
            Operation::Reset => Command::Reset(payload(value)?),
            Operation::Rebase => Command::Rebase(payload(value)?),
            Operation::GetNode => Command::GetNode(payload(value)?),
            Operation::GetParents => Command::GetParents(payload(value)?),
            Operation::Lineage => Command::Lineage(payload(value)?),
            Operation::GetRef => Command::GetRef(payload(value)?),
            Operation::ListRefs => Command::ListRefs,
            Operation::SetRef => Command::SetRef(payload(value)?),
            Operation::CreateBranch => Command::CreateBranch(payload(value)?),
            Operation::CreateTag => Command::CreateTag(payload(value)?),
            Operation::DeleteRef => Command::DeleteRef(payload(value)?),
            Operation::HeadStatus => Command::HeadStatus,
            Operation::CheckoutBranch => Command::CheckoutBranch(payload(value)?),
            Operation::ReadFile => Command::ReadFile(payload(value)?),
            Operation::ListTree => Command::ListTree(payload(value)?),
            Operation::ReadAt => Command::ReadAt(payload(value)?),
            Operation::RecordCheckout => Command::RecordCheckout(payload(value)?),
            Operation::GetCheckout => Command::GetCheckout(payload(value)?),
            Operation::ForgetCheckout => Command::ForgetCheckout(payload(value)?),
            Operation::SyncFrontier => Command::SyncFrontier,
            Operation::SyncNegotiate => {
                Command::SyncNegotiate(wire::from_value(value, "negotiation")?)
            }
            Operation::SyncFetch => Command::SyncFetch(wire::from_value(value, "fetch request")?),
            Operation::FederationHello => {
                Command::FederationHello(wire::from_value(value, "federation hello")?)
            }
            Operation::FederationHead => {
                Command::FederationHead(wire::from_value(value, "federation head request")?)
            }
            Operation::FederationDepend => {
                Command::FederationDepend(wire::from_value(value, "federation dependency")?)
            }
            Operation::FederationFetch => {
                Command::FederationFetch(wire::from_value(value, "federation fetch")?)
            }
            Operation::FederationCosign => {
                Command::FederationCosign(wire::from_value(value, "cosign request")?)
            }
            other => {
                return Err(Error::InvalidInput(format!(
                    "this build does not serve {other}"
                )))
            }
        })
    }

    /// The command a plane message asks for: its target (from the key) and its payload, signed
    /// by `sender`. The payloads of `status`, `analyze` and `discard` carry nothing and are not
    /// read.
    pub fn from_plane(target: Target, value: &Value, sender: &str) -> Result<Command> {
        let (id, verb) = match target {
            Target::Sws { id, verb } => (id, verb),
            Target::Create => {
                let args: PlaneCreate = payload(value.clone())?;
                return Ok(Command::CreateSws(CreateArgs {
                    branch: args.branch,
                    from: args.from,
                    owner: args.owner.unwrap_or_else(|| sender.to_owned()),
                    name: args.name,
                }));
            }
            Target::Tree => return Ok(Command::ListTree(payload(value.clone())?)),
            Target::Read => return Ok(Command::ReadAt(payload(value.clone())?)),
        };
        let sws = SwsId(id);
        Ok(match verb {
            SwsVerb::Patch => Command::ApplyPatch {
                sws,
                patch: payload(value.clone())?,
            },
            SwsVerb::Commit => Command::Commit {
                sws,
                declared: payload(value.clone())?,
            },
            SwsVerb::Discard => Command::Discard(sws),
            SwsVerb::Status => Command::SwsStatus(sws),
            SwsVerb::Analyze => Command::Validate(sws),
            SwsVerb::Diff => Command::SwsDiff(sws),
            SwsVerb::History => Command::SwsHistory(sws),
            SwsVerb::List => Command::ListSwsDir {
                sws,
                args: payload(value.clone())?,
            },
            SwsVerb::Read => Command::ReadSws {
                sws,
                args: payload(value.clone())?,
            },
        })
    }
}
