//! Making and opening a universe on disk. `init` builds `.jit/` in a temporary directory and
//! renames it into place, so a crash never leaves a half-made universe. Opening delivers, before
//! anything reads or writes, the patches a dead daemon's message plane acknowledged but never
//! committed ([`crate::agents::recover_unowned_journal`]): nothing acknowledged is lost.

use std::fs;
use std::path::Path;

use crate::dag;
use crate::durable::{sync_dir, write_durably};
use crate::error::{Error, Result};
use crate::identity::UniverseIdentity;
use crate::node::Node;
use crate::refs::{self, RefName};
use crate::repo::{Config, InitOptions, Repository, JIT_DIR, STAGING_PREFIX};
use crate::store::Store;
use crate::tree;

/// What a verb opening the universe will do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Only read: a damaged plane-journal header is reported, not fatal.
    Read,
    /// Read and write.
    Write,
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
}
