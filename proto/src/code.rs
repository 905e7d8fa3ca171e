//! Stable error codes: the one list of every code a JIT refusal or failure carries — RPC
//! answers, plane refusals, the CLI's `--json` errors, audit records — and the trait every
//! crate's error type implements to name its code.
//!
//! A code's wire string never changes once released (clients match on it); a new failure gets a
//! new code. `docs/codes.md` lists them all, and a test keeps that list and [`Code::ALL`] equal.

use std::fmt;

macro_rules! codes {
    ($($variant:ident = $wire:literal, $meaning:literal;)*) => {
        /// A stable error code. Its wire form is [`Code::as_str`].
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $(
                #[doc = $meaning]
                $variant,
            )*
        }

        impl Code {
            /// Every code, in the order `docs/codes.md` lists them.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The code's wire string (`snake_case`, stable).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $wire,)*
                }
            }

            /// What the code means, in one line (the text `docs/codes.md` carries).
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => $meaning,)*
                }
            }

            /// The code a wire string names, if this build knows it.
            pub fn parse(wire: &str) -> Option<Code> {
                match wire {
                    $($wire => Some(Code::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    // The RPC's own refusals (the frame and the connection).
    BadRequest = "bad_request", "The request is not canonical CBOR of the expected shape.";
    FrameTooLarge = "frame_too_large", "A frame is longer than the daemon accepts.";
    TooManyItems = "too_many_items", "A request holds more items than one request may.";
    Timeout = "timeout", "A frame was not received whole in time, or the connection sat idle.";
    Busy = "busy", "The daemon's budget for bytes in flight is spent: retry later.";
    TooManyConnections = "too_many_connections", "The daemon serves as many connections as it may.";
    PermissionDenied = "permission_denied", "The caller may not talk to this daemon (its uid or group).";
    // The kernel: input refused.
    InvalidInput = "invalid_input", "The input is malformed (an unknown op, a bad payload, nothing to commit).";
    BadCbor = "bad_cbor", "Bytes are not canonical CBOR.";
    BadNode = "bad_node", "A node does not decode as its type.";
    BadPath = "bad_path", "A path is malformed or reserved (`.git`, `.jit` and their aliases).";
    BadEdit = "bad_edit", "A patch names a path whose parent directory is missing or is a file.";
    BadRefName = "bad_ref_name", "A ref name is malformed.";
    BadConfig = "bad_config", "A configuration file does not parse or holds a bad value.";
    InvariantViolation = "invariant_violation", "A node would break a DAG invariant.";
    PatchRejected = "patch_rejected", "A patch does not apply to the SWS.";
    PatchTooLarge = "patch_too_large", "A patch has more than 1,048,576 operations.";
    MergeConflict = "merge_conflict", "A commit met conflicts; the details list them and the SWS shows them.";
    NodeNotFound = "node_not_found", "No node has that id.";
    WrongNodeType = "wrong_node_type", "A node is not of the type asked for.";
    RefNotFound = "ref_not_found", "No such ref.";
    RefExists = "ref_exists", "The ref already exists.";
    TagImmutable = "tag_immutable", "Tags never move.";
    NotFastForward = "not_fast_forward", "The update would move a branch other than forward.";
    RefChanged = "ref_changed", "The ref moved since it was read (compare-and-swap failed).";
    BranchCheckedOut = "branch_checked_out", "The branch is checked out and cannot be deleted.";
    UnknownRevision = "unknown_revision", "A revision does not resolve.";
    AmbiguousRevision = "ambiguous_revision", "A short id matches more than one node.";
    PathNotFound = "path_not_found", "No such path in that revision.";
    SwsNotFound = "sws_not_found", "No such SWS.";
    NotARepository = "not_a_repository", "No JIT universe here.";
    AlreadyInitialized = "already_initialized", "A universe already exists here.";
    InsecureListen = "insecure_listen", "A plain listen off loopback was refused (use TLS, or force it).";
    OtherUniverse = "other_universe", "The peer is another universe.";
    SyncFailed = "sync_failed", "A sync with a peer failed (the message says why).";
    IdentityGap = "identity_gap", "An identity document skips a version: the versions between are needed.";
    Equivocation = "equivocation", "Two validly signed statements of one universe contradict each other.";
    // The kernel: the environment failed.
    StoreError = "store_error", "LMDB failed.";
    IoError = "io_error", "A file system call failed.";
    NoSpace = "no_space", "The disk holding the store is full; nothing was kept.";
    Corrupt = "corrupt", "A stored node's bytes no longer hash to its id; the message names it.";
    StoreTruncated = "store_truncated", "`data.mdb` no longer holds the pages its header names.";
    NewerLayout = "newer_layout", "The store was written by a newer build.";
    CorruptLog = "corrupt_log", "The operation log is damaged.";
    // The message plane's refusals.
    TooLarge = "too_large", "A plane envelope exceeds 4 MiB.";
    Malformed = "malformed", "Not a canonical CBOR envelope (or a bad `msg_id`).";
    UnknownTopic = "unknown_topic", "No operation on that key expression.";
    Unsigned = "unsigned", "The envelope carries no signature.";
    UnknownAgent = "unknown_agent", "The sender is not registered.";
    BadSignature = "bad_signature", "The signature does not verify.";
    Replayed = "replayed", "The `msg_id` was already used for other content.";
    Stale = "stale", "The message is older than what the sender's window remembers.";
    RateLimited = "rate_limited", "The sender is over its rate.";
    NotOwner = "not_owner", "The sender neither owns nor is a delegate of the SWS.";
    Forbidden = "forbidden", "The sender lacks the permission.";
    NameTaken = "name_taken", "An enrolment request names an agent another key holds or asked for.";
    Quarantined = "quarantined", "Another universe misbehaved (a forged signature, two histories, a closure that fails verification); nothing more is imported from it until `jit federation release`.";
    Unsupported = "unsupported", "The two universes do not share the capability or protocol version this needs.";
    JournalDamaged = "journal_damaged", "Records of the plane's journal could not be read (audit and fsck).";
    Internal = "internal", "The server failed in a way it did not expect (a bug): nothing was applied.";
    // The plane's client side.
    PlaneUnavailable = "plane_unavailable", "The message plane (Zenoh) could not be reached or failed.";
    NoAck = "no_ack", "No acknowledgement arrived after every retry.";
    // Checkouts on disk and their watcher.
    NotACheckout = "not_a_checkout", "No `.jit-checkout/` here or above.";
    NotEmpty = "not_empty", "The target directory holds something else.";
    InsideUniverse = "inside_universe", "A checkout directory may not lie inside the universe's own.";
    LocalChanges = "local_changes", "A checkout would overwrite uncommitted edits.";
    InterruptedCheckout = "interrupted_checkout", "A checkout into this directory was killed midway: rerun it there.";
    AlreadyWatched = "already_watched", "Another watcher holds this checkout.";
    WatchLimit = "watch_limit", "inotify ran out of watches.";
    WatchFailed = "watch_failed", "The file watcher failed otherwise.";
    BadName = "bad_name", "A file name is not UTF-8.";
    // Git interop.
    GitError = "git_error", "git (gix) failed: not a repository, a missing object, I/O.";
    // The CLI, for a failure no crate classified.
    Error = "error", "A failure without a more precise code.";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An error that names its stable code. Every crate's error type implements it, so the CLI's
/// `--json` errors, the RPC's and the plane's answers and the mount's errnos come from one
/// place instead of matches on strings.
pub trait Coded {
    /// The error's stable code.
    fn code(&self) -> Code;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_wire_strings_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for &code in Code::ALL {
            let wire = code.as_str();
            assert!(seen.insert(wire), "{wire} twice");
            assert!(
                wire.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{wire} is not snake_case"
            );
            assert_eq!(Code::parse(wire), Some(code));
            assert!(!code.meaning().is_empty());
        }
        assert_eq!(Code::parse("frobnicate"), None);
    }
}
