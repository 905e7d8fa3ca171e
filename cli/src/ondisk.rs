//! Verbs on on-disk checkouts: `jit checkout --into DIR`, `jit watch DIR`, and the synchronized
//! status, diff and commit that `jit status`/`diff`/`commit` become inside a checkout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use jit_watcher::marker::{self, Located};
use jit_watcher::materialize::{self, CheckedOut};
use jit_watcher::session::Session;
use jit_watcher::sync::{self, Synchronized};
use jit_watcher::watch::{self, Options};
use serde_json::json;

use crate::place::Place;
use crate::progress::FileBar;

/// How long synchronized status waits for a live watcher (busy with a storm of edits, say)
/// before comparing the tree itself. A watcher that dies is noticed at once.
const COOKIE_TIMEOUT: Duration = Duration::from_secs(300);

/// The checkout containing the current directory, if any (never inside a mount).
pub fn here(place: &Place) -> Result<Option<Located>> {
    if place.view.is_some() {
        return Ok(None);
    }
    Ok(marker::find(&place.cwd)?)
}

/// `jit checkout --into DIR [REV]` (also `jit checkout [REV]` inside a checkout).
pub fn checkout(
    place: &Place,
    dir: &Path,
    rev: Option<&str>,
    quiet: bool,
    json: bool,
) -> Result<ExitCode> {
    let dir = place.cwd.join(dir);
    // A checkout knows its universe; a new one belongs to the universe where the verb runs.
    let existing = if dir.exists() {
        marker::find(&dir)?
    } else {
        None
    };
    let repo = existing
        .map(|l| l.marker.repo)
        .unwrap_or_else(|| place.universe.clone());
    let bar = FileBar::new(!quiet && !json, "checking out");
    let done = materialize::checkout(&repo, &dir, rev, &bar);
    bar.finish();
    let done: CheckedOut = done?;
    if json {
        println!(
            "{}",
            json!({ "dir": done.dir, "sws": done.sws, "written": done.written,
                    "removed": done.removed, "kept": done.kept })
        );
    } else {
        println!(
            "{}: {} written, {} removed{} (edits go to sws {})",
            done.dir,
            done.written,
            done.removed,
            if done.kept > 0 {
                format!(", {} uncommitted edits kept", done.kept)
            } else {
                String::new()
            },
            done.sws
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `jit watch [DIR]`: the watcher daemon in the foreground.
pub fn watch(base: &Path, dir: Option<PathBuf>) -> Result<ExitCode> {
    let dir = dir
        .map(|d| base.join(d))
        .unwrap_or_else(|| base.to_path_buf());
    let options = Options {
        stall_file: std::env::var_os("JIT_WATCH_TEST_STALL").map(PathBuf::from),
        hold_before_watching: std::env::var_os("JIT_WATCH_TEST_HOLD").map(PathBuf::from),
        ..Options::default()
    };
    watch::run(&dir, &options, |top| {
        println!("watching {}", top.display());
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Opens the checkout and brings its SWS up to date with the disk; returns the SWS id.
pub fn synchronized(located: Located) -> Result<(Session, String, &'static str)> {
    let mut session = Session::open_located(located)?;
    let how = match sync::synchronize(&mut session, COOKIE_TIMEOUT)? {
        Synchronized::Watcher => "watcher",
        Synchronized::StatWalk => "stat-walk",
    };
    let id = session
        .sws()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the checkout has no SWS yet; run jit checkout --into"))?;
    Ok((session, id, how))
}

/// After a commit from a checkout: bring the files to the branch's new tip (incrementally).
pub fn after_commit(located: &Located, quiet: bool) -> Result<()> {
    let branch = {
        let session = Session::open_located(located.clone())?;
        let state = session
            .state()
            .ok_or_else(|| anyhow::anyhow!("{} is not a checkout", located.dir.display()))?;
        jit_kernel::refs::RefName::parse_full(&state.branch)?
            .short()
            .to_owned()
    };
    let bar = FileBar::new(!quiet, "updating the checkout");
    let done = materialize::checkout(&located.marker.repo, &located.dir, Some(&branch), &bar);
    bar.finish();
    done?;
    Ok(())
}
