//! Verbs on refs: `branch` and `tag` (list, create, delete), through the kernel so a running
//! daemon's mount and plane see the change at once.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use jit_kernel::command::Operation;
use jit_kernel::refs::{RefName, HEADS, TAGS};
use jit_kernel::{NodeId, Repository};
use serde_json::{json, Value};

use crate::output::Output;

/// Lists the refs under `prefix` (names shown without it), marking `current`.
pub(crate) fn list_refs(
    out: &Output,
    repo: &Repository,
    prefix: &str,
    current: Option<&RefName>,
) -> Result<ExitCode> {
    let txn = repo.store().read()?;
    let refs = repo.store().refs_with_prefix(&txn, prefix)?;
    let rows: Vec<Value> = refs
        .iter()
        .map(|(name, target)| {
            let short = &name[prefix.len()..];
            let is_current = current.is_some_and(|c| c.full() == name);
            json!({ "name": short, "target": target.to_hex(), "current": is_current })
        })
        .collect();
    out.emit(Value::Array(rows), || {
        refs.iter()
            .map(|(name, target)| {
                let marker = if current.is_some_and(|c| c.full() == name) {
                    "*"
                } else {
                    " "
                };
                format!("{marker} {} {}", &name[prefix.len()..], target.short())
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

pub(crate) fn branch(
    out: &Output,
    base: &Path,
    name: Option<String>,
    rev: Option<String>,
    delete: bool,
) -> Result<ExitCode> {
    let Some(name) = name else {
        if delete {
            bail!("jit branch -d needs a branch name");
        }
        let repo = Repository::discover(base)?;
        let head = repo.head()?;
        return list_refs(out, &repo, HEADS, Some(&head));
    };
    if delete && rev.is_some() {
        bail!("jit branch -d takes only a branch name");
    }
    change_ref(out, base, &RefName::branch(&name)?, rev, delete, false)
}

pub(crate) fn tag(
    out: &Output,
    base: &Path,
    name: Option<String>,
    rev: Option<String>,
    delete: bool,
    force: bool,
) -> Result<ExitCode> {
    let Some(name) = name else {
        if delete {
            bail!("jit tag -d needs a tag name");
        }
        return list_refs(out, &Repository::discover(base)?, TAGS, None);
    };
    change_ref(out, base, &RefName::tag(&name)?, rev, delete, force)
}

/// Creates or deletes a branch or tag through the kernel: the daemon when one runs (so its
/// mount and message plane see the change at once), else in this process.
pub(crate) fn change_ref(
    out: &Output,
    base: &Path,
    name: &RefName,
    rev: Option<String>,
    delete: bool,
    force: bool,
) -> Result<ExitCode> {
    let mut kernel = jit_kernel::rpc::client::Kernel::connect(base)?;
    let short = name.short().to_owned();
    let args = jit_kernel::command::args::RefArgs {
        name: name.full().to_owned(),
        target: rev,
        expected: None,
        force,
    };
    if delete {
        let result: std::collections::BTreeMap<String, NodeId> =
            kernel.invoke(Operation::DeleteRef, &args)?;
        let was = result
            .get("was")
            .copied()
            .context("the kernel did not say what the ref pointed at")?;
        return out.emit(json!({ "deleted": short, "was": was.to_hex() }), || {
            format!("Deleted {} {short} (was {})", kind_word(name), was.short())
        });
    }
    let op = match name.kind() {
        jit_kernel::refs::RefKind::Branch => Operation::CreateBranch,
        jit_kernel::refs::RefKind::Tag => Operation::CreateTag,
        jit_kernel::refs::RefKind::Remote => {
            bail!("{name} is kept by sync; it cannot be created by hand")
        }
    };
    // Creation takes the short name; lookups and deletion the full one.
    let create = jit_kernel::command::args::RefArgs {
        name: short.clone(),
        ..args.clone()
    };
    let _: Value = kernel
        .invoke::<_, std::collections::BTreeMap<String, String>>(op, &create)
        .map(|m| json!(m))?;
    let target: Option<NodeId> = kernel.invoke(Operation::GetRef, &args)?;
    let target = target.context("the new ref is missing")?;
    out.emit(
        json!({ "created": short, "target": target.to_hex() }),
        || format!("Created {} {short} at {}", kind_word(name), target.short()),
    )
}

pub(crate) fn kind_word(name: &RefName) -> &'static str {
    match name.kind() {
        jit_kernel::refs::RefKind::Branch => "branch",
        jit_kernel::refs::RefKind::Tag => "tag",
        jit_kernel::refs::RefKind::Remote => "remote ref",
    }
}
