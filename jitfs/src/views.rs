//! Views: the trees the mount shows. `head/` and `sws/<id>/` are writable views of an SWS;
//! `refs/…/<name>/` and `nodes/<id>/` are read-only views of a snapshot, and
//! `federation/<universe>/<name>/` a read-only view of a snapshot imported from another
//! universe, read from that universe's own store here. A view remembers which
//! tree its inodes mirror, so a change elsewhere is applied to it as a diff — unchanged files
//! keep their inodes and mtimes.

use std::time::SystemTime;

use jit_kernel::federation::{foreign::Foreign, known};
use jit_kernel::refs::{self, RefName};
use jit_kernel::source::{Dag, Source};
use jit_kernel::store::{ReadTxn, Store};
use jit_kernel::sws::{self, SwsId, SwsSource};
use jit_kernel::{tree, NodeId, Repository};
use uuid::Uuid;

use crate::error::Result;
use crate::inode::Ino;

/// What a view shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewKind {
    /// The checked-out branch's working SWS (or its tip until the first write).
    Head,
    /// One SWS.
    Sws(SwsId),
    /// A branch or tag tip, by full ref name.
    Ref(String),
    /// A snapshot by id.
    Snapshot(NodeId),
    /// An import from another universe, by its local name.
    Federated {
        /// The universe it was imported from.
        universe: Uuid,
        /// The name it was imported under here.
        name: String,
    },
}

impl ViewKind {
    /// Whether writes are allowed.
    pub fn writable(&self) -> bool {
        matches!(self, ViewKind::Head | ViewKind::Sws(_))
    }

    /// A stable name, mixed into inode numbers so they survive restarts.
    pub fn key(&self) -> String {
        match self {
            ViewKind::Head => "head".into(),
            ViewKind::Sws(id) => format!("sws/{id}"),
            ViewKind::Ref(name) => name.clone(),
            ViewKind::Snapshot(id) => format!("nodes/{id}"),
            ViewKind::Federated { universe, name } => format!("federation/{universe}/{name}"),
        }
    }
}

/// Where a view points right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The SWS that writes go to (None: read-only, or `head/` before its first write).
    pub sws: Option<SwsId>,
    /// The tree shown.
    pub tree: NodeId,
}

/// One view.
#[derive(Debug)]
pub struct View {
    /// What it shows.
    pub kind: ViewKind,
    /// Its root directory inode.
    pub root: Ino,
    /// The SWS its writes go to.
    pub sws: Option<SwsId>,
    /// The tree its inodes mirror (what the SWS had after the last write-back or reconcile).
    pub known: NodeId,
    /// Local changes not yet written back.
    pub dirty: bool,
    /// The mtime given to entries first seen (their content has no time of its own).
    pub epoch: SystemTime,
    /// False once the ref or SWS behind it is gone.
    pub live: bool,
    /// A write-back of this view is between its snapshot and its result. Refreshes leave the
    /// view alone meanwhile: against the tree the write-back just committed they would take
    /// names removed here since the snapshot (an editor's or rsync's renamed temporary file)
    /// for names added elsewhere. The write-back reconciles what else landed when it ends.
    pub writing_back: bool,
}

/// Resolves what `kind` shows now; None when it no longer exists.
pub fn resolve(repo: &Repository, txn: &ReadTxn<'_>, kind: &ViewKind) -> Result<Option<Target>> {
    let store = repo.store();
    let dag = Dag::new(store, txn);
    Ok(match kind {
        ViewKind::Head => {
            let branch = repo.head()?;
            match sws::working_id(store, txn, &branch)? {
                Some(id) => Some(Target {
                    sws: Some(id),
                    tree: sws::get(store, txn, id)?.tree,
                }),
                None => match refs::get(store, txn, &branch)? {
                    Some(tip) => Some(Target {
                        sws: None,
                        tree: tree::tree_of(&dag, &tip)?,
                    }),
                    None => None,
                },
            }
        }
        ViewKind::Sws(id) => match sws::get(store, txn, *id) {
            Ok(state) => Some(Target {
                sws: Some(*id),
                tree: state.tree,
            }),
            Err(jit_kernel::Error::SwsNotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        ViewKind::Ref(name) => {
            let name = RefName::parse_full(name)?;
            match refs::get(store, txn, &name)? {
                Some(tip) => Some(Target {
                    sws: None,
                    tree: tree::tree_of(&dag, &tip)?,
                }),
                None => None,
            }
        }
        ViewKind::Snapshot(id) => match tree::tree_of(&dag, id) {
            Ok(tree) => Some(Target { sws: None, tree }),
            Err(jit_kernel::Error::NodeNotFound(_)) | Err(jit_kernel::Error::NotA { .. }) => None,
            Err(e) => return Err(e.into()),
        },
        ViewKind::Federated { universe, name } => {
            match known::get(store, txn, *universe)?.and_then(|k| k.imports.get(name).cloned()) {
                Some(import) => Some(Target {
                    sws: None,
                    tree: tree::tree_of(&Foreign::new(store, txn, *universe), &import.snapshot)?,
                }),
                None => None,
            }
        }
    })
}

/// Where a view's nodes are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// The DAG.
    Dag,
    /// An SWS: the DAG plus its staged nodes.
    Sws(SwsId),
    /// Another universe's imported nodes.
    Foreign(Uuid),
}

impl View {
    /// Where this view's nodes are read from.
    pub fn reads(&self) -> Reads {
        match (&self.kind, self.sws) {
            (ViewKind::Federated { universe, .. }, _) => Reads::Foreign(*universe),
            (_, Some(id)) => Reads::Sws(id),
            (_, None) => Reads::Dag,
        }
    }
}

/// Runs `body` with the node source a view reads: its SWS (DAG plus staged nodes), the DAG,
/// or an imported universe's nodes.
pub fn with_source<T>(
    store: &Store,
    reads: Reads,
    body: impl FnOnce(&dyn Source) -> Result<T>,
) -> Result<T> {
    let txn = store.read()?;
    match reads {
        Reads::Sws(id) => body(&SwsSource::new(store, &txn, id)),
        Reads::Dag => body(&Dag::new(store, &txn)),
        Reads::Foreign(universe) => body(&Foreign::new(store, &txn, universe)),
    }
}
