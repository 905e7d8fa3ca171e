//! Recovery at mount time: what a daemon that died (`kill -9`, a crash, a stop while files were
//! open) left pending in the overlay is loaded into the views it belongs to and written back,
//! before the new mount serves anything. Records of SWS that no longer exist are dropped, and
//! data files no record names are removed.

use jit_kernel::sws::SwsId;

use crate::error::Result;
use crate::inode::{Ino, Kind, Synth};
use crate::state::{State, ROOT};
use crate::views::ViewKind;
use crate::Shared;

/// Writes back every view's pending records; see the module doc. A view that cannot be
/// recovered is reported and left as it is (its records stay for the next try): one bad view
/// must not keep the mount from starting.
pub fn recover(shared: &Shared) -> Result<()> {
    let overlay = shared.lock().overlay.clone();
    for key in overlay.views()? {
        if let Err(error) = recover_view(shared, &overlay, &key) {
            tracing::error!(view = %key, %error, "could not write back what the last daemon left; its records stay");
        }
    }
    let removed = overlay.sweep_data()?;
    if removed > 0 {
        tracing::info!(removed, "removed data files no record names");
    }
    Ok(())
}

fn recover_view(shared: &Shared, overlay: &crate::overlay::Overlay, key: &str) -> Result<()> {
    let key = key.to_owned();
    {
        let records = overlay.all(&key)?;
        let Some(root) = open_view(shared, &key)? else {
            tracing::info!(view = %key, "dropping the overlay of a view that no longer exists");
            overlay.batch(|batch| batch.remove_view(&key).map(drop))?;
            return Ok(());
        };
        let pending: Vec<Vec<u8>> = records
            .into_iter()
            .filter(|(_, record)| record.pending)
            .map(|(path, _)| path)
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        tracing::info!(view = %key, paths = pending.len(), "writing back what the last daemon left");
        let view = {
            let mut state = shared.lock();
            for path in &pending {
                load_path(&mut state, shared, root, path)?;
            }
            state.view_of(root)?
        };
        shared.flush_view(view)?;
    }
    Ok(())
}

/// The root of the view the overlay calls `key`, opened; None if it no longer exists.
fn open_view(shared: &Shared, key: &str) -> Result<Option<Ino>> {
    let repo = &shared.repo;
    if key == ViewKind::Head.key() {
        return shared.lock().view_root(repo, ViewKind::Head, ROOT, b"head");
    }
    let Some(id) = key
        .strip_prefix("sws/")
        .and_then(|id| id.parse::<SwsId>().ok())
    else {
        return Ok(None);
    };
    let Some((name, _)) = crate::fs::sws_dir::sws_names(shared)?
        .into_iter()
        .find(|(_, listed)| *listed == id)
    else {
        return Ok(None);
    };
    let mut state = shared.lock();
    let list = state.synthetic(ROOT, b"sws", Synth::SwsList);
    state.view_root(repo, ViewKind::Sws(id), list, name.as_bytes())
}

/// Loads every directory on the way to `path`, and `path` itself if it is one (which merges
/// their records).
fn load_path(state: &mut State, shared: &Shared, root: Ino, path: &[u8]) -> Result<()> {
    let mut at = root;
    for name in path.split(|&b| b == b'/') {
        state.ensure_loaded(&shared.repo, at)?;
        let next = match &state.get(at)?.kind {
            Kind::Dir {
                children: Some(children),
                ..
            } => children.get(name).copied(),
            _ => None,
        };
        match next {
            Some(next) => at = next,
            None => return Ok(()),
        }
    }
    if state.get(at)?.is_dir() {
        state.ensure_loaded(&shared.repo, at)?;
    }
    Ok(())
}
