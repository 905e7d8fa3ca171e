//! The `sws/` directory: one entry per live SWS, and the SWS lifecycle as directory
//! operations. `mkdir sws/NAME` creates an SWS on the checked-out branch, owned by the mount's
//! owner; `rmdir sws/NAME` discards it, and drops what the overlay kept for it. An SWS is
//! listed by its name when that name is unique and usable as a file name, else by its id, so
//! every entry names exactly one SWS.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::time::Duration;

use fuser::{Errno, FileAttr};
use jit_kernel::node::validate_entry_name;
use jit_kernel::sws::{self, SwsId};

use super::entry::{entry, new_name};
use crate::error::{errno, Error, Result};
use crate::inode::Ino;
use crate::views::ViewKind;
use crate::Shared;

/// Live SWS as listed in `sws/`: by name when it has a unique one usable as a file name,
/// else by id.
pub(crate) fn sws_names(shared: &Shared) -> Result<Vec<(String, SwsId)>> {
    let store = shared.repo.store();
    let txn = store.read()?;
    let all = sws::list(store, &txn)?;
    let mut counts = HashMap::new();
    for (_, state) in &all {
        if let Some(name) = &state.name {
            *counts.entry(name.clone()).or_insert(0) += 1;
        }
    }
    Ok(all
        .into_iter()
        .map(|(id, state)| {
            let name = state
                .name
                .filter(|n| counts.get(n) == Some(&1))
                .filter(|n| validate_entry_name(n.as_bytes()).is_ok() && n.len() <= 255)
                .filter(|n| n.len() != 32 || n.parse::<SwsId>().is_err())
                .unwrap_or_else(|| id.to_string());
            (name, id)
        })
        .collect())
}

/// `mkdir sws/NAME`: a new SWS named NAME on the checked-out branch, and its view's root.
pub(super) fn create_sws(
    shared: &Shared,
    parent: Ino,
    name: &OsStr,
) -> Result<(Duration, FileAttr)> {
    let text = std::str::from_utf8(new_name(name)?)
        .map_err(|_| Error::Errno(Errno::EILSEQ))?
        .to_owned();
    if sws_names(shared)?.iter().any(|(n, _)| *n == text) {
        return errno(Errno::EEXIST);
    }
    let repo = &shared.repo;
    let branch = repo.head()?;
    let (id, _) = crate::guard::as_mount(|| {
        sws::create(repo.store(), &branch, None, &shared.owner, Some(&text))
    })?;
    let mut state = shared.lock();
    let ino = state
        .view_root(repo, ViewKind::Sws(id), parent, text.as_bytes())?
        .ok_or(Error::Errno(Errno::EIO))?;
    entry(&mut state, ino)
}

/// `rmdir sws/NAME`: discards the SWS listed as NAME.
pub(super) fn discard_sws(shared: &Shared, name: &[u8]) -> Result<()> {
    let Some((_, id)) = sws_names(shared)?
        .into_iter()
        .find(|(n, _)| n.as_bytes() == name)
    else {
        return errno(Errno::ENOENT);
    };
    // The mount's own commit: the observer must not refresh from here, on the thread serving
    // the `rmdir`, and wait for the kernel to drop `sws/NAME` — that needs the lock on `sws/`
    // the `rmdir` holds, so the wait would last until it timed out.
    crate::guard::as_mount(|| sws::discard(shared.repo.store(), id))?;
    // Its view goes (and any other that showed the SWS); the kernel is told without waiting.
    shared.refresh(false);
    // What the mount kept for it goes with it (its data files at the next start), also when
    // no view of it was open.
    let overlay = shared.lock().overlay.clone();
    overlay.batch(|batch| batch.remove_view(&ViewKind::Sws(id).key()).map(drop))?;
    Ok(())
}
