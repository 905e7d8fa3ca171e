//! Verbs on work in progress — the working SWS, named SWS, reset and rebase. They
//! are RPC clients: through the daemon's socket when one runs, in-process otherwise.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use jit_kernel::command::args::{
    ApplyArgs, CheckoutArgs, CommitArgs as RpcCommit, CreateArgs, MoveArgs as RpcMove, ReadArgs,
    SwsArgs,
};
use jit_kernel::command::reply::{ChangeInfo, StatusInfo};
use jit_kernel::command::Operation;
use jit_kernel::history::CommitInfo;
use jit_kernel::history::{Committed, Declared};
use jit_kernel::merge::Conflict;
use jit_kernel::node::EntryKind;
use jit_kernel::patch::Patch;
use jit_kernel::rpc::client::Kernel;
use jit_kernel::sws::PatchRecord;
use jit_kernel::NodeId;
use serde_json::json;

use crate::args::{MoveArgs, SwsCommand};
use crate::declared;
use crate::place::Place;

fn owner() -> String {
    std::env::var("USER").unwrap_or_else(|_| "user".into())
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<ExitCode> {
    println!("{}", serde_json::to_string(value)?);
    Ok(ExitCode::SUCCESS)
}

/// Reads a JSON patch from a file (relative to `base`) or, for `-`, from stdin.
pub fn read_patch(base: &Path, file: &Path) -> Result<Patch> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the patch from stdin")?;
        text
    } else {
        std::fs::read_to_string(base.join(file))
            .with_context(|| format!("cannot read {}", file.display()))?
    };
    serde_json::from_str(&text).context("the patch is not valid JSON of the documented form")
}

/// Prints what applying a patch did.
pub fn print_applied(applied: &jit_kernel::sws::Applied, json: bool) -> Result<ExitCode> {
    if json {
        return print_json(applied);
    }
    if applied.duplicate {
        println!(
            "patch already applied as #{} (nothing changed)",
            applied.seq
        );
    } else {
        println!("applied as #{}", applied.seq);
    }
    Ok(ExitCode::SUCCESS)
}

/// Finds an SWS by full id, unique id prefix, or name.
fn resolve_sws(kernel: &mut Kernel, text: &str) -> Result<String> {
    find_sws(kernel, text, true)
}

/// The SWS a mount view names, as an id: `sws/NAME/` lists an SWS under its unique name,
/// else under its 32-hex-digit id.
fn view_sws_id(kernel: &mut Kernel, name: &str) -> Result<String> {
    find_sws(kernel, name, false)
}

/// Finds an SWS by full id or name, or also (with `prefixes`) by a unique id prefix.
fn find_sws(kernel: &mut Kernel, text: &str, prefixes: bool) -> Result<String> {
    if text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(text.to_ascii_lowercase());
    }
    let all: Vec<StatusInfo> = kernel.invoke(Operation::ListSws, &json!({}))?;
    let matches: Vec<&StatusInfo> = all
        .iter()
        .filter(|s| {
            s.name.as_deref() == Some(text)
                || (prefixes && text.len() >= 4 && s.id.starts_with(text))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => bail!("no shadow working set matches {text:?}"),
        _ => bail!("{text:?} matches several shadow working sets; use more of the id"),
    }
}

/// A status for people: the branch, the changes and what to do next; the SWS's internals (id,
/// name, owner, base, patch count) only with `verbose`.
fn print_status(status: &StatusInfo, title: &str, verbose: bool) {
    let branch = status.branch.trim_start_matches("heads/");
    if verbose {
        println!("{title} {} on branch {}", status.id, status.branch);
        if let Some(name) = &status.name {
            println!("name:    {name}");
        }
        println!("owner:   {}", status.owner);
        println!("base:    {}", status.base.short());
        println!("patches: {}", status.patches);
    } else {
        println!("On branch {branch}");
    }
    match status.tip {
        Some(tip) if tip != status.base => println!(
            "The branch moved to {} since these changes began: jit commit will merge them with it.",
            tip.short()
        ),
        _ => {}
    }
    if status.changes.is_empty() && status.conflicts.is_empty() {
        println!("nothing to commit, the working set is clean");
        return;
    }
    if !status.changes.is_empty() {
        println!(
            "Changes ({}):\n  (jit commit -m MSG records them; jit diff shows them; jit restore PATH drops one)",
            crate::output::count(status.changes.len() as u64, "path")
        );
    }
    for change in &status.changes {
        println!("  {} {}", change.change, shown(change));
    }
    if !status.conflicts.is_empty() {
        println!("Conflicts (fix the files, then jit commit):");
    }
    print_conflicts(&status.conflicts);
}

