//! The arguments of the commands, as their payloads carry them (CBOR maps; node ids are 32-byte
//! strings, SWS ids 32-character hex text). `docs/rpc.md` lists each operation's payload.

use serde::{Deserialize, Serialize};

use crate::history::Declared;
use crate::patch::Patch;

/// `shadow.create` arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateArgs {
    /// Branch the SWS commits to (default: HEAD's branch).
    pub branch: Option<String>,
    /// Revision to anchor on (default: the branch tip).
    pub from: Option<String>,
    /// Owner (agent id or user).
    pub owner: String,
    /// Optional name.
    pub name: Option<String>,
}

/// Arguments naming one SWS.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwsArgs {
    /// The SWS id (hex).
    pub sws: String,
}

/// `shadow.read` arguments (on the plane, `jit/sws/<id>/read`): a file of an SWS's working
/// tree, whole or a range of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwsReadArgs {
    /// The SWS id (hex); taken from the key on the plane.
    #[serde(default)]
    pub sws: Option<String>,
    /// The path.
    pub path: String,
    /// Where the range starts (default 0).
    #[serde(default)]
    pub offset: u64,
    /// How many bytes (default and most: [`MAX_READ`]).
    #[serde(default)]
    pub len: Option<u64>,
}

/// `shadow.ls` arguments (on the plane, `jit/sws/<id>/list`): a directory of an SWS's working
/// tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwsListArgs {
    /// The SWS id (hex); taken from the key on the plane.
    #[serde(default)]
    pub sws: Option<String>,
    /// The directory (default: the root).
    #[serde(default)]
    pub path: String,
}

/// `mh.ls` arguments (on the plane, `jit/kernel/tree`): a directory of a revision's tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeArgs {
    /// A revision: a ref (`main`, `tags/v1`), an id or an expression (`main~2`); default HEAD.
    #[serde(default)]
    pub rev: Option<String>,
    /// The directory (default: the root).
    #[serde(default)]
    pub path: String,
}

/// `mh.read` arguments (on the plane, `jit/kernel/read`): a file of a revision's tree, whole or
/// a range of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevReadArgs {
    /// A revision (default HEAD), as for [`TreeArgs`].
    #[serde(default)]
    pub rev: Option<String>,
    /// The path.
    pub path: String,
    /// Where the range starts (default 0).
    #[serde(default)]
    pub offset: u64,
    /// How many bytes (default and most: [`MAX_READ`]).
    #[serde(default)]
    pub len: Option<u64>,
}

/// Most content bytes one read answers (ask again from the next offset for more).
pub const MAX_READ: u64 = 4 << 20;

/// `shadow.delegate` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegateArgs {
    /// The SWS id (hex).
    pub sws: String,
    /// The registered agent.
    pub agent: String,
}

/// `shadow.apply_patch` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyArgs {
    /// The SWS id (hex).
    pub sws: String,
    /// The patch.
    pub patch: Patch,
}

/// `shadow.stage` arguments: content nodes sent ahead of a `put-blob` (a file too large for
/// one request goes in several).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageArgs {
    /// The SWS id (hex).
    pub sws: String,
    /// Canonical CBOR of each content node (chunks and blobs).
    pub nodes: Vec<serde_bytes::ByteBuf>,
}

/// `collapse.commit` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitArgs {
    /// The SWS id (hex).
    pub sws: String,
    /// Declared inputs.
    #[serde(flatten)]
    pub declared: Declared,
}

/// Arguments naming a revision, with declared inputs (reset, rebase).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveArgs {
    /// Branch to move (default: HEAD's).
    pub branch: Option<String>,
    /// The revision.
    pub rev: String,
    /// Declared inputs.
    #[serde(flatten)]
    pub declared: Declared,
}

/// Arguments naming a revision or node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevArgs {
    /// A revision expression or node id.
    pub rev: String,
    /// For `dag.lineage`: at most this many.
    pub limit: Option<u64>,
}

/// `ref.*` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefArgs {
    /// Full (`heads/x`) or short name.
    pub name: String,
    /// Target revision, where the op needs one.
    pub target: Option<String>,
    /// Compare-and-set: the expected current target.
    pub expected: Option<String>,
    /// Allow deleting a tag.
    #[serde(default)]
    pub force: bool,
}

/// `mh.read_file` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadArgs {
    /// Path in the tree.
    pub path: String,
    /// Read from this SWS's working tree…
    pub sws: Option<String>,
    /// …or from this revision (default: HEAD).
    pub rev: Option<String>,
}

/// `mh.checkout` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckoutArgs {
    /// The branch to check out.
    pub branch: String,
}

/// Arguments naming a checkout directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirArgs {
    /// The checkout directory (absolute, canonical).
    pub dir: String,
}
