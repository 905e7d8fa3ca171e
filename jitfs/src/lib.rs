//! jitfs: the FUSE projection of a universe (SPEC §2) — `head/`, `sws/<id>/`, `refs/`, `nodes/`.
//!
//! Not built yet: it lands with the jitfs issue, on top of the Shadow Working Sets of the kernel.
//! The crate exists now so the workspace has its final shape.
