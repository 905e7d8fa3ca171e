//! What the watcher never watches and never records: the metadata directories (`.jit-checkout`,
//! `.jit`, `.git`), heavy build directories (`target/`, `node_modules/`), and what the
//! checkout's `.gitignore` and `.jitignore` files say — at the top and in any directory below,
//! with git's full syntax (`**`, character classes, `!` negation, anchoring, trailing `/`),
//! matched by the `ignore` crate. Paths the checkout's tree already holds are never ignored:
//! tracked files win, as in git (the session checks that before asking here).
//!
//! Precedence is git's: a directory's own ignore files override those above it, the last
//! matching line of a file wins, `.jitignore` comes after `.gitignore` in the same directory,
//! and nothing below an ignored directory is looked at. Ignore files are read when a path
//! below their directory is first asked about, and read again after they change.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;

const ALWAYS: &[&str] = &[".jit-checkout", ".jit", ".git"];
const HEAVY_DIRS: &[&str] = &["target", "node_modules"];
/// The files whose patterns apply to their directory and everything below it, in the order
/// their lines are read (later lines win).
const IGNORE_FILES: &[&str] = &[".gitignore", ".jitignore"];

/// The ignore rules of one checkout.
#[derive(Debug, Default)]
pub struct Ignore {
    top: PathBuf,
    /// Matchers by directory (relative, `""` for the top), read on first use; `None` when the
    /// directory has no ignore file.
    matchers: RefCell<HashMap<String, Option<Gitignore>>>,
}

impl Ignore {
    /// The rules of the checkout at `dir` (its ignore files are read as they are needed).
    pub fn load(dir: &Path) -> Ignore {
        Ignore {
            top: dir.to_path_buf(),
            matchers: RefCell::new(HashMap::new()),
        }
    }

    /// Whether `rel` (relative, `/`-separated) names an ignore file: its directory's rules must
    /// be read again (see [`Ignore::forget`]).
    pub fn is_ignore_file(rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        IGNORE_FILES.contains(&name)
    }

    /// Drops what was read for the directory holding the ignore file `rel`.
    pub fn forget(&self, rel: &str) {
        let dir = rel.rsplit_once('/').map_or("", |(dir, _)| dir);
        self.matchers.borrow_mut().remove(dir);
    }

    /// Whether the relative path `rel` (`/`-separated) is ignored by the rules that apply to
    /// it; `is_dir` says what it is. Its ancestors are not checked (see
    /// [`Ignore::ignored_within`]).
    pub fn ignored(&self, rel: &str, is_dir: bool) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if ALWAYS.contains(&name) || (is_dir && HEAVY_DIRS.contains(&name)) {
            return true;
        }
        // The deepest directory with an opinion decides.
        let mut dir = rel.rsplit_once('/').map(|(dir, _)| dir);
        loop {
            let here = dir.unwrap_or("");
            let below = match dir {
                Some(dir) => &rel[dir.len() + 1..],
                None => rel,
            };
            match self.verdict(here, below, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
            match dir {
                None => return false,
                Some(d) => dir = d.rsplit_once('/').map(|(up, _)| up),
            }
        }
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

    /// What the ignore files of directory `dir` say about `below` (relative to `dir`).
    fn verdict(&self, dir: &str, below: &str, is_dir: bool) -> Match<()> {
        let mut matchers = self.matchers.borrow_mut();
        let matcher = matchers
            .entry(dir.to_owned())
            .or_insert_with(|| self.read(dir));
        match matcher {
            Some(matcher) => match matcher.matched(below, is_dir) {
                Match::Ignore(_) => Match::Ignore(()),
                Match::Whitelist(_) => Match::Whitelist(()),
                Match::None => Match::None,
            },
            None => Match::None,
        }
    }

    /// Reads the ignore files of directory `dir`; `None` if it has none. A file that cannot be
    /// read or a bad line is reported and skipped, as git does.
    fn read(&self, dir: &str) -> Option<Gitignore> {
        let abs = if dir.is_empty() {
            self.top.clone()
        } else {
            self.top.join(dir)
        };
        let mut builder = GitignoreBuilder::new(&abs);
        let mut any = false;
        for name in IGNORE_FILES {
            let file = abs.join(name);
            if !file.is_file() {
                continue;
            }
            any = true;
            if let Some(error) = builder.add(&file) {
                tracing::warn!(file = %file.display(), %error, "skipping part of an ignore file");
            }
        }
        if !any {
            return None;
        }
        match builder.build() {
            Ok(matcher) => Some(matcher),
            Err(error) => {
                tracing::warn!(dir = %abs.display(), %error, "cannot use the ignore files");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(files: &[(&str, &str)]) -> (tempfile::TempDir, Ignore) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let ignore = Ignore::load(dir.path());
        (dir, ignore)
    }

    #[test]
    fn builtins_patterns_and_anchors() {
        let (_dir, rules) = rules(&[(".gitignore", "*.o\n/build/\ndocs/*.tmp\n# c\n")]);
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

    #[test]
    fn negation_double_star_and_nested_files_follow_git() {
        let (dir, rules) = rules(&[
            (".gitignore", "*.log\n!keep.log\nout/**/cache\n"),
            (".jitignore", "*.bak\n"),
            ("sub/.gitignore", "!*.log\nlocal/\n"),
            ("sub/deeper/.jitignore", "*.txt\n"),
        ]);
        assert!(rules.ignored("a.log", false));
        assert!(!rules.ignored("keep.log", false), "negation re-includes");
        assert!(rules.ignored("x/y/z.log", false));
        assert!(rules.ignored("out/a/b/cache", true), "** spans directories");
        assert!(rules.ignored("notes.bak", false), ".jitignore applies too");
        assert!(
            !rules.ignored("sub/a.log", false),
            "a deeper file overrides the top one"
        );
        assert!(rules.ignored("sub/local", true));
        assert!(rules.ignored("sub/deeper/x.txt", false));
        assert!(!rules.ignored("x.txt", false), "only below its directory");
        assert!(rules.ignored_within("sub/local/anything.rs", false));
        // Changed rules are read again once forgotten.
        std::fs::write(dir.path().join("sub/deeper/.jitignore"), "").unwrap();
        assert!(rules.ignored("sub/deeper/x.txt", false), "still cached");
        assert!(Ignore::is_ignore_file("sub/deeper/.jitignore"));
        rules.forget("sub/deeper/.jitignore");
        assert!(!rules.ignored("sub/deeper/x.txt", false));
    }
}
