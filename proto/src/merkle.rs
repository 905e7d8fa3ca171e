//! The Merkle tree over a universe's publish log (issue #19's signed head, #20's consistency
//! checks): RFC 9162's tree shape and proofs, with BLAKE3 for the hash. A leaf is
//! `H(0x00 || entry)`, an inner node `H(0x01 || left || right)`, so a leaf can never pass for an
//! inner node; a tree of n > 1 leaves splits at the largest power of two below n.
//!
//! - An **inclusion proof** shows one entry is the i-th of a tree of a given root.
//! - A **consistency proof** shows a tree of size m is a prefix of a tree of size n ≥ m: the
//!   log was only appended to. Both are O(log n) hashes and verify with the roots alone.

/// A 32-byte BLAKE3 hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: the hash of no bytes.
pub fn empty_root() -> Hash {
    *blake3::hash(&[]).as_bytes()
}

/// The hash of a leaf holding `entry`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[0x00]);
    hasher.update(entry);
    *hasher.finalize().as_bytes()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[0x01]);
    hasher.update(left);
    hasher.update(right);
    *hasher.finalize().as_bytes()
}

/// RFC 9162's step for a node that is a right child or the last of its level: shift both
/// indices right until `fnode` is a right child again (or 0).
fn climb_past_left_children(fnode: &mut u64, snode: &mut u64) {
    while *fnode & 1 == 0 && *fnode != 0 {
        *fnode >>= 1;
        *snode >>= 1;
    }
}

/// The largest power of two below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root of the tree over `leaves` (leaf hashes, in log order).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof of leaf `index` in the tree over `leaves`; None when out of range.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    (index < leaves.len()).then(|| path(leaves, index))
}

fn path(leaves: &[Hash], index: usize) -> Vec<Hash> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    if index < k {
        let mut proof = path(&leaves[..k], index);
        proof.push(root(&leaves[k..]));
        proof
    } else {
        let mut proof = path(&leaves[k..], index - k);
        proof.push(root(&leaves[..k]));
        proof
    }
}

/// Whether `proof` shows `leaf` is leaf `index` of a tree of `size` leaves with `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            climb_past_left_children(&mut fnode, &mut snode);
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// The consistency proof between the first `old_size` leaves and all of `leaves`; None when
/// `old_size` exceeds them.
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Option<Vec<Hash>> {
    if old_size > leaves.len() {
        return None;
    }
    if old_size == 0 || old_size == leaves.len() {
        return Some(Vec::new());
    }
    Some(subproof(old_size, leaves, true))
}

fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole {
            Vec::new()
        } else {
            vec![root(leaves)]
        };
    }
    let k = split(n);
    if m <= k {
        let mut proof = subproof(m, &leaves[..k], whole);
        proof.push(root(&leaves[k..]));
        proof
    } else {
        let mut proof = subproof(m - k, &leaves[k..], false);
        proof.push(root(&leaves[..k]));
        proof
    }
}

/// Whether `proof` shows the tree of `old_size` leaves with `old_root` is a prefix of the tree
/// of `new_size` leaves with `new_root`: the log between them was only appended to.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            climb_past_left_children(&mut fnode, &mut snode);
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && fr == *old_root && sr == *new_root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn every_leaf_of_every_tree_up_to_33_proves_its_inclusion_and_no_other() {
        for n in 1..=33 {
            let all = leaves(n);
            let r = root(&all);
            for i in 0..n {
                let proof = inclusion_proof(&all, i).expect("in range");
                assert!(
                    verify_inclusion(&all[i], i as u64, n as u64, &proof, &r),
                    "{i} of {n}"
                );
                // The same proof for another leaf or index fails.
                let other = leaf_hash(b"not in the log");
                assert!(!verify_inclusion(&other, i as u64, n as u64, &proof, &r));
                if n > 1 {
                    let j = (i + 1) % n;
                    assert!(!verify_inclusion(&all[i], j as u64, n as u64, &proof, &r));
                }
            }
            assert_eq!(inclusion_proof(&all, n), None);
        }
    }

    #[test]
    fn every_prefix_of_every_tree_up_to_33_proves_consistency_and_a_changed_one_does_not() {
        for n in 1..=33 {
            let all = leaves(n);
            let new_root = root(&all);
            for m in 0..=n {
                let old_root = root(&all[..m]);
                let proof = consistency_proof(&all, m).expect("m ≤ n");
                assert!(
                    verify_consistency(m as u64, n as u64, &old_root, &new_root, &proof),
                    "{m} → {n}"
                );
                if m > 0 && m < n {
                    // A log that rewrote an old entry is not an extension of it.
                    let mut rewritten = all.clone();
                    rewritten[m - 1] = leaf_hash(b"rewritten");
                    let forked_root = root(&rewritten);
                    assert!(
                        !verify_consistency(m as u64, n as u64, &old_root, &forked_root, &proof),
                        "{m} → {n} forked"
                    );
                }
            }
            assert_eq!(consistency_proof(&all, n + 1), None);
        }
    }

    #[test]
    fn a_leaf_cannot_pass_for_an_inner_node() {
        let all = leaves(2);
        let inner = root(&all);
        // The two children's hashes as one leaf's bytes give another hash than the node.
        let mut bytes = all[0].to_vec();
        bytes.extend_from_slice(&all[1]);
        assert_ne!(leaf_hash(&bytes), inner);
        assert_eq!(root(&[]), empty_root());
    }
}
