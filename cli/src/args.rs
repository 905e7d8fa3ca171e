//! The command-line grammar of `jit` (clap derive). Every verb has `--help`; `--json` and `-C`
//! are global.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// JIT: a version-control kernel for people and AI agents working on the same tree.
#[derive(Debug, Parser)]
#[command(name = "jit", version, about, propagate_version = true)]
pub struct Cli {
    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// Declared commit inputs shared by every verb that writes a snapshot.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The commit message (default: write it in $GIT_EDITOR, $VISUAL or $EDITOR, as git does).
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author as "Name <email>" (default: $JIT_AUTHOR, then [user] in .jit/config.toml, then
    /// git's user.name and user.email, then $USER).
    #[arg(long, env = "JIT_AUTHOR")]
    pub author: Option<String>,
    /// Declared time: RFC 3339 ("2024-05-01T12:00:00+02:00") or "@SECONDS [+HHMM]" (default: now).
    #[arg(long, env = "JIT_DATE")]
    pub date: Option<String>,
}

/// How `log`, `show` and `diff` print changes.
#[derive(Debug, Args, Clone, Copy)]
pub struct ChangesArgs {
    /// A unified diff of each snapshot's changes.
    #[arg(short = 'p', long = "patch")]
    pub patch: bool,
    /// A diffstat: lines added and removed per file.
    #[arg(long)]
    pub stat: bool,
    /// Only the changed paths.
    #[arg(long)]
    pub name_only: bool,
    /// The changed paths with A, M or D.
    #[arg(long)]
    pub name_status: bool,
}

/// How text reaches a person.
#[derive(Debug, Args, Clone, Copy)]
pub struct ViewArgs {
    /// Color: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(long, value_enum, default_value_t = crate::pager::ColorChoice::Auto)]
    pub color: crate::pager::ColorChoice,
    /// Print straight to stdout, not through $JIT_PAGER / $PAGER / less.
    #[arg(long)]
    pub no_pager: bool,
}

/// Declared inputs of a history move (reset, rebase): the message has a default.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// The message of the snapshot that records the move.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author as "Name <email>".
    #[arg(long, env = "JIT_AUTHOR")]
    pub author: Option<String>,
    /// Declared time (RFC 3339 or "@SECONDS [+HHMM]").
    #[arg(long, env = "JIT_DATE")]
    pub date: Option<String>,
}

/// Shadow Working Set verbs. An SWS is named by its id, a unique prefix of it, or its name;
/// inside a mount's `sws/NAME/` the verbs that take one default to that SWS.
#[derive(Debug, Subcommand)]
pub enum SwsCommand {
    /// Create an SWS.
    New {
        /// A name for it.
        #[arg(long)]
        name: Option<String>,
        /// Anchor it on this revision (default: the branch tip).
        #[arg(long)]
        from: Option<String>,
        /// The branch it commits to (default: the checked-out branch).
        #[arg(long)]
        branch: Option<String>,
        /// Owner (default: $USER).
        #[arg(long)]
        owner: Option<String>,
    },
    /// List live SWS.
    Ls,
    /// Show an SWS: base, branch tip, patches, changed paths, conflicts.
    Status {
        /// The SWS (default: the one whose mount view, sws/NAME/, this runs in).
        sws: Option<String>,
    },
    /// Show an SWS's changes as a unified diff.
    Diff {
        /// The SWS (default: the one whose mount view, sws/NAME/, this runs in).
        sws: Option<String>,
    },
    /// Apply a patch (JSON, see README) from a file, or `-` for stdin.
    Apply {
        /// The SWS.
        sws: String,
        /// The patch file.
        patch: PathBuf,
    },
    /// Show an SWS's micro-history: one entry per applied patch.
    Log {
        /// The SWS (default: the one whose mount view, sws/NAME/, this runs in).
        sws: Option<String>,
    },
    /// Collapse an SWS into a snapshot on its branch.
    Commit {
        /// The SWS (default: the one whose mount view, sws/NAME/, this runs in).
        sws: Option<String>,
        #[command(flatten)]
        commit: CommitArgs,
    },
    /// Check whether an SWS would merge cleanly now.
    Validate {
        /// The SWS (default: the one whose mount view, sws/NAME/, this runs in).
        sws: Option<String>,
    },
    /// Throw an SWS away (the DAG is untouched).
    Discard {
        /// The SWS.
        sws: String,
    },
    /// Let a registered agent write and commit an SWS over the plane, as its owner may.
    Delegate {
        /// The SWS.
        sws: String,
        /// The agent's name.
        agent: String,
    },
}

