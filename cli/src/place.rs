//! Where a verb runs. Outside a mount, the universe is found from the current directory
//! upwards, as always. Inside a jitfs mount — the mount of a universe elsewhere, or a
//! universe's own `.jit/mnt` — the mount names its universe (its file-system name, read from
//! `/proc/self/mountinfo`), and the path below the mountpoint names the view: a verb run inside
//! `sws/NAME/` acts on that SWS, inside `head/` on the checked-out branch's working SWS.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};
use jit_kernel::mounts;

/// The view of a mount a verb runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// The mount's root, `sws/` itself, or `head/…`: the checked-out branch's working SWS, as
    /// in the universe's directory.
    Working,
    /// `sws/NAME/…`: that SWS, by the name the mount lists it under (a unique name, else its
    /// 32-hex-digit id).
    Sws(String),
    /// `refs/…` or `nodes/…`: read-only; the text is the path below the mountpoint.
    ReadOnly(String),
}

/// Where a verb runs.
#[derive(Debug, Clone)]
pub struct Place {
    /// The directory relative paths on the command line are taken from.
    pub cwd: PathBuf,
    /// Where the universe is discovered from: the mount's universe inside a mount, else `cwd`.
    pub universe: PathBuf,
    /// The mount view `cwd` is in, if it is in a mount.
    pub view: Option<View>,
}

impl Place {
    /// Finds where `cwd` is: in a jitfs mount (which wins even inside the universe's own
    /// directory, for its default mount), or not.
    pub fn locate(cwd: PathBuf) -> Place {
        // A directory that cannot be resolved is in no mount; the verb reports it as before.
        let found = mounts::find(&cwd).ok().flatten();
        match found {
            Some(mount) => Place {
                universe: mount.universe,
                view: Some(view_of(&mount.below)),
                cwd,
            },
            None => Place {
                universe: cwd.clone(),
                view: None,
                cwd,
            },
        }
    }

    /// The SWS the view names (`sws/NAME/`), if any.
    pub fn view_sws(&self) -> Option<&str> {
        match &self.view {
            Some(View::Sws(name)) => Some(name),
            _ => None,
        }
    }

    /// Refuses a read-only view for `verb`, which needs a working set.
    pub fn writable(&self, verb: &str) -> Result<()> {
        if let Some(View::ReadOnly(view)) = &self.view {
            bail!(
                "{view} is in a read-only view of the mount: there is no working set for \
                 jit {verb} (run it in head/ or sws/NAME/)"
            );
        }
        Ok(())
    }
}

/// The view a path below a mountpoint is in.
fn view_of(below: &Path) -> View {
    let parts: Vec<String> = below
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [top, name, ..] if top == "sws" => View::Sws(name.clone()),
        [top, ..] if top == "refs" || top == "nodes" => View::ReadOnly(parts.join("/")),
        _ => View::Working,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_below_the_mountpoint_names_the_view() {
        let view = |p: &str| view_of(Path::new(p));
        assert_eq!(view(""), View::Working);
        assert_eq!(view("head"), View::Working);
        assert_eq!(view("head/src/deep"), View::Working);
        assert_eq!(view("sws"), View::Working);
        assert_eq!(view("sws/feat"), View::Sws("feat".into()));
        assert_eq!(view("sws/feat/src"), View::Sws("feat".into()));
        assert_eq!(
            view("refs/heads/main/src"),
            View::ReadOnly("refs/heads/main/src".into())
        );
        assert_eq!(view("refs"), View::ReadOnly("refs".into()));
        assert_eq!(view("nodes/abc/x"), View::ReadOnly("nodes/abc/x".into()));
    }
}
