//! Storing a plain directory tree as content nodes.
//!
//! Files are read and hashed in parallel (rayon) while one writer appends the results in batched
//! operations; content nodes are content-addressed, so a batch committed before a crash is
//! harmless, reachable-from-nothing data, and the branch only ever moves in the separate commit
//! operation ([`crate::history::commit_tree`]). Large files are streamed chunk by chunk, so memory
//! stays bounded whatever the file sizes.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use rayon::prelude::*;

use crate::batch::NodeWriter;
use crate::content::{self, EncodedNode};
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{validate_entry_name, EntryKind, Node, Payload, Tree, TreeEntry};
use crate::store::Store;

/// Names never imported: the reserved names (`.git`, `.jit`, `.jit-checkout` and their aliases,
/// see [`crate::reserved`]) at any depth, and at the top an interrupted `init`'s staging
/// directory (it holds a secret key). Anything else — a user's `docs/.jit-notes` included — is
/// imported.
fn skipped(name: &[u8], top_level: bool) -> bool {
    crate::reserved::is_reserved(name)
        || (top_level && name.starts_with(crate::repo::STAGING_PREFIX.as_bytes()))
}

/// Files larger than this are streamed on their own instead of read whole in a parallel group.
const STREAM_THRESHOLD: u64 = 8 << 20;
/// A parallel group closes at this many files…
const GROUP_FILES: usize = 512;
/// …or this many bytes.
const GROUP_BYTES: u64 = 16 << 20;

/// Progress callbacks; called from the writer thread.
pub trait Progress: Sync {
    /// The walk found this many files and bytes in total.
    fn total(&self, _files: u64, _bytes: u64) {}
    /// This many more files and bytes are stored.
    fn advance(&self, _files: u64, _bytes: u64) {}
}

/// No progress reporting.
pub struct Silent;
impl Progress for Silent {}

/// What an import stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Regular files.
    pub files: u64,
    /// Directories (including the top one).
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Nodes that were new to the store.
    pub new_nodes: u64,
    /// Paths that were skipped (sockets, fifos, devices), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

enum Planned {
    File { index: usize, exec: bool },
    Symlink { target: Vec<u8> },
    Dir(Vec<(Vec<u8>, Planned)>),
}

struct FileJob {
    path: PathBuf,
    size: u64,
}

fn walk(
    dir: &Path,
    files: &mut Vec<FileJob>,
    stats: &mut ImportStats,
) -> Result<Vec<(Vec<u8>, Planned)>> {
    let top_level = stats.dirs == 0;
    stats.dirs += 1;
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        names.push(entry.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let raw = name.as_bytes().to_vec();
        if skipped(&raw, top_level) {
            continue;
        }
        let path = dir.join(&name);
        validate_entry_name(&raw)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
        let meta = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        let file_type = meta.file_type();
        let planned = if file_type.is_dir() {
            Planned::Dir(walk(&path, files, stats)?)
        } else if file_type.is_symlink() {
            stats.symlinks += 1;
            let target = fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
            Planned::Symlink {
                target: target.as_os_str().as_bytes().to_vec(),
            }
        } else if file_type.is_file() {
            stats.files += 1;
            stats.bytes += meta.len();
            files.push(FileJob {
                path: path.clone(),
                size: meta.len(),
            });
            Planned::File {
                index: files.len() - 1,
                exec: meta.permissions().mode() & 0o111 != 0,
            }
        } else {
            stats
                .skipped
                .push((path, "not a regular file, directory or symlink".into()));
            continue;
        };
        entries.push((raw, planned));
    }
    Ok(entries)
}

/// Results flowing from the readers to the writer.
enum Batch {
    Nodes(Vec<EncodedNode>),
    Done {
        index: usize,
        blob: NodeId,
        bytes: u64,
    },
}

/// Stores every file, symlink and directory under `dir` and returns the root tree's id.
pub fn import_dir(
    store: &Store,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<(NodeId, ImportStats)> {
    let mut stats = ImportStats::default();
    let mut files = Vec::new();
    let plan = walk(dir, &mut files, &mut stats)?;
    progress.total(stats.files, stats.bytes);

    let mut blobs: Vec<Option<NodeId>> = vec![None; files.len()];
    let (sender, receiver) = sync_channel::<Result<Batch>>(2);
    let files_ref = &files;
    let mut writer = NodeWriter::new(store);
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || read_all(files_ref, &sender));
        for message in receiver {
            match message? {
                Batch::Nodes(nodes) => writer.append(nodes)?,
                Batch::Done { index, blob, bytes } => {
                    blobs[index] = Some(blob);
                    progress.advance(1, bytes);
                }
            }
        }
        Ok(())
    })?;

    let root = build_tree(&plan, &blobs, &mut writer)?;
    stats.new_nodes = writer.finish()?;
    Ok((root, stats))
}

