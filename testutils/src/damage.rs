//! Damage done on purpose: tests flip stored bits to check that verified reads, fsck and the
//! mount catch them.

use std::path::Path;

/// Flips one bit of every occurrence of `needle` in `file` (LMDB may keep stale page copies, so
/// the live one is hit whichever it is). Returns how many were flipped.
pub fn flip_every(file: &Path, needle: &[u8], offset_in_needle: usize) -> usize {
    let mut data = std::fs::read(file).expect("read the file to damage");
    let positions: Vec<usize> = data
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    for &p in &positions {
        data[p + offset_in_needle] ^= 0x01;
    }
    std::fs::write(file, data).expect("write the damaged file");
    positions.len()
}
