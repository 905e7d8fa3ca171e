//! Stored representations: how a node's canonical bytes are kept on disk and sent on the wire.
//!
//! A node's id is BLAKE3 of its canonical CBOR bytes and never changes; what the store keeps
//! under that id may be one of three representations, told apart by the first byte:
//!
//! - **raw**: the canonical bytes themselves. Every canonical node is a CBOR map, so its first
//!   byte is `0xa0..=0xbf`; stores written before representations existed hold only these,
//!   and they are still what small or incompressible nodes (random data, media) keep, so those
//!   read straight from the memory map without a copy.
//! - **zstd** (`0x01`, then a zstd frame): the canonical bytes compressed as they arrived,
//!   fast; `0x03` marks one `jit gc` has recompressed harder (read the same way), so it is
//!   not recompressed again.
//! - **delta** (`0x02`, the chain depth, the base's 32-byte id, then a zstd frame): the
//!   canonical bytes compressed with the canonical bytes of another node, the *base*, as the
//!   frame's prefix — zstd's `--patch-from`, so a version of a file that differs from its base
//!   by a few lines costs a few bytes. The depth is one more than the base's (a raw or zstd
//!   base has depth 0) and never exceeds [`MAX_CHAIN`], so resolving a node costs a bounded
//!   number of steps, as git's `--depth` bounds its chains.
//!
//! Nothing here trusts what it reads: a frame that does not decompress, a base that is missing,
//! a chain longer than [`MAX_CHAIN`], or a result that does not hash to the id is
//! [`Error::CorruptRepresentation`] naming the node (and the base), never bytes handed out. The
//! store checks the hash of every node it resolves ([`crate::store::verified`]), bases included.
//!
//! zstd with the base as a prefix is the delta encoder because it is one well-kept library for
//! both jobs, it finds moved and repeated blocks as well as edits, and decoding is a plain
//! decompression with the base in the window.

use std::cell::RefCell;

use crate::error::{Error, Result};
use crate::id::NodeId;

/// Longest delta chain: a node is at most this many deltas away from a full representation
/// (git's default `--depth`). Only cold history is ever stored as deltas.
pub const MAX_CHAIN: u8 = 50;

/// Largest canonical node a representation may decode to (a frame claiming more is corrupt).
pub const MAX_NODE_BYTES: u64 = 64 << 20;

/// Nodes smaller than this are kept raw: compression cannot win much, and they fit in a page.
const MIN_COMPRESSED: usize = 96;

/// zstd level of full representations written as nodes arrive: fast enough not to slow an
/// import or a commit, most of the ratio on source text.
pub const WRITE_LEVEL: i32 = 1;

/// zstd level of deltas and of what `jit gc` recompresses: about a tenth smaller than
/// [`WRITE_LEVEL`] on source text, and as fast to decompress.
pub const PACK_LEVEL: i32 = 6;

const TAG_ZSTD: u8 = 0x01;
const TAG_DELTA: u8 = 0x02;
/// A zstd frame `jit gc` has already recompressed at [`PACK_LEVEL`] (read like `0x01`).
const TAG_ZSTD_PACKED: u8 = 0x03;
const DELTA_HEAD: usize = 2 + 32;

