//! Verified reads: a node's stored bytes are handed out only once they hash to the id they are
//! stored under. A flipped bit on disk then surfaces as [`Error::Corrupt`] naming the node —
//! `jit cat`, `log`, `ls-tree`, checkouts, exports, sync serving and the mount (EIO) all refuse
//! it — instead of altered content being served as if it were history.
//!
//! Every read is checked rather than remembered in a verified-set: BLAKE3 hashes at several
//! GB/s, a set would grow with everything a long-lived daemon ever read, and it would go on
//! vouching for pages the disk has since damaged. The cost is in BENCHMARKS.md.

use crate::error::{Error, Result};
use crate::id::NodeId;

/// `bytes` if they hash to `id`; [`Error::Corrupt`] otherwise.
pub fn verified<'b>(id: &NodeId, bytes: &'b [u8]) -> Result<&'b [u8]> {
    let actual = NodeId::of_bytes(bytes);
    if actual == *id {
        return Ok(bytes);
    }
    tracing::error!(node = %id, %actual, "a stored node is corrupt: its bytes do not hash to its id");
    Err(Error::Corrupt { id: *id, actual })
}

/// Verifies every `(id, bytes)` pair found (`None`: not stored here, nothing to check), on
/// all cores: reading a large file asks for its chunks in batches, and a cold batch then faults
/// its pages in and hashes them in parallel instead of one chunk after another.
pub fn verified_all(found: &[(NodeId, Option<&[u8]>)]) -> Result<()> {
    use rayon::prelude::*;
    found.par_iter().try_for_each(|(id, bytes)| match bytes {
        Some(bytes) => verified(id, bytes).map(drop),
        None => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_content_is_refused_naming_the_node() {
        let bytes = b"some canonical node bytes".to_vec();
        let id = NodeId::of_bytes(&bytes);
        assert_eq!(verified(&id, &bytes).expect("intact"), &bytes[..]);
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            match verified(&id, &damaged) {
                Err(error @ Error::Corrupt { .. }) => {
                    assert_eq!(error.code(), "corrupt");
                    assert!(error.to_string().contains(&id.to_hex()), "{error}");
                }
                other => panic!("a flipped byte at {at} was served: {other:?}"),
            }
        }
    }

    #[test]
    fn a_batch_with_one_corrupt_node_is_refused_naming_it() {
        let nodes: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 1000]).collect();
        let mut found: Vec<(NodeId, Option<&[u8]>)> = nodes
            .iter()
            .map(|n| (NodeId::of_bytes(n), Some(n.as_slice())))
            .collect();
        found.push((NodeId::of_bytes(b"absent"), None));
        verified_all(&found).expect("all intact");
        let mut damaged = nodes[40].clone();
        damaged[999] ^= 0x80;
        found[40].1 = Some(&damaged);
        match verified_all(&found) {
            Err(Error::Corrupt { id, .. }) => assert_eq!(id, found[40].0),
            other => panic!("a corrupt node in a batch was served: {other:?}"),
        }
    }
}
