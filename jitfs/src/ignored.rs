//! Which new entries of a view are ignored: `.git`, `.jit` and `.jit-checkout` always, and what
//! the view's own `.gitignore` and `.jitignore` files say, with git's rules (matched by the
//! `ignore` crate, as the watcher does for on-disk checkouts): the deepest directory with an
//! opinion decides, later lines win, `!` re-includes. Only untracked entries are asked about —
//! a file the SWS already has stays tracked, as in git — and nothing below an ignored directory
//! is looked at. Ignored entries live in the overlay and are never written back, so a build in
//! the mount never commits its output.
//!
//! The rules are read from the mount itself (the ignore files' current content, written back
//! or not), once per directory per write-back.

use std::collections::HashMap;
use std::path::PathBuf;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;
use jit_kernel::{content, Repository};

use crate::inode::{FileBody, Ino, Kind};
use crate::state::State;
use crate::views;

/// Names never written back, wherever they are.
const ALWAYS: &[&[u8]] = &[b".git", b".jit", b".jit-checkout"];
/// The files whose patterns apply to their directory and below, in the order read.
const IGNORE_FILES: &[&[u8]] = &[b".gitignore", b".jitignore"];
/// Ignore files larger than this are not read (git has no limit; a pathological one must not
/// stall a write-back).
const MAX_IGNORE_FILE: u64 = 1 << 20;

/// The ignore rules of one view, read as needed.
pub struct Rules<'a> {
    state: &'a State,
    repo: &'a Repository,
    root: Ino,
    matchers: HashMap<Ino, Option<Gitignore>>,
}

impl<'a> Rules<'a> {
    /// The rules of the view whose root is `root`.
    pub fn new(state: &'a State, repo: &'a Repository, root: Ino) -> Rules<'a> {
        Rules {
            state,
            repo,
            root,
            matchers: HashMap::new(),
        }
    }

    /// Whether entry `name` of directory `dir` is ignored (its ancestors are not).
    pub fn ignored(&mut self, dir: Ino, name: &[u8], is_dir: bool) -> bool {
        if ALWAYS.contains(&name) {
            return true;
        }
        let mut below = name.to_vec();
        let mut at = dir;
        loop {
            match self.verdict(at, &below, is_dir) {
                Match::Ignore(()) => return true,
                Match::Whitelist(()) => return false,
                Match::None => {}
            }
            let Some(node) = self.state.nodes.get(&at) else {
                return false;
            };
            if at == self.root || node.view.is_none() {
                return false;
            }
            below = [node.name.as_slice(), b"/", &below].concat();
            at = node.parent;
        }
    }

    fn verdict(&mut self, dir: Ino, below: &[u8], is_dir: bool) -> Match<()> {
        if !self.matchers.contains_key(&dir) {
            let matcher = self.read(dir);
            self.matchers.insert(dir, matcher);
        }
        let Some(Some(matcher)) = self.matchers.get(&dir) else {
            return Match::None;
        };
        let Ok(below) = std::str::from_utf8(below) else {
            return Match::None;
        };
        match matcher.matched(below, is_dir) {
            Match::Ignore(_) => Match::Ignore(()),
            Match::Whitelist(_) => Match::Whitelist(()),
            Match::None => Match::None,
        }
    }

    /// The rules of directory `dir`'s ignore files; None if it has none.
    fn read(&self, dir: Ino) -> Option<Gitignore> {
        let children = match &self.state.nodes.get(&dir)?.kind {
            Kind::Dir {
                children: Some(children),
                ..
            } => children,
            _ => return None,
        };
        let mut builder = GitignoreBuilder::new(PathBuf::from("/"));
        let mut any = false;
        for name in IGNORE_FILES {
            let Some(file) = children.get(*name) else {
                continue;
            };
            let Some(text) = self.content(*file) else {
                continue;
            };
            any = true;
            for line in String::from_utf8_lossy(&text).lines() {
                if let Err(error) = builder.add_line(None, line) {
                    tracing::warn!(%error, "skipping a line of an ignore file");
                }
            }
        }
        if !any {
            return None;
        }
        builder.build().ok()
    }

    /// The current content of file `ino` (its backing file, else its stored blob).
    fn content(&self, ino: Ino) -> Option<Vec<u8>> {
        let node = self.state.nodes.get(&ino)?;
        let Kind::File(FileBody { blob, backing, .. }) = &node.kind else {
            return None;
        };
        if let Some(backing) = backing {
            let size = backing.size().ok()?;
            return (size <= MAX_IGNORE_FILE)
                .then(|| backing.read(0, size as usize).ok())
                .flatten();
        }
        let blob = (*blob)?;
        let reads = self.state.views[node.view?].reads();
        views::with_source(self.repo.store(), reads, |src| {
            if content::blob_size(src, &blob)? > MAX_IGNORE_FILE {
                return Ok(None);
            }
            Ok(Some(content::read_blob(src, &blob)?))
        })
        .ok()
        .flatten()
    }
}
