//! What the file system did to the store, said plainly: a `data.mdb` cut shorter than the pages
//! LMDB's header says it holds is refused before anything reads through the memory map (which
//! would kill the process with SIGBUS), and a write that failed because the disk is full says
//! so ([`Error::NoSpace`]) — LMDB reports a short write as a bare EIO, which says nothing of
//! the cause.

use std::path::Path;

use heed::{Env, WithoutTls};

use crate::error::{is_no_space, Error, Result};

/// The store's file inside its directory.
const DATA_FILE: &str = "data.mdb";

/// LMDB's two meta pages at the smallest page size: no store file is shorter.
const SMALLEST_STORE: u64 = 2 * 4096;

/// Below this many free bytes, an EIO from a write is taken for a full disk: a short write
/// leaves the file system full to within a block.
const FULL_BELOW: u64 = 4 << 20;

/// EIO on Linux.
const EIO: i32 = 5;

/// Refuses a store file too short to hold even LMDB's header, before LMDB reads it.
pub(super) fn refuse_too_short(dir: &Path) -> Result<()> {
    let file = dir.join(DATA_FILE);
    let size = std::fs::metadata(&file)
        .map_err(|e| Error::io(&file, e))?
        .len();
    if size < SMALLEST_STORE {
        return Err(Error::StoreTruncated {
            path: file,
            size,
            expected: SMALLEST_STORE,
        });
    }
    Ok(())
}

/// Refuses a store file that no longer holds what LMDB's header says it does, before anything
/// reads through the memory map (a page beyond the end of the file is a SIGBUS): the newest
/// meta page's two roots (the free-page tree and the main tree, which every read starts from)
/// must lie inside the file, and the file may fall short of the header's last page by no more
/// than [`UNWRITTEN_TAIL_PAGES`]. LMDB itself notes that the file may be shorter than its last
/// page when the free list holds the final pages (pages a transaction allocated and freed again
/// are never written): a check against the last page alone refused a healthy store being
/// written by a daemon.
pub(super) fn refuse_truncated(env: &Env<WithoutTls>, dir: &Path) -> Result<()> {
    let file = dir.join(DATA_FILE);
    let page = u64::from(env.stat().page_size);
    let last_page = env.info().last_page_number as u64;
    // The meta page first, the size after: another process (the daemon) may commit meanwhile,
    // and LMDB writes a transaction's pages — growing the file — before the meta page that
    // names them. Read the other way round, a commit in between made a healthy store look
    // truncated (a `jit status` during a write-back said so).
    let roots = newest_meta_roots(&file, page).unwrap_or_default();
    let size = std::fs::metadata(&file)
        .map_err(|e| Error::io(&file, e))?
        .len();
    let pages_in_file = size / page;
    let needed = roots
        .iter()
        .filter(|&&root| root != NO_ROOT)
        .map(|root| root + 1)
        .max()
        .unwrap_or(0)
        .max((last_page + 1).saturating_sub(UNWRITTEN_TAIL_PAGES));
    if pages_in_file < needed {
        let expected = needed.max(last_page + 1).saturating_mul(page);
        tracing::error!(store = %file.display(), size, expected, "the store is truncated");
        return Err(Error::StoreTruncated {
            path: file,
            size,
            expected,
        });
    }
    Ok(())
}

/// Pages at the end of the file LMDB may count in its header without having written them.
const UNWRITTEN_TAIL_PAGES: u64 = 64;

/// `md_root` of an empty tree (LMDB's `P_INVALID`).
const NO_ROOT: u64 = u64::MAX;

