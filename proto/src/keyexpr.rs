//! The plane's key expressions (Zenoh keys) and what a message on each asks for. The table of
//! every key is in the plane crate's doc and `docs/plane.md`; this module is the one parser.

use std::fmt;

/// What a message asks for, from its key expression (namespace already stripped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `jit/kernel/create`: a new SWS owned by the sender.
    Create,
    /// `jit/kernel/tree`: a directory of a revision's tree (`{rev?, path?}`).
    Tree,
    /// `jit/kernel/read`: a file of a revision's tree (`{rev?, path, offset?, len?}`).
    Read,
    /// `jit/sws/<id>/<verb>`: an operation on one SWS (`id`: its 16 bytes, 32 hex on the wire).
    Sws {
        /// The SWS's id.
        id: [u8; 16],
        /// The operation.
        verb: SwsVerb,
    },
}

/// An operation on one SWS over the plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwsVerb {
    /// Apply a patch.
    Patch,
    /// Collapse the SWS into a snapshot on its branch.
    Commit,
    /// Drop the SWS.
    Discard,
    /// The SWS's state.
    Status,
    /// Whether it would merge cleanly.
    Analyze,
    /// Read a file of its working tree (`{path, offset?, len?}`).
    Read,
    /// Its changed paths.
    Diff,
    /// Its micro-history (the patches it took).
    History,
    /// List a directory of its working tree (`{path?}`).
    List,
}

impl SwsVerb {
    /// Every verb.
    pub const ALL: [SwsVerb; 9] = [
        SwsVerb::Patch,
        SwsVerb::Commit,
        SwsVerb::Discard,
        SwsVerb::Status,
        SwsVerb::Analyze,
        SwsVerb::Read,
        SwsVerb::Diff,
        SwsVerb::History,
        SwsVerb::List,
    ];

    /// The verb's last key segment.
    pub const fn as_str(self) -> &'static str {
        match self {
            SwsVerb::Patch => "patch",
            SwsVerb::Commit => "commit",
            SwsVerb::Discard => "discard",
            SwsVerb::Status => "status",
            SwsVerb::Analyze => "analyze",
            SwsVerb::Read => "read",
            SwsVerb::Diff => "diff",
            SwsVerb::History => "history",
            SwsVerb::List => "list",
        }
    }

    /// The verb a key segment names.
    pub fn parse(segment: &str) -> Option<SwsVerb> {
        SwsVerb::ALL.into_iter().find(|v| v.as_str() == segment)
    }

    /// Whether the verb ends the SWS's life (after it, nothing more can be done to it).
    pub const fn ends_the_sws(self) -> bool {
        matches!(self, SwsVerb::Commit | SwsVerb::Discard)
    }
}

impl Target {
    /// Parses a key expression (namespace already stripped); None for a key with no operation.
    pub fn parse(key: &str) -> Option<Target> {
        let parts: Vec<&str> = key.split('/').collect();
        match parts.as_slice() {
            ["jit", "kernel", "create"] => Some(Target::Create),
            ["jit", "kernel", "tree"] => Some(Target::Tree),
            ["jit", "kernel", "read"] => Some(Target::Read),
            ["jit", "sws", id, verb] => {
                let verb = SwsVerb::parse(verb)?;
                let mut bytes = [0u8; 16];
                hex::decode_to_slice(id, &mut bytes).ok()?;
                Some(Target::Sws { id: bytes, verb })
            }
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    /// The key expression (without namespace).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Create => f.write_str("jit/kernel/create"),
            Target::Tree => f.write_str("jit/kernel/tree"),
            Target::Read => f.write_str("jit/kernel/read"),
            Target::Sws { id, verb } => write!(f, "jit/sws/{}/{}", hex::encode(id), verb.as_str()),
        }
    }
}

/// Prefixes a key expression with the namespace, if any.
pub fn with_namespace(namespace: &str, key: &str) -> String {
    if namespace.is_empty() {
        key.to_owned()
    } else {
        format!("{}/{key}", namespace.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print_back() {
        let id = "00112233445566778899aabbccddeeff";
        for verb in SwsVerb::ALL {
            let key = format!("jit/sws/{id}/{}", verb.as_str());
            let target = Target::parse(&key).expect("parses");
            assert_eq!(target.to_string(), key);
        }
        for target in [Target::Create, Target::Tree, Target::Read] {
            assert_eq!(Target::parse(&target.to_string()), Some(target));
        }
        for bad in [
            "jit/kernel/frobnicate",
            "jit/sws/zz/patch",
            "jit/sws/0011/patch",
            "jit/sws/00112233445566778899aabbccddeeff/frobnicate",
            "jit/sws/00112233445566778899aabbccddeeff/patch/more",
            "",
        ] {
            assert_eq!(Target::parse(bad), None, "{bad}");
        }
        assert_eq!(with_namespace("ns/", "jit/a"), "ns/jit/a");
        assert_eq!(with_namespace("", "jit/a"), "jit/a");
    }
}
