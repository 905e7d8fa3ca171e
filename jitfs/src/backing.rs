//! Backing files: the copy-on-write content of files written through the mount. Each is a
//! named data file of the overlay (`.jit/fs/data/<random>`, see [`crate::overlay`]) that the
//! kernel reads and writes directly (passthrough), so every byte a `write` accepted is in it
//! even if the daemon dies the next moment; the overlay's records say which path it is.
//! A backing file is removed once nothing needs it: when a write-back has stored its content
//! and the file is closed, when its inode is gone, or at once for the read-only copies made
//! so that large clean files can be read through passthrough.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use jit_kernel::content::{self, BlobLayout, EncodedNode};
use jit_kernel::source::Source;
use jit_kernel::NodeId;

use crate::error::{Error, Result};

/// Bytes of stored content copied into backing files only so the kernel can read them directly
/// (not because they were written). Bounded by [`READ_COPY_BUDGET`].
static READ_COPIES: AtomicU64 = AtomicU64::new(0);

/// Chunks read ahead of the writer while a backing file is filled (at most 256 KiB each).
const COPY_AHEAD: usize = 16;

/// At most this much content is copied out for read passthrough at any time (4 GiB).
pub const READ_COPY_BUDGET: u64 = 4 << 30;

/// Whether `size` more bytes of read copies fit in the budget.
pub fn read_copy_fits(size: u64) -> bool {
    READ_COPIES.load(Ordering::Relaxed).saturating_add(size) <= READ_COPY_BUDGET
}

/// One backing file.
#[derive(Debug)]
pub struct Backing {
    /// The open data file.
    pub file: File,
    /// Its name in the data directory (what the overlay's records name).
    pub name: String,
    path: PathBuf,
    /// Bytes counted against the read-copy budget (released on drop).
    counted: u64,
    /// Remove the file when the last handle on it goes.
    disposable: AtomicBool,
}

impl Drop for Backing {
    fn drop(&mut self) {
        if self.counted > 0 {
            READ_COPIES.fetch_sub(self.counted, Ordering::Relaxed);
        }
        if self.disposable.load(Ordering::Relaxed) {
            if let Err(error) = std::fs::remove_file(&self.path) {
                tracing::debug!(%error, path = %self.path.display(), "backing file not removed");
            }
        }
    }
}

impl Backing {
    /// A new empty backing file in `dir`, with a fresh random name.
    pub fn create(dir: &Path) -> Result<Backing> {
        loop {
            let name = format!("{:032x}", rand::random::<u128>());
            let path = dir.join(&name);
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(Backing {
                        file,
                        name,
                        path,
                        counted: 0,
                        disposable: AtomicBool::new(false),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("cannot create a backing file in {}", dir.display()),
                        e,
                    ))
                }
            }
        }
    }

    /// The existing data file `name` in `dir` (recorded by an earlier daemon); None if it is
    /// gone.
    pub fn reopen(dir: &Path, name: &str) -> Result<Option<Backing>> {
        let path = dir.join(name);
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => Ok(Some(Backing {
                file,
                name: name.to_owned(),
                path,
                counted: 0,
                disposable: AtomicBool::new(false),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("cannot open {}", path.display()), e)),
        }
    }

    /// Counts this file's current size against the read-copy budget until it is dropped, and
    /// makes it disposable: it is only a copy of stored content.
    pub fn count_as_read_copy(&mut self) -> Result<()> {
        let size = self.size()?;
        READ_COPIES.fetch_add(size.saturating_sub(self.counted), Ordering::Relaxed);
        self.counted = self.counted.max(size);
        self.dispose();
        Ok(())
    }

    /// The file is removed when the last handle on it goes (its content is stored, or its
    /// inode gone).
    pub fn dispose(&self) {
        self.disposable.store(true, Ordering::Relaxed);
    }

    /// The file must outlive its handles again (a read copy opened for writing).
    pub fn keep(&self) {
        self.disposable.store(false, Ordering::Relaxed);
    }

    /// Whether the file will be removed with its last handle.
    pub fn is_disposable(&self) -> bool {
        self.disposable.load(Ordering::Relaxed)
    }

    /// A backing file holding the content of `blob`, copied chunk by chunk. Reading the next
    /// chunks out of the store (each verified against its id, which hashes it) overlaps writing
    /// the previous ones on a second thread, so verification adds little to a cold copy.
    pub fn with_content(dir: &Path, src: &dyn Source, layout: &BlobLayout) -> Result<Backing> {
        let backing = Backing::create(dir)?;
        let mut file = &backing.file;
        let filled = match layout {
            BlobLayout::Inline(data) => file
                .write_all(data)
                .map_err(|e| Error::io("cannot fill a backing file", e)),
            BlobLayout::Chunked(_) => {
                let (send, receive) = std::sync::mpsc::sync_channel::<Vec<u8>>(COPY_AHEAD);
                std::thread::scope(|scope| -> Result<()> {
                    let writer = scope.spawn(move || -> std::io::Result<()> {
                        for data in receive {
                            file.write_all(&data)?;
                        }
                        Ok(())
                    });
                    let mut writer_gone = false;
                    let read = layout.for_each_piece(src, &mut |piece| {
                        if send.send(piece.to_vec()).is_err() {
                            // The writer failed: its error is the one reported below.
                            writer_gone = true;
                            let stop = std::io::Error::other("the backing-file writer stopped");
                            return Err(jit_kernel::Error::io("<backing file>", stop));
                        }
                        Ok(())
                    });
                    drop(send);
                    let read = if writer_gone { Ok(0) } else { read };
                    let written = writer.join().unwrap_or_else(|_| {
                        Err(std::io::Error::other("the backing-file writer panicked"))
                    });
                    read?;
                    written.map_err(|e| Error::io("cannot fill a backing file", e))
                })
            }
        };
        if let Err(error) = filled {
            // Half a copy (a chunk was corrupt, the disk full): nothing may keep the file.
            backing.disposable.store(true, Ordering::Relaxed);
            return Err(error);
        }
        Ok(backing)
    }

    /// Current size in bytes.
    pub fn size(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| Error::io("cannot stat a backing file", e))?
            .len())
    }

    /// Reads up to `len` bytes at `offset`.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match self
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("cannot read a backing file", e)),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// Writes `data` at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.file
            .write_all_at(data, offset)
            .map_err(|e| Error::io("cannot write a backing file", e))
    }

    /// Sets the length.
    pub fn truncate(&self, size: u64) -> Result<()> {
        self.file
            .set_len(size)
            .map_err(|e| Error::io("cannot truncate a backing file", e))
    }

    /// Splits the current content into nodes: the blob id, its size and the new nodes.
    pub fn hash(&self) -> Result<(NodeId, u64, Vec<EncodedNode>)> {
        let reader = PositionalReader {
            file: &self.file,
            pos: 0,
        };
        let mut nodes = Vec::new();
        let (id, size) = content::split(reader, &mut |node| {
            nodes.push(node);
            Ok(())
        })?;
        Ok((id, size, nodes))
    }
}

/// Reads a file from the start with `pread`, leaving the shared file offset alone (several
/// threads may hash or serve the same backing file).
struct PositionalReader<'f> {
    file: &'f File,
    pos: u64,
}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