/// Agent verbs. The acting agent is `--as NAME`, else $JIT_AGENT, else the only key in
/// .jit/agents/.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create an ed25519 identity (secret key in .jit/agents/NAME.key) and register it.
    New {
        /// The agent's name.
        name: String,
        /// Permissions (default: sws.create and commit:*); repeat for several.
        #[arg(long = "allow")]
        allow: Vec<String>,
    },
    /// Register a key made anywhere (its ed25519 public key, 64 hex characters) as agent NAME.
    Add {
        /// The agent's name.
        name: String,
        /// Its public key, hex.
        public_key: String,
        /// Permissions (default: sws.create and commit:*); repeat for several.
        #[arg(long = "allow")]
        allow: Vec<String>,
    },
    /// Revoke an agent: its messages are refused (unknown_agent) from now on.
    Revoke {
        /// The agent's name.
        name: String,
    },
    /// The registered agents, their keys and permissions.
    Ls,
    /// Enrolment requests waiting for approval: keys made elsewhere that asked over the plane
    /// to join (jit/agent/enrol).
    Pending,
    /// Approve NAME's enrolment request: its key is registered with the permissions it asked
    /// for, or those given with --allow.
    Approve {
        /// The name the request asked for.
        name: String,
        /// Permissions instead of those asked for; repeat for several.
        #[arg(long = "allow")]
        allow: Vec<String>,
    },
    /// Deny NAME's enrolment request: it is dropped and the name is free again.
    Deny {
        /// The name the request asked for.
        name: String,
    },
    /// Create an SWS owned by the agent (through the plane); prints its id.
    Create {
        /// The branch it commits to (default: the checked-out branch).
        #[arg(long)]
        branch: Option<String>,
        /// The acting agent.
        #[arg(long = "as")]
        agent: Option<String>,
    },
    /// Push a patch (JSON, as for `jit sws apply`) to an SWS; retried until acknowledged.
    Push {
        /// The SWS id.
        sws: String,
        /// The patch file, or - for stdin.
        patch: PathBuf,
        /// The acting agent.
        #[arg(long = "as")]
        agent: Option<String>,
    },
    /// Commit an SWS through the plane.
    Commit {
        /// The SWS id.
        sws: String,
        #[command(flatten)]
        commit: CommitArgs,
        /// The acting agent.
        #[arg(long = "as")]
        agent: Option<String>,
    },
    /// Follow the kernel's events (jit/kernel/events, each log record once) as JSON lines;
    /// with --since or --last, first those already in the log, then live ones, none missed
    /// and none twice.
    Events {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Start at this log position (1 is the first record; a record's `seq` + 1 follows on
        /// from it).
        #[arg(long, conflicts_with = "last")]
        since: Option<u64>,
        /// Start with the last N records of the log.
        #[arg(long)]
        last: Option<u64>,
    },
}

/// `jit op …`.
#[derive(Debug, Subcommand)]
pub enum OpCommand {
    /// The operations that moved refs, newest first, with their log positions.
    Log {
        /// Show at most N.
        #[arg(short = 'n', long = "max-count", default_value_t = 20)]
        max_count: usize,
    },
}

