//! `jit fsck` beyond the store: the files in `.jit/` that say which universe this is and where
//! work goes. `universe.toml` must still name the universe (id and public key) the store was
//! made for, the secret key (where this replica holds one) must be the pair of that public key,
//! `HEAD` must name a branch, and the plane journal's header must be readable — a damaged one
//! holds acknowledged messages that cannot be recovered.

use std::path::Path;

use super::store::{fsck, journal_problems, FsckReport};
use crate::agents::JOURNAL_FILE;
use crate::error::Result;
use crate::identity::{self, UniverseInfo, INFO_FILE, KEY_FILE};
use crate::journal::Journal;
use crate::refs::{RefKind, RefName};
use crate::repo::Repository;

/// Checks the store ([`fsck`]) and then the universe's files around it.
pub fn fsck_universe(repo: &Repository) -> Result<FsckReport> {
    let mut report = fsck(repo.store())?;
    let jit_dir = repo.jit_dir();
    check_identity(repo, &mut report)?;
    check_head(jit_dir, &mut report);
    check_journal(jit_dir, &mut report);
    super::federation::check(repo, &mut report)?;
    report.problems.extend(journal_problems(jit_dir));
    Ok(report)
}

fn check_identity(repo: &Repository, report: &mut FsckReport) -> Result<()> {
    let info = match UniverseInfo::load(repo.jit_dir()) {
        Ok(info) => info,
        Err(e) => {
            report.problem(INFO_FILE, e.to_string());
            return Ok(());
        }
    };
    let store = repo.store();
    let txn = store.read()?;
    match identity::recorded(store, &txn) {
        Ok(Some((id, public_key))) => {
            if info.id.to_string() != id {
                report.problem(
                    INFO_FILE,
                    format!(
                        "names universe {}, but the store belongs to universe {id}",
                        info.id
                    ),
                );
            }
            if info.public_key != public_key {
                report.problem(
                    INFO_FILE,
                    format!(
                        "holds public key {}, but the store belongs to the universe whose key is {public_key}",
                        info.public_key
                    ),
                );
            }
        }
        Ok(None) => {} // made before the identity was recorded in the store
        Err(e) => report.problem("store meta universe", e.to_string()),
    }
    let key_path = repo.jit_dir().join(KEY_FILE);
    match std::fs::read_to_string(&key_path) {
        Ok(text) => match identity::public_key_of(&text) {
            Some(public) if public == info.public_key => {}
            Some(public) => report.problem(
                KEY_FILE,
                format!(
                    "the secret key does not match the public key in {INFO_FILE} (its public key is {public})"
                ),
            ),
            None => report.problem(KEY_FILE, "is not 64 hex characters of an ed25519 secret key"),
        },
        // A replica made by `jit clone` holds no secret key.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => report.problem(KEY_FILE, format!("cannot be read: {e}")),
    }
    Ok(())
}

fn check_head(jit_dir: &Path, report: &mut FsckReport) {
    let text = match std::fs::read_to_string(jit_dir.join("HEAD")) {
        Ok(text) => text,
        Err(e) => {
            report.problem("HEAD", format!("cannot be read: {e}"));
            return;
        }
    };
    match RefName::parse_full(text.trim()) {
        Ok(name) if name.kind() == RefKind::Branch => {}
        Ok(name) => report.problem("HEAD", format!("names {name}, which is not a branch")),
        Err(e) => report.problem("HEAD", format!("does not name a branch: {e}")),
    }
}

fn check_journal(jit_dir: &Path, report: &mut FsckReport) {
    let path = jit_dir.join(JOURNAL_FILE);
    match Journal::header_is_damaged(&path) {
        Ok(false) => {}
        Ok(true) => report.problem(
            JOURNAL_FILE,
            "the header is damaged: acknowledged messages journaled in it cannot be recovered; \
             move it aside (keep it for inspection) so the daemon can start a new one",
        ),
        Err(e) => report.problem(JOURNAL_FILE, format!("cannot be read: {e}")),
    }
}