/// A stored value, parsed (not yet decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored<'a> {
    /// The canonical bytes.
    Raw(&'a [u8]),
    /// A zstd frame of the canonical bytes.
    Zstd(&'a [u8]),
    /// A zstd frame made with `base`'s canonical bytes as its prefix.
    Delta {
        /// Deltas between this node and a full representation (1 ..= [`MAX_CHAIN`]).
        depth: u8,
        /// The base node.
        base: NodeId,
        /// The frame.
        frame: &'a [u8],
    },
}

impl<'a> Stored<'a> {
    /// Parses the stored value of node `id`.
    pub fn parse(id: &NodeId, stored: &'a [u8]) -> Result<Stored<'a>> {
        match stored.first() {
            Some(0xa0..=0xbf) => Ok(Stored::Raw(stored)),
            Some(&TAG_ZSTD) | Some(&TAG_ZSTD_PACKED) => Ok(Stored::Zstd(&stored[1..])),
            Some(&TAG_DELTA) if stored.len() > DELTA_HEAD => {
                let depth = stored[1];
                let base = NodeId::from_slice(&stored[2..DELTA_HEAD])
                    .ok_or_else(|| corrupt(id, "a delta's base id is malformed".into()))?;
                if depth == 0 || depth > MAX_CHAIN {
                    return Err(corrupt(
                        id,
                        format!("a delta claims depth {depth}, outside 1..={MAX_CHAIN}"),
                    ));
                }
                if base == *id {
                    return Err(corrupt(id, "a delta names itself as its base".into()));
                }
                Ok(Stored::Delta {
                    depth,
                    base,
                    frame: &stored[DELTA_HEAD..],
                })
            }
            Some(other) => Err(corrupt(
                id,
                format!("its stored value starts with {other:#04x}, no known representation"),
            )),
            None => Err(corrupt(id, "its stored value is empty".into())),
        }
    }

    /// The chain depth: 0 for a full representation.
    pub fn depth(&self) -> u8 {
        match self {
            Stored::Delta { depth, .. } => *depth,
            _ => 0,
        }
    }

    /// The base, for a delta.
    pub fn base(&self) -> Option<NodeId> {
        match self {
            Stored::Delta { base, .. } => Some(*base),
            _ => None,
        }
    }
}

/// [`Error::CorruptRepresentation`] of node `id`.
pub fn corrupt(id: &NodeId, reason: String) -> Error {
    tracing::error!(node = %id, %reason, "a stored node is corrupt");
    Error::CorruptRepresentation { id: *id, reason }
}

thread_local! {
    static COMPRESS: RefCell<zstd::bulk::Compressor<'static>> =
        RefCell::new(zstd::bulk::Compressor::default());
    /// Decompression context. A delta's base is passed per frame
    /// (`ZSTD_decompress_usingDict`), which references it where loading it as the context's
    /// dictionary would copy it first.
    static DECOMPRESS: RefCell<zstd::zstd_safe::DCtx<'static>> =
        RefCell::new(zstd::zstd_safe::DCtx::create());
}

fn zstd_error(what: &str, e: std::io::Error) -> Error {
    Error::InvalidInput(format!("zstd could not {what}: {e}"))
}

/// Compresses `bytes` at `level`, with `prefix` as the frame's dictionary if given.
fn frame(bytes: &[u8], prefix: Option<&[u8]>, level: i32, tag: &[u8]) -> Result<Vec<u8>> {
    COMPRESS.with(|compressor| {
        let mut compressor = compressor.borrow_mut();
        compressor
            .set_dictionary(level, prefix.unwrap_or(&[]))
            .map_err(|e| zstd_error("load a delta base", e))?;
        let bound = zstd::zstd_safe::compress_bound(bytes.len());
        let mut out = vec![0u8; tag.len() + bound];
        out[..tag.len()].copy_from_slice(tag);
        let written = compressor
            .compress_to_buffer(bytes, &mut out[tag.len()..])
            .map_err(|e| zstd_error("compress", e))?;
        out.truncate(tag.len() + written);
        Ok(out)
    })
}

/// The zstd representation of `bytes` if it saves at least a quarter, else `None`: content
/// that compresses less (media, random data, already compressed files) is kept raw and read
/// straight from the map, since a little space is not worth a decompression on every read.
/// `bytes` are canonical node bytes.
pub fn compressed(bytes: &[u8], level: i32) -> Result<Option<Vec<u8>>> {
    if bytes.len() < MIN_COMPRESSED {
        return Ok(None);
    }
    let out = frame(bytes, None, level, &[TAG_ZSTD])?;
    Ok((out.len() <= bytes.len() - bytes.len() / 4).then_some(out))
}

/// Whether a stored value is a compressed frame `jit gc` has not recompressed yet.
pub fn is_unpacked_zstd(stored: &[u8]) -> bool {
    stored.first() == Some(&TAG_ZSTD)
}

/// What `jit gc` keeps for a node stored as an unpacked zstd frame (`stored`), given its
/// canonical `bytes`: a frame at [`PACK_LEVEL`] if that is smaller, else the same frame
/// marked as packed.
pub fn packed(stored: &[u8], bytes: &[u8]) -> Result<Vec<u8>> {
    let out = frame(bytes, None, PACK_LEVEL, &[TAG_ZSTD_PACKED])?;
    if out.len() < stored.len() {
        return Ok(out);
    }
    let mut same = stored.to_vec();
    if let Some(tag) = same.first_mut() {
        *tag = TAG_ZSTD_PACKED;
    }
    Ok(same)
}

/// The stored form of `bytes` written as nodes arrive: zstd when it pays, raw otherwise.
pub fn for_writing(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    Ok(match compressed(bytes, WRITE_LEVEL)? {
        Some(out) => std::borrow::Cow::Owned(out),
        None => std::borrow::Cow::Borrowed(bytes),
    })
}

/// The delta representation of `bytes` against `base` (its id, the depth of its own stored
/// form, and its canonical bytes); `None` when the chain would exceed [`MAX_CHAIN`].
pub fn delta(
    base: &NodeId,
    base_depth: u8,
    base_bytes: &[u8],
    bytes: &[u8],
    level: i32,
) -> Result<Option<Vec<u8>>> {
    if base_depth >= MAX_CHAIN {
        return Ok(None);
    }
    let mut head = [0u8; DELTA_HEAD];
    head[0] = TAG_DELTA;
    head[1] = base_depth + 1;
    head[2..].copy_from_slice(base.as_bytes());
    frame(bytes, Some(base_bytes), level, &head).map(Some)
}

/// A delta representation (`delta`, as [`Stored::parse`] accepts it) with its depth set to
/// `depth`: a replica keeps a delta it received, at the depth its own chain gives it.
pub fn with_depth(delta: &[u8], depth: u8) -> Vec<u8> {
    let mut out = delta.to_vec();
    if out.first() == Some(&TAG_DELTA) && out.len() > 1 {
        out[1] = depth;
    }
    out
}

/// Decompresses the frame stored for node `id`, with its base's canonical bytes as the prefix
/// for a delta. The result is not yet checked against the id (the store does that).
pub fn inflate(id: &NodeId, frame: &[u8], base: Option<&[u8]>) -> Result<Vec<u8>> {
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_NODE_BYTES => size as usize,
        Ok(Some(size)) => {
            return Err(corrupt(
                id,
                format!("its frame claims {size} bytes, over {MAX_NODE_BYTES}"),
            ))
        }
        Ok(None) | Err(_) => return Err(corrupt(id, "its zstd frame header is damaged".into())),
    };
    DECOMPRESS.with(|context| {
        let mut context = context.borrow_mut();
        let mut out = Vec::with_capacity(size);
        let written = match base {
            Some(base) => context.decompress_using_dict(&mut out, frame, base),
            None => context.decompress(&mut out, frame),
        }
        .map_err(|code| {
            let reason = zstd::zstd_safe::get_error_name(code);
            corrupt(id, format!("its zstd frame does not decompress: {reason}"))
        })?;
        if written != size {
            return Err(corrupt(
                id,
                format!("its frame decompressed to {written} bytes, not the {size} it claims"),
            ));
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Canonical-looking bytes (a CBOR map header, then anything).
    fn node_like(mut tail: Vec<u8>) -> Vec<u8> {
        tail.insert(0, 0xa5);
        tail
    }

    /// Resolves `stored[i]` the way the store does, through bases earlier in `chain`.
    fn resolve(chain: &[(NodeId, Vec<u8>)], at: usize, hops: u8) -> Result<Vec<u8>> {
        let (id, stored) = &chain[at];
        let bytes = match Stored::parse(id, stored)? {
            Stored::Raw(raw) => raw.to_vec(),
            Stored::Zstd(frame) => inflate(id, frame, None)?,
            Stored::Delta { base, frame, .. } => {
                assert!(hops < MAX_CHAIN, "chain longer than the cap");
                let Some(found) = chain.iter().position(|(b, _)| *b == base) else {
                    return Err(corrupt(id, format!("its delta base {base} is not stored")));
                };
                let base_bytes = resolve(chain, found, hops + 1)?;
                inflate(id, frame, Some(&base_bytes))?
            }
        };
        crate::store::verified(id, &bytes)?;
        Ok(bytes)
    }

    /// Versions of a "file": each an edit of the one before.
    fn versions() -> impl Strategy<Value = Vec<Vec<u8>>> {
        (
            proptest::collection::vec(any::<u8>(), 0..3000),
            proptest::collection::vec((any::<u16>(), any::<u16>(), any::<Vec<u8>>()), 1..14),
        )
            .prop_map(|(first, edits)| {
                let mut out = vec![node_like(first)];
                for (at, cut, insert) in edits {
                    let mut next = out.last().cloned().unwrap_or_default();
                    let at = 1 + at as usize % next.len().max(1);
                    let at = at.min(next.len());
                    let end = (at + cut as usize % 200).min(next.len());
                    next.splice(at..end, insert);
                    out.push(next);
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Every representation, and every delta chain (each version against the one before,
        /// full again whenever the cap is reached), gives back the exact canonical bytes.
        #[test]
        fn every_representation_and_chain_round_trips(versions in versions(), level in 1i32..8) {
            let mut chain: Vec<(NodeId, Vec<u8>)> = Vec::new();
            // The canonical bytes of the node last stored (the next one's base).
            let mut last: Option<Vec<u8>> = None;
            let mut depth = 0u8;
            for (i, bytes) in versions.iter().enumerate() {
                let id = NodeId::of_bytes(bytes);
                if chain.iter().any(|(seen, _)| *seen == id) {
                    continue;
                }
                let stored = match (chain.last(), &last) {
                    (Some((base, _)), Some(base_bytes)) if i % 3 != 2 => {
                        match delta(base, depth, base_bytes, bytes, level)? {
                            Some(out) => { depth += 1; out }
                            None => { depth = 0; compressed(bytes, level)?.unwrap_or_else(|| bytes.clone()) }
                        }
                    }
                    _ => { depth = 0; compressed(bytes, level)?.unwrap_or_else(|| bytes.clone()) }
                };
                prop_assert_eq!(Stored::parse(&id, &stored)?.depth(), depth);
                chain.push((id, stored));
                last = Some(bytes.clone());
                let at = chain.len() - 1;
                prop_assert_eq!(&resolve(&chain, at, 0)?, bytes);
            }
        }

        /// Flipping any bit of a stored delta never hands out altered content: it is refused
        /// as corrupt, naming the node or its base (or, where the bit was one nothing reads,
        /// the exact bytes come back).
        #[test]
        fn a_damaged_frame_is_named_never_served(versions in versions(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
            prop_assume!(versions.len() >= 2 && versions[0] != versions[1]);
            let base_id = NodeId::of_bytes(&versions[0]);
            let id = NodeId::of_bytes(&versions[1]);
            let base_stored = compressed(&versions[0], 3)?.unwrap_or_else(|| versions[0].clone());
            let mut stored = delta(&base_id, 0, &versions[0], &versions[1], 3)?.expect("delta");
            let at = flip.index(stored.len());
            stored[at] ^= 1 << bit;
            let chain = vec![(base_id, base_stored), (id, stored)];
            match resolve(&chain, 1, 0) {
                // A flip zstd ignores (a spare header bit) or in the depth byte changes
                // nothing that is read: the exact bytes come back, checked by their hash.
                Ok(bytes) => prop_assert_eq!(&bytes, &versions[1], "damaged bytes were served"),
                Err(error) => {
                    prop_assert_eq!(error.code().as_str(), "corrupt");
                    let text = error.to_string();
                    prop_assert!(text.contains(&id.to_hex()) || text.contains(&base_id.to_hex()), "{}", text);
                }
            }
        }
    }

    /// Real nodes: versions of a file (inline blobs) and of a directory (trees whose entries
    /// come and go), each canonical-encoded as the store holds them.
    fn node_versions() -> impl Strategy<Value = Vec<Vec<u8>>> {
        use crate::node::{Blob, EntryKind, Node, Payload, Tree, TreeEntry};
        let blobs = versions().prop_map(|contents| {
            contents
                .into_iter()
                .map(|c| Node::content(Payload::Blob(Blob::Inline(c))))
                .collect::<Vec<_>>()
        });
        let trees =
            proptest::collection::vec(proptest::collection::btree_set("[a-z]{1,12}", 0..60), 1..12)
                .prop_map(|versions| {
                    versions
                        .into_iter()
                        .map(|names| {
                            let entries = names
                                .into_iter()
                                .map(|name| TreeEntry {
                                    id: NodeId::of_bytes(name.as_bytes()),
                                    name: name.into_bytes(),
                                    kind: EntryKind::File,
                                })
                                .collect();
                            Node::content(Payload::Tree(Tree { entries }))
                        })
                        .collect::<Vec<_>>()
                });
        prop_oneof![blobs, trees].prop_map(|nodes| {
            nodes
                .iter()
                .map(|node| node.encode().expect("encodes"))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The same round trip over real, canonical-encoded nodes (file versions and directory
        /// versions), each version a delta against the one before up to the cap.
        #[test]
        fn real_nodes_round_trip_through_every_representation(versions in node_versions()) {
            let mut chain: Vec<(NodeId, Vec<u8>)> = Vec::new();
            let mut last: Option<Vec<u8>> = None;
            let mut depth = 0u8;
            for bytes in &versions {
                let id = NodeId::of_bytes(bytes);
                if chain.iter().any(|(seen, _)| *seen == id) {
                    continue;
                }
                let whole = compressed(bytes, WRITE_LEVEL)?.unwrap_or_else(|| bytes.clone());
                let stored = match (chain.last(), &last) {
                    (Some((base, _)), Some(base_bytes)) => match delta(base, depth, base_bytes, bytes, PACK_LEVEL)? {
                        Some(out) => { depth += 1; out }
                        None => { depth = 0; whole.clone() }
                    },
                    _ => whole.clone(),
                };
                chain.push((id, stored));
                last = Some(bytes.clone());
                let at = chain.len() - 1;
                prop_assert_eq!(&resolve(&chain, at, 0)?, bytes);
                // The whole representation round-trips on its own too.
                let alone = vec![(id, whole)];
                prop_assert_eq!(&resolve(&alone, 0, 0)?, bytes);
            }
        }
    }

    #[test]
    fn small_and_incompressible_nodes_stay_raw() {
        let small = node_like(b"tiny".to_vec());
        assert!(compressed(&small, 3).expect("compress").is_none());
        let mut noise = vec![0xa5];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..8192 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        assert!(compressed(&noise, 3).expect("compress").is_none());
        let text = node_like(b"fn main() { println!(\"hello\"); }\n".repeat(40));
        let out = compressed(&text, 3)
            .expect("compress")
            .expect("text compresses");
        assert!(out.len() < text.len() / 4);
    }

    #[test]
    fn a_chain_is_never_longer_than_the_cap() {
        let bytes = node_like(b"same".repeat(100));
        let id = NodeId::of_bytes(&bytes);
        assert!(delta(&id, MAX_CHAIN, &bytes, &bytes, 3)
            .expect("delta")
            .is_none());
        let mut forged = delta(&id, 0, &bytes, &bytes, 3)
            .expect("delta")
            .expect("made");
        forged[1] = MAX_CHAIN + 1;
        let other = NodeId::of_bytes(b"other");
        assert_eq!(
            Stored::parse(&other, &forged)
                .map(|_| ())
                .unwrap_err()
                .code()
                .as_str(),
            "corrupt"
        );
    }
}
