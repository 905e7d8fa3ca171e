//! Names that never enter a tree (SPEC §1.3): `.git`, `.jit` and `.jit-checkout`, at any depth,
//! together with every spelling a filesystem may take for the same directory — the rules git's
//! `verify_path` applies, so that a checkout on Windows, macOS or Linux can never be made to
//! write into a repository's metadata (a planted `.git/config` runs commands on `git status`;
//! a planted `.jit-checkout/` breaks the checkout).
//!
//! A name is reserved when, after the filesystems' folding, it is one of the three names:
//! - letter case is ignored (case-insensitive filesystems);
//! - code points HFS+ ignores (zero-width joiners, direction marks, U+FEFF …) are dropped;
//! - NTFS drops trailing dots and spaces and reads `name:stream` as `name`; its short name
//!   `GIT~1` stands for `.git`.
//!
//! Names that merely start with a reserved name (`.gitignore`, `.github`, `.jit-notes`) are not
//! reserved.

use crate::error::Violation;
use crate::id::NodeId;
use crate::node::{Node, Payload};

/// The reserved names, lower case.
const RESERVED: [&str; 3] = [".git", ".jit", ".jit-checkout"];

/// Code points HFS+ ignores when it compares names.
fn hfs_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}'
    )
}

/// Whether `name` (one path component) is a reserved name or an alias of one.
pub fn is_reserved(name: &[u8]) -> bool {
    let Ok(name) = std::str::from_utf8(name) else {
        // Every reserved spelling is UTF-8 (HFS+ and NTFS names are Unicode).
        return false;
    };
    let folded: String = name
        .chars()
        .filter(|c| !hfs_ignorable(*c))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    // NTFS: an alternate data stream names the file before the colon, and a backslash
    // separates directories.
    let base = folded.split([':', '\\']).next().unwrap_or_default();
    let base = base.trim_end_matches(['.', ' ']);
    RESERVED.contains(&base) || base == "git~1"
}

/// The first reserved component of a `/`-separated path, if any.
pub fn reserved_component(path: &[u8]) -> Option<&[u8]> {
    path.split(|&b| b == b'/').find(|c| is_reserved(c))
}

/// Refuses a tree node that names a reserved entry (nodes of other types pass): for nodes that
/// come from outside — a sync peer, a git history.
pub fn check_tree(id: &NodeId, node: &Node) -> Result<(), Violation> {
    if let Payload::Tree(tree) = &node.payload {
        if let Some(entry) = tree.entries.iter().find(|e| is_reserved(&e.name)) {
            return Err(Violation::ReservedName {
                node: *id,
                name: String::from_utf8_lossy(&entry.name).into_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_and_their_aliases() {
        for name in [
            ".git",
            ".GIT",
            ".Git",
            ".git.",
            ".git ",
            ".git. .",
            ".git:$DATA",
            ".git::$INDEX_ALLOCATION",
            ".git\\config",
            "git~1",
            "GIT~1",
            "git~1.",
            ".g\u{200c}it",
            "\u{feff}.git",
            ".gi\u{200d}t\u{206a}",
            ".jit",
            ".JIT",
            ".jit-checkout",
            ".JIT-Checkout ",
        ] {
            assert!(is_reserved(name.as_bytes()), "{name:?}");
        }
        for name in [
            ".gitignore",
            ".github",
            ".gitmodules",
            "git",
            ".gi",
            "git~2",
            "x.git",
            ".jit-notes",
            ".jitignore",
            "..git",
            " .git",
        ] {
            assert!(!is_reserved(name.as_bytes()), "{name:?}");
        }
        assert!(!is_reserved(b".git\xff"));
        assert_eq!(reserved_component(b"a/.GIT/config"), Some(&b".GIT"[..]));
        assert_eq!(reserved_component(b"a/.github/x"), None);
    }
}
