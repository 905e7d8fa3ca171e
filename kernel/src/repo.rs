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
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dag;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::identity::{UniverseIdentity, UniverseInfo};
use crate::node::Node;
use crate::refs::{self, RefKind, RefName};
use crate::revparse;
use crate::store::Store;
use crate::tree;

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

/// What a verb opening the universe will do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Only read: a damaged plane-journal header is reported, not fatal.
    Read,
    /// Read and write.
    Write,
}

/// An open universe.
pub struct Repository {
    workdir: PathBuf,
    jit_dir: PathBuf,
    store: Store,
    config: Config,
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

/// Makes a directory's entries durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Writes a small file atomically and durably: temp file, fsync, rename, fsync the directory.
pub fn write_durably(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| Error::io(path, e))?;
    sync_dir(dir)
}

#[cfg(test)]
impl Repository {
    /// A new universe in a temporary directory (removed when the directory is dropped), for
    /// tests.
    pub(crate) fn scratch() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let options = InitOptions {
            name: "test".into(),
            owner: "me".into(),
            ..Default::default()
        };
        let repo = Repository::init(dir.path(), &options).expect("a new universe");
        (dir, repo)
    }
}

impl Repository {
    /// Creates a universe in `dir`: store with the root node and the empty tree, the first branch
    /// pointing at the root, HEAD on it, default config and a fresh identity.
    pub fn init(dir: &Path, options: &InitOptions) -> Result<Repository> {
        let branch = RefName::branch(&options.branch)?;
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let jit_dir = dir.join(JIT_DIR);
        if jit_dir.exists() {
            return Err(Error::AlreadyInitialized(dir.to_path_buf()));
        }
        // The staging name starts with ".jit" so `import` (which skips `.jit*`) never records it,
        // even if a crash leaves it behind; a later init removes a stale one.
        let staging = dir.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        }
        fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        let built = (|| -> Result<()> {
            let info = match &options.replica_of {
                Some(info) => {
                    info.write(&staging)?;
                    info.clone()
                }
                None => {
                    UniverseIdentity::create(
                        &staging,
                        &options.name,
                        &options.owner,
                        options.created,
                    )?
                    .info
                }
            };
            {
                let store = Store::open(&staging.join("store"), true)?;
                store.operation("init", |op| {
                    let root = dag::append(op, &Node::root())?;
                    dag::append(op, &tree::empty_tree_node())?;
                    op.put_meta("format", &crate::node::FORMAT_VERSION.to_be_bytes())?;
                    crate::identity::record(op, &info)?;
                    refs::create(op, &branch, &root)
                })?;
            }
            write_durably(
                &staging.join("HEAD"),
                format!("{}\n", branch.full()).as_bytes(),
            )?;
            write_durably(&staging.join("config.toml"), b"[user]\n")?;
            // Directory entries must be durable before the rename publishes them.
            for sub in [staging.join("store"), staging.join("keys"), staging.clone()] {
                if sub.exists() {
                    sync_dir(&sub)?;
                }
            }
            fs::rename(&staging, &jit_dir).map_err(|e| Error::io(&jit_dir, e))?;
            sync_dir(dir)
        })();
        if let Err(e) = built {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        Repository::open(dir)
    }

    /// Opens the universe whose `.jit/` is directly in `dir`, first delivering any patches a
    /// dead daemon's message plane acknowledged but did not commit
    /// ([`crate::agents::recover_unowned_journal`]).
    pub fn open(dir: &Path) -> Result<Repository> {
        Repository::open_as(dir, Access::Write)
    }

    /// [`Repository::open`] for a verb that only reads (`log`, `cat`, `fsck`…): a plane
    /// journal whose header is damaged does not stop it. Its records cannot be recovered
    /// until it is dealt with, which `jit fsck` reports; writers still refuse to start.
    pub fn open_for_reading(dir: &Path) -> Result<Repository> {
        Repository::open_as(dir, Access::Read)
    }

    fn open_as(dir: &Path, access: Access) -> Result<Repository> {
        let jit_dir = dir.join(JIT_DIR);
        if !jit_dir.is_dir() {
            return Err(Error::NotARepository(dir.to_path_buf()));
        }
        let config_path = jit_dir.join("config.toml");
        let config = match fs::read_to_string(&config_path) {
            Ok(text) => toml::from_str(&text).map_err(|e| Error::Config {
                path: config_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(Error::io(&config_path, e)),
        };
        let store = Store::open(&jit_dir.join("store"), false)?;
        let repo = Repository {
            workdir: dir.to_path_buf(),
            jit_dir,
            store,
            config,
        };
        // Patches the message plane acknowledged but a dead daemon never committed land
        // before this process reads or writes anything.
        let journal = repo.jit_dir.join(crate::agents::JOURNAL_FILE);
        if access == Access::Read && crate::journal::Journal::header_is_damaged(&journal)? {
            tracing::warn!(
                journal = %journal.display(),
                "the plane journal's header is damaged: its records are not recovered (see jit fsck)"
            );
        } else {
            crate::agents::recover_unowned_journal(&repo)?;
        }
        Ok(repo)
    }

    /// Finds the universe containing `start` (it or an ancestor holds `.jit/`).
    pub fn discover(start: &Path) -> Result<Repository> {
        Repository::discover_as(start, Access::Write)
    }

    /// [`Repository::discover`] for a verb that only reads ([`Repository::open_for_reading`]).
    pub fn discover_for_reading(start: &Path) -> Result<Repository> {
        Repository::discover_as(start, Access::Read)
    }

    fn discover_as(start: &Path, access: Access) -> Result<Repository> {
        let start = fs::canonicalize(start).map_err(|e| Error::io(start, e))?;
        let mut dir = start.as_path();
        loop {
            if dir.join(JIT_DIR).is_dir() {
                return Repository::open_as(dir, access);
            }
            match dir.parent() {
                Some(parent) => dir = parent,
                None => return Err(Error::NotARepository(start)),
            }
        }
    }

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