/// One small file, read and split.
struct ReadFile {
    index: usize,
    blob: NodeId,
    bytes: u64,
    nodes: Vec<EncodedNode>,
}

/// Reads files in groups: small files in parallel, large ones streamed one at a time.
fn read_all(files: &[FileJob], sender: &std::sync::mpsc::SyncSender<Result<Batch>>) {
    let mut start = 0;
    while start < files.len() {
        if files[start].size > STREAM_THRESHOLD {
            if let Err(e) = stream_file(start, &files[start], sender) {
                let _ = sender.send(Err(e));
                return;
            }
            start += 1;
            continue;
        }
        let mut end = start;
        let mut bytes = 0;
        while end < files.len()
            && end - start < GROUP_FILES
            && bytes < GROUP_BYTES
            && files[end].size <= STREAM_THRESHOLD
        {
            bytes += files[end].size;
            end += 1;
        }
        let results: Vec<Result<ReadFile>> = (start..end)
            .into_par_iter()
            .map(|index| {
                let job = &files[index];
                let data = fs::read(&job.path).map_err(|e| Error::io(&job.path, e))?;
                let (blob, nodes) = content::split_bytes(&data)?;
                Ok(ReadFile {
                    index,
                    blob,
                    bytes: data.len() as u64,
                    nodes,
                })
            })
            .collect();
        let mut all_nodes = Vec::new();
        let mut done = Vec::new();
        for result in results {
            match result {
                Ok(file) => {
                    all_nodes.extend(file.nodes);
                    done.push(Batch::Done {
                        index: file.index,
                        blob: file.blob,
                        bytes: file.bytes,
                    });
                }
                Err(e) => {
                    let _ = sender.send(Err(e));
                    return;
                }
            }
        }
        if sender.send(Ok(Batch::Nodes(all_nodes))).is_err() {
            return;
        }
        for message in done {
            if sender.send(Ok(message)).is_err() {
                return;
            }
        }
        start = end;
    }
}

fn stream_file(
    index: usize,
    job: &FileJob,
    sender: &std::sync::mpsc::SyncSender<Result<Batch>>,
) -> Result<()> {
    let file = fs::File::open(&job.path).map_err(|e| Error::io(&job.path, e))?;
    let mut pending = Vec::new();
    let mut pending_bytes = 0;
    let hung_up = || Error::InvalidInput("import writer stopped".into());
    let (blob, bytes) = content::split(
        std::io::BufReader::with_capacity(1 << 20, file),
        &mut |node| {
            pending_bytes += node.bytes.len();
            pending.push(node);
            if pending_bytes >= GROUP_BYTES as usize {
                pending_bytes = 0;
                sender
                    .send(Ok(Batch::Nodes(std::mem::take(&mut pending))))
                    .map_err(|_| hung_up())?;
            }
            Ok(())
        },
    )
    .map_err(|e| match e {
        Error::Io { source, .. } => Error::io(&job.path, source),
        other => other,
    })?;
    sender
        .send(Ok(Batch::Nodes(pending)))
        .map_err(|_| hung_up())?;
    sender
        .send(Ok(Batch::Done { index, blob, bytes }))
        .map_err(|_| hung_up())
}

fn build_tree(
    entries: &[(Vec<u8>, Planned)],
    blobs: &[Option<NodeId>],
    writer: &mut NodeWriter<'_>,
) -> Result<NodeId> {
    let mut tree = Tree::default();
    for (name, planned) in entries {
        let (kind, id) = match planned {
            Planned::File { index, exec } => {
                let blob = blobs[*index]
                    .ok_or_else(|| Error::InvalidInput("a file was not stored".into()))?;
                let kind = if *exec {
                    EntryKind::Executable
                } else {
                    EntryKind::File
                };
                (kind, blob)
            }
            Planned::Symlink { target } => {
                let (blob, nodes) = content::split_bytes(target)?;
                writer.append(nodes)?;
                (EntryKind::Symlink, blob)
            }
            Planned::Dir(children) => (EntryKind::Directory, build_tree(children, blobs, writer)?),
        };
        tree.entries.push(TreeEntry {
            name: name.clone(),
            kind,
            id,
        });
    }
    let node = EncodedNode::new(Node::content(Payload::Tree(tree)))?;
    let id = node.id;
    writer.append(vec![node])?;
    Ok(id)
}