/// The root pages of the free-page tree and the main tree named by the newer of LMDB's two
/// meta pages (pages 0 and 1); None when they cannot be read. Offsets are LMDB 0.9's on a
/// 64-bit build: a 16-byte page header, then `mm_magic`, `mm_version`, `mm_address`,
/// `mm_mapsize`, two 48-byte `MDB_db` records (whose `md_root` is their last field),
/// `mm_last_pg` and `mm_txnid`.
fn newest_meta_roots(file: &Path, page: u64) -> Option<[u64; 2]> {
    use std::os::unix::fs::FileExt;
    const MAGIC: u32 = 0xBEEF_C0DE;
    let data = std::fs::File::open(file).ok()?;
    let mut newest: Option<(u64, [u64; 2])> = None;
    for meta_page in 0..2u64 {
        let mut meta = [0u8; 152];
        data.read_exact_at(&mut meta, meta_page * page).ok()?;
        let u32_at = |at: usize| u32::from_ne_bytes(meta[at..at + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |at: usize| u64::from_ne_bytes(meta[at..at + 8].try_into().unwrap_or([0; 8]));
        if u32_at(16) != MAGIC {
            continue;
        }
        let (txnid, roots) = (u64_at(144), [u64_at(80), u64_at(128)]);
        if newest.is_none_or(|(best, _)| txnid > best) {
            newest = Some((txnid, roots));
        }
    }
    newest.map(|(_, roots)| roots)
}

/// `error` as [`Error::NoSpace`] when it comes from a full disk (or a full map), else unchanged.
pub(super) fn classify(dir: &Path, error: Error) -> Error {
    let detail = match &error {
        Error::Store(heed::Error::Mdb(heed::MdbError::MapFull)) => {
            "the store's memory map is full".to_owned()
        }
        Error::Store(heed::Error::Io(io)) if is_no_space(io) => io.to_string(),
        Error::Store(heed::Error::Io(io)) if io.raw_os_error() == Some(EIO) => {
            match available(dir) {
                Some(free) if free < FULL_BELOW => {
                    format!("a write came up short ({io}) and {free} bytes are free")
                }
                _ => return error,
            }
        }
        _ => return error,
    };
    tracing::error!(store = %dir.display(), %detail, "the store's file system is full");
    Error::NoSpace {
        path: dir.to_path_buf(),
        detail,
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn available(dir: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    Some((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

#[cfg(test)]
mod tests {
    use heed::types::Bytes;
    use heed::{Database, EnvOpenOptions};

    use super::*;

    fn env_with_data(dir: &Path) -> Env<WithoutTls> {
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(1 << 30);
        // SAFETY: a fresh directory of this test's own.
        let env = unsafe { options.open(dir) }.expect("open");
        let mut txn = env.write_txn().expect("txn");
        let db: Database<Bytes, Bytes> = env.create_database(&mut txn, None).expect("db");
        for i in 0u32..2_000 {
            db.put(&mut txn, &i.to_be_bytes(), &[7u8; 300])
                .expect("put");
        }
        txn.commit().expect("commit");
        env
    }

    #[test]
    fn a_whole_store_passes_and_one_cut_below_its_roots_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = env_with_data(dir.path());
        refuse_truncated(&env, dir.path()).expect("a whole store is not truncated");
        let page = u64::from(env.stat().page_size);
        let file = dir.path().join(DATA_FILE);
        let roots = newest_meta_roots(&file, page).expect("meta pages");
        assert!(
            roots[1] != NO_ROOT && roots[1] > 1,
            "a main tree: {roots:?}"
        );
        let size = std::fs::metadata(&file).expect("stat").len();
        assert!(size >= (roots[1] + 1) * page);
        // Cut just below the main tree's root: every read would start beyond the end.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_len(roots[1] * page))
            .expect("truncate");
        match refuse_truncated(&env, dir.path()) {
            Err(Error::StoreTruncated { .. }) => {}
            other => panic!("a store cut below its root was accepted: {other:?}"),
        }
    }

    /// Pages a transaction allocates and frees again are counted in the header but never
    /// written: the file ends before the header's last page, and the store is whole (the old
    /// check refused it — seen live as a daemon's `jit status` failing with `store_truncated`).
    #[test]
    fn a_store_whose_last_pages_were_freed_unwritten_is_not_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = env_with_data(dir.path());
        let db: Database<Bytes, Bytes> = {
            let txn = env.read_txn().expect("txn");
            env.open_database(&txn, None).expect("db").expect("exists")
        };
        let page = u64::from(env.stat().page_size);
        let mut short_seen = false;
        for round in 0u8..5 {
            let mut txn = env.write_txn().expect("txn");
            for i in 10_000u32..10_300 {
                db.put(&mut txn, &i.to_be_bytes(), &[8u8; 9000])
                    .expect("put");
            }
            for i in 10_000u32..10_300 {
                db.delete(&mut txn, &i.to_be_bytes()).expect("delete");
            }
            db.put(&mut txn, &[round], b"kept").expect("put");
            txn.commit().expect("commit");
            let pages = std::fs::metadata(dir.path().join(DATA_FILE))
                .expect("stat")
                .len()
                / page;
            short_seen |= pages < env.info().last_page_number as u64 + 1;
            refuse_truncated(&env, dir.path()).expect("a whole store is not truncated");
        }
        assert!(
            short_seen,
            "LMDB always wrote its last page: the case is not exercised"
        );
        let txn = env.read_txn().expect("txn");
        assert_eq!(db.len(&txn).expect("len"), 2_005, "every record reads back");
    }
}
