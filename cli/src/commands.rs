//! The verbs: each resolves its arguments, calls one kernel operation, and prints text or JSON.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use jit_kernel::content;
use jit_kernel::dag;
use jit_kernel::fsck;
use jit_kernel::history::{self, EmptyCommit};
use jit_kernel::import;
use jit_kernel::node::{Blob, EntryKind, Payload};
use jit_kernel::refs::{RefName, HEADS, TAGS};
use jit_kernel::repo::InitOptions;
use jit_kernel::source::Dag;
use jit_kernel::tree::{self, ChangeKind};
use jit_kernel::{NodeId, Repository};
use serde_json::{json, Value};

use crate::args::{Cli, Command};
use crate::declared;
use crate::place::Place;
use crate::progress::Bar;
use crate::work;

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let base = match &cli.directory {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let json = cli.json;
    let out = Output { json };
    // Relative paths on the command line are taken from `base`; the universe is found from
    // `universe` (the mount's, when `base` is inside a jitfs mount).
    let place = Place::locate(base.clone());
    let universe = place.universe.clone();
    match cli.command {
        Command::Init { dir, branch, name } => init(&out, &base, dir, &branch, name),
        Command::Import {
            dir,
            commit,
            branch,
            allow_empty,
            quiet,
        } => {
            let repo = Repository::discover(&universe)?;
            let info = declared::commit_info(&commit, repo.config().author())?;
            let branch = match branch {
                Some(name) => RefName::branch(&name)?,
                None => repo.head()?,
            };
            let source = base.join(dir);
            let bar = Bar::new(!quiet && !json);
            let (tree, stats) = import::import_dir(repo.store(), &source, &bar)?;
            bar.finish();
            let empty = if allow_empty {
                EmptyCommit::Allow
            } else {
                EmptyCommit::Refuse
            };
            let snapshot = history::commit_tree(repo.store(), &branch, tree, &info, empty)?;
            for (path, reason) in &stats.skipped {
                eprintln!("jit: skipped {}: {reason}", path.display());
            }
            out.emit(
                json!({
                    "snapshot": snapshot.to_hex(), "tree": tree.to_hex(), "branch": branch.short(),
                    "files": stats.files, "dirs": stats.dirs, "symlinks": stats.symlinks,
                    "bytes": stats.bytes, "new_nodes": stats.new_nodes,
                }),
                || {
                    format!(
                        "[{} {}] {}\n {} files, {} directories, {} symlinks, {} bytes; {} new nodes",
                        branch.short(),
                        snapshot.short(),
                        first_line(&info.message),
                        stats.files,
                        stats.dirs,
                        stats.symlinks,
                        stats.bytes,
                        stats.new_nodes
                    )
                },
            )
        }
        Command::ImportGit {
            path,
            branch,
            into,
            quiet,
        } => {
            let repo = Repository::discover(&universe)?;
            let target = match (&into, &branch) {
                (Some(name), _) | (None, Some(name)) => RefName::branch(name)?,
                (None, None) => repo.head()?,
            };
            let bar = crate::progress::commits(!quiet && !json, "importing");
            let report = jit_git::import::import_git(
                repo.store(),
                &base.join(&path),
                branch.as_deref(),
                &target,
                &|done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                },
            )?;
            bar.finish_and_clear();
            if report.skipped_submodules > 0 {
                eprintln!(
                    "jit: skipped {} submodule entries (not supported)",
                    report.skipped_submodules
                );
            }
            if report.skipped_reserved > 0 {
                eprintln!(
                    "jit: skipped {} entries named .git, .jit or .jit-checkout (reserved: they never enter a tree)",
                    report.skipped_reserved
                );
            }
            out.emit(
                json!({ "branch": target.short(), "tip": report.tip.to_hex(), "commits": report.commits,
                        "merges": report.merges, "new_nodes": report.new_nodes,
                        "skipped_submodules": report.skipped_submodules,
                        "skipped_reserved": report.skipped_reserved, "dropped_parents": report.dropped_parents }),
                || format!("imported {} commits ({} merges) onto {} at {}", report.commits, report.merges, target.short(), report.tip.short()),
            )
        }
        Command::ExportGit {
            path,
            rev,
            branch,
            quiet,
        } => {
            let repo = Repository::discover_for_reading(&universe)?;
            let snapshot = resolve_snapshot(&repo, rev.as_deref().unwrap_or("HEAD"))?;
            let git_branch = match branch {
                Some(name) => name,
                None => repo.head()?.short().to_owned(),
            };
            let bar = crate::progress::commits(!quiet && !json, "exporting");
            let report = jit_git::export::export_git(
                repo.store(),
                snapshot,
                &base.join(&path),
                &git_branch,
                &|done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                },
            )?;
            bar.finish_and_clear();
            out.emit(
                json!({ "commit": report.commit.to_string(), "reference": report.reference, "commits": report.commits }),
                || format!("exported {} commits; {} is {}", report.commits, report.reference, report.commit),
            )
        }
        Command::Log { rev, max_count } => log(
            &out,
            &Repository::discover_for_reading(&universe)?,
            rev,
            max_count,
        ),
        Command::Show { rev } => show(&out, &Repository::discover_for_reading(&universe)?, &rev),
        Command::LsTree {
            rev,
            path,
            recursive,
        } => ls_tree(
            &out,
            &Repository::discover_for_reading(&universe)?,
            &rev,
            path,
            recursive,
        ),
        Command::Cat { object } => {
            cat(&out, &Repository::discover_for_reading(&universe)?, &object)
        }
        Command::Branch { name, rev, delete } => branch(&out, &universe, name, rev, delete),
        Command::Tag {
            name,
            rev,
            delete,
            force,
        } => tag(&out, &universe, name, rev, delete, force),
        Command::Fsck => run_fsck(&out, &Repository::discover_for_reading(&universe)?),
        Command::Wait { timeout } => crate::wait::until_served(&out, &universe, timeout),
        Command::Completions { shell } => crate::generate::completions(shell),
        Command::Man { dir } => crate::generate::man_pages(&base.join(dir)),
        Command::Up {
            mount,
            no_mount,
            mount_threads,
            no_plane,
            listen,
            connect,
            insecure_listen,
            allow_other,
            allow_group,
            rpc_idle_timeout,
            rpc_read_timeout,
            rpc_max_connections,
            rpc_budget,
        } => work::up(
            &universe,
            work::PlaneSettings {
                enabled: !no_plane,
                listen,
                connect,
                insecure_listen,
            },
            work::MountSettings {
                enabled: !no_mount,
                mountpoint: mount.map(|dir| base.join(dir)),
                threads: mount_threads,
                allow_other,
            },
            work::RpcSettings {
                allow_group,
                idle_timeout: rpc_idle_timeout,
                read_timeout: rpc_read_timeout,
                max_connections: rpc_max_connections,
                budget_mib: rpc_budget,
            },
            json,
        ),
        Command::Agent { command } => crate::agent::run(&place, command, json),
        Command::Clone { remote, dir, quiet } => {
            crate::sync::clone(&base, &remote, &dir, json, quiet || json)
        }
        Command::Sync { command } => crate::sync::run(&place, command, json),
        Command::Status { ignored } => work::status_verb(&place, json, ignored),
        Command::Diff => work::diff_verb(&place, json),
        Command::Commit { commit } => {
            let universe = match crate::ondisk::here(&place)? {
                Some(located) => located.marker.repo,
                None => universe,
            };
            let repo = Repository::discover(&universe)?;
            let info = declared::commit_info(&commit, repo.config().author())?;
            drop(repo);
            work::commit_verb(&place, &info, json)
        }
        Command::Checkout { rev, into, quiet } => {
            let into = match into {
                Some(dir) => Some(dir),
                None => crate::ondisk::here(&place)?.map(|located| located.dir),
            };
            match (into, rev) {
                (Some(dir), rev) => {
                    crate::ondisk::checkout(&place, &dir, rev.as_deref(), quiet, json)
                }
                (None, Some(branch)) => work::checkout_verb(&universe, &branch, json),
                (None, None) => bail!("name a branch to check out (or --into DIR)"),
            }
        }
        Command::Watch { dir } => crate::ondisk::watch(&base, dir),
        Command::Sws { command } => {
            let configured = Repository::discover(&universe)?.config().author();
            work::sws_verb(&place, command, configured, json)
        }
        Command::Reset { rev, declared } => {
            let configured = Repository::discover(&universe)?.config().author();
            work::move_verb(
                &universe,
                "history.reset",
                &rev,
                &declared,
                configured,
                json,
            )
        }
        Command::Rebase { onto, declared } => {
            let configured = Repository::discover(&universe)?.config().author();
            work::move_verb(
                &universe,
                "history.rebase",
                &onto,
                &declared,
                configured,
                json,
            )
        }
        Command::Info => info(&out, &Repository::discover_for_reading(&universe)?),
    }
}

