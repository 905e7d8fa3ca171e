//! Federation between universes (RFC-0021, the ASL federation RFC, the federated-readiness RFC;
//! issue #19): separate universes link through signed, verified, read-only imports of
//! published snapshots. The stages, one file each as they are built:
//!
//! 1. **Identity** — who this universe is, as a signed, versioned document
//!    (`jit_proto::identity`; made by `crate::identity::UniverseIdentity::document`).
//! 2. **Publish** ([`publish`]) — the append-only publish log of snapshots this universe shows
//!    others, and the signed head over it (`jit_proto::head`, `jit_proto::merkle`).
//!
//! 3. **Peers** ([`peers`]) — the other universes this one knows: a trust level each, and a
//!    deny list checked before anything of a denied universe is looked up.
//!
//! Still to come (issue #19): the handshake, import with federation edges,
//! epochs and quarantine, the mount's `federation/` directory.

pub mod peers;
pub mod publish;
