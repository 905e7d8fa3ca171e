//! Segments: large stored values packed end to end, so they waste no page.
//!
//! LMDB keeps a value too large for a leaf page (about 2 KiB with 4 KiB pages) in whole
//! overflow pages of its own, so a 5 KiB frame takes 8 KiB and a tree of many medium files
//! wastes half a page per file: 62 MiB of the Linux tree's 327 MiB store. Compaction (the
//! dense copy that ends `jit gc` and `jit clone`, [`super::compact`]) therefore packs every
//! such value into a *segment*, a value of [`SEGMENT_BYTES`] holding many of them one after
//! another, and leaves in the node table a pointer of [`POINTER_LEN`] bytes: `0x04`, then the
//! segment's number, the value's offset in it and its length (each a big-endian `u32`).
//!
//! A packed value is still one contiguous slice of the memory map, so a read costs one more
//! B-tree lookup (in a table of a few dozen entries) and no copy. Values small enough for a
//! leaf page stay in the node table, whose pages the dense copy fills.
//!
//! Only compaction writes segments, into a fresh file, so a segment is never changed in place:
//! a node rewritten later (a `jit gc` that cannot compact because a daemon holds the store)
//! gets an ordinary value and leaves its old bytes unused in the segment until the next
//! compaction packs only what the node table still points to.
//!
//! A pointer is checked against the segment it names: one outside it is the node's
//! [`crate::Error::CorruptRepresentation`], never bytes from elsewhere (and what it points to
//! is then rebuilt and hashed like any stored value).

use heed::types::Bytes;
use heed::{Database, RwTxn};

use crate::error::Result;
use crate::id::NodeId;
use crate::store::repr::corrupt;

/// The node table's name: compaction packs its large values.
pub(super) const NODE_TABLE: &str = "nodes";

/// A read transaction (the store's own alias lives in the module that uses this one).
type ReadTxn<'e> = heed::RoTxn<'e, heed::WithoutTls>;

/// The table of segments: segment number (big-endian `u32`) → packed values.
pub(super) const TABLE: &str = "segments";

/// First byte of a node-table value that points into a segment.
const TAG_PACKED: u8 = 0x04;

/// Bytes of a pointer: the tag and three big-endian `u32`s.
pub(super) const POINTER_LEN: usize = 13;

/// A segment is closed once it holds this many bytes (a value larger than this gets a
/// segment of its own). At most one partial page is lost per segment.
pub(super) const SEGMENT_BYTES: usize = 4 << 20;

/// Bytes of LMDB's page header (`PAGEHDRSZ` on 64-bit builds).
const PAGE_HEADER: usize = 16;

/// Bytes of a leaf node's header in LMDB (`NODESIZE`), and of a page's index slot for it.
const LEAF_NODE_HEADER: usize = 8;
const INDEX_SLOT: usize = 2;

/// Whether a stored value is a pointer into a segment.
pub(super) fn is_pointer(value: &[u8]) -> bool {
    value.first() == Some(&TAG_PACKED)
}

/// The largest value (under a 32-byte key) LMDB keeps in a leaf page of `page_size` bytes;
/// a larger one takes overflow pages of its own (`me_nodemax` in LMDB).
pub(super) fn largest_inline(page_size: usize) -> usize {
    let node_max = (((page_size - PAGE_HEADER) / 2) & !1) - INDEX_SLOT;
    node_max.saturating_sub(LEAF_NODE_HEADER + NodeId::LEN)
}

/// The value node `id`'s table entry `value` stands for: `value` itself, or the slice of a
/// segment it points to.
pub(super) fn unpacked<'t>(
    segments: Database<Bytes, Bytes>,
    txn: &'t ReadTxn<'_>,
    id: &NodeId,
    value: &'t [u8],
) -> Result<&'t [u8]> {
    if !is_pointer(value) {
        return Ok(value);
    }
    let Some((segment, offset, len)) = parse_pointer(value) else {
        return Err(corrupt(
            id,
            format!(
                "its segment pointer is {} bytes, not {POINTER_LEN}",
                value.len()
            ),
        ));
    };
    let Some(packed) = segments.get(txn, &segment.to_be_bytes())? else {
        return Err(corrupt(
            id,
            format!("it is packed in segment {segment}, which is not stored"),
        ));
    };
    let (start, end) = (offset as usize, offset as usize + len as usize);
    match packed.get(start..end) {
        Some(slice) if len > 0 => Ok(slice),
        _ => Err(corrupt(
            id,
            format!(
                "it is packed at bytes {start}..{end} of segment {segment}, which holds {}",
                packed.len()
            ),
        )),
    }
}

