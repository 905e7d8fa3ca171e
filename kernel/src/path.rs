//! Paths inside a tree: relative, `/`-separated, every component a valid entry name, and no
//! component a reserved name (`.git`, `.jit`, `.jit-checkout` and their aliases, see
//! [`crate::reserved`]) at any depth. Patches from any source go through [`RepoPath::parse`];
//! only removals use [`RepoPath::parse_to_remove`], so a reserved name that got into a tree
//! before it was refused can still be deleted.

use std::fmt;

use crate::node::validate_entry_name;

/// Why a path is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {path:?}: {reason}")]
pub struct PathError {
    /// The offered path.
    pub path: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// A validated path of one or more components.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoPath(Vec<Vec<u8>>);

impl RepoPath {
    /// Parses and validates a path such as `src/main.rs`.
    pub fn parse(path: &str) -> Result<RepoPath, PathError> {
        RepoPath::from_bytes(path.as_bytes())
    }

    /// Parses raw path bytes (file names on Linux need not be UTF-8).
    pub fn from_bytes(path: &[u8]) -> Result<RepoPath, PathError> {
        let parsed = RepoPath::from_bytes_to_remove(path)?;
        if parsed.0.iter().any(|c| crate::reserved::is_reserved(c)) {
            return Err(PathError {
                path: String::from_utf8_lossy(path).into_owned(),
                reason: "a component is reserved (.git, .jit, .jit-checkout, in any case or alias)",
            });
        }
        Ok(parsed)
    }

    /// Parses a path to remove or move away: like [`RepoPath::parse`], but reserved names are
    /// accepted, so what a tree already holds can always be taken out of it.
    pub fn parse_to_remove(path: &str) -> Result<RepoPath, PathError> {
        RepoPath::from_bytes_to_remove(path.as_bytes())
    }

    fn from_bytes_to_remove(path: &[u8]) -> Result<RepoPath, PathError> {
        let bad = |reason| PathError {
            path: String::from_utf8_lossy(path).into_owned(),
            reason,
        };
        if path.is_empty() {
            return Err(bad("it is empty"));
        }
        if path.starts_with(b"/") {
            return Err(bad("it is absolute; paths are relative to the tree's root"));
        }
        let components: Vec<Vec<u8>> = path.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
        for component in &components {
            if component.is_empty() {
                return Err(bad("it has an empty component"));
            }
            if component == b"." || component == b".." {
                return Err(bad("it contains '.' or '..'"));
            }
            if validate_entry_name(component).is_err() {
                return Err(bad("a component contains NUL"));
            }
        }
        Ok(RepoPath(components))
    }

    /// The components.
    pub fn components(&self) -> &[Vec<u8>] {
        &self.0
    }

    /// The last component.
    pub fn name(&self) -> &[u8] {
        self.0.last().map(Vec::as_slice).unwrap_or_default()
    }

    /// The path with `name` appended.
    pub fn join(&self, name: &[u8]) -> RepoPath {
        let mut components = self.0.clone();
        components.push(name.to_vec());
        RepoPath(components)
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &RepoPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// The raw bytes, `/`-joined.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.join(&b'/')
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_and_bad_paths() {
        assert_eq!(RepoPath::parse("a/b.txt").unwrap().components().len(), 2);
        assert!(RepoPath::parse("x/.jitignore").is_ok());
        assert!(RepoPath::parse_to_remove("x/.git/config").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "a//b",
            "a/",
            "../x",
            "a/./b",
            ".jit/store",
            "x/.jit",
            ".git/config",
            "sub/.GIT/config",
            "a/git~1/hooks",
            ".jit-checkout/checkout.json",
            "a/\0",
        ] {
            assert!(RepoPath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
