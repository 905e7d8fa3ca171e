//! `jit gc`: repack cold history into deltas ([`jit_kernel::repack`]), then compact the store's
//! file ([`jit_kernel::store::Store::compact`]), with a bar and a report of what was reclaimed.
//!
//! Only one `jit gc` runs on a universe at a time (a lock file in `.jit/`); a daemon, mount or
//! agents may keep working meanwhile: the repack commits small batches between their writes,
//! and compaction is skipped (said so) while another process has the store open.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use indicatif::ProgressBar;
use jit_kernel::repack::{self, RepackProgress};
use jit_kernel::repo::Repository;
use jit_kernel::store::Compacted;
use serde_json::json;

use crate::output::Output;

struct Bar(ProgressBar);

impl RepackProgress for Bar {
    fn candidates(&self, total: u64) {
        self.0.set_length(total);
    }

    fn done(&self, nodes: u64) {
        self.0.set_position(nodes);
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

pub(crate) fn run(out: &Output, universe: &Path, batch: usize) -> Result<ExitCode> {
    let repo = Repository::discover(universe)?;
    let lock_path = repo.jit_dir().join("gc.lock");
    let lock = std::fs::File::create(&lock_path)?;
    jit_kernel::filelock::exclusive(&lock, &lock_path, || {
        "another jit gc is running on this universe".to_owned()
    })?;
    let bar = crate::progress::spinner(
        !out.json,
        "{spinner} {msg} [{bar:30}] {pos}/{len} nodes ({eta})",
    );
    bar.set_message("repacking");
    let report = repack::repack(repo.store(), batch, &Bar(bar.clone()))?;
    bar.finish_and_clear();
    let compacted = repo.into_store().compact()?;
    let (file_before, file_after) = match compacted {
        Compacted::Done { before, after } => (Some(before), Some(after)),
        Compacted::InUse => (None, None),
    };
    out.emit(
        json!({
            "candidates": report.candidates,
            "rewritten": report.rewritten,
            "bytes_before": report.bytes_before,
            "bytes_after": report.bytes_after,
            "recompressed": report.recompressed,
            "recompressed_before": report.recompressed_before,
            "recompressed_after": report.recompressed_after,
            "neighbours": report.neighbours,
            "neighbours_before": report.neighbours_before,
            "neighbours_after": report.neighbours_after,
            "compacted": matches!(compacted, Compacted::Done { .. }),
            "file_before": file_before,
            "file_after": file_after,
        }),
        || {
            let mut text = vec![format!(
                "repacked {} of {} old versions as deltas: {} → {}",
                report.rewritten,
                report.candidates,
                mib(report.bytes_before),
                mib(report.bytes_after),
            )];
            if report.recompressed > 0 {
                text.push(format!(
                    "recompressed {} whole nodes: {} → {}",
                    report.recompressed,
                    mib(report.recompressed_before),
                    mib(report.recompressed_after),
                ));
            }
            if report.neighbours > 0 {
                text.push(format!(
                    "stored {} files and chunks of branch heads against a neighbour: {} → {}",
                    report.neighbours,
                    mib(report.neighbours_before),
                    mib(report.neighbours_after),
                ));
            }
            text.push(match compacted {
                Compacted::Done { before, after } => format!(
                    "store file {} → {} (reclaimed {})",
                    mib(before),
                    mib(after),
                    mib(before.saturating_sub(after))
                ),
                Compacted::InUse => "the store is open in another process (a daemon?): its \
                     freed pages are reused by later writes; stop it and run jit gc again to \
                     shrink the file"
                    .to_owned(),
            });
            text.join("\n")
        },
    )
}
