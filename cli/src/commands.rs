//! The verbs: each resolves its arguments, calls one kernel operation, and prints text or JSON.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use jit_kernel::command::Operation;
use jit_kernel::history::{self, EmptyCommit};
use jit_kernel::import;
use jit_kernel::refs::RefName;
use jit_kernel::Repository;
use serde_json::json;

use crate::args::{Cli, Command};
use crate::declared;
use crate::output::{count, first_line, Output};
use crate::place::Place;
use crate::progress::Bar;
use crate::verbs::content::{cat, ls_tree};
use crate::verbs::history::{log, show};
use crate::verbs::refs::{branch, tag};
use crate::verbs::universe::{exported_branch, info, init, resolve_snapshot, run_fsck};
use crate::verbs::universe::{federation_policy, publish, whoami};
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
                        "[{} {}] {}\n {}, {}, {}, {}; {}",
                        branch.short(),
                        snapshot.short(),
                        first_line(&info.message),
                        count(stats.files, "file"),
                        count(stats.dirs, "directory"),
                        count(stats.symlinks, "symlink"),
                        count(stats.bytes, "byte"),
                        count(stats.new_nodes, "new node")
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
                || format!("imported {} ({}) onto {} at {}", count(report.commits, "commit"), count(report.merges, "merge"), target.short(), report.tip.short()),
            )
        }
        Command::ExportGit {
            path,
            rev,
            branch,
            force,
            quiet,
        } => {
            let repo = Repository::discover_for_reading(&universe)?;
            let snapshot = resolve_snapshot(&repo, rev.as_deref().unwrap_or("HEAD"))?;
            let git_branch = match (branch, rev.as_deref()) {
                (Some(name), _) => name,
                (None, None | Some("HEAD")) => repo.head()?.short().to_owned(),
                (None, Some(rev)) => exported_branch(&repo, rev)?,
            };
            let bar = crate::progress::commits(!quiet && !json, "exporting");
            let report = jit_git::export::export_git(
                repo.store(),
                snapshot,
                &base.join(&path),
                &git_branch,
                force,
                &|done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                },
            )?;
            bar.finish_and_clear();
            out.emit(
                json!({ "commit": report.commit.to_string(), "reference": report.reference, "commits": report.commits }),
                || format!("exported {}; {} is {}", count(report.commits, "commit"), report.reference, report.commit),
            )
        }
        Command::Log {
            rev,
            max_count,
            all,
            graph,
            oneline,
            first_parent,
            changes,
            view,
        } => log(
            &out,
            &Repository::discover_for_reading(&universe)?,
            crate::verbs::history::LogRequest {
                rev,
                max_count,
                all,
                graph,
                oneline,
                first_parent,
                changes,
                view,
            },
        ),
        Command::Show { rev, changes, view } => show(
            &out,
            &Repository::discover_for_reading(&universe)?,
            rev.as_deref().unwrap_or("HEAD"),
            changes,
            view,
        ),
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
        Command::Config { key, value, unset } => {
            let repo = Repository::discover_for_reading(&universe)?;
            crate::verbs::config::config(
                &out,
                repo.jit_dir(),
                key.as_deref(),
                value.as_deref(),
                unset,
            )
        }
        Command::Fsck => run_fsck(&out, &Repository::discover_for_reading(&universe)?),
        Command::Gc { batch } => crate::verbs::gc::run(&out, &universe, batch),
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
            zenoh_config,
            allow_other,
            allow_group,
            rpc_idle_timeout,
            rpc_read_timeout,
            rpc_max_connections,
            rpc_budget,
        } => crate::up::up(
            &universe,
            crate::up::PlaneSettings {
                enabled: !no_plane,
                listen,
                connect,
                insecure_listen,
                zenoh_config: zenoh_config.map(|file| base.join(file)),
            },
            crate::up::MountSettings {
                enabled: !no_mount,
                mountpoint: mount.map(|dir| base.join(dir)),
                threads: mount_threads,
                allow_other,
            },
            crate::up::RpcSettings {
                allow_group,
                idle_timeout: rpc_idle_timeout,
                read_timeout: rpc_read_timeout,
                max_connections: rpc_max_connections,
                budget_mib: rpc_budget,
            },
            json,
        ),
        Command::Publish { rev, name } => publish(
            &out,
            &Repository::discover(&universe)?,
            &rev,
            name.as_deref(),
        ),
        Command::Federation { command } => match command {
            crate::args::FederationCommand::Whoami => {
                whoami(&out, &Repository::discover_for_reading(&universe)?)
            }
            // Offline and outside any universe: the file is all it needs.
            crate::args::FederationCommand::Verify { bundle } => {
                crate::federation::verify_bundle(&out, &base, &bundle)
            }
            command @ (crate::args::FederationCommand::Trust { .. }
            | crate::args::FederationCommand::Deny { .. }) => {
                federation_policy(&out, &Repository::discover(&universe)?, command)
            }
            other => crate::federation::run(&out, &base, &Repository::discover(&universe)?, other),
        },
        Command::Agent { command } => crate::agent::run(&place, command, json),
        Command::Clone { remote, dir, quiet } => {
            crate::sync::clone(&base, &remote, &dir, json, quiet || json)
        }
        Command::Sync { command } => crate::sync::run(&place, command, json),
        Command::Status { ignored, verbose } => work::status_verb(&place, json, ignored, verbose),
        Command::Diff {
            revs,
            paths,
            changes,
            view,
        } => crate::verbs::history::diff(&out, &place, &revs, &paths, changes, view),
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
        Command::Op {
            command: crate::args::OpCommand::Log { max_count },
        } => crate::verbs::oplog::op_log(
            &out,
            &Repository::discover_for_reading(&universe)?,
            max_count,
        ),
        Command::Undo { seq, declared } => {
            let configured = Repository::discover_for_reading(&universe)?
                .config()
                .author();
            let info = declared::declared(
                declared.message.as_deref().unwrap_or_default(),
                declared.author.as_deref(),
                declared.date.as_deref(),
                configured,
            )?;
            crate::verbs::oplog::undo(
                &out,
                &universe,
                seq,
                jit_kernel::history::Declared::from(&info),
            )
        }
        Command::Restore { paths, source } => {
            crate::verbs::restore::restore(&out, &place, &paths, source.as_deref())
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
                Operation::Reset,
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
                Operation::Rebase,
                &onto,
                &declared,
                configured,
                json,
            )
        }
        Command::Info => info(&out, &Repository::discover_for_reading(&universe)?),
    }
}
