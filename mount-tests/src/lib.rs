//! End-to-end tests on a real FUSE mount with real tools (SPEC §8).
//!
//! Not built yet: the suite arrives with jitfs. When it does, it fails loudly where FUSE is
//! unavailable unless `JIT_SKIP_MOUNT_TESTS=1` is set.
