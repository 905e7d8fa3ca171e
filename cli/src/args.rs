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
    /// The commit message.
    #[arg(short, long)]
    pub message: String,
    /// Author as "Name <email>" (default: $JIT_AUTHOR, then [user] in .jit/config.toml, then $USER).
    #[arg(long, env = "JIT_AUTHOR")]
    pub author: Option<String>,
    /// Declared time: RFC 3339 ("2024-05-01T12:00:00+02:00") or "@SECONDS [+HHMM]" (default: now).
    #[arg(long, env = "JIT_DATE")]
    pub date: Option<String>,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Show the history of a revision along its mainline.
    Log {
        /// Where to start (default: HEAD).
        rev: Option<String>,
        /// Show at most N snapshots.
        #[arg(short = 'n', long = "max-count")]
        max_count: Option<usize>,
    },
    /// Show a node: for a snapshot, its header and the paths it changed.
    Show {
        /// The revision or node id.
        rev: String,
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
    /// Check the store: replay the log and verify every node, ref and invariant.
    Fsck,
    /// Describe this universe: identity, HEAD, store.
    Info,
}