fn print_conflicts(conflicts: &[Conflict]) {
    for conflict in conflicts {
        println!("  conflict ({:?}): {}", conflict.kind, conflict.path);
    }
}

fn status(
    kernel: &mut Kernel,
    sws: Option<&str>,
    json: bool,
    ignored: Option<&Path>,
    verbose: bool,
) -> Result<ExitCode> {
    let status: StatusInfo = match sws {
        Some(id) => kernel.invoke(Operation::SwsStatus, &SwsArgs { sws: id.to_owned() })?,
        None => kernel.invoke(Operation::HeadStatus, &json!({}))?,
    };
    // The status settled the mount first, so its overlay records are current.
    let ignored = match ignored {
        Some(universe) => {
            let view = match sws {
                Some(_) => format!("sws/{}", status.id),
                None => "head".to_owned(),
            };
            Some(ignored_paths(universe, &view)?)
        }
        None => None,
    };
    if json {
        let mut value = serde_json::to_value(&status)?;
        if let (Some(map), Some(ignored)) = (value.as_object_mut(), &ignored) {
            map.insert("ignored".into(), json!(ignored));
        }
        return print_json(&value);
    }
    print_status(
        &status,
        if sws.is_some() { "sws" } else { "working sws" },
        verbose,
    );
    for path in ignored.iter().flatten() {
        println!("  ! {path}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The entries of mount view `view` that are ignored (kept in the mount's overlay, never
/// committed), directories with a trailing `/`; nothing when the universe was never mounted.
fn ignored_paths(universe: &Path, view: &str) -> Result<Vec<String>> {
    let Some(jit_dir) = universe
        .ancestors()
        .map(|dir| dir.join(jit_kernel::repo::JIT_DIR))
        .find(|dir| dir.is_dir())
    else {
        return Ok(Vec::new());
    };
    let fs_dir = jit_dir.join("fs");
    if !fs_dir.join("overlay").is_dir() {
        return Ok(Vec::new());
    }
    let overlay = jit_jitfs::overlay::Overlay::open(&fs_dir)?;
    let ignored: Vec<_> = overlay
        .all(view)?
        .into_iter()
        .filter(|(_, record)| record.ignored)
        .collect();
    // Like git, an ignored directory is listed, not what it holds.
    let dirs: std::collections::HashSet<Vec<u8>> =
        ignored.iter().map(|(path, _)| path.clone()).collect();
    let below_another = |path: &[u8]| {
        path.iter()
            .enumerate()
            .any(|(i, &b)| b == b'/' && dirs.contains(&path[..i]))
    };
    Ok(ignored
        .into_iter()
        .filter(|(path, _)| !below_another(path))
        .map(|(path, record)| {
            let slash = if matches!(record.entry, jit_jitfs::overlay::Entry::Dir { .. }) {
                "/"
            } else {
                ""
            };
            format!("{}{slash}", String::from_utf8_lossy(&path))
        })
        .collect())
}

fn read(kernel: &mut Kernel, args: ReadArgs) -> Result<Vec<u8>> {
    let result = kernel.call(Operation::ReadFile, jit_kernel::cbor::to_value(&args)?)?;
    let map = jit_kernel::cbor::fields::as_map(&result, "read result")?;
    Ok(jit_kernel::cbor::fields::as_bytes(
        jit_kernel::cbor::fields::require(map, "content")?,
        "content",
    )?
    .to_vec())
}

fn diff(kernel: &mut Kernel, sws: Option<&str>, json: bool) -> Result<ExitCode> {
    let status: StatusInfo = match sws {
        Some(id) => kernel.invoke(Operation::SwsStatus, &SwsArgs { sws: id.to_owned() })?,
        None => kernel.invoke(Operation::HeadStatus, &json!({}))?,
    };
    if json {
        return print_json(&status.changes);
    }
    for change in &status.changes {
        println!("diff --jit a/{0} b/{0}", shown(change));
        if is_dir(change) {
            let what = if change.new.is_some() {
                "new directory"
            } else {
                "deleted directory"
            };
            println!("{what}");
            continue;
        }
        let old = match change.old {
            Some(_) => read(
                kernel,
                ReadArgs {
                    path: change.path.clone(),
                    sws: None,
                    rev: Some(status.base.to_hex()),
                },
            )?,
            None => Vec::new(),
        };
        let new = match change.new {
            Some(_) => read(
                kernel,
                ReadArgs {
                    path: change.path.clone(),
                    sws: Some(status.id.clone()),
                    rev: None,
                },
            )?,
            None => Vec::new(),
        };
        print_file_diff(change, &old, &new);
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether a change is an (empty) directory's.
fn is_dir(change: &ChangeInfo) -> bool {
    change.kind == EntryKind::Directory.as_str()
}

/// A changed path as people read it: a directory's ends in `/`.
fn shown(change: &ChangeInfo) -> String {
    crate::output::shown_path(&change.path, is_dir(change))
}

/// Prints one file's unified diff (or that binary files differ).
fn print_file_diff(change: &ChangeInfo, old: &[u8], new: &[u8]) {
    print!(
        "{}",
        crate::verbs::diffs::unified(
            &change.path,
            change.old.is_some().then_some(old),
            change.new.is_some().then_some(new),
        )
    );
}

fn commit(kernel: &mut Kernel, sws: &str, info: &CommitInfo, json: bool) -> Result<ExitCode> {
    // The branch it commits to, for the one-line summary (the SWS is retired by the commit).
    let branch = kernel
        .invoke::<_, StatusInfo>(
            Operation::SwsStatus,
            &SwsArgs {
                sws: sws.to_owned(),
            },
        )
        .map(|status| status.branch.trim_start_matches("heads/").to_owned())
        .unwrap_or_default();
    let args = RpcCommit {
        sws: sws.to_owned(),
        declared: Declared::from(info),
    };
    match kernel.invoke::<_, Committed>(Operation::Commit, &args) {
        Ok(done) => {
            if json {
                return print_json(&done);
            }
            let merged = if done.rewrite.is_some() {
                " (merged with the branch)"
            } else {
                ""
            };
            println!(
                "[{branch} {}] {}{merged}",
                done.snapshot.short(),
                info.message.lines().next().unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(jit_kernel::Error::Remote {
            code,
            message,
            details,
        }) if code == jit_kernel::Code::MergeConflict.as_str() => {
            let conflicts: Vec<Conflict> = details
                .map(jit_kernel::cbor::from_value)
                .transpose()?
                .unwrap_or_default();
            if json {
                println!(
                    "{}",
                    json!({ "error": { "code": code, "message": message, "conflicts": conflicts } })
                );
            } else {
                println!(
                    "Commit failed: conflicts. The SWS now holds the merged tree with markers:"
                );
                print_conflicts(&conflicts);
                println!("Resolve them by editing, then commit again.");
            }
            eprintln!("jit: error: {message}");
            Ok(ExitCode::FAILURE)
        }
        Err(other) => Err(other.into()),
    }
}

fn working_id(kernel: &mut Kernel) -> Result<String> {
    let status: StatusInfo = kernel.invoke(Operation::HeadStatus, &json!({}))?;
    Ok(status.id)
}

/// Connects to the universe where a working-set verb runs, with the SWS it acts on there: the
/// mount view's (`sws/NAME/`), or `None` for the checked-out branch's working SWS.
fn connect_at(place: &Place) -> Result<(Kernel, Option<String>)> {
    let mut kernel = Kernel::connect(&place.universe)?;
    let sws = place
        .view_sws()
        .map(|name| view_sws_id(&mut kernel, name))
        .transpose()?;
    Ok((kernel, sws))
}

/// The SWS an `sws` verb acts on: the one named, else the mount view's.
fn named_sws(kernel: &mut Kernel, place: &Place, given: Option<&str>) -> Result<String> {
    match (given, place.view_sws()) {
        (Some(text), _) => resolve_sws(kernel, text),
        (None, Some(name)) => view_sws_id(kernel, name),
        (None, None) => {
            bail!("name the shadow working set (or run this inside the mount's sws/NAME/)")
        }
    }
}

/// `jit status`: the working SWS, or inside a checkout its SWS once every edit on disk is in,
/// or inside a mount's `sws/NAME/` that SWS.
pub fn status_verb(place: &Place, json: bool, ignored: bool, verbose: bool) -> Result<ExitCode> {
    place.writable("status")?;
    let Some(located) = crate::ondisk::here(place)? else {
        let (mut kernel, sws) = connect_at(place)?;
        let universe = ignored.then_some(place.universe.as_path());
        return status(&mut kernel, sws.as_deref(), json, universe, verbose);
    };
    let dir = located.dir.display().to_string();
    let (mut session, id, how) = crate::ondisk::synchronized(located)?;
    let info: StatusInfo = session
        .kernel()
        .invoke(Operation::SwsStatus, &SwsArgs { sws: id })?;
    if json {
        let mut value = serde_json::to_value(&info)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("checkout".into(), json!(dir));
            map.insert("synchronized".into(), json!(how));
        }
        return print_json(&value);
    }
    println!("checkout {dir}");
    print_status(&info, "sws", verbose);
    Ok(ExitCode::SUCCESS)
}

/// `jit diff` (inside a checkout: of its SWS, synchronized; inside `sws/NAME/`: of that SWS).
pub fn diff_verb(place: &Place, json: bool) -> Result<ExitCode> {
    place.writable("diff")?;
    let Some(located) = crate::ondisk::here(place)? else {
        let (mut kernel, sws) = connect_at(place)?;
        return diff(&mut kernel, sws.as_deref(), json);
    };
    let (mut session, id, _) = crate::ondisk::synchronized(located)?;
    diff(session.kernel(), Some(&id), json)
}

/// The status of the working SWS `jit diff` compares with here (a checkout's, a mount view's, or
/// HEAD's branch's), settled: what the mount or the watcher has buffered is in it.
pub fn working_status(place: &Place) -> Result<StatusInfo> {
    place.writable("diff")?;
    let status = match crate::ondisk::here(place)? {
        Some(located) => {
            let (mut session, id, _) = crate::ondisk::synchronized(located)?;
            session
                .kernel()
                .invoke(Operation::SwsStatus, &SwsArgs { sws: id })?
        }
        None => {
            let (mut kernel, sws) = connect_at(place)?;
            match sws {
                Some(id) => kernel.invoke(Operation::SwsStatus, &SwsArgs { sws: id })?,
                None => kernel.invoke(Operation::HeadStatus, &json!({}))?,
            }
        }
    };
    Ok(status)
}

/// Applies `patch` to SWS `sws` through the kernel that serves `place`.
pub fn apply_patch(place: &Place, sws: &str, patch: &Patch) -> Result<()> {
    let (mut kernel, _) = connect_at(place)?;
    let _: ciborium::value::Value = kernel.invoke(
        Operation::ApplyPatch,
        &ApplyArgs {
            sws: sws.to_owned(),
            patch: patch.clone(),
        },
    )?;
    Ok(())
}

/// `jit commit` (inside a checkout: its SWS, then the files follow the new tip; inside
/// `sws/NAME/`: that SWS).
pub fn commit_verb(place: &Place, info: &CommitInfo, json: bool) -> Result<ExitCode> {
    place.writable("commit")?;
    if let Some(located) = crate::ondisk::here(place)? {
        let code = {
            let (mut session, id, _) = crate::ondisk::synchronized(located.clone())?;
            commit(session.kernel(), &id, info, json)?
        };
        if code == ExitCode::SUCCESS {
            crate::ondisk::after_commit(&located, json)?;
        }
        return Ok(code);
    }
    let (mut kernel, sws) = connect_at(place)?;
    let id = match sws {
        Some(id) => id,
        None => working_id(&mut kernel)?,
    };
    commit(&mut kernel, &id, info, json)
}

/// `jit checkout BRANCH`.
pub fn checkout_verb(base: &Path, branch: &str, json: bool) -> Result<ExitCode> {
    let mut kernel = Kernel::connect(base)?;
    let switched: Result<std::collections::BTreeMap<String, String>, jit_kernel::Error> = kernel
        .invoke(
            Operation::CheckoutBranch,
            &CheckoutArgs {
                branch: branch.to_owned(),
            },
        );
    if let Err(error) = switched {
        // The in-process kernel holds the store open; it must close before it is read again.
        drop(kernel);
        return Err(not_a_branch(base, branch, error));
    }
    if json {
        return print_json(&json!({ "head": branch }));
    }
    println!("Switched to branch {branch}");
    Ok(ExitCode::SUCCESS)
}

/// Why `jit checkout NAME` could not switch, said for people: HEAD names a branch, so a tag or
/// another revision gets the commands that do what was meant; a mistyped branch gets the
/// nearest name.
fn not_a_branch(base: &Path, name: &str, error: jit_kernel::Error) -> anyhow::Error {
    let Ok(repo) = jit_kernel::Repository::discover_for_reading(base) else {
        return error.into();
    };
    let resolves = crate::verbs::universe::resolve_snapshot(&repo, name).is_ok();
    let branches: Vec<String> = repo
        .store()
        .read()
        .and_then(|txn| repo.store().refs_with_prefix(&txn, "heads/"))
        .map(|refs| {
            refs.into_iter()
                .map(|(n, _)| n.trim_start_matches("heads/").to_owned())
                .collect()
        })
        .unwrap_or_default();
    let message = if resolves {
        format!(
            "{name} is not a branch, and HEAD always names a branch: to look at it, `jit checkout --into DIR {name}` writes it as plain files (or read it in the mount under nodes/); to work from it, `jit branch NEW {name}` then `jit checkout NEW`"
        )
    } else if let Some(near) = crate::output::nearest(name, branches.iter().map(String::as_str)) {
        format!("no branch named {name}; did you mean {near}?")
    } else {
        return error.into();
    };
    jit_kernel::Error::InvalidInput(message).into()
}

/// `jit reset REV` and `jit rebase ONTO`.
pub fn move_verb(
    base: &Path,
    op: Operation,
    rev: &str,
    args: &MoveArgs,
    configured: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let default_message = if op == Operation::Reset {
        format!("reset to {rev}")
    } else {
        format!("rebase onto {rev}")
    };
    let info = declared::declared(
        args.message.as_deref().unwrap_or(&default_message),
        args.author.as_deref(),
        args.date.as_deref(),
        configured,
    )?;
    let mut kernel = Kernel::connect(base)?;
    let result: std::collections::BTreeMap<String, NodeId> = kernel.invoke(
        op,
        &RpcMove {
            branch: None,
            rev: rev.to_owned(),
            declared: Declared::from(&info),
        },
    )?;
    let tip = result
        .get("snapshot")
        .copied()
        .context("no snapshot in the answer")?;
    if json {
        return print_json(&json!({ "snapshot": tip }));
    }
    println!("branch now at {}", tip.short());
    Ok(ExitCode::SUCCESS)
}

/// `jit sws …`.
pub fn sws_verb(
    place: &Place,
    command: SwsCommand,
    configured: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let mut kernel = Kernel::connect(&place.universe)?;
    match command {
        SwsCommand::New {
            name,
            from,
            branch,
            owner: who,
        } => {
            let args = CreateArgs {
                branch,
                from,
                owner: who.unwrap_or_else(owner),
                name,
            };
            let status: StatusInfo = kernel.invoke(Operation::CreateSws, &args)?;
            if json {
                return print_json(&status);
            }
            println!("{}", status.id);
            Ok(ExitCode::SUCCESS)
        }
        SwsCommand::Ls => {
            let all: Vec<StatusInfo> = kernel.invoke(Operation::ListSws, &json!({}))?;
            if json {
                return print_json(&all);
            }
            for s in &all {
                println!(
                    "{} {:<20} {:<10} {:>3} changes  owner {}",
                    s.id,
                    s.name.as_deref().unwrap_or("-"),
                    s.branch,
                    s.changes.len(),
                    s.owner
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SwsCommand::Status { sws } => {
            let id = named_sws(&mut kernel, place, sws.as_deref())?;
            status(&mut kernel, Some(&id), json, None, true)
        }
        SwsCommand::Diff { sws } => {
            let id = named_sws(&mut kernel, place, sws.as_deref())?;
            diff(&mut kernel, Some(&id), json)
        }
        SwsCommand::Apply { sws, patch } => {
            let id = resolve_sws(&mut kernel, &sws)?;
            let patch = read_patch(&place.cwd, &patch)?;
            let applied: jit_kernel::sws::Applied =
                kernel.invoke(Operation::ApplyPatch, &ApplyArgs { sws: id, patch })?;
            print_applied(&applied, json)
        }
        SwsCommand::Log { sws } => {
            let id = named_sws(&mut kernel, place, sws.as_deref())?;
            let history: Vec<PatchRecord> =
                kernel.invoke(Operation::SwsHistory, &SwsArgs { sws: id })?;
            if json {
                return print_json(&history);
            }
            for record in &history {
                println!(
                    "#{} {} by {} (ts {}, {} ops) → tree {}",
                    record.seq,
                    record.patch_id,
                    record.author,
                    record.ts,
                    record.ops,
                    record.tree.short()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SwsCommand::Commit { sws, commit: args } => {
            let id = named_sws(&mut kernel, place, sws.as_deref())?;
            let info = declared::commit_info(&args, configured)?;
            commit(&mut kernel, &id, &info, json)
        }
        SwsCommand::Validate { sws } => {
            let id = named_sws(&mut kernel, place, sws.as_deref())?;
            let conflicts: Vec<Conflict> =
                kernel.invoke(Operation::Validate, &SwsArgs { sws: id })?;
            if json {
                return print_json(&conflicts);
            }
            if conflicts.is_empty() {
                println!("merges cleanly");
                Ok(ExitCode::SUCCESS)
            } else {
                print_conflicts(&conflicts);
                Ok(ExitCode::FAILURE)
            }
        }
        SwsCommand::Delegate { sws, agent } => {
            let id = resolve_sws(&mut kernel, &sws)?;
            let answer = kernel.call(
                Operation::DelegateSws,
                jit_kernel::cbor::to_value(&jit_kernel::command::args::DelegateArgs {
                    sws: id.clone(),
                    agent: agent.clone(),
                })?,
            )?;
            let delegates: Vec<String> = jit_kernel::cbor::from_value(
                jit_kernel::cbor::fields::require(
                    jit_kernel::cbor::fields::as_map(&answer, "answer")?,
                    "delegates",
                )?
                .clone(),
            )?;
            if json {
                return print_json(&json!({ "sws": id, "delegates": delegates }));
            }
            println!(
                "{agent} may now write and commit {id} (delegates: {})",
                delegates.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        SwsCommand::Discard { sws } => {
            let id = resolve_sws(&mut kernel, &sws)?;
            kernel.call(
                Operation::Discard,
                jit_kernel::cbor::to_value(&SwsArgs { sws: id.clone() })?,
            )?;
            if json {
                return print_json(&json!({ "discarded": id }));
            }
            println!("discarded {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
