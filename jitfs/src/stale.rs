//! Dead mounts: a daemon killed with `kill -9` leaves its mount behind, answering every access
//! with ENOTCONN. Starting again detaches it instead of failing.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The FUSE mounts at `mountpoint` listed in `/proc/self/mountinfo`.
fn fuse_mounts_at(mountpoint: &Path) -> Result<usize> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("cannot read /proc/self/mountinfo", e))?;
    let target = mountpoint.as_os_str().to_string_lossy().into_owned();
    Ok(info
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else {
                return false;
            };
            let point = fields.get(4).map(|p| unescape(p)).unwrap_or_default();
            let fstype = fields.get(sep + 1).copied().unwrap_or("");
            point == target && fstype.starts_with("fuse")
        })
        .count())
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            match u8::from_str_radix(&code, 8) {
                Ok(b) => out.push(b as char),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&code);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The absolute form of `mountpoint` without touching it (a dead mount cannot be stat'ed).
pub fn absolute(mountpoint: &Path) -> Result<PathBuf> {
    std::path::absolute(mountpoint)
        .map_err(|e| Error::io(format!("bad mountpoint {}", mountpoint.display()), e))
}

/// Detaches every FUSE mount left at `mountpoint`; returns how many.
pub fn clear(mountpoint: &Path) -> Result<usize> {
    let mountpoint = absolute(mountpoint)?;
    let mut cleared = 0;
    for _ in 0..fuse_mounts_at(&mountpoint)? {
        nix::mount::umount2(&mountpoint, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
            Error::io(
                format!("cannot detach the dead mount at {}", mountpoint.display()),
                std::io::Error::from_raw_os_error(e as i32),
            )
        })?;
        cleared += 1;
    }
    if cleared > 0 {
        tracing::warn!(mountpoint = %mountpoint.display(), cleared, "detached a dead mount left by a killed daemon");
    }
    Ok(cleared)
}

/// Whether a FUSE file system is mounted at `mountpoint` now.
pub fn is_mounted(mountpoint: &Path) -> Result<bool> {
    Ok(fuse_mounts_at(&absolute(mountpoint)?)? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
