//! Step 2: who asks, and whether they may. A command needs a [`Permission`] (from its type, see
//! [`super::typed::Command::permission`]); a [`Caller`] has it or is refused with a code: `forbidden`
//! for a missing permission, `not_owner` for an SWS that is neither the agent's nor delegated to
//! it. A refusal comes before any effect.
//!
//! - A **local** caller reached the kernel through the daemon's socket (whose uid and group
//!   check let it in) or runs it in-process: it may do anything the files would let it do.
//! - A **replica** asks over the plane's sync keys: it may read history and refs (sync), nothing
//!   else.
//! - An **agent** signed a plane message that verified against its registered key: it may
//!   read committed history (a revision's tree and files), create SWS (`sws.create`) owned by
//!   itself, use SWS it owns or is a delegate of, and commit
//!   them to branches it has `commit:<branch>` (or `commit:*`) for.

use crate::agents::{AgentRecord, CREATE_SWS};
use crate::error::{Code, Error, Result};
use crate::refs::RefName;
use crate::store::{ReadTxn, Store};
use crate::sws::{self, SwsId};

/// What a command needs its caller to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission<'c> {
    /// Only a local caller: operations the plane does not serve.
    Local,
    /// Reading history and refs for a replica (the sync operations).
    Replicate,
    /// Asking for published state as another universe (the federation operations).
    Federate,
    /// Reading committed history (a revision's tree or files): any registered agent may.
    ReadHistory,
    /// Creating an SWS owned by `owner`.
    CreateSws {
        /// Who will own it.
        owner: &'c str,
    },
    /// Writing or reading one SWS.
    UseSws(SwsId),
    /// Committing one SWS onto its branch.
    CommitSws(SwsId),
}

/// Who runs a command.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// A user on this machine (the RPC socket, or in-process).
    Local,
    /// A replica pulling over the plane.
    Replica,
    /// Another universe, over the plane: it reaches published state only, within a session
    /// its signed hello opened.
    Universe,
    /// A registered agent whose signed message verified.
    Agent {
        /// Its name (the envelope's sender).
        name: &'a str,
        /// Its registration.
        record: &'a AgentRecord,
    },
}

fn refuse(code: Code, message: String) -> Error {
    Error::Remote {
        code: code.as_str().to_owned(),
        message,
        details: None,
    }
}

impl Caller<'_> {
    /// Checks that the caller has `permission`, reading SWS ownership in `txn`.
    pub fn authorize(
        &self,
        permission: Permission<'_>,
        store: &Store,
        txn: &ReadTxn<'_>,
    ) -> Result<()> {
        match (self, permission) {
            (Caller::Local, _)
            | (Caller::Replica, Permission::Replicate)
            | (Caller::Universe, Permission::Federate)
            | (Caller::Agent { .. }, Permission::ReadHistory) => Ok(()),
            (Caller::Replica, _) => Err(refuse(
                Code::Forbidden,
                "a replica may only read history and refs".into(),
            )),
            (Caller::Universe, _) => Err(refuse(
                Code::Forbidden,
                "another universe may only ask for published state".into(),
            )),
            (
                Caller::Agent { name, .. },
                Permission::Local | Permission::Replicate | Permission::Federate,
            ) => Err(refuse(
                Code::Forbidden,
                format!("{name} may not do this over the plane"),
            )),
            (Caller::Agent { name, record }, Permission::CreateSws { owner }) => {
                if !record.may(CREATE_SWS) {
                    return Err(refuse(
                        Code::Forbidden,
                        format!("{name} may not create shadow working sets"),
                    ));
                }
                if owner != *name {
                    return Err(refuse(
                        Code::NotOwner,
                        format!(
                            "an SWS created on the plane is owned by its sender ({name}), not {:?}",
                            owner.chars().take(80).collect::<String>()
                        ),
                    ));
                }
                Ok(())
            }
            (
                Caller::Agent { name, record },
                Permission::UseSws(id) | Permission::CommitSws(id),
            ) => {
                let state = sws::get(store, txn, id)?;
                if state.owner != *name && !state.delegates.iter().any(|d| d == name) {
                    return Err(refuse(
                        Code::NotOwner,
                        format!("{name} is neither the owner nor a delegate of {id}"),
                    ));
                }
                if let Permission::CommitSws(_) = permission {
                    let branch = RefName::parse_full(&state.branch)?;
                    if !record.may(&format!("commit:{}", branch.short())) {
                        return Err(refuse(
                            Code::Forbidden,
                            format!("{name} may not commit to {}", state.branch),
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}
