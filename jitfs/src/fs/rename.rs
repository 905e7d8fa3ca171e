//! `rename(2)` inside one view, with `RENAME_NOREPLACE` and `RENAME_EXCHANGE`. The inode tree
//! changes first, then the overlay records the move (everything a moved directory shows is
//! recorded below its new path, since the SWS's entries there are not the ones moved), and
//! only then is the moved entry marked dirty: a write-back that took its snapshot before the
//! rename must not find it clean when it finishes, or settling would drop the records of its
//! new path. A rename between views is `EXDEV`, so tools fall back to copy and delete.

use std::ffi::OsStr;
use std::time::SystemTime;

use fuser::{Errno, RenameFlags};
use jit_kernel::Repository;

use super::entry::{name_bytes, new_name};
use super::namespace::touch_dir;
use crate::error::{errno, Result};
use crate::inode::{Ino, ViewId};
use crate::persist::join;
use crate::state::State;
use crate::Shared;

/// One rename, checked: `src` (named `name` in `parent`, at path `from`) goes to `newname` in
/// `newparent` (path `to`), in `view`.
struct Move<'a> {
    view: ViewId,
    parent: Ino,
    name: &'a [u8],
    newparent: Ino,
    newname: &'a [u8],
    src: Ino,
    from: Vec<u8>,
    to: Vec<u8>,
    now: SystemTime,
}

/// `rename`: moves `name` of `parent` to `newname` of `newparent`, as `flags` ask.
pub(super) fn rename(
    shared: &Shared,
    parent: Ino,
    name: &OsStr,
    newparent: Ino,
    newname: &OsStr,
    flags: RenameFlags,
) -> Result<()> {
    let name = name_bytes(name)?;
    let newname = new_name(newname)?;
    let repo = &shared.repo;
    let mut state = shared.lock();
    let view = state.writable(parent)?;
    if state.writable(newparent)? != view {
        return errno(Errno::EXDEV);
    }
    if flags.contains(RenameFlags::RENAME_WHITEOUT) {
        return errno(Errno::EINVAL);
    }
    let Some(src) = state.children(repo, parent)?.get(name).copied() else {
        return errno(Errno::ENOENT);
    };
    let dst = state.children(repo, newparent)?.get(newname).copied();
    if dst == Some(src) {
        return Ok(());
    }
    let from = join(&state.path_of(parent), name);
    let to = join(&state.path_of(newparent), newname);
    not_below_itself(&state, view, src, newparent)?;
    let mv = Move {
        view,
        parent,
        name,
        newparent,
        newname,
        src,
        from,
        to,
        now: SystemTime::now(),
    };
    if flags.contains(RenameFlags::RENAME_EXCHANGE) {
        let Some(dst) = dst else {
            return errno(Errno::ENOENT);
        };
        mv.exchange(&mut state, repo, dst)?;
    } else {
        mv.replace(&mut state, repo, dst, flags)?;
    }
    touch_dir(&mut state, parent, mv.now);
    touch_dir(&mut state, newparent, mv.now);
    Ok(())
}

/// A directory cannot move below itself: `EINVAL` if `src` is `newparent` or one of its
/// ancestors in `view`.
fn not_below_itself(state: &State, view: ViewId, src: Ino, newparent: Ino) -> Result<()> {
    let mut at = newparent;
    loop {
        if at == src {
            return errno(Errno::EINVAL);
        }
        let node = state.get(at)?;
        if node.view.is_none() || state.views[view].root == at {
            return Ok(());
        }
        at = node.parent;
    }
}

impl Move<'_> {
    /// `RENAME_EXCHANGE`: `src` and `dst` swap places.
    fn exchange(&self, state: &mut State, repo: &Repository, dst: Ino) -> Result<()> {
        let src = self.src;
        state
            .children_mut(repo, self.parent)?
            .insert(self.name.to_vec(), dst);
        state
            .children_mut(repo, self.newparent)?
            .insert(self.newname.to_vec(), src);
        for (ino, p, n) in [
            (src, self.newparent, self.newname),
            (dst, self.parent, self.name),
        ] {
            let node = state.get_mut(ino)?;
            node.parent = p;
            node.name = n.to_vec();
            node.attr.ctime = self.now;
            node.tracked = false;
        }
        state.mark_dirty(self.parent);
        state.mark_dirty(self.newparent);
        state.persist_exchange(self.view, &self.from, &self.to, src, dst)?;
        // Both are new entries at their paths: see the rename below.
        state.mark_dirty(src);
        state.mark_dirty(dst);
        Ok(())
    }

    /// A plain rename: `src` goes to its new name, replacing `dst` if it is there (and
    /// `RENAME_NOREPLACE` is not asked), as long as both are directories or neither is, and a
    /// replaced directory is empty.
    fn replace(
        &self,
        state: &mut State,
        repo: &Repository,
        dst: Option<Ino>,
        flags: RenameFlags,
    ) -> Result<()> {
        let (src, parent, newparent) = (self.src, self.parent, self.newparent);
        let src_dir = state.get(src)?.is_dir();
        let mut replaced_dir = false;
        if let Some(dst) = dst {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return errno(Errno::EEXIST);
            }
            let dst_dir = state.get(dst)?.is_dir();
            replaced_dir = dst_dir;
            match (src_dir, dst_dir) {
                (true, false) => return errno(Errno::ENOTDIR),
                (false, true) => return errno(Errno::EISDIR),
                (true, true) if !state.children(repo, dst)?.is_empty() => {
                    return errno(Errno::ENOTEMPTY)
                }
                _ => {}
            }
            state.get_mut(dst)?.attr.ctime = self.now;
            state.detach(newparent, self.newname);
        }
        state.children_mut(repo, parent)?.remove(self.name);
        state
            .children_mut(repo, newparent)?
            .insert(self.newname.to_vec(), src);
        let primary = state.get(src)?.parent == parent && state.get(src)?.name == self.name;
        if primary {
            let node = state.get_mut(src)?;
            node.parent = newparent;
            node.name = self.newname.to_vec();
        } else if let Some(extra) = state.extra_parents.get_mut(&src) {
            if let Some(slot) = extra.iter_mut().find(|p| **p == parent) {
                *slot = newparent;
            }
        }
        let node = state.get_mut(src)?;
        node.attr.ctime = self.now;
        // At its new path it is a new entry of the tree (and may be ignored there).
        node.tracked = false;
        state.mark_dirty(parent);
        state.mark_dirty(newparent);
        state.persist_rename(self.view, &self.from, &self.to, src, replaced_dir)?;
        // The moved entry itself is a change until the SWS has it at its new path. Marked
        // after its records are written (they describe it by its tree while it is clean),
        // and with a fresh generation: a write-back that took its snapshot before the
        // rename must not find it clean when it finishes, or settling would drop the
        // records of its new path and a `kill -9` before the next write-back would lose it.
        state.mark_dirty(src);
        Ok(())
    }
}
