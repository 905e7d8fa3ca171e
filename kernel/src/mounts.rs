//! Which universe a jitfs mount serves. The mount's FUSE file-system name — the `source` field
//! of `/proc/self/mountinfo` — is `jit:` followed by the universe's directory, percent-encoded
//! wherever mount options (`,`) or mountinfo (blanks, `\`) would mangle it. A process whose
//! current directory is inside a mount finds the universe, and the view below the mountpoint,
//! from the innermost mount containing that directory.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What a jitfs mount's file-system name starts with.
pub const FSNAME_PREFIX: &str = "jit:";

/// Where the kernel lists this process's mounts.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The FUSE file-system name of a mount of the universe in `workdir` (an absolute path).
pub fn fsname(workdir: &Path) -> String {
    let mut out = String::from(FSNAME_PREFIX);
    for &byte in workdir.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/._-~+@=:".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The universe directory a file-system name names, if it is a jitfs mount's.
pub fn universe_of(fsname: &str) -> Option<PathBuf> {
    let encoded = fsname.strip_prefix(FSNAME_PREFIX)?;
    let bytes = percent_decode(encoded.as_bytes())?;
    let path = PathBuf::from(OsString::from_vec(bytes));
    path.is_absolute().then_some(path)
}

/// Undoes `%XX` escapes; `None` for a malformed one.
fn percent_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        if text[at] == b'%' {
            let hex = std::str::from_utf8(text.get(at + 1..at + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(text[at]);
            at += 1;
        }
    }
    Some(out)
}

/// One mount as `/proc/self/mountinfo` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The file-system type (`fuse`, `fuse.jit`, `ext4`, …).
    pub fstype: String,
    /// The source (for FUSE, the file-system name).
    pub source: String,
}

impl MountEntry {
    /// The universe this mount serves, if it is a jitfs mount.
    pub fn jit_universe(&self) -> Option<PathBuf> {
        if self.fstype == "fuse" || self.fstype.starts_with("fuse.") {
            universe_of(&self.source)
        } else {
            None
        }
    }
}

/// Parses mountinfo text (`ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - TYPE SOURCE
/// SUPER-OPTIONS` per line), skipping lines it cannot read.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let fields: Vec<&str> = line.split(' ').collect();
    let separator = fields.iter().position(|field| *field == "-")?;
    Some(MountEntry {
        mountpoint: PathBuf::from(OsString::from_vec(unescape(fields.get(4)?))),
        fstype: String::from_utf8_lossy(&unescape(fields.get(separator + 1)?)).into_owned(),
        source: String::from_utf8_lossy(&unescape(fields.get(separator + 2)?)).into_owned(),
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space; tab, newline and `\` likewise).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let code = bytes
            .get(at + 1..at + 4)
            .filter(|_| bytes[at] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte);
                at += 4;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    out
}

/// A jitfs mount that contains a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitMount {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The universe it serves.
    pub universe: PathBuf,
    /// The path below the mountpoint (empty at the mount's root), e.g. `sws/feat/src`.
    pub below: PathBuf,
}

/// The jitfs mount containing `path` (absolute and canonical): the innermost mount containing
/// it — the last listed, when one is mounted over another — if that one is a jitfs mount.
pub fn containing(entries: &[MountEntry], path: &Path) -> Option<JitMount> {
    let innermost = entries
        .iter()
        .filter(|entry| path.starts_with(&entry.mountpoint))
        .fold(None::<&MountEntry>, |best, entry| match best {
            Some(best)
                if best.mountpoint.components().count() > entry.mountpoint.components().count() =>
            {
                Some(best)
            }
            _ => Some(entry),
        })?;
    Some(JitMount {
        universe: innermost.jit_universe()?,
        below: path.strip_prefix(&innermost.mountpoint).ok()?.to_path_buf(),
        mountpoint: innermost.mountpoint.clone(),
    })
}

/// The jitfs mount containing `path`, from this process's mount table; `path` is made
/// absolute and canonical first.
pub fn find(path: &Path) -> Result<Option<JitMount>> {
    let path = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    let text = std::fs::read_to_string(MOUNTINFO).map_err(|e| Error::io(MOUNTINFO, e))?;
    Ok(containing(&parse_mountinfo(&text), &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsnames_round_trip_whatever_the_path_holds() {
        for path in ["/srv/project", "/tmp/a b,c%d\\e\tf", "/home/ü/x:y"] {
            let name = fsname(Path::new(path));
            assert!(name.starts_with("jit:/"), "{name}");
            assert!(!name.contains([' ', ',', '\\', '\t']), "{name}");
            assert_eq!(universe_of(&name).as_deref(), Some(Path::new(path)));
        }
        assert_eq!(universe_of("jit"), None, "the old name names nothing");
        assert_eq!(universe_of("jit:relative"), None);
        assert_eq!(universe_of("jit:/bad%zz"), None);
    }

    #[test]
    fn the_innermost_mount_decides_and_escapes_are_undone() {
        let text = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
40 22 0:50 / /tmp/my\\040mnt rw,nosuid shared:1 - fuse.jit jit:/tmp/my%20repo rw,user_id=0
41 22 0:51 / /srv/plain rw - fuse sshfs#x rw
42 40 0:52 / /tmp/my\\040mnt/head/target rw - tmpfs tmpfs rw
";
        let entries = parse_mountinfo(text);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[1].mountpoint, Path::new("/tmp/my mnt"));
        let found = containing(&entries, Path::new("/tmp/my mnt/sws/feat/src")).expect("found");
        assert_eq!(found.universe, Path::new("/tmp/my repo"));
        assert_eq!(found.below, Path::new("sws/feat/src"));
        assert_eq!(
            containing(&entries, Path::new("/tmp/my mnt"))
                .expect("the root")
                .below,
            Path::new("")
        );
        assert_eq!(
            containing(&entries, Path::new("/tmp/my mnt/head/target/x")),
            None,
            "a mount inside the view hides it"
        );
        assert_eq!(containing(&entries, Path::new("/srv/plain/x")), None);
        assert_eq!(containing(&entries, Path::new("/home")), None);
    }
}