fn parse_pointer(value: &[u8]) -> Option<(u32, u32, u32)> {
    let fields: &[u8; POINTER_LEN] = value.try_into().ok()?;
    let word = |at: usize| {
        u32::from_be_bytes([fields[at], fields[at + 1], fields[at + 2], fields[at + 3]])
    };
    Some((word(1), word(5), word(9)))
}

fn pointer(segment: u32, offset: u32, len: u32) -> [u8; POINTER_LEN] {
    let mut out = [0u8; POINTER_LEN];
    out[0] = TAG_PACKED;
    out[1..5].copy_from_slice(&segment.to_be_bytes());
    out[5..9].copy_from_slice(&offset.to_be_bytes());
    out[9..13].copy_from_slice(&len.to_be_bytes());
    out
}

/// Packs values into the segments of a store being written in key order (the dense copy):
/// [`Packer::place`] says what the node table keeps for each value.
pub(super) struct Packer {
    table: Database<Bytes, Bytes>,
    largest_inline: usize,
    number: u32,
    open: Vec<u8>,
}

impl Packer {
    /// A packer writing into the (empty) segment table `table` of a store with pages of
    /// `page_size` bytes.
    pub(super) fn new(table: Database<Bytes, Bytes>, page_size: usize) -> Packer {
        Packer {
            table,
            largest_inline: largest_inline(page_size),
            number: 0,
            open: Vec::new(),
        }
    }

    /// What the node table keeps for `value`: `None` to keep it as it is (it fits a leaf
    /// page), or the pointer to where it was packed.
    pub(super) fn place(
        &mut self,
        txn: &mut RwTxn<'_>,
        value: &[u8],
    ) -> Result<Option<[u8; POINTER_LEN]>> {
        if value.len() <= self.largest_inline {
            return Ok(None);
        }
        if !self.open.is_empty() && self.open.len() + value.len() > SEGMENT_BYTES {
            self.close(txn)?;
        }
        let (Ok(offset), Ok(len)) = (u32::try_from(self.open.len()), u32::try_from(value.len()))
        else {
            return Ok(None); // over 4 GiB: cannot be a node (they are capped far below)
        };
        self.open.extend_from_slice(value);
        Ok(Some(pointer(self.number, offset, len)))
    }

    /// Writes the last open segment.
    pub(super) fn finish(mut self, txn: &mut RwTxn<'_>) -> Result<()> {
        if !self.open.is_empty() {
            self.close(txn)?;
        }
        Ok(())
    }

    fn close(&mut self, txn: &mut RwTxn<'_>) -> Result<()> {
        self.table.put_with_flags(
            txn,
            heed::PutFlags::APPEND,
            &self.number.to_be_bytes(),
            &self.open,
        )?;
        self.number += 1;
        self.open.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::node::{Blob, Node, Payload};
    use crate::store::{Compacted, Store};

    /// A blob of `len` bytes no compressor shrinks (so its stored value is its canonical bytes,
    /// of about that length): its id, canonical bytes and node.
    fn blob(seed: u64, len: usize) -> (NodeId, Vec<u8>, Node) {
        let mut data = vec![0u8; len];
        blake3::Hasher::new()
            .update(&seed.to_le_bytes())
            .finalize_xof()
            .fill(&mut data);
        let node = Node::content(Payload::Blob(Blob::Inline(data)));
        let (id, bytes) = node.encode_with_id().expect("encodes");
        (id, bytes, node)
    }

    /// A store of 400 blobs, two in three too large for a leaf page (2.1 to 11 KiB, so LMDB
    /// would give each whole pages), compacted; returns its directory and the blobs.
    fn compacted_store() -> (tempfile::TempDir, Vec<(NodeId, Vec<u8>)>, u64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true).expect("store");
        let blobs: Vec<(NodeId, Vec<u8>, Node)> = (0..400u64)
            .map(|i| match i % 3 {
                0 => blob(i, 300),
                _ => blob(i, 2100 + (i as usize * 997) % 9000),
            })
            .collect();
        let mut op = store.begin().expect("op");
        for (id, bytes, node) in &blobs {
            op.put_node(id, bytes, node.header()).expect("put");
        }
        op.commit().expect("commit");
        let stored: u64 = {
            let txn = store.read().expect("txn");
            blobs
                .iter()
                .map(|(id, ..)| store.stored(&txn, id).expect("read").expect("held").len() as u64)
                .sum()
        };
        assert!(matches!(
            store.compact().expect("compacts"),
            Compacted::Done { .. }
        ));
        let blobs = blobs
            .into_iter()
            .map(|(id, bytes, _)| (id, bytes))
            .collect();
        (dir, blobs, stored)
    }

