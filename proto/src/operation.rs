//! The operations a universe serves, by name: the one table of every RPC op name
//! (`shadow.apply_patch`, `sync.fetch`, …) and the one parser of them.
//!
//! A name is matched here and nowhere else: clients name an operation with [`Operation`] and the
//! RPC server turns a request's `op` text into one with [`Operation::parse`]; the kernel's command
//! layer then decodes the payload by the variant. A test in the kernel fails if any other source
//! file matches an operation name as text. The plane's keys (`jit/sws/<id>/<verb>`) have their own
//! parser in [`crate::keyexpr`]; sync queries on the plane (`jit/sync/<op>`) map to the `sync.*`
//! operations with [`Operation::sync_key_segment`].
//!
//! Names are wire format: once released, a name never changes (`docs/rpc.md` lists them).

use std::fmt;

macro_rules! operations {
    ($($variant:ident = $wire:literal, $meaning:literal;)*) => {
        /// An operation the RPC serves. Its wire name is [`Operation::as_str`].
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Operation {
            $(
                #[doc = $meaning]
                $variant,
            )*
        }

        impl Operation {
            /// Every operation.
            pub const ALL: &'static [Operation] = &[$(Operation::$variant),*];

            /// The operation's wire name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Operation::$variant => $wire,)*
                }
            }

            /// What the operation does, in one line.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(Operation::$variant => $meaning,)*
                }
            }
        }
    };
}

operations! {
    Info = "jit.info", "The universe's id, name and key, and HEAD with its tip.";
    CreateSws = "shadow.create", "A new shadow working set on a branch.";
    WorkingSws = "shadow.working", "The branch's working SWS for an owner (made if missing).";
    ApplyPatch = "shadow.apply_patch", "Apply a patch to an SWS.";
    Stage = "shadow.stage", "Stage content nodes ahead of the patch that names them.";
    SwsStatus = "shadow.status", "An SWS's status with its changes.";
    SwsDiff = "shadow.diff", "An SWS's changed paths.";
    ListSws = "shadow.list", "Every SWS's status.";
    SwsHistory = "shadow.history", "An SWS's micro-history (the patches it took).";
    Discard = "shadow.discard", "Drop an SWS.";
    DelegateSws = "shadow.delegate", "Let a registered agent write and commit an SWS.";
    ListSwsDir = "shadow.ls", "A directory of an SWS's working tree: each entry's name, kind, blob id and size.";
    ReadSws = "shadow.read", "A file of an SWS's working tree (a range of it), with its blob id and size.";
    Commit = "collapse.commit", "Collapse an SWS into a snapshot on its branch.";
    Validate = "collapse.validate", "Whether an SWS would merge cleanly (its conflicts).";
    Reset = "history.reset", "Move a branch to a revision, recording a rewrite.";
    Rebase = "history.rebase", "Replay a branch onto a revision, recording a rewrite.";
    GetNode = "dag.get_node", "A node's canonical bytes and type.";
    GetParents = "dag.get_parents", "A node's parents.";
    Lineage = "dag.lineage", "A revision's mainline ancestors, newest first.";
    GetRef = "ref.get", "Where a ref points.";
    ListRefs = "ref.list", "Every ref and its target.";
    SetRef = "ref.set", "Move a branch (compare-and-set).";
    CreateBranch = "ref.create_branch", "Create a branch.";
    CreateTag = "ref.create_tag", "Create a tag.";
    DeleteRef = "ref.delete", "Delete a branch, tag or kept remote ref.";
    HeadStatus = "mh.status", "The status of HEAD's working SWS.";
    CheckoutBranch = "mh.checkout", "Point HEAD at a branch.";
    ReadFile = "mh.read_file", "A file's content from a revision or an SWS.";
    ListTree = "mh.ls", "A directory of a revision's tree: each entry's name, kind, id and size.";
    ReadAt = "mh.read", "A file of a revision's tree (a range of it), with its blob id and size.";
    RecordCheckout = "checkout.record", "Record an on-disk checkout's state.";
    GetCheckout = "checkout.get", "An on-disk checkout's state and SWS.";
    ForgetCheckout = "checkout.forget", "Forget an on-disk checkout.";
    SyncFrontier = "sync.frontier", "Where this universe's branches and tags point.";
    SyncNegotiate = "sync.negotiate", "Which history nodes a replica lacks.";
    SyncFetch = "sync.fetch", "Node bytes by id.";
    FederationHello = "federation.hello", "Another universe's signed hello, answered with a signed accept.";
    FederationHead = "federation.head", "The signed published head and the publish log entries after a size.";
    FederationDepend = "federation.depend", "A signed manifest of the closure of published snapshots.";
    FederationFetch = "federation.fetch", "Node bytes of published closures by id.";
    FederationCosign = "federation.cosign", "A witness's cosignature of another universe's head.";
}

/// The prefix of the sync operations' names.
const SYNC_PREFIX: &str = "sync.";
/// The prefix of the federation operations' names.
const FEDERATION_PREFIX: &str = "federation.";

impl Operation {
    /// The operation a wire name names, if this build serves it.
    pub fn parse(name: &str) -> Option<Operation> {
        Operation::ALL
            .iter()
            .copied()
            .find(|op| op.as_str() == name)
    }

    /// Whether the operation is one of sync's (served to replicas, read-only).
    pub fn is_sync(self) -> bool {
        self.as_str().starts_with(SYNC_PREFIX)
    }

    /// A sync operation's last key segment on the plane (`jit/sync/<segment>`); None for the
    /// others, which the plane does not serve by name.
    pub fn sync_key_segment(self) -> Option<&'static str> {
        self.as_str().strip_prefix(SYNC_PREFIX)
    }

    /// Whether the operation is one of federation's (served to other universes, read-only).
    pub fn is_federation(self) -> bool {
        self.as_str().starts_with(FEDERATION_PREFIX)
    }

    /// A federation operation's last key segment on the plane (`jit/federation/<segment>`).
    pub fn federation_key_segment(self) -> Option<&'static str> {
        self.as_str().strip_prefix(FEDERATION_PREFIX)
    }

    /// The federation operation a plane key's last segment names.
    pub fn from_federation_key_segment(segment: &str) -> Option<Operation> {
        Operation::ALL
            .iter()
            .copied()
            .find(|op| op.federation_key_segment() == Some(segment))
    }

    /// The sync operation a plane key's last segment names.
    pub fn from_sync_key_segment(segment: &str) -> Option<Operation> {
        Operation::ALL
            .iter()
            .copied()
            .find(|op| op.sync_key_segment() == Some(segment))
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_names_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.as_str()), Some(*op));
            assert!(seen.insert(op.as_str()), "{op} twice");
        }
        for unknown in ["", "shadow", "shadow.", "sync.frontierx", "SHADOW.CREATE"] {
            assert_eq!(Operation::parse(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn only_sync_operations_have_plane_key_segments() {
        let sync: Vec<_> = Operation::ALL.iter().filter(|op| op.is_sync()).collect();
        assert_eq!(sync.len(), 3);
        for op in Operation::ALL {
            match op.sync_key_segment() {
                Some(segment) => {
                    assert!(op.is_sync());
                    assert_eq!(Operation::from_sync_key_segment(segment), Some(*op));
                }
                None => assert!(!op.is_sync()),
            }
        }
        assert_eq!(Operation::from_sync_key_segment("create"), None);
    }
}
