//! What the watcher never watches and never records: the metadata directories (`.jit-checkout`,
//! `.jit`, `.git`), heavy build directories (`target/`, `node_modules/`), and the patterns of the
//! checkout's top-level `.jitignore` and `.gitignore`. Paths the checkout's tree already holds
//! are never ignored: tracked files win, as in git.
//!
//! Pattern syntax is gitignore's common subset: `#` comments, `*` and `?` within one component,
//! a trailing `/` for directories only, a `/` elsewhere anchoring the pattern to the top.
//! Negation (`!`) is not supported and such lines are skipped.

use std::path::Path;

const ALWAYS: &[&str] = &[".jit-checkout", ".jit", ".git"];
const HEAVY_DIRS: &[&str] = &["target", "node_modules"];

#[derive(Debug, Clone)]
struct Pattern {
    glob: String,
    anchored: bool,
    dir_only: bool,
}

/// The ignore rules of one checkout.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Reads `.jitignore` and `.gitignore` at the top of `dir` (missing files are fine).
    pub fn load(dir: &Path) -> Ignore {
        let mut patterns = Vec::new();
        for name in [".jitignore", ".gitignore"] {
            if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
                patterns.extend(text.lines().filter_map(parse));
            }
        }
        Ignore { patterns }
    }

    /// Whether the relative path `rel` (`/`-separated) is ignored; `is_dir` says what it is.
    pub fn ignored(&self, rel: &str, is_dir: bool) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if ALWAYS.contains(&name) || (is_dir && HEAVY_DIRS.contains(&name)) {
            return true;
        }
        self.patterns.iter().any(|p| {
            if p.dir_only && !is_dir {
                return false;
            }
            if p.anchored {
                glob_path(&p.glob, rel)
            } else {
                glob(&p.glob, name)
            }
        })
    }

    /// Whether `rel` or one of its ancestors is ignored (ancestors are directories).
    pub fn ignored_within(&self, rel: &str, is_dir: bool) -> bool {
        let mut at = 0;
        while let Some(slash) = rel[at..].find('/') {
            if self.ignored(&rel[..at + slash], true) {
                return true;
            }
            at += slash + 1;
        }
        self.ignored(rel, is_dir)
    }
}

fn parse(line: &str) -> Option<Pattern> {
    let line = line.trim_end();
    if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
        return None;
    }
    let (body, dir_only) = match line.strip_suffix('/') {
        Some(body) => (body, true),
        None => (line, false),
    };
    let anchored = body.contains('/');
    let glob = body.trim_start_matches('/').to_owned();
    (!glob.is_empty()).then_some(Pattern {
        glob,
        anchored,
        dir_only,
    })
}

fn glob_path(pattern: &str, path: &str) -> bool {
    let (mut p, mut s) = (pattern.split('/'), path.split('/'));
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if glob(a, b) => {}
            _ => return false,
        }
    }
}

/// `*` and `?` matching within one name.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_patterns_and_anchors() {
        let rules = Ignore {
            patterns: ["*.o", "/build/", "docs/*.tmp", "# c", "!keep"]
                .iter()
                .filter_map(|l| parse(l))
                .collect(),
        };
        assert!(rules.ignored(".git", true));
        assert!(rules.ignored("a/node_modules", true));
        assert!(
            !rules.ignored("a/target", false),
            "a file named target is kept"
        );
        assert!(rules.ignored("x/y.o", false));
        assert!(!rules.ignored("x/y.c", false));
        assert!(rules.ignored("build", true));
        assert!(!rules.ignored("build", false));
        assert!(!rules.ignored("a/build", true), "anchored to the top");
        assert!(rules.ignored("docs/a.tmp", false));
        assert!(!rules.ignored("other/docs/a.tmp", false));
        assert!(rules.ignored_within("target/debug/x", false));
        assert!(!rules.ignored_within("src/main.rs", false));
    }
}
