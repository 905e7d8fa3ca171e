//! Backing files: the copy-on-write content of files written through the mount. Each is an
//! anonymous file (`O_TMPFILE`) in `.jit/fs/`, so a killed daemon leaves nothing to clean up,
//! and the kernel can pass reads and writes straight through to it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use jit_kernel::content::{self, BlobLayout, EncodedNode};
use jit_kernel::source::Source;
use jit_kernel::NodeId;

use crate::error::{Error, Result};

/// Bytes of stored content copied into backing files only so the kernel can read them directly
/// (not because they were written). Bounded by [`READ_COPY_BUDGET`].
static READ_COPIES: AtomicU64 = AtomicU64::new(0);

/// At most this much content is copied out for read passthrough at any time (4 GiB).
pub const READ_COPY_BUDGET: u64 = 4 << 30;

/// Whether `size` more bytes of read copies fit in the budget.
pub fn read_copy_fits(size: u64) -> bool {
    READ_COPIES.load(Ordering::Relaxed).saturating_add(size) <= READ_COPY_BUDGET
}

/// One backing file.
#[derive(Debug)]
pub struct Backing {
    /// The open anonymous file.
    pub file: File,
    /// Bytes counted against the read-copy budget (released on drop).
    counted: u64,
}

impl Drop for Backing {
    fn drop(&mut self) {
        if self.counted > 0 {
            READ_COPIES.fetch_sub(self.counted, Ordering::Relaxed);
        }
    }
}

impl Backing {
    /// A new empty backing file in `dir`.
    pub fn create(dir: &Path) -> Result<Backing> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
            .map_err(|e| {
                Error::io(
                    format!("cannot create a backing file in {}", dir.display()),
                    e,
                )
            })?;
        Ok(Backing { file, counted: 0 })
    }

    /// Counts this file's current size against the read-copy budget until it is dropped.
    pub fn count_as_read_copy(&mut self) -> Result<()> {
        let size = self.size()?;
        READ_COPIES.fetch_add(size.saturating_sub(self.counted), Ordering::Relaxed);
        self.counted = self.counted.max(size);
        Ok(())
    }

    /// A backing file holding the content of `blob`, copied chunk by chunk.
    pub fn with_content(dir: &Path, src: &dyn Source, layout: &BlobLayout) -> Result<Backing> {
        let backing = Backing::create(dir)?;
        let mut file = &backing.file;
        match layout {
            BlobLayout::Inline(data) => file.write_all(data),
            BlobLayout::Chunked(chunks) => {
                let mut result = Ok(());
                for (at, chunk) in chunks {
                    let data = layout.read(src, *at, chunk.len as usize)?;
                    result = file.write_all(&data);
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
        }
        .map_err(|e| Error::io("cannot fill a backing file", e))?;
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