    #[test]
    fn compaction_packs_large_values_into_segments_and_every_node_reads_back() {
        let (dir, blobs, stored) = compacted_store();
        let store = Store::open(dir.path(), false).expect("reopens");
        let txn = store.read().expect("txn");
        let page = store.env.stat().page_size as usize;
        let (mut pointers, mut large) = (0, 0);
        for entry in store.node_entries(&txn).expect("entries") {
            let (key, value) = entry.expect("entry");
            let id = NodeId::from_slice(key).expect("id");
            pointers += usize::from(is_pointer(value));
            large += usize::from(
                store.unpacked(&txn, &id, value).expect("unpacks").len() > largest_inline(page),
            );
            assert!(
                value.len() <= largest_inline(page),
                "a value of {} bytes was left in the node table",
                value.len()
            );
        }
        assert!(large > 200, "{large} large values");
        assert_eq!(
            pointers, large,
            "every large value, and only those, is packed"
        );
        for (id, bytes) in &blobs {
            let read = store.node_bytes(&txn, id).expect("reads").expect("held");
            assert_eq!(&read[..], &bytes[..]);
        }
        // Whole pages per large value would add about a third; packed, the file is the values
        // plus the tables' own pages.
        use std::os::unix::fs::MetadataExt;
        let allocated = std::fs::metadata(dir.path().join("data.mdb"))
            .expect("meta")
            .blocks()
            * 512;
        assert!(
            allocated <= stored + stored / 20 + (128 << 10),
            "{allocated} bytes allocated for {stored} bytes of values"
        );
    }

    #[test]
    fn a_pointer_outside_its_segment_is_refused_naming_the_node() {
        let (dir, blobs, _) = compacted_store();
        let store = Store::open(dir.path(), false).expect("reopens");
        let victim = {
            let txn = store.read().expect("txn");
            blobs
                .iter()
                .map(|(id, _)| *id)
                .find(|id| {
                    is_pointer(
                        store
                            .nodes
                            .get(&txn, id.as_bytes())
                            .expect("get")
                            .expect("held"),
                    )
                })
                .expect("a packed node")
        };
        for damaged in [
            pointer(0, u32::MAX - 10, 100),
            pointer(9_999, 0, 100),
            pointer(0, 0, 0),
        ] {
            store
                .unlogged_write(|txn| Ok(store.nodes.put(txn, victim.as_bytes(), &damaged)?))
                .expect("damages");
            let txn = store.read().expect("txn");
            match store.node_bytes(&txn, &victim) {
                Err(Error::CorruptRepresentation { id, reason }) => {
                    assert_eq!(id, victim);
                    assert!(reason.contains("segment"), "{reason}");
                }
                other => panic!("a damaged pointer was read as {other:?}"),
            }
        }
    }

    #[test]
    fn the_inline_limit_is_lmdbs_for_32_byte_keys() {
        // me_nodemax for 4 KiB pages is 2038; a leaf node holds an 8-byte header and the key.
        assert_eq!(largest_inline(4096), 2038 - 8 - 32);
        assert_eq!(largest_inline(65536), 32758 - 8 - 32);
    }

    #[test]
    fn pointers_round_trip_and_only_their_own_length_parses() {
        let value = pointer(7, 4_000_000, 12_345);
        assert!(is_pointer(&value));
        assert_eq!(parse_pointer(&value), Some((7, 4_000_000, 12_345)));
        assert_eq!(parse_pointer(&value[..12]), None);
        assert!(!is_pointer(&[0xa5, 1, 2]));
    }
}
