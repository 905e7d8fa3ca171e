//! `jit clone` and `jit sync …`: replicas of one universe, pulled over the message plane.
//! The pull runs in this process against the local store (LMDB serves several processes; a
//! running daemon's mount and event publisher pick the change up from the log).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use jit_kernel::refs::{RefName, REMOTES};
use jit_kernel::repo::InitOptions;
use jit_kernel::sync::{self, PullReport, RefAction, SyncProgress};
use jit_kernel::Repository;
use jit_plane::sync::ZenohRemote;
use serde_json::json;

use crate::args::SyncCommand;
use crate::output::Output;
use crate::place::Place;
use crate::verbs::refs::change_ref;

/// Name a clone records its source under.
const ORIGIN: &str = "origin";

/// Marker in `.jit/` of a clone not finished yet: rerunning the clone resumes it.
const CLONING: &str = "cloning";

/// Turns what the user typed into a Zenoh endpoint: a universe directory means its daemon's
/// Unix socket; anything else is taken as an endpoint (`tcp/HOST:PORT`, `unixsock-stream/…`).
pub(crate) fn endpoint_of(base: &Path, text: &str) -> Result<String> {
    let dir = base.join(text);
    if dir.join(".jit").is_dir() {
        let socket = dir
            .join(".jit/zenoh.sock")
            .canonicalize()
            .with_context(|| {
                format!(
                    "{text} is a universe, but its daemon is not running (start `jit up` there)"
                )
            })?;
        return Ok(format!("unixsock-stream/{}", socket.display()));
    }
    if !text.contains('/') {
        bail!("{text:?} is neither a configured remote, a universe directory nor an endpoint like tcp/HOST:PORT");
    }
    Ok(text.to_owned())
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A progress bar over received bytes, and the test hook that stalls a pull mid-transfer.
pub(crate) struct Bar {
    pub(crate) bar: ProgressBar,
    stall: Option<std::ffi::OsString>,
    /// A clone: the peer's node count is the total to show.
    cloning: bool,
}

impl Bar {
    pub(crate) fn new(visible: bool, cloning: bool) -> Bar {
        let bar = crate::progress::spinner(visible, "{spinner} {msg} {bytes} ({bytes_per_sec})");
        bar.set_message("negotiating");
        Bar {
            bar,
            stall: std::env::var_os("JIT_SYNC_TEST_STALL"),
            cloning,
        }
    }
}

impl SyncProgress for Bar {
    fn peer_holds(&self, nodes: u64) {
        if !self.cloning {
            return;
        }
        // A clone: count nodes against the peer's total.
        crate::progress::restyle(
            &self.bar,
            "{spinner} {msg} [{bar:30}] {pos}/{len} nodes ({per_sec}, {eta})",
        );
        self.bar.set_length(nodes);
    }

    fn negotiated(&self, history: u64) {
        self.bar
            .set_message(format!("receiving ({history} history nodes)"));
    }

    fn received(&self, nodes: u64, bytes: u64) {
        if self.bar.length().is_some() {
            self.bar.inc(nodes);
        } else {
            self.bar.inc(bytes);
        }
        // Test hook: with JIT_SYNC_TEST_STALL=FILE the pull stops after its first staged
        // batch, creates FILE and waits to be killed — an interrupted transfer.
        if let Some(file) = &self.stall {
            let _ = std::fs::write(file, b"");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }

    fn appending(&self, nodes: u64) {
        self.bar.set_message(format!("appending {nodes} nodes"));
    }
}

/// A connection to a replica; the runtime runs its session and must outlive it.
struct Connection {
    runtime: tokio::runtime::Runtime,
    remote: ZenohRemote,
}

impl Connection {
    /// Connects to `endpoint`, recording the peer as `name`.
    fn open(name: &str, endpoint: &str) -> Result<Connection> {
        let runtime = runtime()?;
        let remote = ZenohRemote::connect(name, endpoint, "", runtime.handle().clone())?;
        Ok(Connection { runtime, remote })
    }

    /// Pulls from the peer into `repo` (`cloning`: a new replica, whose bar counts toward the
    /// peer's node count), then closes the session.
    fn pull_into(mut self, repo: &Repository, quiet: bool, cloning: bool) -> Result<PullReport> {
        let bar = Bar::new(!quiet, cloning);
        let result = sync::pull(repo, &mut self.remote, &bar);
        bar.bar.finish_and_clear();
        self.remote.close();
        drop(self.runtime);
        Ok(result?)
    }
}

/// Prints what a pull did. In a clone every branch is new to the user, even the one the replica
/// was made with (at its root): `cloning` shows those as created.
fn print_report(report: &PullReport, json: bool, cloning: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Pulled from {}: {} fetched ({}), {} resumed, {} new",
        report.remote,
        crate::output::count(report.fetched_nodes, "node"),
        crate::output::count(report.fetched_bytes, "byte"),
        report.resumed_nodes,
        report.new_nodes
    );
    let short = |id: &Option<jit_kernel::NodeId>| id.map(|i| i.short()).unwrap_or("-".into());
    for change in &report.refs {
        let what = match change.action {
            RefAction::UpToDate => continue,
            RefAction::Created => format!("created at {}", short(&change.to)),
            RefAction::FastForwarded if cloning => format!("created at {}", short(&change.to)),
            RefAction::FastForwarded => {
                format!(
                    "fast-forwarded {}..{}",
                    short(&change.from),
                    short(&change.to)
                )
            }
            RefAction::LocalAhead => format!("ahead of the peer ({})", short(&change.from)),
            RefAction::Merged => format!(
                "merged with the peer's {} into {}",
                change.remote.short(),
                short(&change.to)
            ),
            RefAction::Diverged => {
                let why = if change.conflicts.is_empty() {
                    "no common history".to_owned()
                } else {
                    format!("conflicts in {}", change.conflicts.join(", "))
                };
                format!(
                    "diverged ({why}); stays at {}, the peer's {} is kept as {}",
                    short(&change.from),
                    change.remote.short(),
                    change.kept_as.as_deref().unwrap_or("-")
                )
            }
            RefAction::TagConflict => format!(
                "the peer's tag names {}; ours stays at {}, theirs is kept as {}",
                change.remote.short(),
                short(&change.from),
                change.kept_as.as_deref().unwrap_or("-")
            ),
        };
        println!("  {:<24} {what}", change.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// `jit clone REMOTE DIR`.
pub fn clone(base: &Path, remote: &str, dir: &Path, json: bool, quiet: bool) -> Result<ExitCode> {
    let endpoint = endpoint_of(base, remote)?;
    let dir = base.join(dir);
    let mut connection = Connection::open(ORIGIN, &endpoint)?;
    let frontier = sync::clone_info(&mut connection.remote)?;
    let info = frontier.universe.clone();
    let (repo, resumed) = if dir.join(".jit").exists() {
        (resumable(&dir, &info)?, true)
    } else {
        let repo = Repository::init(
            &dir,
            &InitOptions {
                branch: frontier.head.clone().unwrap_or_else(|| "main".into()),
                name: info.name.clone(),
                owner: info.owner.clone(),
                created: info.created,
                replica_of: Some(info),
            },
        )?;
        jit_kernel::repo::write_durably(&repo.jit_dir().join(CLONING), endpoint.as_bytes())?;
        (repo, false)
    };
    repo.add_remote(ORIGIN, &endpoint)?;
    let report = connection.pull_into(&repo, quiet, true).with_context(|| {
        format!(
            "the replica in {} is made but not filled; rerunning the clone (or `jit sync pull` there) resumes",
            dir.display()
        )
    })?;
    let marker = repo.jit_dir().join(CLONING);
    // The new replica's tables were filled in hash order: compaction writes them densely into
    // a new file (nothing else has the new store open yet; if something had, its free pages
    // would be reused by later writes).
    let started = std::time::Instant::now();
    repo.into_store().compact()?;
    tracing::debug!(elapsed = ?started.elapsed(), "compacted");
    std::fs::remove_file(&marker).with_context(|| format!("cannot remove {}", marker.display()))?;
    if !json {
        println!(
            "{} universe {} into {}",
            if resumed {
                "Resumed the clone of"
            } else {
                "Cloned"
            },
            frontier.universe.id,
            dir.display()
        );
    }
    print_report(&report, json, true)
}

/// The replica an earlier clone of `source` into `dir` left unfinished (it was killed), to
/// be filled now; a finished clone or another universe is refused.
fn resumable(dir: &Path, source: &jit_kernel::identity::UniverseInfo) -> Result<Repository> {
    let repo = Repository::open(dir)?;
    if !repo.jit_dir().join(CLONING).exists() {
        return Err(jit_kernel::Error::AlreadyInitialized(dir.to_path_buf()))
            .context("a clone there is complete (`jit sync pull` there brings it up to date)");
    }
    let universe = repo.universe()?;
    if universe.id != source.id {
        bail!(
            "{} holds an unfinished clone of another universe ({}), not of {}",
            dir.display(),
            universe.id,
            source.id
        );
    }
    Ok(repo)
}

/// `jit sync …`.
pub fn run(place: &Place, command: SyncCommand, json: bool) -> Result<ExitCode> {
    // Forgetting goes through the kernel (the daemon when one runs), so it must not hold the
    // store open here.
    let base = place.cwd.as_path();
    let repo = || Repository::discover(&place.universe);
    match command {
        SyncCommand::Pull {
            remote,
            name,
            quiet,
        } => {
            let repo = repo()?;
            let remote = remote.unwrap_or_else(|| ORIGIN.to_owned());
            let (name, endpoint) = match repo.config().remotes.get(&remote) {
                Some(configured) => (remote.clone(), configured.endpoint.clone()),
                None => (name, endpoint_of(base, &remote)?),
            };
            let report =
                Connection::open(&name, &endpoint)?.pull_into(&repo, quiet || json, false)?;
            print_report(&report, json, false)
        }
        SyncCommand::Add { name, endpoint } => {
            let endpoint = endpoint_of(base, &endpoint)?;
            repo()?.add_remote(&name, &endpoint)?;
            if json {
                println!("{}", json!({ "remote": name, "endpoint": endpoint }));
            } else {
                println!("Added remote {name} at {endpoint}");
            }
            Ok(ExitCode::SUCCESS)
        }
        SyncCommand::Kept { remote } => {
            // Names as `jit sync forget` takes them: PEER/heads/B, PEER/tags/T.
            let repo = repo()?;
            let txn = repo.store().read()?;
            let peer = remote.map(|r| format!("{REMOTES}{r}/")).unwrap_or_default();
            let kept: Vec<(String, String)> = repo
                .store()
                .refs_with_prefix(&txn, REMOTES)?
                .into_iter()
                .filter(|(name, _)| name.starts_with(&peer))
                .map(|(name, target)| (name[REMOTES.len()..].to_owned(), target.to_hex()))
                .collect();
            if json {
                let rows: Vec<_> = kept
                    .iter()
                    .map(|(name, target)| json!({ "name": name, "target": target }))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for (name, target) in &kept {
                    println!("{name} {}", &target[..12]);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SyncCommand::Forget { name } => {
            let full = if name.starts_with(REMOTES) {
                name
            } else {
                format!("{REMOTES}{name}")
            };
            let kept = RefName::parse_full(&full)?;
            change_ref(&Output { json }, &place.universe, &kept, None, true, false)
        }
        SyncCommand::List => {
            let repo = repo()?;
            if json {
                println!("{}", serde_json::to_string(&repo.config().remotes)?);
            } else {
                for (name, remote) in &repo.config().remotes {
                    println!("{name}\t{}", remote.endpoint);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
