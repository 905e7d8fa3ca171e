//! The history `jit log` walks and draws: every snapshot reachable from the starting points —
//! merged side history included, as git shows it — newest first, with branch, tag and HEAD
//! labels and, with `--graph`, the lanes between them.
//!
//! Order: a node's Lamport clock is greater than each of its parents' (a DAG invariant), so
//! taking the reachable snapshot with the highest clock next is a topological order that needs
//! no walk of the whole history — `jit log -n 20` reads about twenty nodes and their parents.
//! The parents of a snapshot are those git would give it (`jit_kernel::dag::history_parents`,
//! which git export uses too).

use std::collections::{BTreeMap, BinaryHeap, HashSet};

use jit_kernel::node::{Payload, Snapshot};
use jit_kernel::store::{ReadTxn, Store};
use jit_kernel::NodeId;

/// A snapshot of the walk, with its git-like parents.
pub(crate) struct Visited {
    pub(crate) id: NodeId,
    pub(crate) snapshot: Snapshot,
    pub(crate) parents: Vec<NodeId>,
    /// The rewrite the snapshot records, if any.
    pub(crate) rewrite: Option<jit_kernel::node::Rewrite>,
}

/// Walks the snapshots reachable from `starts`, newest (highest clock) first, handing each to
/// `visit` until it returns false.
pub(crate) fn walk(
    store: &Store,
    txn: &ReadTxn<'_>,
    starts: &[NodeId],
    first_parent: bool,
    visit: &mut dyn FnMut(Visited) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut queue: BinaryHeap<(u64, NodeId)> = BinaryHeap::new();
    let mut queued: HashSet<NodeId> = HashSet::new();
    for start in starts {
        if queued.insert(*start) {
            queue.push((store.node(txn, start)?.clock, *start));
        }
    }
    while let Some((_, id)) = queue.pop() {
        let node = store.node(txn, &id)?;
        let Payload::Snapshot(snapshot) = node.payload.clone() else {
            continue;
        };
        let (mut parents, rewrite) = jit_kernel::dag::history_parents(store, txn, &node)?;
        if first_parent {
            parents.truncate(1);
        }
        for parent in &parents {
            if queued.insert(*parent) {
                queue.push((store.node(txn, parent)?.clock, *parent));
            }
        }
        let go_on = visit(Visited {
            id,
            snapshot,
            parents,
            rewrite,
        })?;
        if !go_on {
            break;
        }
    }
    Ok(())
}

/// Which refs point where, for labels: `HEAD -> main`, `tag: v1`, `main`.
pub(crate) fn labels(
    store: &Store,
    txn: &ReadTxn<'_>,
    head: &str,
) -> anyhow::Result<BTreeMap<NodeId, Vec<String>>> {
    let mut out: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
    let mut refs = store.refs_with_prefix(txn, "")?;
    // HEAD's branch first, then branches, then tags, then kept remote refs.
    refs.sort_by_key(|(name, _)| {
        let rank = if name == head {
            0
        } else if name.starts_with("heads/") {
            1
        } else if name.starts_with("tags/") {
            2
        } else {
            3
        };
        (rank, name.clone())
    });
    for (name, target) in refs {
        let label = if name == head {
            format!("HEAD -> {}", name.trim_start_matches("heads/"))
        } else if let Some(branch) = name.strip_prefix("heads/") {
            branch.to_owned()
        } else if let Some(tag) = name.strip_prefix("tags/") {
            format!("tag: {tag}")
        } else {
            name
        };
        out.entry(target).or_default().push(label);
    }
    Ok(out)
}

/// The lanes of `--graph`: which snapshot each column waits for.
#[derive(Default)]
pub(crate) struct Lanes {
    lanes: Vec<Option<NodeId>>,
}

/// What the lanes draw for one snapshot.
pub(crate) struct Drawn {
    /// Lines drawn before it: other lanes that waited for it join its lane (`|/`).
    pub(crate) before: Vec<String>,
    /// The prefix of the snapshot's own line (`* | `).
    pub(crate) node: String,
    /// The prefix of the lines under it (its message, its diff).
    pub(crate) below: String,
    /// Lines drawn after it: lanes its merge opened (`|\`).
    pub(crate) after: Vec<String>,
}

impl Lanes {
    /// A line where the lanes in `moving` go diagonally (`/` joining the lane to their left,
    /// `\` opening from it), drawn between the columns as git does; other lanes go on.
    fn connector(&self, moving: &[usize], mark: char) -> String {
        let mut line: Vec<char> = vec![' '; self.lanes.len() * 2];
        for (k, lane) in self.lanes.iter().enumerate() {
            if lane.is_some() && !moving.contains(&k) {
                line[k * 2] = '|';
            }
        }
        for &k in moving {
            line[(k * 2).saturating_sub(1)] = mark;
        }
        line.into_iter().collect::<String>().trim_end().to_owned()
    }

    fn draw(&self, mark: impl Fn(usize, Option<&NodeId>) -> &'static str) -> String {
        let cells: Vec<&str> = self
            .lanes
            .iter()
            .enumerate()
            .map(|(k, lane)| mark(k, lane.as_ref()))
            .collect();
        let mut line = cells.join(" ");
        line.push(' ');
        line
    }

    /// Places `id` (with `parents`) and says what to draw.
    pub(crate) fn place(&mut self, id: NodeId, parents: &[NodeId]) -> Drawn {
        let col = match self.lanes.iter().position(|l| *l == Some(id)) {
            Some(col) => col,
            None => match self.lanes.iter().position(Option::is_none) {
                Some(free) => {
                    self.lanes[free] = Some(id);
                    free
                }
                None => {
                    self.lanes.push(Some(id));
                    self.lanes.len() - 1
                }
            },
        };
        let mut before = Vec::new();
        // Other lanes that waited for this snapshot join its lane here.
        let joined: Vec<usize> = (0..self.lanes.len())
            .filter(|&k| k != col && self.lanes[k] == Some(id))
            .collect();
        if !joined.is_empty() {
            before.push(self.connector(&joined, '/'));
            for k in joined {
                self.lanes[k] = None;
            }
            while self.lanes.last() == Some(&None) {
                self.lanes.pop();
            }
        }
        let node = self.draw(|k, lane| {
            if k == col {
                "*"
            } else if lane.is_some() {
                "|"
            } else {
                " "
            }
        });
        let mut after = Vec::new();
        self.lanes[col] = parents.first().copied();
        for parent in parents.iter().skip(1) {
            if self.lanes.contains(&Some(*parent)) {
                continue;
            }
            let lane = match self.lanes.iter().skip(col + 1).position(Option::is_none) {
                Some(free) => col + 1 + free,
                None => {
                    self.lanes.push(None);
                    self.lanes.len() - 1
                }
            };
            self.lanes[lane] = Some(*parent);
            after.push(self.connector(&[lane], '\\'));
        }
        while self.lanes.last() == Some(&None) {
            self.lanes.pop();
        }
        let below = self.draw(|_, lane| if lane.is_some() { "|" } else { " " });
        Drawn {
            before,
            node,
            below,
            after,
        }
    }
}
