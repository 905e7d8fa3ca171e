//! `jit op log` and `jit undo`: the operations that moved refs, read back from the kernel's log
//! (the source of truth, as jj's operation log is), and undoing one by doing its inverse as a
//! new operation — nothing is erased, so an undo is itself in the log and can be undone.
//!
//! - a branch that moved (`ref-updated`) is reset to where it was: a new snapshot through an
//!   inversion rewrite, with the old tree (the history keeps both);
//! - a branch or tag that was created is deleted (a tag needs no `--force` here: its creation is
//!   what is undone);
//! - a deleted branch or tag is created again where it pointed.
//!
//! An operation is undone only if its ref is still where the operation left it; otherwise a
//! later operation moved it, and that one must be undone first (`ref_changed`).

use std::process::ExitCode;

use anyhow::Result;
use jit_kernel::command::args::{MoveArgs as RpcMove, RefArgs};
use jit_kernel::command::Operation;
use jit_kernel::history::Declared;
use jit_kernel::log::{verify_record, LogOp};
use jit_kernel::rpc::client::Kernel;
use jit_kernel::{NodeId, Repository};
use serde_json::json;

use crate::output::Output;

/// A ref operation of the log, and how to undo it.
struct RefOperation {
    seq: u64,
    at_ms: u64,
    by: Option<String>,
    name: String,
    /// Where the operation left the ref (None: deleted).
    after: Option<NodeId>,
    /// Where it was before (None: did not exist).
    before: Option<NodeId>,
}

impl RefOperation {
    fn of(seq: u64, at_ms: u64, by: Option<String>, op: &LogOp) -> Option<RefOperation> {
        let (name, before, after) = match op {
            LogOp::RefCreated { name, target } => (name, None, Some(*target)),
            LogOp::RefUpdated { name, from, to } => (name, Some(*from), Some(*to)),
            LogOp::RefDeleted { name, target, .. } => (name, Some(*target), None),
            _ => return None,
        };
        // Kept remote refs follow their peer; undoing a pull is not a ref operation of ours.
        if !(name.starts_with("heads/") || name.starts_with("tags/")) {
            return None;
        }
        Some(RefOperation {
            seq,
            at_ms,
            by,
            name: name.clone(),
            after,
            before,
        })
    }

    fn describe(&self) -> String {
        let short = |id: &NodeId| id.short();
        match (self.before, self.after) {
            (None, Some(to)) => format!("create {} at {}", self.name, short(&to)),
            (Some(from), Some(to)) => {
                format!("move {} {}..{}", self.name, short(&from), short(&to))
            }
            (Some(from), None) => format!("delete {} (was {})", self.name, short(&from)),
            (None, None) => format!("touch {}", self.name),
        }
    }
}

/// The ref operations of the log, newest first (at most `limit`).
fn ref_operations(repo: &Repository, limit: usize) -> Result<Vec<RefOperation>> {
    let store = repo.store();
    let txn = store.read()?;
    let tail = store.log_tail(&txn)?;
    let mut out = Vec::new();
    // Newest first, in windows, so a long log is not read whole for the last few operations.
    let mut end = tail;
    while end > 0 && out.len() < limit {
        let start = end.saturating_sub(1023).max(1);
        let mut window = Vec::new();
        for entry in store.log_entries_from(&txn, start)? {
            let (seq, stored) = entry?;
            if seq > end {
                break;
            }
            let (record, _) = verify_record(seq, stored)?;
            if let Some(op) = RefOperation::of(seq, record.at_ms, record.by, &record.op) {
                window.push(op);
            }
        }
        out.extend(window.into_iter().rev());
        end = start - 1;
    }
    out.truncate(limit);
    Ok(out)
}