/// Federation verbs: this universe as other universes see it.
#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Show this universe's signed identity document: id, version, key, name, owner,
    /// description, creation time, and its fingerprint (BLAKE3 of the signed document).
    Whoami,
    /// Set how far another universe is trusted (and lift a deny).
    Trust {
        /// The universe's id (a UUID), or the name of one met by a hello.
        universe: String,
        /// `trusted`, `semi-trusted` or `untrusted`.
        level: String,
    },
    /// Refuse another universe from now on, before anything of it is looked up.
    Deny {
        /// The universe's id (a UUID), or the name of one met by a hello.
        universe: String,
    },
    /// The universes this one knows: trust level, denied, the epoch last verified, what was
    /// imported from each, and any quarantine.
    Ls,
    /// Say hello to the universe at ENDPOINT (tcp/HOST:PORT, or the directory of a universe
    /// whose daemon runs): exchange a signed hello and accept, verify its identity, remember it.
    Hello {
        /// Where the universe's daemon listens.
        endpoint: String,
    },
    /// Import the snapshot UNIVERSE published as NAME, read-only: every byte and signature is
    /// verified, the nodes are kept apart from this universe's, and a federation edge records
    /// the link. It appears in the mount under federation/UNIVERSE/LOCAL/.
    Import {
        /// The universe's id, or its name — or a bundle file (`jit federation export`), then
        /// imported with no network.
        universe: String,
        /// The name it published the snapshot under (none for a bundle).
        name: Option<String>,
        /// The name to keep the import under here (default: NAME).
        #[arg(long = "as")]
        local: Option<String>,
        /// Where to reach the universe (default: where the last hello reached it).
        #[arg(long)]
        from: Option<String>,
        /// Also commit the import into this universe's history as BRANCH:PATH — a snapshot on
        /// BRANCH whose tree holds the imported tree at PATH (vendoring). Refused for an
        /// untrusted universe unless --override-trust.
        #[arg(long, value_name = "BRANCH:PATH")]
        into: Option<String>,
        /// Let an untrusted universe's snapshot into a branch.
        #[arg(long)]
        override_trust: bool,
        /// The declared inputs of the --into commit.
        #[command(flatten)]
        declared: MoveArgs,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Re-import what was imported: from every trusted universe, or from UNIVERSE whatever
    /// its trust. Only nodes not already held cross the wire.
    Refresh {
        /// One universe's id or name.
        universe: Option<String>,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write what this universe published as NAME, with everything needed to verify it (identity,
    /// signed head and log, inclusion proof, signed manifest, the nodes), to one file.
    Export {
        /// The bundle file to write.
        #[arg(long)]
        bundle: std::path::PathBuf,
        /// The published name.
        name: String,
        /// Ask this witness (a universe met by a hello) to cosign the head, and carry its
        /// cosignature; repeatable.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
    },
    /// Check a bundle offline: signatures, the log, the inclusion proof, the manifest, and every
    /// node in order.
    Verify {
        /// The bundle file.
        bundle: std::path::PathBuf,
    },
    /// Move pins: re-import what was imported from UNIVERSE (or LOCAL of it alone) to the
    /// universe's newest consistent head, and show what changed, path by path.
    Update {
        /// The universe's id or name.
        universe: String,
        /// One import's local name.
        local: Option<String>,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Require witnesses: heads of universes at LEVEL are accepted only with K cosignatures
    /// from the WITNESSES named (universes met by a hello), each asked at import. K 0 lifts it.
    Witnesses {
        /// `trusted`, `semi-trusted` or `untrusted`.
        level: String,
        /// How many cosignatures a head needs.
        k: u32,
        /// The witnesses (ids or names).
        witnesses: Vec<String>,
    },
    /// Require agreement: the import kept as LOCAL moves only when K of the SOURCES (the
    /// publisher and its mirrors, met by a hello) resolve its published name to the same
    /// snapshot. K 0 lifts it.
    Agree {
        /// The import's local name.
        local: String,
        /// How many sources must agree.
        k: u32,
        /// The sources (ids or names).
        sources: Vec<String>,
    },
    /// Lift a universe's quarantine (after reading why in `jit federation ls`).
    Release {
        /// The universe's id or name.
        universe: String,
        /// Also forget its head and log held, and trust its current history afresh.
        #[arg(long)]
        forget: bool,
    },
}

/// Sync verbs: bring a replica's branches and tags here.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Fetch what REMOTE has that this replica lacks, verify it and append it in one step;
    /// branches fast-forward or merge, tags never move, conflicts are kept under
    /// remotes/REMOTE/. An interrupted pull resumes where it stopped.
    Pull {
        /// A configured remote's name, a Zenoh endpoint (tcp/HOST:PORT), or the directory of a
        /// universe whose daemon runs (default: origin).
        remote: Option<String>,
        /// The name to record an endpoint's refs under (default: peer).
        #[arg(long, default_value = "peer")]
        name: String,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Record a replica under NAME (in .jit/config.toml).
    Add {
        /// Its name (one ref-name component, e.g. origin).
        name: String,
        /// Its Zenoh endpoint (tcp/HOST:PORT) or a universe directory whose daemon runs.
        endpoint: String,
    },
    /// List the recorded replicas.
    List,
    /// List the refs sync kept instead of moving ours (a divergent branch that did not merge
    /// cleanly, a tag naming another target): all of them, or REMOTE's.
    Kept {
        /// Only the refs kept from this remote.
        remote: Option<String>,
    },
    /// Delete a kept ref once its work is merged or no longer wanted, e.g. origin/heads/main
    /// (or remotes/origin/heads/main).
    Forget {
        /// The kept ref: REMOTE/heads/BRANCH or REMOTE/tags/TAG.
        name: String,
    },
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground: the RPC on .jit/jit.sock, the message plane on
    /// .jit/zenoh.sock and the FUSE mount (default .jit/mnt); Ctrl-C or SIGTERM stops it.
    Up {
        /// Mount the projection here (head/, sws/, refs/, nodes/) instead of .jit/mnt.
        #[arg(long, value_name = "DIR", conflicts_with = "no_mount")]
        mount: Option<PathBuf>,
        /// Do not mount the FUSE projection.
        #[arg(long)]
        no_mount: bool,
        /// Threads serving FUSE requests.
        #[arg(long, default_value_t = 4, value_name = "N")]
        mount_threads: usize,
        /// Do not start the message plane.
        #[arg(long)]
        no_plane: bool,
        /// Also listen on this Zenoh endpoint, e.g. tcp/127.0.0.1:7447 (never all interfaces by default).
        #[arg(long)]
        listen: Vec<String>,
        /// Connect the plane to these routers or peers.
        #[arg(long)]
        connect: Vec<String>,
        /// Allow --listen on a non-loopback address without mutual TLS (anyone who can reach it
        /// can read and write the universe).
        #[arg(long)]
        insecure_listen: bool,
        /// Start the plane from this Zenoh configuration file (JSON5): TLS certificates with
        /// client authentication, access control (docs/deploy.md). Default: the file
        /// $JIT_ZENOH_CONFIG names, which every jit command that opens a Zenoh session reads.
        #[arg(long, value_name = "FILE")]
        zenoh_config: Option<PathBuf>,
        /// Let other users read the mount (FUSE allow_other; needs user_allow_other in
        /// /etc/fuse.conf unless run as root). Default: only this user.
        #[arg(long)]
        allow_other: bool,
        /// Also let members of this group (name or gid) use the daemon's socket; by default only
        /// the universe's owner and root may.
        #[arg(long, value_name = "GROUP")]
        allow_group: Option<String>,
        /// Close an RPC connection that starts no request for this many seconds.
        #[arg(long, default_value_t = 300.0, value_name = "SECS")]
        rpc_idle_timeout: f64,
        /// Drop an RPC connection whose request does not arrive whole within this many seconds.
        #[arg(long, default_value_t = 30.0, value_name = "SECS")]
        rpc_read_timeout: f64,
        /// RPC connections served at once; more are refused with `too_many_connections`.
        #[arg(long, default_value_t = 256, value_name = "N")]
        rpc_max_connections: usize,
        /// MiB that large RPC requests may hold at once (received bytes and decoded values).
        #[arg(long, default_value_t = 256, value_name = "MIB")]
        rpc_budget: usize,
    },
    /// Publish a snapshot for other universes: append it to the publish log and sign the next
    /// head (epoch, log size, Merkle root). Only published snapshots are ever shown to them.
    Publish {
        /// The snapshot: a ref (branch, tag) or a revision.
        rev: String,
        /// The name it is published as (default: REV).
        #[arg(long = "as", value_name = "NAME")]
        name: Option<String>,
    },
    /// Federation with other universes: identity (`whoami`), policy (`trust`, `deny`, `ls`).
    Federation {
        /// What to do.
        #[command(subcommand)]
        command: FederationCommand,
    },
    /// Agents: identities, and their patches and commits over the message plane.
    Agent {
        /// What to do.
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Make a replica of a running universe in DIR: same universe, all its branches and tags,
    /// its checked-out branch as HEAD, and the source recorded as remote "origin".
    Clone {
        /// The source: a Zenoh endpoint (tcp/HOST:PORT) or a universe directory whose daemon runs.
        remote: String,
        /// Where to create the replica (must not hold a universe yet).
        dir: PathBuf,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Sync with replicas of this universe.
    Sync {
        /// What to do.
        #[command(subcommand)]
        command: SyncCommand,
    },
    /// Show the working SWS of the checked-out branch: what `jit commit` would record (inside a
    /// checkout: its SWS; inside a mount's sws/NAME/: that SWS).
    Status {
        /// Also list what the mount keeps but never commits (ignored by .gitignore/.jitignore,
        /// and .git), as `! path`.
        #[arg(long)]
        ignored: bool,
        /// Also show the working set's internals: its id, name, owner, base and patch count.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Show changes as a unified diff: the working SWS's (no REV), from REV to the working SWS,
    /// or between two revisions; `-- PATH…` limits it to those files and directories.
    Diff {
        /// No revision: the working SWS against its base; one: REV against the working SWS;
        /// two: the first against the second.
        #[arg(num_args = 0..=2)]
        revs: Vec<String>,
        /// Only these paths (files, or directories and what they hold).
        #[arg(last = true)]
        paths: Vec<String>,
        #[command(flatten)]
        changes: ChangesArgs,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Commit the working SWS of the checked-out branch (inside a checkout: its SWS; inside a
    /// mount's sws/NAME/: that SWS).
    Commit {
        #[command(flatten)]
        commit: CommitArgs,
    },
    /// Check out a branch (moves HEAD; local, never logged). With --into DIR (or inside a
    /// checkout): write REV as plain files into DIR, incrementally; edits there go to the
    /// branch's working SWS (or, for a tag or snapshot, to an SWS of its own).
    Checkout {
        /// The branch; with --into, any revision (default: the checkout's, else HEAD's branch).
        rev: Option<String>,
        /// Materialize into this directory (outside the universe's directory).
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Watch a checkout made by `checkout --into`: every edit in DIR becomes a patch for its
    /// SWS. Runs in the foreground until killed.
    Watch {
        /// The checkout (default: the current directory).
        dir: Option<PathBuf>,
    },
    /// The operation log: every operation that moved a branch or tag, newest first, read back
    /// from the kernel's log (jj's model); `jit undo` undoes one.
    Op {
        /// What to do.
        #[command(subcommand)]
        command: OpCommand,
    },
    /// Undo a ref operation by doing its inverse as a new one (it is in the log too, and can be
    /// undone): a moved branch is reset to its old content through an inversion rewrite, a
    /// created ref deleted, a deleted one created again. Default: the latest.
    Undo {
        /// The operation's log position (from `jit op log`).
        seq: Option<u64>,
        #[command(flatten)]
        declared: MoveArgs,
    },
    /// Put paths of the working set back as a revision has them: by default its base (dropping
    /// its changes to them), or --source REV. Directories are restored whole.
    Restore {
        /// The files or directories.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Take them from this revision.
        #[arg(short, long, value_name = "REV")]
        source: Option<String>,
    },
    /// Shadow Working Sets: isolated overlays that collapse into snapshots.
    Sws {
        /// What to do.
        #[command(subcommand)]
        command: SwsCommand,
    },
    /// Move the checked-out branch to REV's content, through an inversion rewrite.
    Reset {
        /// The revision.
        rev: String,
        #[command(flatten)]
        declared: MoveArgs,
    },
    /// Replay the checked-out branch's own snapshots onto ONTO.
    Rebase {
        /// The new base.
        onto: String,
        #[command(flatten)]
        declared: MoveArgs,
    },
    /// Create a universe (a .jit/ directory) in DIR (default: the current directory).
    Init {
        /// Where to create it.
        dir: Option<PathBuf>,
        /// Name of the first branch.
        #[arg(long, default_value = "main")]
        branch: String,
        /// Human name of the universe (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Snapshot a plain directory tree onto the current branch as one commit.
    Import {
        /// The directory to import (.jit and .git inside it are skipped).
        dir: PathBuf,
        #[command(flatten)]
        commit: CommitArgs,
        /// Commit onto this branch instead of the checked-out one.
        #[arg(long)]
        branch: Option<String>,
        /// Record a commit even if the tree did not change.
        #[arg(long)]
        allow_empty: bool,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Import a git repository's history: every commit becomes a snapshot (merges become merge
    /// rewrites), onto a jit branch of the same name.
    ImportGit {
        /// The git repository.
        path: PathBuf,
        /// The git branch to import (default: the repository's HEAD).
        #[arg(long)]
        branch: Option<String>,
        /// The jit branch to import onto (default: the git branch's name, or the checked-out one).
        #[arg(long)]
        into: Option<String>,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a revision and its history into a git repository (created if missing) as commits,
    /// and point a git branch at it: only forward (to a descendant of where it is) unless
    /// --force.
    ExportGit {
        /// The git repository.
        path: PathBuf,
        /// What to export: a branch, or any revision with --branch (default: HEAD).
        rev: Option<String>,
        /// The git branch to point at it (default: the exported branch's name).
        #[arg(long)]
        branch: Option<String>,
        /// Move an existing git branch even backwards or sideways.
        #[arg(long)]
        force: bool,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show history, newest first: every snapshot reachable from REV (default HEAD), merged side
    /// history included, with branch and tag labels; through a pager on a terminal.
    Log {
        /// Where to start (default: HEAD).
        rev: Option<String>,
        /// Show at most N snapshots.
        #[arg(short = 'n', long = "max-count")]
        max_count: Option<usize>,
        /// Start from every branch and tag (and HEAD).
        #[arg(long)]
        all: bool,
        /// Draw the history's lanes.
        #[arg(long)]
        graph: bool,
        /// One line per snapshot: abbreviated id, labels, first line of the message.
        #[arg(long)]
        oneline: bool,
        /// Follow only the mainline (a merge's first side).
        #[arg(long)]
        first_parent: bool,
        #[command(flatten)]
        changes: ChangesArgs,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Show a node: for a snapshot (default HEAD), its header, message and diff.
    Show {
        /// The revision or node id (default: HEAD).
        rev: Option<String>,
        #[command(flatten)]
        changes: ChangesArgs,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// List a tree: a revision's root, or PATH inside it.
    LsTree {
        /// The revision (snapshot or tree).
        rev: String,
        /// A directory inside it.
        path: Option<String>,
        /// Recurse into subdirectories.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Print a file's content: REV:PATH, or a blob id.
    Cat {
        /// REV:PATH or a blob id.
        object: String,
    },
    /// List branches, create one (NAME [REV]) or delete one (-d NAME).
    Branch {
        /// Branch to create or delete.
        name: Option<String>,
        /// Where a new branch points (default: HEAD).
        rev: Option<String>,
        /// Delete the branch.
        #[arg(short, long)]
        delete: bool,
    },
    /// List tags, create one (NAME [REV]) or delete one (-d --force NAME).
    Tag {
        /// Tag to create or delete.
        name: Option<String>,
        /// What it names (default: HEAD).
        rev: Option<String>,
        /// Delete the tag (tags are immutable: needs --force).
        #[arg(short, long)]
        delete: bool,
        /// Allow deleting a tag.
        #[arg(long)]
        force: bool,
    },
    /// Read or set this universe's configuration (.jit/config.toml) by dotted key, as git
    /// config does: `jit config user.name` prints it, `jit config user.name "Ada"` sets it,
    /// `--unset` removes it, no key lists every setting.
    Config {
        /// The key: user.name, user.email, remotes.NAME.endpoint.
        key: Option<String>,
        /// The value to set.
        value: Option<String>,
        /// Remove the key.
        #[arg(long, conflicts_with = "value")]
        unset: bool,
    },
    /// Check the store: replay the log and verify every node, ref and invariant.
    Fsck,
    /// Make the store smaller: store old versions of files and directories as deltas against
    /// newer ones, then give free pages back to the file system (when no daemon has the store
    /// open). Safe to interrupt at any point.
    Gc {
        /// Nodes rewritten per transaction.
        #[arg(long, hide = true, default_value_t = jit_kernel::repack::BATCH_NODES)]
        batch: usize,
    },
    /// Wait until this universe's daemon serves: its mount and message plane are up and its
    /// socket answers (for scripts that start `jit up &`). Fails after --timeout.
    Wait {
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 30.0, value_name = "SECS")]
        timeout: f64,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (jit.1 and one per verb) into DIR.
    Man {
        /// Output directory.
        dir: PathBuf,
    },
    /// Describe this universe: identity, HEAD, store.
    Info,
}
