//! Corrupt content is never served through the mount (issue #17 item 1): a read of a file whose
//! stored node (the blob, or one chunk of a large file) no longer hashes to its id fails with
//! EIO instead of returning the altered bytes; intact files still read.

use std::path::Path;

use jit_mount_tests::*;
use jit_testutils::damage::flip_every;

const SMALL_MARKER: &str = "JIT-VERIFY-MOUNT-SMALL-MARKER";
const CHUNK_MARKER: &str = "JIT-VERIFY-MOUNT-CHUNK-MARKER";

/// About 1 MiB of pseudo-random text (several chunks) with [`CHUNK_MARKER`] in the middle.
fn large_text() -> String {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut text: String = (0..1 << 20)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (b'!' + (seed % 90) as u8) as char
        })
        .collect();
    text.replace_range(600_000..600_000 + CHUNK_MARKER.len(), CHUNK_MARKER);
    text
}

fn read_errno(path: &Path) -> Option<i32> {
    std::fs::read(path).err().and_then(|e| e.raw_os_error())
}

#[test]
fn corrupt_content_is_refused_not_served_through_the_mount() {
    if !fuse_ready("corrupt_content_is_refused_not_served_through_the_mount") {
        return;
    }
    let small = format!("{SMALL_MARKER} and more\n");
    let large = large_text();
    let universe = Universe::with_files(&[
        ("small.txt", &small),
        ("large.txt", &large),
        ("intact.txt", "intact\n"),
    ]);
    let store = universe.repo.join(".jit/store/data.mdb");
    assert!(flip_every(&store, SMALL_MARKER.as_bytes(), 4) >= 1);
    assert!(flip_every(&store, CHUNK_MARKER.as_bytes(), 4) >= 1);

    let daemon = universe.up();
    assert_eq!(
        std::fs::read_to_string(daemon.path("head/intact.txt")).expect("intact file"),
        "intact\n"
    );
    assert_eq!(
        read_errno(&daemon.path("head/small.txt")),
        Some(libc::EIO),
        "a small file whose blob is corrupt must read as EIO"
    );
    assert_eq!(
        read_errno(&daemon.path("head/large.txt")),
        Some(libc::EIO),
        "a large file with a corrupt chunk must read as EIO"
    );
    // The part before the damaged chunk is intact and may be read.
    let mut file = std::fs::File::open(daemon.path("head/large.txt")).expect("open");
    let mut head = vec![0u8; 4096];
    std::io::Read::read_exact(&mut file, &mut head).expect("the first page is intact");
    assert_eq!(head, large.as_bytes()[..4096]);
    drop(file);
    drop(daemon);
    // The read copy the damaged chunk cut short was not left behind in the overlay.
    let data = universe.repo.join(".jit/fs/data");
    let left: Vec<_> = std::fs::read_dir(&data)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "stray backing files in {}: {left:?}",
        data.display()
    );
}