/// Prints either JSON or text.
/// How a verb prints: JSON for machines or text for people.
pub(crate) struct Output {
    /// One JSON value on stdout instead of text.
    pub(crate) json: bool,
}

impl Output {
    /// Prints `value` as JSON, or `text()` (unless empty) for people.
    pub(crate) fn emit(&self, value: Value, text: impl FnOnce() -> String) -> Result<ExitCode> {
        if self.json {
            println!("{value}");
        } else {
            let text = text();
            if !text.is_empty() {
                println!("{text}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn init(
    out: &Output,
    base: &Path,
    dir: Option<PathBuf>,
    branch: &str,
    name: Option<String>,
) -> Result<ExitCode> {
    let target = match dir {
        Some(dir) => base.join(dir),
        None => base.to_path_buf(),
    };
    let display_name = name.unwrap_or_else(|| {
        std::fs::canonicalize(&target)
            .ok()
            .or_else(|| Some(target.clone()))
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "universe".into())
    });
    let owner = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let created = time::OffsetDateTime::now_utc().unix_timestamp();
    let repo = Repository::init(
        &target,
        &InitOptions {
            branch: branch.to_owned(),
            name: display_name,
            owner,
            created,
            replica_of: None,
        },
    )?;
    let identity = repo.identity()?;
    out.emit(
        json!({
            "path": repo.jit_dir().display().to_string(), "branch": branch,
            "universe": identity.info.id.to_string(), "public_key": identity.info.public_key,
        }),
        || {
            format!(
                "Initialized empty JIT universe {} in {} (branch {branch})",
                identity.info.id,
                repo.jit_dir().display()
            )
        },
    )
}

fn snapshot_json(id: &NodeId, s: &jit_kernel::node::Snapshot) -> Value {
    json!({
        "id": id.to_hex(), "tree": s.tree.to_hex(), "author": s.author, "message": s.message,
        "time": s.time.seconds, "tz_minutes": s.time.tz_minutes,
        "date": declared::format_date(s.time),
    })
}

fn log(
    out: &Output,
    repo: &Repository,
    rev: Option<String>,
    max_count: Option<usize>,
) -> Result<ExitCode> {
    let start = repo.resolve(rev.as_deref().unwrap_or("HEAD"))?;
    let store = repo.store();
    let txn = store.read()?;
    let mut entries = Vec::new();
    let mut text = String::new();
    let mut current = match store.view(&txn, &start)?.node_type {
        jit_kernel::NodeType::Root => None,
        jit_kernel::NodeType::Snapshot => Some(start),
        other => bail!("{start} is a {}, not a snapshot", other.as_str()),
    };
    while let Some(id) = current {
        if max_count.is_some_and(|max| entries.len() >= max) {
            break;
        }
        let node = store.node(&txn, &id)?;
        let Payload::Snapshot(snapshot) = &node.payload else {
            break;
        };
        let mut entry = snapshot_json(&id, snapshot);
        text.push_str(&format!(
            "snapshot {id}\nAuthor: {}\nDate:   {}\n",
            snapshot.author,
            declared::format_date(snapshot.time)
        ));
        if let Some(rewrite) = rewrite_of(repo, &txn, &node)? {
            text.push_str(&format!(
                "Rewrite: {} from {} to {}\n",
                rewrite.kind.as_str(),
                rewrite.from.short(),
                rewrite.to.short()
            ));
            entry["rewrite"] = json!({
                "kind": rewrite.kind.as_str(), "from": rewrite.from.to_hex(), "to": rewrite.to.to_hex(),
            });
        }
        text.push('\n');
        for line in snapshot.message.lines() {
            text.push_str(&format!("    {line}\n"));
        }
        text.push('\n');
        entries.push(entry);
        current = dag::mainline_parent(store, &txn, &id)?;
    }
    out.emit(Value::Array(entries), || text.trim_end().to_owned())
}

fn rewrite_of(
    repo: &Repository,
    txn: &jit_kernel::store::ReadTxn<'_>,
    node: &jit_kernel::Node,
) -> Result<Option<jit_kernel::node::Rewrite>> {
    for parent in &node.parents {
        if let Payload::Rewrite(rewrite) = repo.store().node(txn, parent)?.payload {
            return Ok(Some(rewrite));
        }
    }
    Ok(None)
}

fn change_letter(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "A",
        ChangeKind::Deleted => "D",
        ChangeKind::Modified => "M",
    }
}

/// A changed path as people read it: an (empty) directory ends in `/`.
pub(crate) fn shown_path(path: &str, is_dir: bool) -> String {
    if is_dir {
        format!("{path}/")
    } else {
        path.to_owned()
    }
}

fn show(out: &Output, repo: &Repository, rev: &str) -> Result<ExitCode> {
    let id = repo.resolve(rev)?;
    let store = repo.store();
    let txn = store.read()?;
    let node = store.node(&txn, &id)?;
    let mut value = json!({
        "id": id.to_hex(), "type": node.node_type().as_str(), "clock": node.clock,
        "parents": node.parents.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
        "metadata": node.metadata,
    });
    let mut text = format!("{} {id}\n", node.node_type().as_str());
    match &node.payload {
        Payload::Snapshot(snapshot) => {
            value = snapshot_json(&id, snapshot);
            value["type"] = json!("snapshot");
            let old_tree = match dag::mainline_parent(store, &txn, &id)? {
                Some(parent) => tree::tree_of(&Dag::new(store, &txn), &parent)?,
                None => tree::empty_tree_id(),
            };
            let changes = tree::diff(&Dag::new(store, &txn), &old_tree, &snapshot.tree)?;
            text.push_str(&format!(
                "Author: {}\nDate:   {}\nTree:   {}\n",
                snapshot.author,
                declared::format_date(snapshot.time),
                snapshot.tree
            ));
            if let Some(rewrite) = rewrite_of(repo, &txn, &node)? {
                text.push_str(&format!(
                    "Rewrite: {} from {} to {}\n",
                    rewrite.kind.as_str(),
                    rewrite.from,
                    rewrite.to
                ));
            }
            text.push('\n');
            for line in snapshot.message.lines() {
                text.push_str(&format!("    {line}\n"));
            }
            text.push('\n');
            for change in &changes {
                text.push_str(&format!(
                    "{} {}\n",
                    change_letter(change.kind),
                    shown_path(&lossy(&change.path), change.is_dir())
                ));
            }
            value["changes"] = changes
                .iter()
                .map(|c| {
                    json!({
                        "path": lossy(&c.path), "change": change_letter(c.kind),
                        "kind": c.entry().map(|e| e.kind.as_str()),
                    })
                })
                .collect();
        }
        Payload::Tree(t) => {
            for entry in &t.entries {
                text.push_str(&format!(
                    "{:06o} {} {}\t{}\n",
                    entry.kind.mode(),
                    entry.kind.as_str(),
                    entry.id,
                    lossy(&entry.name)
                ));
            }
            value["entries"] = t
                .entries
                .iter()
                .map(|e| json!({ "name": lossy(&e.name), "kind": e.kind.as_str(), "id": e.id.to_hex() }))
                .collect();
        }
        Payload::Blob(blob) => {
            let chunks = match blob {
                Blob::Inline(_) => 0,
                Blob::Chunked { chunks, .. } => chunks.len(),
            };
            text.push_str(&format!("size {} bytes, {chunks} chunks\n", blob.size()));
            value["size"] = json!(blob.size());
            value["chunks"] = json!(chunks);
        }
        Payload::Chunk(data) => {
            text.push_str(&format!("size {} bytes\n", data.len()));
            value["size"] = json!(data.len());
        }
        Payload::Rewrite(r) => {
            text.push_str(&format!(
                "kind {}\nfrom {}\nto   {}\n",
                r.kind.as_str(),
                r.from,
                r.to
            ));
            value["kind"] = json!(r.kind.as_str());
            value["from"] = json!(r.from.to_hex());
            value["to"] = json!(r.to.to_hex());
        }
        Payload::Root => text.push_str("the genesis node\n"),
        Payload::Provenance(p) => {
            text.push_str(&format!("agent {}\naction {}\n", p.agent, p.action));
            value["agent"] = json!(p.agent);
            value["action"] = json!(p.action);
        }
        Payload::FederationEdge(e) => {
            text.push_str(&format!("local {}\nremote {}\n", e.local, e.remote));
            value["local"] = json!(e.local.to_hex());
            value["remote"] = json!(e.remote.to_hex());
        }
    }
    out.emit(value, || text.trim_end().to_owned())
}

fn ls_tree(
    out: &Output,
    repo: &Repository,
    rev: &str,
    path: Option<String>,
    recursive: bool,
) -> Result<ExitCode> {
    let id = repo.resolve(rev)?;
    let store = repo.store();
    let txn = store.read()?;
    let root = tree::tree_of(&Dag::new(store, &txn), &id)?;
    let path = path.unwrap_or_default();
    let start = tree::lookup(&Dag::new(store, &txn), &root, path.as_bytes())?.ok_or_else(|| {
        jit_kernel::Error::PathNotFound {
            path: path.clone(),
            rev: rev.to_owned(),
        }
    })?;
    if start.kind != EntryKind::Directory {
        bail!("{path} in {rev} is not a directory");
    }
    let prefix = path.trim_matches('/').as_bytes().to_vec();
    let mut rows = Vec::new();
    let mut text = String::new();
    tree::walk(
        &Dag::new(store, &txn),
        &start.id,
        &prefix,
        recursive,
        &mut |p, entry| {
            if recursive && entry.kind == EntryKind::Directory {
                return Ok(());
            }
            text.push_str(&format!(
                "{:06o} {} {}\t{}\n",
                entry.kind.mode(),
                entry.kind.as_str(),
                entry.id,
                lossy(p)
            ));
            rows.push(json!({ "path": lossy(p), "kind": entry.kind.as_str(), "mode": format!("{:06o}", entry.kind.mode()), "id": entry.id.to_hex() }));
            Ok(())
        },
    )?;
    out.emit(Value::Array(rows), || text.trim_end().to_owned())
}

fn cat(out: &Output, repo: &Repository, object: &str) -> Result<ExitCode> {
    let store = repo.store();
    let txn = store.read()?;
    let blob =
        match object.split_once(':') {
            Some((rev, path)) => {
                let rev = if rev.is_empty() { "HEAD" } else { rev };
                let root = tree::tree_of(&Dag::new(store, &txn), &repo.resolve(rev)?)?;
                let entry = tree::lookup(&Dag::new(store, &txn), &root, path.as_bytes())?
                    .ok_or_else(|| jit_kernel::Error::PathNotFound {
                        path: path.to_owned(),
                        rev: rev.to_owned(),
                    })?;
                if entry.kind == EntryKind::Directory {
                    bail!("{path} in {rev} is a directory (use jit ls-tree)");
                }
                entry.id
            }
            None => repo.resolve(object)?,
        };
    if !out.json {
        // Streamed: a large file is never held whole in memory.
        let mut stdout = std::io::stdout().lock();
        content::write_blob(&Dag::new(store, &txn), &blob, &mut stdout)?;
        stdout.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let data = content::read_blob(&Dag::new(store, &txn), &blob)?;
    let text = std::str::from_utf8(&data).ok();
    out.emit(
        json!({ "id": blob.to_hex(), "size": data.len(), "text": text,
                "hex": if text.is_none() { Some(hex_string(&data)) } else { None } }),
        String::new,
    )
}

fn hex_string(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lists the refs under `prefix` (names shown without it), marking `current`.
fn list_refs(
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

fn branch(
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

fn tag(
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
    let args = jit_kernel::rpc::service::RefArgs {
        name: name.full().to_owned(),
        target: rev,
        expected: None,
        force,
    };
    if delete {
        let result: std::collections::BTreeMap<String, NodeId> =
            kernel.invoke("ref.delete", &args)?;
        let was = result
            .get("was")
            .copied()
            .context("the kernel did not say what the ref pointed at")?;
        return out.emit(json!({ "deleted": short, "was": was.to_hex() }), || {
            format!("Deleted {} {short} (was {})", kind_word(name), was.short())
        });
    }
    let op = match name.kind() {
        jit_kernel::refs::RefKind::Branch => "ref.create_branch",
        jit_kernel::refs::RefKind::Tag => "ref.create_tag",
        jit_kernel::refs::RefKind::Remote => {
            bail!("{name} is kept by sync; it cannot be created by hand")
        }
    };
    // Creation takes the short name; lookups and deletion the full one.
    let create = jit_kernel::rpc::service::RefArgs {
        name: short.clone(),
        ..args.clone()
    };
    let _: Value = kernel
        .invoke::<_, std::collections::BTreeMap<String, String>>(op, &create)
        .map(|m| json!(m))?;
    let target: Option<NodeId> = kernel.invoke("ref.get", &args)?;
    let target = target.context("the new ref is missing")?;
    out.emit(
        json!({ "created": short, "target": target.to_hex() }),
        || format!("Created {} {short} at {}", kind_word(name), target.short()),
    )
}

fn kind_word(name: &RefName) -> &'static str {
    match name.kind() {
        jit_kernel::refs::RefKind::Branch => "branch",
        jit_kernel::refs::RefKind::Tag => "tag",
        jit_kernel::refs::RefKind::Remote => "remote ref",
    }
}

fn resolve_snapshot(repo: &Repository, rev: &str) -> Result<NodeId> {
    let head = repo.head()?;
    let txn = repo.store().read()?;
    Ok(jit_kernel::revparse::resolve_snapshot(
        repo.store(),
        &txn,
        &head,
        rev,
    )?)
}

fn run_fsck(out: &Output, repo: &Repository) -> Result<ExitCode> {
    let report = fsck::fsck_universe(repo)?;
    out.emit(serde_json::to_value(&report)?, || {
        let mut text: Vec<String> = report
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.location, p.message))
            .collect();
        text.push(format!(
            "checked {} log records, {} nodes, {} refs: {}",
            report.log_records,
            report.nodes,
            report.refs,
            if report.is_clean() {
                "clean".to_owned()
            } else {
                format!("{} problems", report.problems.len())
            }
        ));
        text.join("\n")
    })?;
    if report.is_clean() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("jit: error: fsck found {} problems", report.problems.len());
        Ok(ExitCode::FAILURE)
    }
}

fn info(out: &Output, repo: &Repository) -> Result<ExitCode> {
    let universe = repo.universe()?;
    let head = repo.head()?;
    let tip = repo.resolve("HEAD")?;
    let txn = repo.store().read()?;
    let nodes = repo.store().node_count(&txn)?;
    let i = &universe;
    out.emit(
        json!({
            "universe": i.id.to_string(), "name": i.name, "owner": i.owner,
            "public_key": i.public_key, "head": head.short(), "tip": tip.to_hex(),
            "workdir": repo.workdir().display().to_string(), "nodes": nodes,
        }),
        || {
            format!(
                "universe   {} ({})\nowner      {}\npublic key {}\nhead       {} at {}\nworkdir    {}\nnodes      {nodes}",
                i.id,
                i.name,
                i.owner,
                i.public_key,
                head.short(),
                tip.short(),
                repo.workdir().display()
            )
        },
    )
}
