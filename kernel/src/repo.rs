//! A universe on disk: a directory with `.jit/` inside, holding the store, configuration, the
//! local HEAD and the identity keys.
//!
//! ```text
//! .jit/
//!   store/          LMDB environment (nodes, refs, log, meta)
//!   HEAD            the checked-out branch, e.g. "heads/main" (local, advisory, never logged)
//!   config.toml     user defaults (author) and sync peers ([remotes.NAME])
//!   universe.toml   universe id, public key, metadata
//!   keys/           the universe's secret key (0600)
//! ```
//!
//! `init` builds all of this in a temporary directory and renames it into place, so a crash
//! never leaves a half-made repository.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::durable::{sync_dir, write_durably};
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::identity::{UniverseIdentity, UniverseInfo};
use crate::refs::{self, RefKind, RefName};
use crate::revparse;
use crate::store::Store;

/// Name of the metadata directory.
pub const JIT_DIR: &str = ".jit";

/// User-level configuration in `.jit/config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Default author settings.
    #[serde(default)]
    pub user: UserConfig,
    /// Sync peers by name (`[remotes.origin] endpoint = "tcp/host:7447"`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub remotes: std::collections::BTreeMap<String, RemoteConfig>,
}

/// A `[remotes.NAME]` section: a replica of this universe to sync with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Its Zenoh endpoint (`tcp/127.0.0.1:7447`, `unixsock-stream//path/.jit/zenoh.sock`).
    pub endpoint: String,
}

/// The `[user]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Display name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
}

impl Config {
    /// The configured author as `Name <email>`, if a name is set.
    pub fn author(&self) -> Option<String> {
        let name = self.user.name.as_deref()?;
        Some(match self.user.email.as_deref() {
            Some(email) => format!("{name} <{email}>"),
            None => name.to_owned(),
        })
    }
}

/// Options for [`Repository::init`]. The default: branch `main`, no name or owner, created at
/// the epoch, a new universe (not a replica).
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The first branch (checked out).
    pub branch: String,
    /// The universe's human name.
    pub name: String,
    /// Its owner.
    pub owner: String,
    /// Creation time recorded in `universe.toml` (seconds since the epoch).
    pub created: i64,
    /// Make a replica of this universe (`jit clone`) instead of a new one: its description is
    /// kept and no key is made.
    pub replica_of: Option<UniverseInfo>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            branch: "main".into(),
            name: String::new(),
            owner: String::new(),
            created: 0,
            replica_of: None,
        }
    }
}

/// An open universe.
pub struct Repository {
    pub(crate) workdir: PathBuf,
    pub(crate) jit_dir: PathBuf,
    pub(crate) store: Store,
    pub(crate) config: Config,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("workdir", &self.workdir)
            .finish_non_exhaustive()
    }
}

/// Prefix of the temporary directory `init` builds `.jit` in.
pub const STAGING_PREFIX: &str = ".jit-init-";

impl Repository {
    /// The directory holding `.jit/`.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The `.jit/` directory.
    pub fn jit_dir(&self) -> &Path {
        &self.jit_dir
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, owned (for [`Store::compact`], which replaces its file).
    pub fn into_store(self) -> Store {
        self.store
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Loads the universe identity with its signing key (only the origin has one).
    pub fn identity(&self) -> Result<UniverseIdentity> {
        UniverseIdentity::load(&self.jit_dir)
    }

    /// The universe's public description (every replica has it).
    pub fn universe(&self) -> Result<UniverseInfo> {
        UniverseInfo::load(&self.jit_dir)
    }

    /// Records a sync peer under `name` in `config.toml` (replacing one of the same name).
    pub fn add_remote(&self, name: &str, endpoint: &str) -> Result<()> {
        refs::validate_remote_name(name)?;
        let path = self.jit_dir.join("config.toml");
        let mut config = self.config.clone();
        if let Ok(text) = fs::read_to_string(&path) {
            config = toml::from_str(&text).map_err(|e| Error::Config {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
        config.remotes.insert(
            name.to_owned(),
            RemoteConfig {
                endpoint: endpoint.to_owned(),
            },
        );
        let text = toml::to_string(&config).map_err(|e| Error::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_durably(&path, text.as_bytes())
    }

    /// The checked-out branch (HEAD).
    pub fn head(&self) -> Result<RefName> {
        let path = self.jit_dir.join("HEAD");
        let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let name = RefName::parse_full(text.trim())?;
        if name.kind() != RefKind::Branch {
            return Err(Error::Config {
                path,
                reason: "HEAD must name a branch".into(),
            });
        }
        Ok(name)
    }

    /// Checks out `branch` (moves HEAD; local, never logged).
    pub fn set_head(&self, branch: &RefName) -> Result<()> {
        write_durably(
            &self.jit_dir.join("HEAD"),
            format!("{}\n", branch.full()).as_bytes(),
        )?;
        self.store.announce();
        Ok(())
    }

    /// Resolves a revision expression (see [`crate::revparse`]).
    pub fn resolve(&self, rev: &str) -> Result<NodeId> {
        let head = self.head()?;
        let txn = self.store.read()?;
        revparse::resolve(&self.store, &txn, &head, rev)
    }

    /// Creates a branch at `target` (default: HEAD's tip).
    pub fn create_branch(&self, name: &str, target: NodeId) -> Result<()> {
        let name = RefName::branch(name).inspect_err(|e| self.audit("ref.create_branch", e))?;
        self.store
            .operation("ref.create_branch", |op| refs::create(op, &name, &target))
    }

    /// Creates a tag at `target`.
    pub fn create_tag(&self, name: &str, target: NodeId) -> Result<()> {
        let name = RefName::tag(name).inspect_err(|e| self.audit("ref.create_tag", e))?;
        self.store
            .operation("ref.create_tag", |op| refs::create(op, &name, &target))
    }

    /// Deletes a branch (not the checked-out one).
    pub fn delete_branch(&self, name: &str) -> Result<NodeId> {
        let name = RefName::branch(name)?;
        if self.head()? == name {
            let error = Error::BranchCheckedOut(name.short().to_owned());
            self.audit("ref.delete", &error);
            return Err(error);
        }
        self.store
            .operation("ref.delete", |op| refs::delete(op, &name, false))
    }

    /// Deletes a tag; refused unless `force`.
    pub fn delete_tag(&self, name: &str, force: bool) -> Result<NodeId> {
        let name = RefName::tag(name)?;
        self.store
            .operation("ref.delete", |op| refs::delete(op, &name, force))
    }

    /// Deletes a ref sync kept for a peer (`remotes/...`), once its divergence is dealt with.
    pub fn delete_kept(&self, name: &RefName) -> Result<NodeId> {
        if name.kind() != RefKind::Remote {
            return Err(Error::InvalidInput(format!("{name} is not a remote's ref")));
        }
        self.store
            .operation("ref.delete", |op| refs::delete(op, name, true))
    }

    /// Moves a branch forward (`ref.set`).
    pub fn set_branch(&self, name: &str, target: NodeId, expected: Option<NodeId>) -> Result<()> {
        let name = RefName::parse_full(name).or_else(|_| RefName::branch(name))?;
        self.store.operation("ref.set", |op| {
            refs::set(op, &name, &target, expected.as_ref())
        })
    }

    fn audit(&self, action: &str, error: &Error) {
        if let Err(e) = self.store.audit(action, error) {
            tracing::warn!(%e, "could not write audit record");
        }
    }
}