/// `jit op log`.
pub(crate) fn op_log(out: &Output, repo: &Repository, limit: usize) -> Result<ExitCode> {
    let ops = ref_operations(repo, limit)?;
    let rows: Vec<_> = ops
        .iter()
        .map(|op| {
            json!({ "seq": op.seq, "at_ms": op.at_ms, "by": op.by, "ref": op.name,
                    "before": op.before.map(|id| id.to_hex()), "after": op.after.map(|id| id.to_hex()),
                    "description": op.describe() })
        })
        .collect();
    out.emit(serde_json::Value::Array(rows), || {
        ops.iter()
            .map(|op| {
                let when = crate::declared::format_date(jit_kernel::DeclaredTime {
                    seconds: (op.at_ms / 1000) as i64,
                    tz_minutes: 0,
                });
                let by = op
                    .by
                    .as_deref()
                    .map(|b| format!(" by {b}"))
                    .unwrap_or_default();
                format!("{:>6}  {when}  {}{by}", op.seq, op.describe())
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn refuse(code: jit_kernel::Code, message: String) -> anyhow::Error {
    jit_kernel::Error::Remote {
        code: code.as_str().to_owned(),
        message,
        details: None,
    }
    .into()
}

/// `jit undo [SEQ]`: undoes the ref operation at log position SEQ (default: the latest); a
/// moved branch's reset takes `declared`'s message, or says what it undid when that is empty.
pub(crate) fn undo(
    out: &Output,
    base: &std::path::Path,
    seq: Option<u64>,
    declared: Declared,
) -> Result<ExitCode> {
    let (op, current) = {
        let repo = Repository::discover_for_reading(base)?;
        let ops = ref_operations(&repo, usize::MAX)?;
        let op = match seq {
            None => ops.into_iter().next(),
            Some(seq) => ops.into_iter().find(|op| op.seq == seq),
        }
        .ok_or_else(|| {
            jit_kernel::Error::InvalidInput(match seq {
                Some(seq) => {
                    format!("log position {seq} is no ref operation (jit op log lists them)")
                }
                None => "nothing to undo: no ref operation in the log".into(),
            })
        })?;
        let name = jit_kernel::refs::RefName::parse_full(&op.name)?;
        let current = jit_kernel::refs::get(repo.store(), &repo.store().read()?, &name)?;
        (op, current)
    };
    if current != op.after {
        return Err(refuse(
            jit_kernel::Code::RefChanged,
            format!(
                "{} moved since operation {} ({}): undo the later operation first (jit op log)",
                op.name,
                op.seq,
                op.describe()
            ),
        ));
    }
    let short = op
        .name
        .split_once('/')
        .map_or(op.name.as_str(), |(_, short)| short)
        .to_owned();
    let is_tag = op.name.starts_with("tags/");
    let mut kernel = Kernel::connect(base)?;
    let done = match (op.before, op.after) {
        (Some(before), Some(_)) => {
            let mut declared = declared;
            if declared.message.is_empty() {
                declared.message = format!("undo operation {}: {}", op.seq, op.describe());
            }
            let result: std::collections::BTreeMap<String, NodeId> = kernel.invoke(
                Operation::Reset,
                &RpcMove {
                    branch: Some(short.clone()),
                    rev: before.to_hex(),
                    declared,
                },
            )?;
            let tip = result
                .get("snapshot")
                .map(|id| id.short())
                .unwrap_or_default();
            format!(
                "{} reset to {}'s content (now at {tip})",
                op.name,
                before.short()
            )
        }
        (None, Some(_)) => {
            let _: ciborium::value::Value = kernel.invoke(
                Operation::DeleteRef,
                &RefArgs {
                    name: op.name.clone(),
                    target: None,
                    expected: None,
                    force: is_tag,
                },
            )?;
            format!("{} deleted", op.name)
        }
        (Some(before), None) => {
            let create = if is_tag {
                Operation::CreateTag
            } else {
                Operation::CreateBranch
            };
            let _: ciborium::value::Value = kernel.invoke(
                create,
                &RefArgs {
                    name: short.clone(),
                    target: Some(before.to_hex()),
                    expected: None,
                    force: false,
                },
            )?;
            format!("{} created again at {}", op.name, before.short())
        }
        (None, None) => format!("{} unchanged", op.name),
    };
    out.emit(
        json!({ "undone": op.seq, "ref": op.name, "description": op.describe(), "result": done }),
        || format!("undid operation {} ({}): {done}", op.seq, op.describe()),
    )
}
